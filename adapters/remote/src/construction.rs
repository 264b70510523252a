//! Housing projects and practicing certificates, forwarded to the adapter service.

use async_trait::async_trait;
use lienthong_adapter_core::{AdapterError, CallContext, Capabilities, ConstructionAdapter, api};

use crate::core::{RemoteAdapter, forwarding_impl};

forwarding_impl!(ConstructionAdapter {
    list_housing_projects(api::ListHousingProjectsRequest) -> api::ListHousingProjectsResponse;
    get_housing_project(api::GetHousingProjectRequest) -> api::HousingProject;
    get_practicing_certificate(api::GetPracticingCertificateRequest) -> api::PracticingCertificate;
});
