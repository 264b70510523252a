//! The edge under attack: one connection (or several) must not hold what all
//! callers share, stalled and idle connections are closed, and whatever a
//! caller malforms is answered as the caller's error, never INTERNAL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::time::Duration;

use bytes::Bytes;
use common::TestGateway;
use common::wire;
use common::wire::{PREFACE, every_method, grpc_frame, h2_frame};
use lienthong::config::Config;
use lienthong_proto::v1::WatchDossierRequest;
use lienthong_proto::v1::public_services_service_client::PublicServicesServiceClient;
use prost::Message as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The sandbox with `server_extra` lines in `[server]`.
pub(crate) async fn gateway(server_extra: &str) -> TestGateway {
    let toml = lienthong::config::SANDBOX_DEFAULT
        .replace("drain_timeout = \"10s\"", &format!("drain_timeout = \"10s\"\n{server_extra}"));
    TestGateway::start(Config::from_toml(&toml).unwrap(), lienthong::server::adapter_registry()).await
}

// ---- an attacker's raw HTTP/2, frame by frame ----

/// A connection that opens `streams` headers-only streams and reads
/// whatever the server answers, counting refused streams and answers.
struct Attacker {
    stream: TcpStream,
}

impl Attacker {
    async fn open(addr: std::net::SocketAddr, streams: u32) -> Self {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(&wire::stalled_streams(streams)).await.unwrap();
        Self { stream }
    }

    /// Reads frames until `until` says stop or the deadline passes; answers
    /// the server's SETTINGS and PINGs so the connection stays healthy.
    async fn read_frames(&mut self, deadline: Instant, mut until: impl FnMut(u8, u8, u32, &[u8]) -> bool) -> bool {
        loop {
            let mut header = [0u8; 9];
            let read = tokio::time::timeout_at(deadline, self.stream.read_exact(&mut header)).await;
            let Ok(Ok(_)) = read else { return false };
            let len = (usize::from(header[0]) << 16) | (usize::from(header[1]) << 8) | usize::from(header[2]);
            let (kind, flags) = (header[3], header[4]);
            let stream = u32::from_be_bytes([header[5] & 0x7f, header[6], header[7], header[8]]);
            let mut payload = vec![0u8; len];
            if tokio::time::timeout_at(deadline, self.stream.read_exact(&mut payload)).await.is_err() {
                return false;
            }
            if kind == 0x4 && flags & 1 == 0 {
                let _ = self.stream.write_all(&h2_frame(0x4, 1, 0, &[])).await;
            }
            if kind == 0x6 && flags & 1 == 0 {
                let _ = self.stream.write_all(&h2_frame(0x6, 1, 0, &payload)).await;
            }
            if until(kind, flags, stream, &payload) {
                return true;
            }
        }
    }
}

/// Ordinary calls from a client of its own: how many of `n` succeed.
async fn ordinary_calls(gw: &TestGateway, n: usize) -> usize {
    let mut ok = 0;
    for _ in 0..n {
        let mut c = PublicServicesServiceClient::new(gw.channel.clone());
        let req = lienthong_proto::v1::GetProcedureRequest { procedure_code: "1.000894".into() };
        ok += usize::from(c.get_procedure(req).await.is_ok());
    }
    ok
}

