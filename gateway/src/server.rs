//! Assembles the server: adapters, services, health, reflection, gRPC-Web,
//! and a graceful shutdown bounded by the drain timeout.

use std::future::Future;

use anyhow::Context as _;
use std::sync::Arc;

use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName};
use lienthong_adapter_core::AdapterRegistry;
use lienthong_proto::admin::v1::admin_service_server::AdminServiceServer;
use lienthong_proto::sandbox::v1::sandbox_identity_service_server::SandboxIdentityServiceServer;
use lienthong_proto::v1::construction_service_server::ConstructionServiceServer;
use lienthong_proto::v1::education_service_server::EducationServiceServer;
use lienthong_proto::v1::healthcare_service_server::HealthcareServiceServer;
use lienthong_proto::v1::identity_service_server::IdentityServiceServer;
use lienthong_proto::v1::public_services_service_server::PublicServicesServiceServer;
use lienthong_proto::v1::transport_service_server::TransportServiceServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::server::NamedService;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::Config;
use crate::gateway::{Gateway, PROVINCE_HEADER};
use crate::services::*;

/// The adapter kinds this build ships.
pub fn adapter_registry() -> AdapterRegistry {
    let mut registry = AdapterRegistry::new();
    lienthong_adapter_sandbox::register(&mut registry);
    lienthong_adapter_vneid::register(&mut registry);
    lienthong_adapter_warehouse_http::register(&mut registry);
    lienthong_adapter_registry_http::register(&mut registry);
    lienthong_adapter_remote::register(&mut registry);
    registry
}

/// Every public service name, as health checks and reflection list them.
pub const SERVICE_NAMES: &[&str] = &[
    <IdentityServiceServer<IdentityApi> as NamedService>::NAME,
    <HealthcareServiceServer<HealthcareApi> as NamedService>::NAME,
    <EducationServiceServer<EducationApi> as NamedService>::NAME,
    <TransportServiceServer<TransportApi> as NamedService>::NAME,
    <ConstructionServiceServer<ConstructionApi> as NamedService>::NAME,
    <PublicServicesServiceServer<PublicServicesApi> as NamedService>::NAME,
];

fn cors(config: &Config) -> CorsLayer {
    let origins = &config.server.cors_allowed_origins;
    let allow_origin = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| o.parse().ok()))
    };
    let header = HeaderName::from_static;
    CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([http::Method::POST, http::Method::OPTIONS])
        .allow_headers([
            CONTENT_TYPE,
            AUTHORIZATION,
            header("x-grpc-web"),
            header("x-user-agent"),
            header("grpc-timeout"),
            header(PROVINCE_HEADER),
            header(crate::apps::API_KEY_HEADER),
        ])
        .expose_headers([
            header("grpc-status"),
            header("grpc-message"),
            header("grpc-status-details-bin"),
            header(CACHE_HEADER),
            header(crate::telemetry::rpc::TRACE_ID_HEADER),
        ])
        .max_age(std::time::Duration::from_secs(3600))
}

/// The listener's TLS: its certificate and key, and the CA of apps' client
/// certificates when mutual TLS is on.
fn server_tls(tls: &crate::config::TlsConfig) -> anyhow::Result<ServerTlsConfig> {
    let read = |path: &std::path::Path, what: &str| {
        std::fs::read(path).with_context(|| format!("reading server.tls.{what} ({})", path.display()))
    };
    let identity = Identity::from_pem(read(&tls.cert_file, "cert_file")?, read(&tls.key_file, "key_file")?);
    let mut config = ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &tls.client_ca_file {
        config = config
            .client_ca_root(Certificate::from_pem(read(ca, "client_ca_file")?))
            .client_auth_optional(!tls.client_cert_required);
    }
    Ok(config)
}

/// Serves `config` on `listener` until `signal` completes, then drains:
/// new calls are refused, streams end with UNAVAILABLE, in-flight calls get up
/// to `server.drain_timeout` to finish.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    signal: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_with_registry(config, adapter_registry(), listener, signal).await
}

/// [`serve`] with the adapter kinds of `registry` (a province's own build, or
/// tests). The ops port, when configured, is bound here.
pub async fn serve_with_registry(
    config: Config,
    registry: AdapterRegistry,
    listener: TcpListener,
    signal: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let ops = match config.telemetry.ops_listen {
        Some(addr) => {
            Some(TcpListener::bind(addr).await.with_context(|| format!("binding telemetry.ops_listen ({addr})"))?)
        }
        None => None,
    };
    serve_on(config, registry, Listeners { grpc: listener, ops }, signal).await
}

/// Where the gateway listens: gRPC, and the ops endpoints (metrics,
/// liveness, readiness, status page).
#[derive(Debug)]
pub struct Listeners {
    /// gRPC and gRPC-Web.
    pub grpc: TcpListener,
    /// The ops endpoints; none: not served.
    pub ops: Option<TcpListener>,
}

