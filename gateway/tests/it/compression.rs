//! gzip on the wire: requests a client compressed, answers compressed for a
//! client that accepts gzip (above `server.compress_min_bytes`), from a
//! tonic client, Python's grpcio (the C core), and raw HTTP/2.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};

use bytes::{Buf, Bytes};
use lienthong_proto::v1::healthcare_service_client::HealthcareServiceClient;
use lienthong_proto::v1::{GetFacilityRequest, ListFacilitiesRequest, ListFacilitiesResponse};
use prost::Message;
use tonic::codec::CompressionEncoding;

use super::edge::{gateway, h2_client, post_grpc, raw_call};
use crate::common::wire::grpc_frame;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// A unary call over raw HTTP/2: the answer's headers and its message
/// frames (flag, bytes).
async fn frames_of(
    send: &mut h2::client::SendRequest<Bytes>,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (http::HeaderMap, Vec<(u8, Vec<u8>)>) {
    let response = post_grpc(send, path, headers, &body).await;
    let headers = response.headers().clone();
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    let trailers = body.trailers().await.unwrap().unwrap();
    assert_eq!(trailers["grpc-status"], "0", "{trailers:?}");
    let mut rest = Bytes::from(bytes);
    let mut frames = Vec::new();
    while rest.has_remaining() {
        let flag = rest.get_u8();
        let length = rest.get_u32() as usize;
        frames.push((flag, rest.split_to(length).to_vec()));
    }
    (headers, frames)
}

fn inflate(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).unwrap();
    out
}

#[tokio::test]
async fn answers_are_gzipped_for_callers_that_accept_it_and_above_the_threshold_only() {
    let gw = gateway("compress_answers = true").await;
    let mut send = h2_client(gw.addr).await;
    let list = ListFacilitiesRequest { page_size: 100, ..Default::default() }.encode_to_vec();
    let path = "/lienthong.v1.HealthcareService/ListFacilities";

    let (plain_headers, plain) = frames_of(&mut send, path, &[], grpc_frame(0, list.len() as u32, &list)).await;
    assert!(plain_headers.get("grpc-encoding").is_none());
    assert_eq!(plain.len(), 1);
    assert_eq!(plain[0].0, 0);
    let expected = ListFacilitiesResponse::decode(plain[0].1.as_slice()).unwrap();
    assert!(expected.facilities.len() > 50, "{}", expected.facilities.len());

    let accept = [("grpc-accept-encoding", "identity,deflate,gzip")];
    let (headers, zipped) = frames_of(&mut send, path, &accept, grpc_frame(0, list.len() as u32, &list)).await;
    assert_eq!(headers["grpc-encoding"], "gzip");
    assert_eq!(zipped.len(), 1);
    assert_eq!(zipped[0].0, 1, "the compressed flag");
    assert!(zipped[0].1.len() * 2 < plain[0].1.len(), "{} of {} bytes", zipped[0].1.len(), plain[0].1.len());
    assert_eq!(ListFacilitiesResponse::decode(inflate(&zipped[0].1).as_slice()).unwrap(), expected);

    // A small answer goes out plain, even to a caller that accepts gzip.
    let get = GetFacilityRequest { facility_code: expected.facilities[0].facility_code.clone() }.encode_to_vec();
    let (_, small) = frames_of(
        &mut send,
        "/lienthong.v1.HealthcareService/GetFacility",
        &accept,
        grpc_frame(0, get.len() as u32, &get),
    )
    .await;
    assert_eq!(small[0].0, 0);

    // Off (the default), nothing is compressed.
    let off = gateway("").await;
    let mut send = h2_client(off.addr).await;
    let (headers, frames) = frames_of(&mut send, path, &accept, grpc_frame(0, list.len() as u32, &list)).await;
    assert!(headers.get("grpc-encoding").is_none());
    assert_eq!(frames[0].0, 0);
}

