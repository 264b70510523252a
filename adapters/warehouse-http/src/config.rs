//! The warehouse adapter's options: where the warehouse is, how to get a
//! token, and for each dataset where its records are and how their fields,
//! values, filters and pages are named upstream.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// `[adapters.<name>]` with `kind = "warehouse-http"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarehouseConfig {
    /// The platform the warehouse runs on: `rest` (described key by key),
    /// or a preset, `ckan`, `arcgis` or `odata`, which knows the platform's
    /// paths, paging, query language and answers.
    #[serde(default)]
    pub platform: Platform,
    /// The warehouse API's base URL; dataset paths are appended to it.
    pub base_url: String,
    /// Timeout of each request (also capped by the caller's deadline).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// OAuth2 client credentials; without them requests carry no token.
    #[serde(default)]
    pub auth: Option<OAuthConfig>,
    /// Allow plain-http URLs. Only for local test warehouses.
    #[serde(default)]
    pub allow_insecure_http: bool,
    /// A PEM file of CA certificates trusted besides the system's, for an
    /// upstream whose certificate a private CA signed.
    #[serde(default)]
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// Headers sent with every request: a CKAN API token (`Authorization`),
    /// an API gateway's key. Values are secrets: set them from the
    /// environment (`LIENTHONG_ADAPTERS__<NAME>__HEADERS__AUTHORIZATION`);
    /// they never reach logs or `Debug` output.
    #[serde(default)]
    pub headers: Headers,
    /// Where an error sits in an answer that came with HTTP 200 (ArcGIS:
    /// `error.code`): its code is read as an HTTP status (498 and 499, an
    /// invalid or missing token, refresh the token once). A preset sets its
    /// platform's.
    #[serde(default)]
    pub error_code: Option<String>,
    /// The datasets this warehouse publishes, by name: `facilities`,
    /// `schools`, `housing_projects`, `traffic_cameras`.
    #[serde(default)]
    pub datasets: BTreeMap<String, DatasetConfig>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

/// OAuth2 client-credentials grant.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthConfig {
    /// The token endpoint.
    pub token_url: String,
    /// Our client id.
    pub client_id: String,
    /// Our client secret. Never logged; prefer the environment
    /// (`LIENTHONG_ADAPTERS__<NAME>__AUTH__CLIENT_SECRET`).
    pub client_secret: String,
    /// The scope to ask for, if the warehouse wants one.
    #[serde(default)]
    pub scope: Option<String>,
    /// Refresh the token this long before it expires (or at half its
    /// lifetime, when that comes first).
    #[serde(default = "default_refresh_before", with = "humantime_serde")]
    pub refresh_before: Duration,
    /// How the client credentials reach the token endpoint: `basic` (HTTP
    /// Basic authentication) or `body` (`client_id` and `client_secret` as
    /// form fields, as ArcGIS wants). A preset chooses its platform's.
    #[serde(default)]
    pub credentials: Option<Credentials>,
    /// Extra form fields for the token request (ArcGIS: `f = "json"`).
    #[serde(default)]
    pub form: BTreeMap<String, String>,
    /// Send the token as this query parameter (ArcGIS: `token`) rather than
    /// in `Authorization: Bearer`.
    #[serde(default)]
    pub token_param: Option<String>,
    /// Send the token as `Bearer <token>` in this header rather than in
    /// `Authorization` (ArcGIS Enterprise: `X-Esri-Authorization`).
    #[serde(default)]
    pub token_header: Option<String>,
}

/// How client credentials are sent to the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Credentials {
    /// HTTP Basic authentication.
    Basic,
    /// Form fields `client_id` and `client_secret`.
    Body,
}

fn default_refresh_before() -> Duration {
    Duration::from_secs(60)
}

impl fmt::Debug for OAuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthConfig")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("scope", &self.scope)
            .finish()
    }
}

/// Headers by name; the values (secrets) are left out of `Debug`.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Headers(pub BTreeMap<String, String>);

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

/// The platform a warehouse runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    /// Any REST/JSON API, described key by key; each filter is one query
    /// parameter, its value sent as it is.
    #[default]
    Rest,
    /// CKAN's DataStore (`datastore_search`): `resource` is the resource
    /// id; filters go in its JSON `filters` object.
    Ckan,
    /// ArcGIS REST FeatureServer (`query`): `resource` is the layer
    /// (`Schools/FeatureServer/0`); filters go in a SQL `where`, near
    /// searches in `geometry`/`distance`.
    Arcgis,
    /// OData v4: `resource` is the entity set (`Schools`); filters go in
    /// `$filter`, a record is got by its key (`Schools('…')`).
    Odata,
}

