//! The response cache around adapters.
//!
//! Per RPC, a [`CachePolicy`]: answers are fresh for `ttl`; then, for
//! `stale_while_revalidate`, served stale while one background fill
//! refreshes them; for `stale_if_error`, served stale when a fill fails with a
//! temporary error; NOT_FOUND is remembered for `negative_ttl`. Other errors
//! are never cached.
//!
//! Concurrent misses for one key make one upstream call: the first caller's
//! fill runs as a detached task that every caller awaits, so a caller that
//! goes away does not cancel it for the others. Keys hold the province, the
//! adapter instance, the method, the request's canonical bytes and, for
//! personal data, the citizen's scope: one citizen's data is never served to
//! another.
//!
//! Answers are kept as the bytes the caller receives (the call layer stores a
//! gRPC message frame, shaped once when it was fetched), so a hit is a
//! reference-count increment: no decode, no re-encode, no deep clone. The
//! store is bounded in bytes, sharded, and evicts by S3-FIFO (quick_cache):
//! scan-resistant, with a few dozen bytes of bookkeeping per entry. Entries
//! past their lifetime are dropped when read and by [`ResponseCache::sweep`].

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use lienthong_adapter_core::{AdapterError, ErrorKind, Method};
use prost::Message;
use tokio::time::Instant;

pub use crate::config::CachePolicy;

impl CachePolicy {
    /// Fresh for `ttl`, nothing else.
    pub const fn fresh_for(ttl: Duration) -> Self {
        Self {
            ttl,
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            negative_ttl: Duration::ZERO,
        }
    }

    fn lifetime(&self) -> Duration {
        self.ttl + self.stale_while_revalidate.max(self.stale_if_error)
    }
}

/// How fresh an answer is, as told to callers in `x-lienthong-cache`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Served from the cache, fresh.
    Hit,
    /// Fetched for this call.
    Miss,
    /// Served from the cache past its freshness.
    Stale,
    /// Fetched by a concurrent call this one waited for.
    Coalesced,
}

impl Freshness {
    /// The metadata value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Stale => "stale",
            Self::Coalesced => "coalesced",
        }
    }
}

/// An answer with its freshness and age.
#[derive(Debug, Clone, PartialEq)]
pub struct Cached {
    /// The answer, as it was stored.
    pub value: Bytes,
    /// How fresh it is.
    pub freshness: Freshness,
    /// How old it is.
    pub age: Duration,
}

/// A stored answer: when it was stored, how long it may live, what it
/// weighs, and the answer's bytes or a remembered NOT_FOUND. Cloning it (a
/// read) costs two reference counts at most.
#[derive(Clone)]
struct Entry {
    stored: Instant,
    lifetime: Duration,
    weight: u32,
    value: Stored,
}

#[derive(Clone)]
enum Stored {
    Answer(Bytes),
    NotFound(Arc<AdapterError>),
}

impl Entry {
    fn expired(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.stored) >= self.lifetime
    }
}

/// What one entry costs beyond its key and answer: the store's slot for key
/// and entry, its share of the hash table, and the allocators' rounding
/// (measured by `bench/peak_load.py --only memory`).
const ENTRY_OVERHEAD: usize = 210;

