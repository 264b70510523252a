//! Fake upstreams that speak real HTTP on 127.0.0.1, for the contract suite
//! and the adapters' tests. Each can inject faults on demand ([`Faults`]).

mod faults;
pub mod oidc;
pub mod registry;
pub mod warehouse;

pub use faults::{Fault, Faults};
pub use oidc::FakeOidc;
pub use registry::FakePortal;
pub use warehouse::FakeWarehouse;

use std::net::SocketAddr;

/// Serves `router` on an ephemeral loopback port until the task is dropped.
pub async fn serve(router: axum::Router) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            eprintln!("fake upstream stopped: {e}");
        }
    });
    Ok((addr, task))
}
