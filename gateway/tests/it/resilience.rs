//! End to end over TCP: what protects an upstream, whoever wrote its
//! adapter — the circuit breaker, the bulkhead, retries, the caller's
//! deadline reaching the upstream request — and the operators' admin API.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use common::{TestGateway, with_healthcare};
use lienthong_adapter_core::{AdapterError, CallContext, Capabilities, ErrorKind, Family, HealthcareAdapter, api};
use lienthong_contract_tests::fakes::{FakePortal, Fault};
use lienthong_proto::admin::v1::admin_service_client::AdminServiceClient;
use lienthong_proto::admin::v1::invalidate_cache_request::Target;
use lienthong_proto::admin::v1::{BreakerState, InvalidateCacheRequest, ListAdapterInstancesRequest};
use lienthong_proto::v1::healthcare_service_client::HealthcareServiceClient;
use lienthong_proto::v1::public_services_service_client::PublicServicesServiceClient;
use prost::Message;
use tokio::sync::Notify;
use tonic::Code;

/// A healthcare adapter that fails the first `failures` calls with `kind`,
/// then answers; GetFacility only. ListFacilities waits for `release`.
#[derive(Debug)]
struct Scripted {
    calls: AtomicUsize,
    failures: usize,
    kind: ErrorKind,
    inside: AtomicUsize,
    release: Notify,
}

impl Scripted {
    fn new(failures: usize, kind: ErrorKind) -> Arc<Self> {
        Arc::new(Self {
            calls: AtomicUsize::new(0),
            failures,
            kind,
            inside: AtomicUsize::new(0),
            release: Notify::new(),
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl HealthcareAdapter for Scripted {
    fn capabilities(&self) -> Capabilities {
        Capabilities::family(Family::Healthcare)
    }

    async fn get_facility(&self, _: &CallContext, r: api::GetFacilityRequest) -> Result<api::Facility, AdapterError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) < self.failures {
            return Err(AdapterError::new(self.kind, "the upstream is down"));
        }
        Ok(api::Facility { facility_code: r.facility_code, ..Default::default() })
    }

    async fn list_facilities(
        &self,
        _: &CallContext,
        _: api::ListFacilitiesRequest,
    ) -> Result<api::ListFacilitiesResponse, AdapterError> {
        self.inside.fetch_add(1, Ordering::SeqCst);
        self.release.notified().await;
        Ok(api::ListFacilitiesResponse { total_size: 1, ..Default::default() })
    }
}

fn facility(code: &str) -> api::GetFacilityRequest {
    api::GetFacilityRequest { facility_code: code.into() }
}

const ADMIN_TOKEN: &str = "an-operator-token-for-tests";

fn admin_config() -> String {
    format!("[admin]\ntoken_sha256 = [\"{}\"]\n", lienthong::crypto::digest_hex(ADMIN_TOKEN))
}

fn admin<T>(message: T) -> tonic::Request<T> {
    common::request(message, &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))])
}

#[tokio::test]
async fn a_temporary_failure_is_retried_and_the_caller_never_sees_it() {
    let adapter = Scripted::new(1, ErrorKind::Unavailable);
    let gw = with_healthcare("flaky", adapter.clone(), "").await;
    let mut c = HealthcareServiceClient::new(gw.channel.clone());
    let f = c.get_facility(facility("79001")).await.unwrap().into_inner().facility.unwrap();
    assert_eq!(f.facility_code, "79001");
    assert_eq!(adapter.calls(), 2);
    // A permanent failure is not retried.
    let adapter = Scripted::new(1, ErrorKind::InvalidArgument);
    let gw = with_healthcare("picky", adapter.clone(), "").await;
    let e = HealthcareServiceClient::new(gw.channel.clone()).get_facility(facility("79001")).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(adapter.calls(), 1);
}

