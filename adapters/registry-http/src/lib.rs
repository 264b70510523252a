//! The public-service portal over REST/JSON: agencies, procedures and
//! dossiers (schema in `portal.rs`). Dossier status changes reach
//! `WatchDossier` by signed webhook (`POST /webhooks/<instance>` on the
//! gateway, HMAC-SHA256 over timestamp and body, replays refused), by polling
//! where the portal cannot push, or both.

#![forbid(unsafe_code)]

mod config;
mod portal;
mod seen;
mod updates;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::stream;
use lienthong_adapter_core::paging::PageWindow;
use lienthong_adapter_core::{
    AdapterError, AdapterFactory, AdapterRegistry, AdapterSet, BuildContext, CallContext, Capabilities, DossierStream,
    ErrorKind, Family, OwnedDossier, PublicServicesAdapter, WebhookReceiver, api,
};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

pub use config::{RegistryConfig, UpdateMode, UpdatesConfig};
pub use updates::{SIGNATURE_HEADER, TIMESTAMP_HEADER};

use lienthong_adapter_core::filters_of;
use lienthong_adapter_http::{Upstream, enum_value_name};

use crate::portal::{Page, Portal, PortalAgency, PortalDossier, PortalProcedure};
use crate::updates::{Hub, WebhookVerifier};

/// The registry adapter.
pub struct RegistryAdapter {
    portal: Arc<Portal>,
    hub: Arc<Hub>,
    verifier: Option<WebhookVerifier>,
    deferred: Arc<updates::DeferredReads>,
    poller: Option<tokio::task::JoinHandle<()>>,
}

impl fmt::Debug for RegistryAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryAdapter").field("config", self.portal.config()).finish_non_exhaustive()
    }
}

impl Drop for RegistryAdapter {
    fn drop(&mut self) {
        if let Some(p) = &self.poller {
            p.abort();
        }
    }
}

/// The page window of a list request, bound to its filters.
macro_rules! window {
    ($req:expr) => {
        PageWindow::resolve($req.page_size, &$req.page_token, &filters_of!($req))?
    };
}

impl RegistryAdapter {
    /// An adapter for `config`. Starts the poller when polling is on (so it
    /// must run inside a Tokio runtime).
    pub fn new(config: RegistryConfig, instance: &str) -> Result<Self, AdapterError> {
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
        let poller = matches!(u.mode, UpdateMode::Poll | UpdateMode::Both)
            .then(|| tokio::spawn(updates::poll(portal.clone(), hub.clone(), u.poll_interval)));
        Ok(Self { portal, hub, verifier, deferred: Arc::default(), poller })
    }

    fn offset_query(window: &PageWindow) -> Vec<(&'static str, String)> {
        vec![("offset", window.offset.to_string()), ("limit", window.size.to_string())]
    }
}

#[async_trait]
impl PublicServicesAdapter for RegistryAdapter {
    fn capabilities(&self) -> Capabilities {
        Capabilities::family(Family::PublicServices)
    }

    async fn list_agencies(
        &self,
        ctx: &CallContext,
        req: api::ListAgenciesRequest,
    ) -> Result<api::ListAgenciesResponse, AdapterError> {
        let window = window!(req);
        let mut query = Self::offset_query(&window);
        query.push((
            "level",
            enum_value_name(req.level, api::AdministrativeLevel::as_str_name, "ADMINISTRATIVE_LEVEL_"),
        ));
        query.push(("ward_code", req.ward_code.clone()));
        query.push(("q", req.text.trim().to_owned()));
        let page: Page<PortalAgency> = self.portal.get("agencies", "/agencies", &query, None, ctx.deadline).await?;
        let n = page.items.len().min(window.size);
        Ok(api::ListAgenciesResponse {
            next_page_token: window.next_token(n, page.total.max(0) as usize),
            total_size: page.total as i32,
            agencies: page.items.into_iter().take(window.size).map(PortalAgency::into_api).collect(),
        })
    }

    async fn get_agency(&self, ctx: &CallContext, req: api::GetAgencyRequest) -> Result<api::Agency, AdapterError> {
        let path = format!("/agencies/{}", Upstream::segment(&req.agency_code));
        let a: PortalAgency = self.portal.get("agency", &path, &[], None, ctx.deadline).await?;
        Ok(a.into_api())
    }

    async fn list_procedures(
        &self,
        ctx: &CallContext,
        req: api::ListProceduresRequest,
    ) -> Result<api::ListProceduresResponse, AdapterError> {
        let window = window!(req);
        let mut query = Self::offset_query(&window);
        query.push(("q", req.text.trim().to_owned()));
        query.push(("field", req.field.clone()));
        query.push(("agency", req.agency_code.clone()));
        query.push((
            "level",
            enum_value_name(req.level, api::AdministrativeLevel::as_str_name, "ADMINISTRATIVE_LEVEL_"),
        ));
        query.push(("online_level", enum_value_name(req.online_level, api::OnlineLevel::as_str_name, "ONLINE_LEVEL_")));
        let page: Page<PortalProcedure> =
            self.portal.get("procedures", "/procedures", &query, None, ctx.deadline).await?;
        let n = page.items.len().min(window.size);
        Ok(api::ListProceduresResponse {
            next_page_token: window.next_token(n, page.total.max(0) as usize),
            total_size: page.total as i32,
            procedures: page.items.into_iter().take(window.size).map(PortalProcedure::into_api).collect(),
        })
    }

