//! The adapter contract suite: one set of behaviour cases, written once, run
//! against any adapter's [`AdapterSet`]. See `SPEC.md` for the rules; every
//! failure names the rule it breaks.
//!
//! The suite derives its probes from the adapter under test, not from one
//! city: it lists first, then filters by values the records carry, searches
//! around the records' own coordinates, gets the ids it listed, and asks for
//! ids that cannot exist.

#![forbid(unsafe_code)]

mod cases;
pub mod examples;
pub mod fakes;
pub mod interop;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use lienthong_adapter_core::{AdapterSet, BearerToken, CallContext, Method, Principal};

pub use cases::all_cases;

/// Every rule of `SPEC.md`: its id and level. A `SHOULD` broken is a
/// warning, not a failure.
pub const RULES: &[(&str, Level)] = &[
    ("AUTH-REFUSES", Level::Must),
    ("CAPABILITIES-HONEST", Level::Must),
    ("PAGE-COMPLETE", Level::Must),
    ("PAGE-STABLE", Level::Must),
    ("PAGE-SIZE", Level::Must),
    ("GET-MATCHES-LIST", Level::Must),
    ("NOT-FOUND", Level::Must),
    ("FILTER-EXACT", Level::Must),
    ("NEAR-SORTED", Level::Must),
    ("TEXT-NFC", Level::Must),
    ("CONCURRENT-SAFE", Level::Must),
    ("DEADLINE", Level::Must),
    ("ERROR-KINDS", Level::Must),
    ("OWNERSHIP", Level::Must),
    ("WATCH-ORDERED", Level::Must),
    ("TEXT-NFC-IN", Level::Should),
];

/// How binding a rule is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Broken, the adapter fails the suite.
    Must,
    /// Broken, the suite warns and the adapter still passes.
    Should,
}

impl Level {
    /// `MUST` or `SHOULD`, as `SPEC.md` writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Must => "MUST",
            Level::Should => "SHOULD",
        }
    }
}

/// The level of rule `id` (`MUST` for an id not in [`RULES`]).
pub fn level_of(id: &str) -> Level {
    RULES.iter().find(|(r, _)| *r == id).map(|(_, l)| *l).unwrap_or(Level::Must)
}

/// How long the suite waits for any one answer when the case sets no
/// shorter deadline: the deadline every call carries.
pub const CALL_DEADLINE: Duration = Duration::from_secs(10);

/// What the suite runs against: the adapter, and facts about its data that
/// some cases need.
#[derive(Debug, Clone)]
pub struct Target {
    /// The adapter instance under test.
    pub adapters: AdapterSet,
    /// A dossier that will reach a final status while watched (for the
    /// WatchDossier case); without it a dossier of a test citizen is watched.
    pub dossier_code: Option<String>,
    /// The province every call is made for (`x-lienthong-province`):
    /// the one whose data the adapter holds.
    pub province: String,
    /// Two test citizens, for the personal cases (ListMyDossiers, OWNERSHIP,
    /// WatchDossier without a dossier code). Without them those cases are
    /// skipped, naming the flags that would run them.
    pub citizens: Option<(Principal, Principal)>,
    /// The deadline of every call a case does not bound otherwise
    /// ([`CALL_DEADLINE`] by default).
    pub call_deadline: Duration,
}

impl Target {
    /// `adapters` for province `province`, without a dossier to watch or
    /// test citizens.
    pub fn new(adapters: AdapterSet, province: impl Into<String>) -> Self {
        Self { adapters, dossier_code: None, province: province.into(), citizens: None, call_deadline: CALL_DEADLINE }
    }

    /// A call's context: anonymous, for the target's province, with the
    /// target's [`Target::call_deadline`].
    pub fn ctx(&self) -> CallContext {
        let mut ctx = CallContext::anonymous(self.province.clone());
        ctx.deadline = Some(tokio::time::Instant::now() + self.call_deadline);
        ctx
    }

