//! Fakes of the three platforms city data portals most often run on, each
//! serving the same 60 schools and 60 health facilities the way its
//! documentation says it answers:
//!
//! | platform | path (schools; facilities) | paging | a missing record |
//! |---|---|---|---|
//! | CKAN DataStore | `/ckan/api/3/action/datastore_search?resource_id=truong-hoc` (`co-so-y-te`) | `limit`/`offset` (at most 100), `result.total` | a search finding nothing |
//! | ArcGIS REST FeatureServer | `/arcgis/rest/services/Schools/FeatureServer/0/query` (`Facilities`) | `resultOffset`/`resultRecordCount` (at most 25), `exceededTransferLimit` | a `where` finding nothing |
//! | OData v4 | `/odata/Schools` (`Facilities`) | `$top`/`$skip`, server pages of 50 with `@odata.nextLink`, `@odata.count` | `/odata/Schools('…')` answers 404 |
//!
//! As the platforms do: CKAN answers 409 `success: false` to a parameter or
//! filter it does not know and holds coordinates as strings; ArcGIS ignores
//! parameters it does not know, reports errors inside HTTP 200 bodies
//! (`{"error": {"code": 400}}`) and gives coordinates in Web Mercator metres
//! unless asked for `outSR=4326`; OData answers 400 to a query option it does
//! not support, and nests the address and the location (GeoJSON).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use lienthong_adapter_core::geo;
use serde_json::{Value, json};

use super::{Faults, serve};

/// How many schools each platform serves.
pub const SCHOOLS: usize = 60;
/// How many health facilities each platform serves.
pub const FACILITIES: usize = 60;
/// ArcGIS's `maxRecordCount` here.
pub const ARCGIS_MAX: usize = 25;
/// The OData server's page size.
pub const ODATA_PAGE: usize = 50;
/// CKAN's `ckan.datastore.search.rows_max` here.
pub const CKAN_MAX: usize = 100;

/// One record, as each platform holds it.
#[derive(Debug, Clone)]
struct Item {
    id: String,
    lat: f64,
    lng: f64,
    /// A CKAN DataStore row.
    ckan: Value,
    /// An ArcGIS feature's attributes.
    arcgis: Value,
    /// An OData entity.
    odata: Value,
}

/// The datasets: (CKAN resource id, ArcGIS service, OData entity set, OData
/// key property) → name.
const DATASETS: &[(&str, &str, &str, &str, &str)] = &[
    ("truong-hoc", "Schools", "Schools", "SchoolId", "schools"),
    ("co-so-y-te", "Facilities", "Facilities", "FacilityCode", "facilities"),
];

#[derive(Debug, Default)]
struct PortalState {
    /// By dataset name: `schools`, `facilities`.
    sets: HashMap<&'static str, Vec<Item>>,
    /// Answer every request with a body that is not JSON.
    malformed: AtomicBool,
    /// ArcGIS: the third school's geometry in Web Mercator metres even when
    /// degrees were asked (a broken record).
    broken_geometry: AtomicBool,
    /// Requests served, per platform.
    requests: [AtomicUsize; 3],
    /// ArcGIS: queries need a token from its token endpoint.
    secured: AtomicBool,
    /// ArcGIS tokens valid now.
    tokens: std::sync::Mutex<Vec<String>>,
    /// ArcGIS tokens issued.
    issued: AtomicUsize,
    /// CKAN: requests need the API token in `Authorization`.
    ckan_secured: AtomicBool,
    /// OData: requests need a bearer token from its token endpoint.
    odata_secured: AtomicBool,
    /// OData bearer tokens valid now, and how many were issued.
    odata_tokens: std::sync::Mutex<Vec<String>>,
    odata_issued: AtomicUsize,
}

/// The CKAN API token the fake accepts.
pub const CKAN_API_TOKEN: &str = "ckan-api-token-7f3a";
/// The OData client id the fake accepts (HTTP Basic at `/odata/token`).
pub const ODATA_CLIENT_ID: &str = "lienthong-odata";
/// Its client secret.
pub const ODATA_CLIENT_SECRET: &str = "s3cret-odata-key";

