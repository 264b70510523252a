//! The one mapping from adapter errors to gRPC statuses, and the builders of
//! the gateway's own error statuses.

use lienthong_adapter_core::{AdapterError, ErrorKind, Method};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// Maps an adapter's error to the status the caller sees.
///
/// Messages of `Unexpected` errors are logged, not shown: they may describe
/// internals. Every other message is the adapter's, which the SPI requires to
/// be free of personal data.
pub fn from_adapter(err: AdapterError, method: Method, adapter: &str) -> Status {
    let code = match err.kind() {
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::PermissionDenied => Code::PermissionDenied,
        ErrorKind::Unauthenticated => Code::Unauthenticated,
        ErrorKind::RateLimited => Code::ResourceExhausted,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::DeadlineExceeded => Code::DeadlineExceeded,
        ErrorKind::Unsupported => Code::Unimplemented,
        ErrorKind::Unexpected => Code::Internal,
    };
    if err.kind() == ErrorKind::Unexpected {
        tracing::error!(rpc = method.full_name(), adapter, error = %err, "adapter failed unexpectedly");
        return Status::internal(format!("the {adapter} adapter failed unexpectedly; the gateway logged the details"));
    }
    tracing::debug!(
        rpc = method.full_name(),
        adapter,
        kind = err.kind().as_str(),
        temporary = err.is_temporary(),
        "adapter error"
    );
    let mut details = ErrorDetails::new();
    let mut any = false;
    if let (Some(field), Code::InvalidArgument) = (err.field(), code) {
        details.add_bad_request_violation(field, err.message());
        any = true;
    }
    if let Some(delay) = err.retry_after() {
        details.set_retry_info(Some(delay));
        any = true;
    }
    if any { Status::with_error_details(code, err.message(), details) } else { Status::new(code, err.message()) }
}

/// Collects field violations of one request, then answers INVALID_ARGUMENT
/// with a `BadRequest` detail naming every one.
#[derive(Debug, Default)]
pub struct Violations(Vec<(String, String)>);

impl Violations {
    /// A new, empty collection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `field` is wrong, and why.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push((field.into(), description.into()));
    }

    /// Ok when nothing was recorded; otherwise INVALID_ARGUMENT listing all.
    pub fn into_result(self) -> Result<(), Status> {
        if self.0.is_empty() {
            return Ok(());
        }
        let message = self.0.iter().map(|(f, d)| format!("{f}: {d}")).collect::<Vec<_>>().join("; ");
        let mut details = ErrorDetails::new();
        for (f, d) in &self.0 {
            details.add_bad_request_violation(f.clone(), d.clone());
        }
        Err(Status::with_error_details(Code::InvalidArgument, format!("invalid request: {message}"), details))
    }
}

/// FAILED_PRECONDITION for a province this gateway does not serve, with a
/// `PreconditionFailure` detail (type `PROVINCE`, subject the province) whose
/// description names the provinces it serves.
pub fn province_not_served(code: &str, served: &[String]) -> Status {
    let list = served.join(", ");
    let mut details = ErrorDetails::new();
    details.add_precondition_failure_violation("PROVINCE", code, format!("this gateway serves provinces {list}"));
    Status::with_error_details(
        Code::FailedPrecondition,
        format!("province {code} is not served by this gateway; it serves: {list}"),
        details,
    )
}

/// The canonical name of a gRPC status code.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code as C;
    match code {
        C::Ok => "OK",
        C::Cancelled => "CANCELLED",
        C::Unknown => "UNKNOWN",
        C::InvalidArgument => "INVALID_ARGUMENT",
        C::DeadlineExceeded => "DEADLINE_EXCEEDED",
        C::NotFound => "NOT_FOUND",
        C::AlreadyExists => "ALREADY_EXISTS",
        C::PermissionDenied => "PERMISSION_DENIED",
        C::ResourceExhausted => "RESOURCE_EXHAUSTED",
        C::FailedPrecondition => "FAILED_PRECONDITION",
        C::Aborted => "ABORTED",
        C::OutOfRange => "OUT_OF_RANGE",
        C::Unimplemented => "UNIMPLEMENTED",
        C::Internal => "INTERNAL",
        C::Unavailable => "UNAVAILABLE",
        C::DataLoss => "DATA_LOSS",
        C::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn kinds_map_to_codes_with_details() {
        let s = from_adapter(AdapterError::invalid_field("page_token", "bad token"), Method::ListSchools, "sandbox");
        assert_eq!(s.code(), Code::InvalidArgument);
        let br = s.get_details_bad_request().unwrap();
        assert_eq!(br.field_violations[0].field, "page_token");

        let s = from_adapter(
            AdapterError::new(ErrorKind::RateLimited, "slow down").with_retry_after(Duration::from_secs(3)),
            Method::GetMyProfile,
            "vneid",
        );
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert_eq!(s.get_details_retry_info().unwrap().retry_delay, Some(Duration::from_secs(3)));

        let s = from_adapter(
            AdapterError::new(ErrorKind::Unexpected, "db password wrong: hunter2"),
            Method::GetSchool,
            "x",
        );
        assert_eq!(s.code(), Code::Internal);
        assert!(!s.message().contains("hunter2"));
        assert_eq!(
            from_adapter(AdapterError::unsupported(Method::GetSchool), Method::GetSchool, "x").code(),
            Code::Unimplemented
        );
    }

    #[test]
    fn violations_list_every_field() {
        let mut v = Violations::new();
        v.add("page_size", "must be between 0 and 100");
        v.add("near.radius_meters", "must be at most 50000");
        let s = v.into_result().unwrap_err();
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(s.message().contains("page_size") && s.message().contains("near.radius_meters"));
        assert_eq!(s.get_details_bad_request().unwrap().field_violations.len(), 2);
        assert!(Violations::new().into_result().is_ok());
    }
}
