//! The gateway's configuration: TOML plus `LIENTHONG_…` environment
//! overrides, strict (unknown keys are errors), durations in human form.
//!
//! Loading and checking are separate: [`Config::load`] reads and parses,
//! [`Config::validate`] checks meaning without any I/O; both report every
//! problem they find, each with its path.

mod sections;

pub use sections::*;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use lienthong_adapter_core::{AdapterRegistry, Family, admin};
use serde::Deserialize;

/// The configuration used when no file is given: the embedded sandbox serving
/// Ho Chi Minh City on 127.0.0.1:50051.
pub const SANDBOX_DEFAULT: &str = include_str!("sandbox-default.toml");

/// One problem in a configuration, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path of the key at fault, for example `adapters.hcm.kind`.
    pub path: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl ConfigError {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { path: path.into(), message: message.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} problem(s) in the configuration:", self.0.len())?;
        for e in &self.0 {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The gRPC listener and its limits.
    pub server: ServerConfig,
    /// How calls that present no app credential are treated.
    pub anonymous: AnonymousConfig,
    /// Citizen identity policy.
    pub identity: IdentityPolicy,
    /// The response cache.
    pub cache: CacheConfig,
    /// Rate limits.
    pub limits: LimitsConfig,
    /// Circuit breakers, one per adapter instance.
    pub breaker: BreakerConfig,
    /// Bulkheads, one per adapter instance.
    pub bulkhead: BulkheadConfig,
    /// Retries of idempotent reads.
    pub retry: RetryConfig,
    /// The operators' API.
    pub admin: AdminConfig,
    /// Registered apps by id.
    pub apps: BTreeMap<String, AppConfig>,
    /// The audit log of accesses to personal data.
    pub audit: AuditConfig,
    /// What replicas share (`[cluster]`), when several run.
    pub cluster: Option<ClusterConfig>,
    /// Traces, metrics and the ops port.
    pub telemetry: TelemetryConfig,
    /// Province code → which adapter instance serves each family.
    pub provinces: BTreeMap<String, ProvinceRoutes>,
    /// Adapter instances by name.
    pub adapters: BTreeMap<String, AdapterInstanceConfig>,
    /// Entries that failed to parse: their problems are already reported, so
    /// validation does not report them again.
    unparsed: std::collections::BTreeSet<String>,
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Where to listen for gRPC (and gRPC-Web).
    pub listen: SocketAddr,
    /// How long in-flight calls may run after a shutdown signal.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Serve gRPC-Web (HTTP/1.1) beside gRPC.
    pub grpc_web: bool,
    /// Origins allowed to call through gRPC-Web from a browser; `["*"]` allows
    /// any.
    pub cors_allowed_origins: Vec<String>,
    /// Accept the province from the `x-lienthong-province` metadata when the
    /// caller's registration allows several.
    pub province_from_metadata: bool,
    /// Most requests in progress at once, across all connections; beyond it
    /// requests are answered UNAVAILABLE at once (health checks exempt).
    pub max_concurrent_requests: usize,
    /// How long upstream work for a call may take when the caller sent no
    /// `grpc-timeout` (a caller's deadline is always honoured; each adapter
    /// also caps its own requests).
    #[serde(with = "humantime_serde")]
    pub default_deadline: Duration,
    /// TLS for the listener (TLS 1.2 and 1.3); plaintext when absent.
    pub tls: Option<TlsConfig>,
    /// Largest request message accepted, in bytes (larger: OUT_OF_RANGE),
    /// after inflating a gzip-compressed one.
    pub max_request_bytes: usize,
    /// Gzip answers for callers that list gzip in `grpc-accept-encoding`.
    /// Off by default, as in gRPC's own servers: gzip costs CPU on every
    /// answer (about 80 µs for a 17 KB page, BENCHMARKS.md), worth it where
    /// bandwidth costs more than CPU (callers across a WAN or a metered
    /// link), not between an app's backend and the gateway in one data
    /// centre. Gzipped requests are read either way.
    pub compress_answers: bool,
    /// With `compress_answers`: only messages larger than this many bytes
    /// (smaller ones cost more to compress than they save).
    pub compress_min_bytes: usize,
    /// Largest HTTP/2 header block accepted, in bytes (larger:
    /// RESOURCE_EXHAUSTED, up to four times this; beyond, HTTP 431).
    pub max_header_list_bytes: u32,
    /// Most concurrent calls on one HTTP/2 connection (advertised in
    /// SETTINGS; more are refused by HTTP/2 itself).
    pub max_streams_per_connection: u32,
    /// Most connections open at once; beyond, a new one is closed at once.
    pub max_connections: usize,
    /// Most connections open at once from one client address. Behind a
    /// layer-4 balancer that does not keep client addresses, every
    /// connection comes from the balancer: set it to `max_connections`.
    pub max_connections_per_ip: usize,
    /// How long a call's request message may take to arrive after its
    /// headers; it holds no shared slot meanwhile (later: DEADLINE_EXCEEDED).
    #[serde(with = "humantime_serde")]
    pub request_read_timeout: Duration,
    /// How long a new connection may take to finish its TLS handshake and
    /// begin its first call (an HTTP/1.1 request head, to arrive).
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A connection with no call for this long is closed (graceful GOAWAY);
    /// `0s`: never.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// HTTP/2 keepalive pings on quiet connections, to find dead peers; `0s`
    /// turns them off (when the network finds dead peers otherwise).
    #[serde(with = "humantime_serde")]
    pub keepalive_interval: Duration,
    /// How long a keepalive ping may go unanswered before the connection is
    /// closed.
    #[serde(with = "humantime_serde")]
    pub keepalive_timeout: Duration,
    /// A connection this old is asked to go away (graceful GOAWAY): clients
    /// reconnect, spreading over replicas behind a layer-4 load balancer;
    /// `0s`: never.
    #[serde(with = "humantime_serde")]
    pub max_connection_age: Duration,
    /// The key page tokens are sealed with (64 hex digits; `lienthong
    /// secret-key` makes one). Every replica needs the same; unset, a key is
    /// made at start and tokens do not survive a restart.
    pub page_token_key: Option<crate::crypto::SecretKey>,
    /// How long calls still running on a connection asked to go away (for
    /// age or idleness) may take before it is closed.
    #[serde(with = "humantime_serde")]
    pub max_connection_age_grace: Duration,
}

/// `[server.tls]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The server's certificate chain (PEM).
    pub cert_file: std::path::PathBuf,
    /// The server's private key (PEM).
    pub key_file: std::path::PathBuf,
    /// CA certificates (PEM) that sign apps' client certificates; turns on
    /// mutual TLS.
    pub client_ca_file: Option<std::path::PathBuf>,
    /// With `client_ca_file`: refuse connections without a client
    /// certificate (otherwise apps may use API keys instead).
    #[serde(default)]
    pub client_cert_required: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            drain_timeout: Duration::from_secs(10),
            grpc_web: true,
            cors_allowed_origins: vec!["*".to_owned()],
            province_from_metadata: true,
            max_concurrent_requests: 1024,
            default_deadline: Duration::from_secs(15),
            tls: None,
            max_request_bytes: 64 * 1024,
            compress_answers: false,
            compress_min_bytes: 1024,
            max_header_list_bytes: 16 * 1024,
            max_streams_per_connection: 100,
            max_connections: 10_000,
            max_connections_per_ip: 256,
            request_read_timeout: Duration::from_secs(5),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
            max_connection_age: Duration::from_secs(30 * 60),
            max_connection_age_grace: Duration::from_secs(5 * 60),
            page_token_key: None,
        }
    }
}

