//! What operators see, checked end to end: spans exported over OTLP/gRPC to
//! an in-process receiver, the `traceparent` a fake upstream received, JSON
//! log lines, and the Prometheus scrape of the ops port.
//!
//! Tracing is process-wide: this test binary installs it once, exporting to
//! a receiver that lives on a runtime of its own for the whole run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::{TestGateway, authed, request};
use lienthong::telemetry::{LogFormat, TelemetryConfig, Tracing};
use lienthong_adapter_core::api;
use lienthong_contract_tests::fakes::{FakePortal, Fault};
use lienthong_proto::v1::identity_service_client::IdentityServiceClient;
use lienthong_proto::v1::public_services_service_client::PublicServicesServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_semantic_conventions::attribute as semconv;
use tonic::Code;

/// Spans as the collector would get them.
#[derive(Debug, Default)]
struct Receiver {
    spans: Mutex<Vec<Span>>,
}

struct Collector(Arc<Receiver>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.spans.lock().unwrap();
        for r in request.into_inner().resource_spans {
            let service = r
                .resource
                .as_ref()
                .and_then(|res| res.attributes.iter().find(|a| a.key == "service.name").and_then(|a| a.value.clone()));
            assert!(
                matches!(service.and_then(|v| v.value), Some(Value::StringValue(s)) if s == "lienthong-test"),
                "spans come with the configured resource"
            );
            spans.extend(r.scope_spans.into_iter().flat_map(|s| s.spans));
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

struct World {
    receiver: Arc<Receiver>,
    tracing: Tracing,
    logs: Arc<Mutex<Vec<u8>>>,
}

#[derive(Clone)]
struct LogSink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The receiver and the process's tracing, started once.
fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
            rt.block_on(async move {
                let receiver = Arc::new(Receiver::default());
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                let incoming = tonic::transport::server::TcpIncoming::from(listener);
                tokio::spawn(
                    tonic::transport::Server::builder()
                        .add_service(TraceServiceServer::new(Collector(receiver.clone())))
                        .serve_with_incoming(incoming),
                );
                let config = TelemetryConfig {
                    otlp_endpoint: Some(format!("http://{addr}")),
                    metrics: false,
                    service_name: "lienthong-test".into(),
                    ..Default::default()
                };
                let logs = Arc::new(Mutex::new(Vec::new()));
                let sink = LogSink(logs.clone());
                let tracing =
                    lienthong::telemetry::init(&config, LogFormat::Json, move || sink.clone(), false).unwrap();
                tx.send(World { receiver, tracing, logs }).unwrap();
                std::future::pending::<()>().await;
            });
        });
        rx.recv().unwrap()
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attr(span: &Span, key: &str) -> Option<Value> {
    span.attributes.iter().find(|a| a.key == key).and_then(|a| a.value.clone()).and_then(|v| v.value)
}

fn attr_str(span: &Span, key: &str) -> Option<String> {
    match attr(span, key)? {
        Value::StringValue(s) => Some(s),
        Value::IntValue(i) => Some(i.to_string()),
        Value::BoolValue(b) => Some(b.to_string()),
        other => Some(format!("{other:?}")),
    }
}

/// Exports what has ended, then waits (with a deadline) until the trace
/// `trace_id` holds a span named `last` (the server span ends last).
async fn trace(trace_id: &str, last: &str) -> Vec<Span> {
    let w = world();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        tokio::task::spawn_blocking(|| world().tracing.flush()).await.unwrap();
        let spans: Vec<Span> =
            w.receiver.spans.lock().unwrap().iter().filter(|s| hex(&s.trace_id) == trace_id).cloned().collect();
        if spans.iter().any(|s| s.name == last) {
            return spans;
        }
        assert!(tokio::time::Instant::now() < deadline, "trace {trace_id} never held {last:?}: {spans:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn named<'s>(spans: &'s [Span], name: &str) -> &'s Span {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span {name:?} in {:?}", spans.iter().map(|s| &s.name).collect::<Vec<_>>()))
}

/// The JSON log lines of trace `trace_id`.
fn log_lines(trace_id: &str) -> Vec<serde_json::Value> {
    let logs = String::from_utf8(world().logs.lock().unwrap().clone()).unwrap();
    logs.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .filter(|l| l["trace_id"] == trace_id)
        .collect()
}

fn child_of(child: &Span, parent: &Span) -> bool {
    child.parent_span_id == parent.span_id
}

