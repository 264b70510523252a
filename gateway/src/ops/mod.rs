//! The ops port (plain HTTP, `telemetry.ops_listen`): what operators and
//! their orchestrator read.
//!
//! - `GET /livez`: 200 while the process serves at all.
//! - `GET /readyz`: 200 when this replica should get traffic; 503 while it
//!   drains, when most calls were shed over `telemetry.unready_after_shedding`
//!   (see [`OverloadWatch`]), or when every adapter instance's breaker is open. The JSON body
//!   says why, and which instances are degraded.
//! - `GET /metrics`: Prometheus text exposition (see [`METRICS`]).
//! - `GET /status`: the status page (HTML, refreshing itself) and
//!   `GET /status.json`, what it shows: each province's adapters with their
//!   health, breaker, cache hit ratio, refusals and recent p99 latency.
//!
//! Nothing here is personal; the port is still for operators only.
//!
//! [`METRICS`]: crate::telemetry::metrics::METRICS
//! [`OverloadWatch`]: crate::edge::overload::OverloadWatch

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::gateway::Gateway;
use crate::policy::breaker::BreakerState;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::stats::StatsSnapshot;
use lienthong_adapter_core::Family;

/// The status page; it renders `/status.json` and refreshes every 5 s.
const STATUS_PAGE: &str = include_str!("status.html");

struct Ops {
    gateway: Arc<Gateway>,
    metrics: Arc<Metrics>,
    admission: Arc<crate::edge::admit::Admission>,
    connections: Arc<crate::edge::listener::ConnectionStats>,
    draining: watch::Receiver<bool>,
    started: Instant,
}

#[derive(Debug, Serialize)]
struct AdapterStatus {
    /// The families it serves for this province, in the API's order.
    families: Vec<String>,
    instance: String,
    kind: String,
    /// healthy, degraded (errors in more than half of the last minute's
    /// attempts), recovering (half-open), down (open).
    health: &'static str,
    breaker: &'static str,
    in_flight: usize,
    #[serde(flatten)]
    stats: StatsSnapshot,
}

#[derive(Debug, Serialize)]
struct ProvinceStatus {
    code: String,
    name: &'static str,
    adapters: Vec<AdapterStatus>,
}

#[derive(Debug, Serialize)]
struct Readiness {
    ready: bool,
    reasons: Vec<String>,
    degraded: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Status {
    service: &'static str,
    version: &'static str,
    uptime_seconds: u64,
    readiness: Readiness,
    in_flight: i64,
    shed_total: u64,
    connections: usize,
    cache_entries: u64,
    cache_bytes: u64,
    limiter_rejections: std::collections::BTreeMap<&'static str, u64>,
    provinces: Vec<ProvinceStatus>,
}

fn breaker_name(s: BreakerState) -> &'static str {
    match s {
        BreakerState::Closed => "closed",
        BreakerState::HalfOpen => "half-open",
        BreakerState::Open => "open",
    }
}

fn health(state: BreakerState, stats: &StatsSnapshot) -> &'static str {
    match state {
        BreakerState::Open => "down",
        BreakerState::HalfOpen => "recovering",
        BreakerState::Closed if stats.recent_calls >= 10 && stats.recent_errors * 2 > stats.recent_calls => "degraded",
        BreakerState::Closed => "healthy",
    }
}

impl Ops {
    fn readiness(&self) -> Readiness {
        let mut reasons = Vec::new();
        if *self.draining.borrow() {
            reasons.push("draining: shutting down".to_owned());
        }
        if self.admission.is_overloaded() {
            reasons.push("shedding most calls for too long: this replica is over capacity".to_owned());
        }
        let instances = self.gateway.instances();
        let mut degraded = Vec::new();
        let mut open = 0;
        for i in &instances {
            let state = i.guard.snapshot().breaker.state;
            open += usize::from(state == BreakerState::Open);
            let h = health(state, &i.guard.stats().snapshot());
            if h != "healthy" {
                degraded.push(format!("{} ({h})", i.name));
            }
        }
        if !instances.is_empty() && open == instances.len() {
            reasons.push("every adapter instance's circuit breaker is open".to_owned());
        }
        Readiness { ready: reasons.is_empty(), reasons, degraded }
    }

