//! `deploy/compose`: three replicas behind nginx, for local trials. The
//! compose file's shape is checked (three replicas of one config with
//! distinct names, waiting for healthy Redis and PostgreSQL), its config
//! passes `lienthong check-config` with the compose file's environment, and
//! then the trial is run without a container runtime: three gateways on its
//! config (Redis and PostgreSQL local) behind a real nginx on its
//! `nginx.conf`, where calls on one connection spread over the replicas and
//! an operator's invalidation through the balancer clears every replica.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use lienthong_proto::admin::v1::InvalidateCacheRequest;
use lienthong_proto::admin::v1::admin_service_client::AdminServiceClient;
use lienthong_proto::admin::v1::invalidate_cache_request::Target;
use lienthong_proto::v1::GetFacilityRequest;
use lienthong_proto::v1::healthcare_service_client::HealthcareServiceClient;
use serde_json::Value;
use tokio::time::Instant;

use super::common::{self, TestGateway};
use super::kubernetes::{parse_yaml, run};

const ADMIN_TOKEN: &str = "compose-trial-admin-token";

fn compose_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/compose")
}

/// The replicas' services, by name, and the environment each gets.
fn replicas(compose: &Value) -> BTreeMap<String, BTreeMap<String, String>> {
    compose["services"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, s)| s["command"][0] == "serve")
        .map(|(name, s)| {
            let env = s["environment"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect();
            (name.clone(), env)
        })
        .collect()
}

