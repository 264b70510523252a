//! `lienthong.sandbox.v1.SandboxIdentityService`: demo tokens, served only
//! where a province's identity provider is the sandbox.

use std::sync::Arc;

use lienthong_adapter_core::Method;
use lienthong_proto::sandbox::v1 as sbx;
use lienthong_proto::sandbox::v1::sandbox_identity_service_server::SandboxIdentityService;
use tonic::{Request, Response, Status};

use crate::call::Call;
use crate::errors::Violations;
use crate::gateway::Gateway;

/// Issues demo tokens.
#[derive(Debug, Clone)]
pub struct SandboxIdentityApi(pub Arc<Gateway>);

fn timestamp(t: std::time::SystemTime) -> prost_types::Timestamp {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    prost_types::Timestamp { seconds: d.as_secs() as i64, nanos: d.subsec_nanos() as i32 }
}

#[tonic::async_trait]
impl SandboxIdentityService for SandboxIdentityApi {
    async fn list_demo_citizens(
        &self,
        request: Request<sbx::ListDemoCitizensRequest>,
    ) -> Result<Response<sbx::ListDemoCitizensResponse>, Status> {
        let call = Call::begin(&self.0, &request, Method::GetMyProfile).await?;
        let issuer = call.demo_issuer()?;
        let citizens = issuer
            .demo_citizens()
            .into_iter()
            .map(|c| sbx::DemoCitizen {
                handle: c.handle,
                full_name: c.full_name,
                identity_level: c.identity_level as i32,
                dossier_count: c.dossier_count as i32,
                province_code: call.ctx.province.clone(),
            })
            .collect();
        Ok(Response::new(sbx::ListDemoCitizensResponse { citizens }))
    }

    async fn issue_token(
        &self,
        request: Request<sbx::IssueTokenRequest>,
    ) -> Result<Response<sbx::IssueTokenResponse>, Status> {
        let call = Call::begin(&self.0, &request, Method::GetMyProfile).await?;
        let req = request.into_inner();
        let mut v = Violations::new();
        if req.handle.is_empty() || req.handle.len() > 32 || !req.handle.bytes().all(|b| b.is_ascii_lowercase()) {
            v.add("handle", "is required: a demo citizen's handle from ListDemoCitizens, such as \"lan\"");
        }
        v.into_result()?;
        let issuer = call.demo_issuer()?;
        let issued = issuer
            .issue_token(&req.handle)
            .map_err(|e| crate::errors::from_adapter(e, Method::GetMyProfile, "sandbox"))?;
        Ok(Response::new(sbx::IssueTokenResponse {
            access_token: issued.token.expose().to_owned(),
            expire_time: Some(timestamp(issued.expires_at)),
        }))
    }
}
