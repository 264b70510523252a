//! A tour of every Lienthong service, against a running gateway.
//!
//!     cargo run -p lienthong                       # terminal 1: the sandbox
//!     cargo run -p lienthong --example tour        # terminal 2
//!
//! Set LIENTHONG_ADDR to tour another gateway (default http://127.0.0.1:50051),
//! and TOUR_WATCH_CHANGES to how many WatchDossier changes to wait for
//! (default 1; each takes about one `dossier_pace`).

#[path = "common/help.rs"]
mod help;

use std::error::Error;

use futures_util::StreamExt;
use lienthong_proto::sandbox::v1::sandbox_identity_service_client::SandboxIdentityServiceClient;
use lienthong_proto::sandbox::v1::{IssueTokenRequest, ListDemoCitizensRequest};
use lienthong_proto::v1::construction_service_client::ConstructionServiceClient;
use lienthong_proto::v1::education_service_client::EducationServiceClient;
use lienthong_proto::v1::healthcare_service_client::HealthcareServiceClient;
use lienthong_proto::v1::identity_service_client::IdentityServiceClient;
use lienthong_proto::v1::public_services_service_client::PublicServicesServiceClient;
use lienthong_proto::v1::transport_service_client::TransportServiceClient;
use lienthong_proto::v1::*;
use tonic::transport::Channel;

fn near(lat: f64, lng: f64, radius_meters: f64) -> Option<NearFilter> {
    Some(NearFilter { center: Some(GeoPoint { latitude: lat, longitude: lng }), radius_meters })
}

fn with_token<T>(message: T, token: &str) -> Result<tonic::Request<T>, Box<dyn Error>> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut().insert("authorization", format!("Bearer {token}").parse()?);
    Ok(r)
}

/// A time as people in Vietnam read it: local time (UTC+7 all year).
fn time(t: Option<prost_types::Timestamp>) -> String {
    let Ok(vietnam) = time::UtcOffset::from_hms(7, 0, 0) else { return "-".into() };
    t.and_then(|t| time::OffsetDateTime::from_unix_timestamp(t.seconds).ok())
        .map(|t| t.to_offset(vietnam))
        .map(|t| {
            format!("{:02}:{:02} {:02}/{:02}/{} (UTC+7)", t.hour(), t.minute(), t.day(), u8::from(t.month()), t.year())
        })
        .unwrap_or_else(|| "-".into())
}

