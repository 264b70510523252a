//! Spans to an OTLP/gRPC collector, encoded as protobuf the moment they end.
//!
//! The request path pays for one thing: writing the span's bytes into the
//! open batch (its attributes were encoded as they were recorded, see
//! [`Attributes`]). No span structure is built, copied through a channel or
//! converted again on another thread. A thread of its own sends full
//! batches, and the open one every second, as `ExportTraceServiceRequest`s.
//! While the collector is away, batches wait and are sent again with
//! backoff; spans beyond the queue's bound are dropped and counted, never
//! queued without bound.
//!
//! The wire format is OTLP's `opentelemetry/proto/trace/v1/trace.proto`;
//! the tests decode what is sent with the published OTLP types.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost::bytes::{BufMut as _, Bytes};
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};
use tokio::sync::{Notify, mpsc};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// Spans in a batch at most.
const BATCH_SPANS: usize = 2048;
/// Bytes in a batch at most (collectors accept 4 MiB messages by default).
const BATCH_BYTES: usize = 1 << 20;
/// How long a span waits in the open batch at most.
const BATCH_DELAY: Duration = Duration::from_secs(1);
/// How long an export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// Spans dropped since the process started: the queue was full, or the
/// collector refused or did not answer.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Spans the collector did not take (queue full, export failed).
pub fn dropped_spans() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

fn put_varint(buf: &mut Vec<u8>, value: u64) {
    encode_varint(value, buf);
}

fn put_len_field(buf: &mut Vec<u8>, tag: u32, len: usize) {
    encode_key(tag, WireType::LengthDelimited, buf);
    put_varint(buf, len as u64);
}

