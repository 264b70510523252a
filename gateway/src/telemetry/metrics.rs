//! The gateway's metrics: OpenTelemetry instruments, read by Prometheus from
//! the ops port (`/metrics`) and pushed over OTLP when a collector is
//! configured. [`METRICS`] is the one table of every name and label; the
//! README's operations section prints it, and a test checks that a scrape
//! holds exactly these.
//!
//! No label holds personal data, nor anything a caller chooses freely:
//! methods are the gateway's own (an unknown path is `_OTHER`), instances and
//! provinces come from config, outcomes and codes are fixed sets.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{BoundCounter, BoundHistogram, Counter, Histogram, Meter, MeterProvider as _};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};

use lienthong_adapter_core::Method;

use super::TelemetryConfig;
use super::view::{CacheView, InstanceView, Observed};

/// One metric as documented: OpenTelemetry name, Prometheus name, type,
/// labels (Prometheus spelling) and meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricDoc {
    /// The OpenTelemetry instrument name (OTLP).
    pub otel: &'static str,
    /// The name Prometheus scrapes.
    pub prometheus: &'static str,
    /// counter, gauge or histogram.
    pub kind: &'static str,
    /// Its labels.
    pub labels: &'static [&'static str],
    /// What it counts.
    pub help: &'static str,
}

const fn doc(
    otel: &'static str,
    prometheus: &'static str,
    kind: &'static str,
    labels: &'static [&'static str],
    help: &'static str,
) -> MetricDoc {
    MetricDoc { otel, prometheus, kind, labels, help }
}

