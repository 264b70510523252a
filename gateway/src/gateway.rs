//! The gateway's core: the routing table built from config, and what every
//! call goes through before an adapter sees it — the province it is routed
//! to, the caller's access, and the citizen behind the token.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use lienthong_adapter_core::{
    AdapterError, AdapterRegistry, AdapterSet, BearerToken, BuildContext, CallContext, ConstructionAdapter,
    DemoIdentityIssuer, EducationAdapter, Family, HealthcareAdapter, IdentityAdapter, Method, Principal,
    PublicServicesAdapter, TransportAdapter, WebhookReceiver, admin,
};
use prost::Message;
use tokio::sync::watch;
use tokio::time::Instant;
use tonic::Status;
use tonic::metadata::{Ascii, MetadataKey, MetadataMap};

use crate::apps::{App, AppRegistry};
use crate::config::Config;
use crate::guard::UpstreamGuard;
use crate::status;

/// Metadata naming the province a call is for.
pub const PROVINCE_HEADER: &str = "x-lienthong-province";
/// Longest bearer token accepted, in bytes.
const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// An adapter routed for one (province, family), with its instance's name and
/// kind for logs and errors.
#[derive(Debug, Clone)]
pub struct Routed<T: ?Sized> {
    /// The adapter.
    pub adapter: Arc<T>,
    /// The instance's name in config.
    pub instance: String,
    /// The instance's kind.
    pub kind: String,
    /// The instance's guard (budget, breaker, bulkhead, retries).
    pub guard: Arc<UpstreamGuard>,
}

/// The adapters serving one province.
#[derive(Debug, Default)]
pub struct ProvinceAdapters {
    /// The 2-digit code.
    pub code: String,
    identity: Option<Routed<dyn IdentityAdapter>>,
    healthcare: Option<Routed<dyn HealthcareAdapter>>,
    education: Option<Routed<dyn EducationAdapter>>,
    transport: Option<Routed<dyn TransportAdapter>>,
    construction: Option<Routed<dyn ConstructionAdapter>>,
    public_services: Option<Routed<dyn PublicServicesAdapter>>,
    demo_issuer: Option<Arc<dyn DemoIdentityIssuer>>,
}

/// The routing table and access rules; shared by every service.
#[derive(Debug)]
pub struct Gateway {
    provinces: BTreeMap<String, ProvinceAdapters>,
    limits: Arc<crate::limits::Limiters>,
    cache: crate::cache::ResponseCache,
    cache_config: crate::config::CacheConfig,
    scopes: crate::crypto::CitizenScopes,
    admin: crate::admin::AdminAuth,
    audit: Arc<crate::audit::AuditLog>,
    default_deadline: Duration,
    identity: crate::config::IdentityPolicy,
    webhooks: BTreeMap<String, Arc<dyn WebhookReceiver>>,
    apps: AppRegistry,
    metrics: Arc<crate::telemetry::metrics::Metrics>,
    province_from_metadata: bool,
    shutdown: watch::Receiver<bool>,
    page_tokens: crate::page_tokens::PageTokens,
    /// The adapter kinds, to recognise another kind's tokens.
    registry: AdapterRegistry,
}

impl ProvinceAdapters {
    /// The instance serving `family`, if any: its name, kind and guard.
    fn route_of(&self, family: Family) -> Option<(&str, &str, &Arc<UpstreamGuard>)> {
        fn parts<T: ?Sized>(r: &Option<Routed<T>>) -> Option<(&str, &str, &Arc<UpstreamGuard>)> {
            r.as_ref().map(|r| (r.instance.as_str(), r.kind.as_str(), &r.guard))
        }
        match family {
            Family::Identity => parts(&self.identity),
            Family::Healthcare => parts(&self.healthcare),
            Family::Education => parts(&self.education),
            Family::Transport => parts(&self.transport),
            Family::Construction => parts(&self.construction),
            Family::PublicServices => parts(&self.public_services),
        }
    }
}

