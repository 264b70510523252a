//! The sandbox's options.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The sandbox's options in config (`[adapters.<name>]` with `kind = "sandbox"`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxConfig {
    /// Load the data files from this directory instead of the embedded copy.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// How often a demo dossier that is still open moves to its next status.
    #[serde(default = "default_pace", with = "humantime_serde")]
    pub dossier_pace: Duration,
    /// Whether new dossiers keep arriving while the sandbox runs: each demo
    /// dossier is renewed when it ends, so every demo citizen always has one
    /// in progress to watch, and final renewals age out after 28 paces (at
    /// least 10 minutes; the dataset's own dossiers stay). Turn it off for a
    /// list of dossiers that stays put, as tests at a 100 ms pace want.
    #[serde(default = "default_renew")]
    pub renew_dossiers: bool,
    /// How long sandbox tokens stay valid.
    #[serde(default = "default_token_ttl", with = "humantime_serde")]
    pub token_ttl: Duration,
    /// The HMAC key that signs sandbox tokens, at least 32 bytes. Set it when
    /// several replicas must accept each other's tokens; by default every start
    /// draws a random key.
    #[serde(default)]
    pub token_secret: Option<String>,
    /// The snapshot URL of a traffic camera; `{camera_id}` and `{portal_id}`
    /// are replaced. The default points nowhere real: the sandbox does not
    /// hot-link the city's live portal.
    #[serde(default = "default_snapshot_url")]
    pub camera_snapshot_url: String,
    /// The provinces this instance serves its data as. The data is Ho Chi
    /// Minh City's (79); listing another province is a deliberate choice to
    /// demo with it there (check-config refuses a route to a province not
    /// listed).
    #[serde(default = "default_provinces")]
    pub provinces: Vec<String>,
}

fn default_provinces() -> Vec<String> {
    vec!["79".to_owned()]
}

fn default_pace() -> Duration {
    Duration::from_secs(30)
}

fn default_renew() -> bool {
    true
}

fn default_token_ttl() -> Duration {
    Duration::from_secs(3600)
}

fn default_snapshot_url() -> String {
    "https://sandbox.lienthong.invalid/cameras/{camera_id}.jpg".to_owned()
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            data_dir: None,
            dossier_pace: default_pace(),
            renew_dossiers: default_renew(),
            token_ttl: default_token_ttl(),
            token_secret: None,
            camera_snapshot_url: default_snapshot_url(),
            provinces: default_provinces(),
        }
    }
}

impl fmt::Debug for SandboxConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxConfig")
            .field("data_dir", &self.data_dir)
            .field("dossier_pace", &self.dossier_pace)
            .field("renew_dossiers", &self.renew_dossiers)
            .field("token_ttl", &self.token_ttl)
            .field("token_secret", &self.token_secret.as_ref().map(|_| "<redacted>"))
            .field("camera_snapshot_url", &self.camera_snapshot_url)
            .field("provinces", &self.provinces)
            .finish()
    }
}

impl SandboxConfig {
    /// Checks the options without I/O; returns every problem.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (i, code) in self.provinces.iter().enumerate() {
            if lienthong_adapter_core::admin::province(code).is_none() {
                problems.push(format!("provinces[{i}]: {code:?} is not a province code (for example \"79\")"));
            }
        }
        if self.dossier_pace < Duration::from_millis(100) {
            problems.push("dossier_pace: must be at least 100ms".to_owned());
        }
        if !(Duration::from_secs(60)..=Duration::from_secs(86_400)).contains(&self.token_ttl) {
            problems.push("token_ttl: must be between 1m and 24h".to_owned());
        }
        if self.token_secret.as_ref().is_some_and(|s| s.len() < 32) {
            problems.push("token_secret: must be at least 32 bytes".to_owned());
        }
        if !self.camera_snapshot_url.starts_with("https://") && !self.camera_snapshot_url.starts_with("http://") {
            problems.push("camera_snapshot_url: must be an http(s) URL".to_owned());
        }
        problems
    }
}
