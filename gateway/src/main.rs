//! The `lienthong` command: `serve` (the default) and `check-config`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use lienthong::config::{Config, ConfigErrors};
use lienthong::server::adapter_registry;
use lienthong::telemetry::{self, TelemetryConfig, Tracing};

/// Lienthong: one gRPC gateway for a province's Digital Citizen app.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Log format.
    #[arg(long, global = true, env = "LIENTHONG_LOG", value_enum, default_value_t = LogFormat::Text)]
    log: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve gRPC (the default). Without a config file, serves the embedded
    /// sandbox for Ho Chi Minh City on 127.0.0.1:50051.
    Serve {
        /// The TOML config file.
        #[arg(long, short, env = "LIENTHONG_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Check a config file, reporting every problem with its path. Needs no
    /// network. The environment's LIENTHONG_* settings are checked with it;
    /// without a file, they are checked over the embedded sandbox config.
    CheckConfig {
        /// The TOML config file.
        #[arg(env = "LIENTHONG_CONFIG")]
        file: Option<PathBuf>,
        /// Then call each adapter instance that can be probed (a warehouse's
        /// datasets) a few times, and report what in its mapping finds
        /// nothing or does not filter. Needs the network. Exits 1 when
        /// anything is found.
        #[arg(long)]
        probe: bool,
    },
    /// Make a new admin token: prints the token (give it to the operator) and
    /// its SHA-256 digest (put it in `[admin] token_sha256`).
    AdminToken,
    /// Make a new API key for an app: prints the key (give it to the app's
    /// team) and its SHA-256 digest (put it in `[apps.<id>] api_key_sha256`).
    ApiKey,
    /// Make a new 256-bit key (64 hex digits) for `server.page_token_key` or
    /// `audit.chain_key`; give every replica the same.
    SecretKey,
    /// Work with an audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Make a development PKI for mutual TLS with an adapter service: a CA,
    /// the gateway's client certificate and the adapter's server certificate
    /// (for localhost, 127.0.0.1, ::1 and each --name), and print how to use
    /// them. For development and tests; production certificates come from
    /// the province's own PKI.
    DevCerts {
        /// The directory to write them into.
        #[arg(long, default_value = "dev-certs")]
        out: PathBuf,
        /// A host name or address the adapter service is reached at (may be
        /// repeated).
        #[arg(long = "name")]
        names: Vec<String>,
        /// How long they are valid, for example 30d.
        #[arg(long, default_value = "90d", value_parser = humantime::parse_duration)]
        valid_for: std::time::Duration,
        /// Replace files already there.
        #[arg(long)]
        force: bool,
    },
    /// Ask a running gateway's ops port whether it is ready (`GET /readyz`):
    /// exits 0 when it is, 1 when it is not or does not answer, printing
    /// why. The container image's health check, where there is no curl.
    Health {
        /// The ops port's address, as in `telemetry.ops_listen` (an
        /// unspecified address such as 0.0.0.0 is asked on loopback).
        #[arg(long, env = "LIENTHONG_TELEMETRY__OPS_LISTEN", default_value = "127.0.0.1:9464")]
        ops: std::net::SocketAddr,
        /// The path to ask: `/readyz` (ready for traffic) or `/livez` (alive).
        #[arg(long, default_value = "/readyz")]
        path: String,
        /// How long to wait for the answer.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Print the SHA-256 fingerprint of the first certificate in a PEM file,
    /// for `[apps.<id>] client_cert_sha256`.
    CertFingerprint {
        /// The app's client certificate (PEM).
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check an audit log's hash chain; names the first broken record.
    /// Exits 0 when the chain holds, 1 when it breaks, 2 when unreadable.
    Verify {
        /// The audit log (JSON lines); or, with --postgres, nothing.
        file: Option<PathBuf>,
        /// Verify the chain in PostgreSQL instead (a connection string).
        #[arg(long, requires = "schema")]
        postgres: Option<String>,
        /// With --postgres: the audit schema.
        #[arg(long)]
        schema: Option<String>,
        /// The head hash recorded elsewhere: records cut off at the end are
        /// caught only against it.
        #[arg(long)]
        expect_head: Option<String>,
    },
}

/// Logs to stderr, and traces per `config`. Colours only for a terminal,
/// never into files or pipes.
fn init_telemetry(config: &TelemetryConfig, format: LogFormat) -> Option<Tracing> {
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let format = match format {
        LogFormat::Text => telemetry::LogFormat::Text,
        LogFormat::Json => telemetry::LogFormat::Json,
    };
    match telemetry::init(config, format, std::io::stderr, ansi) {
        Ok(t) => Some(t),
        Err(e) => {
            eprintln!("lienthong: telemetry could not start: {e:#}");
            None
        }
    }
}

async fn check_config(file: Option<&std::path::Path>, probe: bool) -> ExitCode {
    let registry = adapter_registry();
    let name = file.map_or_else(|| "the embedded config with the environment".to_owned(), |f| f.display().to_string());
    match Config::load_checked(file, &registry) {
        Ok(config) => {
            println!(
                "{name}: OK ({} province(s), {} adapter instance(s))",
                config.provinces.len(),
                config.adapters.len()
            );
            if !probe {
                return ExitCode::SUCCESS;
            }
            let mut found = 0;
            for (name, instance) in &config.adapters {
                let Ok(factory) = registry.get(&instance.kind) else { continue };
                let options = serde_json::Value::Object(instance.options.clone());
                let Some(findings) = factory.probe(lienthong_adapter_core::BuildContext::new(name, options)).await
                else {
                    continue;
                };
                if findings.is_empty() {
                    println!("adapters.{name}: probed, nothing found");
                }
                for finding in &findings {
                    println!("adapters.{name}.{finding}");
                }
                found += findings.len();
            }
            if found == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) }
        }
        Err(ConfigErrors(errors)) => {
            eprintln!("{name}: {} problem(s) in the configuration:", errors.len());
            for e in errors {
                eprintln!("  {e}");
            }
            ExitCode::from(2)
        }
    }
}