async fn status_json(gw: &TestGateway) -> serde_json::Value {
    reqwest::get(format!("http://{}/status.json", gw.ops_addr)).await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn one_connection_cannot_hold_the_gateway() {
    let gw =
        gateway("max_concurrent_requests = 64\nmax_streams_per_connection = 100\nrequest_read_timeout = \"1s\"").await;
    // One connection opens 1,030 streams that never send a body.
    let mut attacker = Attacker::open(gw.addr, 1030).await;
    // Its streams beyond the advertised 100 are refused (RST_STREAM
    // REFUSED_STREAM), or the connection is told to go away.
    let (mut refused, mut goaway) = (0, false);
    attacker
        .read_frames(Instant::now() + Duration::from_secs(10), |kind, _, _, payload| {
            if kind == 0x3 && payload == [0, 0, 0, 0x7] {
                refused += 1;
            }
            goaway |= kind == 0x7;
            refused >= 930 || goaway
        })
        .await;
    assert!(refused >= 930 || goaway, "the streams beyond the limit were not refused ({refused} refused)");

    // Meanwhile ordinary callers are served.
    let ok = ordinary_calls(&gw, 100).await;
    assert!(ok >= 99, "only {ok} of 100 ordinary calls succeeded during the attack");

    // The stalled streams are ended once the read timeout passes (a
    // trailers-only answer, HEADERS with END_STREAM; its code is checked
    // through a real client below).
    let mut ended = 0;
    let ended_all = attacker
        .read_frames(Instant::now() + Duration::from_secs(10), |kind, flags, _, _| {
            if kind == 0x1 && flags & 0x1 != 0 {
                ended += 1;
            }
            ended >= 100
        })
        .await;
    assert!(ended_all || goaway, "the stalled streams were not ended ({ended} answered)");
    drop(attacker);

    // Nothing of it is held once it is gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = status_json(&gw).await;
        if status["in_flight"] == 0 && status["connections"].as_u64().unwrap() <= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the attacker's connection is still held: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn many_attacking_connections_beyond_the_global_limit_hold_no_slot() {
    // Four connections with 100 headers-only streams each: 400 streams, far
    // beyond the 64 calls the gateway runs at once.
    let gw = gateway("max_concurrent_requests = 64\nrequest_read_timeout = \"3s\"").await;
    let mut attackers = Vec::new();
    for _ in 0..4 {
        attackers.push(Attacker::open(gw.addr, 100).await);
    }
    let ok = ordinary_calls(&gw, 100).await;
    assert!(ok >= 99, "only {ok} of 100 ordinary calls succeeded during the attack");
    let status = status_json(&gw).await;
    assert_eq!(status["shed_total"], 0, "headers-only streams took slots: {status}");
}

#[tokio::test]
async fn stalled_and_idle_connections_are_closed() {
    let gw = gateway("header_read_timeout = \"1s\"\nidle_timeout = \"2s\"\nmax_connections_per_ip = 1000").await;
    let mut silent = Vec::new();
    for i in 0..300 {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        match i % 3 {
            // Silent TCP.
            0 => {}
            // Half a preface.
            1 => s.write_all(&PREFACE[..10]).await.unwrap(),
            // A greeting, then nothing: an idle client.
            _ => {
                let mut greeting = PREFACE.to_vec();
                greeting.extend(h2_frame(0x4, 0, 0, &[]));
                s.write_all(&greeting).await.unwrap();
            }
        }
        silent.push(s);
    }
    // Each is closed by the server (EOF or reset) well before our deadline.
    let deadline = Instant::now() + Duration::from_secs(15);
    for (i, mut s) in silent.into_iter().enumerate() {
        let mut buf = [0u8; 4096];
        loop {
            match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(_)) => continue,
                Err(_) => panic!("connection {i} (kind {}) is still open", i % 3),
            }
        }
    }
    assert!(ordinary_calls(&gw, 5).await == 5);
    let metrics = reqwest::get(format!("http://{}/metrics", gw.ops_addr)).await.unwrap().text().await.unwrap();
    let timeouts = metrics
        .lines()
        .find(|l| l.starts_with("lienthong_edge_refused_total") && l.contains("reason=\"header_timeout\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap();
    assert!(timeouts >= 200.0, "{timeouts} header timeouts counted");
}

// ---- malformed requests, through a real HTTP/2 client ----

/// One raw call: the HTTP status and the gRPC status and message, from the
/// headers (trailers-only) or the trailers. `None` when the answer has not
/// ended within two seconds (a live stream).
/// A gRPC request over raw HTTP/2 (`headers` added): its answer's head.
pub(crate) async fn post_grpc(
    send: &mut h2::client::SendRequest<Bytes>,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> http::Response<h2::RecvStream> {
    let mut req = http::Request::post(format!("http://localhost{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut ready = send.clone().ready().await.unwrap();
    let (response, mut stream) = ready.send_request(req.body(()).unwrap(), false).unwrap();
    stream.send_data(Bytes::copy_from_slice(body), true).unwrap();
    response.await.unwrap()
}

pub(crate) async fn raw_call(
    send: &mut h2::client::SendRequest<Bytes>,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Option<(i32, String)>) {
    let response = post_grpc(send, path, headers, body).await;
    let http_status = response.status().as_u16();
    let grpc = |h: &http::HeaderMap| {
        let code = h.get("grpc-status")?.to_str().ok()?.parse().ok()?;
        let message = h.get("grpc-message").map(|m| m.to_str().unwrap_or("").to_owned()).unwrap_or_default();
        Some((code, message))
    };
    if let Some(status) = grpc(response.headers()) {
        return (http_status, Some(status));
    }
    let mut body = response.into_body();
    let read = async {
        while let Some(chunk) = body.data().await {
            let chunk = chunk.ok()?;
            let _ = body.flow_control().release_capacity(chunk.len());
        }
        body.trailers().await.ok().flatten()
    };
    match tokio::time::timeout(Duration::from_secs(2), read).await {
        Ok(trailers) => (http_status, trailers.as_ref().and_then(grpc)),
        Err(_) => (http_status, None),
    }
}

pub(crate) async fn h2_client(addr: std::net::SocketAddr) -> h2::client::SendRequest<Bytes> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (send, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    send
}

/// What a case sends (headers, body) and the code and words it must get.
type MalformedCase<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<u8>, i32, &'a str);

/// One method of each service the gateway serves.
const ONE_PER_SERVICE: &[&str] = &[
    "/lienthong.v1.IdentityService/GetMyProfile",
    "/lienthong.v1.HealthcareService/GetFacility",
    "/lienthong.v1.EducationService/ListSchools",
    "/lienthong.v1.TransportService/ListBusRoutes",
    "/lienthong.v1.ConstructionService/ListHousingProjects",
    "/lienthong.v1.PublicServicesService/GetDossier",
    "/lienthong.admin.v1.AdminService/ListAdapterInstances",
    "/lienthong.sandbox.v1.SandboxIdentityService/IssueToken",
    "/grpc.health.v1.Health/Check",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

#[tokio::test]
async fn malformed_requests_are_the_callers_error_on_every_service() {
    let gw = gateway("request_read_timeout = \"1s\"").await;
    let mut send = h2_client(gw.addr).await;
    let big = "x".repeat(40 * 1024);
    // (what, extra headers, body, expected code, words the message holds)
    let cases: Vec<MalformedCase> = vec![
        ("an empty body", vec![], vec![], 3, "no message"),
        ("half a frame header", vec![], vec![0, 0, 0], 3, "5-byte header"),
        ("a frame shorter than declared", vec![], grpc_frame(0, 10, b"abc"), 3, "declares 10 bytes"),
        ("a second message", vec![], [grpc_frame(0, 0, b""), grpc_frame(0, 0, b"")].concat(), 3, "exactly one"),
        ("the compressed flag without grpc-encoding", vec![], grpc_frame(1, 0, b""), 3, "compressed flag"),
        ("a flag byte of 7", vec![], grpc_frame(7, 0, b""), 3, "flag byte is 7"),
        ("an unsupported grpc-encoding", vec![("grpc-encoding", "br")], grpc_frame(1, 0, b""), 12, "grpc-encoding"),
        (
            "gzip that does not inflate",
            vec![("grpc-encoding", "gzip")],
            grpc_frame(1, 3, b"abc"),
            3,
            "does not inflate",
        ),
        ("a wrong wire type", vec![], grpc_frame(0, 1, &[0x0f]), 3, "does not decode"),
        ("a truncated varint", vec![], grpc_frame(0, 2, &[0x08, 0xff]), 3, "does not decode"),
        ("a message beyond the limit", vec![], grpc_frame(0, 1 << 20, b""), 11, "server.max_request_bytes"),
        ("a malformed grpc-timeout", vec![("grpc-timeout", "abc")], grpc_frame(0, 0, b""), 3, "grpc-timeout"),
        ("a negative grpc-timeout", vec![("grpc-timeout", "-1S")], grpc_frame(0, 0, b""), 3, "grpc-timeout"),
        ("a nine-digit grpc-timeout", vec![("grpc-timeout", "999999999H")], grpc_frame(0, 0, b""), 3, "grpc-timeout"),
        ("a 40 KB header", vec![("authorization", big.as_str())], grpc_frame(0, 0, b""), 8, "max_header_list_bytes"),
    ];
    for path in ONE_PER_SERVICE {
        for (what, headers, body, code, says) in &cases {
            // Reflection is a stream: no message, or several, is fine.
            if path.contains("Reflection") && matches!(*what, "an empty body" | "a second message") {
                continue;
            }
            // Reflection takes no compressed messages at all.
            let (code, says) = match path.contains("Reflection") && headers.contains(&("grpc-encoding", "gzip")) {
                true => (&12, &"uncompressed"),
                false => (code, says),
            };
            let (http, status) = raw_call(&mut send, path, headers, body).await;
            let (got, message) = status.unwrap_or_else(|| panic!("{path}, {what}: no grpc-status (HTTP {http})"));
            assert_eq!(got, *code, "{path}, {what}: {message}");
            let message = percent_decode(&message);
            assert!(message.contains(says), "{path}, {what}: {message:?} does not say {says:?}");
        }
    }
    // A message that never arrives is ended when the read timeout passes.
    let mut ready = send.clone().ready().await.unwrap();
    let req = http::Request::post("http://localhost/lienthong.v1.PublicServicesService/GetProcedure")
        .header("content-type", "application/grpc")
        .body(())
        .unwrap();
    let (response, _body_never_sent) = ready.send_request(req, false).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), response).await.unwrap().unwrap();
    assert_eq!(response.headers()["grpc-status"], "4");
    assert!(percent_decode(response.headers()["grpc-message"].to_str().unwrap()).contains("request_read_timeout"));
    // A deadline that expires is DEADLINE_EXCEEDED, never CANCELLED.
    let (_, status) = raw_call(
        &mut send,
        "/lienthong.v1.PublicServicesService/GetProcedure",
        &[("grpc-timeout", "1n")],
        &grpc_frame(0, 10, &[0x0a, 0x08, b'1', b'.', b'0', b'0', b'0', b'8', b'9', b'4']),
    )
    .await;
    assert_eq!(status.unwrap().0, 4);
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_never_get_internal_or_unknown() {
    use proptest::prelude::*;
    let gw = gateway("").await;
    let send = h2_client(gw.addr).await;
    let methods = every_method();
    assert!(methods.len() > 25, "{methods:?}");
    let handle = tokio::runtime::Handle::current();
    let mut runner =
        proptest::test_runner::TestRunner::new(proptest::test_runner::Config { cases: 1500, ..Default::default() });
    // Bodies: anything, or a well-framed message of random bytes (so the
    // protobuf decoders see garbage too).
    let body = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(|m| grpc_frame(0, m.len() as u32, &m)),
    ];
    let result = runner.run(&(0..methods.len(), body), |(i, body)| {
        let mut send = send.clone();
        let path = methods[i].clone();
        let (http, status) =
            tokio::task::block_in_place(|| handle.block_on(async { raw_call(&mut send, &path, &[], &body).await }));
        prop_assert_eq!(http, 200, "{} answered HTTP {}", path, http);
        if let Some((code, message)) = status {
            prop_assert!(code != 13 && code != 2, "{} answered {} {:?} to {:?}", path, code, message, body);
        }
        Ok(())
    });
    result.unwrap();
}

#[tokio::test]
async fn malformed_grpc_web_text_is_invalid_argument() {
    let gw = gateway("").await;
    let client = reqwest::Client::new();
    for body in ["!!!not base64!!!", "AAAAAAE", "AAAAAAUK"] {
        let response = client
            .post(format!("http://{}/lienthong.v1.PublicServicesService/GetProcedure", gw.addr))
            .header("content-type", "application/grpc-web-text")
            .header("x-grpc-web", "1")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let status = response.headers().get("grpc-status").map(|v| v.to_str().unwrap().to_owned());
        let status = match status {
            Some(s) => s,
            None => {
                // In the body's trailer frame (base64 text).
                let text = response.text().await.unwrap();
                let raw = wire::base64_decode(text.as_bytes());
                let trailer = String::from_utf8_lossy(&raw[5.min(raw.len())..]).to_string();
                trailer
                    .lines()
                    .find_map(|l| l.strip_prefix("grpc-status:").map(|v| v.trim().to_owned()))
                    .unwrap_or_default()
            }
        };
        assert_eq!(status, "3", "{body:?}");
    }
}

#[tokio::test]
async fn one_address_cannot_take_every_connection() {
    let gw = gateway("max_connections_per_ip = 5").await;
    // The test's own client holds one connection already.
    assert_eq!(ordinary_calls(&gw, 1).await, 1);
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(gw.addr).await.unwrap());
    }
    // The sixth from this address is closed at once.
    let mut sixth = TcpStream::connect(gw.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), sixth.read(&mut buf)).await.unwrap();
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    // Its calls still go through, and once some close, new ones are taken.
    assert_eq!(ordinary_calls(&gw, 3).await, 3);
    held.clear();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut again = TcpStream::connect(gw.addr).await.unwrap();
        again.write_all(PREFACE).await.unwrap();
        let closed =
            matches!(tokio::time::timeout(Duration::from_millis(300), again.read(&mut buf)).await, Ok(Ok(0) | Err(_)));
        if !closed {
            break;
        }
        assert!(Instant::now() < deadline, "the closed connections were never counted out");
    }
}

