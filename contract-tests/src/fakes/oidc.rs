//! A fake OpenID Connect provider in the manner of VNeID: discovery, a JWKS
//! whose published keys can rotate, userinfo, and tokens signed on demand
//! with the test keys of `fixtures/oidc`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::Faults;

const JWKS: &str = include_str!("../../fixtures/oidc/jwks.json");
const KEYS: &[(&str, Algorithm, &str)] = &[
    ("rsa-1", Algorithm::RS256, include_str!("../../fixtures/oidc/rsa-1.pem")),
    ("rsa-2", Algorithm::RS256, include_str!("../../fixtures/oidc/rsa-2.pem")),
    ("rsa-3", Algorithm::RS256, include_str!("../../fixtures/oidc/rsa-3.pem")),
    ("ec-1", Algorithm::ES256, include_str!("../../fixtures/oidc/ec-1.pem")),
];
/// The public key of `rsa-1` as PEM: what an attacker would use as an HMAC
/// secret in an algorithm-confusion attack.
pub const RSA_1_PUBLIC_PEM: &str = include_str!("../../fixtures/oidc/rsa-1.pub.pem");
/// The audience the fake's tokens are issued for by default.
pub const AUDIENCE: &str = "lienthong-test";
/// The client id the gateway introspects with.
pub const INTROSPECTION_CLIENT: &str = "lienthong-gateway";
/// Its secret (with characters that must be form-encoded in Basic auth).
pub const INTROSPECTION_SECRET: &str = "gw secret:ü";

#[derive(Debug)]
struct OidcState {
    issuer: String,
    published: Mutex<Vec<String>>,
    jwks_max_age: Mutex<Option<u64>>,
    /// Opaque tokens issued, with their claims.
    opaque: Mutex<std::collections::HashMap<String, Value>>,
    /// Tokens revoked (introspection answers `active: false`).
    revoked: Mutex<Vec<String>>,
    /// Profile claims by `sub`, added to userinfo and introspection answers
    /// (what the provider knows beyond the token).
    accounts: Mutex<std::collections::HashMap<String, Value>>,
}

impl OidcState {
    /// `claims` with what the provider knows of their `sub`.
    fn with_account(&self, mut claims: Value) -> Value {
        let sub = claims["sub"].as_str().unwrap_or_default().to_owned();
        if let (Some(extra), Some(map)) =
            (self.accounts.lock().ok().and_then(|a| a.get(&sub).cloned()), claims.as_object_mut())
            && let Some(extra) = extra.as_object()
        {
            for (k, v) in extra {
                map.insert(k.clone(), v.clone());
            }
        }
        claims
    }
}

/// A running fake provider.
#[derive(Debug)]
pub struct FakeOidc {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its fault injector (paths: `/.well-known/openid-configuration`,
    /// `/jwks`, `/userinfo`).
    pub faults: Faults,
    state: Arc<OidcState>,
    _task: tokio::task::JoinHandle<()>,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

async fn discovery(State(s): State<Arc<OidcState>>) -> Json<Value> {
    Json(json!({
        "issuer": s.issuer,
        "jwks_uri": format!("{}/jwks", s.issuer),
        "userinfo_endpoint": format!("{}/userinfo", s.issuer),
        "introspection_endpoint": format!("{}/introspect", s.issuer),
        "authorization_endpoint": format!("{}/authorize", s.issuer),
        "token_endpoint": format!("{}/token", s.issuer),
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
    }))
}

async fn jwks(State(s): State<Arc<OidcState>>) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let all: Value = serde_json::from_str(JWKS).unwrap_or_default();
    let published = s.published.lock().map(|p| p.clone()).unwrap_or_default();
    let keys: Vec<Value> = all["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|k| k["kid"].as_str().is_some_and(|kid| published.iter().any(|p| p == kid)))
        .cloned()
        .collect();
    let max_age = s.jwks_max_age.lock().map(|m| *m).unwrap_or_default();
    match max_age {
        Some(secs) => {
            ([("cache-control", format!("public, max-age={secs}"))], Json(json!({ "keys": keys }))).into_response()
        }
        None => Json(json!({ "keys": keys })).into_response(),
    }
}

/// Answers with the profile claims of the token presented (the fake trusts
/// its own tokens; it is the gateway that must verify them).
async fn userinfo(State(s): State<Arc<OidcState>>, headers: HeaderMap) -> Response {
    let token = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match token.and_then(|t| jsonwebtoken::dangerous::insecure_decode::<Value>(t).ok()) {
        Some(data) => {
            // The token's claims and the account's, as userinfo gives them.
            let mut c = s.with_account(data.claims);
            if let Some(map) = c.as_object_mut() {
                for registered in ["iss", "aud", "exp", "iat", "nbf", "jti"] {
                    map.remove(registered);
                }
            }
            Json(c).into_response()
        }
        None => (StatusCode::UNAUTHORIZED, "invalid token").into_response(),
    }
}

/// RFC 7662: authenticated with HTTP Basic (RFC 6749 2.3.1 encoding), answers
/// `active` with the token's claims (JWTs it signed, opaque tokens it issued),
/// `active: false` for anything else, expired or revoked.
async fn introspect(
    State(s): State<Arc<OidcState>>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<std::collections::HashMap<String, String>>,
) -> Response {
    // base64("lienthong-gateway:gw+secret%3A%C3%BC"): the id and the
    // form-encoded secret, as RFC 6749 2.3.1 asks.
    const EXPECTED: &str = "Basic bGllbnRob25nLWdhdGV3YXk6Z3crc2VjcmV0JTNBJUMzJUJD";
    let authorised = headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(EXPECTED);
    if !authorised {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_client"}))).into_response();
    }
    let token = form.get("token").cloned().unwrap_or_default();
    let revoked = s.revoked.lock().map(|r| r.contains(&token)).unwrap_or(true);
    let claims = s
        .opaque
        .lock()
        .ok()
        .and_then(|o| o.get(&token).cloned())
        .or_else(|| jsonwebtoken::dangerous::insecure_decode::<Value>(&token).ok().map(|d| d.claims));
    match claims {
        Some(c) if !revoked && c["exp"].as_u64().is_some_and(|exp| exp > now()) => {
            let mut c = s.with_account(c);
            c["active"] = json!(true);
            c["token_type"] = json!("Bearer");
            Json(c).into_response()
        }
        _ => Json(json!({"active": false})).into_response(),
    }
}

impl FakeOidc {
    /// Starts a provider publishing `rsa-1` and `ec-1`.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with(None).await
    }

    /// Starts a provider serving HTTPS with `cert`, its issuer
    /// `https://127.0.0.1:<port>` (the test certificates name that address).
    pub async fn start_tls(cert: &super::ServerCert) -> std::io::Result<Self> {
        Self::start_with(Some(cert)).await
    }

    async fn start_with(cert: Option<&super::ServerCert>) -> std::io::Result<Self> {
        // Bind first: the issuer URL names the port.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let issuer = match cert {
            Some(_) => format!("https://{addr}"),
            None => format!("http://{addr}"),
        };
        let state = Arc::new(OidcState {
            issuer,
            published: Mutex::new(vec!["rsa-1".into(), "ec-1".into()]),
            jwks_max_age: Mutex::new(None),
            opaque: Mutex::new(std::collections::HashMap::new()),
            revoked: Mutex::new(Vec::new()),
            accounts: Mutex::new(std::collections::HashMap::new()),
        });
        let faults = Faults::default();
        let router = axum::Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/userinfo", get(userinfo))
            .route("/introspect", axum::routing::post(introspect))
            .with_state(state.clone())
            .layer(axum::middleware::from_fn_with_state(faults.clone(), super::faults::apply));
        let task = match cert {
            Some(cert) => super::serve_tls(listener, router, cert)?,
            None => tokio::spawn(async move {
                let _ = axum::serve(listener, router).await;
            }),
        };
        Ok(Self { addr, faults, state, _task: task })
    }