/// Every metric the gateway exports.
pub const METRICS: &[MetricDoc] = &[
    doc(
        "rpc.server.call.duration",
        "rpc_server_call_duration_seconds",
        "histogram",
        &["rpc_system_name", "rpc_service", "rpc_method", "rpc_response_status_code"],
        "Duration of gRPC calls served, by service, method and status code; its _count is the request count. Shed calls are counted in lienthong_shed_total instead.",
    ),
    doc("lienthong.rpc.in_flight", "lienthong_rpc_in_flight", "gauge", &[], "gRPC calls being served now."),
    doc(
        "lienthong.shed",
        "lienthong_shed_total",
        "counter",
        &[],
        "Calls refused at once with UNAVAILABLE because server.max_concurrent_requests were in progress.",
    ),
    doc(
        "lienthong.edge.refused",
        "lienthong_edge_refused_total",
        "counter",
        &["reason"],
        "Calls and connections refused before any work: malformed (framing, encoding, headers; INVALID_ARGUMENT or UNIMPLEMENTED), too_large (OUT_OF_RANGE or RESOURCE_EXHAUSTED), read_timeout (message not arrived within server.request_read_timeout), deadline (the caller's grpc-timeout expired), connection_limit (server.max_connections open), header_timeout (no call begun within server.header_read_timeout).",
    ),
    doc("lienthong.connections", "lienthong_connections", "gauge", &[], "Client connections open now."),
    doc(
        "lienthong.cache.lookups",
        "lienthong_cache_lookups_total",
        "counter",
        &["rpc_method", "lienthong_cache_outcome"],
        "Cache lookups by outcome: hit, stale (served past freshness), miss (filled for this call), coalesced (waited for a concurrent fill).",
    ),
    doc(
        "lienthong.cache.evictions",
        "lienthong_cache_evictions_total",
        "counter",
        &["lienthong_cache_cause"],
        "Entries that left the cache: size (evicted for room), expired, removed (invalidated), replaced.",
    ),
    doc("lienthong.cache.entries", "lienthong_cache_entries", "gauge", &[], "Entries in the response cache."),
    doc(
        "lienthong.cache.size",
        "lienthong_cache_size_bytes",
        "gauge",
        &[],
        "Estimated memory held by the response cache (bounded by cache.max_bytes).",
    ),
    doc(
        "lienthong.limiter.rejections",
        "lienthong_limiter_rejections_total",
        "counter",
        &["lienthong_limit"],
        "Calls refused by a rate limit: app, citizen or upstream (an instance's request budget).",
    ),
    doc(
        "lienthong.adapter.call.duration",
        "lienthong_adapter_call_duration_seconds",
        "histogram",
        &["lienthong_adapter_instance", "lienthong_adapter_kind", "lienthong_outcome"],
        "Duration of each adapter attempt (one per retry), by instance and outcome (ok, or the error kind).",
    ),
    doc(
        "lienthong.adapter.errors",
        "lienthong_adapter_errors_total",
        "counter",
        &["lienthong_adapter_instance", "lienthong_adapter_kind", "error_type"],
        "Failed adapter attempts, and calls the guard refused (breaker_open, bulkhead_full), by instance and error kind.",
    ),
    doc(
        "lienthong.adapter.contract_violations",
        "lienthong_adapter_contract_violations_total",
        "counter",
        &["lienthong_adapter_instance", "lienthong_rule"],
        "Answers an adapter got wrong and the gateway mended before passing them on, by instance and contract rule (PAGE-SIZE: more records than page_size; NFC: text not in Unicode NFC).",
    ),
    doc(
        "lienthong.adapter.records_dropped",
        "lienthong_adapter_records_dropped_total",
        "counter",
        &["lienthong_dataset", "lienthong_filter"],
        "Records a warehouse adapter received although they do not match a filter the upstream was asked to apply, dropped before the answer, by dataset and filter: a mapping that does not filter.",
    ),
    doc(
        "lienthong.adapter.records_invalid",
        "lienthong_adapter_records_invalid_total",
        "counter",
        &["lienthong_dataset", "lienthong_field"],
        "Records a warehouse adapter skipped because they failed validation (a missing id, a non-number, coordinates off the globe), by dataset and field at fault; the rest of the answer is served.",
    ),
    doc(
        "lienthong.breaker.state",
        "lienthong_breaker_state",
        "gauge",
        &["lienthong_adapter_instance"],
        "Each instance's circuit breaker: 0 closed, 1 half-open, 2 open.",
    ),
    doc(
        "lienthong.adapter.in_flight",
        "lienthong_adapter_in_flight",
        "gauge",
        &["lienthong_adapter_instance"],
        "Calls in flight to each instance (its bulkhead's occupancy).",
    ),
    doc(
        "lienthong.telemetry.spans.dropped",
        "lienthong_telemetry_spans_dropped_total",
        "counter",
        &[],
        "Sampled spans that never reached the OTLP collector: the export queue (telemetry.max_queued_spans) was full, the collector refused or rejected them, or it was away when the gateway stopped. While the collector is away, spans wait in the queue and are sent again.",
    ),
    doc(
        "lienthong.cluster.fallbacks",
        "lienthong_cluster_fallbacks_total",
        "counter",
        &[],
        "Rate-limit decisions made without Redis ([cluster]): it did not answer within cluster.command_timeout, so this replica decided with its share of the limit (or refused, for the limits in cluster.fail_closed). Always 0 without [cluster].",
    ),
    doc(
        "lienthong.cache.shared",
        "lienthong_cache_shared_total",
        "counter",
        &["outcome"],
        "Misses of this replica's cache for the RPCs in cluster.shared_cache, by how they were filled: hit (another replica's answer, in Redis), waited (the same, after waiting for the replica filling it), filled (from the upstream by this replica, then shared), alone (from the upstream without Redis: away, or the other replica's fill took over 2 s or failed).",
    ),
];

/// The documented meaning of the metric named `otel`.
fn help(otel: &str) -> &'static str {
    METRICS.iter().find(|m| m.otel == otel).map(|m| m.help).unwrap_or_default()
}

/// Histogram bounds for durations, in seconds.
const SECONDS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// The outcomes of a call besides the gRPC codes: webhooks' HTTP classes.
const HTTP_OUTCOMES: [&str; 2] = ["HTTP_4XX", "HTTP_5XX"];
/// gRPC codes are 0 to 16.
const GRPC_CODES: usize = 17;

