//! Fake upstreams that speak real HTTP on 127.0.0.1, for the contract suite
//! and the adapters' tests. Each can inject faults on demand ([`Faults`]).

mod faults;
pub mod oidc;
pub mod portals;
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

/// A certificate and key (PEM files) a fake serves HTTPS with.
#[derive(Debug, Clone)]
pub struct ServerCert {
    /// The certificate chain.
    pub cert_file: std::path::PathBuf,
    /// Its private key.
    pub key_file: std::path::PathBuf,
}

/// Serves `router` over HTTPS (HTTP/1.1 and HTTP/2) with `cert` on
/// `listener` until the task is dropped. A failed handshake closes only its
/// connection.
pub fn serve_tls(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    cert: &ServerCert,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use rustls_pki_types::pem::PemObject as _;
    use tokio_rustls::rustls;
    let invalid = |e: &dyn std::fmt::Display| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string());
    let certs = rustls_pki_types::CertificateDer::pem_file_iter(&cert.cert_file)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| invalid(&e))?;
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(&cert.key_file).map_err(|e| invalid(&e))?;
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(&e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| invalid(&e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    Ok(tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let service = hyper_util::service::TowerToHyperService::new(router.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
                let _ = builder.serve_connection(hyper_util::rt::TokioIo::new(tls), service).await;
            });
        }
    }))
}
