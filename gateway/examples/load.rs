//! An open-loop gRPC load driver for the overload benchmark: sends
//! `GetAgency` at a fixed rate whatever the answers, over several HTTP/2
//! connections, and reports each outcome's response time, measured from when
//! the request was due (so a lagging driver cannot hide queueing; it includes
//! the driver's own timer lag, up to about a millisecond), and its service
//! time, from when it was sent. h2load cannot tell a shed call (gRPC status
//! 14 in trailers) from a served one; this can.
//!
//!     cargo run --release -p lienthong --example load -- \
//!         --target http://127.0.0.1:50080 --rate 8000 --seconds 10 --connections 16
//!
//! With `--tokens FILE` (one citizen token per line) it sends
//! `IdentityService/GetMyProfile` instead, each call with the next token.
//!
//! Prints one JSON object.

#[path = "common/help.rs"]
mod help;

use std::collections::BTreeMap;
use std::time::Duration;

use lienthong_proto::v1::identity_service_client::IdentityServiceClient;
use lienthong_proto::v1::public_services_service_client::PublicServicesServiceClient;
use lienthong_proto::v1::{GetAgencyRequest, GetMyProfileRequest};
use tokio::time::Instant;
use tonic::transport::Endpoint;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if help::asked(include_str!("load.rs")) {
        return Ok(());
    }
    let target = help::arg("--target", "http://127.0.0.1:50080");
    let rate: u64 = help::arg("--rate", "1000").parse()?;
    let seconds: u64 = help::arg("--seconds", "10").parse()?;
    let connections: usize = help::arg("--connections", "16").parse()?;
    let agency = help::arg("--agency", "000.00.06.H29");
    let tokens: Vec<tonic::metadata::MetadataValue<tonic::metadata::Ascii>> = match help::arg("--tokens", "").as_str() {
        "" => Vec::new(),
        file => std::fs::read_to_string(file)?
            .lines()
            .filter(|l| !l.is_empty())
            .map(|t| format!("Bearer {t}").parse())
            .collect::<Result<_, _>>()?,
    };
    let mut channels = Vec::new();
    for _ in 0..connections.max(1) {
        channels.push(Endpoint::from_shared(target.clone())?.connect().await?);
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tonic::Code, Duration, Duration)>();
    let total = rate * seconds;
    let start = Instant::now();
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
        tokio::time::sleep_until(due).await;
        let channel = channels[i as usize % channels.len()].clone();
        let tx = tx.clone();
        if tokens.is_empty() {
            let mut client = PublicServicesServiceClient::new(channel);
            let request = GetAgencyRequest { agency_code: agency.clone() };
            tokio::spawn(async move {
                let sent = Instant::now();
                let code = client.get_agency(request).await.map_or_else(|s| s.code(), |_| tonic::Code::Ok);
                let _ = tx.send((code, due.elapsed(), sent.elapsed()));
            });
        } else {
            let mut client = IdentityServiceClient::new(channel);
            let mut request = tonic::Request::new(GetMyProfileRequest::default());
            request.metadata_mut().insert("authorization", tokens[i as usize % tokens.len()].clone());
            tokio::spawn(async move {
                let sent = Instant::now();
                let code = client.get_my_profile(request).await.map_or_else(|s| s.code(), |_| tonic::Code::Ok);
                let _ = tx.send((code, due.elapsed(), sent.elapsed()));
            });
        }
    }
    let sent_in = start.elapsed();
    drop(tx);
    let mut by_code: BTreeMap<String, (Vec<Duration>, Vec<Duration>)> = BTreeMap::new();
    while let Some((code, response, service)) = rx.recv().await {
        let e = by_code.entry(format!("{code:?}")).or_default();
        e.0.push(response);
        e.1.push(service);
    }
    let mut out = serde_json::Map::new();
    out.insert("offered_rps".into(), (total as f64 / sent_in.as_secs_f64()).round().into());
    for (code, (mut response, mut service)) in by_code {
        response.sort();
        service.sort();
        out.insert(
            code,
            serde_json::json!({
                "count": response.len(),
                "p50_ms": percentile(&response, 0.50),
                "p99_ms": percentile(&response, 0.99),
                "max_ms": percentile(&response, 1.0),
                "service_p50_ms": percentile(&service, 0.50),
                "service_p99_ms": percentile(&service, 0.99),
                "service_max_ms": percentile(&service, 1.0),
            }),
        );
    }
    println!("{}", serde_json::Value::Object(out));
    Ok(())
}
