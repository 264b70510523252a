//! Out-of-process adapters. A province implements `lienthong.adapter.v1`
//! (see `proto/lienthong/adapter/v1/adapter.proto`) in any language; this
//! adapter calls it over gRPC — with the caller's deadline (capped by
//! `timeout`), TLS and optionally mutual TLS — and the gateway treats it like
//! any other adapter.

#![forbid(unsafe_code)]

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use lienthong_adapter_core::{
    AdapterError, AdapterFactory, AdapterRegistry, AdapterSet, BearerToken, BuildContext, CallContext, Capabilities,
    CitizenId, ConstructionAdapter, DossierStream, EducationAdapter, ErrorKind, Family, HealthcareAdapter,
    IdentityAdapter, Method, OwnedDossier, Principal, PublicServicesAdapter, TransportAdapter, api,
};
use lienthong_proto::adapter::v1 as proto;
use lienthong_proto::adapter::v1::adapter_service_client::AdapterServiceClient;
use serde::Deserialize;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic_types::StatusExt;

/// TLS towards the adapter service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteTlsConfig {
    /// PEM file of the CA that signed the adapter's certificate; without it
    /// the system roots are used.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM certificate presented to the adapter (mutual TLS).
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    /// PEM key of that certificate.
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
    /// The name to verify in the adapter's certificate, when not the
    /// endpoint's host.
    #[serde(default)]
    pub domain_name: Option<String>,
}

/// `[adapters.<name>]` with `kind = "remote"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteConfig {
    /// The adapter service, `https://host:port` (or `http://` for a local one).
    pub endpoint: String,
    /// The families this instance may serve (default: all).
    #[serde(default)]
    pub families: Option<Vec<String>>,
    /// Longest time a call may take (the caller's deadline, when shorter, wins).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Connection timeout.
    #[serde(default = "default_connect", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// A PEM file of CA certificates trusted for the adapter service's
    /// certificate, as every HTTP adapter spells it (the same as
    /// `tls.ca_file`; set one of the two).
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// TLS settings, for https endpoints.
    #[serde(default)]
    pub tls: Option<RemoteTlsConfig>,
}

impl RemoteConfig {
    /// The CA file, whichever way it was given.
    fn ca_file(&self) -> Option<&PathBuf> {
        self.tls_ca_file.as_ref().or_else(|| self.tls.as_ref().and_then(|t| t.ca_file.as_ref()))
    }
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_connect() -> Duration {
    Duration::from_secs(3)
}

impl RemoteConfig {
    /// Checks the options without I/O; returns every problem.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let https = self.endpoint.starts_with("https://");
        if !https && !self.endpoint.starts_with("http://") {
            problems.push("endpoint: must be an https:// (or http://) URL".to_owned());
        }
        if self.tls.is_some() && !https {
            problems.push("tls: only with an https:// endpoint".to_owned());
        }
        if self.tls_ca_file.is_some() && !https {
            problems.push("tls_ca_file: only with an https:// endpoint".to_owned());
        }
        if self.tls_ca_file.is_some() && self.tls.as_ref().is_some_and(|t| t.ca_file.is_some()) {
            problems.push("tls_ca_file: tls.ca_file says the same; set one of the two".to_owned());
        }
        // check-config reads the files, so a wrong path shows before start.
        let files = [
            ("tls_ca_file", self.ca_file(), "CERTIFICATE-----"),
            ("tls.client_cert_file", self.tls.as_ref().and_then(|t| t.client_cert_file.as_ref()), "CERTIFICATE-----"),
            ("tls.client_key_file", self.tls.as_ref().and_then(|t| t.client_key_file.as_ref()), "PRIVATE KEY-----"),
        ];
        for (name, path, marker) in files {
            let Some(path) = path else { continue };
            match std::fs::read(path) {
                Err(e) => problems.push(format!("{name}: cannot read {}: {e}", path.display())),
                Ok(pem) if !String::from_utf8_lossy(&pem).contains(marker) => {
                    problems.push(format!("{name}: {} holds no PEM {}", path.display(), marker.trim_end_matches('-')));
                }
                Ok(_) => {}
            }
        }
        for (i, f) in self.families.iter().flatten().enumerate() {
            if Family::parse(f).is_none() {
                problems.push(format!("families[{i}]: unknown family {f:?}"));
            }
        }
        if !(Duration::from_millis(50)..=Duration::from_secs(120)).contains(&self.timeout) {
            problems.push("timeout: must be between 50ms and 2m".to_owned());
        }
        problems
    }
}

