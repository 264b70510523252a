//! The bridge from `tracing` spans to OpenTelemetry spans, made for the
//! request path: every span gets W3C ids (its trace's, inherited from its
//! parent, or a caller's `traceparent`), and only sampled spans collect
//! attributes and reach the exporter. A span not sampled costs an id and a
//! small extension; a sampled one, its attributes (encoded as OTLP protobuf
//! as they are recorded) and, on close, writing it into the export queue
//! ([`super::otlp`]).
//!
//! Fields with special meaning, as in tracing-opentelemetry: `otel.name`
//! (the span's name), `otel.kind` (`server`, `client`, …), and
//! `otel.status_code` (`ERROR` or `OK`).

use std::borrow::Cow;
use std::cell::Cell;
use std::hash::BuildHasher as _;
use std::sync::Arc;
use std::time::SystemTime;

use opentelemetry::trace::{SpanId, TraceId};
use tracing::Subscriber;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use super::otlp::{self, EndedSpan, Kind, SpanQueue, StatusCode};

/// A caller's span: the parent of the next root span made on this thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteParent {
    /// Its trace.
    pub trace_id: TraceId,
    /// Its span.
    pub span_id: SpanId,
    /// Whether the caller sampled it.
    pub sampled: bool,
}

impl RemoteParent {
    /// Parses a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`); ids of
    /// all zeros are invalid.
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let (version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version.len() != 2 || version == "ff" || trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
            return None;
        }
        if ![version, trace, span, flags].iter().all(|p| p.bytes().all(|b| b.is_ascii_hexdigit())) {
            return None;
        }
        if version == "00" && parts.next().is_some() {
            return None;
        }
        let trace_id = TraceId::from_bytes(u128::from_str_radix(trace, 16).ok()?.to_be_bytes());
        let span_id = SpanId::from_bytes(u64::from_str_radix(span, 16).ok()?.to_be_bytes());
        let flags = u8::from_str_radix(flags, 16).ok()?;
        (trace_id != TraceId::INVALID && span_id != SpanId::INVALID).then_some(Self {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }
}

thread_local! {
    static NEXT_REMOTE_PARENT: Cell<Option<RemoteParent>> = const { Cell::new(None) };
}

/// Makes a root span with `make`, as a child of `parent` (a caller's span):
/// it joins the caller's trace and follows its sampling decision.
pub fn with_remote_parent(parent: Option<RemoteParent>, make: impl FnOnce() -> tracing::Span) -> tracing::Span {
    NEXT_REMOTE_PARENT.with(|p| p.set(parent));
    let span = make();
    NEXT_REMOTE_PARENT.with(|p| p.set(None));
    span
}

/// A span's identity, kept in its extensions.
#[derive(Debug)]
pub struct SpanIds {
    /// Its trace.
    pub trace_id: TraceId,
    /// The span.
    pub span_id: SpanId,
    /// Whether it is exported.
    pub sampled: bool,
    recording: Option<Box<Recording>>,
}

impl SpanIds {
    /// The W3C `traceparent` naming this span as the parent.
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-{:02x}", self.trace_id, self.span_id, u8::from(self.sampled))
    }
}

#[derive(Debug)]
struct Recording {
    name: Cow<'static, str>,
    kind: Kind,
    parent: Option<SpanId>,
    remote_parent: bool,
    start: SystemTime,
    attributes: otlp::Attributes,
    status: StatusCode,
}

impl Visit for Recording {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "otel.name" => self.name = Cow::Owned(value.to_owned()),
            "otel.kind" => {
                self.kind = match value {
                    "server" => Kind::Server,
                    "client" => Kind::Client,
                    "producer" => Kind::Producer,
                    "consumer" => Kind::Consumer,
                    _ => Kind::Internal,
                }
            }
            "otel.status_code" => {
                self.status = if value.eq_ignore_ascii_case("error") { StatusCode::Error } else { StatusCode::Ok }
            }
            name => self.attributes.str(name, value),
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.attributes.int(field.name(), value);
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.attributes.int(field.name(), i64::try_from(value).unwrap_or(i64::MAX));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.attributes.bool(field.name(), value);
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.attributes.double(field.name(), value);
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}

thread_local! {
    /// This thread's id generator state (SplitMix64, seeded from the
    /// process's random hash keys).
    static ID_STATE: Cell<u64> = Cell::new(std::collections::hash_map::RandomState::new().hash_one(std::thread::current().id()));
}

/// A random 64-bit number (not for secrets: for ids).
fn random_u64() -> u64 {
    ID_STATE.with(|state| {
        let mut z = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        state.set(z);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    })
}

fn new_trace_id() -> TraceId {
    TraceId::from_bytes(((u128::from(random_u64()) << 64) | u128::from(random_u64().max(1))).to_be_bytes())
}

fn new_span_id() -> SpanId {
    SpanId::from_bytes(random_u64().max(1).to_be_bytes())
}

