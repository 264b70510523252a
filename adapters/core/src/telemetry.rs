//! Trace context for adapters: what to send upstream so that the upstream's
//! own logs and spans join the citizen request's trace (W3C `traceparent`).
//!
//! The gateway says where a span's context comes from; an adapter asks for
//! the headers of the span it is in when it sends a request:
//!
//! ```
//! let mut headers = Vec::new();
//! lienthong_adapter_core::telemetry::inject(&tracing::Span::current(), |k, v| headers.push((k.to_owned(), v)));
//! // Outside a traced gateway there is nothing to send.
//! assert!(headers.is_empty());
//! ```

use std::sync::OnceLock;

/// Gives the `traceparent` of a span, when it belongs to a trace.
pub type TraceparentSource = fn(&tracing::Span) -> Option<String>;

static SOURCE: OnceLock<TraceparentSource> = OnceLock::new();

/// Sets where spans' trace context comes from (the gateway's tracing, once
/// per process; later calls are ignored).
pub fn set_traceparent_source(source: TraceparentSource) {
    let _ = SOURCE.set(source);
}

/// Calls `set(header, value)` for each header that carries `span`'s trace
/// context (`traceparent`). Nothing when `span` belongs to no trace.
pub fn inject(span: &tracing::Span, mut set: impl FnMut(&str, String)) {
    if let Some(traceparent) = SOURCE.get().and_then(|source| source(span)) {
        set("traceparent", traceparent);
    }
}

/// Records adapters dropped because they did not match a filter the
/// upstream was asked to apply (a mapping that does not filter), by
/// dataset and filter. The gateway exports them as a metric.
static DROPPED: std::sync::LazyLock<std::sync::Mutex<std::collections::BTreeMap<(String, String), u64>>> =
    std::sync::LazyLock::new(Default::default);

/// Counts one record dropped by `dataset`'s check of `filter`.
pub fn count_dropped(dataset: &str, filter: &str) {
    if let Ok(mut counts) = DROPPED.lock() {
        *counts.entry((dataset.to_owned(), filter.to_owned())).or_insert(0) += 1;
    }
}

/// The records dropped so far: ((dataset, filter), count).
pub fn dropped_counts() -> Vec<((String, String), u64)> {
    DROPPED.lock().map(|c| c.iter().map(|(k, v)| (k.clone(), *v)).collect()).unwrap_or_default()
}

/// Records adapters skipped because they failed validation, by dataset and
/// field at fault. The gateway exports them as a metric.
static INVALID: std::sync::LazyLock<std::sync::Mutex<std::collections::BTreeMap<(String, String), u64>>> =
    std::sync::LazyLock::new(Default::default);

/// Counts one record of `dataset` skipped for its `field`.
pub fn count_invalid(dataset: &str, field: &str) {
    if let Ok(mut counts) = INVALID.lock() {
        *counts.entry((dataset.to_owned(), field.to_owned())).or_insert(0) += 1;
    }
}

/// The records skipped as invalid so far: ((dataset, field), count).
pub fn invalid_counts() -> Vec<((String, String), u64)> {
    INVALID.lock().map(|c| c.iter().map(|(k, v)| (k.clone(), *v)).collect()).unwrap_or_default()
}
