//! Trace context for adapters: what to send upstream so that the upstream's
//! own logs and spans join the citizen request's trace (W3C `traceparent`
//! and `tracestate`).
//!
//! The gateway installs the propagator; an adapter asks for the headers of
//! the span it is in when it sends a request:
//!
//! ```
//! let mut headers = Vec::new();
//! lienthong_adapter_core::telemetry::inject(&tracing::Span::current(), |k, v| headers.push((k.to_owned(), v)));
//! // Without an OpenTelemetry layer installed there is nothing to send.
//! assert!(headers.is_empty());
//! ```

use opentelemetry::propagation::Injector;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

struct Setter<F>(F);

impl<F: FnMut(&str, String)> Injector for Setter<F> {
    fn set(&mut self, key: &str, value: String) {
        (self.0)(key, value)
    }
}

/// Calls `set(header, value)` for each header that carries `span`'s trace
/// context (`traceparent`, and `tracestate` when there is one). Nothing when
/// `span` belongs to no trace.
pub fn inject(span: &tracing::Span, set: impl FnMut(&str, String)) {
    let cx = span.context();
    let mut setter = Setter(set);
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut setter));
}
