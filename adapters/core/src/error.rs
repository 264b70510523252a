//! The one error type adapters return.

use std::fmt;
use std::time::Duration;

/// What went wrong, in terms the gateway maps to a gRPC status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The record does not exist (NOT_FOUND).
    NotFound,
    /// The request is wrong in a way the gateway's validation did not catch
    /// (INVALID_ARGUMENT).
    InvalidArgument,
    /// The caller is known but may not do this (PERMISSION_DENIED).
    PermissionDenied,
    /// The caller's credentials are missing, invalid or expired (UNAUTHENTICATED).
    Unauthenticated,
    /// The upstream asked us to slow down (RESOURCE_EXHAUSTED).
    RateLimited,
    /// The upstream is down, overloaded or answered garbage (UNAVAILABLE).
    Unavailable,
    /// The upstream did not answer in time (DEADLINE_EXCEEDED).
    DeadlineExceeded,
    /// The adapter does not support this method (UNIMPLEMENTED).
    Unsupported,
    /// A bug or an impossible state (INTERNAL).
    Unexpected,
}

impl ErrorKind {
    /// A short, stable name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::InvalidArgument => "invalid_argument",
            Self::PermissionDenied => "permission_denied",
            Self::Unauthenticated => "unauthenticated",
            Self::RateLimited => "rate_limited",
            Self::Unavailable => "unavailable",
            Self::DeadlineExceeded => "deadline_exceeded",
            Self::Unsupported => "unsupported",
            Self::Unexpected => "unexpected",
        }
    }

    /// Whether the same call may succeed later without change.
    pub fn is_temporary_by_default(self) -> bool {
        matches!(self, Self::RateLimited | Self::Unavailable | Self::DeadlineExceeded)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An adapter's error: a kind, a message for the developer calling the
/// gateway, whether retrying may help, and optionally the request field at
/// fault and how long to wait before retrying.
///
/// # Contract
/// - The message is shown to callers: it MUST NOT contain personal data (ID
///   numbers, names, birth dates, tokens, keys) nor upstream secrets.
/// - `temporary` is true when the same call may succeed later (upstream
///   overload, timeouts); false when it never will (not found, bad request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterError {
    kind: ErrorKind,
    message: String,
    temporary: bool,
    field: Option<String>,
    retry_after: Option<Duration>,
}

impl AdapterError {
    /// An error of `kind` with a message; temporary per the kind's default.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            temporary: kind.is_temporary_by_default(),
            field: None,
            retry_after: None,
        }
    }

    /// NOT_FOUND for a record of `what` (e.g. "facility"). The message
    /// never repeats the id asked for: callers know what they sent, and an
    /// id field may hold anything, personal data included.
    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorKind::NotFound, format!("no {what} has the id given"))
    }

    /// The adapter does not implement `method`.
    pub fn unsupported(method: crate::Method) -> Self {
        Self::new(ErrorKind::Unsupported, format!("this province's adapter does not support {}", method.full_name()))
    }

    /// INVALID_ARGUMENT blaming one request field.
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message).with_field(field)
    }

    /// Names the request field at fault.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// Says how long the caller should wait before retrying.
    pub fn with_retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }

    /// Overrides whether a retry may help.
    pub fn with_temporary(mut self, temporary: bool) -> Self {
        self.temporary = temporary;
        self
    }

    /// The kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, safe to show to callers.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether the same call may succeed later.
    pub fn is_temporary(&self) -> bool {
        self.temporary
    }

    /// The request field at fault, if one is.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// How long to wait before retrying, if the upstream said.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Display for AdapterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for AdapterError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_default_temporariness() {
        assert!(AdapterError::new(ErrorKind::Unavailable, "x").is_temporary());
        assert!(!AdapterError::not_found("school").is_temporary());
        assert!(!AdapterError::new(ErrorKind::Unavailable, "x").with_temporary(false).is_temporary());
    }

    #[test]
    fn not_found_names_the_kind_of_record_not_the_id() {
        let e = AdapterError::not_found("facility");
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(e.message(), "no facility has the id given");
    }
}
