//! TLS towards upstreams: a provider whose certificate a private CA signed
//! works with `tls_ca_file` (and only with it), a failed handshake names its
//! cause, and every HTTP adapter takes the option and checks its file.

// Test helpers may unwrap: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use lienthong_adapter_core::{AdapterFactory, BearerToken, ErrorKind, IdentityAdapter};
use lienthong_adapter_vneid::{VneidAdapter, VneidConfig};
use lienthong_contract_tests::fakes::oidc::AUDIENCE;
use lienthong_contract_tests::fakes::{FakeOidc, ServerCert};
use serde_json::json;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/tls")).join(name)
}

fn cert(name: &str) -> ServerCert {
    ServerCert { cert_file: fixture(&format!("{name}.pem")), key_file: fixture(&format!("{name}.key")) }
}

fn adapter(idp: &FakeOidc, ca: Option<PathBuf>) -> VneidAdapter {
    let config: VneidConfig =
        serde_json::from_value(json!({ "issuer": idp.issuer(), "audience": AUDIENCE, "tls_ca_file": ca })).unwrap();
    VneidAdapter::new(config).unwrap()
}

/// The error of the first token: discovery is where the handshake happens.
async fn first_error(idp: &FakeOidc, ca: Option<PathBuf>) -> (ErrorKind, String) {
    let token = idp.sign("rsa-1", &idp.claims("079192012345"));
    let e = adapter(idp, ca).authenticate(&BearerToken::new(token)).await.unwrap_err();
    (e.kind(), e.message().to_owned())
}

#[tokio::test]
async fn a_private_ca_is_trusted_only_through_tls_ca_file() {
    let idp = FakeOidc::start_tls(&cert("server")).await.unwrap();
    let (kind, message) = first_error(&idp, None).await;
    assert_eq!(kind, ErrorKind::Unavailable);
    assert!(message.contains("unknown authority") && message.contains("tls_ca_file"), "{message}");
    let token = idp.sign("ec-1", &idp.claims("079192012345"));
    let principal = adapter(&idp, Some(fixture("ca.pem"))).authenticate(&BearerToken::new(token)).await.unwrap();
    assert_eq!(principal.citizen_id.expose(), "079192012345");
}

#[tokio::test]
async fn an_expired_certificate_and_another_hosts_are_named() {
    let expired = FakeOidc::start_tls(&cert("expired")).await.unwrap();
    let (kind, message) = first_error(&expired, Some(fixture("ca.pem"))).await;
    assert_eq!(kind, ErrorKind::Unavailable);
    assert!(message.contains("certificate has expired"), "{message}");
    let other = FakeOidc::start_tls(&cert("other-name")).await.unwrap();
    let (_, message) = first_error(&other, Some(fixture("ca.pem"))).await;
    assert!(message.contains("not valid for the host name"), "{message}");
}

#[test]
fn every_http_adapter_takes_tls_ca_file_and_checks_it() {
    let missing = fixture("no-such-ca.pem");
    let not_pem = fixture("README.md");
    let cases: [(&dyn AdapterFactory, serde_json::Value); 4] = [
        (
            &lienthong_adapter_vneid::VneidFactory,
            json!({ "issuer": "https://id.example", "audience": "urn:lienthong:gateway" }),
        ),
        (
            &lienthong_adapter_warehouse_http::WarehouseFactory,
            json!({
                "base_url": "https://warehouse.example",
                "datasets": { "schools": { "path": "/schools", "fields": { "school_code": "ma" } } },
            }),
        ),
        (&lienthong_adapter_registry_http::RegistryFactory, json!({ "base_url": "https://portal.example" })),
        (&lienthong_adapter_remote::RemoteFactory, json!({ "endpoint": "https://adapter.example:8443" })),
    ];
    for (factory, base) in cases {
        let with = |path: &PathBuf| {
            let mut options = base.clone();
            options["tls_ca_file"] = json!(path);
            factory.validate(&options)
        };
        // (Other problems of these minimal configs are not this test's.)
        let problems = with(&fixture("ca.pem"));
        assert!(!problems.iter().any(|p| p.contains("tls_ca_file") || p.contains("missing field")), "{problems:?}");
        let problems = with(&missing);
        assert!(problems.iter().any(|p| p.starts_with("tls_ca_file: cannot read")), "{}: {problems:?}", factory.kind());
        let problems = with(&not_pem);
        assert!(problems.iter().any(|p| p.starts_with("tls_ca_file:")), "{}: {problems:?}", factory.kind());
    }
}