    async fn get_procedure(
        &self,
        ctx: &CallContext,
        req: api::GetProcedureRequest,
    ) -> Result<api::Procedure, AdapterError> {
        let path = format!("/procedures/{}", Upstream::segment(&req.procedure_code));
        let p: PortalProcedure = self.portal.get("procedure", &path, &[], None, ctx.deadline).await?;
        Ok(p.into_api())
    }

    async fn get_dossier(&self, ctx: &CallContext, req: api::GetDossierRequest) -> Result<OwnedDossier, AdapterError> {
        self.portal.dossier(&req.dossier_code, ctx.deadline).await
    }

    async fn list_my_dossiers(
        &self,
        ctx: &CallContext,
        req: api::ListMyDossiersRequest,
    ) -> Result<api::ListMyDossiersResponse, AdapterError> {
        let principal = ctx.require_principal()?;
        let window = window!(req);
        let mut query = Self::offset_query(&window);
        if req.status != 0 {
            query.push(("status", req.status.to_string()));
        }
        // The portal identifies the citizen by their own token: no ID number
        // travels in a URL.
        let page: Page<PortalDossier> = self
            .portal
            .get("my dossiers", "/me/dossiers", &query, Some(principal.token.expose()), ctx.deadline)
            .await?;
        let n = page.items.len().min(window.size);
        let mut dossiers = Vec::with_capacity(n);
        for d in page.items.into_iter().take(window.size) {
            let owned = d.into_api()?;
            if owned.owner != principal.citizen_id {
                tracing::error!(upstream = "registry", "the portal listed another citizen's dossier; dropped");
                continue;
            }
            dossiers.push(owned.dossier);
        }
        Ok(api::ListMyDossiersResponse {
            next_page_token: window.next_token(n, page.total.max(0) as usize),
            total_size: page.total as i32,
            dossiers,
        })
    }

    async fn watch_dossier(
        &self,
        ctx: &CallContext,
        req: api::WatchDossierRequest,
    ) -> Result<DossierStream, AdapterError> {
        // Subscribe before reading, so no change between the two is lost.
        let updates = self.hub.subscribe(&req.dossier_code);
        let current = self.portal.dossier(&req.dossier_code, ctx.deadline).await?;
        let portal = self.portal.clone();
        let code = req.dossier_code.clone();
        // State: the receiver, how many changes were sent (`FINISHED` after a
        // final status or an error), and the first message while unsent.
        const FINISHED: usize = usize::MAX;
        let sent_after = |d: &OwnedDossier| if d.dossier.r#final { FINISHED } else { d.dossier.history.len() };
        let stream = stream::unfold((updates, 0usize, Some(current)), move |(mut rx, sent, first)| {
            let portal = portal.clone();
            let code = code.clone();
            async move {
                if let Some(d) = first {
                    let n = sent_after(&d);
                    return Some((Ok(d), (rx, n, None)));
                }
                if sent == FINISHED {
                    return None;
                }
                loop {
                    let next = match rx.recv().await {
                        Ok(d) => d,
                        // Too slow to keep up: read the latest state instead.
                        Err(RecvError::Lagged(_)) => match portal.dossier(&code, None).await {
                            Ok(d) => d,
                            Err(e) => return Some((Err(e), (rx, FINISHED, None))),
                        },
                        Err(RecvError::Closed) => return None,
                    };
                    if next.dossier.history.len() > sent {
                        let n = sent_after(&next);
                        return Some((Ok(next), (rx, n, None)));
                    }
                }
            }
        });
        Ok(Box::pin(stream))
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
        let watched = self.hub.is_watched(&push.dossier_code);
        if verifier.seen.contains(&delivery.key) {
            // A replay, or (from a portal that sends no event_id) a second
            // change reported with the same body in the same second: the
            // portal is read again shortly either way (at most four times a
            // second per dossier), harmless when nothing changed, and no
            // change is lost.
            if watched {
                self.deferred.schedule(&push.dossier_code, self.portal.clone(), self.hub.clone());
            }
            tracing::info!(upstream = "registry", "webhook refused: already applied (replay)");
            return Err(AdapterError::new(
                ErrorKind::Unauthenticated,
                "webhook refused: this delivery was already applied (replay); send an event_id to tell changes apart",
            ));
        }
        if watched {
            // The push says what changed; the portal says what the dossier is
            // now. A failed read leaves the delivery unapplied (503): the
            // portal's retry applies it.
            let d = self.portal.dossier(&push.dossier_code, None).await?;
            self.hub.publish(d);
        }
        verifier.applied(delivery.key, delivery.at).await
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
        match RegistryConfig::deserialize(options) {
            Ok(c) => c.validate(),
            Err(e) => vec![e.to_string()],
        }
    }

    async fn build(&self, ctx: BuildContext) -> Result<AdapterSet, AdapterError> {
        let config = RegistryConfig::deserialize(&ctx.options)
            .map_err(|e| AdapterError::new(ErrorKind::InvalidArgument, e.to_string()))?;
        let adapter = Arc::new(RegistryAdapter::new(config, &ctx.instance)?);
        Ok(AdapterSet { public_services: Some(adapter.clone()), webhook: Some(adapter), ..Default::default() })
    }
}

/// Registers the `registry-http` kind.
pub fn register(registry: &mut AdapterRegistry) {
    registry.register(Arc::new(RegistryFactory));
}