/// Maps the adapter service's status to an adapter error.
pub fn status_to_error(status: &tonic::Status) -> AdapterError {
    use tonic::Code;
    // A failed TLS handshake names its cause, whatever code tonic gave it.
    if let Some(cause) = std::error::Error::source(status).and_then(lienthong_adapter_core::tls::cause) {
        tracing::warn!(upstream = "remote", tls = %cause, "adapter service unreachable");
        return AdapterError::new(ErrorKind::Unavailable, format!("the adapter service could not be reached: {cause}"));
    }
    // A connection failure surfaces as UNKNOWN with a transport error as its
    // source: the service is out of reach, not misbehaving.
    let transport = std::error::Error::source(status).is_some_and(|e| e.is::<tonic::transport::Error>());
    if status.code() == Code::Unknown && transport {
        tracing::warn!(upstream = "remote", error = %status, "adapter service unreachable");
        return AdapterError::new(
            ErrorKind::Unavailable,
            "the adapter service could not be reached (connection refused or reset)",
        );
    }
    let kind = match status.code() {
        Code::NotFound => ErrorKind::NotFound,
        Code::InvalidArgument | Code::OutOfRange => ErrorKind::InvalidArgument,
        Code::PermissionDenied => ErrorKind::PermissionDenied,
        Code::Unauthenticated => ErrorKind::Unauthenticated,
        Code::ResourceExhausted => ErrorKind::RateLimited,
        Code::Unavailable | Code::Aborted | Code::Cancelled => ErrorKind::Unavailable,
        Code::DeadlineExceeded => ErrorKind::DeadlineExceeded,
        Code::Unimplemented => ErrorKind::Unsupported,
        _ => ErrorKind::Unexpected,
    };
    if kind == ErrorKind::Unexpected {
        tracing::warn!(upstream = "remote", code = ?status.code(), "adapter service failed");
    }
    let mut e = AdapterError::new(kind, status.message());
    if let Some(field) =
        status.get_details_bad_request().and_then(|b| b.field_violations.first().map(|v| v.field.clone()))
    {
        e = e.with_field(field);
    }
    if let Some(delay) = status.get_details_retry_info().and_then(|r| r.retry_delay) {
        e = e.with_retry_after(delay);
    }
    e
}

/// The remote adapter.
pub struct RemoteAdapter {
    client: AdapterServiceClient<Channel>,
    capabilities: Capabilities,
    timeout: Duration,
    endpoint: String,
}

impl fmt::Debug for RemoteAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteAdapter")
            .field("endpoint", &self.endpoint)
            .field("capabilities", &self.capabilities)
            .finish()
    }
}

