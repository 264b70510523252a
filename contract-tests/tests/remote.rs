//! The remote adapter against the example Python adapter service
//! (deploy/examples/python-adapter): the contract suite over real gRPC, and
//! the one command a province runs against its own endpoint.

// Test helpers may unwrap: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use lienthong_adapter_core::{AdapterFactory, BuildContext, CallContext, ErrorKind, api};
use lienthong_adapter_remote::RemoteFactory;
use lienthong_contract_tests::{Outcome, run};

/// The Python adapter, killed when dropped.
struct PythonAdapter {
    child: Child,
    endpoint: String,
}

impl Drop for PythonAdapter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the example on a free port and waits (up to 60 s) for its
/// "listening on" line.
async fn python_adapter() -> PythonAdapter {
    python_adapter_with(&[]).await
}

const TLS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/tls");

/// As [`python_adapter`], with extra arguments.
async fn python_adapter_with(extra: &[&str]) -> PythonAdapter {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/examples/python-adapter/server.py");
    let mut child = Command::new("python3")
        .args([script, "--port", "0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 runs (CI installs it with grpcio; see tools/test)");
    let stdout = child.stdout.take().unwrap();
    let line = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        }),
    )
    .await
    .expect("the Python adapter started within 60 s")
    .unwrap()
    .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    PythonAdapter { child, endpoint: format!("http://{addr}") }
}

#[tokio::test]
async fn the_python_adapter_passes_the_contract_suite_through_the_remote_adapter() {
    let python = python_adapter().await;
    let options = serde_json::json!({"endpoint": python.endpoint, "timeout": "5s"});
    let set = RemoteFactory.build(BuildContext::new("python", options)).await.unwrap();
    let report = run(&set).await;
    let (passed, failed, skipped) = report.counts();
    assert_eq!(failed, 0, "{report}");
    // Healthcare and education are served; the rest is skipped as unsupported.
    assert!(passed >= 7 && skipped >= 5, "{report}");
    assert!(
        report.outcomes.iter().any(|(n, o)| n.starts_with("transport") && matches!(o, Outcome::Skipped(_))),
        "{report}"
    );

    // Errors cross the process boundary with their kinds.
    let h = set.healthcare.unwrap();
    let e = h
        .get_facility(&CallContext::anonymous("79"), api::GetFacilityRequest { facility_code: "ZZ999".into() })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let bad = api::ListFacilitiesRequest { page_token: "forged:5".into(), ..Default::default() };
    assert_eq!(
        h.list_facilities(&CallContext::anonymous("79"), bad).await.unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    // Methods it does not implement answer UNIMPLEMENTED, mapped to Unsupported.
    let t = set.transport.unwrap();
    let e = t.list_bus_routes(&CallContext::anonymous("79"), api::ListBusRoutesRequest::default()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
}

#[tokio::test]
async fn a_province_validates_its_endpoint_with_one_command() {
    let python = python_adapter().await;
    let out = tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_lienthong-contract-tests"))
            .args(["--adapter", "remote", "--endpoint", &python.endpoint])
            .output()
            .unwrap();
        drop(python);
        out
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(", 0 failed,"), "{stdout}");

    // Nothing listening: the command fails and says which MUSTs were not met.
    let out = Command::new(env!("CARGO_BIN_EXE_lienthong-contract-tests"))
        .args(["--adapter", "remote", "--endpoint", "http://127.0.0.1:9", "--options", r#"{"timeout": "1s"}"#])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("violates"), "{}", String::from_utf8_lossy(&out.stdout));
}

/// The error of a first call through a remote instance built from `options`
/// (the handshake happens on the first call).
async fn first_failure(name: &str, options: serde_json::Value) -> lienthong_adapter_core::AdapterError {
    let set = RemoteFactory.build(BuildContext::new(name, options)).await.unwrap();
    set.healthcare
        .unwrap()
        .list_facilities(&CallContext::anonymous("79"), api::ListFacilitiesRequest::default())
        .await
        .unwrap_err()
}

#[tokio::test]
async fn mutual_tls_is_required_and_works() {
    let (cert, key, ca) = (format!("{TLS}/server.pem"), format!("{TLS}/server.key"), format!("{TLS}/ca.pem"));
    let python = python_adapter_with(&["--tls-cert", &cert, "--tls-key", &key, "--client-ca", &ca]).await;
    let endpoint = python.endpoint.replace("http://", "https://");
    let with_client_cert = serde_json::json!({
        "endpoint": endpoint, "timeout": "5s",
        "tls": {"ca_file": ca, "client_cert_file": format!("{TLS}/client.pem"), "client_key_file": format!("{TLS}/client.key"), "domain_name": "localhost"},
    });
    let set = RemoteFactory.build(BuildContext::new("mtls", with_client_cert)).await.unwrap();
    let report = run(&set).await;
    assert_eq!(report.counts().1, 0, "{report}");
    assert!(report.counts().0 >= 7, "{report}");

    // Without a client certificate the adapter service refuses the handshake.
    let without =
        serde_json::json!({"endpoint": endpoint, "timeout": "5s", "tls": {"ca_file": ca, "domain_name": "localhost"}});
    let e = first_failure("no-client-cert", without).await;
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");

    // Without the private CA (tls_ca_file, as every HTTP adapter spells it),
    // the failure names its cause.
    let untrusted = serde_json::json!({"endpoint": endpoint, "timeout": "5s", "tls": {
        "client_cert_file": format!("{TLS}/client.pem"), "client_key_file": format!("{TLS}/client.key"), "domain_name": "localhost",
    }});
    let e = first_failure("untrusted", untrusted.clone()).await;
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.message().contains("unknown authority"), "{e}");
    let mut trusted = untrusted;
    trusted["tls_ca_file"] = serde_json::json!(ca);
    let set = RemoteFactory.build(BuildContext::new("trusted", trusted)).await.unwrap();
    assert_eq!(run(&set).await.counts().1, 0);
}

#[tokio::test]
async fn what_a_service_declares_is_learned_when_it_comes_up_after_the_gateway() {
    use lienthong_adapter_core::Method;
    // A port nothing listens on yet: the service is down at start.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let options = serde_json::json!({
        "endpoint": format!("http://127.0.0.1:{port}"),
        "timeout": "2s",
        "connect_timeout": "1s",
    });
    let set = RemoteFactory.build(BuildContext::new("late", options)).await.unwrap();
    let (transport, healthcare) = (set.transport.clone().unwrap(), set.healthcare.clone().unwrap());
    // Until it answers, every method of its families is assumed.
    assert!(transport.capabilities().supports(Method::ListBusRoutes));
    // It comes up declaring healthcare and education only.
    let _python = python_adapter_with(&["--port", &port.to_string()]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while transport.capabilities().supports(Method::ListBusRoutes) {
        assert!(tokio::time::Instant::now() < deadline, "the declared methods were not learned within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(healthcare.capabilities().supports(Method::ListFacilities));
    assert!(!transport.capabilities().supports(Method::ListTrafficCameras));
}
