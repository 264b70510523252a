//! The provider's answers as adapter errors: which refuse the citizen's
//! token (UNAUTHENTICATED) and which are the provider's or the gateway's
//! problem (UNAVAILABLE), so apps never send citizens to sign in again for
//! nothing.

use std::time::Duration;

use lienthong_adapter_core::{AdapterError, ErrorKind};
use lienthong_adapter_http::Upstream;

/// A refusal of the citizen's token, with why.
pub(crate) fn unauthenticated(why: &str) -> AdapterError {
    AdapterError::new(ErrorKind::Unauthenticated, format!("the citizen token is not valid: {why}"))
}

/// The provider's refusal to introspect a token of its kind (RFC 7009's
/// `unsupported_token_type`; some providers introspect no JWT).
pub(crate) const UNSUPPORTED_TOKEN_TYPE: &str =
    "the identity provider does not introspect tokens of this kind (unsupported_token_type)";

/// Maps a provider's HTTP status to an error kind. A 401 to a request that
/// carried the citizen's token refuses the token; a 403 to it is the
/// provider refusing this gateway the claims (`insufficient_scope`), which
/// signing in again cannot mend; a 401/403 to anything else (discovery,
/// keys) is the provider refusing us. The rest as every upstream.
pub(crate) fn parse_error(
    upstream: &Upstream,
    what: &str,
    with_token: bool,
    status: reqwest::StatusCode,
    retry_after: Option<Duration>,
) -> AdapterError {
    match status {
        reqwest::StatusCode::UNAUTHORIZED if with_token => {
            AdapterError::new(ErrorKind::Unauthenticated, "the identity provider refused the citizen token")
        }
        reqwest::StatusCode::FORBIDDEN if with_token => AdapterError::new(
            ErrorKind::Unavailable,
            format!(
                "the identity provider answered 403 to the {what} request: the gateway's client lacks the scope for it"
            ),
        )
        .with_temporary(false),
        _ => upstream.status_error(what, status, retry_after),
    }
}
