//! Rate limits that hold across replicas: one token bucket per limit and
//! key in Redis, updated atomically by a server-side script, with each
//! replica leasing a few cells at a time so that most calls cost no round
//! trip.
//!
//! A replica asks the bucket for at least the call's cost and at most a
//! lease: the cells a replica uses in `cluster.lease` at the limit's rate
//! if the traffic is spread over `cluster.expected_replicas` (one cell for a
//! slow limit, such as a citizen's, where cells left unused would be lost).
//! Cells are taken out of the bucket when leased, so the replicas together
//! never admit more than the bucket holds; a lease unused by its end is
//! dropped (its cells are not given back), and cells used late move an
//! admission by at most one lease in time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::Cluster;
use crate::config::RateLimit;

/// The bucket script: `KEYS[1]` the bucket; `ARGV` its rate per second, its
/// burst, the cells needed now, the most to grant, and the cells of the
/// replica's last lease it did not use (given back). Refills by Redis's own
/// clock (one clock for every replica), grants between the need and the
/// most when the bucket holds the need, else nothing; returns the cells
/// granted and, when none, the milliseconds until the need is there (for
/// the caller) and until the most is (the replica asks again for a whole
/// lease, not for each cell as it drips in). The bucket expires once it
/// would be full again.
const BUCKET: &str = r"
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local need = tonumber(ARGV[3])
local most = tonumber(ARGV[4])
local returned = tonumber(ARGV[5])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'cells', 'at')
local cells = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
if now > at then
  cells = cells + (now - at) * rate / 1000
end
cells = math.min(burst, cells + returned)
local granted = 0
local wait_need = 0
local wait_most = 0
if cells >= need then
  granted = math.max(need, math.min(most, math.floor(cells)))
  cells = cells - granted
else
  wait_need = math.ceil((need - cells) * 1000 / rate)
  wait_most = math.ceil((math.max(need, most) - cells) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'cells', tostring(cells), 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return {granted, wait_need, wait_most}
";
/// What a shared bucket said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// The call may go.
    Admitted,
    /// Over the limit: retry after this long.
    Refused(Duration),
    /// The call costs more than the limit's burst: it can never pass.
    Never,
}

/// The cells a replica holds of one bucket, and until when; or, after the
/// bucket refused, until when it will not have the cells.
#[derive(Debug, Default)]
struct Lease {
    cells: u32,
    until: Option<Instant>,
    refused_until: Option<Instant>,
}

/// One bucket as this replica sees it: its lease, taken from by every call
/// under a plain lock held for a few instructions (the usual case costs no
/// await and no round trip), and the right to ask Redis for more, held by
/// one call at a time across the round trip.
#[derive(Debug, Default)]
struct Bucket {
    lease: Mutex<Lease>,
    asking: tokio::sync::Mutex<()>,
}

/// What a lease says about a call of `cost` now, without Redis.
enum Local {
    Admitted,
    Refused(Duration),
    Ask,
}

impl Bucket {
    fn lease(&self) -> std::sync::MutexGuard<'_, Lease> {
        self.lease.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes `cost` cells from the lease if it holds them; else whether the
    /// bucket is known to be empty for a while.
    fn local(&self, cost: u32, now: Instant) -> Local {
        let mut lease = self.lease();
        if lease.until.is_some_and(|u| u > now) && lease.cells >= cost {
            lease.cells -= cost;
            return Local::Admitted;
        }
        // The bucket said when it would have cells again: until then, no
        // need to ask (an over-limit caller costs no round trips).
        match lease.refused_until.filter(|u| *u > now) {
            Some(until) => Local::Refused(until - now),
            None => Local::Ask,
        }
    }
}

/// Shared buckets, with this replica's leases of them.
pub struct SharedLimits {
    cluster: Arc<Cluster>,
    script: redis::Script,
    leases: Mutex<HashMap<String, Arc<Bucket>>>,
    /// Round trips to Redis, and calls admitted, since the start.
    round_trips: AtomicU64,
    admitted: AtomicU64,
    seed: AtomicU64,
}

impl std::fmt::Debug for SharedLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLimits").field("cluster", &self.cluster).finish_non_exhaustive()
    }
}

