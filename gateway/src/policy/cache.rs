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
//! another. The cache is bounded in bytes.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
pub struct Cached<T> {
    /// The answer.
    pub value: T,
    /// How fresh it is.
    pub freshness: Freshness,
    /// How old it is.
    pub age: Duration,
}

/// A stored answer, in one allocation: when it was stored, how long it may
/// live, what it weighs, and the decoded response (so a hit is a clone, not a
/// decode and re-encode) or a remembered NOT_FOUND (an [`AdapterError`]).
struct Slot<V: ?Sized> {
    stored: Instant,
    lifetime: Duration,
    weight: u32,
    value: V,
}

type Entry = Arc<Slot<dyn Any + Send + Sync>>;

/// What one entry costs beyond its key and answer: the slot, the key's and
/// the answer's allocations, and the cache's own bookkeeping (measured by
/// `bench/peak_load.py --only memory`).
const ENTRY_OVERHEAD: usize = 600;

/// The weight of an entry: an estimate of the memory it holds. A decoded
/// answer takes about twice its encoded size.
fn weight(key: &[u8], encoded: usize) -> u32 {
    u32::try_from(key.len() + 2 * encoded + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
}

type Key = Arc<[u8]>;
type Fill = Shared<BoxFuture<'static, Result<Entry, AdapterError>>>;

struct EntryExpiry;

impl moka::Expiry<Key, Entry> for EntryExpiry {
    fn expire_after_create(&self, _: &Key, value: &Entry, _: std::time::Instant) -> Option<Duration> {
        Some(value.lifetime)
    }
}

/// The cache of every RPC's answers, bounded in bytes.
pub struct ResponseCache {
    store: moka::future::Cache<Key, Entry>,
    inflight: Arc<Mutex<HashMap<Key, Fill>>>,
    evictions: Arc<[AtomicU64; 4]>,
}

impl std::fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCache").field("entries", &self.store.entry_count()).finish_non_exhaustive()
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

/// The future a fill runs.
pub type FillFuture<T> = Pin<Box<dyn Future<Output = Result<T, AdapterError>> + Send>>;

impl ResponseCache {
    /// A cache holding at most about `max_bytes` of answers.
    pub fn new(max_bytes: u64) -> Self {
        let evictions: Arc<[AtomicU64; 4]> = Arc::default();
        let counted = evictions.clone();
        let store = moka::future::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_: &Key, v: &Entry| v.weight)
            .expire_after(EntryExpiry)
            .eviction_listener(move |_, _, cause| {
                let i = match cause {
                    moka::notification::RemovalCause::Size => 0,
                    moka::notification::RemovalCause::Expired => 1,
                    moka::notification::RemovalCause::Explicit => 2,
                    moka::notification::RemovalCause::Replaced => 3,
                };
                counted[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            })
            .build();
        Self { store, inflight: Arc::new(Mutex::new(HashMap::new())), evictions }
    }

    /// Removes every entry whose key `matches`; returns how many.
    pub async fn invalidate(&self, matches: impl Fn(&KeyParts<'_>) -> bool) -> u64 {
        let mut removed = 0;
        let doomed: Vec<Key> = self
            .store
            .iter()
            .filter(|(k, _)| KeyParts::parse(k).is_some_and(|p| matches(&p)))
            .map(|(k, _)| Key::clone(&k))
            .collect();
        for k in doomed {
            if self.store.remove(&k).await.is_some() {
                removed += 1;
            }
        }
        removed
    }

    /// Entries and weighted bytes as last counted (no housekeeping: for
    /// metrics, cheap and approximate).
    pub fn usage_now(&self) -> (u64, u64) {
        (self.store.entry_count(), self.store.weighted_size())
    }

    /// Entries that left the cache so far, by cause.
    pub fn evictions(&self) -> [(&'static str, u64); 4] {
        let n = |i: usize| self.evictions[i].load(std::sync::atomic::Ordering::Relaxed);
        [("size", n(0)), ("expired", n(1)), ("removed", n(2)), ("replaced", n(3))]
    }

    /// Entries and weighted bytes held now (after pending housekeeping).
    pub async fn usage(&self) -> (u64, u64) {
        self.store.run_pending_tasks().await;
        (self.store.entry_count(), self.store.weighted_size())
    }

    /// The answer for `key` under `policy`, from the cache or from `fill`.
    /// A caller waits for a fill (its own or a concurrent caller's) until
    /// `deadline` at most; the fill itself goes on for the others.
    pub async fn get_or_fill<T>(
        &self,
        key: Vec<u8>,
        policy: &CachePolicy,
        deadline: Option<Instant>,
        fill: impl FnOnce() -> FillFuture<T>,
    ) -> Result<Cached<T>, AdapterError>
    where
        T: Message + Default + Clone + Send + Sync + 'static,
    {
        let key: Key = key.into();
        let mut fallback = None;
        if let Some(entry) = self.store.get(&key).await {
            let age = entry.stored.elapsed();
            if let Some(e) = entry.value.downcast_ref::<AdapterError>() {
                if age < policy.negative_ttl {
                    return Err(e.clone());
                }
            } else if age < policy.ttl {
                return read(&entry, Freshness::Hit, age);
            } else if age < policy.ttl + policy.stale_while_revalidate {
                // Serve it, and refresh in the background (once).
                let _ = self.start_fill(key.clone(), *policy, fill);
                return read(&entry, Freshness::Stale, age);
            } else if age < policy.ttl + policy.stale_if_error {
                fallback = Some(entry);
            }
        }
        let (fill, coalesced) = self.start_fill(key, *policy, fill);
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
            Ok(entry) => match entry.value.downcast_ref::<AdapterError>() {
                Some(e) => Err(e.clone()),
                None => read(&entry, if coalesced { Freshness::Coalesced } else { Freshness::Miss }, Duration::ZERO),
            },
            Err(e) if e.is_temporary() => match &fallback {
                Some(entry) => read(entry, Freshness::Stale, entry.stored.elapsed()),
                None => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// Joins the running fill of `key`, or starts one as a detached task.
    fn start_fill<T>(&self, key: Key, policy: CachePolicy, fill: impl FnOnce() -> FillFuture<T>) -> (Fill, bool)
    where
        T: Message + Default + Clone + Send + Sync + 'static,
    {
        let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(running) = inflight.get(&key) {
            return (running.clone(), true);
        }
        // The fill outlives the call that started it (others may wait for
        // it): its span is a child of that call's lookup.
        let span = tracing::info_span!("cache_fill", otel.name = "cache fill");
        let future = tracing::Instrument::instrument(fill(), span);
        let store = self.store.clone();
        let registry = self.inflight.clone();
        let task_key = key.clone();
        let task = tokio::spawn(async move {
            let result = future.await;
            let stored = Instant::now();
            let entry: Entry = match result {
                Ok(v) => {
                    let weight = weight(&task_key, v.encoded_len());
                    Arc::new(Slot { stored, lifetime: policy.lifetime(), weight, value: v })
                }
                Err(e) if e.kind() == ErrorKind::NotFound && !policy.negative_ttl.is_zero() => {
                    let weight = weight(&task_key, e.message().len());
                    Arc::new(Slot { stored, lifetime: policy.negative_ttl, weight, value: e })
                }
                Err(e) => {
                    registry.lock().unwrap_or_else(|p| p.into_inner()).remove(&task_key);
                    return Err(e);
                }
            };
            store.insert(task_key.clone(), entry.clone()).await;
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

fn read<T: Clone + 'static>(entry: &Entry, freshness: Freshness, age: Duration) -> Result<Cached<T>, AdapterError> {
    let value = entry
        .value
        .downcast_ref::<T>()
        .cloned()
        .ok_or_else(|| AdapterError::new(ErrorKind::Unexpected, "a cached answer has another type"))?;
    Ok(Cached { value, freshness, age })
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

    fn answer(total: i32) -> api::ListFacilitiesResponse {
        api::ListFacilitiesResponse { total_size: total, ..Default::default() }
    }

    /// A fill that counts its calls and answers `total`, or `error`.
    fn counted(
        calls: &Arc<AtomicUsize>,
        total: i32,
        error: Option<ErrorKind>,
    ) -> impl FnOnce() -> FillFuture<api::ListFacilitiesResponse> {
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
            move || -> FillFuture<api::ListFacilitiesResponse> {
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
            assert_eq!((got.value.total_size, got.freshness), (7, Freshness::Coalesced));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // Now it is cached.
        let hit = cache.get_or_fill(k(""), &POLICY, None, counted(&calls, 8, None)).await.unwrap();
        assert_eq!((hit.value.total_size, hit.freshness), (7, Freshness::Hit));
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
        assert_eq!((stale.value.total_size, stale.freshness), (1, Freshness::Stale));
        assert_eq!(stale.age, Duration::from_secs(70));
        // The background refresh lands; the next call is a fresh hit.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        let fresh = cache.get_or_fill(k(""), &POLICY, None, counted(&calls, 3, None)).await.unwrap();
        assert_eq!((fresh.value.total_size, fresh.freshness), (2, Freshness::Hit));
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
        assert_eq!((stale.value.total_size, stale.freshness), (1, Freshness::Stale));
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
        assert_eq!(cache.usage().await.0, 2);
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
        assert_eq!(cache.usage().await.0, 0);
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
        assert_eq!((a.value.total_size, b.value.total_size), (1, 2));
        assert_eq!(b.freshness, Freshness::Miss);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
