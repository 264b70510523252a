//! The vneid adapter against a real OpenID Certified provider nobody here
//! wrote: panva's `oidc-provider`, with tokens from genuine
//! authorization-code-with-PKCE logins of two accounts (levels 2 and 1).
//! VNeID-style JWT access tokens (RS256, ES256), standard RFC 9068 tokens
//! read with the provider's claim names, opaque tokens checked by RFC 7662
//! introspection (the ID number from its answer), revocation, the provider's
//! key rotation (add → promote → retire), and a provider that goes away.

// Test helpers may unwrap: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use lienthong_adapter_core::{AdapterError, BearerToken, CallContext, ErrorKind, IdentityAdapter, Principal, api};
use lienthong_adapter_vneid::{VneidAdapter, VneidConfig};
use lienthong_contract_tests::interop::{GATEWAY_CLIENT, OidcProvider};
use serde_json::json;

const LEVEL_2: &str = "079192012345";
const LEVEL_1: &str = "079192054321";

fn adapter(idp: &OidcProvider, options: serde_json::Value) -> VneidAdapter {
    let mut config = json!({
        "issuer": idp.issuer, "audience": "urn:lienthong:gateway", "allow_insecure_http": true,
        "jwks_min_refetch": "1s", "jwks_refresh": "2s",
    });
    if let (Some(base), Some(extra)) = (config.as_object_mut(), options.as_object()) {
        base.extend(extra.clone());
    }
    VneidAdapter::new(serde_json::from_value::<VneidConfig>(config).unwrap()).unwrap()
}

async fn auth(adapter: &VneidAdapter, token: &str) -> Result<Principal, AdapterError> {
    adapter.authenticate(&BearerToken::new(token)).await
}

/// Authenticates until `accepted` says the answer is the one awaited, within
/// a deadline (key caches move on the provider's and our own clocks).
async fn until(
    adapter: &VneidAdapter,
    token: &str,
    accepted: impl Fn(&Result<Principal, AdapterError>) -> bool,
) -> Result<Principal, AdapterError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let r = auth(adapter, token).await;
        if accepted(&r) || tokio::time::Instant::now() > deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn introspection() -> serde_json::Value {
    json!({ "client_id": GATEWAY_CLIENT.0, "client_secret": GATEWAY_CLIENT.1 })
}

#[tokio::test]
async fn vneid_style_access_tokens_from_real_logins_sign_citizens_in_at_their_level() {
    let idp = OidcProvider::start().await.unwrap();
    let adapter = adapter(&idp, json!({ "audience": ["urn:lienthong:gateway", "urn:lienthong:es256"] }));
    let high = idp.login("citizen-2", "urn:lienthong:gateway", false).await.unwrap();
    let low = idp.login("citizen-1", "urn:lienthong:es256", false).await.unwrap();
    let p = auth(&adapter, &high.access_token).await.unwrap();
    assert_eq!((p.citizen_id.expose(), p.identity_level), (LEVEL_2, api::IdentityLevel::IdentityLevel2));
    let profile = adapter.profile(&CallContext::anonymous("79"), &p).await.unwrap();
    assert_eq!((profile.full_name.as_str(), profile.sex()), ("Trần Thị Bích", api::Sex::Female));
    assert_eq!(profile.residence.unwrap().ward_code, "26740");
    let p = auth(&adapter, &low.access_token).await.unwrap();
    assert_eq!((p.citizen_id.expose(), p.identity_level), (LEVEL_1, api::IdentityLevel::IdentityLevel1));
    // Warm checks ask the provider nothing.
    let before = (idp.hits("/jwks").await.unwrap(), idp.hits("/token/introspection").await.unwrap());
    for _ in 0..50 {
        auth(&adapter, &high.access_token).await.unwrap();
    }
    assert_eq!((idp.hits("/jwks").await.unwrap(), idp.hits("/token/introspection").await.unwrap()), before);
    // A token for a resource we do not serve, and a tampered one, are refused.
    let other = self::adapter(&idp, json!({ "audience": "urn:lienthong:es256" }));
    let e = auth(&other, &high.access_token).await.unwrap_err();
    assert!(e.message().contains("another audience"), "{e}");
    let mut parts: Vec<String> = high.access_token.split('.').map(str::to_owned).collect();
    parts[1] = parts[1].chars().rev().collect();
    assert_eq!(auth(&adapter, &parts.join(".")).await.unwrap_err().kind(), ErrorKind::Unauthenticated);
}

#[tokio::test]
async fn a_standard_token_is_refused_naming_the_claim_or_read_with_the_providers_names() {
    let idp = OidcProvider::start().await.unwrap();
    let token = idp.login("citizen-2", "urn:lienthong:standard", false).await.unwrap().access_token;
    // With VNeID's claim names the RFC 9068 token lacks the ID number: named.
    let vneid = adapter(&idp, json!({ "audience": "urn:lienthong:standard" }));
    let e = auth(&vneid, &token).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthenticated);
    assert!(e.message().contains("`SoDinhDanh`"), "{e}");
    // With this provider's names: the ID number and the level from the token.
    let names = json!({
        "audience": "urn:lienthong:standard", "claims": { "id_number": "national_id" },
        "level2_acr_values": ["urn:vn:loa:2"],
    });
    let standard = adapter(&idp, names.clone());
    let p = auth(&standard, &token).await.unwrap();
    assert_eq!((p.citizen_id.expose(), p.identity_level), (LEVEL_2, api::IdentityLevel::IdentityLevel2));
    let low = idp.login("citizen-1", "urn:lienthong:standard", false).await.unwrap().access_token;
    let p = auth(&standard, &low).await.unwrap();
    assert_eq!((p.citizen_id.expose(), p.identity_level), (LEVEL_1, api::IdentityLevel::IdentityLevel1));
    // This provider introspects no JWT (unsupported_token_type): asking it
    // for the profile of a signed token is a configuration that cannot work,
    // said as such (UNAVAILABLE, not a reason to sign in again).
    let mut asking = names;
    asking["profile_source"] = json!("introspection");
    asking["introspection"] = introspection();
    let asking = adapter(&idp, asking);
    let p = auth(&asking, &token).await.unwrap();
    let e = asking.profile(&CallContext::anonymous("79"), &p).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.message().contains("unsupported_token_type") && e.message().contains("claims.id_number"), "{e}");
}

