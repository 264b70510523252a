//! The gateway with VNeID as a province's identity provider (a fake OIDC
//! provider over real HTTP), composed with the sandbox's dossiers.

// Test helpers may unwrap: a panic is a failed test.
#![allow(clippy::unwrap_used)]

use crate::common;

use common::{TestGateway, authed};
use lienthong_contract_tests::fakes::oidc::AUDIENCE;
use lienthong_contract_tests::fakes::{FakeOidc, Fault};
use lienthong_proto::v1::identity_service_client::IdentityServiceClient;
use lienthong_proto::v1::public_services_service_client::PublicServicesServiceClient;
use lienthong_proto::v1::*;
use tonic::Code;

/// Lan, a sandbox demo citizen: her dossiers are in the sandbox.
const LAN: &str = "079190012345";

async fn gateway(idp: &FakeOidc) -> TestGateway {
    gateway_for_issuer(idp.issuer()).await
}

async fn gateway_for_issuer(issuer: &str) -> TestGateway {
    let toml = lienthong::config::SANDBOX_DEFAULT.replace("identity = \"sandbox\"", "identity = \"vneid\"")
        + &format!(
            "\n[adapters.vneid]\nkind = \"vneid\"\nissuer = \"{issuer}\"\naudience = \"{AUDIENCE}\"\nallow_insecure_http = true\n"
        );
    TestGateway::with_toml(&toml, lienthong::server::adapter_registry()).await
}

