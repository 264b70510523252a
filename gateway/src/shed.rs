//! Global overload protection: at most `max` requests in progress across all
//! connections; the next one is answered UNAVAILABLE at once, never queued
//! past its deadline. Health checks are exempt, so probes see the truth.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use futures_util::future::{BoxFuture, FutureExt};
use http::{Request, Response};
use tokio::sync::Semaphore;
use tower::{Layer, Service};

/// Sheds requests beyond a global concurrency limit.
#[derive(Debug, Clone)]
pub struct ShedLayer {
    permits: Arc<Semaphore>,
    shed: Arc<AtomicU64>,
}

impl ShedLayer {
    /// At most `max` requests in progress.
    pub fn new(max: usize) -> Self {
        Self { permits: Arc::new(Semaphore::new(max)), shed: Arc::new(AtomicU64::new(0)) }
    }

    /// How many requests were shed so far.
    pub fn shed_count(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }
}

impl<S> Layer<S> for ShedLayer {
    type Service = Shed<S>;

    fn layer(&self, inner: S) -> Shed<S> {
        Shed { inner, permits: self.permits.clone(), shed: self.shed.clone() }
    }
}

/// See [`ShedLayer`].
#[derive(Debug, Clone)]
pub struct Shed<S> {
    inner: S,
    permits: Arc<Semaphore>,
    shed: Arc<AtomicU64>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Shed<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Send,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<ResBody>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        if req.uri().path().starts_with("/grpc.health.v1.Health/") {
            return self.inner.call(req).boxed();
        }
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let fut = self.inner.call(req);
                async move {
                    let response = fut.await;
                    drop(permit);
                    response
                }
                .boxed()
            }
            Err(_) => {
                self.shed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(path = req.uri().path(), "shed: too many requests in progress");
                let status = tonic::Status::unavailable("the gateway is overloaded; retry with backoff");
                std::future::ready(Ok(status.into_http())).boxed()
            }
        }
    }
}
