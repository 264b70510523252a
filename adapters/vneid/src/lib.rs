//! Citizen identity through VNeID, the national electronic identity, over
//! OpenID Connect.
//!
//! - Discovery from `<issuer>/.well-known/openid-configuration`; its issuer
//!   must be the configured one.
//! - Signing keys from the provider's JWKS, cached for `jwks_refresh`; a token
//!   signed with an unknown `kid` triggers one refetch (key rotation), itself
//!   rate-limited by `jwks_min_refetch` so that forged tokens cannot make us
//!   hammer the provider.
//! - Tokens: RS256 or ES256 only (`none` and every HMAC algorithm are refused,
//!   so a public key can never be used as an HMAC secret); `iss`, `aud`,
//!   `exp` and `nbf` checked with a bounded clock skew.
//! - The profile from VNeID's claims (`SoDinhDanh`, `HoVaTen`,
//!   `NgayThangNamSinh`, `GioiTinh`, `acr`), read from the token or from the
//!   userinfo endpoint.

#![forbid(unsafe_code)]

mod config;
mod core;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, Validation};
use lienthong_adapter_core::{
    AdapterError, AdapterFactory, AdapterRegistry, AdapterSet, BearerToken, BuildContext, CallContext, Capabilities,
    CitizenId, ErrorKind, Family, IdentityAdapter, Principal, api,
};
use serde::Deserialize;

pub use config::{ProfileSource, VneidConfig};

use crate::core::Provider;

/// The claims of a VNeID token or userinfo answer that Lienthong reads.
#[derive(Deserialize)]
struct VneidClaims {
    /// The 12-digit personal identification number.
    #[serde(rename = "SoDinhDanh")]
    id_number: String,
    #[serde(rename = "HoVaTen", default)]
    full_name: Option<String>,
    /// `YYYYMMDD`.
    #[serde(rename = "NgayThangNamSinh", default)]
    birth_date: Option<String>,
    /// `Nam` or `Nữ` (or `1` / `2`).
    #[serde(rename = "GioiTinh", default)]
    sex: Option<String>,
    /// The 5-digit ward code of permanent residence.
    #[serde(rename = "MaXaThuongTru", default)]
    residence_ward: Option<String>,
    #[serde(default)]
    acr: Option<String>,
    /// Issued at (seconds since the epoch): required of tokens, absent from
    /// userinfo answers.
    #[serde(default)]
    iat: Option<u64>,
    #[serde(default)]
    exp: Option<u64>,
}

/// The VNeID identity adapter.
pub struct VneidAdapter {
    provider: Provider,
}

impl fmt::Debug for VneidAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VneidAdapter").field("issuer", &self.provider.config().issuer).finish_non_exhaustive()
    }
}

fn unauthenticated(why: &str) -> AdapterError {
    AdapterError::new(ErrorKind::Unauthenticated, format!("the citizen token is not valid: {why}"))
}

fn algorithm(name: &str) -> Option<Algorithm> {
    match name {
        "RS256" => Some(Algorithm::RS256),
        "ES256" => Some(Algorithm::ES256),
        _ => None,
    }
}

/// A token issued in the future (beyond the skew), or claiming a lifetime
/// beyond `max_token_lifetime`, is refused: the provider's policy issues
/// neither, so such a token was minted elsewhere or by a broken issuer.
fn check_lifetime(claims: &VneidClaims, config: &VneidConfig, now: SystemTime) -> Result<(), AdapterError> {
    let now = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (Some(iat), Some(exp)) = (claims.iat, claims.exp) else {
        return Err(unauthenticated("it lacks a required claim"));
    };
    if iat > now + config.clock_skew.as_secs() {
        return Err(unauthenticated("it claims to be issued in the future"));
    }
    if exp.saturating_sub(iat) > config.max_token_lifetime.as_secs() {
        return Err(unauthenticated("its lifetime is longer than the provider issues (max_token_lifetime)"));
    }
    Ok(())
}

impl VneidAdapter {
    /// An adapter for `config`; no I/O until the first token.
    pub fn new(config: VneidConfig) -> Result<Self, AdapterError> {
        let problems = config.validate();
        if !problems.is_empty() {
            return Err(AdapterError::new(ErrorKind::InvalidArgument, problems.join("; ")));
        }
        Ok(Self { provider: Provider::new(config)? })
    }

    /// Spends `budget` on each request to the provider (and on nothing else:
    /// a token checked against cached keys costs the provider nothing).
    pub fn with_budget(mut self, budget: Arc<dyn lienthong_adapter_core::UpstreamBudget>) -> Self {
        self.provider.budget = budget;
        self
    }

