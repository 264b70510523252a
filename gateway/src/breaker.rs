//! A circuit breaker per adapter instance: after `failures_to_open`
//! consecutive temporary failures (unavailable, deadline exceeded,
//! unexpected), calls fail fast with UNAVAILABLE for `open_for`; then one
//! probe is let through (half-open): success closes the breaker, failure
//! opens it again. Client errors (not found, invalid argument, …) say
//! nothing about the upstream's health and do not count.

use std::sync::Mutex;
use std::time::Duration;

use lienthong_adapter_core::{AdapterError, ErrorKind};
use serde::Deserialize;
use tokio::time::Instant;

/// `[breaker]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Consecutive temporary failures that open the breaker.
    pub failures_to_open: u32,
    /// How long it stays open before a probe.
    #[serde(with = "humantime_serde")]
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self { failures_to_open: 5, open_for: Duration::from_secs(30) }
    }
}

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls pass.
    Closed,
    /// Calls fail fast.
    Open,
    /// One probe is out.
    HalfOpen,
}

#[derive(Debug)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

/// One adapter instance's breaker.
#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    state: Mutex<State>,
}

/// Whether an error says the upstream is unwell.
pub fn is_upstream_failure(e: &AdapterError) -> bool {
    matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::DeadlineExceeded | ErrorKind::Unexpected)
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        Self { config, state: Mutex::new(State::Closed { failures: 0 }) }
    }

    /// Where it stands now.
    pub fn state(&self) -> BreakerState {
        match *self.state.lock().unwrap_or_else(|p| p.into_inner()) {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { until } if Instant::now() < until => BreakerState::Open,
            State::Open { .. } | State::HalfOpen => BreakerState::HalfOpen,
        }
    }

    /// Lets a call through, or says how long until the next probe.
    pub fn admit(&self) -> Result<(), Duration> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match *state {
            State::Closed { .. } => Ok(()),
            State::Open { until } => {
                let now = Instant::now();
                if now < until {
                    return Err(until - now);
                }
                *state = State::HalfOpen;
                Ok(())
            }
            // The probe is out: others wait for its verdict.
            State::HalfOpen => Err(Duration::from_secs(1)),
        }
    }

    /// Records how an admitted call ended.
    pub fn record(&self, outcome: Result<(), &AdapterError>) {
        let failed = matches!(outcome, Err(e) if is_upstream_failure(e));
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        *state = match (&*state, failed) {
            (_, false) => State::Closed { failures: 0 },
            (State::Closed { failures }, true) if failures + 1 < self.config.failures_to_open => {
                State::Closed { failures: failures + 1 }
            }
            (_, true) => {
                tracing::warn!(open_for = ?self.config.open_for, "circuit breaker opened");
                State::Open { until: Instant::now() + self.config.open_for }
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn down() -> AdapterError {
        AdapterError::new(ErrorKind::Unavailable, "down")
    }

    #[tokio::test(start_paused = true)]
    async fn opens_probes_and_closes() {
        let b = Breaker::new(BreakerConfig { failures_to_open: 3, open_for: Duration::from_secs(30) });
        for _ in 0..2 {
            b.admit().unwrap();
            b.record(Err(&down()));
        }
        // A client error shows the upstream answering: the count starts over.
        b.record(Err(&AdapterError::not_found("x", "y")));
        assert_eq!(b.state(), BreakerState::Closed);
        for _ in 0..3 {
            b.admit().unwrap();
            b.record(Err(&down()));
        }
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.admit().unwrap_err(), Duration::from_secs(30));
        tokio::time::advance(Duration::from_secs(30)).await;
        // One probe; the others wait.
        b.admit().unwrap();
        assert!(b.admit().is_err());
        b.record(Err(&down()));
        assert_eq!(b.state(), BreakerState::Open);
        tokio::time::advance(Duration::from_secs(30)).await;
        b.admit().unwrap();
        b.record(Ok(()));
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.admit().is_ok());
    }
}
