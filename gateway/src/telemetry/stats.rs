//! What the status page shows of one adapter instance, kept in-process:
//! cache hits and misses, refusals, errors, and its latency over the last
//! minute (a log-scale histogram in six 10-second windows, so the p99 is
//! recent and costs no allocation to record).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Latency buckets: bucket `i` holds durations up to `FIRST * GROWTH^i`
/// (100 µs to about 70 s, each about 25% wider than the last).
const BUCKETS: usize = 61;
const FIRST_MICROS: f64 = 100.0;
const GROWTH: f64 = 1.25;
/// The windows the recent latency is kept in, and how long each lasts.
const WINDOWS: usize = 6;
const WINDOW: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
struct Window {
    /// Which 10-second slice since `origin` it holds.
    slice: u64,
    counts: [u32; BUCKETS],
    errors: u32,
}

#[derive(Debug)]
struct Recent {
    origin: Instant,
    windows: [Window; WINDOWS],
}

/// One adapter instance's counters and recent latency.
#[derive(Debug)]
pub struct InstanceStats {
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    calls: AtomicU64,
    errors: AtomicU64,
    refused: AtomicU64,
    recent: Mutex<Recent>,
}

/// A copy of an instance's stats, for the status page.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct StatsSnapshot {
    /// Answers served from the cache (fresh or stale).
    pub cache_hits: u64,
    /// Answers the cache had to fetch (misses, coalesced waits).
    pub cache_misses: u64,
    /// Hits over hits and misses; `None` before any.
    pub cache_hit_ratio: Option<f64>,
    /// Upstream attempts made.
    pub calls: u64,
    /// Of them, failed.
    pub errors: u64,
    /// Calls refused before reaching the upstream: its request budget, its
    /// open breaker, its full bulkhead.
    pub refused: u64,
    /// The 99th percentile of attempts' latency over the last minute, in
    /// milliseconds; `None` without attempts in that minute.
    pub recent_p99_ms: Option<f64>,
    /// Attempts in the last minute.
    pub recent_calls: u64,
    /// Of them, failed.
    pub recent_errors: u64,
}

fn bucket_of(d: Duration) -> usize {
    let micros = d.as_secs_f64() * 1e6;
    if micros <= FIRST_MICROS {
        return 0;
    }
    let i = ((micros / FIRST_MICROS).ln() / GROWTH.ln()).ceil();
    (i as usize).min(BUCKETS - 1)
}

fn bucket_upper_ms(i: usize) -> f64 {
    FIRST_MICROS * GROWTH.powi(i as i32) / 1000.0
}

impl Default for InstanceStats {
    fn default() -> Self {
        Self::new()
    }
}

impl InstanceStats {
    /// Empty stats, their windows starting now.
    pub fn new() -> Self {
        let empty = Window { slice: u64::MAX, counts: [0; BUCKETS], errors: 0 };
        Self {
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            recent: Mutex::new(Recent { origin: Instant::now(), windows: [empty; WINDOWS] }),
        }
    }

    /// An answer served by the cache (`hit`) or fetched for it.
    pub fn cache(&self, hit: bool) {
        let counter = if hit { &self.cache_hits } else { &self.cache_misses };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A call refused before reaching the upstream.
    pub fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// An upstream attempt that took `elapsed`, failed or not.
    pub fn attempt(&self, elapsed: Duration, failed: bool) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let slice = recent.origin.elapsed().as_secs() / WINDOW.as_secs();
        let w = &mut recent.windows[(slice % WINDOWS as u64) as usize];
        if w.slice != slice {
            *w = Window { slice, counts: [0; BUCKETS], errors: 0 };
        }
        w.counts[bucket_of(elapsed)] += 1;
        w.errors += u32::from(failed);
    }

    /// The counters, and the latency of the last minute.
    pub fn snapshot(&self) -> StatsSnapshot {
        let (hits, misses) = (self.cache_hits.load(Ordering::Relaxed), self.cache_misses.load(Ordering::Relaxed));
        let mut merged = [0u64; BUCKETS];
        let mut recent_errors = 0;
        {
            let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            let now = recent.origin.elapsed().as_secs() / WINDOW.as_secs();
            for w in recent.windows.iter().filter(|w| w.slice != u64::MAX && now - w.slice < WINDOWS as u64) {
                recent_errors += u64::from(w.errors);
                for (m, c) in merged.iter_mut().zip(w.counts) {
                    *m += u64::from(c);
                }
            }
        }
        let total: u64 = merged.iter().sum();
        let p99 = (total > 0).then(|| {
            // The smallest bucket bound at or above 99% of the attempts.
            let rank = total - total / 100;
            let mut seen = 0;
            let i = merged.iter().position(|c| {
                seen += c;
                seen >= rank
            });
            bucket_upper_ms(i.unwrap_or(BUCKETS - 1))
        });
        StatsSnapshot {
            cache_hits: hits,
            cache_misses: misses,
            cache_hit_ratio: (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64),
            calls: self.calls.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            recent_p99_ms: p99,
            recent_calls: total,
            recent_errors,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_bound_their_durations_within_a_quarter() {
        for micros in [1u64, 100, 101, 1_000, 12_345, 250_000, 3_000_000, 60_000_000] {
            let d = Duration::from_micros(micros);
            let upper = bucket_upper_ms(bucket_of(d));
            let ms = micros as f64 / 1000.0;
            assert!(upper >= ms, "{micros} µs in a bucket up to {upper} ms");
            assert!(upper <= (ms * GROWTH).max(0.1) + 1e-9, "{micros} µs in a bucket up to {upper} ms");
        }
        assert_eq!(bucket_of(Duration::from_secs(3600)), BUCKETS - 1);
    }

    #[tokio::test(start_paused = true)]
    async fn p99_is_of_the_last_minute_only() {
        let stats = InstanceStats::new();
        assert_eq!(stats.snapshot().recent_p99_ms, None);
        // 99 fast attempts and one slow: the p99 is the fast one's bucket.
        for _ in 0..99 {
            stats.attempt(Duration::from_millis(2), false);
        }
        stats.attempt(Duration::from_millis(900), true);
        let s = stats.snapshot();
        assert_eq!((s.calls, s.errors, s.recent_calls, s.recent_errors), (100, 1, 100, 1));
        let p99 = s.recent_p99_ms.unwrap_or_default();
        assert!((2.0..2.5).contains(&p99), "{p99}");
        // Two slow ones more: now the slow bucket is the p99.
        stats.attempt(Duration::from_millis(900), false);
        stats.attempt(Duration::from_millis(900), false);
        let p99 = stats.snapshot().recent_p99_ms.unwrap_or_default();
        assert!((900.0..1125.0).contains(&p99), "{p99}");
        // A minute later they have aged out; the totals remain.
        tokio::time::advance(Duration::from_secs(61)).await;
        let s = stats.snapshot();
        assert_eq!((s.recent_p99_ms, s.recent_calls, s.recent_errors, s.calls), (None, 0, 0, 102));
        stats.attempt(Duration::from_millis(40), false);
        let p99 = stats.snapshot().recent_p99_ms.unwrap_or_default();
        assert!((40.0..50.0).contains(&p99), "{p99}");
    }

    #[test]
    fn hit_ratio_counts_hits_over_lookups() {
        let stats = InstanceStats::new();
        assert_eq!(stats.snapshot().cache_hit_ratio, None);
        for hit in [true, true, true, false] {
            stats.cache(hit);
        }
        stats.refused();
        let s = stats.snapshot();
        assert_eq!((s.cache_hits, s.cache_misses, s.cache_hit_ratio, s.refused), (3, 1, Some(0.75), 1));
    }
}
