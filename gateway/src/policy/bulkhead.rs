//! A bulkhead per adapter instance: at most `max_concurrent` calls in flight
//! to one upstream, so a slow upstream ties up only its own share of the
//! gateway, never every worker. A call beyond it waits at most `max_wait`
//! (never past its deadline), then fails fast with UNAVAILABLE.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

pub use crate::config::BulkheadConfig;

impl BulkheadConfig {
    /// The limit of `instance`.
    pub fn limit(&self, instance: &str) -> usize {
        self.per_instance.get(instance).copied().unwrap_or(self.max_concurrent)
    }
}

/// One instance's bulkhead.
#[derive(Debug)]
pub struct Bulkhead {
    permits: Arc<Semaphore>,
    limit: usize,
    max_wait: Duration,
    rejected: AtomicU64,
}

impl Bulkhead {
    /// At most `limit` calls at once; a call waits at most `max_wait`.
    pub fn new(limit: usize, max_wait: Duration) -> Self {
        Self { permits: Arc::new(Semaphore::new(limit)), limit, max_wait, rejected: AtomicU64::new(0) }
    }

    /// A place for one call, or `None` when none frees up in time.
    pub async fn enter(&self, deadline: Instant) -> Option<OwnedSemaphorePermit> {
        if let Ok(p) = self.permits.clone().try_acquire_owned() {
            return Some(p);
        }
        let until = deadline.min(Instant::now() + self.max_wait);
        match tokio::time::timeout_at(until, self.permits.clone().acquire_owned()).await {
            Ok(Ok(p)) => Some(p),
            _ => {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Calls in flight now.
    pub fn in_use(&self) -> usize {
        self.limit.saturating_sub(self.permits.available_permits())
    }

    /// The limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Calls refused so far.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_full_bulkhead_waits_briefly_then_refuses() {
        let b = Bulkhead::new(2, Duration::from_millis(50));
        let far = Instant::now() + Duration::from_secs(10);
        let one = b.enter(far).await.unwrap();
        let _two = b.enter(far).await.unwrap();
        assert_eq!(b.in_use(), 2);
        let started = Instant::now();
        assert!(b.enter(far).await.is_none());
        assert_eq!(started.elapsed(), Duration::from_millis(50));
        // Never past the caller's deadline.
        let started = Instant::now();
        assert!(b.enter(started + Duration::from_millis(5)).await.is_none());
        assert_eq!(started.elapsed(), Duration::from_millis(5));
        assert_eq!(b.rejected(), 2);
        // A place that frees up while waiting is taken.
        let waiter = tokio::spawn({
            let permits = b.permits.clone();
            async move { permits.acquire_owned().await.is_ok() }
        });
        drop(one);
        assert!(waiter.await.unwrap());
    }
}
