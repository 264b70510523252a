//! `lienthong.v1.HealthcareService`.

use std::sync::Arc;

use lienthong_adapter_core::{Method, api};
use lienthong_proto::v1::healthcare_service_server::HealthcareService;
use tonic::{Request, Response, Status};

use crate::call::Call;
use crate::errors::Violations;
use crate::gateway::Gateway;
use crate::services::validate::{self, CodeKind};

/// Serves health facilities.
#[derive(Debug, Clone)]
pub struct HealthcareApi(pub Arc<Gateway>);

#[tonic::async_trait]
impl HealthcareService for HealthcareApi {
    async fn list_facilities(
        &self,
        request: Request<api::ListFacilitiesRequest>,
    ) -> Result<Response<api::ListFacilitiesResponse>, Status> {
        let call = Call::begin(&self.0, &request, Method::ListFacilities).await?;
        let mut req = request.into_inner();
        let mut v = Violations::new();
        validate::page(&mut v, req.page_size, &req.page_token);
        validate::ward(&mut v, "ward_code", &req.ward_code, &call.ctx.province);
        validate::enum_value::<api::FacilityType>(&mut v, "type", req.r#type);
        validate::text(&mut v, "text", &req.text);
        validate::near(&mut v, "near", req.near.as_ref(), false);
        v.into_result()?;
        let paging = call.paging(&mut req)?;
        let a = call.healthcare()?;
        call.answer_page(a, req, |adapter, ctx, req| async move { adapter.list_facilities(&ctx, req).await }, paging)
            .await
    }

    async fn get_facility(
        &self,
        request: Request<api::GetFacilityRequest>,
    ) -> Result<Response<api::GetFacilityResponse>, Status> {
        let call = Call::begin(&self.0, &request, Method::GetFacility).await?;
        let req = request.into_inner();
        let mut v = Violations::new();
        validate::code(&mut v, "facility_code", &req.facility_code, CodeKind::Facility);
        v.into_result()?;
        let a = call.healthcare()?;
        call.answer(
            a,
            req,
            |adapter, ctx, req| async move { adapter.get_facility(&ctx, req).await },
            |facility| api::GetFacilityResponse { facility: Some(facility) },
        )
        .await
    }
}
