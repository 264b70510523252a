//! The VNeID adapter against a fake OIDC provider speaking real HTTP: token
//! validation, algorithm confusion, key rotation, rate-limited refetch,
//! provider faults, and profiles from claims or userinfo.

// Test helpers may unwrap: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use lienthong_adapter_core::{BearerToken, CallContext, ErrorKind, IdentityAdapter, api};
use lienthong_adapter_vneid::{ProfileSource, VneidAdapter, VneidConfig};
use lienthong_contract_tests::fakes::oidc::{AUDIENCE, RSA_1_PUBLIC_PEM};
use lienthong_contract_tests::fakes::{FakeOidc, Fault};
use serde_json::json;

const CITIZEN: &str = "079192012345";

fn config(idp: &FakeOidc) -> VneidConfig {
    serde_json::from_value(json!({
        "issuer": idp.issuer(),
        "audience": AUDIENCE,
        "allow_insecure_http": true,
        "clock_skew": "30s",
        "jwks_min_refetch": "30s",
        "timeout": "2s",
    }))
    .unwrap()
}

async fn setup() -> (FakeOidc, VneidAdapter) {
    let idp = FakeOidc::start().await.unwrap();
    let adapter = VneidAdapter::new(config(&idp)).unwrap();
    (idp, adapter)
}

async fn auth(
    adapter: &VneidAdapter,
    token: &str,
) -> Result<lienthong_adapter_core::Principal, lienthong_adapter_core::AdapterError> {
    adapter.authenticate(&BearerToken::new(token)).await
}

fn kind_and_message(
    r: Result<lienthong_adapter_core::Principal, lienthong_adapter_core::AdapterError>,
) -> (ErrorKind, String) {
    let e = r.unwrap_err();
    (e.kind(), e.message().to_owned())
}

#[tokio::test]
async fn rs256_and_es256_tokens_are_accepted() {
    let (idp, adapter) = setup().await;
    for kid in ["rsa-1", "ec-1"] {
        let p = auth(&adapter, &idp.sign(kid, &idp.claims(CITIZEN))).await.unwrap();
        assert_eq!(p.citizen_id.expose(), CITIZEN);
        assert_eq!(p.identity_level, api::IdentityLevel::IdentityLevel2);
    }
    let mut c = idp.claims(CITIZEN);
    c["acr"] = json!("1");
    assert_eq!(
        auth(&adapter, &idp.sign("rsa-1", &c)).await.unwrap().identity_level,
        api::IdentityLevel::IdentityLevel1
    );
    // Keys are fetched once and cached.
    assert_eq!(idp.faults.hits("/jwks"), 1);
}

#[tokio::test]
async fn wrong_issuer_audience_time_or_subject_is_unauthenticated() {
    let (idp, adapter) = setup().await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let cases = [
        ("iss", json!("https://someone-else.example"), "issued by someone else"),
        ("aud", json!("another-client"), "another audience"),
        ("exp", json!(now - 120), "expired"),
        ("nbf", json!(now + 300), "not valid yet"),
        ("SoDinhDanh", json!("12345"), "not a personal identification number"),
    ];
    for (claim, value, why) in cases {
        let mut c = idp.claims(CITIZEN);
        c[claim] = value;
        let token = idp.sign("rsa-1", &c);
        let (kind, message) = kind_and_message(auth(&adapter, &token).await);
        assert_eq!(kind, ErrorKind::Unauthenticated, "{claim}");
        assert!(message.contains(why), "{claim}: {message}");
        assert!(!message.contains(CITIZEN) && !message.contains(&token));
    }
    // Within the 30 s skew: still accepted.
    let mut c = idp.claims(CITIZEN);
    c["exp"] = json!(now - 10);
    assert!(auth(&adapter, &idp.sign("rsa-1", &c)).await.is_ok());
    // A missing exp is refused.
    let mut c = idp.claims(CITIZEN);
    c.as_object_mut().unwrap().remove("exp");
    assert_eq!(kind_and_message(auth(&adapter, &idp.sign("rsa-1", &c)).await).0, ErrorKind::Unauthenticated);
}

