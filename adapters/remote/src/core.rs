//! The client of the adapter service: connection, TLS, capabilities, and the
//! request of each call (deadline, province, trace context).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use lienthong_adapter_core::{
    AdapterError, CallContext, Capabilities, CitizenId, ErrorKind, Family, Method, OwnedDossier,
};
use lienthong_proto::adapter::v1 as proto;
use lienthong_proto::adapter::v1::adapter_service_client::AdapterServiceClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::config::RemoteConfig;

/// How often the service is asked again what it supports, once it answered.
const CAPABILITIES_REFRESH: Duration = Duration::from_secs(60);

/// The longest wait between two asks while it does not answer.
const CAPABILITIES_RETRY_MAX: Duration = Duration::from_secs(30);

/// The remote adapter.
pub struct RemoteAdapter {
    pub(crate) client: AdapterServiceClient<Channel>,
    /// What the service declared (GetCapabilities), within `families`; until
    /// it first answers, every method of those families.
    declared: Arc<AtomicU64>,
    timeout: Duration,
    endpoint: String,
    forward_citizen_token: bool,
    /// The instance's name in config, as logs name it.
    pub(crate) instance: std::sync::Arc<str>,
    /// The provinces the service said (at start) it holds data for.
    pub(crate) provinces: Vec<String>,
    /// Its standard health check, on the same connection.
    health: tonic_health::pb::health_client::HealthClient<Channel>,
}

impl fmt::Debug for RemoteAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteAdapter")
            .field("endpoint", &self.endpoint)
            .field("capabilities", &self.declared())
            .finish()
    }
}

/// The major version of the adapter protocol this gateway speaks.
pub const PROTOCOL_MAJOR: u32 = 1;

/// Why the service's capabilities are not known.
enum NotAsked {
    /// It did not answer.
    Status(tonic::Status),
    /// It speaks another major version of the protocol.
    Incompatible(String),
}

/// Asks the service what it supports, keeping the methods of `allowed`.
async fn ask_capabilities(
    client: &mut AdapterServiceClient<Channel>,
    allowed: &[Family],
    timeout: Duration,
    instance: &str,
    log: bool,
) -> Result<(Capabilities, Vec<String>), NotAsked> {
    let mut req = tonic::Request::new(proto::GetCapabilitiesRequest {});
    req.set_timeout(timeout);
    let answer = match client.get_capabilities(req).await {
        Ok(answer) => answer.into_inner(),
        Err(status) if status.code() == tonic::Code::Unimplemented => {
            return Err(NotAsked::Incompatible(format!(
                "the adapter service of instance {instance:?} does not implement GetCapabilities, which every \
                 lienthong.adapter.v1 service must: list the methods it serves there"
            )));
        }
        Err(status) => return Err(NotAsked::Status(status)),
    };
    let version = if answer.protocol_version.is_empty() { "1.0" } else { answer.protocol_version.as_str() };
    let major = version.split('.').next().and_then(|m| m.parse::<u32>().ok());
    if major != Some(PROTOCOL_MAJOR) {
        return Err(NotAsked::Incompatible(format!(
            "the adapter service of instance {instance:?} speaks adapter protocol {version:?}; this gateway speaks \
             {PROTOCOL_MAJOR}.x (lienthong.adapter.v1): update the adapter or the gateway"
        )));
    }
    let capabilities = answer
        .methods
        .iter()
        .filter_map(|name| Method::ALL.iter().find(|m| m.full_name() == name))
        .filter(|m| allowed.contains(&m.family()))
        .fold(Capabilities::none(), |c, m| c.with(*m));
    if log {
        tracing::info!(
            instance = %instance,
            protocol = %version,
            adapter = %answer.adapter_name,
            adapter_version = %answer.adapter_version,
            methods = capabilities.methods().count(),
            "the adapter service declared its methods"
        );
    }
    let provinces = answer.provinces.iter().filter(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit()));
    Ok((capabilities, provinces.cloned().collect()))
}

