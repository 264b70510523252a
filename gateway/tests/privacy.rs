//! No personal data where it must never be: plants known values (a
//! citizen's ID number, name and birth date, her token, an app's API key, an
//! admin token), runs every RPC — successes and refusals — with every log
//! event captured at TRACE, and scans the logs (with their spans), every
//! error message and detail, and the Debug output of the types holding them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{TestGateway, request};
use futures_util::StreamExt;
use lienthong::config::Config;
use lienthong_proto::admin::v1::admin_service_client::AdminServiceClient;
use lienthong_proto::admin::v1::{InvalidateCacheRequest, ListAdapterInstancesRequest, invalidate_cache_request};
use lienthong_proto::sandbox::v1::sandbox_identity_service_client::SandboxIdentityServiceClient;
use lienthong_proto::sandbox::v1::{IssueTokenRequest, ListDemoCitizensRequest};
use lienthong_proto::v1::construction_service_client::ConstructionServiceClient;
use lienthong_proto::v1::education_service_client::EducationServiceClient;
use lienthong_proto::v1::healthcare_service_client::HealthcareServiceClient;
use lienthong_proto::v1::identity_service_client::IdentityServiceClient;
use lienthong_proto::v1::public_services_service_client::PublicServicesServiceClient;
use lienthong_proto::v1::transport_service_client::TransportServiceClient;
use lienthong_proto::v1::*;
use tracing_subscriber::fmt::MakeWriter;

const LAN_ID: &str = "079190012345";
const LAN_NAME: &str = "Nguyễn Thị Lan";
const LAN_BIRTH: &[&str] = &["19900312", "1990-03-12", "12/03/1990"];
const API_KEY: &str = "planted-api-key-4f1c9e";
const ADMIN_TOKEN: &str = "planted-admin-token-77ab";
const LAN_DOSSIER: &str = "000.30.67.H29-251114-0001";

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

/// Everything a developer or operator could see of a status.
fn shown(result: Result<impl std::fmt::Debug, tonic::Status>, seen: &mut Vec<String>) {
    if let Err(s) = result {
        seen.push(format!("{} {:?} {:?}", s.message(), s.details(), s.metadata()));
    }
}

fn with<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut r = request(message, &[("x-lienthong-api-key", API_KEY)]);
    if let Some(t) = token {
        r.metadata_mut().insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    r
}

