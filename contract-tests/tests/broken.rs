//! The suite catches wrong adapters, each by exactly the rule it breaks: a
//! table of deliberately broken adapters, each the sandbox with one fault.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use lienthong_adapter_core::{
    AdapterError, AdapterSet, BearerToken, CallContext, Capabilities, CitizenId, DossierStream, ErrorKind, Family,
    HealthcareAdapter, IdentityAdapter, Method, OwnedDossier, Principal, PublicServicesAdapter, api,
};
use lienthong_adapter_sandbox::{Sandbox, SandboxConfig};
use lienthong_contract_tests::{Outcome, Report, Target, run_target};
use unicode_normalization::UnicodeNormalization;

fn sandbox() -> AdapterSet {
    // Dossiers move every 100 ms: a watched one soon reaches its final status.
    let config =
        SandboxConfig { dossier_pace: Duration::from_millis(100), renew_dossiers: false, ..Default::default() };
    Sandbox::new(config).unwrap().into_set()
}

fn nfd(s: &str) -> String {
    s.nfd().collect()
}

/// One fault of a healthcare adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    /// An unknown code answers an empty facility.
    UnknownIsEmpty,
    /// `ward_code` is ignored.
    IgnoresWard,
    /// `type` is ignored.
    IgnoresType,
    /// `page_size` 0 gives 10.
    ZeroIsTen,
    /// `page_size` above 100 is not capped.
    NoCap,
    /// Text is matched as written (case and diacritics count).
    ExactText,
    /// Names in NFD.
    Decomposed,
    /// Each page in another order on every call.
    Shuffles,
    /// A deadline is not heeded: the upstream's second is waited out.
    IgnoresDeadline,
    /// Later pages repeat a record of the first.
    Duplicates,
    /// A page holds one record more than asked.
    Oversized,
    /// A page token it did not issue reads as the first page.
    AcceptsForgedToken,
    /// `total_size` one more than there are.
    TotalOffByOne,
    /// GetFacility is served but not declared.
    Undeclared,
    /// A slow upstream: a second for every call, the caller's deadline
    /// heeded.
    Slow,
    /// Near searches come farthest first.
    FarthestFirst,
    /// Fails when called while another call is in flight.
    Busy,
}

#[derive(Debug)]
struct BrokenHealth {
    inner: Arc<dyn HealthcareAdapter>,
    fault: Health,
    calls: AtomicUsize,
    in_flight: AtomicUsize,
}

impl BrokenHealth {
    fn new(inner: Arc<dyn HealthcareAdapter>, fault: Health) -> Self {
        Self { inner, fault, calls: AtomicUsize::new(0), in_flight: AtomicUsize::new(0) }
    }
}

#[async_trait]
impl HealthcareAdapter for BrokenHealth {
    fn capabilities(&self) -> Capabilities {
        let all = Capabilities::family(Family::Healthcare);
        if self.fault == Health::Undeclared { all.without(Method::GetFacility) } else { all }
    }