fn len_field_size(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

fn put_bytes_field(buf: &mut Vec<u8>, tag: u32, bytes: &[u8]) {
    put_len_field(buf, tag, bytes.len());
    buf.extend_from_slice(bytes);
}

/// A span's or a resource's attributes, as encoded `KeyValue`s (each a
/// repeated field `tag` of the message they belong to).
#[derive(Debug, Default)]
pub struct Attributes {
    tag: u32,
    bytes: Vec<u8>,
}

/// `AnyValue` fields.
enum Value<'a> {
    Str(&'a str),
    Bool(bool),
    Int(i64),
    Double(f64),
}

impl Attributes {
    /// Attributes of a `Span` (field 9).
    pub fn of_span(capacity: usize) -> Self {
        Self { tag: 9, bytes: Vec::with_capacity(capacity * 40) }
    }

    /// Attributes of a `Resource` (field 1).
    fn of(tag: u32) -> Self {
        Self { tag, bytes: Vec::new() }
    }

    fn put(&mut self, key: &str, value: Value<'_>) {
        let value_len = match value {
            Value::Str(s) => len_field_size(1, s.len()),
            Value::Bool(_) => 2,
            Value::Int(i) => 1 + encoded_len_varint(i as u64),
            Value::Double(_) => 9,
        };
        let kv_len = len_field_size(1, key.len()) + len_field_size(2, value_len);
        let b = &mut self.bytes;
        put_len_field(b, self.tag, kv_len);
        put_bytes_field(b, 1, key.as_bytes());
        put_len_field(b, 2, value_len);
        match value {
            Value::Str(s) => put_bytes_field(b, 1, s.as_bytes()),
            Value::Bool(v) => {
                encode_key(2, WireType::Varint, b);
                b.push(u8::from(v));
            }
            Value::Int(i) => {
                encode_key(3, WireType::Varint, b);
                put_varint(b, i as u64);
            }
            Value::Double(d) => {
                encode_key(4, WireType::SixtyFourBit, b);
                b.put_f64_le(d);
            }
        }
    }

    /// A string attribute.
    pub fn str(&mut self, key: &str, value: &str) {
        self.put(key, Value::Str(value));
    }

    /// An integer attribute.
    pub fn int(&mut self, key: &str, value: i64) {
        self.put(key, Value::Int(value));
    }

    /// A boolean attribute.
    pub fn bool(&mut self, key: &str, value: bool) {
        self.put(key, Value::Bool(value));
    }

    /// A floating-point attribute.
    pub fn double(&mut self, key: &str, value: f64) {
        self.put(key, Value::Double(value));
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// `Span.SpanKind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// `SPAN_KIND_INTERNAL`.
    Internal = 1,
    /// `SPAN_KIND_SERVER`.
    Server = 2,
    /// `SPAN_KIND_CLIENT`.
    Client = 3,
    /// `SPAN_KIND_PRODUCER`.
    Producer = 4,
    /// `SPAN_KIND_CONSUMER`.
    Consumer = 5,
}

/// `Status.StatusCode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum StatusCode {
    /// `STATUS_CODE_UNSET`.
    Unset = 0,
    /// `STATUS_CODE_OK`.
    Ok = 1,
    /// `STATUS_CODE_ERROR`.
    Error = 2,
}

/// A span that has ended, borrowed from whoever recorded it.
#[derive(Debug)]
pub struct EndedSpan<'a> {
    /// Its trace (big-endian, as on the wire).
    pub trace_id: [u8; 16],
    /// The span.
    pub span_id: [u8; 8],
    /// Its parent, when it has one.
    pub parent_id: Option<[u8; 8]>,
    /// Whether the parent is a caller's span.
    pub parent_is_remote: bool,
    /// The operation.
    pub name: &'a str,
    /// Its kind.
    pub kind: Kind,
    /// When it started.
    pub start: SystemTime,
    /// When it ended.
    pub end: SystemTime,
    /// Its attributes.
    pub attributes: &'a Attributes,
    /// Its status.
    pub status: StatusCode,
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// `SpanFlags`: sampled, and whether the parent is remote (known).
const FLAG_SAMPLED: u32 = 0x01;
const FLAG_HAS_IS_REMOTE: u32 = 0x100;
const FLAG_IS_REMOTE: u32 = 0x200;

impl EndedSpan<'_> {
    fn body_len(&self) -> usize {
        let parent = if self.parent_id.is_some() { 10 } else { 0 };
        let status = if self.status == StatusCode::Unset { 0 } else { 4 };
        18 + 10 + parent + len_field_size(5, self.name.len()) + 2 + 9 + 9 + self.attributes.bytes.len() + status + 6
    }

    /// Appends the span as field `spans` (2) of a `ScopeSpans`.
    fn encode(&self, buf: &mut Vec<u8>) {
        put_len_field(buf, 2, self.body_len());
        put_bytes_field(buf, 1, &self.trace_id);
        put_bytes_field(buf, 2, &self.span_id);
        if let Some(parent) = &self.parent_id {
            put_bytes_field(buf, 4, parent);
        }
        put_bytes_field(buf, 5, self.name.as_bytes());
        encode_key(6, WireType::Varint, buf);
        buf.push(self.kind as u8);
        encode_key(7, WireType::SixtyFourBit, buf);
        buf.put_u64_le(unix_nanos(self.start));
        encode_key(8, WireType::SixtyFourBit, buf);
        buf.put_u64_le(unix_nanos(self.end));
        buf.extend_from_slice(&self.attributes.bytes);
        if self.status != StatusCode::Unset {
            put_len_field(buf, 15, 2);
            encode_key(3, WireType::Varint, buf);
            buf.push(self.status as u8);
        }
        let remote = if self.parent_is_remote { FLAG_IS_REMOTE } else { 0 };
        encode_key(16, WireType::ThirtyTwoBit, buf);
        buf.put_u32_le(FLAG_SAMPLED | FLAG_HAS_IS_REMOTE | remote);
    }
}

/// Encoded spans waiting for export.
#[derive(Debug, Default)]
struct Batches {
    open: Vec<u8>,
    open_spans: usize,
    full: VecDeque<(Vec<u8>, usize)>,
    queued: usize,
}

