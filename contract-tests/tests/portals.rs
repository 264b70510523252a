//! The warehouse adapter against the three platforms city data portals run
//! on (CKAN, ArcGIS, OData), each answering as it documents: every record
//! exactly once whatever the page size and the platform's own cap, the
//! platform's total, a missing record that is NOT_FOUND, and a bad record
//! skipped rather than failing the list.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;

use lienthong_adapter_core::{AdapterFactory, AdapterSet, BuildContext, CallContext, ErrorKind, api};
use lienthong_adapter_warehouse_http::WarehouseFactory;
use lienthong_contract_tests::fakes::portals::{ARCGIS_MAX, FakePortals, ODATA_PAGE, SCHOOLS};
use serde_json::{Value, json};

/// The school levels and ownerships as the portals write them.
fn values() -> Value {
    json!({
        "level": {
            "Mầm non": "PRESCHOOL", "Tiểu học": "PRIMARY", "Trung học cơ sở": "LOWER_SECONDARY",
            "Trung học phổ thông": "UPPER_SECONDARY", "Nhiều cấp": "MULTI_LEVEL",
        },
        "ownership": {"Công lập": "PUBLIC", "Ngoài công lập": "PRIVATE"},
    })
}

/// The options that describe `platform`'s schools.
fn options(portals: &FakePortals, platform: &str) -> Value {
    let url = portals.url();
    let schools = match platform {
        "ckan" => json!({
            "path": "/datastore_search?resource_id=truong-hoc",
            "get_path": "/datastore_search?resource_id=truong-hoc&filters={\"ma_truong\":\"{id}\"}",
            "items": "result.records", "record": "result.records.0", "total": "result.total",
            "paging": {"style": "offset", "max_limit": 100},
            "fields": {
                "school_id": "ma_truong", "name": "ten_truong", "level": "cap_hoc", "ownership": "loai_hinh",
                "street": "dia_chi", "ward_code": "ma_phuong_xa", "latitude": "vi_do", "longitude": "kinh_do",
                "phone": "dien_thoai",
            },
            "values": values(),
        }),
        "arcgis" => json!({
            "path": "/query?where=1%3D1&outFields=*&f=json&outSR=4326",
            "get_path": "/query?where=MA_TRUONG%3D%27{id}%27&outFields=*&f=json&outSR=4326",
            "items": "features", "record": "features.0",
            // Asked for 100, the server gives 25 and says there is more.
            "paging": {
                "style": "offset", "offset_param": "resultOffset", "limit_param": "resultRecordCount",
                "more": "exceededTransferLimit", "max_limit": 100,
            },
            "fields": {
                "school_id": "attributes.MA_TRUONG", "name": "attributes.TEN_TRUONG", "level": "attributes.CAP_HOC",
                "ownership": "attributes.LOAI_HINH", "street": "attributes.DIA_CHI", "ward_code": "attributes.MA_XA",
                "latitude": "geometry.y", "longitude": "geometry.x", "phone": "attributes.DIEN_THOAI",
            },
            "values": values(),
        }),
        _ => json!({
            "path": "/Schools?$count=true",
            "get_path": "/Schools('{id}')",
            "items": "value", "total": "@odata.count",
            // Asked for 100, the server pages by 50 with a next link.
            "paging": {"style": "next_link", "limit_param": "$top", "max_limit": 100},
            "fields": {
                "school_id": "SchoolId", "name": "Name", "level": "Level", "ownership": "Ownership",
                "street": "Address.Street", "ward_code": "Address.WardCode",
                "latitude": "Location.coordinates.1", "longitude": "Location.coordinates.0", "phone": "Phone",
            },
            "values": {"ownership": {"Public": "PUBLIC", "Private": "PRIVATE"}},
        }),
    };
    let base = match platform {
        "ckan" => format!("{url}/ckan/api/3/action"),
        "arcgis" => format!("{url}/arcgis/rest/services/Schools/FeatureServer/0"),
        _ => format!("{url}/odata"),
    };
    json!({"base_url": base, "allow_insecure_http": true, "datasets": {"schools": schools}})
}