#[tokio::test]
async fn no_personal_data_in_logs_spans_errors_or_debug_output() {
    let capture = Capture::default();
    tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_span_list(true)
        .with_env_filter("trace")
        .with_writer(capture.clone())
        .init();
    let sha = |s: &str| lienthong::crypto::hex(&lienthong::crypto::sha256(s.as_bytes()));
    let toml = format!(
        "{}\n[apps.city]\nprovinces = [\"79\"]\nallow = [\"*\"]\nscopes = [\"identity.full_id_number\"]\napi_key_sha256 = [\"{}\"]\n\n[admin]\ntoken_sha256 = [\"{}\"]\n",
        lienthong::config::SANDBOX_DEFAULT.replace("enabled = true", "enabled = false"),
        sha(API_KEY),
        sha(ADMIN_TOKEN)
    );
    let config = Config::from_toml(&toml).unwrap();
    let mut seen = vec![format!("{config:?}")];
    let gw = TestGateway::start(config, lienthong::server::adapter_registry()).await;
    let ch = gw.channel.clone();

    let mut sandbox = SandboxIdentityServiceClient::new(ch.clone());
    let token = sandbox
        .issue_token(with(IssueTokenRequest { handle: "lan".into() }, None))
        .await
        .unwrap()
        .into_inner()
        .access_token;
    shown(sandbox.list_demo_citizens(with(ListDemoCitizensRequest {}, None)).await, &mut seen);
    shown(sandbox.issue_token(with(IssueTokenRequest { handle: LAN_ID.into() }, None)).await, &mut seen);
    let t = Some(token.as_str());

    // Personal data flows: these must succeed.
    let mut id = IdentityServiceClient::new(ch.clone());
    let p = id.get_my_profile(with(GetMyProfileRequest { include_full_id_number: true }, t)).await.unwrap();
    assert_eq!(p.into_inner().profile.unwrap().id_number, LAN_ID);
    id.get_my_profile(with(GetMyProfileRequest::default(), t)).await.unwrap();
    let mut ps = PublicServicesServiceClient::new(ch.clone());
    let own = ps.get_dossier(with(GetDossierRequest { dossier_code: LAN_DOSSIER.into() }, t)).await.unwrap();
    assert_eq!(own.into_inner().dossier.unwrap().applicant.unwrap().full_name, LAN_NAME);
    ps.list_my_dossiers(with(ListMyDossiersRequest::default(), t)).await.unwrap();
    let mut watch = ps.watch_dossier(with(WatchDossierRequest { dossier_code: LAN_DOSSIER.into() }, t)).await.unwrap();
    watch.get_mut().next().await.unwrap().unwrap();

    // Refusals carrying planted values.
    shown(id.get_my_profile(with(GetMyProfileRequest::default(), Some(LAN_ID))).await, &mut seen);
    let forged = format!("{}x", &token[..token.len() - 1]);
    shown(id.get_my_profile(with(GetMyProfileRequest::default(), Some(&forged))).await, &mut seen);
    shown(
        id.get_my_profile(request(GetMyProfileRequest::default(), &[("x-lienthong-api-key", LAN_ID)])).await,
        &mut seen,
    );
    shown(ps.get_dossier(with(GetDossierRequest { dossier_code: LAN_ID.into() }, t)).await, &mut seen);
    shown(
        ps.list_my_dossiers(with(ListMyDossiersRequest { page_token: LAN_ID.into(), ..Default::default() }, t)).await,
        &mut seen,
    );

    // Every other RPC, with planted values where a field takes text.
    let mut h = HealthcareServiceClient::new(ch.clone());
    shown(
        h.list_facilities(with(ListFacilitiesRequest { text: LAN_NAME.into(), ..Default::default() }, t)).await,
        &mut seen,
    );
    shown(h.get_facility(with(GetFacilityRequest { facility_code: LAN_ID.into() }, t)).await, &mut seen);
    shown(h.get_facility(with(GetFacilityRequest { facility_code: "79001".into() }, t)).await, &mut seen);
    let mut e = EducationServiceClient::new(ch.clone());
    shown(e.list_schools(with(ListSchoolsRequest { text: LAN_NAME.into(), ..Default::default() }, t)).await, &mut seen);
    shown(e.get_school(with(GetSchoolRequest { school_id: LAN_ID.into() }, t)).await, &mut seen);
    let mut tr = TransportServiceClient::new(ch.clone());
    shown(
        tr.list_bus_routes(with(ListBusRoutesRequest { text: LAN_NAME.into(), ..Default::default() }, t)).await,
        &mut seen,
    );
    shown(
        tr.get_bus_route(with(GetBusRouteRequest { route_number: LAN_ID.into(), ..Default::default() }, t)).await,
        &mut seen,
    );
    let near =
        Some(NearFilter { center: Some(GeoPoint { latitude: 10.7725, longitude: 106.698 }), radius_meters: 500.0 });
    shown(tr.list_nearby_stops(with(ListNearbyStopsRequest { near, ..Default::default() }, t)).await, &mut seen);
    shown(
        tr.list_arrivals(with(ListArrivalsRequest { stop_id: LAN_ID.into(), ..Default::default() }, t)).await,
        &mut seen,
    );
    shown(tr.list_traffic_cameras(with(ListTrafficCamerasRequest::default(), t)).await, &mut seen);
    shown(tr.get_traffic_camera(with(GetTrafficCameraRequest { camera_id: LAN_ID.into() }, t)).await, &mut seen);
    let mut c = ConstructionServiceClient::new(ch.clone());
    shown(c.list_housing_projects(with(ListHousingProjectsRequest::default(), t)).await, &mut seen);
    shown(c.get_housing_project(with(GetHousingProjectRequest { project_id: LAN_ID.into() }, t)).await, &mut seen);
    shown(
        c.get_practicing_certificate(with(GetPracticingCertificateRequest { certificate_number: LAN_ID.into() }, t))
            .await,
        &mut seen,
    );
    shown(
        ps.list_agencies(with(ListAgenciesRequest { text: LAN_NAME.into(), ..Default::default() }, t)).await,
        &mut seen,
    );
    shown(ps.get_agency(with(GetAgencyRequest { agency_code: LAN_ID.into() }, t)).await, &mut seen);
    shown(
        ps.list_procedures(with(ListProceduresRequest { text: LAN_NAME.into(), ..Default::default() }, t)).await,
        &mut seen,
    );
    shown(ps.get_procedure(with(GetProcedureRequest { procedure_code: LAN_ID.into() }, t)).await, &mut seen);
    let mut admin = AdminServiceClient::new(ch.clone());
    let as_admin =
        |token: &str| request(ListAdapterInstancesRequest {}, &[("authorization", &format!("Bearer {token}"))]);
    shown(admin.list_adapter_instances(as_admin(ADMIN_TOKEN)).await, &mut seen);
    shown(admin.list_adapter_instances(as_admin(LAN_ID)).await, &mut seen);
    let all =
        InvalidateCacheRequest { province: String::new(), target: Some(invalidate_cache_request::Target::All(true)) };
    shown(
        admin.invalidate_cache(request(all, &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))])).await,
        &mut seen,
    );

    // Debug output of what holds personal data.
    let citizen = lienthong_adapter_core::CitizenId::parse(LAN_ID).unwrap();
    let bearer = lienthong_adapter_core::BearerToken::new(&token);
    seen.push(format!("{citizen:?} {citizen} {bearer:?}"));
    seen.push(format!(
        "{:?}",
        lienthong_adapter_core::Principal {
            citizen_id: citizen.clone(),
            identity_level: IdentityLevel::IdentityLevel2,
            token: bearer,
        }
    ));

    drop(gw);
    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(logs.lines().count() > 20, "the capture saw the gateway's events:\n{logs}");
    let everything = format!("{logs}\n{}", seen.join("\n"));
    let mut planted: Vec<&str> = vec![LAN_ID, LAN_NAME, &token, API_KEY, ADMIN_TOKEN];
    planted.extend_from_slice(LAN_BIRTH);
    for value in planted {
        if let Some(at) = everything.find(value) {
            let context = &everything[everything[..at].rfind('\n').map_or(0, |i| i + 1)..];
            panic!("a planted value shows up: {}", context.lines().next().unwrap_or_default());
        }
    }
}

