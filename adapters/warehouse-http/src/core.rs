//! The warehouse client: the OAuth2 token, requests with the caller's deadline,
//! and the translation of upstream paging to page tokens.

use std::time::Duration;

use lienthong_adapter_core::{AdapterError, ErrorKind};
use lienthong_adapter_http::{Upstream, retry_after};

use crate::error::parse_error;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::config::{DatasetConfig, PagingStyle, WarehouseConfig};
use crate::records::at;

/// The name logs give this upstream.
pub(crate) const UPSTREAM: &str = "warehouse";

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

struct Token {
    value: String,
    refresh_at: Instant,
}

/// Which page of a dataset to fetch.
pub(crate) struct PageAsk<'a> {
    /// Upstream filter parameters.
    pub query: Vec<(String, String)>,
    /// Records wanted.
    pub page_size: usize,
    /// The caller's page token (empty for the first page).
    pub page_token: &'a str,
    /// The fingerprint of the caller's filters, which tokens are bound to.
    pub fingerprint: u64,
}

/// A page of upstream records and where the next one starts.
pub(crate) struct UpstreamPage {
    pub records: Vec<Value>,
    pub next_page_token: String,
    pub total: i32,
}

/// Talks to the warehouse.
pub(crate) struct Warehouse {
    config: WarehouseConfig,
    upstream: Upstream,
    /// The current token; the lock also makes one refresh at a time.
    token: Mutex<Option<Token>>,
}

impl Warehouse {
    pub(crate) fn new(config: WarehouseConfig) -> Result<Self, AdapterError> {
        let upstream =
            Upstream::new(UPSTREAM, "the city data warehouse", config.timeout, config.tls_ca_file.as_deref())?;
        Ok(Self { config, upstream, token: Mutex::new(None) })
    }

    pub(crate) fn config(&self) -> &WarehouseConfig {
        &self.config
    }

