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
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::call::PROVINCE_HEADER;
use crate::config::Config;
use crate::gateway::Gateway;
use crate::services::*;
use crate::telemetry::view::{CacheView, InstanceView, Observed};

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
            header(crate::gateway::apps::API_KEY_HEADER),
            header(crate::gateway::apps::PURPOSE_HEADER),
            header("traceparent"),
            header("tracestate"),
        ])
        .expose_headers([
            header("grpc-status"),
            header("grpc-message"),
            header("grpc-status-details-bin"),
            header("grpc-accept-encoding"),
            header(CACHE_HEADER),
            header(AGE_HEADER),
            header(VIEW_REASON_HEADER),
            header(crate::telemetry::rpc::TRACE_ID_HEADER),
        ])
        .max_age(std::time::Duration::from_secs(3600))
}

/// The running gateway as the operators' views see it: the shared state
/// (held weakly: the metrics it feeds outlive no server) and the edge's
/// counters.
struct Running {
    gateway: std::sync::Weak<Gateway>,
    admission: Arc<crate::edge::admit::Admission>,
    connections: Arc<crate::edge::listener::ConnectionStats>,
}

impl Observed for Running {
    fn cluster(&self) -> Option<crate::telemetry::view::ClusterView> {
        let gateway = self.gateway.upgrade()?;
        let cluster = gateway.limits.shared_buckets()?.cluster();
        let shared_cache = gateway
            .cache()
            .shared()
            .map_or_else(|| crate::cluster::cache::SharedCounts::default().by_outcome(), |c| c.counts().by_outcome());
        Some(crate::telemetry::view::ClusterView {
            up: cluster.is_up(),
            fallbacks: cluster.fallbacks(),
            fail_closed: !cluster.config().fail_closed.is_empty(),
            shared_cache,
        })
    }

    fn draining(&self) -> bool {
        self.gateway.upgrade().is_none_or(|g| *g.shutdown_signal().borrow())
    }

    fn overloaded(&self) -> bool {
        self.admission.is_overloaded()
    }

    fn shed(&self) -> u64 {
        self.admission.shed_count()
    }

    fn refused(&self) -> Vec<(&'static str, u64)> {
        let mut refused: Vec<_> = crate::edge::admit::Refusal::ALL
            .iter()
            .map(|why| (why.as_str(), self.admission.refused_count(*why)))
            .collect();
        refused.push(("connection_limit", self.connections.refused_over_limit()));
        refused.push(("header_timeout", self.connections.header_timeouts()));
        refused
    }

    fn connections(&self) -> usize {
        self.connections.open()
    }

    fn cache(&self) -> CacheView {
        let Some(gateway) = self.gateway.upgrade() else {
            return CacheView { entries: 0, bytes: 0, evictions: Default::default() };
        };
        let (entries, bytes) = gateway.cache().usage_now();
        CacheView { entries, bytes, evictions: gateway.cache().evictions() }
    }

    fn provinces(&self) -> Vec<String> {
        self.gateway.upgrade().map(|g| g.province_codes().map(str::to_owned).collect()).unwrap_or_default()
    }

    fn instances(&self) -> Vec<InstanceView> {
        let Some(gateway) = self.gateway.upgrade() else { return Vec::new() };
        gateway
            .instances()
            .into_iter()
            .map(|i| {
                let guard = i.guard.snapshot();
                InstanceView {
                    name: i.name.to_owned(),
                    kind: i.kind.to_owned(),
                    routes: i.routes.iter().map(|(code, family)| ((*code).to_owned(), *family)).collect(),
                    breaker: guard.breaker.state.into(),
                    in_flight: guard.in_flight,
                    stats: i.guard.stats().snapshot(),
                }
            })
            .collect()
    }
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
    // Invalidations from the other replicas apply here too; every shared
    // topic is read from now on before the first call is served.
    crate::services::admin::follow_invalidations(gateway.cache().clone(), gateway.shared());
    gateway.settle_shared().await;
    let admission = crate::edge::admit::Admission::new(
        config.server.max_concurrent_requests,
        crate::edge::admit::CallLimits {
            max_message_bytes: config.server.max_request_bytes,
            read_timeout: config.server.request_read_timeout,
            max_header_bytes: config.server.max_header_list_bytes as usize,
            max_push_bytes: crate::edge::webhooks::MAX_BODY,
            compress_min_bytes: config.server.compress_answers.then_some(config.server.compress_min_bytes),
        },
        draining.clone(),
    );
    let connections = Arc::new(crate::edge::listener::ConnectionStats::default());
    let observed: Arc<dyn Observed> = Arc::new(Running {
        gateway: Arc::downgrade(&gateway),
        admission: admission.clone(),
        connections: connections.clone(),
    });
    metrics.observe(observed.clone());