    /// `ctx` with a new [`Target::call_deadline`] from now: each call of a
    /// case gets the whole deadline, however many calls came before.
    pub fn renewed(&self, ctx: &CallContext) -> CallContext {
        let mut ctx = ctx.clone();
        ctx.deadline = Some(tokio::time::Instant::now() + self.call_deadline);
        ctx
    }

    /// A call's context for test citizen `which` (0 or 1), when given.
    pub fn citizen_ctx(&self, which: usize) -> Option<CallContext> {
        let (a, b) = self.citizens.as_ref()?;
        let mut ctx = self.ctx();
        ctx.principal = Some(if which == 0 { a.clone() } else { b.clone() });
        Some(ctx)
    }

    /// Test citizens from the adapter's own demo issuer (a sandbox mints
    /// tokens for fictional citizens), when it has one and none were given:
    /// the two first demo citizens who own dossiers, their tokens verified by
    /// the adapter's identity family.
    pub async fn with_demo_citizens(self) -> Self {
        let own = self.adapters.clone();
        self.with_demo_citizens_of(&own).await
    }

    /// Test citizens minted by `issuer`'s demo issuer and verified by its
    /// identity family (a sandbox's fictional citizens, for an adapter that
    /// holds their dossiers), when none were given.
    pub async fn with_demo_citizens_of(mut self, issuer: &AdapterSet) -> Self {
        if self.citizens.is_some() {
            return self;
        }
        let (Some(issuer), Some(identity)) = (&issuer.demo_issuer, &issuer.identity) else {
            return self;
        };
        let mut found = Vec::new();
        for citizen in issuer.demo_citizens().into_iter().filter(|c| c.dossier_count > 0) {
            let Ok(issued) = issuer.issue_token(&citizen.handle) else { continue };
            if let Ok(principal) = identity.authenticate(&issued.token).await {
                found.push(principal);
            }
            if found.len() == 2 {
                break;
            }
        }
        if let (Some(b), Some(a)) = (found.pop(), found.pop()) {
            self.citizens = Some((a, b));
        }
        self
    }

    /// Test citizens from two tokens, verified by `verifier`'s identity
    /// family (the adapter's own, or another instance's).
    pub async fn with_citizen_tokens(
        mut self,
        verifier: &AdapterSet,
        first: &str,
        second: &str,
    ) -> Result<Self, String> {
        let identity = verifier
            .identity
            .as_ref()
            .ok_or_else(|| "no identity adapter to verify the citizen tokens with (--identity)".to_owned())?;
        let mut principals = Vec::new();
        for (flag, token) in [("--citizen-token", first), ("--other-citizen-token", second)] {
            let principal = identity
                .authenticate(&BearerToken::new(token))
                .await
                .map_err(|e| format!("the token given with {flag} was refused: {e}"))?;
            principals.push(principal);
        }
        if let (Some(b), Some(a)) = (principals.pop(), principals.pop()) {
            if a.citizen_id == b.citizen_id {
                return Err("--citizen-token and --other-citizen-token are the same citizen".to_owned());
            }
            self.citizens = Some((a, b));
        }
        Ok(self)
    }
}

impl std::ops::Deref for Target {
    type Target = AdapterSet;

    fn deref(&self) -> &AdapterSet {
        &self.adapters
    }
}

/// A rule of `SPEC.md` broken, with what was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The rule's id, for example `PAGE-COMPLETE`.
    pub rule: &'static str,
    /// What the adapter did.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.rule == UNREACHABLE {
            // Not a rule broken: say what happened.
            return f.write_str(&self.detail);
        }
        write!(f, "violates {}: {}", self.rule, self.detail)
    }
}

/// Not a rule: the adapter could not be reached (connection refused, TLS
/// refused, the service down). The suite reports it once and runs nothing
/// more, rather than blame every rule.
pub const UNREACHABLE: &str = "UNREACHABLE";