    /// A valid access token (None without auth). `stale` is a token the
    /// upstream just refused: it is replaced even if not yet due.
    async fn access_token(&self, stale: Option<&str>, timeout: Duration) -> Result<Option<String>, AdapterError> {
        let Some(auth) = &self.config.auth else { return Ok(None) };
        let mut slot = self.token.lock().await;
        if let Some(t) = slot.as_ref()
            && Instant::now() < t.refresh_at
            && stale != Some(t.value.as_str())
        {
            return Ok(Some(t.value.clone()));
        }
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(scope) = &auth.scope {
            form.push(("scope", scope));
        }
        let req = self
            .upstream
            .client()
            .post(&auth.token_url)
            .basic_auth(&auth.client_id, Some(&auth.client_secret))
            .form(&form)
            .timeout(timeout);
        let resp = self.upstream.send("token", req, |s, r| self.upstream.status_error("token", s, r)).await?;
        let answer: TokenAnswer = self.upstream.json("token", resp).await?;
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(300));
        let refresh_at = Instant::now() + lifetime.saturating_sub(auth.refresh_before);
        tracing::debug!(upstream = UPSTREAM, lifetime_s = lifetime.as_secs(), "warehouse token refreshed");
        *slot = Some(Token { value: answer.access_token.clone(), refresh_at });
        Ok(Some(answer.access_token))
    }

    /// GETs `path` with `query`, within the deadline; a 401 gets one retry
    /// with a fresh token.
    pub(crate) async fn get_json(
        &self,
        what: &str,
        path: &str,
        query: &[(String, String)],
        deadline: Option<Instant>,
    ) -> Result<Value, AdapterError> {
        let timeout = self.upstream.timeout_for(deadline)?;
        let url = format!("{}{path}", self.config.base_url.trim_end_matches('/'));
        let mut token = self.access_token(None, timeout).await?;
        for attempt in 0..2 {
            let mut req = self
                .upstream
                .client()
                .get(&url)
                .query(query)
                .timeout(timeout)
                .header(reqwest::header::ACCEPT, "application/json");
            if let Some(t) = &token {
                req = req.bearer_auth(t);
            }
            let resp = self.upstream.execute(what, req).await?;
            let status = resp.status();
            if status == reqwest::StatusCode::UNAUTHORIZED && attempt == 0 && token.is_some() {
                token = self.access_token(token.as_deref(), timeout).await?;
                continue;
            }
            if !status.is_success() {
                if status != reqwest::StatusCode::NOT_FOUND {
                    tracing::warn!(upstream = UPSTREAM, what, status = status.as_u16(), "warehouse answered an error");
                }
                return Err(parse_error(&self.upstream, what, status, retry_after(resp.headers())));
            }
            return self.upstream.json(what, resp).await;
        }
        Err(AdapterError::new(ErrorKind::Unavailable, "the city data warehouse refused our credentials")
            .with_temporary(false))
    }

    /// One page of a dataset. `filters` are upstream query parameters;
    /// `fingerprint` binds the page token to them.
    pub(crate) async fn list(
        &self,
        name: &str,
        ds: &DatasetConfig,
        ask: PageAsk<'_>,
        deadline: Option<Instant>,
    ) -> Result<UpstreamPage, AdapterError> {
        let PageAsk { mut query, page_size, page_token, fingerprint } = ask;
        let p = &ds.paging;
        let limit = page_size.min(p.max_limit as usize).max(1);
        let position = decode_token(page_token, fingerprint)?;
        query.push((p.limit_param.clone(), limit.to_string()));
        match p.style {
            PagingStyle::Offset => query.push((p.offset_param.clone(), position.clone().unwrap_or_else(|| "0".into()))),
            PagingStyle::Page => {
                query.push((p.page_param.clone(), position.clone().unwrap_or_else(|| p.first_page.to_string())))
            }
            PagingStyle::Cursor => {
                if let Some(c) = &position {
                    query.push((p.cursor_param.clone(), c.clone()));
                }
            }
        }
        let body = self.get_json(name, &ds.path, &query, deadline).await?;
        let records = match at(&body, &ds.items) {
            Some(Value::Array(items)) => items.clone(),
            _ => {
                tracing::warn!(upstream = UPSTREAM, dataset = name, items = %ds.items, "no records array in the answer");
                return Err(AdapterError::new(
                    ErrorKind::Unavailable,
                    format!("the city data warehouse's {name} answer has no records array"),
                ));
            }
        };
        let total = ds.total.as_deref().and_then(|t| at(&body, t)).and_then(Value::as_i64).map(|t| t.max(0) as i32);
        let got = records.len();
        let next = match p.style {
            PagingStyle::Offset | PagingStyle::Page => {
                let start: u64 = position.as_deref().and_then(|s| s.parse().ok()).unwrap_or(match p.style {
                    PagingStyle::Page => p.first_page,
                    _ => 0,
                });
                let (next_pos, seen) = match p.style {
                    PagingStyle::Page => (start + 1, (start + 1 - p.first_page) as usize * limit),
                    _ => (start + got as u64, start as usize + got),
                };
                let more = match total {
                    Some(t) => seen < t as usize && got > 0,
                    None => got == limit,
                };
                more.then(|| next_pos.to_string())
            }
            PagingStyle::Cursor => {
                at(&body, &p.next_cursor).and_then(Value::as_str).filter(|c| !c.is_empty()).map(str::to_owned)
            }
        };
        Ok(UpstreamPage {
            records,
            next_page_token: next.map(|n| encode_token(&n, fingerprint)).unwrap_or_default(),
            total: total.unwrap_or(0),
        })
    }
}

fn encode_token(position: &str, fingerprint: u64) -> String {
    let hex: String = position.bytes().map(|b| format!("{b:02x}")).collect();
    format!("{fingerprint:016x}{hex}")
}

fn decode_token(token: &str, fingerprint: u64) -> Result<Option<String>, AdapterError> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || AdapterError::invalid_field("page_token", "page_token is not a token this server issued");
    if token.len() < 18 || !token.len().is_multiple_of(2) || !token.is_ascii() {
        return Err(invalid());
    }
    let (fp, hex) = token.split_at(16);
    if u64::from_str_radix(fp, 16).map_err(|_| invalid())? != fingerprint {
        return Err(AdapterError::invalid_field(
            "page_token",
            "page_token was issued for other filters; repeat the call with the filters of the first page",
        ));
    }
    let bytes: Result<Vec<u8>, _> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16)).collect();
    String::from_utf8(bytes.map_err(|_| invalid())?).map(Some).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_bind_to_filters() {
        let t = encode_token("opaque/cursor==", 42);
        assert_eq!(decode_token(&t, 42).unwrap().as_deref(), Some("opaque/cursor=="));
        assert_eq!(decode_token(&t, 43).unwrap_err().field(), Some("page_token"));
        assert!(decode_token("zz", 42).is_err());
        assert_eq!(decode_token("", 42).unwrap(), None);
    }
}
