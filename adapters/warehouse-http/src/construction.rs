//! Housing projects and practicing certificates from the warehouse's datasets.

use async_trait::async_trait;
use lienthong_adapter_core::{AdapterError, CallContext, Capabilities, ConstructionAdapter, Method, api, paging};

use lienthong_adapter_core::filters_of;
use lienthong_adapter_http::enum_value_name;

use crate::records;
use crate::{ListCall, WarehouseAdapter};

#[async_trait]
impl ConstructionAdapter for WarehouseAdapter {
    fn capabilities(&self) -> Capabilities {
        self.supports(&[("housing_projects", Method::ListHousingProjects, Method::GetHousingProject)])
    }

    async fn list_housing_projects(
        &self,
        ctx: &CallContext,
        req: api::ListHousingProjectsRequest,
    ) -> Result<api::ListHousingProjectsResponse, AdapterError> {
        let call = ListCall {
            dataset: "housing_projects",
            filters: vec![
                ("ward_code", req.ward_code.clone()),
                (
                    "status",
                    enum_value_name(req.status, api::HousingProjectStatus::as_str_name, "HOUSING_PROJECT_STATUS_"),
                ),
                ("investor", req.investor.trim().to_owned()),
                ("text", req.text.trim().to_owned()),
            ],
            near: None,
            page_size: req.page_size,
            page_token: &req.page_token,
            fingerprint: paging::filters_fingerprint(&filters_of!(req)),
            build: records::housing_project,
            matches: records::housing_matches,
            located: None,
        };
        let (projects, next_page_token, total_size) = self.list(ctx, Method::ListHousingProjects, call).await?;
        Ok(api::ListHousingProjectsResponse { projects, next_page_token, total_size })
    }

    async fn get_housing_project(
        &self,
        ctx: &CallContext,
        req: api::GetHousingProjectRequest,
    ) -> Result<api::HousingProject, AdapterError> {
        self.get(ctx, Method::GetHousingProject, "housing_projects", &req.project_id, records::housing_project).await
    }
}