#[tokio::test]
async fn a_gzipped_request_is_read_within_the_limit_after_inflating() {
    let gw = gateway("").await;
    let mut send = h2_client(gw.addr).await;
    let list = ListFacilitiesRequest { page_size: 3, text: "bệnh viện".into(), ..Default::default() }.encode_to_vec();
    let zipped = gzip(&list);
    let (_, frames) = frames_of(
        &mut send,
        "/lienthong.v1.HealthcareService/ListFacilities",
        &[("grpc-encoding", "gzip")],
        grpc_frame(1, zipped.len() as u32, &zipped),
    )
    .await;
    assert_eq!(ListFacilitiesResponse::decode(frames[0].1.as_slice()).unwrap().facilities.len(), 3);

    // 1 MiB of a text field in about 1 KiB: OUT_OF_RANGE, as if sent plain.
    let bomb = ListFacilitiesRequest { text: "a".repeat(1 << 20), ..Default::default() }.encode_to_vec();
    let zipped = gzip(&bomb);
    assert!(zipped.len() < 4096, "{}", zipped.len());
    let (_, status) = raw_call(
        &mut send,
        "/lienthong.v1.HealthcareService/ListFacilities",
        &[("grpc-encoding", "gzip")],
        &grpc_frame(1, zipped.len() as u32, &zipped),
    )
    .await;
    let (code, message) = status.unwrap();
    assert_eq!(code, 11, "{message}");
    assert!(message.contains("inflates") && message.contains("max_request_bytes"), "{message}");
}

#[tokio::test]
async fn a_tonic_client_compressing_both_ways_gets_the_same_answers() {
    let gw = gateway("compress_answers = true").await;
    let plain = HealthcareServiceClient::new(gw.channel.clone());
    let zipped = HealthcareServiceClient::new(gw.channel.clone())
        .send_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Gzip);
    let req = || ListFacilitiesRequest { page_size: 50, ..Default::default() };
    let expected = plain.clone().list_facilities(req()).await.unwrap().into_inner();
    let got = zipped.clone().list_facilities(req()).await.unwrap();
    assert_eq!(got.metadata().get("grpc-encoding").unwrap(), "gzip");
    assert_eq!(got.into_inner(), expected);
    let code = expected.facilities[0].facility_code.clone();
    let one = zipped.clone().get_facility(GetFacilityRequest { facility_code: code }).await.unwrap().into_inner();
    assert_eq!(one.facility.unwrap().facility_code, expected.facilities[0].facility_code);
}

#[tokio::test]
async fn python_grpcio_compressing_both_ways_gets_the_same_answers() {
    let gw = gateway("compress_answers = true").await;
    let req = ListFacilitiesRequest { page_size: 100, ..Default::default() }.encode_to_vec();
    let expected = HealthcareServiceClient::new(gw.channel.clone())
        .list_facilities(ListFacilitiesRequest { page_size: 100, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    // grpcio sends gzip when asked and accepts gzip by default; raw bytes
    // in and out, so no generated code is needed.
    let script = r#"
import sys, grpc
addr, request = sys.argv[1], bytes.fromhex(sys.argv[2])
with grpc.insecure_channel(addr, compression=grpc.Compression.Gzip) as channel:
    call = channel.unary_unary("/lienthong.v1.HealthcareService/ListFacilities")
    answer, status = call.with_call(request, timeout=10)
    print(answer.hex())
"#;
    let hex: String = req.iter().map(|b| format!("{b:02x}")).collect();
    let out = tokio::process::Command::new("python3")
        .args(["-c", script, &gw.addr.to_string(), &hex])
        .output()
        .await
        .expect("python3 with grpcio (tools/test installs it)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let bytes: Vec<u8> =
        (0..text.trim().len()).step_by(2).map(|i| u8::from_str_radix(&text.trim()[i..i + 2], 16).unwrap()).collect();
    assert_eq!(ListFacilitiesResponse::decode(bytes.as_slice()).unwrap(), expected);
}
