//! The policy every call to an adapter instance goes through, whoever wrote
//! the adapter: the upstream's request budget → its circuit breaker → its
//! bulkhead → the caller's deadline → retries of idempotent reads within the
//! retry budget. Cache fills and uncached calls alike; a cache hit never gets
//! here.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use lienthong_adapter_core::{AdapterError, ErrorKind, HealthProbe, Method};
use tokio::time::Instant;

use crate::policy::breaker::{Breaker, BreakerConfig, BreakerSnapshot, BreakerState};
use crate::policy::bulkhead::Bulkhead;
use crate::policy::limits::Limiters;
use crate::policy::retry::{RetryBudget, RetryConfig, is_retryable};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::stats::InstanceStats;

/// How often an open breaker's upstream is asked whether it serves again.
pub const HEALTH_EVERY: Duration = Duration::from_secs(1);

/// What operators see of one instance's guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardSnapshot {
    /// The breaker.
    pub breaker: BreakerSnapshot,
    /// Calls in flight.
    pub in_flight: usize,
    /// The bulkhead's limit.
    pub bulkhead_limit: usize,
    /// Calls the bulkhead refused.
    pub bulkhead_rejected: u64,
    /// Retries made.
    pub retries: u64,
    /// Retries the budget refused.
    pub retries_refused: u64,
}

/// The guard of one adapter instance.
#[derive(Debug)]
pub struct UpstreamGuard {
    /// The instance's name (also a metric label).
    instance: Arc<str>,
    breaker: Arc<Breaker>,
    bulkhead: Bulkhead,
    retry: RetryConfig,
    budget: RetryBudget,
    limits: Arc<Limiters>,
    /// The instance's kind, as a metric label.
    kind: Arc<str>,
    metrics: Option<Arc<Metrics>>,
    stats: InstanceStats,
    /// The adapter spends the upstream budget itself, on the requests that
    /// reach the upstream: its calls are not charged here.
    adapter_budgets: bool,
}

impl UpstreamGuard {
    /// The guard of `instance`.
    pub fn new(
        instance: &str,
        breaker: BreakerConfig,
        bulkhead: Bulkhead,
        retry: RetryConfig,
        limits: Arc<Limiters>,
    ) -> Self {
        Self {
            instance: instance.into(),
            breaker: Arc::new(Breaker::new(instance, breaker)),
            bulkhead,
            budget: RetryBudget::new(&retry),
            retry,
            limits,
            kind: Arc::from(""),
            metrics: None,
            stats: InstanceStats::new(),
            adapter_budgets: false,
        }
    }

    /// Leaves the upstream budget to the adapter (see
    /// [`lienthong_adapter_core::AdapterSet::budgets_itself`]).
    pub fn budgeted_by_adapter(mut self, yes: bool) -> Self {
        self.adapter_budgets = yes;
        self
    }

    /// While its breaker is open, asks the upstream's health check (when the
    /// adapter has one) every [`HEALTH_EVERY`]: an upstream seen not serving
    /// (or out of reach) and then serving again is probed at once, so a
    /// recovered adapter is used again within a couple of seconds rather
    /// than after `open_for`. One that says it serves all along, and one
    /// without a health check, are left to `open_for`.
    pub fn watched_by(self, probe: Option<Arc<dyn HealthProbe>>) -> Self {
        if let Some(probe) = probe {
            let breaker = Arc::downgrade(&self.breaker);
            let instance = self.instance.clone();
            tokio::spawn(async move {
                // Which opening of the breaker the upstream was seen down in:
                // only a service seen down, then serving, is probed early. A
                // process that says SERVING while its calls fail (its own
                // upstream down) is left to `open_for`.
                let mut down_in: Option<u64> = None;
                loop {
                    tokio::time::sleep(HEALTH_EVERY).await;
                    let Some(breaker) = breaker.upgrade() else { return };
                    let now = breaker.snapshot();
                    if now.state != BreakerState::Open {
                        continue;
                    }
                    match probe.serving().await {
                        Some(true) if down_in == Some(now.times_opened) => breaker.recovered(),
                        Some(true) => {}
                        Some(false) => down_in = Some(now.times_opened),
                        None => {
                            tracing::info!(instance = %instance, "the upstream offers no health check: its breaker waits out open_for");
                            return;
                        }
                    }
                }
            });
        }
        self
    }

