//! The provider's client: discovery, the signing keys (cached, rotation
//! followed), userinfo and token introspection, each request spending the
//! instance's upstream budget.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use lienthong_adapter_core::{AdapterError, ErrorKind};
use lienthong_adapter_http::Upstream;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Mutex, OnceCell, RwLock};
use tokio::time::Instant;

use crate::config::{ClientAuth, VneidConfig};
use crate::error::{UNSUPPORTED_TOKEN_TYPE, parse_error};

/// The name logs give this upstream.
pub(crate) const UPSTREAM: &str = "vneid";

/// The parts of the discovery document we use.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Discovery {
    pub issuer: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    #[serde(default)]
    pub introspection_endpoint: Option<String>,
}

/// The claims of a token, a userinfo answer or an introspection answer.
pub(crate) type Claims = serde_json::Map<String, serde_json::Value>;

/// What the provider said about one token when asked (userinfo,
/// introspection): its claims, or a refusal in words for the citizen's app.
pub(crate) type Verdict = Result<Claims, &'static str>;

/// A verification key and the algorithm it may verify.
#[derive(Clone)]
pub(crate) struct Key {
    pub key: DecodingKey,
    pub algorithm: Algorithm,
}

struct KeySet {
    keys: HashMap<String, Key>,
    fetched: Instant,
    /// When the provider's `Cache-Control: max-age` (bounded by
    /// `jwks_min_refetch` and `jwks_refresh`), or `jwks_refresh`, says the set
    /// is to be fetched again.
    expires: Instant,
}

/// Talks to the provider; caches discovery and keys.
pub(crate) struct Provider {
    config: VneidConfig,
    upstream: Upstream,
    discovery: OnceCell<Discovery>,
    /// When discovery last failed: it is not retried within `jwks_min_refetch`.
    discovery_failed: Mutex<Option<Instant>>,
    keys: RwLock<Option<Arc<KeySet>>>,
    /// Serialises key fetches.
    fetching: Mutex<()>,
    /// Keys the provider stopped publishing, trusted until the set they came
    /// from would have expired (tokens signed with them may still be in use).
    retired: std::sync::Mutex<HashMap<String, (Key, Instant)>>,
    /// Key ids seen in tokens but not in the key set, with when each was
    /// first seen: refused as unknown once a fetch after that did not have
    /// it, and until then answered "not yet known" without blocking others.
    unknown: std::sync::Mutex<HashMap<String, Instant>>,
    /// The instance's upstream budget, spent on each request to the
    /// provider (discovery, keys, userinfo) and nowhere else.
    pub(crate) budget: Arc<dyn lienthong_adapter_core::UpstreamBudget>,
}

/// Most unknown key ids remembered (forged ones are many).
const MAX_UNKNOWN_KIDS: usize = 4096;

impl Provider {
    pub(crate) fn new(config: VneidConfig) -> Result<Self, AdapterError> {
        let upstream = Upstream::new(UPSTREAM, "the identity provider", config.timeout, config.tls_ca_file.as_deref())?;
        Ok(Self {
            config,
            upstream,
            discovery: OnceCell::new(),
            discovery_failed: Mutex::new(None),
            keys: RwLock::new(None),
            fetching: Mutex::new(()),
            retired: std::sync::Mutex::new(HashMap::new()),
            unknown: std::sync::Mutex::new(HashMap::new()),
            budget: Arc::new(lienthong_adapter_core::Unlimited),
        })
    }

    pub(crate) fn config(&self) -> &VneidConfig {
        &self.config
    }

