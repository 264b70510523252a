//! The behaviour cases. Each names the rule of `SPEC.md` it checks.

use std::collections::HashSet;
use std::future::Future;

use lienthong_adapter_core::{AdapterError, ErrorKind, Method, api, geo, text};

use crate::{Case, CaseFuture, Target, Violation, ensure};

/// The page size the pagination cases walk with: small, and odd, so that
/// page boundaries fall everywhere.
const PAGE: i32 = 7;
/// A walk longer than this is taken as an endless loop.
const MAX_PAGES: usize = 2_000;
/// Near searches happen within 2 km of one of the adapter's own records
/// (wherever its province is), which must then come first, at 0 m.
const RADIUS_M: f64 = 2_000.0;

fn near(center: &api::GeoPoint) -> Option<api::NearFilter> {
    Some(api::NearFilter { center: Some(*center), radius_meters: RADIUS_M })
}

/// The first located record of a listing: where near searches look.
fn center_of(what: &str, located: impl IntoIterator<Item = Option<api::GeoPoint>>) -> Result<api::GeoPoint, Violation> {
    located.into_iter().flatten().next().ok_or_else(|| Violation {
        rule: "NEAR-SORTED",
        detail: format!("{what}: no listed record has a location to search around; the case cannot check anything"),
    })
}

/// An adapter call that failed where the case needed an answer. Out of
/// reach is not a rule broken ([`crate::UNREACHABLE`]: the suite stops), and
/// out of time is DEADLINE; anything else breaks the case's rule.
fn failed_under(rule: &'static str, e: AdapterError) -> Violation {
    match e.kind() {
        ErrorKind::Unavailable => Violation { rule: crate::UNREACHABLE, detail: e.to_string() },
        ErrorKind::DeadlineExceeded => {
            Violation { rule: "DEADLINE", detail: format!("the adapter did not answer in time: {e}") }
        }
        _ => Violation { rule, detail: format!("the adapter failed: {e}") },
    }
}

fn adapter_failed(e: AdapterError) -> Violation {
    failed_under("PAGE-COMPLETE", e)
}

type Page = (Vec<String>, String, i32);

/// Walks every page; checks PAGE-SIZE and PAGE-COMPLETE; returns the ids.
async fn walk<F, Fut>(mut page: F) -> Result<Vec<String>, Violation>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<Page, AdapterError>>,
{
    let mut ids = Vec::new();
    let mut token = String::new();
    for _ in 0..MAX_PAGES {
        let (page_ids, next, total) = page(token).await.map_err(adapter_failed)?;
        ensure(page_ids.len() <= PAGE as usize, "PAGE-SIZE", || {
            format!("a page of {} records for page_size {PAGE}", page_ids.len())
        })?;
        ids.extend(page_ids);
        if next.is_empty() {
            let unique: HashSet<&String> = ids.iter().collect();
            ensure(unique.len() == ids.len(), "PAGE-COMPLETE", || {
                format!("{} duplicate records across pages", ids.len() - unique.len())
            })?;
            ensure(total == 0 || total as usize == ids.len(), "PAGE-COMPLETE", || {
                format!("total_size says {total} but the pages held {}", ids.len())
            })?;
            return Ok(ids);
        }
        token = next;
    }
    Err(Violation { rule: "PAGE-COMPLETE", detail: format!("still not at the last page after {MAX_PAGES} pages") })
}

/// Walks twice and checks PAGE-STABLE.
async fn walk_twice<F, Fut>(mut page: F) -> Result<(), Violation>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<Page, AdapterError>>,
{
    let first = walk(&mut page).await?;
    let second = walk(&mut page).await?;
    ensure(first == second, "PAGE-STABLE", || "two walks returned different records or orders".to_owned())?;
    ensure(!first.is_empty(), "PAGE-COMPLETE", || "no records at all: the case cannot check anything".to_owned())
}

macro_rules! family {
    ($adapters:expr, $family:ident) => {
        $adapters.$family.as_ref().ok_or_else(|| Violation {
            rule: "SETUP",
            detail: concat!("no ", stringify!($family), " adapter").to_owned(),
        })?
    };
}