impl SharedLimits {
    /// Buckets in `cluster`.
    pub fn new(cluster: Arc<Cluster>) -> Self {
        Self {
            cluster,
            script: redis::Script::new(BUCKET),
            leases: Mutex::new(HashMap::new()),
            round_trips: AtomicU64::new(0),
            admitted: AtomicU64::new(0),
            // Any odd start will do; the address differs between replicas.
            seed: AtomicU64::new(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0x9e37_79b9_7f4a_7c15, |d| d.as_nanos() as u64)
                    | 1,
            ),
        }
    }

    /// The cluster the buckets are in.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// (round trips to Redis, calls admitted) since the start.
    pub fn counts(&self) -> (u64, u64) {
        (self.round_trips.load(Ordering::Relaxed), self.admitted.load(Ordering::Relaxed))
    }

    /// A number in [0, 1), from a xorshift sequence of this replica's.
    fn jitter(&self) -> f64 {
        let mut x = self.seed.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.seed.store(x, Ordering::Relaxed);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The most cells leased at once for `rate`.
    fn lease_size(&self, rate: RateLimit) -> u32 {
        let config = self.cluster.config();
        let share =
            f64::from(rate.per_second) * config.lease.as_secs_f64() / f64::from(config.expected_replicas.max(1));
        // At most half the burst: a replica refused at the limit waits for a
        // lease's worth of refill, and the bucket must not fill up (and lose
        // refill) meanwhile.
        (share.floor() as u32).clamp(1, (rate.burst / 2).max(1))
    }

    /// What `bucket`'s lease decides for a call of `cost` at `now` (counting
    /// an admission); `None` when Redis must be asked.
    fn decide_by_lease(&self, bucket: &Bucket, cost: u32, now: Instant) -> Option<Take> {
        match bucket.local(cost, now) {
            Local::Admitted => {
                self.admitted.fetch_add(1, Ordering::Relaxed);
                Some(Take::Admitted)
            }
            Local::Refused(wait) => Some(Take::Refused(wait)),
            Local::Ask => None,
        }
    }

    /// Takes `cost` cells of bucket `bucket` (a limit and a key, never
    /// personal data: citizens by pseudonym) limited to `rate`. `None` when
    /// Redis did not answer: the caller decides with its local share.
    pub async fn take(&self, bucket: &str, rate: RateLimit, cost: u32) -> Option<Take> {
        let entry = {
            let mut leases = self.leases.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match leases.get(bucket) {
                Some(entry) => entry.clone(),
                None => leases.entry(bucket.to_owned()).or_default().clone(),
            }
        };
        if rate.per_second == 0 || rate.burst < cost {
            return Some(Take::Never);
        }
        if let Some(decided) = self.decide_by_lease(&entry, cost, Instant::now()) {
            return Some(decided);
        }
        // One call asks Redis; the others wait for its answer and take from
        // the lease it brings.
        let _asking = entry.asking.lock().await;
        let now = Instant::now();
        if let Some(decided) = self.decide_by_lease(&entry, cost, now) {
            return Some(decided);
        }
        let most = self.lease_size(rate).max(cost);
        let key = self.cluster.key(&format!("rl:{bucket}"));
        let script = &self.script;
        // What is left of the last lease goes back: cells a replica leased
        // and did not use would otherwise be lost to every replica.
        let returned = std::mem::take(&mut entry.lease().cells);
        let answer: Option<(u32, u64, u64)> = self
            .cluster
            .run(|mut redis| async move {
                let mut call = script.key(key);
                call.arg(rate.per_second).arg(rate.burst).arg(cost).arg(most).arg(returned);
                call.invoke_async(&mut redis).await
            })
            .await;
        let (granted, wait_need, wait_most) = answer?;
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        let mut lease = entry.lease();
        if granted >= cost {
            lease.cells = granted - cost;
            lease.until = Some(now + self.cluster.config().lease);
            self.admitted.fetch_add(1, Ordering::Relaxed);
            Some(Take::Admitted)
        } else {
            let wait = Duration::from_millis(wait_most.max(1));
            lease.cells = 0;
            // Replicas refused together would ask together and split the
            // refill: each waits a random part longer, so most find a whole
            // lease when they ask.
            lease.refused_until = Some(now + wait + wait.mul_f64(self.jitter() / 2.0));
            Some(Take::Refused(Duration::from_millis(wait_need.max(1))))
        }
    }

    /// Forgets leases that have ended and are not in use; bounds memory
    /// however many keys are seen.
    pub fn compact(&self) {
        let now = Instant::now();
        let mut leases = self.leases.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        leases.retain(|_, bucket| {
            // One asking Redis now keeps it.
            if bucket.asking.try_lock().is_err() {
                return true;
            }
            let l = bucket.lease();
            l.until.is_some_and(|u| u > now) || l.refused_until.is_some_and(|u| u > now)
        });
    }

    /// Buckets this replica holds a lease of.
    pub fn tracked(&self) -> usize {
        self.leases.lock().map(|l| l.len()).unwrap_or(0)
    }
}
