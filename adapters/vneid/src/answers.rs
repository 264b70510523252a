//! The provider's answers about tokens (userinfo, introspection), cached per
//! token: an answer for the token's remaining life, at most `token_cache`; a
//! refusal for `refusal_cache`, so a refused token costs the provider one
//! request, not one per call. Concurrent calls with the same token wait for
//! one request. Entries are keyed by the token's SHA-256, never the token.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lienthong_adapter_core::AdapterError;
use tokio::time::Instant;

use crate::core::Verdict;

/// Which of the provider's endpoints answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Source {
    Userinfo,
    Introspection,
}

type Key = (Source, [u8; 32]);

#[derive(Clone)]
struct Entry {
    verdict: Arc<Verdict>,
    /// When it stops being served.
    expires: Instant,
    /// Its approximate size in bytes.
    weight: u32,
}

#[derive(Clone)]
struct ByWeight;

impl quick_cache::Weighter<Key, Entry> for ByWeight {
    fn weight(&self, _: &Key, entry: &Entry) -> u64 {
        u64::from(entry.weight)
    }
}

/// Most bytes of answers held (weighed by their JSON size, roughly): an
/// attacker's stream of distinct tokens evicts, never grows memory.
const CAPACITY_BYTES: u64 = 64 * 1024 * 1024;

pub(crate) struct Answers {
    cache: quick_cache::sync::Cache<Key, Entry, ByWeight>,
    token_cache: Duration,
    refusal_cache: Duration,
}

impl Answers {
    pub(crate) fn new(token_cache: Duration, refusal_cache: Duration) -> Self {
        let cache = quick_cache::sync::Cache::with_weighter(16_384, CAPACITY_BYTES, ByWeight);
        Self { cache, token_cache, refusal_cache }
    }

    /// The answer `source` gave about `token`, asking with `ask` when none is
    /// held. Failures to get an answer (provider down) are not held.
    pub(crate) async fn get<F>(&self, source: Source, token: &str, ask: F) -> Result<Arc<Verdict>, AdapterError>
    where
        F: Future<Output = Result<Verdict, AdapterError>>,
    {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
        let mut key = (source, [0u8; 32]);
        key.1.copy_from_slice(digest.as_ref());
        if let Some(held) = self.cache.get(&key) {
            if held.expires > Instant::now() {
                return Ok(held.verdict);
            }
            self.cache.remove_if(&key, |e| e.expires == held.expires);
        }
        // Concurrent calls with this token wait for the first one's request
        // (and ask themselves if it goes away before its answer).
        self.cache
            .get_or_insert_async(&key, async {
                let verdict = ask.await?;
                let expires = Instant::now() + self.lifetime(&verdict);
                let weight = match &verdict {
                    Ok(claims) => claims.iter().map(|(k, v)| k.len() + v.to_string().len() + 16).sum::<usize>(),
                    Err(_) => 0,
                };
                let weight = u32::try_from(weight + 96).unwrap_or(u32::MAX);
                Ok::<_, AdapterError>(Entry { verdict: Arc::new(verdict), expires, weight })
            })
            .await
            .map(|entry| entry.verdict)
    }

    /// How long an answer is held: a refusal briefly; claims until the
    /// token's `exp`, at most `token_cache`.
    fn lifetime(&self, verdict: &Verdict) -> Duration {
        match verdict {
            Err(_) => self.refusal_cache,
            Ok(claims) => {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
                match claims.get("exp").and_then(serde_json::Value::as_u64) {
                    Some(exp) => Duration::from_secs(exp.saturating_sub(now)).min(self.token_cache),
                    None => self.token_cache,
                }
            }
        }
    }
}
