//! Schools from the warehouse's datasets.

use async_trait::async_trait;
use lienthong_adapter_core::{AdapterError, CallContext, Capabilities, EducationAdapter, Method, api, paging};

use lienthong_adapter_core::filters_of;
use lienthong_adapter_http::enum_value_name;

use crate::records;
use crate::{ListCall, WarehouseAdapter};

#[async_trait]
impl EducationAdapter for WarehouseAdapter {
    fn capabilities(&self) -> Capabilities {
        self.supports(&[("schools", Method::ListSchools, Method::GetSchool)])
    }

    async fn list_schools(
        &self,
        ctx: &CallContext,
        req: api::ListSchoolsRequest,
    ) -> Result<api::ListSchoolsResponse, AdapterError> {
        let call = ListCall {
            dataset: "schools",
            filters: vec![
                ("ward_code", req.ward_code.clone()),
                ("level", enum_value_name(req.level, api::SchoolLevel::as_str_name, "SCHOOL_LEVEL_")),
                ("ownership", enum_value_name(req.ownership, api::Ownership::as_str_name, "OWNERSHIP_")),
                ("text", req.text.trim().to_owned()),
            ],
            near: req.near.as_ref(),
            page_size: req.page_size,
            page_token: &req.page_token,
            fingerprint: paging::filters_fingerprint(&filters_of!(req)),
            build: records::school,
            matches: records::school_matches,
            located: Some(|s| (s.location, &mut s.distance_meters)),
        };
        let (schools, next_page_token, total_size) = self.list(ctx, Method::ListSchools, call).await?;
        Ok(api::ListSchoolsResponse { schools, next_page_token, total_size })
    }

    async fn get_school(&self, ctx: &CallContext, req: api::GetSchoolRequest) -> Result<api::School, AdapterError> {
        self.get(ctx, Method::GetSchool, "schools", &req.school_id, records::school).await
    }
}
