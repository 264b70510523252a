//! The server span and the call metrics of every RPC, as a tower layer
//! beneath gRPC-Web translation (so it sees gRPC trailers), above the
//! services.
//!
//! The span follows the RPC semantic conventions (`rpc.system.name`,
//! `rpc.method`, `rpc.response.status_code`), plus what the gateway learns
//! on the way: the
//! province, the app, and the cache outcome. It continues the caller's trace
//! when the call carries a W3C `traceparent`, and lasts until the answer's
//! last frame (a watch's span lasts as long as the watch).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use futures_util::future::{BoxFuture, FutureExt as _};
use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use prost::Message as _;
use tokio::time::Instant;
use tower::{Layer, Service};
use tracing::Instrument as _;
use tracing::field::Empty;

use super::metrics::Metrics;

/// Response metadata naming the call's trace (32 hex digits).
pub const TRACE_ID_HEADER: &str = "x-lienthong-trace-id";

static TRACE_ID: http::HeaderName = http::HeaderName::from_static(TRACE_ID_HEADER);
static GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");
static TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
static CACHE: http::HeaderName = http::HeaderName::from_static(CACHE_HEADER);

/// Response metadata saying how fresh the answer is (`hit`, `miss`,
/// `stale`, `coalesced`, `bypass`); the server span records it as
/// `lienthong.cache`.
pub const CACHE_HEADER: &str = "x-lienthong-cache";

/// The cache outcome an answer's metadata states.
fn cache_outcome(headers: &HeaderMap) -> Option<&'static str> {
    Some(match headers.get(&CACHE)?.as_bytes() {
        b"hit" => "hit",
        b"miss" => "miss",
        b"stale" => "stale",
        b"coalesced" => "coalesced",
        b"bypass" => "bypass",
        _ => return None,
    })
}

/// A call's trace as this layer made it, for the services below (a request
/// extension): its id, and whether it is exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallTrace {
    /// The trace.
    pub trace_id: opentelemetry::trace::TraceId,
    /// Whether its spans are exported (else they keep only their ids).
    pub sampled: bool,
}

/// The caller's deadline (`grpc-timeout`), as admission read it (a request
/// extension): a call dropped after it ran out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallDeadline(pub Instant);

/// A gRPC method as labels and span names carry it: only the gateway's own
/// methods; any other path is `_OTHER`, so a caller cannot mint label values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RpcName {
    /// `lienthong.v1.HealthcareService`.
    pub service: &'static str,
    /// `lienthong.v1.HealthcareService/ListFacilities`.
    pub method: &'static str,
    /// Whether calls get a span (health checks do not: probes would bury
    /// the requests).
    traced: bool,
    /// Plain HTTP (webhooks), whose outcome is an HTTP status.
    http: bool,
    /// Answers with a stream.
    streaming: bool,
    /// Health checks and reflection: logged at DEBUG.
    quiet: bool,
    /// Its place among all names (see [`RpcName::count`]).
    pub index: u16,
}

const OTHER: RpcName = RpcName {
    service: "_OTHER",
    method: "_OTHER",
    traced: true,
    http: false,
    streaming: false,
    quiet: false,
    index: 0,
};
const WEBHOOK: RpcName = RpcName {
    service: "webhooks",
    method: "webhooks/receive",
    traced: true,
    http: true,
    streaming: false,
    quiet: false,
    index: 1,
};

fn known_methods() -> &'static HashMap<String, RpcName> {
    static METHODS: OnceLock<HashMap<String, RpcName>> = OnceLock::new();
    METHODS.get_or_init(|| {
        let mut methods = HashMap::new();
        let sets = [lienthong_proto::FILE_DESCRIPTOR_SET, tonic_health::pb::FILE_DESCRIPTOR_SET];
        let mut names: Vec<(String, String, bool)> = sets
            .into_iter()
            .filter_map(|bytes| prost_types::FileDescriptorSet::decode(bytes).ok())
            .flat_map(|set| set.file)
            .flat_map(|file| {
                let package = file.package.clone().unwrap_or_default();
                file.service.into_iter().flat_map(move |s| {
                    let service = format!("{package}.{}", s.name.unwrap_or_default());
                    s.method.into_iter().map(move |m| {
                        (service.clone(), m.name.unwrap_or_default(), m.server_streaming.unwrap_or(false))
                    })
                })
            })
            .collect();
        for v in ["v1", "v1alpha"] {
            names.push((format!("grpc.reflection.{v}.ServerReflection"), "ServerReflectionInfo".to_owned(), true));
        }
        // Leaked once per process: a bounded set of names, as `'static`
        // label values that cost nothing to attach.
        for (service, method, streaming) in names {
            let path = format!("/{service}/{method}");
            if methods.contains_key(&path) {
                continue;
            }
            let index = u16::try_from(methods.len() + 2).unwrap_or(u16::MAX);
            let traced = !service.starts_with("grpc.health.");
            let quiet = !traced || service.starts_with("grpc.reflection.");
            let service: &'static str = Box::leak(service.into_boxed_str());
            let method: &'static str = Box::leak(format!("{service}/{method}").into_boxed_str());
            methods.insert(path, RpcName { service, method, traced, http: false, streaming, quiet, index });
        }
        methods
    })
}

