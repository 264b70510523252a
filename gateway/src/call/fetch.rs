//! A routed call's way to its adapter: the cache first (keyed per province,
//! instance, method and request, and per citizen for personal data), and
//! only on a miss the instance's guard (budget, breaker, bulkhead, deadline,
//! retries).

use std::future::Future;
use std::sync::Arc;

use lienthong_adapter_core::{AdapterError, CallContext};
use prost::Message;
use tonic::Status;

use crate::call::Call;
use crate::call::metadata::Answer;
use crate::gateway::route::Routed;

impl Call<'_> {
    /// The answer of `adapter_call` on the routed instance, through the
    /// cache when this RPC has a policy and, on a miss only, the instance's
    /// guard. `adapter_call` gets its own copies of the adapter, the context
    /// and the request each time it runs (a retry runs it again).
    pub async fn fetch<A, R, T, F, Fut>(
        &self,
        routed: &Routed<A>,
        request: R,
        adapter_call: F,
    ) -> Result<Answer<T>, Status>
    where
        A: ?Sized + Send + Sync + 'static,
        R: Message + Clone + Send + Sync + 'static,
        T: Message + Default + Clone + Send + Sync + 'static,
        F: Fn(Arc<A>, CallContext, R) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, AdapterError>> + Send + 'static,
    {
        let key = self.cache_key(routed, &request)?;
        let (adapter, ctx) = (routed.adapter.clone(), self.ctx.clone());
        self.cached(routed, key, move || -> crate::policy::cache::FillFuture<T> {
            Box::pin(adapter_call(adapter.clone(), ctx.clone(), request.clone()))
        })
        .await
    }

    /// Calls `routed` once through its guard (no cache): upstream budget,
    /// breaker, bulkhead, deadline, retries (every adapter method is an
    /// idempotent read).
    pub async fn guarded<A: ?Sized, T, F, Fut>(&self, routed: &Routed<A>, attempt: F) -> Result<T, Status>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, AdapterError>>,
    {
        routed.guard.call(self.method, self.deadline(), true, attempt).await.map_err(|e| self.fail(routed, e))
    }

    /// The cache key of this call's `request` to `routed`, scoped to the
    /// citizen's pseudonym for personal data.
    pub fn cache_key<A: ?Sized>(&self, routed: &Routed<A>, request: &impl Message) -> Result<Vec<u8>, Status> {
        let key =
            |scope: &[u8]| crate::policy::cache::key(&self.ctx.province, &routed.instance, self.method, scope, request);
        if !self.method.facts().personal {
            return Ok(key(b""));
        }
        let principal =
            self.ctx.principal.as_ref().ok_or_else(|| {
                Status::internal("personal data was about to be cached without a citizen; this is a bug")
            })?;
        Ok(key(&self.gateway.scopes.scope(&principal.citizen_id)))
    }

    /// The answer of `attempt` (an adapter call), through the cache when this
    /// RPC has a policy, and through the instance's guard whenever the
    /// upstream is asked. Concurrent misses share one fill; each caller
    /// waits for it only until its own deadline.
    pub async fn cached<A: ?Sized, T, F>(
        &self,
        routed: &Routed<A>,
        key: Vec<u8>,
        attempt: F,
    ) -> Result<Answer<T>, Status>
    where
        T: Message + Default + Clone + Send + Sync + 'static,
        F: Fn() -> crate::policy::cache::FillFuture<T> + Send + Sync + 'static,
    {
        let (guard, method, deadline) = (routed.guard.clone(), self.method, self.deadline());
        // Only fills reach the upstream, so only they spend its budget; over
        // it, the cache may still answer stale.
        let fill = move || -> crate::policy::cache::FillFuture<T> {
            Box::pin(async move { guard.call(method, deadline, true, attempt).await })
        };
        let Some(policy) = self.gateway.cache_config.policy(method) else {
            if self.traced {
                tracing::Span::current().record("lienthong.cache", "bypass");
            }
            return fill().await.map(|value| Answer { value, freshness: None }).map_err(|e| self.fail(routed, e));
        };
        let span = if self.traced {
            tracing::info_span!(
                "cache",
                otel.name = "cache lookup",
                lienthong.cache.outcome = tracing::field::Empty,
                lienthong.cache.coalesced = tracing::field::Empty,
            )
        } else {
            tracing::Span::none()
        };
        let looked_up = tracing::Instrument::instrument(
            self.gateway.cache.get_or_fill(key, &policy, Some(deadline), fill),
            span.clone(),
        )
        .await;
        // An error remembered or fetched counts as a miss.
        let outcome = looked_up.as_ref().map_or("miss", |c| c.freshness.as_str());
        span.record("lienthong.cache.outcome", outcome);
        if outcome == "coalesced" {
            span.record("lienthong.cache.coalesced", true);
        }
        drop(span);
        if self.traced {
            tracing::Span::current().record("lienthong.cache", outcome);
        }
        self.gateway.metrics.cache_lookup(method, outcome);
        routed.guard.stats().cache(matches!(outcome, "hit" | "stale"));
        let cached = looked_up.map_err(|e| self.fail(routed, e))?;
        Ok(Answer { value: cached.value, freshness: Some((cached.freshness, cached.age)) })
    }
}
