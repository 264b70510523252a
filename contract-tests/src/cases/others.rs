//! The cases that are not about one list: identity, honest capabilities, the
//! stop filter, ownership of dossiers, watching one.

use std::collections::HashSet;
use std::time::Duration;

use futures_util::StreamExt;
use lienthong_adapter_core::{BearerToken, DossierStream, ErrorKind, Method, api};

use super::listing::{Listing, MyDossiers, Query, Routes, Value, family};
use super::lists::walk;
use super::{bounded, expect_not_found, failed_under, get_name};
use crate::{CaseFuture, Target, Violation, ensure};

/// AUTH-REFUSES: tokens that are not genuine are `Unauthenticated`, and the
/// message does not echo them.
pub(crate) fn identity_refuses_bad_tokens(t: &Target) -> CaseFuture<'_> {
    Box::pin(async move {
        let idp = family(t.identity.as_ref()).map_err(|e| failed_under("AUTH-REFUSES", e))?;
        let forged = [
            "",
            "not-a-token",
            "eyJhbGciOiJub25lIn0.eyJTb0RpbmhEYW5oIjoiMDc5MTkwMDEyMzQ1In0.",
            "eyJhbGciOiJIUzI1NiJ9.eyJTb0RpbmhEYW5oIjoiMDc5MTkwMDEyMzQ1In0.c2lnbmF0dXJl",
        ];
        for token in forged {
            match bounded(&t.ctx(), idp.authenticate(&BearerToken::new(token))).await {
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

/// Calls `method` with a request that any adapter serving it can answer (or
/// refuse for the request's sake: an unknown id, a missing filter): `None`
/// when the suite cannot make such a call.
fn ok<T>(r: Result<T, lienthong_adapter_core::AdapterError>) -> Result<(), lienthong_adapter_core::AdapterError> {
    r.map(|_| ())
}

async fn probe(t: &Target, method: Method) -> Option<Result<(), lienthong_adapter_core::AdapterError>> {
    use Method::*;
    let ctx = t.citizen_ctx(0).unwrap_or_else(|| t.ctx());
    let (h, e, tr, c, p) = (
        family(t.healthcare.as_ref()),
        family(t.education.as_ref()),
        family(t.transport.as_ref()),
        family(t.construction.as_ref()),
        family(t.public_services.as_ref()),
    );
    let answer = match method {
        GetMyProfile => {
            let principal = ctx.principal.clone()?;
            let identity = family(t.identity.as_ref()).ok()?;
            ok(bounded(&ctx, identity.profile(&ctx, &principal)).await)
        }
        ListFacilities => {
            let req = api::ListFacilitiesRequest { page_size: 1, ..Default::default() };
            ok(bounded(&ctx, h.ok()?.list_facilities(&ctx, req)).await)
        }
        GetFacility => {
            let req = api::GetFacilityRequest { facility_code: "ZZ999".into() };
            ok(bounded(&ctx, h.ok()?.get_facility(&ctx, req)).await)
        }
        ListSchools => {
            let req = api::ListSchoolsRequest { page_size: 1, ..Default::default() };
            ok(bounded(&ctx, e.ok()?.list_schools(&ctx, req)).await)
        }
        GetSchool => {
            let req = api::GetSchoolRequest { school_id: "no-such-school".into() };
            ok(bounded(&ctx, e.ok()?.get_school(&ctx, req)).await)
        }
        ListBusRoutes => {
            let req = api::ListBusRoutesRequest { page_size: 1, ..Default::default() };
            ok(bounded(&ctx, tr.ok()?.list_bus_routes(&ctx, req)).await)
        }
        GetBusRoute => {
            let req = api::GetBusRouteRequest { route_number: "NO-999".into(), ..Default::default() };
            ok(bounded(&ctx, tr.ok()?.get_bus_route(&ctx, req)).await)
        }
        ListNearbyStops => {
            let req = api::ListNearbyStopsRequest { page_size: 1, ..Default::default() };
            ok(bounded(&ctx, tr.ok()?.list_nearby_stops(&ctx, req)).await)
        }
        ListArrivals => {
            let req = api::ListArrivalsRequest { stop_id: "no-such-stop".into(), ..Default::default() };
            ok(bounded(&ctx, tr.ok()?.list_arrivals(&ctx, req)).await)
        }
        ListTrafficCameras => {
            let req = api::ListTrafficCamerasRequest { page_size: 1, ..Default::default() };
            ok(bounded(&ctx, tr.ok()?.list_traffic_cameras(&ctx, req)).await)
        }
        GetTrafficCamera => {
            let req = api::GetTrafficCameraRequest { camera_id: "no-such-camera".into() };
            ok(bounded(&ctx, tr.ok()?.get_traffic_camera(&ctx, req)).await)
        }
        ListHousingProjects => {
            let req = api::ListHousingProjectsRequest { page_size: 1, ..Default::default() };
            ok(bounded(&ctx, c.ok()?.list_housing_projects(&ctx, req)).await)
        }
        GetHousingProject => {
            let req = api::GetHousingProjectRequest { project_id: "no-such-project".into() };
            ok(bounded(&ctx, c.ok()?.get_housing_project(&ctx, req)).await)
        }
        GetPracticingCertificate => {
            let req = api::GetPracticingCertificateRequest { certificate_number: "00-NONE-0000-00000".into() };
            ok(bounded(&ctx, c.ok()?.get_practicing_certificate(&ctx, req)).await)
        }
        ListAgencies => {
            let req = api::ListAgenciesRequest { page_size: 1, ..Default::default() };
            ok(bounded(&ctx, p.ok()?.list_agencies(&ctx, req)).await)
        }
        GetAgency => {
            let req = api::GetAgencyRequest { agency_code: "999.99.99.Z99".into() };
            ok(bounded(&ctx, p.ok()?.get_agency(&ctx, req)).await)
        }
        ListProcedures => {
            let req = api::ListProceduresRequest { page_size: 1, ..Default::default() };
            ok(bounded(&ctx, p.ok()?.list_procedures(&ctx, req)).await)
        }
        GetProcedure => {
            let req = api::GetProcedureRequest { procedure_code: "9.999999".into() };
            ok(bounded(&ctx, p.ok()?.get_procedure(&ctx, req)).await)
        }
        GetDossier => {
            let req = api::GetDossierRequest { dossier_code: "999.99.99.Z99-990101-9999".into() };
            ok(bounded(&ctx, p.ok()?.get_dossier(&ctx, req)).await)
        }
        ListMyDossiers => {
            // Without a citizen the call is refused before the adapter is asked.
            ctx.principal.as_ref()?;
            let req = api::ListMyDossiersRequest { page_size: 1, ..Default::default() };
            ok(bounded(&ctx, p.ok()?.list_my_dossiers(&ctx, req)).await)
        }
        WatchDossier => {
            let req = api::WatchDossierRequest { dossier_code: "999.99.99.Z99-990101-9999".into() };
            ok(bounded(&ctx, p.ok()?.watch_dossier(&ctx, req)).await)
        }
    };
    Some(answer)
}

/// CAPABILITIES-HONEST: a declared method answers (anything but
/// `Unsupported`, for a request it may refuse); one not declared is
/// `Unsupported` (UNIMPLEMENTED over gRPC).
pub(crate) async fn honest(t: &Target, method: Method) -> Result<(), Violation> {
    let Some(answer) = probe(t, method).await else {
        return Err(crate::skip("a personal method: give --citizen-token and --other-citizen-token"));
    };
    let name = get_name(method);
    let declared = crate::supports(t, method);
    match answer {
        Err(e) if matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::DeadlineExceeded) => {
            Err(failed_under("CAPABILITIES-HONEST", e))
        }
        Err(e) if e.kind() == ErrorKind::Unsupported => ensure(!declared, "CAPABILITIES-HONEST", || {
            format!("{name} is declared (GetCapabilities) but answers unimplemented")
        }),
        Err(e) => ensure(declared, "CAPABILITIES-HONEST", || {
            format!("{name} is not declared, yet it answers ({}) instead of unimplemented", e.kind())
        }),
        Ok(()) => ensure(declared, "CAPABILITIES-HONEST", || {
            format!("{name} is not declared, yet it answers instead of unimplemented")
        }),
    }
}

/// FILTER-EXACT for `stop_id`: a route's own stop finds the route, and every
/// route found serves the stop.
pub(crate) fn routes_by_stop(t: &Target) -> CaseFuture<'_> {
    Box::pin(async move {
        if !crate::supports(t, Method::GetBusRoute) {
            return Err(crate::skip("needs GetBusRoute, to know which stops a route serves"));
        }
        let routes = Routes;
        let ctx = t.ctx();
        let transport = family(t.transport.as_ref()).map_err(|e| failed_under("FILTER-EXACT", e))?;
        let full = |number: String| {
            let ctx = t.renewed(&ctx);
            async move {
                let req = api::GetBusRouteRequest { route_number: number, view: api::BusRouteView::Full as i32 };
                bounded(&ctx, transport.get_bus_route(&ctx, req)).await.map_err(|e| failed_under("FILTER-EXACT", e))
            }
        };
        let first = bounded(&ctx, routes.list(t, &ctx, Query { page_size: 10, ..Default::default() }))
            .await
            .map_err(|e| failed_under("FILTER-EXACT", e))?;
        let mut chosen = None;
        for route in &first.items {
            let full = full(route.route_number.clone()).await?;
            if let Some(stop) = full.directions.iter().flat_map(|d| &d.stops).map(|s| s.stop_id.clone()).next() {
                chosen = Some((route.route_number.clone(), stop));
                break;
            }
        }
        let Some((number, stop)) = chosen else {
            return Err(crate::skip("none of the first routes has stops to filter by"));
        };
        let q = Query { filter: Some(("stop_id", Value::Text(stop.clone()))), ..Default::default() };
        let found = walk(&routes, t, &ctx, &q, 100, "FILTER-EXACT").await?;
        ensure(found.iter().any(|r| r.route_number == number), "FILTER-EXACT", || {
            format!("transport/list_bus_routes: stop_id = {stop:?} left out route {number}, which serves it")
        })?;
        for route in found.iter().take(20) {
            let full = full(route.route_number.clone()).await?;
            ensure(full.directions.iter().flat_map(|d| &d.stops).any(|s| s.stop_id == stop), "FILTER-EXACT", || {
                format!(
                    "transport/list_bus_routes: stop_id = {stop:?} returned route {}, which does not serve it",
                    route.route_number
                )
            })?;
        }
        Ok(())
    })
}

/// NOT-FOUND for the one get without a list.
pub(crate) fn certificate_not_found(t: &Target) -> CaseFuture<'_> {
    Box::pin(async move {
        let construction = family(t.construction.as_ref()).map_err(|e| failed_under("NOT-FOUND", e))?;
        let ctx = t.ctx();
        let req = api::GetPracticingCertificateRequest { certificate_number: "00-NONE-0000-00000".into() };
        expect_not_found(
            "construction/get_practicing_certificate",
            bounded(&ctx, construction.get_practicing_certificate(&ctx, req)).await,
        )
    })
}

/// OWNERSHIP: two test citizens' lists share no dossier; a listed dossier's
/// get names the citizen as its owner; the applicant's masked number is
/// theirs; without a citizen the list is `Unauthenticated`.
pub(crate) fn ownership(t: &Target) -> CaseFuture<'_> {
    Box::pin(async move {
        let (Some(a), Some(b)) = (t.citizen_ctx(0), t.citizen_ctx(1)) else {
            return Err(crate::skip("give --citizen-token and --other-citizen-token"));
        };
        let mine = MyDossiers;
        let q = Query::default();
        let first = walk(&mine, t, &a, &q, 100, "OWNERSHIP").await?;
        let second = walk(&mine, t, &b, &q, 100, "OWNERSHIP").await?;
        if first.is_empty() {
            return Err(crate::skip("the first test citizen has no dossiers: give a citizen who has some"));
        }
        let theirs: HashSet<&str> = second.iter().map(|d| d.dossier_code.as_str()).collect();
        let shared = first.iter().filter(|d| theirs.contains(d.dossier_code.as_str())).count();
        ensure(shared == 0, "OWNERSHIP", || {
            format!("public_services/list_my_dossiers: {shared} dossier(s) listed for both test citizens")
        })?;
        let owner = a
            .principal
            .as_ref()
            .map(|p| p.citizen_id.clone())
            .ok_or_else(|| Violation { rule: "SETUP", detail: "no test citizen".to_owned() })?;
        let last4: String = owner.expose().chars().skip(8).collect();
        for dossier in &first {
            let masked = dossier.applicant.as_ref().map(|x| x.masked_id_number.as_str()).unwrap_or_default();
            ensure(masked.is_empty() || masked.ends_with(&last4), "OWNERSHIP", || {
                format!(
                    "public_services/list_my_dossiers: {} has an applicant other than the citizen",
                    dossier.dossier_code
                )
            })?;
        }
        if crate::supports(t, Method::GetDossier) {
            let services = family(t.public_services.as_ref()).map_err(|e| failed_under("OWNERSHIP", e))?;
            for dossier in first.iter().take(10) {
                let req = api::GetDossierRequest { dossier_code: dossier.dossier_code.clone() };
                let a = t.renewed(&a);
                let got = bounded(&a, services.get_dossier(&a, req)).await.map_err(|e| failed_under("OWNERSHIP", e))?;
                ensure(got.owner == owner, "OWNERSHIP", || {
                    format!(
                        "public_services/get_dossier: {} is listed as the citizen's own, but its get names another owner",
                        dossier.dossier_code
                    )
                })?;
            }
        }
        let anonymous = t.ctx();
        let services = family(t.public_services.as_ref()).map_err(|e| failed_under("OWNERSHIP", e))?;
        match bounded(&anonymous, services.list_my_dossiers(&anonymous, api::ListMyDossiersRequest::default())).await {
            Err(e) if e.kind() == ErrorKind::Unauthenticated => Ok(()),
            Err(e) if matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::DeadlineExceeded) => {
                Err(failed_under("OWNERSHIP", e))
            }
            Err(e) => Err(Violation {
                rule: "OWNERSHIP",
                detail: format!(
                    "public_services/list_my_dossiers without a citizen gave {} instead of unauthenticated",
                    e.kind()
                ),
            }),
            Ok(r) => Err(Violation {
                rule: "OWNERSHIP",
                detail: format!(
                    "public_services/list_my_dossiers without a citizen answered ({} dossiers)",
                    r.dossiers.len()
                ),
            }),
        }
    })
}