    /// Records every attempt and refusal in `metrics`, labelled with the
    /// instance's `kind`.
    pub fn observed(mut self, kind: &str, metrics: Arc<Metrics>) -> Self {
        self.kind = kind.into();
        self.metrics = Some(metrics);
        self
    }

    /// What the status page shows of this instance.
    pub fn stats(&self) -> &InstanceStats {
        &self.stats
    }

    /// A call refused before the upstream: counted, and the refusal.
    fn refused(&self, error: &'static str, refusal: AdapterError) -> AdapterError {
        self.stats.refused();
        if let Some(m) = &self.metrics {
            if error == "rate_limited" {
                m.limiter_rejection("upstream");
            }
            m.adapter_refusal(&self.instance, &self.kind, error);
        }
        refusal
    }

    /// What operators see.
    pub fn snapshot(&self) -> GuardSnapshot {
        GuardSnapshot {
            breaker: self.breaker.snapshot(),
            in_flight: self.bulkhead.in_use(),
            bulkhead_limit: self.bulkhead.limit(),
            bulkhead_rejected: self.bulkhead.rejected(),
            retries: self.budget.spent(),
            retries_refused: self.budget.refused(),
        }
    }

    /// Runs `attempt` under the policy, until `deadline`. `idempotent` calls
    /// are retried on temporary failures. When a retry is refused (budget,
    /// breaker, bulkhead), the caller gets the upstream's last error.
    pub async fn call<T, F, Fut>(
        &self,
        method: Method,
        deadline: Instant,
        idempotent: bool,
        attempt: F,
    ) -> Result<T, AdapterError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, AdapterError>>,
    {
        self.budget.deposit();
        let mut last: Option<AdapterError> = None;
        // The permit of a failed attempt being retried: the breaker counts
        // calls, not attempts, so it records the call's failure only if no
        // later attempt answers.
        let mut held: Option<crate::policy::breaker::BreakerPermit> = None;
        let give_up = |held: Option<crate::policy::breaker::BreakerPermit>, last: &Option<AdapterError>| {
            if let (Some(permit), Some(e)) = (held, last) {
                permit.record(Err(e));
            }
        };
        let attempts = self.retry.max_attempts.max(1);
        for n in 1..=attempts {
            if !self.adapter_budgets
                && let Err(wait) = self.limits.upstream(&self.instance, method).await
            {
                let refusal = self.refused("rate_limited", self.refusal(ErrorKind::RateLimited, wait));
                give_up(held, &last);
                return Err(last.unwrap_or(refusal));
            }
            let permit = match self.breaker.admit() {
                Ok(p) => p,
                Err(wait) => {
                    let refusal = self.refused("breaker_open", self.refusal(ErrorKind::Unavailable, wait));
                    give_up(held, &last);
                    return Err(last.unwrap_or(refusal));
                }
            };
            // This attempt now stands for the call.
            drop(held.take());
            let Some(place) = self.bulkhead.enter(deadline).await else {
                let refusal = self.refused("bulkhead_full", self.bulkhead_full());
                // The call's earlier failure, if it had one, is its outcome.
                if let Some(e) = &last {
                    permit.record(Err(e));
                }
                return Err(last.unwrap_or(refusal));
            };
            let span = tracing::info_span!(
                "adapter",
                otel.name = %format_args!("adapter {}", self.instance),
                otel.status_code = tracing::field::Empty,
                rpc.method = method.full_name(),
                lienthong.adapter.instance = %self.instance,
                lienthong.adapter.kind = &*self.kind,
                lienthong.attempt = n,
                error.type = tracing::field::Empty,
            );
            let started = Instant::now();
            let result =
                match tokio::time::timeout_at(deadline, tracing::Instrument::instrument(attempt(), span.clone())).await
                {
                    Ok(r) => r,
                    Err(_) => Err(AdapterError::new(
                        ErrorKind::DeadlineExceeded,
                        format!("the upstream of {} did not answer before the caller's deadline", self.instance),
                    )),
                };
            drop(place);
            // Answers such as NOT_FOUND are outcomes; failures are what the
            // breaker counts against the upstream.
            let outcome = result.as_ref().err().map(|e| e.kind().as_str());
            let failed = result.as_ref().is_err_and(crate::policy::breaker::is_upstream_failure);
            let error = outcome.filter(|_| failed);
            if let Some(kind) = error {
                span.record("otel.status_code", "ERROR");
                span.record("error.type", kind);
            }
            drop(span);
            let elapsed = started.elapsed();
            self.stats.attempt(elapsed, failed);
            if let Some(m) = &self.metrics {
                m.adapter_attempt(&self.instance, &self.kind, elapsed, outcome, failed);
            }
            // The breaker counts calls, not attempts: only the call's last
            // attempt is recorded (a retried failure is not yet the call's).
            let e = match result {
                Ok(v) => {
                    permit.record(Ok(()));
                    return Ok(v);
                }
                Err(e) => e,
            };
            let wait = (idempotent && n < attempts && is_retryable(&e))
                .then(|| self.retry.backoff(n, e.retry_after(), self.budget.random()))
                .flatten()
                .filter(|wait| Instant::now() + *wait < deadline && self.budget.withdraw());
            let Some(wait) = wait else {
                permit.record(Err(&e));
                return Err(e);
            };
            held = Some(permit);
            tracing::debug!(instance = %self.instance, rpc = method.rpc_name(), attempt = n, ?wait, kind = e.kind().as_str(), "retrying");
            tokio::time::sleep(wait).await;
            last = Some(e);
        }
        Err(last.unwrap_or_else(|| AdapterError::new(ErrorKind::Unexpected, "no attempt was made")))
    }

