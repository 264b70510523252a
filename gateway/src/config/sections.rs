//! The sections of the config file whose settings the parts of the gateway
//! read (limits, breaker, bulkhead, retry, cache policies, admin, apps,
//! audit, telemetry): their shapes and defaults. The parts' own behaviour
//! (validation of their values, how they apply them) stays with them.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use lienthong_adapter_core::Method;

use crate::crypto::{SecretKey, parse_digest};

/// `[audit]`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Record accesses to personal data at all (off only for benchmarks).
    pub enabled: bool,
    /// `file` or `postgres`.
    pub sink: AuditSink,
    /// The audit file (JSON lines, hash-chained), created if missing.
    pub path: PathBuf,
    /// With `sink = "postgres"`: the connection string, for example
    /// `host=db.internal user=lienthong dbname=lienthong password=…`.
    pub postgres_url: String,
    /// With `sink = "postgres"`: the schema holding the tables (created if
    /// missing).
    pub postgres_schema: String,
    /// A file holding the secret key (at least 32 bytes) of citizens'
    /// pseudonyms, so that one citizen has one pseudonym across restarts and
    /// replicas. Without it a key is drawn at start (pseudonyms then link
    /// records of one run only).
    pub pseudonym_key_file: Option<PathBuf>,
    /// The key (64 hex digits; `lienthong secret-key`) the chain's hashes
    /// are HMACs under, so a chain rewritten from any record on cannot be
    /// made to verify without it. Keep it apart from the log (a secret store,
    /// `LIENTHONG_AUDIT__CHAIN_KEY`); `lienthong audit verify` needs it too.
    /// Without it the chain is plain SHA-256.
    pub chain_key: Option<SecretKey>,
    /// Refusals of one citizen (level, scope, rate limit) over this window
    /// are recorded once, with their count: the first at once, the rest when
    /// the window ends. Flooding the gateway cannot flood the log.
    #[serde(with = "humantime_serde")]
    pub refusal_window: std::time::Duration,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            sink: AuditSink::File,
            path: PathBuf::from("lienthong-audit.jsonl"),
            postgres_url: String::new(),
            postgres_schema: "lienthong_audit".to_owned(),
            pseudonym_key_file: None,
            chain_key: None,
            refusal_window: std::time::Duration::from_secs(10),
        }
    }
}

impl std::fmt::Debug for AuditConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The connection string may hold a password.
        f.debug_struct("AuditConfig")
            .field("enabled", &self.enabled)
            .field("sink", &self.sink)
            .field("path", &self.path)
            .field("postgres_schema", &self.postgres_schema)
            .field("chain_key", &self.chain_key)
            .field("refusal_window", &self.refusal_window)
            .finish_non_exhaustive()
    }
}

/// Where audit records go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditSink {
    /// A local file (the default).
    File,
    /// PostgreSQL: one chain for every replica.
    Postgres,
}

/// `[apps.<id>]`: one registered app.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppConfig {
    /// The provinces it may reach; the first is used when a call names none.
    pub provinces: Vec<String>,
    /// What it may call: `"*"`, `"<Service>/*"` (`"HealthcareService/*"`),
    /// `"<Service>/<Rpc>"` or an RPC name (`"GetMyProfile"`).
    pub allow: Vec<String>,
    /// Scopes granted, for example `identity.full_id_number`.
    pub scopes: Vec<String>,
    /// SHA-256 digests (hex) of its API keys.
    pub api_key_sha256: Vec<String>,
    /// SHA-256 digests (hex) of its TLS client certificates (DER), as
    /// `lienthong cert-fingerprint FILE` prints them.
    pub client_cert_sha256: Vec<String>,
    /// Its quota; `limits.per_app` when not set.
    pub rate_limit: Option<RateLimit>,
    /// The purposes it processes personal data for (Decree 13/2023), as
    /// written in the audit log. With several, each call touching personal
    /// data names one in `x-lienthong-purpose`.
    pub purposes: Vec<String>,
}

impl fmt::Debug for AppConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppConfig")
            .field("provinces", &self.provinces)
            .field("allow", &self.allow)
            .field("scopes", &self.scopes)
            .field("api_keys", &self.api_key_sha256.len())
            .field("client_certs", &self.client_cert_sha256.len())
            .field("rate_limit", &self.rate_limit)
            .field("purposes", &self.purposes)
            .finish()
    }
}