    /// GETs `url` (with the bearer token when given) and parses JSON.
    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        what: &str,
        url: &str,
        bearer: Option<&str>,
    ) -> Result<T, AdapterError> {
        self.get_json_cached(what, url, bearer).await.map(|(answer, _)| answer)
    }

    /// Spends one of the instance's upstream budget on a request.
    fn spend(&self, what: &str) -> Result<(), AdapterError> {
        self.budget.spend().map_err(|wait| {
            AdapterError::new(
                ErrorKind::RateLimited,
                format!("the identity provider is at its request budget ({what}); retry later"),
            )
            .with_retry_after(wait)
        })
    }

    /// The provider's userinfo answer for `token`: its claims, or the
    /// provider's refusal of the token (401/403).
    pub(crate) async fn userinfo(&self, token: &str) -> Result<Verdict, AdapterError> {
        let url = self.discovery().await?.userinfo_endpoint.clone().ok_or_else(|| {
            AdapterError::new(ErrorKind::Unavailable, "the identity provider publishes no userinfo endpoint")
                .with_temporary(false)
        })?;
        match self.get_json::<Claims>("userinfo", &url, Some(token)).await {
            Ok(claims) => Ok(Ok(claims)),
            Err(e) if e.kind() == ErrorKind::Unauthenticated => Ok(Err("the identity provider refused it (userinfo)")),
            Err(e) => Err(e),
        }
    }

    /// Asks the provider about `token` (RFC 7662), authenticated as this
    /// gateway. An inactive token is a refusal; an active one's claims are
    /// checked here: issued by our issuer, for one of our audiences, a
    /// bearer token not bound to a key we cannot check.
    pub(crate) async fn introspect(&self, token: &str) -> Result<Verdict, AdapterError> {
        let Some(auth) = &self.config.introspection else {
            return Err(
                AdapterError::new(ErrorKind::Unexpected, "introspection is not configured").with_temporary(false)
            );
        };
        let discovery = self.discovery().await?;
        let url = auth.url.clone().or_else(|| discovery.introspection_endpoint.clone()).ok_or_else(|| {
            AdapterError::new(
                ErrorKind::Unavailable,
                "the identity provider publishes no introspection_endpoint; set introspection.url",
            )
            .with_temporary(false)
        })?;
        if !plausible_token(token) {
            // Never spend the provider's budget on what cannot be a token.
            return Ok(Err("it is not a well-formed bearer token"));
        }
        self.spend("introspection")?;
        let mut form = vec![("token", token), ("token_type_hint", "access_token")];
        let mut req = self
            .upstream
            .client()
            .post(&url)
            .timeout(self.config.timeout)
            .header(reqwest::header::ACCEPT, "application/json");
        match auth.auth_method {
            ClientAuth::ClientSecretBasic => {
                // RFC 6749 2.3.1: each part form-encoded before Basic.
                let id = form_encode(&auth.client_id);
                let secret = form_encode(&auth.client_secret);
                req = req.basic_auth(id, Some(secret));
            }
            ClientAuth::ClientSecretPost => {
                form.push(("client_id", &auth.client_id));
                form.push(("client_secret", &auth.client_secret));
            }
        }
        let req = req.form(&form);
        let resp = self.upstream.execute("introspection", req).await?;
        let status = resp.status();
        if !status.is_success() {
            let retry = lienthong_adapter_http::retry_after(resp.headers());
            // RFC 6749 5.2 error codes are a fixed vocabulary; keep only that.
            let code = self.upstream.json::<Claims>("introspection", resp).await.ok().and_then(|b| {
                b.get("error")
                    .and_then(serde_json::Value::as_str)
                    .filter(|c| c.len() <= 40 && c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
                    .map(str::to_owned)
            });
            tracing::warn!(
                upstream = UPSTREAM,
                status = status.as_u16(),
                error = code.as_deref(),
                "introspection refused"
            );
            return match (status.as_u16(), code.as_deref()) {
                (401 | 403, _) | (400, Some("invalid_client" | "unauthorized_client")) => Err(AdapterError::new(
                    ErrorKind::Unavailable,
                    "the identity provider refused the gateway's introspection credentials (check introspection.client_id and client_secret)",
                )
                .with_temporary(false)),
                (400, Some("unsupported_token_type")) => Ok(Err(UNSUPPORTED_TOKEN_TYPE)),
                _ => Err(self.upstream.status_error("introspection", status, retry)),
            };
        }
        let answer: Claims = self.upstream.json("introspection", resp).await?;
        let issuer = discovery.issuer.as_str();
        Ok(check_introspection(answer, issuer, &self.config.audience))
    }

    /// [`Self::get_json`], with the answer's `Cache-Control: max-age`. Each
    /// request spends one of the instance's upstream budget.
    pub(crate) async fn get_json_cached<T: DeserializeOwned>(
        &self,
        what: &str,
        url: &str,
        bearer: Option<&str>,
    ) -> Result<(T, Option<Duration>), AdapterError> {
        let mut req = self
            .upstream
            .client()
            .get(url)
            .timeout(self.config.timeout)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        self.spend(what)?;
        let with_token = bearer.is_some();
        let resp = self.upstream.send(what, req, |s, r| parse_error(&self.upstream, what, with_token, s, r)).await?;
        let max_age =
            resp.headers().get(reqwest::header::CACHE_CONTROL).and_then(|v| v.to_str().ok()).and_then(max_age);
        Ok((self.upstream.json(what, resp).await?, max_age))
    }

    /// The discovery document, fetched once. Its issuer must be ours.
    pub(crate) async fn discovery(&self) -> Result<&Discovery, AdapterError> {
        if let Some(d) = self.discovery.get() {
            return Ok(d);
        }
        let mut failed = self.discovery_failed.lock().await;
        if let Some(at) = *failed
            && let wait = self.config.jwks_min_refetch.saturating_sub(at.elapsed())
            && !wait.is_zero()
        {
            return Err(AdapterError::new(
                ErrorKind::Unavailable,
                "the identity provider's discovery document is unavailable",
            )
            .with_retry_after(wait));
        }
        let result = self
            .discovery
            .get_or_try_init(|| async {
                let d: Discovery = self.get_json("discovery", &self.config.discovery(), None).await?;
                if d.issuer.trim_end_matches('/') != self.config.issuer.trim_end_matches('/') {
                    tracing::error!(upstream = UPSTREAM, "discovery names another issuer than configured");
                    return Err(AdapterError::new(
                        ErrorKind::Unavailable,
                        "the identity provider's discovery document names another issuer",
                    )
                    .with_temporary(false));
                }
                Ok(d)
            })
            .await;
        *failed = result.is_err().then(Instant::now);
        result
    }

    /// The key named `kid` for `algorithm`.
    ///
    /// A kid not in the key set (nor among recently retired keys) is looked
    /// up by refetching the set, but only when the last fetch is at least
    /// `jwks_min_refetch` old: forged kids cannot make us hammer the
    /// provider, and cannot delay a genuine rotation by more than that
    /// interval either. A kid the provider was asked about and does not
    /// publish is UNAUTHENTICATED; one not yet asked about is UNAVAILABLE
    /// with the time until it will be (signing in again would not help).
    pub(crate) async fn key(&self, kid: Option<&str>, algorithm: Algorithm) -> Result<Key, AdapterError> {
        let set = self.current_keys().await?;
        if let Some(k) = pick(&set, kid, algorithm)? {
            return Ok(k);
        }
        let Some(kid) = kid else { return Err(not_published()) };
        if let Some(k) = self.retired_key(kid, algorithm)? {
            return Ok(k);
        }
        let first_seen = self.first_seen(kid);
        if set.fetched > first_seen {
            // The provider answered since this kid first came, without it.
            return Err(not_published());
        }
        let since = set.fetched.elapsed();
        if since < self.config.jwks_min_refetch {
            return Err(AdapterError::new(
                ErrorKind::Unavailable,
                "the citizen token names a signing key not known yet; the identity provider's keys are read again shortly",
            )
            .with_retry_after(self.config.jwks_min_refetch - since));
        }
        let set = self.refetch(Some(set.fetched)).await?.unwrap_or(set);
        match pick(&set, Some(kid), algorithm)? {
            Some(k) => {
                self.unknown.lock().unwrap_or_else(|p| p.into_inner()).remove(kid);
                Ok(k)
            }
            None => Err(not_published()),
        }
    }

    /// When `kid` was first seen unknown (now, if just now).
    fn first_seen(&self, kid: &str) -> Instant {
        let mut unknown = self.unknown.lock().unwrap_or_else(|p| p.into_inner());
        if unknown.len() >= MAX_UNKNOWN_KIDS && !unknown.contains_key(kid) {
            let horizon = 2 * self.config.jwks_min_refetch;
            unknown.retain(|_, at| at.elapsed() < horizon);
            if unknown.len() >= MAX_UNKNOWN_KIDS {
                unknown.clear();
            }
        }
        *unknown.entry(kid.to_owned()).or_insert_with(Instant::now)
    }

    /// A key the provider retired, while it is still trusted.
    fn retired_key(&self, kid: &str, algorithm: Algorithm) -> Result<Option<Key>, AdapterError> {
        let mut retired = self.retired.lock().unwrap_or_else(|p| p.into_inner());
        retired.retain(|_, (_, until)| *until > Instant::now());
        match retired.get(kid) {
            Some((k, _)) if k.algorithm != algorithm => Err(AdapterError::new(
                ErrorKind::Unauthenticated,
                "the citizen token is not valid: its algorithm does not match its signing key",
            )),
            Some((k, _)) => Ok(Some(k.clone())),
            None => Ok(None),
        }
    }

    async fn current_keys(&self) -> Result<Arc<KeySet>, AdapterError> {
        if let Some(set) = self.keys.read().await.as_ref()
            && Instant::now() < set.expires
        {
            return Ok(set.clone());
        }
        let stale = self.keys.read().await.clone();
        match self.refetch(stale.as_ref().map(|s| s.fetched)).await {
            Ok(Some(set)) => Ok(set),
            Ok(None) => stale.ok_or_else(|| {
                AdapterError::new(ErrorKind::Unavailable, "the identity provider's keys are not available")
            }),
            // A routine refresh failing keeps the keys we have.
            Err(e) => stale.ok_or(e),
        }
    }

    /// Fetches the key set unless another caller already replaced the one
    /// fetched at `seen`. Keys the new set no longer holds stay trusted
    /// until the old set would have expired.
    async fn refetch(&self, seen: Option<Instant>) -> Result<Option<Arc<KeySet>>, AdapterError> {
        let _one_at_a_time = self.fetching.lock().await;
        let previous = self.keys.read().await.clone();
        if let Some(current) = &previous
            && Some(current.fetched) != seen
        {
            return Ok(Some(current.clone()));
        }
        let url = self.discovery().await?.jwks_uri.clone();
        let (jwks, max_age): (JwkSet, Option<Duration>) = self.get_json_cached("jwks", &url, None).await?;
        let fetched = Instant::now();
        let lifetime = max_age
            .map_or(self.config.jwks_refresh, |m| m.clamp(self.config.jwks_min_refetch, self.config.jwks_refresh));
        let set = Arc::new(KeySet { keys: usable_keys(&jwks), fetched, expires: fetched + lifetime });
        tracing::info!(upstream = UPSTREAM, keys = set.keys.len(), "signing keys fetched");
        if let Some(old) = previous {
            let until = old.expires;
            let mut retired = self.retired.lock().unwrap_or_else(|p| p.into_inner());
            let mut unknown = self.unknown.lock().unwrap_or_else(|p| p.into_inner());
            for (kid, key) in &old.keys {
                if !set.keys.contains_key(kid) {
                    retired.entry(kid.clone()).or_insert_with(|| (key.clone(), until));
                    // Once its grace ends, the provider has been asked (now)
                    // and no longer publishes it: unknown since before.
                    unknown.insert(kid.clone(), old.fetched);
                }
            }
            retired.retain(|kid, (_, until)| !set.keys.contains_key(kid) && *until > Instant::now());
        }
        *self.keys.write().await = Some(set.clone());
        Ok(Some(set))
    }
}

