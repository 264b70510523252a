//! Streams at the edge: the request stream of server reflection, checked
//! message by message (it is bidirectional, so it cannot be read whole before
//! the call starts), and health watches that end when the gateway drains.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};

use bytes::{Buf as _, BytesMut};
use http::HeaderMap;
use http_body::{Frame, SizeHint};
use tokio::sync::watch;
use tonic::Status;
use tonic::body::Body;

use super::framing;

/// What the check of a request stream found wrong, once it found it.
pub type Verdict = Arc<OnceLock<Status>>;

/// `body`, passed on in whole messages, each checked to be a well-framed
/// `ServerReflectionRequest` of at most `max` bytes. At the first bad one the
/// stream ends for the service and the verdict is set, for [`with_verdict`]
/// to put in the answer's trailers.
pub fn checked_reflection_body(body: Body, max: usize) -> (Body, Verdict) {
    let verdict = Verdict::default();
    let checked = CheckedStream { inner: body, pending: BytesMut::new(), max, verdict: verdict.clone(), done: false };
    (Body::new(checked), verdict)
}

struct CheckedStream {
    inner: Body,
    pending: BytesMut,
    max: usize,
    verdict: Verdict,
    done: bool,
}

impl CheckedStream {
    /// The complete messages at the front of `pending`, once checked.
    fn take_complete(&mut self) -> Result<Option<bytes::Bytes>, Status> {
        let mut end = 0;
        loop {
            let rest = &self.pending[end..];
            let Some(declared) = framing::declared_len(rest) else { break };
            framing::check_frame_flag(rest[0], false).map_err(|(_, status)| status)?;
            if declared > self.max {
                return Err(framing::too_large(declared, self.max));
            }
            // Not all there yet: wait for more.
            let Some(message) = rest.get(framing::FRAME_HEADER..framing::FRAME_HEADER + declared) else { break };
            decode_reflection_request(message)?;
            end += framing::FRAME_HEADER + declared;
        }
        Ok((end > 0).then(|| self.pending.split_to(end).freeze()))
    }

    fn fail(&mut self, status: Status) -> Poll<Option<Result<Frame<bytes::Bytes>, Status>>> {
        let _ = self.verdict.set(status);
        self.done = true;
        Poll::Ready(None)
    }
}

fn decode_reflection_request(message: &[u8]) -> Result<(), Status> {
    use prost::Message as _;
    tonic_reflection::pb::v1::ServerReflectionRequest::decode(message).map(drop).map_err(|e| {
        Status::invalid_argument(format!("a request message does not decode as ServerReflectionRequest: {e}"))
    })
}

impl http_body::Body for CheckedStream {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<bytes::Bytes>, Status>>> {
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else { continue };
                    self.pending.extend_from_slice(data.chunk());
                    match self.take_complete() {
                        Ok(Some(messages)) => return Poll::Ready(Some(Ok(Frame::data(messages)))),
                        Ok(None) => continue,
                        Err(status) => return self.fail(status),
                    }
                }
                Some(Err(e)) => {
                    let status =
                        Status::invalid_argument(format!("the request stream could not be read: {}", e.message()));
                    return self.fail(status);
                }
                None if !self.pending.is_empty() => {
                    let status = Status::invalid_argument(match framing::declared_len(&self.pending) {
                        None => format!(
                            "the request stream ends inside a message's 5-byte header ({} bytes)",
                            self.pending.len()
                        ),
                        Some(declared) => format!(
                            "the request stream ends inside a message: it declares {declared} bytes but {} arrived",
                            self.pending.len() - framing::FRAME_HEADER
                        ),
                    });
                    return self.fail(status);
                }
                None => {
                    self.done = true;
                    return Poll::Ready(None);
                }
            }
        }
    }
}

/// `body` with its final status replaced by the verdict, when there is one.
pub fn with_verdict(body: Body, verdict: Verdict) -> Body {
    Body::new(VerdictBody { inner: body, verdict, ended: false })
}

struct VerdictBody {
    inner: Body,
    verdict: Verdict,
    ended: bool,
}

fn status_trailers(status: &Status) -> HeaderMap {
    let mut trailers = HeaderMap::new();
    // Only fails for a message that cannot be a header value, which ours are.
    let _ = status.add_header(&mut trailers);
    trailers
}

impl http_body::Body for VerdictBody {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<bytes::Bytes>, Status>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        let Some(verdict) = self.verdict.get().cloned() else { return Poll::Ready(frame) };
        match frame {
            Some(Ok(frame)) if frame.is_data() => Poll::Ready(Some(Ok(frame))),
            // The service's own end (trailers, an error, or none) gives way
            // to the verdict on what the caller sent.
            _ => {
                self.ended = true;
                Poll::Ready(Some(Ok(Frame::trailers(status_trailers(&verdict)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// A health watch that ends with UNAVAILABLE when the gateway starts
/// draining, so a shutdown never waits for a watcher.
pub fn ending_at_drain(body: Body, mut draining: watch::Receiver<bool>) -> Body {
    let drained = async move {
        let _ = draining.wait_for(|d| *d).await;
    };
    ending_when(body, drained, || {
        Status::unavailable("the gateway is shutting down; watch again to reach another replica")
    })
}

/// `body` (a server stream's answer) ended with DEADLINE_EXCEEDED when the
/// caller's deadline passes before its last message: a stream honours
/// `grpc-timeout` as a unary call does, whether or not the client cancels.
pub fn ending_at_deadline(body: Body, deadline: tokio::time::Instant) -> Body {
    ending_when(body, tokio::time::sleep_until(deadline), || {
        Status::deadline_exceeded("the call's deadline (grpc-timeout) passed before the stream ended")
    })
}

/// `body`, ended with `status()` as its trailers once `end` completes
/// before it does (what the stream had to say first still goes out).
fn ending_when(body: Body, end: impl Future<Output = ()> + Send + 'static, status: fn() -> Status) -> Body {
    Body::new(EndingBody { inner: body, end: Box::pin(end), status, ended: false })
}

struct EndingBody {
    inner: Body,
    end: Pin<Box<dyn Future<Output = ()> + Send>>,
    status: fn() -> Status,
    ended: bool,
}

impl http_body::Body for EndingBody {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<bytes::Bytes>, Status>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            self.ended = frame.is_none();
            return Poll::Ready(frame);
        }
        if self.end.as_mut().poll(cx).is_ready() {
            self.ended = true;
            return Poll::Ready(Some(Ok(Frame::trailers(status_trailers(&(self.status)())))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }
}