/// A gRPC status code by its name, as the gRPC spec writes it.
fn code_name(code: tonic::Code) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    NAMES.get(code as usize).copied().unwrap_or("UNKNOWN")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    if help::asked(include_str!("tour.rs")) {
        return Ok(());
    }
    let addr = std::env::var("LIENTHONG_ADDR").unwrap_or_else(|_| "http://127.0.0.1:50051".into());
    let changes: usize = std::env::var("TOUR_WATCH_CHANGES").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let channel = Channel::from_shared(addr.clone())?.connect().await?;
    println!("Lienthong at {addr}\n");

    // Near Bến Thành market.
    let (lat, lng) = (10.7725, 106.6980);

    println!("== Health: general hospitals within 2 km of Bến Thành, nearest first");
    let mut health = HealthcareServiceClient::new(channel.clone());
    let r = health
        .list_facilities(ListFacilitiesRequest {
            near: near(lat, lng, 2000.0),
            r#type: FacilityType::GeneralHospital as i32,
            page_size: 5,
            ..Default::default()
        })
        .await?
        .into_inner();
    for f in &r.facilities {
        println!("  {:>6.0} m  {}  {}", f.distance_meters.unwrap_or_default(), f.facility_code, f.name);
    }
    if let Some(first) = r.facilities.first() {
        let f =
            health.get_facility(GetFacilityRequest { facility_code: first.facility_code.clone() }).await?.into_inner();
        println!("  GetFacility {} → {}", first.facility_code, f.facility.map(|f| f.phone).unwrap_or_default());
    }

    println!("\n== Education: public upper-secondary schools for the gifted (\"chuyên\", typed without accents)");
    let mut edu = EducationServiceClient::new(channel.clone());
    let r = edu
        .list_schools(ListSchoolsRequest {
            level: SchoolLevel::UpperSecondary as i32,
            ownership: Ownership::Public as i32,
            text: "chuyen".into(),
            page_size: 5,
            ..Default::default()
        })
        .await?
        .into_inner();
    println!("  {} match; first page:", r.total_size);
    for s in &r.schools {
        println!("  {}  {}", s.school_id, s.name);
    }
    if let Some(s) = r.schools.first() {
        let got = edu.get_school(GetSchoolRequest { school_id: s.school_id.clone() }).await?.into_inner();
        println!("  GetSchool → {}", got.school.and_then(|s| s.address).map(|a| a.ward_name).unwrap_or_default());
    }

    println!("\n== Transport: route 03, stops nearby, arrivals, cameras");
    let mut tr = TransportServiceClient::new(channel.clone());
    let routes = tr.list_bus_routes(ListBusRoutesRequest { page_size: 3, ..Default::default() }).await?.into_inner();
    println!(
        "  {} routes; first: {}",
        routes.total_size,
        routes.routes.iter().map(|r| r.route_number.as_str()).collect::<Vec<_>>().join(", ")
    );
    let route = tr
        .get_bus_route(GetBusRouteRequest { route_number: "03".into(), ..Default::default() })
        .await?
        .into_inner()
        .route;
    if let Some(route) = route {
        let dir = &route.directions[0];
        println!("  route 03 {}: {} stops, fare {} đ", route.name, dir.stop_count, route.fare_vnd);
    }
    let stops = tr
        .list_nearby_stops(ListNearbyStopsRequest { near: near(lat, lng, 300.0), page_size: 3, ..Default::default() })
        .await?
        .into_inner();
    for s in &stops.stops {
        println!(
            "  stop {} {} ({:.0} m) routes {}",
            s.code,
            s.name,
            s.distance_meters.unwrap_or_default(),
            s.route_numbers.join(",")
        );
    }
    if let Some(stop) = stops.stops.first() {
        let arr = tr
            .list_arrivals(ListArrivalsRequest { stop_id: stop.stop_id.clone(), limit: 3, ..Default::default() })
            .await?
            .into_inner();
        for a in &arr.arrivals {
            println!("  arrival: route {} to {} at {}", a.route_number, a.headsign, time(a.arrival_time));
        }
    }
    let cams = tr
        .list_traffic_cameras(ListTrafficCamerasRequest {
            near: near(lat, lng, 800.0),
            page_size: 3,
            ..Default::default()
        })
        .await?
        .into_inner();
    for c in &cams.cameras {
        println!("  camera {} {} → {}", c.code, c.name, c.snapshot_url);
    }
    if let Some(c) = cams.cameras.first() {
        let got = tr.get_traffic_camera(GetTrafficCameraRequest { camera_id: c.camera_id.clone() }).await?.into_inner();
        println!("  GetTrafficCamera → updated {}", time(got.camera.and_then(|c| c.updated_time)));
    }

    println!("\n== Construction: projects by Novaland, a certificate");
    let mut con = ConstructionServiceClient::new(channel.clone());
    let p = con
        .list_housing_projects(ListHousingProjectsRequest { investor: "No Va".into(), ..Default::default() })
        .await?
        .into_inner();
    for x in &p.projects {
        println!("  {}  {} ({} units)", x.project_id, x.name, x.total_units);
    }
    if let Some(x) = p.projects.first() {
        let got =
            con.get_housing_project(GetHousingProjectRequest { project_id: x.project_id.clone() }).await?.into_inner();
        println!("  GetHousingProject → {}", got.project.map(|p| p.approval_decision).unwrap_or_default());
    }
    // A broker's certificate on the public register, then one that is not.
    for number in ["79-MGBĐS-2024-00015", "79-MGBĐS-2099-00001"] {
        let asked = GetPracticingCertificateRequest { certificate_number: number.into() };
        match con.get_practicing_certificate(asked).await {
            Ok(c) => {
                let c = c.into_inner().certificate.unwrap_or_default();
                println!("  certificate {number} → {}, {}", c.holder_name, c.status().as_str_name());
            }
            Err(e) => println!("  certificate {number} → {}: {}", code_name(e.code()), e.message()),
        }
    }

    println!("\n== Public services: agencies and procedures");
    let mut ps = PublicServicesServiceClient::new(channel.clone());
    let ag = ps
        .list_agencies(ListAgenciesRequest {
            level: AdministrativeLevel::Province as i32,
            page_size: 3,
            ..Default::default()
        })
        .await?
        .into_inner();
    for a in &ag.agencies {
        println!("  {}  {}", a.agency_code, a.name);
    }
    if let Some(a) = ag.agencies.first() {
        let got = ps.get_agency(GetAgencyRequest { agency_code: a.agency_code.clone() }).await?.into_inner();
        println!("  GetAgency → {}", got.agency.and_then(|a| a.address).map(|a| a.street).unwrap_or_default());
    }
    let pr = ps
        .list_procedures(ListProceduresRequest { text: "khai sinh".into(), page_size: 3, ..Default::default() })
        .await?
        .into_inner();
    for p in &pr.procedures {
        println!("  {}  {}", p.procedure_code, p.name);
    }
    let marriage =
        ps.get_procedure(GetProcedureRequest { procedure_code: "1.000894".into() }).await?.into_inner().procedure;
    if let Some(m) = marriage {
        println!(
            "  GetProcedure 1.000894 → {} ({}, {} documents)",
            m.name,
            m.processing_time,
            m.required_documents.len()
        );
    }

    println!("\n== Identity: a sandbox token for a demo citizen");
    let mut sbx = SandboxIdentityServiceClient::new(channel.clone());
    let citizens = sbx.list_demo_citizens(ListDemoCitizensRequest {}).await?.into_inner().citizens;
    println!("  demo citizens: {}", citizens.iter().map(|c| c.handle.as_str()).collect::<Vec<_>>().join(", "));
    let token = sbx.issue_token(IssueTokenRequest { handle: "lan".into() }).await?.into_inner().access_token;
    let profile = IdentityServiceClient::new(channel.clone())
        .get_my_profile(with_token(GetMyProfileRequest::default(), &token)?)
        .await?
        .into_inner()
        .profile;
    if let Some(p) = profile {
        println!("  GetMyProfile → {} (ID {}, {})", p.full_name, p.id_number, p.identity_level().as_str_name());
    }

    println!("\n== Dossiers: Lan's own, then watch one");
    let mine = ps.list_my_dossiers(with_token(ListMyDossiersRequest::default(), &token)?).await?.into_inner();
    for d in &mine.dossiers {
        println!("  {}  {:<32}  {}", d.dossier_code, d.status().as_str_name(), d.procedure_name);
    }
    // The sandbox keeps at least one of each demo citizen's dossiers moving.
    let Some(code) = mine.dossiers.iter().find(|d| !d.r#final).map(|d| d.dossier_code.clone()) else {
        println!("  (no dossier in progress to watch)");
        return Ok(());
    };
    let public = ps.get_dossier(GetDossierRequest { dossier_code: code.clone() }).await?.into_inner().dossier;
    println!("  GetDossier without a token → {}", public.map_or("-", |d| d.view().as_str_name()));
    let mut watch =
        ps.watch_dossier(with_token(WatchDossierRequest { dossier_code: code }, &token)?).await?.into_inner();
    let mut seen = 0;
    while let Some(msg) = watch.next().await {
        let d = msg?.dossier.unwrap_or_default();
        let at = time(d.history.last().and_then(|h| h.change_time));
        println!("  WatchDossier → {} at {at}{}", d.status().as_str_name(), if d.r#final { " (final)" } else { "" });
        if d.r#final || seen >= changes {
            break;
        }
        seen += 1;
    }
    println!("\nTour complete.");
    Ok(())
}
