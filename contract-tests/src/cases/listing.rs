//! Every paged list of the adapter SPI, described once: how to call it, what
//! its records carry, and how each of its filters matches. The cases in
//! `lists.rs` are written once over this description.

use std::fmt;

use async_trait::async_trait;
use lienthong_adapter_core::{AdapterError, CallContext, Method, api, text};

use super::failed_under;
use crate::{Target, Violation};

/// A filter's value, as a record carries it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Value {
    /// An enum's number.
    Int(i32),
    /// A code or a text.
    Text(String),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(n) => write!(f, "{n}"),
            Value::Text(s) => write!(f, "{s:?}"),
        }
    }
}

impl Value {
    fn int(&self) -> i32 {
        match self {
            Value::Int(n) => *n,
            Value::Text(_) => 0,
        }
    }

    pub(crate) fn text(&self) -> String {
        match self {
            Value::Text(s) => s.clone(),
            Value::Int(n) => n.to_string(),
        }
    }
}

/// How a filter selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Match {
    /// Exactly the records carrying the value: the filtered list is checked
    /// against the records walked without it.
    Exact,
    /// Records whose text contains the value (case- and diacritic-
    /// insensitively, at the adapter's choice of fields): every record
    /// returned must contain it, and the record it was taken from must be
    /// among them.
    Contains,
}

/// One filter of a list request.
pub(crate) struct Filter<R> {
    /// The request field.
    pub field: &'static str,
    pub how: Match,
    /// The values a record carries for it (what the suite filters by).
    pub values: fn(&R) -> Vec<Value>,
    /// Whether a record matches a value.
    pub matches: fn(&R, &Value) -> bool,
}

/// One call of a list.
#[derive(Debug, Clone, Default)]
pub(crate) struct Query {
    pub page_size: i32,
    pub page_token: String,
    pub filter: Option<(&'static str, Value)>,
    pub near: Option<api::NearFilter>,
}

impl Query {
    /// The value of filter `field`, when this query sets it.
    fn value(&self, field: &str) -> Option<&Value> {
        self.filter.as_ref().filter(|(f, _)| *f == field).map(|(_, v)| v)
    }

    fn text(&self, field: &str) -> String {
        self.value(field).map(Value::text).unwrap_or_default()
    }

    fn int(&self, field: &str) -> i32 {
        self.value(field).map(Value::int).unwrap_or_default()
    }
}

/// One page of a list.
#[derive(Debug, Clone)]
pub(crate) struct Page<R> {
    pub items: Vec<R>,
    pub next: String,
    pub total: i32,
}

/// A paged list of the SPI.
#[async_trait]
pub(crate) trait Listing: Default + Send + Sync + 'static {
    type Record: prost::Message + Clone + PartialEq + Default + Send + Sync + 'static;
    /// The list method.
    const METHOD: Method;
    /// How reports name it: `family/method`.
    const NAME: &'static str;
    /// The record's message, as the descriptors name it.
    const RECORD: &'static str;
    /// The get of one record by the id lists carry, when there is one.
    const GET: Option<Method> = None;
    /// An id no record can have (for NOT-FOUND).
    const UNKNOWN_ID: &'static str = "";
    /// Whether the list takes a near filter.
    const NEAR: bool = false;
    /// Whether it lists only near a point (every query carries one).
    const NEEDS_NEAR: bool = false;
    /// Whether it is a citizen's own list (called as a test citizen).
    const PERSONAL: bool = false;
    /// Fields of the record that move on their own (a dossier's status):
    /// not compared between a list and a get made moments apart.
    const VOLATILE: &'static [u32] = &[];

    /// A record's id.
    fn id(&self, r: &Self::Record) -> String;

    /// A record's location and its `distance_meters`.
    fn located(&self, _r: &Self::Record) -> (Option<api::GeoPoint>, Option<f64>) {
        (None, None)
    }

    /// The filters of the request (the near filter aside).
    fn filters(&self) -> Vec<Filter<Self::Record>> {
        Vec::new()
    }