fn new_secret(key: &str) -> ExitCode {
    match lienthong::crypto::new_token() {
        Ok(token) => {
            println!("secret: {token}");
            println!("digest: {}", lienthong::crypto::digest_hex(&token));
            eprintln!("keep the secret secret; configure only its digest: {key} = [\"<digest>\"]");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lienthong: {e}");
            ExitCode::FAILURE
        }
    }
}

fn dev_certs(out: &std::path::Path, names: &[String], valid_for: std::time::Duration, force: bool) -> ExitCode {
    use lienthong::crypto::dev_certs::{CA, CLIENT, CLIENT_KEY, DevCerts, SERVER, SERVER_KEY};
    let written = DevCerts::make(names, valid_for).and_then(|certs| certs.write(out, force));
    if let Err(e) = written {
        eprintln!("lienthong: {e:#}");
        return ExitCode::FAILURE;
    }
    let at = |name: &str| out.join(name).display().to_string();
    let host = names.first().map(String::as_str).unwrap_or("localhost");
    println!(
        "wrote a development CA, the gateway's client certificate and the adapter's server certificate to {}",
        out.display()
    );
    println!("valid for {} days; for development only\n", valid_for.as_secs() / 86_400);
    println!("# the adapter service (here the Python example) serves TLS and asks for the gateway's certificate:");
    println!(
        "python3 deploy/examples/python-adapter/server.py --port 50061 --tls-cert {} --tls-key {} --client-ca {}\n",
        at(SERVER),
        at(SERVER_KEY),
        at(CA)
    );
    println!("# the gateway's config: the remote instance trusts the CA and presents its certificate");
    println!(
        "[adapters.my-adapter]\nkind = \"remote\"\nendpoint = \"https://{host}:50061\"\ntls_ca_file = \"{}\"",
        at(CA)
    );
    println!(
        "[adapters.my-adapter.tls]\nclient_cert_file = \"{}\"\nclient_key_file = \"{}\"",
        at(CLIENT),
        at(CLIENT_KEY)
    );
    ExitCode::SUCCESS
}

