//! The warehouse adapter against a fake warehouse speaking real HTTP, shaped
//! unlike our API: the contract suite, OAuth2 tokens, and upstream faults.

// Test helpers may unwrap: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use lienthong_adapter_core::{AdapterFactory, AdapterSet, BuildContext, CallContext, ErrorKind, api};
use lienthong_adapter_warehouse_http::WarehouseFactory;
use lienthong_contract_tests::fakes::{FakeWarehouse, Fault};
use lienthong_contract_tests::{Outcome, run};

async fn adapter(wh: &FakeWarehouse) -> AdapterSet {
    WarehouseFactory.build(BuildContext::new("test", wh.adapter_options())).await.unwrap()
}

fn ctx() -> CallContext {
    CallContext::anonymous("79")
}

#[tokio::test]
async fn the_warehouse_adapter_passes_the_contract_suite() {
    let wh = FakeWarehouse::start().await.unwrap();
    let report = run(&adapter(&wh).await).await;
    let (passed, failed, skipped) = report.counts();
    assert_eq!(failed, 0, "{report}");
    assert!(passed >= 9, "{report}");
    // Families the warehouse does not serve (public services) are skipped.
    assert!(skipped >= 1, "{report}");
    assert!(report.outcomes.iter().any(|(n, o)| n.starts_with("public_services") && matches!(o, Outcome::Skipped(_))));
    // One token served the whole suite.
    assert_eq!(wh.tokens_issued(), 1);
}