impl Batches {
    fn seal(&mut self) {
        if self.open_spans > 0 {
            let open = std::mem::replace(&mut self.open, Vec::with_capacity(BATCH_BYTES / 4));
            self.full.push_back((open, std::mem::take(&mut self.open_spans)));
        }
    }
}

/// The queue between the spans that end and the exporter task.
#[derive(Debug)]
pub struct SpanQueue {
    batches: Mutex<Batches>,
    max_queued: usize,
    full: Notify,
    /// Spans of this queue dropped (also counted in [`dropped_spans`]).
    dropped: AtomicU64,
}

impl SpanQueue {
    pub(super) fn new(max_queued: usize) -> Self {
        Self { batches: Mutex::default(), max_queued, full: Notify::new(), dropped: AtomicU64::new(0) }
    }

    /// Counts `n` spans dropped.
    fn dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
        DROPPED.fetch_add(n, Ordering::Relaxed);
    }

    fn lock(&self) -> MutexGuard<'_, Batches> {
        // A panic while the lock was held cannot leave the bytes half
        // written in a way that matters more than losing the batch.
        self.batches.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `span` for export, or drops it when the queue is full.
    pub fn push(&self, span: &EndedSpan<'_>) {
        let mut b = self.lock();
        if b.queued >= self.max_queued {
            drop(b);
            self.dropped(1);
            return;
        }
        span.encode(&mut b.open);
        b.open_spans += 1;
        b.queued += 1;
        if b.open_spans >= BATCH_SPANS || b.open.len() >= BATCH_BYTES {
            b.seal();
            drop(b);
            self.full.notify_one();
        }
    }

    /// Puts back a batch the collector could not take, to be sent first.
    fn again(&self, batch: (Vec<u8>, usize)) {
        let mut b = self.lock();
        b.queued += batch.1;
        b.full.push_front(batch);
    }

    /// The next batch to send: a full one, or (`all`) the open one.
    fn next(&self, all: bool) -> Option<(Vec<u8>, usize)> {
        let mut b = self.lock();
        if b.full.is_empty() && all {
            b.seal();
        }
        let batch = b.full.pop_front()?;
        b.queued -= batch.1;
        Some(batch)
    }
}

/// `ExportTraceServiceResponse`, for its partial success.
#[derive(Clone, PartialEq, prost::Message)]
struct ExportResponse {
    #[prost(message, optional, tag = "1")]
    partial_success: Option<PartialSuccess>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PartialSuccess {
    #[prost(int64, tag = "1")]
    rejected_spans: i64,
    #[prost(string, tag = "2")]
    error_message: String,
}

/// Sends an encoded request as it is; decodes the answer with prost.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = ExportResponse;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = ExportResponse;
    type Error = tonic::Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<ExportResponse>, tonic::Status> {
        prost::Message::decode(buf)
            .map(Some)
            .map_err(|e| tonic::Status::internal(format!("the collector's answer is not an OTLP response: {e}")))
    }
}

/// What the exporter task is asked to do besides its own schedule.
enum Command {
    /// Send everything queued, then answer.
    Flush(std::sync::mpsc::SyncSender<()>),
    /// Send everything queued, answer, and stop.
    Shutdown(std::sync::mpsc::SyncSender<()>),
}

/// The running export: the queue spans go to, and the task that sends them.
#[derive(Debug)]
pub struct Export {
    queue: Arc<SpanQueue>,
    commands: mpsc::UnboundedSender<Command>,
}

/// The `ResourceSpans` and `ScopeSpans` headers every request starts with.
struct Envelope {
    resource: Vec<u8>,
    scope: Vec<u8>,
}

impl Envelope {
    fn new(resource: &[(String, String)]) -> Self {
        let mut attributes = Attributes::of(1);
        for (k, v) in resource {
            attributes.str(k, v);
        }
        let mut scope = Vec::new();
        put_bytes_field(&mut scope, 1, b"lienthong");
        put_bytes_field(&mut scope, 2, env!("CARGO_PKG_VERSION").as_bytes());
        Self { resource: attributes.bytes, scope }
    }

