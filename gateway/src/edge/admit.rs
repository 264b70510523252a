//! A call's admission, before any work is done for it: its headers are within
//! bounds, its request message has fully arrived (within
//! `server.request_read_timeout`) and is well framed, its deadline parses,
//! and only then does it take one of the `server.max_concurrent_requests`
//! slots every caller shares. A stream that sends headers and never a body
//! holds no slot and is ended when the read timeout passes; the slot is never
//! queued for, so callers beyond the limit fail fast with UNAVAILABLE.
//!
//! Every refusal here is the caller's error or overload, never INTERNAL:
//! - no message, a truncated frame, trailing bytes, a flag byte other than
//!   0 or 1, the compressed flag without `grpc-encoding`, a gzip message that
//!   does not inflate, a malformed `grpc-timeout`: INVALID_ARGUMENT;
//! - a `grpc-encoding` other than `identity` or `gzip`: UNIMPLEMENTED (the
//!   gRPC spec's code), with `grpc-accept-encoding`;
//! - a message or header block beyond its limit, or a gzip message that
//!   inflates beyond it: OUT_OF_RANGE / RESOURCE_EXHAUSTED naming the
//!   setting;
//! - a message that has not arrived in time: DEADLINE_EXCEEDED;
//! - a deadline (`grpc-timeout`) that expires before the answer: DEADLINE_EXCEEDED.
//!
//! Health checks never take a slot, so probes see the truth; reflection (a
//! bidirectional stream) takes none either and has each message checked as it
//! arrives ([`super::streams`]).

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{BoxFuture, FutureExt};
use http::{HeaderValue, Request, Response};
use http_body_util::BodyExt as _;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tonic::Status;
use tonic::body::Body;
use tower::{Layer, Service};

use super::compression::{self, Encoding};
use super::framing::{
    Collected, FRAME_HEADER, check_grpc_headers, check_health_request, check_single_message, grpc_timeout,
    header_bytes, too_large,
};
use super::overload::OverloadWatch;
use super::streams;

/// The most a health check's message may inflate to (it is a service name).
const HEALTH_MESSAGE_BYTES: usize = 1024;

/// What admission checks for each call.
#[derive(Debug, Clone, Copy)]
pub struct CallLimits {
    /// Largest request message (`server.max_request_bytes`).
    pub max_message_bytes: usize,
    /// How long a request message may take to arrive
    /// (`server.request_read_timeout`).
    pub read_timeout: Duration,
    /// Largest header block (`server.max_header_list_bytes`), counted as
    /// HTTP/2 does (name + value + 32 per field).
    pub max_header_bytes: usize,
    /// Largest webhook push.
    pub max_push_bytes: usize,
    /// Answers' messages larger than this are gzipped for callers that
    /// accept gzip (`server.compress_min_bytes`); `None`: never
    /// (`server.compress_answers = false`).
    pub compress_min_bytes: Option<usize>,
}

/// Why a call was refused at admission; the label of
/// `lienthong_edge_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The request was malformed (framing, encoding, headers).
    Malformed,
    /// The message or header block was beyond its limit.
    TooLarge,
    /// The message did not arrive within the read timeout.
    ReadTimeout,
    /// The caller's deadline expired before the answer.
    Deadline,
}

impl Refusal {
    /// Every refusal, in the order of the counters.
    pub const ALL: [Refusal; 4] = [Refusal::Malformed, Refusal::TooLarge, Refusal::ReadTimeout, Refusal::Deadline];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed",
            Refusal::TooLarge => "too_large",
            Refusal::ReadTimeout => "read_timeout",
            Refusal::Deadline => "deadline",
        }
    }
}

