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

/// How long an RPC's answers stay fresh by default (config may override),
/// in seconds: fresh for `ttl`, then served stale while revalidating for
/// `stale_while_revalidate`, and while the upstream fails for
/// `stale_if_error`; a NOT_FOUND is remembered for `negative_ttl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// Fresh for this long.
    pub ttl: u32,
    /// Then served stale while one call refreshes it.
    pub stale_while_revalidate: u32,
    /// Served stale this long while the upstream fails.
    pub stale_if_error: u32,
    /// A NOT_FOUND remembered this long.
    pub negative_ttl: u32,
}

impl Freshness {
    /// Registers and timetables change daily: minutes fresh, an hour of
    /// stale-if-error.
    pub const REGISTER: Self = Self { ttl: 300, stale_while_revalidate: 60, stale_if_error: 3600, negative_ttl: 60 };
    /// Cameras move: a minute.
    pub const CAMERAS: Self = Self { ttl: 60, stale_while_revalidate: 30, stale_if_error: 600, negative_ttl: 60 };
    /// Arrivals move: seconds.
    pub const ARRIVALS: Self = Self { ttl: 20, stale_while_revalidate: 10, stale_if_error: 60, negative_ttl: 20 };
    /// One dossier: seconds fresh, a short stale-if-error.
    pub const DOSSIER: Self = Self { ttl: 10, stale_while_revalidate: 5, stale_if_error: 120, negative_ttl: 10 };
    /// A citizen's dossiers: seconds fresh, never revalidated stale.
    pub const MY_DOSSIERS: Self = Self { ttl: 15, stale_while_revalidate: 0, stale_if_error: 120, negative_ttl: 0 };
    /// Identity: a minute, never stale.
    pub const IDENTITY: Self = Self { ttl: 60, stale_while_revalidate: 0, stale_if_error: 0, negative_ttl: 0 };
}

/// What the gateway knows about an RPC besides its family: declared once,
/// in the [`Method`] table; config validation, cache keys and policies,
/// admin invalidation and the identity policy read it. (Which accesses are
/// audited, and whether a citizen is required, each handler decides.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodFacts {
    /// The dataset operators invalidate it by (`AdminService/InvalidateCache`).
    pub dataset: &'static str,
    /// Its default freshness; `None`: never cached (streams).
    pub cache: Option<Freshness>,
    /// Its answers are one citizen's personal data: cached per citizen
    /// (under a pseudonym), never shared.
    pub personal: bool,
    /// Its answers are never served stale, whatever config says (identity).
    pub never_stale: bool,
    /// The least identity level it needs by default (1 basic, 2 verified);
    /// `[identity] min_level` may raise or lower it.
    pub min_level: u8,
}

impl MethodFacts {
    /// Public data of `dataset`, cached with `freshness`, open to level 1.
    pub const fn public(dataset: &'static str, freshness: Freshness) -> Self {
        Self { dataset, cache: Some(freshness), personal: false, never_stale: false, min_level: 1 }
    }

    /// One citizen's own data.
    pub const fn personal(mut self) -> Self {
        self.personal = true;
        self
    }

    /// Never served stale.
    pub const fn never_stale(mut self) -> Self {
        self.never_stale = true;
        self
    }

    /// Needs a level-2 (verified) account by default.
    pub const fn verified(mut self) -> Self {
        self.min_level = 2;
        self
    }

    /// Never cached.
    pub const fn uncached(mut self) -> Self {
        self.cache = None;
        self
    }
}

macro_rules! methods {
    ($( $variant:ident => $family:ident, $service:literal, $rpc:literal, $facts:expr; )*) => {
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

            /// What the gateway knows about the RPC.
            pub const fn facts(self) -> MethodFacts {
                match self { $( Self::$variant => $facts, )* }
            }
        }
    };
}

