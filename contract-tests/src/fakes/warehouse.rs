//! A fake city data warehouse: OAuth2 client credentials, and four datasets
//! shaped the way another province's warehouse might shape them (Vietnamese
//! field names, nesting, numbers as strings), each paged in its own style:
//!
//! | path | paging | answer |
//! |---|---|---|
//! | `/api/co-so-y-te` | offset/limit | `{"data": {"items": [...], "total": N}}` |
//! | `/api/truong-hoc` | page/size (from 1) | `{"ket_qua": [...], "tong_so": N}` |
//! | `/api/camera-giao-thong` | cursor | `{"items": [...], "next": "..."}` |
//! | `/api/du-an-nha-o` | offset/limit | `{"data": {"items": [...], "total": N}}` |
//!
//! Single records at `<path>/{id}` as `{"data": {...}}`. The records are the
//! sandbox's, reshaped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use lienthong_adapter_core::{geo, text};
use serde_json::{Value, json};

use super::{Faults, serve};

/// The client id the fake accepts.
pub const CLIENT_ID: &str = "lienthong";
/// The client secret the fake accepts.
pub const CLIENT_SECRET: &str = "s3cret-warehouse-key";

#[derive(Debug)]
struct Dataset {
    records: Vec<Value>,
    id: &'static str,
}

#[derive(Debug, Default)]
struct WarehouseState {
    datasets: HashMap<&'static str, Dataset>,
    tokens: Mutex<Vec<String>>,
    issued: AtomicUsize,
    serial: AtomicU64,
    expires_in: AtomicU64,
}

/// A running fake warehouse.
#[derive(Debug)]
pub struct FakeWarehouse {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its fault injector.
    pub faults: Faults,
    state: Arc<WarehouseState>,
    _task: tokio::task::JoinHandle<()>,
}

fn sandbox(name: &str) -> Vec<Value> {
    let text = match name {
        "facilities" => include_str!("../../../adapters/sandbox/data/health-facilities.json"),
        "schools" => include_str!("../../../adapters/sandbox/data/schools.json"),
        "cameras" => include_str!("../../../adapters/sandbox/data/traffic-cameras.json"),
        _ => include_str!("../../../adapters/sandbox/data/housing-projects.json"),
    };
    serde_json::from_str(text).unwrap_or_default()
}

const FACILITY_TYPES: &[(&str, &str)] = &[
    ("GENERAL_HOSPITAL", "Bệnh viện đa khoa"),
    ("SPECIALIZED_HOSPITAL", "Bệnh viện chuyên khoa"),
    ("MEDICAL_CENTER", "Trung tâm y tế"),
    ("HEALTH_STATION", "Trạm y tế"),
    ("CLINIC", "Phòng khám"),
    ("PHARMACY", "Nhà thuốc"),
];

fn label(table: &[(&'static str, &'static str)], ours: &str) -> &'static str {
    table.iter().find(|(o, _)| *o == ours).map(|(_, l)| *l).unwrap_or("Khác")
}

