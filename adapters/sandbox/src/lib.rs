//! The embedded sandbox: a Ho Chi Minh City sample dataset behind every
//! family, and a sandbox identity provider for fictional demo citizens.
//!
//! The data comes from genuine public sources where they exist (2025 wards,
//! the city's bus network and traffic cameras, the national procedure
//! catalogue) and from plausible hand-written records where they do not; see
//! `data/PROVENANCE.md`. Demo dossiers advance through their statuses at a
//! configurable pace, so `WatchDossier` shows live changes.

#![forbid(unsafe_code)]

mod calendar;
mod construction;
mod dataset;
mod education;
mod healthcare;
mod identity;
mod listing;
mod public_services;
mod records;
mod transport;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use lienthong_adapter_core::{
    AdapterError, AdapterFactory, AdapterRegistry, AdapterSet, BuildContext, ErrorKind, Family,
};
use serde::Deserialize;

pub use identity::{SANDBOX_ISSUER, is_sandbox_token};

/// The sandbox's options in config (`[adapters.<name>]` with `kind = "sandbox"`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxConfig {
    /// Load the data files from this directory instead of the embedded copy.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// How often a demo dossier that is still open moves to its next status.
    #[serde(default = "default_pace", with = "humantime_serde")]
    pub dossier_pace: Duration,
    /// How long sandbox tokens stay valid.
    #[serde(default = "default_token_ttl", with = "humantime_serde")]
    pub token_ttl: Duration,
    /// The HMAC key that signs sandbox tokens, at least 32 bytes. Set it when
    /// several replicas must accept each other's tokens; by default every start
    /// draws a random key.
    #[serde(default)]
    pub token_secret: Option<String>,
    /// The snapshot URL of a traffic camera; `{camera_id}` and `{portal_id}`
    /// are replaced. The default points nowhere real: the sandbox does not
    /// hot-link the city's live portal.
    #[serde(default = "default_snapshot_url")]
    pub camera_snapshot_url: String,
}

fn default_pace() -> Duration {
    Duration::from_secs(30)
}

fn default_token_ttl() -> Duration {
    Duration::from_secs(3600)
}

fn default_snapshot_url() -> String {
    "https://sandbox.lienthong.invalid/cameras/{camera_id}.jpg".to_owned()
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            data_dir: None,
            dossier_pace: default_pace(),
            token_ttl: default_token_ttl(),
            token_secret: None,
            camera_snapshot_url: default_snapshot_url(),
        }
    }
}

impl fmt::Debug for SandboxConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxConfig")
            .field("data_dir", &self.data_dir)
            .field("dossier_pace", &self.dossier_pace)
            .field("token_ttl", &self.token_ttl)
            .field("token_secret", &self.token_secret.as_ref().map(|_| "<redacted>"))
            .field("camera_snapshot_url", &self.camera_snapshot_url)
            .finish()
    }
}

impl SandboxConfig {
    /// Checks the options without I/O; returns every problem.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.dossier_pace < Duration::from_millis(100) {
            problems.push("dossier_pace: must be at least 100ms".to_owned());
        }
        if !(Duration::from_secs(60)..=Duration::from_secs(86_400)).contains(&self.token_ttl) {
            problems.push("token_ttl: must be between 1m and 24h".to_owned());
        }
        if self.token_secret.as_ref().is_some_and(|s| s.len() < 32) {
            problems.push("token_secret: must be at least 32 bytes".to_owned());
        }
        if !self.camera_snapshot_url.starts_with("https://") && !self.camera_snapshot_url.starts_with("http://") {
            problems.push("camera_snapshot_url: must be an http(s) URL".to_owned());
        }
        problems
    }
}

/// The sandbox adapter: serves every family from the dataset.
pub struct Sandbox {
    data: dataset::Dataset,
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
        let data = dataset::Dataset::load(config.data_dir.as_deref()).map_err(|p| {
            AdapterError::new(ErrorKind::Unexpected, format!("the sandbox dataset is invalid:\n  {}", p.0.join("\n  ")))
        })?;
        let tokens = identity::TokenKeys::new(config.token_secret.as_deref())?;
        Ok(Self { data, clock: public_services::DossierClock::start(config.dossier_pace), config, tokens })
    }

    /// Every family, served by one shared instance.
    pub fn into_set(self) -> AdapterSet {
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

    fn description(&self) -> &'static str {
        "embedded Ho Chi Minh City sample data and a sandbox identity provider"
    }

    fn families(&self) -> &'static [Family] {
        &Family::ALL
    }

    fn validate(&self, options: &serde_json::Value) -> Vec<String> {
        match SandboxConfig::deserialize(options) {
            Ok(c) => c.validate(),
            Err(e) => vec![e.to_string()],
        }
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