#[tokio::test]
async fn alg_none_and_hmac_confusion_are_refused() {
    let (idp, adapter) = setup().await;
    let claims = idp.claims(CITIZEN);
    // HS256 signed with the provider's public key as the secret.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa-1".into());
    let forged =
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(RSA_1_PUBLIC_PEM.as_bytes())).unwrap();
    let (kind, message) = kind_and_message(auth(&adapter, &forged).await);
    assert_eq!(kind, ErrorKind::Unauthenticated);
    assert!(message.contains("algorithm"), "{message}");
    // alg: none, unsigned.
    let b64 = |v: &serde_json::Value| {
        use std::fmt::Write;
        let raw = serde_json::to_vec(v).unwrap();
        // base64url without padding, by hand to avoid another dependency.
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in raw.chunks(3) {
            let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.write_char(T[((n >> (18 - 6 * i)) & 63) as usize] as char).unwrap();
            }
        }
        out
    };
    let none = format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT", "kid": "rsa-1"})), b64(&claims));
    assert_eq!(kind_and_message(auth(&adapter, &none).await).0, ErrorKind::Unauthenticated);
    // An RS256 header on an ES256 key.
    let token = idp.sign("ec-1", &claims);
    let mut parts: Vec<&str> = token.split('.').collect();
    let swapped = b64(&json!({"alg": "RS256", "typ": "JWT", "kid": "ec-1"}));
    parts[0] = &swapped;
    let (kind, message) = kind_and_message(auth(&adapter, &parts.join(".")).await);
    assert_eq!(kind, ErrorKind::Unauthenticated);
    assert!(message.contains("does not match its signing key"), "{message}");
    // Garbage.
    assert_eq!(kind_and_message(auth(&adapter, "not-a-jwt").await).0, ErrorKind::Unauthenticated);
}

/// An adapter that refetches keys for an unknown kid at most once a second.
async fn quick_setup() -> (FakeOidc, VneidAdapter) {
    let idp = FakeOidc::start().await.unwrap();
    let mut config = config(&idp);
    config.jwks_min_refetch = std::time::Duration::from_secs(1);
    let adapter = VneidAdapter::new(config).unwrap();
    (idp, adapter)
}

/// Retries `token` until it is accepted (UNAVAILABLE meanwhile), with a
/// deadline; the time it took.
async fn accepted_within(adapter: &VneidAdapter, token: &str, within: std::time::Duration) -> std::time::Duration {
    let started = tokio::time::Instant::now();
    loop {
        match auth(adapter, token).await {
            Ok(_) => return started.elapsed(),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Unavailable, "{}", e.message());
                assert!(e.retry_after().is_some_and(|d| d > std::time::Duration::ZERO));
            }
        }
        assert!(started.elapsed() < within, "the new key was not accepted within {within:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_rotated_key_is_found_by_one_refetch() {
    let (idp, adapter) = quick_setup().await;
    assert!(auth(&adapter, &idp.sign("rsa-1", &idp.claims(CITIZEN))).await.is_ok());
    assert_eq!(idp.faults.hits("/jwks"), 1);
    // The provider rotates to rsa-2: the new kid is known within the
    // refetch interval, in one refetch.
    idp.publish(&["rsa-2", "ec-1"]);
    accepted_within(&adapter, &idp.sign("rsa-2", &idp.claims(CITIZEN)), std::time::Duration::from_secs(3)).await;
    assert_eq!(idp.faults.hits("/jwks"), 2);
    // rsa-1, retired by the provider, stays trusted until the set it came
    // from would have expired (tokens signed with it are still in use).
    assert!(auth(&adapter, &idp.sign("rsa-1", &idp.claims(CITIZEN))).await.is_ok());
}