/// The longest token sent to the provider.
const MAX_TOKEN_LEN: usize = 8192;

/// Whether `token` has the shape of an RFC 6750 bearer token (`b64token`),
/// and a sane length.
fn plausible_token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && token.len() <= MAX_TOKEN_LEN
        && body.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/'))
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Checks an introspection answer: active, from `issuer` (when it says),
/// for one of `audiences`, a plain bearer token.
fn check_introspection(answer: Claims, issuer: &str, audiences: &[String]) -> Verdict {
    use serde_json::Value;
    if answer.get("active") != Some(&Value::Bool(true)) {
        return Err("the identity provider says it is not active (expired, revoked or unknown)");
    }
    // RFC 7662 makes `token_type` optional, but a refresh token is known to
    // the provider too: only an answer that says "Bearer" (`token_type`, or
    // `typ` as some providers spell it) is an access token.
    let bearer = |key: &str| answer.get(key).and_then(Value::as_str).is_some_and(|k| k.eq_ignore_ascii_case("bearer"));
    if !(bearer("token_type") || bearer("typ")) {
        return Err("it is not a bearer access token (the provider's answer names no token_type Bearer)");
    }
    if let Some(iss) = answer.get("iss")
        && iss.as_str() != Some(issuer)
    {
        return Err("it was issued by someone else");
    }
    let ours = |a: &Value| a.as_str().is_some_and(|a| audiences.iter().any(|x| x == a));
    let for_us = match answer.get("aud") {
        Some(Value::Array(list)) => list.iter().any(ours),
        Some(one) => ours(one),
        None => false,
    };
    if !for_us {
        return Err("it was issued for another audience");
    }
    if answer.contains_key("cnf") {
        return Err("it is bound to a key (DPoP or mutual TLS) the gateway cannot check");
    }
    Ok(answer)
}