/// Keeps `declared` current for as long as the adapter lives: asks again
/// every [`CAPABILITIES_REFRESH`], and while the service does not answer
/// (down at start, restarting) after 1 s, 2 s, … up to
/// [`CAPABILITIES_RETRY_MAX`], so a service that comes back is called for
/// what it declares within seconds.
fn keep_learning(
    mut client: AdapterServiceClient<Channel>,
    allowed: Vec<Family>,
    timeout: Duration,
    declared: Weak<AtomicU64>,
    mut known: bool,
    instance: String,
) {
    tokio::spawn(async move {
        let mut wait = if known { CAPABILITIES_REFRESH } else { Duration::from_secs(1) };
        loop {
            tokio::time::sleep(wait).await;
            let asked = ask_capabilities(&mut client, &allowed, timeout, &instance, !known).await;
            let Some(bits) = declared.upgrade() else { return };
            match asked {
                Ok((capabilities, _)) => {
                    let before = bits.swap(capabilities.bits(), Ordering::Relaxed);
                    if known && before != capabilities.bits() {
                        tracing::info!(
                            instance = %instance,
                            methods = capabilities.methods().count(),
                            "the adapter service changed the methods it declares"
                        );
                    }
                    known = true;
                    wait = CAPABILITIES_REFRESH;
                }
                Err(NotAsked::Status(status)) => {
                    tracing::debug!(instance = %instance, code = ?status.code(), "the adapter service did not answer GetCapabilities");
                    wait = if known { Duration::from_secs(1) } else { (wait * 2).min(CAPABILITIES_RETRY_MAX) };
                    known = false;
                }
                Err(NotAsked::Incompatible(why)) => {
                    // Called for nothing until it speaks this protocol again.
                    tracing::error!(instance = %instance, "{why}");
                    bits.store(Capabilities::none().bits(), Ordering::Relaxed);
                    wait = CAPABILITIES_REFRESH;
                    known = false;
                }
            }
        }
    });
}

impl RemoteAdapter {
    /// The service's status as an adapter error, logged under the instance.
    pub(crate) fn fail(&self, status: &tonic::Status) -> AdapterError {
        crate::error::map_status(status, &self.instance)
    }

    /// As [`Self::fail`], for a call made for `ctx`: once the caller's
    /// deadline has passed, a call cut short (cancelled, reset) is
    /// `DeadlineExceeded`, whatever the transport made of it.
    pub(crate) fn fail_for(&self, ctx: &CallContext, status: &tonic::Status) -> AdapterError {
        let e = self.fail(status);
        let late = ctx.deadline.is_some_and(|d| d <= tokio::time::Instant::now());
        // Only a call cut short: a refused handshake or a service error keeps
        // its own cause.
        let cut_short =
            matches!(status.code(), tonic::Code::Cancelled | tonic::Code::Unavailable | tonic::Code::Unknown)
                && std::error::Error::source(status).and_then(lienthong_adapter_core::tls::cause).is_none();
        if late && cut_short {
            return AdapterError::new(
                ErrorKind::DeadlineExceeded,
                "the caller's deadline passed while the adapter service was asked",
            );
        }
        e
    }

    /// Whether ListMyDossiers carries the citizen's token (config).
    pub(crate) fn forwards_citizen_token(&self) -> bool {
        self.forward_citizen_token
    }

    /// What the service declared it supports (within the configured families).
    pub fn declared(&self) -> Capabilities {
        Capabilities::from_bits(self.declared.load(Ordering::Relaxed))
    }

    /// Connects (lazily) and asks the service what it supports.
    pub async fn connect(config: RemoteConfig) -> Result<Self, AdapterError> {
        Self::connect_as("remote", config).await
    }

