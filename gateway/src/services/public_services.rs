//! `lienthong.v1.PublicServicesService`: agencies, procedures, and dossiers
//! shown to each caller in the view they are entitled to.

use std::pin::Pin;
use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use lienthong_adapter_core::{CitizenId, Method, OwnedDossier, Principal, api};
use lienthong_proto::v1::public_services_service_server::PublicServicesService;
use tonic::{Request, Response, Status};

use super::fresh;
use crate::call::Call;
use crate::call::metadata::Answer;
use crate::errors::Violations;
use crate::gateway::Gateway;
use crate::services::validate::{self, CodeKind};

/// Serves the public-service registry.
#[derive(Debug, Clone)]
pub struct PublicServicesApi(pub Arc<Gateway>);

/// A dossier as the cache holds it: the record and its owner. The view each
/// caller gets is decided after the cache, per call.
#[derive(Clone, PartialEq, prost::Message)]
#[prost(skip_debug)]
struct CachedDossier {
    #[prost(message, optional, tag = "1")]
    dossier: Option<api::Dossier>,
    #[prost(string, tag = "2")]
    owner: String,
}

impl std::fmt::Debug for CachedDossier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CachedDossier(..)")
    }
}

impl From<OwnedDossier> for CachedDossier {
    fn from(owned: OwnedDossier) -> Self {
        Self { owner: owned.owner.expose().to_owned(), dossier: Some(owned.dossier) }
    }
}

impl CachedDossier {
    /// Back to the adapter's shape.
    fn into_owned(self) -> Result<OwnedDossier, Status> {
        let owner = CitizenId::parse(&self.owner)
            .map_err(|_| Status::internal("a cached dossier has no valid owner; this is a bug"))?;
        Ok(OwnedDossier { owner, dossier: self.dossier.unwrap_or_default() })
    }
}

/// The owner's view to the owner, the public status view to anyone else.
fn view_for(owned: OwnedDossier, principal: Option<&Principal>) -> api::Dossier {
    let mut d = owned.dossier;
    if principal.is_some_and(|p| p.citizen_id == owned.owner) {
        d.view = api::DossierView::Owner as i32;
        if let Some(applicant) = d.applicant.as_mut() {
            applicant.masked_id_number = owned.owner.masked();
        }
    } else {
        d.view = api::DossierView::Public as i32;
        d.applicant = None;
    }
    d
}

fn with_view_reason<T>(response: &mut Response<T>, reason: Option<String>) {
    if let Some(value) = reason.and_then(|r| tonic::metadata::MetadataValue::try_from(r).ok()) {
        response.metadata_mut().insert(super::VIEW_REASON_HEADER, value);
    }
}

