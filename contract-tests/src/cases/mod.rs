//! The behaviour cases. Each names the rules of `SPEC.md` it checks.

mod listing;
mod lists;
mod others;

use std::future::Future;

use lienthong_adapter_core::{AdapterError, CallContext, ErrorKind, Method};

use self::listing::{Agencies, Cameras, Facilities, Housing, Listing, MyDossiers, Procedures, Routes, Schools, Stops};
use crate::{Case, CaseFuture, Needs, Target, Violation};

/// An adapter call that failed where the case needed an answer. Out of
/// reach is not a rule broken ([`crate::UNREACHABLE`]: the suite stops), and
/// out of time is DEADLINE; anything else breaks the case's rule.
pub(crate) fn failed_under(rule: &'static str, e: AdapterError) -> Violation {
    match e.kind() {
        ErrorKind::Unavailable => Violation { rule: crate::UNREACHABLE, detail: e.to_string() },
        ErrorKind::DeadlineExceeded => {
            Violation { rule: "DEADLINE", detail: format!("the adapter did not answer in time: {e}") }
        }
        _ => Violation { rule, detail: format!("the adapter failed: {e}") },
    }
}

/// `call`, given up on one second past the context's deadline (an adapter
/// that never answers is DEADLINE, not a hung suite).
pub(crate) async fn bounded<T>(
    ctx: &CallContext,
    call: impl Future<Output = Result<T, AdapterError>>,
) -> Result<T, AdapterError> {
    let Some(deadline) = ctx.deadline else { return call.await };
    tokio::time::timeout_at(deadline + std::time::Duration::from_secs(1), call).await.unwrap_or_else(|_| {
        Err(AdapterError::new(ErrorKind::DeadlineExceeded, "still no answer a second after the call's deadline"))
    })
}

/// NOT-FOUND: `result` must be a `NotFound` error.
pub(crate) fn expect_not_found<T>(what: &str, result: Result<T, AdapterError>) -> Result<(), Violation> {
    match result {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) if matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::DeadlineExceeded) => {
            Err(failed_under("NOT-FOUND", e))
        }
        Err(e) => Err(Violation {
            rule: "NOT-FOUND",
            detail: format!("{what}: an id that does not exist gave {} instead of not_found", e.kind()),
        }),
        Ok(_) => Err(Violation {
            rule: "NOT-FOUND",
            detail: format!("{what}: answered with a record for an id that does not exist"),
        }),
    }
}

/// How a case of a family the adapter does not serve is skipped.
pub(crate) const NOT_SERVED: &str = "this adapter does not serve";

/// Why `case` cannot run against `target`, naming what would run it.
pub(crate) fn cannot_run(case: &Case, target: &Target) -> Option<String> {
    let family = case.method.family();
    // A family it declares nothing of (a remote service's unlisted families)
    // is not served either.
    let declares_any = crate::declared(target, family).is_some_and(|c| c.methods().any(|m| m.family() == family));
    if !target.adapters.serves(family) || !declares_any {
        return Some(format!("{} {}", NOT_SERVED, family.as_str()));
    }
    if case.needs != Needs::Served && !crate::supports(target, case.method) {
        return Some(format!("{} is not among the methods the adapter declares", case.method.rpc_name()));
    }
    match case.needs {
        Needs::Citizens if target.citizens.is_none() => {
            Some("needs two test citizens: give --citizen-token and --other-citizen-token".to_owned())
        }
        Needs::Dossier if target.dossier_code.is_none() && target.citizens.is_none() => Some(
            "needs a dossier to watch: give --dossier-code, or --citizen-token and --other-citizen-token".to_owned(),
        ),
        _ => None,
    }
}

fn case(
    name: String,
    kind: &'static str,
    rules: &'static [&'static str],
    method: Method,
    run: impl for<'a> Fn(&'a Target) -> CaseFuture<'a> + Send + Sync + 'static,
) -> Case {
    Case { name, kind, rules, method, needs: Needs::Nothing, run: Box::new(run) }
}