/// `[admin]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// SHA-256 digests (64 hex digits) of the valid admin tokens; empty: the
    /// admin API is off. `lienthong admin-token` makes a token and its digest.
    pub token_sha256: Vec<String>,
}

/// `[breaker]`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Consecutive failed calls (each counted once, retries included) that
    /// open the breaker.
    pub failures_to_open: u32,
    /// Failure rate (0 < rate ≤ 1) over `window` that opens the breaker.
    pub failure_rate: f64,
    /// Calls within `window` before the failure rate counts.
    pub min_calls: u32,
    /// The sliding window of the failure rate.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// How long it stays open before probing.
    #[serde(with = "humantime_serde")]
    pub open_for: Duration,
    /// Probes let through half-open; as many successes close the breaker.
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failures_to_open: 5,
            failure_rate: 0.5,
            min_calls: 20,
            window: Duration::from_secs(10),
            open_for: Duration::from_secs(30),
            half_open_probes: 1,
        }
    }
}

/// `[bulkhead]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BulkheadConfig {
    /// Calls in flight to one adapter instance, by default.
    pub max_concurrent: usize,
    /// Per adapter instance name, overriding `max_concurrent`.
    pub per_instance: BTreeMap<String, usize>,
    /// How long a call may wait for a place.
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
}

impl Default for BulkheadConfig {
    fn default() -> Self {
        Self { max_concurrent: 256, per_instance: BTreeMap::new(), max_wait: Duration::from_millis(50) }
    }
}

/// How one RPC's answers are cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CachePolicy {
    /// How long an answer is fresh.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// After `ttl`, how long it is served stale while a refresh runs.
    #[serde(default, with = "humantime_serde")]
    pub stale_while_revalidate: Duration,
    /// After `ttl`, how long it is served stale when refreshing fails.
    #[serde(default, with = "humantime_serde")]
    pub stale_if_error: Duration,
    /// How long NOT_FOUND is remembered (0: not at all).
    #[serde(default, with = "humantime_serde")]
    pub negative_ttl: Duration,
}

/// `[limits]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Per calling app.
    pub per_app: Option<RateLimit>,
    /// Per citizen (on calls that carry a citizen token).
    pub per_citizen: Option<RateLimit>,
    /// Per adapter instance: calls that reach the upstream (cache misses).
    pub per_upstream: BTreeMap<String, RateLimit>,
    /// Cells an RPC costs (default 1).
    pub costs: BTreeMap<String, u32>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            per_app: Some(RateLimit { per_second: 2_000, burst: 4_000 }),
            per_citizen: Some(RateLimit { per_second: 10, burst: 30 }),
            per_upstream: BTreeMap::new(),
            costs: BTreeMap::from([("ListMyDossiers".to_owned(), 3), ("WatchDossier".to_owned(), 5)]),
        }
    }
}

/// A sustained rate and a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Cells per second, sustained.
    pub per_second: u32,
    /// Cells available at once.
    pub burst: u32,
}

/// `[retry]`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts in all, the first included (1: never retry).
    pub max_attempts: u32,
    /// Retries earned per first attempt (0.2: at most 20% more traffic).
    pub budget_ratio: f64,
    /// Retries allowed per second whatever the traffic.
    pub min_per_second: f64,
    /// The first backoff's upper bound; each retry doubles it.
    #[serde(with = "humantime_serde")]
    pub base_backoff: Duration,
    /// The longest backoff; an upstream asking for more (Retry-After) is not
    /// retried, the caller is told to wait instead.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            budget_ratio: 0.2,
            min_per_second: 5.0,
            base_backoff: Duration::from_millis(25),
            max_backoff: Duration::from_secs(1),
        }
    }
}