/// The ArcGIS client id the fake accepts.
pub const ARCGIS_CLIENT_ID: &str = "lienthong-gis";
/// Its client secret.
pub const ARCGIS_CLIENT_SECRET: &str = "s3cret-gis-key";

/// The running fakes.
#[derive(Debug)]
pub struct FakePortals {
    /// Where they listen.
    pub addr: SocketAddr,
    /// The fault injector.
    pub faults: Faults,
    state: Arc<PortalState>,
    _task: tokio::task::JoinHandle<()>,
}

fn sandbox(text: &str) -> Vec<Value> {
    serde_json::from_str(text).unwrap_or_default()
}

fn schools() -> Vec<Item> {
    let all = sandbox(include_str!("../../../adapters/sandbox/data/schools.json"));
    all.iter()
        .take(SCHOOLS)
        .enumerate()
        .map(|(i, r)| {
            let t = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
            let (lat, lng) = (r["lat"].as_f64().unwrap_or_default(), r["lng"].as_f64().unwrap_or_default());
            let public = r["ownership"] == "PUBLIC";
            let level = level_label(&t("level"));
            Item {
                id: t("school_id"),
                lat,
                lng,
                ckan: json!({
                    "_id": i + 1, "ma_truong": t("school_id"), "ten_truong": t("name"), "cap_hoc": level,
                    "loai_hinh": ownership_label(public), "dia_chi": t("street"), "ma_phuong_xa": t("ward_code"),
                    // The DataStore holds what the CSV held: text.
                    "vi_do": lat.to_string(), "kinh_do": lng.to_string(), "dien_thoai": t("phone"),
                }),
                arcgis: json!({
                    "OBJECTID": i + 1, "MA_TRUONG": t("school_id"), "TEN_TRUONG": t("name"), "CAP_HOC": level,
                    "LOAI_HINH": ownership_label(public), "DIA_CHI": t("street"), "MA_XA": t("ward_code"),
                    "DIEN_THOAI": t("phone"),
                }),
                odata: json!({
                    "SchoolId": t("school_id"), "Name": t("name"), "Level": t("level"),
                    "Ownership": if public { "Public" } else { "Private" },
                    "Address": {"Street": t("street"), "WardCode": t("ward_code")},
                    "Location": {"type": "Point", "coordinates": [lng, lat]},
                    "Phone": t("phone"),
                }),
            }
        })
        .collect()
}

/// The labels the portals use for a facility type.
pub const FACILITY_TYPES: &[(&str, &str)] = &[
    ("GENERAL_HOSPITAL", "Bệnh viện đa khoa"),
    ("SPECIALIZED_HOSPITAL", "Bệnh viện chuyên khoa"),
    ("MEDICAL_CENTER", "Trung tâm y tế"),
    ("HEALTH_STATION", "Trạm y tế"),
    ("CLINIC", "Phòng khám"),
    ("PHARMACY", "Nhà thuốc"),
];

