//! What every HTTP adapter shares: one client per upstream, requests bounded
//! by the caller's deadline, the default mapping of HTTP statuses and
//! transport failures to error kinds (each adapter's `parse_error` handles
//! its own special cases first), `Retry-After`, and JSON answers that are
//! never passed on as garbage.

#![forbid(unsafe_code)]

use std::path::Path;
use std::time::Duration;

use lienthong_adapter_core::{AdapterError, ErrorKind};
use serde::de::DeserializeOwned;
use tokio::time::Instant;

/// The delay of a `Retry-After: <seconds>` header.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The name of a protobuf enum value without its prefix, as upstream query
/// parameters carry it (`FACILITY_TYPE_PHARMACY` → `PHARMACY`); empty for 0
/// (unspecified) and for unknown values.
pub fn enum_value_name<E: TryFrom<i32>>(value: i32, name: fn(&E) -> &'static str, prefix: &str) -> String {
    match E::try_from(value) {
        Ok(e) if value != 0 => name(&e).strip_prefix(prefix).unwrap_or_default().to_owned(),
        _ => String::new(),
    }
}

/// The largest answer body read from an upstream: a broken or hostile
/// upstream cannot make the gateway buffer without bound.
pub const MAX_BODY: usize = 32 * 1024 * 1024;

/// One upstream: its client, its names, and its timeout.
#[derive(Debug, Clone)]
pub struct Upstream {
    client: reqwest::Client,
    /// Short name for logs, for example `warehouse`.
    log_name: &'static str,
    /// Name in messages to callers, for example `the city data warehouse`.
    label: &'static str,
    timeout: Duration,
}

