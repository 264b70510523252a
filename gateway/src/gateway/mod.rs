//! The gateway's shared state, built once from config: every adapter
//! instance with its guard, the routing table of provinces ([`route`]), the
//! registered apps ([`apps`]), the page-token key ([`page_tokens`]), the
//! limiters, the cache, the audit log. Calls begin here
//! (`Call::begin`, in the `call` module) and read it; operators' views
//! (instances, limits, cache) are narrow accessors.

pub mod admin_auth;
pub mod apps;
pub mod page_tokens;
pub mod route;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use lienthong_adapter_core::{AdapterRegistry, AdapterSet, Alone, BuildContext, Family, Shared, WebhookReceiver};
use tokio::sync::watch;

use crate::config::Config;
use crate::gateway::apps::AppRegistry;
use crate::gateway::route::{ProvinceAdapters, routed};
use crate::policy::guard::UpstreamGuard;

/// The routing table and access rules; shared by every service.
#[derive(Debug)]
pub struct Gateway {
    pub(crate) provinces: BTreeMap<String, ProvinceAdapters>,
    pub(crate) limits: Arc<crate::policy::limits::Limiters>,
    /// What the gateway shares with its other replicas (cache
    /// invalidations).
    pub(crate) shared: Arc<dyn Shared>,
    /// The shared streams, with a cluster.
    pub(crate) streams: Option<Arc<crate::cluster::shared::Streams>>,
    pub(crate) cache: crate::policy::cache::ResponseCache,
    pub(crate) cache_config: crate::config::CacheConfig,
    pub(crate) scopes: crate::crypto::CitizenScopes,
    pub(crate) admin: crate::gateway::admin_auth::AdminAuth,
    pub(crate) audit: Arc<crate::audit::AuditLog>,
    pub(crate) default_deadline: Duration,
    pub(crate) identity: crate::config::IdentityPolicy,
    pub(crate) webhooks: BTreeMap<String, Arc<dyn WebhookReceiver>>,
    pub(crate) apps: AppRegistry,
    pub(crate) metrics: Arc<crate::telemetry::metrics::Metrics>,
    pub(crate) province_from_metadata: bool,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) page_tokens: crate::gateway::page_tokens::PageTokens,
    /// The adapter kinds, to recognise another kind's tokens.
    pub(crate) registry: AdapterRegistry,
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
        let (limiters, streams, shared_cache) = match (&config.cluster, &config.server.page_token_key) {
            (Some(cluster), Some(key)) => {
                let cluster = crate::cluster::Cluster::new(cluster).context("the [cluster] Redis URL")?;
                tracing::info!(
                    redis = cluster.config().redacted_url(),
                    replicas = cluster.config().expected_replicas,
                    "limits, invalidations and status changes are shared with the other replicas in Redis"
                );
                let replica = format!("{}/{}", crate::telemetry::instance_id(), crate::crypto::random_hex::<4>()?);
                let streams = crate::cluster::shared::Streams::start(cluster.clone(), key, replica)?;
                let shared_cache = crate::cluster::cache::SharedCache::new(cluster.clone());
                let limits =
                    crate::policy::limits::Limiters::shared(&config.limits, cluster, key.clone(), Default::default());
                (limits, Some(streams), Some(shared_cache))
            }
            _ => {
                tracing::info!("no [cluster]: this replica works alone (its limits and cache are its own)");
                (crate::policy::limits::Limiters::new(&config.limits), None, None)
            }
        };
        let shared = |scope: &str| -> Arc<dyn Shared> {
            match &streams {
                Some(streams) => streams.scope(scope),
                None => Arc::new(Alone::default()),
            }
        };
        let limits = Arc::new(limiters.with_app_quotas(quotas));
        let mut built: BTreeMap<&str, (AdapterSet, &str)> = BTreeMap::new();
        let used: std::collections::BTreeSet<&str> =
            config.provinces.values().flat_map(|r| Family::ALL.into_iter().filter_map(|f| r.instance(f))).collect();
        for name in used {
            let instance = config.adapters.get(name).with_context(|| format!("no adapter instance named {name:?}"))?;
            let factory = registry.get(&instance.kind)?;
            let budget = Arc::new(crate::policy::limits::InstanceBudget::new(limits.clone(), name));
            let set = factory
                .build(
                    BuildContext::new(name, serde_json::Value::Object(instance.options.clone()))
                        .with_budget(budget)
                        .with_shared(shared(&format!("adapters/{name}"))),
                )
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
                let bulkhead =
                    crate::policy::bulkhead::Bulkhead::new(config.bulkhead.limit(name), config.bulkhead.max_wait);
                let guard = UpstreamGuard::new(name, config.breaker, bulkhead, config.retry, limits.clone())
                    .observed(kind, metrics.clone())
                    .budgeted_by_adapter(set.budgets_itself)
                    .watched_by(set.health.clone());
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
        let mut cache = crate::policy::cache::ResponseCache::new(config.cache.max_bytes);
        if let (Some(shared), Some(cluster)) = (shared_cache, &config.cluster) {
            cache = cache.with_shared(shared, &cluster.shared_cache);
        }
        let own = shared("gateway");
        Ok(Self {
            provinces,
            limits,
            shared: own,
            streams,
            cache,
            cache_config: config.cache.clone(),
            scopes: crate::crypto::CitizenScopes::new()?,
            admin: crate::gateway::admin_auth::AdminAuth::new(&config.admin),
            audit: Arc::new(crate::audit::AuditLog::open(&config.audit).await?),
            default_deadline: config.server.default_deadline,
            identity: config.identity.clone(),
            webhooks,
            apps: AppRegistry::new(&config.apps, &config.anonymous),
            metrics,
            province_from_metadata: config.server.province_from_metadata,
            shutdown,
            page_tokens: crate::gateway::page_tokens::PageTokens::new(&page_token_key(config)?)?,
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

    /// Every instance's webhook receiver, for the webhook routes.
    pub fn webhook_receivers(&self) -> Arc<BTreeMap<String, Arc<dyn WebhookReceiver>>> {
        Arc::new(self.webhooks.clone())
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

    /// What the gateway shares with its other replicas.
    pub fn shared(&self) -> &dyn Shared {
        self.shared.as_ref()
    }

    /// Finds where every shared topic subscribed so far is read from (see
    /// [`crate::cluster::shared::Streams::settle`]); call it before serving.
    pub async fn settle_shared(&self) {
        if let Some(streams) = &self.streams {
            streams.settle().await;
        }
    }

    /// The response cache.
    pub fn cache(&self) -> &crate::policy::cache::ResponseCache {
        &self.cache
    }

    /// Who may call the admin API.
    pub fn admin(&self) -> &crate::gateway::admin_auth::AdminAuth {
        &self.admin
    }

    /// The rate limiters (for periodic compaction).
    pub fn limits(&self) -> &Arc<crate::policy::limits::Limiters> {
        &self.limits
    }

    /// A receiver that turns true when the server starts draining.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
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
