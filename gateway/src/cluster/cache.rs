//! The shared (second-level) cache: answers of public data kept in Redis for
//! the RPCs `cluster.shared_cache` names, so that a miss on one replica is
//! filled from another replica's answer, and a herd spread over replicas
//! makes about one upstream call: the first replica to miss takes a short
//! fill lock, the others wait for its answer (up to [`FILL_LOCK`]) instead of
//! calling the upstream too.
//!
//! Only answers that are the same for every caller go to Redis (a key with
//! a citizen's scope never does): personal data is never written there, not
//! even encrypted. NOT_FOUND is not shared (each replica remembers its own).
//! Keys are `<prefix>cache/<province>/<method>/<instance>/<hash of the
//! request>`, so an operator's invalidation finds them by pattern.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use lienthong_adapter_core::AdapterError;

use super::{Cluster, millis};

/// How long the first replica to miss may take to fill before the waiting
/// ones call the upstream themselves.
pub const FILL_LOCK: Duration = Duration::from_secs(2);

/// How often a waiting replica looks for the filler's answer.
const WAIT_STEP: Duration = Duration::from_millis(20);

/// `KEYS[1]` the answer, `KEYS[2]` its fill lock; `ARGV[1]` this fill's
/// token, `ARGV[2]` the lock's milliseconds. The answer and the
/// milliseconds it has left; or takes the lock (`1`); or says another fill
/// holds it (`0`).
const LOOK: &str = r"
local answer = redis.call('GET', KEYS[1])
if answer then
  return {answer, redis.call('PTTL', KEYS[1])}
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
return 0
";

/// `KEYS[1]` the answer, `KEYS[2]` its fill lock; `ARGV[1]` the token,
/// `ARGV[2]` the answer, `ARGV[3]` its milliseconds (none: no answer, the
/// fill failed). If this fill still holds the lock, stores the answer and
/// lets the lock go; an invalidation meanwhile removed the lock, and the
/// answer it made old is not stored.
const FILLED: &str = r"
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 0
end
if ARGV[2] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
redis.call('DEL', KEYS[2])
return 1
";

/// What the shared cache did, for `lienthong_cache_shared_total`.
#[derive(Debug, Default)]
pub struct SharedCounts {
    /// Misses answered from Redis at once.
    pub hits: AtomicU64,
    /// Misses answered from Redis after waiting for another replica's fill.
    pub waited: AtomicU64,
    /// Misses this replica filled from the upstream (and shared).
    pub filled: AtomicU64,
    /// Misses filled from the upstream without Redis (away, or the other
    /// replica's fill took too long or failed).
    pub alone: AtomicU64,
}

impl SharedCounts {
    /// Each count by its outcome's name.
    pub fn by_outcome(&self) -> [(&'static str, u64); 4] {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [("hit", n(&self.hits)), ("waited", n(&self.waited)), ("filled", n(&self.filled)), ("alone", n(&self.alone))]
    }
}

/// The shared cache (see the module).
pub struct SharedCache {
    cluster: Arc<Cluster>,
    look: redis::Script,
    filled: redis::Script,
    counts: SharedCounts,
}

impl std::fmt::Debug for SharedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedCache").finish_non_exhaustive()
    }
}

/// Where an answer from Redis came from.
enum Found {
    Answer(Bytes, Duration),
    Locked,
    Busy,
}

impl SharedCache {
    /// The shared cache in `cluster`'s Redis.
    pub fn new(cluster: Arc<Cluster>) -> Arc<Self> {
        Arc::new(Self {
            cluster,
            look: redis::Script::new(LOOK),
            filled: redis::Script::new(FILLED),
            counts: SharedCounts::default(),
        })
    }

    /// What it did so far.
    pub fn counts(&self) -> &SharedCounts {
        &self.counts
    }

    /// The Redis key of an answer named `name` ([`name`]).
    fn key(&self, name: &str) -> String {
        self.cluster.key(&format!("cache/{name}"))
    }

    /// The pattern matching the keys an invalidation of `province` (empty:
    /// every one), `method` (`None`: every one) and `request` (`None`: every
    /// one) removes: the answers and their fill locks (a fill under way then
    /// stores nothing).
    pub fn pattern(&self, province: &str, method: Option<&str>, request: Option<&[u8]>) -> String {
        let any = |s: &str| if s.is_empty() { "*".to_owned() } else { redis_glob_escape(s) };
        let hash = request.map_or_else(|| "*".to_owned(), request_hash);
        self.cluster.key(&format!("cache/{}/{}/*/{hash}*", any(province), method.map_or_else(|| "*".to_owned(), any)))
    }