    /// `ExportTraceServiceRequest { resource_spans: [{ resource, scope_spans: [{ scope, spans }] }] }`.
    fn request(&self, spans: &[u8]) -> Bytes {
        let scope_spans_len = len_field_size(1, self.scope.len()) + spans.len();
        let resource_spans_len = len_field_size(1, self.resource.len()) + len_field_size(2, scope_spans_len);
        let mut buf = Vec::with_capacity(len_field_size(1, resource_spans_len));
        put_len_field(&mut buf, 1, resource_spans_len);
        put_bytes_field(&mut buf, 1, &self.resource);
        put_len_field(&mut buf, 2, scope_spans_len);
        put_bytes_field(&mut buf, 1, &self.scope);
        buf.extend_from_slice(spans);
        Bytes::from(buf)
    }
}

impl Export {
    /// Starts exporting to `endpoint` (`http://` or `https://`), with
    /// `resource` on every span; at most `max_queued` spans wait. The
    /// exporter runs on a thread of its own, so that a busy server still
    /// sends its spans.
    pub fn start(endpoint: &str, resource: Vec<(String, String)>, max_queued: usize) -> anyhow::Result<Self> {
        let mut channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
            .map_err(|e| anyhow::anyhow!("the OTLP endpoint {endpoint:?} is not a URL: {e}"))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(EXPORT_TIMEOUT);
        if endpoint.starts_with("https://") {
            channel = channel.tls_config(tonic::transport::ClientTlsConfig::new().with_native_roots())?;
        }
        let queue = Arc::new(SpanQueue::new(max_queued));
        let (commands, rx) = mpsc::unbounded_channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| anyhow::anyhow!("starting the span exporter's runtime: {e}"))?;
        let (q, envelope) = (queue.clone(), Envelope::new(&resource));
        std::thread::Builder::new()
            .name("lienthong-otlp".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    let client = tonic::client::Grpc::new(channel.connect_lazy());
                    run(q, client, envelope, rx).await;
                });
            })
            .map_err(|e| anyhow::anyhow!("starting the span exporter's thread: {e}"))?;
        Ok(Self { queue, commands })
    }

    /// Where ended spans go.
    pub fn queue(&self) -> &Arc<SpanQueue> {
        &self.queue
    }

    fn ask(&self, command: impl FnOnce(std::sync::mpsc::SyncSender<()>) -> Command) -> bool {
        let (done, wait) = std::sync::mpsc::sync_channel(1);
        self.commands.send(command(done)).is_ok() && wait.recv_timeout(EXPORT_TIMEOUT * 2).is_ok()
    }

    /// Sends every span queued so far (blocking: call outside the runtime
    /// or from `spawn_blocking`); false when it could not be done in time.
    pub fn flush(&self) -> bool {
        self.ask(Command::Flush)
    }

    /// Sends what is queued and stops (blocking, as [`Export::flush`]).
    pub fn shutdown(&self) -> bool {
        self.ask(Command::Shutdown)
    }
}

/// Why an export failed.
enum Failure {
    /// The collector is unreachable, down or busy: the batch waits and is
    /// sent again (the codes OTLP calls retryable).
    Transient(String),
    /// The collector refused the batch: sending it again would not help.
    Refused(String),
}

async fn send(client: &mut tonic::client::Grpc<tonic::transport::Channel>, request: Bytes) -> Result<i64, Failure> {
    client.ready().await.map_err(|e| Failure::Transient(format!("the collector cannot be reached: {e}")))?;
    let path = http::uri::PathAndQuery::from_static(EXPORT_PATH);
    let answer = client.unary(tonic::Request::new(request), path, RawCodec).await.map_err(|s| {
        use tonic::Code as C;
        match s.code() {
            C::Cancelled | C::DeadlineExceeded | C::Aborted | C::OutOfRange | C::Unavailable | C::DataLoss => {
                Failure::Transient(s.to_string())
            }
            _ => Failure::Refused(s.to_string()),
        }
    })?;
    Ok(answer.into_inner().partial_success.map_or(0, |p| {
        if p.rejected_spans > 0 || !p.error_message.is_empty() {
            tracing::warn!(rejected = p.rejected_spans, reason = %p.error_message, "the OTLP collector rejected spans");
        }
        p.rejected_spans.max(0)
    }))
}