const GET_PROCEDURE: &str = "lienthong.v1.PublicServicesService/GetProcedure";

async fn portal_gateway(portal: &FakePortal, extra: &str) -> TestGateway {
    world();
    let toml = format!(
        "[anonymous]\nenabled = true\nprovinces = [\"79\"]\n\n[provinces.\"79\"]\npublic_services = \"portal\"\n\n\
         [adapters.portal]\nkind = \"registry-http\"\nbase_url = \"{}\"\nallow_insecure_http = true\ntimeout = \"10s\"\n\n\
         [adapters.portal.updates]\nmode = \"poll\"\n{extra}",
        portal.url()
    );
    TestGateway::with_toml(&toml, lienthong::server::adapter_registry()).await
}

fn procedure(code: &str) -> api::GetProcedureRequest {
    api::GetProcedureRequest { procedure_code: code.into() }
}

fn trace_id_of<T>(response: &tonic::Response<T>) -> String {
    response.metadata().get("x-lienthong-trace-id").expect("the answer names its trace").to_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_cache_miss_is_one_trace_from_the_server_span_to_the_upstream_request() {
    let portal = FakePortal::start().await.unwrap();
    let gw = portal_gateway(&portal, "").await;
    let mut c = PublicServicesServiceClient::new(gw.channel.clone());
    let answer = c.get_procedure(procedure("1.000894")).await.unwrap();
    assert_eq!(answer.metadata().get("x-lienthong-cache").unwrap(), "miss");
    let id = trace_id_of(&answer);
    let spans = trace(&id, GET_PROCEDURE).await;

    let server = named(&spans, GET_PROCEDURE);
    assert_eq!(server.kind, SpanKind::Server as i32);
    assert!(server.parent_span_id.is_empty(), "a call without traceparent starts a trace");
    for (key, value) in [
        (semconv::RPC_SYSTEM_NAME, "grpc"),
        (semconv::RPC_METHOD, GET_PROCEDURE),
        (semconv::RPC_RESPONSE_STATUS_CODE, "OK"),
        ("lienthong.province", "79"),
        ("lienthong.app", "anonymous"),
        ("lienthong.cache", "miss"),
    ] {
        assert_eq!(attr_str(server, key).as_deref(), Some(value), "server span attribute {key}");
    }
    let limit = named(&spans, "rate limit app");
    assert!(child_of(limit, server));
    assert_eq!(attr_str(limit, "lienthong.decision").as_deref(), Some("allowed"));
    let lookup = named(&spans, "cache lookup");
    assert!(child_of(lookup, server));
    assert_eq!(attr_str(lookup, "lienthong.cache.outcome").as_deref(), Some("miss"));
    let fill = named(&spans, "cache fill");
    assert!(child_of(fill, lookup));
    let adapter = named(&spans, "adapter portal");
    assert!(child_of(adapter, fill));
    assert_eq!(attr_str(adapter, "lienthong.adapter.kind").as_deref(), Some("registry-http"));
    assert_eq!(attr_str(adapter, "lienthong.adapter.instance").as_deref(), Some("portal"));
    let upstream = spans.iter().find(|s| s.kind == SpanKind::Client as i32).expect("an upstream HTTP span");
    assert!(child_of(upstream, adapter));
    assert_eq!(attr_str(upstream, semconv::HTTP_REQUEST_METHOD).as_deref(), Some("GET"));
    assert_eq!(attr_str(upstream, "http.response.status_code").as_deref(), Some("200"));
    assert_eq!(attr_str(upstream, semconv::SERVER_ADDRESS).as_deref(), Some("127.0.0.1"));
    // The upstream request's path (ids live there) is in no attribute.
    assert!(upstream.attributes.iter().all(|a| !format!("{:?}", a.value).contains("1.000894")));

    // Its access log line is in the trace, with what the server span says.
    let access = log_lines(&id).into_iter().find(|l| l["target"] == "lienthong::access").expect("an access log line");
    assert_eq!((access["code"].as_str(), access["method"].as_str()), (Some("OK"), Some(GET_PROCEDURE)));
    assert_eq!(access["span_id"].as_str(), Some(hex(&server.span_id).as_str()));
    // One compact line: the method once, the server span's province and app
    // lifted beside it, no span list, milliseconds to the microsecond.
    assert_eq!((access["cache"].as_str(), access["province"].as_str()), (Some("miss"), Some("79")));
    assert_eq!(access["app"].as_str(), Some("anonymous"));
    assert!(access.get("spans").is_none(), "{access}");
    let ms = access["duration_ms"].as_f64().unwrap();
    assert_eq!((ms * 1000.0).round() / 1000.0, ms, "{ms}");
    assert_eq!(access.to_string().matches(GET_PROCEDURE).count(), 1, "{access}");

    // The fake upstream received the upstream span's context.
    let seen = portal.faults.traceparents();
    let (_, tp) = seen.iter().find(|(_, tp)| tp.contains(&id)).expect("the upstream saw the trace");
    assert_eq!(tp, &format!("00-{id}-{}-01", hex(&upstream.span_id)));
}

#[tokio::test]
async fn a_cache_hit_has_a_lookup_and_no_adapter_span() {
    let portal = FakePortal::start().await.unwrap();
    let gw = portal_gateway(&portal, "").await;
    let mut c = PublicServicesServiceClient::new(gw.channel.clone());
    c.get_procedure(procedure("1.000894")).await.unwrap();
    let hit = c.get_procedure(procedure("1.000894")).await.unwrap();
    assert_eq!(hit.metadata().get("x-lienthong-cache").unwrap(), "hit");
    let id = trace_id_of(&hit);
    let spans = trace(&id, GET_PROCEDURE).await;
    let server = named(&spans, GET_PROCEDURE);
    assert_eq!(attr_str(server, "lienthong.cache").as_deref(), Some("hit"));
    let lookup = named(&spans, "cache lookup");
    assert!(child_of(lookup, server));
    assert_eq!(attr_str(lookup, "lienthong.cache.outcome").as_deref(), Some("hit"));
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    assert!(!names.iter().any(|n| n.starts_with("adapter") || *n == "cache fill"), "{names:?}");
    assert!(spans.iter().all(|s| s.kind != SpanKind::Client as i32), "{names:?}");
    assert_eq!(portal.faults.traceparents().iter().filter(|(_, tp)| tp.contains(&id)).count(), 0);
}

#[tokio::test]
async fn an_inbound_traceparent_is_continued_and_its_log_lines_carry_the_trace_id() {
    let portal = FakePortal::start().await.unwrap();
    let gw = portal_gateway(&portal, "[retry]\nmax_attempts = 1\n").await;
    portal.faults.inject("/procedures", Fault::Status(503));
    let (trace_id, parent) = ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331");
    let call = request(procedure("1.000894"), &[("traceparent", &format!("00-{trace_id}-{parent}-01"))]);
    let e = PublicServicesServiceClient::new(gw.channel.clone()).get_procedure(call).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    assert_eq!(e.metadata().get("x-lienthong-trace-id").unwrap(), trace_id);
    let spans = trace(trace_id, GET_PROCEDURE).await;
    let server = named(&spans, GET_PROCEDURE);
    assert_eq!(hex(&server.parent_span_id), parent, "the caller's span is the server span's parent");
    assert_eq!(attr_str(server, semconv::RPC_RESPONSE_STATUS_CODE).as_deref(), Some("UNAVAILABLE"));
    let status = server.status.as_ref().expect("an error status");
    assert_eq!(status.code, 2, "UNAVAILABLE is the server's error");
    let adapter = named(&spans, "adapter portal");
    assert_eq!(attr_str(adapter, "error.type").as_deref(), Some("unavailable"));
    // The upstream saw the caller's trace too.
    assert!(portal.faults.traceparents().iter().any(|(_, tp)| tp.starts_with(&format!("00-{trace_id}-"))));

    // The warning about the upstream's answer is a JSON line of that trace.
    let lines = log_lines(trace_id);
    let line = lines
        .iter()
        .find(|l| l["message"] == "upstream answered an error")
        .unwrap_or_else(|| panic!("no warning in the log lines of trace {trace_id}: {lines:#?}"));
    assert_eq!(line["level"], "WARN");
    assert_eq!(line["status"], 503);
    let span_ids: Vec<String> = spans.iter().map(|s| hex(&s.span_id)).collect();
    assert!(span_ids.contains(&line["span_id"].as_str().unwrap().to_owned()), "the line names a span of the trace");
    let access = lines.iter().find(|l| l["target"] == "lienthong::access").expect("an access log line");
    assert_eq!(access["code"], "UNAVAILABLE");
}

/// The value of the sample `name{labels…}` in a Prometheus scrape, where
/// every `label="value"` of `labels` is among the sample's labels.
fn sample(scrape: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
        (metric == name && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse().ok())?
    })
}

