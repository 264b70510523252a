//! Lienthong: the gRPC gateway that fronts citizen identity, the city data
//! warehouse and the public-service registry for Digital Citizen apps.
//!
//! A call travels, outermost first (each step names where it lives):
//!
//! ```text
//! server            listeners, TLS, drain; the outer stack as one ServiceBuilder
//!  └ edge           connection limits → gRPC-Web + CORS → admission (message read,
//!    │              framing checked, deadline, a shared slot or shed)
//!    └ telemetry    the call's server span and metrics (telemetry::rpc)
//!      └ services   a thin handler per RPC (services/<family>.rs):
//!        └ call     Call::begin: app identity → method permission → province →
//!          │        app limit (call/mod.rs, gateway/apps.rs); then the handler
//!          │        validates the request (services/validate.rs, which needs
//!          │        the province); the citizen where needed: token → identity
//!          │        level → purpose → citizen limit (call/auth.rs); the
//!          │        family's instance for the province (call/route.rs)
//!          └ Call::answer  the cache (call/fetch.rs, policy/cache.rs) → on a
//!            │             miss only, the instance's guard (policy/guard.rs):
//!            │             upstream budget (left to adapters that budget their
//!            │             own requests, like vneid) → breaker → bulkhead →
//!            │             deadline → retries; failures become a Status in
//!            │             Call::fail (errors::from_adapter)
//!            └ adapter     lienthong-adapter-* (adapters/)
//!        ← the answer is shaped once when fetched (wrapped, page token
//!          sealed) and cached as its wire frame, which edge::encoded writes
//!          as it is on every hit; handlers whose answer differs per caller
//!          (views, masking, audit of personal data) use Call::fetch and
//!          shape it per call; x-lienthong-cache / -age-seconds come from
//!          call/metadata.rs.
//! ```
//!
//! `gateway` is the shared state every call reads (built once from
//! `config`); `ops` is the operators' port, reading the running gateway
//! through `telemetry::view` (the admin API is a service, `services::admin`);
//! `audit`, `telemetry`, `config`, `errors` and `crypto` sit beside the path.
//! The layout test (`tests/it/layout.rs`) keeps every dependency pointing
//! inwards.
//! DESIGN.md (repository root) has the whole design.

#![forbid(unsafe_code)]

// In the order a call travels (one per group, so rustfmt keeps the order).
pub mod server;

pub mod edge;

pub mod services;

pub mod call;

pub mod gateway;

pub mod policy;

// Beside the path: what operators read, what it records, and the leaves.
pub mod ops;

pub mod telemetry;

pub mod audit;

pub mod outbox;

pub mod cluster;

pub mod config;

pub mod errors;

pub mod crypto;

#[cfg(test)]
mod fuzz_tests;

pub use config::Config;
pub use server::serve;
