//! The registry adapter's options.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// How dossier status changes reach watchers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UpdateMode {
    /// The portal pushes signed webhooks to `POST /webhooks/<instance>`.
    #[default]
    Webhook,
    /// The gateway polls watched dossiers every `poll_interval`.
    Poll,
    /// Both: pushes, and polling as a safety net.
    Both,
}

/// `[adapters.<name>.updates]`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdatesConfig {
    /// Webhook, poll or both.
    #[serde(default)]
    pub mode: UpdateMode,
    /// The shared secret of webhook signatures (at least 32 bytes). Prefer
    /// the environment (`LIENTHONG_ADAPTERS__<NAME>__UPDATES__WEBHOOK_SECRET`).
    #[serde(default)]
    pub webhook_secret: Option<String>,
    /// How far a push's timestamp may be from our clock.
    #[serde(default = "default_skew", with = "humantime_serde")]
    pub max_skew: Duration,
    /// How often watched dossiers are polled (poll and both modes).
    #[serde(default = "default_poll", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Where applied webhook deliveries are remembered, so a replay is
    /// refused also after a restart; default `lienthong-webhooks-<instance>.seen`
    /// in the working directory.
    #[serde(default)]
    pub replay_file: Option<std::path::PathBuf>,
}

fn default_skew() -> Duration {
    Duration::from_secs(300)
}
fn default_poll() -> Duration {
    Duration::from_secs(30)
}

impl Default for UpdatesConfig {
    fn default() -> Self {
        Self {
            mode: UpdateMode::Webhook,
            webhook_secret: None,
            max_skew: default_skew(),
            poll_interval: default_poll(),
            replay_file: None,
        }
    }
}

impl fmt::Debug for UpdatesConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpdatesConfig")
            .field("mode", &self.mode)
            .field("webhook_secret", &self.webhook_secret.as_ref().map(|_| "<redacted>"))
            .field("max_skew", &self.max_skew)
            .field("poll_interval", &self.poll_interval)
            .field("replay_file", &self.replay_file)
            .finish()
    }
}

/// `[adapters.<name>]` with `kind = "registry-http"`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// The portal API's base URL.
    pub base_url: String,
    /// Our API key at the portal, sent as `X-Api-Key`.
    #[serde(default)]
    pub api_key: Option<String>,
    /// Timeout of each request (also capped by the caller's deadline).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Allow plain-http URLs. Only for local test portals.
    #[serde(default)]
    pub allow_insecure_http: bool,
    /// A PEM file of CA certificates trusted besides the system's, for an
    /// upstream whose certificate a private CA signed.
    #[serde(default)]
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// How status changes arrive.
    #[serde(default)]
    pub updates: UpdatesConfig,
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

impl fmt::Debug for RegistryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("updates", &self.updates)
            .finish()
    }
}

impl RegistryConfig {
    /// Checks the options without I/O; returns every problem.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(self.base_url.starts_with("https://")
            || (self.allow_insecure_http && self.base_url.starts_with("http://")))
        {
            problems.push("base_url: must be an https:// URL (http:// only with allow_insecure_http)".to_owned());
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(60)).contains(&self.timeout) {
            problems.push("timeout: must be between 100ms and 60s".to_owned());
        }
        if let Some(path) = &self.tls_ca_file
            && let Err(e) = lienthong_adapter_http::check_ca_file(path)
        {
            problems.push(format!("tls_ca_file: {e}"));
        }
        let u = &self.updates;
        let pushes = matches!(u.mode, UpdateMode::Webhook | UpdateMode::Both);
        match &u.webhook_secret {
            None if pushes => problems.push("updates.webhook_secret: required for webhook updates".to_owned()),
            Some(s) if s.len() < 32 => problems.push("updates.webhook_secret: must be at least 32 bytes".to_owned()),
            _ => {}
        }
        if !(Duration::from_secs(10)..=Duration::from_secs(900)).contains(&u.max_skew) {
            problems.push("updates.max_skew: must be between 10s and 15m".to_owned());
        }
        if u.poll_interval < Duration::from_millis(100) {
            problems.push("updates.poll_interval: must be at least 100ms".to_owned());
        }
        problems
    }
}