async fn scrape(gw: &TestGateway) -> String {
    let response = reqwest::get(format!("http://{}/metrics", gw.ops_addr)).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    response.text().await.unwrap()
}

#[tokio::test]
async fn metrics_count_a_known_sequence_of_calls() {
    let portal = FakePortal::start().await.unwrap();
    let gw = portal_gateway(&portal, "[limits.per_app]\nper_second = 1\nburst = 4\n").await;
    let mut c = PublicServicesServiceClient::new(gw.channel.clone());
    c.get_procedure(procedure("1.000894")).await.unwrap(); // miss
    c.get_procedure(procedure("1.000894")).await.unwrap(); // hit
    assert_eq!(c.get_procedure(procedure("not a code")).await.unwrap_err().code(), Code::InvalidArgument);
    assert_eq!(c.get_procedure(procedure("9.999999")).await.unwrap_err().code(), Code::NotFound);
    // The fifth call is over the app's burst of four.
    assert_eq!(c.get_procedure(procedure("1.000894")).await.unwrap_err().code(), Code::ResourceExhausted);

    let text = scrape(&gw).await;
    let calls = |code: &str| {
        sample(
            &text,
            "rpc_server_call_duration_seconds_count",
            &[("rpc_method", GET_PROCEDURE), ("rpc_response_status_code", code), ("rpc_system_name", "grpc")],
        )
    };
    assert_eq!(calls("OK"), Some(2.0), "{text}");
    assert_eq!(calls("INVALID_ARGUMENT"), Some(1.0));
    assert_eq!(calls("NOT_FOUND"), Some(1.0));
    assert_eq!(calls("RESOURCE_EXHAUSTED"), Some(1.0));
    let lookups = |outcome: &str| {
        sample(
            &text,
            "lienthong_cache_lookups_total",
            &[("rpc_method", "GetProcedure"), ("lienthong_cache_outcome", outcome)],
        )
    };
    assert_eq!((lookups("miss"), lookups("hit")), (Some(2.0), Some(1.0)), "the NOT_FOUND was a miss too");
    assert_eq!(sample(&text, "lienthong_limiter_rejections_total", &[("lienthong_limit", "app")]), Some(1.0));
    let attempts = |outcome: &str| {
        sample(
            &text,
            "lienthong_adapter_call_duration_seconds_count",
            &[
                ("lienthong_adapter_instance", "portal"),
                ("lienthong_adapter_kind", "registry-http"),
                ("lienthong_outcome", outcome),
            ],
        )
    };
    assert_eq!((attempts("ok"), attempts("not_found")), (Some(1.0), Some(1.0)));
    // Every error series is there from the start, at zero: NOT_FOUND is an
    // answer, not an error.
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("lienthong_adapter_errors_total{")).collect();
    assert_eq!(errors.len(), lienthong::telemetry::metrics::ADAPTER_ERRORS.len(), "{errors:?}");
    assert!(errors.iter().all(|l| l.ends_with(" 0")), "{errors:?}");
    assert_eq!(sample(&text, "lienthong_limiter_rejections_total", &[("lienthong_limit", "citizen")]), Some(0.0));
    // The process's own, under the names every dashboard reads.
    for name in ["process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds", "process_max_fds"] {
        assert!(sample(&text, name, &[]).is_some_and(|v| v > 0.0), "{name} in\n{text}");
    }
    let started = sample(&text, "process_start_time_seconds", &[]).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!(started <= now + 1.0 && started > now - 3_600.0, "{started} vs {now}");
    assert_eq!(sample(&text, "lienthong_breaker_state", &[("lienthong_adapter_instance", "portal")]), Some(0.0));
    assert_eq!(sample(&text, "lienthong_cache_entries", &[]), Some(2.0), "the answer and the remembered NOT_FOUND");
    assert!(sample(&text, "lienthong_cache_size_bytes", &[]).unwrap() > 0.0);
    assert_eq!(sample(&text, "lienthong_shed_total", &[]), Some(0.0));

    // Every metric is documented, and every documented metric is there
    // (the failure counter appears with its first failure).
    let documented: Vec<&str> = lienthong::telemetry::metrics::METRICS.iter().map(|m| m.prometheus).collect();
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split(' ').nth(2).unwrap();
        if name == "target_info" || name.starts_with("process_") {
            continue;
        }
        assert!(documented.contains(&name), "{name} is not in the METRICS table");
    }
    // (The contract-violation and dropped-record counters appear with their
    // first: their labels are not known in advance.)
    for m in lienthong::telemetry::metrics::METRICS.iter().filter(|m| {
        !matches!(
            m.prometheus,
            "lienthong_adapter_contract_violations_total"
                | "lienthong_adapter_records_dropped_total"
                | "lienthong_adapter_records_invalid_total"
        )
    }) {
        assert!(text.contains(&format!("# TYPE {} ", m.prometheus)), "{} is missing from the scrape", m.prometheus);
    }
}

