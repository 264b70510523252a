//! What the operators' views (the ops port, the metrics) read of the running
//! gateway: a narrow, read-only snapshot instead of the gateway itself, so
//! `ops` and `telemetry` depend on nothing of the request path. `server`
//! implements [`Observed`] over the live state.

use lienthong_adapter_core::Family;

use super::stats::StatsSnapshot;

/// A circuit breaker's state, as operators see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breaker {
    /// Calls go through.
    Closed,
    /// A few trial calls go through.
    HalfOpen,
    /// Calls are refused at once.
    Open,
}

impl Breaker {
    /// Its name on the status page.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::HalfOpen => "half-open",
            Self::Open => "open",
        }
    }

    /// Its value in the `lienthong.breaker.state` gauge.
    pub fn gauge(self) -> u64 {
        match self {
            Self::Closed => 0,
            Self::HalfOpen => 1,
            Self::Open => 2,
        }
    }
}

/// One adapter instance, now.
#[derive(Debug, Clone)]
pub struct InstanceView {
    /// Its name in config.
    pub name: String,
    /// Its kind.
    pub kind: String,
    /// The (province, family) pairs it serves.
    pub routes: Vec<(String, Family)>,
    /// Its breaker.
    pub breaker: Breaker,
    /// Calls in flight to it.
    pub in_flight: usize,
    /// Its recent calls, errors, latency and cache use.
    pub stats: StatsSnapshot,
}

/// The response cache, now.
#[derive(Debug, Clone, Copy)]
pub struct CacheView {
    /// Entries held.
    pub entries: u64,
    /// Their weight in bytes.
    pub bytes: u64,
    /// Entries that left so far, by cause.
    pub evictions: [(&'static str, u64); 4],
}

/// The running gateway as operators' views read it.
pub trait Observed: Send + Sync + 'static {
    /// Whether the server has begun draining.
    fn draining(&self) -> bool;
    /// Whether most calls have been shed for too long.
    fn overloaded(&self) -> bool;
    /// Calls shed so far.
    fn shed(&self) -> u64;
    /// Calls and connections refused at the edge so far, by reason.
    fn refused(&self) -> Vec<(&'static str, u64)>;
    /// Connections open.
    fn connections(&self) -> usize;
    /// The response cache.
    fn cache(&self) -> CacheView;
    /// The configured provinces' codes.
    fn provinces(&self) -> Vec<String>;
    /// Every adapter instance in use.
    fn instances(&self) -> Vec<InstanceView>;
    /// The limits shared with other replicas (`[cluster]`), if any.
    fn cluster(&self) -> Option<ClusterView> {
        None
    }
}

/// The state shared with other replicas, now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterView {
    /// Whether Redis answered the last command.
    pub up: bool,
    /// Calls decided without Redis since the start.
    pub fallbacks: u64,
    /// Whether some limits refuse calls while Redis is away
    /// (`cluster.fail_closed`).
    pub fail_closed: bool,
    /// Misses of the shared cache's RPCs, by outcome (`hit`, `waited`,
    /// `filled`, `alone`).
    pub shared_cache: [(&'static str, u64); 4],
}