#[tokio::test]
async fn opaque_tokens_are_checked_by_introspection_and_revocation_is_honoured() {
    let idp = OidcProvider::start().await.unwrap();
    let options = |secret: &str| {
        json!({
            "audience": "urn:lienthong:opaque", "token_check": "introspection", "profile_source": "introspection",
            "introspection": { "client_id": GATEWAY_CLIENT.0, "client_secret": secret },
            "claims": { "id_number": "national_id" }, "level2_acr_values": ["urn:vn:loa:2"],
            "token_cache": "1s", "refusal_cache": "10s",
        })
    };
    let adapter = adapter(&idp, options(GATEWAY_CLIENT.1));
    let tokens = idp.login("citizen-2", "urn:lienthong:opaque", true).await.unwrap();
    assert!(tokens.access_token.split('.').count() < 3, "an opaque token");
    let p = auth(&adapter, &tokens.access_token).await.unwrap();
    assert_eq!((p.citizen_id.expose(), p.identity_level), (LEVEL_2, api::IdentityLevel::IdentityLevel2));
    // A refresh token is not an access token, though the provider knows it.
    let refresh = tokens.refresh_token.expect("offline_access gives a refresh token");
    let e = auth(&adapter, &refresh).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthenticated);
    assert!(e.message().contains("not a bearer access token"), "{e}");
    // Made-up tokens: refused, and the refusal remembered (one request).
    let before = idp.hits("/token/introspection").await.unwrap();
    for _ in 0..100 {
        let e = auth(&adapter, "not-a-token-the-provider-issued").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}");
    }
    assert_eq!(idp.hits("/token/introspection").await.unwrap(), before + 1);
    // Wrong gateway credentials are the gateway's problem, not the citizen's.
    let misconfigured = self::adapter(&idp, options("wrong-secret"));
    let e = auth(&misconfigured, &tokens.access_token).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    // The citizen signs out: once the cached answer ends (token_cache), the
    // revoked token is refused.
    idp.revoke(&tokens.access_token).await.unwrap();
    let r = until(&adapter, &tokens.access_token, |r| r.is_err()).await;
    let e = r.unwrap_err();
    assert!(e.message().contains("not active"), "{e}");
}

#[tokio::test]
async fn the_providers_key_rotation_is_followed_add_promote_retire() {
    let idp = OidcProvider::start().await.unwrap();
    let adapter = adapter(&idp, json!({}));
    let old = idp.login("citizen-2", "urn:lienthong:gateway", false).await.unwrap().access_token;
    auth(&adapter, &old).await.unwrap();
    // Add: the new key published beside the signing one.
    idp.publish(&["rsa-a", "rsa-b", "ec-a"]).await.unwrap();
    auth(&adapter, &old).await.unwrap();
    // Promote: new logins are signed with rsa-b, known after one refetch;
    // meanwhile UNAVAILABLE (retry), never UNAUTHENTICATED.
    idp.publish(&["rsa-b", "rsa-a", "ec-a"]).await.unwrap();
    let new = idp.login("citizen-1", "urn:lienthong:gateway", false).await.unwrap().access_token;
    let r = until(&adapter, &new, |r| !matches!(r, Err(e) if e.kind() == ErrorKind::Unavailable)).await;
    assert_eq!(r.unwrap().citizen_id.expose(), LEVEL_1);
    // Retire: the old key's tokens stay trusted until the set that held it
    // expires (jwks_refresh), then are refused as unpublished.
    idp.publish(&["rsa-b", "ec-a"]).await.unwrap();
    auth(&adapter, &old).await.unwrap();
    let r = until(&adapter, &old, |r| r.is_err()).await;
    let e = r.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}");
    assert!(e.message().contains("does not publish"), "{e}");
    auth(&adapter, &new).await.unwrap();
}

#[tokio::test]
async fn a_provider_that_goes_away_leaves_warm_keys_working_and_the_rest_unavailable() {
    let mut idp = OidcProvider::start().await.unwrap();
    let signed = adapter(&idp, json!({}));
    let introspecting = adapter(
        &idp,
        json!({
            "audience": "urn:lienthong:opaque", "token_check": "introspection", "introspection": introspection(),
            "claims": { "id_number": "national_id" },
        }),
    );
    let jwt = idp.login("citizen-2", "urn:lienthong:gateway", false).await.unwrap().access_token;
    let opaque = idp.login("citizen-2", "urn:lienthong:opaque", false).await.unwrap().access_token;
    let es = idp.login("citizen-1", "urn:lienthong:es256", false).await.unwrap().access_token;
    auth(&signed, &jwt).await.unwrap();
    idp.stop().await;
    // Keys already held keep serving citizens.
    assert_eq!(auth(&signed, &jwt).await.unwrap().citizen_id.expose(), LEVEL_2);
    // What needs the provider now is UNAVAILABLE: signing in again would not help.
    let e = auth(&introspecting, &opaque).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    let other_audience = adapter(&idp, json!({ "audience": "urn:lienthong:es256" }));
    let e = auth(&other_audience, &es).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
}