/// `[anonymous]`: calls without an app credential. (Registered apps with
/// credentials come with app authentication.)
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnonymousConfig {
    /// Whether such calls are served at all.
    pub enabled: bool,
    /// The provinces they may reach; the first is used when the call names none.
    pub provinces: Vec<String>,
    /// Scopes granted, for example `identity.full_id_number`.
    pub scopes: Vec<String>,
}

/// `[identity]`: the least identity level each RPC needs from the citizen.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityPolicy {
    /// RPC name (`ListMyDossiers`) → least identity level (1 or 2). A citizen
    /// below it gets PERMISSION_DENIED where a citizen is required, and the
    /// public view where a token is optional (GetDossier, WatchDossier).
    pub min_level: BTreeMap<String, u8>,
}

impl IdentityPolicy {
    /// The least level `method` needs: configured, else its default in the
    /// method table (records that reveal personal data need a verified,
    /// level 2, account). Configuring one RPC leaves the others' defaults in
    /// force.
    pub fn min_level(&self, method: lienthong_adapter_core::Method) -> u8 {
        self.min_level.get(method.rpc_name()).copied().unwrap_or(method.facts().min_level)
    }
}

/// `[cache]`: the response cache around adapters.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Cache at all.
    pub enabled: bool,
    /// Upper bound of cached answers, in bytes.
    pub max_bytes: u64,
    /// Per RPC name, overriding the defaults of the method table (`Method::facts`).
    pub policies: BTreeMap<String, CachePolicy>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self { enabled: true, max_bytes: 256 * 1024 * 1024, policies: BTreeMap::new() }
    }
}

impl CacheConfig {
    /// The policy of `method`: configured, or its default in the method table;
    /// `None` when the RPC is never cached or caching is off.
    pub fn policy(&self, method: lienthong_adapter_core::Method) -> Option<CachePolicy> {
        let default = method.facts().cache?;
        if !self.enabled {
            return None;
        }
        Some(self.policies.get(method.rpc_name()).copied().unwrap_or_else(|| CachePolicy::from(default)))
    }
}