async fn adapter(portals: &FakePortals, platform: &str) -> AdapterSet {
    WarehouseFactory.build(BuildContext::new(platform, options(portals, platform))).await.unwrap()
}

fn ctx() -> CallContext {
    CallContext::anonymous("79")
}

const PLATFORMS: [&str; 3] = ["ckan", "arcgis", "odata"];

#[tokio::test]
async fn every_platform_lists_every_record_once_at_any_page_size_and_says_the_total() {
    let portals = FakePortals::start().await.unwrap();
    let want = portals.school_ids();
    assert_eq!(want.len(), SCHOOLS);
    for platform in PLATFORMS {
        let schools = adapter(&portals, platform).await.education.unwrap();
        for size in [7, 20, 100] {
            let (mut ids, mut token, mut pages) = (Vec::new(), String::new(), 0);
            loop {
                let req = api::ListSchoolsRequest { page_size: size, page_token: token, ..Default::default() };
                let page = schools.list_schools(&ctx(), req).await.unwrap();
                pages += 1;
                assert!(!page.schools.is_empty(), "{platform} at {size}: an empty page {pages}");
                assert!(page.schools.len() <= size as usize, "{platform} at {size}: a page too large");
                if !page.next_page_token.is_empty() {
                    assert_eq!(page.schools.len(), size as usize, "{platform} at {size}: a short page before the end");
                }
                // CKAN and OData say the total with each page; ArcGIS only
                // to a count query, not configured here.
                let total = if platform == "arcgis" { 0 } else { SCHOOLS as i32 };
                assert_eq!(page.total_size, total, "{platform} at {size}");
                ids.extend(page.schools.into_iter().map(|s| s.school_id));
                if page.next_page_token.is_empty() {
                    break;
                }
                token = page.next_page_token;
                assert!(pages < 50, "{platform} at {size}: the walk does not end");
            }
            assert_eq!(ids, want, "{platform} at {size}: every record once, in the platform's order");
        }
    }
}

#[tokio::test]
async fn a_page_larger_than_the_platforms_cap_is_filled_from_several_upstream_pages() {
    let portals = FakePortals::start().await.unwrap();
    for (platform, cap) in [("arcgis", ARCGIS_MAX), ("odata", ODATA_PAGE)] {
        let schools = adapter(&portals, platform).await.education.unwrap();
        let before = portals.requests();
        let req = api::ListSchoolsRequest { page_size: 60, ..Default::default() };
        let page = schools.list_schools(&ctx(), req).await.unwrap();
        assert_eq!(page.schools.len(), SCHOOLS, "{platform}: one page of 60 though the platform serves {cap}");
        assert!(page.next_page_token.is_empty(), "{platform}");
        let after = portals.requests();
        let i = if platform == "arcgis" { 1 } else { 2 };
        assert_eq!(after[i] - before[i], SCHOOLS.div_ceil(cap), "{platform}: one request per upstream page");
    }
}

#[tokio::test]
async fn a_missing_record_is_not_found_on_every_platform_and_a_present_one_matches_its_listing() {
    let portals = FakePortals::start().await.unwrap();
    for platform in PLATFORMS {
        let schools = adapter(&portals, platform).await.education.unwrap();
        let e =
            schools.get_school(&ctx(), api::GetSchoolRequest { school_id: "79-THPT-9999".into() }).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{platform}: {e}");
        let listed = schools
            .list_schools(&ctx(), api::ListSchoolsRequest { page_size: 3, ..Default::default() })
            .await
            .unwrap()
            .schools;
        for school in listed {
            let got = schools
                .get_school(&ctx(), api::GetSchoolRequest { school_id: school.school_id.clone() })
                .await
                .unwrap();
            assert_eq!(got, school, "{platform}");
            assert!(got.location.is_some_and(|l| (10.0..11.5).contains(&l.latitude)), "{platform}: degrees");
            assert_ne!(got.level, 0, "{platform}: the level was mapped");
        }
    }
}

