//! Families, methods and what an adapter supports.

use std::fmt;

/// A family of upstream systems; config routes each (province, family) pair to
/// one adapter instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// Citizen identity (VNeID).
    Identity,
    /// Health facilities.
    Healthcare,
    /// Schools.
    Education,
    /// Buses, stops, arrivals, traffic cameras.
    Transport,
    /// Housing projects and practicing certificates.
    Construction,
    /// Agencies, procedures and dossiers.
    PublicServices,
}

impl Family {
    /// Every family, in a stable order.
    pub const ALL: [Family; 6] =
        [Self::Identity, Self::Healthcare, Self::Education, Self::Transport, Self::Construction, Self::PublicServices];

    /// The family's name in config files (`identity`, `public_services`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::Healthcare => "healthcare",
            Self::Education => "education",
            Self::Transport => "transport",
            Self::Construction => "construction",
            Self::PublicServices => "public_services",
        }
    }

    /// Parses a config name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == name)
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! methods {
    ($( $variant:ident => $family:ident, $service:literal, $rpc:literal; )*) => {
        /// One adapter method; each maps to one public RPC.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum Method { $( #[doc = concat!("`", $service, "/", $rpc, "`")] $variant, )* }

        impl Method {
            /// Every method, in a stable order.
            pub const ALL: &'static [Method] = &[$( Self::$variant, )*];

            /// The family the method belongs to.
            pub fn family(self) -> Family {
                match self { $( Self::$variant => Family::$family, )* }
            }

            /// The RPC's name, for example `ListFacilities`.
            pub fn rpc_name(self) -> &'static str {
                match self { $( Self::$variant => $rpc, )* }
            }

            /// The full gRPC method name, for example
            /// `lienthong.v1.HealthcareService/ListFacilities`.
            pub fn full_name(self) -> &'static str {
                match self { $( Self::$variant => concat!("lienthong.v1.", $service, "/", $rpc), )* }
            }
        }
    };
}

methods! {
    GetMyProfile => Identity, "IdentityService", "GetMyProfile";
    ListFacilities => Healthcare, "HealthcareService", "ListFacilities";
    GetFacility => Healthcare, "HealthcareService", "GetFacility";
    ListSchools => Education, "EducationService", "ListSchools";
    GetSchool => Education, "EducationService", "GetSchool";
    ListBusRoutes => Transport, "TransportService", "ListBusRoutes";
    GetBusRoute => Transport, "TransportService", "GetBusRoute";
    ListNearbyStops => Transport, "TransportService", "ListNearbyStops";
    ListArrivals => Transport, "TransportService", "ListArrivals";
    ListTrafficCameras => Transport, "TransportService", "ListTrafficCameras";
    GetTrafficCamera => Transport, "TransportService", "GetTrafficCamera";
    ListHousingProjects => Construction, "ConstructionService", "ListHousingProjects";
    GetHousingProject => Construction, "ConstructionService", "GetHousingProject";
    GetPracticingCertificate => Construction, "ConstructionService", "GetPracticingCertificate";
    ListAgencies => PublicServices, "PublicServicesService", "ListAgencies";
    GetAgency => PublicServices, "PublicServicesService", "GetAgency";
    ListProcedures => PublicServices, "PublicServicesService", "ListProcedures";
    GetProcedure => PublicServices, "PublicServicesService", "GetProcedure";
    GetDossier => PublicServices, "PublicServicesService", "GetDossier";
    ListMyDossiers => PublicServices, "PublicServicesService", "ListMyDossiers";
    WatchDossier => PublicServices, "PublicServicesService", "WatchDossier";
}

impl Method {
    /// The methods of one family.
    pub fn of_family(family: Family) -> impl Iterator<Item = Method> {
        Self::ALL.iter().copied().filter(move |m| m.family() == family)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.full_name())
    }
}

/// The set of methods an adapter supports.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Capabilities(u64);

impl Capabilities {
    /// Supports nothing.
    pub const fn none() -> Self {
        Self(0)
    }

    /// Supports every method of `family`.
    pub fn family(family: Family) -> Self {
        Method::of_family(family).fold(Self::none(), Self::with)
    }

    /// Adds `method`.
    pub fn with(self, method: Method) -> Self {
        Self(self.0 | (1u64 << method as u8))
    }

    /// Removes `method`.
    pub fn without(self, method: Method) -> Self {
        Self(self.0 & !(1u64 << method as u8))
    }

    /// Whether `method` is supported.
    pub fn supports(self, method: Method) -> bool {
        self.0 & (1u64 << method as u8) != 0
    }

    /// The supported methods.
    pub fn methods(self) -> impl Iterator<Item = Method> {
        Method::ALL.iter().copied().filter(move |m| self.supports(*m))
    }
}

impl fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.methods().map(Method::rpc_name)).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_capabilities_cover_exactly_its_methods() {
        let caps = Capabilities::family(Family::Transport);
        assert!(caps.supports(Method::ListArrivals));
        assert!(!caps.supports(Method::ListFacilities));
        assert_eq!(caps.methods().count(), 6);
        assert!(!caps.without(Method::ListArrivals).supports(Method::ListArrivals));
    }

    #[test]
    fn names_are_full_grpc_paths() {
        assert_eq!(Method::WatchDossier.full_name(), "lienthong.v1.PublicServicesService/WatchDossier");
        assert_eq!(Family::parse("public_services"), Some(Family::PublicServices));
        assert_eq!(Family::parse("nope"), None);
    }
}