#[tokio::test]
async fn records_are_mapped_from_another_shape() {
    let wh = FakeWarehouse::start().await.unwrap();
    let set = adapter(&wh).await;
    let h = set.healthcare.unwrap();
    let f = h.get_facility(&ctx(), api::GetFacilityRequest { facility_code: "79001".into() }).await.unwrap();
    assert_eq!(f.name, "Bệnh viện Chợ Rẫy");
    assert_eq!(f.r#type(), api::FacilityType::GeneralHospital);
    assert_eq!(f.ownership(), api::Ownership::Public);
    assert!(f.accepts_health_insurance && f.emergency_24h);
    assert!(f.specialties.contains(&"Ung bướu".to_owned()));
    assert_eq!(f.address.unwrap().ward_name, "Phường Chợ Lớn");
    let loc = f.location.unwrap();
    assert!((loc.latitude - 10.7579).abs() < 1e-6, "a latitude sent as a string is read");

    // Filters travel as the warehouse's own values.
    let r = h
        .list_facilities(
            &ctx(),
            api::ListFacilitiesRequest {
                r#type: api::FacilityType::Pharmacy as i32,
                page_size: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(!r.facilities.is_empty() && r.facilities.iter().all(|f| f.r#type() == api::FacilityType::Pharmacy));
    assert_eq!(r.total_size as usize, r.facilities.len());

    let cams = set.transport.unwrap();
    let c = cams.get_traffic_camera(&ctx(), api::GetTrafficCameraRequest { camera_id: "0".into() }).await.unwrap();
    assert_eq!(c.name, "Trần Quang Khải - Trần Khắc Chân");
    assert_eq!(c.updated_time.unwrap().seconds, 1_763_542_816);
    assert!(c.location.is_some() && !c.streets.is_empty());

    let p = set.construction.unwrap();
    let proj = p
        .get_housing_project(&ctx(), api::GetHousingProjectRequest { project_id: "79-DANO-0001".into() })
        .await
        .unwrap();
    assert_eq!(proj.completion_date, Some(api::Date { year: 2018, month: 12, day: 31 }));
}

#[tokio::test]
async fn unknown_ids_and_hostile_ids_are_not_found() {
    let wh = FakeWarehouse::start().await.unwrap();
    let h = adapter(&wh).await.healthcare.unwrap();
    for id in ["ZZ999", "../co-so-y-te", "79001?x=1", "79001/.."] {
        let e = h.get_facility(&ctx(), api::GetFacilityRequest { facility_code: id.into() }).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{id}: {e}");
    }
}

#[tokio::test]
async fn an_unsupported_filter_is_a_clear_invalid_argument() {
    let wh = FakeWarehouse::start().await.unwrap();
    let mut opts = wh.adapter_options();
    opts["datasets"]["facilities"]["filters"].as_object_mut().unwrap().remove("ward_code");
    let narrow = WarehouseFactory.build(BuildContext::new("narrow", opts)).await.unwrap();
    let e = narrow
        .healthcare
        .unwrap()
        .list_facilities(&ctx(), api::ListFacilitiesRequest { ward_code: "26740".into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!((e.kind(), e.field()), (ErrorKind::InvalidArgument, Some("ward_code")));
    assert!(e.message().contains("cannot filter facilities by ward_code"), "{e}");
}

#[tokio::test]
async fn tokens_are_cached_refreshed_before_expiry_and_after_a_401() {
    let wh = FakeWarehouse::start().await.unwrap();
    let h = adapter(&wh).await.healthcare.unwrap();
    let c = ctx();
    let list = || h.list_facilities(&c, api::ListFacilitiesRequest::default());
    for _ in 0..5 {
        list().await.unwrap();
    }
    assert_eq!(wh.tokens_issued(), 1);
    // The warehouse forgets our token: one 401, one refresh, success.
    wh.revoke_tokens();
    list().await.unwrap();
    assert_eq!(wh.tokens_issued(), 2);
    // A token living less than refresh_before (60 s) is kept for half its
    // life, not fetched again for every call.
    wh.set_token_lifetime(30);
    wh.revoke_tokens();
    list().await.unwrap();
    list().await.unwrap();
    list().await.unwrap();
    assert_eq!(wh.tokens_issued(), 3);
}

#[tokio::test]
async fn upstream_faults_become_clear_error_kinds() {
    let wh = FakeWarehouse::start().await.unwrap();
    let h = adapter(&wh).await.healthcare.unwrap();
    h.list_facilities(&ctx(), api::ListFacilitiesRequest::default()).await.unwrap();
    let cases = [
        (Fault::Status(503), ErrorKind::Unavailable, true),
        (Fault::Status(400), ErrorKind::Unavailable, false),
        (Fault::TooManyRequests { retry_after_secs: 9 }, ErrorKind::RateLimited, true),
        // It answered: a data problem, not retried, not held against it.
        (Fault::MalformedJson, ErrorKind::Unavailable, false),
        (Fault::Truncated, ErrorKind::Unavailable, true),
        (Fault::Reset, ErrorKind::Unavailable, true),
        (Fault::Latency(Duration::from_secs(4)), ErrorKind::DeadlineExceeded, true),
        (Fault::Drip { delay: Duration::from_millis(50) }, ErrorKind::DeadlineExceeded, true),
    ];
    for (fault, kind, temporary) in cases {
        wh.faults.inject("/api/co-so-y-te", fault.clone());
        let e = h.list_facilities(&ctx(), api::ListFacilitiesRequest::default()).await.unwrap_err();
        assert_eq!((e.kind(), e.is_temporary()), (kind, temporary), "{fault:?}: {e}");
        if kind == ErrorKind::RateLimited {
            assert_eq!(e.retry_after(), Some(Duration::from_secs(9)));
        }
        assert!(!e.message().contains("s3cret"));
    }
    wh.faults.clear();
    assert!(h.list_facilities(&ctx(), api::ListFacilitiesRequest::default()).await.is_ok());
}

#[tokio::test]
async fn the_callers_deadline_caps_the_upstream_timeout() {
    let wh = FakeWarehouse::start().await.unwrap();
    let h = adapter(&wh).await.healthcare.unwrap();
    h.list_facilities(&ctx(), api::ListFacilitiesRequest::default()).await.unwrap();
    wh.faults.inject("/api/co-so-y-te", Fault::Latency(Duration::from_millis(1500)));
    let mut c = ctx();
    c.deadline = Some(tokio::time::Instant::now() + Duration::from_millis(200));
    let started = std::time::Instant::now();
    let e = h.list_facilities(&c, api::ListFacilitiesRequest::default()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DeadlineExceeded);
    // Gave up at the caller's deadline, not at the 2 s adapter timeout.
    assert!(started.elapsed() < Duration::from_millis(1400), "{:?}", started.elapsed());
    // A deadline already past does not reach the warehouse at all.
    let before = wh.faults.hits("/api/co-so-y-te");
    c.deadline = Some(tokio::time::Instant::now());
    assert_eq!(
        h.list_facilities(&c, api::ListFacilitiesRequest::default()).await.unwrap_err().kind(),
        ErrorKind::DeadlineExceeded
    );
    assert_eq!(wh.faults.hits("/api/co-so-y-te"), before);
}

#[test]
fn config_problems_are_all_reported() {
    let options = serde_json::json!({
        "base_url": "ftp://warehouse", "timeout": "0s",
        "datasets": {
            "parking": {"path": "/p", "fields": {}},
            "facilities": {"path": "co-so", "get_path": "/x", "fields": {"name": "ten", "colour": "mau"},
                           "values": {"type": {"BV": "CASTLE"}}, "filters": {"smell": "s"}},
        },
    });
    let problems = WarehouseFactory.validate(&options);
    for needle in [
        "base_url:",
        "timeout:",
        "datasets.parking: unknown dataset",
        "datasets.facilities.path:",
        "datasets.facilities.get_path:",
        "datasets.facilities.fields.facility_code: required",
        "datasets.facilities.fields.colour: unknown field",
        "datasets.facilities.values.type.\"BV\"",
        "datasets.facilities.filters.smell",
    ] {
        assert!(problems.iter().any(|p| p.starts_with(needle) || p.contains(needle)), "{needle}: {problems:#?}");
    }
}

#[tokio::test]
async fn a_garbage_record_is_skipped_in_a_list_and_named_in_a_get() {
    let wh = FakeWarehouse::start().await.unwrap();
    let h = adapter(&wh).await.healthcare.unwrap();
    let good = r#"{"ma": "79002", "ten": "Bệnh viện Nhân dân 115", "toa_do": {"vi_do": 10.77, "kinh_do": 106.66}}"#;
    let bad = [
        (r#"{"ma": "79001"}"#, "name"),
        (r#"{"ma": "79001", "ten": "X", "toa_do": {"vi_do": "north", "kinh_do": 106.7}}"#, "latitude"),
        (r#"{"ma": "79001", "ten": "X", "toa_do": {"vi_do": 95.0, "kinh_do": 106.7}}"#, "latitude"),
    ];
    for (record, field) in bad {
        // In a list: skipped, the rest served.
        let body = format!(r#"{{"data": {{"items": [{record}, {good}], "total": 2}}}}"#);
        wh.faults.inject("/api/co-so-y-te", Fault::Body(body));
        let page = h.list_facilities(&ctx(), api::ListFacilitiesRequest::default()).await.unwrap();
        let codes: Vec<&str> = page.facilities.iter().map(|f| f.facility_code.as_str()).collect();
        assert_eq!(codes, ["79002"], "{record}");
        // Got alone: unavailable, naming the field, not held against the upstream.
        wh.faults.inject("/api/co-so-y-te/79001", Fault::Body(format!(r#"{{"data": {record}}}"#)));
        let e = h.get_facility(&ctx(), api::GetFacilityRequest { facility_code: "79001".into() }).await.unwrap_err();
        assert_eq!((e.kind(), e.is_temporary()), (ErrorKind::Unavailable, false), "{record}: {e}");
        assert!(e.message().contains(field), "{record}: {e}");
        wh.faults.clear();
    }
    for body in [r#"{"data": {"items": {"ma": "79001"}, "total": 1}}"#, r#"[1, 2, 3]"#] {
        wh.faults.inject("/api/co-so-y-te", Fault::Body(body.to_owned()));
        let e = h.list_facilities(&ctx(), api::ListFacilitiesRequest::default()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{body}: {e}");
        assert!(e.message().contains("no records array"), "{body}: {e}");
    }
}