/// On a paused clock: a forger sends unknown kids at a high rate for a
/// simulated minute (the default `jwks_min_refetch`, 5 s, in force), and the
/// provider rotates halfway. The forger costs the provider at most one fetch
/// per interval, and the genuine new key is accepted within one interval of
/// its first token.
#[tokio::test(start_paused = true)]
async fn forged_kids_neither_hammer_the_provider_nor_delay_a_real_rotation() {
    use std::time::Duration;
    // Keep the runtime busy, so that the paused clock moves only when this
    // test advances it, never while a request waits on the fake's socket.
    let busy = tokio::spawn(async {
        loop {
            tokio::task::yield_now().await;
        }
    });
    let idp = FakeOidc::start().await.unwrap();
    let mut cfg = config(&idp);
    cfg.jwks_min_refetch = Duration::from_secs(5);
    let interval = cfg.jwks_min_refetch;
    let adapter = VneidAdapter::new(cfg).unwrap();
    assert!(auth(&adapter, &idp.sign("rsa-1", &idp.claims(CITIZEN))).await.is_ok());
    let forged = idp.sign("rsa-3", &idp.claims(CITIZEN));
    let genuine = idp.sign("rsa-2", &idp.claims(CITIZEN));
    let started = tokio::time::Instant::now();
    let mut kinds = std::collections::BTreeMap::<&str, usize>::new();
    let mut first_genuine = None;
    let mut accepted = None;
    // 100 forged tokens a simulated second for 60 s; at 31.3 s the provider
    // rotates to rsa-2 and the first citizen signed in with it calls, then
    // retries each second until accepted.
    for step in 0..6000u32 {
        let (kind, _) = kind_and_message(auth(&adapter, &forged).await);
        *kinds.entry(kind.as_str()).or_default() += 1;
        if step == 3130 {
            idp.publish(&["rsa-1", "rsa-2", "ec-1"]);
            first_genuine = Some(tokio::time::Instant::now());
        }
        if first_genuine.is_some() && accepted.is_none() && step % 100 == 30 {
            match auth(&adapter, &genuine).await {
                Ok(_) => accepted = Some(tokio::time::Instant::now()),
                Err(e) => {
                    // Not known yet: retry, never "sign in again".
                    assert_eq!(e.kind(), ErrorKind::Unavailable, "{}", e.message());
                    assert!(e.retry_after().is_some_and(|d| d > Duration::ZERO && d <= interval));
                }
            }
        }
        tokio::time::advance(Duration::from_millis(10)).await;
    }
    busy.abort();
    assert_eq!(started.elapsed(), Duration::from_secs(60));
    // The forger got "not known yet" until the provider was asked, then
    // "not published"; never a key.
    assert!(kinds.keys().all(|k| *k == "unavailable" || *k == "unauthenticated"), "{kinds:?}");
    assert!(kinds.get("unauthenticated").is_some_and(|n| *n > 5000), "{kinds:?}");
    // 6,000 forged tokens: at most one fetch per interval (plus the first).
    let hits = idp.faults.hits("/jwks");
    assert!(hits <= 1 + 60 / 5, "{hits} key fetches for {kinds:?}");
    // The genuine new key is accepted within one interval of its first token.
    let waited = accepted.expect("the rotated key was never accepted") - first_genuine.unwrap_or(started);
    assert!(waited <= interval, "the new key waited {waited:?}");
}

#[tokio::test]
async fn a_kid_the_provider_does_not_publish_is_unauthenticated_once_asked() {
    let (idp, adapter) = quick_setup().await;
    assert!(auth(&adapter, &idp.sign("rsa-1", &idp.claims(CITIZEN))).await.is_ok());
    let forged = idp.sign("rsa-3", &idp.claims(CITIZEN));
    // Not asked yet (the keys were fetched just now): UNAVAILABLE, retry.
    let e = auth(&adapter, &forged).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    // Once the provider was asked and does not have it: UNAUTHENTICATED.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    for _ in 0..20 {
        let (kind, message) = kind_and_message(auth(&adapter, &forged).await);
        assert_eq!(kind, ErrorKind::Unauthenticated);
        assert!(message.contains("key the identity provider does not publish"), "{message}");
    }
    // One initial fetch plus one refetch, not twenty.
    assert_eq!(idp.faults.hits("/jwks"), 2);
    // A provider that cannot be reached: a new kid is UNAVAILABLE, not a
    // reason to send the citizen to sign in again.
    idp.publish(&["rsa-1", "rsa-2", "ec-1"]);
    idp.faults.inject("/jwks", Fault::Status(503));
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let e = auth(&adapter, &idp.sign("rsa-2", &idp.claims(CITIZEN))).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{}", e.message());
}