macro_rules! paged {
    ($adapters:expr, $family:ident, $method:ident, $req:ident, $items:ident, $id:ident) => {{
        let adapter = family!($adapters, $family);
        let ctx = $adapters.ctx();
        walk_twice(|token| {
            let ctx = ctx.clone();
            async move {
                let r = adapter
                    .$method(&ctx, api::$req { page_size: PAGE, page_token: token, ..Default::default() })
                    .await?;
                Ok((r.$items.into_iter().map(|x| x.$id).collect(), r.next_page_token, r.total_size))
            }
        })
        .await
    }};
}

/// NOT-FOUND: `result` must be a `NotFound` error.
fn expect_not_found<T>(what: &str, result: Result<T, AdapterError>) -> Result<(), Violation> {
    match result {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => {
            Err(Violation { rule: "NOT-FOUND", detail: format!("{what}: kind {} instead of not_found", e.kind()) })
        }
        Ok(_) => Err(Violation {
            rule: "NOT-FOUND",
            detail: format!("{what}: returned a record for an id that does not exist"),
        }),
    }
}

/// NEAR-SORTED over (location, distance) pairs found around `center`, one
/// of the adapter's own records (so at least that one is found).
fn check_near(
    what: &str,
    center: &api::GeoPoint,
    found: Vec<(Option<api::GeoPoint>, Option<f64>)>,
) -> Result<(), Violation> {
    ensure(!found.is_empty(), "NEAR-SORTED", || {
        format!("{what}: nothing within {RADIUS_M} m of one of its own records, at the record's own coordinates")
    })?;
    let center = *center;
    let mut last = 0.0;
    for (location, distance) in found {
        let d = distance.ok_or_else(|| Violation {
            rule: "NEAR-SORTED",
            detail: format!("{what}: a record without distance_meters"),
        })?;
        let actual = location.map(|l| geo::distance_m(&center, &l)).unwrap_or(f64::INFINITY);
        ensure(actual <= RADIUS_M + 1.0, "NEAR-SORTED", || {
            format!("{what}: a record {actual:.0} m away, outside the {RADIUS_M} m radius")
        })?;
        ensure((actual - d).abs() <= 5.0, "NEAR-SORTED", || {
            format!("{what}: distance_meters {d:.0} but the record is {actual:.0} m away")
        })?;
        ensure(d >= last, "NEAR-SORTED", || format!("{what}: {d:.0} m after {last:.0} m: not nearest first"))?;
        last = d;
    }
    Ok(())
}

fn check_nfc<'a>(what: &str, names: impl IntoIterator<Item = &'a str>) -> Result<(), Violation> {
    for name in names {
        ensure(text::is_nfc_text(name), "TEXT-NFC", || format!("{what}: a name not in NFC"))?;
    }
    Ok(())
}

fn facilities_pages(a: &Target) -> CaseFuture<'_> {
    Box::pin(async move { paged!(a, healthcare, list_facilities, ListFacilitiesRequest, facilities, facility_code) })
}

fn schools_pages(a: &Target) -> CaseFuture<'_> {
    Box::pin(async move { paged!(a, education, list_schools, ListSchoolsRequest, schools, school_id) })
}

fn routes_pages(a: &Target) -> CaseFuture<'_> {
    Box::pin(async move { paged!(a, transport, list_bus_routes, ListBusRoutesRequest, routes, route_number) })
}

fn cameras_pages(a: &Target) -> CaseFuture<'_> {
    Box::pin(async move { paged!(a, transport, list_traffic_cameras, ListTrafficCamerasRequest, cameras, camera_id) })
}

fn housing_pages(a: &Target) -> CaseFuture<'_> {
    Box::pin(
        async move { paged!(a, construction, list_housing_projects, ListHousingProjectsRequest, projects, project_id) },
    )
}

fn agencies_pages(a: &Target) -> CaseFuture<'_> {
    Box::pin(async move { paged!(a, public_services, list_agencies, ListAgenciesRequest, agencies, agency_code) })
}

fn procedures_pages(a: &Target) -> CaseFuture<'_> {
    Box::pin(
        async move { paged!(a, public_services, list_procedures, ListProceduresRequest, procedures, procedure_code) },
    )
}

