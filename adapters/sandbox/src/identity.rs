//! The sandbox identity provider: VNeID-like JWTs for the demo citizens.
//!
//! Tokens are HS256 JWTs with the claim names of VNeID profiles (`SoDinhDanh`,
//! `acr`), issuer [`SANDBOX_ISSUER`] and key id `lienthong-sandbox`. Only the
//! sandbox that signed them (or one sharing its `token_secret`) accepts them.

use std::fmt;
use std::time::UNIX_EPOCH;

use async_trait::async_trait;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use lienthong_adapter_core::{
    AdapterError, BearerToken, CallContext, Capabilities, CitizenId, DemoCitizen, DemoIdentityIssuer, ErrorKind,
    Family, IdentityAdapter, IssuedToken, Principal, api,
};
use serde::{Deserialize, Serialize};

use crate::Sandbox;
use crate::error::unauthenticated;

/// The `iss` of sandbox tokens.
pub const SANDBOX_ISSUER: &str = "urn:lienthong:sandbox";
const AUDIENCE: &str = "lienthong";
const KEY_ID: &str = "lienthong-sandbox";
/// Tolerated clock difference, in seconds.
const SKEW_SECS: u64 = 30;

/// Whether `token` claims to be a sandbox token (by its header's key id). It
/// proves nothing: it lets a gateway without a sandbox say clearly why it
/// refuses the token.
pub fn is_sandbox_token(token: &str) -> bool {
    jsonwebtoken::decode_header(token).is_ok_and(|h| h.kid.as_deref() == Some(KEY_ID))
}

#[derive(Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    sub: String,
    #[serde(rename = "SoDinhDanh")]
    id_number: String,
    acr: String,
    iat: u64,
    nbf: u64,
    exp: u64,
}

/// The signing key. `Debug` never shows it.
pub(crate) struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenKeys(<redacted>)")
    }
}

impl TokenKeys {
    pub(crate) fn new(secret: Option<&str>) -> Result<Self, AdapterError> {
        let mut random = [0u8; 32];
        let secret = match secret {
            Some(s) => s.as_bytes(),
            None => {
                getrandom::fill(&mut random).map_err(|e| {
                    AdapterError::new(ErrorKind::Unexpected, format!("no randomness for the sandbox token key: {e}"))
                })?;
                &random[..]
            }
        };
        Ok(Self { encoding: EncodingKey::from_secret(secret), decoding: DecodingKey::from_secret(secret) })
    }
}

#[async_trait]
impl IdentityAdapter for Sandbox {
    fn capabilities(&self) -> Capabilities {
        Capabilities::family(Family::Identity)
    }

    async fn authenticate(&self, token: &BearerToken) -> Result<Principal, AdapterError> {
        let header = jsonwebtoken::decode_header(token.expose())
            .map_err(|_| unauthenticated("it is not a well-formed sandbox token"))?;
        if header.kid.as_deref() != Some(KEY_ID) {
            return Err(unauthenticated("it names a signing key (kid) the sandbox does not have"));
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[SANDBOX_ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud"]);
        // Times are checked below against the sandbox's clock, which a test
        // on a paused clock moves days ahead of the system's.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let data = jsonwebtoken::decode::<Claims>(token.expose(), &self.tokens.decoding, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            unauthenticated(match e.kind() {
                K::ExpiredSignature => "it has expired",
                K::ImmatureSignature => "it is not valid yet",
                K::InvalidIssuer => "it was issued by someone else",
                K::InvalidAudience => "it was issued for another audience",
                K::InvalidSignature => "its signature does not verify",
                K::InvalidAlgorithm => "its algorithm is not allowed",
                _ => "it is not a well-formed sandbox token",
            })
        })?;
        let now = self.now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        if data.claims.exp.saturating_add(SKEW_SECS) < now {
            return Err(unauthenticated("it has expired"));
        }
        if data.claims.nbf > now + SKEW_SECS {
            return Err(unauthenticated("it is not valid yet"));
        }
        if data.claims.iat > now + SKEW_SECS {
            return Err(unauthenticated("it claims to be issued in the future"));
        }
        if data.claims.exp.saturating_sub(data.claims.iat) > self.config.token_ttl.as_secs() {
            return Err(unauthenticated("its lifetime is longer than the sandbox issues (token_ttl)"));
        }
        let citizen_id =
            CitizenId::parse(&data.claims.id_number).map_err(|_| unauthenticated("its subject is malformed"))?;
        let citizen = self
            .data
            .citizens
            .iter()
            .find(|c| c.id == citizen_id)
            .ok_or_else(|| unauthenticated("its subject is not a demo citizen"))?;
        Ok(Principal { citizen_id, identity_level: citizen.profile.identity_level(), token: token.clone() })
    }

    async fn profile(&self, _: &CallContext, principal: &Principal) -> Result<api::CitizenProfile, AdapterError> {
        self.data
            .citizens
            .iter()
            .find(|c| c.id == principal.citizen_id)
            .map(|c| c.profile.clone())
            .ok_or_else(|| AdapterError::new(ErrorKind::NotFound, "the signed-in citizen has no profile"))
    }
}