/// How long a batch waits after the collector failed, at first and at most.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const LAST_BACKOFF: Duration = Duration::from_secs(30);

/// The exporter task's memory of failures.
struct Health {
    /// Whether the last export failed (a failing collector is reported
    /// once, and its recovery once).
    failing: bool,
    /// No batch is sent before this, but on a flush.
    retry_at: Option<tokio::time::Instant>,
    backoff: Duration,
}

/// Sends one batch; a batch the collector could not take for now is
/// returned, to be sent again.
async fn export(
    client: &mut tonic::client::Grpc<tonic::transport::Channel>,
    envelope: &Envelope,
    queue: &SpanQueue,
    (batch, spans): (Vec<u8>, usize),
    health: &mut Health,
) -> Option<(Vec<u8>, usize)> {
    match send(client, envelope.request(&batch)).await {
        Ok(rejected) => {
            queue.dropped(u64::try_from(rejected).unwrap_or(0));
            health.retry_at = None;
            health.backoff = FIRST_BACKOFF;
            if std::mem::replace(&mut health.failing, false) {
                tracing::info!("spans reach the OTLP collector again");
            }
            None
        }
        Err(Failure::Refused(reason)) => {
            queue.dropped(spans as u64);
            tracing::warn!(%reason, spans, "the OTLP collector refused a batch of spans; they are dropped");
            None
        }
        Err(Failure::Transient(reason)) => {
            health.retry_at = Some(tokio::time::Instant::now() + health.backoff);
            health.backoff = (health.backoff * 2).min(LAST_BACKOFF);
            if !std::mem::replace(&mut health.failing, true) {
                tracing::warn!(
                    %reason,
                    "exporting spans failed; they wait and are sent again, and spans beyond \
                     telemetry.max_queued_spans are dropped"
                );
            }
            Some((batch, spans))
        }
    }
}