/// The layer: ids for every span, export for the sampled ones.
#[derive(Debug)]
pub struct SpanLayer {
    queue: Option<Arc<SpanQueue>>,
    /// Root traces whose id's low 63 bits fall below this are sampled.
    bound: u64,
}

impl SpanLayer {
    /// Exports sampled spans to `queue` (none: ids only); samples `ratio`
    /// of new traces (a caller's decision is followed).
    pub fn new(queue: Option<Arc<SpanQueue>>, ratio: f64) -> Self {
        let ratio = if queue.is_some() { ratio.clamp(0.0, 1.0) } else { 0.0 };
        let bound = if ratio >= 1.0 { u64::MAX } else { (ratio * (1u64 << 63) as f64) as u64 };
        Self { queue, bound }
    }

    fn sampled(&self, trace_id: TraceId) -> bool {
        let low = (u128::from_be_bytes(trace_id.to_bytes()) as u64) >> 1;
        self.bound == u64::MAX || low < self.bound
    }
}

impl<S> tracing_subscriber::Layer<S> for SpanLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let parent =
            span.parent().and_then(|p| p.extensions().get::<SpanIds>().map(|s| (s.trace_id, s.span_id, s.sampled)));
        let (trace_id, parent_id, remote, sampled) = match parent {
            Some((trace, span, sampled)) => (trace, span, false, sampled),
            None => match NEXT_REMOTE_PARENT.with(Cell::take) {
                Some(r) => (r.trace_id, r.span_id, true, r.sampled && self.queue.is_some()),
                None => {
                    let trace = new_trace_id();
                    (trace, SpanId::INVALID, false, self.sampled(trace))
                }
            },
        };
        let recording = sampled.then(|| {
            let mut r = Recording {
                name: Cow::Borrowed(attrs.metadata().name()),
                kind: Kind::Internal,
                parent: (parent_id != SpanId::INVALID).then_some(parent_id),
                remote_parent: remote,
                start: SystemTime::now(),
                attributes: otlp::Attributes::of_span(attrs.fields().len()),
                status: StatusCode::Unset,
            };
            attrs.record(&mut r);
            Box::new(r)
        });
        span.extensions_mut().insert(SpanIds { trace_id, span_id: new_span_id(), sampled, recording });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(r) = extensions.get_mut::<SpanIds>().and_then(|s| s.recording.as_deref_mut()) {
            values.record(r);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let (Some(queue), Some(span)) = (&self.queue, ctx.span(&id)) else { return };
        let Some(ids) = span.extensions_mut().remove::<SpanIds>() else { return };
        let Some(r) = ids.recording else { return };
        queue.push(&EndedSpan {
            trace_id: ids.trace_id.to_bytes(),
            span_id: ids.span_id.to_bytes(),
            parent_id: r.parent.map(|p| p.to_bytes()),
            parent_is_remote: r.remote_parent,
            name: &r.name,
            kind: r.kind,
            start: r.start,
            end: SystemTime::now(),
            attributes: &r.attributes,
            status: r.status,
        });
    }
}

/// Runs `f` on the ids of `span`, when the process's subscriber keeps them.
pub fn with_ids<T>(span: &tracing::Span, f: impl FnOnce(&SpanIds) -> T) -> Option<T> {
    let mut f = Some(f);
    span.with_subscriber(|(id, dispatch)| {
        let registry = dispatch.downcast_ref::<tracing_subscriber::Registry>()?;
        let data = registry.span(id)?;
        let extensions = data.extensions();
        let ids = extensions.get::<SpanIds>()?;
        f.take().map(|f| f(ids))
    })
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_are_parsed_strictly() {
        let p = RemoteParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap_or_else(|| {
            panic!("a valid traceparent");
        });
        assert_eq!(p.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(p.span_id.to_string(), "00f067aa0ba902b7");
        assert!(p.sampled);
        assert!(
            !RemoteParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").is_some_and(|p| p.sampled)
        );
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(RemoteParent::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_ratio_samples_that_share_of_root_traces() {
        let queue = Some(Arc::new(SpanQueue::new(1024)));
        let layer = SpanLayer::new(queue, 0.25);
        let kept = (0..20_000).filter(|_| layer.sampled(new_trace_id())).count();
        assert!((4_500..5_500).contains(&kept), "{kept}");
        let off = SpanLayer::new(None, 1.0);
        assert!(!(0..100).any(|_| off.sampled(new_trace_id())));
    }

    #[test]
    fn ids_are_valid_and_distinct() {
        let ids: std::collections::HashSet<_> = (0..10_000).map(|_| new_trace_id()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(!ids.contains(&TraceId::INVALID));
        let from_another_thread = std::thread::spawn(new_span_id).join().unwrap();
        assert_ne!(from_another_thread, new_span_id());
        assert_ne!(new_span_id(), SpanId::INVALID);
    }
}
