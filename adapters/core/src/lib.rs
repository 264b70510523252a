//! The Lienthong adapter SPI.
//!
//! An adapter connects the gateway to one upstream system. It implements one
//! trait per *family* it serves ([`IdentityAdapter`], [`HealthcareAdapter`],
//! [`EducationAdapter`], [`TransportAdapter`], [`ConstructionAdapter`],
//! [`PublicServicesAdapter`]); every trait is object-safe and used as
//! `Arc<dyn …>`. Each says what it supports through [`Capabilities`]; a method
//! it does not support returns [`AdapterError::unsupported`] (UNIMPLEMENTED to
//! callers) and the contract suite skips its cases.
//!
//! The gateway validates every request before an adapter sees it (page sizes,
//! code formats, coordinates, ward codes), authenticates the citizen, and
//! decides what the caller may see; adapters fetch and shape data.
//!
//! Adapters are registered explicitly: each adapter crate exports a
//! `register(&mut AdapterRegistry)` function, and config names the kind.

#![forbid(unsafe_code)]

pub mod admin;
mod capabilities;
mod citizen;
mod error;
mod families;
pub mod geo;
pub mod nfc;
pub mod options;
pub mod paging;
mod registry;
pub mod shared;
pub mod telemetry;
pub mod text;
pub mod tls;

pub use capabilities::{Capabilities, Family, Freshness, Method, MethodFacts};
pub use citizen::{BearerToken, CitizenId, Principal};
pub use error::{AdapterError, ErrorKind};
pub use families::{
    AdapterSet, CallContext, ConstructionAdapter, DemoCitizen, DemoIdentityIssuer, DossierStream, EducationAdapter,
    HealthProbe, HealthcareAdapter, IdentityAdapter, IssuedToken, OwnedDossier, PublicServicesAdapter,
    TransportAdapter, WebhookReceiver, is_final_status,
};
pub use registry::{AdapterFactory, AdapterRegistry, BuildContext, UnknownAdapterKind, Unlimited, UpstreamBudget};
pub use shared::{Alone, Claim, Delivery, Shared};

/// The generated public API types adapters read and return.
pub use lienthong_proto::v1 as api;
