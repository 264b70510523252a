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
//! - Or opaque tokens checked by RFC 7662 introspection, authenticated as
//!   this gateway; the provider's answers cached per token (refusals briefly).
//! - The profile from VNeID's claims (`SoDinhDanh`, `HoVaTen`,
//!   `NgayThangNamSinh`, `GioiTinh`, `acr`) or any provider's (names in
//!   `[claims]`), read from the token, userinfo or introspection; the ID
//!   number from the token or, when it lacks it, from there. The identity
//!   level always comes from the token presented.

#![forbid(unsafe_code)]
mod answers;
mod config;
mod core;
mod error;
mod identity;

use std::sync::Arc;

use async_trait::async_trait;
use lienthong_adapter_core::{
    AdapterError, AdapterFactory, AdapterRegistry, AdapterSet, BuildContext, ErrorKind, Family,
};
use serde::Deserialize;

pub use crate::config::{ClaimNames, ClientAuth, IntrospectionConfig, ProfileSource, TokenCheck, VneidConfig};
pub use crate::identity::VneidAdapter;

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
        // Every key at fault, each by its path; then what the rest means.
        lienthong_adapter_core::options::problems(options, |c: VneidConfig| c.validate())
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