/// PAGE-SIZE for one list method: 0 means 20, above 100 means 100, and a
/// page followed by more (a next token) is full at that size.
macro_rules! page_sizes {
    ($a:expr, $family:ident, $method:ident, $req:ident, $items:ident) => {{
        let adapter = family!($a, $family);
        for (asked, size) in [(0, 20), (1, 1), (100, 100), (101, 100), (1000, 100)] {
            let r = adapter
                .$method(&$a.ctx(), api::$req { page_size: asked, ..Default::default() })
                .await
                .map_err(adapter_failed)?;
            let got = r.$items.len();
            ensure(got <= size, "PAGE-SIZE", || {
                format!("{}: page_size {asked} gave {got} records (at most {size})", stringify!($method))
            })?;
            ensure(r.next_page_token.is_empty() || got == size, "PAGE-SIZE", || {
                format!(
                    "{}: page_size {asked} gave {got} records and a next page: a page followed by more holds {size}",
                    stringify!($method)
                )
            })?;
        }
        Ok(())
    }};
}

fn page_size_capped(a: &Target) -> CaseFuture<'_> {
    Box::pin(async move { page_sizes!(a, healthcare, list_facilities, ListFacilitiesRequest, facilities) })
}

fn agencies_page_sizes(a: &Target) -> CaseFuture<'_> {
    Box::pin(async move { page_sizes!(a, public_services, list_agencies, ListAgenciesRequest, agencies) })
}

fn procedures_page_sizes(a: &Target) -> CaseFuture<'_> {
    Box::pin(async move { page_sizes!(a, public_services, list_procedures, ListProceduresRequest, procedures) })
}

fn schools_page_sizes(a: &Target) -> CaseFuture<'_> {
    Box::pin(async move { page_sizes!(a, education, list_schools, ListSchoolsRequest, schools) })
}

fn gets_not_found(a: &Target) -> CaseFuture<'_> {
    Box::pin(async move {
        let c = a.ctx();
        // Each get is checked only where the adapter says it supports it.
        let can = |m: Method| crate::supports(a, m);
        if let Some(h) = a.healthcare.as_ref().filter(|_| can(Method::GetFacility)) {
            let req = api::GetFacilityRequest { facility_code: "ZZ999".into() };
            expect_not_found("get_facility", h.get_facility(&c, req).await)?;
        }
        if let Some(e) = a.education.as_ref().filter(|_| can(Method::GetSchool)) {
            let req = api::GetSchoolRequest { school_id: "no-such-school".into() };
            expect_not_found("get_school", e.get_school(&c, req).await)?;
        }
        if let Some(t) = a.transport.as_ref().filter(|_| can(Method::GetBusRoute)) {
            let req = api::GetBusRouteRequest { route_number: "NO-999".into(), ..Default::default() };
            expect_not_found("get_bus_route", t.get_bus_route(&c, req).await)?;
        }
        if let Some(t) = a.transport.as_ref().filter(|_| can(Method::GetTrafficCamera)) {
            let req = api::GetTrafficCameraRequest { camera_id: "no-such-camera".into() };
            expect_not_found("get_traffic_camera", t.get_traffic_camera(&c, req).await)?;
        }
        if let Some(k) = a.construction.as_ref().filter(|_| can(Method::GetHousingProject)) {
            let req = api::GetHousingProjectRequest { project_id: "no-such-project".into() };
            expect_not_found("get_housing_project", k.get_housing_project(&c, req).await)?;
        }
        if let Some(k) = a.construction.as_ref().filter(|_| can(Method::GetPracticingCertificate)) {
            let req = api::GetPracticingCertificateRequest { certificate_number: "00-NONE-0000-00000".into() };
            expect_not_found("get_practicing_certificate", k.get_practicing_certificate(&c, req).await)?;
        }
        if let Some(p) = a.public_services.as_ref().filter(|_| can(Method::GetAgency)) {
            let req = api::GetAgencyRequest { agency_code: "999.99.99.Z99".into() };
            expect_not_found("get_agency", p.get_agency(&c, req).await)?;
        }
        if let Some(p) = a.public_services.as_ref().filter(|_| can(Method::GetProcedure)) {
            let req = api::GetProcedureRequest { procedure_code: "9.999999".into() };
            expect_not_found("get_procedure", p.get_procedure(&c, req).await)?;
        }
        if let Some(p) = a.public_services.as_ref().filter(|_| can(Method::GetDossier)) {
            let req = api::GetDossierRequest { dossier_code: "999.99.99.Z99-990101-9999".into() };
            expect_not_found("get_dossier", p.get_dossier(&c, req).await)?;
        }
        Ok(())
    })
}