#[tokio::test]
async fn provider_faults_become_clear_error_kinds() {
    let (idp, adapter) = setup().await;
    let token = idp.sign("rsa-1", &idp.claims(CITIZEN));
    let cases = [
        (Fault::Status(503), ErrorKind::Unavailable),
        (Fault::TooManyRequests { retry_after_secs: 7 }, ErrorKind::RateLimited),
        (Fault::MalformedJson, ErrorKind::Unavailable),
        (Fault::Truncated, ErrorKind::Unavailable),
        (Fault::Reset, ErrorKind::Unavailable),
        (Fault::Latency(Duration::from_secs(5)), ErrorKind::DeadlineExceeded),
        // The provider refusing us its keys is not the citizen's token refused.
        (Fault::Status(401), ErrorKind::Unavailable),
        (Fault::Status(403), ErrorKind::Unavailable),
    ];
    for (fault, expected) in cases {
        idp.faults.inject("/jwks", fault.clone());
        let e = auth(&adapter, &token).await.unwrap_err();
        assert_eq!(e.kind(), expected, "{fault:?}: {e}");
        if let Fault::TooManyRequests { .. } = fault {
            assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        }
    }
    // The provider recovers: so do we.
    idp.faults.clear();
    assert!(auth(&adapter, &token).await.is_ok());
}

#[tokio::test]
async fn profiles_come_from_claims_or_userinfo() {
    let idp = FakeOidc::start().await.unwrap();
    for source in [ProfileSource::Claims, ProfileSource::Userinfo] {
        let mut cfg = config(&idp);
        cfg.profile_source = source;
        let adapter = VneidAdapter::new(cfg).unwrap();
        let principal = auth(&adapter, &idp.sign("ec-1", &idp.claims(CITIZEN))).await.unwrap();
        let p = adapter.profile(&CallContext::anonymous("79"), &principal).await.unwrap();
        assert_eq!(p.id_number, CITIZEN, "{source:?}");
        assert_eq!(p.full_name, "Trần Thị Bích");
        assert_eq!(p.birth_date, Some(api::Date { year: 1992, month: 3, day: 15 }));
        assert_eq!(p.sex(), api::Sex::Female);
        assert_eq!(p.residence.unwrap().ward_name, "Phường Sài Gòn");
    }
    assert_eq!(idp.faults.hits("/userinfo"), 1);
    // userinfo refusing the token is UNAUTHENTICATED, and remembered: a
    // refused token costs the provider one request, not one per call.
    let mut cfg = config(&idp);
    cfg.profile_source = ProfileSource::Userinfo;
    let adapter = VneidAdapter::new(cfg).unwrap();
    let principal = auth(&adapter, &idp.sign("rsa-1", &idp.claims(CITIZEN))).await.unwrap();
    idp.faults.inject("/userinfo", Fault::Status(401));
    for _ in 0..100 {
        let e = adapter.profile(&CallContext::anonymous("79"), &principal).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unauthenticated);
    }
    assert_eq!(idp.faults.hits("/userinfo"), 2, "one request for 100 calls with a refused token");
    // 403 is the provider refusing this gateway the scope: not the citizen's
    // fault, not remembered as a refusal of the token.
    let mut claims = idp.claims(CITIZEN);
    claims["jti"] = json!("a login without the scope");
    let principal = auth(&adapter, &idp.sign("rsa-1", &claims)).await.unwrap();
    idp.faults.inject("/userinfo", Fault::Status(403));
    let e = adapter.profile(&CallContext::anonymous("79"), &principal).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.message().contains("scope"), "{e}");
    // A provider at its limit is not a refusal: never remembered, the delay kept.
    idp.faults.inject("/userinfo", Fault::TooManyRequests { retry_after_secs: 3 });
    let mut claims = idp.claims(CITIZEN);
    claims["jti"] = json!("another login");
    let principal = auth(&adapter, &idp.sign("rsa-1", &claims)).await.unwrap();
    for _ in 0..2 {
        let e = adapter.profile(&CallContext::anonymous("79"), &principal).await.unwrap_err();
        assert_eq!((e.kind(), e.retry_after()), (ErrorKind::RateLimited, Some(Duration::from_secs(3))));
    }
    assert_eq!(idp.faults.hits("/userinfo"), 5, "refusals remembered; a 403 and a 429 never");
    idp.faults.clear();
    assert!(adapter.profile(&CallContext::anonymous("79"), &principal).await.is_ok());
}

/// A standard RFC 9068 access token: `sub`, no VNeID claims.
fn standard_claims(idp: &FakeOidc, sub: &str, acr: &str) -> serde_json::Value {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    json!({
        "iss": idp.issuer(), "aud": ["urn:lienthong:gateway"], "sub": sub, "client_id": "citizen-app",
        "iat": now, "exp": now + 300, "acr": acr, "scope": "openid",
    })
}

