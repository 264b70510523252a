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

use crate::config::{Credentials, DatasetConfig, PagingStyle, WarehouseConfig};
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

/// A page of records and where the next one starts.
pub(crate) struct Filled<T> {
    pub items: Vec<T>,
    pub next_page_token: String,
    pub total: i32,
}

/// The most upstream requests one page may take (an upstream that serves
/// small pages, records dropped as invalid or not matching).
const MAX_REQUESTS_PER_PAGE: usize = 20;

/// Where a walk of the upstream stands: the index of the next record (offset
/// and page styles), or the upstream page's cursor or link and how many of
/// its records were already served (cursor and next-link styles).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Position {
    Index(u64),
    Within { skip: usize, at: String },
}

impl Position {
    fn start(style: PagingStyle) -> Self {
        match style {
            PagingStyle::Offset | PagingStyle::Page => Position::Index(0),
            PagingStyle::Cursor | PagingStyle::NextLink => Position::Within { skip: 0, at: String::new() },
        }
    }

    fn encode(&self) -> String {
        match self {
            Position::Index(i) => format!("i{i}"),
            Position::Within { skip, at } => format!("w{skip}:{at}"),
        }
    }

    fn decode(text: &str, style: PagingStyle) -> Option<Self> {
        let position = match text.split_at_checked(1)? {
            ("i", i) => Position::Index(i.parse().ok()?),
            ("w", rest) => {
                let (skip, at) = rest.split_once(':')?;
                Position::Within { skip: skip.parse().ok()?, at: at.to_owned() }
            }
            _ => return None,
        };
        (Position::start(style).same_kind(&position)).then_some(position)
    }

