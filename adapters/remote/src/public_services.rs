//! Agencies, procedures and dossiers, forwarded to the adapter service.

use async_trait::async_trait;
use futures_util::StreamExt;
use lienthong_adapter_core::{
    AdapterError, CallContext, Capabilities, DossierStream, OwnedDossier, PublicServicesAdapter, api,
};
use lienthong_proto::adapter::v1 as proto;

use crate::core::{RemoteAdapter, forwarding_impl, owned, trace_context};
use crate::error::status_to_error;

forwarding_impl!(PublicServicesAdapter {
    list_agencies(api::ListAgenciesRequest) -> api::ListAgenciesResponse;
    get_agency(api::GetAgencyRequest) -> api::Agency;
    list_procedures(api::ListProceduresRequest) -> api::ListProceduresResponse;
    get_procedure(api::GetProcedureRequest) -> api::Procedure;
}
    async fn get_dossier(&self, ctx: &CallContext, req: api::GetDossierRequest) -> Result<OwnedDossier, AdapterError> {
        let mut client = self.client.clone();
        owned(client.get_dossier(self.request(ctx, req)?).await.map_err(|s| status_to_error(&s))?.into_inner())
    }

    async fn list_my_dossiers(&self, ctx: &CallContext, req: api::ListMyDossiersRequest) -> Result<api::ListMyDossiersResponse, AdapterError> {
        let principal = ctx.require_principal()?;
        let message = proto::ListMyDossiersRequest {
            token: principal.token.expose().to_owned(),
            id_number: principal.citizen_id.expose().to_owned(),
            request: Some(req),
        };
        let mut client = self.client.clone();
        client.list_my_dossiers(self.request(ctx, message)?).await.map(tonic::Response::into_inner).map_err(|s| status_to_error(&s))
    }

    async fn watch_dossier(&self, ctx: &CallContext, req: api::WatchDossierRequest) -> Result<DossierStream, AdapterError> {
        let mut client = self.client.clone();
        // A watch lasts as long as the dossier stays open: no call timeout.
        let mut request = tonic::Request::new(req);
        if let Ok(p) = ctx.province.parse() {
            request.metadata_mut().insert("x-lienthong-province", p);
        }
        trace_context(request.metadata_mut());
        let stream = client.watch_dossier(request).await.map_err(|s| status_to_error(&s))?.into_inner();
        Ok(Box::pin(stream.map(|item| item.map_err(|s| status_to_error(&s)).and_then(owned))))
    }
);
