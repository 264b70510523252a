//! gzip on the wire, as gRPC defines it (message-level compression: the
//! `grpc-encoding` header names the codec, each message's flag byte says
//! whether that message is compressed).
//!
//! - A request may come gzip-compressed. Admission inflates it before any
//!   service reads it, never past `server.max_request_bytes`: a small message
//!   that inflates beyond the limit is OUT_OF_RANGE like a large one, and the
//!   inflating stops there (a compression bomb costs the limit, no more).
//! - An answer is compressed when the caller lists gzip in
//!   `grpc-accept-encoding`, message by message, each one larger than
//!   `server.compress_min_bytes` (smaller ones cost more to compress than
//!   they save and go out plain).

use std::io::{Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue};
use http_body::{Frame, SizeHint};
use tonic::Status;
use tonic::body::Body;

use super::admit::Refusal;
use super::framing::{FRAME_HEADER, declared_len, too_large};

/// The encodings this gateway reads, as `grpc-accept-encoding` lists them.
pub(super) const ACCEPTED: &str = "gzip, identity";

/// gzip level for answers: the fastest. Answers are small protobuf records
/// with repeated field names and Vietnamese text; level 1 takes most of
/// what level 6 takes, at a fraction of the time (BENCHMARKS.md).
const LEVEL: u32 = 1;

/// How a request's messages are encoded (`grpc-encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Encoding {
    Identity,
    Gzip,
}

/// The request's `grpc-encoding`: identity or gzip; any other is
/// UNIMPLEMENTED, the gRPC spec's code, naming the ones accepted.
pub(super) fn request_encoding(headers: &HeaderMap) -> Result<Encoding, Status> {
    match headers.get("grpc-encoding").map(HeaderValue::as_bytes) {
        None | Some(b"identity") => Ok(Encoding::Identity),
        Some(b"gzip") => Ok(Encoding::Gzip),
        Some(other) => Err(Status::unimplemented(format!(
            "grpc-encoding {:?} is not accepted: send messages gzip-compressed or uncompressed \
             (grpc-accept-encoding: {ACCEPTED})",
            String::from_utf8_lossy(&other[..other.len().min(32)])
        ))),
    }
}

/// Whether the caller's `grpc-accept-encoding` lists gzip.
pub(super) fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all("grpc-accept-encoding")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("gzip"))
}

/// `frame` (one whole message frame) with its message inflated when its
/// flag says compressed: a plain frame of at most `max` message bytes.
pub(super) fn inflate(frame: Bytes, max: usize) -> Result<Bytes, (Refusal, Status)> {
    let (Some(1), Some(compressed)) = (frame.first(), frame.get(FRAME_HEADER..)) else { return Ok(frame) };
    let mut plain = Vec::with_capacity((frame.len() * 4).min(max) + FRAME_HEADER);
    plain.extend_from_slice(&[0; FRAME_HEADER]);
    // Every gzip member, as gRPC's other implementations read them: the
    // first alone would be a prefix of the message.
    let mut reader = flate2::read::MultiGzDecoder::new(compressed).take(max as u64 + 1);
    reader.read_to_end(&mut plain).map_err(|e| {
        (
            Refusal::Malformed,
            Status::invalid_argument(format!("the gzip-compressed request message does not inflate: {e}")),
        )
    })?;
    let inflated = plain.len() - FRAME_HEADER;
    if inflated > max {
        return Err((
            Refusal::TooLarge,
            Status::out_of_range(format!(
                "the gzip-compressed request message inflates past {max} bytes; this gateway accepts at most {max} \
                 (server.max_request_bytes)"
            )),
        ));
    }
    let length = u32::try_from(inflated).map_err(|_| (Refusal::TooLarge, too_large(inflated, max)))?;
    plain[1..FRAME_HEADER].copy_from_slice(&length.to_be_bytes());
    Ok(Bytes::from(plain))
}

/// The answer's headers say gzip may be used; its body's messages above
/// `min_bytes` are compressed.
pub(super) fn compress_answer(response: http::Response<Body>, min_bytes: usize) -> http::Response<Body> {
    let (mut parts, body) = response.into_parts();
    // A trailers-only answer (an error) has no messages to compress.
    if parts.headers.contains_key("grpc-status") {
        return http::Response::from_parts(parts, body);
    }
    parts.headers.insert("grpc-encoding", HeaderValue::from_static("gzip"));
    parts.headers.remove(http::header::CONTENT_LENGTH);
    parts.headers.insert("grpc-accept-encoding", HeaderValue::from_static(ACCEPTED));
    let body =
        Body::new(Compressing { inner: body, pending: BytesMut::new(), min_bytes, ended: false, trailers: None });
    http::Response::from_parts(parts, body)
}

