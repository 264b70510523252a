//! `POST /webhooks/<instance>`: pushes from upstreams (dossier status changes
//! from the public-service portal), served on the gRPC port over HTTP/1.1 or
//! HTTP/2. Each adapter verifies its own pushes (signature, age, replay).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use lienthong_adapter_core::ErrorKind;

/// Where pushes arrive: `POST /webhooks/<instance>`.
pub const PATH_PREFIX: &str = "/webhooks/";

/// Largest push accepted.
pub const MAX_BODY: usize = 64 * 1024;

/// The webhook receivers of the adapter instances that take pushes, by
/// instance name.
pub type Receivers = Arc<BTreeMap<String, Arc<dyn lienthong_adapter_core::WebhookReceiver>>>;

/// The webhook routes, for mounting beside the gRPC services.
pub fn routes(receivers: Receivers) -> tonic::service::Routes {
    let router = axum::Router::new()
        .route("/webhooks/{instance}", axum::routing::post(receive))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(receivers);
    tonic::service::Routes::from(router)
}

async fn receive(
    State(receivers): State<Receivers>,
    Path(instance): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(receiver) = receivers.get(&instance) else {
        return (StatusCode::NOT_FOUND, "no adapter instance of that name takes webhooks\n").into_response();
    };
    let headers: BTreeMap<String, String> = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_ascii_lowercase(), v.to_str().ok()?.to_owned())))
        .collect();
    match receiver.receive(&headers, &body).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => {
            let status = match e.kind() {
                ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
                ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
                ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
                ErrorKind::NotFound => StatusCode::NOT_FOUND,
                ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            tracing::info!(instance, status = status.as_u16(), kind = e.kind().as_str(), "webhook not applied");
            (status, format!("{}\n", e.message())).into_response()
        }
    }
}