/// What admission shares across every connection: the slots, and the counts
/// that readiness and metrics read.
#[derive(Debug)]
pub struct Admission {
    slots: Arc<Semaphore>,
    limits: CallLimits,
    arrived: AtomicU64,
    shed: AtomicU64,
    /// Bytes of request messages being read (not yet admitted), across all
    /// calls: bounded, so streams that trickle their messages cannot make
    /// the gateway buffer without limit.
    reading: std::sync::atomic::AtomicUsize,
    max_reading: usize,
    refused: [AtomicU64; 4],
    overloaded: AtomicBool,
    draining: watch::Receiver<bool>,
}

impl Admission {
    /// At most `max_concurrent` calls in progress; `draining` ends health
    /// watches when the gateway shuts down.
    pub fn new(max_concurrent: usize, limits: CallLimits, draining: watch::Receiver<bool>) -> Arc<Self> {
        Arc::new(Self {
            slots: Arc::new(Semaphore::new(max_concurrent)),
            limits,
            arrived: AtomicU64::new(0),
            shed: AtomicU64::new(0),
            reading: std::sync::atomic::AtomicUsize::new(0),
            max_reading: max_concurrent.saturating_mul(limits.max_message_bytes.saturating_add(FRAME_HEADER)),
            refused: Default::default(),
            overloaded: AtomicBool::new(false),
            draining,
        })
    }

    /// Calls shed so far (no slot free).
    pub fn shed_count(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }

    /// Calls that asked for a slot so far (admitted or shed).
    pub fn arrived_count(&self) -> u64 {
        self.arrived.load(Ordering::Relaxed)
    }

    /// Calls refused for `why` so far.
    pub fn refused_count(&self, why: Refusal) -> u64 {
        self.refused[why as usize].load(Ordering::Relaxed)
    }

    /// Whether most calls have been shed for a while (see [`OverloadWatch`]).
    pub fn is_overloaded(&self) -> bool {
        self.overloaded.load(Ordering::Relaxed)
    }

