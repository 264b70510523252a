//! Runs the contract suite against an adapter and prints a report naming
//! every rule it breaks. Exits 1 when any case fails.
//!
//!     cargo run -p lienthong-contract-tests -- --adapter sandbox

use std::process::ExitCode;

use clap::Parser;
use lienthong_adapter_core::AdapterRegistry;

/// The Lienthong adapter contract suite.
#[derive(Debug, Parser)]
#[command(about)]
struct Cli {
    /// The adapter kind to test.
    #[arg(long, default_value = "sandbox")]
    adapter: String,
    /// The adapter's options as JSON (as under [adapters.<name>] in config).
    #[arg(long, default_value = "{}")]
    options: String,
    /// For `--adapter remote`: the adapter service's URL (sets the
    /// `endpoint` option).
    #[arg(long)]
    endpoint: Option<String>,
    /// A dossier that reaches a final status while watched, to check
    /// WatchDossier (the case is skipped without it).
    #[arg(long)]
    dossier_code: Option<String>,
    /// The 2-digit province whose data the adapter holds: every call is made
    /// for it (`x-lienthong-province`), for example 01 for Hà Nội.
    #[arg(long, default_value = "79")]
    province: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut registry = AdapterRegistry::new();
    lienthong_adapter_sandbox::register(&mut registry);
    lienthong_adapter_vneid::register(&mut registry);
    lienthong_adapter_warehouse_http::register(&mut registry);
    lienthong_adapter_registry_http::register(&mut registry);
    lienthong_adapter_remote::register(&mut registry);
    let factory = match registry.get(&cli.adapter) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let mut options: serde_json::Value = match serde_json::from_str(&cli.options) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("--options is not JSON: {e}");
            return ExitCode::from(2);
        }
    };
    if let (Some(endpoint), Some(map)) = (&cli.endpoint, options.as_object_mut()) {
        map.insert("endpoint".into(), serde_json::Value::String(endpoint.clone()));
    }
    let problems = factory.validate(&options);
    if !problems.is_empty() {
        eprintln!("invalid options:\n  {}", problems.join("\n  "));
        return ExitCode::from(2);
    }
    let ctx = lienthong_adapter_core::BuildContext::new("under-test", options);
    let adapters = match factory.build(ctx).await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("building the {} adapter failed: {e}", cli.adapter);
            return ExitCode::FAILURE;
        }
    };
    let target = lienthong_contract_tests::Target { adapters, dossier_code: cli.dossier_code, province: cli.province };
    let report = lienthong_contract_tests::run_target(&target).await;
    println!("contract suite against adapter kind {:?}\n{report}", cli.adapter);
    if report.violations().any(|(_, v)| v.rule == lienthong_contract_tests::UNREACHABLE) {
        let at = cli.endpoint.as_deref().map(|e| format!(" at {e}")).unwrap_or_default();
        eprintln!("cannot reach the adapter{at}: is it running, and is the endpoint (and its TLS) right?");
    }
    if report.counts().1 == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