/// An adapter instance as operators see it.
#[derive(Debug)]
pub struct InstanceInfo<'g> {
    /// Its name in config.
    pub name: &'g str,
    /// Its kind.
    pub kind: &'g str,
    /// The (province, family) pairs it serves.
    pub routes: Vec<(&'g str, Family)>,
    /// Its guard.
    pub guard: &'g Arc<UpstreamGuard>,
}

fn routed<T: ?Sized>(
    adapter: &Option<Arc<T>>,
    instance: &str,
    kind: &str,
    guard: &Arc<UpstreamGuard>,
) -> Option<Routed<T>> {
    adapter.as_ref().map(|a| Routed {
        adapter: a.clone(),
        instance: instance.to_owned(),
        kind: kind.to_owned(),
        guard: guard.clone(),
    })
}

impl Gateway {
    /// Builds every adapter instance the provinces use, then the routing
    /// table. `shutdown` turns true when the server begins to drain.
    pub async fn build(
        config: &Config,
        registry: &AdapterRegistry,
        metrics: Arc<crate::telemetry::metrics::Metrics>,
        shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<Self> {
        // The limiters first: adapters that budget their own upstream
        // requests get the instance's budget to spend.
        let quotas = config.apps.iter().filter_map(|(id, a)| Some((id.as_str(), a.rate_limit?)));
        let limits = Arc::new(crate::limits::Limiters::new(&config.limits).with_app_quotas(quotas));
        let mut built: BTreeMap<&str, (AdapterSet, &str)> = BTreeMap::new();
        let used: std::collections::BTreeSet<&str> =
            config.provinces.values().flat_map(|r| Family::ALL.into_iter().filter_map(|f| r.instance(f))).collect();
        for name in used {
            let instance = config.adapters.get(name).with_context(|| format!("no adapter instance named {name:?}"))?;
            let factory = registry.get(&instance.kind)?;
            let budget = Arc::new(crate::limits::InstanceBudget::new(limits.clone(), name));
            let set = factory
                .build(BuildContext::new(name, serde_json::Value::Object(instance.options.clone())).with_budget(budget))
                .await
                .with_context(|| format!("building adapter instance {name:?} (kind {:?})", instance.kind))?;
            tracing::info!(instance = name, kind = %instance.kind, "adapter instance ready");
            built.insert(name, (set, instance.kind.as_str()));
        }
        let webhooks =
            built.iter().filter_map(|(name, (set, _))| Some(((*name).to_owned(), set.webhook.clone()?))).collect();
        let guards: BTreeMap<String, Arc<UpstreamGuard>> = built
            .iter()
            .map(|(name, (set, kind))| {
                let bulkhead = crate::bulkhead::Bulkhead::new(config.bulkhead.limit(name), config.bulkhead.max_wait);
                let guard = UpstreamGuard::new(name, config.breaker, bulkhead, config.retry, limits.clone())
                    .observed(kind, metrics.clone())
                    .budgeted_by_adapter(set.budgets_itself);
                ((*name).to_owned(), Arc::new(guard))
            })
            .collect();
        let mut provinces = BTreeMap::new();
        for (code, routes) in &config.provinces {
            let mut p = ProvinceAdapters { code: code.clone(), ..Default::default() };
            for family in Family::ALL {
                let Some(name) = routes.instance(family) else { continue };
                let (set, kind) = built.get(name).with_context(|| format!("instance {name:?} was not built"))?;
                let guard = guards.get(name).with_context(|| format!("instance {name:?} has no guard"))?;
                anyhow::ensure!(set.serves(family), "adapter instance {name:?} does not serve {family}");
                match family {
                    Family::Identity => {
                        p.identity = routed(&set.identity, name, kind, guard);
                        p.demo_issuer = set.demo_issuer.clone();
                    }
                    Family::Healthcare => p.healthcare = routed(&set.healthcare, name, kind, guard),
                    Family::Education => p.education = routed(&set.education, name, kind, guard),
                    Family::Transport => p.transport = routed(&set.transport, name, kind, guard),
                    Family::Construction => p.construction = routed(&set.construction, name, kind, guard),
                    Family::PublicServices => p.public_services = routed(&set.public_services, name, kind, guard),
                }
            }
            provinces.insert(code.clone(), p);
        }
        Ok(Self {
            provinces,
            limits,
            cache: crate::cache::ResponseCache::new(config.cache.max_bytes),
            cache_config: config.cache.clone(),
            scopes: crate::crypto::CitizenScopes::new()?,
            admin: crate::admin::AdminAuth::new(&config.admin),
            audit: Arc::new(crate::audit::AuditLog::open(&config.audit).await?),
            default_deadline: config.server.default_deadline,
            identity: config.identity.clone(),
            webhooks,
            apps: AppRegistry::new(&config.apps, &config.anonymous),
            metrics,
            province_from_metadata: config.server.province_from_metadata,
            shutdown,
            page_tokens: crate::page_tokens::PageTokens::new(&page_token_key(config)?)?,
            registry: registry.clone(),
        })
    }

    /// Whether any province's identity provider can mint demo tokens.
    pub fn has_demo_issuer(&self) -> bool {
        self.provinces.values().any(|p| p.demo_issuer.is_some())
    }

    /// The webhook receiver of adapter instance `instance`, if it has one.
    pub fn webhook(&self, instance: &str) -> Option<&Arc<dyn WebhookReceiver>> {
        self.webhooks.get(instance)
    }

    /// Every adapter instance in use, by name: its kind, the provinces and
    /// families it serves, and its guard.
    pub fn instances(&self) -> Vec<InstanceInfo<'_>> {
        let mut by_name: BTreeMap<&str, InstanceInfo<'_>> = BTreeMap::new();
        for p in self.provinces.values() {
            for family in Family::ALL {
                let Some((name, kind, guard)) = p.route_of(family) else { continue };
                by_name
                    .entry(name)
                    .or_insert_with(|| InstanceInfo { name, kind, routes: Vec::new(), guard })
                    .routes
                    .push((p.code.as_str(), family));
            }
        }
        by_name.into_values().collect()
    }

