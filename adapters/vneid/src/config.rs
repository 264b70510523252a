//! The VNeID adapter's options.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Where the citizen's profile comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ProfileSource {
    /// The verified token's own claims (no extra request).
    #[default]
    Claims,
    /// The provider's userinfo endpoint, called with the citizen's token
    /// (OIDC Core 5.3). Only for tokens the provider's userinfo accepts:
    /// many providers refuse access tokens issued for a resource.
    Userinfo,
    /// The provider's token introspection endpoint (RFC 7662), called with
    /// this gateway's client credentials (`[introspection]`).
    Introspection,
}

/// How a citizen token is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TokenCheck {
    /// The token is a JWT verified here against the provider's published
    /// keys: no request to the provider per token.
    #[default]
    Signature,
    /// The provider is asked about the token (RFC 7662 introspection); the
    /// only way to accept opaque tokens. Answers are cached per token.
    Introspection,
}

/// The names of the claims the adapter reads. VNeID's by default; a standard
/// OIDC provider typically uses `sub`/a custom claim, `name`, `birthdate`,
/// `gender` and `acr`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimNames {
    /// The 12-digit personal identification number (required, from the token
    /// or, when the token lacks it, from `profile_source`).
    pub id_number: String,
    /// The full name.
    pub full_name: String,
    /// The birth date, `YYYYMMDD` (VNeID) or `YYYY-MM-DD` (OIDC `birthdate`).
    pub birth_date: String,
    /// The sex: `Nam`/`Nữ`, `1`/`2`, or OIDC's `male`/`female`.
    pub sex: String,
    /// The 5-digit ward code of permanent residence.
    pub residence_ward: String,
    /// The assurance level of the login (`acr`): compared with
    /// `level2_acr_values`, always read from the token presented.
    pub level: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        Self {
            id_number: "SoDinhDanh".into(),
            full_name: "HoVaTen".into(),
            birth_date: "NgayThangNamSinh".into(),
            sex: "GioiTinh".into(),
            residence_ward: "MaXaThuongTru".into(),
            level: "acr".into(),
        }
    }
}

/// How the gateway authenticates itself to the introspection endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// HTTP Basic with the form-encoded id and secret (RFC 6749 2.3.1).
    #[default]
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
}

/// `[adapters.<name>.introspection]`: RFC 7662 token introspection.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionConfig {
    /// The endpoint; default: the discovery document's
    /// `introspection_endpoint`.
    #[serde(default)]
    pub url: Option<String>,
    /// This gateway's client id at the provider.
    pub client_id: String,
    /// Its secret (set it from the environment:
    /// `LIENTHONG_ADAPTERS__<NAME>__INTROSPECTION__CLIENT_SECRET`).
    pub client_secret: String,
    /// How the credentials are sent.
    #[serde(default)]
    pub auth_method: ClientAuth,
}

impl std::fmt::Debug for IntrospectionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntrospectionConfig")
            .field("url", &self.url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("auth_method", &self.auth_method)
            .finish()
    }
}

/// `[adapters.<name>]` with `kind = "vneid"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VneidConfig {
    /// The issuer: tokens' `iss` must equal it, and discovery is fetched from
    /// `<issuer>/.well-known/openid-configuration` unless `discovery_url` says
    /// otherwise.
    pub issuer: String,
    /// What tokens' `aud` must name (one of these): for access tokens, the
    /// resource indicator or API identifier the provider issues them for
    /// (RFC 8707/9068, for example `urn:lienthong:gateway`); for ID tokens,
    /// this gateway's client id. A string or a list.
    #[serde(deserialize_with = "one_or_many")]
    pub audience: Vec<String>,
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
    /// How tokens are checked: `signature` (a JWT verified here) or
    /// `introspection` (asked of the provider, for opaque tokens).
    #[serde(default)]
    pub token_check: TokenCheck,
    /// Where the profile (and the ID number, when the token lacks it) comes
    /// from: `claims`, `userinfo` or `introspection`.
    #[serde(default)]
    pub profile_source: ProfileSource,
    /// The names of the claims read.
    #[serde(default)]
    pub claims: ClaimNames,
    /// Token introspection, for `token_check` or `profile_source`
    /// `introspection`.
    #[serde(default)]
    pub introspection: Option<IntrospectionConfig>,
    /// How long the provider's answer about one token (introspection,
    /// userinfo) is reused: the token's remaining life, at most this (also
    /// how long a revoked token may still be accepted).
    #[serde(default = "default_token_cache", with = "humantime_serde")]
    pub token_cache: Duration,
    /// How long the provider's refusal of a token is remembered, so a
    /// refused token does not cost a provider request on every call.
    #[serde(default = "default_refusal_cache", with = "humantime_serde")]
    pub refusal_cache: Duration,
    /// A PEM file of CA certificates trusted besides the system's, for a
    /// provider whose certificate a private CA signed.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
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
fn default_token_cache() -> Duration {
    Duration::from_secs(60)
}
fn default_refusal_cache() -> Duration {
    Duration::from_secs(10)
}

/// A string or a list of strings.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
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
        if self.audience.is_empty() || self.audience.iter().any(|a| a.trim().is_empty()) {
            problems.push(
                "audience: name what tokens are issued for: the resource indicator of access tokens (or the client id of ID tokens)"
                    .to_owned(),
            );
        }
        let needs_introspection =
            self.token_check == TokenCheck::Introspection || self.profile_source == ProfileSource::Introspection;
        match &self.introspection {
            None if needs_introspection => problems.push(
                "introspection: token_check or profile_source \"introspection\" needs [introspection] with client_id and client_secret"
                    .to_owned(),
            ),
            Some(i) => {
                if i.client_id.trim().is_empty() || i.client_secret.is_empty() {
                    problems.push(
                        "introspection: client_id and client_secret must not be empty (set the secret from the environment: LIENTHONG_ADAPTERS__<INSTANCE>__INTROSPECTION__CLIENT_SECRET)"
                            .to_owned(),
                    );
                }
                if let Some(u) = &i.url
                    && !url_ok(u)
                {
                    problems.push(
                        "introspection.url: must be an https:// URL (http:// only with allow_insecure_http)".to_owned(),
                    );
                }
            }
            None => {}
        }
        let names = [
            ("id_number", &self.claims.id_number),
            ("full_name", &self.claims.full_name),
            ("birth_date", &self.claims.birth_date),
            ("sex", &self.claims.sex),
            ("residence_ward", &self.claims.residence_ward),
            ("level", &self.claims.level),
        ];
        for (field, name) in names {
            if name.trim().is_empty() {
                problems.push(format!("claims.{field}: must name a claim"));
            }
        }
        if self.token_cache > Duration::from_secs(3600) {
            problems.push("token_cache: must be at most 1h".to_owned());
        }
        if self.refusal_cache > Duration::from_secs(300) {
            problems.push("refusal_cache: must be at most 5m".to_owned());
        }
        if let Some(path) = &self.tls_ca_file
            && let Err(e) = lienthong_adapter_http::check_ca_file(path)
        {
            problems.push(format!("tls_ca_file: {e}"));
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
