//! `lienthong.admin.v1.AdminService`: what operators may do to a running
//! gateway — invalidate cached answers, see every adapter instance's
//! breaker, bulkhead and retries.
//!
//! Admin tokens are configured as SHA-256 digests only (`[admin]
//! token_sha256`), compared in constant time; several may be valid at once,
//! so a token is rotated by adding the new digest, switching callers, then
//! removing the old one.

use std::sync::Arc;

use lienthong_adapter_core::{Delivery, Family, Method, Shared, api};
use lienthong_proto::admin::v1 as pb;
use lienthong_proto::admin::v1::admin_service_server::AdminService;
use prost::Message;
use tonic::{Request, Response, Status};

use crate::errors::Violations;
use crate::gateway::Gateway;
use crate::policy::breaker::BreakerState;
use crate::policy::cache::{KeyParts, ResponseCache};

/// The request of `method`, decoded from `bytes` and encoded again the way
/// the gateway encodes it for cache keys; `None` when it does not decode or
/// the method is never cached.
fn canonical_request(method: Method, bytes: &[u8]) -> Option<Vec<u8>> {
    macro_rules! reencode {
        ($($m:ident => $t:ty),* $(,)?) => {
            match method {
                $(Method::$m => <$t>::decode(bytes).ok().map(|r| r.encode_to_vec()),)*
                Method::WatchDossier => None,
            }
        };
    }
    reencode! {
        GetMyProfile => api::GetMyProfileRequest,
        ListFacilities => api::ListFacilitiesRequest,
        GetFacility => api::GetFacilityRequest,
        ListSchools => api::ListSchoolsRequest,
        GetSchool => api::GetSchoolRequest,
        ListBusRoutes => api::ListBusRoutesRequest,
        GetBusRoute => api::GetBusRouteRequest,
        ListNearbyStops => api::ListNearbyStopsRequest,
        ListArrivals => api::ListArrivalsRequest,
        ListTrafficCameras => api::ListTrafficCamerasRequest,
        GetTrafficCamera => api::GetTrafficCameraRequest,
        ListHousingProjects => api::ListHousingProjectsRequest,
        GetHousingProject => api::GetHousingProjectRequest,
        GetPracticingCertificate => api::GetPracticingCertificateRequest,
        ListAgencies => api::ListAgenciesRequest,
        GetAgency => api::GetAgencyRequest,
        ListProcedures => api::ListProceduresRequest,
        GetProcedure => api::GetProcedureRequest,
        GetDossier => api::GetDossierRequest,
        ListMyDossiers => api::ListMyDossiersRequest,
    }
}

/// What an invalidation removes, besides the province.
#[derive(Debug)]
enum Target {
    All,
    Methods(Vec<Method>),
    Request(Method, Vec<u8>),
}

fn target(request: &pb::InvalidateCacheRequest) -> Result<Target, Status> {
    use pb::invalidate_cache_request::Target as T;
    let mut v = Violations::new();
    if !request.province.is_empty() && lienthong_adapter_core::admin::province(&request.province).is_none() {
        v.add("province", "must be empty (every province) or a 2-digit province code such as \"79\"");
    }
    let target = match &request.target {
        None => {
            v.add("target", "say what to remove: all, family, dataset or request");
            None
        }
        Some(T::All(all)) => {
            if !all {
                v.add("all", "must be true when given");
            }
            Some(Target::All)
        }
        Some(T::Family(name)) => match Family::parse(name) {
            Some(f) => Some(Target::Methods(Method::of_family(f).collect())),
            None => {
                let known: Vec<&str> = Family::ALL.iter().map(|f| f.as_str()).collect();
                v.add("family", format!("unknown family; one of: {}", known.join(", ")));
                None
            }
        },
        Some(T::Dataset(name)) => {
            match Method::of_dataset(name).filter(|m| m.facts().cache.is_some()).collect::<Vec<_>>() {
                methods if !methods.is_empty() => Some(Target::Methods(methods)),
                _ => {
                    let known = Method::datasets();
                    v.add("dataset", format!("unknown dataset; one of: {}", known.join(", ")));
                    None
                }
            }
        }
        Some(T::Request(any)) => {
            let type_name = any.type_url.rsplit('/').next().unwrap_or_default();
            let method = type_name
                .strip_prefix("lienthong.v1.")
                .and_then(|t| t.strip_suffix("Request"))
                .and_then(|rpc| Method::from_rpc_name(rpc).filter(|m| m.facts().cache.is_some()));
            match method {
                None => {
                    v.add("request.type_url", "must name a cached request type of lienthong.v1, such as type.googleapis.com/lienthong.v1.GetFacilityRequest");
                    None
                }
                Some(m) => match canonical_request(m, &any.value) {
                    Some(bytes) => Some(Target::Request(m, bytes)),
                    None => {
                        v.add("request.value", format!("is not a valid {type_name}"));
                        None
                    }
                },
            }
        }
    };
    v.into_result()?;
    target.ok_or_else(|| Status::invalid_argument("say what to remove"))
}