#[tokio::test]
async fn no_personal_data_reaches_spans_logs_or_metric_labels() {
    world();
    let mut config = lienthong::Config::load(None).unwrap();
    config.anonymous.scopes.push("identity.full_id_number".into());
    let gw = TestGateway::start(config, lienthong::server::adapter_registry()).await;
    let token = gw.token("lan").await;
    let profile = IdentityServiceClient::new(gw.channel.clone())
        .get_my_profile(authed(api::GetMyProfileRequest { include_full_id_number: true }, &token))
        .await
        .unwrap();
    let id = trace_id_of(&profile);
    let citizen = profile.into_inner().profile.unwrap();
    assert!(!citizen.id_number_masked);
    let spans = trace(&id, "lienthong.v1.IdentityService/GetMyProfile").await;
    assert!(spans.iter().any(|s| s.name == "rate limit citizen"), "the citizen's quota was checked in a span");
    let text = scrape(&gw).await;
    let logs = String::from_utf8(world().logs.lock().unwrap().clone()).unwrap();
    let exported = format!("{spans:?}");
    for secret in [citizen.id_number.as_str(), citizen.full_name.as_str(), token.as_str()] {
        assert!(!secret.is_empty());
        for (what, haystack) in [("spans", &exported), ("metrics", &text), ("logs", &logs)] {
            assert!(!haystack.contains(secret), "personal data in the {what}");
        }
    }
    let birth = citizen.birth_date.map(|d| format!("{}-{:02}-{:02}", d.year, d.month, d.day)).unwrap();
    assert!(!exported.contains(&birth) && !logs.contains(&birth));
}