/// The scopes the gateway knows.
pub const KNOWN_SCOPES: &[&str] = &["identity.full_id_number"];

/// `[provinces."79"]`: the adapter instance serving each family.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvinceRoutes {
    /// Citizen identity.
    pub identity: Option<String>,
    /// Health facilities.
    pub healthcare: Option<String>,
    /// Schools.
    pub education: Option<String>,
    /// Transport.
    pub transport: Option<String>,
    /// Construction.
    pub construction: Option<String>,
    /// Public services.
    pub public_services: Option<String>,
}

impl ProvinceRoutes {
    /// The instance serving `family`, if any.
    pub fn instance(&self, family: Family) -> Option<&str> {
        match family {
            Family::Identity => self.identity.as_deref(),
            Family::Healthcare => self.healthcare.as_deref(),
            Family::Education => self.education.as_deref(),
            Family::Transport => self.transport.as_deref(),
            Family::Construction => self.construction.as_deref(),
            Family::PublicServices => self.public_services.as_deref(),
        }
    }
}

/// `[adapters.<name>]`: an adapter instance. Every key but `kind` is the
/// adapter's own option, checked by its kind.
#[derive(Debug, Clone, Deserialize)]
pub struct AdapterInstanceConfig {
    /// The adapter kind, for example `sandbox`.
    pub kind: String,
    /// The kind's options.
    #[serde(flatten)]
    pub options: serde_json::Map<String, serde_json::Value>,
}

const SECTIONS: &[&str] = &[
    "server",
    "telemetry",
    "anonymous",
    "identity",
    "cache",
    "limits",
    "breaker",
    "bulkhead",
    "retry",
    "admin",
    "apps",
    "audit",
    "cluster",
    "provinces",
    "adapters",
];