    fn refusal(&self, kind: ErrorKind, wait: Duration) -> AdapterError {
        let message = match kind {
            ErrorKind::RateLimited => {
                format!("the upstream of {} is at its request budget; retry later", self.instance)
            }
            _ => format!("the upstream of {} is failing; its circuit breaker is open", self.instance),
        };
        AdapterError::new(kind, message).with_retry_after(wait)
    }

    fn bulkhead_full(&self) -> AdapterError {
        AdapterError::new(
            ErrorKind::Unavailable,
            format!("the upstream of {} has too many calls in flight; retry with backoff", self.instance),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::policy::breaker::BreakerState;
    use crate::policy::limits::{LimitsConfig, RateLimit};

    fn guard(retry: RetryConfig, breaker: BreakerConfig, per_upstream: Option<RateLimit>) -> UpstreamGuard {
        let limits = LimitsConfig {
            per_upstream: per_upstream.map(|r| BTreeMap::from([("up".to_owned(), r)])).unwrap_or_default(),
            ..Default::default()
        };
        UpstreamGuard::new("up", breaker, Bulkhead::new(4, Duration::ZERO), retry, Arc::new(Limiters::new(&limits)))
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    /// An attempt that fails with `kind` `failures` times, then answers 7.
    fn flaky(
        calls: &AtomicUsize,
        failures: usize,
        kind: ErrorKind,
    ) -> impl Fn() -> std::future::Ready<Result<u32, AdapterError>> + '_ {
        move || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(if n < failures { Err(AdapterError::new(kind, "flaky")) } else { Ok(7) })
        }
    }

    /// An upstream's health check, as the test sets it.
    #[derive(Debug, Default)]
    struct Health(std::sync::Mutex<Option<bool>>, AtomicUsize);

    #[async_trait::async_trait]
    impl HealthProbe for Health {
        async fn serving(&self) -> Option<bool> {
            self.1.fetch_add(1, Ordering::SeqCst);
            *self.0.lock().unwrap()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_upstream_whose_health_check_says_it_serves_is_used_again_within_two_seconds() {
        let open_for = Duration::from_secs(30);
        let config = BreakerConfig { failures_to_open: 1, half_open_probes: 1, open_for, ..Default::default() };
        let health = Arc::new(Health(std::sync::Mutex::new(Some(false)), AtomicUsize::new(0)));
        let g =
            guard(RetryConfig { max_attempts: 1, ..Default::default() }, config, None).watched_by(Some(health.clone()));
        let calls = AtomicUsize::new(0);
        assert!(g.call(Method::GetSchool, far(), true, flaky(&calls, 1, ErrorKind::Unavailable)).await.is_err());
        assert_eq!(g.snapshot().breaker.state, BreakerState::Open);
        // Down: asked every second, still open.
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(g.snapshot().breaker.state, BreakerState::Open);
        assert!(health.1.load(Ordering::SeqCst) >= 4);
        // Back: within two seconds a call goes through and closes it,
        // though open_for has 25 s to run.
        *health.0.lock().unwrap() = Some(true);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(g.call(Method::GetSchool, far(), true, flaky(&calls, 0, ErrorKind::Unavailable)).await, Ok(7));
        assert_eq!(g.snapshot().breaker.state, BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn an_upstream_that_says_it_serves_while_its_calls_fail_waits_out_open_for() {
        let open_for = Duration::from_secs(30);
        let config = BreakerConfig { failures_to_open: 1, half_open_probes: 1, open_for, ..Default::default() };
        let health = Arc::new(Health(std::sync::Mutex::new(Some(true)), AtomicUsize::new(0)));
        let g =
            guard(RetryConfig { max_attempts: 1, ..Default::default() }, config, None).watched_by(Some(health.clone()));
        let calls = AtomicUsize::new(0);
        assert!(g.call(Method::GetSchool, far(), true, flaky(&calls, 1, ErrorKind::Unavailable)).await.is_err());
        tokio::time::sleep(Duration::from_secs(10)).await;
        let now = g.snapshot().breaker;
        assert_eq!((now.state, now.times_opened), (BreakerState::Open, 1), "not probed every second");
        assert!(health.1.load(Ordering::SeqCst) >= 9, "asked all along");
    }

    #[tokio::test(start_paused = true)]
    async fn an_upstream_without_a_health_check_is_not_asked_again() {
        let config = BreakerConfig { failures_to_open: 1, ..Default::default() };
        let health = Arc::new(Health::default());
        let g =
            guard(RetryConfig { max_attempts: 1, ..Default::default() }, config, None).watched_by(Some(health.clone()));
        let calls = AtomicUsize::new(0);
        assert!(g.call(Method::GetSchool, far(), true, flaky(&calls, 1, ErrorKind::Unavailable)).await.is_err());
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(health.1.load(Ordering::SeqCst), 1, "asked once, then left to open_for");
        assert_eq!(g.snapshot().breaker.state, BreakerState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn temporary_failures_of_reads_are_retried_with_backoff() {
        let g = guard(RetryConfig::default(), BreakerConfig::default(), None);
        let calls = AtomicUsize::new(0);
        let started = Instant::now();
        assert_eq!(g.call(Method::GetSchool, far(), true, flaky(&calls, 2, ErrorKind::Unavailable)).await, Ok(7));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert!(started.elapsed() <= Duration::from_millis(25 + 50), "{:?}", started.elapsed());
        assert_eq!(g.snapshot().retries, 2);
        // Permanent errors, and calls that are not idempotent, are not.
        let calls = AtomicUsize::new(0);
        let e = g.call(Method::GetSchool, far(), true, flaky(&calls, 9, ErrorKind::NotFound)).await.unwrap_err();
        assert_eq!((e.kind(), calls.load(Ordering::SeqCst)), (ErrorKind::NotFound, 1));
        let calls = AtomicUsize::new(0);
        g.call(Method::GetSchool, far(), false, flaky(&calls, 9, ErrorKind::Unavailable)).await.unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_stop_when_the_budget_is_spent() {
        let retry = RetryConfig { budget_ratio: 0.1, min_per_second: 0.0, ..Default::default() };
        let g = guard(retry, BreakerConfig { failures_to_open: 10_000, min_calls: 10_000, ..Default::default() }, None);
        let calls = AtomicUsize::new(0);
        for _ in 0..100 {
            g.call(Method::GetSchool, far(), true, flaky(&calls, usize::MAX, ErrorKind::Unavailable))
                .await
                .unwrap_err();
        }
        // 100 calls, each would retry twice: the budget lets about 10 through.
        let attempts = calls.load(Ordering::SeqCst);
        assert!((105..=110).contains(&attempts), "{attempts} attempts");
        let s = g.snapshot();
        assert_eq!(s.retries as usize, attempts - 100);
        assert!(s.retries_refused >= 90);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_honoured_and_never_past_the_deadline() {
        let g = guard(RetryConfig::default(), BreakerConfig::default(), None);
        let calls = AtomicUsize::new(0);
        let slow_down = || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(if n == 0 {
                Err(AdapterError::new(ErrorKind::RateLimited, "busy").with_retry_after(Duration::from_millis(400)))
            } else {
                Ok(1)
            })
        };
        let started = Instant::now();
        assert_eq!(g.call(Method::GetSchool, far(), true, slow_down).await, Ok(1));
        assert!(started.elapsed() >= Duration::from_millis(400));
        // With 100 ms left, a 400 ms Retry-After is the caller's to wait.
        let calls = AtomicUsize::new(0);
        let e = g
            .call(Method::GetSchool, Instant::now() + Duration::from_millis(100), true, || {
                calls.fetch_add(1, Ordering::SeqCst);
                std::future::ready(Err::<u32, _>(
                    AdapterError::new(ErrorKind::RateLimited, "busy").with_retry_after(Duration::from_millis(400)),
                ))
            })
            .await
            .unwrap_err();
        assert_eq!((e.kind(), e.retry_after()), (ErrorKind::RateLimited, Some(Duration::from_millis(400))));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_cuts_an_upstream_that_ignores_it() {
        let g = guard(RetryConfig { max_attempts: 1, ..Default::default() }, BreakerConfig::default(), None);
        let started = Instant::now();
        let e = g
            .call(Method::GetSchool, started + Duration::from_millis(300), true, || async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok::<u32, AdapterError>(1)
            })
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::DeadlineExceeded);
        assert_eq!(started.elapsed(), Duration::from_millis(300));
        assert_eq!(g.snapshot().in_flight, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_spend_the_upstream_budget_and_the_breaker_counts_calls() {
        let g = guard(
            RetryConfig { min_per_second: 100.0, ..Default::default() },
            BreakerConfig { failures_to_open: 4, ..Default::default() },
            Some(RateLimit { per_second: 1, burst: 2 }),
        );
        let calls = AtomicUsize::new(0);
        // Two attempts fit the upstream's budget; the third is refused, and the
        // caller gets the upstream's error.
        let e = g.call(Method::GetSchool, far(), true, flaky(&calls, 9, ErrorKind::Unavailable)).await.unwrap_err();
        assert_eq!((e.message(), calls.load(Ordering::SeqCst)), ("flaky", 2));
        tokio::time::advance(Duration::from_secs(2)).await;
        let g = guard(
            RetryConfig { min_per_second: 100.0, ..Default::default() },
            BreakerConfig { failures_to_open: 4, ..Default::default() },
            None,
        );
        let calls = AtomicUsize::new(0);
        // The breaker counts calls, not attempts: two failed calls of three
        // attempts each leave it closed.
        for _ in 0..2 {
            g.call(Method::GetSchool, far(), true, flaky(&calls, usize::MAX, ErrorKind::Unavailable))
                .await
                .unwrap_err();
        }
        assert_eq!(calls.load(Ordering::SeqCst), 6);
        assert_eq!(g.snapshot().breaker.state, BreakerState::Closed);
        // A call that fails once and then answers is no failure either.
        let answered = AtomicUsize::new(0);
        assert_eq!(
            g.call(Method::GetSchool, far(), true, flaky(&answered, 1, ErrorKind::Unavailable)).await.unwrap(),
            7
        );
        assert_eq!(g.snapshot().breaker.state, BreakerState::Closed);
        // Four failed calls in a row open it: the rest fail fast.
        for _ in 0..4 {
            g.call(Method::GetSchool, far(), true, flaky(&calls, usize::MAX, ErrorKind::Unavailable))
                .await
                .unwrap_err();
        }
        assert_eq!(g.snapshot().breaker.state, BreakerState::Open);
        let before = calls.load(Ordering::SeqCst);
        let e = g.call(Method::GetSchool, far(), true, flaky(&calls, 0, ErrorKind::Unavailable)).await.unwrap_err();
        assert!(e.message().contains("circuit breaker is open"), "{}", e.message());
        assert_eq!(calls.load(Ordering::SeqCst), before);
    }
}
