//! The remote adapter's options.

use std::path::PathBuf;
use std::time::Duration;

use lienthong_adapter_core::Family;
use serde::Deserialize;

/// TLS towards the adapter service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteTlsConfig {
    /// PEM file of the CA that signed the adapter's certificate; without it
    /// the system roots are used.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM certificate presented to the adapter (mutual TLS).
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    /// PEM key of that certificate.
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
    /// The name to verify in the adapter's certificate, when not the
    /// endpoint's host.
    #[serde(default)]
    pub domain_name: Option<String>,
}

/// `[adapters.<name>]` with `kind = "remote"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteConfig {
    /// The adapter service, `https://host:port` (or `http://` for a local one).
    pub endpoint: String,
    /// The families this instance may serve (default: all).
    #[serde(default)]
    pub families: Option<Vec<String>>,
    /// Longest time a call may take (the caller's deadline, when shorter, wins).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Connection timeout.
    #[serde(default = "default_connect", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// A PEM file of CA certificates trusted for the adapter service's
    /// certificate, as every HTTP adapter spells it (the same as
    /// `tls.ca_file`; set one of the two).
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// TLS settings, for https endpoints.
    #[serde(default)]
    pub tls: Option<RemoteTlsConfig>,
    /// Whether ListMyDossiers carries the citizen's raw token (for a
    /// registry that verifies it again). Off by default: the adapter gets
    /// the ID number the gateway verified, and no credential it could replay.
    #[serde(default)]
    pub forward_citizen_token: bool,
}

impl RemoteConfig {
    /// The families `families` names (unknown names left out); `None` when
    /// the key is absent (all families).
    pub fn allowed_families(&self) -> Option<Vec<Family>> {
        self.families.as_ref().map(|names| names.iter().filter_map(|f| Family::parse(f)).collect())
    }

    /// The CA file, whichever way it was given.
    pub(crate) fn ca_file(&self) -> Option<&PathBuf> {
        self.tls_ca_file.as_ref().or_else(|| self.tls.as_ref().and_then(|t| t.ca_file.as_ref()))
    }
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_connect() -> Duration {
    Duration::from_secs(3)
}

impl RemoteConfig {
    /// Checks the options without I/O; returns every problem.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let https = self.endpoint.starts_with("https://");
        if !https && !self.endpoint.starts_with("http://") {
            problems.push("endpoint: must be an https:// (or http://) URL".to_owned());
        }
        if self.tls.is_some() && !https {
            problems.push("tls: only with an https:// endpoint".to_owned());
        }
        if self.tls_ca_file.is_some() && !https {
            problems.push("tls_ca_file: only with an https:// endpoint".to_owned());
        }
        if self.tls_ca_file.is_some() && self.tls.as_ref().is_some_and(|t| t.ca_file.is_some()) {
            problems.push("tls_ca_file: tls.ca_file says the same; set one of the two".to_owned());
        }
        // check-config reads the files, so a wrong path shows before start.
        let files = [
            ("tls_ca_file", self.ca_file(), "CERTIFICATE-----"),
            ("tls.client_cert_file", self.tls.as_ref().and_then(|t| t.client_cert_file.as_ref()), "CERTIFICATE-----"),
            ("tls.client_key_file", self.tls.as_ref().and_then(|t| t.client_key_file.as_ref()), "PRIVATE KEY-----"),
        ];
        for (name, path, marker) in files {
            let Some(path) = path else { continue };
            match std::fs::read(path) {
                Err(e) => problems.push(format!("{name}: cannot read {}: {e}", path.display())),
                Ok(pem) if !String::from_utf8_lossy(&pem).contains(marker) => {
                    problems.push(format!("{name}: {} holds no PEM {}", path.display(), marker.trim_end_matches('-')));
                }
                Ok(_) => {}
            }
        }
        for (i, f) in self.families.iter().flatten().enumerate() {
            if Family::parse(f).is_none() {
                problems.push(format!("families[{i}]: unknown family {f:?}"));
            }
        }
        if !(Duration::from_millis(50)..=Duration::from_secs(120)).contains(&self.timeout) {
            problems.push("timeout: must be between 50ms and 2m".to_owned());
        }
        problems
    }
}
