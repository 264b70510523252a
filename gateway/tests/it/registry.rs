//! The gateway in front of a public-service portal (fake, real HTTP) with
//! VNeID identity (fake OIDC): dossier views, the citizen's own dossiers, and
//! WatchDossier fed by signed webhooks on the gateway's port.

// Test helpers may unwrap: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

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
    let replay_file = common::temp_dir("webhooks").join("portal.seen");
    gateway_with(idp, portal, &replay_file, "").await
}

/// The config of a gateway over `portal`, taking pushes and remembering
/// deliveries in `replay_file`, with `server_extra` in `[server]`.
fn portal_toml(idp: &FakeOidc, portal: &FakePortal, replay_file: &std::path::Path, server_extra: &str) -> String {
    portal_toml_with(idp, portal, replay_file, server_extra, "mode = \"webhook\"")
}

/// [`portal_toml`] with `updates` (the mode and its settings) in
/// `[adapters.portal.updates]`.
pub(crate) fn portal_toml_with(
    idp: &FakeOidc,
    portal: &FakePortal,
    replay_file: &std::path::Path,
    server_extra: &str,
    updates: &str,
) -> String {
    format!(
        r#"
[server]
{server_extra}

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
{updates}
webhook_secret = "{SECRET}"
replay_file = {replay_file:?}
"#,
        idp.issuer(),
        portal.url()
    )
}

/// The gateway of [`portal_toml`].
async fn gateway_with(
    idp: &FakeOidc,
    portal: &FakePortal,
    replay_file: &std::path::Path,
    server_extra: &str,
) -> TestGateway {
    let toml = portal_toml(idp, portal, replay_file, server_extra);
    TestGateway::with_toml(&toml, lienthong::server::adapter_registry()).await
}