fn facilities_near(a: &Target) -> CaseFuture<'_> {
    Box::pin(async move {
        let h = family!(a, healthcare);
        let listed = h
            .list_facilities(&a.ctx(), api::ListFacilitiesRequest { page_size: 100, ..Default::default() })
            .await
            .map_err(adapter_failed)?;
        let center = center_of("list_facilities", listed.facilities.into_iter().map(|f| f.location))?;
        let near = near(&center);
        let r = h
            .list_facilities(&a.ctx(), api::ListFacilitiesRequest { near, page_size: 100, ..Default::default() })
            .await
            .map_err(adapter_failed)?;
        check_near(
            "list_facilities",
            &center,
            r.facilities.into_iter().map(|f| (f.location, f.distance_meters)).collect(),
        )
    })
}

fn schools_near(a: &Target) -> CaseFuture<'_> {
    Box::pin(async move {
        let e = family!(a, education);
        let listed = e
            .list_schools(&a.ctx(), api::ListSchoolsRequest { page_size: 100, ..Default::default() })
            .await
            .map_err(adapter_failed)?;
        let center = center_of("list_schools", listed.schools.into_iter().map(|s| s.location))?;
        let near = near(&center);
        let r = e
            .list_schools(&a.ctx(), api::ListSchoolsRequest { near, page_size: 100, ..Default::default() })
            .await
            .map_err(adapter_failed)?;
        check_near("list_schools", &center, r.schools.into_iter().map(|s| (s.location, s.distance_meters)).collect())
    })
}

fn stops_near(a: &Target) -> CaseFuture<'_> {
    Box::pin(async move {
        let t = family!(a, transport);
        // Stops are only listed near a point: a route's first stop is one.
        let routes = t
            .list_bus_routes(&a.ctx(), api::ListBusRoutesRequest { page_size: 100, ..Default::default() })
            .await
            .map_err(adapter_failed)?;
        let mut located = Vec::new();
        for route in routes.routes.iter().take(3) {
            let got = t
                .get_bus_route(
                    &a.ctx(),
                    api::GetBusRouteRequest { route_number: route.route_number.clone(), ..Default::default() },
                )
                .await
                .map_err(adapter_failed)?;
            located.extend(got.directions.into_iter().flat_map(|d| d.stops).map(|s| s.location));
        }
        let center = center_of("list_nearby_stops (from its routes' stops)", located)?;
        let near = near(&center);
        let r = t
            .list_nearby_stops(&a.ctx(), api::ListNearbyStopsRequest { near, page_size: 100, ..Default::default() })
            .await
            .map_err(adapter_failed)?;
        check_near("list_nearby_stops", &center, r.stops.into_iter().map(|s| (s.location, s.distance_meters)).collect())
    })
}

fn facility_type_filter(a: &Target) -> CaseFuture<'_> {
    Box::pin(async move {
        let wanted = api::FacilityType::GeneralHospital as i32;
        let r = family!(a, healthcare)
            .list_facilities(
                &a.ctx(),
                api::ListFacilitiesRequest { r#type: wanted, page_size: 100, ..Default::default() },
            )
            .await
            .map_err(adapter_failed)?;
        ensure(r.facilities.iter().all(|f| f.r#type == wanted), "FILTER-EXACT", || {
            "a facility of another type under a type filter".to_owned()
        })?;
        check_nfc("list_facilities", r.facilities.iter().map(|f| f.name.as_str()))
    })
}

fn procedure_names_nfc(a: &Target) -> CaseFuture<'_> {
    Box::pin(async move {
        let r = family!(a, public_services)
            .list_procedures(&a.ctx(), api::ListProceduresRequest { page_size: 100, ..Default::default() })
            .await
            .map_err(adapter_failed)?;
        check_nfc("list_procedures", r.procedures.iter().map(|p| p.name.as_str()))
    })
}