    /// One page.
    async fn list(&self, t: &Target, ctx: &CallContext, q: Query) -> Result<Page<Self::Record>, AdapterError>;

    /// One record by id.
    async fn get(&self, _t: &Target, _ctx: &CallContext, _id: &str) -> Result<Self::Record, AdapterError> {
        Err(AdapterError::unsupported(Self::METHOD))
    }

    /// For a list that needs a near filter: a point to list around, taken
    /// from the adapter's own records.
    async fn centre(&self, _t: &Target) -> Result<Option<api::GeoPoint>, Violation> {
        Ok(None)
    }
}

/// Text fields of a record contain `value` (folded).
fn any_text_contains<R: prost::Message>(message: &str, r: &R, value: &Value) -> bool {
    let needle = text::fold(&value.text());
    lienthong_adapter_core::nfc::texts(&r.encode_to_vec(), message).iter().any(|s| text::contains_folded(s, &needle))
}

/// The words of a name a text search can look for: letters only, at least
/// three of them.
pub(crate) fn words(name: &str) -> Vec<Value> {
    name.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 3)
        .map(|w| Value::Text(w.to_owned()))
        .collect()
}

fn ward_of(address: &Option<api::Address>) -> Vec<Value> {
    address.as_ref().map(|a| a.ward_code.clone()).filter(|w| !w.is_empty()).map(Value::Text).into_iter().collect()
}

fn ward_is(address: &Option<api::Address>, v: &Value) -> bool {
    address.as_ref().is_some_and(|a| Value::Text(a.ward_code.clone()) == *v)
}

fn enum_value(n: i32) -> Vec<Value> {
    if n == 0 { Vec::new() } else { vec![Value::Int(n)] }
}

/// The `ward_code` filter of records with an `address`.
macro_rules! ward_filter {
    ($ty:ty) => {
        Filter {
            field: "ward_code",
            how: Match::Exact,
            values: |r: &$ty| ward_of(&r.address),
            matches: |r: &$ty, v| ward_is(&r.address, v),
        }
    };
}

/// An exact filter on an enum field of the record.
macro_rules! enum_filter {
    ($field:literal, $ty:ty, $member:ident) => {
        Filter {
            field: $field,
            how: Match::Exact,
            values: |r: &$ty| enum_value(r.$member),
            matches: |r: &$ty, v| r.$member == v.int(),
        }
    };
}

macro_rules! text_filter {
    ($record:literal, $ty:ty, $name:ident) => {
        Filter {
            field: "text",
            how: Match::Contains,
            values: |r: &$ty| words(&r.$name),
            matches: |r: &$ty, v| any_text_contains($record, r, v),
        }
    };
}

fn page<R>(items: Vec<R>, next: String, total: i32) -> Page<R> {
    Page { items, next, total }
}

#[derive(Default)]
pub(crate) struct Facilities;

#[async_trait]
impl Listing for Facilities {
    type Record = api::Facility;
    const METHOD: Method = Method::ListFacilities;
    const NAME: &'static str = "healthcare/list_facilities";
    const RECORD: &'static str = "lienthong.v1.Facility";
    const GET: Option<Method> = Some(Method::GetFacility);
    const UNKNOWN_ID: &'static str = "ZZ999";
    const NEAR: bool = true;

    fn id(&self, r: &api::Facility) -> String {
        r.facility_code.clone()
    }

    fn located(&self, r: &api::Facility) -> (Option<api::GeoPoint>, Option<f64>) {
        (r.location, r.distance_meters)
    }

