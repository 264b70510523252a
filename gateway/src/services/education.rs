//! `lienthong.v1.EducationService`.

use std::sync::Arc;

use lienthong_adapter_core::{Method, api};
use lienthong_proto::v1::education_service_server::EducationService;
use tonic::{Request, Response, Status};

use crate::call::Call;
use crate::errors::Violations;
use crate::gateway::Gateway;
use crate::services::validate::{self, CodeKind};

/// Serves schools.
#[derive(Debug, Clone)]
pub struct EducationApi(pub Arc<Gateway>);

#[tonic::async_trait]
impl EducationService for EducationApi {
    async fn list_schools(
        &self,
        request: Request<api::ListSchoolsRequest>,
    ) -> Result<Response<api::ListSchoolsResponse>, Status> {
        let call = Call::begin(&self.0, &request, Method::ListSchools).await?;
        let mut req = request.into_inner();
        let mut v = Violations::new();
        validate::page(&mut v, req.page_size, &req.page_token);
        validate::enum_value::<api::SchoolLevel>(&mut v, "level", req.level);
        validate::enum_value::<api::Ownership>(&mut v, "ownership", req.ownership);
        validate::ward(&mut v, "ward_code", &req.ward_code, &call.ctx.province);
        validate::text(&mut v, "text", &req.text);
        validate::near(&mut v, "near", req.near.as_ref(), false);
        v.into_result()?;
        let paging = call.paging(&mut req)?;
        let a = call.education()?;
        call.answer_page(a, req, |adapter, ctx, req| async move { adapter.list_schools(&ctx, req).await }, paging).await
    }

    async fn get_school(
        &self,
        request: Request<api::GetSchoolRequest>,
    ) -> Result<Response<api::GetSchoolResponse>, Status> {
        let call = Call::begin(&self.0, &request, Method::GetSchool).await?;
        let req = request.into_inner();
        let mut v = Violations::new();
        validate::code(&mut v, "school_id", &req.school_id, CodeKind::RecordId);
        v.into_result()?;
        let a = call.education()?;
        call.answer(
            a,
            req,
            |adapter, ctx, req| async move { adapter.get_school(&ctx, req).await },
            |school| api::GetSchoolResponse { school: Some(school) },
        )
        .await
    }
}