async fn push(gw: &TestGateway, instance: &str, body: &str, headers: &[(&'static str, String)]) -> reqwest::StatusCode {
    let url = format!("http://{}/webhooks/{instance}", gw.addr);
    send_push(&reqwest::Client::new(), &url, body, headers).await.status()
}

/// POSTs a push (`body` with its signature `headers`) to `url` with `client`.
async fn send_push(
    client: &reqwest::Client,
    url: &str,
    body: &str,
    headers: &[(&'static str, String)],
) -> reqwest::Response {
    let mut req = client.post(url).header("content-type", "application/json").body(body.to_owned());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    req.send().await.unwrap()
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
    let bad_body = "not json";
    let bad_headers = FakePortal::sign(SECRET, FakePortal::now() + 1, bad_body);
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

/// Reads `watch` until a final status (or `deadline`): every message's
/// history extends the one before, and the last is returned.
async fn follow_to_the_end(
    watch: &mut tonic::Streaming<WatchDossierResponse>,
    deadline: std::time::Duration,
) -> Dossier {
    let mut last: Option<Dossier> = None;
    loop {
        let next = tokio::time::timeout(deadline, watch.next()).await.expect("the watcher was left behind");
        let Some(msg) = next else { break };
        let d = msg.unwrap().dossier.unwrap();
        if let Some(prev) = &last {
            assert!(d.history.len() > prev.history.len(), "a message went back or repeated");
            assert_eq!(d.history[..prev.history.len()], prev.history[..], "history rewritten");
        }
        last = Some(d);
    }
    last.unwrap()
}

/// Without any later push, every watcher reaches the portal's state (of
/// `length` changes, read from the portal itself), every message extending
/// the one before.
async fn catch_up(portal: &FakePortal, watchers: &mut [tonic::Streaming<WatchDossierResponse>], length: usize) {
    let at_portal: serde_json::Value =
        reqwest::get(format!("{}/dossiers/{LAN_BIRTH}", portal.url())).await.unwrap().json().await.unwrap();
    let statuses: Vec<i32> =
        at_portal["history"].as_array().unwrap().iter().map(|h| h["status"].as_i64().unwrap() as i32).collect();
    assert_eq!(statuses.len(), length);
    for w in watchers {
        loop {
            let next = tokio::time::timeout(std::time::Duration::from_secs(10), w.next()).await;
            let d = next.expect("a watcher was left behind the portal").unwrap().unwrap().dossier.unwrap();
            let seen: Vec<i32> = d.history.iter().map(|h| h.status).collect();
            assert_eq!(seen[..], statuses[..seen.len()], "history out of order");
            if seen.len() == length {
                break;
            }
        }
    }
}

#[tokio::test]
async fn a_burst_of_genuine_pushes_leaves_every_watcher_at_the_portals_state() {
    let (idp, portal) = (FakeOidc::start().await.unwrap(), FakePortal::start().await.unwrap());
    let gw = gateway(&idp, &portal).await;
    let hook = format!("http://{}/webhooks/portal", gw.addr);
    let mut c = PublicServicesServiceClient::new(gw.channel.clone());
    let mut watchers = Vec::new();
    for _ in 0..2 {
        let mut w = c.watch_dossier(WatchDossierRequest { dossier_code: LAN_BIRTH.into() }).await.unwrap().into_inner();
        assert_eq!(w.next().await.unwrap().unwrap().dossier.unwrap().status(), DossierStatus::Received);
        watchers.push(w);
    }
    // 500 changes pushed one after another (many with the same status in the
    // same second: identical bodies), then 500 pushed at once.
    let cycle = [4, 5, 6];
    for i in 0..500 {
        let status = cycle[i % 3];
        portal.advance(LAN_BIRTH, status);
        let code = portal.push_to(&hook, SECRET, LAN_BIRTH, status).await.unwrap();
        assert!(code == 204 || code == 401, "{code}");
    }
    catch_up(&portal, &mut watchers, 2 + 500).await;
    // One HTTP/2 connection carries them, as a portal's client would (500
    // connections from one address would meet max_connections_per_ip).
    let client = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let mut pushes = Vec::new();
    for i in 0..500 {
        let status = cycle[i % 3];
        portal.advance(LAN_BIRTH, status);
        let (hook, client) = (hook.clone(), client.clone());
        pushes.push(tokio::spawn(async move {
            let (body, headers) = FakePortal::signed_push(SECRET, LAN_BIRTH, status, FakePortal::now());
            send_push(&client, &hook, &body, &headers).await.status().as_u16()
        }));
    }
    for p in pushes {
        let code = p.await.unwrap();
        assert!(code == 204 || code == 401, "{code}");
    }
    catch_up(&portal, &mut watchers, 2 + 1000).await;
    // The final change ends every watch.
    portal.advance(LAN_BIRTH, 10);
    assert_eq!(portal.push_to(&hook, SECRET, LAN_BIRTH, 10).await.unwrap(), 204);
    for mut w in watchers {
        let last = follow_to_the_end(&mut w, std::time::Duration::from_secs(20)).await;
        assert_eq!(last.status(), DossierStatus::ResultReturned);
        assert_eq!(last.history.len(), 2 + 1000 + 1);
    }
}

#[tokio::test]
async fn changes_told_apart_by_event_id_are_each_applied() {
    let (idp, portal) = (FakeOidc::start().await.unwrap(), FakePortal::start().await.unwrap());
    let gw = gateway(&idp, &portal).await;
    let mut watch = PublicServicesServiceClient::new(gw.channel.clone())
        .watch_dossier(WatchDossierRequest { dossier_code: LAN_BIRTH.into() })
        .await
        .unwrap()
        .into_inner();
    watch.next().await.unwrap().unwrap();
    let now = FakePortal::now();
    for (i, status) in [4, 4, 4].into_iter().enumerate() {
        portal.advance(LAN_BIRTH, status);
        let body = format!(r#"{{"dossier_code":"{LAN_BIRTH}","status":{status},"event_id":"evt-{i}"}}"#);
        let headers = FakePortal::sign(SECRET, now, &body);
        assert_eq!(push(&gw, "portal", &body, &headers).await, 204, "event {i}");
        let d = watch.next().await.unwrap().unwrap().dossier.unwrap();
        assert_eq!(d.history.len(), 3 + i);
        // The same event again: refused, nothing new.
        assert_eq!(push(&gw, "portal", &body, &headers).await, 401);
    }
}

#[tokio::test]
async fn a_push_answered_503_is_applied_when_retried_and_a_replay_after_a_restart_is_refused() {
    let (idp, portal) = (FakeOidc::start().await.unwrap(), FakePortal::start().await.unwrap());
    let replay_file = common::temp_dir("webhooks-restart").join("portal.seen");
    let gw = gateway_with(&idp, &portal, &replay_file, "").await;
    let mut watch = PublicServicesServiceClient::new(gw.channel.clone())
        .watch_dossier(WatchDossierRequest { dossier_code: LAN_BIRTH.into() })
        .await
        .unwrap()
        .into_inner();
    watch.next().await.unwrap().unwrap();
    portal.advance(LAN_BIRTH, 4);
    let (body, headers) = FakePortal::signed_push(SECRET, LAN_BIRTH, 4, FakePortal::now());
    // The re-read fails: 503, and the delivery is not marked applied.
    portal.faults.inject("/dossiers/", lienthong_contract_tests::fakes::Fault::Status(500));
    assert_eq!(push(&gw, "portal", &body, &headers).await, 503);
    portal.faults.clear();
    // The portal's retry of the identical push is applied.
    assert_eq!(push(&gw, "portal", &body, &headers).await, 204);
    let d = watch.next().await.unwrap().unwrap().dossier.unwrap();
    assert_eq!(d.status(), DossierStatus::Processing);
    drop(watch);
    drop(gw);
    // After a restart on the same replay file, the same push is a replay.
    let gw = gateway_with(&idp, &portal, &replay_file, "").await;
    assert_eq!(push(&gw, "portal", &body, &headers).await, 401);
}

#[tokio::test]
async fn pushes_arrive_over_http1_with_tls_and_without_grpc_web() {
    let (idp, portal) = (FakeOidc::start().await.unwrap(), FakePortal::start().await.unwrap());
    let fixture =
        |name: &str| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../contract-tests/fixtures/tls").join(name);
    let tls = format!(
        "grpc_web = false\n[server.tls]\ncert_file = {:?}\nkey_file = {:?}",
        fixture("server.pem"),
        fixture("server.key")
    );
    let replay_file = common::temp_dir("webhooks-tls").join("portal.seen");
    let toml_gateway = {
        // Reached over TLS: the client trusts the test CA.
        let toml = portal_toml(&idp, &portal, &replay_file, &tls);
        let ca = tonic::transport::Certificate::from_pem(std::fs::read(fixture("ca.pem")).unwrap());
        let client_tls = tonic::transport::ClientTlsConfig::new().ca_certificate(ca).domain_name("localhost");
        TestGateway::start_with(
            lienthong::config::Config::from_toml(&toml).unwrap(),
            lienthong::server::adapter_registry(),
            Some(client_tls),
        )
        .await
    };
    let gw = toml_gateway;
    // An HTTP/1.1-only client (ALPN http/1.1), as curl --http1.1 and
    // Python's requests are.
    let ca = reqwest::Certificate::from_pem(&std::fs::read(fixture("ca.pem")).unwrap()).unwrap();
    let client = reqwest::Client::builder().add_root_certificate(ca).http1_only().build().unwrap();
    portal.advance(LAN_BIRTH, 4);
    let (body, headers) = FakePortal::signed_push(SECRET, LAN_BIRTH, 4, FakePortal::now());
    let url = format!("https://localhost:{}/webhooks/portal", gw.addr.port());
    let response = send_push(&client, &url, &body, &headers).await;
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert_eq!(response.status(), 204);

    // Plain HTTP/1.1 to a gateway without gRPC-Web is served too.
    let replay_file = common::temp_dir("webhooks-h1").join("portal.seen");
    let plain = gateway_with(&idp, &portal, &replay_file, "grpc_web = false").await;
    portal.advance(LAN_BIRTH, 5);
    let (body, headers) = FakePortal::signed_push(SECRET, LAN_BIRTH, 5, FakePortal::now());
    let http1 = reqwest::Client::builder().http1_only().build().unwrap();
    let response = send_push(&http1, &format!("http://{}/webhooks/portal", plain.addr), &body, &headers).await;
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert_eq!(response.status(), 204);
}
