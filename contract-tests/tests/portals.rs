//! The warehouse adapter against the three platforms city data portals run
//! on (CKAN, ArcGIS, OData), each answering as it documents: every record
//! exactly once whatever the page size and the platform's own cap, the
//! platform's total, a missing record that is NOT_FOUND, and a bad record
//! skipped rather than failing the list.

#![allow(clippy::unwrap_used, clippy::expect_used)]

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
                // The platforms that say a total say it; ArcGIS does not.
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
}
