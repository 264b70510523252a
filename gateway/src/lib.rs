//! Lienthong: the gRPC gateway that fronts citizen identity, the city data
//! warehouse and the public-service registry for Digital Citizen apps.
//!
//! A request travels: route to a province → validate → authenticate the
//! citizen where needed → adapter → shape the answer for the caller. See
//! DESIGN.md for the whole path and what later layers add.

#![forbid(unsafe_code)]

pub mod admin;
pub mod apps;
pub mod audit;
pub mod breaker;
pub mod bulkhead;
pub mod cache;
pub mod config;
pub mod crypto;
pub mod edge;
pub mod except_paths;
pub mod gateway;
pub mod guard;
pub mod limits;
pub mod ops;
pub mod page_tokens;
pub mod retry;
pub mod server;
pub mod services;
pub mod status;
pub mod telemetry;
pub mod validate;
pub mod webhooks;

#[cfg(test)]
mod fuzz_tests;

pub use config::Config;
pub use server::serve;
