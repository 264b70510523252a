//! One object-safe trait per family.
//!
//! Every method receives a [`CallContext`] and the request exactly as the
//! caller sent it, after the gateway validated it. Defaults return
//! [`AdapterError::unsupported`]; an adapter overrides what it supports and
//! says so in `capabilities()`.
//!
//! # Behaviour every list method must have
//! - Pagination is complete and stable: walking `next_page_token` returns each
//!   matching record exactly once, in the same order on every walk.
//! - `page_size` 0 means 20; no page holds more than `page_size` records.
//! - Filters are exact: every record returned matches every filter given.
//! - With a near filter, records lie within the radius, nearest first, each
//!   with `distance_meters`.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use futures_util::stream::BoxStream;

use crate::api;
use crate::{AdapterError, BearerToken, Capabilities, CitizenId, Method, Principal};

/// What an adapter knows about the call it serves.
#[derive(Debug, Clone)]
pub struct CallContext {
    /// The 2-digit province the call was routed for.
    pub province: String,
    /// The signed-in citizen, when the caller presented a valid token.
    pub principal: Option<Principal>,
    /// When the caller stops waiting, if it said.
    pub deadline: Option<tokio::time::Instant>,
}

impl CallContext {
    /// A context for `province` with no citizen and no deadline.
    pub fn anonymous(province: impl Into<String>) -> Self {
        Self { province: province.into(), principal: None, deadline: None }
    }

    /// The signed-in citizen, or UNAUTHENTICATED.
    pub fn require_principal(&self) -> Result<&Principal, AdapterError> {
        self.principal
            .as_ref()
            .ok_or_else(|| AdapterError::new(crate::ErrorKind::Unauthenticated, "this call needs a citizen token"))
    }
}

/// Citizen identity: turns a bearer token into a [`Principal`] and a profile.
#[async_trait]
pub trait IdentityAdapter: Send + Sync + Debug {
    /// What this adapter supports.
    fn capabilities(&self) -> Capabilities;

    /// Verifies a bearer token.
    ///
    /// # Behaviour
    /// - A valid token gives the citizen's [`Principal`].
    /// - A missing, expired, not-yet-valid, badly signed or foreign token is
    ///   `Unauthenticated`, with a message that does not echo the token.
    async fn authenticate(&self, token: &BearerToken) -> Result<Principal, AdapterError>;

    /// The profile of an authenticated citizen, with the full ID number; the
    /// gateway masks it unless the calling app may see it.
    async fn profile(&self, ctx: &CallContext, principal: &Principal) -> Result<api::CitizenProfile, AdapterError> {
        let _ = (ctx, principal);
        Err(AdapterError::unsupported(Method::GetMyProfile))
    }
}

/// Health facilities.
#[async_trait]
pub trait HealthcareAdapter: Send + Sync + Debug {
    /// What this adapter supports.
    fn capabilities(&self) -> Capabilities;

    /// Lists facilities (see the module docs for list behaviour).
    async fn list_facilities(
        &self,
        ctx: &CallContext,
        req: api::ListFacilitiesRequest,
    ) -> Result<api::ListFacilitiesResponse, AdapterError> {
        let _ = (ctx, req);
        Err(AdapterError::unsupported(Method::ListFacilities))
    }

    /// One facility by code, or `NotFound`.
    async fn get_facility(
        &self,
        ctx: &CallContext,
        req: api::GetFacilityRequest,
    ) -> Result<api::Facility, AdapterError> {
        let _ = (ctx, req);
        Err(AdapterError::unsupported(Method::GetFacility))
    }
}

/// Schools.
#[async_trait]
pub trait EducationAdapter: Send + Sync + Debug {
    /// What this adapter supports.
    fn capabilities(&self) -> Capabilities;