    /// The codes of the provinces served.
    pub fn province_codes(&self) -> impl Iterator<Item = &str> {
        self.provinces.keys().map(String::as_str)
    }

    /// The response cache.
    pub fn cache(&self) -> &crate::cache::ResponseCache {
        &self.cache
    }

    /// Who may call the admin API.
    pub fn admin(&self) -> &crate::admin::AdminAuth {
        &self.admin
    }

    /// The rate limiters (for periodic compaction).
    pub fn limits(&self) -> &Arc<crate::limits::Limiters> {
        &self.limits
    }

    /// A receiver that turns true when the server starts draining.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }

    /// Starts a call of `method`: who calls (the app, by client
    /// certificate or API key), whether it may call `method`, for which
    /// province, and within its quota.
    pub fn call<T>(&self, request: &tonic::Request<T>, method: Method) -> Result<Call<'_>, Status> {
        let app = self.apps.identify(request)?;
        if !app.may_call(method) {
            return Err(Status::permission_denied(format!(
                "app {} is not registered to call {}",
                app.id,
                method.full_name()
            )));
        }
        let metadata = request.metadata();
        let allowed = &app.provinces;
        let asked = match metadata.get(PROVINCE_HEADER) {
            None => None,
            Some(v) => Some(v.to_str().map_err(|_| bad_province("must be a 2-digit province code, such as \"79\""))?),
        };
        let code = match asked {
            Some(code) => {
                if admin::province(code).is_none() {
                    return Err(bad_province(
                        "is not a province code of the 34 provinces in force since 1 July 2025 (Ho Chi Minh City is \"79\", Hà Nội \"01\")",
                    ));
                }
                if !self.provinces.contains_key(code) {
                    return Err(Status::failed_precondition(format!(
                        "province {code} is not served by this gateway; it serves: {}",
                        self.provinces.keys().cloned().collect::<Vec<_>>().join(", ")
                    )));
                }
                if !allowed.iter().any(|p| p == code) {
                    return Err(Status::permission_denied(format!("app {} may not reach province {code}", app.id)));
                }
                if !self.province_from_metadata && allowed.first().map(String::as_str) != Some(code) {
                    return Err(Status::permission_denied(format!(
                        "{PROVINCE_HEADER} is not accepted by this gateway"
                    )));
                }
                code
            }
            None => allowed
                .first()
                .map(String::as_str)
                .ok_or_else(|| Status::permission_denied(format!("app {} may reach no province", app.id)))?,
        };
        let province = self
            .provinces
            .get(code)
            .ok_or_else(|| Status::internal("routing table is missing a configured province"))?;
        // The call's trace, as the telemetry layer made it (or, without the
        // layer, the current span's and the caller's). Attributes and child
        // spans are kept only for traces that are exported.
        let call_trace = request.extensions().get::<crate::telemetry::rpc::CallTrace>().copied();
        let traced = call_trace.map_or_else(|| crate::telemetry::sampled(&tracing::Span::current()), |t| t.sampled);
        if traced {
            let span = tracing::Span::current();
            span.record("lienthong.province", code);
            span.record("lienthong.app", app.id.as_str());
        }
        self.limited(traced, "app", || self.limits.check_app(&app.id, method))?;
        let deadline = grpc_timeout(metadata).map(|d| Instant::now() + d);
        Ok(Call {
            gateway: self,
            province,
            method,
            app,
            trace_id: call_trace.map(|t| t.trace_id).or_else(|| trace_id(metadata)),
            traced,
            purpose: None,
            below_level: None,
            ctx: CallContext { province: code.to_owned(), principal: None, deadline },
        })
    }
}