    /// Samples the counts once a second and keeps [`Self::is_overloaded`]
    /// current; `on_change` learns each change (the whole-server health).
    pub fn watch_overload(
        self: &Arc<Self>,
        window: Duration,
        on_change: impl Fn(bool) -> BoxFuture<'static, ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let admission = self.clone();
        tokio::spawn(async move {
            let mut watch = OverloadWatch::new(window);
            let mut every = tokio::time::interval(Duration::from_secs(1));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let now = watch.tick(admission.arrived_count(), admission.shed_count());
                if admission.overloaded.swap(now, Ordering::Relaxed) != now {
                    if now {
                        tracing::warn!("overloaded: most calls shed for {window:?}; readiness and health say so");
                    } else {
                        tracing::info!("no longer overloaded");
                    }
                    on_change(now).await;
                }
            }
        })
    }

    fn refuse(&self, why: Refusal, status: Status) -> Response<Body> {
        self.refused[why as usize].fetch_add(1, Ordering::Relaxed);
        tracing::debug!(reason = why.as_str(), code = ?status.code(), "refused at admission");
        status.into_http()
    }

    /// A call refused before it reached a service: counted, and written in
    /// the access log as the calls that reach one are (health checks at
    /// DEBUG), since no span of its own will.
    fn refused_call(&self, path: &str, started: Instant, why: Refusal, status: Status) -> Response<Body> {
        let rpc = crate::telemetry::rpc::RpcName::of(path);
        let (method, code, refused) = (rpc.method, crate::errors::code_name(status.code()), why.as_str());
        let duration_ms = crate::telemetry::rpc::millis(started.elapsed());
        if rpc.quiet() {
            tracing::debug!(target: "lienthong::access", method, code, duration_ms, refused, "call");
        } else {
            tracing::info!(target: "lienthong::access", method, code, duration_ms, refused, "call");
        }
        self.refuse(why, status)
    }

    async fn admit<S>(self: Arc<Self>, req: Request<Body>, mut inner: S) -> Result<Response<Body>, S::Error>
    where
        S: Service<Request<Body>, Response = Response<Body>>,
    {
        let started = Instant::now();
        let kind = CallKind::of(req.uri().path());
        let headers = header_bytes(req.headers());
        if headers > self.limits.max_header_bytes {
            let status = Status::resource_exhausted(format!(
                "the request's header block is about {headers} bytes; this gateway accepts at most {} \
                 (server.max_header_list_bytes): send a shorter token or fewer metadata entries",
                self.limits.max_header_bytes
            ));
            return Ok(self.refused_call(req.uri().path(), started, Refusal::TooLarge, status));
        }
        if kind == CallKind::Push {
            return self.admit_push(req, inner, started).await;
        }
        if let Err(status) = check_grpc_headers(req.headers()) {
            return Ok(self.refused_call(req.uri().path(), started, Refusal::Malformed, status));
        }
        let encoding = match compression::request_encoding(req.headers()) {
            Ok(encoding) => encoding,
            Err(status) => {
                let mut response = self.refused_call(req.uri().path(), started, Refusal::Malformed, status);
                response.headers_mut().insert("grpc-accept-encoding", HeaderValue::from_static(compression::ACCEPTED));
                return Ok(response);
            }
        };
        let gzip_answer = self.limits.compress_min_bytes.filter(|_| compression::accepts_gzip(req.headers()));
        let deadline = match grpc_timeout(req.headers()) {
            Ok(timeout) => timeout.map(|t| started + t),
            Err(status) => return Ok(self.refused_call(req.uri().path(), started, Refusal::Malformed, status)),
        };
        if kind == CallKind::Reflection {
            if encoding == Encoding::Gzip {
                let status =
                    Status::unimplemented("reflection takes its messages uncompressed (grpc-encoding: identity)");
                return Ok(self.refused_call(req.uri().path(), started, Refusal::Malformed, status));
            }
            // A bidirectional stream: each message is checked as it arrives.
            let (parts, body) = req.into_parts();
            let (body, verdict) = streams::checked_reflection_body(body, self.limits.max_message_bytes);
            let response = inner.call(Request::from_parts(parts, body)).await?;
            return Ok(response.map(|b| streams::with_verdict(b, verdict)));
        }

        let (mut parts, body) = req.into_parts();
        let read_until =
            deadline.map_or(started + self.limits.read_timeout, |d| d.min(started + self.limits.read_timeout));
        let mut budget = ReadBudget { admission: &self, held: 0 };
        let read = read_message(body, self.limits.max_message_bytes, encoding, &mut budget);
        let message = match tokio::time::timeout_at(read_until, read).await {
            Ok(Ok(message)) => message,
            Ok(Err((why, status))) => return Ok(self.refused_call(parts.uri.path(), started, why, status)),
            Err(_) if deadline.is_some_and(|d| d <= read_until) => {
                return Ok(self.refused_call(parts.uri.path(), started, Refusal::Deadline, deadline_expired()));
            }
            Err(_) => {
                let status = Status::deadline_exceeded(format!(
                    "the request message did not arrive within {:?} of its headers (server.request_read_timeout)",
                    self.limits.read_timeout
                ));
                return Ok(self.refused_call(parts.uri.path(), started, Refusal::ReadTimeout, status));
            }
        };
        // Read: from here the call's slot (or, for probes, nothing) bounds it.
        drop(budget);
        // Inflated, the message goes on plain.
        parts.headers.remove("grpc-encoding");
        if kind == CallKind::Health {
            // A probe takes no slot: its message inflates to a few bytes
            // or is refused.
            let message = match compression::inflate(message, HEALTH_MESSAGE_BYTES) {
                Ok(message) => message,
                Err((why, status)) => return Ok(self.refused_call(parts.uri.path(), started, why, status)),
            };
            if let Err(status) = check_health_request(&message) {
                return Ok(self.refused_call(parts.uri.path(), started, Refusal::Malformed, status));
            }
            // Probes never wait for a slot; a health watch ends at drain.
            let watch = parts.uri.path().ends_with("/Watch");
            let response =
                inner.call(Request::from_parts(parts, Body::new(http_body_util::Full::new(message)))).await?;
            return Ok(if watch {
                response.map(|b| streams::ending_at_drain(b, self.draining.clone()))
            } else {
                response
            });
        }

        self.arrived.fetch_add(1, Ordering::Relaxed);
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            self.shed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(path = parts.uri.path(), "shed: too many requests in progress");
            return Ok(Status::unavailable("the gateway is overloaded; retry with backoff").into_http());
        };
        // Inflated only once it holds a slot: a shed call costs no inflating.
        let message = match compression::inflate(message, self.limits.max_message_bytes) {
            Ok(message) => message,
            Err((why, status)) => return Ok(self.refused_call(parts.uri.path(), started, why, status)),
        };
        let streaming = deadline.is_some() && crate::telemetry::rpc::RpcName::of(parts.uri.path()).streams();
        if let Some(deadline) = deadline {
            parts.extensions.insert(crate::telemetry::rpc::CallDeadline(deadline));
        }
        let call = inner.call(Request::from_parts(parts, Body::new(http_body_util::Full::new(message))));
        let answer = match deadline {
            Some(deadline) => match deadline_first(deadline, call).await {
                Some(answer) => answer?,
                None => self.refuse(Refusal::Deadline, deadline_expired()),
            },
            None => call.await?,
        };
        drop(slot);
        // A stream's messages come after its head: the deadline holds them too.
        let answer = match deadline {
            Some(deadline) if streaming => answer.map(|b| streams::ending_at_deadline(b, deadline)),
            _ => answer,
        };
        Ok(match gzip_answer {
            Some(min_bytes) => compression::compress_answer(answer, min_bytes),
            None => answer,
        })
    }

    /// A webhook push: read whole (bounded) before it takes a slot.
    async fn admit_push<S>(
        &self,
        req: Request<Body>,
        mut inner: S,
        started: Instant,
    ) -> Result<Response<Body>, S::Error>
    where
        S: Service<Request<Body>, Response = Response<Body>>,
    {
        let (parts, body) = req.into_parts();
        let read =
            tokio::time::timeout_at(started + self.limits.read_timeout, read_bytes(body, self.limits.max_push_bytes));
        let plain = |status: http::StatusCode, text: &'static str| {
            let mut response = Response::new(Body::new(http_body_util::Full::new(Bytes::from_static(text.as_bytes()))));
            *response.status_mut() = status;
            response
        };
        let body = match read.await {
            Ok(Ok(body)) => body,
            Ok(Err(_)) => {
                self.refused[Refusal::TooLarge as usize].fetch_add(1, Ordering::Relaxed);
                return Ok(plain(http::StatusCode::PAYLOAD_TOO_LARGE, "push body too large or broken\n"));
            }
            Err(_) => {
                self.refused[Refusal::ReadTimeout as usize].fetch_add(1, Ordering::Relaxed);
                return Ok(plain(http::StatusCode::REQUEST_TIMEOUT, "push body did not arrive in time\n"));
            }
        };
        self.arrived.fetch_add(1, Ordering::Relaxed);
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            self.shed.fetch_add(1, Ordering::Relaxed);
            let mut response = plain(http::StatusCode::SERVICE_UNAVAILABLE, "overloaded; retry later\n");
            response.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
            return Ok(response);
        };
        let answer = inner.call(Request::from_parts(parts, Body::new(http_body_util::Full::new(body)))).await;
        drop(slot);
        answer
    }
}