impl RpcName {
    /// The method at `path` (`/package.Service/Method`).
    pub fn of(path: &str) -> RpcName {
        if path.starts_with("/webhooks/") {
            return WEBHOOK;
        }
        known_methods().get(path).copied().unwrap_or(OTHER)
    }

    /// Whether its calls are logged at DEBUG (health checks, reflection).
    pub fn quiet(&self) -> bool {
        self.quiet
    }

    /// Whether its answer is a stream.
    pub fn streams(&self) -> bool {
        self.streaming
    }

    /// How many names there are: every [`RpcName::index`] is below it.
    pub fn count() -> usize {
        known_methods().len() + 2
    }
}

/// Gives each call its server span and records its metrics.
#[derive(Debug, Clone)]
pub struct RpcTelemetryLayer {
    metrics: Arc<Metrics>,
}

impl RpcTelemetryLayer {
    /// Records into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for RpcTelemetryLayer {
    type Service = RpcTelemetry<S>;

    fn layer(&self, inner: S) -> RpcTelemetry<S> {
        RpcTelemetry { inner, metrics: self.metrics.clone() }
    }
}

/// See [`RpcTelemetryLayer`].
#[derive(Debug, Clone)]
pub struct RpcTelemetry<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

/// Ends a call when dropped: records its outcome on the span and in the
/// metrics. A call dropped before its outcome was known was cancelled.
struct Finish {
    metrics: Arc<Metrics>,
    rpc: RpcName,
    span: tracing::Span,
    /// Whether the span is exported (else its attributes are not kept).
    sampled: bool,
    started: Instant,
    code: Option<&'static str>,
    /// The cache outcome the answer's metadata states.
    cache: Option<&'static str>,
    /// The caller's deadline (`grpc-timeout`): a call dropped after it
    /// without an outcome ran out of time (admission answered
    /// DEADLINE_EXCEEDED), it was not cancelled.
    deadline: Option<Instant>,
}

/// gRPC codes the server, not the caller, is to blame for (the RPC
/// conventions' error set for servers).
fn server_error(code: &str) -> bool {
    matches!(code, "UNKNOWN" | "DEADLINE_EXCEEDED" | "UNIMPLEMENTED" | "INTERNAL" | "UNAVAILABLE" | "DATA_LOSS")
}

impl Drop for Finish {
    fn drop(&mut self) {
        let expired = self.deadline.is_some_and(|d| Instant::now() >= d);
        let code = self.code.unwrap_or(if expired { "DEADLINE_EXCEEDED" } else { "CANCELLED" });
        let elapsed = self.started.elapsed();
        self.metrics.rpc(&self.rpc, code, elapsed);
        self.metrics.in_flight().fetch_sub(1, Ordering::Relaxed);
        if !self.span.is_disabled() && self.sampled {
            match self.cache {
                Some(cache) => {
                    tracing::record_all!(self.span, rpc.response.status_code = code, lienthong.cache = cache);
                }
                None => {
                    self.span.record("rpc.response.status_code", code);
                }
            }
            if server_error(code) || code.starts_with("HTTP_5") {
                self.span.record("otel.status_code", "ERROR");
            }
        }
        // The access log: one line per call, in its trace (silence with
        // RUST_LOG=info,lienthong::access=warn). Probes and reflection at
        // DEBUG: they would bury the calls.
        let duration_ms = millis(elapsed);
        let parent = if self.span.is_disabled() { None } else { self.span.id() };
        let (method, cache) = (self.rpc.method, self.cache);
        if self.rpc.quiet {
            tracing::debug!(target: "lienthong::access", parent: parent, method, code, duration_ms, cache, "call");
        } else {
            tracing::info!(target: "lienthong::access", parent: parent, method, code, duration_ms, cache, "call");
        }
    }
}

/// A call's duration as the access log writes it: milliseconds, to the
/// microsecond.
pub fn millis(elapsed: std::time::Duration) -> f64 {
    (elapsed.as_secs_f64() * 1e6).round() / 1e3
}

/// The gRPC status of a header block (trailers, or a trailers-only answer).
fn grpc_status(headers: &HeaderMap) -> Option<&'static str> {
    let v = headers.get(&GRPC_STATUS)?;
    Some(crate::errors::code_name(tonic::Code::from_bytes(v.as_bytes())))
}

fn http_outcome(status: http::StatusCode) -> &'static str {
    match status.as_u16() {
        200..=299 => "OK",
        400..=499 => "HTTP_4XX",
        _ => "HTTP_5XX",
    }
}