#[tokio::test]
async fn a_missing_claim_is_named_and_the_id_number_can_come_from_userinfo() {
    let idp = FakeOidc::start().await.unwrap();
    idp.enrol(
        "acct-42",
        json!({ "national_id": CITIZEN, "name": "Lê Văn Tám", "birthdate": "1990-04-30", "gender": "male" }),
    );
    let token = idp.sign("rsa-1", &standard_claims(&idp, "acct-42", "urn:vn:loa:2"));
    // VNeID's claim names by default: the message names the claim, never a value.
    let mut cfg = config(&idp);
    cfg.audience = vec![AUDIENCE.into(), "urn:lienthong:gateway".into()];
    let adapter = VneidAdapter::new(cfg.clone()).unwrap();
    let (kind, message) = kind_and_message(auth(&adapter, &token).await);
    assert_eq!(kind, ErrorKind::Unauthenticated);
    assert!(message.contains("`SoDinhDanh`") && message.contains("claims.id_number"), "{message}");
    assert!(!message.contains("acct-42") && !message.contains(CITIZEN), "{message}");
    // A standard provider's names, the ID number from userinfo; the level from the token.
    let claims: lienthong_adapter_vneid::ClaimNames = serde_json::from_value(json!({
        "id_number": "national_id", "full_name": "name", "birth_date": "birthdate", "sex": "gender",
    }))
    .unwrap();
    cfg.claims = claims;
    cfg.level2_acr_values = vec!["urn:vn:loa:2".into()];
    cfg.profile_source = ProfileSource::Userinfo;
    let adapter = VneidAdapter::new(cfg.clone()).unwrap();
    let principal = auth(&adapter, &token).await.unwrap();
    assert_eq!(principal.citizen_id.expose(), CITIZEN);
    assert_eq!(principal.identity_level, api::IdentityLevel::IdentityLevel2);
    let p = adapter.profile(&CallContext::anonymous("79"), &principal).await.unwrap();
    assert_eq!((p.full_name.as_str(), p.sex()), ("Lê Văn Tám", api::Sex::Male));
    assert_eq!(p.birth_date, Some(api::Date { year: 1990, month: 4, day: 30 }));
    assert_eq!(p.identity_level(), api::IdentityLevel::IdentityLevel2);
    // The same login again costs no second userinfo request.
    for _ in 0..20 {
        auth(&adapter, &token).await.unwrap();
    }
    assert_eq!(idp.faults.hits("/userinfo"), 1);
    // Another login of the same citizen at level 1 is level 1, whatever the cache holds.
    let low = idp.sign("ec-1", &standard_claims(&idp, "acct-42", "urn:vn:loa:1"));
    let principal = auth(&adapter, &low).await.unwrap();
    assert_eq!(principal.identity_level, api::IdentityLevel::IdentityLevel1);
    let p = adapter.profile(&CallContext::anonymous("79"), &principal).await.unwrap();
    assert_eq!(p.identity_level(), api::IdentityLevel::IdentityLevel1);
    // An account the provider knows no ID number of: named, not guessed.
    let stranger = idp.sign("rsa-1", &standard_claims(&idp, "acct-7", "urn:vn:loa:2"));
    let (kind, message) = kind_and_message(auth(&adapter, &stranger).await);
    assert_eq!(kind, ErrorKind::Unauthenticated);
    assert!(message.contains("userinfo") && message.contains("`national_id`"), "{message}");
    // A claim that is not an ID number is named as such.
    idp.enrol("acct-8", json!({ "national_id": "not-a-number" }));
    let odd = idp.sign("rsa-1", &standard_claims(&idp, "acct-8", "urn:vn:loa:2"));
    let (_, message) = kind_and_message(auth(&adapter, &odd).await);
    assert!(message.contains("`national_id` claim is not a personal identification number"), "{message}");
    assert!(!message.contains("not-a-number"));
}