impl Config {
    /// Reads `path` (or the embedded sandbox default when `None`), then
    /// applies `LIENTHONG_<SECTION>__<KEY>` environment overrides.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigErrors> {
        Self::from_figment(Self::figment(path))
    }

    /// Parses a TOML string (no environment overrides).
    pub fn from_toml(text: &str) -> Result<Self, ConfigErrors> {
        Self::from_figment(Figment::from(Toml::string(text)))
    }

    /// Loads like [`Config::load`] and validates, reporting the problems of
    /// both steps together.
    pub fn load_checked(path: Option<&Path>, registry: &AdapterRegistry) -> Result<Self, ConfigErrors> {
        let figment = Self::figment(path);
        let (config, mut errors) = Self::parse(&figment);
        if let Some(config) = config {
            if let Err(ConfigErrors(more)) = config.validate(registry) {
                // A key that did not read was checked with its default in
                // its place: what that says about it is no news.
                let unread = |p: &str| {
                    errors.iter().any(|e| {
                        p == e.path || p.strip_prefix(e.path.as_str()).is_some_and(|rest| rest.starts_with(['.', '[']))
                    })
                };
                let more: Vec<ConfigError> = more.into_iter().filter(|e| !unread(&e.path)).collect();
                errors.extend(more.into_iter().map(|mut e| {
                    // A value from the environment names its variable.
                    let key = e.path.split('[').next().unwrap_or(&e.path).to_owned();
                    if from_environment(&figment, &key) {
                        e.message.push_str(&from_variable(key.split('.')));
                    }
                    e
                }));
            }
            // One line per problem, in the order of the paths.
            errors.sort_by(|a, b| a.path.cmp(&b.path));
            if errors.is_empty() {
                return Ok(config);
            }
        }
        Err(ConfigErrors(errors))
    }

    fn figment(path: Option<&Path>) -> Figment {
        let base = match path {
            Some(p) => Figment::from(Toml::file_exact(p)),
            None => Figment::from(Toml::string(SANDBOX_DEFAULT)),
        };
        // A setting is `LIENTHONG_<SECTION>__<KEY>`: variables without the
        // separator (LIENTHONG_CONFIG, LIENTHONG_LOG, the examples'
        // LIENTHONG_ADDR) are not settings.
        base.merge(Env::prefixed("LIENTHONG_").filter(|key| key.as_str().contains("__")).split("__"))
    }

    fn from_figment(figment: Figment) -> Result<Self, ConfigErrors> {
        match Self::parse(&figment) {
            (Some(config), errors) if errors.is_empty() => Ok(config),
            (_, errors) => Err(ConfigErrors(errors)),
        }
    }

    /// Parses what it can: the config (None when the file itself is
    /// unreadable or not TOML) and every problem met.
    fn parse(figment: &Figment) -> (Option<Self>, Vec<ConfigError>) {
        let mut errors = Vec::new();
        let mut unparsed = std::collections::BTreeSet::new();
        let root: BTreeMap<String, figment::value::Value> = match figment.extract() {
            Ok(v) => v,
            Err(e) => return (None, figment_errors(e)),
        };
        for key in root.keys().filter(|k| !SECTIONS.contains(&k.as_str())) {
            let message = lienthong_adapter_core::options::unknown_key(key, SECTIONS);
            let mut message = message.replacen("unknown key", "unknown section", 1);
            if from_environment(figment, key) {
                message.push_str(&format!(" (from an environment variable LIENTHONG_{}__…)", key.to_ascii_uppercase()));
            }
            errors.push(ConfigError::new(key.clone(), message));
        }
        let section = |name: &str| -> Option<figment::value::Value> { root.get(name).cloned() };
        let server = extract_or_default::<ServerConfig>(figment, "server", section("server").is_some(), &mut errors);
        let anonymous =
            extract_or_default::<AnonymousConfig>(figment, "anonymous", section("anonymous").is_some(), &mut errors);
        let identity =
            extract_or_default::<IdentityPolicy>(figment, "identity", section("identity").is_some(), &mut errors);
        let cache = extract_or_default::<CacheConfig>(figment, "cache", section("cache").is_some(), &mut errors);
        let limits = extract_or_default::<LimitsConfig>(figment, "limits", section("limits").is_some(), &mut errors);
        let breaker =
            extract_or_default::<BreakerConfig>(figment, "breaker", section("breaker").is_some(), &mut errors);
        let bulkhead =
            extract_or_default::<BulkheadConfig>(figment, "bulkhead", section("bulkhead").is_some(), &mut errors);
        let retry = extract_or_default::<RetryConfig>(figment, "retry", section("retry").is_some(), &mut errors);
        let admin = extract_or_default::<AdminConfig>(figment, "admin", section("admin").is_some(), &mut errors);
        let audit = extract_or_default::<AuditConfig>(figment, "audit", section("audit").is_some(), &mut errors);
        let telemetry =
            extract_or_default::<TelemetryConfig>(figment, "telemetry", section("telemetry").is_some(), &mut errors);
        let cluster = section("cluster").and_then(|_| extract_one::<ClusterConfig>(figment, "cluster", &mut errors));
        let apps =
            extract_or_default::<BTreeMap<String, AppConfig>>(figment, "apps", section("apps").is_some(), &mut errors);
        // Provinces and adapters are extracted entry by entry, so that one bad
        // entry does not hide the problems of the others.
        let mut provinces = BTreeMap::new();
        for code in keys_of(section("provinces"), "provinces", &mut errors) {
            match extract_one::<ProvinceRoutes>(figment, &format!("provinces.{code}"), &mut errors) {
                Some(r) => provinces.insert(code, r),
                None => {
                    unparsed.insert(format!("provinces.{code}"));
                    provinces.insert(code, ProvinceRoutes::default())
                }
            };
        }
        let mut adapters = BTreeMap::new();
        for name in keys_of(section("adapters"), "adapters", &mut errors) {
            match extract_one::<AdapterInstanceConfig>(figment, &format!("adapters.{name}"), &mut errors) {
                Some(a) => adapters.insert(name, a),
                None => {
                    unparsed.insert(format!("adapters.{name}"));
                    adapters.insert(name, AdapterInstanceConfig { kind: String::new(), options: Default::default() })
                }
            };
        }
        (
            Some(Self {
                server,
                anonymous,
                identity,
                cache,
                limits,
                breaker,
                bulkhead,
                retry,
                admin,
                apps,
                audit,
                cluster,
                telemetry,
                provinces,
                adapters,
                unparsed,
            }),
            errors,
        )
    }

    /// Checks the configuration's meaning without I/O: every province code,
    /// route, adapter kind and option, and access rule. Returns every problem.
    pub fn validate(&self, registry: &AdapterRegistry) -> Result<(), ConfigErrors> {
        let mut errors = Vec::new();
        let s = &self.server;
        if s.max_concurrent_requests == 0 {
            errors.push(ConfigError::new("server.max_concurrent_requests", "must be at least 1"));
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(300)).contains(&s.default_deadline) {
            errors.push(ConfigError::new("server.default_deadline", "must be between 100ms and 5m"));
        }
        if !(1024..=4 * 1024 * 1024).contains(&s.max_request_bytes) {
            errors.push(ConfigError::new("server.max_request_bytes", "must be between 1 KiB and 4 MiB"));
        }
        if !(4 * 1024..=1024 * 1024).contains(&s.max_header_list_bytes) {
            errors.push(ConfigError::new("server.max_header_list_bytes", "must be between 4 KiB and 1 MiB"));
        }
        let between = |what: &str, value: Duration, low: Duration, high: Duration, errors: &mut Vec<ConfigError>| {
            if !(low..=high).contains(&value) {
                errors.push(ConfigError::new(
                    format!("server.{what}"),
                    format!(
                        "must be between {} and {}",
                        humantime::format_duration(low),
                        humantime::format_duration(high)
                    ),
                ));
            }
        };
        let secs = Duration::from_secs;
        between("request_read_timeout", s.request_read_timeout, Duration::from_millis(100), secs(60), &mut errors);
        between("header_read_timeout", s.header_read_timeout, secs(1), secs(120), &mut errors);
        if !s.idle_timeout.is_zero() {
            between("idle_timeout", s.idle_timeout, secs(1), secs(24 * 3600), &mut errors);
        }
        if !s.keepalive_interval.is_zero() {
            between("keepalive_interval", s.keepalive_interval, secs(1), secs(3600), &mut errors);
        }
        between("keepalive_timeout", s.keepalive_timeout, secs(1), secs(300), &mut errors);
        if !s.max_connection_age.is_zero() {
            between("max_connection_age", s.max_connection_age, secs(1), secs(30 * 24 * 3600), &mut errors);
        }
        between("max_connection_age_grace", s.max_connection_age_grace, Duration::ZERO, secs(24 * 3600), &mut errors);
        if !(1..=10_000).contains(&s.max_streams_per_connection) {
            errors.push(ConfigError::new("server.max_streams_per_connection", "must be between 1 and 10000"));
        }
        if s.max_connections == 0 {
            errors.push(ConfigError::new("server.max_connections", "must be at least 1"));
        }
        if s.max_connections_per_ip == 0 || s.max_connections_per_ip > s.max_connections {
            errors.push(ConfigError::new(
                "server.max_connections_per_ip",
                "must be between 1 and server.max_connections",
            ));
        }
        if s.drain_timeout > Duration::from_secs(300) {
            errors.push(ConfigError::new("server.drain_timeout", "must be at most 5m"));
        }
        if s.cors_allowed_origins.is_empty() && s.grpc_web {
            errors.push(ConfigError::new(
                "server.cors_allowed_origins",
                "list at least one origin, or [\"*\"], when grpc_web is on",
            ));
        }
        for (i, o) in s.cors_allowed_origins.iter().enumerate() {
            if o != "*" && !(o.starts_with("https://") || o.starts_with("http://")) {
                errors.push(ConfigError::new(
                    format!("server.cors_allowed_origins[{i}]"),
                    format!("{o:?} is not an origin such as \"https://app.example.vn\""),
                ));
            }
        }
        for (name, instance) in &self.adapters {
            if self.unparsed.contains(&format!("adapters.{name}")) {
                continue;
            }
            match registry.get(&instance.kind) {
                Err(e) => errors.push(ConfigError::new(format!("adapters.{name}.kind"), e.to_string())),
                Ok(factory) => {
                    let options = serde_json::Value::Object(instance.options.clone());
                    for problem in factory.validate(&options) {
                        // `key.sub: message` joins the instance's path.
                        let (path, message) = match problem.split_once(": ") {
                            Some((key, message)) if !key.is_empty() && !key.contains(' ') => {
                                (format!("adapters.{name}.{key}"), message.to_owned())
                            }
                            _ => (format!("adapters.{name}"), problem),
                        };
                        errors.push(ConfigError::new(path, message));
                    }
                }
            }
        }
        if self.provinces.is_empty() {
            errors
                .push(ConfigError::new("provinces", "configure at least one province, for example [provinces.\"79\"]"));
        }
        for (code, routes) in &self.provinces {
            if admin::province(code).is_none() {
                errors.push(ConfigError::new(
                    format!("provinces.{code}"),
                    "not a province code of the 34 provinces in force since 1 July 2025 (for example \"79\" or \"01\")",
                ));
            }
            for family in Family::ALL {
                let Some(instance) = routes.instance(family) else { continue };
                let path = format!("provinces.{code}.{family}");
                match self.adapters.get(instance) {
                    None => errors.push(ConfigError::new(
                        path,
                        format!("no adapter instance named {instance:?}; define [adapters.{instance}]"),
                    )),
                    Some(a) => {
                        let parsed = !self.unparsed.contains(&format!("adapters.{instance}"));
                        if let (true, Ok(factory)) = (parsed, registry.get(&a.kind)) {
                            if !factory.families().contains(&family) {
                                errors.push(ConfigError::new(
                                    path,
                                    format!("adapter kind {:?} does not serve {family}", a.kind),
                                ));
                            } else if let Some((provinces, why)) =
                                factory.instance_provinces(&serde_json::Value::Object(a.options.clone()))
                                && !provinces.contains(code)
                            {
                                errors.push(ConfigError::new(
                                    path,
                                    format!("adapter instance {instance:?} does not serve province {code}: {why}"),
                                ));
                            } else if let Some(served) =
                                factory.instance_families(&serde_json::Value::Object(a.options.clone()))
                                && !served.contains(&family)
                            {
                                let served: Vec<String> = served.iter().map(|f| format!("\"{f}\"")).collect();
                                errors.push(ConfigError::new(
                                    path,
                                    format!(
                                        "adapter instance {instance:?} serves only families = [{}]; \
                                         add \"{family}\" to its families or route {family} elsewhere",
                                        served.join(", ")
                                    ),
                                ));
                            }
                        }
                    }
                }
            }
        }
        for (rpc, level) in &self.identity.min_level {
            let path = format!("identity.min_level.{rpc}");
            if !lienthong_adapter_core::Method::ALL.iter().any(|m| m.rpc_name() == rpc) {
                errors.push(ConfigError::new(path, "not an RPC of lienthong.v1 (for example ListMyDossiers)"));
            } else if !(1..=2).contains(level) {
                errors.push(ConfigError::new(path, "identity levels are 1 (basic) or 2 (verified)"));
            }
        }
        for (rpc, policy) in &self.cache.policies {
            let path = format!("cache.policies.{rpc}");
            let method = lienthong_adapter_core::Method::from_rpc_name(rpc);
            if method.is_none_or(|m| m.facts().cache.is_none()) {
                let cacheable: Vec<&str> = lienthong_adapter_core::Method::ALL
                    .iter()
                    .filter(|m| m.facts().cache.is_some())
                    .map(|m| m.rpc_name())
                    .collect();
                errors
                    .push(ConfigError::new(path, format!("not a cacheable RPC; cacheable: {}", cacheable.join(", "))));
            } else if policy.ttl.is_zero() {
                errors.push(ConfigError::new(
                    format!("{path}.ttl"),
                    "must be more than 0 (to stop caching, set cache.enabled = false)",
                ));
            } else if method.is_some_and(|m| m.facts().never_stale)
                && !(policy.stale_while_revalidate.is_zero() && policy.stale_if_error.is_zero())
            {
                errors.push(ConfigError::new(
                    path,
                    "identity answers are never served stale: stale_while_revalidate and stale_if_error must be 0",
                ));
            }
        }
        let policy_problems = self
            .breaker
            .problems()
            .into_iter()
            .chain(self.bulkhead.problems())
            .chain(self.retry.problems())
            .chain(self.limits.problems())
            .chain(self.admin.problems())
            .chain(self.audit.problems())
            .chain(self.cluster.iter().flat_map(ClusterConfig::problems))
            .chain(self.telemetry.problems());
        for (path, message) in policy_problems {
            errors.push(ConfigError::new(path, message));
        }
        if self.cluster.is_some() && self.server.page_token_key.is_none() {
            errors.push(ConfigError::new(
                "server.page_token_key",
                "required with [cluster]: every replica must hold the same key (`lienthong secret-key`; set it as \
                 LIENTHONG_SERVER__PAGE_TOKEN_KEY), which also keys the citizens' pseudonyms in Redis",
            ));
        }
        for instance in self.bulkhead.per_instance.keys() {
            if !self.adapters.contains_key(instance) {
                errors.push(ConfigError::new(
                    format!("bulkhead.per_instance.{instance}"),
                    "no adapter instance of that name",
                ));
            }
        }
        for instance in self.limits.per_upstream.keys() {
            if !self.adapters.contains_key(instance) {
                errors.push(ConfigError::new(
                    format!("limits.per_upstream.{instance}"),
                    "no adapter instance of that name",
                ));
            }
        }
        if self.cache.max_bytes < 1024 * 1024 {
            errors.push(ConfigError::new("cache.max_bytes", "must be at least 1 MiB"));
        }
        let configured = |p: &str| self.provinces.contains_key(p);
        let mut seen = std::collections::BTreeMap::new();
        for (id, app) in &self.apps {
            for (path, message) in app.problems(id, &configured) {
                errors.push(ConfigError::new(path, message));
            }
            if id == "anonymous" {
                errors.push(ConfigError::new(format!("apps.{id}"), "\"anonymous\" is reserved for [anonymous]"));
            }
            if !app.client_cert_sha256.is_empty() && s.tls.as_ref().and_then(|t| t.client_ca_file.as_ref()).is_none() {
                errors.push(ConfigError::new(
                    format!("apps.{id}.client_cert_sha256"),
                    "client certificates need mutual TLS: set server.tls.client_ca_file",
                ));
            }
            for d in app.api_key_sha256.iter().chain(&app.client_cert_sha256) {
                if let Some(other) = seen.insert(d.to_ascii_lowercase(), id.clone()) {
                    errors.push(ConfigError::new(
                        format!("apps.{id}"),
                        format!("a credential digest is registered for app {other:?} too: one credential, one app"),
                    ));
                }
            }
        }
        if let Some(t) = &s.tls
            && t.client_cert_required
            && t.client_ca_file.is_none()
        {
            errors.push(ConfigError::new("server.tls.client_cert_required", "needs client_ca_file"));
        }
        let a = &self.anonymous;
        if a.enabled && a.provinces.is_empty() {
            errors.push(ConfigError::new(
                "anonymous.provinces",
                "list the provinces anonymous calls may reach, or set enabled = false",
            ));
        }
        let reach = province_problems("anonymous", &a.provinces, &configured)
            .into_iter()
            .chain(scope_problems("anonymous", &a.scopes));
        for (path, message) in reach {
            errors.push(ConfigError::new(path, message));
        }
        if errors.is_empty() { Ok(()) } else { Err(ConfigErrors(errors)) }
    }
}

