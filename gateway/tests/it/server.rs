//! End to end over TCP: health, reflection (v1 and v1alpha), gRPC-Web over
//! HTTP/1.1 with CORS, and graceful shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::{HealthcareOnly, TestGateway};
use futures_util::StreamExt;
use lienthong::config::Config;
use lienthong_adapter_core::{AdapterError, CallContext, Capabilities, Family, HealthcareAdapter, api};
use lienthong_proto::v1::healthcare_service_client::HealthcareServiceClient;
use lienthong_proto::v1::public_services_service_client::PublicServicesServiceClient;
use prost::Message;
use tokio::sync::Notify;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

#[tokio::test]
async fn health_reports_every_service() {
    let gw = TestGateway::sandbox().await;
    let mut h = HealthClient::new(gw.channel.clone());
    for service in lienthong::server::SERVICE_NAMES.iter().chain([&""]) {
        let r = h.check(HealthCheckRequest { service: (*service).into() }).await.unwrap().into_inner();
        assert_eq!(r.status, ServingStatus::Serving as i32, "{service}");
    }
    let e = h.check(HealthCheckRequest { service: "lienthong.v1.Nope".into() }).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
}

#[tokio::test]
async fn reflection_answers_in_v1_and_v1alpha() {
    let gw = TestGateway::sandbox().await;
    let expected = |names: Vec<String>| {
        for s in lienthong::server::SERVICE_NAMES
            .iter()
            .chain(&["lienthong.sandbox.v1.SandboxIdentityService", "grpc.health.v1.Health"])
        {
            assert!(names.iter().any(|n| n == s), "{s} missing from {names:?}");
        }
    };

    {
        use tonic_reflection::pb::v1::ServerReflectionRequest;
        use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
        let mut c = ServerReflectionClient::new(gw.channel.clone());
        let list = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let symbol = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol("lienthong.v1.PublicServicesService".into())),
        };
        let mut replies = c.server_reflection_info(tokio_stream::iter([list, symbol])).await.unwrap().into_inner();
        match replies.next().await.unwrap().unwrap().message_response.unwrap() {
            MessageResponse::ListServicesResponse(l) => expected(l.service.into_iter().map(|s| s.name).collect()),
            other => panic!("{other:?}"),
        }
        match replies.next().await.unwrap().unwrap().message_response.unwrap() {
            MessageResponse::FileDescriptorResponse(f) => {
                let file = prost_types::FileDescriptorProto::decode(&*f.file_descriptor_proto[0]).unwrap();
                assert_eq!(file.name(), "lienthong/v1/public_services.proto");
            }
            other => panic!("{other:?}"),
        }
    }
    {
        use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
        let mut c = ServerReflectionClient::new(gw.channel.clone());
        let list = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut replies = c.server_reflection_info(tokio_stream::iter([list])).await.unwrap().into_inner();
        match replies.next().await.unwrap().unwrap().message_response.unwrap() {
            MessageResponse::ListServicesResponse(l) => expected(l.service.into_iter().map(|s| s.name).collect()),
            other => panic!("{other:?}"),
        }
    }
}

/// A gRPC-Web frame: flag byte, big-endian length, payload.
fn frame(flag: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![flag];
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Splits a gRPC-Web body into its message and its trailers text.
fn unframe(body: &[u8]) -> (Vec<u8>, String) {
    let (mut message, mut trailers, mut rest) = (Vec::new(), String::new(), body);
    while rest.len() >= 5 {
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        let payload = &rest[5..5 + len];
        if rest[0] & 0x80 != 0 {
            trailers.push_str(&String::from_utf8_lossy(payload));
        } else {
            message.extend_from_slice(payload);
        }
        rest = &rest[5 + len..];
    }
    (message, trailers)
}

#[tokio::test]
async fn grpc_web_answers_over_http1_with_cors() {
    let gw = TestGateway::sandbox().await;
    let http = reqwest::Client::builder().http1_only().build().unwrap();
    let url = format!("http://{}/lienthong.v1.PublicServicesService/GetProcedure", gw.addr);

    // The browser's preflight.
    let pre = http
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", "https://app.congdanso.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type,x-grpc-web,authorization")
        .send()
        .await
        .unwrap();
    assert!(pre.status().is_success(), "{}", pre.status());
    let allow = pre.headers()["access-control-allow-headers"].to_str().unwrap().to_ascii_lowercase();
    assert!(allow.contains("x-grpc-web") && allow.contains("authorization"), "{allow}");

    let body = frame(0, &api::GetProcedureRequest { procedure_code: "1.000894".into() }.encode_to_vec());
    let r = http
        .post(&url)
        .header("origin", "https://app.congdanso.example")
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    assert_eq!(r.status(), 200);
    let expose = r.headers()["access-control-expose-headers"].to_str().unwrap().to_ascii_lowercase();
    for h in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
        assert!(expose.contains(h), "{expose}");
    }
    let (message, trailers) = unframe(&r.bytes().await.unwrap());
    assert!(trailers.contains("grpc-status:0"), "{trailers}");
    let resp = api::GetProcedureResponse::decode(&*message).unwrap();
    assert_eq!(resp.procedure.unwrap().name, "Thủ tục đăng ký kết hôn");
}