/// The Prometheus count of `method`'s calls that ended with `code`.
async fn calls_counted(gw: &TestGateway, method: &str, code: &str) -> f64 {
    let text = reqwest::get(format!("http://{}/metrics", gw.ops_addr)).await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with("rpc_server_call_duration_seconds_count{"))
        .filter(|l| {
            l.contains(&format!("rpc_method=\"{method}\""))
                && l.contains(&format!("rpc_response_status_code=\"{code}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn a_stream_ends_at_its_deadline_and_calls_out_of_time_are_counted_as_such() {
    let gw = gateway("").await;
    let mut send = h2_client(gw.addr).await;
    // A dossier still moving (every 30 s): without the deadline the watch
    // would last minutes. The client never cancels.
    let request = WatchDossierRequest { dossier_code: "000.30.67.H29-251114-0001".into() }.encode_to_vec();
    let started = Instant::now();
    let response = post_grpc(
        &mut send,
        "/lienthong.v1.PublicServicesService/WatchDossier",
        &[("grpc-timeout", "700m")],
        &grpc_frame(0, request.len() as u32, &request),
    )
    .await;
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut messages = 0;
    let trailers = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = body.data().await {
            let chunk = chunk.unwrap();
            let _ = body.flow_control().release_capacity(chunk.len());
            messages += 1;
        }
        body.trailers().await.unwrap().unwrap()
    })
    .await
    .expect("the stream outlived its deadline");
    assert_eq!(trailers["grpc-status"], "4", "{trailers:?}");
    assert!(messages >= 1, "the current status first");
    assert!(started.elapsed() >= Duration::from_millis(700));
    // Counted as out of time, not cancelled; and a unary call too.
    let (_, status) = raw_call(
        &mut send,
        "/lienthong.v1.HealthcareService/ListFacilities",
        &[("grpc-timeout", "1n")],
        &grpc_frame(0, 0, b""),
    )
    .await;
    assert_eq!(status.unwrap().0, 4);
    let deadline = Instant::now() + Duration::from_secs(10);
    for method in ["lienthong.v1.PublicServicesService/WatchDossier", "lienthong.v1.HealthcareService/ListFacilities"] {
        while calls_counted(&gw, method, "DEADLINE_EXCEEDED").await < 1.0 {
            assert!(Instant::now() < deadline, "{method} not counted as DEADLINE_EXCEEDED");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(calls_counted(&gw, method, "CANCELLED").await, 0.0, "{method}");
    }
}