/// `[telemetry]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Where the ops endpoints listen (`/metrics`, `/livez`, `/readyz`,
    /// `/status`); unset: no ops port. They say nothing personal, but they
    /// are for operators: keep the port off the public network.
    pub ops_listen: Option<SocketAddr>,
    /// The OTLP/gRPC collector, for example `http://127.0.0.1:4317` (an
    /// `https://` one is verified against the system's roots). Unset (the
    /// sandbox default): nothing is exported; logs still carry trace ids.
    pub otlp_endpoint: Option<String>,
    /// Export traces to the collector.
    pub traces: bool,
    /// Export metrics to the collector (Prometheus scrapes them regardless).
    pub metrics: bool,
    /// The share of new traces sampled, 0.0 to 1.0; a caller's sampled
    /// `traceparent` is always followed.
    pub sampling_ratio: f64,
    /// How often metrics are pushed to the collector.
    #[serde(with = "humantime_serde")]
    pub metrics_interval: Duration,
    /// `service.name` of the resource.
    pub service_name: String,
    /// More resource attributes, for example
    /// `{ "deployment.environment.name" = "production" }`.
    pub resource: BTreeMap<String, String>,
    /// Spans waiting for export at most (also while the collector is away:
    /// they are sent again with backoff); beyond it they are dropped (and
    /// counted), never queued without bound.
    pub max_queued_spans: usize,
    /// The window over which readiness and the whole-server health turn
    /// false when most calls are shed (in at least half its seconds, more than
    /// half of the calls arriving).
    #[serde(with = "humantime_serde")]
    pub unready_after_shedding: Duration,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            ops_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
            otlp_endpoint: None,
            traces: true,
            metrics: true,
            sampling_ratio: 1.0,
            metrics_interval: Duration::from_secs(15),
            service_name: "lienthong".to_owned(),
            resource: BTreeMap::new(),
            max_queued_spans: 65_536,
            unready_after_shedding: Duration::from_secs(10),
        }
    }
}

/// Provinces a caller (an app, or `[anonymous]`) is given that are not
/// configured, with paths under `section`.
pub fn province_problems(
    section: &str,
    provinces: &[String],
    configured: &dyn Fn(&str) -> bool,
) -> Vec<(String, String)> {
    let unconfigured = provinces.iter().enumerate().filter(|(_, p)| !configured(p));
    unconfigured
        .map(|(i, p)| {
            (format!("{section}.provinces[{i}]"), format!("province {p:?} is not configured under [provinces]"))
        })
        .collect()
}

/// Scopes a caller (an app, or `[anonymous]`) is given that the gateway does
/// not know, with paths under `section`.
pub fn scope_problems(section: &str, scopes: &[String]) -> Vec<(String, String)> {
    let known = crate::config::KNOWN_SCOPES;
    let unknown = scopes.iter().enumerate().filter(|(_, s)| !known.contains(&s.as_str()));
    unknown
        .map(|(i, s)| {
            (format!("{section}.scopes[{i}]"), format!("unknown scope {s:?}; known scopes: {}", known.join(", ")))
        })
        .collect()
}

impl AuditConfig {
    /// Problems, each as (path, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if !(std::time::Duration::from_secs(1)..=std::time::Duration::from_secs(3600)).contains(&self.refusal_window) {
            out.push(("audit.refusal_window".to_owned(), "must be between 1s and 1h".to_owned()));
        }
        if self.sink == AuditSink::Postgres {
            if self.postgres_url.is_empty() {
                out.push(("audit.postgres_url".to_owned(), "required with sink = \"postgres\"".to_owned()));
            }
            if !valid_schema(&self.postgres_schema) {
                out.push((
                    "audit.postgres_schema".to_owned(),
                    "a lower-case identifier, such as lienthong_audit".to_owned(),
                ));
            }
        }
        out
    }
}

impl AppConfig {
    /// Problems of app `id`, each as (path, message).
    pub fn problems(&self, id: &str, configured: &dyn Fn(&str) -> bool) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let path = |key: &str| format!("apps.{id}.{key}");
        if self.provinces.is_empty() {
            out.push((path("provinces"), "list the provinces this app may reach".to_owned()));
        }
        out.extend(province_problems(&format!("apps.{id}"), &self.provinces, configured));
        if self.allow.is_empty() {
            out.push((
                path("allow"),
                "list what this app may call, for example [\"*\"] or [\"HealthcareService/*\"]".to_owned(),
            ));
        }
        for (i, entry) in self.allow.iter().enumerate() {
            if allowed_methods(entry).is_empty() {
                out.push((
                    format!("{}[{i}]", path("allow")),
                    format!("{entry:?} names no RPC: use \"*\", \"<Service>/*\", \"<Service>/<Rpc>\" or an RPC name"),
                ));
            }
        }
        out.extend(scope_problems(&format!("apps.{id}"), &self.scopes));
        for (key, digests) in
            [("api_key_sha256", &self.api_key_sha256), ("client_cert_sha256", &self.client_cert_sha256)]
        {
            for (i, d) in digests.iter().enumerate() {
                if parse_digest(d).is_none() {
                    out.push((
                        format!("{}[{i}]", path(key)),
                        "must be a SHA-256 digest in 64 hex digits, never the credential itself".to_owned(),
                    ));
                }
            }
        }
        if self.api_key_sha256.is_empty() && self.client_cert_sha256.is_empty() {
            out.push((
                format!("apps.{id}"),
                "register at least one credential: api_key_sha256 or client_cert_sha256".to_owned(),
            ));
        }
        for (i, purpose) in self.purposes.iter().enumerate() {
            if purpose.is_empty()
                || purpose.len() > 64
                || !purpose.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                out.push((
                    format!("{}[{i}]", path("purposes")),
                    "a purpose code of 1 to 64 letters, digits, - or _".to_owned(),
                ));
            }
        }
        if let Some(r) = &self.rate_limit
            && (r.per_second == 0 || r.burst == 0)
        {
            out.push((path("rate_limit"), "per_second and burst must be at least 1".to_owned()));
        }
        out
    }
}