/// Errors reading the file itself: unreadable, or not TOML. The TOML
/// parser quotes the line at fault, which may hold a secret: only where it
/// is and what was expected are kept, on one line.
fn figment_errors(e: figment::Error) -> Vec<ConfigError> {
    e.into_iter()
        .map(|e| {
            let text = e.kind.to_string();
            let kept: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| {
                    !l.is_empty()
                        && !l.starts_with('|')
                        && l.split_once('|').is_none_or(|(n, _)| n.trim().parse::<u32>().is_err())
                })
                .collect();
            let message = kept.join(": ");
            let message = if message.contains("os error") { format!("cannot read it: {message}") } else { message };
            ConfigError::new("<file>", message)
        })
        .collect()
}

/// ` (from the environment variable LIENTHONG_A__B)` for the key at `path`.
fn from_variable<'p>(path: impl Iterator<Item = &'p str>) -> String {
    let variable: Vec<String> = path.map(str::to_ascii_uppercase).collect();
    format!(" (from the environment variable LIENTHONG_{})", variable.join("__"))
}

/// Whether the value at dotted `key` came from an environment variable.
fn from_environment(figment: &Figment, key: &str) -> bool {
    figment.find_metadata(key).is_some_and(|m| m.name.contains("environment variable"))
}

/// The most problems reported for one table.
const MAX_PROBLEMS: usize = 32;

