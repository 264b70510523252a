//! Configuration: every problem reported at once with its path, strict keys,
//! environment overrides, and the `check-config` command.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use lienthong::config::{Config, ConfigErrors};
use lienthong::server::adapter_registry;

const BROKEN: &str = r#"
[server]
listen = "127.0.0.1:50051"
drain_timeout = "10 minutes"
default_deadline = "1ms"
grpc_web = true
cors_allowed_origins = ["app.example.vn"]

[anonymous]
enabled = true
provinces = ["79", "01"]
scopes = ["everything"]

[telemtry]
enabled = true

[identity]
min_level = { ListMyDosiers = 2, GetMyProfile = 3 }

[cache]
max_bytes = 10
policies = { GetMyProfile = { ttl = "1m", stale_if_error = "1h" }, WatchDossier = { ttl = "1m" }, ListSchools = { ttl = "0s" } }

[breaker]
failure_rate = 2.0

[bulkhead]
per_instance = { ghost = 4 }

[retry]
max_attempts = 0

[admin]
token_sha256 = ["hunter2"]

[apps.kiosk]
provinces = ["79"]
allow = ["HealthService/*"]
client_cert_sha256 = ["ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"]

[apps.copycat]
provinces = ["79"]
allow = ["*"]
api_key_sha256 = ["ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"]

[apps.ghost]
provinces = ["79"]
allow = ["*"]

[provinces."79"]
identity = "sandbox"
transport = "missing"

[provinces."74"]
helth = "sandbox"

[provinces."99"]
healthcare = "sandbox"

[adapters.sandbox]
kind = "sandbox"
dossier_pace = "1ms"

[adapters.vendor]
kind = "warehouse-soap"

[adapters.typo]
kind = "sandbox"
dossier_pase = "30s"
"#;

fn problems(toml_text: &str) -> Vec<String> {
    let dir = tempdir();
    let path = dir.join("lienthong.toml");
    std::fs::write(&path, toml_text).unwrap();
    let errors = match Config::load_checked(Some(&path), &adapter_registry()) {
        Ok(_) => Vec::new(),
        Err(ConfigErrors(e)) => e.into_iter().map(|e| e.to_string()).collect(),
    };
    std::fs::remove_dir_all(dir).ok();
    errors
}

fn tempdir() -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("lienthong-config-{}-{:?}", std::process::id(), std::thread::current().id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn has(errors: &[String], path: &str, words: &str) {
    assert!(
        errors.iter().any(|e| e.starts_with(&format!("{path}: ")) && e.contains(words)),
        "no error at {path} mentioning {words:?} in:\n{}",
        errors.join("\n")
    );
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let errors = problems(BROKEN);
    has(&errors, "server.drain_timeout", "");
    has(&errors, "telemtry", "unknown section");
    has(&errors, "provinces.74.helth", "unknown key `helth`; did you mean `healthcare`?");
    has(&errors, "provinces.74", "not a province code");
    has(&errors, "adapters.typo.dossier_pase", "unknown key `dossier_pase`; did you mean `dossier_pace`?");
    has(&errors, "provinces.99", "not a province code");
    has(&errors, "provinces.79.transport", "no adapter instance named \"missing\"");
    has(&errors, "adapters.vendor.kind", "known kinds: registry-http, remote, sandbox, vneid, warehouse-http");
    has(&errors, "adapters.sandbox.dossier_pace", "must be at least 100ms");
    has(&errors, "anonymous.provinces[1]", "\"01\" is not configured");
    has(&errors, "anonymous.scopes[0]", "unknown scope");
    has(&errors, "server.cors_allowed_origins[0]", "is not an origin");
    has(&errors, "identity.min_level.ListMyDosiers", "not an RPC");
    has(&errors, "identity.min_level.GetMyProfile", "1 (basic) or 2 (verified)");
    has(&errors, "cache.policies.GetMyProfile", "never served stale");
    has(&errors, "cache.policies.WatchDossier", "not a cacheable RPC");
    has(&errors, "server.default_deadline", "between 100ms and 5m");
    has(&errors, "breaker.failure_rate", "at most 1");
    has(&errors, "bulkhead.per_instance.ghost", "no adapter instance");
    has(&errors, "retry.max_attempts", "between 1");
    has(&errors, "admin.token_sha256[0]", "never the token itself");
    has(&errors, "apps.kiosk.allow[0]", "names no RPC");
    has(&errors, "apps.kiosk.client_cert_sha256", "server.tls.client_ca_file");
    has(&errors, "apps.kiosk", "registered for app \"copycat\" too");
    has(&errors, "apps.ghost", "at least one credential");
    has(&errors, "cache.policies.ListSchools.ttl", "more than 0");
    has(&errors, "cache.max_bytes", "at least 1 MiB");
    assert!(errors.len() >= 17, "{errors:#?}");
}

#[test]
fn the_embedded_default_and_the_example_are_valid() {
    Config::load(None).unwrap().validate(&adapter_registry()).unwrap();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/lienthong.example.toml");
    let config = Config::load_checked(Some(std::path::Path::new(example)), &adapter_registry()).unwrap();
    assert_eq!(config.server.listen.to_string(), "0.0.0.0:50051");
    assert_eq!(config.adapters.len(), 4);
    let sandbox = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/lienthong.sandbox.example.toml");
    Config::load_checked(Some(std::path::Path::new(sandbox)), &adapter_registry()).unwrap();
}

#[test]
fn a_file_that_is_not_toml_is_reported() {
    let errors = problems("[server\nlisten = ");
    assert_eq!(errors.len(), 1, "{errors:?}");
}

#[test]
fn check_config_command_reports_and_exits_non_zero() {
    let bin = env!("CARGO_BIN_EXE_lienthong");
    let dir = tempdir();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, BROKEN).unwrap();
    let out = Command::new(bin).arg("check-config").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("problem(s)")
            && stderr.contains("provinces.79.transport")
            && stderr.contains("adapters.vendor.kind"),
        "{stderr}"
    );

    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/lienthong.example.toml");
    let out = Command::new(bin).arg("check-config").arg(example).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));

    // Environment overrides are applied, and checked like the file.
    let out = Command::new(bin)
        .arg("check-config")
        .arg(example)
        .env("LIENTHONG_SERVER__DRAIN_TIMEOUT", "forever")
        .env("LIENTHONG_ADAPTERS__VNEID__CLOCK_SKEW", "10m")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("server.drain_timeout") && stderr.contains("clock_skew: must be at most 5m"), "{stderr}");
    std::fs::remove_dir_all(dir).ok();
}

