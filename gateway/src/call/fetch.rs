//! A routed call's way to its adapter: the cache first (keyed per province,
//! instance, method and request, and per citizen for personal data), and
//! only on a miss the instance's guard (budget, breaker, bulkhead, deadline,
//! retries).
//!
//! [`Call::answer`] is the usual way: the adapter's answer is shaped into
//! the RPC's response once, when it is fetched, and stored framed for the
//! wire, so every hit writes those bytes as they are. [`Call::fetch`] gives
//! the decoded answer, for handlers that shape it per caller.

use std::future::Future;
use std::sync::Arc;

use lienthong_adapter_core::{AdapterError, CallContext};
use prost::Message;
use tonic::Status;

use crate::call::Call;
use crate::call::metadata::{Answer, Encoded};
use crate::gateway::route::Routed;
use crate::policy::cache::{CachePolicy, Cached, FillFuture};

impl Call<'_> {
    /// The gRPC response of `adapter_call` on the routed instance, shaped by
    /// `shape`: through the cache when this RPC has a policy (a hit is the
    /// stored frame, written as it is) and, on a miss only, the instance's
    /// guard. The shaped answer's text is put in NFC (an adapter's
    /// contract violation, counted). `shape` runs once per fetch, so what it does (sealing page
    /// tokens, wrapping a record) must be the same for every caller sharing
    /// the cache key. `adapter_call` gets its own copies of the adapter, the
    /// context and the request each time it runs (a retry runs it again).
    pub async fn answer<A, R, T, U, F, Fut, S>(
        &self,
        routed: &Routed<A>,
        request: R,
        adapter_call: F,
        shape: S,
    ) -> Result<tonic::Response<U>, Status>
    where
        A: ?Sized + Send + Sync + 'static,
        R: Message + Clone + Send + Sync + 'static,
        T: Send + 'static,
        U: Message + Default + 'static,
        F: Fn(Arc<A>, CallContext, R) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, AdapterError>> + Send + 'static,
        S: FnOnce(T) -> U + Send + 'static,
    {
        // What goes on: the shaped answer, framed, its text in NFC.
        let (mender, output) = (self.mender(routed), lienthong_adapter_core::nfc::output_of(self.method));
        let frame = move |value| mender.frame(&shape(value), output);
        let Some(policy) = self.gateway.cache_config.policy(self.method) else {
            let value = self.uncached(routed, request, adapter_call).await?;
            return Ok(Answer { value: frame(value), freshness: None }.into_encoded_response());
        };
        let key = self.cache_key(routed, &request)?;
        let fill = self.fill(routed, request, adapter_call, frame);
        let cached = self.lookup(routed, key, &policy, fill).await?;
        Ok(Answer { value: Encoded(cached.value), freshness: Some((cached.freshness, cached.age)) }
            .into_encoded_response())
    }

    /// [`Call::answer`] for a list: the page is sealed by `paging` when it
    /// is fetched, after a page longer than `page_size` (a contract
    /// violation, counted) is cut to it.
    pub async fn answer_page<A, R, T, F, Fut>(
        &self,
        routed: &Routed<A>,
        request: R,
        adapter_call: F,
        paging: crate::gateway::page_tokens::Paging,
    ) -> Result<tonic::Response<T>, Status>
    where
        A: ?Sized + Send + Sync + 'static,
        R: Message + Clone + Send + Sync + 'static,
        T: crate::gateway::page_tokens::Listing + Message + Default + Send + 'static,
        F: Fn(Arc<A>, CallContext, R) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, AdapterError>> + Send + 'static,
    {
        let mender = self.mender(routed);
        self.answer(routed, request, adapter_call, move |list| mender.page(&paging, list)).await
    }

    /// The decoded answer of `adapter_call` on the routed instance, through
    /// the cache like [`Call::answer`], for handlers whose response differs
    /// per caller (views of a record, audit of what was served). Such a
    /// handler mends the adapter's answer itself ([`Call::mender`]).
    pub async fn fetch<A, R, T, F, Fut>(
        &self,
        routed: &Routed<A>,
        request: R,
        adapter_call: F,
    ) -> Result<Answer<T>, Status>
    where
        A: ?Sized + Send + Sync + 'static,
        R: Message + Clone + Send + Sync + 'static,
        T: Message + Default + Send + 'static,
        F: Fn(Arc<A>, CallContext, R) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, AdapterError>> + Send + 'static,
    {
        let Some(policy) = self.gateway.cache_config.policy(self.method) else {
            let value = self.uncached(routed, request, adapter_call).await?;
            return Ok(Answer { value, freshness: None });
        };
        let key = self.cache_key(routed, &request)?;
        let fill = self.fill(routed, request, adapter_call, |value| Encoded::frame(&value));
        let cached = self.lookup(routed, key, &policy, fill).await?;
        let value = Encoded(cached.value)
            .decode()
            .ok_or_else(|| Status::internal("a cached answer does not decode; this is a bug"))?;
        Ok(Answer { value, freshness: Some((cached.freshness, cached.age)) })
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

    /// What mends `routed`'s answers (NFC text, oversized pages), counting
    /// each mend, for handlers that shape answers per caller
    /// ([`Call::fetch`]).
    pub fn mender<A: ?Sized>(&self, routed: &Routed<A>) -> crate::call::mend::Mender {
        crate::call::mend::Mender::new(self.gateway.metrics.clone(), &routed.instance)
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

    /// An RPC without a cache policy: the guard, and the answer as it is.
    async fn uncached<A, R, T, F, Fut>(&self, routed: &Routed<A>, request: R, adapter_call: F) -> Result<T, Status>
    where
        A: ?Sized + Send + Sync + 'static,
        R: Clone,
        F: Fn(Arc<A>, CallContext, R) -> Fut,
        Fut: Future<Output = Result<T, AdapterError>>,
    {
        self.guarded(routed, || adapter_call(routed.adapter.clone(), self.ctx.clone(), request.clone())).await
    }

    /// The fill of a miss: the adapter call through the instance's guard
    /// (only fills reach the upstream, so only they spend its budget), its
    /// answer made into the bytes the cache keeps by `store`.
    fn fill<A, R, T, F, Fut>(
        &self,
        routed: &Routed<A>,
        request: R,
        adapter_call: F,
        store: impl FnOnce(T) -> Encoded + Send + 'static,
    ) -> impl FnOnce() -> FillFuture
    where
        A: ?Sized + Send + Sync + 'static,
        R: Clone + Send + Sync + 'static,
        T: Send + 'static,
        F: Fn(Arc<A>, CallContext, R) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, AdapterError>> + Send + 'static,
    {
        let (guard, method, deadline) = (routed.guard.clone(), self.method, self.deadline());
        let (adapter, ctx) = (routed.adapter.clone(), self.ctx.clone());
        let attempt = move || adapter_call(adapter.clone(), ctx.clone(), request.clone());
        move || -> FillFuture {
            Box::pin(async move { guard.call(method, deadline, true, attempt).await.map(|v| store(v).0) })
        }
    }

    /// Looks `key` up under `policy`, filling it on a miss; concurrent
    /// misses share one fill, and each caller waits for it only until its
    /// own deadline. Traced, counted, and an error made a Status.
    async fn lookup<A: ?Sized>(
        &self,
        routed: &Routed<A>,
        key: Vec<u8>,
        policy: &CachePolicy,
        fill: impl FnOnce() -> FillFuture,
    ) -> Result<Cached, Status> {
        // A fresh hit, the usual case, in one synchronous step: its span is
        // made with its outcome (nothing recorded after, never entered).
        if let Some(fresh) = self.gateway.cache.fresh(&key, policy) {
            // A remembered NOT_FOUND counts as a miss, as below.
            let outcome = if fresh.is_ok() { "hit" } else { "miss" };
            if self.traced {
                drop(tracing::info_span!("cache", otel.name = "cache lookup", lienthong.cache.outcome = outcome));
            }
            self.gateway.metrics.cache_lookup(self.method, outcome);
            routed.guard.stats().cache(fresh.is_ok());
            return fresh.map_err(|e| self.fail(routed, e));
        }
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
            self.gateway.cache.get_or_fill(key, policy, Some(self.deadline()), fill),
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
        self.gateway.metrics.cache_lookup(self.method, outcome);
        routed.guard.stats().cache(matches!(outcome, "hit" | "stale"));
        looked_up.map_err(|e| self.fail(routed, e))
    }
}