#[tokio::test]
async fn malformed_json_is_unavailable_and_not_held_against_the_upstream() {
    let portals = FakePortals::start().await.unwrap();
    portals.answer_malformed(true);
    for platform in PLATFORMS {
        let schools = adapter(&portals, platform).await.education.unwrap();
        let e = schools.list_schools(&ctx(), api::ListSchoolsRequest::default()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{platform}");
        // The upstream answered: a data problem, not retried, and not a
        // failure of its availability.
        assert!(!e.is_temporary(), "{platform}");
    }
}

#[tokio::test]
async fn a_record_that_fails_validation_is_skipped_and_the_rest_served() {
    let portals = FakePortals::start().await.unwrap();
    portals.break_one_geometry(true);
    let schools = adapter(&portals, "arcgis").await.education.unwrap();
    let (mut ids, mut token) = (HashSet::new(), String::new());
    loop {
        let req = api::ListSchoolsRequest { page_size: 20, page_token: token, ..Default::default() };
        let page = schools.list_schools(&ctx(), req).await.unwrap();
        ids.extend(page.schools.into_iter().map(|s| s.school_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let broken = &portals.school_ids()[2];
    assert_eq!(ids.len(), SCHOOLS - 1);
    assert!(!ids.contains(broken), "the record in Web Mercator metres is left out");
    // Counted, by the field at fault.
    let invalid = lienthong_adapter_core::telemetry::invalid_counts();
    assert!(invalid.iter().any(|((d, f), n)| d == "schools" && f == "latitude" && *n >= 1), "{invalid:?}");
}

/// The worked configuration of `platform` in the adapter's README, pointed at
/// the fake: the instance's options as JSON.
fn preset(portals: &FakePortals, platform: &str) -> Value {
    let readme = include_str!("../../adapters/warehouse-http/README.md");
    let marker = format!("# worked: {platform}\n");
    let start = readme.find(&marker).unwrap_or_else(|| panic!("no worked configuration for {platform}")) + marker.len();
    let block = &readme[start..start + readme[start..].find("```").unwrap()];
    let parsed: toml::Table = toml::from_str(block).unwrap_or_else(|e| panic!("{platform}: {e}"));
    let (_, instance) = parsed["adapters"].as_table().unwrap().iter().next().unwrap();
    let mut options = serde_json::to_value(instance).unwrap();
    options.as_object_mut().unwrap().remove("kind");
    // The fake's address for the documented host.
    let base = options["base_url"].as_str().unwrap().to_owned();
    let path = base.splitn(4, '/').nth(3).unwrap_or_default();
    let prefix = if platform == "ckan" { "/ckan" } else { "" };
    options["base_url"] = json!(format!("{}{prefix}/{path}", portals.url()));
    options["allow_insecure_http"] = json!(true);
    options
}

#[tokio::test]
async fn with_a_platform_preset_each_passes_the_contract_suite() {
    let portals = FakePortals::start().await.unwrap();
    for platform in PLATFORMS {
        let set = WarehouseFactory.build(BuildContext::new(platform, preset(&portals, platform))).await.unwrap();
        let report = lienthong_contract_tests::run(&set).await;
        let (passed, failed, _) = report.counts();
        assert_eq!((failed, report.warnings().count()), (0, 0), "{platform}:\n{report}");
        assert!(passed >= 26, "{platform}:\n{report}");
        // Every education and healthcare case ran: pages, filters by ward,
        // level, ownership, type and text (diacritics ignored), near, gets.
        let skipped = report.outcomes.iter().filter(|(n, o)| {
            (n.starts_with("education") || n.starts_with("healthcare"))
                && matches!(o, lienthong_contract_tests::Outcome::Skipped(_))
        });
        assert_eq!(skipped.count(), 0, "{platform}:\n{report}");
    }
}

#[tokio::test]
async fn a_value_cannot_break_out_of_its_quotes_on_any_platform() {
    let portals = FakePortals::start().await.unwrap();
    for platform in PLATFORMS {
        let set = WarehouseFactory.build(BuildContext::new(platform, preset(&portals, platform))).await.unwrap();
        let schools = set.education.unwrap();
        for hostile in ["26740' OR '1'='1", "x\" , \"ma_truong\": \"79-THPT-0001", "') or true or ('"] {
            let req = api::ListSchoolsRequest { ward_code: hostile.into(), page_size: 100, ..Default::default() };
            match schools.list_schools(&ctx(), req).await {
                Ok(page) => assert!(page.schools.is_empty(), "{platform}: {hostile:?} matched records"),
                Err(e) => assert_ne!(e.kind(), ErrorKind::Unexpected, "{platform}: {e}"),
            }
            let e = schools.get_school(&ctx(), api::GetSchoolRequest { school_id: hostile.into() }).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::NotFound, "{platform}: {hostile:?}: {e}");
        }
    }
}

#[tokio::test]
async fn a_filter_the_platform_ignores_is_applied_here_and_counted() {
    let portals = FakePortals::start().await.unwrap();
    // ArcGIS ignores a parameter it does not know: the ward filter mapped to
    // one reaches it and filters nothing.
    let mut options = options(&portals, "arcgis");
    options["datasets"]["schools"]["filters"] = json!({"ward_code": "maXa"});
    let schools = WarehouseFactory.build(BuildContext::new("arcgis", options)).await.unwrap().education.unwrap();
    let all =
        schools.list_schools(&ctx(), api::ListSchoolsRequest { page_size: 100, ..Default::default() }).await.unwrap();
    let ward = all.schools[0].address.as_ref().unwrap().ward_code.clone();
    let want: Vec<&str> = all
        .schools
        .iter()
        .filter(|s| s.address.as_ref().is_some_and(|a| a.ward_code == ward))
        .map(|s| s.school_id.as_str())
        .collect();
    assert!(want.len() < all.schools.len());
    let before = dropped("schools", "ward_code");
    let req = api::ListSchoolsRequest { ward_code: ward.clone(), page_size: 100, ..Default::default() };
    let got = schools.list_schools(&ctx(), req).await.unwrap();
    let got: Vec<&str> = got.schools.iter().map(|s| s.school_id.as_str()).collect();
    assert_eq!(got, want, "only the ward's schools, though the platform sent them all");
    assert_eq!(dropped("schools", "ward_code") - before, (SCHOOLS - want.len()) as u64, "each dropped record counted");
}

fn dropped(dataset: &str, filter: &str) -> u64 {
    lienthong_adapter_core::telemetry::dropped_counts()
        .into_iter()
        .find(|((d, f), _)| d == dataset && f == filter)
        .map(|(_, n)| n)
        .unwrap_or(0)
}

#[tokio::test]
async fn arcgis_credentials_go_in_the_form_the_token_in_the_query_and_a_revoked_one_is_renewed_once() {
    let portals = FakePortals::start().await.unwrap();
    portals.secure_arcgis(true);
    let mut options = preset(&portals, "arcgis");
    let auth = |secret: &str| {
        json!({
            "token_url": format!("{}/arcgis/sharing/rest/oauth2/token", portals.url()),
            "client_id": lienthong_contract_tests::fakes::portals::ARCGIS_CLIENT_ID,
            "client_secret": secret,
        })
    };
    options["auth"] = auth(lienthong_contract_tests::fakes::portals::ARCGIS_CLIENT_SECRET);
    let schools = WarehouseFactory.build(BuildContext::new("gis", options.clone())).await.unwrap().education.unwrap();
    let c = ctx();
    let list = || schools.list_schools(&c, api::ListSchoolsRequest { page_size: 30, ..Default::default() });
    assert_eq!(list().await.unwrap().schools.len(), 30);
    assert_eq!(portals.arcgis_tokens_issued(), 1);
    list().await.unwrap();
    assert_eq!(portals.arcgis_tokens_issued(), 1, "the token is kept");
    // Revoked: ArcGIS says 498 inside an HTTP 200 answer; one new token.
    portals.revoke_arcgis_tokens();
    assert_eq!(list().await.unwrap().schools.len(), 30);
    assert_eq!(portals.arcgis_tokens_issued(), 2);

    // The token in ArcGIS Enterprise's header instead of the query.
    let mut header = options.clone();
    header["auth"]["token_header"] = json!("X-Esri-Authorization");
    let by_header = WarehouseFactory.build(BuildContext::new("gis", header)).await.unwrap().education.unwrap();
    let page = by_header.list_schools(&ctx(), api::ListSchoolsRequest { page_size: 30, ..Default::default() }).await;
    assert_eq!(page.unwrap().schools.len(), 30);

    // Wrong credentials: refused for good, not retried, not an outage.
    options["auth"] = auth("wrong");
    let wrong = WarehouseFactory.build(BuildContext::new("gis", options)).await.unwrap().education.unwrap();
    let e = wrong.list_schools(&ctx(), api::ListSchoolsRequest::default()).await.unwrap_err();
    assert_eq!((e.kind(), e.is_temporary()), (ErrorKind::Unavailable, false), "{e}");
    assert!(!e.message().contains("wrong"));

    // Without credentials: ArcGIS's 499, unavailable.
    let mut bare = preset(&portals, "arcgis");
    bare.as_object_mut().unwrap().remove("auth");
    let bare = WarehouseFactory.build(BuildContext::new("gis", bare)).await.unwrap().education.unwrap();
    let e = bare.list_schools(&ctx(), api::ListSchoolsRequest::default()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
}

#[tokio::test]
async fn an_arcgis_error_inside_a_200_answer_is_an_error() {
    let portals = FakePortals::start().await.unwrap();
    // A field the layer does not have: ArcGIS's 400, in an HTTP 200 body.
    let mut options = preset(&portals, "arcgis");
    options["datasets"]["schools"]["filters"] = json!({"ward_code": "NO_SUCH_FIELD"});
    let schools = WarehouseFactory.build(BuildContext::new("gis", options)).await.unwrap().education.unwrap();
    let req = api::ListSchoolsRequest { ward_code: "26740".into(), ..Default::default() };
    let e = schools.list_schools(&ctx(), req).await.unwrap_err();
    assert_eq!((e.kind(), e.is_temporary()), (ErrorKind::Unavailable, false), "{e}");
}

#[tokio::test]
async fn each_platform_authenticates_as_it_does() {
    use lienthong_contract_tests::fakes::portals::{CKAN_API_TOKEN, ODATA_CLIENT_ID, ODATA_CLIENT_SECRET};
    let portals = FakePortals::start().await.unwrap();
    portals.secure_ckan(true);
    portals.secure_odata(true);
    let first_page = |set: AdapterSet| async move {
        set.education
            .unwrap()
            .list_schools(&ctx(), api::ListSchoolsRequest { page_size: 5, ..Default::default() })
            .await
    };

    // CKAN: an API token in Authorization, from config (the environment).
    let mut ckan = preset(&portals, "ckan");
    let refused = WarehouseFactory.build(BuildContext::new("ckan", ckan.clone())).await.unwrap();
    let e = first_page(refused).await.unwrap_err();
    assert_eq!((e.kind(), e.is_temporary()), (ErrorKind::Unavailable, false), "{e}");
    ckan["headers"] = json!({"Authorization": CKAN_API_TOKEN});
    let set = WarehouseFactory.build(BuildContext::new("ckan", ckan)).await.unwrap();
    assert!(!format!("{:?}", set.education).contains(CKAN_API_TOKEN), "the token stays out of Debug");
    assert_eq!(first_page(set).await.unwrap().schools.len(), 5);

    // OData: OAuth2 client credentials; a revoked token is renewed once.
    let mut odata = preset(&portals, "odata");
    odata["auth"] = json!({
        "token_url": format!("{}/odata/token", portals.url()),
        "client_id": ODATA_CLIENT_ID, "client_secret": ODATA_CLIENT_SECRET,
    });
    let set = WarehouseFactory.build(BuildContext::new("odata", odata)).await.unwrap();
    let schools = set.education.unwrap();
    let c = ctx();
    let list = || schools.list_schools(&c, api::ListSchoolsRequest { page_size: 60, ..Default::default() });
    assert_eq!(list().await.unwrap().schools.len(), 60, "two server pages, one token");
    assert_eq!(portals.odata_tokens_issued(), 1);
    portals.revoke_odata_tokens();
    assert_eq!(list().await.unwrap().schools.len(), 60);
    assert_eq!(portals.odata_tokens_issued(), 2);
}

#[tokio::test]
async fn an_upstream_failure_or_a_slow_answer_gives_the_documented_code_on_each_platform() {
    use lienthong_contract_tests::fakes::Fault;
    let portals = FakePortals::start().await.unwrap();
    for (platform, path) in [("ckan", "/ckan/"), ("arcgis", "/arcgis/"), ("odata", "/odata/")] {
        let mut options = preset(&portals, platform);
        options["timeout"] = json!("500ms");
        let schools = WarehouseFactory.build(BuildContext::new(platform, options)).await.unwrap().education.unwrap();
        let c = ctx();
        let list = || schools.list_schools(&c, api::ListSchoolsRequest::default());
        for (fault, kind, temporary) in [
            (Fault::Status(500), ErrorKind::Unavailable, true),
            (Fault::Status(503), ErrorKind::Unavailable, true),
            (Fault::MalformedJson, ErrorKind::Unavailable, false),
            (Fault::Latency(std::time::Duration::from_secs(2)), ErrorKind::DeadlineExceeded, true),
        ] {
            portals.faults.inject(path, fault.clone());
            let e = list().await.unwrap_err();
            assert_eq!((e.kind(), e.is_temporary()), (kind, temporary), "{platform} {fault:?}: {e}");
            portals.faults.clear();
        }
        assert!(list().await.is_ok(), "{platform} recovers");
    }
}

#[tokio::test]
async fn the_arcgis_preset_counts_with_a_query_of_its_own() {
    let portals = FakePortals::start().await.unwrap();
    let set = WarehouseFactory.build(BuildContext::new("arcgis", preset(&portals, "arcgis"))).await.unwrap();
    let schools = set.education.unwrap();
    let first =
        schools.list_schools(&ctx(), api::ListSchoolsRequest { page_size: 7, ..Default::default() }).await.unwrap();
    assert_eq!(first.total_size, SCHOOLS as i32);
    // Filtered, the count is the filter's.
    let level = first.schools[0].level;
    let req = api::ListSchoolsRequest { level, page_size: 100, ..Default::default() };
    let filtered = schools.list_schools(&ctx(), req).await.unwrap();
    assert_eq!(filtered.total_size as usize, filtered.schools.len());
    assert!(filtered.schools.len() < SCHOOLS);
}

#[tokio::test]
async fn a_rest_dataset_may_write_its_filters_in_a_platforms_language() {
    let portals = FakePortals::start().await.unwrap();
    // OData described key by key, its filters in one $filter.
    let mut options = options(&portals, "odata");
    options["datasets"]["schools"]["filter_language"] = json!("odata");
    options["datasets"]["schools"]["filters"] = json!({"ward_code": "Address.WardCode", "ownership": "Ownership"});
    let schools = WarehouseFactory.build(BuildContext::new("odata", options)).await.unwrap().education.unwrap();
    let all =
        schools.list_schools(&ctx(), api::ListSchoolsRequest { page_size: 100, ..Default::default() }).await.unwrap();
    let ward = all.schools[0].address.as_ref().unwrap().ward_code.clone();
    let before = portals.requests()[2];
    let req = api::ListSchoolsRequest { ward_code: ward.clone(), ownership: 1, page_size: 100, ..Default::default() };
    let got = schools.list_schools(&ctx(), req).await.unwrap().schools;
    let want: Vec<&api::School> = all
        .schools
        .iter()
        .filter(|s| s.address.as_ref().is_some_and(|a| a.ward_code == ward) && s.ownership == 1)
        .collect();
    assert_eq!(got.iter().collect::<Vec<_>>(), want);
    assert_eq!(portals.requests()[2] - before, 1, "filtered by the platform, in one request");
    let hostile = api::ListSchoolsRequest { ward_code: "x' or 'a' eq 'a".into(), ..Default::default() };
    assert!(schools.list_schools(&ctx(), hostile).await.unwrap().schools.is_empty());
}