/// Reads `stream` for `budget` (or to its end): the current state first, then
/// one message per change, each with a longer history ending in its status;
/// after a final status, the end. `to_the_end`: a final status must come.
async fn follow(mut stream: DossierStream, budget: Duration, to_the_end: bool) -> Result<(), Violation> {
    let deadline = tokio::time::Instant::now() + budget;
    let mut last_len = 0;
    loop {
        let next = match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(next) => next,
            Err(_) if to_the_end || last_len == 0 => {
                let what = if last_len == 0 { "not even the current state" } else { "no final status" };
                return Err(Violation {
                    rule: "WATCH-ORDERED",
                    detail: format!("{what} within {} s", budget.as_secs()),
                });
            }
            Err(_) => return Ok(()),
        };
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
        let final_status = api::DossierStatus::try_from(d.status).is_ok_and(lienthong_adapter_core::is_final_status);
        ensure(d.r#final == final_status, "WATCH-ORDERED", || {
            format!("`final` is {} for status {}", d.r#final, d.status)
        })?;
        last_len = d.history.len();
        if d.r#final {
            let after = tokio::time::timeout(Duration::from_secs(5), stream.next()).await;
            return ensure(matches!(after, Ok(None)), "WATCH-ORDERED", || {
                "the stream went on after a final status".to_owned()
            });
        }
    }
}