fn datasets() -> HashMap<&'static str, Dataset> {
    let ownership = |o: &Value| if o == "PUBLIC" { "Công lập" } else { "Tư nhân" };
    let facilities = sandbox("facilities")
        .iter()
        .map(|r| {
            json!({
                "ma": r["facility_code"], "ten": r["name"], "loai": label(FACILITY_TYPES, r["type"].as_str().unwrap_or("")),
                "so_huu": ownership(&r["ownership"]),
                "dia_chi": {"so_nha_duong": r["street"], "ma_xa": r["ward_code"]},
                "toa_do": {"vi_do": r["lat"].to_string(), "kinh_do": r["lng"]},
                "dien_thoai": r["phone"], "bhyt": if r["insurance"] == true { 1 } else { 0 },
                "cap_cuu_24h": r["emergency"],
                "chuyen_khoa": r["specialties"].as_array().map(|a| a.iter().filter_map(|s| s.as_str()).collect::<Vec<_>>().join(";")),
            })
        })
        .collect();
    let schools = sandbox("schools")
        .iter()
        .map(|r| {
            json!({
                "id": r["school_id"], "ten_truong": r["name"], "cap_hoc": r["level"], "loai_hinh": ownership(&r["ownership"]),
                "dia_chi": r["street"], "ma_phuong_xa": r["ward_code"], "lat": r["lat"], "lng": r["lng"],
                "sdt": r["phone"], "web": r["website"],
            })
        })
        .collect();
    let cameras = sandbox("cameras")
        .iter()
        .map(|r| {
            json!({
                "cam_id": r["camera_id"], "ma": r["code"], "ten": r["name"], "vi_tri": [r["lat"], r["lng"]],
                "duong": r["streets"], "anh": format!("https://warehouse.example/cameras/{}.jpg", r["camera_id"].as_str().unwrap_or("")),
                "cap_nhat": 1_763_542_816, "trang_thai": if r["online"] == true { "ONLINE" } else { "OFFLINE" }, "ptz": r["ptz"],
            })
        })
        .collect();
    let housing = sandbox("housing")
        .iter()
        .map(|r| {
            json!({
                "ma_du_an": r["project_id"], "ten_du_an": r["name"], "chu_dau_tu": r["investor"],
                "dia_diem": {"duong": r["street"], "ma_xa": r["ward_code"]}, "vi_do": r["lat"], "kinh_do": r["lng"],
                "tinh_trang": r["status"], "so_can": r["total_units"], "dien_tich": r["site_area_sqm"],
                "quyet_dinh": r["approval_decision"], "hoan_thanh": r["completion_date"],
            })
        })
        .collect();
    HashMap::from([
        ("co-so-y-te", Dataset { records: facilities, id: "ma" }),
        ("truong-hoc", Dataset { records: schools, id: "id" }),
        ("camera-giao-thong", Dataset { records: cameras, id: "cam_id" }),
        ("du-an-nha-o", Dataset { records: housing, id: "ma_du_an" }),
    ])
}

fn authorized(state: &WarehouseState, headers: &HeaderMap) -> bool {
    let token = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    token.is_some_and(|t| state.tokens.lock().is_ok_and(|tokens| tokens.iter().any(|x| x == t)))
}

async fn token(State(state): State<Arc<WarehouseState>>, headers: HeaderMap, body: String) -> Response {
    let expected = format!("Basic {}", basic(CLIENT_ID, CLIENT_SECRET));
    let ok = headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(expected.as_str());
    if !ok || !body.contains("grant_type=client_credentials") {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_client"}))).into_response();
    }
    let n = state.serial.fetch_add(1, Ordering::SeqCst);
    let value = format!("wh-token-{n}");
    if let Ok(mut t) = state.tokens.lock() {
        t.push(value.clone());
    }
    state.issued.fetch_add(1, Ordering::SeqCst);
    Json(json!({"access_token": value, "token_type": "Bearer", "expires_in": state.expires_in.load(Ordering::SeqCst)}))
        .into_response()
}

fn basic(user: &str, password: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let raw = format!("{user}:{password}").into_bytes();
    let mut out = String::new();
    for chunk in raw.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            out.push(if i <= chunk.len() { T[((n >> (18 - 6 * i)) & 63) as usize] as char } else { '=' });
        }
    }
    out
}

fn param<'a>(q: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    q.get(name).map(String::as_str).filter(|v| !v.is_empty())
}

fn point(name: &str, r: &Value) -> Option<(f64, f64)> {
    let num = |v: &Value| v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok()));
    match name {
        "co-so-y-te" => Some((num(&r["toa_do"]["vi_do"])?, num(&r["toa_do"]["kinh_do"])?)),
        "truong-hoc" => Some((num(&r["lat"])?, num(&r["lng"])?)),
        "camera-giao-thong" => Some((num(&r["vi_tri"][0])?, num(&r["vi_tri"][1])?)),
        _ => Some((num(&r["vi_do"])?, num(&r["kinh_do"])?)),
    }
}

