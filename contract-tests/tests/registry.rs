//! The registry adapter against a fake public-service portal over real HTTP:
//! the contract suite, dossiers, polling feeding WatchDossier, and faults.

// Test helpers may unwrap: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures_util::StreamExt;
use lienthong_adapter_core::{AdapterFactory, AdapterSet, BuildContext, CallContext, ErrorKind, api};
use lienthong_adapter_registry_http::RegistryFactory;
use lienthong_contract_tests::Outcome;
use lienthong_contract_tests::fakes::{FakePortal, Fault};
use serde_json::json;

const LAN_BIRTH: &str = "000.30.67.H29-251114-0001";

async fn adapter(portal: &FakePortal) -> AdapterSet {
    let options = json!({
        "base_url": portal.url(), "allow_insecure_http": true, "timeout": "2s",
        "updates": {"mode": "poll", "poll_interval": "100ms"},
    });
    RegistryFactory.build(BuildContext::new("test", options)).await.unwrap()
}

fn ctx() -> CallContext {
    CallContext::anonymous("79")
}

#[tokio::test]
async fn the_registry_adapter_passes_the_contract_suite() {
    let portal = FakePortal::start().await.unwrap();
    // The portal holds the sandbox citizens' dossiers: two of them are the
    // test citizens, with the sandbox's tokens (which the portal reads).
    let sandbox = lienthong_adapter_sandbox::Sandbox::new(Default::default()).unwrap().into_set();
    let target =
        lienthong_contract_tests::Target::new(adapter(&portal).await, "79").with_demo_citizens_of(&sandbox).await;
    assert!(target.citizens.is_some());
    let report = lienthong_contract_tests::run_target(&target).await;
    let (_, failed, _) = report.counts();
    assert_eq!((failed, report.warnings().count()), (0, 0), "{report}");
    // Every public-services case ran: agencies, procedures, the citizens'
    // dossiers, ownership, watching.
    let skipped = report.outcomes.iter().filter(|(n, o)| n.starts_with("public") && matches!(o, Outcome::Skipped(_)));
    assert_eq!(skipped.count(), 0, "{report}");
}

#[tokio::test]
async fn dossiers_come_with_their_owner() {
    let portal = FakePortal::start().await.unwrap();
    let p = adapter(&portal).await.public_services.unwrap();
    let d = p.get_dossier(&ctx(), api::GetDossierRequest { dossier_code: LAN_BIRTH.into() }).await.unwrap();
    assert_eq!(d.owner.expose(), "079190012345");
    assert_eq!(d.dossier.status(), api::DossierStatus::Received);
    assert_eq!(d.dossier.applicant.unwrap().masked_id_number, "********2345");
    let proc = p.get_procedure(&ctx(), api::GetProcedureRequest { procedure_code: "1.000894".into() }).await.unwrap();
    assert_eq!(proc.name, "Thủ tục đăng ký kết hôn");
    assert_eq!(proc.online_level(), api::OnlineLevel::Partial);
    // A hostile code stays one path segment.
    let e = p.get_dossier(&ctx(), api::GetDossierRequest { dossier_code: "../agencies".into() }).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
}

/// The next item of a watch, waiting at most 10 s (polling runs every 100 ms).
async fn next(
    w: &mut lienthong_adapter_core::DossierStream,
) -> Option<Result<lienthong_adapter_core::OwnedDossier, lienthong_adapter_core::AdapterError>> {
    tokio::time::timeout(Duration::from_secs(10), w.next()).await.expect("a change within 10 s")
}

#[tokio::test]
async fn polling_feeds_watch_dossier_until_final() {
    let portal = FakePortal::start().await.unwrap();
    let p = adapter(&portal).await.public_services.unwrap();
    let mut watch = p.watch_dossier(&ctx(), api::WatchDossierRequest { dossier_code: LAN_BIRTH.into() }).await.unwrap();
    let first = next(&mut watch).await.unwrap().unwrap();
    assert_eq!(first.dossier.status(), api::DossierStatus::Received);
    portal.advance(LAN_BIRTH, 4);
    assert_eq!(next(&mut watch).await.unwrap().unwrap().dossier.status(), api::DossierStatus::Processing);
    portal.advance(LAN_BIRTH, 9);
    portal.advance(LAN_BIRTH, 10);
    // Changes may be seen one by one or together; the stream ends on the final one.
    let mut last = None;
    while let Some(item) = next(&mut watch).await {
        last = Some(item.unwrap());
    }
    let last = last.unwrap();
    assert!(last.dossier.r#final && last.dossier.status() == api::DossierStatus::ResultReturned);
    assert_eq!(last.dossier.history.len(), 5);
}

#[tokio::test]
async fn portal_faults_become_clear_error_kinds() {
    let portal = FakePortal::start().await.unwrap();
    let p = adapter(&portal).await.public_services.unwrap();
    for (fault, kind) in [
        (Fault::Status(502), ErrorKind::Unavailable),
        (Fault::TooManyRequests { retry_after_secs: 4 }, ErrorKind::RateLimited),
        (Fault::MalformedJson, ErrorKind::Unavailable),
        (Fault::Truncated, ErrorKind::Unavailable),
        (Fault::Latency(Duration::from_secs(3)), ErrorKind::DeadlineExceeded),
    ] {
        portal.faults.inject("/agencies", fault.clone());
        let e = p.list_agencies(&ctx(), api::ListAgenciesRequest::default()).await.unwrap_err();
        assert_eq!(e.kind(), kind, "{fault:?}: {e}");
    }
}

#[test]
fn webhooks_need_a_long_secret() {
    let problems = RegistryFactory.validate(&json!({"base_url": "https://portal", "updates": {"mode": "webhook"}}));
    assert!(problems.iter().any(|p| p.starts_with("updates.webhook_secret")), "{problems:?}");
    let problems =
        RegistryFactory.validate(&json!({"base_url": "https://portal", "updates": {"webhook_secret": "short"}}));
    assert!(problems.iter().any(|p| p.contains("32 bytes")), "{problems:?}");
}

#[tokio::test]
async fn garbage_dossiers_are_unavailable() {
    let portal = FakePortal::start().await.unwrap();
    let p = adapter(&portal).await.public_services.unwrap();
    for body in [
        r#"{"code": "x"}"#,
        r#"{"code": "x", "procedure_code": "p", "agency_code": "a", "applicant_id_number": "123", "status": 4}"#,
        r#"{"code": "x", "procedure_code": "p", "agency_code": "a", "applicant_id_number": "079190012345", "status": 42}"#,
    ] {
        portal.faults.inject("/dossiers/", Fault::Body(body.to_owned()));
        let e = p.get_dossier(&ctx(), api::GetDossierRequest { dossier_code: LAN_BIRTH.into() }).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{body}: {e}");
    }
}