fn introspecting(idp: &FakeOidc, check: &str, profile: &str) -> VneidConfig {
    let mut cfg = config(idp);
    cfg.audience = vec!["urn:lienthong:gateway".into()];
    let extra: VneidConfig = serde_json::from_value(json!({
        "issuer": idp.issuer(), "audience": "x", "allow_insecure_http": true,
        "token_check": check, "profile_source": profile,
        "introspection": {
            "client_id": lienthong_contract_tests::fakes::oidc::INTROSPECTION_CLIENT,
            "client_secret": lienthong_contract_tests::fakes::oidc::INTROSPECTION_SECRET,
        },
        "claims": { "id_number": "national_id", "full_name": "name" },
        "level2_acr_values": ["urn:vn:loa:2"],
    }))
    .unwrap();
    cfg.token_check = extra.token_check;
    cfg.profile_source = extra.profile_source;
    cfg.introspection = extra.introspection;
    cfg.claims = extra.claims;
    cfg.level2_acr_values = extra.level2_acr_values;
    cfg
}

#[tokio::test]
async fn opaque_tokens_are_checked_by_introspection_and_its_answers_are_cached() {
    let idp = FakeOidc::start().await.unwrap();
    idp.enrol("acct-42", json!({ "national_id": CITIZEN }));
    let adapter = VneidAdapter::new(introspecting(&idp, "introspection", "introspection")).unwrap();
    let token = idp.issue_opaque(&standard_claims(&idp, "acct-42", "urn:vn:loa:2"));
    for _ in 0..100 {
        let p = auth(&adapter, &token).await.unwrap();
        assert_eq!((p.citizen_id.expose(), p.identity_level), (CITIZEN, api::IdentityLevel::IdentityLevel2));
    }
    assert_eq!(idp.faults.hits("/introspect"), 1, "an active token's answer is reused within its life");
    // Unknown, revoked, or for another audience: refused, and the refusal remembered.
    let forged = "opaque-made-up";
    for _ in 0..100 {
        let (kind, message) = kind_and_message(auth(&adapter, forged).await);
        assert_eq!(kind, ErrorKind::Unauthenticated);
        assert!(message.contains("not active"), "{message}");
    }
    assert_eq!(idp.faults.hits("/introspect"), 2, "one request for 100 calls with a refused token");
    let revoked = idp.issue_opaque(&standard_claims(&idp, "acct-42", "urn:vn:loa:2"));
    idp.revoke(&revoked);
    assert_eq!(kind_and_message(auth(&adapter, &revoked).await).0, ErrorKind::Unauthenticated);
    let mut elsewhere = standard_claims(&idp, "acct-42", "urn:vn:loa:2");
    elsewhere["aud"] = json!("urn:another:api");
    let elsewhere = idp.issue_opaque(&elsewhere);
    let (_, message) = kind_and_message(auth(&adapter, &elsewhere).await);
    assert!(message.contains("another audience"), "{message}");
    // The provider down: UNAVAILABLE (signing in again would not help), not remembered.
    let fresh = idp.issue_opaque(&standard_claims(&idp, "acct-42", "urn:vn:loa:1"));
    idp.faults.inject("/introspect", Fault::Status(503));
    assert_eq!(kind_and_message(auth(&adapter, &fresh).await).0, ErrorKind::Unavailable);
    idp.faults.clear();
    let p = auth(&adapter, &fresh).await.unwrap();
    assert_eq!(p.identity_level, api::IdentityLevel::IdentityLevel1);
}

#[tokio::test]
async fn a_signed_standard_token_takes_its_id_number_from_introspection() {
    let idp = FakeOidc::start().await.unwrap();
    idp.enrol("acct-42", json!({ "national_id": CITIZEN, "name": "Lê Văn Tám" }));
    let adapter = VneidAdapter::new(introspecting(&idp, "signature", "introspection")).unwrap();
    let token = idp.sign("ec-1", &standard_claims(&idp, "acct-42", "urn:vn:loa:2"));
    let principal = auth(&adapter, &token).await.unwrap();
    assert_eq!(principal.citizen_id.expose(), CITIZEN);
    let p = adapter.profile(&CallContext::anonymous("79"), &principal).await.unwrap();
    assert_eq!(p.full_name, "Lê Văn Tám");
    assert_eq!(idp.faults.hits("/introspect"), 1);
    // A forged signature is refused before the provider is asked.
    let forged = format!("{}x", &token[..token.len() - 1]);
    assert_eq!(kind_and_message(auth(&adapter, &forged).await).0, ErrorKind::Unauthenticated);
    assert_eq!(idp.faults.hits("/introspect"), 1);
}

