//! The adapter service's gRPC statuses as adapter errors.

use lienthong_adapter_core::{AdapterError, ErrorKind};
use tonic_types::StatusExt;

/// How long a caller is told to wait after the adapter service's
/// connection broke (it stopped or restarted).
const RETRY_AFTER_BROKEN: std::time::Duration = std::time::Duration::from_secs(1);

/// Maps the adapter service's status to an adapter error.
pub fn status_to_error(status: &tonic::Status) -> AdapterError {
    map_status(status, "remote")
}

/// Whether `status` came from the connection (refused, reset, closed
/// mid-stream) rather than from the service.
fn connection_broke(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        if e.is::<tonic::transport::Error>()
            || e.is::<hyper::Error>()
            || e.is::<h2::Error>()
            || e.is::<std::io::Error>()
        {
            return true;
        }
        source = e.source();
    }
    false
}

/// [`status_to_error`] for `instance`, as logs name it.
pub(crate) fn map_status(status: &tonic::Status, instance: &str) -> AdapterError {
    use tonic::Code;
    // A failed TLS handshake names its cause, whatever code tonic gave it.
    if let Some(cause) = std::error::Error::source(status).and_then(lienthong_adapter_core::tls::cause) {
        tracing::warn!(instance = %instance, tls = %cause, "adapter service unreachable");
        return AdapterError::new(ErrorKind::Unavailable, format!("the adapter service could not be reached: {cause}"));
    }
    // A connection that fails or breaks (the service stopped, restarted or
    // died mid-stream) surfaces as UNKNOWN or INTERNAL with a transport
    // error as its source: the service is out of reach, not misbehaving.
    if matches!(status.code(), Code::Unknown | Code::Internal) && connection_broke(status) {
        tracing::warn!(instance = %instance, error = %status, "adapter service unreachable");
        return AdapterError::new(
            ErrorKind::Unavailable,
            "the adapter service could not be reached, or its connection broke (it stopped or restarted)",
        )
        .with_retry_after(RETRY_AFTER_BROKEN);
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
        tracing::warn!(instance = %instance, code = ?status.code(), "adapter service failed");
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
