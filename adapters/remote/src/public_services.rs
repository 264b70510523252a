//! Agencies, procedures and dossiers, forwarded to the adapter service.

use async_trait::async_trait;
use futures_util::StreamExt;
use lienthong_adapter_core::{
    AdapterError, CallContext, Capabilities, DossierStream, OwnedDossier, PublicServicesAdapter, api,
};
use lienthong_proto::adapter::v1 as proto;

use crate::core::{RemoteAdapter, forwarding_impl, owned, trace_context};
use crate::error::map_status;

forwarding_impl!(PublicServicesAdapter {
    list_agencies(api::ListAgenciesRequest) -> api::ListAgenciesResponse;
    get_agency(api::GetAgencyRequest) -> api::Agency;
    list_procedures(api::ListProceduresRequest) -> api::ListProceduresResponse;
    get_procedure(api::GetProcedureRequest) -> api::Procedure;
}
    async fn get_dossier(&self, ctx: &CallContext, req: api::GetDossierRequest) -> Result<OwnedDossier, AdapterError> {
        let mut client = self.client.clone();
        owned(client.get_dossier(self.request(ctx, req)?).await.map_err(|s| self.fail_for(ctx, &s))?.into_inner())
    }

    async fn list_my_dossiers(&self, ctx: &CallContext, req: api::ListMyDossiersRequest) -> Result<api::ListMyDossiersResponse, AdapterError> {
        let principal = ctx.require_principal()?;
        let message = proto::ListMyDossiersRequest {
            token: if self.forwards_citizen_token() { principal.token.expose().to_owned() } else { String::new() },
            id_number: principal.citizen_id.expose().to_owned(),
            request: Some(req),
        };
        let mut client = self.client.clone();
        client.list_my_dossiers(self.request(ctx, message)?).await.map(tonic::Response::into_inner).map_err(|s| self.fail_for(ctx, &s))
    }

    async fn watch_dossier(&self, ctx: &CallContext, req: api::WatchDossierRequest) -> Result<DossierStream, AdapterError> {
        let mut client = self.client.clone();
        // A watch lasts as long as the dossier stays open: not the unary
        // timeout, but the caller's deadline when it set one.
        let mut request = tonic::Request::new(req);
        if let Some(deadline) = ctx.deadline {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(AdapterError::new(
                    lienthong_adapter_core::ErrorKind::DeadlineExceeded,
                    "the caller's deadline passed before the adapter was asked",
                ));
            }
            request.set_timeout(left);
        }
        if let Ok(p) = ctx.province.parse() {
            request.metadata_mut().insert("x-lienthong-province", p);
        }
        trace_context(request.metadata_mut());
        let stream = client.watch_dossier(request).await.map_err(|s| self.fail_for(ctx, &s))?.into_inner();
        let instance = self.instance.clone();
        Ok(Box::pin(stream.map(move |item| item.map_err(|s| map_status(&s, &instance)).and_then(owned))))
    }
);