pin_project_lite::pin_project! {
    /// A response body whose message frames above `min_bytes` are gzipped.
    struct Compressing {
        #[pin]
        inner: Body,
        // Bytes read but not yet a whole frame.
        pending: BytesMut,
        min_bytes: usize,
        ended: bool,
        // Trailers held back behind the rest of a cut-off frame.
        trailers: Option<Frame<Bytes>>,
    }
}

/// The next whole frame at the start of `pending`, taken out of it.
fn whole_frame(pending: &mut BytesMut) -> Option<Bytes> {
    let length = declared_len(pending)?;
    let end = FRAME_HEADER.checked_add(length)?;
    (pending.len() >= end).then(|| pending.split_to(end).freeze())
}

/// `frame` as it goes out: gzipped when plain, larger than `min_bytes`, and
/// the smaller for it.
fn encode(frame: Bytes, min_bytes: usize) -> Bytes {
    let (Some(0), Some(message)) = (frame.first(), frame.get(FRAME_HEADER..)) else { return frame };
    if message.len() <= min_bytes {
        return frame;
    }
    let mut out = Vec::with_capacity(FRAME_HEADER + message.len() / 2);
    out.extend_from_slice(&[1, 0, 0, 0, 0]);
    let mut encoder = flate2::write::GzEncoder::new(out, flate2::Compression::new(LEVEL));
    // Writing to memory does not fail.
    let Ok(mut out) = encoder.write_all(message).and_then(|()| encoder.finish()) else { return frame };
    if out.len() >= frame.len() {
        // Already compressed (an image, say): plain costs less.
        return frame;
    }
    let Ok(length) = u32::try_from(out.len() - FRAME_HEADER) else { return frame };
    out[1..FRAME_HEADER].copy_from_slice(&length.to_be_bytes());
    Bytes::from(out)
}

impl http_body::Body for Compressing {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        loop {
            let this = self.as_mut().project();
            if let Some(frame) = whole_frame(this.pending) {
                return Poll::Ready(Some(Ok(Frame::data(encode(frame, *this.min_bytes)))));
            }
            if *this.ended {
                // What is left is no whole frame: passed on as it came.
                let rest = std::mem::take(this.pending);
                if !rest.is_empty() {
                    return Poll::Ready(Some(Ok(Frame::data(rest.freeze()))));
                }
                return Poll::Ready(this.trailers.take().map(Ok));
            }
            match ready!(this.inner.poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(mut data) => {
                        // One whole frame arriving alone: no copy.
                        if this.pending.is_empty()
                            && declared_len(&data) == Some(data.len().saturating_sub(FRAME_HEADER))
                        {
                            let min_bytes = *this.min_bytes;
                            return Poll::Ready(Some(Ok(Frame::data(encode(data, min_bytes)))));
                        }
                        let chunk = data.copy_to_bytes(data.remaining());
                        this.pending.extend_from_slice(&chunk);
                    }
                    Err(trailers) => {
                        // The end: what is pending goes first, then these.
                        *this.ended = true;
                        *this.trailers = Some(trailers);
                    }
                },
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => *this.ended = true,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.pending.is_empty() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt as _;

    use super::*;

