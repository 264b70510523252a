//! The routing table: each province's adapter instance of each family,
//! with its guard.

use std::sync::Arc;

use lienthong_adapter_core::{
    ConstructionAdapter, DemoIdentityIssuer, EducationAdapter, Family, HealthcareAdapter, IdentityAdapter,
    PublicServicesAdapter, TransportAdapter,
};

use crate::policy::guard::UpstreamGuard;

/// An adapter routed for one (province, family), with its instance's name and
/// kind for logs and errors.
#[derive(Debug, Clone)]
pub struct Routed<T: ?Sized> {
    /// The adapter.
    pub adapter: Arc<T>,
    /// The instance's name in config.
    pub instance: String,
    /// The instance's kind.
    pub kind: String,
    /// The instance's guard (budget, breaker, bulkhead, retries).
    pub guard: Arc<UpstreamGuard>,
}

/// The adapters serving one province.
#[derive(Debug, Default)]
pub struct ProvinceAdapters {
    /// The 2-digit code.
    pub code: String,
    pub(crate) identity: Option<Routed<dyn IdentityAdapter>>,
    pub(crate) healthcare: Option<Routed<dyn HealthcareAdapter>>,
    pub(crate) education: Option<Routed<dyn EducationAdapter>>,
    pub(crate) transport: Option<Routed<dyn TransportAdapter>>,
    pub(crate) construction: Option<Routed<dyn ConstructionAdapter>>,
    pub(crate) public_services: Option<Routed<dyn PublicServicesAdapter>>,
    pub(crate) demo_issuer: Option<Arc<dyn DemoIdentityIssuer>>,
}

impl ProvinceAdapters {
    /// The instance serving `family`, if any: its name, kind and guard.
    pub(crate) fn route_of(&self, family: Family) -> Option<(&str, &str, &Arc<UpstreamGuard>)> {
        fn parts<T: ?Sized>(r: &Option<Routed<T>>) -> Option<(&str, &str, &Arc<UpstreamGuard>)> {
            r.as_ref().map(|r| (r.instance.as_str(), r.kind.as_str(), &r.guard))
        }
        match family {
            Family::Identity => parts(&self.identity),
            Family::Healthcare => parts(&self.healthcare),
            Family::Education => parts(&self.education),
            Family::Transport => parts(&self.transport),
            Family::Construction => parts(&self.construction),
            Family::PublicServices => parts(&self.public_services),
        }
    }
}

pub(crate) fn routed<T: ?Sized>(
    adapter: &Option<Arc<T>>,
    instance: &str,
    kind: &str,
    guard: &Arc<UpstreamGuard>,
) -> Option<Routed<T>> {
    adapter.as_ref().map(|a| Routed {
        adapter: a.clone(),
        instance: instance.to_owned(),
        kind: kind.to_owned(),
        guard: guard.clone(),
    })
}
