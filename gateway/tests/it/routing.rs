//! Routing by province and family, and sandbox tokens refused where the
//! sandbox identity provider is not configured.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::sync::Arc;

use async_trait::async_trait;
use common::{TestGateway, authed};
use lienthong_adapter_core::{
    AdapterError, AdapterFactory, AdapterSet, BearerToken, BuildContext, Capabilities, ErrorKind, Family,
    IdentityAdapter, Principal,
};
use lienthong_proto::sandbox::v1::ListDemoCitizensRequest;
use lienthong_proto::sandbox::v1::sandbox_identity_service_client::SandboxIdentityServiceClient;
use lienthong_proto::v1::identity_service_client::IdentityServiceClient;
use lienthong_proto::v1::transport_service_client::TransportServiceClient;
use lienthong_proto::v1::{GetMyProfileRequest, ListBusRoutesRequest};
use tonic::Code;

/// An identity provider that knows no one (a stand-in for VNeID).
#[derive(Debug)]
struct NobodyIdp;

#[async_trait]
impl IdentityAdapter for NobodyIdp {
    fn capabilities(&self) -> Capabilities {
        Capabilities::family(Family::Identity)
    }
    async fn authenticate(&self, _: &BearerToken) -> Result<Principal, AdapterError> {
        Err(AdapterError::new(ErrorKind::Unauthenticated, "the citizen token is not valid"))
    }
}

#[derive(Debug)]
struct NobodyFactory;

#[async_trait]
impl AdapterFactory for NobodyFactory {
    fn kind(&self) -> &'static str {
        "nobody"
    }
    fn description(&self) -> &'static str {
        "test identity provider"
    }
    fn families(&self) -> &'static [Family] {
        &[Family::Identity]
    }
    fn validate(&self, _: &serde_json::Value) -> Vec<String> {
        Vec::new()
    }
    async fn build(&self, _: BuildContext) -> Result<AdapterSet, AdapterError> {
        Ok(AdapterSet { identity: Some(Arc::new(NobodyIdp)), ..Default::default() })
    }
}

const CONFIG: &str = r#"
[anonymous]
enabled = true
provinces = ["79"]

[provinces."79"]
identity = "idp"
healthcare = "sandbox"

[adapters.idp]
kind = "nobody"

[adapters.sandbox]
kind = "sandbox"
"#;