fn new_key() -> ExitCode {
    match lienthong::crypto::SecretKey::random() {
        Ok(key) => {
            println!("{}", key.to_hex());
            eprintln!("keep it secret (an environment variable or a secret store); every replica needs the same");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lienthong: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn audit_verify(
    file: Option<&std::path::Path>,
    postgres: Option<(String, String)>,
    expect_head: Option<&str>,
    key: Option<&lienthong::crypto::SecretKey>,
) -> ExitCode {
    let (name, lines) = match (file, postgres) {
        (_, Some((url, schema))) => match lienthong::audit::postgres::read_all(&url, &schema).await {
            Ok(lines) => (format!("postgres schema {schema}"), lines),
            Err(e) => {
                eprintln!("cannot read the audit chain from PostgreSQL: {e}");
                return ExitCode::from(2);
            }
        },
        (Some(file), None) => match std::fs::read(file) {
            Ok(lines) => (file.display().to_string(), lines),
            Err(e) => {
                eprintln!("cannot read {}: {e}", file.display());
                return ExitCode::from(2);
            }
        },
        (None, None) => {
            eprintln!("name an audit file, or --postgres <url> --schema <schema>");
            return ExitCode::from(2);
        }
    };
    match lienthong::audit::verify::verify(lines.as_slice(), key) {
        Ok(v) => {
            if let Some(head) = expect_head
                && head != v.head
            {
                println!(
                    "{name}: {} records chain correctly, but the head is not the expected one: records were cut off at the end, or the chain was rewritten",
                    v.records
                );
                return ExitCode::from(1);
            }
            println!("{name}: OK, {} records; head {}", v.records, v.head);
            if v.torn_tail {
                println!("  the last line is partial: a write cut off by a crash, never acknowledged to any caller");
            }
            ExitCode::SUCCESS
        }
        Err(broken) => {
            println!("{name}: {broken}");
            ExitCode::from(1)
        }
    }
}

fn cert_fingerprint(file: &std::path::Path) -> ExitCode {
    let pem = match std::fs::read_to_string(file) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cannot read {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    match lienthong::crypto::pem_fingerprint(&pem) {
        Some(fingerprint) => {
            println!("{fingerprint}");
            ExitCode::SUCCESS
        }
        None => {
            eprintln!("{}: no PEM certificate found", file.display());
            ExitCode::from(2)
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

async fn health(ops: std::net::SocketAddr, path: &str, timeout: std::time::Duration) -> ExitCode {
    let addr = lienthong::ops::check::target(ops);
    match lienthong::ops::check::check(addr, path, timeout).await {
        Ok(body) => {
            println!("healthy: {body}");
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("unhealthy: {why}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config_path = match cli.command {
        Some(Command::CheckConfig { file, probe }) => return check_config(file.as_deref(), probe).await,
        Some(Command::AdminToken) => return new_secret("[admin] token_sha256"),
        Some(Command::ApiKey) => return new_secret("[apps.<id>] api_key_sha256"),
        Some(Command::SecretKey) => return new_key(),
        Some(Command::CertFingerprint { file }) => return cert_fingerprint(&file),
        Some(Command::Health { ops, path, timeout }) => return health(ops, &path, timeout).await,
        Some(Command::DevCerts { out, names, valid_for, force }) => return dev_certs(&out, &names, valid_for, force),
        Some(Command::Audit { command: AuditCommand::Verify { file, postgres, schema, expect_head } }) => {
            init_telemetry(&TelemetryConfig { ops_listen: None, ..Default::default() }, cli.log);
            // The chain key of a keyed chain comes from the environment only:
            // never on a command line, where `ps` and shell history keep it.
            let chain_key = std::env::var("LIENTHONG_AUDIT__CHAIN_KEY").ok();
            let key = match chain_key.as_deref().map(lienthong::crypto::SecretKey::from_hex) {
                None => None,
                Some(Some(key)) => Some(key),
                Some(None) => {
                    eprintln!("LIENTHONG_AUDIT__CHAIN_KEY must be 64 hex digits");
                    return ExitCode::from(2);
                }
            };
            return audit_verify(file.as_deref(), postgres.zip(schema), expect_head.as_deref(), key.as_ref()).await;
        }
        Some(Command::Serve { config }) => config,
        None => std::env::var_os("LIENTHONG_CONFIG").map(PathBuf::from),
    };
    let config = match Config::load_checked(config_path.as_deref(), &adapter_registry()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let Some(tracing) = init_telemetry(&config.telemetry, cli.log) else { return ExitCode::FAILURE };
    if let Some(endpoint) = &config.telemetry.otlp_endpoint {
        tracing::info!(
            endpoint,
            sampling_ratio = config.telemetry.sampling_ratio,
            "exporting traces and metrics over OTLP"
        );
    }
    if config_path.is_none() {
        tracing::info!("no config file given: serving the embedded Ho Chi Minh City sandbox");
    }
    let listener = match tokio::net::TcpListener::bind(config.server.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {}: {e}", config.server.listen);
            return ExitCode::FAILURE;
        }
    };
    let code = match lienthong::serve(config, listener, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lienthong: {e:#}");
            ExitCode::FAILURE
        }
    };
    // Export the spans still queued.
    let _ = tokio::task::spawn_blocking(move || tracing.shutdown()).await;
    code
}
