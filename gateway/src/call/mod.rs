//! A call, once admitted at the edge: who is calling (the app, then the
//! citizen), whether they may, and which adapter instance serves it.
//!
//! - [`Call`] (here): `Call::begin` starts a call: app identity → method
//!   permission → province → app limit.
//! - [`auth`]: the citizen where the method needs one: token → identity
//!   level → purpose → citizen limit.
//! - [`route`]: the province's instance of the call's family.
//! - [`fetch`]: the answer, from the cache or, on a miss, through the
//!   instance's guard.
//! - [`metadata`]: the answer's freshness headers and the `grpc-timeout`
//!   parser.

pub mod auth;
pub mod fetch;
pub mod mend;
pub mod metadata;
pub mod route;

use std::time::Duration;

use lienthong_adapter_core::{CallContext, Method, Principal, admin};
use tokio::time::Instant;
use tonic::Status;
use tonic::metadata::MetadataMap;

use crate::audit::Auditor;
use crate::errors;
use crate::gateway::Gateway;
use crate::gateway::apps::App;
use crate::gateway::route::{ProvinceAdapters, Routed};

/// Metadata naming the province a call is for.
pub const PROVINCE_HEADER: &str = "x-lienthong-province";
/// Longest bearer token accepted, in bytes.
pub(crate) const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// One call in progress: its province, method and context.
#[derive(Debug)]
pub struct Call<'g> {
    pub(crate) gateway: &'g Gateway,
    pub(crate) province: &'g ProvinceAdapters,
    pub(crate) method: Method,
    pub(crate) app: &'g App,
    /// The call's trace (the telemetry layer's, else the caller's
    /// `traceparent`).
    pub(crate) trace_id: Option<opentelemetry::trace::TraceId>,
    /// Whether this call's trace is exported (its child spans are made).
    pub(crate) traced: bool,
    pub(crate) purpose: Option<String>,
    /// A signed-in citizen whose identity level is below what this method
    /// needs for personal data: (citizen, their level, the level needed).
    pub(crate) below_level: Option<(lienthong_adapter_core::CitizenId, u8, u8)>,
    /// What the adapter gets to know.
    pub ctx: CallContext,
}

impl Gateway {
    /// A rate-limit decision, in a span of its own when `traced`; a
    /// refusal is counted.
    pub(crate) async fn limited(
        &self,
        traced: bool,
        limit: &'static str,
        check: impl std::future::Future<Output = Result<(), Status>>,
    ) -> Result<(), Status> {
        let name = if limit == "app" { "rate limit app" } else { "rate limit citizen" };
        let verdict = if traced && self.limits.shared_buckets().is_some() {
            // Shared with other replicas, a decision may wait for Redis: the
            // span times it.
            use tracing::Instrument as _;
            let span = tracing::info_span!(
                "rate_limit",
                otel.name = name,
                lienthong.limit = limit,
                lienthong.decision = tracing::field::Empty
            );
            let verdict = check.instrument(span.clone()).await;
            span.record("lienthong.decision", if verdict.is_ok() { "allowed" } else { "rejected" });
            verdict
        } else {
            let verdict = check.await;
            if traced {
                // Made with its decision (one call to the subscriber, no
                // record after): a local decision takes well under a
                // microsecond, so the span marks the step rather than
                // timing it.
                let decision = if verdict.is_ok() { "allowed" } else { "rejected" };
                drop(tracing::info_span!(
                    "rate_limit",
                    otel.name = name,
                    lienthong.limit = limit,
                    lienthong.decision = decision
                ));
            }
            verdict
        };
        if verdict.is_err() {
            self.metrics.limiter_rejection(limit);
        }
        verdict
    }
}

impl<'g> Call<'g> {
    /// Starts a call of `method`: who calls (the app, by client
    /// certificate or API key), whether it may call `method`, for which
    /// province, and within its quota.
    pub async fn begin<T>(gateway: &'g Gateway, request: &tonic::Request<T>, method: Method) -> Result<Self, Status> {
        let app = gateway.apps.identify(request)?;
        if !app.may_call(method) {
            return Err(Status::permission_denied(format!(
                "app {} is not registered to call {}",
                app.id,
                method.full_name()
            )));
        }
        let metadata = request.metadata();
        let allowed = &app.provinces;
        let asked = match metadata.get(PROVINCE_HEADER) {
            None => None,
            Some(v) => Some(v.to_str().map_err(|_| bad_province("must be a 2-digit province code, such as \"79\""))?),
        };
        let code = match asked {
            Some(code) => {
                if admin::province(code).is_none() {
                    return Err(bad_province(
                        "is not a province code of the 34 provinces in force since 1 July 2025 (Ho Chi Minh City is \"79\", Hà Nội \"01\")",
                    ));
                }
                if !gateway.provinces.contains_key(code) {
                    let served: Vec<String> = gateway.provinces.keys().cloned().collect();
                    return Err(crate::errors::province_not_served(code, &served));
                }
                if !allowed.iter().any(|p| p == code) {
                    return Err(Status::permission_denied(format!("app {} may not reach province {code}", app.id)));
                }
                if !gateway.province_from_metadata && allowed.first().map(String::as_str) != Some(code) {
                    return Err(Status::permission_denied(format!(
                        "{PROVINCE_HEADER} is not accepted by this gateway"
                    )));
                }
                code
            }
            None => allowed
                .first()
                .map(String::as_str)
                .ok_or_else(|| Status::permission_denied(format!("app {} may reach no province", app.id)))?,
        };
        let province = gateway
            .provinces
            .get(code)
            .ok_or_else(|| Status::internal("routing table is missing a configured province"))?;
        // The call's trace, as the telemetry layer made it (or, without the
        // layer, the current span's and the caller's). Attributes and child
        // spans are kept only for traces that are exported.
        let call_trace = request.extensions().get::<crate::telemetry::rpc::CallTrace>().copied();
        let traced = call_trace.map_or_else(|| crate::telemetry::sampled(&tracing::Span::current()), |t| t.sampled);
        if traced {
            // Both in one visit of the subscriber.
            tracing::record_all!(tracing::Span::current(), lienthong.province = code, lienthong.app = app.id.as_str());
        }
        gateway.limited(traced, "app", gateway.limits.app(&app.id, method)).await?;
        let deadline = grpc_timeout(metadata).map(|d| Instant::now() + d);
        Ok(Call {
            gateway,
            province,
            method,
            app,
            trace_id: call_trace.map(|t| t.trace_id).or_else(|| trace_id(metadata)),
            traced,
            purpose: None,
            below_level: None,
            ctx: CallContext { province: code.to_owned(), principal: None, deadline },
        })
    }

