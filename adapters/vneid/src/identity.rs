//! The identity family: a citizen token checked (signature or
//! introspection), the citizen's ID number and level, and the profile.

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use jsonwebtoken::{Algorithm, Validation};
use lienthong_adapter_core::{
    AdapterError, BearerToken, CallContext, Capabilities, CitizenId, ErrorKind, Family, IdentityAdapter, Principal, api,
};

use crate::answers::{Answers, Source};
use crate::config::{ProfileSource, TokenCheck, VneidConfig};
use crate::core::{Claims, Provider};
use crate::error::{UNSUPPORTED_TOKEN_TYPE, unauthenticated};

/// The VNeID identity adapter.
pub struct VneidAdapter {
    pub(crate) provider: Provider,
    answers: Answers,
}

impl fmt::Debug for VneidAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VneidAdapter").field("issuer", &self.provider.config().issuer).finish_non_exhaustive()
    }
}

fn algorithm(name: &str) -> Option<Algorithm> {
    match name {
        "RS256" => Some(Algorithm::RS256),
        "ES256" => Some(Algorithm::ES256),
        _ => None,
    }
}

/// A claim's text (never logged; names, not values, go into messages).
fn text<'a>(claims: &'a Claims, name: &str) -> Option<&'a str> {
    claims.get(name).and_then(serde_json::Value::as_str).map(str::trim).filter(|s| !s.is_empty())
}

/// A numeric claim (seconds since the epoch).
fn seconds(claims: &Claims, name: &str) -> Option<u64> {
    claims.get(name).and_then(serde_json::Value::as_u64)
}

