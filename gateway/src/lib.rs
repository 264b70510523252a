//! Lienthong: the gRPC gateway that fronts citizen identity, the city data
//! warehouse and the public-service registry for Digital Citizen apps.
//!
//! A request travels: route to a province → validate → authenticate the
//! citizen where needed → adapter → shape the answer for the caller. See
//! DESIGN.md for the whole path and what later layers add.

#![forbid(unsafe_code)]

// In the order a call travels (see DESIGN.md):
pub mod call;
pub mod edge;
pub mod errors;
pub mod gateway;
pub mod policy;
pub mod server;
pub mod services;

// Beside the path: what it records, what operators read, and the leaves.
pub mod audit;
pub mod config;
pub mod crypto;
pub mod ops;
pub mod telemetry;

#[cfg(test)]
mod fuzz_tests;

pub use config::Config;
pub use server::serve;