#[tokio::test]
async fn a_failing_upstream_opens_its_breaker_and_operators_see_it() {
    let down = Scripted::new(usize::MAX, ErrorKind::Unavailable);
    let extra = format!(
        "[breaker]\nfailures_to_open = 3\nopen_for = \"1h\"\n\n[retry]\nmax_attempts = 1\n\n{}",
        admin_config()
    );
    let gw = with_healthcare("down", down.clone(), &extra).await;
    let mut c = HealthcareServiceClient::new(gw.channel.clone());
    for code in ["79001", "79002", "79003"] {
        let e = c.get_facility(facility(code)).await.unwrap_err();
        assert_eq!((e.code(), e.message()), (Code::Unavailable, "the upstream is down"));
    }
    assert_eq!(down.calls(), 3);
    // Open: answered at once, without reaching the upstream, with a delay.
    let e = c.get_facility(facility("79004")).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    assert!(e.message().contains("circuit breaker is open"), "{}", e.message());
    use tonic_types::StatusExt;
    assert!(e.get_details_retry_info().unwrap().retry_delay.unwrap() > Duration::from_secs(3000));
    assert_eq!(down.calls(), 3);
    // Other families are unaffected.
    let ok = PublicServicesServiceClient::new(gw.channel.clone())
        .get_procedure(api::GetProcedureRequest { procedure_code: "1.000894".into() })
        .await;
    assert!(ok.is_ok());
    // Operators see which breaker is open, and why.
    let list = AdminServiceClient::new(gw.channel.clone())
        .list_adapter_instances(admin(ListAdapterInstancesRequest {}))
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = list.instances.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["down", "sandbox"]);
    let (d, s) = (&list.instances[0], &list.instances[1]);
    assert_eq!((d.kind.as_str(), d.routes.as_slice()), ("down", ["79/healthcare".to_owned()].as_slice()));
    assert_eq!(d.breaker_state(), BreakerState::Open);
    assert_eq!((d.consecutive_failures, d.window_failures, d.times_opened), (3, 3, 1));
    assert!(d.retry_in.unwrap().seconds > 3000);
    assert_eq!(s.breaker_state(), BreakerState::Closed);
    assert_eq!(s.routes.len(), 5);
}

#[tokio::test]
async fn a_full_bulkhead_refuses_at_once_and_frees_up() {
    let slow = Scripted::new(0, ErrorKind::Unavailable);
    let gw =
        with_healthcare("slow", slow.clone(), "[bulkhead]\nper_instance = { slow = 2 }\nmax_wait = \"0s\"\n").await;
    let held = common::hold_facility_lists(&gw, &slow.inside, 2).await;
    let mut c = HealthcareServiceClient::new(gw.channel.clone());
    let e = c.list_facilities(api::ListFacilitiesRequest { page_size: 9, ..Default::default() }).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    assert!(e.message().contains("too many calls in flight"), "{}", e.message());
    // The sandbox's instance has its own bulkhead.
    let ok = PublicServicesServiceClient::new(gw.channel.clone())
        .get_procedure(api::GetProcedureRequest { procedure_code: "1.000894".into() })
        .await;
    assert!(ok.is_ok());
    slow.release.notify_waiters();
    for h in held {
        assert_eq!(h.await.unwrap().unwrap().into_inner().total_size, 1);
    }
    assert!(c.get_facility(facility("79001")).await.is_ok());
}