fn deadline_expired() -> Status {
    Status::deadline_exceeded("the deadline the caller set (grpc-timeout) expired before the answer was ready")
}

/// Runs `call` unless `deadline` passes first; the deadline is looked at
/// first, so a call ready at the same instant still counts as late.
async fn deadline_first<F: Future>(deadline: Instant, call: F) -> Option<F::Output> {
    let mut sleep = pin!(tokio::time::sleep_until(deadline));
    let mut call = pin!(call);
    std::future::poll_fn(|cx: &mut Context<'_>| {
        // The timer wheel rounds up to the next millisecond; the clock does not.
        if sleep.as_mut().poll(cx).is_ready() || Instant::now() >= deadline {
            return Poll::Ready(None);
        }
        call.as_mut().poll(cx).map(Some)
    })
    .await
}

/// Where a call goes, as far as admission cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallKind {
    /// `grpc.health.v1.Health`: never shed.
    Health,
    /// Server reflection: a bidirectional stream.
    Reflection,
    /// `POST /webhooks/...`: plain HTTP.
    Push,
    /// Every other gRPC method: one request message.
    Unary,
}

impl CallKind {
    fn of(path: &str) -> Self {
        if path.starts_with("/grpc.health.v1.Health/") {
            CallKind::Health
        } else if path.starts_with("/grpc.reflection.") {
            CallKind::Reflection
        } else if path.starts_with(crate::edge::webhooks::PATH_PREFIX) {
            CallKind::Push
        } else {
            CallKind::Unary
        }
    }
}