/// The weight of an entry: an estimate of the memory it holds.
fn weight(key: &[u8], bytes: usize) -> u32 {
    u32::try_from(key.len() + bytes + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
}

type Key = Arc<[u8]>;
type Fill = Shared<BoxFuture<'static, Result<Entry, AdapterError>>>;

#[derive(Clone)]
struct ByWeight;

impl quick_cache::Weighter<Box<[u8]>, Entry> for ByWeight {
    fn weight(&self, _: &Box<[u8]>, entry: &Entry) -> u64 {
        u64::from(entry.weight)
    }
}

/// Why entries left the cache: evicted for space, expired, removed by an
/// operator, replaced by a fresher fill.
#[derive(Debug, Default)]
struct Evictions([AtomicU64; 4]);

impl Evictions {
    const SIZE: usize = 0;
    const EXPIRED: usize = 1;
    const REMOVED: usize = 2;
    const REPLACED: usize = 3;

    fn count(&self, cause: usize, n: u64) {
        self.0[cause].fetch_add(n, Ordering::Relaxed);
    }
}

/// Counts the store's evictions for space.
#[derive(Clone)]
struct CountEvictions(Arc<Evictions>);

impl quick_cache::Lifecycle<Box<[u8]>, Entry> for CountEvictions {
    type RequestState = ();

    fn begin_request(&self) -> Self::RequestState {}

    fn on_evict(&self, _: &mut Self::RequestState, _: Box<[u8]>, _: Entry) {
        self.0.count(Evictions::SIZE, 1);
    }
}

type Store = quick_cache::sync::Cache<Box<[u8]>, Entry, ByWeight, std::hash::RandomState, CountEvictions>;

/// The cache of every RPC's answers, bounded in bytes (a clone is a handle
/// on the same cache).
#[derive(Clone)]
pub struct ResponseCache {
    store: Arc<Store>,
    inflight: Arc<Mutex<HashMap<Key, Fill>>>,
    evictions: Arc<Evictions>,
    /// With `cluster.shared_cache`: the shared cache, and the RPCs it keeps.
    shared: Option<(Arc<crate::cluster::cache::SharedCache>, Arc<[String]>)>,
}

impl std::fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCache").field("entries", &self.store.len()).finish_non_exhaustive()
    }
}

/// Builds a cache key: province, adapter instance, method (its RPC name,
/// unique across the API) and scope, each
/// ended by a 0 byte, then the request's encoding. `scope` is empty for
/// public data and the citizen's pseudonym ([`crate::crypto::CitizenScopes`]) for personal
/// data.
pub fn key(province: &str, instance: &str, method: Method, scope: &[u8], request: &impl Message) -> Vec<u8> {
    let mut k = Vec::with_capacity(64 + request.encoded_len());
    for part in [province.as_bytes(), instance.as_bytes(), method.rpc_name().as_bytes(), scope] {
        k.extend_from_slice(part);
        k.push(0);
    }
    request.encode(&mut k).unwrap_or_default();
    k
}

/// The parts of a cache key, as [`key`] wrote them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyParts<'k> {
    /// The province.
    pub province: &'k [u8],
    /// The adapter instance.
    pub instance: &'k [u8],
    /// The method's RPC name.
    pub method: &'k [u8],
    /// The scope: empty for public data.
    pub scope: &'k [u8],
    /// The request's encoding.
    pub request: &'k [u8],
}

impl<'k> KeyParts<'k> {
    /// Splits a key; `None` when it was not made by [`key`].
    pub fn parse(key: &'k [u8]) -> Option<Self> {
        let mut parts = key.splitn(5, |b| *b == 0);
        Some(Self {
            province: parts.next()?,
            instance: parts.next()?,
            method: parts.next()?,
            scope: parts.next()?,
            request: parts.next()?,
        })
    }
}

/// The future a fill runs: the answer's bytes, as callers will get them.
pub type FillFuture = Pin<Box<dyn Future<Output = Result<Bytes, AdapterError>> + Send>>;

impl ResponseCache {
    /// A cache holding at most about `max_bytes` of answers.
    pub fn new(max_bytes: u64) -> Self {
        let evictions = Arc::new(Evictions::default());
        // Room is made as entries arrive; this only sizes the first tables.
        let expected = usize::try_from(max_bytes / 16_384).unwrap_or(usize::MAX).clamp(1_024, 1 << 20);
        let options = quick_cache::OptionsBuilder::new()
            .estimated_items_capacity(expected)
            .weight_capacity(max_bytes)
            .build()
            .unwrap_or_else(|_| unreachable!("both options are set"));
        let store =
            Store::with_options(options, ByWeight, std::hash::RandomState::new(), CountEvictions(evictions.clone()));
        Self { store: Arc::new(store), inflight: Arc::new(Mutex::new(HashMap::new())), evictions, shared: None }
    }