/// The sandbox's public services, but every dossier it returns carries the
/// owner's full ID number where the masked one belongs: a careless (or
/// remote) adapter.
#[derive(Debug)]
struct LeakyRegistry(Arc<dyn lienthong_adapter_core::PublicServicesAdapter>);

fn leak(mut owned: lienthong_adapter_core::OwnedDossier) -> lienthong_adapter_core::OwnedDossier {
    if let Some(applicant) = owned.dossier.applicant.as_mut() {
        applicant.masked_id_number = owned.owner.expose().to_owned();
    }
    owned
}

#[async_trait::async_trait]
impl lienthong_adapter_core::PublicServicesAdapter for LeakyRegistry {
    fn capabilities(&self) -> lienthong_adapter_core::Capabilities {
        self.0.capabilities()
    }
    async fn get_dossier(
        &self,
        ctx: &lienthong_adapter_core::CallContext,
        req: GetDossierRequest,
    ) -> Result<lienthong_adapter_core::OwnedDossier, lienthong_adapter_core::AdapterError> {
        self.0.get_dossier(ctx, req).await.map(leak)
    }
    async fn list_my_dossiers(
        &self,
        ctx: &lienthong_adapter_core::CallContext,
        req: ListMyDossiersRequest,
    ) -> Result<ListMyDossiersResponse, lienthong_adapter_core::AdapterError> {
        let full = ctx.principal.as_ref().unwrap().citizen_id.expose().to_owned();
        let mut answer = self.0.list_my_dossiers(ctx, req).await?;
        for d in &mut answer.dossiers {
            d.applicant.get_or_insert_with(Default::default).masked_id_number = full.clone();
        }
        Ok(answer)
    }
    async fn watch_dossier(
        &self,
        ctx: &lienthong_adapter_core::CallContext,
        req: WatchDossierRequest,
    ) -> Result<lienthong_adapter_core::DossierStream, lienthong_adapter_core::AdapterError> {
        Ok(self.0.watch_dossier(ctx, req).await?.map(|u| u.map(leak)).boxed())
    }
}