#[tokio::test]
async fn liveness_readiness_and_status_json_tell_the_state() {
    let portal = FakePortal::start().await.unwrap();
    let gw =
        portal_gateway(&portal, "[retry]\nmax_attempts = 1\n\n[breaker]\nfailures_to_open = 2\nopen_for = \"60s\"\n")
            .await;
    let base = format!("http://{}", gw.ops_addr);
    assert_eq!(reqwest::get(format!("{base}/livez")).await.unwrap().status(), 200);
    let ready = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["ready"], true);

    // The portal fails; its breaker opens; it is the only instance.
    portal.faults.inject("/", Fault::Status(503));
    let mut c = PublicServicesServiceClient::new(gw.channel.clone());
    for code in ["1.000894", "1.001612"] {
        c.get_procedure(procedure(code)).await.unwrap_err();
    }
    let ready = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["ready"], false);
    assert!(body["reasons"][0].as_str().unwrap().contains("circuit breaker"), "{body}");
    assert_eq!(body["degraded"][0], "portal (down)");

    let status: serde_json::Value = reqwest::get(format!("{base}/status.json")).await.unwrap().json().await.unwrap();
    let p = &status["provinces"][0];
    assert_eq!((p["code"].as_str(), p["name"].as_str()), (Some("79"), Some("Thành phố Hồ Chí Minh")));
    let a = &p["adapters"][0];
    assert_eq!((a["families"][0].as_str(), a["instance"].as_str()), (Some("public_services"), Some("portal")));
    assert_eq!((a["health"].as_str(), a["breaker"].as_str()), (Some("down"), Some("open")));
    assert_eq!((a["calls"].as_u64(), a["errors"].as_u64()), (Some(2), Some(2)));
    assert!(a["recent_p99_ms"].as_f64().unwrap() > 0.0);
    let page = reqwest::get(format!("{base}/status")).await.unwrap();
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
}

