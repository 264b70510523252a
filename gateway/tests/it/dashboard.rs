//! The observability stack's Prometheus half, for real: `promtool` accepts
//! `deploy/observability/prometheus.yml`; a Prometheus server, configured
//! from that file with the gateway's ops port as its target, scrapes a
//! running gateway; and every query of the Grafana dashboard evaluates, with
//! data for every panel whose metric the calls made here produce.
//!
//! Needs Debian's `prometheus` package (`tools/test` installs it);
//! `PROMETHEUS` and `PROMTOOL` name other binaries.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::TestGateway;
use lienthong_proto::v1::GetProcedureRequest;
use lienthong_proto::v1::public_services_service_client::PublicServicesServiceClient;
use serde_json::Value;

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/observability");

/// A Prometheus server, stopped when dropped.
struct Prometheus {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Serves `config` on a free port, with a storage directory of its own.
    fn start(config: &str) -> Self {
        let dir = common::temp_dir("prometheus");
        let file = dir.join("prometheus.yml");
        std::fs::write(&file, config).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let bin = std::env::var("PROMETHEUS").unwrap_or_else(|_| "/usr/bin/prometheus".into());
        let child = Command::new(&bin)
            .arg(format!("--config.file={}", file.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin} ({e}): install Debian's prometheus (tools/test does)"));
        Self { child, base: format!("http://127.0.0.1:{port}"), http: reqwest::Client::new() }
    }

    /// The result of the instant query `expr` (its `data.result` array);
    /// `None` while Prometheus does not answer. A query Prometheus refuses
    /// fails the test.
    async fn query(&self, expr: &str) -> Option<Vec<Value>> {
        let url = format!("{}/api/v1/query", self.base);
        let body: Value = self.http.get(url).query(&[("query", expr)]).send().await.ok()?.json().await.ok()?;
        assert_eq!(body["status"], "success", "Prometheus refused {expr}: {body}");
        Some(body["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    /// Waits (with a deadline) until `expr` has a result.
    async fn until_some(&self, expr: &str) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(r) = self.query(expr).await
                && !r.is_empty()
            {
                return r;
            }
            assert!(tokio::time::Instant::now() < deadline, "{expr} has no result after 60 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The value of a one-sample result.
fn value(result: &[Value]) -> Option<f64> {
    result.first()?["value"][1].as_str()?.parse().ok()
}

/// The dashboard's panels: title and queries.
fn panels() -> Vec<(String, Vec<String>)> {
    let text = std::fs::read_to_string(format!("{DEPLOY}/grafana/dashboards/lienthong.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let exprs = p["targets"].as_array().unwrap().iter().map(|t| t["expr"].as_str().unwrap().to_owned());
            (p["title"].as_str().unwrap().to_owned(), exprs.collect())
        })
        .collect()
}

fn procedure(code: &str) -> GetProcedureRequest {
    GetProcedureRequest { procedure_code: code.to_owned() }
}

#[test]
fn promtool_accepts_the_deployed_prometheus_config() {
    let bin = std::env::var("PROMTOOL").unwrap_or_else(|_| "/usr/bin/promtool".into());
    let out = Command::new(&bin)
        .args(["check", "config", &format!("{DEPLOY}/prometheus.yml")])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {bin} ({e}): install Debian's prometheus (tools/test does)"));
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_gateway_and_every_dashboard_query_answers() {
    let gw = TestGateway::sandbox().await;
    let mut c = PublicServicesServiceClient::new(gw.channel.clone());
    c.get_procedure(procedure("1.000894")).await.unwrap();

    // The deployed config, pointed at this gateway and scraping every second.
    let deployed = std::fs::read_to_string(format!("{DEPLOY}/prometheus.yml")).unwrap();
    assert!(deployed.contains("\"lienthong:9464\"") && deployed.contains("scrape_interval: 5s"), "{deployed}");
    let config = deployed
        .replace("\"lienthong:9464\"", &format!("\"{}\"", gw.ops_addr))
        .replace("scrape_interval: 5s", "scrape_interval: 1s");
    let prometheus = Prometheus::start(&config);
    let up = prometheus.until_some("up{job=\"lienthong\"} == 1").await;
    assert_eq!(up.len(), 1, "{up:?}");

    // Calls between scrapes, so that rates have something to show (hits,
    // misses for answers the sandbox does not have, a bad argument), until
    // every panel shows data, but those showing events these calls do not
    // cause. Every query must evaluate throughout.
    let quiet = [
        "Rate-limit rejections",
        "Adapter failures by instance",
        "Adapter answers mended by the gateway (contract violations)",
        "Warehouse records dropped (not matching a filter) or skipped (invalid)",
    ];
    let panels = panels();
    assert!(panels.len() >= 12);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut round = 0;
    loop {
        round += 1;
        c.get_procedure(procedure("1.000894")).await.unwrap();
        let missing = c.get_procedure(procedure(&format!("9.{round:06}"))).await.unwrap_err();
        assert_eq!(missing.code(), tonic::Code::NotFound);
        let bad = c.get_procedure(procedure("not a code")).await.unwrap_err();
        assert_eq!(bad.code(), tonic::Code::InvalidArgument);
        let mut empty = Vec::new();
        for (title, exprs) in &panels {
            for expr in exprs {
                let result = prometheus.query(expr).await.unwrap_or_default();
                if result.is_empty() && !quiet.contains(&title.as_str()) {
                    empty.push(format!("{title}: {expr}"));
                }
            }
        }
        if empty.is_empty() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "panels showing nothing after 60 s: {empty:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A scrape after the last calls: Prometheus has counted every one.
    let total = f64::from(3 * round + 1);
    let count = "sum(rpc_server_call_duration_seconds_count{job=\"lienthong\",\
                 rpc_method=\"lienthong.v1.PublicServicesService/GetProcedure\"})";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let counted = value(&prometheus.query(count).await.unwrap_or_default());
        if counted == Some(total) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Prometheus counted {counted:?} GetProcedure calls, not the {total} made"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