/// The topic on which replicas tell each other what was invalidated.
const INVALIDATIONS: &str = "cache-invalidations";

/// Removes from `cache` what `target` names in `province` (empty: every
/// one); how many entries were removed.
async fn invalidate(cache: &ResponseCache, province: &str, target: &Target) -> u64 {
    let province = province.as_bytes();
    cache
        .invalidate(|k: &KeyParts<'_>| {
            (province.is_empty() || k.province == province)
                && match target {
                    Target::All => true,
                    Target::Methods(methods) => methods.iter().any(|m| m.rpc_name().as_bytes() == k.method),
                    Target::Request(m, bytes) => m.rpc_name().as_bytes() == k.method && k.request == bytes.as_slice(),
                }
        })
        .await
}

/// The patterns of the shared cache's keys `target` in `province` removes.
fn shared_patterns(shared: &crate::cluster::cache::SharedCache, province: &str, target: &Target) -> Vec<String> {
    match target {
        Target::All => vec![shared.pattern(province, None, None)],
        Target::Methods(methods) => {
            methods.iter().map(|m| shared.pattern(province, Some(m.rpc_name()), None)).collect()
        }
        Target::Request(m, bytes) => vec![shared.pattern(province, Some(m.rpc_name()), Some(bytes))],
    }
}

/// Applies the invalidations any replica publishes to this replica's
/// `cache`, until the gateway is dropped. When some were missed (Redis
/// trimmed them while this replica was away), everything is removed: an
/// answer served again from upstream is better than one an operator
/// removed.
pub(crate) fn follow_invalidations(cache: ResponseCache, shared: &dyn Shared) {
    let mut invalidations = shared.subscribe(INVALIDATIONS);
    tokio::spawn(async move {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            let request = match invalidations.recv().await {
                Ok(Delivery::Message(bytes)) => match pb::InvalidateCacheRequest::decode(&bytes[..]) {
                    Ok(request) => request,
                    Err(_) => continue,
                },
                Ok(Delivery::Missed) | Err(RecvError::Lagged(_)) => pb::InvalidateCacheRequest {
                    target: Some(pb::invalidate_cache_request::Target::All(true)),
                    ..Default::default()
                },
                Err(RecvError::Closed) => return,
            };
            match target(&request) {
                Ok(target) => {
                    let removed = invalidate(&cache, &request.province, &target).await;
                    tracing::debug!(removed, "cache invalidated by another replica");
                }
                Err(e) => {
                    tracing::warn!(error = e.message(), "an invalidation from another replica was not understood")
                }
            }
        }
    });
}

