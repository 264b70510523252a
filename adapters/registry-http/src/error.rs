//! The portal's HTTP answers as adapter errors.

use std::time::Duration;

use lienthong_adapter_core::{AdapterError, ErrorKind};
use lienthong_adapter_http::Upstream;

/// Maps the portal's HTTP status to an error kind: 404 is `NotFound`, a
/// refused citizen token `Unauthenticated`; the rest as every upstream.
pub(crate) fn parse_error(
    upstream: &Upstream,
    what: &str,
    status: reqwest::StatusCode,
    retry_after: Option<Duration>,
) -> AdapterError {
    use reqwest::StatusCode as S;
    match status {
        S::NOT_FOUND => AdapterError::new(ErrorKind::NotFound, format!("the portal has no such {what}")),
        S::UNAUTHORIZED | S::FORBIDDEN if what == "my dossiers" => {
            AdapterError::new(ErrorKind::Unauthenticated, "the public-service portal refused the citizen token")
        }
        _ => upstream.status_error(what, status, retry_after),
    }
}