    fn frame(flag: u8, message: &[u8]) -> Bytes {
        let mut f = vec![flag];
        f.extend_from_slice(&(message.len() as u32).to_be_bytes());
        f.extend_from_slice(message);
        Bytes::from(f)
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn a_compressed_request_inflates_within_the_limit_and_not_beyond() {
        let message = "Bệnh viện Chợ Rẫy ".repeat(20);
        let plain = inflate(frame(1, &gzip(message.as_bytes())), 1024).unwrap();
        assert_eq!(plain, frame(0, message.as_bytes()));
        // 8 MiB of zeros in a few KiB: refused at the limit, not inflated whole.
        let bomb = gzip(&vec![0; 8 << 20]);
        assert!(bomb.len() < 16 * 1024);
        let (why, status) = inflate(frame(1, &bomb), 64 * 1024).unwrap_err();
        assert_eq!((why, status.code()), (Refusal::TooLarge, tonic::Code::OutOfRange));
        assert!(status.message().contains("inflates past 65536"), "{}", status.message());
        let (_, status) = inflate(frame(1, b"not gzip"), 1024).unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        // A plain frame is left alone.
        assert_eq!(inflate(frame(0, b"abc"), 1024).unwrap(), frame(0, b"abc"));
        // Two gzip members are one message, whole.
        let two = [gzip("Chợ ".as_bytes()), gzip("Rẫy".as_bytes())].concat();
        assert_eq!(inflate(frame(1, &two), 1024).unwrap(), frame(0, "Chợ Rẫy".as_bytes()));
    }

    #[test]
    fn encodings_are_read_from_the_headers() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.append(*k, HeaderValue::from_static(v));
            }
            h
        };
        assert_eq!(request_encoding(&headers(&[])).unwrap(), Encoding::Identity);
        assert_eq!(request_encoding(&headers(&[("grpc-encoding", "gzip")])).unwrap(), Encoding::Gzip);
        let e = request_encoding(&headers(&[("grpc-encoding", "zstd")])).unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unimplemented);
        assert!(accepts_gzip(&headers(&[("grpc-accept-encoding", "identity, deflate,GZIP")])));
        assert!(!accepts_gzip(&headers(&[("grpc-accept-encoding", "identity,deflate")])));
        assert!(!accepts_gzip(&headers(&[])));
    }

    /// A body of `chunks`, then `grpc-status: 0` trailers.
    fn body_of(chunks: Vec<Bytes>) -> Body {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        let frames = chunks.into_iter().map(|c| Ok::<_, Status>(Frame::data(c))).chain([Ok(Frame::trailers(trailers))]);
        Body::new(http_body_util::StreamBody::new(futures_util::stream::iter(frames)))
    }

    #[tokio::test]
    async fn answers_above_the_threshold_are_gzipped_message_by_message_however_they_are_cut() {
        let large = "Trường THPT Lê Quý Đôn, Quận 3 ".repeat(40);
        let (big, small) = (frame(0, large.as_bytes()), frame(0, b"short"));
        let mut stream = Vec::new();
        stream.extend_from_slice(&big);
        stream.extend_from_slice(&small);
        stream.extend_from_slice(&big);
        // Cut at every few bytes, across frame headers and messages.
        let chunks: Vec<Bytes> = stream.chunks(7).map(Bytes::copy_from_slice).collect();
        let response = http::Response::new(body_of(chunks));
        let response = compress_answer(response, 100);
        assert_eq!(response.headers()["grpc-encoding"], "gzip");
        let collected = response.into_body().collect().await.unwrap();
        assert_eq!(collected.trailers().unwrap()["grpc-status"], "0");
        let mut out = collected.to_bytes();
        let mut messages = Vec::new();
        while !out.is_empty() {
            let length = declared_len(&out).unwrap();
            let f = out.split_to(FRAME_HEADER + length);
            messages.push(match f[0] {
                1 => {
                    let mut plain = Vec::new();
                    flate2::read::GzDecoder::new(&f[FRAME_HEADER..]).read_to_end(&mut plain).unwrap();
                    assert!(f.len() < big.len() / 2, "{} of {}", f.len(), big.len());
                    (true, plain)
                }
                _ => (false, f[FRAME_HEADER..].to_vec()),
            });
        }
        let expected =
            vec![(true, large.as_bytes().to_vec()), (false, b"short".to_vec()), (true, large.as_bytes().to_vec())];
        assert_eq!(messages, expected);
    }

    #[test]
    fn what_does_not_shrink_goes_out_plain() {
        // Bytes that gzip cannot shrink (a xorshift sequence).
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let plain = frame(0, &noise);
        assert_eq!(encode(plain.clone(), 100), plain);
        assert_eq!(encode(frame(0, &[7; 4096]), 100)[0], 1);
    }

    #[tokio::test]
    async fn an_error_answer_is_left_alone() {
        let response = Status::not_found("no such school").into_http::<Body>();
        let response = compress_answer(response, 0);
        assert!(response.headers().get("grpc-encoding").is_none());
    }
}