impl AdminConfig {
    /// Problems, each as (path, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        self.token_sha256
            .iter()
            .enumerate()
            .filter(|(_, d)| parse_digest(d).is_none())
            .map(|(i, _)| {
                (
                    format!("admin.token_sha256[{i}]"),
                    "must be a SHA-256 digest in 64 hex digits (`lienthong admin-token` prints one); never the token itself"
                        .to_owned(),
                )
            })
            .collect()
    }
}

impl BreakerConfig {
    /// Problems, each as (path, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut bad = |key: &str, message: &str| out.push((format!("breaker.{key}"), message.to_owned()));
        if self.failures_to_open == 0 {
            bad("failures_to_open", "must be at least 1");
        }
        if !(self.failure_rate > 0.0 && self.failure_rate <= 1.0) {
            bad("failure_rate", "must be more than 0 and at most 1 (0.5 opens at half the calls failing)");
        }
        if self.min_calls == 0 {
            bad("min_calls", "must be at least 1");
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(600)).contains(&self.window) {
            bad("window", "must be between 1s and 10m");
        }
        if self.open_for < Duration::from_secs(1) {
            bad("open_for", "must be at least 1s");
        }
        if self.half_open_probes == 0 {
            bad("half_open_probes", "must be at least 1");
        }
        out
    }
}

impl BulkheadConfig {
    /// Problems, each as (path, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.max_concurrent == 0 {
            out.push(("bulkhead.max_concurrent".to_owned(), "must be at least 1".to_owned()));
        }
        for (name, n) in &self.per_instance {
            if *n == 0 {
                out.push((format!("bulkhead.per_instance.{name}"), "must be at least 1".to_owned()));
            }
        }
        if self.max_wait > Duration::from_secs(5) {
            out.push(("bulkhead.max_wait".to_owned(), "must be at most 5s: callers should fail fast".to_owned()));
        }
        out
    }
}

impl LimitsConfig {
    /// Problems, each as (path, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let check = |out: &mut Vec<(String, String)>, path: String, r: &RateLimit| {
            if r.per_second == 0 || r.burst == 0 {
                out.push((path, "per_second and burst must be at least 1".to_owned()));
            }
        };
        if let Some(r) = &self.per_app {
            check(&mut out, "limits.per_app".into(), r);
        }
        if let Some(r) = &self.per_citizen {
            check(&mut out, "limits.per_citizen".into(), r);
        }
        for (instance, r) in &self.per_upstream {
            check(&mut out, format!("limits.per_upstream.{instance}"), r);
        }
        for (rpc, cost) in &self.costs {
            if !Method::ALL.iter().any(|m| m.rpc_name() == rpc) {
                out.push((format!("limits.costs.{rpc}"), "not an RPC of lienthong.v1".to_owned()));
            } else if *cost == 0 {
                out.push((format!("limits.costs.{rpc}"), "must be at least 1".to_owned()));
            }
        }
        out
    }
}