fn facilities() -> Vec<Item> {
    let all = sandbox(include_str!("../../../adapters/sandbox/data/health-facilities.json"));
    all.iter()
        .take(FACILITIES)
        .enumerate()
        .map(|(i, r)| {
            let t = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
            let (lat, lng) = (r["lat"].as_f64().unwrap_or_default(), r["lng"].as_f64().unwrap_or_default());
            let public = r["ownership"] == "PUBLIC";
            let kind = FACILITY_TYPES.iter().find(|(o, _)| *o == t("type")).map_or("Khác", |(_, l)| *l);
            let specialties: Vec<&str> = r["specialties"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            let (insurance, emergency) = (r["insurance"] == true, r["emergency"] == true);
            Item {
                id: t("facility_code"),
                lat,
                lng,
                ckan: json!({
                    "_id": i + 1, "ma_co_so": t("facility_code"), "ten_co_so": t("name"), "loai_hinh": kind,
                    "so_huu": if public { "Công lập" } else { "Tư nhân" }, "dia_chi": t("street"),
                    "ma_phuong_xa": t("ward_code"), "vi_do": lat.to_string(), "kinh_do": lng.to_string(),
                    "dien_thoai": t("phone"), "bhyt": if insurance { "Có" } else { "Không" },
                    "cap_cuu_24h": emergency.to_string(), "chuyen_khoa": specialties.join(";"),
                }),
                arcgis: json!({
                    "OBJECTID": i + 1, "MA_CS": t("facility_code"), "TEN_CS": t("name"), "LOAI": kind,
                    "SO_HUU": if public { "Công lập" } else { "Tư nhân" }, "DIA_CHI": t("street"), "MA_XA": t("ward_code"),
                    "DIEN_THOAI": t("phone"), "BHYT": i32::from(insurance), "CAP_CUU": i32::from(emergency),
                    "CHUYEN_KHOA": specialties.join(";"),
                }),
                odata: json!({
                    "FacilityCode": t("facility_code"), "Name": t("name"), "Type": t("type"),
                    "Ownership": if public { "Public" } else { "Private" },
                    "Address": {"Street": t("street"), "WardCode": t("ward_code")},
                    "Location": {"type": "Point", "coordinates": [lng, lat]},
                    "Phone": t("phone"), "AcceptsInsurance": insurance, "Emergency24h": emergency,
                    "Specialties": specialties,
                }),
            }
        })
        .collect()
}

/// The Vietnamese label the portals use for a school level.
fn level_label(level: &str) -> &'static str {
    match level {
        "PRESCHOOL" => "Mầm non",
        "PRIMARY" => "Tiểu học",
        "LOWER_SECONDARY" => "Trung học cơ sở",
        "UPPER_SECONDARY" => "Trung học phổ thông",
        "MULTI_LEVEL" => "Nhiều cấp",
        _ => "Khác",
    }
}

fn ownership_label(public: bool) -> &'static str {
    if public { "Công lập" } else { "Ngoài công lập" }
}

fn malformed() -> Response {
    (StatusCode::OK, [("content-type", "application/json")], "{\"result\": [").into_response()
}

// ----- CKAN --------------------------------------------------------------

const CKAN_PARAMS: &[&str] =
    &["resource_id", "filters", "q", "limit", "offset", "fields", "sort", "include_total", "plain", "distinct"];

fn ckan_error(kind: &str, field: &str, message: &str) -> Response {
    let body = json!({
        "help": "http://ckan/api/3/action/help_show?name=datastore_search",
        "success": false,
        "error": {"__type": kind, field: [message]},
    });
    (StatusCode::CONFLICT, Json(body)).into_response()
}