fn dossier_code(code: &str) -> Result<(), Status> {
    let mut v = Violations::new();
    validate::code(&mut v, "dossier_code", code, CodeKind::Dossier);
    v.into_result()
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<api::WatchDossierResponse, Status>> + Send>>;

#[tonic::async_trait]
impl PublicServicesService for PublicServicesApi {
    async fn list_agencies(
        &self,
        request: Request<api::ListAgenciesRequest>,
    ) -> Result<Response<api::ListAgenciesResponse>, Status> {
        let call = Call::begin(&self.0, &request, Method::ListAgencies).await?;
        let mut req = request.into_inner();
        let mut v = Violations::new();
        validate::page(&mut v, req.page_size, &req.page_token);
        validate::enum_value::<api::AdministrativeLevel>(&mut v, "level", req.level);
        validate::ward(&mut v, "ward_code", &req.ward_code, &call.ctx.province);
        validate::text(&mut v, "text", &req.text);
        v.into_result()?;
        let paging = call.paging(&mut req)?;
        let a = call.public_services()?;
        call.answer_page(a, req, |adapter, ctx, req| async move { adapter.list_agencies(&ctx, req).await }, paging)
            .await
    }

    async fn get_agency(
        &self,
        request: Request<api::GetAgencyRequest>,
    ) -> Result<Response<api::GetAgencyResponse>, Status> {
        let call = Call::begin(&self.0, &request, Method::GetAgency).await?;
        let req = request.into_inner();
        let mut v = Violations::new();
        validate::code(&mut v, "agency_code", &req.agency_code, CodeKind::Agency);
        v.into_result()?;
        let a = call.public_services()?;
        call.answer(
            a,
            req,
            |adapter, ctx, req| async move { adapter.get_agency(&ctx, req).await },
            |agency| api::GetAgencyResponse { agency: Some(agency) },
        )
        .await
    }

    async fn list_procedures(
        &self,
        request: Request<api::ListProceduresRequest>,
    ) -> Result<Response<api::ListProceduresResponse>, Status> {
        let call = Call::begin(&self.0, &request, Method::ListProcedures).await?;
        let mut req = request.into_inner();
        let mut v = Violations::new();
        validate::page(&mut v, req.page_size, &req.page_token);
        validate::text(&mut v, "text", &req.text);
        validate::text(&mut v, "field", &req.field);
        validate::optional_code(&mut v, "agency_code", &req.agency_code, CodeKind::Agency);
        validate::enum_value::<api::AdministrativeLevel>(&mut v, "level", req.level);
        validate::enum_value::<api::OnlineLevel>(&mut v, "online_level", req.online_level);
        v.into_result()?;
        let paging = call.paging(&mut req)?;
        let a = call.public_services()?;
        call.answer_page(a, req, |adapter, ctx, req| async move { adapter.list_procedures(&ctx, req).await }, paging)
            .await
    }

    async fn get_procedure(
        &self,
        request: Request<api::GetProcedureRequest>,
    ) -> Result<Response<api::GetProcedureResponse>, Status> {
        let call = Call::begin(&self.0, &request, Method::GetProcedure).await?;
        let req = request.into_inner();
        let mut v = Violations::new();
        validate::code(&mut v, "procedure_code", &req.procedure_code, CodeKind::Procedure);
        v.into_result()?;
        let a = call.public_services()?;
        call.answer(
            a,
            req,
            |adapter, ctx, req| async move { adapter.get_procedure(&ctx, req).await },
            |procedure| api::GetProcedureResponse { procedure: Some(procedure) },
        )
        .await
    }

    async fn get_dossier(
        &self,
        request: Request<api::GetDossierRequest>,
    ) -> Result<Response<api::GetDossierResponse>, Status> {
        let mut call = Call::begin(&self.0, &request, Method::GetDossier).await?;
        dossier_code(&request.get_ref().dossier_code)?;
        let principal = call.authenticate(request.metadata(), false).await?;
        let a = call.public_services()?;
        let req = request.into_inner();
        // Cached by dossier code alone: the record is the same for everyone;
        // what each caller sees of it is decided here, per call.
        let mender = call.mender(a);
        let answer = call
            .fetch(a, req, move |adapter, ctx, req| {
                let mender = mender.clone();
                async move {
                    let mut owned = adapter.get_dossier(&ctx, req).await?;
                    owned.dossier = mender.compose(owned.dossier, "lienthong.v1.Dossier");
                    Ok(CachedDossier::from(owned))
                }
            })
            .await?;
        let Answer { value, freshness } = answer;
        let owned = value.into_owned()?;
        let reason = call.public_view_reason(&owned.owner);
        let dossier = view_for(owned, principal.as_ref());
        if dossier.view == api::DossierView::Owner as i32 {
            // The owner's view carries personal fields: recorded before it leaves.
            call.audit(vec![dossier.dossier_code.clone()], tonic::Code::Ok).await?;
        }
        let mut response =
            Answer { value: api::GetDossierResponse { dossier: Some(dossier) }, freshness }.into_response();
        with_view_reason(&mut response, reason);
        Ok(response)
    }

    async fn list_my_dossiers(
        &self,
        request: Request<api::ListMyDossiersRequest>,
    ) -> Result<Response<api::ListMyDossiersResponse>, Status> {
        let mut call = Call::begin(&self.0, &request, Method::ListMyDossiers).await?;
        {
            let req = request.get_ref();
            let mut v = Violations::new();
            validate::page(&mut v, req.page_size, &req.page_token);
            validate::enum_value::<api::DossierStatus>(&mut v, "status", req.status);
            v.into_result()?;
        }
        let principal = call
            .authenticate(request.metadata(), true)
            .await?
            .ok_or_else(|| Status::unauthenticated("this call needs the citizen's VNeID token"))?;
        let a = call.public_services()?;
        let mut req = request.into_inner();
        // Its page tokens are the citizen's alone.
        let paging = call.paging(&mut req)?;
        // Cached under the citizen's pseudonym: only ever their own. Mended
        // and sealed once, when fetched.
        let mender = call.mender(a);
        let answer = call
            .fetch(a, req, move |adapter, ctx, req| {
                let (mender, paging) = (mender.clone(), paging.clone());
                async move {
                    let page = adapter.list_my_dossiers(&ctx, req).await?;
                    Ok(mender.page(&paging, mender.compose(page, "lienthong.v1.ListMyDossiersResponse")))
                }
            })
            .await?;
        let codes = answer.value.dossiers.iter().map(|d| d.dossier_code.clone()).collect();
        // Recorded before the answer leaves.
        call.audit(codes, tonic::Code::Ok).await?;
        // Whatever number the adapter put there, the app gets the owner's
        // masked number: an app never receives a full ID number here.
        let masked = principal.citizen_id.masked();
        Ok(answer
            .map(|mut resp| {
                for d in &mut resp.dossiers {
                    d.view = api::DossierView::Owner as i32;
                    if let Some(applicant) = d.applicant.as_mut() {
                        applicant.masked_id_number.clone_from(&masked);
                    }
                }
                resp
            })
            .into_response())
    }

    type WatchDossierStream = WatchStream;

    async fn watch_dossier(
        &self,
        request: Request<api::WatchDossierRequest>,
    ) -> Result<Response<Self::WatchDossierStream>, Status> {
        let mut call = Call::begin(&self.0, &request, Method::WatchDossier).await?;
        dossier_code(&request.get_ref().dossier_code)?;
        let principal = call.authenticate(request.metadata(), false).await?;
        let a = call.public_services()?;
        let req = request.into_inner();
        let mut updates = call.guarded(a, || a.adapter.watch_dossier(&call.ctx, req.clone())).await?;
        // The first update (the current status) names the owner, so the
        // answer's metadata can tell a signed-in owner below the level why
        // they get the public view.
        let mut shutdown = self.0.shutdown_signal();
        let first = tokio::select! {
            first = tokio::time::timeout_at(call.deadline(), updates.next()) => first.map_err(|_| {
                Status::deadline_exceeded("the dossier's current status did not arrive before the deadline")
            })?,
            _ = shutdown.wait_for(|draining| *draining) => {
                return Err(Status::unavailable("the gateway is shutting down; watch again to reach another replica"));
            }
        };
        let reason = match &first {
            Some(Ok(owned)) => call.public_view_reason(&owned.owner),
            _ => None,
        };
        let updates = futures_util::stream::iter(first).chain(updates).boxed();
        let (method, kind) = (call.method(), a.kind.clone());
        let auditor = principal.as_ref().map(|_| call.auditor()).transpose()?;
        let shutdown = self.0.shutdown_signal();
        // Ends with the dossier's final status, or early, with UNAVAILABLE, when
        // the gateway drains: the caller then watches again elsewhere.
        let stream = futures_util::stream::unfold(Some(updates), move |state| {
            let principal = principal.clone();
            let kind = kind.clone();
            let auditor = auditor.clone();
            let mut shutdown = shutdown.clone();
            async move {
                let mut updates = state?;
                if *shutdown.borrow() {
                    return Some((
                        Err(Status::unavailable("the gateway is shutting down; watch again to resume")),
                        None,
                    ));
                }
                let next = tokio::select! {
                    next = updates.next() => next?,
                    _ = shutdown.wait_for(|draining| *draining) => {
                        return Some((Err(Status::unavailable("the gateway is shutting down; watch again to resume")), None));
                    }
                };
                match next {
                    Ok(owned) => {
                        let dossier = view_for(owned, principal.as_ref());
                        // Each update in the owner's view carries personal
                        // fields: recorded before it leaves.
                        if let (Some(auditor), true) = (&auditor, dossier.view == api::DossierView::Owner as i32)
                            && let Err(refused) =
                                auditor.record(vec![dossier.dossier_code.clone()], tonic::Code::Ok).await
                        {
                            return Some((Err(refused), None));
                        }
                        Some((Ok(api::WatchDossierResponse { dossier: Some(dossier) }), Some(updates)))
                    }
                    Err(e) => Some((Err(crate::errors::from_adapter(e, method, &kind)), None)),
                }
            }
        });
        let mut response = fresh(Box::pin(stream) as WatchStream);
        with_view_reason(&mut response, reason);
        Ok(response)
    }
}