impl Gateway {
    /// A rate-limit decision, in a span of its own when `traced`; a
    /// refusal is counted.
    fn limited(
        &self,
        traced: bool,
        limit: &'static str,
        check: impl FnOnce() -> Result<(), Status>,
    ) -> Result<(), Status> {
        let name = if limit == "app" { "rate limit app" } else { "rate limit citizen" };
        let span = if traced {
            tracing::info_span!(
                "rate_limit",
                otel.name = name,
                lienthong.limit = limit,
                lienthong.decision = tracing::field::Empty,
            )
        } else {
            tracing::Span::none()
        };
        // Nothing inside logs: the span times the decision without being entered.
        let verdict = check();
        span.record("lienthong.decision", if verdict.is_ok() { "allowed" } else { "rejected" });
        if verdict.is_err() {
            self.metrics.limiter_rejection(limit);
        }
        verdict
    }
}

/// The key page tokens are sealed with: configured, or made at start (then
/// tokens do not survive a restart or cross replicas).
fn page_token_key(config: &Config) -> anyhow::Result<crate::crypto::SecretKey> {
    match &config.server.page_token_key {
        Some(key) => Ok(key.clone()),
        None => {
            tracing::info!(
                "page tokens are sealed with a key made at start: set server.page_token_key (the same on every \
                 replica) for tokens that survive restarts and work across replicas"
            );
            crate::crypto::SecretKey::random()
        }
    }
}

fn bad_province(why: &str) -> Status {
    let mut v = status::Violations::new();
    v.add(format!("metadata {PROVINCE_HEADER}"), why);
    v.into_result().err().unwrap_or_else(|| Status::invalid_argument(why.to_owned()))
}

/// The trace id of an inbound W3C `traceparent`, parsed as the tracing layer
/// parses it.
fn trace_id(metadata: &MetadataMap) -> Option<opentelemetry::trace::TraceId> {
    let v = metadata.get("traceparent")?.to_str().ok()?;
    crate::telemetry::spans::RemoteParent::parse(v).map(|p| p.trace_id)
}

/// The metadata parsers, for property tests.
#[cfg(test)]
pub(crate) fn parse_metadata_for_tests(
    metadata: &MetadataMap,
) -> (Option<Duration>, Option<opentelemetry::trace::TraceId>) {
    (grpc_timeout(metadata), trace_id(metadata))
}

