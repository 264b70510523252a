//! A call's way to the province's instance of its family (UNIMPLEMENTED
//! where the province has none).

use std::sync::Arc;

use lienthong_adapter_core::{
    ConstructionAdapter, DemoIdentityIssuer, EducationAdapter, Family, HealthcareAdapter, IdentityAdapter,
    PublicServicesAdapter, TransportAdapter,
};
use tonic::Status;

use crate::call::Call;
use crate::gateway::route::Routed;

macro_rules! family_accessor {
    ($name:ident, $trait:ident, $family:expr) => {
        /// The adapter routed for this family, or UNIMPLEMENTED: where the
        /// province has none, or where this call's method is one of the
        /// family's that the adapter does not declare (adapters are called
        /// only for what their `capabilities()` lists).
        pub fn $name(&self) -> Result<&'g Routed<dyn $trait>, Status> {
            let routed = self.province.$name.as_ref().ok_or_else(|| self.unrouted($family))?;
            if self.method.family() == $family && !routed.adapter.capabilities().supports(self.method) {
                return Err(self.undeclared(&routed.instance));
            }
            Ok(routed)
        }
    };
}

impl<'g> Call<'g> {
    family_accessor!(identity, IdentityAdapter, Family::Identity);
    family_accessor!(healthcare, HealthcareAdapter, Family::Healthcare);
    family_accessor!(education, EducationAdapter, Family::Education);
    family_accessor!(transport, TransportAdapter, Family::Transport);
    family_accessor!(construction, ConstructionAdapter, Family::Construction);
    family_accessor!(public_services, PublicServicesAdapter, Family::PublicServices);

    fn unrouted(&self, family: Family) -> Status {
        Status::unimplemented(format!("province {} has no {family} adapter configured", self.province.code))
    }

    fn undeclared(&self, instance: &str) -> Status {
        Status::unimplemented(format!(
            "province {}'s {} adapter ({instance}) does not offer {}",
            self.province.code,
            self.method.family(),
            self.method.full_name()
        ))
    }

    /// The province's demo token issuer, if its identity provider is a sandbox.
    pub fn demo_issuer(&self) -> Result<&'g Arc<dyn DemoIdentityIssuer>, Status> {
        self.province.demo_issuer.as_ref().ok_or_else(|| {
            Status::failed_precondition(format!(
                "province {} has no sandbox identity provider; demo tokens exist only in sandbox deployments",
                self.province.code
            ))
        })
    }
}