/// `max-age` of a `Cache-Control` value (`no-store` and `no-cache`: zero).
fn max_age(cache_control: &str) -> Option<Duration> {
    let mut age = None;
    for directive in cache_control.split(',').map(str::trim) {
        match directive.split_once('=') {
            Some((name, value)) if name.eq_ignore_ascii_case("max-age") => {
                age = value.trim_matches('"').parse::<u64>().ok().map(Duration::from_secs);
            }
            None if directive.eq_ignore_ascii_case("no-store") || directive.eq_ignore_ascii_case("no-cache") => {
                return Some(Duration::ZERO);
            }
            _ => {}
        }
    }
    age
}

fn not_published() -> AdapterError {
    AdapterError::new(
        ErrorKind::Unauthenticated,
        "the citizen token is not valid: it is signed with a key the identity provider does not publish",
    )
}

/// The key for `kid` (or the only key, when the token names none), checked
/// against the token's algorithm.
fn pick(set: &KeySet, kid: Option<&str>, algorithm: Algorithm) -> Result<Option<Key>, AdapterError> {
    let key = match kid {
        Some(kid) => set.keys.get(kid),
        None if set.keys.len() == 1 => set.keys.values().next(),
        None => {
            return Err(AdapterError::new(
                ErrorKind::Unauthenticated,
                "the citizen token is not valid: it names no signing key (kid)",
            ));
        }
    };
    match key {
        Some(k) if k.algorithm != algorithm => Err(AdapterError::new(
            ErrorKind::Unauthenticated,
            "the citizen token is not valid: its algorithm does not match its signing key",
        )),
        Some(k) => Ok(Some(k.clone())),
        None => Ok(None),
    }
}