// The one table of RPCs. Adding an RPC: its proto, a line here, its handler,
// and the adapters that serve it.
#[rustfmt::skip]
methods! {
    GetMyProfile => Identity, "IdentityService", "GetMyProfile",
        MethodFacts::public("profiles", Freshness::IDENTITY).personal().never_stale();
    ListFacilities => Healthcare, "HealthcareService", "ListFacilities",
        MethodFacts::public("facilities", Freshness::REGISTER);
    GetFacility => Healthcare, "HealthcareService", "GetFacility",
        MethodFacts::public("facilities", Freshness::REGISTER);
    ListSchools => Education, "EducationService", "ListSchools",
        MethodFacts::public("schools", Freshness::REGISTER);
    GetSchool => Education, "EducationService", "GetSchool",
        MethodFacts::public("schools", Freshness::REGISTER);
    ListBusRoutes => Transport, "TransportService", "ListBusRoutes",
        MethodFacts::public("bus_routes", Freshness::REGISTER);
    GetBusRoute => Transport, "TransportService", "GetBusRoute",
        MethodFacts::public("bus_routes", Freshness::REGISTER);
    ListNearbyStops => Transport, "TransportService", "ListNearbyStops",
        MethodFacts::public("bus_stops", Freshness::REGISTER);
    ListArrivals => Transport, "TransportService", "ListArrivals",
        MethodFacts::public("arrivals", Freshness::ARRIVALS);
    ListTrafficCameras => Transport, "TransportService", "ListTrafficCameras",
        MethodFacts::public("traffic_cameras", Freshness::CAMERAS);
    GetTrafficCamera => Transport, "TransportService", "GetTrafficCamera",
        MethodFacts::public("traffic_cameras", Freshness::CAMERAS);
    ListHousingProjects => Construction, "ConstructionService", "ListHousingProjects",
        MethodFacts::public("housing_projects", Freshness::REGISTER);
    GetHousingProject => Construction, "ConstructionService", "GetHousingProject",
        MethodFacts::public("housing_projects", Freshness::REGISTER);
    GetPracticingCertificate => Construction, "ConstructionService", "GetPracticingCertificate",
        MethodFacts::public("practicing_certificates", Freshness::REGISTER);
    ListAgencies => PublicServices, "PublicServicesService", "ListAgencies",
        MethodFacts::public("agencies", Freshness::REGISTER);
    GetAgency => PublicServices, "PublicServicesService", "GetAgency",
        MethodFacts::public("agencies", Freshness::REGISTER);
    ListProcedures => PublicServices, "PublicServicesService", "ListProcedures",
        MethodFacts::public("procedures", Freshness::REGISTER);
    GetProcedure => PublicServices, "PublicServicesService", "GetProcedure",
        MethodFacts::public("procedures", Freshness::REGISTER);
    // Shared in the cache; its view (owner's or public) is decided per
    // caller after it.
    GetDossier => PublicServices, "PublicServicesService", "GetDossier",
        MethodFacts::public("dossiers", Freshness::DOSSIER).verified();
    ListMyDossiers => PublicServices, "PublicServicesService", "ListMyDossiers",
        MethodFacts::public("dossiers", Freshness::MY_DOSSIERS).personal().verified();
    WatchDossier => PublicServices, "PublicServicesService", "WatchDossier",
        MethodFacts::public("dossiers", Freshness::DOSSIER).uncached().verified();
}

impl Method {
    /// The methods of one family.
    pub fn of_family(family: Family) -> impl Iterator<Item = Method> {
        Self::ALL.iter().copied().filter(move |m| m.family() == family)
    }

    /// The method whose RPC is named `rpc` (`ListFacilities`).
    pub fn from_rpc_name(rpc: &str) -> Option<Method> {
        Self::ALL.iter().copied().find(|m| m.rpc_name() == rpc)
    }

    /// The methods of `dataset`.
    pub fn of_dataset(dataset: &str) -> impl Iterator<Item = Method> + '_ {
        Self::ALL.iter().copied().filter(move |m| m.facts().dataset == dataset)
    }

    /// Every dataset name, in table order, once.
    pub fn datasets() -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Vec::new();
        for m in Self::ALL {
            if !out.contains(&m.facts().dataset) {
                out.push(m.facts().dataset);
            }
        }
        out
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

    /// The set as bits (one per method), to keep in an atomic.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// The set [`Capabilities::bits`] gave.
    pub const fn from_bits(bits: u64) -> Self {
        Self(bits)
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
    fn facts_are_consistent() {
        for m in Method::ALL {
            let f = m.facts();
            // Never-stale answers have no stale window by default.
            if f.never_stale {
                let c = f.cache.unwrap_or(Freshness::IDENTITY);
                assert_eq!((c.stale_while_revalidate, c.stale_if_error), (0, 0), "{m:?}");
            }
            // Personal data needs a citizen, so is never shared in the cache.
            if f.personal {
                assert!(f.cache.is_none_or(|c| c.ttl > 0), "{m:?}");
            }
            assert!((1..=2).contains(&f.min_level), "{m:?}");
            assert_eq!(Method::from_rpc_name(m.rpc_name()), Some(*m));
        }
        assert_eq!(Method::of_dataset("dossiers").count(), 3);
        assert!(Method::datasets().contains(&"profiles"));
        assert!(Method::WatchDossier.facts().cache.is_none());
    }

    #[test]
    fn names_are_full_grpc_paths() {
        assert_eq!(Method::WatchDossier.full_name(), "lienthong.v1.PublicServicesService/WatchDossier");
        assert_eq!(Family::parse("public_services"), Some(Family::PublicServices));
        assert_eq!(Family::parse("nope"), None);
    }
}