async fn ckan_search(
    State(state): State<Arc<PortalState>>,
    Query(q): Query<HashMap<String, String>>,
    headers: axum::http::HeaderMap,
) -> Response {
    state.requests[0].fetch_add(1, Ordering::SeqCst);
    if state.malformed.load(Ordering::SeqCst) {
        return malformed();
    }
    // A CKAN API token travels as it is in `Authorization`.
    let token = headers.get("authorization").and_then(|v| v.to_str().ok());
    if state.ckan_secured.load(Ordering::SeqCst) && token != Some(CKAN_API_TOKEN) {
        let body = json!({"success": false, "error": {"__type": "Authorization Error", "message": "Access denied"}});
        return (StatusCode::FORBIDDEN, Json(body)).into_response();
    }
    if let Some(unknown) = q.keys().find(|k| !CKAN_PARAMS.contains(&k.as_str())) {
        return ckan_error("Validation Error", unknown, "The input field was not expected.");
    }
    let resource = q.get("resource_id").map(String::as_str).unwrap_or_default();
    let Some(items) = DATASETS.iter().find(|d| d.0 == resource).and_then(|d| state.sets.get(d.4)) else {
        let body = json!({"success": false, "error": {"__type": "Not Found Error", "message": "Not found: Resource was not found."}});
        return (StatusCode::NOT_FOUND, Json(body)).into_response();
    };
    let records: Vec<Value> = items.iter().map(|item| item.ckan.clone()).collect();
    let mut matching: Vec<&Value> = records.iter().collect();
    if let Some(filters) = q.get("filters") {
        let Ok(Value::Object(filters)) = serde_json::from_str::<Value>(filters) else {
            return ckan_error("Validation Error", "filters", "Not a json object");
        };
        for (field, wanted) in &filters {
            if records.first().is_none_or(|r| r.get(field).is_none()) {
                return ckan_error("Validation Error", "filters", &format!("field \"{field}\" not in resource"));
            }
            let wanted: Vec<&Value> = match wanted {
                Value::Array(values) => values.iter().collect(),
                one => vec![one],
            };
            // DataStore compares as text.
            matching.retain(|r| wanted.iter().any(|w| text_of(&r[field.as_str()]) == text_of(w)));
        }
    }
    if let Some(words) = q.get("q").filter(|w| !w.trim().is_empty()) {
        // PostgreSQL full text search: case-insensitive, accents kept.
        let words: Vec<String> = words.split_whitespace().map(str::to_lowercase).collect();
        matching.retain(|r| {
            let all = r.as_object().map(|o| o.values().map(text_of).collect::<Vec<_>>().join(" ").to_lowercase());
            all.is_some_and(|all| words.iter().all(|w| all.contains(w.as_str())))
        });
    }
    let number = |k: &str, default: usize| q.get(k).and_then(|v| v.parse::<usize>().ok()).unwrap_or(default);
    let (offset, limit) = (number("offset", 0), number("limit", 100).min(CKAN_MAX));
    let page: Vec<&Value> = matching.iter().skip(offset).take(limit).copied().collect();
    let next = format!("/api/3/action/datastore_search?offset={}&resource_id={resource}", offset + limit);
    let body = json!({
        "help": "http://ckan/api/3/action/help_show?name=datastore_search",
        "success": true,
        "result": {
            "include_total": true, "resource_id": resource, "records_format": "objects",
            "fields": [{"id": "_id", "type": "int"}, {"id": "ma_truong", "type": "text"}, {"id": "ten_truong", "type": "text"}],
            "records": page, "limit": limit, "offset": offset,
            "_links": {"start": format!("/api/3/action/datastore_search?resource_id={resource}"), "next": next},
            "total": matching.len(), "total_was_estimated": false,
        },
    });
    Json(body).into_response()
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

// ----- ArcGIS ------------------------------------------------------------

/// Web Mercator (EPSG:3857) metres of a WGS 84 point.
fn web_mercator(lat: f64, lng: f64) -> (f64, f64) {
    const R: f64 = 6_378_137.0;
    let x = R * lng.to_radians();
    let y = R * ((std::f64::consts::FRAC_PI_4 + lat.to_radians() / 2.0).tan()).ln();
    (x, y)
}

fn arcgis_feature(item: &Item, degrees: bool) -> Value {
    let (x, y) = if degrees { (item.lng, item.lat) } else { web_mercator(item.lat, item.lng) };
    json!({"attributes": item.arcgis, "geometry": {"x": x, "y": y}})
}

/// ArcGIS reports failures inside an HTTP 200 answer.
fn arcgis_error(code: u16, message: &str, details: &str) -> Response {
    Json(json!({"error": {"code": code, "message": message, "details": [details]}})).into_response()
}

/// The `where` clauses this fake understands: `1=1`, `FIELD = 'text'`
/// (quotes doubled inside), `FIELD = 12`, `UPPER(FIELD) LIKE '%TEXT%'`,
/// joined by `AND`. Anything else is the 400 ArcGIS gives.
fn arcgis_where(clause: &str) -> Option<Vec<(String, String, bool)>> {
    let mut out = Vec::new();
    for part in split_and(clause)? {
        let part = part.trim();
        if part == "1=1" {
            continue;
        }
        if let Some(rest) = part.strip_prefix("UPPER(") {
            let (field, pattern) = rest.split_once(") LIKE ")?;
            let pattern = unquote(pattern.trim())?;
            let needle = pattern.strip_prefix('%')?.strip_suffix('%')?;
            out.push((field.trim().to_owned(), needle.to_owned(), true));
            continue;
        }
        let (field, value) = part.split_once('=')?;
        let value = value.trim();
        let value = if value.starts_with('\'') { unquote(value)? } else { value.to_owned() };
        out.push((field.trim().to_owned(), value, false));
    }
    Some(out)
}

/// Splits on ` AND ` (any case) outside quotes.
fn split_and(clause: &str) -> Option<Vec<String>> {
    let upper = clause.to_ascii_uppercase();
    let (bytes, upper) = (clause.as_bytes(), upper.as_bytes());
    let (mut parts, mut start, mut quoted, mut i) = (Vec::new(), 0, false, 0);
    while i < bytes.len() {
        if bytes[i] == b'\'' {
            quoted = !quoted;
        } else if !quoted && upper[i..].starts_with(b" AND ") {
            parts.push(clause[start..i].to_owned());
            i += 5;
            start = i;
            continue;
        }
        i += 1;
    }
    if quoted {
        return None;
    }
    parts.push(clause[start..].to_owned());
    Some(parts)
}

/// `'it''s'` → `it's`; `None` unless one quoted string.
fn unquote(quoted: &str) -> Option<String> {
    let inner = quoted.strip_prefix('\'')?.strip_suffix('\'')?;
    let mut out = String::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' && chars.next() != Some('\'') {
            return None;
        }
        out.push(c);
    }
    Some(out)
}