    /// Fills misses of the RPCs named in `rpcs` from `shared` (the shared
    /// cache in Redis), for public data.
    pub fn with_shared(mut self, shared: Arc<crate::cluster::cache::SharedCache>, rpcs: &[String]) -> Self {
        if !rpcs.is_empty() {
            self.shared = Some((shared, rpcs.into()));
        }
        self
    }

    /// The shared cache, when there is one.
    pub fn shared(&self) -> Option<&Arc<crate::cluster::cache::SharedCache>> {
        self.shared.as_ref().map(|(s, _)| s)
    }

    /// Removes every entry whose key `matches`; returns how many.
    pub async fn invalidate(&self, matches: impl Fn(&KeyParts<'_>) -> bool) -> u64 {
        let removed = std::cell::Cell::new(0);
        self.store.retain(|k, _| {
            let doomed = KeyParts::parse(k).is_some_and(|p| matches(&p));
            removed.set(removed.get() + u64::from(doomed));
            !doomed
        });
        let removed = removed.get();
        self.evictions.count(Evictions::REMOVED, removed);
        removed
    }

    /// Drops the entries past their lifetime (they are also dropped when
    /// read); returns how many. The server runs it now and then.
    pub fn sweep(&self) -> u64 {
        let now = Instant::now();
        let expired = std::cell::Cell::new(0);
        self.store.retain(|_, entry| {
            let gone = entry.expired(now);
            expired.set(expired.get() + u64::from(gone));
            !gone
        });
        let expired = expired.get();
        self.evictions.count(Evictions::EXPIRED, expired);
        expired
    }

    /// Entries and weighted bytes held now (cheap: for metrics).
    pub fn usage_now(&self) -> (u64, u64) {
        (self.store.len() as u64, self.store.weight())
    }

    /// Entries that left the cache so far, by cause.
    pub fn evictions(&self) -> [(&'static str, u64); 4] {
        let n = |i: usize| self.evictions.0[i].load(Ordering::Relaxed);
        [
            ("size", n(Evictions::SIZE)),
            ("expired", n(Evictions::EXPIRED)),
            ("removed", n(Evictions::REMOVED)),
            ("replaced", n(Evictions::REPLACED)),
        ]
    }

    /// The stored entry of `key`, unless it has outlived its lifetime (then
    /// it is dropped).
    fn lookup(&self, key: &[u8]) -> Option<Entry> {
        let entry = self.store.get(key)?;
        if entry.expired(Instant::now()) {
            if self.store.remove_if(key, |e| e.stored == entry.stored).is_some() {
                self.evictions.count(Evictions::EXPIRED, 1);
            }
            return None;
        }
        Some(entry)
    }

    /// The answer held for `key` while it is fresh under `policy` (or the
    /// NOT_FOUND remembered for it), without waiting for anything; `None`
    /// when it must be fetched or revalidated ([`ResponseCache::get_or_fill`]).
    pub fn fresh(&self, key: &[u8], policy: &CachePolicy) -> Option<Result<Cached, AdapterError>> {
        let entry = self.lookup(key)?;
        let age = entry.stored.elapsed();
        let fresh = match entry.value {
            Stored::Answer(_) => age < policy.ttl,
            Stored::NotFound(_) => age < policy.negative_ttl,
        };
        fresh.then(|| read(&entry, Freshness::Hit, age))
    }

    /// The answer for `key` under `policy`, from the cache or from `fill`.
    /// A caller waits for a fill (its own or a concurrent caller's) until
    /// `deadline` at most; the fill itself goes on for the others.
    pub async fn get_or_fill(
        &self,
        key: Vec<u8>,
        policy: &CachePolicy,
        deadline: Option<Instant>,
        fill: impl FnOnce() -> FillFuture,
    ) -> Result<Cached, AdapterError> {
        let mut fallback = None;
        if let Some(entry) = self.lookup(&key) {
            let age = entry.stored.elapsed();
            match &entry.value {
                Stored::NotFound(e) => {
                    if age < policy.negative_ttl {
                        return Err(AdapterError::clone(e));
                    }
                }
                Stored::Answer(_) if age < policy.ttl => return read(&entry, Freshness::Hit, age),
                Stored::Answer(_) if age < policy.ttl + policy.stale_while_revalidate => {
                    // Serve it, and refresh in the background (once).
                    let _ = self.start_fill(key.into(), *policy, fill);
                    return read(&entry, Freshness::Stale, age);
                }
                Stored::Answer(_) if age < policy.ttl + policy.stale_if_error => fallback = Some(entry),
                Stored::Answer(_) => {}
            }
        }
        let (fill, coalesced) = self.start_fill(key.into(), *policy, fill);
        let filled = match deadline {
            Some(d) => tokio::time::timeout_at(d, fill).await.unwrap_or_else(|_| {
                Err(AdapterError::new(
                    ErrorKind::DeadlineExceeded,
                    "the upstream did not answer before the caller's deadline",
                ))
            }),
            None => fill.await,
        };
        match filled {
            // As old as it is: an answer another replica fetched may be.
            Ok(entry) => {
                read(&entry, if coalesced { Freshness::Coalesced } else { Freshness::Miss }, entry.stored.elapsed())
            }
            Err(e) if e.is_temporary() => match &fallback {
                Some(entry) => read(entry, Freshness::Stale, entry.stored.elapsed()),
                None => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// Joins the running fill of `key`, or starts one as a detached task.
    fn start_fill(&self, key: Key, policy: CachePolicy, fill: impl FnOnce() -> FillFuture) -> (Fill, bool) {
        let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(running) = inflight.get(&key) {
            return (running.clone(), true);
        }
        // The fill outlives the call that started it (others may wait for
        // it): its span is a child of that call's lookup.
        let span = tracing::info_span!("cache_fill", otel.name = "cache fill");
        let future = tracing::Instrument::instrument(fill(), span);
        let (store, evictions) = (self.store.clone(), self.evictions.clone());
        let registry = self.inflight.clone();
        let task_key = key.clone();
        // Public data of the RPCs shared: filled through the shared cache.
        let shared = self.shared.as_ref().and_then(|(cache, rpcs)| {
            let p = KeyParts::parse(&key)?;
            let public = p.scope.is_empty() && rpcs.iter().any(|m| m.as_bytes() == p.method);
            public.then(|| (cache.clone(), crate::cluster::cache::name(p.province, p.method, p.instance, p.request)))
        });
        let task = tokio::spawn(async move {
            let (result, age) = match shared {
                Some((cache, name)) => match cache.get_or_fill(&name, policy.ttl, future).await {
                    Ok((bytes, age)) => (Ok(bytes), age),
                    Err(e) => (Err(e), Duration::ZERO),
                },
                None => (future.await, Duration::ZERO),
            };
            // An answer from another replica is as old as it is there.
            let stored = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
            let entry = match result {
                Ok(bytes) => Entry {
                    stored,
                    lifetime: policy.lifetime(),
                    weight: weight(&task_key, bytes.len()),
                    value: Stored::Answer(bytes),
                },
                Err(e) if e.kind() == ErrorKind::NotFound && !policy.negative_ttl.is_zero() => Entry {
                    stored,
                    lifetime: policy.negative_ttl,
                    weight: weight(&task_key, e.message().len()),
                    value: Stored::NotFound(Arc::new(e)),
                },
                Err(e) => {
                    registry.lock().unwrap_or_else(|p| p.into_inner()).remove(&task_key);
                    return Err(e);
                }
            };
            if store.contains_key(&*task_key) {
                evictions.count(Evictions::REPLACED, 1);
            }
            store.insert(Box::from(&*task_key), entry.clone());
            registry.lock().unwrap_or_else(|p| p.into_inner()).remove(&task_key);
            Ok(entry)
        });
        let shared = async move {
            task.await
                .unwrap_or_else(|e| Err(AdapterError::new(ErrorKind::Unexpected, format!("a cache fill failed: {e}"))))
        }
        .boxed()
        .shared();
        inflight.insert(key, shared.clone());
        (shared, false)
    }
}

fn read(entry: &Entry, freshness: Freshness, age: Duration) -> Result<Cached, AdapterError> {
    match &entry.value {
        Stored::Answer(bytes) => Ok(Cached { value: bytes.clone(), freshness, age }),
        Stored::NotFound(e) => Err(AdapterError::clone(e)),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use lienthong_adapter_core::api;
    use tokio::sync::Notify;

    use super::*;
    use crate::crypto::CitizenScopes;

    const POLICY: CachePolicy = CachePolicy {
        ttl: Duration::from_secs(60),
        stale_while_revalidate: Duration::from_secs(30),
        stale_if_error: Duration::from_secs(600),
        negative_ttl: Duration::from_secs(10),
    };

    fn answer(total: i32) -> Bytes {
        api::ListFacilitiesResponse { total_size: total, ..Default::default() }.encode_to_vec().into()
    }

    /// The `total_size` of a cached answer.
    fn total(cached: &Cached) -> i32 {
        api::ListFacilitiesResponse::decode(cached.value.clone()).unwrap().total_size
    }

    /// A fill that counts its calls and answers `total`, or `error`.
    fn counted(calls: &Arc<AtomicUsize>, total: i32, error: Option<ErrorKind>) -> impl FnOnce() -> FillFuture {
        let calls = calls.clone();
        move || {
            Box::pin(async move {
                calls.fetch_add(1, Ordering::SeqCst);
                match error {
                    Some(kind) => Err(AdapterError::new(kind, "upstream says no")),
                    None => Ok(answer(total)),
                }
            })
        }
    }

    fn k(scope: &str) -> Vec<u8> {
        key("79", "sandbox", Method::ListFacilities, scope.as_bytes(), &api::ListFacilitiesRequest::default())
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_misses_make_one_call_even_when_the_first_caller_leaves() {
        let cache = Arc::new(ResponseCache::new(1 << 20));
        let calls = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Notify::new());
        let slow = |calls: Arc<AtomicUsize>, release: Arc<Notify>| {
            move || -> FillFuture {
                Box::pin(async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    release.notified().await;
                    Ok(answer(7))
                })
            }
        };
        // The first caller starts the fill, then is cancelled.
        let first = {
            let (cache, f) = (cache.clone(), slow(calls.clone(), release.clone()));
            tokio::spawn(async move { cache.get_or_fill(k(""), &POLICY, None, f).await })
        };
        tokio::task::yield_now().await;
        let others: Vec<_> = (0..50)
            .map(|_| {
                let (cache, f) = (cache.clone(), slow(calls.clone(), release.clone()));
                tokio::spawn(async move { cache.get_or_fill(k(""), &POLICY, None, f).await })
            })
            .collect();
        tokio::task::yield_now().await;
        first.abort();
        release.notify_one();
        for o in others {
            let got = o.await.unwrap().unwrap();
            assert_eq!((total(&got), got.freshness), (7, Freshness::Coalesced));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // Now it is cached.
        let hit = cache.get_or_fill(k(""), &POLICY, None, counted(&calls, 8, None)).await.unwrap();
        assert_eq!((total(&hit), hit.freshness), (7, Freshness::Hit));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn stale_while_revalidate_serves_stale_and_refreshes_once() {
        let cache = ResponseCache::new(1 << 20);
        let calls = Arc::new(AtomicUsize::new(0));
        assert_eq!(
            cache.get_or_fill(k(""), &POLICY, None, counted(&calls, 1, None)).await.unwrap().freshness,
            Freshness::Miss
        );
        tokio::time::advance(Duration::from_secs(70)).await;
        let stale = cache.get_or_fill(k(""), &POLICY, None, counted(&calls, 2, None)).await.unwrap();
        assert_eq!((total(&stale), stale.freshness), (1, Freshness::Stale));
        assert_eq!(stale.age, Duration::from_secs(70));
        // The background refresh lands; the next call is a fresh hit.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        let fresh = cache.get_or_fill(k(""), &POLICY, None, counted(&calls, 3, None)).await.unwrap();
        assert_eq!((total(&fresh), fresh.freshness), (2, Freshness::Hit));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn stale_if_error_covers_a_failing_upstream_for_a_while() {
        let cache = ResponseCache::new(1 << 20);
        let calls = Arc::new(AtomicUsize::new(0));
        cache.get_or_fill(k(""), &POLICY, None, counted(&calls, 1, None)).await.unwrap();
        tokio::time::advance(Duration::from_secs(120)).await; // past ttl + swr
        let stale =
            cache.get_or_fill(k(""), &POLICY, None, counted(&calls, 0, Some(ErrorKind::Unavailable))).await.unwrap();
        assert_eq!((total(&stale), stale.freshness), (1, Freshness::Stale));
        // A permanent error is not covered.
        let e = cache
            .get_or_fill(k(""), &POLICY, None, counted(&calls, 0, Some(ErrorKind::InvalidArgument)))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        tokio::time::advance(Duration::from_secs(600)).await; // past ttl + sie
        let e = cache
            .get_or_fill(k(""), &POLICY, None, counted(&calls, 0, Some(ErrorKind::Unavailable)))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable);
    }

    #[tokio::test(start_paused = true)]
    async fn not_found_is_remembered_and_other_errors_are_not() {
        let cache = ResponseCache::new(1 << 20);
        let calls = Arc::new(AtomicUsize::new(0));
        for _ in 0..3 {
            let e = cache
                .get_or_fill(k(""), &POLICY, None, counted(&calls, 0, Some(ErrorKind::NotFound)))
                .await
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::NotFound);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_secs(11)).await;
        cache.get_or_fill(k(""), &POLICY, None, counted(&calls, 0, Some(ErrorKind::NotFound))).await.unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // Unavailable is never cached.
        let other = k("other");
        for _ in 0..3 {
            cache
                .get_or_fill(other.clone(), &POLICY, None, counted(&calls, 0, Some(ErrorKind::Unavailable)))
                .await
                .unwrap_err();
        }
        assert_eq!(calls.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn invalidation_removes_exactly_the_matching_entries() {
        let cache = ResponseCache::new(1 << 20);
        let calls = Arc::new(AtomicUsize::new(0));
        let facility = |code: &str| api::GetFacilityRequest { facility_code: code.into() };
        for (method, code) in [(Method::GetFacility, "79001"), (Method::GetFacility, "79002"), (Method::GetSchool, "x")]
        {
            let key = key("79", "sandbox", method, b"", &facility(code));
            cache.get_or_fill(key, &POLICY, None, counted(&calls, 1, None)).await.unwrap();
        }
        let one = facility("79002").encode_to_vec();
        let removed = cache
            .invalidate(|p| p.method == Method::GetFacility.rpc_name().as_bytes() && p.request == one.as_slice())
            .await;
        assert_eq!(removed, 1);
        assert_eq!(cache.usage_now().0, 2);
        let again = cache.get_or_fill(
            key("79", "sandbox", Method::GetFacility, b"", &facility("79001")),
            &POLICY,
            None,
            counted(&calls, 2, None),
        );
        assert_eq!(again.await.unwrap().freshness, Freshness::Hit);
        let refetched = cache.get_or_fill(
            key("79", "sandbox", Method::GetFacility, b"", &facility("79002")),
            &POLICY,
            None,
            counted(&calls, 2, None),
        );
        assert_eq!(refetched.await.unwrap().freshness, Freshness::Miss);
        assert_eq!(cache.invalidate(|p| p.province == b"79").await, 3);
        assert_eq!(cache.usage_now().0, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn entries_past_their_lifetime_are_dropped_when_read_or_swept() {
        let cache = ResponseCache::new(1 << 20);
        let calls = Arc::new(AtomicUsize::new(0));
        let short = CachePolicy::fresh_for(Duration::from_secs(5));
        for scope in ["a", "b", "c"] {
            cache.get_or_fill(k(scope), &short, None, counted(&calls, 1, None)).await.unwrap();
        }
        assert_eq!(cache.usage_now().0, 3);
        tokio::time::advance(Duration::from_secs(5)).await;
        // Read past its lifetime: gone, and fetched again.
        let again = cache.get_or_fill(k("a"), &short, None, counted(&calls, 2, None)).await.unwrap();
        assert_eq!((total(&again), again.freshness), (2, Freshness::Miss));
        // The two never read again go with the next sweep; the fresh one stays.
        assert_eq!(cache.sweep(), 2);
        assert_eq!(cache.usage_now().0, 1);
        let expired = cache.evictions().into_iter().find(|(cause, _)| *cause == "expired").unwrap().1;
        assert_eq!(expired, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn the_cache_holds_its_byte_bound_and_counts_what_it_evicts() {
        // 1 MiB of entries weighing about 10 KiB each: never much more than
        // a hundred held, the rest evicted for space.
        let cache = ResponseCache::new(1 << 20);
        let big = || -> FillFuture { Box::pin(async { Ok(Bytes::from(vec![7u8; 10_000])) }) };
        for i in 0..1_000 {
            cache.get_or_fill(k(&i.to_string()), &POLICY, None, big).await.unwrap();
        }
        let (entries, bytes) = cache.usage_now();
        assert!(bytes <= 1 << 20, "{bytes} bytes held");
        assert!((50..=110).contains(&entries), "{entries} entries held");
        let size = cache.evictions().into_iter().find(|(cause, _)| *cause == "size").unwrap().1;
        assert_eq!(size + entries, 1_000);
    }

    #[test]
    fn keys_split_back_into_their_parts_and_scopes_hide_the_citizen() {
        let scopes = CitizenScopes::new().unwrap();
        let lan = lienthong_adapter_core::CitizenId::parse("079190012345").unwrap();
        let minh = lienthong_adapter_core::CitizenId::parse("079085004321").unwrap();
        let scope = scopes.scope(&lan);
        assert_eq!(scope, scopes.scope(&lan));
        assert_ne!(scope, scopes.scope(&minh));
        assert!(!String::from_utf8_lossy(&scope).contains("079190012345"));
        let request = api::ListMyDossiersRequest { page_size: 5, ..Default::default() };
        let k = key("79", "portal", Method::ListMyDossiers, &scope, &request);
        let parts = KeyParts::parse(&k).unwrap();
        assert_eq!(parts.province, b"79");
        assert_eq!(parts.instance, b"portal");
        assert_eq!(parts.method, Method::ListMyDossiers.rpc_name().as_bytes());
        assert_eq!(parts.scope, scope);
        assert_eq!(parts.request, request.encode_to_vec());
        // A key from another scheme is not parsed.
        assert!(KeyParts::parse(b"79\0x").is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn one_citizens_answer_is_never_anothers() {
        let cache = ResponseCache::new(1 << 20);
        let calls = Arc::new(AtomicUsize::new(0));
        let a = cache.get_or_fill(k("citizen-a"), &POLICY, None, counted(&calls, 1, None)).await.unwrap();
        let b = cache.get_or_fill(k("citizen-b"), &POLICY, None, counted(&calls, 2, None)).await.unwrap();
        assert_eq!((total(&a), total(&b)), (1, 2));
        assert_eq!(b.freshness, Freshness::Miss);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
