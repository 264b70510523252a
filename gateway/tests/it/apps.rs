//! End to end over TCP: calling apps are authenticated (API keys, mutual
//! TLS) and authorized (methods, provinces, scopes, quotas); everyone else is
//! refused with the right code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use common::{TestGateway, authed, request};
use lienthong::config::Config;
use lienthong::crypto::{hex, sha256};
use lienthong::gateway::apps::API_KEY_HEADER;
use lienthong_proto::v1::healthcare_service_client::HealthcareServiceClient;
use lienthong_proto::v1::identity_service_client::IdentityServiceClient;
use lienthong_proto::v1::public_services_service_client::PublicServicesServiceClient;
use lienthong_proto::v1::*;
use tonic::Code;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

const CITY_APP_OLD_KEY: &str = "city-app-key-2025";
const CITY_APP_KEY: &str = "city-app-key-2026";
const CLINIC_KEY: &str = "clinic-finder-key";
const HANOI_KEY: &str = "hanoi-app-key";

fn digest(key: &str) -> String {
    hex(&sha256(key.as_bytes()))
}

/// The sandbox serving Ho Chi Minh City and, for routing, Hà Nội; three
/// registered apps and no anonymous access.
fn registered(extra: &str) -> String {
    format!(
        r#"
[anonymous]
enabled = false

[provinces."79"]
identity = "sandbox"
healthcare = "sandbox"
public_services = "sandbox"

[provinces."01"]
public_services = "sandbox"

[adapters.sandbox]
kind = "sandbox"
# Hà Nội's app is tested against the sandbox's data, deliberately.
provinces = ["79", "01"]

[apps.city-app]
provinces = ["79"]
allow = ["*"]
scopes = ["identity.full_id_number"]
api_key_sha256 = ["{}", "{}"]

[apps.clinic-finder]
provinces = ["79"]
allow = ["HealthcareService/*"]
api_key_sha256 = ["{}"]
rate_limit = {{ per_second = 1, burst = 3 }}

[apps.hanoi-app]
provinces = ["01"]
allow = ["PublicServicesService/*"]
api_key_sha256 = ["{}"]
{extra}
"#,
        digest(CITY_APP_OLD_KEY),
        digest(CITY_APP_KEY),
        digest(CLINIC_KEY),
        digest(HANOI_KEY)
    )
}

fn with_key<T>(message: T, key: &str) -> tonic::Request<T> {
    request(message, &[(API_KEY_HEADER, key)])
}

fn procedure() -> GetProcedureRequest {
    GetProcedureRequest { procedure_code: "1.000894".into() }
}

#[tokio::test]
async fn apps_are_known_by_their_keys_and_nobody_else_gets_in() {
    let gw = TestGateway::with_toml(&registered(""), lienthong::server::adapter_registry()).await;
    let mut c = PublicServicesServiceClient::new(gw.channel.clone());
    // No credential at all: unauthenticated, saying what to present.
    let e = c.get_procedure(procedure()).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().contains(API_KEY_HEADER), "{}", e.message());
    // An unregistered key; neither it nor its digest is echoed.
    let e = c.get_procedure(with_key(procedure(), "guessed-key")).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(!e.message().contains("guessed-key") && !e.message().contains(&digest("guessed-key")[..12]));
    // Both keys of a rotation work.
    for key in [CITY_APP_OLD_KEY, CITY_APP_KEY] {
        assert!(c.get_procedure(with_key(procedure(), key)).await.is_ok());
    }
}

#[tokio::test]
async fn a_revoked_key_is_refused() {
    // The rotation is over: the old key's digest is gone from the registry.
    let toml = registered("").replace(&format!("\"{}\", ", digest(CITY_APP_OLD_KEY)), "");
    let gw = TestGateway::with_toml(&toml, lienthong::server::adapter_registry()).await;
    let mut c = PublicServicesServiceClient::new(gw.channel.clone());
    let e = c.get_procedure(with_key(procedure(), CITY_APP_OLD_KEY)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().contains("revoked"), "{}", e.message());
    assert!(c.get_procedure(with_key(procedure(), CITY_APP_KEY)).await.is_ok());
}

#[tokio::test]
async fn apps_reach_only_their_provinces_methods_and_scopes() {
    let gw = TestGateway::with_toml(&registered(""), lienthong::server::adapter_registry()).await;
    let mut ps = PublicServicesServiceClient::new(gw.channel.clone());
    // Outside its province.
    let r = request(procedure(), &[(API_KEY_HEADER, CITY_APP_KEY), ("x-lienthong-province", "01")]);
    let e = ps.get_procedure(r).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().contains("city-app") && e.message().contains("01"), "{}", e.message());
    // The Hà Nội app reaches Hà Nội by default, and not Ho Chi Minh City.
    assert!(ps.get_procedure(with_key(procedure(), HANOI_KEY)).await.is_ok());
    let r = request(procedure(), &[(API_KEY_HEADER, HANOI_KEY), ("x-lienthong-province", "79")]);
    assert_eq!(ps.get_procedure(r).await.unwrap_err().code(), Code::PermissionDenied);
    // A method outside its registration.
    let e = ps.get_procedure(with_key(procedure(), CLINIC_KEY)).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().contains("GetProcedure"), "{}", e.message());
    let mut h = HealthcareServiceClient::new(gw.channel.clone());
    let facility = || GetFacilityRequest { facility_code: "79001".into() };
    assert!(h.get_facility(with_key(facility(), CLINIC_KEY)).await.is_ok());
    // Scopes are the app's: only the city app may see full ID numbers.
    let token = {
        let mut s = lienthong_proto::sandbox::v1::sandbox_identity_service_client::SandboxIdentityServiceClient::new(
            gw.channel.clone(),
        );
        let r = with_key(lienthong_proto::sandbox::v1::IssueTokenRequest { handle: "minh".into() }, CITY_APP_KEY);
        s.issue_token(r).await.unwrap().into_inner().access_token
    };
    let mut id = IdentityServiceClient::new(gw.channel.clone());
    let full = || GetMyProfileRequest { include_full_id_number: true };
    let mut r = authed(full(), &token);
    r.metadata_mut().insert(API_KEY_HEADER, CITY_APP_KEY.parse().unwrap());
    assert_eq!(id.get_my_profile(r).await.unwrap().into_inner().profile.unwrap().id_number, "079085004321");
    let mut r = authed(full(), &token);
    r.metadata_mut().insert(API_KEY_HEADER, HANOI_KEY.parse().unwrap());
    assert_eq!(id.get_my_profile(r).await.unwrap_err().code(), Code::PermissionDenied);
}