    async fn list_facilities(
        &self,
        ctx: &CallContext,
        mut req: api::ListFacilitiesRequest,
    ) -> Result<api::ListFacilitiesResponse, AdapterError> {
        use Health::*;
        let asked = req.clone();
        match self.fault {
            IgnoresWard => req.ward_code.clear(),
            IgnoresType => req.r#type = 0,
            ZeroIsTen if req.page_size == 0 => req.page_size = 10,
            Oversized if (1..100).contains(&req.page_size) => req.page_size += 1,
            IgnoresDeadline
                if ctx.deadline.is_some_and(|d| d < tokio::time::Instant::now() + Duration::from_secs(1)) =>
            {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Slow => slow(ctx).await?,
            Busy => {
                // Shared state without a lock: two calls at once see each
                // other's half-done work.
                let others = self.in_flight.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
                if others > 0 {
                    return Err(AdapterError::new(ErrorKind::Unexpected, "the shared cursor was in use"));
                }
            }
            _ => {}
        }
        let mut r = match self.inner.list_facilities(ctx, req.clone()).await {
            Err(e) if self.fault == AcceptsForgedToken && e.field() == Some("page_token") => {
                self.inner
                    .list_facilities(ctx, api::ListFacilitiesRequest { page_token: String::new(), ..req.clone() })
                    .await?
            }
            r => r?,
        };
        match self.fault {
            NoCap if asked.page_size > 100 => {
                let more = api::ListFacilitiesRequest { page_token: r.next_page_token.clone(), ..req };
                let more = self.inner.list_facilities(ctx, more).await?;
                r.facilities.extend(more.facilities);
                r.next_page_token = more.next_page_token;
            }
            ExactText if !asked.text.is_empty() => {
                r.facilities.retain(|f| {
                    f.name.contains(&asked.text)
                        || f.address
                            .as_ref()
                            .is_some_and(|a| a.street.contains(&asked.text) || a.ward_name.contains(&asked.text))
                });
                r.total_size = 0;
            }
            Decomposed => r.facilities.iter_mut().for_each(|f| f.name = nfd(&f.name)),
            Shuffles if asked.near.is_none() && !r.facilities.is_empty() => {
                let n = self.calls.fetch_add(1, Ordering::Relaxed) % r.facilities.len();
                r.facilities.rotate_left(n);
            }
            Duplicates if !asked.page_token.is_empty() && asked.near.is_none() => {
                let first = api::ListFacilitiesRequest { page_size: 1, page_token: String::new(), ..asked };
                r.facilities[0] = self.inner.list_facilities(ctx, first).await?.facilities[0].clone();
            }
            TotalOffByOne if r.total_size > 0 => r.total_size += 1,
            FarthestFirst if asked.near.is_some() => r.facilities.reverse(),
            _ => {}
        }
        Ok(r)
    }

    async fn get_facility(
        &self,
        ctx: &CallContext,
        req: api::GetFacilityRequest,
    ) -> Result<api::Facility, AdapterError> {
        if self.fault == Health::Slow {
            slow(ctx).await?;
        }
        match self.inner.get_facility(ctx, req).await {
            Err(e) if self.fault == Health::UnknownIsEmpty && e.kind() == ErrorKind::NotFound => {
                Ok(api::Facility::default())
            }
            Ok(mut f) if self.fault == Health::Decomposed => {
                f.name = nfd(&f.name);
                Ok(f)
            }
            r => r,
        }
    }
}

/// A one-second upstream that heeds the caller's deadline.
async fn slow(ctx: &CallContext) -> Result<(), AdapterError> {
    let done = tokio::time::Instant::now() + Duration::from_secs(1);
    match ctx.deadline {
        Some(deadline) if deadline < done => {
            tokio::time::sleep_until(deadline).await;
            Err(AdapterError::new(ErrorKind::DeadlineExceeded, "the upstream did not answer in time"))
        }
        _ => {
            tokio::time::sleep_until(done).await;
            Ok(())
        }
    }
}

/// One fault of a public-services adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Services {
    /// An unknown agency code answers an empty agency.
    UnknownIsEmpty,
    /// ListAgencies ignores `level`.
    IgnoresLevel,
    /// ListProcedures ignores `field`.
    IgnoresField,
    /// ListProcedures ignores `agency_code`.
    IgnoresAgency,
    /// Agency names in NFD.
    Decomposed,
    /// ListMyDossiers lists one fixed citizen's dossiers, whoever asks.
    OthersDossiers,
    /// WatchDossier stays open after a final status.
    NeverEnds,
    /// GetAgency answers another name than the list.
    GetDiffers,
    /// WatchDossier sends its first message twice.
    Repeats,
}

#[derive(Debug)]
struct BrokenServices {
    inner: Arc<dyn PublicServicesAdapter>,
    fault: Services,
    /// For [`Services::OthersDossiers`]: whose dossiers it lists.
    fixed: Option<Principal>,
}

#[async_trait]
impl PublicServicesAdapter for BrokenServices {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn list_agencies(
        &self,
        ctx: &CallContext,
        mut req: api::ListAgenciesRequest,
    ) -> Result<api::ListAgenciesResponse, AdapterError> {
        if self.fault == Services::IgnoresLevel {
            req.level = 0;
        }
        let mut r = self.inner.list_agencies(ctx, req).await?;
        if self.fault == Services::Decomposed {
            r.agencies.iter_mut().for_each(|a| a.name = nfd(&a.name));
        }
        Ok(r)
    }

    async fn get_agency(&self, ctx: &CallContext, req: api::GetAgencyRequest) -> Result<api::Agency, AdapterError> {
        match self.inner.get_agency(ctx, req).await {
            Err(e) if self.fault == Services::UnknownIsEmpty && e.kind() == ErrorKind::NotFound => {
                Ok(api::Agency::default())
            }
            Ok(mut a) if self.fault == Services::Decomposed => {
                a.name = nfd(&a.name);
                Ok(a)
            }
            Ok(mut a) if self.fault == Services::GetDiffers => {
                a.name.push_str(" (cũ)");
                Ok(a)
            }
            r => r,
        }
    }

