//! A fake public-service portal: agencies, procedures and dossiers in the
//! portal schema of the `registry-http` adapter, dossiers whose status the
//! test advances, and signed webhook pushes (or forged ones) to a gateway.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use lienthong_adapter_core::text;
use serde_json::{Value, json};

use super::{Faults, serve};

#[derive(Debug)]
struct PortalState {
    agencies: Vec<Value>,
    procedures: Vec<Value>,
    dossiers: Mutex<Vec<Value>>,
    /// Reads of one dossier (`GET /dossiers/{code}`) so far.
    dossier_reads: std::sync::atomic::AtomicU64,
}

/// A running fake portal.
#[derive(Debug)]
pub struct FakePortal {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its fault injector.
    pub faults: Faults,
    state: Arc<PortalState>,
    _task: tokio::task::JoinHandle<()>,
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn load() -> PortalState {
    let parse = |t: &str| -> Vec<Value> { serde_json::from_str(t).unwrap_or_default() };
    let agencies = parse(include_str!("../../../adapters/sandbox/data/agencies.json"));
    let committees: Vec<Value> =
        agencies.iter().filter(|a| a["level"] == "COMMUNE").map(|a| a["agency_code"].clone()).collect();
    let procedures: Vec<Value> = parse(include_str!("../../../adapters/sandbox/data/procedures.json"))
        .into_iter()
        .map(|mut p| {
            if p["agencies"] == "EVERY_COMMUNE" {
                p["agencies"] = Value::Array(committees.clone());
            }
            p
        })
        .collect();
    let citizens = parse(include_str!("../../../adapters/sandbox/data/citizens.json"));
    let t0 = now() - 10 * 86_400;
    let dossiers = parse(include_str!("../../../adapters/sandbox/data/dossiers.json"))
        .into_iter()
        .map(|d| {
            let owner = citizens.iter().find(|c| c["handle"] == d["owner"]).cloned().unwrap_or_default();
            let procedure =
                procedures.iter().find(|p| p["procedure_code"] == d["procedure_code"]).cloned().unwrap_or_default();
            let agency = agencies.iter().find(|a| a["agency_code"] == d["agency"]).cloned().unwrap_or_default();
            let done = d["done"].as_u64().unwrap_or(1) as usize;
            let history: Vec<Value> = d["timeline"]
                .as_array()
                .into_iter()
                .flatten()
                .take(done)
                .enumerate()
                .map(|(i, s)| json!({"status": s, "at": t0 + i as i64 * 86_400, "note": ""}))
                .collect();
            json!({
                "code": d["code"], "procedure_code": d["procedure_code"], "procedure_name": procedure["name"],
                "agency_code": d["agency"], "agency_name": agency["name"],
                "applicant_name": owner["full_name"], "applicant_id_number": owner["id_number"],
                "status": history.last().map(|h| h["status"].clone()).unwrap_or(json!(1)),
                "received_at": if done >= 2 { json!(t0 + 86_400) } else { Value::Null },
                "due_at": if done >= 2 { json!(t0 + 6 * 86_400) } else { Value::Null },
                "history": history,
            })
        })
        .collect();
    PortalState { agencies, procedures, dossiers: Mutex::new(dossiers), dossier_reads: Default::default() }
}

fn param<'a>(q: &'a HashMap<String, String>, k: &str) -> Option<&'a str> {
    q.get(k).map(String::as_str).filter(|v| !v.is_empty())
}

fn page(items: Vec<Value>, q: &HashMap<String, String>) -> Response {
    let offset = param(q, "offset").and_then(|v| v.parse().ok()).unwrap_or(0usize);
    let limit = param(q, "limit").and_then(|v| v.parse().ok()).unwrap_or(20usize).clamp(1, 100);
    let total = items.len();
    Json(json!({"items": items.into_iter().skip(offset).take(limit).collect::<Vec<_>>(), "total": total}))
        .into_response()
}

fn text_match(r: &Value, q: &HashMap<String, String>, fields: &[&str]) -> bool {
    param(q, "q").is_none_or(|needle| {
        let n = text::fold(needle);
        fields.iter().any(|f| text::fold(r[*f].as_str().unwrap_or("")).contains(&n))
    })
}

async fn agencies(State(s): State<Arc<PortalState>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let items = s
        .agencies
        .iter()
        .filter(|a| param(&q, "level").is_none_or(|l| a["level"] == l))
        .filter(|a| param(&q, "ward_code").is_none_or(|w| a["ward_code"] == w))
        .filter(|a| text_match(a, &q, &["name"]))
        .cloned()
        .collect();
    page(items, &q)
}

async fn procedures(State(s): State<Arc<PortalState>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let items = s
        .procedures
        .iter()
        .filter(|p| param(&q, "level").is_none_or(|l| p["level"] == l))
        .filter(|p| param(&q, "online_level").is_none_or(|l| p["online_level"] == l))
        .filter(|p| param(&q, "field").is_none_or(|f| p["field"] == f))
        .filter(|p| {
            param(&q, "agency").is_none_or(|a| p["agencies"].as_array().is_some_and(|l| l.iter().any(|x| x == a)))
        })
        .filter(|p| text_match(p, &q, &["name", "procedure_code"]))
        .cloned()
        .collect();
    page(items, &q)
}