    fn filters(&self) -> Vec<Filter<api::Facility>> {
        vec![
            ward_filter!(api::Facility),
            enum_filter!("type", api::Facility, r#type),
            text_filter!("lienthong.v1.Facility", api::Facility, name),
        ]
    }

    async fn list(&self, t: &Target, ctx: &CallContext, q: Query) -> Result<Page<api::Facility>, AdapterError> {
        let req = api::ListFacilitiesRequest {
            page_size: q.page_size,
            page_token: q.page_token.clone(),
            ward_code: q.text("ward_code"),
            r#type: q.int("type"),
            text: q.text("text"),
            near: q.near,
        };
        let r = family(t.healthcare.as_ref())?.list_facilities(ctx, req).await?;
        Ok(page(r.facilities, r.next_page_token, r.total_size))
    }

    async fn get(&self, t: &Target, ctx: &CallContext, id: &str) -> Result<api::Facility, AdapterError> {
        let req = api::GetFacilityRequest { facility_code: id.to_owned() };
        family(t.healthcare.as_ref())?.get_facility(ctx, req).await
    }
}

#[derive(Default)]
pub(crate) struct Schools;

#[async_trait]
impl Listing for Schools {
    type Record = api::School;
    const METHOD: Method = Method::ListSchools;
    const NAME: &'static str = "education/list_schools";
    const RECORD: &'static str = "lienthong.v1.School";
    const GET: Option<Method> = Some(Method::GetSchool);
    const UNKNOWN_ID: &'static str = "no-such-school";
    const NEAR: bool = true;

    fn id(&self, r: &api::School) -> String {
        r.school_id.clone()
    }

    fn located(&self, r: &api::School) -> (Option<api::GeoPoint>, Option<f64>) {
        (r.location, r.distance_meters)
    }

    fn filters(&self) -> Vec<Filter<api::School>> {
        vec![
            enum_filter!("level", api::School, level),
            enum_filter!("ownership", api::School, ownership),
            ward_filter!(api::School),
            text_filter!("lienthong.v1.School", api::School, name),
        ]
    }

    async fn list(&self, t: &Target, ctx: &CallContext, q: Query) -> Result<Page<api::School>, AdapterError> {
        let req = api::ListSchoolsRequest {
            page_size: q.page_size,
            page_token: q.page_token.clone(),
            level: q.int("level"),
            ownership: q.int("ownership"),
            ward_code: q.text("ward_code"),
            text: q.text("text"),
            near: q.near,
        };
        let r = family(t.education.as_ref())?.list_schools(ctx, req).await?;
        Ok(page(r.schools, r.next_page_token, r.total_size))
    }

    async fn get(&self, t: &Target, ctx: &CallContext, id: &str) -> Result<api::School, AdapterError> {
        let req = api::GetSchoolRequest { school_id: id.to_owned() };
        family(t.education.as_ref())?.get_school(ctx, req).await
    }
}

#[derive(Default)]
pub(crate) struct Routes;

#[async_trait]
impl Listing for Routes {
    type Record = api::BusRoute;
    const METHOD: Method = Method::ListBusRoutes;
    const NAME: &'static str = "transport/list_bus_routes";
    const RECORD: &'static str = "lienthong.v1.BusRoute";
    const GET: Option<Method> = Some(Method::GetBusRoute);
    const UNKNOWN_ID: &'static str = "NO-999";

    fn id(&self, r: &api::BusRoute) -> String {
        r.route_number.clone()
    }

    fn filters(&self) -> Vec<Filter<api::BusRoute>> {
        // `stop_id` is checked by its own case (records do not carry stops).
        vec![text_filter!("lienthong.v1.BusRoute", api::BusRoute, name)]
    }

    async fn list(&self, t: &Target, ctx: &CallContext, q: Query) -> Result<Page<api::BusRoute>, AdapterError> {
        let req = api::ListBusRoutesRequest {
            page_size: q.page_size,
            page_token: q.page_token.clone(),
            text: q.text("text"),
            stop_id: q.text("stop_id"),
            ..Default::default()
        };
        let r = family(t.transport.as_ref())?.list_bus_routes(ctx, req).await?;
        Ok(page(r.routes, r.next_page_token, r.total_size))
    }

    /// In the list's view (BASIC), to compare with what the list gave.
    async fn get(&self, t: &Target, ctx: &CallContext, id: &str) -> Result<api::BusRoute, AdapterError> {
        let view = api::BusRouteView::Basic as i32;
        let req = api::GetBusRouteRequest { route_number: id.to_owned(), view };
        family(t.transport.as_ref())?.get_bus_route(ctx, req).await
    }
}

#[derive(Default)]
pub(crate) struct Stops;

#[async_trait]
impl Listing for Stops {
    type Record = api::BusStop;
    const METHOD: Method = Method::ListNearbyStops;
    const NAME: &'static str = "transport/list_nearby_stops";
    const RECORD: &'static str = "lienthong.v1.BusStop";
    const NEAR: bool = true;
    const NEEDS_NEAR: bool = true;

