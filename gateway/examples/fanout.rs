//! Fan-out benchmark: how long a message published on one replica's shared
//! state (`[cluster]`, Redis streams: what carries cache invalidations and
//! dossier status changes) takes to reach the subscribers on two other
//! replicas. Three replicas' shared state, each with its own Redis
//! connections, in one process (one clock); `--messages` messages published
//! at `--rate` a second; prints p50, p99 and the largest latency, and how
//! many arrived, as JSON.
//!
//!     cargo run --release -p lienthong --example fanout -- --redis redis://127.0.0.1:6379 --messages 5000 --rate 500

#[path = "common/help.rs"]
mod help;

use std::time::Duration;

use lienthong::cluster::shared::Streams;
use lienthong::cluster::{Cluster, ClusterConfig};
use lienthong_adapter_core::Delivery;
use tokio::time::Instant;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if help::asked(include_str!("fanout.rs")) {
        return Ok(());
    }
    let redis = help::arg("--redis", "redis://127.0.0.1:6379");
    let messages: u64 = help::arg("--messages", "5000").parse()?;
    let rate: u64 = help::arg("--rate", "500").parse()?;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos();
    let config = ClusterConfig {
        redis_url: redis,
        key_prefix: format!("lienthong-bench:fanout:{nanos}:"),
        command_timeout: Duration::from_secs(1),
        ..Default::default()
    };
    let key = lienthong::crypto::SecretKey::random()?;
    let mut replicas = Vec::new();
    for name in ["a", "b", "c"] {
        let streams = Streams::start(Cluster::new(&config)?, &key, name.to_owned())?;
        replicas.push(streams);
    }
    let scopes: Vec<_> = replicas.iter().map(|r| r.scope("bench")).collect();
    let start = Instant::now();
    let mut receivers = Vec::new();
    for scope in &scopes[1..] {
        let mut rx = scope.subscribe("changes");
        receivers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while let Ok(Ok(delivery)) = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
                if let Delivery::Message(m) = delivery {
                    let sent = u64::from_be_bytes(m[..8].try_into().unwrap_or_default());
                    let now = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
                    latencies.push(now.saturating_sub(sent));
                }
            }
            latencies
        }));
    }
    for r in &replicas {
        r.settle().await;
    }
    let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate.max(1)));
    for _ in 0..messages {
        tick.tick().await;
        let now = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        // What a status change weighs: a dossier with its history, about 1 KB.
        let mut message = now.to_be_bytes().to_vec();
        message.resize(1024, b'x');
        scopes[0].publish("changes", message).await?;
    }
    let mut all = Vec::new();
    let mut received = Vec::new();
    for r in receivers {
        let l = r.await?;
        received.push(l.len());
        all.extend(l);
    }
    all.sort_unstable();
    let pick =
        |p: f64| all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1))).copied().unwrap_or(0);
    let ms = |n: u64| n as f64 / 1e6;
    println!(
        "{}",
        serde_json::json!({
            "published": messages,
            "rate_per_second": rate,
            "received_per_replica": received,
            "p50_ms": ms(pick(0.50)),
            "p99_ms": ms(pick(0.99)),
            "max_ms": ms(all.last().copied().unwrap_or(0)),
        })
    );
    Ok(())
}
