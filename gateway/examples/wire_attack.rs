//! An attacker at the wire, against a running gateway (the release binary on
//! its sandbox):
//!
//! - `fuzz`: malformed requests to every method the gateway serves (from its
//!   own descriptors, plus health and reflection), over raw HTTP/2 and as
//!   gRPC-Web over HTTP/1.1: random bodies, broken frames, undecodable
//!   messages, bad encodings and deadlines, oversized headers. Prints the
//!   answers by gRPC status; fails if any is INTERNAL or UNKNOWN.
//! - `attack`: one connection opens `--streams` headers-only streams, and
//!   `--idle` connections sit silent, while ordinary calls are made from a
//!   client of their own; prints how many of those succeed.
//!
//! ```text
//! cargo run --release -p lienthong --example wire_attack -- fuzz --addr 127.0.0.1:50051 --requests 100000
//! cargo run --release -p lienthong --example wire_attack -- attack --addr 127.0.0.1:50051 --streams 1030 --idle 300
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/help.rs"]
mod help;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[path = "../tests/common/wire.rs"]
mod wire;

use wire::{PREFACE, base64_decode, every_method as methods, grpc_frame as frame, h2_frame};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// One malformed request: extra headers and a body.
fn malformed(rng: &mut Rng) -> (Vec<(&'static str, String)>, Vec<u8>) {
    match rng.below(10) {
        // Anything at all.
        0 => (vec![], {
            let n = rng.below(64);
            rng.bytes(n)
        }),
        // A well-framed message of random bytes (the decoders see garbage).
        1 | 2 => {
            let n = rng.below(48);
            let m = rng.bytes(n);
            (vec![], frame(0, m.len() as u32, &m))
        }
        // A frame shorter or longer than declared.
        3 => {
            let n = rng.below(16);
            let m = rng.bytes(n);
            (vec![], frame(0, (n + 1 + rng.below(100)) as u32, &m))
        }
        // Flags other than 0, or 1 without an encoding.
        4 => (vec![], frame(1 + rng.below(255) as u8, 0, b"")),
        // An unsupported encoding.
        5 => (vec![("grpc-encoding", ["br", "gzip", "zstd", "x"][rng.below(4)].to_owned())], frame(1, 0, b"")),
        // A malformed or tiny deadline.
        6 => (vec![("grpc-timeout", ["abc", "-1S", "99999999H", "1n", "0m", "S", "1.5S"][rng.below(7)].to_owned())], {
            frame(0, 0, b"")
        }),
        // An empty body, or a header cut short.
        7 => (vec![], vec![0; rng.below(5)]),
        // Two messages.
        8 => (vec![], [frame(0, 0, b""), frame(0, 1, &[0x08])].concat()),
        // A header block beyond the configured limit.
        _ => (vec![("authorization", format!("Bearer {}", "x".repeat(20_000 + rng.below(20_000))))], frame(0, 0, b"")),
    }
}

type Counts = Arc<Mutex<BTreeMap<String, u64>>>;

fn count(counts: &Counts, what: String) {
    *counts.lock().unwrap().entry(what).or_default() += 1;
}

async fn h2_call(
    send: &mut h2::client::SendRequest<Bytes>,
    path: &str,
    headers: &[(&'static str, String)],
    body: Vec<u8>,
) -> String {
    let mut req = http::Request::post(format!("http://localhost{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (k, v) in headers {
        req = req.header(*k, v.as_str());
    }
    let Ok(mut ready) = send.clone().ready().await else { return "connection lost".to_owned() };
    let Ok((response, mut stream)) = ready.send_request(req.body(()).unwrap(), false) else {
        return "refused stream".to_owned();
    };
    let _ = stream.send_data(Bytes::from(body), true);
    let answer = async {
        let response = match response.await {
            Ok(r) => r,
            Err(e) => return format!("HTTP/2 error: {e}"),
        };
        let grpc = |h: &http::HeaderMap| h.get("grpc-status").and_then(|v| v.to_str().ok()).map(code_name);
        if let Some(code) = grpc(response.headers()) {
            return code;
        }
        let status = response.status().as_u16();
        let mut body = response.into_body();
        while let Some(chunk) = body.data().await {
            let Ok(chunk) = chunk else { break };
            let _ = body.flow_control().release_capacity(chunk.len());
        }
        match body.trailers().await {
            Ok(Some(t)) => grpc(&t).unwrap_or_else(|| format!("HTTP {status} without grpc-status")),
            _ => format!("HTTP {status} without grpc-status"),
        }
    };
    tokio::time::timeout(Duration::from_secs(2), answer).await.unwrap_or_else(|_| "stream still open (a watch)".into())
}

fn code_name(v: &str) -> String {
    let code = v.parse::<i32>().map(tonic::Code::from_i32).unwrap_or(tonic::Code::Unknown);
    format!("{code:?}")
}

async fn fuzz(addr: SocketAddr, requests: u64, connections: u64) {
    let methods = Arc::new(methods());
    let counts: Counts = Arc::default();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connections {
        let (methods, counts) = (methods.clone(), counts.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (c + 1));
            let mut send: Option<h2::client::SendRequest<Bytes>> = None;
            for _ in 0..requests / connections {
                if send.is_none() {
                    let tcp = TcpStream::connect(addr).await.unwrap();
                    let (s, conn) = h2::client::handshake(tcp).await.unwrap();
                    tokio::spawn(conn);
                    send = Some(s);
                }
                let path = &methods[rng.below(methods.len())];
                let (headers, body) = malformed(&mut rng);
                let Some(s) = send.as_mut() else { continue };
                let answer = h2_call(s, path, &headers, body).await;
                if answer == "connection lost" {
                    send = None;
                }
                count(&counts, answer);
            }
        }));
    }
    // gRPC-Web over HTTP/1.1: malformed text and binary bodies.
    let web = {
        let (methods, counts) = (methods.clone(), counts.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::builder().http1_only().build().unwrap();
            let mut rng = Rng(0x1234_5678);
            for _ in 0..requests / 20 {
                let path = &methods[rng.below(methods.len() - 4)];
                let (content_type, body) = if rng.below(2) == 0 {
                    (
                        "application/grpc-web-text",
                        {
                            let n = rng.below(40);
                            rng.bytes(n)
                        }
                        .iter()
                        .map(|b| (b % 94 + 33) as char)
                        .collect::<String>()
                        .into_bytes(),
                    )
                } else {
                    let (_, body) = malformed(&mut rng);
                    ("application/grpc-web+proto", body)
                };
                let answer = client
                    .post(format!("http://{addr}{path}"))
                    .header("content-type", content_type)
                    .header("x-grpc-web", "1")
                    .body(body)
                    .send()
                    .await;
                let what = match answer {
                    Ok(r) => match r.headers().get("grpc-status").and_then(|v| v.to_str().ok()) {
                        Some(v) => code_name(v),
                        None => {
                            let status = r.status().as_u16();
                            let text_mode = content_type.ends_with("-text");
                            let bytes = r.bytes().await.unwrap_or_default();
                            let raw = if text_mode { base64_decode(&bytes) } else { bytes.to_vec() };
                            let decoded = String::from_utf8_lossy(&raw).into_owned();
                            match decoded.find("grpc-status:") {
                                Some(i) => code_name(
                                    decoded[i + 12..].trim().split(|c: char| !c.is_ascii_digit()).next().unwrap_or(""),
                                ),
                                None => format!("HTTP {status} (gRPC-Web, status in a trailer frame)"),
                            }
                        }
                    },
                    Err(e) => format!("HTTP error: {e}"),
                };
                count(&counts, format!("gRPC-Web {what}"));
            }
        })
    };
    for t in tasks {
        t.await.unwrap();
    }
    web.await.unwrap();
    let counts = counts.lock().unwrap();
    let total: u64 = counts.values().sum();
    println!("{total} malformed requests to {} methods in {:.1} s", methods.len(), started.elapsed().as_secs_f64());
    for (what, n) in counts.iter() {
        println!("  {n:>7}  {what}");
    }
    let bad: u64 = counts.iter().filter(|(k, _)| k.contains("Internal") || k.contains("Unknown")).map(|(_, n)| n).sum();
    println!("INTERNAL or UNKNOWN: {bad}");
    if bad > 0 {
        std::process::exit(1);
    }
}

