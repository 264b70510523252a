//! The embedded sandbox: a Ho Chi Minh City sample dataset behind every
//! family, and a sandbox identity provider for fictional demo citizens.
//!
//! The data comes from genuine public sources where they exist (2025 wards,
//! the city's bus network and traffic cameras, the national procedure
//! catalogue) and from plausible hand-written records where they do not; see
//! `data/PROVENANCE.md`. Demo dossiers advance through their statuses at a
//! configurable pace, so `WatchDossier` shows live changes.

#![forbid(unsafe_code)]

mod config;
mod core;
mod error;

mod calendar;
mod listing;
mod records;

mod construction;
mod education;
mod healthcare;
mod identity;
mod public_services;
mod transport;

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use lienthong_adapter_core::{
    AdapterError, AdapterFactory, AdapterRegistry, AdapterSet, BuildContext, ErrorKind, Family,
};
use serde::Deserialize;

pub use config::SandboxConfig;
pub use identity::{SANDBOX_ISSUER, is_sandbox_token};

/// The sandbox adapter: serves every family from the dataset.
pub struct Sandbox {
    data: core::Dataset,
    config: SandboxConfig,
    clock: public_services::DossierClock,
    tokens: identity::TokenKeys,
}

impl fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sandbox").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Sandbox {
    /// Loads and validates the dataset. The dossier clock starts now.
    pub fn new(config: SandboxConfig) -> Result<Self, AdapterError> {
        let problems = config.validate();
        if !problems.is_empty() {
            return Err(AdapterError::new(ErrorKind::InvalidArgument, problems.join("; ")));
        }
        let data = core::Dataset::load(config.data_dir.as_deref()).map_err(|p| error::invalid_dataset(&p.0))?;
        let tokens = identity::TokenKeys::new(config.token_secret.as_deref())?;
        Ok(Self { data, clock: public_services::DossierClock::start(config.dossier_pace), config, tokens })
    }

    /// Every family, served by one shared instance.
    pub fn into_set(self) -> AdapterSet {
        let provinces = self.config.provinces.clone();
        let this = Arc::new(self);
        AdapterSet {
            identity: Some(this.clone()),
            healthcare: Some(this.clone()),
            education: Some(this.clone()),
            transport: Some(this.clone()),
            construction: Some(this.clone()),
            public_services: Some(this.clone()),
            demo_issuer: Some(this),
            webhook: None,
            budgets_itself: false,
            provinces,
            health: None,
        }
    }

    fn now(&self) -> SystemTime {
        self.clock.wall_now()
    }
}

/// Builds sandbox instances.
#[derive(Debug, Default)]
pub struct SandboxFactory;

#[async_trait]
impl AdapterFactory for SandboxFactory {
    fn kind(&self) -> &'static str {
        "sandbox"
    }

    fn recognizes_token(&self, token: &str) -> bool {
        is_sandbox_token(token)
    }

    fn description(&self) -> &'static str {
        "embedded Ho Chi Minh City sample data and a sandbox identity provider"
    }

    fn families(&self) -> &'static [Family] {
        &Family::ALL
    }

    fn instance_provinces(&self, options: &serde_json::Value) -> Option<(Vec<String>, String)> {
        let config = SandboxConfig::deserialize(options).ok()?;
        Some((
            config.provinces,
            "the sandbox holds Ho Chi Minh City's data (province 79); to demo with it for another province \
             anyway, list that province in the instance's `provinces`"
                .to_owned(),
        ))
    }

    fn validate(&self, options: &serde_json::Value) -> Vec<String> {
        // Every key at fault, each by its path; then what the rest means.
        lienthong_adapter_core::options::problems(options, |c: SandboxConfig| c.validate())
    }

    async fn build(&self, ctx: BuildContext) -> Result<AdapterSet, AdapterError> {
        let config = SandboxConfig::deserialize(&ctx.options)
            .map_err(|e| AdapterError::new(ErrorKind::InvalidArgument, e.to_string()))?;
        // Loading parses a few megabytes of JSON: keep it off the async workers.
        let sandbox = tokio::task::spawn_blocking(move || Sandbox::new(config))
            .await
            .map_err(|e| AdapterError::new(ErrorKind::Unexpected, format!("loading the sandbox failed: {e}")))??;
        Ok(sandbox.into_set())
    }
}

/// Registers the `sandbox` kind.
pub fn register(registry: &mut AdapterRegistry) {
    registry.register(Arc::new(SandboxFactory));
}
