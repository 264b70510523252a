//! A circuit breaker per adapter instance.
//!
//! Closed, it counts the outcomes of calls (not attempts: a call retried after
//! a failure counts once, as its last outcome): `failures_to_open` consecutive
//! failed calls (unavailable, deadline exceeded, unexpected), or a failure rate of
//! at least `failure_rate` over the last `window` once `min_calls` calls were
//! seen there, open it. Open, calls fail fast with UNAVAILABLE for `open_for`.
//! Then up to `half_open_probes` probes are let through (half-open): as many
//! successes close it, one failure opens it again. A probe whose caller went
//! away before it ended gives its place back, so the breaker never sticks
//! half-open. Client errors (not found, invalid argument, …) show the upstream
//! answering and count as successes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lienthong_adapter_core::{AdapterError, ErrorKind};
use tokio::time::Instant;

pub use crate::config::BreakerConfig;

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls pass.
    Closed,
    /// Calls fail fast.
    Open,
    /// Probes are let through.
    HalfOpen,
}

impl BreakerState {
    /// A short name for operators.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// What operators see of a breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSnapshot {
    /// Where it stands.
    pub state: BreakerState,
    /// Upstream failures in a row (closed).
    pub consecutive_failures: u32,
    /// Calls seen in the window.
    pub window_calls: u32,
    /// Of them, failures.
    pub window_failures: u32,
    /// Until the next probe (open).
    pub retry_in: Duration,
    /// How often it opened since start.
    pub times_opened: u64,
}

/// Whether an error says the upstream is unwell. An upstream that answered,
/// but with something unusable (malformed JSON, a record that fails
/// validation, a client error: `Unavailable` that no retry mends) has a data
/// problem, not an availability one: it does not count.
pub fn is_upstream_failure(e: &AdapterError) -> bool {
    match e.kind() {
        ErrorKind::Unavailable => e.is_temporary(),
        ErrorKind::DeadlineExceeded | ErrorKind::Unexpected => true,
        _ => false,
    }
}

const SLOTS: usize = 10;

/// Calls and failures over a sliding window, in `SLOTS` slots.
#[derive(Debug)]
struct Window {
    slot: Duration,
    epoch: Instant,
    head: u64,
    counts: [(u32, u32); SLOTS],
}

impl Window {
    fn new(window: Duration, now: Instant) -> Self {
        Self {
            slot: (window / SLOTS as u32).max(Duration::from_millis(1)),
            epoch: now,
            head: 0,
            counts: [(0, 0); SLOTS],
        }
    }

    fn advance(&mut self, now: Instant) {
        let slot = (now.saturating_duration_since(self.epoch).as_nanos() / self.slot.as_nanos()) as u64;
        if slot <= self.head {
            return;
        }
        for s in (self.head + 1)..=slot.min(self.head + SLOTS as u64) {
            self.counts[(s % SLOTS as u64) as usize] = (0, 0);
        }
        self.head = slot;
    }

    fn add(&mut self, now: Instant, failed: bool) {
        self.advance(now);
        let c = &mut self.counts[(self.head % SLOTS as u64) as usize];
        c.0 = c.0.saturating_add(1);
        c.1 = c.1.saturating_add(u32::from(failed));
    }

    fn totals(&mut self, now: Instant) -> (u32, u32) {
        self.advance(now);
        self.counts.iter().fold((0, 0), |(c, f), (cc, ff)| (c.saturating_add(*cc), f.saturating_add(*ff)))
    }

    fn clear(&mut self) {
        self.counts = [(0, 0); SLOTS];
    }
}

#[derive(Debug)]
enum State {
    Closed,
    Open { until: Instant },
    HalfOpen { out: u32, successes: u32 },
}

#[derive(Debug)]
struct Inner {
    state: State,
    consecutive: u32,
    window: Window,
    times_opened: u64,
}

/// One adapter instance's breaker.
#[derive(Debug)]
pub struct Breaker {
    name: String,
    config: BreakerConfig,
    inner: Mutex<Inner>,
}

/// Leave to make one call; say how it ended with [`BreakerPermit::record`].
#[derive(Debug)]
pub struct BreakerPermit {
    breaker: Arc<Breaker>,
    probe: bool,
    recorded: bool,
}

impl BreakerPermit {
    /// Records how the call ended.
    pub fn record(mut self, outcome: Result<(), &AdapterError>) {
        self.recorded = true;
        self.breaker.record(self.probe, matches!(outcome, Err(e) if is_upstream_failure(e)));
    }
}