/// How the upstream pages a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PagingStyle {
    /// `?offset=40&limit=20`.
    #[default]
    Offset,
    /// `?page=3&size=20`.
    Page,
    /// `?cursor=<opaque>&limit=20`, the next cursor in the answer.
    Cursor,
    /// The answer carries the URL of the next page (OData's
    /// `@odata.nextLink`), followed as it is (on the warehouse's host only).
    NextLink,
}

/// Pagination parameters; only those of the chosen style are used.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PagingConfig {
    /// The style.
    pub style: PagingStyle,
    /// The page-size parameter (all styles).
    pub limit_param: String,
    /// The offset parameter (`offset`).
    pub offset_param: String,
    /// The page-number parameter (`page`).
    pub page_param: String,
    /// The number of the first page (`page`), usually 0 or 1.
    pub first_page: u64,
    /// The cursor parameter (`cursor`).
    pub cursor_param: String,
    /// Where the next cursor is in the answer, as a dotted path (`cursor`).
    pub next_cursor: String,
    /// Where the next page's URL is in the answer, as a path (`next_link`).
    pub next_link: String,
    /// Where a "there is more" flag is in the answer (ArcGIS's
    /// `exceededTransferLimit`), for the offset and page styles without a
    /// total: a short page with the flag set is not the end.
    pub more: Option<String>,
    /// The largest page the upstream serves (its own cap, or less): pages
    /// of the page, cursor and next-link styles are asked at this size.
    pub max_limit: u32,
}

impl Default for PagingConfig {
    fn default() -> Self {
        Self {
            style: PagingStyle::Offset,
            limit_param: "limit".into(),
            offset_param: "offset".into(),
            page_param: "page".into(),
            first_page: 1,
            cursor_param: "cursor".into(),
            next_cursor: "next_cursor".into(),
            next_link: "@odata.nextLink".into(),
            more: None,
            max_limit: 100,
        }
    }
}

/// One dataset: where it lives and how its JSON is shaped.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetConfig {
    /// The list endpoint, relative to `base_url`, for example
    /// `/health/facilities`; it may carry fixed query parameters. Required
    /// for `platform = "rest"`; a preset derives it from `resource`.
    #[serde(default)]
    pub path: String,
    /// For a platform preset: the CKAN resource id, the ArcGIS layer
    /// (`Schools/FeatureServer/0`) or the OData entity set (`Schools`).
    #[serde(default)]
    pub resource: Option<String>,
    /// Query parameters sent with every request of this dataset.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// For a `rest` dataset: write the filters in a platform's query
    /// language, all in one parameter, each value quoted and escaped —
    /// `"odata"` (`$filter`), `"arcgis"` (an SQL `where`) or `"ckan"` (a JSON
    /// `filters` object) — with `filters` naming the upstream fields. A
    /// preset uses its own.
    #[serde(default)]
    pub filter_language: Option<Platform>,
    /// The most records a search done here may read: a text search where
    /// the platform cannot ignore diacritics, a near search where it cannot
    /// search by distance (or to sort by distance). Beyond it the search is
    /// refused, asking for a narrower filter.
    #[serde(default = "default_local_limit")]
    pub local_limit: u32,
    /// The single-record endpoint with `{id}`, for example
    /// `/health/facilities/{id}`; the id is percent-encoded. Without it the
    /// dataset has no get.
    #[serde(default)]
    pub get_path: Option<String>,
    /// Dotted path of the records array in a list answer; empty when the
    /// answer is the array itself.
    #[serde(default)]
    pub items: String,
    /// Dotted path of the record in a get answer; empty for the whole body.
    #[serde(default)]
    pub record: String,
    /// Dotted path of the total count in a list answer, if there is one.
    #[serde(default)]
    pub total: Option<String>,
    /// Where the total is asked by a request of its own (ArcGIS:
    /// `returnCountOnly = "true"`, the count at `count`): these parameters
    /// are added to the list's query, without paging, and `total` read from
    /// that answer.
    #[serde(default)]
    pub count_params: BTreeMap<String, String>,
    /// How the upstream pages.
    #[serde(default)]
    pub paging: PagingConfig,
    /// Our field name → dotted path in an upstream record.
    pub fields: BTreeMap<String, String>,
    /// For enum fields: our field → upstream value → our enum value name
    /// (for example `type` → `"Bệnh viện đa khoa"` → `"GENERAL_HOSPITAL"`).
    #[serde(default)]
    pub values: BTreeMap<String, BTreeMap<String, String>>,
    /// Our filter → the upstream query parameter (`ward_code`, `type`,
    /// `text`, `level`, `ownership`, `status`, `investor`, and for near
    /// searches `near.latitude`, `near.longitude`, `near.radius_meters`). A
    /// filter without a parameter is refused with INVALID_ARGUMENT. With a
    /// platform preset: our filter → the upstream *field* it compares (by
    /// default the field's own mapping in `fields`); `text` and `near` are
    /// searched here unless mapped.
    #[serde(default)]
    pub filters: BTreeMap<String, String>,
}