    fn same_kind(&self, other: &Position) -> bool {
        matches!(
            (self, other),
            (Position::Index(_), Position::Index(_)) | (Position::Within { .. }, Position::Within { .. })
        )
    }
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
        let mut form: Vec<(&str, &str)> = vec![("grant_type", "client_credentials")];
        if let Some(scope) = &auth.scope {
            form.push(("scope", scope));
        }
        form.extend(auth.form.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let body_credentials = auth.credentials == Some(Credentials::Body);
        if body_credentials {
            form.push(("client_id", &auth.client_id));
            form.push(("client_secret", &auth.client_secret));
        }
        let mut req = self.upstream.client().post(&auth.token_url).timeout(timeout);
        if !body_credentials {
            req = req.basic_auth(&auth.client_id, Some(&auth.client_secret));
        }
        let req = req.form(&form);
        let resp = self.upstream.send("token", req, |s, r| self.upstream.status_error("token", s, r)).await?;
        let answer: Value = self.upstream.json("token", resp).await?;
        // ArcGIS answers a refused client with HTTP 200 and an error.
        let Ok(answer) = serde_json::from_value::<TokenAnswer>(answer) else {
            tracing::warn!(upstream = UPSTREAM, "the token endpoint gave no access token");
            return Err(AdapterError::new(
                ErrorKind::Unavailable,
                "the city data warehouse's token endpoint refused our credentials",
            )
            .with_temporary(false));
        };
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(300));
        let refresh_at = Instant::now() + refresh_after(lifetime, auth.refresh_before);
        tracing::debug!(upstream = UPSTREAM, lifetime_s = lifetime.as_secs(), "warehouse token refreshed");
        *slot = Some(Token { value: answer.access_token.clone(), refresh_at });
        Ok(Some(answer.access_token))
    }

    /// GETs `path` (under `base_url`) with `query`, within the deadline; a
    /// 401 gets one retry with a fresh token.
    pub(crate) async fn get_json(
        &self,
        what: &str,
        path: &str,
        query: &[(String, String)],
        deadline: Option<Instant>,
    ) -> Result<Value, AdapterError> {
        let url = format!("{}{path}", self.config.base_url.trim_end_matches('/'));
        self.get_url(what, &url, query, deadline).await
    }

    /// GETs `url` with `query`; see [`Self::get_json`].
    pub(crate) async fn get_url(
        &self,
        what: &str,
        url: &str,
        query: &[(String, String)],
        deadline: Option<Instant>,
    ) -> Result<Value, AdapterError> {
        let timeout = self.upstream.timeout_for(deadline)?;
        let mut token = self.access_token(None, timeout).await?;
        for attempt in 0..2 {
            let mut req = self
                .upstream
                .client()
                .get(url)
                .query(query)
                .timeout(timeout)
                .header(reqwest::header::ACCEPT, "application/json");
            for (name, value) in &self.config.headers.0 {
                req = req.header(name.as_str(), value.as_str());
            }
            if let (Some(t), Some(auth)) = (&token, &self.config.auth) {
                req = match (&auth.token_param, &auth.token_header) {
                    (Some(param), _) => req.query(&[(param.as_str(), t.as_str())]),
                    (None, Some(header)) => req.header(header.as_str(), format!("Bearer {t}")),
                    (None, None) => req.bearer_auth(t),
                };
            }
            let resp = self.upstream.execute(what, req).await?;
            let mut status = resp.status();
            let retry = retry_after(resp.headers());
            let body = if status.is_success() { Some(self.upstream.json::<Value>(what, resp).await?) } else { None };
            // An error inside an HTTP 200 answer (ArcGIS) counts as its code.
            if let Some(code) = body.as_ref().and_then(|b| self.answered_error(b)) {
                status = code;
            }
            let refused = matches!(status.as_u16(), 401 | 498 | 499);
            if refused && attempt == 0 && token.is_some() {
                token = self.access_token(token.as_deref(), timeout).await?;
                continue;
            }
            if refused {
                break;
            }
            match body {
                Some(body) if status.is_success() => return Ok(body),
                _ => {
                    if status != reqwest::StatusCode::NOT_FOUND {
                        tracing::warn!(
                            upstream = UPSTREAM,
                            what,
                            status = status.as_u16(),
                            "warehouse answered an error"
                        );
                    }
                    return Err(parse_error(&self.upstream, what, status, retry));
                }
            }
        }
        Err(AdapterError::new(ErrorKind::Unavailable, "the city data warehouse refused our credentials")
            .with_temporary(false))
    }

    /// The status an answer that came with HTTP 200 stands for, when it
    /// holds an error (`error_code`): ArcGIS's `{"error": {"code": 498}}`.
    fn answered_error(&self, body: &Value) -> Option<reqwest::StatusCode> {
        let path = self.config.error_code.as_deref()?;
        let code = at(body, path).and_then(number)?;
        // A code that is no HTTP status is an upstream failure.
        Some(
            u16::try_from(code)
                .ok()
                .and_then(|c| reqwest::StatusCode::from_u16(c).ok())
                .unwrap_or(reqwest::StatusCode::BAD_GATEWAY),
        )
    }

    /// One page of a dataset: `page_size` records that `take` keeps (it
    /// builds each upstream record, or drops it: invalid, or not matching
    /// the request), read from as many upstream pages as that takes. The
    /// upstream's own signals say whether there is more (a total, a "more"
    /// flag, a next cursor or link); a short upstream page is never taken
    /// for the end while they say otherwise.
    pub(crate) async fn list<T>(
        &self,
        name: &str,
        ds: &DatasetConfig,
        ask: PageAsk<'_>,
        deadline: Option<Instant>,
        mut take: impl FnMut(&Value) -> Option<T>,
    ) -> Result<Filled<T>, AdapterError> {
        let PageAsk { query, page_size, page_token, fingerprint } = ask;
        let p = &ds.paging;
        let mut position = match decode_token(page_token, fingerprint)? {
            None => Position::start(p.style),
            Some(text) => Position::decode(&text, p.style).ok_or_else(|| {
                AdapterError::invalid_field("page_token", "page_token is not a token this server issued")
            })?,
        };
        let mut items = Vec::with_capacity(page_size);
        // A total asked by a request of its own (ArcGIS's returnCountOnly).
        let mut total = match (&ds.total, ds.count_params.is_empty()) {
            (Some(path), false) => {
                let mut counting = query.clone();
                counting.extend(ds.count_params.iter().map(|(k, v)| (k.clone(), v.clone())));
                let body = self.get_json(name, &ds.path, &counting, deadline).await?;
                at(&body, path).and_then(number).map(|t| t.max(0))
            }
            _ => None,
        };
        let counted = total.is_some();
        for _ in 0..MAX_REQUESTS_PER_PAGE {
            let wanted = page_size - items.len();
            let (body, limit, skip) = self.fetch(name, ds, &query, &position, wanted, deadline).await?;
            let records = records_of(name, ds, &body)?;
            if !counted && let Some(t) = ds.total.as_deref().and_then(|t| at(&body, t)).and_then(number) {
                total = Some(t.max(0));
            }
            let got = records.len();
            // Read from `skip`; stop when the page is full.
            let mut read = skip;
            while read < got && items.len() < page_size {
                if let Some(item) = take(&records[read]) {
                    items.push(item);
                }
                read += 1;
            }
            let next = self.next_position(ds, &body, &position, skip, read, got, limit, total)?;
            let Some(next) = next else {
                return Ok(Filled { items, next_page_token: String::new(), total: total.unwrap_or(0) as i32 });
            };
            if items.len() == page_size {
                return Ok(Filled {
                    items,
                    next_page_token: encode_token(&next.encode(), fingerprint),
                    total: total.unwrap_or(0) as i32,
                });
            }
            if next == position {
                return Err(stuck(name));
            }
            position = next;
        }
        Err(AdapterError::new(
            ErrorKind::Unavailable,
            format!(
                "the city data warehouse's {name} needed more than {MAX_REQUESTS_PER_PAGE} requests for one page: \
                 its pages are too small, or most records are invalid or do not match the filters"
            ),
        ))
    }

    /// Every record of a dataset (for the query) that `take` keeps, in the
    /// upstream's order, reading at most `local_limit` records: for a search
    /// done here. `InvalidArgument` (no field) when there are more.
    pub(crate) async fn scan<T>(
        &self,
        name: &str,
        ds: &DatasetConfig,
        query: Vec<(String, String)>,
        deadline: Option<Instant>,
        mut take: impl FnMut(&Value) -> Option<T>,
    ) -> Result<Vec<T>, AdapterError> {
        let limit = ds.local_limit as usize;
        let mut position = Position::start(ds.paging.style);
        let (mut kept, mut read) = (Vec::new(), 0usize);
        loop {
            let (body, asked, skip) =
                self.fetch(name, ds, &query, &position, ds.paging.max_limit as usize, deadline).await?;
            let records = records_of(name, ds, &body)?;
            let total = ds.total.as_deref().and_then(|t| at(&body, t)).and_then(number);
            let got = records.len();
            for record in records.iter().skip(skip) {
                read += 1;
                if read > limit {
                    return Err(AdapterError::new(
                        ErrorKind::InvalidArgument,
                        format!("this search is done here over at most {limit} {name} records, and there are more"),
                    ));
                }
                if let Some(item) = take(record) {
                    kept.push(item);
                }
            }
            // Every record of the page was read.
            let read_to = got.max(skip);
            match self.next_position(ds, &body, &position, skip, read_to, got, asked, total)? {
                Some(next) if next != position => position = next,
                Some(_) => return Err(stuck(name)),
                None => return Ok(kept),
            }
        }
    }

    /// One upstream request at `position`: the answer, the page size asked,
    /// and how many of its records were already served.
    async fn fetch(
        &self,
        name: &str,
        ds: &DatasetConfig,
        filters: &[(String, String)],
        position: &Position,
        wanted: usize,
        deadline: Option<Instant>,
    ) -> Result<(Value, usize, usize), AdapterError> {
        let p = &ds.paging;
        let max = p.max_limit as usize;
        let mut query = filters.to_vec();
        let (limit, skip) = match (p.style, position) {
            (PagingStyle::Offset, Position::Index(i)) => {
                let limit = wanted.clamp(1, max);
                query.push((p.offset_param.clone(), i.to_string()));
                query.push((p.limit_param.clone(), limit.to_string()));
                (limit, 0)
            }
            (PagingStyle::Page, Position::Index(i)) => {
                // Pages of a fixed size, so that page numbers hold between calls.
                let page = p.first_page + i / max as u64;
                query.push((p.page_param.clone(), page.to_string()));
                query.push((p.limit_param.clone(), max.to_string()));
                (max, (i % max as u64) as usize)
            }
            (PagingStyle::Cursor, Position::Within { skip, at }) => {
                query.push((p.limit_param.clone(), max.to_string()));
                if !at.is_empty() {
                    query.push((p.cursor_param.clone(), at.clone()));
                }
                (max, *skip)
            }
            (PagingStyle::NextLink, Position::Within { skip, at }) if !at.is_empty() => {
                // The link carries every parameter; it must stay on the
                // warehouse (the token goes with it).
                let url = self.same_origin(at)?;
                return Ok((self.get_url(name, &url, &[], deadline).await?, max, *skip));
            }
            (PagingStyle::NextLink, Position::Within { skip, .. }) => {
                query.push((p.limit_param.clone(), max.to_string()));
                (max, *skip)
            }
            _ => return Err(AdapterError::invalid_field("page_token", "page_token is not a token this server issued")),
        };
        let body = self.get_json(name, &ds.path, &query, deadline).await?;
        Ok((body, limit, skip))
    }

    /// Where the walk goes on after reading an upstream page at `position`
    /// from `skip` up to `read` of its `got` records (`limit` asked): within
    /// the page while records remain, else the next page while the
    /// upstream's signals say there is more; `None` at the end.
    #[allow(clippy::too_many_arguments)]
    fn next_position(
        &self,
        ds: &DatasetConfig,
        body: &Value,
        position: &Position,
        skip: usize,
        read: usize,
        got: usize,
        limit: usize,
        total: Option<i64>,
    ) -> Result<Option<Position>, AdapterError> {
        let more_here = read < got;
        Ok(match position {
            Position::Index(i) => {
                let next_index = i + read.saturating_sub(skip) as u64;
                let more = more_here || self.more_after(ds, body, total, next_index, got, limit);
                more.then_some(Position::Index(next_index))
            }
            Position::Within { at: here, .. } if more_here => Some(Position::Within { skip: read, at: here.clone() }),
            Position::Within { .. } => self.next_place(ds, body)?.map(|at| Position::Within { skip: 0, at }),
        })
    }

    /// Whether more records follow `next_index` (offset and page styles):
    /// the total says so, else the "more" flag, else a full page.
    fn more_after(
        &self,
        ds: &DatasetConfig,
        body: &Value,
        total: Option<i64>,
        next_index: u64,
        got: usize,
        limit: usize,
    ) -> bool {
        if got == 0 {
            return false;
        }
        if let Some(t) = total {
            return (next_index as i64) < t;
        }
        if let Some(flag) = ds.paging.more.as_deref() {
            return at(body, flag).and_then(Value::as_bool).unwrap_or(false);
        }
        got >= limit
    }

    /// The next cursor or link in `body`, if the upstream gave one.
    fn next_place(&self, ds: &DatasetConfig, body: &Value) -> Result<Option<String>, AdapterError> {
        let p = &ds.paging;
        let path = match p.style {
            PagingStyle::NextLink => &p.next_link,
            _ => &p.next_cursor,
        };
        Ok(at(body, path).and_then(Value::as_str).filter(|c| !c.is_empty()).map(str::to_owned))
    }

    /// `link` (absolute, or relative to `base_url`) as a URL on the
    /// warehouse's own origin, or an error.
    fn same_origin(&self, link: &str) -> Result<String, AdapterError> {
        let base = reqwest::Url::parse(&self.config.base_url)
            .map_err(|_| AdapterError::new(ErrorKind::Unexpected, "base_url is not a URL"))?;
        let url = base.join(link).map_err(|_| {
            AdapterError::new(ErrorKind::Unavailable, "the city data warehouse sent a next link that is not a URL")
                .with_temporary(false)
        })?;
        if url.origin() != base.origin() {
            tracing::warn!(upstream = UPSTREAM, "a next link to another origin was not followed");
            return Err(AdapterError::new(
                ErrorKind::Unavailable,
                "the city data warehouse sent a next link to another host; it is not followed",
            )
            .with_temporary(false));
        }
        Ok(url.to_string())
    }
}