#[tokio::test]
async fn sandbox_tokens_are_refused_without_the_sandbox_identity_provider() {
    let sandbox = TestGateway::sandbox().await;
    let token = sandbox.token("lan").await;

    let mut registry = lienthong::server::adapter_registry();
    registry.register(Arc::new(NobodyFactory));
    let gw = TestGateway::with_toml(CONFIG, registry).await;

    let mut c = IdentityServiceClient::new(gw.channel.clone());
    let e = c.get_my_profile(authed(GetMyProfileRequest::default(), &token)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(
        e.message().contains("sandbox tokens are accepted only where the sandbox identity provider is configured"),
        "{}",
        e.message()
    );

    // Other tokens reach the configured provider.
    let e =
        c.get_my_profile(authed(GetMyProfileRequest::default(), "eyJhbGciOiJSUzI1NiJ9.e30.c2ln")).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert_eq!(e.message(), "the citizen token is not valid");

    // No sandbox identity provider: no demo-token service either.
    let e = SandboxIdentityServiceClient::new(gw.channel.clone())
        .list_demo_citizens(ListDemoCitizensRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented);
}

#[tokio::test]
async fn a_family_without_an_adapter_is_unimplemented_for_that_province() {
    let mut registry = lienthong::server::adapter_registry();
    registry.register(Arc::new(NobodyFactory));
    let gw = TestGateway::with_toml(CONFIG, registry).await;
    let e = TransportServiceClient::new(gw.channel.clone())
        .list_bus_routes(ListBusRoutesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented);
    assert_eq!(e.message(), "province 79 has no transport adapter configured");
}

#[tokio::test]
async fn without_anonymous_access_calls_are_unauthenticated() {
    let toml = lienthong::config::SANDBOX_DEFAULT.replace("enabled = true", "enabled = false");
    let gw = TestGateway::with_toml(&toml, lienthong::server::adapter_registry()).await;
    let e = TransportServiceClient::new(gw.channel.clone())
        .list_bus_routes(ListBusRoutesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
}

/// A healthcare adapter that declares ListFacilities only, and counts the
/// calls of GetFacility it should never get.
#[derive(Debug, Default)]
struct ListsOnly {
    gets: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl lienthong_adapter_core::HealthcareAdapter for ListsOnly {
    fn capabilities(&self) -> Capabilities {
        Capabilities::none().with(lienthong_adapter_core::Method::ListFacilities)
    }

    async fn list_facilities(
        &self,
        _: &lienthong_adapter_core::CallContext,
        _: lienthong_adapter_core::api::ListFacilitiesRequest,
    ) -> Result<lienthong_adapter_core::api::ListFacilitiesResponse, AdapterError> {
        Ok(lienthong_adapter_core::api::ListFacilitiesResponse { total_size: 3, ..Default::default() })
    }

    async fn get_facility(
        &self,
        _: &lienthong_adapter_core::CallContext,
        _: lienthong_adapter_core::api::GetFacilityRequest,
    ) -> Result<lienthong_adapter_core::api::Facility, AdapterError> {
        self.gets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(lienthong_adapter_core::api::Facility::default())
    }
}

#[tokio::test]
async fn an_adapter_is_called_only_for_the_methods_it_declares() {
    use lienthong_proto::v1::healthcare_service_client::HealthcareServiceClient;
    use lienthong_proto::v1::{GetFacilityRequest, ListFacilitiesRequest};
    let adapter = Arc::new(ListsOnly::default());
    let gw = common::with_healthcare("lists_only", adapter.clone(), "").await;
    let mut c = HealthcareServiceClient::new(gw.channel.clone());
    let listed = c.list_facilities(ListFacilitiesRequest::default()).await.unwrap().into_inner();
    assert_eq!(listed.total_size, 3);
    let e = c.get_facility(GetFacilityRequest { facility_code: "79001".into() }).await.unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented);
    assert!(
        e.message().contains("province 79")
            && e.message().contains("lists_only")
            && e.message().contains("GetFacility"),
        "{}",
        e.message()
    );
    assert_eq!(adapter.gets.load(std::sync::atomic::Ordering::SeqCst), 0, "the undeclared method reached the adapter");
}

/// A healthcare adapter that answers every list with 8 records, whatever
/// `page_size` says.
#[derive(Debug)]
struct EightRecords;

#[async_trait]
impl lienthong_adapter_core::HealthcareAdapter for EightRecords {
    fn capabilities(&self) -> Capabilities {
        Capabilities::family(Family::Healthcare)
    }

    async fn list_facilities(
        &self,
        _: &lienthong_adapter_core::CallContext,
        _: lienthong_adapter_core::api::ListFacilitiesRequest,
    ) -> Result<lienthong_adapter_core::api::ListFacilitiesResponse, AdapterError> {
        let facility = |i: usize| lienthong_adapter_core::api::Facility {
            facility_code: format!("7900{i}"),
            ..Default::default()
        };
        Ok(lienthong_adapter_core::api::ListFacilitiesResponse {
            facilities: (0..8).map(facility).collect(),
            total_size: 20,
            next_page_token: "8".into(),
        })
    }
}

#[tokio::test]
async fn a_page_longer_than_page_size_is_cut_and_counted() {
    use lienthong_proto::v1::ListFacilitiesRequest;
    use lienthong_proto::v1::healthcare_service_client::HealthcareServiceClient;
    let gw = common::with_healthcare("eight", Arc::new(EightRecords), "").await;
    let mut c = HealthcareServiceClient::new(gw.channel.clone());
    let page = c.list_facilities(ListFacilitiesRequest { page_size: 7, ..Default::default() }).await.unwrap();
    let page = page.into_inner();
    assert_eq!(page.facilities.len(), 7);
    assert!(!page.next_page_token.is_empty());
    // Within page_size, nothing is cut.
    let whole = c.list_facilities(ListFacilitiesRequest { page_size: 8, ..Default::default() }).await.unwrap();
    assert_eq!(whole.into_inner().facilities.len(), 8);
    assert_eq!(contract_violations(&gw, "eight", "PAGE-SIZE").await, 1);
}

/// A healthcare adapter that writes its names decomposed (NFD).
#[derive(Debug)]
struct Decomposed;

#[async_trait]
impl lienthong_adapter_core::HealthcareAdapter for Decomposed {
    fn capabilities(&self) -> Capabilities {
        Capabilities::family(Family::Healthcare)
    }

    async fn get_facility(
        &self,
        _: &lienthong_adapter_core::CallContext,
        req: lienthong_adapter_core::api::GetFacilityRequest,
    ) -> Result<lienthong_adapter_core::api::Facility, AdapterError> {
        use unicode_normalization::UnicodeNormalization;
        Ok(lienthong_adapter_core::api::Facility {
            facility_code: req.facility_code,
            name: "Bệnh viện Chợ Rẫy".nfd().collect(),
            address: Some(lienthong_adapter_core::api::Address {
                street: "201B Nguyễn Chí Thanh".nfd().collect(),
                ..Default::default()
            }),
            ..Default::default()
        })
    }
}

#[tokio::test]
async fn text_reaches_apps_in_nfc_whatever_the_adapter_sent() {
    use lienthong_proto::v1::GetFacilityRequest;
    use lienthong_proto::v1::healthcare_service_client::HealthcareServiceClient;
    let gw = common::with_healthcare("nfd", Arc::new(Decomposed), "").await;
    let mut c = HealthcareServiceClient::new(gw.channel.clone());
    // Fetched, then served from the cache: composed both times.
    for _ in 0..2 {
        let f = c.get_facility(GetFacilityRequest { facility_code: "79001".into() }).await.unwrap();
        let f = f.into_inner().facility.unwrap();
        assert_eq!(f.name, "Bệnh viện Chợ Rẫy");
        assert_eq!(f.address.unwrap().street, "201B Nguyễn Chí Thanh");
    }
    assert_eq!(contract_violations(&gw, "nfd", "NFC").await, 1);
}

/// How many answers of `instance` broke contract rule `rule`, as the
/// gateway's /metrics counts them.
async fn contract_violations(gw: &TestGateway, instance: &str, rule: &str) -> u64 {
    let metrics = reqwest::get(format!("http://{}/metrics", gw.ops_addr)).await.unwrap().text().await.unwrap();
    let labels = [format!("lienthong_adapter_instance=\"{instance}\""), format!("lienthong_rule=\"{rule}\"")];
    metrics
        .lines()
        .filter(|l| l.starts_with("lienthong_adapter_contract_violations_total"))
        .find(|l| labels.iter().all(|label| l.contains(label.as_str())))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {rule} violations of {instance} in:\n{metrics}"))
}
