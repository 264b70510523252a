//! Schools.

use async_trait::async_trait;
use lienthong_adapter_core::{AdapterError, CallContext, Capabilities, EducationAdapter, Family, api};

use crate::Sandbox;
use lienthong_adapter_core::filters_of;

use crate::listing::{ListQuery, list};

#[async_trait]
impl EducationAdapter for Sandbox {
    fn capabilities(&self) -> Capabilities {
        Capabilities::family(Family::Education)
    }

    async fn list_schools(
        &self,
        _: &CallContext,
        req: api::ListSchoolsRequest,
    ) -> Result<api::ListSchoolsResponse, AdapterError> {
        let query = ListQuery::new(req.page_size, &req.page_token, &filters_of!(req), &req.text, req.near.as_ref())?;
        let page = list(
            &self.data.schools,
            &query,
            |s| {
                (req.ward_code.is_empty() || s.address.as_ref().is_some_and(|a| a.ward_code == req.ward_code))
                    && (req.level == 0 || s.level == req.level)
                    && (req.ownership == 0 || s.ownership == req.ownership)
            },
            |s, d| s.distance_meters = Some(d),
        );
        Ok(api::ListSchoolsResponse {
            schools: page.items,
            next_page_token: page.next_page_token,
            total_size: page.total_size,
        })
    }

    async fn get_school(&self, _: &CallContext, req: api::GetSchoolRequest) -> Result<api::School, AdapterError> {
        self.data
            .schools
            .iter()
            .find(|s| s.item.school_id == req.school_id)
            .map(|s| s.item.clone())
            .ok_or_else(|| AdapterError::not_found("school"))
    }
}