/// WATCH-ORDERED: the dossier given is watched to its final status; without
/// one, a test citizen's final dossier (one message, then the end) and one
/// still moving (its current state, then changes in order).
pub(crate) fn watch_ordered(t: &Target) -> CaseFuture<'_> {
    Box::pin(async move {
        let services = family(t.public_services.as_ref()).map_err(|e| failed_under("WATCH-ORDERED", e))?;
        // A watch has no deadline (it lasts until the final status), but it
        // must open in time.
        let watch = |ctx: lienthong_adapter_core::CallContext, code: String| async move {
            let mut ctx = ctx;
            ctx.deadline = None;
            let opening = services.watch_dossier(&ctx, api::WatchDossierRequest { dossier_code: code });
            match tokio::time::timeout(crate::CALL_DEADLINE, opening).await {
                Ok(opened) => opened.map_err(|e| failed_under("WATCH-ORDERED", e)),
                Err(_) => Err(Violation {
                    rule: "DEADLINE",
                    detail: format!("a watch did not open within {} s", crate::CALL_DEADLINE.as_secs()),
                }),
            }
        };
        if let Some(code) = &t.dossier_code {
            return follow(watch(t.ctx(), code.clone()).await?, Duration::from_secs(120), true).await;
        }
        let Some(ctx) = t.citizen_ctx(0) else { return Err(crate::skip("no dossier to watch")) };
        let dossiers = walk(&MyDossiers, t, &ctx, &Query::default(), 100, "WATCH-ORDERED").await?;
        if dossiers.is_empty() {
            return Err(crate::skip("the first test citizen has no dossier to watch: give --dossier-code"));
        }
        if let Some(done) = dossiers.iter().find(|d| d.r#final) {
            follow(watch(ctx.clone(), done.dossier_code.clone()).await?, Duration::from_secs(10), true).await?;
        }
        if let Some(moving) = dossiers.iter().find(|d| !d.r#final) {
            follow(watch(ctx.clone(), moving.dossier_code.clone()).await?, Duration::from_secs(3), false).await?;
        }
        Ok(())
    })
}