impl Drop for BreakerPermit {
    fn drop(&mut self) {
        if self.probe && !self.recorded {
            self.breaker.release_probe();
        }
    }
}

impl Breaker {
    /// A closed breaker for adapter instance `name`.
    pub fn new(name: impl Into<String>, config: BreakerConfig) -> Self {
        let inner = Inner {
            state: State::Closed,
            consecutive: 0,
            window: Window::new(config.window, Instant::now()),
            times_opened: 0,
        };
        Self { name: name.into(), config, inner: Mutex::new(inner) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where it stands now.
    pub fn state(&self) -> BreakerState {
        self.snapshot().state
    }

    /// What operators see.
    pub fn snapshot(&self) -> BreakerSnapshot {
        let now = Instant::now();
        let mut inner = self.lock();
        let (window_calls, window_failures) = inner.window.totals(now);
        let (state, retry_in) = match inner.state {
            State::Closed => (BreakerState::Closed, Duration::ZERO),
            State::Open { until } if now < until => (BreakerState::Open, until - now),
            State::Open { .. } | State::HalfOpen { .. } => (BreakerState::HalfOpen, Duration::ZERO),
        };
        BreakerSnapshot {
            state,
            consecutive_failures: inner.consecutive,
            window_calls,
            window_failures,
            retry_in,
            times_opened: inner.times_opened,
        }
    }

    /// Lets a call through, or says how long until the next probe.
    pub fn admit(self: &Arc<Self>) -> Result<BreakerPermit, Duration> {
        let now = Instant::now();
        let mut inner = self.lock();
        let probe = match inner.state {
            State::Closed => false,
            State::Open { until } if now < until => return Err(until - now),
            State::Open { .. } => {
                inner.state = State::HalfOpen { out: 1, successes: 0 };
                true
            }
            State::HalfOpen { ref mut out, successes } => {
                if *out + successes >= self.config.half_open_probes {
                    // The probes are out: the others wait for their verdict.
                    return Err(Duration::from_secs(1));
                }
                *out += 1;
                true
            }
        };
        Ok(BreakerPermit { breaker: self.clone(), probe, recorded: false })
    }

    fn record(&self, probe: bool, failed: bool) {
        let now = Instant::now();
        let mut guard = self.lock();
        let inner = &mut *guard;
        match (&mut inner.state, probe) {
            (State::Closed, _) => {
                inner.window.add(now, failed);
                inner.consecutive = if failed { inner.consecutive.saturating_add(1) } else { 0 };
                let (calls, failures) = inner.window.totals(now);
                let rate_trips = calls >= self.config.min_calls
                    && f64::from(failures) >= self.config.failure_rate * f64::from(calls);
                if failed && (inner.consecutive >= self.config.failures_to_open || rate_trips) {
                    self.open(inner, now);
                }
            }
            (State::HalfOpen { out, successes }, true) => {
                *out = out.saturating_sub(1);
                if failed {
                    self.open(inner, now);
                } else {
                    *successes += 1;
                    if *successes >= self.config.half_open_probes {
                        tracing::info!(instance = %self.name, "circuit breaker closed: the upstream answers again");
                        inner.state = State::Closed;
                        inner.consecutive = 0;
                        inner.window.clear();
                    }
                }
            }
            // Late results of calls let through before the breaker opened.
            _ => {}
        }
    }

    fn open(&self, inner: &mut Inner, now: Instant) {
        tracing::warn!(instance = %self.name, open_for = ?self.config.open_for, "circuit breaker opened");
        inner.state = State::Open { until: now + self.config.open_for };
        inner.times_opened += 1;
    }

    /// The upstream says it serves again (its health check): an open
    /// breaker lets its probes through now rather than when `open_for` runs
    /// out. Whether it closes is still for the probes to say.
    pub fn recovered(&self) {
        let mut inner = self.lock();
        if let State::Open { until } = &mut inner.state {
            let now = Instant::now();
            if *until > now {
                tracing::info!(instance = %self.name, "the upstream's health check says it serves again: probing it now");
                *until = now;
            }
        }
    }

    fn release_probe(&self) {
        let mut inner = self.lock();
        if let State::HalfOpen { out, .. } = &mut inner.state {
            *out = out.saturating_sub(1);
        }
    }
}

impl From<BreakerState> for crate::telemetry::view::Breaker {
    fn from(state: BreakerState) -> Self {
        match state {
            BreakerState::Closed => Self::Closed,
            BreakerState::HalfOpen => Self::HalfOpen,
            BreakerState::Open => Self::Open,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn down() -> AdapterError {
        AdapterError::new(ErrorKind::Unavailable, "down")
    }

    fn breaker(config: BreakerConfig) -> Arc<Breaker> {
        Arc::new(Breaker::new("test", config))
    }

    fn fail(b: &Arc<Breaker>) {
        b.admit().unwrap().record(Err(&down()));
    }

    #[tokio::test(start_paused = true)]
    async fn opens_probes_and_closes() {
        let b = breaker(BreakerConfig { failures_to_open: 3, ..Default::default() });
        fail(&b);
        fail(&b);
        // A client error shows the upstream answering: the count starts over.
        b.admit().unwrap().record(Err(&AdapterError::not_found("x")));
        assert_eq!(b.state(), BreakerState::Closed);
        for _ in 0..3 {
            fail(&b);
        }
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.admit().unwrap_err(), Duration::from_secs(30));
        tokio::time::advance(Duration::from_secs(30)).await;
        // One probe; the others wait.
        let probe = b.admit().unwrap();
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.admit().is_err());
        probe.record(Err(&down()));
        assert_eq!(b.state(), BreakerState::Open);
        tokio::time::advance(Duration::from_secs(30)).await;
        b.admit().unwrap().record(Ok(()));
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.admit().is_ok());
        assert_eq!(b.snapshot().times_opened, 2);
    }

    #[test]
    fn an_upstream_that_answered_with_bad_data_is_not_counted_as_down() {
        assert!(is_upstream_failure(&AdapterError::new(ErrorKind::Unavailable, "connection refused")));
        let malformed = AdapterError::new(ErrorKind::Unavailable, "malformed JSON").with_temporary(false);
        assert!(!is_upstream_failure(&malformed));
        assert!(!is_upstream_failure(&AdapterError::new(ErrorKind::NotFound, "no such school")));
        assert!(is_upstream_failure(&AdapterError::new(ErrorKind::DeadlineExceeded, "slow")));
    }

    #[tokio::test(start_paused = true)]
    async fn a_healthy_upstream_is_probed_at_once_and_closes_it() {
        let b = breaker(BreakerConfig { failures_to_open: 1, half_open_probes: 1, ..Default::default() });
        b.recovered();
        assert_eq!(b.state(), BreakerState::Closed, "a closed breaker stays closed");
        fail(&b);
        assert!(b.admit().is_err(), "open: calls fail fast");
        b.recovered();
        let probe = b.admit().expect("the upstream serves again: a probe goes through at once");
        probe.record(Ok(()));
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_rate_opens_it_without_a_run_of_failures() {
        let b =
            breaker(BreakerConfig { failures_to_open: 100, min_calls: 10, failure_rate: 0.5, ..Default::default() });
        // Alternating success and failure: never two failures in a row.
        for _ in 0..4 {
            b.admit().unwrap().record(Ok(()));
            fail(&b);
        }
        assert_eq!(b.state(), BreakerState::Closed, "8 calls are below min_calls");
        b.admit().unwrap().record(Ok(()));
        fail(&b);
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn old_failures_leave_the_window() {
        let b = breaker(BreakerConfig { failures_to_open: 100, min_calls: 4, failure_rate: 0.5, ..Default::default() });
        fail(&b);
        fail(&b);
        b.admit().unwrap().record(Ok(()));
        tokio::time::advance(Duration::from_secs(11)).await;
        let s = b.snapshot();
        assert_eq!((s.window_calls, s.window_failures), (0, 0));
        b.admit().unwrap().record(Ok(()));
        fail(&b);
        assert_eq!(b.state(), BreakerState::Closed, "1 failure in 2 calls is below min_calls");
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_whose_caller_left_gives_its_place_back() {
        let b = breaker(BreakerConfig { failures_to_open: 1, half_open_probes: 2, ..Default::default() });
        fail(&b);
        tokio::time::advance(Duration::from_secs(30)).await;
        let first = b.admit().unwrap();
        let second = b.admit().unwrap();
        assert!(b.admit().is_err(), "only two probes");
        drop(second);
        let again = b.admit().unwrap();
        first.record(Ok(()));
        assert_eq!(b.state(), BreakerState::HalfOpen, "one success of two");
        again.record(Ok(()));
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn bad_config_is_reported() {
        let config =
            BreakerConfig { failure_rate: 1.5, window: Duration::ZERO, half_open_probes: 0, ..Default::default() };
        let paths: Vec<String> = config.problems().into_iter().map(|(p, _)| p).collect();
        assert_eq!(paths, ["breaker.failure_rate", "breaker.window", "breaker.half_open_probes"]);
    }
}