    /// The issuer URL (`http://127.0.0.1:<port>`).
    pub fn issuer(&self) -> &str {
        &self.state.issuer
    }

    /// Sends `Cache-Control: max-age` with the JWKS (none: no header).
    pub fn set_jwks_max_age(&self, secs: Option<u64>) {
        if let Ok(mut m) = self.state.jwks_max_age.lock() {
            *m = secs;
        }
    }

    /// Publishes exactly these key ids in the JWKS (a key rotation).
    pub fn publish(&self, kids: &[&str]) {
        if let Ok(mut p) = self.state.published.lock() {
            *p = kids.iter().map(|k| (*k).to_owned()).collect();
        }
    }

    /// Issues an opaque token standing for `claims` (only introspection can
    /// tell what it is).
    pub fn issue_opaque(&self, claims: &Value) -> String {
        let token = format!("opaque-{}-{}", now(), self.state.opaque.lock().map(|o| o.len()).unwrap_or(0));
        if let Ok(mut o) = self.state.opaque.lock() {
            o.insert(token.clone(), claims.clone());
        }
        token
    }

    /// Records what the provider knows of the account `sub` (given in
    /// userinfo and introspection answers, not in tokens).
    pub fn enrol(&self, sub: &str, claims: Value) {
        if let Ok(mut a) = self.state.accounts.lock() {
            a.insert(sub.to_owned(), claims);
        }
    }

    /// Revokes `token`: introspection answers `active: false` from now on.
    pub fn revoke(&self, token: &str) {
        if let Ok(mut r) = self.state.revoked.lock() {
            r.push(token.to_owned());
        }
    }

    /// Standard claims of a level-2 citizen, valid for 10 minutes.
    pub fn claims(&self, id_number: &str) -> Value {
        let now = now();
        json!({
            "iss": self.issuer(), "aud": AUDIENCE, "sub": id_number, "iat": now, "nbf": now, "exp": now + 600,
            "SoDinhDanh": id_number, "HoVaTen": "Trần Thị Bích", "NgayThangNamSinh": "19920315",
            "GioiTinh": "Nữ", "MaXaThuongTru": "26740", "acr": "2",
        })
    }

    /// Signs `claims` with the test key `kid` (`rsa-1`, `rsa-2`, `rsa-3` or
    /// `ec-1`), whether or not it is published. Panics on an unknown kid: a
    /// mistake in the test itself.
    #[allow(clippy::panic)]
    pub fn sign(&self, kid: &str, claims: &Value) -> String {
        let Some((_, alg, pem)) = KEYS.iter().find(|(k, _, _)| *k == kid) else {
            panic!("no test key {kid}");
        };
        let key = match alg {
            Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()),
            _ => EncodingKey::from_rsa_pem(pem.as_bytes()),
        };
        let mut header = Header::new(*alg);
        header.kid = Some(kid.to_owned());
        match key.and_then(|k| jsonwebtoken::encode(&header, claims, &k)) {
            Ok(t) => t,
            Err(e) => panic!("signing with {kid}: {e}"),
        }
    }
}
