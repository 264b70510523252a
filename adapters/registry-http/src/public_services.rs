//! The public-services family: agencies, procedures and dossiers from the
//! portal, and WatchDossier fed by webhooks or polling.

use async_trait::async_trait;
use futures_util::stream;
use lienthong_adapter_core::paging::PageWindow;
use lienthong_adapter_core::{
    AdapterError, CallContext, Capabilities, DossierStream, Family, OwnedDossier, PublicServicesAdapter, api,
};
use tokio::sync::broadcast::error::RecvError;

use lienthong_adapter_core::filters_of;
use lienthong_adapter_http::{Upstream, enum_value_name};

use crate::core::{Page, PortalAgency, PortalDossier, PortalProcedure};

use crate::RegistryAdapter;

/// The page window of a list request, bound to its filters.
macro_rules! window {
    ($req:expr) => {
        PageWindow::resolve($req.page_size, &$req.page_token, &filters_of!($req))?
    };
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
        self.changes.watching(&req.dossier_code).await;
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