/// A healthcare adapter whose ListFacilities waits until the test releases it.
#[derive(Debug, Default)]
struct Gate {
    entered: Notify,
    inside: std::sync::atomic::AtomicUsize,
    release: Notify,
}

#[async_trait]
impl HealthcareAdapter for Gate {
    fn capabilities(&self) -> Capabilities {
        Capabilities::family(Family::Healthcare)
    }

    async fn list_facilities(
        &self,
        _: &CallContext,
        _: api::ListFacilitiesRequest,
    ) -> Result<api::ListFacilitiesResponse, AdapterError> {
        self.inside.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.entered.notify_one();
        self.release.notified().await;
        Ok(api::ListFacilitiesResponse { total_size: 42, ..Default::default() })
    }
}

async fn gated(drain_timeout: &str) -> (TestGateway, Arc<Gate>) {
    gated_with(drain_timeout, "").await
}

async fn gated_with(drain_timeout: &str, server_extra: &str) -> (TestGateway, Arc<Gate>) {
    let gate = Arc::new(Gate::default());
    let mut registry = lienthong::server::adapter_registry();
    registry.register(Arc::new(HealthcareOnly { kind: "gate", adapter: gate.clone() }));
    let toml = lienthong::config::SANDBOX_DEFAULT
        .replace("healthcare = \"sandbox\"", "healthcare = \"gate\"")
        .replace("drain_timeout = \"10s\"", &format!("drain_timeout = \"{drain_timeout}\"\n{server_extra}"))
        + "\n[adapters.gate]\nkind = \"gate\"\n";
    let config = Config::from_toml(&toml).unwrap();
    (TestGateway::start(config, registry).await, gate)
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_call_finish_and_ends_streams() {
    let (mut gw, gate) = gated("30s").await;
    let mut c = HealthcareServiceClient::new(gw.channel.clone());
    let call = tokio::spawn(async move { c.list_facilities(api::ListFacilitiesRequest::default()).await });
    gate.entered.notified().await;

    let mut watch = PublicServicesServiceClient::new(gw.channel.clone())
        .watch_dossier(api::WatchDossierRequest { dossier_code: "000.30.67.H29-251114-0001".into() })
        .await
        .unwrap()
        .into_inner();
    assert!(watch.next().await.unwrap().is_ok());
    let mut health = HealthClient::new(gw.channel.clone())
        .watch(HealthCheckRequest { service: String::new() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.next().await.unwrap().unwrap().status, ServingStatus::Serving as i32);

    let server = gw.shutdown();
    // The stream ends cleanly, telling the watcher to come back.
    let end = watch.next().await.unwrap().unwrap_err();
    assert_eq!(end.code(), Code::Unavailable);
    assert!(watch.next().await.is_none());
    // The whole server's health turns NOT_SERVING and the health watch
    // ends at once (it would otherwise hold the drain).
    let mut statuses = Vec::new();
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(5), health.next()).await.unwrap() {
            Some(Ok(update)) => statuses.push(update.status),
            Some(Err(e)) => break e,
            None => panic!("the health watch ended without a status"),
        }
    };
    assert_eq!(statuses.last(), Some(&(ServingStatus::NotServing as i32)), "{statuses:?}");
    assert_eq!(ended.code(), Code::Unavailable);
    // The server waits for the in-flight call...
    assert!(!server.is_finished());
    gate.release.notify_one();
    let answer = call.await.unwrap().unwrap().into_inner();
    assert_eq!(answer.total_size, 42);
    // ...then stops.
    tokio::time::timeout(Duration::from_secs(30), server).await.unwrap().unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_drain_timeout_bounds_shutdown() {
    let (mut gw, gate) = gated("5s").await;
    let mut c = HealthcareServiceClient::new(gw.channel.clone());
    let call = tokio::spawn(async move { c.list_facilities(api::ListFacilitiesRequest::default()).await });
    gate.entered.notified().await;
    let started = tokio::time::Instant::now();
    let server = gw.shutdown();
    // Drive the paused clock in small steps until the server gives up waiting.
    let mut steps = 0;
    let result = loop {
        tokio::select! {
            biased;
            result = &mut *server => break result,
            _ = tokio::time::advance(Duration::from_millis(100)) => {}
        }
        steps += 1;
        assert!(steps < 200, "the server kept waiting past its drain timeout");
    };
    result.unwrap().unwrap();
    let waited = started.elapsed();
    assert!((Duration::from_secs(5)..Duration::from_secs(6)).contains(&waited), "{waited:?}");
    // serve() returned although the call is still held: the process exits
    // and cuts it, rather than waiting for it.
    assert!(!call.is_finished());
    call.abort();
}

#[tokio::test]
async fn beyond_the_concurrency_limit_calls_are_shed_at_once() {
    let (gw, gate) = gated_with("30s", "max_concurrent_requests = 2").await;
    let held = common::hold_facility_lists(&gw, &gate.inside, 2).await;
    // The third call is refused without waiting.
    let e = PublicServicesServiceClient::new(gw.channel.clone())
        .get_procedure(api::GetProcedureRequest { procedure_code: "1.000894".into() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    assert!(e.message().contains("overloaded"), "{}", e.message());
    // Health checks still answer.
    let h = HealthClient::new(gw.channel.clone()).check(HealthCheckRequest { service: String::new() }).await.unwrap();
    assert_eq!(h.into_inner().status, ServingStatus::Serving as i32);
    // Once the held calls finish, calls are served again.
    gate.release.notify_waiters();
    for h in held {
        assert!(h.await.unwrap().is_ok());
    }
    let ok = PublicServicesServiceClient::new(gw.channel.clone())
        .get_procedure(api::GetProcedureRequest { procedure_code: "1.000894".into() })
        .await;
    assert!(ok.is_ok());
}

/// The whole server's health and `/readyz`, polled until `serving` (with a
/// deadline), while `probe` keeps calling.
async fn wait_for_serving(gw: &TestGateway, serving: bool, probe: bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if probe {
            // A probe that is shed while the slots are held.
            let _ = PublicServicesServiceClient::new(gw.channel.clone())
                .get_procedure(api::GetProcedureRequest { procedure_code: "1.000894".into() })
                .await;
        }
        let health = HealthClient::new(gw.channel.clone())
            .check(HealthCheckRequest { service: String::new() })
            .await
            .unwrap()
            .into_inner()
            .status;
        let ready = reqwest::get(format!("http://{}/readyz", gw.ops_addr)).await.unwrap().status().is_success();
        let want = if serving { ServingStatus::Serving } else { ServingStatus::NotServing } as i32;
        if health == want && ready == serving {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "health {health}, ready {ready}; expected serving = {serving}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn readiness_and_health_say_so_while_most_calls_are_shed() {
    let gate = Arc::new(Gate::default());
    let mut registry = lienthong::server::adapter_registry();
    registry.register(Arc::new(HealthcareOnly { kind: "gate", adapter: gate.clone() }));
    let toml = lienthong::config::SANDBOX_DEFAULT
        .replace("healthcare = \"sandbox\"", "healthcare = \"gate\"")
        .replace("drain_timeout = \"10s\"", "drain_timeout = \"10s\"\nmax_concurrent_requests = 2")
        + "\n[adapters.gate]\nkind = \"gate\"\n\n[telemetry]\nunready_after_shedding = \"2s\"\n";
    let gw = TestGateway::start(Config::from_toml(&toml).unwrap(), registry).await;
    let held = common::hold_facility_lists(&gw, &gate.inside, 2).await;
    // Probes every 300 ms, every one shed: unready and NOT_SERVING.
    wait_for_serving(&gw, false, true).await;
    // Once the held calls finish and the window passes, ready again.
    gate.release.notify_waiters();
    for h in held {
        assert!(h.await.unwrap().is_ok());
    }
    wait_for_serving(&gw, true, false).await;
}
