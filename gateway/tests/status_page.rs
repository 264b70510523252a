//! The gateway in a real browser: headless Chromium driven by ChromeDriver
//! (W3C WebDriver over HTTP). The status page renders the adapters of a test
//! config and follows the gateway's state as it refreshes itself; a page on
//! another origin calls through gRPC-Web, continuing a trace and reading
//! every response header the README documents.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`tools/test` installs them);
//! `CHROMEDRIVER` and `CHROMIUM` name other binaries.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::TestGateway;
use lienthong_adapter_core::api;
use lienthong_contract_tests::fakes::{FakePortal, Fault};
use lienthong_proto::v1::healthcare_service_client::HealthcareServiceClient;
use lienthong_proto::v1::public_services_service_client::PublicServicesServiceClient;
use serde_json::{Value, json};

/// A ChromeDriver process and one headless Chromium session.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Browser {
    async fn start() -> Self {
        let driver_bin = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let port = free_port();
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {driver_bin} ({e}): install Debian's chromium and chromium-driver (tools/test does)"
                )
            });
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(format!("{base}/status")).send().await
                && let Ok(v) = r.json::<Value>().await
                && v["value"]["ready"] == true
            {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "chromedriver did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"],
            },
        }}});
        let created: Value =
            http.post(format!("{base}/session")).json(&capabilities).send().await.unwrap().json().await.unwrap();
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {created}"))
            .to_owned();
        Self { driver, base, session, http }
    }

    async fn command(&self, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}/{path}", self.base, self.session);
        let answer: Value = self.http.post(url).json(&body).send().await.unwrap().json().await.unwrap();
        assert!(answer["value"].get("error").is_none(), "{path}: {answer}");
        answer["value"].clone()
    }

    async fn open(&self, url: &str) {
        self.command("url", json!({ "url": url })).await;
    }

    /// Runs `script` in the page and returns what it returns.
    async fn eval(&self, script: &str) -> Value {
        self.command("execute/sync", json!({ "script": script, "args": [] })).await
    }

    /// Runs asynchronous `script` (it calls `done` with its result) and
    /// returns what it passed.
    async fn eval_async(&self, script: &str) -> Value {
        let wrapped = format!("const done = arguments[arguments.length - 1];\n{script}");
        self.command("execute/async", json!({ "script": wrapped, "args": [] })).await
    }

    /// Polls `script` until it returns `expected`, with a deadline.
    async fn wait_for(&self, script: &str, expected: Value, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let got = self.eval(script).await;
            if got == expected {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "{script} is {got}, expected {expected}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// The text of the cell `class` of `instance`'s row in the table of `province`.
fn cell(province: &str, instance: &str, class: &str) -> String {
    format!(
        "const c = document.querySelector('table[data-province=\"{province}\"] tr[data-instance=\"{instance}\"] td.{class}'); return c ? c.textContent : null;"
    )
}

#[tokio::test]
async fn the_status_page_shows_each_provinces_adapters_and_follows_their_state() {
    let portal = FakePortal::start().await.unwrap();
    let toml = format!(
        "[anonymous]\nenabled = true\nprovinces = [\"79\", \"01\"]\n\n\
         [server]\nprovince_from_metadata = true\n\n\
         [provinces.\"79\"]\nhealthcare = \"sandbox\"\npublic_services = \"portal\"\n\n\
         [provinces.\"01\"]\npublic_services = \"portal\"\n\n\
         [adapters.sandbox]\nkind = \"sandbox\"\n\n\
         [adapters.portal]\nkind = \"registry-http\"\nbase_url = \"{}\"\nallow_insecure_http = true\ntimeout = \"10s\"\n\n\
         [adapters.portal.updates]\nmode = \"poll\"\n\n\
         [retry]\nmax_attempts = 1\n\n[breaker]\nfailures_to_open = 2\nopen_for = \"60s\"\n",
        portal.url()
    );
    let gw = TestGateway::with_toml(&toml, lienthong::server::adapter_registry()).await;
    // One miss and one hit on the portal; one facility lookup.
    let mut ps = PublicServicesServiceClient::new(gw.channel.clone());
    for _ in 0..2 {
        ps.get_procedure(api::GetProcedureRequest { procedure_code: "1.000894".into() }).await.unwrap();
    }
    HealthcareServiceClient::new(gw.channel.clone())
        .list_facilities(api::ListFacilitiesRequest { page_size: 5, ..Default::default() })
        .await
        .unwrap();

    let browser = Browser::start().await;
    browser.open(&format!("http://{}/status", gw.ops_addr)).await;
    let within = Duration::from_secs(20);
    browser.wait_for("return document.body.dataset.loaded || null;", json!("true"), within).await;
    assert_eq!(browser.eval("return document.title;").await, "Lienthong status");
    assert_eq!(browser.eval("return document.getElementById('readiness').textContent;").await, "ready");
    // Both provinces, with their names, and the adapters each is routed to.
    let headings = browser.eval("return [...document.querySelectorAll('h2')].map(h => h.textContent);").await;
    assert_eq!(headings, json!(["Thành phố Hà Nội (01)", "Thành phố Hồ Chí Minh (79)"]));
    let rows = browser
        .eval("return [...document.querySelectorAll('table[data-province=\"79\"] tbody tr')].map(r => r.dataset.instance + ': ' + r.querySelector('td.families').textContent);")
        .await;
    assert_eq!(rows, json!(["sandbox: healthcare", "portal: public_services"]));
    assert_eq!(browser.eval(&cell("79", "portal", "health")).await, "healthy");
    assert_eq!(browser.eval(&cell("79", "portal", "breaker")).await, "closed");
    // One hit of two lookups; one upstream call, whose latency is the p99.
    assert_eq!(browser.eval(&cell("79", "portal", "hit-ratio")).await, "50.0 %");
    assert_eq!(browser.eval(&cell("79", "portal", "errors")).await, "0 / 1");
    let p99 = browser.eval(&cell("79", "portal", "p99")).await;
    assert!(p99.as_str().unwrap().ends_with(" ms"), "{p99}");
    assert_eq!(browser.eval(&cell("01", "portal", "breaker")).await, "closed");

    // The portal fails and its breaker opens: the page, refreshing itself,
    // shows it down in both provinces it serves.
    portal.faults.inject("/", Fault::Status(503));
    for code in ["1.000895", "1.000896"] {
        ps.get_procedure(api::GetProcedureRequest { procedure_code: code.into() }).await.unwrap_err();
    }
    browser.wait_for(&cell("79", "portal", "breaker"), json!("open"), within).await;
    assert_eq!(browser.eval(&cell("79", "portal", "health")).await, "down");
    assert_eq!(browser.eval(&cell("01", "portal", "health")).await, "down");
    assert_eq!(browser.eval(&cell("79", "portal", "errors")).await, "2 / 3");
    assert_eq!(browser.eval(&cell("79", "sandbox", "health")).await, "healthy");
    let reasons = browser.eval("return document.getElementById('reasons').textContent;").await;
    assert!(reasons.as_str().unwrap().contains("degraded: portal (down)"), "{reasons}");
}

#[tokio::test]
async fn a_page_on_another_origin_continues_a_trace_and_reads_every_documented_header() {
    // The process's tracing, as `lienthong serve` installs it (trace ids on
    // every answer); logs go nowhere.
    let config = lienthong::telemetry::TelemetryConfig { ops_listen: None, ..Default::default() };
    let _ = lienthong::telemetry::init(&config, lienthong::telemetry::LogFormat::Text, std::io::sink, false);
    let gw = TestGateway::sandbox().await;
    // The app's page is served from an origin of its own.
    let page = axum::Router::new().route("/", axum::routing::get(|| async { axum::response::Html("<p>city app</p>") }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    tokio::spawn(async move { axum::serve(listener, page).await });
    let browser = Browser::start().await;
    browser.open(&format!("{origin}/")).await;
    let gateway = format!("http://{}", gw.addr);
    // GetProcedure {procedure_code: "1.000894"} in a gRPC-Web frame, twice
    // (the second is a cache hit with an age), with a W3C traceparent.
    let script = format!(
        r#"
const body = new Uint8Array([0, 0, 0, 0, 10, 0x0a, 8, ...new TextEncoder().encode("1.000894")]);
async function call() {{
  const r = await fetch("{gateway}/lienthong.v1.PublicServicesService/GetProcedure", {{
    method: "POST",
    headers: {{
      "content-type": "application/grpc-web+proto",
      "x-grpc-web": "1",
      "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    }},
    body,
  }});
  const bytes = new Uint8Array(await r.arrayBuffer());
  const text = new TextDecoder().decode(bytes);
  return {{
    status: r.status,
    cache: r.headers.get("x-lienthong-cache"),
    age: r.headers.get("x-lienthong-age-seconds"),
    trace: r.headers.get("x-lienthong-trace-id"),
    grpcStatus: r.headers.get("grpc-status") || (text.match(/grpc-status:\s*(\d+)/) || [])[1],
  }};
}}
call().then(() => call()).then(done, e => done({{ error: String(e) }}));
"#
    );
    let answer = browser.eval_async(&script).await;
    assert!(answer.get("error").is_none(), "the browser's call failed: {answer}");
    assert_eq!(answer["status"], 200, "{answer}");
    assert_eq!(answer["grpcStatus"], "0", "{answer}");
    assert_eq!(answer["cache"], "hit", "{answer}");
    assert!(answer["age"].as_str().is_some_and(|a| a.parse::<u64>().is_ok()), "{answer}");
    assert_eq!(answer["trace"], "4bf92f3577b34da6a3ce929d0e0e4736", "{answer}");
}