/// A token issued in the future (beyond the skew), or claiming a lifetime
/// beyond `max_token_lifetime`, is refused: the provider's policy issues
/// neither, so such a token was minted elsewhere or by a broken issuer.
fn check_lifetime(claims: &Claims, config: &VneidConfig, now: SystemTime) -> Result<(), AdapterError> {
    let now = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let Some(iat) = seconds(claims, "iat") else {
        return Err(unauthenticated("it lacks the `iat` claim"));
    };
    let Some(exp) = seconds(claims, "exp") else {
        return Err(unauthenticated("it lacks the `exp` claim"));
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
        let answers = Answers::new(config.token_cache, config.refusal_cache);
        Ok(Self { provider: Provider::new(config)?, answers })
    }

    /// Spends `budget` on each request to the provider (and on nothing else:
    /// a token checked against cached keys costs the provider nothing).
    pub fn with_budget(mut self, budget: Arc<dyn lienthong_adapter_core::UpstreamBudget>) -> Self {
        self.provider.budget = budget;
        self
    }

    /// The claims of `token` once checked: verified as a JWT against the
    /// provider's keys, or as the provider's introspection answer.
    async fn check(&self, token: &str) -> Result<Claims, AdapterError> {
        match self.provider.config().token_check {
            TokenCheck::Signature => self.verify(token).await,
            TokenCheck::Introspection => self.asked(Source::Introspection, token).await,
        }
    }

    /// What the provider answered about `token` at `source` (cached); its
    /// refusal is UNAUTHENTICATED.
    async fn asked(&self, source: Source, token: &str) -> Result<Claims, AdapterError> {
        let verdict = self
            .answers
            .get(source, token, async {
                match source {
                    Source::Userinfo => self.provider.userinfo(token).await,
                    Source::Introspection => self.provider.introspect(token).await,
                }
            })
            .await?;
        match verdict.as_ref() {
            Ok(claims) => Ok(claims.clone()),
            Err(why) => Err(unauthenticated(why)),
        }
    }

    /// Verifies `token` as a JWT and returns its claims.
    async fn verify(&self, token: &str) -> Result<Claims, AdapterError> {
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
        validation.set_audience(&config.audience);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = config.clock_skew.as_secs();
        validation.validate_nbf = true;
        let data = jsonwebtoken::decode::<Claims>(token, &key.key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::ExpiredSignature => unauthenticated("it has expired"),
                K::ImmatureSignature => unauthenticated("it is not valid yet"),
                K::InvalidIssuer => unauthenticated("it was issued by someone else"),
                K::InvalidAudience => unauthenticated("it was issued for another audience"),
                K::InvalidSignature => unauthenticated("its signature does not verify"),
                K::MissingRequiredClaim(claim) => unauthenticated(&format!("it lacks the `{claim}` claim")),
                _ => unauthenticated("its claims are malformed (exp, nbf, iss or aud of the wrong type)"),
            }
        })?;
        check_lifetime(&data.claims, config, SystemTime::now())?;
        Ok(data.claims)
    }

    /// The level of the login behind `claims` (a token's, never a cached
    /// profile's).
    fn level(&self, claims: &Claims) -> api::IdentityLevel {
        let config = self.provider.config();
        match text(claims, &config.claims.level) {
            Some(a) if config.level2_acr_values.iter().any(|v| v == a) => api::IdentityLevel::IdentityLevel2,
            _ => api::IdentityLevel::IdentityLevel1,
        }
    }

    /// Whether the profile's claims are the checked token's own (no second
    /// answer to ask for).
    fn profile_is_checked(&self) -> bool {
        let config = self.provider.config();
        match config.profile_source {
            ProfileSource::Claims => true,
            ProfileSource::Introspection => config.token_check == TokenCheck::Introspection,
            ProfileSource::Userinfo => false,
        }
    }

    /// The claims `profile_source` names for `token`, whose own checked
    /// claims are `checked`.
    async fn profile_claims(&self, token: &str, checked: Claims) -> Result<Claims, AdapterError> {
        let config = self.provider.config();
        let source = match config.profile_source {
            _ if self.profile_is_checked() => return Ok(checked),
            ProfileSource::Userinfo => Source::Userinfo,
            _ => Source::Introspection,
        };
        let answer = self.asked(source, token).await;
        // OIDC Core 5.3.2: an answer about another subject than the token's
        // is not used.
        if let (Ok(answer), Some(sub)) = (&answer, checked.get("sub"))
            && answer.get("sub").is_some_and(|s| s != sub)
        {
            return Err(AdapterError::new(
                ErrorKind::Unauthenticated,
                "the identity provider's answer is about another subject than the token",
            ));
        }
        match answer {
            // The token verified here, and the provider will not introspect
            // its kind: the configuration cannot work with this provider.
            Err(e) if e.message().ends_with(UNSUPPORTED_TOKEN_TYPE) => Err(AdapterError::new(
                ErrorKind::Unavailable,
                "the identity provider introspects no token of this kind (unsupported_token_type): read the ID number from the token's own claims (claims.id_number) or use opaque tokens with token_check = \"introspection\"",
            )
            .with_temporary(false)),
            other => other,
        }
    }

    /// The ID number in `claims` (or `None`), refusing a claim that is not
    /// a personal identification number.
    fn id_number(&self, claims: &Claims) -> Result<Option<CitizenId>, AdapterError> {
        let name = &self.provider.config().claims.id_number;
        match claims.get(name) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(value) => {
                value.as_str().and_then(|v| CitizenId::parse(v.trim()).ok()).map(Some).ok_or_else(|| {
                    unauthenticated(&format!("its `{name}` claim is not a personal identification number"))
                })
            }
        }
    }

    fn profile_of(&self, claims: &Claims, citizen: &Principal) -> api::CitizenProfile {
        let names = &self.provider.config().claims;
        let birth_date = text(claims, &names.birth_date).and_then(|d| {
            let digits: String = d.chars().filter(|c| *c != '-').collect();
            let ok = digits.len() == 8 && digits.bytes().all(|b| b.is_ascii_digit());
            ok.then(|| api::Date {
                year: digits[..4].parse().unwrap_or(0),
                month: digits[4..6].parse().unwrap_or(0),
                day: digits[6..].parse().unwrap_or(0),
            })
        });
        let sex = match text(claims, &names.sex) {
            Some("Nam" | "nam" | "1" | "M" | "male") => api::Sex::Male,
            Some("Nữ" | "nữ" | "Nu" | "2" | "F" | "female") => api::Sex::Female,
            _ => api::Sex::Unspecified,
        };
        let residence = text(claims, &names.residence_ward).filter(|w| w.len() == 5).map(|ward| {
            let unit = lienthong_adapter_core::admin::ward(ward);
            api::Address {
                street: String::new(),
                ward_name: unit.map(|w| w.full_name.to_owned()).unwrap_or_default(),
                province_code: unit.map(|w| w.province_code.to_owned()).unwrap_or_default(),
                ward_code: ward.to_owned(),
            }
        });
        api::CitizenProfile {
            identity_level: citizen.identity_level as i32,
            id_number: citizen.citizen_id.expose().to_owned(),
            id_number_masked: false,
            full_name: text(claims, &names.full_name).unwrap_or_default().to_owned(),
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
        let config = self.provider.config();
        let checked = self.check(token.expose()).await?;
        let identity_level = self.level(&checked);
        let citizen_id = match self.id_number(&checked)? {
            Some(id) => id,
            // A standard access token carries only `sub`: the ID number comes
            // from the provider's userinfo or introspection answer.
            None if !self.profile_is_checked() => {
                let profile = self.profile_claims(token.expose(), checked).await?;
                self.id_number(&profile)?.ok_or_else(|| {
                    unauthenticated(&format!(
                        "neither it nor the identity provider's {} answer carries the `{}` claim (claims.id_number)",
                        match config.profile_source {
                            ProfileSource::Userinfo => "userinfo",
                            _ => "introspection",
                        },
                        config.claims.id_number
                    ))
                })?
            }
            None => {
                return Err(unauthenticated(&format!(
                    "it lacks the `{}` claim (claims.id_number; or set profile_source to read it from userinfo or introspection)",
                    config.claims.id_number
                )));
            }
        };
        Ok(Principal { citizen_id, identity_level, token: token.clone() })
    }

    async fn profile(&self, _: &CallContext, principal: &Principal) -> Result<api::CitizenProfile, AdapterError> {
        let token = principal.token.expose();
        let checked = self.check(token).await?;
        let claims = self.profile_claims(token, checked).await?;
        if let Some(id) = self.id_number(&claims)?
            && id != principal.citizen_id
        {
            return Err(AdapterError::new(
                ErrorKind::Unauthenticated,
                "the identity provider's profile is of another citizen",
            ));
        }
        Ok(self.profile_of(&claims, principal))
    }
}