/// Not a rule: the case found nothing it could check (no records carry a
/// filter's values, no test citizen for a personal method). The case is
/// reported as skipped with the reason, never as passed.
pub const SKIPPED: &str = "SKIPPED";

/// Ends a case as skipped, saying why.
pub(crate) fn skip(why: impl Into<String>) -> Violation {
    Violation { rule: SKIPPED, detail: why.into() }
}

/// Fails with `rule` unless `ok`.
pub fn ensure(ok: bool, rule: &'static str, detail: impl FnOnce() -> String) -> Result<(), Violation> {
    if ok { Ok(()) } else { Err(Violation { rule, detail: detail() }) }
}

/// The future a case runs.
pub type CaseFuture<'a> = Pin<Box<dyn Future<Output = Result<(), Violation>> + Send + 'a>>;

/// What a case needs besides the method it checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Nothing more.
    Nothing,
    /// Only that the adapter serves the method's family: the case runs for
    /// methods the adapter does not declare too.
    Served,
    /// Two test citizens ([`Target::citizens`]).
    Citizens,
    /// A dossier to watch: [`Target::dossier_code`], or a test citizen's.
    Dossier,
}

/// One behaviour case.
pub struct Case {
    /// A readable name: the method it checks and what it checks, for example
    /// `healthcare/list_facilities pages`.
    pub name: String,
    /// What it checks, the same for every method (`pages`): `SPEC.md` names
    /// the cases that check each rule by this.
    pub kind: &'static str,
    /// The rules it can report.
    pub rules: &'static [&'static str],
    /// The method the case needs; skipped when the adapter does not declare
    /// it.
    pub method: Method,
    /// What else it needs.
    pub needs: Needs,
    /// The check.
    pub run: Run,
}

/// A case's check.
pub type Run = Box<dyn for<'a> Fn(&'a Target) -> CaseFuture<'a> + Send + Sync>;

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Case").field("name", &self.name).field("method", &self.method).finish()
    }
}

/// How one case ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Behaved as the contract says.
    Passed,
    /// Broke a `MUST`.
    Failed(Violation),
    /// Broke a `SHOULD`: reported, not failed.
    Warned(Violation),
    /// Not run, and why (with the flag that would run it, where one would).
    Skipped(String),
}

/// The outcome of every case.
#[derive(Debug, Default)]
pub struct Report {
    /// Case name and outcome, in run order.
    pub outcomes: Vec<(String, Outcome)>,
}

impl Report {
    /// How many cases passed (warnings included), failed and were skipped.
    pub fn counts(&self) -> (usize, usize, usize) {
        let count = |f: fn(&Outcome) -> bool| self.outcomes.iter().filter(|(_, o)| f(o)).count();
        (
            count(|o| matches!(o, Outcome::Passed | Outcome::Warned(_))),
            count(|o| matches!(o, Outcome::Failed(_))),
            count(|o| matches!(o, Outcome::Skipped(_))),
        )
    }

    /// The violations of `MUST` rules found, with the case that found each.
    pub fn violations(&self) -> impl Iterator<Item = (&str, &Violation)> {
        self.outcomes.iter().filter_map(|(n, o)| match o {
            Outcome::Failed(v) => Some((n.as_str(), v)),
            _ => None,
        })
    }

    /// The `SHOULD` rules broken, with the case that found each.
    pub fn warnings(&self) -> impl Iterator<Item = (&str, &Violation)> {
        self.outcomes.iter().filter_map(|(n, o)| match o {
            Outcome::Warned(v) => Some((n.as_str(), v)),
            _ => None,
        })
    }

