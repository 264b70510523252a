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
    /// WatchDossier to the end; without it a test citizen's dossiers are
    /// watched (and without those, the case is skipped).
    #[arg(long)]
    dossier_code: Option<String>,
    /// The 2-digit province whose data the adapter holds: every call is made
    /// for it (`x-lienthong-province`), for example 01 for Hà Nội. Default:
    /// the first the adapter says it holds, else 79.
    #[arg(long)]
    province: Option<String>,
    /// A test citizen's bearer token, for the personal cases (ListMyDossiers,
    /// OWNERSHIP, watching a citizen's dossier); with --other-citizen-token.
    /// Verified by --identity. Without them an adapter that mints demo tokens
    /// (the sandbox) is checked with two of its demo citizens.
    #[arg(long, requires = "other_citizen_token")]
    citizen_token: Option<String>,
    /// A second test citizen's token: OWNERSHIP checks neither sees the
    /// other's dossiers.
    #[arg(long, requires = "citizen_token")]
    other_citizen_token: Option<String>,
    /// The adapter kind that verifies the citizen tokens, when the adapter
    /// under test has no identity family (default: the sandbox's demo
    /// identity).
    #[arg(long, default_value = "sandbox")]
    identity: String,
    /// The options of the --identity adapter, as JSON.
    #[arg(long, default_value = "{}")]
    identity_options: String,
}

/// Builds an adapter instance of `kind` from JSON `options`.
async fn build(
    registry: &AdapterRegistry,
    kind: &str,
    options: &str,
    endpoint: Option<&str>,
) -> Result<lienthong_adapter_core::AdapterSet, String> {
    let factory = registry.get(kind).map_err(|e| e.to_string())?;
    let mut options: serde_json::Value =
        serde_json::from_str(options).map_err(|e| format!("the options of {kind:?} are not JSON: {e}"))?;
    if let (Some(endpoint), Some(map)) = (endpoint, options.as_object_mut()) {
        map.insert("endpoint".into(), serde_json::Value::String(endpoint.to_owned()));
    }
    let problems = factory.validate(&options);
    if !problems.is_empty() {
        return Err(format!("invalid options for {kind:?}:\n  {}", problems.join("\n  ")));
    }
    let ctx = lienthong_adapter_core::BuildContext::new("under-test", options);
    factory.build(ctx).await.map_err(|e| format!("building the {kind} adapter failed: {e}"))
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
    let adapters = match build(&registry, &cli.adapter, &cli.options, cli.endpoint.as_deref()).await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let (province, said) = match (&cli.province, adapters.provinces.first()) {
        (Some(p), _) => (p.clone(), "--province"),
        (None, Some(p)) => (p.clone(), "what the adapter says it holds"),
        (None, None) => ("79".to_owned(), "the default; the adapter does not say"),
    };
    let for_province = format!("province {province} ({said})");
    let mut target = lienthong_contract_tests::Target::new(adapters, province);
    target.dossier_code = cli.dossier_code.clone();
    let target = match (&cli.citizen_token, &cli.other_citizen_token) {
        (Some(first), Some(second)) => {
            let verifier = if target.adapters.identity.is_some() {
                target.adapters.clone()
            } else {
                match build(&registry, &cli.identity, &cli.identity_options, None).await {
                    Ok(a) => a,
                    Err(e) => {
                        eprintln!("{e}");
                        return ExitCode::from(2);
                    }
                }
            };
            match target.with_citizen_tokens(&verifier, first, second).await {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            }
        }
        _ => target.with_demo_citizens().await,
    };
    let report = lienthong_contract_tests::run_target(&target).await;
    println!("contract suite against adapter kind {:?}, {for_province}\n{report}", cli.adapter);
    if report.violations().any(|(_, v)| v.rule == lienthong_contract_tests::UNREACHABLE) {
        let at = cli.endpoint.as_deref().map(|e| format!(" at {e}")).unwrap_or_default();
        eprintln!("cannot reach the adapter{at}: is it running, and is the endpoint (and its TLS) right?");
    }
    if report.counts().1 == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