    /// Verifies `token` and returns its claims.
    async fn verify(&self, token: &str) -> Result<VneidClaims, AdapterError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| unauthenticated("it is not a well-formed JWT"))?;
        let config = self.provider.config();
        let allowed = config.algorithms.iter().filter_map(|a| algorithm(a)).any(|a| a == header.alg);
        if !allowed {
            return Err(unauthenticated("its signature algorithm is not accepted"));
        }
        let key = self.provider.key(header.kid.as_deref(), header.alg).await?;
        let mut validation = Validation::new(key.algorithm);
        // The provider's own spelling of its issuer (discovery checked it
        // matches config, trailing slash or not): `iss` must equal it exactly.
        let issuer = self.provider.discovery().await?.issuer.clone();
        validation.set_issuer(&[issuer.as_str()]);
        validation.set_audience(&[config.audience.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = config.clock_skew.as_secs();
        validation.validate_nbf = true;
        let data = jsonwebtoken::decode::<VneidClaims>(token, &key.key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            unauthenticated(match e.kind() {
                K::ExpiredSignature => "it has expired",
                K::ImmatureSignature => "it is not valid yet",
                K::InvalidIssuer => "it was issued by someone else",
                K::InvalidAudience => "it was issued for another audience",
                K::InvalidSignature => "its signature does not verify",
                K::MissingRequiredClaim(_) => "it lacks a required claim",
                _ => "its claims are malformed",
            })
        })?;
        check_lifetime(&data.claims, config, SystemTime::now())?;
        Ok(data.claims)
    }

    fn level(&self, acr: Option<&str>) -> api::IdentityLevel {
        match acr {
            Some(a) if self.provider.config().level2_acr_values.iter().any(|v| v == a) => {
                api::IdentityLevel::IdentityLevel2
            }
            _ => api::IdentityLevel::IdentityLevel1,
        }
    }

    fn profile_of(&self, claims: VneidClaims) -> api::CitizenProfile {
        let birth_date = claims.birth_date.as_deref().and_then(|d| {
            let ok = d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit());
            ok.then(|| api::Date {
                year: d[..4].parse().unwrap_or(0),
                month: d[4..6].parse().unwrap_or(0),
                day: d[6..].parse().unwrap_or(0),
            })
        });
        let sex = match claims.sex.as_deref().map(str::trim) {
            Some("Nam" | "nam" | "1" | "M") => api::Sex::Male,
            Some("Nữ" | "nữ" | "Nu" | "2" | "F") => api::Sex::Female,
            _ => api::Sex::Unspecified,
        };
        let residence = claims.residence_ward.filter(|w| w.len() == 5).map(|ward| {
            let unit = lienthong_adapter_core::admin::ward(&ward);
            api::Address {
                street: String::new(),
                ward_name: unit.map(|w| w.full_name.to_owned()).unwrap_or_default(),
                province_code: unit.map(|w| w.province_code.to_owned()).unwrap_or_default(),
                ward_code: ward,
            }
        });
        api::CitizenProfile {
            identity_level: self.level(claims.acr.as_deref()) as i32,
            id_number: claims.id_number,
            id_number_masked: false,
            full_name: claims.full_name.unwrap_or_default(),
            birth_date,
            sex: sex as i32,
            residence,
        }
    }
}

#[async_trait]
impl IdentityAdapter for VneidAdapter {
    fn capabilities(&self) -> Capabilities {
        Capabilities::family(Family::Identity)
    }

    async fn authenticate(&self, token: &BearerToken) -> Result<Principal, AdapterError> {
        let claims = self.verify(token.expose()).await?;
        let citizen_id = CitizenId::parse(&claims.id_number)
            .map_err(|_| unauthenticated("its SoDinhDanh claim is not a personal identification number"))?;
        Ok(Principal { citizen_id, identity_level: self.level(claims.acr.as_deref()), token: token.clone() })
    }

    async fn profile(&self, _: &CallContext, principal: &Principal) -> Result<api::CitizenProfile, AdapterError> {
        let claims = match self.provider.config().profile_source {
            ProfileSource::Claims => self.verify(principal.token.expose()).await?,
            ProfileSource::Userinfo => {
                let url = self.provider.discovery().await?.userinfo_endpoint.clone().ok_or_else(|| {
                    AdapterError::new(ErrorKind::Unavailable, "the identity provider publishes no userinfo endpoint")
                        .with_temporary(false)
                })?;
                let claims: VneidClaims =
                    self.provider.get_json("userinfo", &url, Some(principal.token.expose())).await?;
                if claims.id_number != principal.citizen_id.expose() {
                    return Err(AdapterError::new(
                        ErrorKind::Unauthenticated,
                        "the identity provider's profile is of another citizen",
                    ));
                }
                claims
            }
        };
        Ok(self.profile_of(claims))
    }
}

/// Builds VNeID adapters.
#[derive(Debug, Default)]
pub struct VneidFactory;

#[async_trait]
impl AdapterFactory for VneidFactory {
    fn kind(&self) -> &'static str {
        "vneid"
    }

    fn description(&self) -> &'static str {
        "citizen identity through VNeID (OpenID Connect)"
    }

    fn families(&self) -> &'static [Family] {
        &[Family::Identity]
    }

    fn validate(&self, options: &serde_json::Value) -> Vec<String> {
        match VneidConfig::deserialize(options) {
            Ok(c) => c.validate(),
            Err(e) => vec![e.to_string()],
        }
    }

    async fn build(&self, ctx: BuildContext) -> Result<AdapterSet, AdapterError> {
        let config = VneidConfig::deserialize(&ctx.options)
            .map_err(|e| AdapterError::new(ErrorKind::InvalidArgument, e.to_string()))?;
        let adapter = Arc::new(VneidAdapter::new(config)?.with_budget(ctx.budget.clone()));
        // Warm the caches, but start even when the provider is down: tokens
        // are refused with UNAVAILABLE until it answers.
        if let Err(e) = adapter.provider.discovery().await {
            tracing::warn!(instance = %ctx.instance, error = %e, "VNeID discovery failed at start; will retry on first use");
        }
        Ok(AdapterSet { identity: Some(adapter), budgets_itself: true, ..Default::default() })
    }
}

/// Registers the `vneid` kind.
pub fn register(registry: &mut AdapterRegistry) {
    registry.register(Arc::new(VneidFactory));
}