    /// [`RemoteAdapter::connect`] for the instance named `instance` (as logs
    /// name it).
    pub async fn connect_as(instance: &str, config: RemoteConfig) -> Result<Self, AdapterError> {
        let problems = config.validate();
        if !problems.is_empty() {
            return Err(AdapterError::new(ErrorKind::InvalidArgument, problems.join("; ")));
        }
        let bad =
            |what: &str, e: &dyn fmt::Display| AdapterError::new(ErrorKind::InvalidArgument, format!("{what}: {e}"));
        let mut endpoint = Endpoint::from_shared(config.endpoint.clone())
            .map_err(|e| bad("endpoint", &e))?
            .connect_timeout(config.connect_timeout)
            .tcp_nodelay(true);
        if config.endpoint.starts_with("https://") {
            let mut tls = ClientTlsConfig::new().with_native_roots();
            if let Some(ca) = config.ca_file() {
                let pem = std::fs::read(ca).map_err(|e| bad("tls_ca_file", &e))?;
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            if let Some(t) = &config.tls {
                if let (Some(cert), Some(key)) = (&t.client_cert_file, &t.client_key_file) {
                    let cert = std::fs::read(cert).map_err(|e| bad("tls.client_cert_file", &e))?;
                    let key = std::fs::read(key).map_err(|e| bad("tls.client_key_file", &e))?;
                    tls = tls.identity(Identity::from_pem(cert, key));
                }
                if let Some(name) = &t.domain_name {
                    tls = tls.domain_name(name.clone());
                }
            }
            endpoint = endpoint.tls_config(tls).map_err(|e| bad("tls", &e))?;
        }
        let channel = endpoint.connect_lazy();
        let health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
        let mut client = AdapterServiceClient::new(channel);
        let allowed = config.allowed_families().unwrap_or_else(|| Family::ALL.to_vec());
        let (capabilities, known, provinces) = match ask_capabilities(
            &mut client,
            &allowed,
            config.timeout,
            instance,
            true,
        )
        .await
        {
            Ok((capabilities, provinces)) => (capabilities, true, provinces),
            Err(NotAsked::Incompatible(why)) => return Err(AdapterError::new(ErrorKind::InvalidArgument, why)),
            Err(NotAsked::Status(status)) => {
                // Start anyway: calls fail with UNAVAILABLE until it answers;
                // what it declares then is learned in the background.
                tracing::warn!(instance = %instance, code = ?status.code(), "the adapter service did not answer GetCapabilities at start; asking again until it does");
                (
                    allowed.iter().flat_map(|f| Method::of_family(*f)).fold(Capabilities::none(), Capabilities::with),
                    false,
                    Vec::new(),
                )
            }
        };
        let declared = Arc::new(AtomicU64::new(capabilities.bits()));
        keep_learning(client.clone(), allowed, config.timeout, Arc::downgrade(&declared), known, instance.to_owned());
        Ok(Self {
            client,
            declared,
            timeout: config.timeout,
            endpoint: config.endpoint,
            forward_citizen_token: config.forward_citizen_token,
            instance: instance.into(),
            provinces,
            health,
        })
    }

    /// A request carrying the province and the deadline.
    pub(crate) fn request<T>(&self, ctx: &CallContext, message: T) -> Result<tonic::Request<T>, AdapterError> {
        let timeout = match ctx.deadline {
            Some(d) => d.saturating_duration_since(tokio::time::Instant::now()).min(self.timeout),
            None => self.timeout,
        };
        if timeout.is_zero() {
            return Err(AdapterError::new(
                ErrorKind::DeadlineExceeded,
                "the caller's deadline passed before the adapter was asked",
            ));
        }
        let mut req = tonic::Request::new(message);
        req.set_timeout(timeout);
        let province =
            ctx.province.parse().map_err(|_| AdapterError::new(ErrorKind::Unexpected, "province is not ASCII"))?;
        req.metadata_mut().insert("x-lienthong-province", province);
        trace_context(req.metadata_mut());
        Ok(req)
    }
}

/// Adds the current span's W3C trace context, so the adapter service's own
/// spans join the caller's trace.
pub(crate) fn trace_context(metadata: &mut tonic::metadata::MetadataMap) {
    lienthong_adapter_core::telemetry::inject(&tracing::Span::current(), |name, value| {
        if let (Ok(name), Ok(value)) =
            (tonic::metadata::MetadataKey::from_bytes(name.as_bytes()), tonic::metadata::MetadataValue::try_from(value))
        {
            metadata.insert(name, value);
        }
    });
}

pub(crate) fn owned(d: proto::OwnedDossier) -> Result<OwnedDossier, AdapterError> {
    let owner = CitizenId::parse(&d.owner_id_number).map_err(|_| {
        AdapterError::new(ErrorKind::Unavailable, "the adapter service sent a dossier without a valid owner")
    })?;
    let dossier = d
        .dossier
        .ok_or_else(|| AdapterError::new(ErrorKind::Unavailable, "the adapter service sent an empty dossier"))?;
    Ok(OwnedDossier { dossier, owner })
}

/// Implements a family trait by forwarding each listed unary method to the
/// adapter service; `extra` items are added to the impl as they are.
macro_rules! forwarding_impl {
    ($trait:ident { $($name:ident($req:ty) -> $resp:ty;)* } $($extra:tt)*) => {
        #[async_trait]
        impl $trait for RemoteAdapter {
            fn capabilities(&self) -> Capabilities {
                self.declared()
            }
            $(
                async fn $name(&self, ctx: &CallContext, req: $req) -> Result<$resp, AdapterError> {
                    let mut client = self.client.clone();
                    client.$name(self.request(ctx, req)?).await.map(tonic::Response::into_inner).map_err(|s| self.fail_for(ctx, &s))
                }
            )*
            $($extra)*
        }
    };
}
pub(crate) use forwarding_impl;

/// The service's standard health check (`grpc.health.v1.Health/Check`, the
/// server as a whole): asked by the gateway while the instance's breaker is
/// open, so a service that is back is used again at once.
#[async_trait::async_trait]
impl lienthong_adapter_core::HealthProbe for RemoteAdapter {
    async fn serving(&self) -> Option<bool> {
        use tonic_health::pb::health_check_response::ServingStatus;
        let mut client = self.health.clone();
        let mut req = tonic::Request::new(tonic_health::pb::HealthCheckRequest { service: String::new() });
        req.set_timeout(self.timeout);
        match client.check(req).await {
            Ok(answer) => Some(answer.into_inner().status() == ServingStatus::Serving),
            // No health service here: nothing to ask.
            Err(status) if status.code() == tonic::Code::Unimplemented => None,
            Err(_) => Some(false),
        }
    }
}