impl RetryConfig {
    /// Problems, each as (path, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut bad = |key: &str, message: &str| out.push((format!("retry.{key}"), message.to_owned()));
        if !(1..=10).contains(&self.max_attempts) {
            bad("max_attempts", "must be between 1 (no retries) and 10");
        }
        if !(0.0..=1.0).contains(&self.budget_ratio) {
            bad("budget_ratio", "must be between 0 and 1 (0.2: retries add at most 20% to the traffic)");
        }
        if !(0.0..=1000.0).contains(&self.min_per_second) {
            bad("min_per_second", "must be between 0 and 1000");
        }
        if self.base_backoff.is_zero() || self.base_backoff > self.max_backoff {
            bad("base_backoff", "must be more than 0 and at most max_backoff");
        }
        if self.max_backoff > Duration::from_secs(30) {
            bad("max_backoff", "must be at most 30s");
        }
        out
    }
}

impl TelemetryConfig {
    /// Problems, each as (path, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut p = Vec::new();
        if !(0.0..=1.0).contains(&self.sampling_ratio) {
            p.push(("telemetry.sampling_ratio".to_owned(), "must be between 0.0 and 1.0".to_owned()));
        }
        if let Some(e) = &self.otlp_endpoint
            && !(e.starts_with("http://") || e.starts_with("https://"))
        {
            p.push((
                "telemetry.otlp_endpoint".to_owned(),
                format!("{e:?} is not a URL such as \"http://127.0.0.1:4317\""),
            ));
        }
        if self.metrics_interval < Duration::from_secs(1) {
            p.push(("telemetry.metrics_interval".to_owned(), "must be at least 1s".to_owned()));
        }
        if self.service_name.is_empty() {
            p.push(("telemetry.service_name".to_owned(), "must not be empty".to_owned()));
        }
        if !(1024..=1 << 22).contains(&self.max_queued_spans) {
            p.push(("telemetry.max_queued_spans".to_owned(), "must be between 1024 and 4194304".to_owned()));
        }
        if self.unready_after_shedding < Duration::from_secs(1) {
            p.push(("telemetry.unready_after_shedding".to_owned(), "must be at least 1s".to_owned()));
        }
        p
    }
}

/// Whether `schema` is a plain identifier we may put in SQL.
pub fn valid_schema(schema: &str) -> bool {
    let mut bytes = schema.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'_'))
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
        && schema.len() <= 63
}

/// The methods an `allow` entry names; empty when it names none.
pub fn allowed_methods(entry: &str) -> Vec<Method> {
    let matches = |m: &Method| {
        let (service, rpc) = m.full_name().trim_start_matches("lienthong.v1.").split_once('/').unwrap_or_default();
        match entry.split_once('/') {
            None => entry == "*" || entry == rpc,
            Some((s, "*")) => s == service,
            Some((s, r)) => s == service && r == rpc,
        }
    };
    Method::ALL.iter().copied().filter(matches).collect()
}

/// A method's default freshness (the method table) as a cache policy.
impl From<lienthong_adapter_core::Freshness> for CachePolicy {
    fn from(f: lienthong_adapter_core::Freshness) -> Self {
        let s = |secs: u32| Duration::from_secs(u64::from(secs));
        Self {
            ttl: s(f.ttl),
            stale_while_revalidate: s(f.stale_while_revalidate),
            stale_if_error: s(f.stale_if_error),
            negative_ttl: s(f.negative_ttl),
        }
    }
}

/// `[cluster]`: what several replicas share, in Redis. Absent, a replica
/// works alone (limits, invalidations and watches are its own); see
/// [`crate::cluster`].
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// `redis://[user:password@]host:port[/db]`, or `rediss://` for TLS.
    pub redis_url: String,
    /// Put before every key, so that several gateways (or tests) can share
    /// one Redis.
    pub key_prefix: String,
    /// How long connecting to Redis may take.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How long one command may take before Redis counts as away for the
    /// call (which then uses the local fallback).
    #[serde(with = "humantime_serde")]
    pub command_timeout: Duration,
    /// The replicas expected: while Redis is away each enforces this share
    /// of every limit (limit ÷ replicas), and leases are sized by it.
    pub expected_replicas: u32,
    /// How long a replica may keep the cells it leased from a shared bucket
    /// (several at a time, so that most calls cost no round trip). Longer
    /// leases cost fewer round trips and shift admissions by up to this
    /// much in time.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// The limits (`app`, `citizen`, `upstream`) that refuse calls while
    /// Redis is away instead of falling back to the local share.
    pub fail_closed: Vec<String>,
    /// RPCs whose answers (public data only) are also kept in Redis, so that
    /// a miss on one replica is filled from another's answer and a herd
    /// spread over replicas makes about one upstream call.
    pub shared_cache: Vec<String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            redis_url: "redis://127.0.0.1:6379".to_owned(),
            key_prefix: "lienthong:".to_owned(),
            connect_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_millis(100),
            expected_replicas: 3,
            lease: Duration::from_millis(400),
            fail_closed: Vec::new(),
            shared_cache: Vec::new(),
        }
    }
}