/// The certificates of a PEM file of CA certificates, or why it cannot be
/// used (named in the adapter's `tls_ca_file` problem).
fn read_ca_file(path: &Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("{} is not a PEM certificate bundle: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// Checks an adapter's `tls_ca_file` (for `check-config`): readable, and
/// PEM certificates.
pub fn check_ca_file(path: &Path) -> Result<(), String> {
    read_ca_file(path).map(drop)
}

impl Upstream {
    /// A client for one upstream; `timeout` caps every request. The system's
    /// roots are trusted, and the CA certificates of `ca_file` besides (a
    /// province's private CA).
    pub fn new(
        log_name: &'static str,
        label: &'static str,
        timeout: Duration,
        ca_file: Option<&Path>,
    ) -> Result<Self, AdapterError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(timeout)
            .user_agent(concat!("lienthong/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = ca_file {
            let certs = read_ca_file(path)
                .map_err(|e| AdapterError::new(ErrorKind::InvalidArgument, format!("tls_ca_file: {e}")))?;
            builder = builder.tls_certs_merge(certs);
        }
        let client = builder
            .build()
            .map_err(|e| AdapterError::new(ErrorKind::Unexpected, format!("building the HTTP client failed: {e}")))?;
        Ok(Self { client, log_name, label, timeout })
    }

    /// The HTTP client, to build requests with.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The time a request may take: the configured timeout, or less when the
    /// caller's deadline is nearer. A deadline already past is
    /// `DeadlineExceeded` before anything is sent.
    pub fn timeout_for(&self, deadline: Option<Instant>) -> Result<Duration, AdapterError> {
        let timeout = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()).min(self.timeout),
            None => self.timeout,
        };
        if timeout.is_zero() {
            return Err(AdapterError::new(
                ErrorKind::DeadlineExceeded,
                format!("the caller's deadline passed before {} was asked", self.label),
            ));
        }
        Ok(timeout)
    }

    /// The default mapping of an error status: 429 `RateLimited` (with the
    /// delay), 408/504 `DeadlineExceeded`, 5xx `Unavailable`, anything else
    /// `Unavailable` and permanent (our request or configuration is wrong).
    pub fn status_error(&self, what: &str, status: reqwest::StatusCode, retry_after: Option<Duration>) -> AdapterError {
        use reqwest::StatusCode as S;
        let message = format!("{} answered {} to the {what} request", self.label, status.as_u16());
        match status {
            S::TOO_MANY_REQUESTS => {
                let e = AdapterError::new(
                    ErrorKind::RateLimited,
                    format!("{} is rate limiting us; retry later", self.label),
                );
                match retry_after {
                    Some(d) => e.with_retry_after(d),
                    None => e,
                }
            }
            S::REQUEST_TIMEOUT | S::GATEWAY_TIMEOUT => AdapterError::new(ErrorKind::DeadlineExceeded, message),
            s if s.is_server_error() => AdapterError::new(ErrorKind::Unavailable, message),
            _ => AdapterError::new(ErrorKind::Unavailable, message).with_temporary(false),
        }
    }

    /// A request that got no answer: `DeadlineExceeded` on timeout, else
    /// `Unavailable`, naming the cause when the TLS handshake failed
    /// (unknown issuer, expired, name mismatch). Logged with the upstream's
    /// name.
    pub fn transport_error(&self, what: &str, e: &reqwest::Error) -> AdapterError {
        let tls = lienthong_adapter_core::tls::cause(e);
        // reqwest's own message names the URL, whose path or query may hold
        // personal data: log the causes under it instead.
        let mut causes = String::new();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            causes.push_str(if causes.is_empty() { "" } else { ": " });
            causes.push_str(&s.to_string());
            source = s.source();
        }
        tracing::warn!(
            upstream = self.log_name,
            what,
            timeout = e.is_timeout(),
            error = %causes,
            tls = tls.as_deref(),
            "request failed"
        );
        if let Some(cause) = tls {
            return AdapterError::new(
                ErrorKind::Unavailable,
                format!("{} could not be reached for the {what} request: {cause}", self.label),
            );
        }
        if e.is_timeout() {
            AdapterError::new(
                ErrorKind::DeadlineExceeded,
                format!("{} did not answer the {what} request in time", self.label),
            )
        } else {
            AdapterError::new(
                ErrorKind::Unavailable,
                format!("{} could not be reached for the {what} request", self.label),
            )
        }
    }

    /// Sends `request` in a client span of its own (`GET <what>`: method,
    /// server, status; never the path or query, which may hold personal
    /// data), with the span's W3C trace context in `traceparent`, so the
    /// upstream's logs join the caller's trace. Any status is an answer; a
    /// request that got none is the error of [`Upstream::transport_error`].
    pub async fn execute(
        &self,
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, AdapterError> {
        use tracing::Instrument as _;
        let (client, request) = request.build_split();
        let mut request = request.map_err(|e| self.transport_error(what, &e))?;
        let url = request.url();
        let span = tracing::info_span!(
            "upstream_http",
            otel.name = %format_args!("{} {what}", request.method()),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            http.request.method = %request.method(),
            server.address = url.host_str().unwrap_or_default(),
            server.port = url.port_or_known_default().unwrap_or_default(),
            url.scheme = url.scheme(),
            lienthong.upstream = self.log_name,
            lienthong.upstream.request = what,
            http.response.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        let headers = request.headers_mut();
        lienthong_adapter_core::telemetry::inject(&span, |name, value| {
            if let (Ok(name), Ok(value)) = (
                reqwest::header::HeaderName::from_bytes(name.as_bytes()),
                reqwest::header::HeaderValue::from_str(&value),
            ) {
                headers.insert(name, value);
            }
        });
        match client.execute(request).instrument(span.clone()).await {
            Ok(resp) => {
                let status = resp.status();
                span.record("http.response.status_code", status.as_u16());
                if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                    span.record("otel.status_code", "ERROR");
                    span.record("error.type", status.as_str());
                }
                Ok(resp)
            }
            Err(e) => {
                span.record("otel.status_code", "ERROR");
                span.record("error.type", if e.is_timeout() { "timeout" } else { "transport" });
                let _entered = span.enter();
                Err(self.transport_error(what, &e))
            }
        }
    }

    /// Sends `request` (see [`Upstream::execute`]) and returns the raw
    /// answer, or the error of a failed request; error statuses go through `parse_error` (the adapter's own
    /// mapping, which falls back to [`Upstream::status_error`]).
    pub async fn send(
        &self,
        what: &str,
        request: reqwest::RequestBuilder,
        parse_error: impl Fn(reqwest::StatusCode, Option<Duration>) -> AdapterError,
    ) -> Result<reqwest::Response, AdapterError> {
        let resp = self.execute(what, request).await?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        if status != reqwest::StatusCode::NOT_FOUND {
            tracing::warn!(upstream = self.log_name, what, status = status.as_u16(), "upstream answered an error");
        }
        Err(parse_error(status, retry_after(resp.headers())))
    }

    /// Reads a successful answer as JSON: a broken-off body is `Unavailable`,
    /// malformed JSON too, never garbage passed on.
    pub async fn json<T: DeserializeOwned>(&self, what: &str, mut resp: reqwest::Response) -> Result<T, AdapterError> {
        let too_large = || {
            tracing::warn!(upstream = self.log_name, what, limit = MAX_BODY, "upstream answer too large");
            AdapterError::new(
                ErrorKind::Unavailable,
                format!("{} answered the {what} request with more than {} MiB", self.label, MAX_BODY >> 20),
            )
        };
        if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.transport_error(what, &e))? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| {
            tracing::warn!(upstream = self.log_name, what, error = %e, "upstream answered malformed JSON");
            // It answered: a data problem, not an outage (not retried, not
            // held against its breaker).
            AdapterError::new(
                ErrorKind::Unavailable,
                format!("{} answered the {what} request with malformed JSON", self.label),
            )
            .with_temporary(false)
        })
    }

    /// Percent-encodes one path segment: only unreserved characters stay, so
    /// an id can never add a path segment, a query or a fragment upstream.
    pub fn segment(segment: &str) -> String {
        let mut out = String::with_capacity(segment.len());
        for b in segment.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_cannot_escape_the_path() {
        assert_eq!(Upstream::segment("79001"), "79001");
        assert_eq!(Upstream::segment("../admin?x=1#y"), "..%2Fadmin%3Fx%3D1%23y");
        assert_eq!(Upstream::segment("MGBĐS"), "MGB%C4%90S");
    }

    #[tokio::test]
    async fn statuses_map_to_kinds() {
        let u = Upstream::new("t", "the test upstream", Duration::from_secs(1), None).unwrap();
        use reqwest::StatusCode as S;
        let e = u.status_error("list", S::TOO_MANY_REQUESTS, Some(Duration::from_secs(4)));
        assert_eq!((e.kind(), e.retry_after()), (ErrorKind::RateLimited, Some(Duration::from_secs(4))));
        assert_eq!(u.status_error("list", S::GATEWAY_TIMEOUT, None).kind(), ErrorKind::DeadlineExceeded);
        assert!(u.status_error("list", S::BAD_GATEWAY, None).is_temporary());
        assert!(!u.status_error("list", S::BAD_REQUEST, None).is_temporary());
        assert!(u.timeout_for(Some(Instant::now())).is_err());
        assert_eq!(u.timeout_for(None).unwrap(), Duration::from_secs(1));
    }
}