    /// Lists schools (see the module docs for list behaviour).
    async fn list_schools(
        &self,
        ctx: &CallContext,
        req: api::ListSchoolsRequest,
    ) -> Result<api::ListSchoolsResponse, AdapterError> {
        let _ = (ctx, req);
        Err(AdapterError::unsupported(Method::ListSchools))
    }

    /// One school by id, or `NotFound`.
    async fn get_school(&self, ctx: &CallContext, req: api::GetSchoolRequest) -> Result<api::School, AdapterError> {
        let _ = (ctx, req);
        Err(AdapterError::unsupported(Method::GetSchool))
    }
}

/// Buses, stops, arrivals and traffic cameras.
#[async_trait]
pub trait TransportAdapter: Send + Sync + Debug {
    /// What this adapter supports.
    fn capabilities(&self) -> Capabilities;

    /// Lists bus routes by route number.
    async fn list_bus_routes(
        &self,
        ctx: &CallContext,
        req: api::ListBusRoutesRequest,
    ) -> Result<api::ListBusRoutesResponse, AdapterError> {
        let _ = (ctx, req);
        Err(AdapterError::unsupported(Method::ListBusRoutes))
    }

    /// One route, or `NotFound`.
    async fn get_bus_route(
        &self,
        ctx: &CallContext,
        req: api::GetBusRouteRequest,
    ) -> Result<api::BusRoute, AdapterError> {
        let _ = (ctx, req);
        Err(AdapterError::unsupported(Method::GetBusRoute))
    }

    /// Stops within the circle, nearest first.
    async fn list_nearby_stops(
        &self,
        ctx: &CallContext,
        req: api::ListNearbyStopsRequest,
    ) -> Result<api::ListNearbyStopsResponse, AdapterError> {
        let _ = (ctx, req);
        Err(AdapterError::unsupported(Method::ListNearbyStops))
    }

    /// Upcoming arrivals at a stop, soonest first; `NotFound` for an unknown stop.
    async fn list_arrivals(
        &self,
        ctx: &CallContext,
        req: api::ListArrivalsRequest,
    ) -> Result<api::ListArrivalsResponse, AdapterError> {
        let _ = (ctx, req);
        Err(AdapterError::unsupported(Method::ListArrivals))
    }

    /// Lists traffic cameras.
    async fn list_traffic_cameras(
        &self,
        ctx: &CallContext,
        req: api::ListTrafficCamerasRequest,
    ) -> Result<api::ListTrafficCamerasResponse, AdapterError> {
        let _ = (ctx, req);
        Err(AdapterError::unsupported(Method::ListTrafficCameras))
    }

    /// One camera, or `NotFound`.
    async fn get_traffic_camera(
        &self,
        ctx: &CallContext,
        req: api::GetTrafficCameraRequest,
    ) -> Result<api::TrafficCamera, AdapterError> {
        let _ = (ctx, req);
        Err(AdapterError::unsupported(Method::GetTrafficCamera))
    }
}

/// Housing projects and real-estate practicing certificates.
#[async_trait]
pub trait ConstructionAdapter: Send + Sync + Debug {
    /// What this adapter supports.
    fn capabilities(&self) -> Capabilities;

    /// Lists housing projects.
    async fn list_housing_projects(
        &self,
        ctx: &CallContext,
        req: api::ListHousingProjectsRequest,
    ) -> Result<api::ListHousingProjectsResponse, AdapterError> {
        let _ = (ctx, req);
        Err(AdapterError::unsupported(Method::ListHousingProjects))
    }

    /// One project, or `NotFound`.
    async fn get_housing_project(
        &self,
        ctx: &CallContext,
        req: api::GetHousingProjectRequest,
    ) -> Result<api::HousingProject, AdapterError> {
        let _ = (ctx, req);
        Err(AdapterError::unsupported(Method::GetHousingProject))
    }