    /// Removes every shared answer matching `patterns`; how many, or `None`
    /// when Redis did not answer.
    pub async fn remove(&self, patterns: &[String]) -> Option<u64> {
        let mut removed = 0;
        for pattern in patterns {
            let mut cursor = 0u64;
            loop {
                let (next, keys): (u64, Vec<String>) = self
                    .cluster
                    .run(|mut redis| async move {
                        redis::cmd("SCAN")
                            .arg(cursor)
                            .arg("MATCH")
                            .arg(pattern)
                            .arg("COUNT")
                            .arg(1000)
                            .query_async(&mut redis)
                            .await
                    })
                    .await?;
                if !keys.is_empty() {
                    removed +=
                        self.cluster
                            .run(|mut redis| async move {
                                redis::cmd("UNLINK").arg(&keys).query_async::<u64>(&mut redis).await
                            })
                            .await?;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Some(removed)
    }

    /// The answer named `name` ([`name`]; fresh for `ttl`): from Redis,
    /// else from `fill`, shared for the other replicas; with its age. Only
    /// for public data: the caller never names a citizen's answer.
    pub async fn get_or_fill<F>(&self, name: &str, ttl: Duration, fill: F) -> Result<(Bytes, Duration), AdapterError>
    where
        F: std::future::Future<Output = Result<Bytes, AdapterError>>,
    {
        let answer = self.key(name);
        let lock = format!("{answer}:fill");
        let token = crate::crypto::random_hex::<8>().unwrap_or_default();
        let deadline = tokio::time::Instant::now() + FILL_LOCK;
        let mut waited = false;
        loop {
            match self.look(&answer, &lock, &token).await {
                Some(Found::Answer(bytes, left)) => {
                    let counter = if waited { &self.counts.waited } else { &self.counts.hits };
                    counter.fetch_add(1, Ordering::Relaxed);
                    return Ok((bytes, ttl.saturating_sub(left)));
                }
                Some(Found::Locked) => {
                    let filled = fill.await;
                    let _ = self.store(&answer, &lock, &token, filled.as_ref().ok(), ttl).await;
                    self.counts.filled.fetch_add(1, Ordering::Relaxed);
                    return filled.map(|b| (b, Duration::ZERO));
                }
                Some(Found::Busy) if tokio::time::Instant::now() + WAIT_STEP < deadline => {
                    waited = true;
                    tokio::time::sleep(WAIT_STEP).await;
                }
                // Redis away, or the other fill took too long.
                _ => {
                    self.counts.alone.fetch_add(1, Ordering::Relaxed);
                    return fill.await.map(|b| (b, Duration::ZERO));
                }
            }
        }
    }

    async fn look(&self, answer: &str, lock: &str, token: &str) -> Option<Found> {
        let value: redis::Value = self
            .cluster
            .run(|mut redis| {
                let mut call = self.look.prepare_invoke();
                call.key(answer).key(lock).arg(token).arg(millis(FILL_LOCK));
                async move { call.invoke_async(&mut redis).await }
            })
            .await?;
        match value {
            redis::Value::Int(1) => Some(Found::Locked),
            redis::Value::Int(_) => Some(Found::Busy),
            redis::Value::Array(items) => match items.as_slice() {
                [redis::Value::BulkString(bytes), redis::Value::Int(left)] => Some(Found::Answer(
                    Bytes::from(bytes.clone()),
                    Duration::from_millis(u64::try_from(*left).unwrap_or(0)),
                )),
                _ => None,
            },
            _ => None,
        }
    }

    async fn store(&self, answer: &str, lock: &str, token: &str, bytes: Option<&Bytes>, ttl: Duration) -> Option<()> {
        self.cluster
            .run(|mut redis| {
                let mut call = self.filled.prepare_invoke();
                call.key(answer).key(lock).arg(token);
                if let Some(bytes) = bytes {
                    call.arg(bytes.as_ref()).arg(millis(ttl));
                }
                async move { call.invoke_async::<i64>(&mut redis).await }
            })
            .await
            .map(|_| ())
    }
}

/// The name of an answer in the shared cache: `<province>/<method>/<instance>/<hash
/// of the request>`, so that an operator's invalidation finds it by pattern
/// ([`SharedCache::pattern`]).
pub fn name(province: &[u8], method: &[u8], instance: &[u8], request: &[u8]) -> String {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    format!("{}/{}/{}/{}", text(province), text(method), text(instance), request_hash(request))
}

/// A short digest of a request's canonical bytes.
fn request_hash(request: &[u8]) -> String {
    crate::crypto::hex(&crate::crypto::sha256(request)[..16])
}

/// `s` with Redis glob characters escaped.
fn redis_glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