/// A gRPC server that answers every call UNAVAILABLE and keeps the
/// `traceparent` of each (path, header).
async fn recording_adapter_service() -> (std::net::SocketAddr, Arc<Mutex<Vec<(String, String)>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let kept = seen.clone();
    let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let kept = kept.clone();
        async move {
            if let Some(tp) = request.headers().get("traceparent").and_then(|v| v.to_str().ok()) {
                kept.lock().unwrap().push((request.uri().path().to_owned(), tp.to_owned()));
            }
            axum::response::Response::builder()
                .header("content-type", "application/grpc")
                .header("grpc-status", "14")
                .header("grpc-message", "recording only")
                .body(axum::body::Body::empty())
                .unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, seen)
}

#[tokio::test]
async fn remote_adapters_receive_the_trace_context() {
    world();
    let (addr, seen) = recording_adapter_service().await;
    let toml = format!(
        "[anonymous]\nenabled = true\nprovinces = [\"79\"]\n\n[provinces.\"79\"]\npublic_services = \"province\"\n\n\
         [adapters.province]\nkind = \"remote\"\nendpoint = \"http://{addr}\"\ntimeout = \"5s\"\n\n[retry]\nmax_attempts = 1\n"
    );
    let gw = TestGateway::with_toml(&toml, lienthong::server::adapter_registry()).await;
    let e =
        PublicServicesServiceClient::new(gw.channel.clone()).get_procedure(procedure("1.000894")).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    let id = e.metadata().get("x-lienthong-trace-id").unwrap().to_str().unwrap().to_owned();
    let spans = trace(&id, GET_PROCEDURE).await;
    let adapter = named(&spans, "adapter province");
    let seen = seen.lock().unwrap().clone();
    let (path, tp) = seen.iter().find(|(_, tp)| tp.contains(&id)).unwrap_or_else(|| panic!("{seen:?}"));
    assert_eq!(path, "/lienthong.adapter.v1.AdapterService/GetProcedure");
    assert_eq!(tp, &format!("00-{id}-{}-01", hex(&adapter.span_id)), "the adapter attempt's span is the parent");
}

/// Metric names as an OTLP collector receives them.
#[derive(Debug, Default, Clone)]
struct MetricNames(Arc<Mutex<Vec<String>>>);

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::MetricsService for MetricNames {
    async fn export(
        &self,
        request: tonic::Request<opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest>,
    ) -> Result<
        tonic::Response<opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse>,
        tonic::Status,
    > {
        let mut names = self.0.lock().unwrap();
        for r in request.into_inner().resource_metrics {
            names.extend(r.scope_metrics.into_iter().flat_map(|s| s.metrics).map(|m| m.name));
        }
        Ok(tonic::Response::new(Default::default()))
    }
}

#[tokio::test]
async fn metrics_are_pushed_over_otlp_when_a_collector_is_configured() {
    use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::MetricsServiceServer;
    world();
    let names = MetricNames::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(MetricsServiceServer::new(names.clone()))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let portal = FakePortal::start().await.unwrap();
    let extra = format!("[telemetry]\notlp_endpoint = \"http://{addr}\"\ntraces = false\nmetrics_interval = \"1s\"\n");
    let gw = portal_gateway(&portal, &extra).await;
    PublicServicesServiceClient::new(gw.channel.clone()).get_procedure(procedure("1.000894")).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let got = names.0.lock().unwrap().clone();
        if ["rpc.server.call.duration", "lienthong.cache.lookups", "lienthong.adapter.call.duration"]
            .iter()
            .all(|n| got.iter().any(|g| g == n))
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the collector got only {got:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn the_grafana_dashboard_queries_only_documented_metrics_and_labels() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/observability/grafana/dashboards/lienthong.json");
    let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let metrics = lienthong::telemetry::metrics::METRICS;
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter().map(|t| t["expr"].as_str().unwrap().to_owned()))
        .collect();
    assert!(exprs.len() >= 10);
    let mut used = std::collections::BTreeSet::new();
    for expr in &exprs {
        // Every identifier that names one of ours, with what it is filtered
        // or grouped by.
        let words = expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| !w.is_empty());
        for word in words.filter(|w| w.starts_with("lienthong_") || w.starts_with("rpc_server")) {
            let base = ["_bucket", "_count", "_sum"].iter().fold(word, |w, s| w.strip_suffix(s).unwrap_or(w));
            match metrics.iter().find(|m| m.prometheus == word || (m.kind == "histogram" && m.prometheus == base)) {
                Some(m) => {
                    used.insert(m.prometheus);
                }
                // A label, not a metric: it must belong to some metric.
                None => assert!(
                    metrics.iter().any(|m| m.labels.contains(&word)),
                    "{word} in {expr} is neither a documented metric nor label"
                ),
            }
        }
    }
    for m in metrics {
        assert!(used.contains(m.prometheus), "the dashboard does not show {}", m.prometheus);
    }
}