/// CONCURRENT-SAFE: many concurrent first pages equal the sequential one.
macro_rules! concurrent {
    ($a:expr, $family:ident, $method:ident, $req:ident, $items:ident) => {{
        let adapter = family!($a, $family);
        let c = $a.ctx();
        let one = || adapter.$method(&c, api::$req { page_size: PAGE, ..Default::default() });
        let expected = one().await.map_err(adapter_failed)?.$items;
        let all = futures_util::future::join_all((0..16).map(|_| one())).await;
        for r in all {
            let got = r.map_err(|e| failed_under("CONCURRENT-SAFE", e))?;
            ensure(got.$items == expected, "CONCURRENT-SAFE", || {
                "concurrent calls returned different pages".to_owned()
            })?;
        }
        Ok(())
    }};
}

fn facilities_concurrent(a: &Target) -> CaseFuture<'_> {
    Box::pin(async move { concurrent!(a, healthcare, list_facilities, ListFacilitiesRequest, facilities) })
}

fn agencies_concurrent(a: &Target) -> CaseFuture<'_> {
    Box::pin(async move { concurrent!(a, public_services, list_agencies, ListAgenciesRequest, agencies) })
}

/// DEADLINE and ERROR-KINDS for one list method: a passed deadline is
/// answered at once, from memory or with DeadlineExceeded; a forged page token
/// is InvalidArgument naming `page_token`.
macro_rules! deadline_and_errors {
    ($a:expr, $family:ident, $method:ident, $req:ident) => {{
        let adapter = family!($a, $family);
        let mut late = $a.ctx();
        late.deadline = Some(tokio::time::Instant::now());
        let answer =
            tokio::time::timeout(std::time::Duration::from_secs(5), adapter.$method(&late, api::$req::default()))
                .await
                .map_err(|_| Violation {
                    rule: "DEADLINE",
                    detail: "a call past its deadline was still running after 5 s".to_owned(),
                })?;
        if let Err(e) = answer {
            ensure(e.kind() == ErrorKind::DeadlineExceeded, "DEADLINE", || {
                format!("a call past its deadline failed with {} instead of deadline_exceeded", e.kind())
            })?;
        }
        let forged = api::$req { page_token: "0123456789abcdefXYZ".into(), ..Default::default() };
        match adapter.$method(&$a.ctx(), forged).await {
            Err(e) if e.kind() == ErrorKind::InvalidArgument && e.field() == Some("page_token") => Ok(()),
            Err(e) => Err(Violation {
                rule: "ERROR-KINDS",
                detail: format!(
                    "a forged page_token gave {} (field {:?}) instead of invalid_argument on page_token",
                    e.kind(),
                    e.field()
                ),
            }),
            Ok(_) => Err(Violation { rule: "ERROR-KINDS", detail: "a forged page_token was accepted".to_owned() }),
        }
    }};
}

fn facilities_deadline_and_errors(a: &Target) -> CaseFuture<'_> {
    Box::pin(async move { deadline_and_errors!(a, healthcare, list_facilities, ListFacilitiesRequest) })
}

fn agencies_deadline_and_errors(a: &Target) -> CaseFuture<'_> {
    Box::pin(async move { deadline_and_errors!(a, public_services, list_agencies, ListAgenciesRequest) })
}

/// WATCH-ORDERED: the current state first, then one message per change, in
/// order, ending right after a final status.
fn watch_ordered(a: &Target) -> CaseFuture<'_> {
    Box::pin(async move {
        use futures_util::StreamExt;
        let p = family!(a, public_services);
        let code = a.dossier_code.clone().unwrap_or_default();
        let mut stream = p
            .watch_dossier(&a.ctx(), api::WatchDossierRequest { dossier_code: code })
            .await
            .map_err(|e| failed_under("WATCH-ORDERED", e))?;
        let mut last_len = 0;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let next = tokio::time::timeout_at(deadline, stream.next())
                .await
                .map_err(|_| Violation { rule: "WATCH-ORDERED", detail: "no final status within 120 s".to_owned() })?;
            let Some(item) = next else {
                return Err(Violation {
                    rule: "WATCH-ORDERED",
                    detail: "the stream ended before a final status".to_owned(),
                });
            };
            let d = item.map_err(|e| failed_under("WATCH-ORDERED", e))?.dossier;
            ensure(d.history.len() > last_len, "WATCH-ORDERED", || "a message without a new status change".to_owned())?;
            ensure(d.history.last().map(|h| h.status) == Some(d.status), "WATCH-ORDERED", || {
                "status differs from the last history entry".to_owned()
            })?;
            last_len = d.history.len();
            if d.r#final {
                let after = tokio::time::timeout(std::time::Duration::from_secs(5), stream.next()).await;
                return ensure(matches!(after, Ok(None)), "WATCH-ORDERED", || {
                    "the stream went on after a final status".to_owned()
                });
            }
        }
    })
}

