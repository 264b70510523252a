//! Rate limits: per calling app, per citizen, and per upstream adapter
//! instance (so that a fragile upstream such as VNeID is never hammered,
//! whatever the callers do). Each RPC costs `costs[rpc]` cells (default 1).
//! Over a limit: RESOURCE_EXHAUSTED with a RetryInfo delay. Keyed limiters
//! forget idle keys periodically ([`Limiters::compact`]), so memory stays
//! bounded however many citizens are seen; citizens are keyed by a salted
//! hash, never by their ID number.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use lienthong_adapter_core::{CitizenId, Method};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

pub use crate::config::{LimitsConfig, RateLimit};

impl RateLimit {
    fn quota(self) -> Option<Quota> {
        Some(Quota::per_second(NonZeroU32::new(self.per_second)?).allow_burst(NonZeroU32::new(self.burst)?))
    }
}

type Keyed<K, C> = RateLimiter<K, DefaultKeyedStateStore<K>, C, NoOpMiddleware<<C as Clock>::Instant>>;
type Direct<C> = RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// The limits shared with the other replicas in Redis (`[cluster]`).
struct Shared {
    buckets: crate::cluster::limits::SharedLimits,
    /// The limits as configured: for the whole cluster.
    config: LimitsConfig,
    app_quotas: HashMap<String, RateLimit>,
    /// A key every replica holds, for the citizens' pseudonyms in Redis.
    key: crate::crypto::SecretKey,
}

/// Every limiter of the gateway. With a cluster, the limits hold across
/// replicas in Redis, and the local limiters hold this replica's share
/// (limit ÷ `cluster.expected_replicas`) for while Redis does not answer.
pub struct Limiters<C: Clock = DefaultClock> {
    shared: Option<Shared>,
    clock: C,
    apps: Option<Keyed<String, C>>,
    app_quotas: HashMap<String, Direct<C>>,
    citizens: Option<Keyed<u64, C>>,
    upstreams: HashMap<String, Direct<C>>,
    costs: BTreeMap<String, u32>,
    salt: RandomState,
}

