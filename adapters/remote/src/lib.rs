//! Out-of-process adapters. A province implements `lienthong.adapter.v1`
//! (see `proto/lienthong/adapter/v1/adapter.proto`) in any language; this
//! adapter calls it over gRPC — with the caller's deadline (capped by
//! `timeout`), TLS and optionally mutual TLS — and the gateway treats it like
//! any other adapter.

#![forbid(unsafe_code)]

mod config;
mod core;
mod error;

mod construction;
mod education;
mod healthcare;
mod identity;
mod public_services;
mod transport;

use std::sync::Arc;

use async_trait::async_trait;
use lienthong_adapter_core::{
    AdapterError, AdapterFactory, AdapterRegistry, AdapterSet, BuildContext, ErrorKind, Family,
};
use serde::Deserialize;

pub use crate::config::{RemoteConfig, RemoteTlsConfig};
pub use crate::core::RemoteAdapter;
pub use crate::error::status_to_error;

/// Builds remote adapters.
#[derive(Debug, Default)]
pub struct RemoteFactory;

#[async_trait]
impl AdapterFactory for RemoteFactory {
    fn kind(&self) -> &'static str {
        "remote"
    }

    fn description(&self) -> &'static str {
        "a province's own adapter service (lienthong.adapter.v1 over gRPC, any language)"
    }

    fn families(&self) -> &'static [Family] {
        &Family::ALL
    }

    fn validate(&self, options: &serde_json::Value) -> Vec<String> {
        // Every key at fault, each by its path; then what the rest means.
        lienthong_adapter_core::options::problems(options, |c: RemoteConfig| c.validate())
    }

    fn instance_families(&self, options: &serde_json::Value) -> Option<Vec<Family>> {
        RemoteConfig::deserialize(options).ok()?.allowed_families()
    }

    async fn build(&self, ctx: BuildContext) -> Result<AdapterSet, AdapterError> {
        let config = RemoteConfig::deserialize(&ctx.options)
            .map_err(|e| AdapterError::new(ErrorKind::InvalidArgument, e.to_string()))?;
        let families = config.allowed_families().unwrap_or_else(|| Family::ALL.to_vec());
        let a = Arc::new(RemoteAdapter::connect_as(&ctx.instance, config).await?);
        // Only the configured families: a route to another is refused at start.
        let serves = |f: Family| families.contains(&f);
        Ok(AdapterSet {
            identity: serves(Family::Identity).then(|| a.clone() as _),
            healthcare: serves(Family::Healthcare).then(|| a.clone() as _),
            education: serves(Family::Education).then(|| a.clone() as _),
            transport: serves(Family::Transport).then(|| a.clone() as _),
            construction: serves(Family::Construction).then(|| a.clone() as _),
            public_services: serves(Family::PublicServices).then(|| a.clone() as _),
            provinces: a.provinces.clone(),
            health: Some(a.clone() as _),
            ..Default::default()
        })
    }
}

/// Registers the `remote` kind.
pub fn register(registry: &mut AdapterRegistry) {
    registry.register(Arc::new(RemoteFactory));
}
