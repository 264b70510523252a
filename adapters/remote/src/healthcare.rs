//! Health facilities, forwarded to the adapter service.

use async_trait::async_trait;
use lienthong_adapter_core::{AdapterError, CallContext, Capabilities, HealthcareAdapter, api};

use crate::core::{RemoteAdapter, forwarding_impl};

forwarding_impl!(HealthcareAdapter {
    list_facilities(api::ListFacilitiesRequest) -> api::ListFacilitiesResponse;
    get_facility(api::GetFacilityRequest) -> api::Facility;
});