impl DemoIdentityIssuer for Sandbox {
    fn demo_citizens(&self) -> Vec<DemoCitizen> {
        self.data
            .citizens
            .iter()
            .map(|c| DemoCitizen {
                handle: c.handle.clone(),
                full_name: c.profile.full_name.clone(),
                identity_level: c.profile.identity_level(),
                dossier_count: self.dossier_count(&c.id),
            })
            .collect()
    }

    fn issue_token(&self, handle: &str) -> Result<IssuedToken, AdapterError> {
        let citizen = self
            .data
            .citizens
            .iter()
            .find(|c| c.handle == handle)
            .ok_or_else(|| AdapterError::not_found("demo citizen").with_field("handle"))?;
        let now = self.now();
        let iat = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let expires_at = now + self.config.token_ttl;
        let claims = Claims {
            iss: SANDBOX_ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            sub: citizen.handle.clone(),
            id_number: citizen.id.expose().to_owned(),
            acr: match citizen.profile.identity_level() {
                api::IdentityLevel::IdentityLevel2 => "2",
                _ => "1",
            }
            .to_owned(),
            iat,
            nbf: iat,
            exp: iat + self.config.token_ttl.as_secs(),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(KEY_ID.to_owned());
        let token = jsonwebtoken::encode(&header, &claims, &self.tokens.encoding)
            .map_err(|e| AdapterError::new(ErrorKind::Unexpected, format!("signing a sandbox token failed: {e}")))?;
        Ok(IssuedToken { token: BearerToken::new(token), expires_at })
    }
}

#[cfg(test)]
mod fuzz_tests {
    use proptest::prelude::*;

    use super::*;
    use crate::SandboxConfig;

    fn sandbox() -> &'static Sandbox {
        static SANDBOX: std::sync::OnceLock<Sandbox> = std::sync::OnceLock::new();
        SANDBOX.get_or_init(|| Sandbox::new(SandboxConfig::default()).unwrap())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Arbitrary and almost-valid tokens: UNAUTHENTICATED, never a
        /// panic, never a citizen.
        #[test]
        fn arbitrary_tokens_are_refused(
            token in prop_oneof![
                "[ -~]{0,200}",
                "eyJ[A-Za-z0-9_-]{0,60}\\.[A-Za-z0-9_-]{0,120}\\.[A-Za-z0-9_-]{0,60}",
            ],
        ) {
            let _ = is_sandbox_token(&token);
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let e = rt.block_on(sandbox().authenticate(&BearerToken::new(&token))).unwrap_err();
            prop_assert_eq!(e.kind(), ErrorKind::Unauthenticated);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const SECRET: &str = "a test secret that signs sandbox tokens";

    type Edit = dyn FnOnce(&mut Claims, &mut jsonwebtoken::Header);

    fn sandbox() -> Sandbox {
        Sandbox::new(crate::SandboxConfig { token_secret: Some(SECRET.to_owned()), ..Default::default() }).unwrap()
    }

    /// A token for Lan signed with the sandbox's secret: its claims and kid
    /// altered by `edit`.
    fn forged(sandbox: &Sandbox, edit: impl FnOnce(&mut Claims, &mut jsonwebtoken::Header)) -> BearerToken {
        let now = sandbox.now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let mut claims = Claims {
            iss: SANDBOX_ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            sub: "lan".to_owned(),
            id_number: "079190012345".to_owned(),
            acr: "2".to_owned(),
            iat: now,
            nbf: now,
            exp: now + 600,
        };
        let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
        header.kid = Some(KEY_ID.to_owned());
        edit(&mut claims, &mut header);
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        BearerToken::new(jsonwebtoken::encode(&header, &claims, &key).unwrap())
    }

    #[tokio::test]
    async fn tokens_the_sandbox_never_issues_are_refused_even_when_signed_with_its_key() {
        let sandbox = sandbox();
        assert!(sandbox.authenticate(&forged(&sandbox, |_, _| {})).await.is_ok());
        let cases: [(&str, Box<Edit>); 4] = [
            ("lifetime is longer", Box::new(|c, _| c.exp = c.iat + 100 * 365 * 24 * 3600)),
            ("issued in the future", Box::new(|c, _| c.iat += 3600)),
            ("signing key (kid)", Box::new(|_, h| h.kid = Some("another-key".to_owned()))),
            ("signing key (kid)", Box::new(|_, h| h.kid = None)),
        ];
        for (says, edit) in cases {
            let e = sandbox.authenticate(&forged(&sandbox, edit)).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{says}");
            assert!(e.message().contains(says), "{says}: {}", e.message());
        }
    }
}
