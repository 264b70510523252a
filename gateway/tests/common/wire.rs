//! Raw HTTP/2 and gRPC framing for attackers (the edge tests and the
//! `wire_attack` example): frames written by hand, so that they can break
//! every rule a well-behaved client library keeps.
#![allow(dead_code)]

/// The HTTP/2 connection preface.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// An HTTP/2 frame.
pub fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HEADERS (END_HEADERS, no END_STREAM) of a GetProcedure call whose body
/// never comes: literals without indexing (HPACK §6.2.2).
pub fn headers_only(stream: u32) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/lienthong.v1.PublicServicesService/GetProcedure"),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] {
        block.push(0x00);
        block.push(name.len() as u8);
        block.extend_from_slice(name.as_bytes());
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    h2_frame(0x1, 0x4, stream, &block)
}

/// What a client that holds streams sends: the preface, an empty SETTINGS,
/// and `streams` headers-only calls (odd stream ids from 1).
pub fn stalled_streams(streams: u32) -> Vec<u8> {
    let mut out = PREFACE.to_vec();
    out.extend(h2_frame(0x4, 0, 0, &[]));
    for i in 0..streams {
        out.extend(headers_only(2 * i + 1));
    }
    out
}

/// A gRPC message frame declaring `declared` bytes.
pub fn grpc_frame(flag: u8, declared: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![flag];
    f.extend_from_slice(&declared.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Every method the gateway serves: its own descriptors', health's and
/// reflection's.
pub fn every_method() -> Vec<String> {
    use prost::Message as _;
    let Ok(set) = prost_types::FileDescriptorSet::decode(lienthong_proto::FILE_DESCRIPTOR_SET) else {
        return Vec::new();
    };
    let mut paths: Vec<String> = set
        .file
        .iter()
        .flat_map(|f| {
            f.service
                .iter()
                .flat_map(move |s| s.method.iter().map(move |m| format!("/{}.{}/{}", f.package(), s.name(), m.name())))
        })
        .collect();
    paths.extend(
        [
            "/grpc.health.v1.Health/Check",
            "/grpc.health.v1.Health/Watch",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ]
        .map(str::to_owned),
    );
    paths
}

/// Bytes of base64 `text` (gRPC-Web text: each frame padded on its own).
pub fn base64_decode(text: &[u8]) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let (mut out, mut acc, mut bits) = (Vec::new(), 0u32, 0);
    for c in text {
        if *c == b'=' {
            (acc, bits) = (0, 0);
            continue;
        }
        let Some(v) = ALPHABET.iter().position(|a| a == c) else { continue };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}