impl RemoteAdapter {
    /// Connects (lazily) and asks the service what it supports.
    pub async fn connect(config: RemoteConfig) -> Result<Self, AdapterError> {
        let problems = config.validate();
        if !problems.is_empty() {
            return Err(AdapterError::new(ErrorKind::InvalidArgument, problems.join("; ")));
        }
        let bad =
            |what: &str, e: &dyn fmt::Display| AdapterError::new(ErrorKind::InvalidArgument, format!("{what}: {e}"));
        let mut endpoint = Endpoint::from_shared(config.endpoint.clone())
            .map_err(|e| bad("endpoint", &e))?
            .connect_timeout(config.connect_timeout)
            .tcp_nodelay(true);
        if config.endpoint.starts_with("https://") {
            let mut tls = ClientTlsConfig::new().with_native_roots();
            if let Some(ca) = config.ca_file() {
                let pem = std::fs::read(ca).map_err(|e| bad("tls_ca_file", &e))?;
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            if let Some(t) = &config.tls {
                if let (Some(cert), Some(key)) = (&t.client_cert_file, &t.client_key_file) {
                    let cert = std::fs::read(cert).map_err(|e| bad("tls.client_cert_file", &e))?;
                    let key = std::fs::read(key).map_err(|e| bad("tls.client_key_file", &e))?;
                    tls = tls.identity(Identity::from_pem(cert, key));
                }
                if let Some(name) = &t.domain_name {
                    tls = tls.domain_name(name.clone());
                }
            }
            endpoint = endpoint.tls_config(tls).map_err(|e| bad("tls", &e))?;
        }
        let mut client = AdapterServiceClient::new(endpoint.connect_lazy());
        let allowed: Vec<Family> = match &config.families {
            Some(f) => f.iter().filter_map(|f| Family::parse(f)).collect(),
            None => Family::ALL.to_vec(),
        };
        let mut req = tonic::Request::new(proto::GetCapabilitiesRequest {});
        req.set_timeout(config.timeout);
        let capabilities = match client.get_capabilities(req).await {
            Ok(r) => r
                .into_inner()
                .methods
                .iter()
                .filter_map(|name| Method::ALL.iter().find(|m| m.full_name() == name))
                .filter(|m| allowed.contains(&m.family()))
                .fold(Capabilities::none(), |c, m| c.with(*m)),
            Err(status) => {
                // Start anyway: calls fail with UNAVAILABLE until it answers,
                // and unsupported ones with UNIMPLEMENTED.
                tracing::warn!(upstream = "remote", endpoint = %config.endpoint, code = ?status.code(), "adapter service did not answer GetCapabilities at start");
                allowed.iter().fold(Capabilities::none(), |c, f| Method::of_family(*f).fold(c, Capabilities::with))
            }
        };
        Ok(Self { client, capabilities, timeout: config.timeout, endpoint: config.endpoint })
    }

    /// A request carrying the province and the deadline.
    fn request<T>(&self, ctx: &CallContext, message: T) -> Result<tonic::Request<T>, AdapterError> {
        let timeout = match ctx.deadline {
            Some(d) => d.saturating_duration_since(tokio::time::Instant::now()).min(self.timeout),
            None => self.timeout,
        };
        if timeout.is_zero() {
            return Err(AdapterError::new(
                ErrorKind::DeadlineExceeded,
                "the caller's deadline passed before the adapter was asked",
            ));
        }
        let mut req = tonic::Request::new(message);
        req.set_timeout(timeout);
        let province =
            ctx.province.parse().map_err(|_| AdapterError::new(ErrorKind::Unexpected, "province is not ASCII"))?;
        req.metadata_mut().insert("x-lienthong-province", province);
        trace_context(req.metadata_mut());
        Ok(req)
    }
}

/// Adds the current span's W3C trace context, so the adapter service's own
/// spans join the caller's trace.
fn trace_context(metadata: &mut tonic::metadata::MetadataMap) {
    lienthong_adapter_core::telemetry::inject(&tracing::Span::current(), |name, value| {
        if let (Ok(name), Ok(value)) =
            (tonic::metadata::MetadataKey::from_bytes(name.as_bytes()), tonic::metadata::MetadataValue::try_from(value))
        {
            metadata.insert(name, value);
        }
    });
}

fn owned(d: proto::OwnedDossier) -> Result<OwnedDossier, AdapterError> {
    let owner = CitizenId::parse(&d.owner_id_number).map_err(|_| {
        AdapterError::new(ErrorKind::Unavailable, "the adapter service sent a dossier without a valid owner")
    })?;
    let dossier = d
        .dossier
        .ok_or_else(|| AdapterError::new(ErrorKind::Unavailable, "the adapter service sent an empty dossier"))?;
    Ok(OwnedDossier { dossier, owner })
}

/// Implements a family trait by forwarding each listed unary method to the
/// adapter service; `extra` items are added to the impl as they are.
macro_rules! forwarding_impl {
    ($trait:ident { $($name:ident($req:ty) -> $resp:ty;)* } $($extra:tt)*) => {
        #[async_trait]
        impl $trait for RemoteAdapter {
            fn capabilities(&self) -> Capabilities {
                self.capabilities
            }
            $(
                async fn $name(&self, ctx: &CallContext, req: $req) -> Result<$resp, AdapterError> {
                    let mut client = self.client.clone();
                    client.$name(self.request(ctx, req)?).await.map(tonic::Response::into_inner).map_err(|s| status_to_error(&s))
                }
            )*
            $($extra)*
        }
    };
}

#[async_trait]
impl IdentityAdapter for RemoteAdapter {
    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    async fn authenticate(&self, token: &BearerToken) -> Result<Principal, AdapterError> {
        let ctx = CallContext::anonymous("00");
        let mut client = self.client.clone();
        let req = self.request(&ctx, proto::AuthenticateRequest { token: token.expose().to_owned() })?;
        let r = client.authenticate(req).await.map_err(|s| status_to_error(&s))?.into_inner();
        let citizen_id = CitizenId::parse(&r.id_number)
            .map_err(|_| AdapterError::new(ErrorKind::Unavailable, "the adapter service sent a malformed ID number"))?;
        Ok(Principal { citizen_id, identity_level: r.identity_level(), token: token.clone() })
    }