/// A dozen mistakes scattered over sections, two or three to a table.
const SCATTERED: &str = r#"
[server]
listen = "127.0.0.1:99999"
drain_timout = "5s"
default_deadline = "10x"

page_token_key = "0123456789abcdef-not-a-key"

[anonymous]
enabled = "yes"
provinces = ["79", 5]

[cache]
max_entries = 3
enabled = 1

[limits]
per_app_rps = "lots"

[telemetry]
sampling_ratio = "half"
service_nam = "x"

[provinces."79"]
healthcare = "sandbox"
helthcare = "sandbox"

[adapters.sandbox]
kind = "sandbox"
dossier_pace = "soon"
token_ttl = "-5m"
provinces = ["7x"]
"#;

#[test]
fn every_mistake_in_every_table_is_reported_at_once_in_one_form() {
    let dir = tempdir();
    let file = dir.join("scattered.toml");
    std::fs::write(&file, SCATTERED).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lienthong"))
        .arg("check-config")
        .arg(&file)
        .env("LIENTHONG_RETRY__MAX_BACKOFF", "bogus")
        .output()
        .unwrap();
    std::fs::remove_dir_all(dir).ok();
    assert_eq!(out.status.code(), Some(2));
    let report = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<String> = report.lines().map(|l| l.trim().to_owned()).collect();
    let duration = r#"expected a duration such as "30s", "5m" or "1h 30m""#;
    has(&errors, "server.listen", r#"such as "127.0.0.1:50051""#);
    has(&errors, "server.drain_timout", "unknown key `drain_timout`; did you mean `drain_timeout`?");
    has(&errors, "server.default_deadline", &format!(r#"invalid value: string "10x", {duration}"#));
    has(&errors, "anonymous.enabled", r#"invalid type: string "yes", expected a boolean"#);
    has(&errors, "cache.max_entries", "unknown key `max_entries`; the keys here are enabled, max_bytes, policies");
    has(&errors, "cache.enabled", "invalid type: signed int `1`, expected a boolean");
    has(&errors, "limits.per_app_rps", "unknown key `per_app_rps`; did you mean `per_app`?");
    has(&errors, "telemetry.sampling_ratio", "invalid type: string \"half\"");
    has(&errors, "telemetry.service_nam", "did you mean `service_name`?");
    has(&errors, "provinces.79.helthcare", "did you mean `healthcare`?");
    has(&errors, "adapters.sandbox.dossier_pace", &format!(r#"invalid value: string "soon", {duration}"#));
    has(&errors, "adapters.sandbox.token_ttl", &format!(r#"invalid value: string "-5m", {duration}"#));
    has(&errors, "adapters.sandbox.provinces[0]", "\"7x\" is not a province code");
    has(&errors, "retry.max_backoff", "(from the environment variable LIENTHONG_RETRY__MAX_BACKOFF)");
    // A list element at fault, and a secret's value never shown.
    has(&errors, "anonymous.provinces.1", "invalid type: signed int `5`, expected a string");
    has(&errors, "server.page_token_key", "64 hex digits");
    assert!(!report.contains("not-a-key"), "{report}");
    // One line each, nothing twice, no doubled backticks, one form.
    let problems: Vec<&String> = errors.iter().filter(|e| e.contains(": ")).skip(1).collect();
    assert_eq!(problems.len(), 16, "{report}");
    assert!(
        !report.contains("``") && !report.contains("invalid value string") && !report.contains("found `"),
        "{report}"
    );
}

#[test]
fn a_route_to_a_family_the_instance_does_not_serve_is_refused() {
    // The sandbox default with `family` routed to a remote instance serving
    // public services only.
    let routed = |family: &str| {
        lienthong::config::SANDBOX_DEFAULT
            .replace(&format!("{family} = \"sandbox\""), &format!("{family} = \"province_ps\""))
            + r#"
[adapters.province_ps]
kind = "remote"
endpoint = "http://127.0.0.1:50061"
families = ["public_services"]
"#
    };
    let errors = problems(&routed("education"));
    has(&errors, "provinces.79.education", "serves only families = [\"public_services\"]");
    // Its own family may be routed to it.
    let fine = routed("public_services");
    assert_eq!(problems(&fine), Vec::<String>::new());
}

#[test]
fn the_sandbox_serves_its_own_province_unless_told_otherwise() {
    let routed = |extra: &str| {
        lienthong::config::SANDBOX_DEFAULT.replace(
            "[adapters.sandbox]",
            &format!("[provinces.\"01\"]\nhealthcare = \"sandbox\"\n\n[adapters.sandbox]\n{extra}"),
        )
    };
    let errors = problems(&routed(""));
    has(&errors, "provinces.01.healthcare", "holds Ho Chi Minh City's data");
    // Listed, it is a deliberate demo.
    assert_eq!(problems(&routed("provinces = [\"79\", \"01\"]\n")), Vec::<String>::new());
    has(&problems(&routed("provinces = [\"79\", \"100\"]\n")), "adapters.sandbox.provinces[1]", "not a province code");
}

/// `lienthong check-config --probe` on `toml`: its exit code and output.
fn probe(toml_text: &str) -> (Option<i32>, String) {
    let dir = crate::common::temp_dir("probe");
    let file = dir.join("lienthong.toml");
    std::fs::write(&file, toml_text).unwrap();
    let out =
        Command::new(env!("CARGO_BIN_EXE_lienthong")).args(["check-config", "--probe"]).arg(&file).output().unwrap();
    std::fs::remove_dir_all(dir).ok();
    (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// The sandbox default with education routed to a warehouse instance.
fn with_warehouse(instance: &str) -> String {
    lienthong::config::SANDBOX_DEFAULT.replace("education = \"sandbox\"", "education = \"portal\"") + instance
}

#[tokio::test]
async fn probe_finds_nothing_wrong_with_a_good_mapping_and_names_each_wrong_one() {
    let portals = lienthong_contract_tests::fakes::portals::FakePortals::start().await.unwrap();
    let url = portals.url();
    let good = with_warehouse(&format!(
        r#"
[adapters.portal]
kind = "warehouse-http"
platform = "arcgis"
base_url = "{url}/arcgis/rest/services"
allow_insecure_http = true

[adapters.portal.datasets.schools]
resource = "Schools/FeatureServer/0"
fields = {{ school_id = "attributes.MA_TRUONG", name = "attributes.TEN_TRUONG", level = "attributes.CAP_HOC", ownership = "attributes.LOAI_HINH", ward_code = "attributes.MA_XA" }}
values.level = {{ "Tiểu học" = "PRIMARY", "Trung học cơ sở" = "LOWER_SECONDARY", "Trung học phổ thông" = "UPPER_SECONDARY" }}
values.ownership = {{ "Công lập" = "PUBLIC", "Ngoài công lập" = "PRIVATE" }}
"#
    ));
    let (code, out) = tokio::task::spawn_blocking(move || probe(&good)).await.unwrap();
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("adapters.portal: probed, nothing found"), "{out}");

    // The same layer described by hand, with four mistakes.
    let wrong = with_warehouse(&format!(
        r#"
[adapters.portal]
kind = "warehouse-http"
base_url = "{url}/arcgis/rest/services/Schools/FeatureServer/0"
allow_insecure_http = true

[adapters.portal.datasets.schools]
path = "/query?where=1%3D1&outFields=*&f=json"
get_path = "/query?where=MA_TRUONG%3D%27{{id}}%27x&outFields=*&f=json"
items = "features"
record = "features.0"
total = "count"
paging = {{ offset_param = "resultOffset", limit_param = "resultRecordCount", more = "exceededTransferLimit" }}
fields = {{ school_id = "attributes.MA_TRUONG", name = "attributes.TEN_TRUONG", ward_code = "attributes.MA_XA", latitude = "geometry.y", longitude = "geometry.x" }}
filters = {{ ward_code = "maXa" }}
"#
    ));
    let (code, out) = tokio::task::spawn_blocking(move || probe(&wrong)).await.unwrap();
    assert_eq!(code, Some(1), "{out}");
    for finding in [
        // `total` points at nothing.
        "adapters.portal.datasets.schools: total = \"count\" finds no count",
        // No outSR=4326: Web Mercator metres.
        "50 of 50 records fail validation",
        "(coordinates not in degrees? ArcGIS: outSR = 4326)",
        // The get's where has a stray character.
        "a listed record, finds nothing",
        // ArcGIS ignores a parameter it does not know.
        "filter ward_code",
    ] {
        assert!(out.contains(finding), "{finding}:\n{out}");
    }
}

#[test]
fn every_key_at_fault_in_an_adapter_table_is_reported_by_its_path() {
    let errors = problems(&with_warehouse(
        r#"
[adapters.portal]
kind = "warehouse-http"
platform = "odata"
base_url = { host = "data.example" }
timeout = "soon"

[adapters.portal.datasets.schools]
resource = "Schools"
local_limit = "many"
fields = { school_id = "SchoolId", name = { first = "Name" } }
paging = { max_limit = "big" }
"#,
    ));
    has(&errors, "adapters.portal.base_url", "invalid type: map");
    has(&errors, "adapters.portal.timeout", "soon");
    has(&errors, "adapters.portal.datasets.schools.local_limit", "invalid type: string");
    has(&errors, "adapters.portal.datasets.schools.fields.name", "invalid type: map");
    has(&errors, "adapters.portal.datasets.schools.paging.max_limit", "invalid type: string");
}

#[test]
fn a_file_that_does_not_parse_is_one_line_without_its_values_and_the_environment_is_named() {
    let dir = tempdir();
    let file = dir.join("broken.toml");
    std::fs::write(&file, "[server]\npage_token_key = \"not-a-real-key-123\" x\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lienthong")).arg("check-config").arg(&file).output().unwrap();
    let report = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(!report.contains("not-a-real-key"), "{report}");
    assert_eq!(report.lines().count(), 2, "{report}");
    assert!(report.contains("<file>: TOML parse error at line 2"), "{report}");

    // Variables that are no setting (the tour's LIENTHONG_ADDR) are left
    // alone; a setting's meaning checked from a variable names it.
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/lienthong.sandbox.example.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_lienthong"))
        .arg("check-config")
        .arg(example)
        .env("LIENTHONG_ADDR", "http://127.0.0.1:50051")
        .env("LIENTHONG_ADAPTERS__SANDBOX__DOSSIER_PACE", "1ms")
        .env("LIENTHONG_SERVR__LISTEN", "127.0.0.1:1")
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = report.lines().skip(1).map(str::trim).collect();
    assert_eq!(
        lines,
        [
            "adapters.sandbox.dossier_pace: must be at least 100ms \
             (from the environment variable LIENTHONG_ADAPTERS__SANDBOX__DOSSIER_PACE)",
            "servr: unknown section `servr`; did you mean `server`? (from an environment variable LIENTHONG_SERVR__…)",
        ],
        "{report}"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_cluster_needs_a_key_every_replica_holds_and_a_redis_url() {
    let errors = problems(&format!(
        "{}\n[cluster]\nredis_url = \"127.0.0.1:6379\"\nexpected_replicas = 0\nfail_closed = [\"apps\"]\n",
        lienthong::config::SANDBOX_DEFAULT
    ));
    has(&errors, "server.page_token_key", "required with [cluster]");
    has(&errors, "cluster.redis_url", "redis:// or rediss://");
    has(&errors, "cluster.expected_replicas", "between 1 and 1000");
    has(&errors, "cluster.fail_closed[0]", "app, citizen or upstream");
    assert_eq!(errors.len(), 4, "{errors:#?}");
}
