//! What several replicas share, in Redis (`[cluster]`): rate-limit buckets
//! ([`limits`]) so that a limit holds across replicas instead of being
//! multiplied by their number, and messages, seen ids, leases and marks
//! ([`shared`]) for cache invalidations and adapters' status changes, and
//! answers of public data ([`cache`]).
//!
//! Redis is a dependency the gateway survives: the connection is made
//! lazily and re-made in the background; while Redis does not answer
//! within `command_timeout`, calls go on with each replica's local share
//! (logged once, counted, shown as degraded by `/readyz`), and Redis is
//! tried again after [`RETRY_AFTER`] without a restart.

pub mod cache;
pub mod limits;
pub mod shared;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::time::Instant;

pub use crate::config::ClusterConfig;

/// How long Redis is left alone after it failed to answer: calls meanwhile
/// use the local fallback at once instead of each waiting for a timeout.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// `d` in whole milliseconds, at least one (what Redis takes for an expiry:
/// zero would be refused).
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// The shared state's connection, and whether it answers.
pub struct Cluster {
    client: redis::Client,
    /// Replaced by a new connection after a failover (see [`Cluster::run`]).
    redis: std::sync::RwLock<ConnectionManager>,
    manager: redis::aio::ConnectionManagerConfig,
    prefix: String,
    command_timeout: Duration,
    config: ClusterConfig,
    started: Instant,
    /// Milliseconds after `started` before which Redis is not tried again.
    retry_at_ms: AtomicU64,
    /// Whether the last command answered (for the log and `/readyz`).
    up: AtomicBool,
    /// Calls decided without Redis since the start.
    fallbacks: AtomicU64,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("config", &self.config).field("up", &self.is_up()).finish_non_exhaustive()
    }
}

impl Cluster {
    /// The cluster of `config`, without connecting yet (the gateway starts
    /// whether Redis answers or not).
    pub fn new(config: &ClusterConfig) -> Result<Arc<Self>, redis::RedisError> {
        let client = redis::Client::open(config.redis_url.as_str())?;
        let manager = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.command_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let redis = ConnectionManager::new_lazy_with_config(client.clone(), manager.clone())?;
        Ok(Arc::new(Self {
            client,
            redis: std::sync::RwLock::new(redis),
            manager,
            prefix: config.key_prefix.clone(),
            command_timeout: config.command_timeout,
            config: config.clone(),
            started: Instant::now(),
            retry_at_ms: AtomicU64::new(0),
            up: AtomicBool::new(true),
            fallbacks: AtomicU64::new(0),
        }))
    }

    /// Its settings.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// Connects again from scratch: after a failover the node this replica
    /// is connected to was demoted and refuses writes (READONLY), while the
    /// address in `redis_url` (a managed service's, a Sentinel-fronted
    /// name) now leads to the new primary. The connection itself is fine, so
    /// nothing else would ever leave it.
    fn reconnect(&self) {
        match ConnectionManager::new_lazy_with_config(self.client.clone(), self.manager.clone()) {
            Ok(fresh) => {
                *self.redis.write().unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
                tracing::warn!("Redis refused a write (READONLY: a failover?); connecting again");
            }
            Err(e) => tracing::warn!(error = %e, "connecting to Redis again failed"),
        }
    }

    /// The client, for a connection of one's own (a blocking read).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// `name` under the cluster's key prefix.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Whether Redis answered the last command.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Calls decided without Redis so far.
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    /// Counts one call decided without Redis.
    pub fn fell_back(&self) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether Redis is worth trying now (not within [`RETRY_AFTER`] of a
    /// failure).
    pub fn available(&self) -> bool {
        self.elapsed_ms() >= self.retry_at_ms.load(Ordering::Relaxed)
    }

    /// Asks Redis whether it answers (marking it away or back, as
    /// [`Cluster::run`] does); whether it did.
    pub async fn ping(&self) -> bool {
        self.run(|mut redis| async move { redis::cmd("PING").query_async::<String>(&mut redis).await }).await.is_some()
    }

    /// Runs `command` on a connection within the command timeout. `None`
    /// when Redis did not answer: marked away (logged once) for
    /// [`RETRY_AFTER`]; an answer after that marks it back (logged once).
    pub async fn run<T, F>(&self, command: impl FnOnce(ConnectionManager) -> F) -> Option<T>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let retry_at = self.retry_at_ms.load(Ordering::Relaxed);
        let now = self.elapsed_ms();
        if now < retry_at {
            return None;
        }
        // While Redis is away one call at a time finds out whether it is
        // back; the others decide locally instead of each waiting.
        if !self.is_up() {
            let probing = now + u64::try_from(self.command_timeout.as_millis()).unwrap_or(u64::MAX);
            if self.retry_at_ms.compare_exchange(retry_at, probing, Ordering::Relaxed, Ordering::Relaxed).is_err() {
                return None;
            }
        }
        let redis = self.redis.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        match tokio::time::timeout(self.command_timeout, command(redis)).await {
            Ok(Ok(value)) => {
                // A probe's answer: every call may ask Redis again.
                if self.retry_at_ms.load(Ordering::Relaxed) != 0 {
                    self.retry_at_ms.store(0, Ordering::Relaxed);
                }
                if !self.up.swap(true, Ordering::Relaxed) {
                    tracing::info!(
                        redis = self.config.redacted_url(),
                        "Redis answers again: limits are shared across replicas again"
                    );
                }
                Some(value)
            }
            outcome => {
                if let Ok(Err(e)) = &outcome
                    && e.code() == Some("READONLY")
                {
                    self.reconnect();
                }
                self.retry_at_ms.store(self.elapsed_ms() + RETRY_AFTER.as_millis() as u64, Ordering::Relaxed);
                if self.up.swap(false, Ordering::Relaxed) {
                    let (redis, meanwhile) = (self.config.redacted_url(), self.config.while_away());
                    match outcome {
                        Ok(Err(e)) => {
                            tracing::warn!(redis, error = %e, "Redis does not answer: {meanwhile} until it does")
                        }
                        // No answer in time hides why: a connection of its
                        // own says (refused, unknown host, wrong password).
                        _ => {
                            let (client, within) = (self.client.clone(), self.config.connect_timeout);
                            let waited = self.command_timeout;
                            tokio::spawn(async move {
                                let why = diagnose(&client, within).await;
                                tracing::warn!(
                                    redis,
                                    error = why.as_deref().unwrap_or("it answers now"),
                                    "Redis did not answer within {waited:?} (cluster.command_timeout): {meanwhile} \
                                     until it does"
                                );
                            });
                        }
                    }
                }
                None
            }
        }
    }
}

/// Why Redis at `client` cannot be used, asked on a connection of its own
/// within `within`; `None` when it answers.
async fn diagnose(client: &redis::Client, within: Duration) -> Option<String> {
    let attempt = async {
        let mut connection = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut connection).await
    };
    match tokio::time::timeout(within, attempt).await {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some(format!("no connection within {within:?} (cluster.connect_timeout)")),
    }
}
