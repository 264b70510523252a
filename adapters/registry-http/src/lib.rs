//! The public-service portal over REST/JSON: agencies, procedures and
//! dossiers (schema in `core.rs`). Dossier status changes reach
//! `WatchDossier` by signed webhook (`POST /webhooks/<instance>` on the
//! gateway, HMAC-SHA256 over timestamp and body, replays refused), by polling
//! where the portal cannot push, or both.

#![forbid(unsafe_code)]

mod config;
mod core;
mod error;
mod public_services;
mod seen;
mod updates;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use lienthong_adapter_core::paging::PageWindow;
use lienthong_adapter_core::{
    AdapterError, AdapterFactory, AdapterRegistry, AdapterSet, BuildContext, Claim, ErrorKind, Family, Shared,
    WebhookReceiver, api,
};
use serde::Deserialize;

pub use config::{RegistryConfig, UpdateMode, UpdatesConfig};
pub use updates::{SIGNATURE_HEADER, TIMESTAMP_HEADER};

use crate::core::Portal;
use crate::updates::{Changes, Hub, WebhookVerifier};

/// The registry adapter.
pub struct RegistryAdapter {
    portal: Arc<Portal>,
    hub: Arc<Hub>,
    changes: Arc<Changes>,
    verifier: Option<WebhookVerifier>,
    deferred: Arc<updates::DeferredReads>,
    /// The follower of shared states and the poller, stopped on drop.
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl fmt::Debug for RegistryAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryAdapter").field("config", self.portal.config()).finish_non_exhaustive()
    }
}

impl Drop for RegistryAdapter {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl RegistryAdapter {
    /// An adapter for `config`, sharing status changes, webhook deliveries
    /// and the polling lease through `shared`. Starts its tasks (so it must
    /// run inside a Tokio runtime).
    pub fn new(config: RegistryConfig, instance: &str, shared: Arc<dyn Shared>) -> Result<Self, AdapterError> {
        let problems = config.validate();
        if !problems.is_empty() {
            return Err(AdapterError::new(ErrorKind::InvalidArgument, problems.join("; ")));
        }
        let u = config.updates.clone();
        let portal = Arc::new(Portal::new(config)?);
        let hub = Arc::new(Hub::default());
        let replay_file = u.replay_file.clone().unwrap_or_else(|| format!("lienthong-webhooks-{instance}.seen").into());
        let verifier =
            u.webhook_secret.as_deref().map(|s| WebhookVerifier::new(s, u.max_skew, Some(&replay_file))).transpose()?;
        let announced = shared.subscribe("dossiers");
        let changes = Arc::new(Changes { shared, hub: hub.clone(), portal: portal.clone() });
        let mut tasks = vec![
            tokio::spawn(updates::follow(changes.clone(), announced)),
            tokio::spawn(updates::keep_marked(changes.clone())),
        ];
        if matches!(u.mode, UpdateMode::Poll | UpdateMode::Both) {
            tasks.push(tokio::spawn(updates::poll(changes.clone(), u.poll_interval)));
        }
        Ok(Self { portal, hub, changes, verifier, deferred: Arc::default(), tasks })
    }

    fn offset_query(window: &PageWindow) -> Vec<(&'static str, String)> {
        vec![("offset", window.offset.to_string()), ("limit", window.size.to_string())]
    }
}

#[async_trait]
impl WebhookReceiver for RegistryAdapter {
    async fn receive(&self, headers: &BTreeMap<String, String>, body: &[u8]) -> Result<(), AdapterError> {
        let verifier = self
            .verifier
            .as_ref()
            .ok_or_else(|| AdapterError::new(ErrorKind::PermissionDenied, "this adapter does not accept webhooks"))?;
        let delivery = verifier.verify(headers, body)?;
        let push = &delivery.push;
        if api::DossierStatus::try_from(push.status).is_err() || push.status == 0 {
            return Err(AdapterError::new(
                ErrorKind::InvalidArgument,
                "status must be a national dossier status, 1-10",
            ));
        }
        // A delivery is new when no replica has done it (asked in Redis with
        // a cluster, claiming it while this replica acts on it) and this
        // replica's durable record has not either (it also covers the times
        // Redis was away).
        let shared = &self.changes.shared;
        // A replica holds a delivery while it reads the portal (at most its
        // timeout) and records it; if it crashes meanwhile, the portal's
        // retry is applied by another after this.
        let acting = self.portal.config().timeout + std::time::Duration::from_secs(10);
        let claim = shared.claim(&delivery.key, acting).await;
        if claim == Some(Claim::Busy) {
            return Err(AdapterError::new(
                ErrorKind::Unavailable,
                "another replica is applying this delivery now; send it again shortly",
            ));
        }
        let watched = self.changes.is_watched(&push.dossier_code).await;
        if claim == Some(Claim::Done) || verifier.seen.contains(&delivery.key) {
            if claim == Some(Claim::Mine) {
                // Done here before Redis heard of it.
                shared.complete(&delivery.key, verifier.horizon()).await;
            }
            // A replay, or (from a portal that sends no event_id) a second
            // change reported with the same body in the same second: the
            // portal is read again shortly either way (at most four times a
            // second per dossier), harmless when nothing changed, and no
            // change is lost.
            if watched {
                self.deferred.schedule(&push.dossier_code, self.changes.clone());
            }
            tracing::info!(upstream = "registry", "webhook refused: already applied (replay)");
            return Err(AdapterError::new(
                ErrorKind::Unauthenticated,
                "webhook refused: this delivery was already applied (replay); send an event_id to tell changes apart",
            ));
        }
        let applied = async {
            if watched {
                // The push says what changed; the portal says what the
                // dossier is now. A failed read, or other replicas that
                // could not be told, leave the delivery unapplied (503): the
                // portal's retry applies it.
                let d = self.portal.dossier(&push.dossier_code, None).await?;
                self.changes.announce(d).await?;
            }
            verifier.applied(delivery.key.clone(), delivery.at).await
        };
        let outcome = applied.await;
        match &outcome {
            Ok(()) => shared.complete(&delivery.key, verifier.horizon()).await,
            Err(_) => shared.release(&delivery.key).await,
        }
        outcome
    }
}

/// Builds registry adapters.
#[derive(Debug, Default)]
pub struct RegistryFactory;

#[async_trait]
impl AdapterFactory for RegistryFactory {
    fn kind(&self) -> &'static str {
        "registry-http"
    }

    fn description(&self) -> &'static str {
        "the public-service portal over REST/JSON, with webhook or polled status changes"
    }

    fn families(&self) -> &'static [Family] {
        &[Family::PublicServices]
    }

    fn validate(&self, options: &serde_json::Value) -> Vec<String> {
        // Every key at fault, each by its path; then what the rest means.
        lienthong_adapter_core::options::problems(options, |c: RegistryConfig| c.validate())
    }

    async fn build(&self, ctx: BuildContext) -> Result<AdapterSet, AdapterError> {
        let config = RegistryConfig::deserialize(&ctx.options)
            .map_err(|e| AdapterError::new(ErrorKind::InvalidArgument, e.to_string()))?;
        let adapter = Arc::new(RegistryAdapter::new(config, &ctx.instance, ctx.shared)?);
        Ok(AdapterSet { public_services: Some(adapter.clone()), webhook: Some(adapter), ..Default::default() })
    }
}

/// Registers the `registry-http` kind.
pub fn register(registry: &mut AdapterRegistry) {
    registry.register(Arc::new(RegistryFactory));
}