impl<C: Clock> std::fmt::Debug for Limiters<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiters")
            .field("upstreams", &self.upstreams.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn keyed<K: std::hash::Hash + Eq + Clone, C: Clock + Clone>(r: &Option<RateLimit>, clock: &C) -> Option<Keyed<K, C>> {
    Some(RateLimiter::new(r.as_ref()?.quota()?, DefaultKeyedStateStore::default(), clock.clone()))
}

fn refuse(what: &str, wait: Duration) -> Status {
    let wait = wait.max(Duration::from_millis(1));
    let mut details = ErrorDetails::new();
    details.set_retry_info(Some(wait));
    Status::with_error_details(
        Code::ResourceExhausted,
        format!("rate limit of {what} exceeded; retry in {} ms", wait.as_millis()),
        details,
    )
}

impl Limiters<DefaultClock> {
    /// Limiters per `config`, on the real clock.
    pub fn new(config: &LimitsConfig) -> Self {
        Self::with_clock(config, DefaultClock::default())
    }
}

impl<C: Clock + Clone> Limiters<C> {
    /// Limiters per `config`, on `clock`.
    pub fn with_clock(config: &LimitsConfig, clock: C) -> Self {
        Self {
            shared: None,
            apps: keyed(&config.per_app, &clock),
            app_quotas: HashMap::new(),
            citizens: keyed(&config.per_citizen, &clock),
            upstreams: config
                .per_upstream
                .iter()
                .filter_map(|(k, r)| Some((k.clone(), RateLimiter::direct_with_clock(r.quota()?, clock.clone()))))
                .collect(),
            costs: config.costs.clone(),
            salt: RandomState::new(),
            clock,
        }
    }

    /// Gives the apps of `quotas` their own quota instead of `per_app`.
    pub fn with_app_quotas<'a>(mut self, quotas: impl IntoIterator<Item = (&'a str, RateLimit)>) -> Self {
        let replicas = self.shared.as_ref().map_or(1, |s| s.buckets.cluster().config().expected_replicas);
        let most = dearest(&self.costs);
        for (app, r) in quotas {
            if let Some(shared) = &mut self.shared {
                shared.app_quotas.insert(app.to_owned(), r);
            }
            if let Some(q) = share(r, replicas, most).quota() {
                self.app_quotas.insert(app.to_owned(), RateLimiter::direct_with_clock(q, self.clock.clone()));
            }
        }
        self
    }

    /// Limits held across the replicas of `cluster` (call before
    /// [`Limiters::with_app_quotas`]); the local limiters become this
    /// replica's share, for while Redis does not answer. Citizens are keyed
    /// in Redis by an HMAC under `key`, which every replica must hold.
    pub fn shared(
        config: &LimitsConfig,
        cluster: std::sync::Arc<crate::cluster::Cluster>,
        key: crate::crypto::SecretKey,
        clock: C,
    ) -> Self {
        let replicas = cluster.config().expected_replicas;
        let most = dearest(&config.costs);
        let local = LimitsConfig {
            per_app: config.per_app.map(|r| share(r, replicas, most)),
            per_citizen: config.per_citizen.map(|r| share(r, replicas, most)),
            per_upstream: config.per_upstream.iter().map(|(k, r)| (k.clone(), share(*r, replicas, most))).collect(),
            costs: config.costs.clone(),
        };
        let mut limiters = Self::with_clock(&local, clock);
        limiters.shared = Some(Shared {
            buckets: crate::cluster::limits::SharedLimits::new(cluster),
            config: config.clone(),
            app_quotas: HashMap::new(),
            // Its own key: the page-token key seals tokens too.
            key: key.derive("lienthong/cluster/citizen-pseudonym/v1"),
        });
        limiters
    }

    /// The shared bucket's verdict on `cost` cells of `rate` under `bucket`:
    /// `None` to decide locally (no cluster, or Redis away and the limit
    /// fails open).
    async fn shared_verdict(&self, limit: &str, bucket: String, rate: Option<RateLimit>, cost: u32) -> Option<Verdict> {
        use crate::cluster::limits::Take;
        let shared = self.shared.as_ref()?;
        let Some(rate) = rate else { return Some(Verdict::Admitted) };
        match shared.buckets.take(&bucket, rate, cost).await {
            Some(Take::Admitted) => Some(Verdict::Admitted),
            Some(Take::Refused(wait)) => Some(Verdict::Over(wait)),
            Some(Take::Never) => Some(Verdict::Never),
            None => {
                let cluster = shared.buckets.cluster();
                cluster.fell_back();
                // Failing closed: refused until Redis answers again.
                cluster.config().fail_closed.iter().any(|l| l == limit).then_some(Verdict::Away)
            }
        }
    }

    /// A shared verdict as the caller's answer, for the limit `what`.
    fn answer(what: &str, verdict: Verdict) -> Result<(), Status> {
        match verdict {
            Verdict::Admitted => Ok(()),
            Verdict::Over(wait) => Err(refuse(what, wait)),
            Verdict::Never => {
                Err(Status::resource_exhausted(format!("the {what} limit is smaller than this RPC's cost")))
            }
            Verdict::Away => {
                let mut details = ErrorDetails::new();
                details.set_retry_info(Some(crate::cluster::RETRY_AFTER));
                Err(Status::with_error_details(
                    Code::Unavailable,
                    format!(
                        "the rate limit of {what} cannot be checked now (the shared store does not answer); retry shortly"
                    ),
                    details,
                ))
            }
        }
    }

    /// Charges the calling app, across replicas with a cluster.
    pub async fn app(&self, app: &str, method: Method) -> Result<(), Status> {
        if let Some(shared) = &self.shared {
            let rate = shared.app_quotas.get(app).copied().or(shared.config.per_app);
            if let Some(verdict) = self.shared_verdict("app", format!("app:{app}"), rate, self.cost(method).get()).await
            {
                return Self::answer("this app", verdict);
            }
        }
        self.check_app(app, method)
    }

    /// Charges the citizen, across replicas with a cluster (keyed in Redis
    /// by a pseudonym, never the ID number).
    pub async fn citizen(&self, citizen: &CitizenId, method: Method) -> Result<(), Status> {
        if let Some(shared) = &self.shared {
            let pseudonym = crate::crypto::hmac_sha256(&shared.key, citizen.expose().as_bytes());
            let bucket = format!("citizen:{}", crate::crypto::hex(&pseudonym[..16]));
            let rate = shared.config.per_citizen;
            if let Some(verdict) = self.shared_verdict("citizen", bucket, rate, self.cost(method).get()).await {
                return Self::answer("this citizen", verdict);
            }
        }
        self.check_citizen(citizen, method)
    }

    /// Charges the upstream of `instance`, across replicas with a cluster;
    /// the wait when over.
    pub async fn upstream(&self, instance: &str, method: Method) -> Result<(), Duration> {
        if let Some(shared) = &self.shared {
            let rate = shared.config.per_upstream.get(instance).copied();
            let bucket = format!("upstream:{instance}");
            match self.shared_verdict("upstream", bucket, rate, self.cost(method).get()).await {
                None => {}
                Some(Verdict::Admitted) => return Ok(()),
                Some(Verdict::Over(wait)) => return Err(wait),
                Some(Verdict::Never) => return Err(Duration::from_secs(1)),
                Some(Verdict::Away) => return Err(crate::cluster::RETRY_AFTER),
            }
        }
        self.check_upstream(instance, method)
    }

    /// The buckets shared with other replicas, with a cluster.
    pub fn shared_buckets(&self) -> Option<&crate::cluster::limits::SharedLimits> {
        self.shared.as_ref().map(|s| &s.buckets)
    }

    fn cost(&self, method: Method) -> NonZeroU32 {
        NonZeroU32::new(self.costs.get(method.rpc_name()).copied().unwrap_or(1)).unwrap_or(NonZeroU32::MIN)
    }

    fn verdict<E>(
        &self,
        what: &str,
        outcome: Result<Result<(), governor::NotUntil<C::Instant>>, E>,
    ) -> Result<(), Status> {
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(refuse(what, next_cell(&not_until, self.clock.now()))),
            // The cost exceeds the burst: this RPC can never pass this limit.
            Err(_) => Err(Status::resource_exhausted(format!("the {what} limit is smaller than this RPC's cost"))),
        }
    }

    /// Charges the calling app: its own quota, or `per_app`.
    pub fn check_app(&self, app: &str, method: Method) -> Result<(), Status> {
        if let Some(l) = self.app_quotas.get(app) {
            return self.verdict("this app", l.check_n(self.cost(method)));
        }
        let Some(l) = &self.apps else { return Ok(()) };
        self.verdict("this app", l.check_key_n(&app.to_owned(), self.cost(method)))
    }

    /// Charges the citizen.
    pub fn check_citizen(&self, citizen: &CitizenId, method: Method) -> Result<(), Status> {
        let Some(l) = &self.citizens else { return Ok(()) };
        let key = self.salt.hash_one(citizen.expose());
        self.verdict("this citizen", l.check_key_n(&key, self.cost(method)))
    }

    /// Charges the upstream of adapter instance `instance`; the wait when over.
    pub fn check_upstream(&self, instance: &str, method: Method) -> Result<(), Duration> {
        let Some(l) = self.upstreams.get(instance) else { return Ok(()) };
        match l.check_n(self.cost(method)) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(next_cell(&not_until, self.clock.now())),
            Err(_) => Err(Duration::from_secs(1)),
        }
    }

    /// Spends one request of the upstream of `instance`; the wait when over.
    pub fn spend_upstream(&self, instance: &str) -> Result<(), Duration> {
        let Some(l) = self.upstreams.get(instance) else { return Ok(()) };
        match l.check() {
            Ok(()) => Ok(()),
            Err(not_until) => Err(next_cell(&not_until, self.clock.now())),
        }
    }

    /// Forgets keys whose limits have fully replenished; bounds memory.
    pub fn compact(&self) {
        if let Some(s) = &self.shared {
            s.buckets.compact();
        }
        if let Some(l) = &self.apps {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.citizens {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }

    /// How many citizens are tracked now.
    pub fn tracked_citizens(&self) -> usize {
        self.citizens.as_ref().map(|l| l.len()).unwrap_or(0)
    }
}

/// What a shared bucket decided.
enum Verdict {
    Admitted,
    /// Over the limit: retry after this long.
    Over(Duration),
    /// The RPC costs more than the burst.
    Never,
    /// Redis does not answer and the limit fails closed.
    Away,
}

/// What the dearest RPC costs (at least 1).
fn dearest(costs: &BTreeMap<String, u32>) -> u32 {
    costs.values().copied().max().unwrap_or(1).max(1)
}

/// This replica's share of `rate` among `replicas`: at least one cell a
/// second, and a burst that still lets the dearest RPC (`most_cost`) pass.
fn share(rate: RateLimit, replicas: u32, most_cost: u32) -> RateLimit {
    let replicas = replicas.max(1);
    RateLimit {
        per_second: (rate.per_second / replicas).max(1),
        burst: (rate.burst / replicas).max(most_cost.min(rate.burst)).max(1),
    }
}

/// The upstream budget of one adapter instance, for adapters that spend it
/// on their own requests.
#[derive(Debug)]
pub struct InstanceBudget {
    limits: Arc<Limiters>,
    instance: String,
}

impl InstanceBudget {
    /// The budget of `instance`'s upstream in `limits`.
    pub fn new(limits: Arc<Limiters>, instance: &str) -> Self {
        Self { limits, instance: instance.to_owned() }
    }
}

impl lienthong_adapter_core::UpstreamBudget for InstanceBudget {
    fn spend(&self) -> Result<(), Duration> {
        self.limits.spend_upstream(&self.instance)
    }
}

/// How long until the refused request could pass: never less than one cell
/// of the quota, so a caller told to retry is never told "now".
fn next_cell<P: governor::clock::Reference>(not_until: &governor::NotUntil<P>, now: P) -> Duration {
    not_until.wait_time_from(now).max(not_until.quota().replenish_interval())
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    fn limiters(clock: &FakeRelativeClock) -> Limiters<FakeRelativeClock> {
        let config = LimitsConfig {
            per_app: Some(RateLimit { per_second: 10, burst: 3 }),
            per_citizen: Some(RateLimit { per_second: 1, burst: 2 }),
            per_upstream: BTreeMap::from([("vneid".to_owned(), RateLimit { per_second: 2, burst: 2 })]),
            costs: BTreeMap::from([("ListMyDossiers".to_owned(), 2)]),
        };
        Limiters::with_clock(&config, clock.clone())
    }

    #[test]
    fn over_the_limit_is_resource_exhausted_with_a_retry_delay() {
        let clock = FakeRelativeClock::default();
        let l = limiters(&clock);
        for _ in 0..3 {
            l.check_app("app", Method::GetSchool).unwrap();
        }
        let refused = l.check_app("app", Method::GetSchool).unwrap_err();
        assert_eq!(refused.code(), Code::ResourceExhausted);
        let delay = refused.get_details_retry_info().unwrap().retry_delay.unwrap();
        assert!(delay > Duration::ZERO && delay <= Duration::from_millis(100), "{delay:?}");
        // Another app has its own budget; time refills this one.
        l.check_app("other", Method::GetSchool).unwrap();
        clock.advance(Duration::from_millis(100));
        l.check_app("app", Method::GetSchool).unwrap();
        // An app with its own quota.
        let l = limiters(&clock).with_app_quotas([("big", RateLimit { per_second: 1, burst: 5 })]);
        for _ in 0..5 {
            l.check_app("big", Method::GetSchool).unwrap();
        }
        assert_eq!(l.check_app("big", Method::GetSchool).unwrap_err().code(), Code::ResourceExhausted);
    }

    #[test]
    fn costs_and_citizens_and_upstreams() {
        let clock = FakeRelativeClock::default();
        let l = limiters(&clock);
        let lan = CitizenId::parse("079190012345").unwrap();
        let minh = CitizenId::parse("079085004321").unwrap();
        // ListMyDossiers costs 2: the burst of 2 is spent at once.
        l.check_citizen(&lan, Method::ListMyDossiers).unwrap();
        assert!(l.check_citizen(&lan, Method::GetMyProfile).is_err());
        l.check_citizen(&minh, Method::GetMyProfile).unwrap();
        // The upstream budget protects VNeID whoever calls.
        l.check_upstream("vneid", Method::GetMyProfile).unwrap();
        l.check_upstream("vneid", Method::GetMyProfile).unwrap();
        let wait = l.check_upstream("vneid", Method::GetMyProfile).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert!(l.check_upstream("unlimited", Method::GetMyProfile).is_ok());
        // Just before the next cell, the wait is still a cell, never 0.
        clock.advance(Duration::from_micros(499_900));
        let wait = l.check_upstream("vneid", Method::GetMyProfile).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
    }

    #[test]
    fn idle_citizens_are_forgotten() {
        let clock = FakeRelativeClock::default();
        let l = limiters(&clock);
        for n in 0..1_000u32 {
            let id = CitizenId::parse(&format!("079190{n:06}")).unwrap();
            l.check_citizen(&id, Method::GetMyProfile).unwrap();
        }
        assert_eq!(l.tracked_citizens(), 1_000);
        clock.advance(Duration::from_secs(5));
        l.compact();
        assert_eq!(l.tracked_citizens(), 0);
    }

    #[test]
    fn bad_config_is_reported() {
        let config = LimitsConfig {
            per_app: Some(RateLimit { per_second: 0, burst: 1 }),
            costs: BTreeMap::from([("Nope".to_owned(), 1), ("GetSchool".to_owned(), 0)]),
            ..Default::default()
        };
        let paths: Vec<String> = config.problems().into_iter().map(|(p, _)| p).collect();
        assert_eq!(paths, ["limits.per_app", "limits.costs.GetSchool", "limits.costs.Nope"]);
    }
}