fn default_local_limit() -> u32 {
    5_000
}

impl DatasetConfig {
    /// How the upstream writes filter `filter`'s value `ours`: the value
    /// `values` maps to it (an enum's upstream label), or `ours` as it is.
    pub(crate) fn upstream_value(&self, filter: &str, ours: &str) -> String {
        self.values
            .get(filter)
            .and_then(|m| m.iter().find(|(_, o)| o.as_str() == ours))
            .map_or_else(|| ours.to_owned(), |(upstream, _)| upstream.clone())
    }

    /// The field `ours` upstream (its path in `fields`), as a preset's query
    /// language names it.
    pub(crate) fn upstream_field(&self, platform: Platform, ours: &str) -> Option<String> {
        let path = self.filters.get(ours).or_else(|| self.fields.get(ours))?;
        Some(match platform {
            Platform::Arcgis => path.strip_prefix("attributes.").unwrap_or(path).to_owned(),
            Platform::Odata => path.replace('.', "/"),
            Platform::Ckan | Platform::Rest => path.clone(),
        })
    }
}

impl WarehouseConfig {
    /// Fills in what a platform preset knows (paths, where records and
    /// totals are, paging) wherever the dataset left it unset.
    pub fn apply_platform(&mut self) {
        let platform = self.platform;
        if platform == Platform::Rest {
            return;
        }
        if platform == Platform::Arcgis {
            // ArcGIS reports failures in HTTP 200 bodies, takes credentials
            // as form fields and the token as a query parameter.
            self.error_code.get_or_insert_with(|| "error.code".to_owned());
            if let Some(auth) = &mut self.auth {
                auth.credentials.get_or_insert(Credentials::Body);
                auth.form.entry("f".to_owned()).or_insert_with(|| "json".to_owned());
                if auth.token_header.is_none() {
                    auth.token_param.get_or_insert_with(|| "token".to_owned());
                }
            }
        }
        for ds in self.datasets.values_mut() {
            let resource = ds.resource.clone().unwrap_or_default();
            let preset_paging = PagingConfig::default() == ds.paging;
            let (path, items, record, total) = match platform {
                Platform::Ckan => {
                    ("/datastore_search".to_owned(), "result.records", "result.records.0", Some("result.total"))
                }
                Platform::Arcgis => {
                    (format!("/{}/query", resource.trim_matches('/')), "features", "features.0", Some("count"))
                }
                Platform::Odata | Platform::Rest => {
                    (format!("/{}", resource.trim_matches('/')), "value", "", Some("@odata.count"))
                }
            };
            if ds.path.is_empty() {
                ds.path = path;
            }
            if ds.items.is_empty() {
                ds.items = items.to_owned();
            }
            if ds.record.is_empty() {
                ds.record = record.to_owned();
            }
            if ds.total.is_none() {
                ds.total = total.map(str::to_owned);
            }
            let fixed = |ds: &mut DatasetConfig, k: &str, v: &str| {
                ds.params.entry(k.to_owned()).or_insert_with(|| v.to_owned());
            };
            match platform {
                Platform::Ckan => fixed(ds, "resource_id", &resource),
                Platform::Arcgis => {
                    for (k, v) in [("f", "json"), ("outFields", "*"), ("outSR", "4326"), ("returnGeometry", "true")] {
                        fixed(ds, k, v);
                    }
                    // ArcGIS counts in a query of its own.
                    if ds.count_params.is_empty() {
                        ds.count_params.insert("returnCountOnly".to_owned(), "true".to_owned());
                    }
                    for (ours, default) in [("latitude", "geometry.y"), ("longitude", "geometry.x")] {
                        ds.fields.entry(ours.to_owned()).or_insert_with(|| default.to_owned());
                    }
                }
                Platform::Odata => fixed(ds, "$count", "true"),
                Platform::Rest => {}
            }
            if preset_paging {
                ds.paging = match platform {
                    Platform::Ckan => PagingConfig { max_limit: 1000, ..PagingConfig::default() },
                    Platform::Arcgis => PagingConfig {
                        offset_param: "resultOffset".into(),
                        limit_param: "resultRecordCount".into(),
                        more: Some("exceededTransferLimit".into()),
                        max_limit: 1000,
                        ..PagingConfig::default()
                    },
                    Platform::Odata | Platform::Rest => PagingConfig {
                        style: PagingStyle::NextLink,
                        limit_param: "$top".into(),
                        max_limit: 1000,
                        ..PagingConfig::default()
                    },
                };
            }
        }
    }
}

