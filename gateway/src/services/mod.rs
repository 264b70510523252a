//! The gRPC services of `lienthong.v1`, one file per service. Each RPC:
//! route the call, validate the request, authenticate the citizen where
//! needed, call the adapter, shape the answer for the caller.

pub mod admin;
pub mod validate;

mod construction;
mod education;
mod healthcare;
mod identity;
mod public_services;
mod sandbox;
mod transport;

pub use construction::ConstructionApi;
pub use education::EducationApi;
pub use healthcare::HealthcareApi;
pub use identity::IdentityApi;
pub use public_services::PublicServicesApi;
pub use sandbox::SandboxIdentityApi;
pub use transport::TransportApi;

use tonic::Response;

pub use crate::call::metadata::{AGE_HEADER, CACHE_HEADER, VIEW_REASON_HEADER};

/// Wraps a message, marking it as fetched from the adapter just now.
pub(crate) fn fresh<T>(message: T) -> Response<T> {
    crate::call::metadata::Answer { value: message, freshness: None }.into_response()
}