/// Parses the `grpc-timeout` metadata (`<digits><unit>`, unit one of
/// H M S m u n).
fn grpc_timeout(metadata: &MetadataMap) -> Option<Duration> {
    // Admission already refused a malformed one; the same parser reads it.
    crate::edge::framing::parse_grpc_timeout(metadata.get("grpc-timeout")?.as_bytes())
}

/// One call in progress: its province, method and context.
#[derive(Debug)]
pub struct Call<'g> {
    gateway: &'g Gateway,
    province: &'g ProvinceAdapters,
    method: Method,
    app: &'g App,
    /// The call's trace (the telemetry layer's, else the caller's
    /// `traceparent`).
    trace_id: Option<opentelemetry::trace::TraceId>,
    /// Whether this call's trace is exported (its child spans are made).
    traced: bool,
    purpose: Option<String>,
    /// A signed-in citizen whose identity level is below what this method
    /// needs for personal data: (citizen, their level, the level needed).
    below_level: Option<(lienthong_adapter_core::CitizenId, u8, u8)>,
    /// What the adapter gets to know.
    pub ctx: CallContext,
}

macro_rules! family_accessor {
    ($name:ident, $trait:ident, $family:expr) => {
        /// The adapter routed for this family, or UNIMPLEMENTED.
        pub fn $name(&self) -> Result<&'g Routed<dyn $trait>, Status> {
            self.province.$name.as_ref().ok_or_else(|| self.unrouted($family))
        }
    };
}

impl<'g> Call<'g> {
    family_accessor!(identity, IdentityAdapter, Family::Identity);
    family_accessor!(healthcare, HealthcareAdapter, Family::Healthcare);
    family_accessor!(education, EducationAdapter, Family::Education);
    family_accessor!(transport, TransportAdapter, Family::Transport);
    family_accessor!(construction, ConstructionAdapter, Family::Construction);
    family_accessor!(public_services, PublicServicesAdapter, Family::PublicServices);

    fn unrouted(&self, family: Family) -> Status {
        Status::unimplemented(format!("province {} has no {family} adapter configured", self.province.code))
    }

    /// The method being called.
    pub fn method(&self) -> Method {
        self.method
    }