    /// The method being called.
    pub fn method(&self) -> Method {
        self.method
    }

    /// Whether the calling app's registration grants `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.app.scopes.iter().any(|s| s == scope)
    }

    pub(crate) fn auditor_for(&self, principal: &Principal) -> Auditor {
        let log = self.gateway.audit.clone();
        // The call's trace (which continues the caller's when it sent
        // `traceparent`); without the telemetry layer, the current span's,
        // or a fresh 128-bit id.
        let trace_id = self
            .trace_id
            .map(|t| t.to_string())
            .or_else(|| crate::telemetry::trace_id_of(&tracing::Span::current()))
            .unwrap_or_else(|| crate::crypto::random_hex::<16>().unwrap_or_default());
        Auditor {
            template: crate::audit::AuditEvent {
                app: self.app.id.clone(),
                citizen: log.pseudonym(&principal.citizen_id),
                method: self.method.full_name().to_owned(),
                records: Vec::new(),
                purpose: self.purpose.clone().unwrap_or_else(|| "unspecified".to_owned()),
                outcome: String::new(),
                trace_id,
                count: 1,
            },
            log,
        }
    }

    /// Records, durably, that the signed-in citizen's personal data was
    /// accessed (`records`, with `outcome`); UNAVAILABLE when it cannot be
    /// recorded, so that nothing unaudited is served.
    pub async fn audit(&self, records: Vec<String>, outcome: tonic::Code) -> Result<(), Status> {
        self.auditor()?.record(records, outcome).await
    }

    /// Records that this call's signed-in citizen was refused with
    /// `outcome` (aggregated per citizen and window; does not wait).
    pub fn audit_refusal(&self, outcome: tonic::Code) {
        if let Some(principal) = &self.ctx.principal {
            self.auditor_for(principal).refused(outcome);
        }
    }

    /// What records accesses for this call's citizen, also after the call
    /// returned (a watch's updates).
    pub fn auditor(&self) -> Result<Auditor, Status> {
        let principal =
            self.ctx.principal.as_ref().ok_or_else(|| {
                Status::internal("an access was about to be audited without a citizen; this is a bug")
            })?;
        Ok(self.auditor_for(principal))
    }

    /// Maps an adapter error for the caller.
    pub fn fail<T: ?Sized>(&self, routed: &Routed<T>, err: lienthong_adapter_core::AdapterError) -> Status {
        errors::from_adapter(err, self.method, &routed.kind)
    }

    /// Opens the caller's page token in `req` into the adapter's; the
    /// returned paging seals the next one. A citizen's own lists are bound to
    /// the citizen (authenticate first).
    pub fn paging<R: crate::gateway::page_tokens::Paged>(
        &self,
        req: &mut R,
    ) -> Result<crate::gateway::page_tokens::Paging, Status> {
        // A public list's tokens are the same for every caller (its pages
        // are cached and shared); a citizen's own list's are theirs alone.
        let citizen = self.ctx.principal.as_ref().filter(|_| self.method.facts().personal).map(|p| &p.citizen_id);
        self.gateway.page_tokens.open(&self.ctx.province, self.method, req, citizen)
    }

    /// When this call's upstream work must end: the caller's deadline, or
    /// `server.default_deadline` from now when the caller set none.
    pub fn deadline(&self) -> Instant {
        self.ctx.deadline.unwrap_or_else(|| Instant::now() + self.gateway.default_deadline)
    }

    /// Whether the server has begun draining.
    pub fn draining(&self) -> bool {
        *self.gateway.shutdown.borrow()
    }
}

fn bad_province(why: &str) -> Status {
    let mut v = errors::Violations::new();
    v.add(format!("metadata {PROVINCE_HEADER}"), why);
    v.into_result().err().unwrap_or_else(|| Status::invalid_argument(why.to_owned()))
}

/// The trace id of an inbound W3C `traceparent`, parsed as the tracing layer
/// parses it.
fn trace_id(metadata: &MetadataMap) -> Option<opentelemetry::trace::TraceId> {
    let v = metadata.get("traceparent")?.to_str().ok()?;
    crate::telemetry::spans::RemoteParent::parse(v).map(|p| p.trace_id)
}

/// The metadata parsers, for property tests.
#[cfg(test)]
pub(crate) fn parse_metadata_for_tests(
    metadata: &MetadataMap,
) -> (Option<Duration>, Option<opentelemetry::trace::TraceId>) {
    (grpc_timeout(metadata), trace_id(metadata))
}

/// Parses the `grpc-timeout` metadata (`<digits><unit>`, unit one of
/// H M S m u n).
fn grpc_timeout(metadata: &MetadataMap) -> Option<Duration> {
    // Admission already refused a malformed one; the same parser reads it.
    crate::call::metadata::parse_grpc_timeout(metadata.get("grpc-timeout")?.as_bytes())
}