/// The row of `m` in the README's table of metrics.
fn readme_row(m: &lienthong::telemetry::metrics::MetricDoc) -> String {
    let labels = if m.labels.is_empty() {
        "–".to_owned()
    } else {
        m.labels.iter().map(|l| format!("`{l}`")).collect::<Vec<_>>().join(", ")
    };
    format!("| `{}` | `{}` | {} | {labels} | {} |", m.prometheus, m.otel, m.kind, m.help)
}

#[test]
fn the_readme_documents_every_metric_as_the_code_does() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let rows: Vec<&str> =
        readme.lines().filter(|l| l.starts_with("| `rpc_") || l.starts_with("| `lienthong_")).collect();
    let expected: Vec<String> = lienthong::telemetry::metrics::METRICS.iter().map(readme_row).collect();
    assert_eq!(rows, expected, "regenerate the README's metrics table from METRICS");
}

#[tokio::test]
async fn a_callers_decision_not_to_sample_is_followed() {
    let portal = FakePortal::start().await.unwrap();
    let gw = portal_gateway(&portal, "").await;
    let trace_id = "5d1f0c6a3b2e4f718293a4b5c6d7e8f9";
    let call = request(procedure("1.000894"), &[("traceparent", &format!("00-{trace_id}-a1b2c3d4e5f60718-00"))]);
    let answer = PublicServicesServiceClient::new(gw.channel.clone()).get_procedure(call).await.unwrap();
    // The call is still in the caller's trace, and so are its log lines and
    // the upstream request...
    assert_eq!(trace_id_of(&answer), trace_id);
    assert!(log_lines(trace_id).iter().any(|l| l["target"] == "lienthong::access"));
    let seen = portal.faults.traceparents();
    let (_, tp) = seen.iter().find(|(_, tp)| tp.contains(trace_id)).expect("the upstream saw the trace");
    assert!(tp.ends_with("-00"), "the upstream is told the trace is not sampled: {tp}");
    // ...but nothing of it is exported. (A sampled call after it is, so the
    // export has run by then.)
    let sampled =
        PublicServicesServiceClient::new(gw.channel.clone()).get_procedure(procedure("1.000894")).await.unwrap();
    trace(&trace_id_of(&sampled), GET_PROCEDURE).await;
    let exported = world().receiver.spans.lock().unwrap().iter().filter(|s| hex(&s.trace_id) == trace_id).count();
    assert_eq!(exported, 0);
}

#[tokio::test]
async fn a_rate_limit_shared_in_redis_is_timed_in_its_span() {
    world();
    let mut config = lienthong::Config::load(None).unwrap();
    config.server.page_token_key = lienthong::crypto::SecretKey::from_hex(&"ab".repeat(32));
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    config.cluster = Some(lienthong::cluster::ClusterConfig {
        key_prefix: format!("lienthong-test:span:{}:{nanos}:", std::process::id()),
        command_timeout: std::time::Duration::from_secs(1),
        ..Default::default()
    });
    let gw = TestGateway::start(config, lienthong::server::adapter_registry()).await;
    let token = gw.token("lan").await;
    let profile = IdentityServiceClient::new(gw.channel.clone())
        .get_my_profile(authed(api::GetMyProfileRequest::default(), &token))
        .await
        .unwrap();
    let id = trace_id_of(&profile);
    let spans = trace(&id, "lienthong.v1.IdentityService/GetMyProfile").await;
    for name in ["rate limit app", "rate limit citizen"] {
        let span = named(&spans, name);
        assert_eq!(attr_str(span, "lienthong.decision").as_deref(), Some("allowed"), "{name}");
    }
    // A citizen's bucket is leased a cell at a time: the span lasted the
    // round trip to Redis (tens of microseconds on loopback), where a local
    // decision's span is made and ended at once.
    let citizen = named(&spans, "rate limit citizen");
    let lasted = citizen.end_time_unix_nano - citizen.start_time_unix_nano;
    assert!(lasted >= 10_000, "{lasted} ns");
}
