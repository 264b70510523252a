//! `lienthong.v1.ConstructionService`.

use std::sync::Arc;

use lienthong_adapter_core::{Method, api};
use lienthong_proto::v1::construction_service_server::ConstructionService;
use tonic::{Request, Response, Status};

use crate::call::Call;
use crate::errors::Violations;
use crate::gateway::Gateway;
use crate::services::validate::{self, CodeKind};

/// Serves housing projects and practicing certificates.
#[derive(Debug, Clone)]
pub struct ConstructionApi(pub Arc<Gateway>);

#[tonic::async_trait]
impl ConstructionService for ConstructionApi {
    async fn list_housing_projects(
        &self,
        request: Request<api::ListHousingProjectsRequest>,
    ) -> Result<Response<api::ListHousingProjectsResponse>, Status> {
        let call = Call::begin(&self.0, &request, Method::ListHousingProjects).await?;
        let mut req = request.into_inner();
        let mut v = Violations::new();
        validate::page(&mut v, req.page_size, &req.page_token);
        validate::ward(&mut v, "ward_code", &req.ward_code, &call.ctx.province);
        validate::enum_value::<api::HousingProjectStatus>(&mut v, "status", req.status);
        validate::text(&mut v, "investor", &req.investor);
        validate::text(&mut v, "text", &req.text);
        v.into_result()?;
        let paging = call.paging(&mut req)?;
        let a = call.construction()?;
        call.answer_page(
            a,
            req,
            |adapter, ctx, req| async move { adapter.list_housing_projects(&ctx, req).await },
            paging,
        )
        .await
    }

    async fn get_housing_project(
        &self,
        request: Request<api::GetHousingProjectRequest>,
    ) -> Result<Response<api::GetHousingProjectResponse>, Status> {
        let call = Call::begin(&self.0, &request, Method::GetHousingProject).await?;
        let req = request.into_inner();
        let mut v = Violations::new();
        validate::code(&mut v, "project_id", &req.project_id, CodeKind::RecordId);
        v.into_result()?;
        let a = call.construction()?;
        call.answer(
            a,
            req,
            |adapter, ctx, req| async move { adapter.get_housing_project(&ctx, req).await },
            |project| api::GetHousingProjectResponse { project: Some(project) },
        )
        .await
    }

    async fn get_practicing_certificate(
        &self,
        request: Request<api::GetPracticingCertificateRequest>,
    ) -> Result<Response<api::GetPracticingCertificateResponse>, Status> {
        let call = Call::begin(&self.0, &request, Method::GetPracticingCertificate).await?;
        let req = request.into_inner();
        let mut v = Violations::new();
        validate::code(&mut v, "certificate_number", &req.certificate_number, CodeKind::Certificate);
        v.into_result()?;
        let a = call.construction()?;
        let answer = call
            .fetch(a, req, |adapter, ctx, req| async move { adapter.get_practicing_certificate(&ctx, req).await })
            .await?;
        Ok(answer
            .map(|certificate| api::GetPracticingCertificateResponse { certificate: Some(certificate) })
            .into_response())
    }
}