    /// The province's demo token issuer, if its identity provider is a sandbox.
    pub fn demo_issuer(&self) -> Result<&'g Arc<dyn DemoIdentityIssuer>, Status> {
        self.province.demo_issuer.as_ref().ok_or_else(|| {
            Status::failed_precondition(format!(
                "province {} has no sandbox identity provider; demo tokens exist only in sandbox deployments",
                self.province.code
            ))
        })
    }

    /// Whether the calling app's registration grants `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.app.scopes.iter().any(|s| s == scope)
    }

    fn auditor_for(&self, principal: &Principal) -> Auditor {
        let log = self.gateway.audit.clone();
        // The call's trace (which continues the caller's when it sent
        // `traceparent`); without the telemetry layer, the current span's,
        // or a fresh 128-bit id.
        let trace_id = self
            .trace_id
            .map(|t| t.to_string())
            .or_else(|| crate::telemetry::trace_id_of(&tracing::Span::current()))
            .unwrap_or_else(|| crate::crypto::random_hex::<16>().unwrap_or_default());
        Auditor {
            template: crate::audit::AuditEvent {
                app: self.app.id.clone(),
                citizen: log.pseudonym(&principal.citizen_id),
                method: self.method.full_name().to_owned(),
                records: Vec::new(),
                purpose: self.purpose.clone().unwrap_or_else(|| "unspecified".to_owned()),
                outcome: String::new(),
                trace_id,
                count: 1,
            },
            log,
        }
    }

    /// Records, durably, that the signed-in citizen's personal data was
    /// accessed (`records`, with `outcome`); UNAVAILABLE when it cannot be
    /// recorded, so that nothing unaudited is served.
    pub async fn audit(&self, records: Vec<String>, outcome: tonic::Code) -> Result<(), Status> {
        self.auditor()?.record(records, outcome).await
    }

    /// Records that this call's signed-in citizen was refused with
    /// `outcome` (aggregated per citizen and window; does not wait).
    pub fn audit_refusal(&self, outcome: tonic::Code) {
        if let Some(principal) = &self.ctx.principal {
            self.auditor_for(principal).refused(outcome);
        }
    }

    /// What records accesses for this call's citizen, also after the call
    /// returned (a watch's updates).
    pub fn auditor(&self) -> Result<Auditor, Status> {
        let principal =
            self.ctx.principal.as_ref().ok_or_else(|| {
                Status::internal("an access was about to be audited without a citizen; this is a bug")
            })?;
        Ok(self.auditor_for(principal))
    }

    /// Maps an adapter error for the caller.
    pub fn fail<T: ?Sized>(&self, routed: &Routed<T>, err: lienthong_adapter_core::AdapterError) -> Status {
        status::from_adapter(err, self.method, &routed.kind)
    }

    /// Authenticates the citizen from `authorization: Bearer <token>`.
    ///
    /// Without the header: `Ok(None)` when `required` is false, else
    /// UNAUTHENTICATED. A header that is present is always verified.
    pub async fn authenticate(&mut self, metadata: &MetadataMap, required: bool) -> Result<Option<Principal>, Status> {
        let Some(value) = metadata.get("authorization") else {
            if required {
                return Err(Status::unauthenticated(
                    "this call needs the citizen's VNeID token in the authorization metadata: \"Bearer <token>\"",
                ));
            }
            return Ok(None);
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= MAX_TOKEN_BYTES)
            .ok_or_else(|| Status::unauthenticated("the authorization metadata must be \"Bearer <token>\""))?;
        let identity = self.identity()?;
        if let Some(kind) = self.gateway.registry.token_kind(token, &identity.kind) {
            return Err(Status::unauthenticated(format!(
                "this is a {kind} token; {kind} tokens are accepted only where the {kind} identity provider is configured"
            )));
        }
        // Through the identity provider's guard: its own budget (VNeID is the
        // fragile one), breaker, bulkhead and the caller's deadline.
        let token = BearerToken::new(token);
        let principal = self.guarded(identity, || identity.adapter.authenticate(&token)).await?;
        let level = match principal.identity_level {
            lienthong_adapter_core::api::IdentityLevel::IdentityLevel2 => 2,
            _ => 1,
        };
        let needed = self.gateway.identity.min_level(self.method);
        if level < needed {
            if !required {
                // Optional sign-in (a dossier's status): the public view, and
                // the handler tells an owner why.
                self.below_level = Some((principal.citizen_id.clone(), level, needed));
                return Ok(None);
            }
            let denied = Status::permission_denied(format!(
                "{} needs a level {needed} (verified) VNeID account; the citizen can upgrade in the VNeID app",
                self.method.rpc_name()
            ));
            // A refused attempt at personal data is audited too.
            self.purpose = Some(self.app.purpose(metadata)?);
            self.auditor_for(&principal).refused(denied.code());
            return Err(denied);
        }
        // Personal data may be touched from here on: its purpose is declared.
        self.purpose = Some(self.app.purpose(metadata)?);
        if let Err(refused) = self
            .gateway
            .limited(self.traced, "citizen", || self.gateway.limits.check_citizen(&principal.citizen_id, self.method))
        {
            self.auditor_for(&principal).refused(refused.code());
            return Err(refused);
        }
        self.ctx.principal = Some(principal.clone());
        Ok(Some(principal))
    }

    /// Why `owner` gets the public view of their own record: they signed in
    /// below the level this method needs for personal data.
    pub fn public_view_reason(&self, owner: &lienthong_adapter_core::CitizenId) -> Option<String> {
        let (citizen, level, needed) = self.below_level.as_ref()?;
        (citizen == owner).then(|| {
            format!(
                "the owner's view needs a level {needed} (verified) VNeID account and this one is level {level}; \
                 the citizen can upgrade in the VNeID app"
            )
        })
    }

    /// Opens the caller's page token in `req` into the adapter's; the
    /// returned paging seals the next one. A citizen's own lists are bound to
    /// the citizen (authenticate first).
    pub fn paging<R: crate::page_tokens::Paged>(&self, req: &mut R) -> Result<crate::page_tokens::Paging<'g>, Status> {
        let citizen = self.ctx.principal.as_ref().map(|p| &p.citizen_id);
        self.gateway.page_tokens.open(&self.ctx.province, self.method, req, citizen)
    }

    /// When this call's upstream work must end: the caller's deadline, or
    /// `server.default_deadline` from now when the caller set none.
    pub fn deadline(&self) -> Instant {
        self.ctx.deadline.unwrap_or_else(|| Instant::now() + self.gateway.default_deadline)
    }

    /// Calls `routed` once through its guard (no cache): upstream budget,
    /// breaker, bulkhead, deadline, retries (every adapter method is an
    /// idempotent read).
    pub async fn guarded<A: ?Sized, T, F, Fut>(&self, routed: &Routed<A>, attempt: F) -> Result<T, Status>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, AdapterError>>,
    {
        routed.guard.call(self.method, self.deadline(), true, attempt).await.map_err(|e| self.fail(routed, e))
    }

    /// The cache key of this call's `request` to `routed`, scoped to the
    /// citizen's pseudonym for personal data.
    pub fn cache_key<A: ?Sized>(&self, routed: &Routed<A>, request: &impl Message) -> Result<Vec<u8>, Status> {
        let key = |scope: &[u8]| crate::cache::key(&self.ctx.province, &routed.instance, self.method, scope, request);
        if !self.method.facts().personal {
            return Ok(key(b""));
        }
        let principal =
            self.ctx.principal.as_ref().ok_or_else(|| {
                Status::internal("personal data was about to be cached without a citizen; this is a bug")
            })?;
        Ok(key(&self.gateway.scopes.scope(&principal.citizen_id)))
    }

    /// The answer of `attempt` (an adapter call), through the cache when this
    /// RPC has a policy, and through the instance's guard whenever the
    /// upstream is asked. Concurrent misses share one fill; each caller
    /// waits for it only until its own deadline.
    pub async fn cached<A: ?Sized, T, F>(
        &self,
        routed: &Routed<A>,
        key: Vec<u8>,
        attempt: F,
    ) -> Result<Answer<T>, Status>
    where
        T: Message + Default + Clone + Send + Sync + 'static,
        F: Fn() -> crate::cache::FillFuture<T> + Send + Sync + 'static,
    {
        let (guard, method, deadline) = (routed.guard.clone(), self.method, self.deadline());
        // Only fills reach the upstream, so only they spend its budget; over
        // it, the cache may still answer stale.
        let fill = move || -> crate::cache::FillFuture<T> {
            Box::pin(async move { guard.call(method, deadline, true, attempt).await })
        };
        let Some(policy) = self.gateway.cache_config.policy(method.rpc_name()) else {
            if self.traced {
                tracing::Span::current().record("lienthong.cache", "bypass");
            }
            return fill().await.map(|value| Answer { value, freshness: None }).map_err(|e| self.fail(routed, e));
        };
        let span = if self.traced {
            tracing::info_span!(
                "cache",
                otel.name = "cache lookup",
                lienthong.cache.outcome = tracing::field::Empty,
                lienthong.cache.coalesced = tracing::field::Empty,
            )
        } else {
            tracing::Span::none()
        };
        let looked_up = tracing::Instrument::instrument(
            self.gateway.cache.get_or_fill(key, &policy, Some(deadline), fill),
            span.clone(),
        )
        .await;
        // An error remembered or fetched counts as a miss.
        let outcome = looked_up.as_ref().map_or("miss", |c| c.freshness.as_str());
        span.record("lienthong.cache.outcome", outcome);
        if outcome == "coalesced" {
            span.record("lienthong.cache.coalesced", true);
        }
        drop(span);
        if self.traced {
            tracing::Span::current().record("lienthong.cache", outcome);
        }
        self.gateway.metrics.cache_lookup(method, outcome);
        routed.guard.stats().cache(matches!(outcome, "hit" | "stale"));
        let cached = looked_up.map_err(|e| self.fail(routed, e))?;
        Ok(Answer { value: cached.value, freshness: Some((cached.freshness, cached.age)) })
    }

    /// Whether the server has begun draining.
    pub fn draining(&self) -> bool {
        *self.gateway.shutdown.borrow()
    }
}