/// One figment error as ours: the full dotted path under `key` (figment
/// reports some paths relative to the extracted key, and names an unknown
/// key only in its kind), the message in the form every configuration
/// problem takes, and the environment variable when the value came from one.
fn describe(figment: Option<&Figment>, e: &figment::Error, key: &str) -> ConfigError {
    use figment::error::Kind;
    let key_parts: Vec<&str> = key.split('.').filter(|p| !p.is_empty()).collect();
    let mut parts: Vec<String> = e.path.iter().flat_map(|p| p.split('.')).map(str::to_owned).collect();
    // Drop a repeated copy of the key, wherever figment put it.
    if let Some(at) = parts
        .windows(key_parts.len().max(1))
        .position(|w| !key_parts.is_empty() && w.iter().map(String::as_str).eq(key_parts.iter().copied()))
    {
        parts.drain(at..at + key_parts.len());
    }
    let mut path: Vec<String> = key_parts.iter().map(|p| (*p).to_owned()).collect();
    path.extend(parts);
    if let Kind::UnknownField(field, _) = &e.kind
        && path.last() != Some(field)
    {
        path.push(field.clone());
    }
    // Never a secret's value, not even a wrong one.
    let secret = path.last().is_some_and(|k| lienthong_adapter_core::options::is_secret(k));
    let message = match &e.kind {
        Kind::InvalidType(_, expected) | Kind::InvalidValue(_, expected) if secret => {
            lienthong_adapter_core::options::tidy(&format!("invalid value (not shown: a secret), expected {expected}"))
        }
        Kind::UnknownField(field, known) => lienthong_adapter_core::options::unknown_key(field, known),
        Kind::MissingField(field) => format!("missing key `{field}`"),
        Kind::InvalidType(actual, expected) => {
            lienthong_adapter_core::options::tidy(&format!("invalid type: {actual}, expected {expected}"))
        }
        Kind::InvalidValue(actual, expected) => {
            lienthong_adapter_core::options::tidy(&format!("invalid value: {actual}, expected {expected}"))
        }
        Kind::InvalidLength(actual, expected) => format!("invalid length: {actual}, expected {expected}"),
        Kind::UnknownVariant(actual, known) => {
            format!("unknown variant `{actual}`; expected one of: {}", known.join(", "))
        }
        Kind::Message(message) => {
            // A message of the value's own parser: say which value.
            let value = figment.and_then(|f| f.find_value(&path.join(".")).ok());
            match value.as_ref().and_then(|v| v.as_str()).filter(|_| !secret) {
                Some(text) => {
                    lienthong_adapter_core::options::tidy(&format!("invalid value: string {text:?}, {message}"))
                }
                None => lienthong_adapter_core::options::tidy(message),
            }
        }
        other => lienthong_adapter_core::options::tidy(&other.to_string()),
    };
    // A value set by an environment variable names the variable (a key
    // missing from a table is in no variable).
    let missing = matches!(e.kind, Kind::MissingField(_));
    let from_env = !missing
        && figment
            .and_then(|f| f.find_metadata(&path.join(".")))
            .or(e.metadata.as_ref())
            .is_some_and(|m| m.name.contains("environment variable"));
    let mut source = if from_env { from_variable(path.iter().map(String::as_str)) } else { String::new() };
    if from_env && message.contains("expected a sequence") {
        // A variable holds one string unless written as TOML.
        source.push_str("; write a list as '[\"a\", \"b\"]'");
    }
    let path = if path.is_empty() { "<root>".to_owned() } else { path.join(".") };
    ConfigError::new(path, format!("{message}{source}"))
}

