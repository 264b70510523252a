//! The shape of a gRPC request as admission checks it before any service
//! reads it: the header block, the content type and encoding, the deadline,
//! and the length-prefixed message frames (gRPC over HTTP/2,
//! Length-Prefixed-Message). Each refusal is the caller's error and says
//! what was wrong.

use crate::call::metadata::parse_grpc_timeout;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue};
use tonic::Status;

use super::admit::Refusal;

/// Bytes of a gRPC message frame's header: the flag byte and the length.
pub(super) const FRAME_HEADER: usize = 5;

/// The size of a header block as HTTP/2 counts it (RFC 9113 §6.5.2).
pub(super) fn header_bytes(headers: &HeaderMap) -> usize {
    headers.iter().map(|(k, v)| k.as_str().len() + v.len() + 32).sum()
}

/// The content type of a gRPC request (its encoding: see
/// [`super::compression::request_encoding`]).
pub(super) fn check_grpc_headers(headers: &HeaderMap) -> Result<(), Status> {
    let content_type = headers.get(http::header::CONTENT_TYPE).map(HeaderValue::as_bytes).unwrap_or_default();
    if !content_type.starts_with(b"application/grpc") {
        return Err(Status::invalid_argument(
            "content-type must be application/grpc (or application/grpc-web from a browser)",
        ));
    }
    Ok(())
}

/// The caller's `grpc-timeout`, if any. A malformed one is refused rather
/// than ignored: a caller who meant a deadline must learn it was not read.
pub(super) fn grpc_timeout(headers: &HeaderMap) -> Result<Option<Duration>, Status> {
    let Some(value) = headers.get("grpc-timeout") else { return Ok(None) };
    parse_grpc_timeout(value.as_bytes()).map(Some).ok_or_else(|| {
        Status::invalid_argument(
            "grpc-timeout is malformed: it must be 1 to 8 digits and a unit (H, M, S, m, u or n), as in 500m",
        )
    })
}

pub(super) fn too_large(declared: usize, max: usize) -> Status {
    Status::out_of_range(format!(
        "the request message is {declared} bytes; this gateway accepts at most {max} (server.max_request_bytes)"
    ))
}

/// A body's bytes, without a copy when they came in one piece.
#[derive(Default)]
pub(super) struct Collected {
    first: Option<Bytes>,
    rest: Option<BytesMut>,
}

impl Collected {
    pub(super) fn push(&mut self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        match (&mut self.first, &mut self.rest) {
            (None, _) => self.first = Some(data),
            (Some(first), None) => {
                let mut joined = BytesMut::with_capacity(first.len() + data.len());
                joined.extend_from_slice(first);
                joined.extend_from_slice(&data);
                self.rest = Some(joined);
            }
            (Some(_), Some(joined)) => joined.extend_from_slice(&data),
        }
    }

    pub(super) fn len(&self) -> usize {
        match (&self.first, &self.rest) {
            (_, Some(joined)) => joined.len(),
            (Some(first), None) => first.len(),
            (None, None) => 0,
        }
    }

    pub(super) fn declared_len(&self) -> Option<usize> {
        let bytes: &[u8] = match (&self.first, &self.rest) {
            (_, Some(joined)) => joined,
            (Some(first), None) => first,
            (None, None) => return None,
        };
        declared_len(bytes)
    }

    pub(super) fn into_bytes(self) -> Bytes {
        match (self.first, self.rest) {
            (_, Some(joined)) => joined.freeze(),
            (Some(first), None) => first,
            (None, None) => Bytes::new(),
        }
    }
}

/// Checks that `body` is exactly one gRPC message frame (RFC: "gRPC over
/// HTTP/2", Length-Prefixed-Message) of at most `max` bytes, compressed only
/// when the request names an encoding (`compressed_ok`).
pub(super) fn check_single_message(body: &[u8], max: usize, compressed_ok: bool) -> Result<(), (Refusal, Status)> {
    let malformed = |m: String| (Refusal::Malformed, Status::invalid_argument(m));
    if body.is_empty() {
        return Err(malformed(
            "the request has no message: a gRPC request body is one length-prefixed message \
             (a flag byte, a 4-byte big-endian length, the protobuf bytes)"
                .to_owned(),
        ));
    }
    let Some(header) = body.get(..FRAME_HEADER) else {
        return Err(malformed(format!(
            "the request body ends inside a message's 5-byte header ({} bytes)",
            body.len()
        )));
    };
    check_frame_flag(header[0], compressed_ok)?;
    let declared = declared_len(header).unwrap_or(usize::MAX);
    if declared > max {
        return Err((Refusal::TooLarge, too_large(declared, max)));
    }
    let present = body.len() - FRAME_HEADER;
    if present < declared {
        return Err(malformed(format!(
            "the request message declares {declared} bytes but the body ends after {present}"
        )));
    }
    if present > declared {
        return Err(malformed(format!(
            "the request body holds {} bytes after its {declared}-byte message; this method takes exactly one message",
            present - declared
        )));
    }
    Ok(())
}

