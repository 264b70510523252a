//! The city's shared data warehouse over REST/JSON.
//!
//! A province describes its warehouse in config — base URL, OAuth2 client
//! credentials, and per dataset: the endpoints, where the records sit in the
//! JSON, each field's upstream path, enum values, filter parameters and the
//! paging style (offset, page number or cursor) — and plugs in without
//! writing code. Upstream paging is translated to Lienthong page tokens bound
//! to the request's filters. Datasets: `facilities` (healthcare), `schools`
//! (education), `housing_projects` (construction), `traffic_cameras`
//! (transport).

#![forbid(unsafe_code)]

mod config;
mod core;
mod error;
mod platform;
mod probe;
mod records;

mod construction;
mod education;
mod healthcare;
mod transport;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use lienthong_adapter_core::{
    AdapterError, AdapterFactory, AdapterRegistry, AdapterSet, BuildContext, CallContext, Capabilities, ErrorKind,
    Family, Method, api, geo, paging,
};
use serde::Deserialize;

pub use config::{DatasetConfig, OAuthConfig, PagingConfig, PagingStyle, Platform, WarehouseConfig};

use crate::core::{PageAsk, Warehouse};
use crate::records::{Record, schema};

/// The warehouse adapter.
pub struct WarehouseAdapter {
    warehouse: Warehouse,
}

