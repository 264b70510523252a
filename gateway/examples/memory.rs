//! Memory benchmark: the gateway's own response cache and rate limiters,
//! filled with `--entries` cached answers (distinct GetTrafficCamera requests,
//! each holding a real sandbox camera record) and `--citizens` distinct
//! per-citizen limiter keys; prints the process's resident memory before and
//! after, and its peak, as JSON.
//!
//!     cargo run --release -p lienthong --example memory -- --entries 1000000 --citizens 1000000

#[path = "common/help.rs"]
mod help;

use std::time::Duration;

use lienthong::call::metadata::Encoded;
use lienthong::policy::cache::{CachePolicy, FillFuture, ResponseCache, key};
use lienthong::policy::limits::{Limiters, LimitsConfig};
use lienthong_adapter_core::{CallContext, CitizenId, Method, TransportAdapter, api};
use lienthong_adapter_sandbox::{Sandbox, SandboxConfig};
use prost::Message;

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn arg(name: &str, default: u64) -> u64 {
    help::arg(name, "").parse().unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if help::asked(include_str!("memory.rs")) {
        return Ok(());
    }
    let (entries, citizens) = (arg("--entries", 1_000_000), arg("--citizens", 1_000_000));
    let sandbox = Sandbox::new(SandboxConfig::default())?;
    let ctx = CallContext::anonymous("79");
    let cameras = sandbox
        .list_traffic_cameras(&ctx, api::ListTrafficCamerasRequest { page_size: 100, ..Default::default() })
        .await?;
    let cameras = cameras.cameras;
    anyhow::ensure!(!cameras.is_empty(), "the sandbox has no cameras");
    let answer_bytes = cameras.iter().map(|c| c.encoded_len()).sum::<usize>() / cameras.len();
    let start_kib = status_kib("VmRSS:");

    let cache = ResponseCache::new(8 << 30);
    let policy = CachePolicy::fresh_for(Duration::from_secs(3600));
    for i in 0..entries {
        let request = api::GetTrafficCameraRequest { camera_id: format!("cam-{i:08}") };
        let k = key("79", "sandbox", Method::GetTrafficCamera, b"", &request);
        let mut camera = cameras[i as usize % cameras.len()].clone();
        camera.camera_id = request.camera_id.clone();
        // Stored as the gateway stores it: the response, framed for the wire.
        let stored = Encoded::frame(&api::GetTrafficCameraResponse { camera: Some(camera) }).0;
        let fill = move || -> FillFuture { Box::pin(std::future::ready(Ok(stored))) };
        cache.get_or_fill(k, &policy, None, fill).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let (cached, weighted) = cache.usage_now();
    let cache_kib = status_kib("VmRSS:");

    let limiters = Limiters::new(&LimitsConfig::default());
    for i in 0..citizens {
        let id = CitizenId::parse(&format!("0791{:08}", i % 100_000_000)).map_err(|e| anyhow::anyhow!(e))?;
        limiters.check_citizen(&id, Method::GetMyProfile).map_err(|e| anyhow::anyhow!("{}", e.message()))?;
    }
    let tracked = limiters.tracked_citizens();
    let end_kib = status_kib("VmRSS:");
    println!(
        "{}",
        serde_json::json!({
            "entries": cached,
            "cache_weighted_bytes": weighted,
            "mean_answer_encoded_bytes": answer_bytes,
            "limiter_keys": tracked,
            "rss_start_mib": start_kib / 1024,
            "rss_after_cache_mib": cache_kib / 1024,
            "rss_end_mib": end_kib / 1024,
            "rss_peak_mib": status_kib("VmHWM:") / 1024,
            "cache_bytes_per_entry": (cache_kib.saturating_sub(start_kib) * 1024) / entries.max(1),
            "limiter_bytes_per_key": (end_kib.saturating_sub(cache_kib) * 1024) / citizens.max(1),
        })
    );
    Ok(())
}