    fn id(&self, r: &api::BusStop) -> String {
        r.stop_id.clone()
    }

    fn located(&self, r: &api::BusStop) -> (Option<api::GeoPoint>, Option<f64>) {
        (r.location, r.distance_meters)
    }

    async fn list(&self, t: &Target, ctx: &CallContext, q: Query) -> Result<Page<api::BusStop>, AdapterError> {
        let req =
            api::ListNearbyStopsRequest { page_size: q.page_size, page_token: q.page_token.clone(), near: q.near };
        let r = family(t.transport.as_ref())?.list_nearby_stops(ctx, req).await?;
        Ok(page(r.stops, r.next_page_token, r.total_size))
    }

    /// Stops are listed only near a point: the first located stop of the
    /// adapter's first routes is one.
    async fn centre(&self, t: &Target) -> Result<Option<api::GeoPoint>, Violation> {
        let transport = family(t.transport.as_ref()).map_err(|e| failed_under("NEAR-SORTED", e))?;
        let ctx = t.ctx();
        let routes = transport
            .list_bus_routes(&ctx, api::ListBusRoutesRequest { page_size: 100, ..Default::default() })
            .await
            .map_err(|e| failed_under("NEAR-SORTED", e))?;
        for route in routes.routes.iter().take(3) {
            let req = api::GetBusRouteRequest { route_number: route.route_number.clone(), ..Default::default() };
            let got = transport.get_bus_route(&ctx, req).await.map_err(|e| failed_under("NEAR-SORTED", e))?;
            if let Some(at) = got.directions.iter().flat_map(|d| &d.stops).find_map(|s| s.location) {
                return Ok(Some(at));
            }
        }
        Err(Violation {
            rule: "NEAR-SORTED",
            detail: "list_nearby_stops: none of the first routes has a located stop to search around; \
                     the case cannot check anything"
                .to_owned(),
        })
    }
}

#[derive(Default)]
pub(crate) struct Cameras;

#[async_trait]
impl Listing for Cameras {
    type Record = api::TrafficCamera;
    const METHOD: Method = Method::ListTrafficCameras;
    const NAME: &'static str = "transport/list_traffic_cameras";
    const RECORD: &'static str = "lienthong.v1.TrafficCamera";
    const GET: Option<Method> = Some(Method::GetTrafficCamera);
    const UNKNOWN_ID: &'static str = "no-such-camera";
    const NEAR: bool = true;

    fn id(&self, r: &api::TrafficCamera) -> String {
        r.camera_id.clone()
    }

    fn located(&self, r: &api::TrafficCamera) -> (Option<api::GeoPoint>, Option<f64>) {
        (r.location, r.distance_meters)
    }

    fn filters(&self) -> Vec<Filter<api::TrafficCamera>> {
        vec![text_filter!("lienthong.v1.TrafficCamera", api::TrafficCamera, name)]
    }

    async fn list(&self, t: &Target, ctx: &CallContext, q: Query) -> Result<Page<api::TrafficCamera>, AdapterError> {
        let req = api::ListTrafficCamerasRequest {
            page_size: q.page_size,
            page_token: q.page_token.clone(),
            text: q.text("text"),
            near: q.near,
        };
        let r = family(t.transport.as_ref())?.list_traffic_cameras(ctx, req).await?;
        Ok(page(r.cameras, r.next_page_token, r.total_size))
    }

