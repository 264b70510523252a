//! Health facilities.

use async_trait::async_trait;
use lienthong_adapter_core::{AdapterError, CallContext, Capabilities, Family, HealthcareAdapter, api};

use crate::Sandbox;
use lienthong_adapter_core::filters_of;

use crate::listing::{ListQuery, list};

#[async_trait]
impl HealthcareAdapter for Sandbox {
    fn capabilities(&self) -> Capabilities {
        Capabilities::family(Family::Healthcare)
    }

    async fn list_facilities(
        &self,
        _: &CallContext,
        req: api::ListFacilitiesRequest,
    ) -> Result<api::ListFacilitiesResponse, AdapterError> {
        let query = ListQuery::new(req.page_size, &req.page_token, &filters_of!(req), &req.text, req.near.as_ref())?;
        let page = list(
            &self.data.facilities,
            &query,
            |f| {
                (req.ward_code.is_empty() || f.address.as_ref().is_some_and(|a| a.ward_code == req.ward_code))
                    && (req.r#type == 0 || f.r#type == req.r#type)
            },
            |f, d| f.distance_meters = Some(d),
        );
        Ok(api::ListFacilitiesResponse {
            facilities: page.items,
            next_page_token: page.next_page_token,
            total_size: page.total_size,
        })
    }

    async fn get_facility(&self, _: &CallContext, req: api::GetFacilityRequest) -> Result<api::Facility, AdapterError> {
        self.data
            .facilities
            .iter()
            .find(|f| f.item.facility_code == req.facility_code)
            .map(|f| f.item.clone())
            .ok_or_else(|| AdapterError::not_found("facility"))
    }
}
