//! An answer's metadata: whether it came from the cache, and its age.

use std::time::Duration;

use tonic::metadata::{Ascii, MetadataKey};

pub use crate::telemetry::rpc::CACHE_HEADER;

/// Response metadata telling a signed-in owner why they got the public view
/// of their own record (their identity level is below what it needs).
pub const VIEW_REASON_HEADER: &str = "x-lienthong-view-reason";

/// Response metadata: the age in seconds of a cached answer.
pub const AGE_HEADER: &str = "x-lienthong-age-seconds";

/// An answer and how fresh it is (`None`: not cached, fetched just now).
#[derive(Debug)]
pub struct Answer<T> {
    /// The answer.
    pub value: T,
    /// Freshness and age, when it went through the cache.
    pub freshness: Option<(crate::policy::cache::Freshness, Duration)>,
}

impl<T> Answer<T> {
    /// Transforms the value, keeping the freshness.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Answer<U> {
        Answer { value: f(self.value), freshness: self.freshness }
    }

    /// The gRPC response, with `x-lienthong-cache` and `x-lienthong-age-seconds`.
    pub fn into_response(self) -> tonic::Response<T> {
        let freshness = self.freshness;
        with_freshness(tonic::Response::new(self.value), freshness)
    }
}

impl Answer<Encoded> {
    /// The gRPC response whose message is already on the wire's form: tonic
    /// is handed an empty `T`, and [`crate::edge::encoded`] writes these
    /// bytes in its place.
    pub fn into_encoded_response<T: Default>(self) -> tonic::Response<T> {
        let mut r = tonic::Response::new(T::default());
        r.extensions_mut().insert(self.value);
        with_freshness(r, self.freshness)
    }
}

/// A response message already framed for the wire (gRPC's
/// Length-Prefixed-Message: flag 0, length, message), as the cache keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded(pub bytes::Bytes);

impl Encoded {
    /// `message`, framed.
    pub fn frame(message: &impl prost::Message) -> Self {
        let mut buf = header(message.encoded_len());
        // A Vec grows as needed: encoding into it cannot fail.
        let _ = message.encode(&mut buf);
        Self(buf.into())
    }

    /// An encoded message, framed.
    pub fn frame_bytes(message: &[u8]) -> Self {
        let mut buf = header(message.len());
        buf.extend_from_slice(message);
        Self(buf.into())
    }

    /// The message, decoded; `None` when these bytes are not a frame of a `T`.
    pub fn decode<T: prost::Message + Default>(&self) -> Option<T> {
        T::decode(self.0.get(5..)?).ok()
    }
}

/// A frame's prefix (flag 0, then the length), in a buffer with room for
/// the `len` bytes of its message.
fn header(len: usize) -> Vec<u8> {
    let mut buf = Vec::with_capacity(5 + len);
    buf.push(0);
    // Longer than u32 cannot be encoded by prost either.
    buf.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
    buf
}

fn with_freshness<T>(
    mut r: tonic::Response<T>,
    freshness: Option<(crate::policy::cache::Freshness, Duration)>,
) -> tonic::Response<T> {
    let (state, age) = match freshness {
        Some((f, age)) => (f.as_str(), Some(age)),
        None => ("bypass", None),
    };
    // Header names made once: parsing them costs more than the insert.
    static KEYS: std::sync::LazyLock<[MetadataKey<Ascii>; 2]> =
        std::sync::LazyLock::new(|| [MetadataKey::from_static(CACHE_HEADER), MetadataKey::from_static(AGE_HEADER)]);
    let [cache, age_seconds] = &*KEYS;
    r.metadata_mut().insert(cache, tonic::metadata::MetadataValue::from_static(state));
    if let Some(age) = age {
        r.metadata_mut().insert(age_seconds, tonic::metadata::MetadataValue::from(age.as_secs()));
    }
    r
}

/// `grpc-timeout` per the gRPC over HTTP/2 spec: `TimeoutValue TimeoutUnit`,
/// at most 8 ASCII digits.
pub fn parse_grpc_timeout(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}