    let (health, health_service) = tonic_health::server::health_reporter();
    for name in SERVICE_NAMES {
        health.set_service_status(*name, tonic_health::ServingStatus::Serving).await;
    }
    // The whole server's health ("") tells the truth while most calls are
    // shed, so load balancers stop sending more.
    let overload_watch = {
        let (health, draining) = (health.clone(), draining.clone());
        admission.watch_overload(config.telemetry.unready_after_shedding, move |overloaded| {
            let (health, draining) = (health.clone(), draining.clone());
            Box::pin(async move {
                let serving = !overloaded && !*draining.borrow();
                let status = if serving {
                    tonic_health::ServingStatus::Serving
                } else {
                    tonic_health::ServingStatus::NotServing
                };
                health.set_service_status("", status).await;
            })
        })
    };
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(lienthong_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(lienthong_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let grpc_web = config.server.grpc_web;
    // Requests are small; anything larger is refused before it is decoded.
    let max_request = config.server.max_request_bytes;
    let tls = config.server.tls.as_ref().map(crate::edge::listener::tls_acceptor).transpose()?;
    // Upstream pushes (POST /webhooks/<instance>) share the port.
    let mut routes = tonic::service::RoutesBuilder::from(crate::edge::webhooks::routes(gateway.webhook_receivers()));
    routes
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
        )
        // Operators' API: cache invalidation, adapter instance state (token-gated).
        .add_service(
            AdminServiceServer::new(crate::services::admin::AdminApi(gateway.clone()))
                .max_decoding_message_size(max_request),
        );
    if gateway.has_demo_issuer() {
        routes.add_service(
            SandboxIdentityServiceServer::new(SandboxIdentityApi(gateway.clone()))
                .max_decoding_message_size(max_request),
        );
    }
    let stack = tower::ServiceBuilder::new()
        // Browsers need CORS, exposing the grpc-* trailers they read as headers.
        .option_layer(grpc_web.then(|| cors(&config)))
        // Translate gRPC-Web to gRPC before anything else reads the call
        // (webhooks, plain HTTP/1.1 posts, go around), so refusals below
        // reach browsers in a form they read.
        .option_layer(
            grpc_web.then(|| crate::edge::except_paths::ExceptPaths::new("/webhooks/", tonic_web::GrpcWebLayer::new())),
        )
        // Admit a call once its message has arrived and checks out, into one
        // of the shared slots, or shed it at once so callers fail fast
        // instead of queueing past their deadlines.
        .layer(crate::edge::admit::AdmitLayer(admission.clone()))
        // Each call's server span and metrics, seeing gRPC trailers.
        .layer(crate::telemetry::rpc::RpcTelemetryLayer::new(metrics.clone()))
        // Cached answers go to the wire as the bytes they were stored as.
        .layer(crate::edge::encoded::EncodedAnswersLayer)
        .service(routes.routes().prepare());

    // Forget idle rate-limit keys and expired answers now and then, so
    // memory holds what is live.
    let compaction = {
        let gateway = gateway.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                every.tick().await;
                gateway.limits().compact();
                gateway.cache().sweep();
            }
        })
    };
    // With a cluster: Redis is asked once a second whether it answers, so
    // that `/readyz` and the log tell it is away even when no call comes
    // (and from the start), and the shared limits' ended leases are let go.
    let cluster_watch = gateway.limits().shared_buckets().is_some().then(|| {
        let gateway = gateway.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(crate::cluster::RETRY_AFTER);
            loop {
                every.tick().await;
                if let Some(buckets) = gateway.limits().shared_buckets() {
                    buckets.cluster().ping().await;
                    buckets.compact();
                }
            }
        })
    });
    let addr = listener.local_addr()?;
    let (ops_stop, ops_stopped) = watch::channel(false);
    let ops_task = match ops {
        Some(ops) => {
            let ops_addr = ops.local_addr()?;
            tracing::info!(ops_addr = %ops_addr, "ops endpoints serving: /metrics /livez /readyz /status");
            Some(tokio::spawn(crate::ops::serve(ops, observed.clone(), metrics.clone(), ops_stopped)))
        }
        None => None,
    };
    tracing::info!(%addr, grpc_web, provinces = ?config.provinces.keys().collect::<Vec<_>>(), "lienthong is serving");
    let limits = crate::edge::listener::ConnectionLimits {
        max_connections: config.server.max_connections,
        max_connections_per_ip: config.server.max_connections_per_ip,
        max_streams_per_connection: config.server.max_streams_per_connection,
        header_read_timeout: config.server.header_read_timeout,
        idle_timeout: (!config.server.idle_timeout.is_zero()).then_some(config.server.idle_timeout),
        keepalive_interval: (!config.server.keepalive_interval.is_zero()).then_some(config.server.keepalive_interval),
        keepalive_timeout: config.server.keepalive_timeout,
        max_connection_age: (!config.server.max_connection_age.is_zero()).then_some(config.server.max_connection_age),
        max_connection_age_grace: config.server.max_connection_age_grace,
        hard_header_list_bytes: config.server.max_header_list_bytes.saturating_mul(4).max(64 * 1024),
    };
    let (stop, stopped) = watch::channel(false);
    let server = crate::edge::listener::serve(listener, tls, limits, connections, stack, stopped);
    tokio::pin!(server);
    let drain_timeout = config.server.drain_timeout;
    tokio::select! {
        () = &mut server => {}
        () = signal => {
            tracing::info!(?drain_timeout, "shutting down: draining in-flight calls");
            // Draining first, so the overload watch cannot set SERVING after.
            let _ = draining_tx.send(true);
            overload_watch.abort();
            health.set_service_status("", tonic_health::ServingStatus::NotServing).await;
            for name in SERVICE_NAMES {
                health.set_service_status(*name, tonic_health::ServingStatus::NotServing).await;
            }
            let _ = stop.send(true);
            tokio::select! {
                () = &mut server => {}
                () = tokio::time::sleep(drain_timeout) => {
                    tracing::warn!("drain timeout reached; stopping with calls still running");
                }
            }
        }
    }
    overload_watch.abort();
    compaction.abort();
    if let Some(watch) = cluster_watch {
        watch.abort();
    }
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