async fn run(
    queue: Arc<SpanQueue>,
    mut client: tonic::client::Grpc<tonic::transport::Channel>,
    envelope: Envelope,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut health = Health { failing: false, retry_at: None, backoff: FIRST_BACKOFF };
    let mut tick = tokio::time::interval(BATCH_DELAY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let (all, reply) = tokio::select! {
            () = queue.full.notified() => (false, None),
            _ = tick.tick() => (true, None),
            command = commands.recv() => match command {
                Some(Command::Flush(done)) => (true, Some((done, false))),
                Some(Command::Shutdown(done)) => (true, Some((done, true))),
                None => (true, Some((std::sync::mpsc::sync_channel(1).0, true))),
            },
        };
        // After a failure, batches wait out the backoff; a flush tries once.
        let waiting = health.retry_at.is_some_and(|t| tokio::time::Instant::now() < t);
        if reply.is_some() || !waiting {
            let stopping = reply.as_ref().is_some_and(|(_, stop)| *stop);
            while let Some(batch) = queue.next(all) {
                if let Some((batch, spans)) = export(&mut client, &envelope, &queue, batch, &mut health).await {
                    if stopping {
                        // No collector to wait for at exit: the rest is lost.
                        queue.dropped(spans as u64);
                        while let Some((_, spans)) = queue.next(true) {
                            queue.dropped(spans as u64);
                        }
                        break;
                    }
                    queue.again((batch, spans));
                    break;
                }
            }
        }
        if let Some((done, stop)) = reply {
            let _ = done.send(());
            if stop {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes decode as OTLP with the published types.
    #[test]
    fn spans_encode_as_otlp() {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
        use prost::Message as _;
        let mut attributes = Attributes::of_span(4);
        attributes.str("rpc.method", "lienthong.v1.PublicServicesService/GetProcedure");
        attributes.int("attempt", -3);
        attributes.bool("coalesced", true);
        attributes.double("ratio", 0.25);
        let span = EndedSpan {
            trace_id: [7; 16],
            span_id: [9; 8],
            parent_id: Some([5; 8]),
            parent_is_remote: true,
            name: "lienthong.v1.PublicServicesService/GetProcedure",
            kind: Kind::Server,
            start: UNIX_EPOCH + Duration::from_nanos(1_700_000_000_000_000_001),
            end: UNIX_EPOCH + Duration::from_nanos(1_700_000_000_000_500_001),
            attributes: &attributes,
            status: StatusCode::Error,
        };
        let mut spans = Vec::new();
        span.encode(&mut spans);
        let root = EndedSpan { parent_id: None, parent_is_remote: false, status: StatusCode::Unset, ..span };
        root.encode(&mut spans);
        let envelope = Envelope::new(&[("service.name".into(), "lienthong-test".into())]);
        let request = ExportTraceServiceRequest::decode(envelope.request(&spans)).unwrap();
        let rs = &request.resource_spans[0];
        let resource = rs.resource.as_ref().unwrap();
        assert_eq!(resource.attributes[0].key, "service.name");
        let scope = &rs.scope_spans[0];
        assert_eq!(scope.scope.as_ref().unwrap().name, "lienthong");
        let [s, r] = &scope.spans[..] else { panic!("two spans: {:?}", scope.spans) };
        assert_eq!(
            (s.trace_id.as_slice(), s.span_id.as_slice(), s.parent_span_id.as_slice()),
            (&[7; 16][..], &[9; 8][..], &[5; 8][..])
        );
        assert_eq!(s.name, "lienthong.v1.PublicServicesService/GetProcedure");
        assert_eq!(s.kind, 2);
        assert_eq!(s.end_time_unix_nano - s.start_time_unix_nano, 500_000);
        assert_eq!(s.status.as_ref().map(|s| s.code), Some(2));
        assert_eq!(s.flags, 0x301);
        let values: Vec<_> =
            s.attributes.iter().map(|a| (a.key.as_str(), a.value.clone().unwrap().value.unwrap())).collect();
        assert_eq!(
            values,
            [
                ("rpc.method", V::StringValue("lienthong.v1.PublicServicesService/GetProcedure".into())),
                ("attempt", V::IntValue(-3)),
                ("coalesced", V::BoolValue(true)),
                ("ratio", V::DoubleValue(0.25)),
            ]
        );
        assert!(r.parent_span_id.is_empty() && r.status.is_none());
        assert_eq!(r.flags, 0x101);
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let queue = SpanQueue::new(3);
        let attributes = Attributes::of_span(0);
        let span = EndedSpan {
            trace_id: [1; 16],
            span_id: [2; 8],
            parent_id: None,
            parent_is_remote: false,
            name: "x",
            kind: Kind::Internal,
            start: UNIX_EPOCH,
            end: UNIX_EPOCH,
            attributes: &attributes,
            status: StatusCode::Unset,
        };
        let before = dropped_spans();
        for _ in 0..5 {
            queue.push(&span);
        }
        assert_eq!(queue.dropped.load(Ordering::Relaxed), 2);
        assert!(dropped_spans() >= before + 2, "and in the process's count");
        assert!(queue.next(false).is_none(), "nothing is full yet");
        let (bytes, spans) = queue.next(true).unwrap();
        assert_eq!(spans, 3);
        assert!(!bytes.is_empty());
        assert!(queue.next(true).is_none());
        queue.push(&span);
        assert_eq!(queue.next(true).map(|b| b.1), Some(1), "room again once sent");
    }

    fn one_span(attributes: &Attributes) -> EndedSpan<'_> {
        EndedSpan {
            trace_id: [3; 16],
            span_id: [4; 8],
            parent_id: None,
            parent_is_remote: false,
            name: "rpc",
            kind: Kind::Server,
            start: SystemTime::now(),
            end: SystemTime::now(),
            attributes,
            status: StatusCode::Unset,
        }
    }

    /// A collector that takes every span but `reject` of each request, or
    /// (`refuse`) none.
    struct Collector {
        reject: i64,
        refuse: bool,
        received: Arc<std::sync::atomic::AtomicUsize>,
    }

    #[tonic::async_trait]
    impl opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService for Collector {
        async fn export(
            &self,
            request: tonic::Request<opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest>,
        ) -> Result<
            tonic::Response<opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse>,
            tonic::Status,
        > {
            use opentelemetry_proto::tonic::collector::trace::v1::{
                ExportTracePartialSuccess, ExportTraceServiceResponse,
            };
            if self.refuse {
                return Err(tonic::Status::invalid_argument("not for me"));
            }
            let spans: usize =
                request.into_inner().resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum();
            self.received.fetch_add(spans, Ordering::Relaxed);
            let partial_success = (self.reject > 0)
                .then(|| ExportTracePartialSuccess { rejected_spans: self.reject, error_message: "too old".into() });
            Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success }))
        }
    }

    /// Serves a collector on `listener`; counts what it receives.
    fn collector(listener: tokio::net::TcpListener, reject: i64, refuse: bool) -> Arc<std::sync::atomic::AtomicUsize> {
        use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer;
        let received = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let collector = Collector { reject, refuse, received: received.clone() };
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(collector))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        received
    }

    /// Pushes `n` spans, then flushes (or shuts down) from a blocking thread.
    async fn push_and(export: &Arc<Export>, n: usize, shutdown: bool) -> bool {
        let attributes = Attributes::of_span(0);
        for _ in 0..n {
            export.queue().push(&one_span(&attributes));
        }
        let e = export.clone();
        tokio::task::spawn_blocking(move || if shutdown { e.shutdown() } else { e.flush() }).await.unwrap()
    }

    fn dropped_by(export: &Export) -> u64 {
        export.queue().dropped.load(Ordering::Relaxed)
    }

    /// Spans that a collector rejects or refuses are counted as dropped;
    /// the others arrive.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spans_a_collector_rejects_or_refuses_are_counted() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = collector(listener, 2, false);
        let export = Arc::new(Export::start(&format!("http://{addr}"), Vec::new(), 1024).unwrap());
        assert!(push_and(&export, 5, false).await);
        assert_eq!(received.load(Ordering::Relaxed), 5);
        assert_eq!(dropped_by(&export), 2, "the spans the collector rejected");

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        collector(listener, 0, true);
        let export = Arc::new(Export::start(&format!("http://{addr}"), Vec::new(), 1024).unwrap());
        assert!(push_and(&export, 4, false).await);
        assert_eq!(dropped_by(&export), 4, "a refused batch is not sent again");
        assert!(export.queue().next(true).is_none());
    }

    /// While the collector is away, spans wait (up to the queue's bound);
    /// when it is back, they arrive. At exit, what cannot be sent is
    /// counted as dropped.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spans_wait_for_a_collector_that_is_away() {
        // Nobody listens here yet.
        let addr = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        let export = Arc::new(Export::start(&format!("http://{addr}"), Vec::new(), 1024).unwrap());
        assert!(push_and(&export, 3, false).await);
        assert_eq!(dropped_by(&export), 0, "a collector that is away loses nothing");

        let received = collector(tokio::net::TcpListener::bind(addr).await.unwrap(), 0, false);
        assert!(push_and(&export, 2, false).await);
        assert_eq!(received.load(Ordering::Relaxed), 5, "the spans that waited arrive, and the new ones");
        assert_eq!(dropped_by(&export), 0);

        let away = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        let export = Arc::new(Export::start(&format!("http://{away}"), Vec::new(), 1024).unwrap());
        assert!(push_and(&export, 3, true).await);
        assert_eq!(dropped_by(&export), 3, "the spans that found no collector at exit");
    }
}
