//! Shared harness: a gateway on 127.0.0.1:0 over real TCP, and clients.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lienthong_adapter_core::{AdapterError, AdapterFactory, AdapterSet, BuildContext, Family, HealthcareAdapter};

use lienthong::config::Config;
use lienthong_adapter_core::AdapterRegistry;
use lienthong_proto::sandbox::v1::IssueTokenRequest;
use lienthong_proto::sandbox::v1::sandbox_identity_service_client::SandboxIdentityServiceClient;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

/// A running gateway.
pub struct TestGateway {
    pub addr: SocketAddr,
    /// The ops endpoints (metrics, readiness, status page).
    pub ops_addr: SocketAddr,
    pub channel: Channel,
    stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<anyhow::Result<()>>,
}

impl TestGateway {
    /// The embedded sandbox default, on an ephemeral port.
    pub async fn sandbox() -> Self {
        Self::start(Config::load(None).unwrap(), lienthong::server::adapter_registry()).await
    }

    /// A config from TOML.
    pub async fn with_toml(toml: &str, registry: AdapterRegistry) -> Self {
        Self::start(Config::from_toml(toml).unwrap(), registry).await
    }

    pub async fn start(config: Config, registry: AdapterRegistry) -> Self {
        Self::start_with(config, registry, None).await
    }

    /// Like [`TestGateway::start`], the client speaking TLS with `tls`.
    pub async fn start_with(mut config: Config, registry: AdapterRegistry, tls: Option<ClientTlsConfig>) -> Self {
        // Each gateway writes its own audit log, unless the test chose one.
        if config.audit.path == lienthong::audit::AuditConfig::default().path {
            config.audit.path = temp_dir("audit").join("audit.jsonl");
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let ops = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ops_addr = ops.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let listeners = lienthong::server::Listeners { grpc: listener, ops: Some(ops) };
        let task = tokio::spawn(lienthong::server::serve_on(config, registry, listeners, async {
            let _ = stopped.await;
        }));
        let channel = match tls {
            None => Endpoint::from_shared(format!("http://{addr}")).unwrap().connect_lazy(),
            Some(tls) => {
                Endpoint::from_shared(format!("https://{addr}")).unwrap().tls_config(tls).unwrap().connect_lazy()
            }
        };
        let gw = Self { addr, ops_addr, channel, stop: Some(stop), task };
        gw.wait_ready().await;
        gw
    }

    /// For tests on a paused clock: connection timers off. A paused clock
    /// leaps to the next timer whenever the runtime waits for a thread (the
    /// audit writer's fsync), so keepalives, idle and age would close the
    /// test's connection mid-call; they are tested on a running clock.
    pub async fn on_paused_clock(mut config: Config, registry: AdapterRegistry) -> Self {
        config.server.keepalive_interval = Duration::ZERO;
        config.server.idle_timeout = Duration::ZERO;
        config.server.max_connection_age = Duration::ZERO;
        Self::start(config, registry).await
    }

    /// Polls the health service until it answers SERVING, with a deadline.
    async fn wait_ready(&self) {
        use tonic_health::pb::health_client::HealthClient;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let mut client = HealthClient::new(self.channel.clone());
            let req = tonic_health::pb::HealthCheckRequest { service: String::new() };
            if let Ok(r) = client.check(req).await
                && r.into_inner().status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
            {
                return;
            }
            assert!(!self.task.is_finished(), "the gateway exited while starting");
            assert!(tokio::time::Instant::now() < deadline, "the gateway did not become ready in time");
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Signals shutdown and returns the server task.
    pub fn shutdown(&mut self) -> &mut JoinHandle<anyhow::Result<()>> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        &mut self.task
    }

    /// A sandbox token for the demo citizen `handle`.
    pub async fn token(&self, handle: &str) -> String {
        let mut c = SandboxIdentityServiceClient::new(self.channel.clone());
        c.issue_token(IssueTokenRequest { handle: handle.into() }).await.unwrap().into_inner().access_token
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Wraps a message with metadata entries.
pub fn request<T>(message: T, metadata: &[(&'static str, &str)]) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    for (k, v) in metadata {
        r.metadata_mut().insert(*k, v.parse().unwrap());
    }
    r
}

/// A request carrying a citizen token.
pub fn authed<T>(message: T, token: &str) -> tonic::Request<T> {
    request(message, &[("authorization", &format!("Bearer {token}"))])
}

/// The BadRequest field names of an INVALID_ARGUMENT status.
pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    status
        .get_details_bad_request()
        .expect("INVALID_ARGUMENT carries BadRequest details")
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect()
}

/// Registers `adapter` as the healthcare-only adapter kind `kind`.
#[derive(Debug)]
pub struct HealthcareOnly {
    pub kind: &'static str,
    pub adapter: Arc<dyn HealthcareAdapter>,
}

#[async_trait]
impl AdapterFactory for HealthcareOnly {
    fn kind(&self) -> &'static str {
        self.kind
    }
    fn description(&self) -> &'static str {
        "a test healthcare adapter"
    }
    fn families(&self) -> &'static [Family] {
        &[Family::Healthcare]
    }
    fn validate(&self, _: &serde_json::Value) -> Vec<String> {
        Vec::new()
    }
    async fn build(&self, _: BuildContext) -> Result<AdapterSet, AdapterError> {
        Ok(AdapterSet { healthcare: Some(self.adapter.clone()), ..Default::default() })
    }
}

/// The sandbox default with healthcare served by `adapter` (instance `kind`),
/// and `extra` TOML appended.
pub async fn with_healthcare(kind: &'static str, adapter: Arc<dyn HealthcareAdapter>, extra: &str) -> TestGateway {
    let mut registry = lienthong::server::adapter_registry();
    registry.register(Arc::new(HealthcareOnly { kind, adapter }));
    let toml = lienthong::config::SANDBOX_DEFAULT
        .replace("healthcare = \"sandbox\"", &format!("healthcare = \"{kind}\""))
        + &format!("\n[adapters.{kind}]\nkind = \"{kind}\"\n\n{extra}\n");
    TestGateway::start(Config::from_toml(&toml).unwrap(), registry).await
}

/// A ListFacilities call running in the background.
pub type HeldCall = JoinHandle<Result<tonic::Response<lienthong_proto::v1::ListFacilitiesResponse>, tonic::Status>>;

/// Starts `n` ListFacilities calls (distinct, so the cache does not coalesce
/// them) and waits, with a deadline, until `inside` counts them all in the
/// adapter.
pub async fn hold_facility_lists(gw: &TestGateway, inside: &std::sync::atomic::AtomicUsize, n: i32) -> Vec<HeldCall> {
    use lienthong_proto::v1::healthcare_service_client::HealthcareServiceClient;
    let held: Vec<HeldCall> = (0..n)
        .map(|i| {
            let mut c = HealthcareServiceClient::new(gw.channel.clone());
            let req = lienthong_proto::v1::ListFacilitiesRequest { page_size: i + 1, ..Default::default() };
            tokio::spawn(async move { c.list_facilities(req).await })
        })
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while inside.load(std::sync::atomic::Ordering::SeqCst) < n as usize {
        assert!(tokio::time::Instant::now() < deadline, "the calls did not reach the adapter");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    held
}

/// A fresh directory for one test's files.
pub fn temp_dir(what: &str) -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("lienthong-test-{}-{what}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