/// ArcGIS's OAuth2 token endpoint: client credentials as form fields, the
/// answer (and a refusal) as JSON with HTTP 200.
async fn arcgis_token(State(state): State<Arc<PortalState>>, body: String) -> Response {
    let form: HashMap<String, String> =
        body.split('&').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_owned(), v.replace('+', " "))).collect();
    let field = |k: &str| form.get(k).map(String::as_str);
    if field("f") != Some("json") {
        return (StatusCode::OK, [("content-type", "text/html")], "<html>f=json was not given</html>").into_response();
    }
    if field("client_id") != Some(ARCGIS_CLIENT_ID)
        || field("client_secret") != Some(ARCGIS_CLIENT_SECRET)
        || field("grant_type") != Some("client_credentials")
    {
        return Json(
            json!({"error": {"code": 400, "error": "invalid_request", "message": "Invalid client_id", "details": []}}),
        )
        .into_response();
    }
    let n = state.issued.fetch_add(1, Ordering::SeqCst);
    let token = format!("esri-{n}");
    if let Ok(mut tokens) = state.tokens.lock() {
        tokens.push(token.clone());
    }
    Json(json!({"access_token": token, "expires_in": 7200})).into_response()
}

async fn arcgis_query(
    State(state): State<Arc<PortalState>>,
    Path(service): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: axum::http::HeaderMap,
) -> Response {
    let Some(items) = DATASETS.iter().find(|d| d.1 == service).and_then(|d| state.sets.get(d.4)) else {
        return arcgis_error(404, "Service not found.", "");
    };
    state.requests[1].fetch_add(1, Ordering::SeqCst);
    if state.malformed.load(Ordering::SeqCst) {
        return malformed();
    }
    if state.secured.load(Ordering::SeqCst) {
        let header = headers
            .get("x-esri-authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned);
        match q.get("token").cloned().or(header) {
            None => return arcgis_error(499, "Token Required", ""),
            Some(t) if !state.tokens.lock().is_ok_and(|tokens| tokens.contains(&t)) => {
                return arcgis_error(498, "Invalid Token", "");
            }
            Some(_) => {}
        }
    }
    let Some(clauses) = arcgis_where(q.get("where").map(String::as_str).unwrap_or("1=1")) else {
        return arcgis_error(400, "Unable to complete operation.", "Invalid or missing input parameters.");
    };
    let degrees = q.get("outSR").is_some_and(|sr| sr == "4326");
    let features: Vec<(usize, &Item, Value)> =
        items.iter().enumerate().map(|(i, item)| (i, item, arcgis_feature(item, degrees))).collect();
    let mut matching: Vec<&(usize, &Item, Value)> = Vec::new();
    'features: for f in &features {
        for (field, value, like) in &clauses {
            let Some(actual) = f.2["attributes"].get(field.as_str()) else {
                return arcgis_error(400, "Unable to complete operation.", &format!("'{field}' is not a field"));
            };
            let actual = text_of(actual);
            let ok = if *like { actual.to_uppercase().contains(value.as_str()) } else { actual == *value };
            if !ok {
                continue 'features;
            }
        }
        matching.push(f);
    }
    if let (Some(point), Some(distance)) = (q.get("geometry"), q.get("distance")) {
        let parsed = point
            .split_once(',')
            .and_then(|(x, y)| Some((x.trim().parse::<f64>().ok()?, y.trim().parse::<f64>().ok()?)));
        let (Some((lng, lat)), Ok(radius)) = (parsed, distance.parse::<f64>()) else {
            return arcgis_error(400, "Unable to complete operation.", "Invalid geometry.");
        };
        if q.get("units").map(String::as_str) != Some("esriSRUnit_Meter") {
            return arcgis_error(400, "Unable to complete operation.", "units must be given with distance.");
        }
        let centre = geo::point(lat, lng);
        matching.retain(|f| geo::distance_m(&centre, &geo::point(f.1.lat, f.1.lng)) <= radius);
    }
    if q.get("returnCountOnly").is_some_and(|v| v == "true") {
        return Json(json!({"count": matching.len()})).into_response();
    }
    let number = |k: &str, default: usize| q.get(k).and_then(|v| v.parse::<usize>().ok()).unwrap_or(default);
    let offset = number("resultOffset", 0);
    let count = number("resultRecordCount", ARCGIS_MAX).min(ARCGIS_MAX);
    let page: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(count)
        .map(|f| {
            let mut feature = f.2.clone();
            if f.0 == 2 && state.broken_geometry.load(Ordering::SeqCst) {
                let (x, y) = web_mercator(f.1.lat, f.1.lng);
                feature["geometry"] = json!({"x": x, "y": y});
            }
            feature
        })
        .collect();
    let exceeded = offset + page.len() < matching.len();
    let wkid = if degrees { 4326 } else { 102_100 };
    let mut body = json!({
        "objectIdFieldName": "OBJECTID",
        "geometryType": "esriGeometryPoint",
        "spatialReference": {"wkid": wkid, "latestWkid": if degrees { 4326 } else { 3857 }},
        "fields": [{"name": "OBJECTID", "type": "esriFieldTypeOID"}, {"name": "MA_TRUONG", "type": "esriFieldTypeString"}],
        "features": page,
    });
    if exceeded {
        body["exceededTransferLimit"] = json!(true);
    }
    Json(body).into_response()
}