impl WarehouseConfig {
    /// Checks the options without I/O; returns every problem.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let url_ok = |u: &str| u.starts_with("https://") || (self.allow_insecure_http && u.starts_with("http://"));
        if !url_ok(&self.base_url) {
            problems.push("base_url: must be an https:// URL (http:// only with allow_insecure_http)".to_owned());
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(60)).contains(&self.timeout) {
            problems.push("timeout: must be between 100ms and 60s".to_owned());
        }
        if let Some(path) = &self.tls_ca_file
            && let Err(e) = lienthong_adapter_http::check_ca_file(path)
        {
            problems.push(format!("tls_ca_file: {e}"));
        }
        if let Some(auth) = &self.auth {
            if !url_ok(&auth.token_url) {
                problems
                    .push("auth.token_url: must be an https:// URL (http:// only with allow_insecure_http)".to_owned());
            }
            if auth.client_id.is_empty() || auth.client_secret.is_empty() {
                problems.push("auth: client_id and client_secret are required".to_owned());
            }
        }
        for (name, value) in &self.headers.0 {
            let ok = reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_ok()
                && reqwest::header::HeaderValue::from_str(value).is_ok();
            if !ok {
                problems.push(format!("headers.{name}: not a valid HTTP header name and value"));
            }
        }
        if self.datasets.is_empty() {
            problems.push("datasets: configure at least one dataset".to_owned());
        }
        for (name, d) in &self.datasets {
            let Some(schema) = crate::records::schema(name) else {
                problems.push(format!(
                    "datasets.{name}: unknown dataset; known: {}",
                    crate::records::DATASETS.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
                ));
                continue;
            };
            if self.platform == Platform::Rest {
                if !d.path.starts_with('/') {
                    problems.push(format!("datasets.{name}.path: required, starting with '/'"));
                }
            } else if d.resource.as_deref().is_none_or(str::is_empty) {
                problems.push(format!(
                    "datasets.{name}.resource: required with platform = {:?} (the CKAN resource id, the ArcGIS layer or the OData entity set)",
                    self.platform
                ));
            }
            if let Some(g) = &d.get_path
                && (!g.starts_with('/') || !g.contains("{id}"))
            {
                problems.push(format!("datasets.{name}.get_path: must start with '/' and contain {{id}}"));
            }
            for required in schema.required {
                if !d.fields.contains_key(*required) {
                    problems.push(format!("datasets.{name}.fields.{required}: required"));
                }
            }
            for field in d.fields.keys() {
                if !schema.fields.contains(&field.as_str()) {
                    problems.push(format!(
                        "datasets.{name}.fields.{field}: unknown field; known: {}",
                        schema.fields.join(", ")
                    ));
                }
            }
            for (field, map) in &d.values {
                match schema.enums.iter().find(|(f, _)| f == field) {
                    None => problems.push(format!("datasets.{name}.values.{field}: not an enum field")),
                    Some((_, parse)) => {
                        for (upstream, ours) in map {
                            if parse(ours).is_none() {
                                problems.push(format!(
                                    "datasets.{name}.values.{field}.{upstream:?}: {ours:?} is not a value of {field}"
                                ));
                            }
                        }
                    }
                }
            }
            let near = ["near.latitude", "near.longitude", "near.radius_meters"];
            for filter in d.filters.keys() {
                // A preset maps filters to fields; `near` to the location field.
                let preset_ok =
                    self.platform != Platform::Rest && (filter == "near" || near.contains(&filter.as_str()));
                if !schema.filters.contains(&filter.as_str()) && !preset_ok {
                    problems.push(format!(
                        "datasets.{name}.filters.{filter}: unknown filter; known: {}",
                        schema.filters.join(", ")
                    ));
                }
            }
            let p = &d.paging;
            if p.max_limit == 0 || p.max_limit > 1000 {
                problems.push(format!("datasets.{name}.paging.max_limit: must be between 1 and 1000"));
            }
        }
        problems
    }
}
