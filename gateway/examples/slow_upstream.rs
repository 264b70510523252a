//! A slow public-service portal for the herd and overload benchmarks: the
//! contract suite's fake portal (real HTTP) answering every request after
//! `--latency`. Prints `listening on <addr>`, then answers lines on stdin:
//! `hits <path>` prints how many requests reached that path.
//!
//!     cargo run --release -p lienthong --example slow_upstream -- --latency 500ms

#[path = "common/help.rs"]
mod help;

use lienthong_contract_tests::fakes::{FakePortal, Fault};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if help::asked(include_str!("slow_upstream.rs")) {
        return Ok(());
    }
    let args: Vec<String> = std::env::args().collect();
    let latency = args.iter().position(|a| a == "--latency").and_then(|i| args.get(i + 1)).map_or("100ms", |s| s);
    let portal = FakePortal::start().await?;
    portal.faults.inject("/", Fault::Latency(humantime::parse_duration(latency)?));
    println!("listening on {}", portal.url());
    portal.faults.answer_hits_on_stdin().await?;
    Ok(())
}