    /// One certificate by number, or `NotFound`.
    async fn get_practicing_certificate(
        &self,
        ctx: &CallContext,
        req: api::GetPracticingCertificateRequest,
    ) -> Result<api::PracticingCertificate, AdapterError> {
        let _ = (ctx, req);
        Err(AdapterError::unsupported(Method::GetPracticingCertificate))
    }
}

/// A dossier together with its owner, so that the gateway, not the adapter,
/// decides which view the caller gets.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnedDossier {
    /// The dossier with every field filled, the applicant included.
    pub dossier: api::Dossier,
    /// The citizen who submitted it.
    pub owner: CitizenId,
}

/// Whether no change can follow a dossier `status` (national statuses 3
/// rejected, 7 withdrawn, 8 stopped, 10 result returned).
pub fn is_final_status(status: api::DossierStatus) -> bool {
    use api::DossierStatus::*;
    matches!(status, Rejected | Withdrawn | Stopped | ResultReturned)
}

/// A stream of dossier states, as returned by
/// [`PublicServicesAdapter::watch_dossier`].
pub type DossierStream = BoxStream<'static, Result<OwnedDossier, AdapterError>>;

/// Agencies, procedures and dossiers.
#[async_trait]
pub trait PublicServicesAdapter: Send + Sync + Debug {
    /// What this adapter supports.
    fn capabilities(&self) -> Capabilities;

    /// Lists agencies.
    async fn list_agencies(
        &self,
        ctx: &CallContext,
        req: api::ListAgenciesRequest,
    ) -> Result<api::ListAgenciesResponse, AdapterError> {
        let _ = (ctx, req);
        Err(AdapterError::unsupported(Method::ListAgencies))
    }

    /// One agency, or `NotFound`.
    async fn get_agency(&self, ctx: &CallContext, req: api::GetAgencyRequest) -> Result<api::Agency, AdapterError> {
        let _ = (ctx, req);
        Err(AdapterError::unsupported(Method::GetAgency))
    }

    /// Lists or searches procedures.
    async fn list_procedures(
        &self,
        ctx: &CallContext,
        req: api::ListProceduresRequest,
    ) -> Result<api::ListProceduresResponse, AdapterError> {
        let _ = (ctx, req);
        Err(AdapterError::unsupported(Method::ListProcedures))
    }

    /// One procedure by local or national code, or `NotFound`.
    async fn get_procedure(
        &self,
        ctx: &CallContext,
        req: api::GetProcedureRequest,
    ) -> Result<api::Procedure, AdapterError> {
        let _ = (ctx, req);
        Err(AdapterError::unsupported(Method::GetProcedure))
    }

    /// One dossier with its owner, or `NotFound`.
    async fn get_dossier(&self, ctx: &CallContext, req: api::GetDossierRequest) -> Result<OwnedDossier, AdapterError> {
        let _ = (ctx, req);
        Err(AdapterError::unsupported(Method::GetDossier))
    }

    /// The dossiers of `ctx.principal`, newest first. Only that citizen's.
    async fn list_my_dossiers(
        &self,
        ctx: &CallContext,
        req: api::ListMyDossiersRequest,
    ) -> Result<api::ListMyDossiersResponse, AdapterError> {
        let _ = (ctx, req);
        Err(AdapterError::unsupported(Method::ListMyDossiers))
    }

    /// The dossier's current state, then one item per status change, ending
    /// after a final status. `NotFound` (returned, not streamed) for an
    /// unknown code.
    async fn watch_dossier(
        &self,
        ctx: &CallContext,
        req: api::WatchDossierRequest,
    ) -> Result<DossierStream, AdapterError> {
        let _ = (ctx, req);
        Err(AdapterError::unsupported(Method::WatchDossier))
    }
}

/// A demo citizen of a sandbox identity provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoCitizen {
    /// The handle to ask a token for.
    pub handle: String,
    /// The citizen's fictional name.
    pub full_name: String,
    /// The account's identity level.
    pub identity_level: api::IdentityLevel,
    /// How many dossiers the citizen owns.
    pub dossier_count: usize,
}

