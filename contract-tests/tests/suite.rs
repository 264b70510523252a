//! The suite passes the sandbox, and catches a deliberately broken adapter,
//! naming the rules it breaks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use async_trait::async_trait;
use lienthong_adapter_core::{
    AdapterError, AdapterSet, CallContext, Capabilities, ErrorKind, Family, HealthcareAdapter, api,
};
use lienthong_adapter_sandbox::{Sandbox, SandboxConfig};
use lienthong_contract_tests::{Outcome, Target, run, run_target};

fn sandbox() -> AdapterSet {
    Sandbox::new(SandboxConfig::default()).unwrap().into_set()
}

#[tokio::test]
async fn the_sandbox_passes_every_case() {
    // Dossiers move every 100 ms, so the watched one reaches its final status fast.
    let config = SandboxConfig { dossier_pace: std::time::Duration::from_millis(100), ..Default::default() };
    let adapters = Sandbox::new(config).unwrap().into_set();
    let target = Target { adapters, dossier_code: Some("000.30.67.H29-251114-0001".into()), province: "79".into() };
    let report = run_target(&target).await;
    let (passed, failed, skipped) = report.counts();
    assert_eq!((failed, skipped), (0, 0), "{report}");
    assert_eq!(passed, lienthong_contract_tests::all_cases().len());
}

/// Breaks three rules on purpose: later pages repeat the very first record
/// (PAGE-COMPLETE), page_size is not capped at 100 (PAGE-SIZE), and unknown
/// ids are "unavailable" (NOT-FOUND).
#[derive(Debug)]
struct Broken(Arc<dyn HealthcareAdapter>);

#[async_trait]
impl HealthcareAdapter for Broken {
    fn capabilities(&self) -> Capabilities {
        Capabilities::family(Family::Healthcare)
    }

    async fn list_facilities(
        &self,
        ctx: &CallContext,
        req: api::ListFacilitiesRequest,
    ) -> Result<api::ListFacilitiesResponse, AdapterError> {
        let mut r = self.0.list_facilities(ctx, req.clone()).await?;
        if !req.page_token.is_empty() && req.near.is_none() {
            let first =
                self.0.list_facilities(ctx, api::ListFacilitiesRequest { page_size: 1, ..Default::default() }).await?;
            r.facilities[0] = first.facilities[0].clone();
        }
        if req.page_size > 100 {
            let more = api::ListFacilitiesRequest {
                page_size: 100,
                page_token: r.next_page_token.clone(),
                ..Default::default()
            };
            r.facilities.extend(self.0.list_facilities(ctx, more).await?.facilities);
        }
        Ok(r)
    }

    async fn get_facility(&self, _: &CallContext, _: api::GetFacilityRequest) -> Result<api::Facility, AdapterError> {
        Err(AdapterError::new(ErrorKind::Unavailable, "upstream down"))
    }
}

#[tokio::test]
async fn a_broken_adapter_fails_naming_the_rules() {
    let healthcare = sandbox().healthcare.unwrap();
    let broken = AdapterSet { healthcare: Some(Arc::new(Broken(healthcare))), ..Default::default() };
    let report = run(&broken).await;
    let text = report.to_string();
    let rules: Vec<&str> = report.violations().map(|(_, v)| v.rule).collect();
    assert!(rules.contains(&"PAGE-SIZE"), "{text}");
    assert!(rules.contains(&"NOT-FOUND"), "{text}");
    assert!(rules.contains(&"PAGE-COMPLETE"), "{text}");
    assert!(text.contains("duplicate records across pages"), "{text}");
    // Families the set does not serve are skipped, never passed.
    let skipped = report.outcomes.iter().filter(|(_, o)| matches!(o, Outcome::Skipped(_))).count();
    assert!(skipped >= 10, "{text}");
    assert!(text.contains("FAILED") && text.contains("violates PAGE-SIZE"), "{text}");
}

/// Reads `page_size` 0 as 10 (the contract says 20).
#[derive(Debug)]
struct ShortDefault(Arc<dyn HealthcareAdapter>);

#[async_trait]
impl HealthcareAdapter for ShortDefault {
    fn capabilities(&self) -> Capabilities {
        Capabilities::family(Family::Healthcare)
    }

    async fn list_facilities(
        &self,
        ctx: &CallContext,
        mut req: api::ListFacilitiesRequest,
    ) -> Result<api::ListFacilitiesResponse, AdapterError> {
        if req.page_size == 0 {
            req.page_size = 10;
        }
        self.0.list_facilities(ctx, req).await
    }

    async fn get_facility(
        &self,
        ctx: &CallContext,
        req: api::GetFacilityRequest,
    ) -> Result<api::Facility, AdapterError> {
        self.0.get_facility(ctx, req).await
    }
}

#[tokio::test]
async fn a_default_page_size_other_than_20_is_a_page_size_violation() {
    let healthcare = sandbox().healthcare.unwrap();
    let short = AdapterSet { healthcare: Some(Arc::new(ShortDefault(healthcare))), ..Default::default() };
    let report = run(&short).await;
    let violations: Vec<(&str, &str)> = report.violations().map(|(n, v)| (n, v.rule)).collect();
    assert_eq!(violations, [("healthcare/list_facilities page sizes", "PAGE-SIZE")], "{report}");
    assert!(report.to_string().contains("page_size 0 gave 10 records and a next page"), "{report}");
}