fn found(v: Option<Value>) -> Response {
    match v {
        Some(v) => Json(v).into_response(),
        None => (StatusCode::NOT_FOUND, Json(json!({"error": "not found"}))).into_response(),
    }
}

async fn agency(State(s): State<Arc<PortalState>>, Path(code): Path<String>) -> Response {
    found(s.agencies.iter().find(|a| a["agency_code"] == code.as_str()).cloned())
}

async fn procedure(State(s): State<Arc<PortalState>>, Path(code): Path<String>) -> Response {
    found(
        s.procedures
            .iter()
            .find(|p| p["procedure_code"] == code.as_str() || p["national_code"] == code.as_str())
            .cloned(),
    )
}

async fn dossier(State(s): State<Arc<PortalState>>, Path(code): Path<String>) -> Response {
    s.dossier_reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    found(s.dossiers.lock().ok().and_then(|d| d.iter().find(|x| x["code"] == code.as_str()).cloned()))
}

/// The citizen's dossiers: the citizen is named by the `SoDinhDanh` claim of
/// the bearer token (the fake trusts it; the gateway verified it).
async fn my_dossiers(
    State(s): State<Arc<PortalState>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let token = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let Some(id) = token
        .and_then(|t| jsonwebtoken::dangerous::insecure_decode::<Value>(t).ok())
        .and_then(|d| d.claims["SoDinhDanh"].as_str().map(str::to_owned))
    else {
        return (StatusCode::UNAUTHORIZED, "no citizen").into_response();
    };
    let items: Vec<Value> = s
        .dossiers
        .lock()
        .map(|d| {
            d.iter()
                .filter(|x| x["applicant_id_number"] == id.as_str())
                .filter(|x| param(&q, "status").is_none_or(|st| st.parse::<i64>().ok() == x["status"].as_i64()))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    page(items, &q)
}

impl FakePortal {
    /// Starts the portal.
    pub async fn start() -> std::io::Result<Self> {
        let state = Arc::new(load());
        let faults = Faults::default();
        let router = axum::Router::new()
            .route("/agencies", get(agencies))
            .route("/agencies/{code}", get(agency))
            .route("/procedures", get(procedures))
            .route("/procedures/{code}", get(procedure))
            .route("/dossiers/{code}", get(dossier))
            .route("/me/dossiers", get(my_dossiers))
            .with_state(state.clone())
            .layer(axum::middleware::from_fn_with_state(faults.clone(), super::faults::apply));
        let (addr, task) = serve(router).await?;
        Ok(Self { addr, faults, state, _task: task })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many times one dossier was read (`GET /dossiers/{code}`), by
    /// anyone, so far.
    pub fn dossier_reads(&self) -> u64 {
        self.state.dossier_reads.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Moves a dossier to `status`, appending to its history.
    pub fn advance(&self, code: &str, status: i32) {
        if let Ok(mut dossiers) = self.state.dossiers.lock()
            && let Some(d) = dossiers.iter_mut().find(|d| d["code"] == code)
        {
            d["status"] = json!(status);
            if let Some(h) = d["history"].as_array_mut() {
                h.push(json!({"status": status, "at": now(), "note": "cập nhật từ cổng dịch vụ công"}));
            }
        }
    }

    /// The body and headers of a signed push about `code`.
    pub fn signed_push(secret: &str, code: &str, status: i32, timestamp: i64) -> (String, Vec<(&'static str, String)>) {
        let body = json!({"dossier_code": code, "status": status, "changed_at": timestamp}).to_string();
        let headers = Self::sign(secret, timestamp, &body);
        (body, headers)
    }

    /// The headers signing `body` at `timestamp`, as the portal sends them.
    pub fn sign(secret: &str, timestamp: i64, body: &str) -> Vec<(&'static str, String)> {
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
        let tag = hmac::sign(&key, format!("{timestamp}.{body}").as_bytes());
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        vec![("x-lienthong-timestamp", timestamp.to_string()), ("x-lienthong-signature", format!("sha256={hex}"))]
    }

    /// Sends a signed push about `code` to `url` (a gateway's
    /// `/webhooks/<instance>`), as the real portal would after a change, and
    /// returns the HTTP status the gateway answered.
    pub async fn push_to(&self, url: &str, secret: &str, code: &str, status: i32) -> Result<u16, reqwest::Error> {
        let (body, headers) = Self::signed_push(secret, code, status, now());
        let mut req = reqwest::Client::new().post(url).header("content-type", "application/json").body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        Ok(req.send().await?.status().as_u16())
    }

    /// The current Unix time, for pushes.
    pub fn now() -> i64 {
        now()
    }
}
