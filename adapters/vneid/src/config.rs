//! The VNeID adapter's options.

use std::time::Duration;

use serde::Deserialize;

/// Where the citizen's profile comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ProfileSource {
    /// The verified token's own claims (no extra request).
    #[default]
    Claims,
    /// The provider's userinfo endpoint, called with the citizen's token.
    Userinfo,
}

/// `[adapters.<name>]` with `kind = "vneid"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VneidConfig {
    /// The issuer: tokens' `iss` must equal it, and discovery is fetched from
    /// `<issuer>/.well-known/openid-configuration` unless `discovery_url` says
    /// otherwise.
    pub issuer: String,
    /// This gateway's client id: tokens' `aud` must contain it.
    pub audience: String,
    /// The discovery document's URL, when not under the issuer.
    #[serde(default)]
    pub discovery_url: Option<String>,
    /// Signature algorithms accepted: a subset of `RS256` and `ES256`.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Tolerated clock difference for `exp` and `nbf`; at most 5m.
    #[serde(default = "default_skew", with = "humantime_serde")]
    pub clock_skew: Duration,
    /// The longest lifetime (`exp` − `iat`) a token may claim; a token
    /// claiming more was not issued by the provider's usual policy and is
    /// refused. At most 7d.
    #[serde(default = "default_max_token_lifetime", with = "humantime_serde")]
    pub max_token_lifetime: Duration,
    /// How long fetched signing keys are trusted before a routine refetch.
    #[serde(default = "default_jwks_refresh", with = "humantime_serde")]
    pub jwks_refresh: Duration,
    /// The least time between a fetch of the signing keys and a refetch
    /// caused by an unknown `kid`: forged kids cannot make us hammer the
    /// provider, and a genuine new key is known at most this long after its
    /// first token (meanwhile its tokens are UNAVAILABLE with a retry delay,
    /// not UNAUTHENTICATED).
    #[serde(default = "default_min_refetch", with = "humantime_serde")]
    pub jwks_min_refetch: Duration,
    /// Timeout of each request to the provider.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Where profiles come from.
    #[serde(default)]
    pub profile_source: ProfileSource,
    /// `acr` values that mean a level-2 (verified) account; any other is level 1.
    #[serde(default = "default_level2_acr")]
    pub level2_acr_values: Vec<String>,
    /// Allow plain-http provider URLs. Only for local test providers.
    #[serde(default)]
    pub allow_insecure_http: bool,
}

fn default_algorithms() -> Vec<String> {
    vec!["RS256".into(), "ES256".into()]
}
fn default_skew() -> Duration {
    Duration::from_secs(60)
}
fn default_max_token_lifetime() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_jwks_refresh() -> Duration {
    Duration::from_secs(3600)
}
fn default_min_refetch() -> Duration {
    Duration::from_secs(5)
}
fn default_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_level2_acr() -> Vec<String> {
    vec!["2".into(), "loa2".into(), "level2".into()]
}

/// The algorithms this adapter can verify.
pub const SUPPORTED_ALGORITHMS: &[&str] = &["RS256", "ES256"];

impl VneidConfig {
    /// Checks the options without I/O; returns every problem.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let url_ok = |u: &str| u.starts_with("https://") || (self.allow_insecure_http && u.starts_with("http://"));
        if !url_ok(&self.issuer) {
            problems.push("issuer: must be an https:// URL (http:// only with allow_insecure_http)".to_owned());
        }
        if let Some(d) = &self.discovery_url
            && !url_ok(d)
        {
            problems.push("discovery_url: must be an https:// URL (http:// only with allow_insecure_http)".to_owned());
        }
        if self.audience.trim().is_empty() {
            problems.push("audience: must be this gateway's client id at the provider".to_owned());
        }
        if self.algorithms.is_empty() {
            problems.push("algorithms: list at least one of RS256, ES256".to_owned());
        }
        for (i, a) in self.algorithms.iter().enumerate() {
            if !SUPPORTED_ALGORITHMS.contains(&a.as_str()) {
                problems
                    .push(format!("algorithms[{i}]: {a:?} is not accepted; use RS256 or ES256 (never none or HS*)"));
            }
        }
        if self.clock_skew > Duration::from_secs(300) {
            problems.push("clock_skew: must be at most 5m".to_owned());
        }
        if self.max_token_lifetime.is_zero() || self.max_token_lifetime > Duration::from_secs(7 * 24 * 3600) {
            problems.push("max_token_lifetime: must be more than 0 and at most 7d".to_owned());
        }
        if self.jwks_min_refetch > self.jwks_refresh {
            problems.push("jwks_min_refetch: must not exceed jwks_refresh".to_owned());
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(60)).contains(&self.timeout) {
            problems.push("timeout: must be between 100ms and 60s".to_owned());
        }
        problems
    }

    /// The discovery document's URL.
    pub fn discovery(&self) -> String {
        self.discovery_url
            .clone()
            .unwrap_or_else(|| format!("{}/.well-known/openid-configuration", self.issuer.trim_end_matches('/')))
    }
}
