//! Schools, forwarded to the adapter service.

use async_trait::async_trait;
use lienthong_adapter_core::{AdapterError, CallContext, Capabilities, EducationAdapter, api};

use crate::core::{RemoteAdapter, forwarding_impl};

forwarding_impl!(EducationAdapter {
    list_schools(api::ListSchoolsRequest) -> api::ListSchoolsResponse;
    get_school(api::GetSchoolRequest) -> api::School;
});