/// The records array of a list answer, or `Unavailable` (not retried).
fn records_of<'a>(name: &str, ds: &DatasetConfig, body: &'a Value) -> Result<&'a Vec<Value>, AdapterError> {
    match at(body, &ds.items) {
        Some(Value::Array(records)) => Ok(records),
        _ => {
            tracing::warn!(upstream = UPSTREAM, dataset = name, items = %ds.items, "no records array in the answer");
            Err(AdapterError::new(
                ErrorKind::Unavailable,
                format!("the city data warehouse's {name} answer has no records array at {:?}", ds.items),
            )
            .with_temporary(false))
        }
    }
}

/// The upstream gave nothing and says there is more: it would loop forever.
fn stuck(name: &str) -> AdapterError {
    AdapterError::new(ErrorKind::Unavailable, format!("the city data warehouse's {name} paging does not advance"))
        .with_temporary(false)
}

/// A number, or a string holding one.
fn number(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// When a token of `lifetime` is refreshed: `refresh_before` its expiry,
/// but never sooner than half its life (a token shorter-lived than
/// `refresh_before` is not fetched again for every call).
fn refresh_after(lifetime: Duration, refresh_before: Duration) -> Duration {
    lifetime - refresh_before.min(lifetime / 2)
}

/// The offset a page token of a search done here stands for (0 for none).
pub(crate) fn local_offset(token: &str, fingerprint: u64) -> Result<usize, AdapterError> {
    match decode_token(token, fingerprint)? {
        None => Ok(0),
        Some(text) => text
            .strip_prefix('l')
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| AdapterError::invalid_field("page_token", "page_token is not a token this server issued")),
    }
}