/// Serves the admin API.
#[derive(Debug, Clone)]
pub struct AdminApi(pub Arc<Gateway>);

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn invalidate_cache(
        &self,
        request: Request<pb::InvalidateCacheRequest>,
    ) -> Result<Response<pb::InvalidateCacheResponse>, Status> {
        self.0.admin().check(request.metadata())?;
        let request = request.into_inner();
        let target = target(&request)?;
        // The shared answers first: a miss meanwhile on any replica would
        // be filled again from them.
        let shared_cleared = match self.0.cache().shared() {
            Some(shared) => shared.remove(&shared_patterns(shared, &request.province, &target)).await.is_some(),
            None => true,
        };
        let removed = invalidate(self.0.cache(), &request.province, &target).await;
        tracing::info!(removed, "cache invalidated by an operator");
        if !shared_cleared {
            return Err(Status::unavailable(format!(
                "removed {removed} entries on this replica, but the shared cache could not be cleared (Redis does \
                 not answer); call again"
            )));
        }
        // The other replicas apply it too; this one already has.
        if let Err(e) = self.0.shared().publish(INVALIDATIONS, request.encode_to_vec()).await {
            return Err(Status::unavailable(format!(
                "removed {removed} entries on this replica, but {}; call again to reach them",
                e.message()
            )));
        }
        Ok(Response::new(pb::InvalidateCacheResponse { removed }))
    }

    async fn list_adapter_instances(
        &self,
        request: Request<pb::ListAdapterInstancesRequest>,
    ) -> Result<Response<pb::ListAdapterInstancesResponse>, Status> {
        self.0.admin().check(request.metadata())?;
        let instances = self
            .0
            .instances()
            .into_iter()
            .map(|i| {
                let s = i.guard.snapshot();
                let state = match s.breaker.state {
                    BreakerState::Closed => pb::BreakerState::Closed,
                    BreakerState::Open => pb::BreakerState::Open,
                    BreakerState::HalfOpen => pb::BreakerState::HalfOpen,
                };
                pb::AdapterInstance {
                    name: i.name.to_owned(),
                    kind: i.kind.to_owned(),
                    routes: i.routes.iter().map(|(p, f)| format!("{p}/{f}")).collect(),
                    breaker_state: state as i32,
                    consecutive_failures: s.breaker.consecutive_failures,
                    window_calls: s.breaker.window_calls,
                    window_failures: s.breaker.window_failures,
                    retry_in: prost_types::Duration::try_from(s.breaker.retry_in).ok(),
                    times_opened: s.breaker.times_opened,
                    in_flight: u32::try_from(s.in_flight).unwrap_or(u32::MAX),
                    bulkhead_limit: u32::try_from(s.bulkhead_limit).unwrap_or(u32::MAX),
                    bulkhead_rejected: s.bulkhead_rejected,
                    retries: s.retries,
                    retries_refused: s.retries_refused,
                }
            })
            .collect();
        Ok(Response::new(pb::ListAdapterInstancesResponse { instances }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_recognised_by_type_and_reencoded() {
        let req = api::GetFacilityRequest { facility_code: "79001".into() };
        let any = prost_types::Any {
            type_url: "type.googleapis.com/lienthong.v1.GetFacilityRequest".into(),
            value: req.encode_to_vec(),
        };
        let r = pb::InvalidateCacheRequest {
            province: String::new(),
            target: Some(pb::invalidate_cache_request::Target::Request(any)),
        };
        match target(&r).unwrap() {
            Target::Request(m, bytes) => assert_eq!((m, bytes), (Method::GetFacility, req.encode_to_vec())),
            _ => panic!("not a request target"),
        }
        let bad = pb::InvalidateCacheRequest {
            province: "7".into(),
            target: Some(pb::invalidate_cache_request::Target::Dataset("nope".into())),
        };
        let e = target(&bad).unwrap_err();
        use tonic_types::StatusExt;
        let fields: Vec<String> =
            e.get_details_bad_request().unwrap().field_violations.into_iter().map(|v| v.field).collect();
        assert_eq!(fields, ["province", "dataset"]);
    }
}