/// [`serve_with_registry`] on listeners bound by the caller.
pub async fn serve_on(
    config: Config,
    registry: AdapterRegistry,
    listeners: Listeners,
    signal: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    config.validate(&registry)?;
    let Listeners { grpc: listener, ops } = listeners;
    let (draining_tx, draining) = watch::channel(false);
    let metrics = Arc::new(crate::telemetry::metrics::Metrics::new(&config.telemetry)?);
    let gateway = Arc::new(Gateway::build(&config, &registry, metrics.clone(), draining.clone()).await?);
    let shed = crate::shed::ShedLayer::new(config.server.max_concurrent_requests);
    metrics.observe(Arc::downgrade(&gateway), shed.clone());

    let (health, health_service) = tonic_health::server::health_reporter();
    for name in SERVICE_NAMES {
        health.set_service_status(*name, tonic_health::ServingStatus::Serving).await;
    }
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(lienthong_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(lienthong_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let grpc_web = config.server.grpc_web;
    // Requests are small; anything larger is refused before it is decoded,
    // and header blocks are bounded.
    let max_request = config.server.max_request_bytes;
    let mut server = Server::builder().http2_max_header_list_size(config.server.max_header_list_bytes);
    if let Some(tls) = &config.server.tls {
        // TLS 1.2 and 1.3 (rustls); client certificates identify apps.
        server = server.tls_config(server_tls(tls)?)?;
    }
    let mut router = server
        // Shed load beyond the global limit at once, so callers fail fast
        // instead of queueing past their deadlines.
        .layer(shed.clone())
        // gRPC-Web arrives over HTTP/1.1 from browsers.
        .accept_http1(grpc_web)
        // Browsers need CORS, exposing the grpc-* trailers they read as headers.
        .layer(tower::util::option_layer(grpc_web.then(|| cors(&config))))
        // Translate gRPC-Web to gRPC before the services see it (webhooks,
        // plain HTTP/1.1 posts, go around).
        .layer(tower::util::option_layer(
            grpc_web.then(|| crate::except_paths::ExceptPaths::new("/webhooks/", tonic_web::GrpcWebLayer::new())),
        ))
        // Each call's server span and metrics, seeing gRPC trailers.
        .layer(crate::telemetry::rpc::RpcTelemetryLayer::new(metrics.clone()))
        // Upstream pushes (POST /webhooks/<instance>) share the port.
        .add_routes(crate::webhooks::routes(gateway.clone()))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(IdentityServiceServer::new(IdentityApi(gateway.clone())).max_decoding_message_size(max_request))
        .add_service(
            HealthcareServiceServer::new(HealthcareApi(gateway.clone())).max_decoding_message_size(max_request),
        )
        .add_service(EducationServiceServer::new(EducationApi(gateway.clone())).max_decoding_message_size(max_request))
        .add_service(TransportServiceServer::new(TransportApi(gateway.clone())).max_decoding_message_size(max_request))
        .add_service(
            ConstructionServiceServer::new(ConstructionApi(gateway.clone())).max_decoding_message_size(max_request),
        )
        .add_service(
            PublicServicesServiceServer::new(PublicServicesApi(gateway.clone())).max_decoding_message_size(max_request),
        );
    // Operators' API: cache invalidation, adapter instance state (token-gated).
    router = router.add_service(
        AdminServiceServer::new(crate::admin::AdminApi(gateway.clone())).max_decoding_message_size(max_request),
    );
    if gateway.has_demo_issuer() {
        router = router.add_service(
            SandboxIdentityServiceServer::new(SandboxIdentityApi(gateway.clone()))
                .max_decoding_message_size(max_request),
        );
    }

    // Forget idle rate-limit keys now and then, so memory stays bounded.
    let limits = gateway.limits().clone();
    let compaction = tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            every.tick().await;
            limits.compact();
        }
    });
    let addr = listener.local_addr()?;
    let (ops_stop, ops_stopped) = watch::channel(false);
    let ops_task = match ops {
        Some(ops) => {
            let ops_addr = ops.local_addr()?;
            tracing::info!(ops_addr = %ops_addr, "ops endpoints serving: /metrics /livez /readyz /status");
            Some(tokio::spawn(crate::ops::serve(
                ops,
                gateway.clone(),
                metrics.clone(),
                shed.clone(),
                config.telemetry.unready_after_shedding,
                ops_stopped,
            )))
        }
        None => None,
    };
    tracing::info!(%addr, grpc_web, provinces = ?config.provinces.keys().collect::<Vec<_>>(), "lienthong is serving");
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let drain_timeout = config.server.drain_timeout;
    let on_signal = async move {
        signal.await;
        tracing::info!(?drain_timeout, "shutting down: draining in-flight calls");
        for name in SERVICE_NAMES {
            health.set_service_status(*name, tonic_health::ServingStatus::NotServing).await;
        }
        let _ = draining_tx.send(true);
    };
    let server = router.serve_with_incoming_shutdown(incoming, on_signal);
    tokio::pin!(server);
    let mut draining = draining;
    tokio::select! {
        result = &mut server => result?,
        _ = async {
            let _ = draining.wait_for(|d| *d).await;
            tokio::time::sleep(drain_timeout).await;
        } => tracing::warn!("drain timeout reached; stopping with calls still running"),
    }
    compaction.abort();
    let _ = ops_stop.send(true);
    if let Some(task) = ops_task {
        let _ = task.await;
    }
    // Push the last metrics to the collector (blocking), when there is one.
    if config.telemetry.metrics_endpoint().is_some() {
        let _ = tokio::task::spawn_blocking(move || metrics.shutdown()).await;
    }
    tracing::info!("lienthong stopped");
    Ok(())
}