    async fn list_procedures(
        &self,
        ctx: &CallContext,
        mut req: api::ListProceduresRequest,
    ) -> Result<api::ListProceduresResponse, AdapterError> {
        match self.fault {
            Services::IgnoresField => req.field.clear(),
            Services::IgnoresAgency => req.agency_code.clear(),
            _ => {}
        }
        self.inner.list_procedures(ctx, req).await
    }

    async fn get_procedure(
        &self,
        ctx: &CallContext,
        req: api::GetProcedureRequest,
    ) -> Result<api::Procedure, AdapterError> {
        self.inner.get_procedure(ctx, req).await
    }

    async fn get_dossier(&self, ctx: &CallContext, req: api::GetDossierRequest) -> Result<OwnedDossier, AdapterError> {
        self.inner.get_dossier(ctx, req).await
    }

    async fn list_my_dossiers(
        &self,
        ctx: &CallContext,
        req: api::ListMyDossiersRequest,
    ) -> Result<api::ListMyDossiersResponse, AdapterError> {
        let mut ctx = ctx.clone();
        if let (Services::OthersDossiers, Some(fixed), Some(_)) = (self.fault, &self.fixed, &ctx.principal) {
            ctx.principal = Some(fixed.clone());
        }
        self.inner.list_my_dossiers(&ctx, req).await
    }

    async fn watch_dossier(
        &self,
        ctx: &CallContext,
        req: api::WatchDossierRequest,
    ) -> Result<DossierStream, AdapterError> {
        let mut stream = self.inner.watch_dossier(ctx, req).await?;
        match self.fault {
            Services::NeverEnds => Ok(stream.chain(futures_util::stream::pending()).boxed()),
            Services::Repeats => {
                let Some(first) = stream.next().await else { return Ok(stream) };
                let again = first.clone();
                Ok(futures_util::stream::iter([first, again]).chain(stream).boxed())
            }
            _ => Ok(stream),
        }
    }
}

/// Accepts an unsigned token (`alg: none`) as any citizen's.
#[derive(Debug)]
struct AcceptsUnsigned(Arc<dyn IdentityAdapter>);

#[async_trait]
impl IdentityAdapter for AcceptsUnsigned {
    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }

    async fn authenticate(&self, token: &BearerToken) -> Result<Principal, AdapterError> {
        match self.0.authenticate(token).await {
            Err(e) if e.kind() == ErrorKind::Unauthenticated && token.expose().ends_with('.') => Ok(Principal {
                citizen_id: CitizenId::parse("079190012345").unwrap(),
                identity_level: api::IdentityLevel::IdentityLevel2,
                token: token.clone(),
            }),
            r => r,
        }
    }

    async fn profile(&self, ctx: &CallContext, principal: &Principal) -> Result<api::CitizenProfile, AdapterError> {
        self.0.profile(ctx, principal).await
    }
}

#[tokio::test]
async fn an_identity_adapter_that_accepts_unsigned_tokens_fails_auth_refuses() {
    let set = sandbox();
    let broken = AdapterSet {
        identity: Some(Arc::new(AcceptsUnsigned(set.identity.clone().unwrap()))),
        demo_issuer: set.demo_issuer.clone(),
        ..Default::default()
    };
    let report = check(broken).await;
    let (rules, text) = broken_rules(&report);
    assert_eq!(rules, ["AUTH-REFUSES"], "{text}");
    // The same without the fault passes.
    let fine =
        AdapterSet { identity: set.identity.clone(), demo_issuer: set.demo_issuer.clone(), ..Default::default() };
    let report = check(fine).await;
    assert_eq!(report.counts().1, 0, "{report}");
}

/// Runs the suite on `adapters` with the sandbox's demo citizens.
async fn check(adapters: AdapterSet) -> Report {
    run_target(&Target::new(adapters, "79").with_demo_citizens().await).await
}

/// The rules `report` names as broken, and the report to show.
fn broken_rules(report: &Report) -> (Vec<&'static str>, String) {
    (report.rules_broken(), report.to_string())
}

