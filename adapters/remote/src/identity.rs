//! Citizen identity from the adapter service.

use async_trait::async_trait;
use lienthong_adapter_core::{
    AdapterError, BearerToken, CallContext, Capabilities, CitizenId, ErrorKind, IdentityAdapter, Principal, api,
};
use lienthong_proto::adapter::v1 as proto;

use crate::core::RemoteAdapter;

#[async_trait]
impl IdentityAdapter for RemoteAdapter {
    fn capabilities(&self) -> Capabilities {
        self.declared()
    }

    async fn authenticate(&self, token: &BearerToken) -> Result<Principal, AdapterError> {
        let ctx = CallContext::anonymous("00");
        let mut client = self.client.clone();
        let req = self.request(&ctx, proto::AuthenticateRequest { token: token.expose().to_owned() })?;
        let r = client.authenticate(req).await.map_err(|s| self.fail(&s))?.into_inner();
        let citizen_id = CitizenId::parse(&r.id_number)
            .map_err(|_| AdapterError::new(ErrorKind::Unavailable, "the adapter service sent a malformed ID number"))?;
        Ok(Principal { citizen_id, identity_level: r.identity_level(), token: token.clone() })
    }

    async fn profile(&self, ctx: &CallContext, principal: &Principal) -> Result<api::CitizenProfile, AdapterError> {
        let mut client = self.client.clone();
        let req = self.request(ctx, proto::GetProfileRequest { token: principal.token.expose().to_owned() })?;
        client.get_profile(req).await.map(tonic::Response::into_inner).map_err(|s| self.fail_for(ctx, &s))
    }
}
