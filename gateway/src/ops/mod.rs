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

pub mod check;

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

use crate::telemetry::metrics::Metrics;
use crate::telemetry::stats::StatsSnapshot;
use crate::telemetry::view::{Breaker, Observed};
use lienthong_adapter_core::Family;

/// The status page; it renders `/status.json` and refreshes every 5 s.
const STATUS_PAGE: &str = include_str!("status.html");

struct Ops {
    observed: Arc<dyn Observed>,
    metrics: Arc<Metrics>,
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

fn health(state: Breaker, stats: &StatsSnapshot) -> &'static str {
    match state {
        Breaker::Open => "down",
        Breaker::HalfOpen => "recovering",
        Breaker::Closed if stats.recent_calls >= 10 && stats.recent_errors * 2 > stats.recent_calls => "degraded",
        Breaker::Closed => "healthy",
    }
}

impl Ops {
    fn readiness(&self) -> Readiness {
        let mut reasons = Vec::new();
        if self.observed.draining() {
            reasons.push("draining: shutting down".to_owned());
        }
        if self.observed.overloaded() {
            reasons.push("shedding most calls for too long: this replica is over capacity".to_owned());
        }
        let instances = self.observed.instances();
        let mut degraded = Vec::new();
        let mut open = 0;
        for i in &instances {
            open += usize::from(i.breaker == Breaker::Open);
            let h = health(i.breaker, &i.stats);
            if h != "healthy" {
                degraded.push(format!("{} ({h})", i.name));
            }
        }
        if !instances.is_empty() && open == instances.len() {
            reasons.push("every adapter instance's circuit breaker is open".to_owned());
        }
        // Redis away: still serving, each replica within its share (or
        // refusing the calls under limits that fail closed).
        match self.observed.cluster() {
            Some(c) if !c.up && c.fail_closed => degraded.push(
                "cluster (Redis does not answer: calls under the limits in cluster.fail_closed are refused, the \
                 others held to this replica's share)"
                    .to_owned(),
            ),
            Some(c) if !c.up => degraded
                .push("cluster (Redis does not answer: this replica enforces its share of each limit)".to_owned()),
            _ => {}
        }
        Readiness { ready: reasons.is_empty(), reasons, degraded }
    }

    fn status(&self) -> Status {
        let mut provinces: Vec<ProvinceStatus> = self
            .observed
            .provinces()
            .into_iter()
            .map(|code| ProvinceStatus {
                name: lienthong_adapter_core::admin::province(&code).map(|p| p.full_name).unwrap_or(""),
                code,
                adapters: Vec::new(),
            })
            .collect();
        for i in self.observed.instances() {
            for p in &mut provinces {
                let mut families: Vec<Family> =
                    i.routes.iter().filter(|(code, _)| *code == p.code).map(|(_, f)| *f).collect();
                if families.is_empty() {
                    continue;
                }
                families.sort_by_key(|f| Family::ALL.iter().position(|a| a == f));
                p.adapters.push(AdapterStatus {
                    families: families.iter().map(ToString::to_string).collect(),
                    instance: i.name.clone(),
                    kind: i.kind.clone(),
                    health: health(i.breaker, &i.stats),
                    breaker: i.breaker.as_str(),
                    in_flight: i.in_flight,
                    stats: i.stats,
                });
            }
        }
        // In the order of the first family each serves.
        for p in &mut provinces {
            p.adapters.sort_by_key(|a| {
                Family::ALL.iter().position(|f| a.families.first().is_some_and(|first| *first == f.to_string()))
            });
        }
        let cache = self.observed.cache();
        Status {
            service: "lienthong",
            version: env!("CARGO_PKG_VERSION"),
            uptime_seconds: self.started.elapsed().as_secs(),
            readiness: self.readiness(),
            in_flight: self.metrics.in_flight().load(Ordering::Relaxed),
            shed_total: self.observed.shed(),
            connections: self.observed.connections(),
            cache_entries: cache.entries,
            cache_bytes: cache.bytes,
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
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(ops.status())).into_response()
}

/// Serves the ops endpoints on `listener` until `stop` turns true; watches
/// shedding once a second for readiness.
pub async fn serve(
    listener: TcpListener,
    observed: Arc<dyn Observed>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let ops = Arc::new(Ops { observed, metrics, started: Instant::now() });
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
        assert_eq!(health(Breaker::Open, &s), "down");
        assert_eq!(health(Breaker::HalfOpen, &s), "recovering");
        assert_eq!(health(Breaker::Closed, &s), "healthy");
        (s.recent_calls, s.recent_errors) = (20, 11);
        assert_eq!(health(Breaker::Closed, &s), "degraded");
        s.recent_errors = 10;
        assert_eq!(health(Breaker::Closed, &s), "healthy");
    }
}