// ----- OData -------------------------------------------------------------

const ODATA_OPTIONS: &[&str] = &["$top", "$skip", "$count", "$filter", "$orderby", "$select"];

fn odata_error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"error": {"code": code, "message": message}}))).into_response()
}

/// The `$filter` expressions this fake understands: `Path eq 'text'` (quotes
/// doubled inside) and `contains(Path,'text')`, joined by `and`.
fn odata_filter(expr: &str) -> Option<Vec<(String, String, bool)>> {
    let mut out = Vec::new();
    for part in split_and(expr)? {
        let part = part.trim();
        if let Some(rest) = part.strip_prefix("contains(") {
            let (path, quoted) = rest.strip_suffix(')')?.split_once(',')?;
            out.push((path.trim().to_owned(), unquote(quoted.trim())?, true));
            continue;
        }
        let (path, quoted) = part.split_once(" eq ")?;
        out.push((path.trim().to_owned(), unquote(quoted.trim())?, false));
    }
    Some(out)
}

/// `/odata/<EntitySet>` lists; `/odata/<EntitySet>('<key>')` gets.
async fn odata(
    State(state): State<Arc<PortalState>>,
    Path(segment): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: axum::http::HeaderMap,
) -> Response {
    state.requests[2].fetch_add(1, Ordering::SeqCst);
    if state.odata_secured.load(Ordering::SeqCst) {
        let bearer = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        if !bearer.is_some_and(|t| state.odata_tokens.lock().is_ok_and(|tokens| tokens.iter().any(|x| x == t))) {
            return (StatusCode::UNAUTHORIZED, [("www-authenticate", "Bearer error=\"invalid_token\"")])
                .into_response();
        }
    }
    let (set, key) = match segment.split_once('(') {
        Some((set, key)) => (set, Some(key)),
        None => (segment.as_str(), None),
    };
    let Some((dataset, key_name)) = DATASETS.iter().find(|d| d.2 == set).map(|d| (d.4, d.3)) else {
        return odata_error(StatusCode::NOT_FOUND, "NotFound", "No resource at this path.");
    };
    let items = state.sets.get(dataset).map(Vec::as_slice).unwrap_or_default();
    match key {
        Some(key) => odata_one(items, key_name, set, key),
        None => odata_list(&state, items, set, &q, &headers),
    }
}