/// Filters a dataset as the warehouse would: `ma_xa`, `loai`, `cap_hoc`,
/// `loai_hinh`, `tinh_trang`, `chu_dau_tu`, `q` (text), and `lat`/`lng`/`r`
/// (within r metres, nearest first).
fn select(name: &str, ds: &Dataset, q: &HashMap<String, String>) -> Vec<Value> {
    let eq = |r: &Value, field: &str, ptr: &str| {
        param(q, field).is_none_or(|want| r.pointer(ptr).and_then(Value::as_str) == Some(want))
    };
    let needle = param(q, "q").map(text::fold);
    // Each dataset keeps its ward code somewhere else.
    let ward = match name {
        "truong-hoc" => "/ma_phuong_xa",
        "du-an-nha-o" => "/dia_diem/ma_xa",
        _ => "/dia_chi/ma_xa",
    };
    let mut out: Vec<(f64, Value)> = ds
        .records
        .iter()
        .filter(|r| {
            eq(r, "ma_xa", ward)
                && eq(r, "loai", "/loai")
                && eq(r, "cap_hoc", "/cap_hoc")
                && eq(r, "loai_hinh", "/loai_hinh")
                && eq(r, "tinh_trang", "/tinh_trang")
        })
        .filter(|r| {
            param(q, "chu_dau_tu")
                .is_none_or(|w| text::fold(r["chu_dau_tu"].as_str().unwrap_or("")).contains(&text::fold(w)))
        })
        .filter(|r| needle.as_ref().is_none_or(|n| text::fold(&r.to_string()).contains(n.as_str())))
        .map(|r| (0.0, r.clone()))
        .collect();
    if let (Some(lat), Some(lng), Some(radius)) = (param(q, "lat"), param(q, "lng"), param(q, "r")) {
        let (Ok(lat), Ok(lng), Ok(radius)) = (lat.parse::<f64>(), lng.parse::<f64>(), radius.parse::<f64>()) else {
            return Vec::new();
        };
        let center = geo::point(lat, lng);
        out = out
            .into_iter()
            .filter_map(|(_, r)| {
                let (a, b) = point(name, &r)?;
                let d = geo::distance_m(&center, &geo::point(a, b));
                (d <= radius).then_some((d, r))
            })
            .collect();
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out.into_iter().map(|(_, r)| r).collect()
}

async fn list(
    State(state): State<Arc<WarehouseState>>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&state, &headers) {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_token"}))).into_response();
    }
    let Some(ds) = state.datasets.get(name.as_str()) else { return StatusCode::NOT_FOUND.into_response() };
    let all = select(&name, ds, &q);
    let num = |k: &str, d: usize| param(&q, k).and_then(|v| v.parse::<usize>().ok()).unwrap_or(d);
    match name.as_str() {
        "truong-hoc" => {
            let (page, size) = (num("page", 1).max(1), num("size", 20).clamp(1, 100));
            let items: Vec<Value> = all.iter().skip((page - 1) * size).take(size).cloned().collect();
            Json(json!({"ket_qua": items, "tong_so": all.len()})).into_response()
        }
        "camera-giao-thong" => {
            let start = param(&q, "cursor")
                .and_then(|c| c.strip_prefix("after-"))
                .and_then(|c| c.parse().ok())
                .unwrap_or(0usize);
            let limit = num("limit", 20).clamp(1, 100);
            let items: Vec<Value> = all.iter().skip(start).take(limit).cloned().collect();
            let next = if start + limit < all.len() { format!("after-{}", start + limit) } else { String::new() };
            Json(json!({"items": items, "next": next})).into_response()
        }
        _ => {
            let (offset, limit) = (num("offset", 0), num("limit", 20).clamp(1, 100));
            let items: Vec<Value> = all.iter().skip(offset).take(limit).cloned().collect();
            Json(json!({"data": {"items": items, "total": all.len()}})).into_response()
        }
    }
}