async fn attack(addr: SocketAddr, streams: u32, idle: usize, attackers: usize, probes: usize) {
    use lienthong_proto::v1::public_services_service_client::PublicServicesServiceClient;
    let mut held = Vec::new();
    for _ in 0..attackers {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(&wire::stalled_streams(streams)).await.unwrap();
        held.push(tcp);
    }
    for i in 0..idle {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        if i % 3 == 1 {
            tcp.write_all(&PREFACE[..10]).await.unwrap();
        } else if i % 3 == 2 {
            tcp.write_all(&[PREFACE, &h2_frame(0x4, 0, 0, &[])].concat()).await.unwrap();
        }
        held.push(tcp);
    }
    println!(
        "{attackers} connection(s) holding {streams} headers-only streams each, {idle} idle connections; {probes} ordinary calls, one every 100 ms:"
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect_lazy();
    let (mut ok, mut failed) = (0, BTreeMap::<String, u32>::new());
    let started = Instant::now();
    for _ in 0..probes {
        let mut c = PublicServicesServiceClient::new(channel.clone());
        let req = lienthong_proto::v1::GetProcedureRequest { procedure_code: "1.000894".into() };
        match tokio::time::timeout(Duration::from_secs(5), c.get_procedure(req)).await {
            Ok(Ok(_)) => ok += 1,
            Ok(Err(e)) => *failed.entry(format!("{:?}: {}", e.code(), e.message())).or_default() += 1,
            Err(_) => *failed.entry("no answer within 5 s".into()).or_default() += 1,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("  {ok} of {probes} succeeded over {:.1} s", started.elapsed().as_secs_f64());
    for (why, n) in failed {
        println!("  {n} failed: {why}");
    }
    drop(held);
}

#[tokio::main]
async fn main() {
    if help::asked(include_str!("wire_attack.rs")) {
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: &str| {
        args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned().unwrap_or_else(|| default.to_owned())
    };
    let addr: SocketAddr = arg("--addr", "127.0.0.1:50051").parse().unwrap();
    match args.get(1).map(String::as_str) {
        Some("fuzz") => {
            fuzz(addr, arg("--requests", "100000").parse().unwrap(), arg("--connections", "4").parse().unwrap()).await
        }
        Some("attack") => {
            attack(
                addr,
                arg("--streams", "1030").parse().unwrap(),
                arg("--idle", "300").parse().unwrap(),
                arg("--attackers", "1").parse().unwrap(),
                arg("--probes", "100").parse().unwrap(),
            )
            .await
        }
        _ => eprintln!(
            "usage: wire_attack fuzz|attack --addr HOST:PORT [--requests N] [--streams N --idle N --attackers N]"
        ),
    }
}