fn odata_list(
    state: &PortalState,
    items: &[Item],
    set: &str,
    q: &HashMap<String, String>,
    headers: &axum::http::HeaderMap,
) -> Response {
    if state.malformed.load(Ordering::SeqCst) {
        return malformed();
    }
    if let Some(unknown) = q.keys().find(|k| k.starts_with('$') && !ODATA_OPTIONS.contains(&k.as_str())) {
        return odata_error(StatusCode::BAD_REQUEST, "", &format!("The query parameter '{unknown}' is not supported."));
    }
    let entities: Vec<Value> = items.iter().map(|item| item.odata.clone()).collect();
    let mut matching: Vec<&Value> = entities.iter().collect();
    if let Some(expr) = q.get("$filter") {
        let Some(clauses) = odata_filter(expr) else {
            return odata_error(StatusCode::BAD_REQUEST, "", "The query specified in the URI is not valid.");
        };
        for (path, value, contains) in clauses {
            let pointer = format!("/{path}");
            matching.retain(|e| {
                let actual = e.pointer(&pointer).map(text_of).unwrap_or_default();
                // OData string functions are case- and accent-sensitive.
                if contains { actual.contains(value.as_str()) } else { actual == value }
            });
        }
    }
    let number = |k: &str| q.get(k).and_then(|v| v.parse::<usize>().ok());
    let skip = number("$skip").unwrap_or(0);
    let top = number("$top");
    let wanted = top.unwrap_or(usize::MAX);
    let size = wanted.min(ODATA_PAGE);
    let page: Vec<&Value> = matching.iter().skip(skip).take(size).copied().collect();
    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let mut body = json!({"@odata.context": format!("http://{host}/odata/$metadata#{set}"), "value": page});
    if q.get("$count").is_some_and(|c| c == "true") {
        body["@odata.count"] = json!(matching.len());
    }
    let served = skip + page.len();
    if served < matching.len() && page.len() < wanted {
        // Server-driven paging: the rest of what was asked, from here.
        let mut next: Vec<(String, String)> = vec![("$skip".into(), served.to_string())];
        if let Some(top) = top {
            next.push(("$top".into(), (top - page.len()).to_string()));
        }
        for key in ["$filter", "$count", "$orderby", "$select"] {
            if let Some(v) = q.get(key) {
                next.push((key.into(), v.clone()));
            }
        }
        let query: String = next.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect::<Vec<_>>().join("&");
        body["@odata.nextLink"] = json!(format!("http://{host}/odata/{set}?{query}"));
    }
    Json(body).into_response()
}

/// The OData service's OAuth2 token endpoint (client credentials, HTTP Basic).
async fn odata_token(State(state): State<Arc<PortalState>>, headers: axum::http::HeaderMap, body: String) -> Response {
    let expected = format!("{ODATA_CLIENT_ID}:{ODATA_CLIENT_SECRET}");
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64_decode(b.trim()));
    if given.as_deref() != Some(expected.as_str()) || !body.contains("grant_type=client_credentials") {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_client"}))).into_response();
    }
    let n = state.odata_issued.fetch_add(1, Ordering::SeqCst);
    let token = format!("odata-{n}");
    if let Ok(mut tokens) = state.odata_tokens.lock() {
        tokens.push(token.clone());
    }
    Json(json!({"access_token": token, "token_type": "Bearer", "expires_in": 3600})).into_response()
}

