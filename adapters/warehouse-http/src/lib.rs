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

pub use config::{DatasetConfig, OAuthConfig, PagingConfig, PagingStyle, WarehouseConfig};

use lienthong_adapter_http::Upstream;

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
    filters: Vec<(&'static str, String)>,
    near: Option<&'a api::NearFilter>,
    page_size: i32,
    page_token: &'a str,
    fingerprint: u64,
    build: fn(&Record<'_>, &str) -> Result<T, AdapterError>,
    /// The record's location and distance slot, for datasets with near search.
    located: Option<Locate<T>>,
}

impl WarehouseAdapter {
    /// An adapter for `config`; no I/O until the first call.
    pub fn new(config: WarehouseConfig) -> Result<Self, AdapterError> {
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
        lists.iter().fold(Capabilities::none(), |caps, (name, list, get)| {
            match self.warehouse.config().datasets.get(*name) {
                None => caps,
                Some(ds) if ds.get_path.is_some() => caps.with(*list).with(*get),
                Some(_) => caps.with(*list),
            }
        })
    }

    async fn list<T>(
        &self,
        ctx: &CallContext,
        method: Method,
        call: ListCall<'_, T>,
    ) -> Result<(Vec<T>, String, i32), AdapterError> {
        let ds = self.dataset(call.dataset, method)?;
        let mut query = Vec::new();
        let mut wanted: Vec<(&str, String)> = call.filters.into_iter().filter(|(_, v)| !v.is_empty()).collect();
        if let Some(near) = call.near {
            let c = near.center.unwrap_or_default();
            wanted.push(("near.latitude", c.latitude.to_string()));
            wanted.push(("near.longitude", c.longitude.to_string()));
            wanted.push(("near.radius_meters", near.radius_meters.to_string()));
        }
        for (filter, value) in wanted {
            let param = ds.filters.get(filter).ok_or_else(|| {
                AdapterError::invalid_field(
                    filter.split('.').next().unwrap_or(filter),
                    format!("this province's data warehouse cannot filter {} by {filter}", call.dataset),
                )
            })?;
            // Enum filters travel as the upstream's own value when mapped.
            let upstream =
                ds.values.get(filter).and_then(|m| m.iter().find(|(_, ours)| **ours == value)).map(|(u, _)| u.clone());
            query.push((param.clone(), upstream.unwrap_or(value)));
        }
        let size = match call.page_size {
            0 => paging::DEFAULT_PAGE_SIZE,
            n => (n.max(1) as usize).min(paging::MAX_PAGE_SIZE),
        };
        let ask = PageAsk { query, page_size: size, page_token: call.page_token, fingerprint: call.fingerprint };
        let schema =
            schema(call.dataset).ok_or_else(|| AdapterError::new(ErrorKind::Unexpected, "dataset without schema"))?;
        let (build, located, near, province) = (call.build, call.located, call.near, ctx.province.as_str());
        // A record that fails validation is skipped (logged with the field at
        // fault by `build`), not the whole page; one outside the circle too.
        let take = |json: &serde_json::Value| {
            let mut item = build(&Record { json, dataset: ds, schema }, province).ok()?;
            if let (Some(near), Some(located)) = (near, located) {
                let center = near.center.unwrap_or_default();
                let (location, distance) = located(&mut item);
                let d = location.map(|l| geo::distance_m(&center, &l))?;
                // The warehouse's idea of the circle may be looser than ours.
                if d > near.radius_meters {
                    return None;
                }
                *distance = Some((d * 10.0).round() / 10.0);
            }
            Some(item)
        };
        let page = self.warehouse.list(call.dataset, ds, ask, ctx.deadline, take).await?;
        Ok((page.items, page.next_page_token, page.total))
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
        let path = ds.get_path.as_deref().ok_or_else(|| AdapterError::unsupported(method))?;
        let path = path.replace("{id}", &Upstream::segment(id));
        let body = self.warehouse.get_json(dataset, &path, &[], ctx.deadline).await?;
        // A get that is a search (`filters={"id": …}`, `where=id='…'`) finds
        // nothing for an unknown id: that is NOT_FOUND, not an outage.
        let json = records::at(&body, &ds.record).filter(|v| !v.is_null()).ok_or_else(|| {
            AdapterError::new(ErrorKind::NotFound, format!("the city data warehouse has no such {dataset} record"))
        })?;
        let schema =
            schema(dataset).ok_or_else(|| AdapterError::new(ErrorKind::Unexpected, "dataset without schema"))?;
        build(&Record { json, dataset: ds, schema }, &ctx.province)
    }
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
        match WarehouseConfig::deserialize(options) {
            Ok(c) => c.validate(),
            Err(e) => vec![e.to_string()],
        }
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
}

/// Registers the `warehouse-http` kind.
pub fn register(registry: &mut AdapterRegistry) {
    registry.register(Arc::new(WarehouseFactory));
}
