//! Outbox benchmark: the store's share of a report submission. Submissions
//! arrive open-loop at `--rate` a second for `--seconds` (each at its
//! scheduled time, however long the earlier ones take), each answered only
//! once committed and synced to disk (SQLite, WAL, synchronous FULL, group
//! commit); prints p50, p99 and the largest latency, and the process's CPU
//! per submission, beside a bare baseline measured just before on the same
//! disk (a plain file, one 1 KB append and fdatasync per submission), as
//! JSON.
//!
//!     cargo run --release -p lienthong --example outbox -- --rate 500 --seconds 10 [--dir /var/tmp]

#[path = "common/help.rs"]
mod help;

use std::time::Duration;

use lienthong::outbox::Submission;
use lienthong::outbox::sqlite::SqliteOutbox;
use tokio::time::Instant;

/// The process's CPU time (user + system; Linux counts it in 1/100 s).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// p50 and p99 (ms) of appending 1 KB to `path` and syncing it, `rate` a
/// second for `seconds`, measured from each one's scheduled time.
fn bare_fsync(path: &std::path::Path, rate: u64, seconds: u64) -> anyhow::Result<(f64, f64)> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    let start = std::time::Instant::now();
    let mut latencies = Vec::new();
    for n in 0..rate * seconds {
        let at = start + Duration::from_nanos(n * 1_000_000_000 / rate.max(1));
        if let Some(wait) = at.checked_duration_since(std::time::Instant::now()) {
            std::thread::sleep(wait);
        }
        file.write_all(&[0x5a; 1024])?;
        file.sync_data()?;
        latencies.push(at.elapsed());
    }
    latencies.sort_unstable();
    let pick = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)].as_secs_f64() * 1e3;
    Ok((pick(0.50), pick(0.99)))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if help::asked(include_str!("outbox.rs")) {
        return Ok(());
    }
    let rate: u64 = help::arg("--rate", "500").parse()?;
    let seconds: u64 = help::arg("--seconds", "10").parse()?;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos();
    let dir = std::path::PathBuf::from(help::arg("--dir", &std::env::temp_dir().display().to_string()))
        .join(format!("lienthong-outbox-bench-{nanos}"));
    std::fs::create_dir_all(&dir)?;
    // The bare baseline, on the same disk just before: each submission one
    // 1 KB append and fdatasync of a plain file, at the same times.
    let bare = bare_fsync(&dir.join("bare.log"), rate, seconds)?;
    let outbox = SqliteOutbox::open(&dir.join("reports.sqlite"))?;
    // A report with its text and place, sealed: about 1 KB.
    let body = vec![0x5a; 1024];
    let (cpu, start) = (cpu_seconds(), Instant::now());
    let mut tasks = tokio::task::JoinSet::new();
    let total = rate * seconds;
    for n in 0..total {
        let at = start + Duration::from_nanos(n * 1_000_000_000 / rate.max(1));
        tokio::time::sleep_until(at).await;
        let (outbox, body) = (outbox.clone(), body.clone());
        tasks.spawn(async move {
            let submission = Submission { citizen: format!("c-{}", n % 1000), idempotency_key: format!("k-{n}"), body };
            let now_ms = i64::try_from(nanos / 1_000_000).unwrap_or(0);
            outbox.submit(submission, now_ms).await.map(|_| at.elapsed())
        });
    }
    let mut latencies = Vec::with_capacity(total as usize);
    while let Some(done) = tasks.join_next().await {
        latencies.push(done??);
    }
    let cpu_us = (cpu_seconds() - cpu) / total.max(1) as f64 * 1e6;
    latencies.sort_unstable();
    let pick = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)].as_secs_f64() * 1e3;
    println!(
        "{}",
        serde_json::json!({
            "submissions": total,
            "rate_per_second": rate,
            "p50_ms": pick(0.50),
            "p99_ms": pick(0.99),
            "max_ms": pick(1.0),
            "cpu_us_per_submission": cpu_us,
            "bare_fsync_p50_ms": bare.0,
            "bare_fsync_p99_ms": bare.1,
            "p99_over_bare_p99": pick(0.99) / bare.1.max(1e-3),
        })
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