#[tokio::test]
async fn wrong_introspection_credentials_are_the_gateways_fault_not_the_citizens() {
    let idp = FakeOidc::start().await.unwrap();
    let mut cfg = introspecting(&idp, "introspection", "introspection");
    if let Some(i) = cfg.introspection.as_mut() {
        i.client_secret = "a-distinctive-wrong-secret".into();
    }
    let adapter = VneidAdapter::new(cfg).unwrap();
    let token = idp.issue_opaque(&standard_claims(&idp, "acct-42", "urn:vn:loa:2"));
    let (kind, message) = kind_and_message(auth(&adapter, &token).await);
    assert_eq!(kind, ErrorKind::Unavailable, "{message}");
    assert!(message.contains("introspection.client_id"), "{message}");
    assert!(!message.contains("distinctive"), "{message}");
}

#[tokio::test]
async fn audience_takes_a_list() {
    let idp = FakeOidc::start().await.unwrap();
    let cfg: VneidConfig = serde_json::from_value(json!({
        "issuer": idp.issuer(), "audience": ["urn:lienthong:gateway", AUDIENCE], "allow_insecure_http": true,
    }))
    .unwrap();
    let adapter = VneidAdapter::new(cfg).unwrap();
    let mut claims = idp.claims(CITIZEN);
    assert!(auth(&adapter, &idp.sign("rsa-1", &claims)).await.is_ok());
    claims["aud"] = json!(["urn:lienthong:gateway"]);
    assert!(auth(&adapter, &idp.sign("rsa-1", &claims)).await.is_ok());
    claims["aud"] = json!("urn:another:api");
    let (_, message) = kind_and_message(auth(&adapter, &idp.sign("rsa-1", &claims)).await);
    assert!(message.contains("another audience"), "{message}");
}

#[test]
fn config_is_checked_without_network() {
    let bad: VneidConfig = serde_json::from_value(json!({
        "issuer": "http://vneid.example", "audience": " ", "algorithms": ["HS256", "none"], "clock_skew": "10m",
    }))
    .unwrap();
    let problems = bad.validate();
    for field in ["issuer", "audience", "algorithms[0]", "algorithms[1]", "clock_skew"] {
        assert!(problems.iter().any(|p| p.starts_with(&format!("{field}:"))), "{field}: {problems:#?}");
    }
}

#[tokio::test]
async fn a_failing_discovery_is_not_retried_on_every_token() {
    let idp = FakeOidc::start().await.unwrap();
    idp.faults.inject("/.well-known", Fault::Status(500));
    let adapter = VneidAdapter::new(config(&idp)).unwrap();
    let token = idp.sign("rsa-1", &idp.claims(CITIZEN));
    for _ in 0..10 {
        assert_eq!(auth(&adapter, &token).await.unwrap_err().kind(), ErrorKind::Unavailable);
    }
    assert_eq!(idp.faults.hits("/.well-known/openid-configuration"), 1);
}

#[tokio::test]
async fn the_vneid_adapter_passes_the_contract_suite() {
    let (_idp, adapter) = setup().await;
    let set = lienthong_adapter_core::AdapterSet { identity: Some(std::sync::Arc::new(adapter)), ..Default::default() };
    let report = lienthong_contract_tests::run(&set).await;
    let (passed, failed, _) = report.counts();
    assert_eq!((passed, failed), (1, 0), "{report}");
    // GetMyProfile needs a citizen: skipped, naming the flags.
    assert!(
        report
            .to_string()
            .contains("skipped  identity/get_my_profile declared honestly (a personal method: give --citizen-token"),
        "{report}"
    );
}

