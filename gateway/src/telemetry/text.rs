//! Text log lines: `time LEVEL target: message key=value …`, then the span
//! scope's fields and the `trace_id` of the request, so that a text line can
//! be found in the trace view as a JSON one can.
//!
//! ```text
//! 2026-12-07T09:15:02.120Z  INFO lienthong::access: call method=lienthong.v1.PublicServicesService/GetProcedure code=OK duration_ms=0.412 cache=hit province=79 app=anonymous trace_id=4bf92f3577b34da6a3ce929d0e0e4736
//! ```
//!
//! The access line ([`ACCESS`]) carries the method once, with the server
//! span's province and app lifted beside it; other lines
//! show their spans' fields (`in rpc{…} cache fill{…}`). Span fields are
//! formatted as JSON by the fmt layer, as for [`super::json`].

use std::fmt;

use serde_json::{Map, Value};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::{LookupSpan, SpanRef};

use super::json::Fields;

/// The access log's target: one line per call.
pub const ACCESS: &str = "lienthong::access";

/// The server span's fields an access line lifts, and their names there
/// (the line has the cache outcome already).
pub(super) const LIFTED: [(&str, &str); 2] = [("lienthong.province", "province"), ("lienthong.app", "app")];

/// The text line formatter.
#[derive(Debug, Clone, Copy)]
pub struct TextLines {
    /// Colour the level (only for a terminal).
    pub ansi: bool,
}

/// The fields a span was given, as the fmt layer stored them (JSON).
pub(super) fn span_fields<S, N>(span: &SpanRef<'_, S>) -> Map<String, Value>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    span.extensions()
        .get::<FormattedFields<N>>()
        .and_then(|f| serde_json::from_str::<Map<String, Value>>(f).ok())
        .unwrap_or_default()
}

/// A value as a text line writes it: bare when it has no space, quoted when
/// it does (or is empty).
fn write_value(w: &mut Writer<'_>, value: &Value) -> fmt::Result {
    match value {
        Value::String(s) if !s.is_empty() && !s.contains(char::is_whitespace) && !s.contains('"') => w.write_str(s),
        Value::String(s) => write!(w, "{s:?}"),
        other => write!(w, "{other}"),
    }
}

impl<S, N> FormatEvent<S, N> for TextLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut w: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let meta = event.metadata();
        let time = humantime::format_rfc3339_millis(std::time::SystemTime::now());
        let level = meta.level().as_str();
        if self.ansi {
            let colour = match *meta.level() {
                tracing::Level::ERROR => 31,
                tracing::Level::WARN => 33,
                tracing::Level::INFO => 32,
                _ => 34,
            };
            write!(w, "{time} \x1b[{colour}m{level:>5}\x1b[0m {}: ", meta.target())?;
        } else {
            write!(w, "{time} {level:>5} {}: ", meta.target())?;
        }
        let mut fields = Fields(Vec::new());
        event.record(&mut fields);
        if let Some((_, message)) = fields.0.iter().find(|(k, _)| *k == "message") {
            match message {
                Value::String(m) => w.write_str(m)?,
                other => write!(w, "{other}")?,
            }
        }
        for (key, value) in fields.0.iter().filter(|(k, _)| *k != "message") {
            write!(w, " {key}=")?;
            write_value(&mut w, value)?;
        }
        let span = event.parent().and_then(|id| ctx.span(id)).or_else(|| ctx.lookup_current());
        if let Some(span) = span {
            if meta.target() == ACCESS {
                let server = span.scope().from_root().next().map(|root| span_fields::<S, N>(&root)).unwrap_or_default();
                for (from, to) in LIFTED {
                    if let Some(value) = server.get(from) {
                        write!(w, " {to}=")?;
                        write_value(&mut w, value)?;
                    }
                }
            } else {
                w.write_str(" in")?;
                for s in span.scope().from_root() {
                    write!(w, " {}{{", s.name())?;
                    for (i, (key, value)) in span_fields::<S, N>(&s).iter().enumerate() {
                        if i > 0 {
                            w.write_char(' ')?;
                        }
                        write!(w, "{key}=")?;
                        write_value(&mut w, value)?;
                    }
                    w.write_char('}')?;
                }
            }
            let trace =
                span.scope().find_map(|s| s.extensions().get::<super::spans::SpanIds>().map(|ids| ids.trace_id));
            if let Some(trace_id) = trace {
                write!(w, " trace_id={trace_id}")?;
            }
        }
        writeln!(w)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn an_access_line_has_the_method_once_and_the_trace_id_and_others_their_spans() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let fmt = tracing_subscriber::fmt::layer()
            .with_writer(move || writer.clone())
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(TextLines { ansi: false });
        let subscriber =
            tracing_subscriber::registry().with(crate::telemetry::spans::SpanLayer::new(None, 1.0)).with(fmt);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "rpc",
                rpc.method = "lienthong.v1.HealthcareService/ListFacilities",
                lienthong.province = "79",
                lienthong.app = "kiosk"
            );
            let method = "lienthong.v1.HealthcareService/ListFacilities";
            tracing::info!(target: ACCESS, parent: span.id(), method, code = "OK", duration_ms = 0.412, cache = "hit", "call");
            span.in_scope(|| tracing::warn!(status = 503, "upstream answered an error"));
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        let access = lines[0];
        assert!(
            access.contains(
                " INFO lienthong::access: call method=lienthong.v1.HealthcareService/ListFacilities code=OK \
                 duration_ms=0.412 cache=hit province=79 app=kiosk trace_id="
            ),
            "{access}"
        );
        assert_eq!(access.matches("ListFacilities").count(), 1, "{access}");
        let trace_id = access.rsplit("trace_id=").next().unwrap();
        assert!(trace_id.len() == 32 && trace_id.bytes().all(|b| b.is_ascii_hexdigit()), "{access}");
        // Another line shows its spans' fields, and the same trace.
        assert!(lines[1].contains("upstream answered an error status=503 in rpc{"), "{}", lines[1]);
        assert!(lines[1].contains("lienthong.province=79") && lines[1].ends_with(trace_id), "{}", lines[1]);
    }
}