fn extract_or_default<T: for<'de> Deserialize<'de> + Default>(
    figment: &Figment,
    key: &str,
    present: bool,
    errors: &mut Vec<ConfigError>,
) -> T {
    if !present {
        return T::default();
    }
    extract_one(figment, key, errors).unwrap_or_default()
}

/// The table at `key` read as `T`, every problem in it reported: after a
/// problem the key at fault is set aside and the table read again, so one
/// mistake hides no other. With problems, `T` as read without the keys at
/// fault (their defaults in their place), so that the meaning of the rest can
/// be checked too; `None` when even that does not read.
fn extract_one<T: for<'de> Deserialize<'de>>(figment: &Figment, key: &str, errors: &mut Vec<ConfigError>) -> Option<T> {
    let mut error = match figment.extract_inner::<T>(key) {
        Ok(v) => return Some(v),
        Err(e) => e,
    };
    let mut table = figment.find_value(key).ok();
    let mut found: Vec<ConfigError> = Vec::new();
    // What was set aside, by its path under `key`.
    let mut removed: Vec<String> = Vec::new();
    loop {
        let mut set_aside = false;
        for e in error {
            let problem = describe(Some(figment), &e, key);
            let under = problem.path.strip_prefix(key).unwrap_or_default().trim_start_matches('.').to_owned();
            let Some(table) = table.as_mut() else {
                found.push(problem);
                continue;
            };
            if let figment::error::Kind::MissingField(field) = &e.kind {
                // A key set aside reads as missing: already reported. Either
                // way its table goes aside, so that the rest reads on.
                let missing = if under.is_empty() { field.to_string() } else { format!("{under}.{field}") };
                if !removed.contains(&missing) && !found.contains(&problem) {
                    found.push(problem);
                }
                set_aside |= !under.is_empty() && remove_at(table, &under, &mut removed);
                continue;
            }
            if !found.contains(&problem) {
                found.push(problem);
            }
            set_aside |= remove_at(table, &under, &mut removed);
        }
        if found.len() >= MAX_PROBLEMS {
            found.truncate(MAX_PROBLEMS);
            found.push(ConfigError::new(key, format!("more problems not shown (the first {MAX_PROBLEMS} are)")));
            break;
        }
        if !set_aside {
            break;
        }
        let Some(rest) = &table else { break };
        match Figment::from(figment::providers::Serialized::default(key, rest)).extract_inner::<T>(key) {
            Ok(partial) => {
                errors.extend(found);
                return Some(partial);
            }
            Err(e) => error = e,
        }
    }
    errors.extend(found);
    None
}

