//! End to end over TCP: the public-data services (health, education,
//! transport, construction, agencies and procedures) on the sandbox.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use common::{TestGateway, request, violated_fields};
use lienthong_proto::v1::construction_service_client::ConstructionServiceClient;
use lienthong_proto::v1::education_service_client::EducationServiceClient;
use lienthong_proto::v1::healthcare_service_client::HealthcareServiceClient;
use lienthong_proto::v1::public_services_service_client::PublicServicesServiceClient;
use lienthong_proto::v1::transport_service_client::TransportServiceClient;
use lienthong_proto::v1::*;
use tonic::Code;

fn near(lat: f64, lng: f64, radius: f64) -> Option<NearFilter> {
    Some(NearFilter { center: Some(GeoPoint { latitude: lat, longitude: lng }), radius_meters: radius })
}

const BEN_THANH: (f64, f64) = (10.7725, 106.6980);

#[tokio::test]
async fn facilities_list_filter_page_and_get() {
    let gw = TestGateway::sandbox().await;
    let mut c = HealthcareServiceClient::new(gw.channel.clone());

    // Walk every page: no duplicates, no gaps, same order twice.
    let walk = |mut c: HealthcareServiceClient<_>| async move {
        let mut all = Vec::new();
        let mut token = String::new();
        loop {
            let r = c
                .list_facilities(ListFacilitiesRequest {
                    page_size: 7,
                    page_token: token.clone(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            assert!(r.facilities.len() <= 7);
            all.extend(r.facilities.into_iter().map(|f| f.facility_code));
            if r.next_page_token.is_empty() {
                assert_eq!(all.len() as i32, r.total_size);
                break all;
            }
            token = r.next_page_token;
        }
    };
    let first = walk(c.clone()).await;
    let second = walk(c.clone()).await;
    assert!(first.len() >= 60);
    assert_eq!(first, second);
    let unique: std::collections::HashSet<_> = first.iter().collect();
    assert_eq!(unique.len(), first.len());

    // Type filter and diacritic-insensitive text.
    let r = c
        .list_facilities(ListFacilitiesRequest {
            r#type: FacilityType::SpecializedHospital as i32,
            text: "nhi dong".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!r.facilities.is_empty());
    assert!(
        r.facilities
            .iter()
            .all(|f| f.r#type == FacilityType::SpecializedHospital as i32 && f.name.contains("Nhi đồng"))
    );

    // Near: within the radius, nearest first, with distances.
    let r = c
        .list_facilities(ListFacilitiesRequest {
            near: near(BEN_THANH.0, BEN_THANH.1, 3000.0),
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.facilities.len() >= 5);
    let d: Vec<f64> = r.facilities.iter().map(|f| f.distance_meters.expect("distance")).collect();
    assert!(d.windows(2).all(|w| w[0] <= w[1]) && d.iter().all(|x| *x <= 3000.0), "{d:?}");

    // Ward filter: every result is in the ward.
    let ward = r.facilities[0].address.as_ref().unwrap().ward_code.clone();
    let r = c
        .list_facilities(ListFacilitiesRequest { ward_code: ward.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert!(!r.facilities.is_empty() && r.facilities.iter().all(|f| f.address.as_ref().unwrap().ward_code == ward));

    // Get, and NOT_FOUND.
    let code = first[0].clone();
    let f = c
        .get_facility(GetFacilityRequest { facility_code: code.clone() })
        .await
        .unwrap()
        .into_inner()
        .facility
        .unwrap();
    assert_eq!(f.facility_code, code);
    let e = c.get_facility(GetFacilityRequest { facility_code: "99999".into() }).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
}

#[tokio::test]
async fn facility_requests_are_validated_field_by_field() {
    let gw = TestGateway::sandbox().await;
    let mut c = HealthcareServiceClient::new(gw.channel.clone());
    let e = c
        .list_facilities(ListFacilitiesRequest {
            page_size: 1000,
            ward_code: "00004".into(), // a ward of Hà Nội
            r#type: 42,
            text: "x".repeat(300),
            near: near(95.0, 106.7, 60_000.0),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let mut fields = violated_fields(&e);
    fields.sort();
    assert_eq!(fields, ["near.center.latitude", "near.radius_meters", "page_size", "text", "type", "ward_code"]);
    assert!(e.message().contains("ward of province 01"), "{}", e.message());

    let e = c
        .list_facilities(ListFacilitiesRequest { page_token: "not-a-token".into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&e), ["page_token"]);
    let e = c.get_facility(GetFacilityRequest { facility_code: String::new() }).await.unwrap_err();
    assert_eq!(violated_fields(&e), ["facility_code"]);
    let e = c.get_facility(GetFacilityRequest { facility_code: "../etc".into() }).await.unwrap_err();
    assert_eq!(violated_fields(&e), ["facility_code"]);
}

#[tokio::test]
async fn a_page_token_is_bound_to_its_filters_and_method_and_cannot_be_forged() {
    use lienthong_proto::v1::transport_service_client::TransportServiceClient;
    let gw = TestGateway::sandbox().await;
    let mut c = EducationServiceClient::new(gw.channel.clone());
    let r = c.list_schools(ListSchoolsRequest { page_size: 5, ..Default::default() }).await.unwrap().into_inner();
    let token = r.next_page_token;
    assert!(!token.is_empty());
    // Opaque: the offset it stands for does not show.
    assert!(token.len() > 40 && !token.contains("cbf29ce4"), "{token}");
    // The next page with it.
    let page2 = c
        .list_schools(ListSchoolsRequest { page_size: 5, page_token: token.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(page2.schools[0].school_id, r.schools[0].school_id);
    // Other filters, another method, an altered token, a hand-made one.
    let refused = |e: tonic::Status| {
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert_eq!(violated_fields(&e), ["page_token"]);
    };
    refused(
        c.list_schools(ListSchoolsRequest {
            page_size: 5,
            page_token: token.clone(),
            level: SchoolLevel::Primary as i32,
            ..Default::default()
        })
        .await
        .unwrap_err(),
    );
    refused(
        TransportServiceClient::new(gw.channel.clone())
            .list_bus_routes(ListBusRoutesRequest { page_size: 5, page_token: token.clone(), ..Default::default() })
            .await
            .unwrap_err(),
    );
    let mut altered = token.clone().into_bytes();
    let last = altered.len() - 1;
    altered[last] = if altered[last] == b'0' { b'1' } else { b'0' };
    refused(
        c.list_schools(ListSchoolsRequest {
            page_size: 5,
            page_token: String::from_utf8(altered).unwrap(),
            ..Default::default()
        })
        .await
        .unwrap_err(),
    );
    refused(
        c.list_schools(ListSchoolsRequest {
            page_size: 5,
            page_token: "cbf29ce48422232514".into(),
            ..Default::default()
        })
        .await
        .unwrap_err(),
    );
    // Another gateway (another key) does not take it.
    let other = TestGateway::sandbox().await;
    refused(
        EducationServiceClient::new(other.channel.clone())
            .list_schools(ListSchoolsRequest { page_size: 5, page_token: token.clone(), ..Default::default() })
            .await
            .unwrap_err(),
    );
}

#[tokio::test]
async fn replicas_sharing_a_key_accept_each_others_page_tokens() {
    let key = lienthong::crypto::SecretKey::random().unwrap().to_hex();
    let toml = lienthong::config::SANDBOX_DEFAULT
        .replace("drain_timeout = \"10s\"", &format!("drain_timeout = \"10s\"\npage_token_key = \"{key}\""));
    let one = TestGateway::with_toml(&toml, lienthong::server::adapter_registry()).await;
    let two = TestGateway::with_toml(&toml, lienthong::server::adapter_registry()).await;
    let r = EducationServiceClient::new(one.channel.clone())
        .list_schools(ListSchoolsRequest { page_size: 5, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let page2 = EducationServiceClient::new(two.channel.clone())
        .list_schools(ListSchoolsRequest { page_size: 5, page_token: r.next_page_token, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page2.schools.len(), 5);
}

#[tokio::test]
async fn schools_filter_and_get() {
    let gw = TestGateway::sandbox().await;
    let mut c = EducationServiceClient::new(gw.channel.clone());
    let all = c.list_schools(ListSchoolsRequest { page_size: 100, ..Default::default() }).await.unwrap().into_inner();
    assert!(all.total_size >= 120);
    let r = c
        .list_schools(ListSchoolsRequest {
            level: SchoolLevel::UpperSecondary as i32,
            ownership: Ownership::Public as i32,
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.schools.len() >= 20);
    assert!(
        r.schools
            .iter()
            .all(|s| s.level == SchoolLevel::UpperSecondary as i32 && s.ownership == Ownership::Public as i32)
    );
    let r = c
        .list_schools(ListSchoolsRequest { text: "le hong phong".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.schools[0].name, "Trường THPT chuyên Lê Hồng Phong");
    let r = c
        .list_schools(ListSchoolsRequest {
            level: SchoolLevel::University as i32,
            near: near(10.7626, 106.6822, 1500.0),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.schools.iter().any(|s| s.name.contains("Khoa học Tự nhiên")));
    let id = r.schools[0].school_id.clone();
    let s = c.get_school(GetSchoolRequest { school_id: id.clone() }).await.unwrap().into_inner().school.unwrap();
    assert_eq!(s.school_id, id);
    assert!(s.distance_meters.is_none());
    assert_eq!(
        c.get_school(GetSchoolRequest { school_id: "79-TH-9999".into() }).await.unwrap_err().code(),
        Code::NotFound
    );
    let e = c.list_schools(ListSchoolsRequest { level: 99, ownership: 7, ..Default::default() }).await.unwrap_err();
    assert_eq!(violated_fields(&e), ["level", "ownership"]);
}

#[tokio::test]
async fn buses_stops_arrivals_and_cameras() {
    let gw = TestGateway::sandbox().await;
    let mut c = TransportServiceClient::new(gw.channel.clone());

    let routes =
        c.list_bus_routes(ListBusRoutesRequest { page_size: 100, ..Default::default() }).await.unwrap().into_inner();
    assert!(routes.total_size >= 25);
    assert!(routes.routes.iter().all(|r| r.directions.iter().all(|d| d.stops.is_empty() && d.stop_count >= 2)));

    let route = c
        .get_bus_route(GetBusRouteRequest { route_number: "03".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .route
        .unwrap();
    assert_eq!(route.name, "Bến Thành - Thạnh Lộc");
    let out = &route.directions[0];
    assert!(out.outbound && out.stops.len() as i32 == out.stop_count && out.stop_count > 10);
    assert!(route.fare_vnd >= 5000 && route.headway.is_some() && route.first_departure.is_some());

    // Routes through a stop include route 03.
    let stop = out.stops[3].clone();
    let through = c
        .list_bus_routes(ListBusRoutesRequest { stop_id: stop.stop_id.clone(), page_size: 100, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert!(through.routes.iter().any(|r| r.route_number == "03"));
    assert!(stop.route_numbers.contains(&"03".to_string()));

    // Nearby stops: sorted, within radius; near is required.
    let loc = stop.location.unwrap();
    let nearby = c
        .list_nearby_stops(ListNearbyStopsRequest {
            near: near(loc.latitude, loc.longitude, 400.0),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(nearby.stops[0].stop_id, stop.stop_id);
    assert_eq!(nearby.stops[0].distance_meters, Some(0.0));
    let d: Vec<f64> = nearby.stops.iter().map(|s| s.distance_meters.unwrap()).collect();
    assert!(d.windows(2).all(|w| w[0] <= w[1]) && d.iter().all(|x| *x <= 400.0));
    let e = c.list_nearby_stops(ListNearbyStopsRequest::default()).await.unwrap_err();
    assert_eq!(violated_fields(&e), ["near"]);

    // Arrivals: soonest first, within the next day, only the asked route.
    let arr = c
        .list_arrivals(ListArrivalsRequest { stop_id: stop.stop_id.clone(), route_number: "03".into(), limit: 5 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(arr.stop.unwrap().stop_id, stop.stop_id);
    assert_eq!(arr.arrivals.len(), 5);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let times: Vec<i64> = arr.arrivals.iter().map(|a| a.arrival_time.unwrap().seconds).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]) && times[0] >= now - 5 && times[4] <= now + 86_400, "{times:?}");
    assert!(arr.arrivals.iter().all(|a| a.route_number == "03" && a.scheduled));
    assert_eq!(
        c.list_arrivals(ListArrivalsRequest { stop_id: "0".into(), ..Default::default() }).await.unwrap_err().code(),
        Code::NotFound
    );
    let e = c
        .list_arrivals(ListArrivalsRequest { stop_id: String::new(), limit: 51, ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&e), ["stop_id", "limit"]);

    // Cameras: text and near; snapshot URLs never hot-link the city portal.
    let cams = c
        .list_traffic_cameras(ListTrafficCamerasRequest { text: "tran quang khai".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert!(
        !cams.cameras.is_empty()
            && cams
                .cameras
                .iter()
                .all(|c| c.name.contains("Trần Quang Khải") || c.streets.iter().any(|s| s.contains("Trần Quang Khải")))
    );
    let cam = &cams.cameras[0];
    assert!(cam.snapshot_url.starts_with("https://sandbox.lienthong.invalid/") && cam.updated_time.is_some());
    let got = c
        .get_traffic_camera(GetTrafficCameraRequest { camera_id: cam.camera_id.clone() })
        .await
        .unwrap()
        .into_inner()
        .camera
        .unwrap();
    assert_eq!(got.code, cam.code);
    let near_cams = c
        .list_traffic_cameras(ListTrafficCamerasRequest {
            near: near(BEN_THANH.0, BEN_THANH.1, 1000.0),
            page_size: 50,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!near_cams.cameras.is_empty() && near_cams.cameras.iter().all(|c| c.distance_meters.unwrap() <= 1000.0));
    assert_eq!(
        c.get_traffic_camera(GetTrafficCameraRequest { camera_id: "999999".into() }).await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(
        c.get_bus_route(GetBusRouteRequest { route_number: "999".into(), ..Default::default() })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
}

#[tokio::test]
async fn housing_projects_and_certificates() {
    let gw = TestGateway::sandbox().await;
    let mut c = ConstructionServiceClient::new(gw.channel.clone());
    let all = c
        .list_housing_projects(ListHousingProjectsRequest { page_size: 100, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert!(all.total_size >= 25);
    let r = c
        .list_housing_projects(ListHousingProjectsRequest {
            investor: "no va".into(),
            status: HousingProjectStatus::Completed as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.projects.len() >= 2);
    assert!(
        r.projects.iter().all(|p| p.investor.contains("No Va") && p.status == HousingProjectStatus::Completed as i32)
    );
    let p = c
        .get_housing_project(GetHousingProjectRequest { project_id: r.projects[0].project_id.clone() })
        .await
        .unwrap()
        .into_inner()
        .project
        .unwrap();
    assert_eq!(p.name, r.projects[0].name);
    assert_eq!(
        c.get_housing_project(GetHousingProjectRequest { project_id: "79-DANO-9999".into() }).await.unwrap_err().code(),
        Code::NotFound
    );

    // The first certificate of the shipped register, looked up with and without diacritics.
    let register: serde_json::Value =
        serde_json::from_str(include_str!("../../../adapters/sandbox/data/practicing-certificates.json")).unwrap();
    let number = register[0]["certificate_number"].as_str().unwrap().to_owned();
    assert!(number.contains("MGBĐS"));
    let cert = c
        .get_practicing_certificate(GetPracticingCertificateRequest {
            certificate_number: number.replace("MGBĐS", "mgbds"),
        })
        .await
        .unwrap()
        .into_inner()
        .certificate
        .unwrap();
    assert_eq!(cert.certificate_number, number);
    assert_eq!(cert.holder_name, register[0]["holder_name"].as_str().unwrap());
    assert!(
        cert.certificate_number.ends_with("-00001")
            && cert.status != 0
            && cert.expiry_time.unwrap().seconds > cert.issued_time.unwrap().seconds
    );
    let e = c
        .get_practicing_certificate(GetPracticingCertificateRequest {
            certificate_number: "79-MGBĐS-2024-99999".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = c
        .get_practicing_certificate(GetPracticingCertificateRequest { certificate_number: "a b".into() })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&e), ["certificate_number"]);
}

#[tokio::test]
async fn agencies_and_procedures() {
    let gw = TestGateway::sandbox().await;
    let mut c = PublicServicesServiceClient::new(gw.channel.clone());
    let a = c
        .list_agencies(ListAgenciesRequest {
            level: AdministrativeLevel::Province as i32,
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(a.agencies.len() >= 15 && a.agencies.iter().all(|x| x.level == AdministrativeLevel::Province as i32));
    let justice = a.agencies.iter().find(|x| x.name == "Sở Tư pháp").unwrap().clone();
    let got = c
        .get_agency(GetAgencyRequest { agency_code: justice.agency_code.clone() })
        .await
        .unwrap()
        .into_inner()
        .agency
        .unwrap();
    assert_eq!(got, justice);
    let all = c.list_agencies(ListAgenciesRequest::default()).await.unwrap().into_inner();
    assert!(all.total_size >= 40);
    let wards = c
        .list_agencies(ListAgenciesRequest {
            ward_code: "26740".into(),
            level: AdministrativeLevel::Commune as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(wards.agencies.len(), 1);
    assert_eq!(wards.agencies[0].name, "Ủy ban nhân dân Phường Sài Gòn");
    assert_eq!(
        c.get_agency(GetAgencyRequest { agency_code: "999.99.99.H29".into() }).await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(
        violated_fields(&c.get_agency(GetAgencyRequest { agency_code: "Sở".into() }).await.unwrap_err()),
        ["agency_code"]
    );

    let p =
        c.list_procedures(ListProceduresRequest { page_size: 100, ..Default::default() }).await.unwrap().into_inner();
    assert!(p.total_size >= 150);
    assert!(p.procedures.iter().all(|x| x.procedure_code.ends_with(".H29")));
    let hotich = c
        .list_procedures(ListProceduresRequest {
            field: "Hộ tịch".into(),
            text: "ket hon".into(),
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(hotich.procedures.iter().any(|x| x.national_code == "1.000894"));
    assert!(hotich.procedures.iter().all(|x| x.field == "Hộ tịch"));
    let by_agency = c
        .list_procedures(ListProceduresRequest {
            agency_code: wards.agencies[0].agency_code.clone(),
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        !by_agency.procedures.is_empty()
            && by_agency.procedures.iter().all(|x| x.level == AdministrativeLevel::Commune as i32)
    );
    let full = c
        .list_procedures(ListProceduresRequest { online_level: OnlineLevel::Full as i32, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert!(full.procedures.iter().all(|x| x.online_level == OnlineLevel::Full as i32));

    let marriage = c
        .get_procedure(GetProcedureRequest { procedure_code: "1.000894".into() })
        .await
        .unwrap()
        .into_inner()
        .procedure
        .unwrap();
    assert_eq!(marriage.name, "Thủ tục đăng ký kết hôn");
    assert_eq!(marriage.procedure_code, "1.000894.000.00.00.H29");
    assert!(!marriage.required_documents.is_empty() && !marriage.legal_bases.is_empty());
    let local = c
        .get_procedure(GetProcedureRequest { procedure_code: marriage.procedure_code.clone() })
        .await
        .unwrap()
        .into_inner()
        .procedure
        .unwrap();
    assert_eq!(local, marriage);
    assert_eq!(
        c.get_procedure(GetProcedureRequest { procedure_code: "9.999999".into() }).await.unwrap_err().code(),
        Code::NotFound
    );
    let e = c
        .list_procedures(ListProceduresRequest {
            agency_code: "x".into(),
            level: 9,
            online_level: 9,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&e), ["agency_code", "level", "online_level"]);
}

#[tokio::test]
async fn province_routing_errors_are_clear() {
    let gw = TestGateway::sandbox().await;
    let mut c = HealthcareServiceClient::new(gw.channel.clone());
    let ok = c.list_facilities(request(ListFacilitiesRequest::default(), &[("x-lienthong-province", "79")])).await;
    assert!(ok.is_ok());
    let e = c
        .list_facilities(request(ListFacilitiesRequest::default(), &[("x-lienthong-province", "99")]))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&e), ["metadata x-lienthong-province"]);
    let e = c
        .list_facilities(request(ListFacilitiesRequest::default(), &[("x-lienthong-province", "01")]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("serves: 79"), "{}", e.message());
    // A client reads which provinces are served from the detail.
    use tonic_types::StatusExt;
    let failure = e.get_details_precondition_failure().expect("a PreconditionFailure detail");
    let v = &failure.violations[0];
    assert_eq!((v.r#type.as_str(), v.subject.as_str()), ("PROVINCE", "01"));
    assert!(v.description.contains("79"), "{}", v.description);
}

#[tokio::test]
async fn answers_say_how_fresh_they_are() {
    let gw = TestGateway::sandbox().await;
    let mut c = PublicServicesServiceClient::new(gw.channel.clone());
    let req = || GetProcedureRequest { procedure_code: "1.000894".into() };
    let first = c.get_procedure(req()).await.unwrap();
    assert_eq!(first.metadata().get("x-lienthong-cache").unwrap(), "miss");
    let second = c.get_procedure(req()).await.unwrap();
    assert_eq!(second.metadata().get("x-lienthong-cache").unwrap(), "hit");
    assert!(second.metadata().get("x-lienthong-age-seconds").is_some());
    assert_eq!(first.into_inner(), second.into_inner());
    // NOT_FOUND is remembered, and still NOT_FOUND.
    for _ in 0..2 {
        let e = c.get_procedure(GetProcedureRequest { procedure_code: "9.999999".into() }).await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
    }
    // A dossier is cached too (its view is decided per caller after the cache).
    let dossier = || GetDossierRequest { dossier_code: "000.30.67.H29-251114-0001".into() };
    let d = c.get_dossier(dossier()).await.unwrap();
    assert_eq!(d.metadata().get("x-lienthong-cache").unwrap(), "miss");
    let d = c.get_dossier(dossier()).await.unwrap();
    assert_eq!(d.metadata().get("x-lienthong-cache").unwrap(), "hit");
}

#[tokio::test]
async fn an_upstream_budget_holds_while_the_cache_keeps_answering() {
    let toml = format!(
        "{}\n[limits]\nper_upstream = {{ sandbox = {{ per_second = 1, burst = 2 }} }}\n",
        lienthong::config::SANDBOX_DEFAULT
    );
    let gw = TestGateway::with_toml(&toml, lienthong::server::adapter_registry()).await;
    let mut c = PublicServicesServiceClient::new(gw.channel.clone());
    let get = |code: &str| GetProcedureRequest { procedure_code: code.into() };
    c.get_procedure(get("1.000894")).await.unwrap();
    c.get_procedure(get("1.001193")).await.unwrap();
    // A third distinct miss would reach the upstream: refused, with a delay.
    let e = c.get_procedure(get("1.000656")).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    use tonic_types::StatusExt;
    assert!(e.get_details_retry_info().unwrap().retry_delay.is_some());
    // Cached answers are still served.
    let hit = c.get_procedure(get("1.000894")).await.unwrap();
    assert_eq!(hit.metadata().get("x-lienthong-cache").unwrap(), "hit");
}

#[tokio::test]
async fn a_cache_hit_is_the_fetched_answer_byte_for_byte_and_its_page_token_serves_every_caller() {
    let gw = TestGateway::sandbox().await;
    let mut c = HealthcareServiceClient::new(gw.channel.clone());
    let list = || ListFacilitiesRequest { page_size: 4, text: "benh vien".into(), ..Default::default() };
    let cache_state = |r: &tonic::Response<ListFacilitiesResponse>| {
        r.metadata().get("x-lienthong-cache").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned()
    };
    // A citizen's call fills the cache; the answer has a sealed next token.
    let lan = gw.token("lan").await;
    let miss = c.list_facilities(common::authed(list(), &lan)).await.unwrap();
    assert_eq!(cache_state(&miss), "miss");
    let miss = miss.into_inner();
    assert_eq!(miss.facilities.len(), 4);
    assert!(!miss.next_page_token.is_empty());
    // An anonymous caller and another citizen hit it, and get the very same
    // answer (served from the stored frame, never re-encoded).
    let minh = gw.token("minh").await;
    for r in [request(list(), &[]), common::authed(list(), &minh)] {
        let hit = c.list_facilities(r).await.unwrap();
        assert_eq!(cache_state(&hit), "hit");
        assert_eq!(hit.into_inner(), miss);
    }
    // A public list's token is shared with its cached page: any caller may
    // follow it, and the next page carries on where the first stopped.
    for r in [
        request(ListFacilitiesRequest { page_token: miss.next_page_token.clone(), ..list() }, &[]),
        common::authed(ListFacilitiesRequest { page_token: miss.next_page_token.clone(), ..list() }, &minh),
    ] {
        let next = c.list_facilities(r).await.unwrap().into_inner();
        assert_eq!(next.facilities.len(), 4);
        assert!(next.facilities.iter().all(|f| miss.facilities.iter().all(|g| g.facility_code != f.facility_code)));
    }
    // A get's cached answer is its wrapped record, not the adapter's bare one.
    let code = miss.facilities[0].facility_code.clone();
    for want in ["miss", "hit"] {
        let r = c.get_facility(GetFacilityRequest { facility_code: code.clone() }).await.unwrap();
        assert_eq!(r.metadata().get("x-lienthong-cache").unwrap(), want);
        assert_eq!(r.into_inner().facility.unwrap(), miss.facilities[0]);
    }
}

/// Every quoted example in the public protos' comments (a code, an address,
/// a decision) is a record of the sandbox, so that what a developer copies
/// from the docs works. A new example needs a check here.
#[tokio::test]
async fn every_example_in_the_protos_comments_is_a_sandbox_record() {
    let gw = TestGateway::sandbox().await;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../proto/lienthong/v1");
    let mut examples = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for comment in text.lines().filter_map(|l| l.trim_start().strip_prefix("//")) {
            let quoted = comment.split('"').skip(1).step_by(2);
            examples.extend(quoted.filter(|q| q.starts_with(|c: char| c.is_ascii_digit())).map(str::to_owned));
        }
    }
    assert!(examples.len() >= 10, "{examples:?}");
    let mut health = HealthcareServiceClient::new(gw.channel.clone());
    let mut education = EducationServiceClient::new(gw.channel.clone());
    let mut transport = TransportServiceClient::new(gw.channel.clone());
    let mut construction = ConstructionServiceClient::new(gw.channel.clone());
    let mut services = PublicServicesServiceClient::new(gw.channel.clone());
    for example in &examples {
        let e = example.clone();
        let found = match example.as_str() {
            "79" | "01" => lienthong_adapter_core::admin::province(&e).is_some(),
            "26740" => lienthong_adapter_core::admin::ward(&e).is_some_and(|w| w.full_name == "Phường Sài Gòn"),
            "79001" => health.get_facility(GetFacilityRequest { facility_code: e }).await.is_ok(),
            "201B Nguyễn Chí Thanh" => {
                let f = health.get_facility(GetFacilityRequest { facility_code: "79001".into() }).await.unwrap();
                f.into_inner().facility.and_then(|f| f.address).is_some_and(|a| a.street == *example)
            }
            "79-THPT-0001" => education.get_school(GetSchoolRequest { school_id: e }).await.is_ok(),
            "03" | "61-6" => {
                transport.get_bus_route(GetBusRouteRequest { route_number: e, ..Default::default() }).await.is_ok()
            }
            "79-MGBĐS-2024-00015" => construction
                .get_practicing_certificate(GetPracticingCertificateRequest { certificate_number: e })
                .await
                .is_ok(),
            "2418/QĐ-UBND" => {
                let req = ListHousingProjectsRequest { page_size: 100, ..Default::default() };
                let projects = construction.list_housing_projects(req).await.unwrap().into_inner().projects;
                projects.iter().any(|p| p.approval_decision == *example)
            }
            "000.00.12.H29" => services.get_agency(GetAgencyRequest { agency_code: e }).await.is_ok(),
            "1.000894" | "1.000894.000.00.00.H29" => {
                services.get_procedure(GetProcedureRequest { procedure_code: e }).await.is_ok()
            }
            "163/QĐ-BTP" => {
                let p = services.get_procedure(GetProcedureRequest { procedure_code: "1.000894".into() }).await;
                p.unwrap().into_inner().procedure.is_some_and(|p| p.decision_number == *example)
            }
            "000.30.67.H29-251114-0001" => services.get_dossier(GetDossierRequest { dossier_code: e }).await.is_ok(),
            other => panic!("{other:?}: an example in the protos' comments that this test does not check: add a check"),
        };
        assert!(found, "the protos' example {example:?} is not in the sandbox");
    }
}