/// Records accesses of one call's citizen in the audit log.
#[derive(Debug, Clone)]
pub struct Auditor {
    log: Arc<crate::audit::AuditLog>,
    template: crate::audit::AuditEvent,
}

impl Auditor {
    /// Records durably that `records` were accessed, with `outcome`.
    pub async fn record(&self, records: Vec<String>, outcome: tonic::Code) -> Result<(), Status> {
        let event =
            crate::audit::AuditEvent { records, outcome: code_name(outcome).to_owned(), ..self.template.clone() };
        self.log.record(event).await
    }

    /// Records a refusal with `outcome`, aggregated per citizen and window,
    /// without waiting for the write.
    pub fn refused(&self, outcome: tonic::Code) {
        let event = crate::audit::AuditEvent {
            records: Vec::new(),
            outcome: code_name(outcome).to_owned(),
            ..self.template.clone()
        };
        self.log.refused(event);
    }
}

/// The canonical name of a gRPC status code.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code as C;
    match code {
        C::Ok => "OK",
        C::Cancelled => "CANCELLED",
        C::Unknown => "UNKNOWN",
        C::InvalidArgument => "INVALID_ARGUMENT",
        C::DeadlineExceeded => "DEADLINE_EXCEEDED",
        C::NotFound => "NOT_FOUND",
        C::AlreadyExists => "ALREADY_EXISTS",
        C::PermissionDenied => "PERMISSION_DENIED",
        C::ResourceExhausted => "RESOURCE_EXHAUSTED",
        C::FailedPrecondition => "FAILED_PRECONDITION",
        C::Aborted => "ABORTED",
        C::OutOfRange => "OUT_OF_RANGE",
        C::Unimplemented => "UNIMPLEMENTED",
        C::Internal => "INTERNAL",
        C::Unavailable => "UNAVAILABLE",
        C::DataLoss => "DATA_LOSS",
        C::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// An answer and how fresh it is (`None`: not cached, fetched just now).
#[derive(Debug)]
pub struct Answer<T> {
    /// The answer.
    pub value: T,
    /// Freshness and age, when it went through the cache.
    pub freshness: Option<(crate::cache::Freshness, Duration)>,
}

impl<T> Answer<T> {
    /// Transforms the value, keeping the freshness.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Answer<U> {
        Answer { value: f(self.value), freshness: self.freshness }
    }

    /// The gRPC response, with `x-lienthong-cache` and `x-lienthong-age-seconds`.
    pub fn into_response(self) -> tonic::Response<T> {
        let mut r = tonic::Response::new(self.value);
        let (state, age) = match self.freshness {
            Some((f, age)) => (f.as_str(), Some(age)),
            None => ("bypass", None),
        };
        // Header names made once: parsing them costs more than the insert.
        static KEYS: std::sync::LazyLock<[MetadataKey<Ascii>; 2]> = std::sync::LazyLock::new(|| {
            [
                MetadataKey::from_static(crate::services::CACHE_HEADER),
                MetadataKey::from_static(crate::services::AGE_HEADER),
            ]
        });
        let [cache, age_seconds] = &*KEYS;
        r.metadata_mut().insert(cache, tonic::metadata::MetadataValue::from_static(state));
        if let Some(age) = age {
            r.metadata_mut().insert(age_seconds, tonic::metadata::MetadataValue::from(age.as_secs()));
        }
        r
    }
}
