//! Health facilities from the warehouse's datasets.

use async_trait::async_trait;
use lienthong_adapter_core::{AdapterError, CallContext, Capabilities, HealthcareAdapter, Method, api, paging};

use lienthong_adapter_core::filters_of;
use lienthong_adapter_http::enum_value_name;

use crate::records;
use crate::{ListCall, WarehouseAdapter};

#[async_trait]
impl HealthcareAdapter for WarehouseAdapter {
    fn capabilities(&self) -> Capabilities {
        self.supports(&[("facilities", Method::ListFacilities, Method::GetFacility)])
    }

    async fn list_facilities(
        &self,
        ctx: &CallContext,
        req: api::ListFacilitiesRequest,
    ) -> Result<api::ListFacilitiesResponse, AdapterError> {
        let call = ListCall {
            dataset: "facilities",
            filters: vec![
                ("ward_code", req.ward_code.clone()),
                ("type", enum_value_name(req.r#type, api::FacilityType::as_str_name, "FACILITY_TYPE_")),
                ("text", req.text.trim().to_owned()),
            ],
            near: req.near.as_ref(),
            page_size: req.page_size,
            page_token: &req.page_token,
            fingerprint: paging::filters_fingerprint(&filters_of!(req)),
            build: records::facility,
            matches: records::facility_matches,
            located: Some(|f| (f.location, &mut f.distance_meters)),
        };
        let (facilities, next_page_token, total_size) = self.list(ctx, Method::ListFacilities, call).await?;
        Ok(api::ListFacilitiesResponse { facilities, next_page_token, total_size })
    }

    async fn get_facility(
        &self,
        ctx: &CallContext,
        req: api::GetFacilityRequest,
    ) -> Result<api::Facility, AdapterError> {
        self.get(ctx, Method::GetFacility, "facilities", &req.facility_code, records::facility).await
    }
}