#[tokio::test]
async fn each_app_has_its_own_quota() {
    let gw = TestGateway::with_toml(&registered(""), lienthong::server::adapter_registry()).await;
    let mut h = HealthcareServiceClient::new(gw.channel.clone());
    let facility = || GetFacilityRequest { facility_code: "79001".into() };
    for _ in 0..3 {
        h.get_facility(with_key(facility(), CLINIC_KEY)).await.unwrap();
    }
    let e = h.get_facility(with_key(facility(), CLINIC_KEY)).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    use tonic_types::StatusExt;
    assert!(e.get_details_retry_info().unwrap().retry_delay.is_some());
    // The city app's quota is its own.
    assert!(h.get_facility(with_key(facility(), CITY_APP_KEY)).await.is_ok());
}

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../contract-tests/fixtures/tls").join(name)
}

fn client_tls(with_cert: bool) -> ClientTlsConfig {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(fixture("ca.pem")).unwrap()))
        .domain_name("localhost");
    if !with_cert {
        return tls;
    }
    let (cert, key) = (std::fs::read(fixture("client.pem")).unwrap(), std::fs::read(fixture("client.key")).unwrap());
    tls.identity(Identity::from_pem(cert, key))
}

/// Mutual TLS: the test CA signs the apps' certificates; `kiosk` is
/// registered by its certificate's fingerprint.
fn mtls_config(required: bool) -> Config {
    let pem = std::fs::read_to_string(fixture("client.pem")).unwrap();
    let fingerprint = lienthong::crypto::pem_fingerprint(&pem).unwrap();
    let extra = format!(
        "[apps.kiosk]\nprovinces = [\"79\"]\nallow = [\"PublicServicesService/*\"]\nclient_cert_sha256 = [\"{fingerprint}\"]\n"
    );
    let toml = registered(&extra).replace(
        "[anonymous]",
        &format!(
            "[server.tls]\ncert_file = {:?}\nkey_file = {:?}\nclient_ca_file = {:?}\nclient_cert_required = {required}\n\n[anonymous]",
            fixture("server.pem"),
            fixture("server.key"),
            fixture("ca.pem")
        ),
    );
    Config::from_toml(&toml).unwrap()
}

async fn mtls_gateway(required: bool, with_cert: bool) -> TestGateway {
    TestGateway::start_with(mtls_config(required), lienthong::server::adapter_registry(), Some(client_tls(with_cert)))
        .await
}

#[tokio::test]
async fn a_client_certificate_identifies_its_app_over_mutual_tls() {
    let gw = mtls_gateway(false, true).await;
    let mut ps = PublicServicesServiceClient::new(gw.channel.clone());
    // The certificate is the credential: no key needed; the kiosk's
    // registration applies (public services only).
    assert!(ps.get_procedure(procedure()).await.is_ok());
    let e = HealthcareServiceClient::new(gw.channel.clone())
        .get_facility(GetFacilityRequest { facility_code: "79001".into() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().contains("kiosk"), "{}", e.message());
}

#[tokio::test]
async fn without_a_certificate_an_app_uses_its_key_unless_certificates_are_required() {
    let gw = mtls_gateway(false, false).await;
    let mut ps = PublicServicesServiceClient::new(gw.channel.clone());
    assert!(ps.get_procedure(with_key(procedure(), CITY_APP_KEY)).await.is_ok());
    assert_eq!(ps.get_procedure(procedure()).await.unwrap_err().code(), Code::Unauthenticated);

    // Required: a client with a certificate is served; one without is
    // refused in the TLS handshake, whatever key it carries.
    let gw = mtls_gateway(true, true).await;
    assert!(PublicServicesServiceClient::new(gw.channel.clone()).get_procedure(procedure()).await.is_ok());
    let no_cert = tonic::transport::Endpoint::from_shared(format!("https://{}", gw.addr))
        .unwrap()
        .tls_config(client_tls(false))
        .unwrap()
        .connect_lazy();
    let e =
        PublicServicesServiceClient::new(no_cert).get_procedure(with_key(procedure(), CITY_APP_KEY)).await.unwrap_err();
    // TLS 1.3 delivers the server's refusal after the client's handshake.
    assert!(format!("{e:?}").contains("CertificateRequired"), "{e:?}");
}