/// Reads a unary request's body: exactly one well-framed message of at most
/// `max` bytes. A message header that declares more is refused as soon as it
/// arrives.
async fn read_message(
    mut body: Body,
    max: usize,
    encoding: Encoding,
    budget: &mut ReadBudget<'_>,
) -> Result<Bytes, (Refusal, Status)> {
    let mut whole = Collected::default();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            (
                Refusal::Malformed,
                Status::invalid_argument(format!("the request body could not be read: {}", e.message())),
            )
        })?;
        let Ok(data) = frame.into_data() else { continue };
        if !budget.take(data.len()) {
            return Err((
                Refusal::TooLarge,
                Status::unavailable("the gateway is reading too many request messages at once; retry with backoff"),
            ));
        }
        whole.push(data);
        if let Some(declared) = whole.declared_len()
            && declared > max
        {
            return Err((Refusal::TooLarge, too_large(declared, max)));
        }
        if whole.len() > FRAME_HEADER + max {
            // More bytes than one message of the declared size: a second one.
            break;
        }
    }
    let bytes = whole.into_bytes();
    check_single_message(&bytes, max, encoding == Encoding::Gzip)?;
    Ok(bytes)
}

/// The bytes one call holds of the global reading budget, given back when
/// its message is admitted or refused.
struct ReadBudget<'a> {
    admission: &'a Admission,
    held: usize,
}

impl ReadBudget<'_> {
    /// Takes `n` more bytes; false when the budget is spent.
    fn take(&mut self, n: usize) -> bool {
        let before = self.admission.reading.fetch_add(n, Ordering::AcqRel);
        if before.saturating_add(n) > self.admission.max_reading {
            self.admission.reading.fetch_sub(n, Ordering::AcqRel);
            return false;
        }
        self.held += n;
        true
    }
}

impl Drop for ReadBudget<'_> {
    fn drop(&mut self) {
        self.admission.reading.fetch_sub(self.held, Ordering::AcqRel);
    }
}

/// Reads a plain body of at most `max` bytes.
async fn read_bytes(mut body: Body, max: usize) -> Result<Bytes, ()> {
    let mut whole = Collected::default();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(drop)?.into_data() else { continue };
        whole.push(data);
        if whole.len() > max {
            return Err(());
        }
    }
    Ok(whole.into_bytes())
}

/// [`Admission`] as a tower layer.
#[derive(Debug, Clone)]
pub struct AdmitLayer(pub Arc<Admission>);

impl<S> Layer<S> for AdmitLayer {
    type Service = Admit<S>;

    fn layer(&self, inner: S) -> Admit<S> {
        Admit { inner, admission: self.0.clone() }
    }
}

/// See [`AdmitLayer`].
#[derive(Debug, Clone)]
pub struct Admit<S> {
    inner: S,
    admission: Arc<Admission>,
}

impl<S> Service<Request<Body>> for Admit<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        // The ready service goes with the call; a fresh clone waits for the next.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        self.admission.clone().admit(req, inner).boxed()
    }
}
