//! The gateway in front of a public-service portal (fake, real HTTP) with
//! VNeID identity (fake OIDC): dossier views, the citizen's own dossiers, and
//! WatchDossier fed by signed webhooks on the gateway's port.

// Test helpers may unwrap: a panic is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use common::{TestGateway, authed};
use futures_util::StreamExt;
use lienthong_contract_tests::fakes::oidc::AUDIENCE;
use lienthong_contract_tests::fakes::{FakeOidc, FakePortal};
use lienthong_proto::v1::public_services_service_client::PublicServicesServiceClient;
use lienthong_proto::v1::*;

const SECRET: &str = "webhook-secret-webhook-secret-0001";
const LAN: &str = "079190012345";
const LAN_BIRTH: &str = "000.30.67.H29-251114-0001";

async fn gateway(idp: &FakeOidc, portal: &FakePortal) -> TestGateway {
    let toml = format!(
        r#"
[anonymous]
enabled = true
provinces = ["79"]

[provinces."79"]
identity = "vneid"
public_services = "portal"

[adapters.vneid]
kind = "vneid"
issuer = "{}"
audience = "{AUDIENCE}"
allow_insecure_http = true

[adapters.portal]
kind = "registry-http"
base_url = "{}"
allow_insecure_http = true

[adapters.portal.updates]
mode = "webhook"
webhook_secret = "{SECRET}"
"#,
        idp.issuer(),
        portal.url()
    );
    TestGateway::with_toml(&toml, lienthong::server::adapter_registry()).await
}

async fn push(gw: &TestGateway, instance: &str, body: &str, headers: &[(&'static str, String)]) -> reqwest::StatusCode {
    let mut req = reqwest::Client::new()
        .post(format!("http://{}/webhooks/{instance}", gw.addr))
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    req.send().await.unwrap().status()
}

#[tokio::test]
async fn dossier_views_and_my_dossiers_come_from_the_portal() {
    let (idp, portal) = (FakeOidc::start().await.unwrap(), FakePortal::start().await.unwrap());
    let gw = gateway(&idp, &portal).await;
    let token = idp.sign("rsa-1", &idp.claims(LAN));
    let mut c = PublicServicesServiceClient::new(gw.channel.clone());
    let public = c
        .get_dossier(GetDossierRequest { dossier_code: LAN_BIRTH.into() })
        .await
        .unwrap()
        .into_inner()
        .dossier
        .unwrap();
    assert!(public.applicant.is_none() && public.view() == DossierView::Public);
    let own =
        c.get_dossier(authed(GetDossierRequest { dossier_code: LAN_BIRTH.into() }, &token)).await.unwrap().into_inner();
    assert_eq!(own.dossier.unwrap().applicant.unwrap().full_name, "Nguyễn Thị Lan");
    let mine = c.list_my_dossiers(authed(ListMyDossiersRequest::default(), &token)).await.unwrap().into_inner();
    assert_eq!(mine.total_size, 4);
    assert!(mine.dossiers.iter().all(|d| d.view() == DossierView::Owner));
}

#[tokio::test]
async fn signed_webhooks_feed_watch_dossier_and_forgeries_change_nothing() {
    let (idp, portal) = (FakeOidc::start().await.unwrap(), FakePortal::start().await.unwrap());
    let gw = gateway(&idp, &portal).await;
    let mut watch = PublicServicesServiceClient::new(gw.channel.clone())
        .watch_dossier(WatchDossierRequest { dossier_code: LAN_BIRTH.into() })
        .await
        .unwrap()
        .into_inner();
    let first = watch.next().await.unwrap().unwrap().dossier.unwrap();
    assert_eq!(first.status(), DossierStatus::Received);

    // The portal pushes a genuine change: the watcher sees the new status.
    let hook = format!("http://{}/webhooks/portal", gw.addr);
    portal.advance(LAN_BIRTH, 4);
    assert_eq!(portal.push_to(&hook, SECRET, LAN_BIRTH, 4).await.unwrap(), 204);
    let d = watch.next().await.unwrap().unwrap().dossier.unwrap();
    assert_eq!((d.status(), d.history.len()), (DossierStatus::Processing, 3));

    // The same push sent twice: the second is a replay.
    // (30 s back, so it cannot coincide with the portal's own push above.)
    let (body, headers) = FakePortal::signed_push(SECRET, LAN_BIRTH, 4, FakePortal::now() - 30);
    assert_eq!(push(&gw, "portal", &body, &headers).await, 204);
    assert_eq!(push(&gw, "portal", &body, &headers).await, 401);
    // A push signed with another secret is refused and applies nothing.
    portal.advance(LAN_BIRTH, 9);
    let (forged, forged_headers) =
        FakePortal::signed_push("attacker-secret-attacker-secret-xx", LAN_BIRTH, 9, FakePortal::now());
    assert_eq!(push(&gw, "portal", &forged, &forged_headers).await, 401);
    // A stale push, even correctly signed, is refused.
    let (old, old_headers) = FakePortal::signed_push(SECRET, LAN_BIRTH, 9, FakePortal::now() - 3600);
    assert_eq!(push(&gw, "portal", &old, &old_headers).await, 401);
    // Authentic but malformed: 400. Unknown instance: 404.
    let (_, h) = FakePortal::signed_push(SECRET, LAN_BIRTH, 9, FakePortal::now() + 1);
    let bad_body = "not json";
    let mut bad_headers = h.clone();
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, SECRET.as_bytes());
    let ts = &bad_headers[0].1;
    let tag = aws_lc_rs::hmac::sign(&key, format!("{ts}.{bad_body}").as_bytes());
    bad_headers[1].1 = format!("sha256={}", tag.as_ref().iter().map(|b| format!("{b:02x}")).collect::<String>());
    assert_eq!(push(&gw, "portal", bad_body, &bad_headers).await, 400);
    assert_eq!(push(&gw, "nobody", &body, &headers).await, 404);

    // The next genuine push: the watcher's next message jumps straight to the
    // portal's state, proving the refused pushes delivered nothing.
    portal.advance(LAN_BIRTH, 10);
    assert_eq!(portal.push_to(&hook, SECRET, LAN_BIRTH, 10).await.unwrap(), 204);
    let d = watch.next().await.unwrap().unwrap().dossier.unwrap();
    assert_eq!((d.status(), d.history.len(), d.r#final), (DossierStatus::ResultReturned, 5, true));
    assert!(watch.next().await.is_none(), "the stream ends after the final status");
}