#[tokio::test]
async fn the_callers_deadline_reaches_the_upstream_request() {
    let portal = FakePortal::start().await.unwrap();
    let toml = format!(
        "[anonymous]\nenabled = true\nprovinces = [\"79\"]\n\n[provinces.\"79\"]\npublic_services = \"portal\"\n\n\
         [adapters.portal]\nkind = \"registry-http\"\nbase_url = \"{}\"\nallow_insecure_http = true\ntimeout = \"60s\"\n\n\
         [adapters.portal.updates]\nmode = \"poll\"\n\n\
         [retry]\nmax_attempts = 1\n",
        portal.url()
    );
    let gw = TestGateway::with_toml(&toml, lienthong::server::adapter_registry()).await;
    // The portal would hold the request for an hour.
    portal.faults.inject("/agencies", Fault::Latency(Duration::from_secs(3600)));
    let mut c = PublicServicesServiceClient::new(gw.channel.clone());
    let mut request = tonic::Request::new(api::GetAgencyRequest { agency_code: "000.00.06.H29".into() });
    request.set_timeout(Duration::from_millis(300));
    let e = c.get_agency(request).await.unwrap_err();
    // The client's own timer and the gateway's fire together.
    assert!(matches!(e.code(), Code::DeadlineExceeded | Code::Cancelled), "{e:?}");
    assert_eq!(portal.faults.hits("/agencies/000.00.06.H29"), 1);
    // The upstream request was cut at the deadline, not left for the hour.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while portal.faults.in_flight() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "the upstream request outlived the caller's deadline");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn operators_invalidate_cached_answers_by_dataset_family_or_request() {
    let gw = TestGateway::with_toml(
        &format!("{}\n{}", lienthong::config::SANDBOX_DEFAULT, admin_config()),
        lienthong::server::adapter_registry(),
    )
    .await;
    let mut ps = PublicServicesServiceClient::new(gw.channel.clone());
    let mut h = HealthcareServiceClient::new(gw.channel.clone());
    let state = |m: &tonic::metadata::MetadataMap| m.get("x-lienthong-cache").unwrap().to_str().unwrap().to_owned();
    let procedure = |code: &str| api::GetProcedureRequest { procedure_code: code.into() };
    for code in ["1.000894", "1.001193"] {
        ps.get_procedure(procedure(code)).await.unwrap();
    }
    h.get_facility(facility("79001")).await.unwrap();
    h.get_facility(facility("79002")).await.unwrap();
    let mut a = AdminServiceClient::new(gw.channel.clone());
    let invalidate = |target: Target, province: &str| {
        admin(InvalidateCacheRequest { province: province.into(), target: Some(target) })
    };

    // One request.
    let any = prost_types::Any {
        type_url: "type.googleapis.com/lienthong.v1.GetProcedureRequest".into(),
        value: procedure("1.000894").encode_to_vec(),
    };
    let r = a.invalidate_cache(invalidate(Target::Request(any), "79")).await.unwrap().into_inner();
    assert_eq!(r.removed, 1);
    assert_eq!(state(ps.get_procedure(procedure("1.000894")).await.unwrap().metadata()), "miss");
    assert_eq!(state(ps.get_procedure(procedure("1.001193")).await.unwrap().metadata()), "hit");
    // A dataset: both procedures; the facilities stay.
    let r = a.invalidate_cache(invalidate(Target::Dataset("procedures".into()), "")).await.unwrap().into_inner();
    assert_eq!(r.removed, 2);
    assert_eq!(state(h.get_facility(facility("79001")).await.unwrap().metadata()), "hit");
    // Another province's answers are not touched; a family is.
    let r = a.invalidate_cache(invalidate(Target::Family("healthcare".into()), "01")).await.unwrap().into_inner();
    assert_eq!(r.removed, 0);
    let r = a.invalidate_cache(invalidate(Target::Family("healthcare".into()), "79")).await.unwrap().into_inner();
    assert_eq!(r.removed, 2);
    assert_eq!(state(h.get_facility(facility("79001")).await.unwrap().metadata()), "miss");

    // Mistakes are named; no token, no admin.
    let e = a.invalidate_cache(invalidate(Target::Family("health".into()), "")).await.unwrap_err();
    assert_eq!(common::violated_fields(&e), ["family"]);
    let e = a.invalidate_cache(admin(InvalidateCacheRequest::default())).await.unwrap_err();
    assert_eq!(common::violated_fields(&e), ["target"]);
    let e = a
        .invalidate_cache(InvalidateCacheRequest { province: String::new(), target: Some(Target::All(true)) })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let wrong = common::request(
        InvalidateCacheRequest { province: String::new(), target: Some(Target::All(true)) },
        &[("authorization", "Bearer not-the-token")],
    );
    assert_eq!(a.invalidate_cache(wrong).await.unwrap_err().code(), Code::Unauthenticated);
    let all = a.invalidate_cache(invalidate(Target::All(true), "")).await.unwrap().into_inner();
    assert_eq!(all.removed, 1, "only facility 79001 was left");
}

#[tokio::test]
async fn the_admin_api_is_off_without_a_configured_token() {
    let gw = TestGateway::sandbox().await;
    let e = AdminServiceClient::new(gw.channel.clone())
        .list_adapter_instances(admin(ListAdapterInstancesRequest {}))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().contains("token_sha256"), "{}", e.message());
}

#[tokio::test]
async fn oversized_requests_and_headers_are_refused_and_the_gateway_goes_on() {
    let gw = TestGateway::sandbox().await;
    let mut h = HealthcareServiceClient::new(gw.channel.clone());
    let huge = api::ListFacilitiesRequest { text: "a".repeat(100 * 1024), ..Default::default() };
    let e = h.list_facilities(huge).await.unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange, "{e:?}");
    // A header block over the limit is refused by HTTP/2 itself.
    let big_header = common::request(facility("79001"), &[("x-padding", &"p".repeat(32 * 1024))]);
    assert!(h.get_facility(big_header).await.is_err());
    // The longest grpc-timeout there is (8 digits of hours) is a deadline too.
    let far = common::request(facility("79002"), &[("grpc-timeout", "99999999H")]);
    assert!(h.get_facility(far).await.is_ok());
    // And the gateway goes on serving.
    let fresh = HealthcareServiceClient::new(
        tonic::transport::Endpoint::from_shared(format!("http://{}", gw.addr)).unwrap().connect_lazy(),
    )
    .get_facility(facility("79001"))
    .await;
    assert!(fresh.is_ok(), "{fresh:?}");
}