struct Nginx(std::process::Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The calls a gateway has served so far (its metrics).
async fn calls_served(gw: &TestGateway) -> f64 {
    let text = reqwest::get(format!("http://{}/metrics", gw.ops_addr)).await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with("rpc_server_call_duration_seconds_count") && l.contains("GetFacility"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

#[tokio::test]
async fn three_replicas_behind_the_compose_balancer_act_as_one() {
    let dir = compose_dir();
    let compose = parse_yaml(&std::fs::read_to_string(dir.join("compose.yaml")).unwrap()).remove(0);
    let replicas = replicas(&compose);
    assert_eq!(replicas.len(), 3, "{replicas:?}");
    let names: std::collections::BTreeSet<&String> = replicas.values().map(|env| &env["POD_NAME"]).collect();
    assert_eq!(names.len(), 3, "each replica its own service.instance.id");
    for name in replicas.keys() {
        let service = &compose["services"][name];
        assert_eq!(service["command"], serde_json::json!(["serve", "--config", "/etc/lienthong/lienthong.toml"]));
        assert!(
            service["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v == "./lienthong.toml:/etc/lienthong/lienthong.toml:ro")
        );
        for dependency in ["redis", "postgres"] {
            assert_eq!(service["depends_on"][dependency]["condition"], "service_healthy", "{name}");
        }
        assert_eq!(service["read_only"], true, "{name}");
    }

    // The config, checked by the gateway with the compose file's
    // environment (each replica's: they differ only in POD_NAME).
    let toml = std::fs::read_to_string(dir.join("lienthong.toml")).unwrap();
    let env = replicas.values().next().unwrap();
    run(
        Command::new(env!("CARGO_BIN_EXE_lienthong"))
            .arg("check-config")
            .arg(dir.join("lienthong.toml"))
            .env_clear()
            .envs(env),
        "lienthong check-config deploy/compose/lienthong.toml",
    );
    assert_eq!(
        env["LIENTHONG_ADMIN__TOKEN_SHA256"],
        format!("[\"{}\"]", lienthong::crypto::digest_hex(ADMIN_TOKEN)),
        "the admin token compose.yaml names"
    );

    // The balancer sends to exactly the replicas.
    let nginx_conf = std::fs::read_to_string(dir.join("nginx.conf")).unwrap();
    let upstreams: Vec<&str> =
        nginx_conf.lines().filter_map(|l| l.trim().strip_prefix("server ")?.strip_suffix(';')).collect();
    let expected: Vec<String> = replicas.keys().map(|name| format!("{name}:50051")).collect();
    assert_eq!(upstreams, expected);

    // The trial itself: its config with Redis and PostgreSQL local, the
    // compose file's keys, and nothing exported.
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let prefix = format!("lienthong-test:compose:{}:{nanos}:", std::process::id());
    let (pg_url, schema) = super::audit::postgres("compose");
    let local = toml
        .replace("redis://redis:6379", "redis://127.0.0.1:6379")
        .replace("key_prefix = \"lienthong:compose:\"", &format!("key_prefix = {prefix:?}"))
        .replace(
            "postgres_url = \"host=postgres user=lienthong password=lienthong dbname=lienthong\"",
            &format!(
                "postgres_url = {pg_url:?}\npostgres_schema = {schema:?}\nchain_key = {:?}",
                env["LIENTHONG_AUDIT__CHAIN_KEY"]
            ),
        )
        .replace("otlp_endpoint = \"http://otel-collector:4317\"\n", "")
        .replace("[server]\n", &format!("[server]\npage_token_key = {:?}\n", env["LIENTHONG_SERVER__PAGE_TOKEN_KEY"]))
        + &format!("\n[admin]\ntoken_sha256 = {}\n", env["LIENTHONG_ADMIN__TOKEN_SHA256"]);
    assert!(!local.contains("redis:6379") && !local.contains("host=postgres"), "{local}");
    let mut gateways = Vec::new();
    for _ in 0..3 {
        gateways.push(TestGateway::with_toml(&local, lienthong::server::adapter_registry()).await);
    }

    // nginx on the trial's nginx.conf, the replicas' names made addresses.
    let nginx_dir = common::temp_dir("nginx");
    let (grpc_port, http_port) = (free_port(), free_port());
    let mut conf = nginx_conf
        .replace("listen 50051 http2;", &format!("listen 127.0.0.1:{grpc_port} http2;"))
        .replace("listen 8080;", &format!("listen 127.0.0.1:{http_port};"))
        .replace("/tmp/nginx-lienthong", &nginx_dir.join("nginx").display().to_string());
    for (name, gw) in replicas.keys().zip(&gateways) {
        conf = conf.replace(&format!("server {name}:50051;"), &format!("server {};", gw.addr));
    }
    std::fs::write(nginx_dir.join("nginx.conf"), &conf).unwrap();
    let nginx = Nginx(
        Command::new("nginx")
            .arg("-p")
            .arg(&nginx_dir)
            .arg("-c")
            .arg(nginx_dir.join("nginx.conf"))
            .args(["-e", "stderr", "-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(nginx_dir.join("stderr")).unwrap())
            .spawn()
            .expect("nginx (tools/test installs it)"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", grpc_port)).is_err() {
        let said = std::fs::read_to_string(nginx_dir.join("stderr")).unwrap_or_default();
        assert!(Instant::now() < deadline, "nginx did not listen: {said}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Calls on one HTTP/2 connection to the balancer reach every replica.
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{grpc_port}")).unwrap().connect_lazy();
    let mut h = HealthcareServiceClient::new(channel.clone());
    let facility = || GetFacilityRequest { facility_code: "79001".into() };
    for _ in 0..30 {
        let answer = h.get_facility(facility()).await.unwrap();
        assert_eq!(answer.get_ref().facility.as_ref().unwrap().facility_code, "79001");
    }
    for gw in &gateways {
        assert!(calls_served(gw).await >= 1.0, "a replica got none of the calls");
    }

    // An operator's invalidation through the balancer clears every replica.
    for gw in &gateways {
        HealthcareServiceClient::new(gw.channel.clone()).get_facility(facility()).await.unwrap();
    }
    let request = common::request(
        InvalidateCacheRequest { province: "79".into(), target: Some(Target::Family("healthcare".into())) },
        &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))],
    );
    AdminServiceClient::new(channel).invalidate_cache(request).await.unwrap();
    for gw in &gateways {
        let mut direct = HealthcareServiceClient::new(gw.channel.clone());
        let deadline = Instant::now() + Duration::from_secs(10);
        while direct.get_facility(facility()).await.unwrap().metadata().get("x-lienthong-cache").unwrap() == "hit" {
            assert!(Instant::now() < deadline, "a replica still serves the invalidated answer");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    drop(nginx);
    drop(gateways);
    super::audit::drop_schema(&pg_url, &schema).await;
}