/// AUTH-REFUSES: tokens that are not genuine are `Unauthenticated`, and the
/// message does not echo them.
fn identity_refuses_bad_tokens(a: &Target) -> CaseFuture<'_> {
    Box::pin(async move {
        let idp = family!(a, identity);
        let forged = [
            "",
            "not-a-token",
            "eyJhbGciOiJub25lIn0.eyJTb0RpbmhEYW5oIjoiMDc5MTkwMDEyMzQ1In0.",
            "eyJhbGciOiJIUzI1NiJ9.eyJTb0RpbmhEYW5oIjoiMDc5MTkwMDEyMzQ1In0.c2lnbmF0dXJl",
        ];
        for token in forged {
            match idp.authenticate(&lienthong_adapter_core::BearerToken::new(token)).await {
                Ok(_) => {
                    return Err(Violation { rule: "AUTH-REFUSES", detail: "a forged token was accepted".to_owned() });
                }
                Err(e) if matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::DeadlineExceeded) => {
                    return Err(failed_under("AUTH-REFUSES", e));
                }
                Err(e) => {
                    ensure(e.kind() == ErrorKind::Unauthenticated, "AUTH-REFUSES", || {
                        format!("a forged token gave {} instead of unauthenticated", e.kind())
                    })?;
                    ensure(token.len() < 12 || !e.message().contains(token), "AUTH-REFUSES", || {
                        "the error message echoes the token".to_owned()
                    })?;
                }
            }
        }
        Ok(())
    })
}

fn case(name: &'static str, method: Method, run: for<'a> fn(&'a Target) -> CaseFuture<'a>) -> Case {
    Case { name, method, run, needs_dossier: false }
}

/// Every case, in the order they run.
pub fn all_cases() -> Vec<Case> {
    use Method::*;
    vec![
        case("identity/authenticate refuses forged tokens", GetMyProfile, identity_refuses_bad_tokens),
        case("healthcare/list_facilities pages completely and stably", ListFacilities, facilities_pages),
        case("healthcare/list_facilities page sizes", ListFacilities, page_size_capped),
        case("healthcare/list_facilities near search", ListFacilities, facilities_near),
        case("healthcare/list_facilities type filter, NFC names", ListFacilities, facility_type_filter),
        case("healthcare/list_facilities concurrent calls", ListFacilities, facilities_concurrent),
        case("healthcare/list_facilities deadline and error kinds", ListFacilities, facilities_deadline_and_errors),
        case("education/list_schools pages completely and stably", ListSchools, schools_pages),
        case("education/list_schools near search", ListSchools, schools_near),
        case("education/list_schools page sizes", ListSchools, schools_page_sizes),
        case("transport/list_bus_routes pages completely and stably", ListBusRoutes, routes_pages),
        case("transport/list_traffic_cameras pages completely and stably", ListTrafficCameras, cameras_pages),
        case("transport/list_nearby_stops near search", ListNearbyStops, stops_near),
        case("construction/list_housing_projects pages completely and stably", ListHousingProjects, housing_pages),
        case("public_services/list_agencies pages completely and stably", ListAgencies, agencies_pages),
        case("public_services/list_agencies page sizes", ListAgencies, agencies_page_sizes),
        case("public_services/list_agencies concurrent calls", ListAgencies, agencies_concurrent),
        case("public_services/list_agencies deadline and error kinds", ListAgencies, agencies_deadline_and_errors),
        case("public_services/list_procedures pages completely and stably", ListProcedures, procedures_pages),
        case("public_services/list_procedures page sizes", ListProcedures, procedures_page_sizes),
        case("public_services/list_procedures NFC names", ListProcedures, procedure_names_nfc),
        Case {
            needs_dossier: true,
            ..case("public_services/watch_dossier ordered, ends on a final status", WatchDossier, watch_ordered)
        },
        case("every get answers NOT_FOUND for unknown ids", GetFacility, gets_not_found),
    ]
}