/// The signature keys of a JWK set that we can use: RSA for RS256, P-256 for
/// ES256. Keys for encryption, of other types, or without a kid are skipped.
fn usable_keys(jwks: &JwkSet) -> HashMap<String, Key> {
    let mut out = HashMap::new();
    for jwk in &jwks.keys {
        let Some(kid) = jwk.common.key_id.clone() else { continue };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        let algorithm = match (&jwk.algorithm, jwk.common.key_algorithm) {
            (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
            (AlgorithmParameters::EllipticCurve(ec), None | Some(KeyAlgorithm::ES256))
                if ec.curve == jsonwebtoken::jwk::EllipticCurve::P256 =>
            {
                Algorithm::ES256
            }
            _ => continue,
        };
        match DecodingKey::from_jwk(jwk) {
            Ok(key) => {
                out.insert(kid, Key { key, algorithm });
            }
            Err(e) => tracing::warn!(upstream = UPSTREAM, kid, error = %e, "skipping an unusable signing key"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ISSUER: &str = "https://id.example";

    fn answer(v: serde_json::Value) -> Claims {
        v.as_object().cloned().unwrap_or_default()
    }

    fn active() -> serde_json::Value {
        json!({ "active": true, "iss": ISSUER, "aud": ["urn:api"], "token_type": "Bearer", "sub": "a" })
    }

    #[test]
    fn introspection_answers_are_checked_field_by_field() {
        let audiences = vec!["urn:api".to_owned()];
        let check = |v: serde_json::Value| check_introspection(answer(v), ISSUER, &audiences);
        assert!(check(active()).is_ok());
        // Keycloak spells the type `typ`; the audience may be one string.
        assert!(check(json!({ "active": true, "aud": "urn:api", "typ": "Bearer" })).is_ok());
        let refused = |patch: &dyn Fn(&mut serde_json::Value), why: &str| {
            let mut v = active();
            patch(&mut v);
            assert_eq!(check(v.clone()).err().map(|e| e.contains(why)), Some(true), "{v} should be refused: {why}");
        };
        refused(&|v| v["active"] = json!(false), "not active");
        refused(&|v| v["active"] = json!("true"), "not active");
        refused(&|v| drop(v.as_object_mut().map(|m| m.remove("active"))), "not active");
        refused(&|v| v["iss"] = json!("https://evil.example"), "someone else");
        refused(&|v| v["aud"] = json!(["urn:other"]), "another audience");
        refused(&|v| drop(v.as_object_mut().map(|m| m.remove("aud"))), "another audience");
        refused(&|v| v["aud"] = json!(42), "another audience");
        refused(&|v| drop(v.as_object_mut().map(|m| m.remove("token_type"))), "not a bearer");
        refused(&|v| v["token_type"] = json!("refresh_token"), "not a bearer");
        refused(&|v| v["token_type"] = json!("DPoP"), "not a bearer");
        refused(&|v| v["cnf"] = json!({ "jkt": "x" }), "bound to a key");
    }

    #[test]
    fn only_plausible_tokens_are_sent_to_the_provider() {
        assert!(plausible_token("2YotnFZFEjr1zCsicMWpAA"));
        assert!(plausible_token("eyJhbGciOi.eyJzdWIi.sig-_~+/=="));
        for bad in ["", "=", "a b", "a\nb", "ảnh", "a;b", "a,b"] {
            assert!(!plausible_token(bad), "{bad:?}");
        }
        assert!(!plausible_token(&"a".repeat(MAX_TOKEN_LEN + 1)));
    }

    #[test]
    fn cache_control_max_age_is_read() {
        assert_eq!(max_age("public, max-age=300"), Some(Duration::from_secs(300)));
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("public"), None);
    }
}