    async fn get(&self, t: &Target, ctx: &CallContext, id: &str) -> Result<api::TrafficCamera, AdapterError> {
        let req = api::GetTrafficCameraRequest { camera_id: id.to_owned() };
        family(t.transport.as_ref())?.get_traffic_camera(ctx, req).await
    }
}

#[derive(Default)]
pub(crate) struct Housing;

#[async_trait]
impl Listing for Housing {
    type Record = api::HousingProject;
    const METHOD: Method = Method::ListHousingProjects;
    const NAME: &'static str = "construction/list_housing_projects";
    const RECORD: &'static str = "lienthong.v1.HousingProject";
    const GET: Option<Method> = Some(Method::GetHousingProject);
    const UNKNOWN_ID: &'static str = "no-such-project";

    fn id(&self, r: &api::HousingProject) -> String {
        r.project_id.clone()
    }

    fn located(&self, r: &api::HousingProject) -> (Option<api::GeoPoint>, Option<f64>) {
        (r.location, None)
    }

    fn filters(&self) -> Vec<Filter<api::HousingProject>> {
        vec![
            ward_filter!(api::HousingProject),
            enum_filter!("status", api::HousingProject, status),
            Filter {
                field: "investor",
                how: Match::Contains,
                values: |r| words(&r.investor),
                matches: |r, v| text::contains_folded(&r.investor, &text::fold(&v.text())),
            },
            text_filter!("lienthong.v1.HousingProject", api::HousingProject, name),
        ]
    }

    async fn list(&self, t: &Target, ctx: &CallContext, q: Query) -> Result<Page<api::HousingProject>, AdapterError> {
        let req = api::ListHousingProjectsRequest {
            page_size: q.page_size,
            page_token: q.page_token.clone(),
            ward_code: q.text("ward_code"),
            status: q.int("status"),
            investor: q.text("investor"),
            text: q.text("text"),
        };
        let r = family(t.construction.as_ref())?.list_housing_projects(ctx, req).await?;
        Ok(page(r.projects, r.next_page_token, r.total_size))
    }

    async fn get(&self, t: &Target, ctx: &CallContext, id: &str) -> Result<api::HousingProject, AdapterError> {
        let req = api::GetHousingProjectRequest { project_id: id.to_owned() };
        family(t.construction.as_ref())?.get_housing_project(ctx, req).await
    }
}

#[derive(Default)]
pub(crate) struct Agencies;

#[async_trait]
impl Listing for Agencies {
    type Record = api::Agency;
    const METHOD: Method = Method::ListAgencies;
    const NAME: &'static str = "public_services/list_agencies";
    const RECORD: &'static str = "lienthong.v1.Agency";
    const GET: Option<Method> = Some(Method::GetAgency);
    const UNKNOWN_ID: &'static str = "999.99.99.Z99";

    fn id(&self, r: &api::Agency) -> String {
        r.agency_code.clone()
    }

    fn located(&self, r: &api::Agency) -> (Option<api::GeoPoint>, Option<f64>) {
        (r.location, None)
    }

    fn filters(&self) -> Vec<Filter<api::Agency>> {
        vec![
            enum_filter!("level", api::Agency, level),
            ward_filter!(api::Agency),
            text_filter!("lienthong.v1.Agency", api::Agency, name),
        ]
    }

    async fn list(&self, t: &Target, ctx: &CallContext, q: Query) -> Result<Page<api::Agency>, AdapterError> {
        let req = api::ListAgenciesRequest {
            page_size: q.page_size,
            page_token: q.page_token.clone(),
            level: q.int("level"),
            ward_code: q.text("ward_code"),
            text: q.text("text"),
        };
        let r = family(t.public_services.as_ref())?.list_agencies(ctx, req).await?;
        Ok(page(r.agencies, r.next_page_token, r.total_size))
    }

    async fn get(&self, t: &Target, ctx: &CallContext, id: &str) -> Result<api::Agency, AdapterError> {
        let req = api::GetAgencyRequest { agency_code: id.to_owned() };
        family(t.public_services.as_ref())?.get_agency(ctx, req).await
    }
}

#[derive(Default)]
pub(crate) struct Procedures;

#[async_trait]
impl Listing for Procedures {
    type Record = api::Procedure;
    const METHOD: Method = Method::ListProcedures;
    const NAME: &'static str = "public_services/list_procedures";
    const RECORD: &'static str = "lienthong.v1.Procedure";
    const GET: Option<Method> = Some(Method::GetProcedure);
    const UNKNOWN_ID: &'static str = "9.999999";