/// Arbitrary and adversarial tokens (any bytes; JWT-shaped with any header:
/// `alg` none or HS256, unknown or hostile `kid`, huge claims): refused
/// with UNAUTHENTICATED (or UNAVAILABLE while a refetch of the keys is held
/// back), never a panic, never a citizen, and the message never repeats the
/// token.
#[test]
fn arbitrary_tokens_are_refused_cleanly() {
    use proptest::prelude::*;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (_idp, adapter) = rt.block_on(setup());
    // base64url without padding, as JWTs carry their parts.
    let b64 = |s: &str| {
        const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let bits: Vec<bool> = s.bytes().flat_map(|b| (0..8).rev().map(move |i| b >> i & 1 == 1)).collect();
        bits.chunks(6)
            .map(|c| {
                let v = c.iter().chain(std::iter::repeat(&false)).take(6).fold(0usize, |v, b| v << 1 | usize::from(*b));
                char::from(ALPHABET[v])
            })
            .collect::<String>()
    };
    let header = prop_oneof![
        Just(r#"{"alg":"none"}"#.to_owned()),
        Just(r#"{"alg":"HS256","kid":"rsa-1"}"#.to_owned()),
        "[ -~]{0,60}".prop_map(|kid| format!(r#"{{"alg":"RS256","kid":{kid:?}}}"#)),
        ".{0,80}",
    ];
    let token = prop_oneof![
        "[ -~]{0,300}",
        (header, ".{0,200}", "[A-Za-z0-9_-]{0,90}").prop_map(move |(h, c, s)| format!("{}.{}.{s}", b64(&h), b64(&c))),
    ];
    let config = ProptestConfig { cases: 128, ..ProptestConfig::default() };
    proptest!(config, |(token in token)| {
        let e = rt.block_on(auth(&adapter, &token)).unwrap_err();
        prop_assert!(matches!(e.kind(), ErrorKind::Unauthenticated | ErrorKind::Unavailable), "{e:?}");
        prop_assert!(token.len() < 12 || !e.message().contains(&token), "{e:?}");
    });
}

/// A budget that allows `n` requests, then refuses for a second.
#[derive(Debug)]
struct Budget(std::sync::atomic::AtomicUsize);

impl lienthong_adapter_core::UpstreamBudget for Budget {
    fn spend(&self) -> Result<(), std::time::Duration> {
        let left = self.0.load(std::sync::atomic::Ordering::SeqCst);
        if left == 0 {
            return Err(std::time::Duration::from_secs(1));
        }
        self.0.store(left - 1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test]
async fn only_requests_to_the_provider_spend_its_budget() {
    let idp = FakeOidc::start().await.unwrap();
    let budget = Arc::new(Budget(std::sync::atomic::AtomicUsize::new(2)));
    let adapter = VneidAdapter::new(config(&idp)).unwrap().with_budget(budget.clone());
    // Discovery and the keys: the two requests of the budget.
    assert!(auth(&adapter, &idp.sign("rsa-1", &idp.claims(CITIZEN))).await.is_ok());
    assert_eq!(budget.0.load(std::sync::atomic::Ordering::SeqCst), 0);
    // Any number of tokens against the cached keys: nothing more to spend.
    for _ in 0..100 {
        assert!(auth(&adapter, &idp.sign("ec-1", &idp.claims(CITIZEN))).await.is_ok());
    }
    // A request the provider must answer (a cold adapter's discovery) is
    // refused by a spent budget: RATE_LIMITED with the delay, not a verdict
    // on the token.
    let spent = Arc::new(Budget(std::sync::atomic::AtomicUsize::new(0)));
    let adapter = VneidAdapter::new(config(&idp)).unwrap().with_budget(spent);
    let e = auth(&adapter, &idp.sign("rsa-1", &idp.claims(CITIZEN))).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RateLimited, "{}", e.message());
    assert_eq!(e.retry_after(), Some(std::time::Duration::from_secs(1)));
}

#[tokio::test]
async fn the_providers_cache_control_decides_when_keys_are_read_again() {
    let (idp, adapter) = quick_setup().await;
    // The provider says its keys may be cached for one second.
    idp.set_jwks_max_age(Some(1));
    assert!(auth(&adapter, &idp.sign("rsa-1", &idp.claims(CITIZEN))).await.is_ok());
    assert_eq!(idp.faults.hits("/jwks"), 1);
    // It retires rsa-1: trusted while the set it came from is fresh...
    idp.publish(&["ec-1"]);
    assert!(auth(&adapter, &idp.sign("rsa-1", &idp.claims(CITIZEN))).await.is_ok());
    // ...and once that second has passed, the set is read again (no hour of
    // `jwks_refresh` waited) and rsa-1 is no longer trusted.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(auth(&adapter, &idp.sign("ec-1", &idp.claims(CITIZEN))).await.is_ok());
    assert_eq!(idp.faults.hits("/jwks"), 2);
    let (kind, message) = kind_and_message(auth(&adapter, &idp.sign("rsa-1", &idp.claims(CITIZEN))).await);
    assert_eq!(kind, ErrorKind::Unauthenticated, "{message}");
}