impl fmt::Debug for WarehouseAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WarehouseAdapter")
            .field("base_url", &self.warehouse.config().base_url)
            .field("datasets", &self.warehouse.config().datasets.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Gives a record's location and the slot for its distance.
type Locate<T> = fn(&mut T) -> (Option<api::GeoPoint>, &mut Option<f64>);

/// What a list call asks of one dataset.
struct ListCall<'a, T> {
    dataset: &'static str,
    /// Our filter → the value as our API names it (`text` as given).
    filters: Vec<(&'static str, String)>,
    near: Option<&'a api::NearFilter>,
    page_size: i32,
    page_token: &'a str,
    fingerprint: u64,
    build: fn(&Record<'_>, &str) -> Result<T, AdapterError>,
    /// Whether a built record matches one of the filters.
    matches: records::Matches<T>,
    /// The record's location and distance slot, for datasets with near search.
    located: Option<Locate<T>>,
}

impl WarehouseAdapter {
    /// An adapter for `config`; no I/O until the first call.
    pub fn new(mut config: WarehouseConfig) -> Result<Self, AdapterError> {
        config.apply_platform();
        let problems = config.validate();
        if !problems.is_empty() {
            return Err(AdapterError::new(ErrorKind::InvalidArgument, problems.join("; ")));
        }
        Ok(Self { warehouse: Warehouse::new(config)? })
    }

    fn dataset(&self, name: &str, method: Method) -> Result<&DatasetConfig, AdapterError> {
        self.warehouse.config().datasets.get(name).ok_or_else(|| AdapterError::unsupported(method))
    }

    fn supports(&self, lists: &[(&str, Method, Method)]) -> Capabilities {
        let preset = self.warehouse.config().platform != Platform::Rest;
        lists.iter().fold(Capabilities::none(), |caps, (name, list, get)| {
            match self.warehouse.config().datasets.get(*name) {
                None => caps,
                Some(ds) if preset || ds.get_path.is_some() => caps.with(*list).with(*get),
                Some(_) => caps.with(*list),
            }
        })
    }

    async fn list<T: Send>(
        &self,
        ctx: &CallContext,
        method: Method,
        call: ListCall<'_, T>,
    ) -> Result<(Vec<T>, String, i32), AdapterError> {
        let ds = self.dataset(call.dataset, method)?;
        let platform = self.warehouse.config().platform;
        let ours: Vec<(&str, String)> = call.filters.into_iter().filter(|(_, v)| !v.is_empty()).collect();
        // Enum filters travel as the upstream's own value when mapped.
        let upstream: Vec<(&str, String)> =
            ours.iter().map(|(filter, value)| (*filter, ds.upstream_value(filter, value))).collect();
        let asked = platform::list_query(platform, call.dataset, ds, &upstream, call.near)?;
        let size = match call.page_size {
            0 => paging::DEFAULT_PAGE_SIZE,
            n => (n.max(1) as usize).min(paging::MAX_PAGE_SIZE),
        };
        let schema =
            schema(call.dataset).ok_or_else(|| AdapterError::new(ErrorKind::Unexpected, "dataset without schema"))?;
        let (build, matches, located, near, province) =
            (call.build, call.matches, call.located, call.near, ctx.province.as_str());
        let dataset = call.dataset;
        // Every record is built and checked here: one that fails validation
        // is skipped (logged with the field at fault by `build`), and so is
        // one the warehouse should not have given (a filter it ignored, a
        // circle looser than ours), counted as dropped.
        let take = |json: &serde_json::Value| {
            let mut item = match build(&Record { json, dataset: ds, schema }, province) {
                Ok(item) => item,
                Err(e) => {
                    lienthong_adapter_core::telemetry::count_invalid(dataset, e.field().unwrap_or("record"));
                    return None;
                }
            };
            if let Some((filter, _)) = ours.iter().find(|(f, v)| !matches(&item, f, v)) {
                // An upstream's text search may read other fields than ours
                // (name and address): not a mapping that does not filter.
                if !TEXT_FILTERS.contains(filter) {
                    dropped(dataset, filter);
                }
                return None;
            }
            if let (Some(near), Some(located)) = (near, located) {
                let center = near.center.unwrap_or_default();
                let (location, distance) = located(&mut item);
                let d = location.map(|l| geo::distance_m(&center, &l))?;
                if d > near.radius_meters {
                    return None;
                }
                *distance = Some((d * 10.0).round() / 10.0);
            }
            Some(item)
        };
        // A search the warehouse cannot do (text ignoring diacritics), or an
        // order it cannot give (nearest first), is done here over every
        // candidate, up to `local_limit`.
        if asked.local_text.is_some() || near.is_some() {
            let mut found = self.warehouse.scan(dataset, ds, asked.query, ctx.deadline, take).await.map_err(|e| {
                if e.kind() == ErrorKind::InvalidArgument && e.field().is_none() {
                    let what = if near.is_some() { "near" } else { "text" };
                    AdapterError::invalid_field(what, format!("{e}: add a ward or another filter"))
                } else {
                    e
                }
            })?;
            if let Some(located) = located.filter(|_| near.is_some()) {
                let mut keyed: Vec<(f64, T)> =
                    found.into_iter().map(|mut item| (located(&mut item).1.unwrap_or(f64::INFINITY), item)).collect();
                // Stable: equal distances keep the warehouse's order.
                keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
                found = keyed.into_iter().map(|(_, item)| item).collect();
            }
            let offset = core::local_offset(call.page_token, call.fingerprint)?;
            let total = found.len();
            let items: Vec<T> = found.into_iter().skip(offset).take(size).collect();
            let end = offset + items.len();
            let next = if end < total { core::local_token(end, call.fingerprint) } else { String::new() };
            return Ok((items, next, total as i32));
        }
        let ask =
            PageAsk { query: asked.query, page_size: size, page_token: call.page_token, fingerprint: call.fingerprint };
        let page = self.warehouse.list(dataset, ds, ask, ctx.deadline, take).await?;
        // The upstream's total counts what its text search found, which ours
        // narrows: with a text filter the total is not known.
        let texts = ours.iter().any(|(f, _)| TEXT_FILTERS.contains(f));
        Ok((page.items, page.next_page_token, if texts { 0 } else { page.total }))
    }

    async fn get<T>(
        &self,
        ctx: &CallContext,
        method: Method,
        dataset: &'static str,
        id: &str,
        build: fn(&Record<'_>, &str) -> Result<T, AdapterError>,
    ) -> Result<T, AdapterError> {
        let ds = self.dataset(dataset, method)?;
        let schema =
            schema(dataset).ok_or_else(|| AdapterError::new(ErrorKind::Unexpected, "dataset without schema"))?;
        let id_field = schema.required.first().copied().unwrap_or("id");
        let (path, query) = platform::get_request(self.warehouse.config().platform, ds, id_field, id)
            .ok_or_else(|| AdapterError::unsupported(method))?;
        let body = self.warehouse.get_json(dataset, &path, &query, ctx.deadline).await?;
        // A get that is a search (`filters={"id": …}`, `where=id='…'`) finds
        // nothing for an unknown id: that is NOT_FOUND, not an outage.
        let json = records::at(&body, &ds.record).filter(|v| !v.is_null()).ok_or_else(|| {
            AdapterError::new(ErrorKind::NotFound, format!("the city data warehouse has no such {dataset} record"))
        })?;
        let record = Record { json, dataset: ds, schema };
        // A search may answer a near match: only the record asked for is it.
        let built = build(&record, &ctx.province)?;
        if record.text(id_field) != id {
            return Err(AdapterError::new(
                ErrorKind::NotFound,
                format!("the city data warehouse has no such {dataset} record"),
            ));
        }
        Ok(built)
    }
}

/// Filters that match text, which upstreams read in their own ways.
const TEXT_FILTERS: [&str; 2] = ["text", "investor"];

/// Counts a record the warehouse gave although it does not match `filter`:
/// a mapping that does not filter.
fn dropped(dataset: &str, filter: &str) {
    tracing::debug!(upstream = crate::core::UPSTREAM, dataset, filter, "a record not matching the filter was dropped");
    lienthong_adapter_core::telemetry::count_dropped(dataset, filter);
}

/// Builds warehouse adapters.
#[derive(Debug, Default)]
pub struct WarehouseFactory;

#[async_trait]
impl AdapterFactory for WarehouseFactory {
    fn kind(&self) -> &'static str {
        "warehouse-http"
    }

    fn description(&self) -> &'static str {
        "the city's shared data warehouse over REST/JSON, mapped declaratively"
    }

    fn families(&self) -> &'static [Family] {
        &[Family::Healthcare, Family::Education, Family::Transport, Family::Construction]
    }

    fn validate(&self, options: &serde_json::Value) -> Vec<String> {
        // Every key at fault, each by its path; then what the rest means.
        lienthong_adapter_core::options::problems(options, |mut c: WarehouseConfig| {
            c.apply_platform();
            c.validate()
        })
    }

    async fn build(&self, ctx: BuildContext) -> Result<AdapterSet, AdapterError> {
        let config = WarehouseConfig::deserialize(&ctx.options)
            .map_err(|e| AdapterError::new(ErrorKind::InvalidArgument, e.to_string()))?;
        let adapter = Arc::new(WarehouseAdapter::new(config)?);
        Ok(AdapterSet {
            healthcare: Some(adapter.clone()),
            education: Some(adapter.clone()),
            transport: Some(adapter.clone()),
            construction: Some(adapter),
            ..Default::default()
        })
    }
    async fn probe(&self, ctx: BuildContext) -> Option<Vec<String>> {
        let built = WarehouseConfig::deserialize(&ctx.options)
            .map_err(|e| AdapterError::new(ErrorKind::InvalidArgument, e.to_string()))
            .and_then(WarehouseAdapter::new);
        Some(match built {
            Ok(adapter) => adapter.probe().await,
            Err(e) => vec![e.to_string()],
        })
    }
}

/// Registers the `warehouse-http` kind.
pub fn register(registry: &mut AdapterRegistry) {
    registry.register(Arc::new(WarehouseFactory));
}
