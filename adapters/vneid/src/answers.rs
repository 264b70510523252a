//! The provider's answers about tokens (userinfo, introspection), cached per
//! token: an answer for the token's remaining life, at most `token_cache`; a
//! refusal for `refusal_cache`, so a refused token costs the provider one
//! request, not one per call. Concurrent calls with the same token wait for
//! one request. Entries are keyed by the token's SHA-256, never the token.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lienthong_adapter_core::AdapterError;
use moka::Expiry;

use crate::core::Verdict;

/// Which of the provider's endpoints answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Source {
    Userinfo,
    Introspection,
}

#[derive(Clone)]
struct Entry {
    verdict: Arc<Verdict>,
    ttl: Duration,
}

struct EntryExpiry;

impl Expiry<(Source, [u8; 32]), Entry> for EntryExpiry {
    fn expire_after_create(&self, _: &(Source, [u8; 32]), entry: &Entry, _: std::time::Instant) -> Option<Duration> {
        Some(entry.ttl)
    }
}

/// Most tokens whose answers are held.
const CAPACITY: u64 = 200_000;

pub(crate) struct Answers {
    cache: moka::future::Cache<(Source, [u8; 32]), Entry>,
    token_cache: Duration,
    refusal_cache: Duration,
}

impl Answers {
    pub(crate) fn new(token_cache: Duration, refusal_cache: Duration) -> Self {
        let cache = moka::future::Cache::builder().max_capacity(CAPACITY).expire_after(EntryExpiry).build();
        Self { cache, token_cache, refusal_cache }
    }

    /// The answer `source` gave about `token`, asking with `ask` when none is
    /// held. Failures to get an answer (provider down) are not held.
    pub(crate) async fn get<F>(&self, source: Source, token: &str, ask: F) -> Result<Arc<Verdict>, AdapterError>
    where
        F: Future<Output = Result<Verdict, AdapterError>>,
    {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_ref());
        self.cache
            .try_get_with((source, key), async {
                let verdict = ask.await?;
                let ttl = self.lifetime(&verdict);
                Ok::<_, AdapterError>(Entry { verdict: Arc::new(verdict), ttl })
            })
            .await
            .map(|entry| entry.verdict)
            .map_err(|e| (*e).clone())
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