/// The page token of a search done here, from `offset`.
pub(crate) fn local_token(offset: usize, fingerprint: u64) -> String {
    encode_token(&format!("l{offset}"), fingerprint)
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
    fn positions_round_trip_and_keep_to_their_style() {
        for (p, style) in [
            (Position::Index(40), PagingStyle::Offset),
            (Position::Index(0), PagingStyle::Page),
            (Position::Within { skip: 3, at: "https://x/y?$skip=50&a=b:c".into() }, PagingStyle::NextLink),
            (Position::Within { skip: 0, at: String::new() }, PagingStyle::Cursor),
        ] {
            assert_eq!(Position::decode(&p.encode(), style), Some(p));
        }
        assert_eq!(Position::decode("i40", PagingStyle::Cursor), None);
        assert_eq!(Position::decode("x", PagingStyle::Offset), None);
        assert_eq!(Position::decode("", PagingStyle::Offset), None);
    }

    #[test]
    fn a_token_is_refreshed_before_its_expiry_but_not_before_half_its_life() {
        let s = Duration::from_secs;
        assert_eq!(refresh_after(s(3600), s(60)), s(3540));
        assert_eq!(refresh_after(s(30), s(60)), s(15));
        assert_eq!(refresh_after(s(0), s(60)), s(0));
    }

    #[test]
    fn tokens_round_trip_and_bind_to_filters() {
        let t = encode_token("opaque/cursor==", 42);
        assert_eq!(decode_token(&t, 42).unwrap().as_deref(), Some("opaque/cursor=="));
        assert_eq!(decode_token(&t, 43).unwrap_err().field(), Some("page_token"));
        assert!(decode_token("zz", 42).is_err());
        assert_eq!(decode_token("", 42).unwrap(), None);
    }
}