/// The place of `code` (as `rpc.response.status_code` names it) among a
/// call's outcomes: the gRPC codes in order, then [`HTTP_OUTCOMES`].
fn code_slot(code: &str) -> Option<usize> {
    (0..GRPC_CODES as i32)
        .position(|i| crate::errors::code_name(tonic::Code::from(i)) == code)
        .or_else(|| HTTP_OUTCOMES.iter().position(|h| *h == code).map(|h| GRPC_CODES + h))
}

/// The outcomes of a cache lookup.
const CACHE_OUTCOMES: [&str; 4] = ["hit", "stale", "miss", "coalesced"];

/// An instrument's series, bound to their attributes on first use so that
/// recording needs no attribute lookup; a slot for each combination of a
/// fixed set of label values.
struct Bound<T>(Box<[OnceLock<T>]>);

impl<T> Bound<T> {
    fn new(slots: usize) -> Self {
        Self((0..slots).map(|_| OnceLock::new()).collect())
    }

    /// The series in `slot`, bound by `bind` the first time.
    fn get(&self, slot: usize, bind: impl FnOnce() -> T) -> Option<&T> {
        self.0.get(slot).map(|s| s.get_or_init(bind))
    }
}

/// The gateway's instruments and their exporters.
pub struct Metrics {
    registry: prometheus::Registry,
    provider: SdkMeterProvider,
    meter: Meter,
    rpc_duration: Histogram<f64>,
    /// `rpc_duration` by method and code.
    rpc_bound: Bound<BoundHistogram<f64>>,
    cache_lookups: Counter<u64>,
    /// `cache_lookups` by method and outcome.
    cache_bound: Bound<BoundCounter<u64>>,
    limiter_rejections: Counter<u64>,
    adapter_duration: Histogram<f64>,
    adapter_errors: Counter<u64>,
    contract_violations: Counter<u64>,
    in_flight: Arc<AtomicI64>,
    /// Rejections by limit (app, citizen, upstream), for the status page.
    rejected: [AtomicU64; 3],
}

/// The rate limits, as the `lienthong_limit` label names them.
pub const LIMITS: [&str; 3] = ["app", "citizen", "upstream"];