#[tokio::test]
async fn an_issuer_written_with_a_trailing_slash_still_signs_citizens_in() {
    let idp = FakeOidc::start().await.unwrap();
    let gw = gateway_for_issuer(&format!("{}/", idp.issuer())).await;
    let token = idp.sign("rsa-1", &idp.claims(LAN));
    let p = IdentityServiceClient::new(gw.channel.clone())
        .get_my_profile(authed(GetMyProfileRequest::default(), &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p.profile.unwrap().id_number, "********2345");
}

#[tokio::test]
async fn vneid_tokens_sign_citizens_in() {
    let idp = FakeOidc::start().await.unwrap();
    let gw = gateway(&idp).await;
    let token = idp.sign("rsa-1", &idp.claims(LAN));
    let mut id = IdentityServiceClient::new(gw.channel.clone());
    let p =
        id.get_my_profile(authed(GetMyProfileRequest::default(), &token)).await.unwrap().into_inner().profile.unwrap();
    assert_eq!(p.id_number, "********2345");
    assert_eq!(p.identity_level(), IdentityLevel::IdentityLevel2);

    // The same citizen's dossiers, from the sandbox registry.
    let mine = PublicServicesServiceClient::new(gw.channel.clone())
        .list_my_dossiers(authed(ListMyDossiersRequest::default(), &token))
        .await
        .unwrap()
        .into_inner();
    // The dataset's four, and a renewal of the one already final at start.
    assert_eq!(mine.total_size, 5);

    // A level-1 account may not list dossiers.
    let mut c = idp.claims(LAN);
    c["acr"] = serde_json::json!("1");
    let e = PublicServicesServiceClient::new(gw.channel.clone())
        .list_my_dossiers(authed(ListMyDossiersRequest::default(), &idp.sign("ec-1", &c)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    // The same citizen's profile, signed in at level 1 right after a level-2
    // login filled the cache: the level is the token's, not the cached one.
    let level1 = id.get_my_profile(authed(GetMyProfileRequest::default(), &idp.sign("ec-1", &c))).await.unwrap();
    assert_eq!(level1.metadata().get("x-lienthong-cache").unwrap(), "hit");
    assert_eq!(level1.into_inner().profile.unwrap().identity_level(), IdentityLevel::IdentityLevel1);
    let level2 = id.get_my_profile(authed(GetMyProfileRequest::default(), &token)).await.unwrap().into_inner();
    assert_eq!(level2.profile.unwrap().identity_level(), IdentityLevel::IdentityLevel2);
}

#[tokio::test]
async fn bad_tokens_and_a_down_provider_map_to_clear_codes() {
    let idp = FakeOidc::start().await.unwrap();
    let gw = gateway(&idp).await;
    let mut id = IdentityServiceClient::new(gw.channel.clone());
    // Keys unavailable before any was fetched: UNAVAILABLE, not
    // UNAUTHENTICATED (the citizen did nothing wrong).
    idp.faults.inject("/jwks", Fault::Status(502));
    let e = id
        .get_my_profile(authed(GetMyProfileRequest::default(), &idp.sign("rsa-1", &idp.claims(LAN))))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    idp.faults.clear();

    let mut expired = idp.claims(LAN);
    expired["exp"] = serde_json::json!(1_600_000_000);
    let e = id.get_my_profile(authed(GetMyProfileRequest::default(), &idp.sign("rsa-1", &expired))).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().contains("expired"));

    // Claims the provider's policy never issues: an iat in the future, a
    // 100-year lifetime, and no iat at all.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let mut future = idp.claims(LAN);
    future["iat"] = serde_json::json!(now + 3600);
    future["nbf"] = serde_json::json!(now);
    let mut forever = idp.claims(LAN);
    forever["exp"] = serde_json::json!(now + 100 * 365 * 24 * 3600);
    let mut no_iat = idp.claims(LAN);
    no_iat.as_object_mut().unwrap().remove("iat");
    for (claims, says) in
        [(&future, "issued in the future"), (&forever, "lifetime is longer"), (&no_iat, "lacks the `iat` claim")]
    {
        let e =
            id.get_my_profile(authed(GetMyProfileRequest::default(), &idp.sign("rsa-1", claims))).await.unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{says}");
        assert!(e.message().contains(says), "{}", e.message());
    }
    // A sandbox token is refused with the reason.
    let sandbox = TestGateway::sandbox().await;
    let e = id.get_my_profile(authed(GetMyProfileRequest::default(), &sandbox.token("lan").await)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().contains("sandbox tokens"));

    // Once keys are cached, a JWKS outage does not stop sign-ins.
    idp.faults.inject("/jwks", Fault::Status(502));
    assert!(
        id.get_my_profile(authed(GetMyProfileRequest::default(), &idp.sign("rsa-1", &idp.claims(LAN)))).await.is_ok()
    );
}

#[tokio::test]
async fn checks_against_cached_keys_spend_none_of_the_providers_budget() {
    let idp = FakeOidc::start().await.unwrap();
    // Two requests a second to the provider, burst 3: discovery and the keys
    // take two; every later token is checked against the cached keys.
    let toml = lienthong::config::SANDBOX_DEFAULT.replace("identity = \"sandbox\"", "identity = \"vneid\"")
        + &format!(
            "\n[adapters.vneid]\nkind = \"vneid\"\nissuer = \"{}\"\naudience = \"{AUDIENCE}\"\nallow_insecure_http = true\njwks_min_refetch = \"1s\"\n\n[limits.per_upstream]\nvneid = {{ per_second = 2, burst = 3 }}\n",
            idp.issuer()
        );
    let gw = TestGateway::with_toml(&toml, lienthong::server::adapter_registry()).await;
    let mut id = IdentityServiceClient::new(gw.channel.clone());
    let mut ps = PublicServicesServiceClient::new(gw.channel.clone());
    for i in 0..200 {
        // Distinct citizens' tokens (each verified; under no citizen's
        // rate limit).
        let token = idp.sign("rsa-1", &idp.claims(&format!("079190{i:06}")));
        let r = if i % 2 == 0 {
            id.get_my_profile(authed(GetMyProfileRequest::default(), &token)).await.map(drop)
        } else {
            ps.get_dossier(authed(GetDossierRequest { dossier_code: "000.30.67.H29-251114-0001".into() }, &token))
                .await
                .map(drop)
        };
        assert!(r.is_ok(), "call {i}: {r:?}");
    }
    assert!(idp.faults.hits("/jwks") + idp.faults.hits("/.well-known/openid-configuration") <= 3);
}