    fn id(&self, r: &api::Procedure) -> String {
        r.procedure_code.clone()
    }

    fn filters(&self) -> Vec<Filter<api::Procedure>> {
        vec![
            Filter {
                field: "field",
                how: Match::Exact,
                values: |r| if r.field.is_empty() { Vec::new() } else { vec![Value::Text(r.field.clone())] },
                matches: |r, v| Value::Text(r.field.clone()) == *v,
            },
            Filter {
                field: "agency_code",
                how: Match::Exact,
                values: |r| r.agency_codes.iter().cloned().map(Value::Text).collect(),
                matches: |r, v| r.agency_codes.iter().any(|a| Value::Text(a.clone()) == *v),
            },
            enum_filter!("level", api::Procedure, level),
            enum_filter!("online_level", api::Procedure, online_level),
            text_filter!("lienthong.v1.Procedure", api::Procedure, name),
        ]
    }

    async fn list(&self, t: &Target, ctx: &CallContext, q: Query) -> Result<Page<api::Procedure>, AdapterError> {
        let req = api::ListProceduresRequest {
            page_size: q.page_size,
            page_token: q.page_token.clone(),
            text: q.text("text"),
            field: q.text("field"),
            agency_code: q.text("agency_code"),
            level: q.int("level"),
            online_level: q.int("online_level"),
        };
        let r = family(t.public_services.as_ref())?.list_procedures(ctx, req).await?;
        Ok(page(r.procedures, r.next_page_token, r.total_size))
    }

    async fn get(&self, t: &Target, ctx: &CallContext, id: &str) -> Result<api::Procedure, AdapterError> {
        let req = api::GetProcedureRequest { procedure_code: id.to_owned() };
        family(t.public_services.as_ref())?.get_procedure(ctx, req).await
    }
}

#[derive(Default)]
pub(crate) struct MyDossiers;

#[async_trait]
impl Listing for MyDossiers {
    type Record = api::Dossier;
    const METHOD: Method = Method::ListMyDossiers;
    const NAME: &'static str = "public_services/list_my_dossiers";
    const RECORD: &'static str = "lienthong.v1.Dossier";
    const GET: Option<Method> = Some(Method::GetDossier);
    const UNKNOWN_ID: &'static str = "999.99.99.Z99-990101-9999";
    const PERSONAL: bool = true;
    /// status, received_time, due_time, history, final.
    const VOLATILE: &'static [u32] = &[4, 5, 6, 9, 12];

    fn id(&self, r: &api::Dossier) -> String {
        r.dossier_code.clone()
    }

    fn filters(&self) -> Vec<Filter<api::Dossier>> {
        vec![enum_filter!("status", api::Dossier, status)]
    }

    async fn list(&self, t: &Target, ctx: &CallContext, q: Query) -> Result<Page<api::Dossier>, AdapterError> {
        let req = api::ListMyDossiersRequest {
            page_size: q.page_size,
            page_token: q.page_token.clone(),
            status: q.int("status"),
        };
        let r = family(t.public_services.as_ref())?.list_my_dossiers(ctx, req).await?;
        Ok(page(r.dossiers, r.next_page_token, r.total_size))
    }

    async fn get(&self, t: &Target, ctx: &CallContext, id: &str) -> Result<api::Dossier, AdapterError> {
        let req = api::GetDossierRequest { dossier_code: id.to_owned() };
        Ok(family(t.public_services.as_ref())?.get_dossier(ctx, req).await?.dossier)
    }
}

/// The family's adapter, or `Unsupported` (the set does not serve it).
pub(crate) fn family<T: ?Sized>(adapter: Option<&std::sync::Arc<T>>) -> Result<&T, AdapterError> {
    adapter.map(|a| &**a).ok_or_else(|| {
        AdapterError::new(lienthong_adapter_core::ErrorKind::Unsupported, "the adapter does not serve this family")
    })
}