#[derive(Debug)]
struct LeakyFactory;

#[async_trait::async_trait]
impl lienthong_adapter_core::AdapterFactory for LeakyFactory {
    fn kind(&self) -> &'static str {
        "leaky"
    }
    fn description(&self) -> &'static str {
        "the sandbox's dossiers with full ID numbers"
    }
    fn families(&self) -> &'static [lienthong_adapter_core::Family] {
        &[lienthong_adapter_core::Family::PublicServices]
    }
    fn validate(&self, _: &serde_json::Value) -> Vec<String> {
        Vec::new()
    }
    async fn build(
        &self,
        ctx: lienthong_adapter_core::BuildContext,
    ) -> Result<lienthong_adapter_core::AdapterSet, lienthong_adapter_core::AdapterError> {
        let sandbox = lienthong::server::adapter_registry().get("sandbox").unwrap().build(ctx).await?;
        Ok(lienthong_adapter_core::AdapterSet {
            public_services: Some(Arc::new(LeakyRegistry(sandbox.public_services.unwrap()))),
            ..Default::default()
        })
    }
}

#[tokio::test]
async fn an_adapters_full_id_numbers_never_reach_the_app() {
    let mut registry = lienthong::server::adapter_registry();
    registry.register(Arc::new(LeakyFactory));
    let toml = lienthong::config::SANDBOX_DEFAULT
        .replace("public_services = \"sandbox\"", "public_services = \"leaky\"")
        + "\n[adapters.leaky]\nkind = \"leaky\"\n";
    let gw = TestGateway::start(Config::from_toml(&toml).unwrap(), registry).await;
    let lan = gw.token("lan").await;
    let mut c = PublicServicesServiceClient::new(gw.channel.clone());
    let masked = "********2345";
    let list = c.list_my_dossiers(common::authed(ListMyDossiersRequest::default(), &lan)).await.unwrap().into_inner();
    assert!(!list.dossiers.is_empty());
    for d in &list.dossiers {
        assert_eq!(d.applicant.as_ref().unwrap().masked_id_number, masked);
    }
    let d = c
        .get_dossier(common::authed(GetDossierRequest { dossier_code: LAN_DOSSIER.into() }, &lan))
        .await
        .unwrap()
        .into_inner()
        .dossier
        .unwrap();
    assert_eq!(d.applicant.unwrap().masked_id_number, masked);
    let mut watch = c
        .watch_dossier(common::authed(WatchDossierRequest { dossier_code: LAN_DOSSIER.into() }, &lan))
        .await
        .unwrap()
        .into_inner();
    let d = watch.next().await.unwrap().unwrap().dossier.unwrap();
    assert_eq!(d.applicant.unwrap().masked_id_number, masked);
    assert!(!format!("{list:?}").contains(LAN_ID));
}