/// A token issued by a [`DemoIdentityIssuer`].
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The bearer token.
    pub token: BearerToken,
    /// When it expires.
    pub expires_at: SystemTime,
}

/// Implemented by identity adapters that mint tokens for fictional citizens
/// (the sandbox). The gateway exposes it as `lienthong.sandbox.v1`.
pub trait DemoIdentityIssuer: Send + Sync + Debug {
    /// The demo citizens.
    fn demo_citizens(&self) -> Vec<DemoCitizen>;
    /// Issues a token for the citizen with `handle`, or `NotFound`.
    fn issue_token(&self, handle: &str) -> Result<IssuedToken, AdapterError>;
}

/// Receives pushes from an upstream (for example dossier status changes from
/// the public-service portal). The gateway serves it over HTTP at
/// `POST /webhooks/<instance>`.
#[async_trait]
pub trait WebhookReceiver: Send + Sync + Debug {
    /// Verifies and applies one push.
    ///
    /// # Behaviour
    /// - `headers` has lower-case names.
    /// - A push that is not authentic (bad or missing signature), too old, or
    ///   a replay is refused with `Unauthenticated` and changes nothing.
    /// - A malformed body is refused with `InvalidArgument` and changes nothing.
    async fn receive(
        &self,
        headers: &std::collections::BTreeMap<String, String>,
        body: &[u8],
    ) -> Result<(), AdapterError>;
}

/// Asks an adapter's upstream whether it serves again, so that a breaker
/// opened by its failures can close as soon as it does (a remote service's
/// `grpc.health.v1`), rather than when its open time runs out.
#[async_trait]
pub trait HealthProbe: Send + Sync + Debug {
    /// `Some(true)` when the upstream says it serves, `Some(false)` when it
    /// does not or cannot be reached, `None` when it offers no health check
    /// (the gateway then stops asking).
    async fn serving(&self) -> Option<bool>;
}

/// What one adapter instance provides: one entry per family it serves.
#[derive(Debug, Clone, Default)]
pub struct AdapterSet {
    /// Citizen identity.
    pub identity: Option<Arc<dyn IdentityAdapter>>,
    /// Health facilities.
    pub healthcare: Option<Arc<dyn HealthcareAdapter>>,
    /// Schools.
    pub education: Option<Arc<dyn EducationAdapter>>,
    /// Transport.
    pub transport: Option<Arc<dyn TransportAdapter>>,
    /// Construction.
    pub construction: Option<Arc<dyn ConstructionAdapter>>,
    /// Public services.
    pub public_services: Option<Arc<dyn PublicServicesAdapter>>,
    /// A demo token issuer (sandbox only).
    pub demo_issuer: Option<Arc<dyn DemoIdentityIssuer>>,
    /// A receiver of upstream pushes.
    pub webhook: Option<Arc<dyn WebhookReceiver>>,
    /// Whether the adapters spend the instance's upstream budget themselves,
    /// on each request that reaches the upstream (the gateway then charges
    /// none of their calls): for adapters that answer most calls locally.
    pub budgets_itself: bool,
    /// The 2-digit provinces whose data the instance says it holds (a remote
    /// service's GetCapabilities, the sandbox's `provinces`); empty when it
    /// does not say. The contract suite checks the first by default.
    pub provinces: Vec<String>,
    /// How to ask the upstream whether it serves (see [`HealthProbe`]).
    pub health: Option<Arc<dyn HealthProbe>>,
}

impl AdapterSet {
    /// Whether the set serves `family`.
    pub fn serves(&self, family: crate::Family) -> bool {
        use crate::Family::*;
        match family {
            Identity => self.identity.is_some(),
            Healthcare => self.healthcare.is_some(),
            Education => self.education.is_some(),
            Transport => self.transport.is_some(),
            Construction => self.construction.is_some(),
            PublicServices => self.public_services.is_some(),
        }
    }
}