/// The cases of one list.
fn listing<L: Listing>() -> Vec<Case> {
    let l = L::default();
    let personal = if L::PERSONAL { Needs::Citizens } else { Needs::Nothing };
    let named = |kind: &'static str| format!("{} {kind}", L::NAME);
    let mut cases = vec![
        case(named("pages"), "pages", &["PAGE-COMPLETE", "PAGE-STABLE", "PAGE-SIZE"], L::METHOD, lists::pages::<L>),
        case(named("page sizes"), "page sizes", &["PAGE-SIZE"], L::METHOD, lists::page_sizes::<L>),
    ];
    let filters = l.filters();
    if !filters.is_empty() {
        cases.push(case(named("filters"), "filters", &["FILTER-EXACT"], L::METHOD, lists::filters::<L>));
    }
    if filters.iter().any(|f| f.field == "text") {
        cases.push(case(
            named("text search ignores case and diacritics"),
            "text search",
            &["TEXT-NFC-IN"],
            L::METHOD,
            lists::text_folded::<L>,
        ));
    }
    if L::NEAR {
        cases.push(case(named("near search"), "near search", &["NEAR-SORTED"], L::METHOD, lists::near_sorted::<L>));
    }
    cases.push(case(named("text in NFC"), "text in NFC", &["TEXT-NFC"], L::METHOD, lists::nfc_text::<L>));
    if let Some(get) = L::GET {
        cases.push(case(
            named("records match their get"),
            "records match their get",
            &["GET-MATCHES-LIST"],
            L::METHOD,
            lists::get_matches_list::<L>,
        ));
        cases.push(Case {
            name: format!("{} unknown id", get_name(get)),
            ..case(String::new(), "unknown id", &["NOT-FOUND"], get, lists::unknown_id::<L>)
        });
    }
    cases.push(case(
        named("concurrent calls"),
        "concurrent calls",
        &["PAGE-STABLE", "CONCURRENT-SAFE"],
        L::METHOD,
        lists::concurrent::<L>,
    ));
    cases.push(case(named("deadlines"), "deadlines", &["DEADLINE"], L::METHOD, lists::deadlines::<L>));
    cases.push(case(
        named("forged page token"),
        "forged page token",
        &["ERROR-KINDS"],
        L::METHOD,
        lists::forged_token::<L>,
    ));
    for c in &mut cases {
        c.needs = personal;
    }
    cases
}

/// `family/method` in snake case, as case names write it.
pub(crate) fn get_name(method: Method) -> String {
    let mut snake = String::new();
    for (i, c) in method.rpc_name().chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                snake.push('_');
            }
            snake.push(c.to_ascii_lowercase());
        } else {
            snake.push(c);
        }
    }
    format!("{}/{snake}", method.family().as_str())
}

/// Every case, in the order they run.
pub fn all_cases() -> Vec<Case> {
    use Method::*;
    // An identity adapter declares GetMyProfile; Authenticate comes with it.
    let mut cases = vec![case(
        "identity/authenticate refuses forged tokens".to_owned(),
        "forged tokens",
        &["AUTH-REFUSES"],
        GetMyProfile,
        others::identity_refuses_bad_tokens,
    )];
    // Every method of every family served: declared ones answer, others are
    // UNIMPLEMENTED.
    for method in Method::ALL.iter().copied() {
        cases.push(Case {
            needs: Needs::Served,
            ..case(
                format!("{} declared honestly", get_name(method)),
                "declared honestly",
                &["CAPABILITIES-HONEST"],
                method,
                move |t: &Target| -> CaseFuture<'_> { Box::pin(others::honest(t, method)) },
            )
        });
    }
    cases.extend(listing::<Facilities>());
    cases.extend(listing::<Schools>());
    cases.extend(listing::<Routes>());
    cases.push(case(
        "transport/list_bus_routes stop filter".to_owned(),
        "filters",
        &["FILTER-EXACT"],
        ListBusRoutes,
        others::routes_by_stop,
    ));
    cases.extend(listing::<Stops>());
    cases.extend(listing::<Cameras>());
    cases.extend(listing::<Housing>());
    cases.push(case(
        "construction/get_practicing_certificate unknown id".to_owned(),
        "unknown id",
        &["NOT-FOUND"],
        GetPracticingCertificate,
        others::certificate_not_found,
    ));
    cases.extend(listing::<Agencies>());
    cases.extend(listing::<Procedures>());
    cases.extend(listing::<MyDossiers>());
    cases.push(Case {
        needs: Needs::Citizens,
        ..case(
            "public_services/list_my_dossiers only the citizen's own".to_owned(),
            "ownership",
            &["OWNERSHIP"],
            ListMyDossiers,
            others::ownership,
        )
    });
    cases.push(Case {
        needs: Needs::Dossier,
        ..case(
            "public_services/watch_dossier ordered, ends on a final status".to_owned(),
            "watch",
            &["WATCH-ORDERED"],
            WatchDossier,
            others::watch_ordered,
        )
    });
    cases
}