/// The length a message frame's 5-byte header at the start of `bytes`
/// declares; none before the header is whole.
pub(super) fn declared_len(bytes: &[u8]) -> Option<usize> {
    let length: [u8; 4] = bytes.get(1..FRAME_HEADER)?.try_into().ok()?;
    usize::try_from(u32::from_be_bytes(length)).ok()
}

/// A message frame's flag byte: 0 (plain), or 1 (compressed) when the
/// request names a `grpc-encoding` (`compressed_ok`).
pub(super) fn check_frame_flag(flag: u8, compressed_ok: bool) -> Result<(), (Refusal, Status)> {
    match flag {
        0 => Ok(()),
        1 if compressed_ok => Ok(()),
        1 => Err((
            Refusal::Malformed,
            Status::invalid_argument(
                "the message's compressed flag is set but the request names no grpc-encoding: send grpc-encoding: gzip, or the message uncompressed",
            ),
        )),
        other => Err((
            Refusal::Malformed,
            Status::invalid_argument(format!(
                "the message's flag byte is {other}; gRPC allows 0 (plain) or 1 (compressed)"
            )),
        )),
    }
}

/// A health request's message decodes as `HealthCheckRequest`.
pub(super) fn check_health_request(message: &[u8]) -> Result<(), Status> {
    use prost::Message as _;
    tonic_health::pb::HealthCheckRequest::decode(message.get(FRAME_HEADER..).unwrap_or_default()).map(drop).map_err(
        |e| Status::invalid_argument(format!("the request message does not decode as HealthCheckRequest: {e}")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(flag: u8, declared: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![flag];
        f.extend_from_slice(&declared.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn one_well_formed_message_passes() {
        assert!(check_single_message(&frame(0, 3, b"abc"), 10, false).is_ok());
        assert!(check_single_message(&frame(0, 0, b""), 10, false).is_ok());
    }

    #[test]
    fn malformed_frames_are_the_callers_error() {
        let cases: &[(&[u8], Refusal, tonic::Code, &str)] = &[
            (b"", Refusal::Malformed, tonic::Code::InvalidArgument, "no message"),
            (&[0, 0, 0], Refusal::Malformed, tonic::Code::InvalidArgument, "5-byte header"),
            (&frame(0, 9, b"abc"), Refusal::Malformed, tonic::Code::InvalidArgument, "declares 9 bytes"),
            (&frame(0, 1, b"abc"), Refusal::Malformed, tonic::Code::InvalidArgument, "exactly one message"),
            (&frame(1, 3, b"abc"), Refusal::Malformed, tonic::Code::InvalidArgument, "compressed flag"),
            (&frame(7, 3, b"abc"), Refusal::Malformed, tonic::Code::InvalidArgument, "flag byte is 7"),
            (&frame(0, 11, b"abc"), Refusal::TooLarge, tonic::Code::OutOfRange, "at most 10"),
        ];
        for (body, why, code, says) in cases {
            let (refusal, status) = check_single_message(body, 10, false).unwrap_err();
            assert_eq!((refusal, status.code()), (*why, *code), "{body:?}: {status:?}");
            assert!(status.message().contains(says), "{body:?}: {}", status.message());
        }
    }

    #[test]
    fn grpc_timeout_follows_the_spec() {
        assert_eq!(parse_grpc_timeout(b"1n"), Some(Duration::from_nanos(1)));
        assert_eq!(parse_grpc_timeout(b"500m"), Some(Duration::from_millis(500)));
        assert_eq!(parse_grpc_timeout(b"99999999H"), Some(Duration::from_secs(99_999_999 * 3600)));
        for bad in [&b"abc"[..], b"-1S", b"999999999S", b"S", b"10", b"1.5S", b"10s", b""] {
            assert_eq!(parse_grpc_timeout(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