/// Sets aside the value at dotted `path` under `value` (recorded in
/// `removed`); whether there was one. A path into a list (figment names an
/// element by its index) sets aside the whole list: removing one element
/// would renumber the others.
fn remove_at(value: &mut figment::value::Value, path: &str, removed: &mut Vec<String>) -> bool {
    use figment::value::Value;
    let parts: Vec<&str> = path.split('.').filter(|p| !p.is_empty()).collect();
    let mut at = value;
    for (depth, part) in parts.iter().enumerate() {
        let Value::Dict(_, dict) = at else { return false };
        let last = depth + 1 == parts.len();
        let into_list = matches!(dict.get(*part), Some(Value::Array(..)));
        if last || into_list {
            let gone = dict.remove(*part).is_some();
            if gone {
                removed.push(parts[..=depth].join("."));
            }
            return gone;
        }
        match dict.get_mut(*part) {
            Some(next) => at = next,
            None => return false,
        }
    }
    false
}

fn keys_of(section: Option<figment::value::Value>, name: &str, errors: &mut Vec<ConfigError>) -> Vec<String> {
    match section {
        None => Vec::new(),
        Some(figment::value::Value::Dict(_, dict)) => dict.keys().cloned().collect(),
        Some(_) => {
            errors.push(ConfigError::new(name, "must be a table"));
            Vec::new()
        }
    }
}
