//! Retries of idempotent reads: only for temporary upstream failures, with
//! jittered exponential backoff that honours the upstream's Retry-After,
//! never past the caller's deadline, and within a budget: every first attempt
//! deposits `budget_ratio` of a retry, every retry withdraws one, plus a
//! floor of `min_per_second` so that quiet instances can still retry. A
//! failing upstream therefore sees at most about (1 + ratio) times the
//! traffic, not `max_attempts` times.

use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lienthong_adapter_core::{AdapterError, ErrorKind};
use tokio::time::Instant;

pub use crate::config::RetryConfig;

impl RetryConfig {
    /// The wait before retry number `retry` (1 for the first retry): a random
    /// point of `[0, min(max_backoff, base_backoff · 2^(retry-1))]` drawn from
    /// `random`, and at least the upstream's `retry_after`. `None` when the
    /// upstream asks for longer than `max_backoff`.
    pub fn backoff(&self, retry: u32, retry_after: Option<Duration>, random: u64) -> Option<Duration> {
        if retry_after.is_some_and(|d| d > self.max_backoff) {
            return None;
        }
        let ceiling = self.base_backoff.saturating_mul(1 << retry.saturating_sub(1).min(16)).min(self.max_backoff);
        let jittered = ceiling.mul_f64((random >> 11) as f64 / (1u64 << 53) as f64);
        Some(jittered.max(retry_after.unwrap_or_default()))
    }
}

/// Whether retrying may help: a temporary failure of the upstream, or its
/// request to slow down.
pub fn is_retryable(e: &AdapterError) -> bool {
    e.is_temporary()
        && matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::DeadlineExceeded | ErrorKind::RateLimited)
}

/// One instance's retry budget.
#[derive(Debug)]
pub struct RetryBudget {
    ratio: f64,
    min_per_second: f64,
    cap: f64,
    state: Mutex<(f64, Instant)>,
    spent: AtomicU64,
    refused: AtomicU64,
    random: RandomState,
    draws: AtomicU64,
}

impl RetryBudget {
    /// A budget per `config`, starting with the floor's worth of one second.
    pub fn new(config: &RetryConfig) -> Self {
        // At most ten seconds of the floor, or a hundred retries, saved up.
        let cap = (config.min_per_second * 10.0).max(100.0);
        Self {
            ratio: config.budget_ratio,
            min_per_second: config.min_per_second,
            cap,
            state: Mutex::new((config.min_per_second.min(cap), Instant::now())),
            spent: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            random: RandomState::new(),
            draws: AtomicU64::new(0),
        }
    }

    fn refill(&self, state: &mut (f64, Instant)) {
        let now = Instant::now();
        let earned = now.saturating_duration_since(state.1).as_secs_f64() * self.min_per_second;
        *state = ((state.0 + earned).min(self.cap), now);
    }

    /// A first attempt: earns `ratio` of a retry.
    pub fn deposit(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.refill(&mut s);
        s.0 = (s.0 + self.ratio).min(self.cap);
    }

    /// Takes one retry from the budget, or says there is none left.
    pub fn withdraw(&self) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.refill(&mut s);
        if s.0 >= 1.0 {
            s.0 -= 1.0;
            self.spent.fetch_add(1, Ordering::Relaxed);
            true
        } else {
            self.refused.fetch_add(1, Ordering::Relaxed);
            false
        }
    }

    /// A random number for jitter.
    pub fn random(&self) -> u64 {
        self.random.hash_one(self.draws.fetch_add(1, Ordering::Relaxed))
    }

    /// Retries made so far.
    pub fn spent(&self) -> u64 {
        self.spent.load(Ordering::Relaxed)
    }

    /// Retries the budget refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_budget_allows_about_the_ratio_of_traffic() {
        let config = RetryConfig { budget_ratio: 0.2, min_per_second: 0.0, ..Default::default() };
        let budget = RetryBudget::new(&config);
        let mut retries = 0;
        // 1,000 failing calls, each wanting to retry.
        for _ in 0..1_000 {
            budget.deposit();
            if budget.withdraw() {
                retries += 1;
            }
        }
        assert!((195..=200).contains(&retries), "{retries} retries for 1,000 calls");
        assert_eq!(budget.spent(), retries);
        assert_eq!(budget.refused(), 1_000 - retries);
        // Exhausted: no retry until more traffic earns one.
        assert!(!budget.withdraw());
    }

    #[tokio::test(start_paused = true)]
    async fn a_floor_refills_with_time() {
        let config = RetryConfig { budget_ratio: 0.0, min_per_second: 2.0, ..Default::default() };
        let budget = RetryBudget::new(&config);
        assert!(budget.withdraw());
        assert!(budget.withdraw());
        assert!(!budget.withdraw());
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(budget.withdraw());
        assert!(!budget.withdraw());
    }

    #[test]
    fn backoff_is_jittered_bounded_and_honours_retry_after() {
        let c = RetryConfig {
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            ..Default::default()
        };
        assert_eq!(c.backoff(1, None, 0), Some(Duration::ZERO));
        let top = c.backoff(1, None, u64::MAX).unwrap();
        assert!(top > Duration::from_millis(99) && top <= Duration::from_millis(100), "{top:?}");
        let third = c.backoff(3, None, u64::MAX).unwrap();
        assert!(third > Duration::from_millis(399) && third <= Duration::from_millis(400), "{third:?}");
        assert!(c.backoff(20, None, u64::MAX).unwrap() <= Duration::from_secs(1));
        // Retry-After is a floor; beyond max_backoff it is the caller's to wait.
        assert_eq!(c.backoff(1, Some(Duration::from_millis(700)), 0), Some(Duration::from_millis(700)));
        assert_eq!(c.backoff(1, Some(Duration::from_secs(2)), 0), None);
    }

    #[test]
    fn only_temporary_upstream_failures_are_retried() {
        assert!(is_retryable(&AdapterError::new(ErrorKind::Unavailable, "down")));
        assert!(is_retryable(&AdapterError::new(ErrorKind::RateLimited, "slow down")));
        assert!(!is_retryable(&AdapterError::new(ErrorKind::Unavailable, "bad config").with_temporary(false)));
        assert!(!is_retryable(&AdapterError::not_found("school")));
        assert!(!is_retryable(&AdapterError::new(ErrorKind::Unauthenticated, "expired")));
    }

    #[test]
    fn bad_config_is_reported() {
        let c = RetryConfig { max_attempts: 0, budget_ratio: 2.0, base_backoff: Duration::ZERO, ..Default::default() };
        let paths: Vec<String> = c.problems().into_iter().map(|(p, _)| p).collect();
        assert_eq!(paths, ["retry.max_attempts", "retry.budget_ratio", "retry.base_backoff"]);
    }
}
