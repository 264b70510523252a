//! Faults a fake upstream can inject, per path prefix.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::stream;

/// One way to misbehave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer normally, after a delay.
    Latency(Duration),
    /// Answer with this status and a small JSON error body.
    Status(u16),
    /// 429 with a `Retry-After` in seconds.
    TooManyRequests {
        /// Seconds to wait.
        retry_after_secs: u64,
    },
    /// Drop the connection before any byte of the answer.
    Reset,
    /// 200 with a body that is not JSON.
    MalformedJson,
    /// 200 with this JSON body instead of the real answer (wrong types,
    /// missing fields, other shapes).
    Body(String),
    /// The first half of the normal answer, then the connection drops.
    Truncated,
    /// The normal answer, one byte at a time, `delay` apart.
    Drip {
        /// Between two bytes.
        delay: Duration,
    },
}

/// The faults in force, how many requests each path received, and how many
/// are being answered now.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    rules: Arc<Mutex<Vec<(String, Fault)>>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    traceparents: Arc<Mutex<Vec<(String, String)>>>,
    in_flight: Arc<AtomicUsize>,
}

/// Counts a request in flight until it is answered or its client goes away.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Faults {
    /// Requests whose path starts with `path_prefix` get `fault` from now on.
    pub fn inject(&self, path_prefix: &str, fault: Fault) {
        if let Ok(mut rules) = self.rules.lock() {
            rules.retain(|(p, _)| p != path_prefix);
            rules.push((path_prefix.to_owned(), fault));
        }
    }

    /// Removes every fault.
    pub fn clear(&self) {
        if let Ok(mut rules) = self.rules.lock() {
            rules.clear();
        }
    }

    /// Requests being answered now: a client that gives up (a timeout)
    /// closes its connection, and its request stops counting.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// How many requests reached `path`.
    pub fn hits(&self, path: &str) -> usize {
        self.hits.lock().map(|h| h.get(path).copied().unwrap_or(0)).unwrap_or(0)
    }

    /// Answers `hits <path>` lines on stdin with [`Faults::hits`], one number
    /// a line, until stdin closes: how a benchmark script asks a fake
    /// upstream running as its own process what reached it.
    pub async fn answer_hits_on_stdin(&self) -> std::io::Result<()> {
        use std::io::BufRead as _;
        let faults = self.clone();
        tokio::task::spawn_blocking(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if let Some(path) = line.strip_prefix("hits ") {
                    println!("{}", faults.hits(path.trim()));
                }
            }
        })
        .await
        .map_err(std::io::Error::other)
    }

    /// The W3C `traceparent` of each request that carried one, with its
    /// path, in the order they came.
    pub fn traceparents(&self) -> Vec<(String, String)> {
        self.traceparents.lock().map(|t| t.clone()).unwrap_or_default()
    }

    fn fault_for(&self, path: &str) -> Option<Fault> {
        self.rules.lock().ok()?.iter().rev().find(|(p, _)| path.starts_with(p.as_str())).map(|(_, f)| f.clone())
    }
}

fn broken_body(prefix: Bytes) -> Body {
    let chunks: Vec<Result<Bytes, std::io::Error>> =
        vec![Ok(prefix), Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "injected reset"))];
    Body::from_stream(stream::iter(chunks))
}

/// The axum middleware applying [`Faults`].
pub async fn apply(State(faults): State<Faults>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    faults.in_flight.fetch_add(1, Ordering::SeqCst);
    let _in_flight = InFlight(faults.in_flight.clone());
    if let Ok(mut hits) = faults.hits.lock() {
        *hits.entry(path.clone()).or_default() += 1;
    }
    if let Some(tp) = request.headers().get("traceparent").and_then(|v| v.to_str().ok())
        && let Ok(mut seen) = faults.traceparents.lock()
    {
        seen.push((path.clone(), tp.to_owned()));
    }
    match faults.fault_for(&path) {
        None => next.run(request).await,
        Some(Fault::Latency(d)) => {
            tokio::time::sleep(d).await;
            next.run(request).await
        }
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, [(header::CONTENT_TYPE, "application/json")], r#"{"error":"injected"}"#).into_response()
        }
        Some(Fault::TooManyRequests { retry_after_secs }) => {
            let mut r = (StatusCode::TOO_MANY_REQUESTS, r#"{"error":"slow down"}"#).into_response();
            if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
        Some(Fault::Reset) => Response::new(broken_body(Bytes::new())),
        Some(Fault::MalformedJson) => {
            (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], r#"{"keys": [{"kid": "#).into_response()
        }
        Some(Fault::Body(body)) => (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Some(Fault::Truncated) => {
            let (parts, body) = next.run(request).await.into_parts();
            let full = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
            let mut r = Response::from_parts(parts, broken_body(full.slice(..full.len() / 2)));
            r.headers_mut().remove(header::CONTENT_LENGTH);
            r
        }
        Some(Fault::Drip { delay }) => {
            let (parts, body) = next.run(request).await.into_parts();
            let full = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
            let bytes: Vec<u8> = full.to_vec();
            let drip = stream::unfold(0usize, move |i| {
                let bytes = bytes.clone();
                async move {
                    if i >= bytes.len() {
                        return None;
                    }
                    tokio::time::sleep(delay).await;
                    Some((Ok::<_, Infallible>(Bytes::copy_from_slice(&bytes[i..=i])), i + 1))
                }
            });
            let mut r = Response::from_parts(parts, Body::from_stream(drip));
            r.headers_mut().remove(header::CONTENT_LENGTH);
            r
        }
    }
}
