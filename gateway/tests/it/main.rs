//! The gateway's integration tests, in one binary: real gRPC over TCP
//! against the gateway in-process, fakes speaking real HTTP, and the real
//! peers (PostgreSQL, Prometheus, Chromium) that `tools/test` provisions.
//!
//! Three suites keep binaries of their own because each installs the
//! process's global tracing subscriber (which only one per process can):
//! `privacy.rs` (what logs and spans may hold), `status_page.rs` and
//! `telemetry.rs` (OTLP export).

#[path = "../common/mod.rs"]
mod common;

mod apps;
mod audit;
mod citizens;
mod cluster;
mod compose;
mod compression;
mod config;
mod container;
mod dashboard;
mod edge;
mod examples;
mod kubernetes;
mod layout;
mod public_data;
mod registry;
mod replicas;
mod resilience;
mod routing;
mod server;
mod starter;
mod vneid;
