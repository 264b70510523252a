//! What operators see: traces (OpenTelemetry, exported over OTLP/gRPC),
//! logs (one JSON line per event, carrying the trace and span ids of the
//! request it belongs to), and metrics ([`metrics`], scraped by Prometheus
//! from the ops port and exported over OTLP).
//!
//! A request's spans: one server span per RPC ([`rpc`]), with children for
//! the rate-limit decision, the cache lookup and fill, each adapter attempt,
//! and each upstream HTTP request (W3C `traceparent` sent along). Span
//! attributes never hold personal data: ids, names, tokens and URLs' paths
//! stay out; the province, the app id, the method and the adapter instance
//! are what a span says.

pub mod json;
pub mod metrics;
pub mod otlp;
pub mod process;
pub mod rpc;
pub mod spans;
pub mod stats;
pub mod text;
pub mod view;

use anyhow::Context as _;

use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;
use tracing::Level;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::{EnvFilter, filter_fn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

pub use crate::config::TelemetryConfig;

impl TelemetryConfig {
    /// The OTLP endpoint, when traces are exported.
    fn trace_endpoint(&self) -> Option<&str> {
        self.otlp_endpoint.as_deref().filter(|_| self.traces)
    }

    /// The OTLP endpoint, when metrics are pushed.
    pub fn metrics_endpoint(&self) -> Option<&str> {
        self.otlp_endpoint.as_deref().filter(|_| self.metrics)
    }

    /// The resource every span and metric is attributed to: the service's
    /// name and version, `OTEL_RESOURCE_ATTRIBUTES`, `[telemetry] resource`
    /// (which wins), and a `service.instance.id` so that replicas pushing
    /// over OTLP do not collide (see [`instance_id`]).
    pub fn resource(&self) -> Resource {
        let from_env = std::env::var("OTEL_RESOURCE_ATTRIBUTES").unwrap_or_default();
        let given = self.resource.contains_key("service.instance.id")
            || from_env.split(',').any(|kv| kv.trim_start().starts_with("service.instance.id="));
        let instance = (!given).then(|| KeyValue::new("service.instance.id", instance_id()));
        Resource::builder()
            .with_service_name(self.service_name.clone())
            .with_attributes(
                std::iter::once(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
                    .chain(instance)
                    .chain(self.resource.iter().map(|(k, v)| KeyValue::new(k.clone(), v.clone()))),
            )
            .build()
    }
}

/// This replica's default `service.instance.id`: the pod's name in
/// Kubernetes (`POD_NAME` from the downward API, else `HOSTNAME`, which
/// Kubernetes sets to it), else the host's name; the process id when
/// neither is known.
pub fn instance_id() -> String {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let in_kubernetes = env("KUBERNETES_SERVICE_HOST").is_some();
    env("POD_NAME")
        .or_else(|| in_kubernetes.then(|| env("HOSTNAME")).flatten())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
        })
        .or_else(|| env("HOSTNAME"))
        .unwrap_or_else(|| format!("pid-{}", std::process::id()))
}

/// The log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, with `trace_id` and `span_id`.
    Json,
}

/// Keeps tracing running; [`Tracing::shutdown`] sends the spans not yet
/// exported.
#[derive(Debug)]
pub struct Tracing {
    export: Option<otlp::Export>,
}

impl Tracing {
    /// Sends what is queued and stops the exporter (blocking: call from
    /// `spawn_blocking` or outside the runtime).
    pub fn shutdown(self) {
        if let Some(e) = self.export
            && !e.shutdown()
        {
            eprintln!("lienthong: sending the last spans at exit failed");
        }
    }

    /// Exports every finished span now (blocking, as [`Tracing::shutdown`]).
    pub fn flush(&self) {
        if let Some(e) = &self.export {
            e.flush();
        }
    }
}

/// The export of `config`'s traces: sampled spans sent in batches over
/// OTLP/gRPC by a thread of its own, when an endpoint is set.
pub fn span_export(config: &TelemetryConfig) -> anyhow::Result<Option<otlp::Export>> {
    let Some(endpoint) = config.trace_endpoint() else { return Ok(None) };
    let resource = config.resource().iter().map(|(k, v)| (k.as_str().to_owned(), v.as_str().into_owned())).collect();
    otlp::Export::start(endpoint, resource, config.max_queued_spans)
        .with_context(|| format!("starting the OTLP span export to {endpoint}"))
        .map(Some)
}

/// Which spans become OpenTelemetry spans, whatever the log filter: those
/// at INFO and above (the request's layers).
fn otel_filter(meta: &tracing::Metadata<'_>) -> bool {
    meta.is_span() && *meta.level() <= Level::INFO
}

/// Installs the process's tracing: `RUST_LOG`-filtered logs in `format` to
/// `writer`, and every request's spans to `config`'s collector; upstream
/// requests carry the W3C `traceparent` of their span. Call once, inside
/// the Tokio runtime.
pub fn init<W>(config: &TelemetryConfig, format: LogFormat, writer: W, ansi: bool) -> anyhow::Result<Tracing>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    lienthong_adapter_core::telemetry::set_traceparent_source(|span| {
        spans::with_ids(span, spans::SpanIds::traceparent)
    });
    let export = span_export(config)?;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,h2=warn,hyper=warn,tower=warn,opentelemetry=warn"));
    let otel = spans::SpanLayer::new(export.as_ref().map(|e| e.queue().clone()), config.sampling_ratio)
        .with_filter(filter_fn(otel_filter));
    // Span fields are kept as JSON in both formats, for the formatters to
    // read back.
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi)
        .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new());
    let registry = tracing_subscriber::registry().with(otel);
    match format {
        LogFormat::Text => registry.with(fmt.event_format(text::TextLines { ansi }).with_filter(filter)).try_init()?,
        LogFormat::Json => registry.with(fmt.event_format(json::JsonLines).with_filter(filter)).try_init()?,
    }
    Ok(Tracing { export })
}

/// The trace id of `span` (32 hex digits), when it belongs to a trace.
pub fn trace_id_of(span: &tracing::Span) -> Option<String> {
    spans::with_ids(span, |ids| ids.trace_id.to_string())
}

/// Whether `span`'s trace is exported.
pub fn sampled(span: &tracing::Span) -> bool {
    spans::with_ids(span, |ids| ids.sampled).unwrap_or(false)
}

/// `trace_id` as 32 lowercase hex digits, without an allocation.
pub fn hex_trace_id(trace_id: opentelemetry::trace::TraceId) -> [u8; 32] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = [0u8; 32];
    for (i, b) in trace_id.to_bytes().iter().enumerate() {
        hex[2 * i] = DIGITS[usize::from(b >> 4)];
        hex[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attribute(resource: &Resource, key: &'static str) -> Option<String> {
        resource.get(&opentelemetry::Key::from_static_str(key)).map(|v| v.as_str().into_owned())
    }

    #[test]
    fn every_replica_names_itself_unless_told_its_name() {
        let config = TelemetryConfig::default();
        let id = attribute(&config.resource(), "service.instance.id").unwrap();
        assert_eq!(id, instance_id());
        assert!(!id.is_empty());
        let mut named = TelemetryConfig::default();
        named.resource.insert("service.instance.id".into(), "gw-3".into());
        assert_eq!(attribute(&named.resource(), "service.instance.id").as_deref(), Some("gw-3"));
        assert_eq!(attribute(&named.resource(), "service.name").as_deref(), Some(config.service_name.as_str()));
    }
}