    fn status(&self) -> Status {
        let mut provinces: Vec<ProvinceStatus> = self
            .gateway
            .province_codes()
            .map(|code| ProvinceStatus {
                code: code.to_owned(),
                name: lienthong_adapter_core::admin::province(code).map(|p| p.full_name).unwrap_or(""),
                adapters: Vec::new(),
            })
            .collect();
        for i in self.gateway.instances() {
            let snapshot = i.guard.snapshot();
            let stats = i.guard.stats().snapshot();
            for p in &mut provinces {
                let mut families: Vec<Family> =
                    i.routes.iter().filter(|(code, _)| *code == p.code).map(|(_, f)| *f).collect();
                if families.is_empty() {
                    continue;
                }
                families.sort_by_key(|f| Family::ALL.iter().position(|a| a == f));
                p.adapters.push(AdapterStatus {
                    families: families.iter().map(ToString::to_string).collect(),
                    instance: i.name.to_owned(),
                    kind: i.kind.to_owned(),
                    health: health(snapshot.breaker.state, &stats),
                    breaker: breaker_name(snapshot.breaker.state),
                    in_flight: snapshot.in_flight,
                    stats,
                });
            }
        }
        // In the order of the first family each serves.
        for p in &mut provinces {
            p.adapters.sort_by_key(|a| {
                Family::ALL.iter().position(|f| a.families.first().is_some_and(|first| *first == f.to_string()))
            });
        }
        let (cache_entries, cache_bytes) = self.gateway.cache().usage_now();
        Status {
            service: "lienthong",
            version: env!("CARGO_PKG_VERSION"),
            uptime_seconds: self.started.elapsed().as_secs(),
            readiness: self.readiness(),
            in_flight: self.metrics.in_flight().load(Ordering::Relaxed),
            shed_total: self.admission.shed_count(),
            connections: self.connections.open(),
            cache_entries,
            cache_bytes,
            limiter_rejections: self.metrics.rejections(),
            provinces,
        }
    }
}

async fn livez() -> &'static str {
    "ok\n"
}

async fn readyz(State(ops): State<Arc<Ops>>) -> Response {
    let r = ops.readiness();
    let code = if r.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, axum::Json(r)).into_response()
}

async fn metrics_text(State(ops): State<Arc<Ops>>) -> Response {
    // The cache's counts are exact only after its pending housekeeping.
    ops.gateway.cache().usage().await;
    match ops.metrics.scrape() {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "encoding metrics failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "encoding metrics failed\n").into_response()
        }
    }
}

async fn status_page() -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Html(STATUS_PAGE)).into_response()
}

async fn status_json(State(ops): State<Arc<Ops>>) -> Response {
    ops.gateway.cache().usage().await;
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(ops.status())).into_response()
}

/// Serves the ops endpoints on `listener` until `stop` turns true; watches
/// shedding once a second for readiness.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    metrics: Arc<Metrics>,
    admission: Arc<crate::edge::admit::Admission>,
    connections: Arc<crate::edge::listener::ConnectionStats>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let draining = gateway.shutdown_signal();
    let ops = Arc::new(Ops { gateway, metrics, admission, connections, draining, started: Instant::now() });
    let app = Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/status", get(status_page))
        .route("/status.json", get(status_json))
        .with_state(ops);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await;
    Ok(result?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_follows_the_breaker_and_recent_errors() {
        let mut s = crate::telemetry::stats::InstanceStats::new().snapshot();
        assert_eq!(health(BreakerState::Open, &s), "down");
        assert_eq!(health(BreakerState::HalfOpen, &s), "recovering");
        assert_eq!(health(BreakerState::Closed, &s), "healthy");
        (s.recent_calls, s.recent_errors) = (20, 11);
        assert_eq!(health(BreakerState::Closed, &s), "degraded");
        s.recent_errors = 10;
        assert_eq!(health(BreakerState::Closed, &s), "healthy");
    }
}
