//! A layer applied to every request except those under one path prefix.
//!
//! The gRPC-Web layer answers 400 to any HTTP/1.1 request that is not
//! gRPC-Web; upstream webhooks arrive as plain HTTP/1.1 JSON posts on the
//! same port, so they must go around it.

use std::task::{Context, Poll};

use futures_util::future::Either;
use http::Request;
use tower::{Layer, Service};

/// Wraps services in `L`, except for paths starting with `prefix`.
#[derive(Debug, Clone)]
pub struct ExceptPaths<L> {
    layer: L,
    prefix: &'static str,
}

impl<L> ExceptPaths<L> {
    /// `layer` for every path but those starting with `prefix`.
    pub fn new(prefix: &'static str, layer: L) -> Self {
        Self { layer, prefix }
    }
}

impl<S: Clone, L: Layer<S>> Layer<S> for ExceptPaths<L> {
    type Service = ExceptPathsService<L::Service, S>;

    fn layer(&self, inner: S) -> Self::Service {
        ExceptPathsService { layered: self.layer.layer(inner.clone()), plain: inner, prefix: self.prefix }
    }
}

/// See [`ExceptPaths`].
#[derive(Debug, Clone)]
pub struct ExceptPathsService<A, B> {
    layered: A,
    plain: B,
    prefix: &'static str,
}

impl<A, B, Body> Service<Request<Body>> for ExceptPathsService<A, B>
where
    A: Service<Request<Body>>,
    B: Service<Request<Body>, Response = A::Response, Error = A::Error>,
{
    type Response = A::Response;
    type Error = A::Error;
    type Future = Either<A::Future, B::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match (self.layered.poll_ready(cx)?, self.plain.poll_ready(cx)?) {
            (Poll::Ready(()), Poll::Ready(())) => Poll::Ready(Ok(())),
            _ => Poll::Pending,
        }
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        if req.uri().path().starts_with(self.prefix) {
            Either::Right(self.plain.call(req))
        } else {
            Either::Left(self.layered.call(req))
        }
    }
}