#[tokio::test]
async fn each_broken_healthcare_adapter_fails_exactly_the_rule_it_breaks() {
    use Health::*;
    let table = [
        (UnknownIsEmpty, "NOT-FOUND"),
        (IgnoresWard, "FILTER-EXACT"),
        (IgnoresType, "FILTER-EXACT"),
        (ZeroIsTen, "PAGE-SIZE"),
        (NoCap, "PAGE-SIZE"),
        (ExactText, "TEXT-NFC-IN"),
        (Decomposed, "TEXT-NFC"),
        (Shuffles, "PAGE-STABLE"),
        (IgnoresDeadline, "DEADLINE"),
        (Duplicates, "PAGE-COMPLETE"),
        (Oversized, "PAGE-SIZE"),
        (AcceptsForgedToken, "ERROR-KINDS"),
        (TotalOffByOne, "PAGE-COMPLETE"),
        (Undeclared, "CAPABILITIES-HONEST"),
        (FarthestFirst, "NEAR-SORTED"),
        (Busy, "CONCURRENT-SAFE"),
    ];
    let inner = sandbox().healthcare.unwrap();
    let reports = futures_util::future::join_all(table.iter().map(|(fault, _)| {
        let adapter = BrokenHealth::new(inner.clone(), *fault);
        check(AdapterSet { healthcare: Some(Arc::new(adapter)), ..Default::default() })
    }))
    .await;
    for ((fault, rule), report) in table.iter().zip(&reports) {
        let (rules, text) = broken_rules(report);
        assert_eq!(rules, [*rule], "{fault:?} should break {rule} alone:\n{text}");
    }
    // A SHOULD broken is a warning: the adapter still passes.
    let exact_text = &reports[5];
    assert_eq!(exact_text.counts().1, 0, "{exact_text}");
    assert!(exact_text.to_string().contains("WARNING"), "{exact_text}");
}

#[tokio::test]
async fn a_slow_adapter_is_reported_under_deadline_not_the_case_that_waited() {
    let inner = sandbox().healthcare.unwrap();
    let adapter = BrokenHealth::new(inner, Health::Slow);
    let mut target = Target::new(AdapterSet { healthcare: Some(Arc::new(adapter)), ..Default::default() }, "79");
    // The suite gives each call 300 ms: the adapter answers none in time.
    target.call_deadline = Duration::from_millis(300);
    let report = run_target(&target).await;
    let (rules, text) = broken_rules(&report);
    assert_eq!(rules, ["DEADLINE"], "{text}");
    assert!(report.violations().all(|(_, v)| v.detail.contains("did not answer in time")), "{text}");
}

#[tokio::test]
async fn each_broken_public_services_adapter_fails_exactly_the_rule_it_breaks() {
    use Services::*;
    let table = [
        (UnknownIsEmpty, "NOT-FOUND"),
        (IgnoresLevel, "FILTER-EXACT"),
        (IgnoresField, "FILTER-EXACT"),
        (IgnoresAgency, "FILTER-EXACT"),
        (Decomposed, "TEXT-NFC"),
        (OthersDossiers, "OWNERSHIP"),
        (NeverEnds, "WATCH-ORDERED"),
        (GetDiffers, "GET-MATCHES-LIST"),
        (Repeats, "WATCH-ORDERED"),
    ];
    let set = sandbox();
    // Dossiers at the sandbox's own pace (30 s): some are still moving when
    // the watch case runs, so its moving branch is checked too.
    let slow = Sandbox::new(SandboxConfig::default()).unwrap().into_set();
    // Whose dossiers the OthersDossiers adapter lists: a demo citizen's.
    let fixed = Target::new(set.clone(), "79").with_demo_citizens().await.citizens.map(|(a, _)| a);
    let reports = futures_util::future::join_all(table.iter().map(|(fault, _)| {
        let set = if *fault == Repeats { &slow } else { &set };
        let adapter =
            BrokenServices { inner: set.public_services.clone().unwrap(), fault: *fault, fixed: fixed.clone() };
        check(AdapterSet {
            identity: set.identity.clone(),
            demo_issuer: set.demo_issuer.clone(),
            public_services: Some(Arc::new(adapter)),
            ..Default::default()
        })
    }))
    .await;
    for ((fault, rule), report) in table.iter().zip(&reports) {
        let (rules, text) = broken_rules(report);
        assert_eq!(rules, [*rule], "{fault:?} should break {rule} alone:\n{text}");
        // Every public-services case ran (the citizens' dossiers may all be
        // final by the time their status filter is tried: one value, nothing
        // to tell a filter ignored).
        let skipped = report.outcomes.iter().filter(|(n, o)| {
            n.starts_with("public")
                && n != "public_services/list_my_dossiers filters"
                && matches!(o, Outcome::Skipped(_))
        });
        assert_eq!(skipped.count(), 0, "every public-services case ran:\n{text}");
    }
}