    async fn profile(&self, ctx: &CallContext, principal: &Principal) -> Result<api::CitizenProfile, AdapterError> {
        let mut client = self.client.clone();
        let req = self.request(ctx, proto::GetProfileRequest { token: principal.token.expose().to_owned() })?;
        client.get_profile(req).await.map(tonic::Response::into_inner).map_err(|s| status_to_error(&s))
    }
}

forwarding_impl!(HealthcareAdapter {
    list_facilities(api::ListFacilitiesRequest) -> api::ListFacilitiesResponse;
    get_facility(api::GetFacilityRequest) -> api::Facility;
});

forwarding_impl!(EducationAdapter {
    list_schools(api::ListSchoolsRequest) -> api::ListSchoolsResponse;
    get_school(api::GetSchoolRequest) -> api::School;
});

forwarding_impl!(TransportAdapter {
    list_bus_routes(api::ListBusRoutesRequest) -> api::ListBusRoutesResponse;
    get_bus_route(api::GetBusRouteRequest) -> api::BusRoute;
    list_nearby_stops(api::ListNearbyStopsRequest) -> api::ListNearbyStopsResponse;
    list_arrivals(api::ListArrivalsRequest) -> api::ListArrivalsResponse;
    list_traffic_cameras(api::ListTrafficCamerasRequest) -> api::ListTrafficCamerasResponse;
    get_traffic_camera(api::GetTrafficCameraRequest) -> api::TrafficCamera;
});

forwarding_impl!(ConstructionAdapter {
    list_housing_projects(api::ListHousingProjectsRequest) -> api::ListHousingProjectsResponse;
    get_housing_project(api::GetHousingProjectRequest) -> api::HousingProject;
    get_practicing_certificate(api::GetPracticingCertificateRequest) -> api::PracticingCertificate;
});

forwarding_impl!(PublicServicesAdapter {
    list_agencies(api::ListAgenciesRequest) -> api::ListAgenciesResponse;
    get_agency(api::GetAgencyRequest) -> api::Agency;
    list_procedures(api::ListProceduresRequest) -> api::ListProceduresResponse;
    get_procedure(api::GetProcedureRequest) -> api::Procedure;
}
    async fn get_dossier(&self, ctx: &CallContext, req: api::GetDossierRequest) -> Result<OwnedDossier, AdapterError> {
        let mut client = self.client.clone();
        owned(client.get_dossier(self.request(ctx, req)?).await.map_err(|s| status_to_error(&s))?.into_inner())
    }

    async fn list_my_dossiers(&self, ctx: &CallContext, req: api::ListMyDossiersRequest) -> Result<api::ListMyDossiersResponse, AdapterError> {
        let principal = ctx.require_principal()?;
        let message = proto::ListMyDossiersRequest {
            token: principal.token.expose().to_owned(),
            id_number: principal.citizen_id.expose().to_owned(),
            request: Some(req),
        };
        let mut client = self.client.clone();
        client.list_my_dossiers(self.request(ctx, message)?).await.map(tonic::Response::into_inner).map_err(|s| status_to_error(&s))
    }

    async fn watch_dossier(&self, ctx: &CallContext, req: api::WatchDossierRequest) -> Result<DossierStream, AdapterError> {
        let mut client = self.client.clone();
        // A watch lasts as long as the dossier stays open: no call timeout.
        let mut request = tonic::Request::new(req);
        if let Ok(p) = ctx.province.parse() {
            request.metadata_mut().insert("x-lienthong-province", p);
        }
        trace_context(request.metadata_mut());
        let stream = client.watch_dossier(request).await.map_err(|s| status_to_error(&s))?.into_inner();
        Ok(Box::pin(stream.map(|item| item.map_err(|s| status_to_error(&s)).and_then(owned))))
    }
);

/// Builds remote adapters.
#[derive(Debug, Default)]
pub struct RemoteFactory;

#[async_trait]
impl AdapterFactory for RemoteFactory {
    fn kind(&self) -> &'static str {
        "remote"
    }

    fn description(&self) -> &'static str {
        "a province's own adapter service (lienthong.adapter.v1 over gRPC, any language)"
    }

    fn families(&self) -> &'static [Family] {
        &Family::ALL
    }

    fn validate(&self, options: &serde_json::Value) -> Vec<String> {
        match RemoteConfig::deserialize(options) {
            Ok(c) => c.validate(),
            Err(e) => vec![e.to_string()],
        }
    }

    async fn build(&self, ctx: BuildContext) -> Result<AdapterSet, AdapterError> {
        let config = RemoteConfig::deserialize(&ctx.options)
            .map_err(|e| AdapterError::new(ErrorKind::InvalidArgument, e.to_string()))?;
        let a = Arc::new(RemoteAdapter::connect(config).await?);
        Ok(AdapterSet {
            identity: Some(a.clone()),
            healthcare: Some(a.clone()),
            education: Some(a.clone()),
            transport: Some(a.clone()),
            construction: Some(a.clone()),
            public_services: Some(a),
            ..Default::default()
        })
    }
}

/// Registers the `remote` kind.
pub fn register(registry: &mut AdapterRegistry) {
    registry.register(Arc::new(RemoteFactory));
}