fn base64_decode(text: &str) -> Option<String> {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|c| *c != b'=') {
        bits = (bits << 6) | T.iter().position(|t| *t == c)? as u32;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `'79-THPT-0001')`: the key in quotes, quotes doubled inside.
fn odata_one(items: &[Item], key_name: &str, set: &str, key: &str) -> Response {
    let Some(id) = key.strip_suffix(')').and_then(unquote) else {
        return odata_error(StatusCode::BAD_REQUEST, "", "The key in the URI is not valid.");
    };
    match items.iter().find(|item| item.id == id) {
        Some(item) => {
            let mut entity = item.odata.clone();
            entity["@odata.context"] = json!(format!("http://localhost/odata/$metadata#{set}/$entity"));
            debug_assert!(entity.get(key_name).is_some());
            Json(entity).into_response()
        }
        None => odata_error(StatusCode::NOT_FOUND, "NotFound", "No entity has this key."),
    }
}

/// Percent-encodes a query value.
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'$') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl FakePortals {
    /// Starts the three fakes on one port.
    pub async fn start() -> std::io::Result<Self> {
        let sets = HashMap::from([("schools", schools()), ("facilities", facilities())]);
        let state = Arc::new(PortalState { sets, ..Default::default() });
        let faults = Faults::default();
        let router = axum::Router::new()
            .route("/ckan/api/3/action/datastore_search", get(ckan_search))
            .route("/arcgis/rest/services/{service}/FeatureServer/0/query", get(arcgis_query))
            .route("/arcgis/sharing/rest/oauth2/token", axum::routing::post(arcgis_token))
            .route("/odata/token", axum::routing::post(odata_token))
            .route("/odata/{segment}", get(odata))
            .with_state(state.clone())
            .layer(axum::middleware::from_fn_with_state(faults.clone(), super::faults::apply));
        let (addr, task) = serve(router).await?;
        Ok(Self { addr, faults, state, _task: task })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every answer from now on is not JSON (or, off, JSON again).
    pub fn answer_malformed(&self, on: bool) {
        self.state.malformed.store(on, Ordering::SeqCst);
    }

    /// ArcGIS gives the third school in Web Mercator metres whatever was
    /// asked (a record that fails validation).
    pub fn break_one_geometry(&self, on: bool) {
        self.state.broken_geometry.store(on, Ordering::SeqCst);
    }

    /// ArcGIS queries need a token (or, off, not).
    pub fn secure_arcgis(&self, on: bool) {
        self.state.secured.store(on, Ordering::SeqCst);
    }

    /// Forgets every ArcGIS token issued (as after a revocation).
    pub fn revoke_arcgis_tokens(&self) {
        if let Ok(mut tokens) = self.state.tokens.lock() {
            tokens.clear();
        }
    }

    /// How many ArcGIS tokens were issued.
    pub fn arcgis_tokens_issued(&self) -> usize {
        self.state.issued.load(Ordering::SeqCst)
    }

    /// CKAN requests need its API token (or, off, not).
    pub fn secure_ckan(&self, on: bool) {
        self.state.ckan_secured.store(on, Ordering::SeqCst);
    }

    /// OData requests need a bearer token (or, off, not).
    pub fn secure_odata(&self, on: bool) {
        self.state.odata_secured.store(on, Ordering::SeqCst);
    }

    /// Forgets every OData token issued.
    pub fn revoke_odata_tokens(&self) {
        if let Ok(mut tokens) = self.state.odata_tokens.lock() {
            tokens.clear();
        }
    }

    /// How many OData tokens were issued.
    pub fn odata_tokens_issued(&self) -> usize {
        self.state.odata_issued.load(Ordering::SeqCst)
    }

    /// Requests served so far: CKAN, ArcGIS, OData.
    pub fn requests(&self) -> [usize; 3] {
        [0, 1, 2].map(|i| self.state.requests[i].load(Ordering::SeqCst))
    }

    /// The school ids, in the platforms' order.
    pub fn school_ids(&self) -> Vec<String> {
        self.ids("schools")
    }

    /// The ids of `dataset` (`schools`, `facilities`), in the platforms' order.
    pub fn ids(&self, dataset: &str) -> Vec<String> {
        self.state.sets.get(dataset).into_iter().flatten().map(|item| item.id.clone()).collect()
    }
}