impl ClusterConfig {
    /// `redis_url` without its credentials (everything before the last `@`
    /// of the authority), for logs.
    pub fn redacted_url(&self) -> String {
        let (scheme, rest) = self.redis_url.split_once("//").unwrap_or(("", self.redis_url.as_str()));
        let authority = rest.split('/').next().unwrap_or(rest);
        match authority.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}//<redacted>@{host}{}", &rest[authority.len()..]),
            None => self.redis_url.clone(),
        }
    }

    /// What a replica does under each limit while Redis is away, in words.
    pub fn while_away(&self) -> String {
        if self.fail_closed.is_empty() {
            "each replica enforces its share of every limit".to_owned()
        } else {
            format!(
                "calls under the {} limit{} are refused (cluster.fail_closed); each replica enforces its share of the others",
                self.fail_closed.join(", "),
                if self.fail_closed.len() > 1 { "s" } else { "" }
            )
        }
    }
}

impl fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may hold a password.
        let url = self.redacted_url();
        f.debug_struct("ClusterConfig")
            .field("redis_url", &url)
            .field("key_prefix", &self.key_prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("expected_replicas", &self.expected_replicas)
            .field("lease", &self.lease)
            .field("fail_closed", &self.fail_closed)
            .field("shared_cache", &self.shared_cache)
            .finish()
    }
}

impl ClusterConfig {
    /// Problems, each as (path, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut problem = |key: &str, message: &str| out.push((format!("cluster.{key}"), message.to_owned()));
        if !(self.redis_url.starts_with("redis://") || self.redis_url.starts_with("rediss://")) {
            problem("redis_url", "must be a redis:// or rediss:// URL, such as \"redis://127.0.0.1:6379\"");
        }
        if self.key_prefix.is_empty() || self.key_prefix.len() > 64 {
            problem("key_prefix", "must be 1 to 64 characters, such as \"lienthong:\"");
        }
        if !(Duration::from_millis(10)..=Duration::from_secs(30)).contains(&self.connect_timeout) {
            problem("connect_timeout", "must be between 10ms and 30s");
        }
        if !(Duration::from_millis(1)..=Duration::from_secs(1)).contains(&self.command_timeout) {
            problem("command_timeout", "must be between 1ms and 1s");
        }
        if !(1..=1_000).contains(&self.expected_replicas) {
            problem("expected_replicas", "must be between 1 and 1000");
        }
        if !(Duration::from_millis(10)..=Duration::from_secs(5)).contains(&self.lease) {
            problem("lease", "must be between 10ms and 5s");
        }
        for (i, rpc) in self.shared_cache.iter().enumerate() {
            let method = lienthong_adapter_core::Method::from_rpc_name(rpc);
            let why = match method {
                None => {
                    let cached: Vec<&str> = lienthong_adapter_core::Method::ALL
                        .iter()
                        .filter(|m| m.facts().cache.is_some() && !m.facts().personal)
                        .map(|m| m.rpc_name())
                        .collect();
                    let hint = lienthong_adapter_core::options::unknown_key(rpc, &cached)
                        .replacen("unknown key", "no RPC is named", 1)
                        .replace('`', "\"");
                    Some(hint)
                }
                Some(m) if m.facts().cache.is_none() => Some(format!("{rpc} is never cached")),
                Some(m) if m.facts().personal => {
                    Some(format!("{rpc} answers with a citizen's personal data, which never goes to Redis"))
                }
                Some(_) => None,
            };
            if let Some(why) = why {
                out.push((format!("cluster.shared_cache[{i}]"), why));
            }
        }
        for (i, limit) in self.fail_closed.iter().enumerate() {
            if !["app", "citizen", "upstream"].contains(&limit.as_str()) {
                out.push((
                    format!("cluster.fail_closed[{i}]"),
                    format!("{limit:?} is no limit: app, citizen or upstream"),
                ));
            }
        }
        out
    }
}
