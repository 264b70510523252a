//! Answers written to the wire as they were stored.
//!
//! A cached answer is kept as its gRPC message frame ([`Encoded`]). Its
//! handler hands tonic an empty message with the frame in the response's
//! extensions; this layer, the innermost around the services, puts the frame
//! in the body's place, followed by the `grpc-status: 0` trailers tonic
//! would have sent. The hit path so never decodes, clones or encodes the
//! answer: bare tonic encodes it on every call. Everything outside this layer
//! (telemetry, admission, gRPC-Web) sees an ordinary gRPC response.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use http_body::{Frame, SizeHint};
use tonic::body::Body;
use tower::{Layer, Service};

use crate::call::metadata::Encoded;

/// Swaps a response's body for its pre-encoded message, when it has one.
#[derive(Debug, Clone, Copy, Default)]
pub struct EncodedAnswersLayer;

impl<S> Layer<S> for EncodedAnswersLayer {
    type Service = EncodedAnswers<S>;

    fn layer(&self, inner: S) -> Self::Service {
        EncodedAnswers(inner)
    }
}

/// See [`EncodedAnswersLayer`].
#[derive(Debug, Clone)]
pub struct EncodedAnswers<S>(S);

impl<S, B> Service<http::Request<B>> for EncodedAnswers<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Swapped<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        Swapped { inner: self.0.call(req) }
    }
}

pin_project_lite::pin_project! {
    /// The inner service's response, its body swapped when it carries an
    /// [`Encoded`] answer.
    #[derive(Debug)]
    pub struct Swapped<F> {
        #[pin]
        inner: F,
    }
}

impl<F, E> Future for Swapped<F>
where
    F: Future<Output = Result<http::Response<Body>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut response = ready!(self.project().inner.poll(cx))?;
        if let Some(Encoded(frame)) = response.extensions_mut().remove::<Encoded>() {
            // The empty message tonic was given is dropped unencoded.
            *response.body_mut() = Body::new(OneMessage { frame: Some(frame), trailers: true });
        }
        Poll::Ready(Ok(response))
    }
}

/// A unary answer's body: one message frame, then `grpc-status: 0`.
#[derive(Debug)]
struct OneMessage {
    frame: Option<Bytes>,
    trailers: bool,
}

impl http_body::Body for OneMessage {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(frame) = self.frame.take() {
            return Poll::Ready(Some(Ok(Frame::data(frame))));
        }
        if std::mem::take(&mut self.trailers) {
            let mut trailers = HeaderMap::with_capacity(1);
            trailers.insert("grpc-status", HeaderValue::from_static("0"));
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.frame.is_none() && !self.trailers
    }

    /// At least the frame: never exact, for gRPC-Web turns the trailers
    /// into a frame of the body too.
    fn size_hint(&self) -> SizeHint {
        let mut hint = SizeHint::new();
        hint.set_lower(self.frame.as_ref().map_or(0, |f| f.len() as u64));
        hint
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;
    use lienthong_adapter_core::api;
    use prost::Message;

    use super::*;

    #[tokio::test]
    async fn a_pre_encoded_answer_replaces_the_body_and_ends_with_status_ok() {
        let answer = api::GetFacilityResponse {
            facility: Some(api::Facility { name: "Bệnh viện Chợ Rẫy".into(), ..Default::default() }),
        };
        let inner = tower::service_fn(|_: http::Request<()>| async {
            let mut r = http::Response::new(Body::empty());
            r.extensions_mut().insert(Encoded::frame(&api::GetFacilityResponse {
                facility: Some(api::Facility { name: "Bệnh viện Chợ Rẫy".into(), ..Default::default() }),
            }));
            Ok::<_, Infallible>(r)
        });
        let mut service = EncodedAnswersLayer.layer(inner);
        let response = service.call(http::Request::new(())).await.unwrap();
        assert!(response.extensions().get::<Encoded>().is_none(), "the frame is taken out of the extensions");
        let collected = response.into_body().collect().await.unwrap();
        assert_eq!(collected.trailers().and_then(|t| t.get("grpc-status")).map(|v| v.as_bytes()), Some(&b"0"[..]));
        let body = collected.to_bytes();
        let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
        assert_eq!((body[0], len, body.len()), (0, answer.encoded_len(), 5 + answer.encoded_len()));
        assert_eq!(api::GetFacilityResponse::decode(&body[5..]).unwrap(), answer);
    }

    #[tokio::test]
    async fn other_responses_pass_untouched() {
        let inner = tower::service_fn(|_: http::Request<()>| async {
            Ok::<_, Infallible>(http::Response::new(Body::new(http_body_util::Full::new(Bytes::from_static(b"as is")))))
        });
        let response = EncodedAnswersLayer.layer(inner).call(http::Request::new(())).await.unwrap();
        let collected = response.into_body().collect().await.unwrap();
        assert!(collected.trailers().is_none());
        assert_eq!(collected.to_bytes(), Bytes::from_static(b"as is"));
    }
}
