//! The warehouse's HTTP answers as adapter errors.

use std::time::Duration;

use lienthong_adapter_core::{AdapterError, ErrorKind};
use lienthong_adapter_http::Upstream;

/// Maps the warehouse's HTTP status to an error kind: 404 is `NotFound`;
/// the rest as every upstream.
pub(crate) fn parse_error(
    upstream: &Upstream,
    what: &str,
    status: reqwest::StatusCode,
    retry_after: Option<Duration>,
) -> AdapterError {
    match status {
        reqwest::StatusCode::NOT_FOUND => {
            AdapterError::new(ErrorKind::NotFound, format!("the warehouse has no such {what} record"))
        }
        _ => upstream.status_error(what, status, retry_after),
    }
}
