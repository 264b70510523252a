//! `lienthong.v1.IdentityService`.

use std::sync::Arc;

use lienthong_adapter_core::{CitizenId, Method, api};
use lienthong_proto::v1::identity_service_server::IdentityService;
use tonic::{Request, Response, Status};

use crate::call::Call;
use crate::call::metadata::Answer;
use crate::gateway::Gateway;

/// The scope that lets an app see full ID numbers.
pub const FULL_ID_SCOPE: &str = "identity.full_id_number";

/// Serves the signed-in citizen's profile.
#[derive(Debug, Clone)]
pub struct IdentityApi(pub Arc<Gateway>);

#[tonic::async_trait]
impl IdentityService for IdentityApi {
    async fn get_my_profile(
        &self,
        request: Request<api::GetMyProfileRequest>,
    ) -> Result<Response<api::GetMyProfileResponse>, Status> {
        let mut call = Call::begin(&self.0, &request, Method::GetMyProfile).await?;
        let principal =
            call.authenticate(request.metadata(), true).await?.ok_or_else(|| Status::unauthenticated("no citizen"))?;
        let req = request.into_inner();
        if req.include_full_id_number && !call.has_scope(FULL_ID_SCOPE) {
            let denied = Status::permission_denied(format!(
                "include_full_id_number needs the {FULL_ID_SCOPE} scope in this app's registration; leave it false to get the masked number"
            ));
            // A refused attempt at the full number is audited.
            call.audit_refusal(denied.code());
            return Err(denied);
        }
        let a = call.identity()?;
        // Cached per citizen, never stale; the masking below runs on every
        // answer, cached or not.
        let answer = call
            .fetch(a, req, |adapter, ctx, _r| async move {
                let principal = ctx.require_principal()?;
                adapter.profile(&ctx, principal).await
            })
            .await?;
        let freshness = answer.freshness;
        let mut profile = answer.value;
        // What differs per login comes from the token presented, never from
        // the profile another login cached.
        profile.identity_level = principal.identity_level as i32;
        if !req.include_full_id_number {
            // Mask whatever the adapter sent; fall back to the token's subject.
            let masked = CitizenId::parse(&profile.id_number).unwrap_or_else(|_| principal.citizen_id.clone()).masked();
            profile.id_number = masked;
            profile.id_number_masked = true;
        }
        // Recorded before the answer leaves.
        call.audit(vec!["profile".to_owned()], tonic::Code::Ok).await?;
        Ok(Answer { value: api::GetMyProfileResponse { profile: Some(profile) }, freshness }.into_response())
    }
}