impl<S, ReqBody> Service<Request<ReqBody>> for RpcTelemetry<S>
where
    S: Service<Request<ReqBody>, Response = Response<tonic::body::Body>> + Send,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let rpc = RpcName::of(req.uri().path());
        let span = if rpc.traced {
            // A caller's `traceparent` makes this call part of its trace.
            let parent = req
                .headers()
                .get(&TRACEPARENT)
                .and_then(|v| v.to_str().ok())
                .and_then(super::spans::RemoteParent::parse);
            super::spans::with_remote_parent(parent, || {
                tracing::info_span!(
                    "rpc",
                    otel.name = rpc.method,
                    otel.kind = "server",
                    otel.status_code = Empty,
                    rpc.system.name = "grpc",
                    rpc.method = rpc.method,
                    rpc.response.status_code = Empty,
                    lienthong.province = Empty,
                    lienthong.app = Empty,
                    lienthong.cache = Empty,
                )
            })
        } else {
            tracing::Span::none()
        };
        self.metrics.in_flight().fetch_add(1, Ordering::Relaxed);
        let deadline = req.extensions().get::<CallDeadline>().map(|d| d.0);
        let ids = super::spans::with_ids(&span, |ids| CallTrace { trace_id: ids.trace_id, sampled: ids.sampled });
        if let Some(trace) = ids {
            req.extensions_mut().insert(trace);
        }
        let mut finish = Finish {
            metrics: self.metrics.clone(),
            rpc,
            span: span.clone(),
            sampled: ids.is_some_and(|t| t.sampled),
            started: Instant::now(),
            code: None,
            cache: None,
            deadline,
        };
        let future = span.in_scope(|| self.inner.call(req)).instrument(span);
        async move {
            let mut response = future.await?;
            // The trace id, for the caller to quote to operators.
            if let Some(trace) = ids
                && let Ok(mut v) = http::HeaderValue::from_bytes(&super::hex_trace_id(trace.trace_id))
            {
                // Never indexed by HPACK: a value that differs in every answer
                // would only churn the connection's header table.
                v.set_sensitive(true);
                response.headers_mut().insert(&TRACE_ID, v);
            }
            finish.code =
                if rpc.http { Some(http_outcome(response.status())) } else { grpc_status(response.headers()) };
            finish.cache = cache_outcome(response.headers());
            Ok(response.map(|inner| tonic::body::Body::new(TracedBody { inner, finish })))
        }
        .boxed()
    }
}

/// An answer's body, inside the call's span, that ends the call when the
/// last frame has gone (or the caller went away).
pub struct TracedBody<B> {
    inner: B,
    finish: Finish,
}

impl<B> std::fmt::Debug for TracedBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracedBody").field("rpc", &self.finish.rpc.method).finish_non_exhaustive()
    }
}

impl<B: Body + Unpin> Body for TracedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = &mut *self;
        // A stream's messages are made as the body is polled: its work
        // (and its logs) belong to the call's span. A unary answer's body is
        // made already.
        let polled = if this.finish.rpc.streaming {
            let _entered = this.finish.span.enter();
            Pin::new(&mut this.inner).poll_frame(cx)
        } else {
            Pin::new(&mut this.inner).poll_frame(cx)
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(grpc_status) {
                    this.finish.code = Some(code);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                this.finish.code.get_or_insert("INTERNAL");
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_gateways_own_methods_are_named() {
        let r = RpcName::of("/lienthong.v1.HealthcareService/ListFacilities");
        assert_eq!(
            (r.service, r.method),
            ("lienthong.v1.HealthcareService", "lienthong.v1.HealthcareService/ListFacilities")
        );
        assert!(r.traced);
        assert!(!RpcName::of("/grpc.health.v1.Health/Check").traced);
        assert_eq!(
            RpcName::of("/lienthong.admin.v1.AdminService/InvalidateCache").service,
            "lienthong.admin.v1.AdminService"
        );
        assert_eq!(
            RpcName::of("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo").method,
            "grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
        );
        // Whatever a caller makes up is one label value.
        for path in ["/lienthong.v1.HealthcareService/Nope", "/x/y", "/", "/079201001234/GetMyProfile"] {
            assert_eq!(RpcName::of(path), OTHER, "{path}");
        }
        assert!(RpcName::of("/webhooks/registry").http);
        assert!(RpcName::of("/lienthong.v1.PublicServicesService/WatchDossier").streaming);
        assert!(!r.streaming);
    }

    #[test]
    fn status_codes_are_named_and_numbered() {
        let mut h = HeaderMap::new();
        h.insert("grpc-status", http::HeaderValue::from_static("14"));
        assert_eq!(grpc_status(&h), Some("UNAVAILABLE"));
        assert!(server_error("INTERNAL") && !server_error("NOT_FOUND") && !server_error("OK"));
        assert_eq!(http_outcome(http::StatusCode::ACCEPTED), "OK");
        assert_eq!(http_outcome(http::StatusCode::UNAUTHORIZED), "HTTP_4XX");
    }
}