async fn one(
    State(state): State<Arc<WarehouseState>>,
    Path((name, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&state, &headers) {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_token"}))).into_response();
    }
    let found = state
        .datasets
        .get(name.as_str())
        .and_then(|ds| ds.records.iter().find(|r| r[ds.id].as_str() == Some(id.as_str())));
    match found {
        Some(r) => Json(json!({"data": r})).into_response(),
        None => (StatusCode::NOT_FOUND, Json(json!({"error": "not found"}))).into_response(),
    }
}

impl FakeWarehouse {
    /// Starts a warehouse whose tokens last an hour.
    pub async fn start() -> std::io::Result<Self> {
        let state = Arc::new(WarehouseState { datasets: datasets(), ..Default::default() });
        state.expires_in.store(3600, Ordering::SeqCst);
        let faults = Faults::default();
        let router = axum::Router::new()
            .route("/oauth/token", post(token))
            .route("/api/{name}", get(list))
            .route("/api/{name}/{id}", get(one))
            .with_state(state.clone())
            .layer(axum::middleware::from_fn_with_state(faults.clone(), super::faults::apply));
        let (addr, task) = serve(router).await?;
        Ok(Self { addr, faults, state, _task: task })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many tokens were issued.
    pub fn tokens_issued(&self) -> usize {
        self.state.issued.load(Ordering::SeqCst)
    }

    /// Forgets every token issued (as after a key rotation upstream).
    pub fn revoke_tokens(&self) {
        if let Ok(mut t) = self.state.tokens.lock() {
            t.clear();
        }
    }

    /// Sets the lifetime of tokens issued from now on.
    pub fn set_token_lifetime(&self, seconds: u64) {
        self.state.expires_in.store(seconds, Ordering::SeqCst);
    }

    /// The adapter options that describe this warehouse, as JSON.
    pub fn adapter_options(&self) -> Value {
        json!({
            "base_url": format!("{}/api", self.url()),
            "allow_insecure_http": true,
            "timeout": "2s",
            "auth": {"token_url": format!("{}/oauth/token", self.url()), "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
            "datasets": {
                "facilities": {
                    "path": "/co-so-y-te", "get_path": "/co-so-y-te/{id}", "items": "data.items", "total": "data.total", "record": "data",
                    "fields": {
                        "facility_code": "ma", "name": "ten", "type": "loai", "ownership": "so_huu", "street": "dia_chi.so_nha_duong",
                        "ward_code": "dia_chi.ma_xa", "latitude": "toa_do.vi_do", "longitude": "toa_do.kinh_do", "phone": "dien_thoai",
                        "accepts_health_insurance": "bhyt", "emergency_24h": "cap_cuu_24h", "specialties": "chuyen_khoa",
                    },
                    "values": {
                        "type": FACILITY_TYPES.iter().map(|(o, l)| ((*l).to_owned(), json!(o))).collect::<serde_json::Map<_, _>>(),
                        "ownership": {"Công lập": "PUBLIC", "Tư nhân": "PRIVATE"},
                    },
                    "filters": {"ward_code": "ma_xa", "type": "loai", "text": "q", "near.latitude": "lat", "near.longitude": "lng", "near.radius_meters": "r"},
                },
                "schools": {
                    "path": "/truong-hoc", "get_path": "/truong-hoc/{id}", "items": "ket_qua", "total": "tong_so", "record": "data",
                    "paging": {"style": "page", "page_param": "page", "limit_param": "size", "first_page": 1},
                    "fields": {
                        "school_id": "id", "name": "ten_truong", "level": "cap_hoc", "ownership": "loai_hinh", "street": "dia_chi",
                        "ward_code": "ma_phuong_xa", "latitude": "lat", "longitude": "lng", "phone": "sdt", "website": "web",
                    },
                    "values": {"ownership": {"Công lập": "PUBLIC", "Tư nhân": "PRIVATE"}},
                    "filters": {"ward_code": "ma_xa", "level": "cap_hoc", "ownership": "loai_hinh", "text": "q", "near.latitude": "lat", "near.longitude": "lng", "near.radius_meters": "r"},
                },
                "traffic_cameras": {
                    "path": "/camera-giao-thong", "get_path": "/camera-giao-thong/{id}", "items": "items", "record": "data",
                    "paging": {"style": "cursor", "cursor_param": "cursor", "limit_param": "limit", "next_cursor": "next"},
                    "fields": {
                        "camera_id": "cam_id", "code": "ma", "name": "ten", "latitude": "vi_tri.0", "longitude": "vi_tri.1",
                        "streets": "duong", "snapshot_url": "anh", "updated_time": "cap_nhat", "status": "trang_thai", "ptz": "ptz",
                    },
                    "filters": {"text": "q", "near.latitude": "lat", "near.longitude": "lng", "near.radius_meters": "r"},
                },
                "housing_projects": {
                    "path": "/du-an-nha-o", "get_path": "/du-an-nha-o/{id}", "items": "data.items", "total": "data.total", "record": "data",
                    "fields": {
                        "project_id": "ma_du_an", "name": "ten_du_an", "investor": "chu_dau_tu", "street": "dia_diem.duong",
                        "ward_code": "dia_diem.ma_xa", "latitude": "vi_do", "longitude": "kinh_do", "status": "tinh_trang",
                        "total_units": "so_can", "site_area_sqm": "dien_tich", "approval_decision": "quyet_dinh", "completion_date": "hoan_thanh",
                    },
                    "filters": {"ward_code": "ma_xa", "status": "tinh_trang", "investor": "chu_dau_tu", "text": "q"},
                },
            },
        })
    }
}
