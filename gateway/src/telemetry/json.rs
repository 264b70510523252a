//! JSON log lines: one object per event, its fields at the top level, and
//! the `trace_id` and `span_id` of the span it happened in, so that a log
//! line, the trace in Jaeger and the audit record of one request share one
//! id.
//!
//! ```json
//! {"timestamp":"2026-11-23T09:15:02.120394Z","level":"WARN","target":"lienthong_adapter_http",
//!  "message":"upstream answered an error","status":503,
//!  "span":"adapter","spans":[{"name":"rpc","lienthong.province":"79",…},{"name":"cache fill"},…],
//!  "trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7"}
//! ```
//!
//! The access line (one per call) is compact: the method once, and the
//! server span's province, app and cache outcome lifted beside it instead of
//! the span list:
//!
//! ```json
//! {"timestamp":"…","level":"INFO","target":"lienthong::access","message":"call",
//!  "method":"lienthong.v1.PublicServicesService/GetProcedure","code":"OK","duration_ms":0.412,
//!  "province":"79","app":"anonymous","cache":"hit","trace_id":"…","span_id":"…"}
//! ```
//!
//! Span fields are formatted as JSON by the fmt layer
//! ([`tracing_subscriber::fmt::format::JsonFields`]), so they are read back
//! here as objects.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The JSON line formatter.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLines;

/// An event's fields as JSON values, in the order the event gives them.
pub(super) struct Fields(pub(super) Vec<(&'static str, Value)>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.push((field.name(), Value::String(format!("{value:?}"))));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name(), Value::String(value.to_owned())));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.push((field.name(), Value::from(value)));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.push((field.name(), Value::from(value)));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.push((field.name(), Value::from(value)));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.push((field.name(), Value::from(value)));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.push((field.name(), Value::String(value.to_string())));
    }
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string().into(),
        );
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        let mut fields = Fields(Vec::new());
        event.record(&mut fields);
        line.extend(fields.0.into_iter().map(|(k, v)| (k.to_owned(), v)));
        let span = event.parent().and_then(|id| ctx.span(id)).or_else(|| ctx.lookup_current());
        if let Some(span) = span {
            if meta.target() == super::text::ACCESS {
                let server = span
                    .scope()
                    .from_root()
                    .next()
                    .map(|root| super::text::span_fields::<S, N>(&root))
                    .unwrap_or_default();
                for (from, to) in super::text::LIFTED {
                    if let Some(value) = server.get(from) {
                        line.insert(to.into(), value.clone());
                    }
                }
            } else {
                line.insert("span".into(), span.name().into());
                // Each span of the scope with its fields, outermost first (the
                // server span says province, app and cache outcome).
                let spans: Vec<Value> = span
                    .scope()
                    .from_root()
                    .map(|s| {
                        let mut fields = super::text::span_fields::<S, N>(&s);
                        fields.insert("name".into(), s.name().into());
                        Value::Object(fields)
                    })
                    .collect();
                line.insert("spans".into(), spans.into());
            }
            // The innermost span of the scope that belongs to a trace.
            let ids = span
                .scope()
                .find_map(|s| s.extensions().get::<super::spans::SpanIds>().map(|ids| (ids.trace_id, ids.span_id)));
            if let Some((trace_id, span_id)) = ids {
                line.insert("trace_id".into(), trace_id.to_string().into());
                line.insert("span_id".into(), span_id.to_string().into());
            }
        }
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}