/// What an adapter instance's error counter counts (`error.type`): the
/// failures its breaker counts, and the guard's refusals.
pub const ADAPTER_ERRORS: [&str; 6] =
    ["unavailable", "deadline_exceeded", "rate_limited", "unexpected", "breaker_open", "bulkhead_full"];

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Instruments read by a Prometheus registry of their own, and pushed
    /// over OTLP when `config` names a collector (build inside the runtime).
    pub fn new(config: &TelemetryConfig) -> anyhow::Result<Self> {
        let registry = prometheus::Registry::new();
        // The process's own: CPU, memory, file descriptors, threads, start.
        registry.register(Box::new(super::process::ProcessCollector::new())).context("registering process metrics")?;
        let prometheus = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .scope_info_enabled(false)
            .build()
            .context("building the Prometheus exporter")?;
        let mut builder = SdkMeterProvider::builder().with_resource(config.resource()).with_reader(prometheus);
        if let Some(endpoint) = config.metrics_endpoint() {
            let exporter = opentelemetry_otlp::MetricExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .with_timeout(Duration::from_secs(10))
                .build()
                .with_context(|| format!("building the OTLP metric exporter for {endpoint}"))?;
            builder =
                builder.with_reader(PeriodicReader::builder(exporter).with_interval(config.metrics_interval).build());
        }
        let provider = builder.build();
        let meter = provider.meter("lienthong");
        let seconds = |name: &'static str| {
            meter
                .f64_histogram(name)
                .with_unit("s")
                .with_description(help(name))
                .with_boundaries(SECONDS.to_vec())
                .build()
        };
        let counter = |name: &'static str| meter.u64_counter(name).with_description(help(name)).build();
        Ok(Self {
            rpc_duration: seconds("rpc.server.call.duration"),
            rpc_bound: Bound::new(super::rpc::RpcName::count() * (GRPC_CODES + HTTP_OUTCOMES.len())),
            cache_lookups: counter("lienthong.cache.lookups"),
            cache_bound: Bound::new(Method::ALL.len() * CACHE_OUTCOMES.len()),
            limiter_rejections: counter("lienthong.limiter.rejections"),
            adapter_duration: seconds("lienthong.adapter.call.duration"),
            adapter_errors: counter("lienthong.adapter.errors"),
            contract_violations: counter("lienthong.adapter.contract_violations"),
            in_flight: Arc::new(AtomicI64::new(0)),
            rejected: Default::default(),
            registry,
            provider,
            meter,
        })
    }

    /// Registers the gauges and counters read from the running gateway when
    /// metrics are collected: cache size and evictions, breakers, in-flight
    /// calls, shed and refused calls, connections.
    pub fn observe(&self, observed: Arc<dyn Observed>) {
        let in_flight = self.in_flight.clone();
        self.meter
            .i64_observable_gauge("lienthong.rpc.in_flight")
            .with_description(help("lienthong.rpc.in_flight"))
            .with_callback(move |o| o.observe(in_flight.load(Ordering::Relaxed), &[]))
            .build();
        let seen = observed.clone();
        self.meter
            .u64_observable_counter("lienthong.shed")
            .with_description(help("lienthong.shed"))
            .with_callback(move |o| o.observe(seen.shed(), &[]))
            .build();
        let seen = observed.clone();
        self.meter
            .u64_observable_counter("lienthong.edge.refused")
            .with_description(help("lienthong.edge.refused"))
            .with_callback(move |o| {
                for (why, n) in seen.refused() {
                    o.observe(n, &[KeyValue::new("reason", why)]);
                }
            })
            .build();
        let seen = observed.clone();
        self.meter
            .i64_observable_gauge("lienthong.connections")
            .with_description(help("lienthong.connections"))
            .with_callback(move |o| o.observe(i64::try_from(seen.connections()).unwrap_or(i64::MAX), &[]))
            .build();
        let seen = observed.clone();
        self.meter
            .u64_observable_counter("lienthong.cluster.fallbacks")
            .with_description(help("lienthong.cluster.fallbacks"))
            .with_callback(move |o| o.observe(seen.cluster().map_or(0, |c| c.fallbacks), &[]))
            .build();
        let seen = observed.clone();
        self.meter
            .u64_observable_counter("lienthong.cache.shared")
            .with_description(help("lienthong.cache.shared"))
            .with_callback(move |o| {
                let counts = seen
                    .cluster()
                    .map_or_else(|| crate::cluster::cache::SharedCounts::default().by_outcome(), |c| c.shared_cache);
                for (outcome, n) in counts {
                    o.observe(n, &[KeyValue::new("outcome", outcome)]);
                }
            })
            .build();
        self.meter
            .u64_observable_counter("lienthong.telemetry.spans.dropped")
            .with_description(help("lienthong.telemetry.spans.dropped"))
            .with_callback(|o| o.observe(super::otlp::dropped_spans(), &[]))
            .build();
        let seen = observed.clone();
        self.meter
            .u64_observable_counter("lienthong.cache.evictions")
            .with_description(help("lienthong.cache.evictions"))
            .with_callback(move |o| {
                for (cause, n) in seen.cache().evictions {
                    o.observe(n, &[KeyValue::new("lienthong.cache.cause", cause)]);
                }
            })
            .build();
        self.meter
            .u64_observable_counter("lienthong.adapter.records_dropped")
            .with_description(help("lienthong.adapter.records_dropped"))
            .with_callback(|o| {
                for ((dataset, filter), n) in lienthong_adapter_core::telemetry::dropped_counts() {
                    o.observe(
                        n,
                        &[KeyValue::new("lienthong.dataset", dataset), KeyValue::new("lienthong.filter", filter)],
                    );
                }
            })
            .build();
        self.meter
            .u64_observable_counter("lienthong.adapter.records_invalid")
            .with_description(help("lienthong.adapter.records_invalid"))
            .with_callback(|o| {
                for ((dataset, field), n) in lienthong_adapter_core::telemetry::invalid_counts() {
                    o.observe(
                        n,
                        &[KeyValue::new("lienthong.dataset", dataset), KeyValue::new("lienthong.field", field)],
                    );
                }
            })
            .build();
        // Every series known in advance exists from the start, at zero, so
        // that dashboards and alerts have something to read before trouble.
        for limit in LIMITS {
            self.limiter_rejections.add(0, &[KeyValue::new("lienthong.limit", limit)]);
        }
        for i in observed.instances() {
            let instance = KeyValue::new("lienthong.adapter.instance", i.name.clone());
            let kind = KeyValue::new("lienthong.adapter.kind", i.kind.clone());
            for error in ADAPTER_ERRORS {
                self.adapter_errors.add(0, &[instance.clone(), kind.clone(), KeyValue::new("error.type", error)]);
            }
        }
        self.cache_gauge(observed.clone(), "lienthong.cache.entries", None, |c| c.entries);
        self.cache_gauge(observed.clone(), "lienthong.cache.size", Some("By"), |c| c.bytes);
        self.per_instance(observed.clone(), "lienthong.breaker.state", |i| i.breaker.gauge());
        self.per_instance(observed, "lienthong.adapter.in_flight", |i| i.in_flight as u64);
    }

    /// A gauge of the response cache's usage, in `unit` when it has one.
    fn cache_gauge(
        &self,
        observed: Arc<dyn Observed>,
        name: &'static str,
        unit: Option<&'static str>,
        value: fn(&CacheView) -> u64,
    ) {
        let gauge = self.meter.u64_observable_gauge(name);
        let gauge = match unit {
            Some(unit) => gauge.with_unit(unit),
            None => gauge,
        };
        gauge.with_description(help(name)).with_callback(move |o| o.observe(value(&observed.cache()), &[])).build();
    }

    /// A gauge with one value per adapter instance.
    fn per_instance(&self, observed: Arc<dyn Observed>, name: &'static str, value: fn(&InstanceView) -> u64) {
        self.meter
            .u64_observable_gauge(name)
            .with_description(help(name))
            .with_callback(move |o| {
                for i in observed.instances() {
                    o.observe(value(&i), &[KeyValue::new("lienthong.adapter.instance", i.name.clone())]);
                }
            })
            .build();
    }

    /// The Prometheus text exposition of every metric now.
    pub fn scrape(&self) -> anyhow::Result<String> {
        let families = self.registry.gather();
        Ok(prometheus::TextEncoder::new().encode_to_string(&families)?)
    }

    /// Pushes pending metrics and stops the OTLP reader (blocking).
    pub fn shutdown(&self) {
        let _ = self.provider.shutdown();
    }

    /// One gRPC call served: its duration and status code.
    pub fn rpc(&self, rpc: &super::rpc::RpcName, code: &'static str, elapsed: Duration) {
        let attributes = || {
            [
                KeyValue::new("rpc.system.name", "grpc"),
                KeyValue::new("rpc.service", rpc.service),
                KeyValue::new("rpc.method", rpc.method),
                KeyValue::new("rpc.response.status_code", code),
            ]
        };
        let slot = code_slot(code).map(|c| usize::from(rpc.index) * (GRPC_CODES + HTTP_OUTCOMES.len()) + c);
        match slot.and_then(|slot| self.rpc_bound.get(slot, || self.rpc_duration.bind(&attributes()))) {
            Some(bound) => bound.record(elapsed.as_secs_f64()),
            None => self.rpc_duration.record(elapsed.as_secs_f64(), &attributes()),
        }
    }

    /// The counter of calls in progress.
    pub fn in_flight(&self) -> &Arc<AtomicI64> {
        &self.in_flight
    }

    /// A cache lookup of `method` and its outcome.
    pub fn cache_lookup(&self, method: Method, outcome: &'static str) {
        let attributes =
            || [KeyValue::new("rpc.method", method.rpc_name()), KeyValue::new("lienthong.cache.outcome", outcome)];
        let slot =
            CACHE_OUTCOMES.iter().position(|o| *o == outcome).map(|o| method as usize * CACHE_OUTCOMES.len() + o);
        match slot.and_then(|slot| self.cache_bound.get(slot, || self.cache_lookups.bind(&attributes()))) {
            Some(bound) => bound.add(1),
            None => self.cache_lookups.add(1, &attributes()),
        }
    }

    /// A call refused by the `limit` rate limit (app, citizen, upstream).
    pub fn limiter_rejection(&self, limit: &'static str) {
        if let Some(i) = LIMITS.iter().position(|l| *l == limit) {
            self.rejected[i].fetch_add(1, Ordering::Relaxed);
        }
        self.limiter_rejections.add(1, &[KeyValue::new("lienthong.limit", limit)]);
    }

    /// Rejections so far, by limit.
    pub fn rejections(&self) -> std::collections::BTreeMap<&'static str, u64> {
        LIMITS.iter().zip(&self.rejected).map(|(l, n)| (*l, n.load(Ordering::Relaxed))).collect()
    }

    /// One adapter attempt: its instance, kind, duration, outcome (an error
    /// kind, `None` for an answer), and whether it failed (the upstream's
    /// fault, as the breaker counts it; NOT_FOUND is an answer).
    pub fn adapter_attempt(
        &self,
        instance: &Arc<str>,
        kind: &Arc<str>,
        elapsed: Duration,
        outcome: Option<&'static str>,
        failed: bool,
    ) {
        let instance = KeyValue::new("lienthong.adapter.instance", instance.clone());
        let kind = KeyValue::new("lienthong.adapter.kind", kind.clone());
        let label = KeyValue::new("lienthong.outcome", outcome.unwrap_or("ok"));
        self.adapter_duration.record(elapsed.as_secs_f64(), &[instance.clone(), kind.clone(), label]);
        if let (Some(error), true) = (outcome, failed) {
            self.adapter_errors.add(1, &[instance, kind, KeyValue::new("error.type", error)]);
        }
    }

    /// An answer of `instance` that broke contract rule `rule` and was
    /// mended (logged once per answer).
    pub fn contract_violation(&self, instance: &str, rule: &'static str) {
        tracing::warn!(instance, rule, "an adapter's answer broke the contract; the gateway mended it");
        self.contract_violations.add(
            1,
            &[KeyValue::new("lienthong.adapter.instance", instance.to_owned()), KeyValue::new("lienthong.rule", rule)],
        );
    }

    /// A call the guard refused before the upstream (`breaker_open`,
    /// `bulkhead_full`).
    pub fn adapter_refusal(&self, instance: &Arc<str>, kind: &Arc<str>, error: &'static str) {
        self.adapter_errors.add(
            1,
            &[
                KeyValue::new("lienthong.adapter.instance", instance.clone()),
                KeyValue::new("lienthong.adapter.kind", kind.clone()),
                KeyValue::new("error.type", error),
            ],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every outcome a call can have gets a slot of its own (a shared one
    /// would record a call under another code's labels).
    #[test]
    fn each_outcome_has_its_own_slot() {
        let outcomes: Vec<&str> =
            (0..17).map(|i| crate::errors::code_name(tonic::Code::from(i))).chain(["HTTP_4XX", "HTTP_5XX"]).collect();
        let slots: Vec<usize> = outcomes.iter().map(|o| code_slot(o).unwrap()).collect();
        assert_eq!(slots, (0..GRPC_CODES + HTTP_OUTCOMES.len()).collect::<Vec<_>>());
        assert_eq!(code_slot("NOT_A_CODE"), None);
    }
}
