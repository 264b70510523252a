//! The adapter service's gRPC statuses as adapter errors.

use lienthong_adapter_core::{AdapterError, ErrorKind};
use tonic_types::StatusExt;

/// Maps the adapter service's status to an adapter error.
pub fn status_to_error(status: &tonic::Status) -> AdapterError {
    use tonic::Code;
    // A failed TLS handshake names its cause, whatever code tonic gave it.
    if let Some(cause) = std::error::Error::source(status).and_then(lienthong_adapter_core::tls::cause) {
        tracing::warn!(upstream = "remote", tls = %cause, "adapter service unreachable");
        return AdapterError::new(ErrorKind::Unavailable, format!("the adapter service could not be reached: {cause}"));
    }
    // A connection failure surfaces as UNKNOWN with a transport error as its
    // source: the service is out of reach, not misbehaving.
    let transport = std::error::Error::source(status).is_some_and(|e| e.is::<tonic::transport::Error>());
    if status.code() == Code::Unknown && transport {
        tracing::warn!(upstream = "remote", error = %status, "adapter service unreachable");
        return AdapterError::new(
            ErrorKind::Unavailable,
            "the adapter service could not be reached (connection refused or reset)",
        );
    }
    let kind = match status.code() {
        Code::NotFound => ErrorKind::NotFound,
        Code::InvalidArgument | Code::OutOfRange => ErrorKind::InvalidArgument,
        Code::PermissionDenied => ErrorKind::PermissionDenied,
        Code::Unauthenticated => ErrorKind::Unauthenticated,
        Code::ResourceExhausted => ErrorKind::RateLimited,
        Code::Unavailable | Code::Aborted | Code::Cancelled => ErrorKind::Unavailable,
        Code::DeadlineExceeded => ErrorKind::DeadlineExceeded,
        Code::Unimplemented => ErrorKind::Unsupported,
        _ => ErrorKind::Unexpected,
    };
    if kind == ErrorKind::Unexpected {
        tracing::warn!(upstream = "remote", code = ?status.code(), "adapter service failed");
    }
    let mut e = AdapterError::new(kind, status.message());
    if let Some(field) =
        status.get_details_bad_request().and_then(|b| b.field_violations.first().map(|v| v.field.clone()))
    {
        e = e.with_field(field);
    }
    if let Some(delay) = status.get_details_retry_info().and_then(|r| r.retry_delay) {
        e = e.with_retry_after(delay);
    }
    e
}