    /// The ids of the rules broken (`MUST` and `SHOULD`), each once, sorted.
    pub fn rules_broken(&self) -> Vec<&'static str> {
        let mut rules: Vec<&'static str> = self.violations().chain(self.warnings()).map(|(_, v)| v.rule).collect();
        rules.sort_unstable();
        rules.dedup();
        rules
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A family not served at all is one line, not one per case.
        let mut unserved: Vec<(&str, usize)> = Vec::new();
        for (_, outcome) in &self.outcomes {
            if let Outcome::Skipped(why) = outcome
                && why.starts_with(cases::NOT_SERVED)
            {
                match unserved.iter_mut().find(|(w, _)| *w == why.as_str()) {
                    Some((_, n)) => *n += 1,
                    None => unserved.push((why.as_str(), 1)),
                }
            }
        }
        let mut said = Vec::new();
        for (name, outcome) in &self.outcomes {
            match outcome {
                Outcome::Passed => writeln!(f, "ok       {name}")?,
                Outcome::Skipped(why) if why.starts_with(cases::NOT_SERVED) => {
                    if !said.contains(&why.as_str()) {
                        said.push(why.as_str());
                        let n = unserved.iter().find(|(w, _)| *w == why.as_str()).map_or(0, |(_, n)| *n);
                        let family = why.trim_start_matches(cases::NOT_SERVED).trim();
                        writeln!(f, "skipped  {family}: {n} cases ({why})")?;
                    }
                }
                Outcome::Skipped(why) => writeln!(f, "skipped  {name} ({why})")?,
                Outcome::Warned(v) => writeln!(f, "WARNING  {name}: {v} (a SHOULD)")?,
                Outcome::Failed(v) => writeln!(f, "FAILED   {name}: {v}")?,
            }
        }
        let (passed, failed, skipped) = self.counts();
        let warned = self.warnings().count();
        write!(f, "{passed} passed ({warned} with a warning), {failed} failed, {skipped} skipped")
    }
}

/// Whether `adapters` declares `method` (the family is present and its
/// capabilities say so).
pub(crate) fn supports(adapters: &AdapterSet, method: Method) -> bool {
    declared(adapters, method.family()).is_some_and(|c| c.supports(method))
}

/// What `family`'s adapter declares, when the set serves the family.
pub(crate) fn declared(
    adapters: &AdapterSet,
    family: lienthong_adapter_core::Family,
) -> Option<lienthong_adapter_core::Capabilities> {
    use lienthong_adapter_core::Family::*;
    match family {
        Identity => adapters.identity.as_ref().map(|a| a.capabilities()),
        Healthcare => adapters.healthcare.as_ref().map(|a| a.capabilities()),
        Education => adapters.education.as_ref().map(|a| a.capabilities()),
        Transport => adapters.transport.as_ref().map(|a| a.capabilities()),
        Construction => adapters.construction.as_ref().map(|a| a.capabilities()),
        PublicServices => adapters.public_services.as_ref().map(|a| a.capabilities()),
    }
}

/// Runs every case against `adapters`, holding Ho Chi Minh City's (79)
/// data, with the adapter's own demo citizens when it mints any.
pub async fn run(adapters: &AdapterSet) -> Report {
    run_target(&Target::new(adapters.clone(), "79").with_demo_citizens().await).await
}

/// Runs every case against `target`.
pub async fn run_target(target: &Target) -> Report {
    let mut report = Report::default();
    for case in all_cases() {
        let outcome = if let Some(why) = cases::cannot_run(&case, target) {
            Outcome::Skipped(why)
        } else {
            match (case.run)(target).await {
                Ok(()) => Outcome::Passed,
                Err(v) if v.rule == UNREACHABLE => {
                    report.outcomes.push((
                        "the adapter is reachable".to_owned(),
                        Outcome::Failed(Violation {
                            rule: UNREACHABLE,
                            detail: format!("cannot reach the adapter: {}", v.detail),
                        }),
                    ));
                    return report;
                }
                Err(v) if v.rule == SKIPPED => Outcome::Skipped(v.detail),
                Err(v) if level_of(v.rule) == Level::Should => Outcome::Warned(v),
                Err(v) => Outcome::Failed(v),
            }
        };
        report.outcomes.push((case.name, outcome));
    }
    report
}
