//! End to end over TCP: identity and dossiers — who sees what, and
//! WatchDossier following live status changes on a paused clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::time::Duration;

use common::{TestGateway, authed, violated_fields};
use futures_util::StreamExt;
use lienthong::config::Config;
use lienthong_proto::sandbox::v1::sandbox_identity_service_client::SandboxIdentityServiceClient;
use lienthong_proto::sandbox::v1::{IssueTokenRequest, ListDemoCitizensRequest};
use lienthong_proto::v1::identity_service_client::IdentityServiceClient;
use lienthong_proto::v1::public_services_service_client::PublicServicesServiceClient;
use lienthong_proto::v1::*;
use tonic::Code;

/// Lan's dossier: received at start, then processing, completed, returned.
const LAN_BIRTH: &str = "000.30.67.H29-251114-0001";
/// Minh's dossier: rejected at intake (final) when the sandbox starts.
const MINH_REJECTED: &str = "000.30.99.H29-251117-0005";

#[tokio::test]
async fn profile_is_masked_unless_the_app_may_see_the_number() {
    let gw = TestGateway::sandbox().await;
    let token = gw.token("lan").await;
    let mut c = IdentityServiceClient::new(gw.channel.clone());
    let p =
        c.get_my_profile(authed(GetMyProfileRequest::default(), &token)).await.unwrap().into_inner().profile.unwrap();
    assert_eq!(p.id_number, "********2345");
    assert!(p.id_number_masked);
    assert_eq!(p.full_name, "Nguyễn Thị Lan");
    assert_eq!(p.birth_date, Some(Date { year: 1990, month: 3, day: 12 }));
    assert_eq!(p.sex(), Sex::Female);
    assert_eq!(p.identity_level(), IdentityLevel::IdentityLevel2);
    assert_eq!(p.residence.unwrap().ward_name, "Phường Sài Gòn");

    let e = c.get_my_profile(authed(GetMyProfileRequest { include_full_id_number: true }, &token)).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().contains("identity.full_id_number"));
    assert!(!e.message().contains("079190012345"));
}

#[tokio::test]
async fn a_full_id_scope_reveals_the_number() {
    let toml = lienthong::config::SANDBOX_DEFAULT
        .replace("provinces = [\"79\"]", "provinces = [\"79\"]\nscopes = [\"identity.full_id_number\"]");
    let gw = TestGateway::with_toml(&toml, lienthong::server::adapter_registry()).await;
    let token = gw.token("minh").await;
    let mut c = IdentityServiceClient::new(gw.channel.clone());
    let p = c
        .get_my_profile(authed(GetMyProfileRequest { include_full_id_number: true }, &token))
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap();
    assert_eq!(p.id_number, "079085004321");
    assert!(!p.id_number_masked);
}

#[tokio::test]
async fn missing_malformed_and_forged_tokens_are_unauthenticated() {
    let gw = TestGateway::sandbox().await;
    let mut c = IdentityServiceClient::new(gw.channel.clone());
    let e = c.get_my_profile(GetMyProfileRequest::default()).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().contains("Bearer"));

    let mut r = tonic::Request::new(GetMyProfileRequest::default());
    r.metadata_mut().insert("authorization", "Basic dXNlcjpwYXNz".parse().unwrap());
    assert_eq!(c.get_my_profile(r).await.unwrap_err().code(), Code::Unauthenticated);

    assert_eq!(
        c.get_my_profile(authed(GetMyProfileRequest::default(), "not.a.jwt")).await.unwrap_err().code(),
        Code::Unauthenticated
    );

    // A token from another sandbox (another key) does not verify here.
    let other = TestGateway::sandbox().await;
    let foreign = other.token("lan").await;
    let e = c.get_my_profile(authed(GetMyProfileRequest::default(), &foreign)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().contains("signature"), "{}", e.message());
    assert!(!e.message().contains(&foreign));

    // Tampering with the payload breaks the signature.
    let token = gw.token("hoa").await;
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1] = parts[1].chars().rev().collect();
    let e = c.get_my_profile(authed(GetMyProfileRequest::default(), &parts.join("."))).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
}

#[tokio::test(start_paused = true)]
async fn tokens_expire() {
    let gw = TestGateway::on_paused_clock(Config::load(None).unwrap(), lienthong::server::adapter_registry()).await;
    let token = gw.token("lan").await;
    let mut c = IdentityServiceClient::new(gw.channel.clone());
    assert!(c.get_my_profile(authed(GetMyProfileRequest::default(), &token)).await.is_ok());
    tokio::time::advance(Duration::from_secs(2 * 3600)).await;
    let e = c.get_my_profile(authed(GetMyProfileRequest::default(), &token)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().contains("expired"), "{}", e.message());
}

#[tokio::test]
async fn demo_citizens_and_token_errors() {
    let gw = TestGateway::sandbox().await;
    let mut s = SandboxIdentityServiceClient::new(gw.channel.clone());
    let citizens = s.list_demo_citizens(ListDemoCitizensRequest {}).await.unwrap().into_inner().citizens;
    assert!(citizens.len() >= 5);
    assert!(citizens.iter().any(|c| c.handle == "hoa" && c.identity_level == IdentityLevel::IdentityLevel1 as i32));
    assert_eq!(s.issue_token(IssueTokenRequest { handle: "nobody".into() }).await.unwrap_err().code(), Code::NotFound);
    let e = s.issue_token(IssueTokenRequest { handle: String::new() }).await.unwrap_err();
    assert_eq!(violated_fields(&e), ["handle"]);
}

#[tokio::test]
async fn dossiers_show_personal_fields_only_to_their_owner() {
    let gw = TestGateway::sandbox().await;
    let mut c = PublicServicesServiceClient::new(gw.channel.clone());

    // Anyone with the code sees the public status view.
    let public = c
        .get_dossier(GetDossierRequest { dossier_code: LAN_BIRTH.into() })
        .await
        .unwrap()
        .into_inner()
        .dossier
        .unwrap();
    assert_eq!(public.view(), DossierView::Public);
    assert!(public.applicant.is_none());
    assert_eq!(public.status(), DossierStatus::Received);
    assert!(public.received_time.is_some() && public.due_time.unwrap().seconds > public.received_time.unwrap().seconds);
    assert_eq!(public.history.len(), 2);

    // Another citizen's token still gets the public view.
    let minh = gw.token("minh").await;
    let other = c
        .get_dossier(authed(GetDossierRequest { dossier_code: LAN_BIRTH.into() }, &minh))
        .await
        .unwrap()
        .into_inner()
        .dossier
        .unwrap();
    assert_eq!(other.view(), DossierView::Public);
    assert!(other.applicant.is_none());

    // The owner sees the applicant, with the ID number masked.
    let lan = gw.token("lan").await;
    let own = c
        .get_dossier(authed(GetDossierRequest { dossier_code: LAN_BIRTH.into() }, &lan))
        .await
        .unwrap()
        .into_inner()
        .dossier
        .unwrap();
    assert_eq!(own.view(), DossierView::Owner);
    let applicant = own.applicant.unwrap();
    assert_eq!(applicant.full_name, "Nguyễn Thị Lan");
    assert_eq!(applicant.masked_id_number, "********2345");

    let final_one = c
        .get_dossier(GetDossierRequest { dossier_code: MINH_REJECTED.into() })
        .await
        .unwrap()
        .into_inner()
        .dossier
        .unwrap();
    assert!(final_one.r#final && final_one.status() == DossierStatus::Rejected);

    assert_eq!(
        c.get_dossier(GetDossierRequest { dossier_code: "000.00.04.H29-250101-9999".into() }).await.unwrap_err().code(),
        Code::NotFound
    );
    let e = c.get_dossier(GetDossierRequest { dossier_code: "0001".into() }).await.unwrap_err();
    assert_eq!(violated_fields(&e), ["dossier_code"]);
    // A bad token is refused, not ignored.
    let e = c.get_dossier(authed(GetDossierRequest { dossier_code: LAN_BIRTH.into() }, "forged")).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn my_dossiers_are_only_mine_and_need_level_2() {
    let gw = TestGateway::sandbox().await;
    let mut c = PublicServicesServiceClient::new(gw.channel.clone());
    let lan = gw.token("lan").await;
    let mine = c.list_my_dossiers(authed(ListMyDossiersRequest::default(), &lan)).await.unwrap().into_inner();
    // The dataset's four, and the renewal of the one already final at start
    // (the sandbox keeps one in progress for every demo citizen).
    assert_eq!(mine.total_size, 5);
    assert!(
        mine.dossiers
            .iter()
            .all(|d| d.view() == DossierView::Owner && d.applicant.as_ref().unwrap().full_name == "Nguyễn Thị Lan")
    );
    // Newest first: the renewal the sandbox submitted at its start (one
    // status so far), then the dataset's, the last submitted first.
    assert_eq!(mine.dossiers[0].history.len(), 1);
    assert!(mine.dossiers[0].dossier_code.starts_with("000.30.67.H29-"), "{}", mine.dossiers[0].dossier_code);
    assert_eq!(mine.dossiers[1].dossier_code, "000.00.04.H29-251119-0011");

    // Paging and the status filter.
    let page = c
        .list_my_dossiers(authed(ListMyDossiersRequest { page_size: 3, ..Default::default() }, &lan))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.dossiers.len(), 3);
    let rest = c
        .list_my_dossiers(authed(
            ListMyDossiersRequest { page_size: 3, page_token: page.next_page_token.clone(), ..Default::default() },
            &lan,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.dossiers.len(), 2);
    assert!(rest.next_page_token.is_empty());
    // Lan's page token is hers alone: another citizen cannot page with it.
    let minh = gw.token("minh").await;
    let e = c
        .list_my_dossiers(authed(
            ListMyDossiersRequest { page_size: 3, page_token: page.next_page_token.clone(), ..Default::default() },
            &minh,
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&e), ["page_token"]);
    let returned = c
        .list_my_dossiers(authed(
            ListMyDossiersRequest { status: DossierStatus::ResultReturned as i32, ..Default::default() },
            &lan,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(
        !returned.dossiers.is_empty() && returned.dossiers.iter().all(|d| d.status() == DossierStatus::ResultReturned)
    );

    let minh = gw.token("minh").await;
    let his = c.list_my_dossiers(authed(ListMyDossiersRequest::default(), &minh)).await.unwrap().into_inner();
    assert_eq!(his.total_size, 3);
    assert!(his.dossiers.iter().all(|d| mine.dossiers.iter().all(|m| m.dossier_code != d.dossier_code)));

    let e = c.list_my_dossiers(ListMyDossiersRequest::default()).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let hoa = gw.token("hoa").await;
    let e = c.list_my_dossiers(authed(ListMyDossiersRequest::default(), &hoa)).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().contains("level 2"));
    let e = c
        .list_my_dossiers(authed(ListMyDossiersRequest { page_size: -1, status: 11, ..Default::default() }, &lan))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&e), ["page_size", "status"]);
}

#[tokio::test(start_paused = true)]
async fn watch_dossier_sends_the_current_status_then_every_change_until_final() {
    let gw = TestGateway::on_paused_clock(Config::load(None).unwrap(), lienthong::server::adapter_registry()).await;
    let lan = gw.token("lan").await;
    let mut c = PublicServicesServiceClient::new(gw.channel.clone());
    let mut owner = c
        .watch_dossier(authed(WatchDossierRequest { dossier_code: LAN_BIRTH.into() }, &lan))
        .await
        .unwrap()
        .into_inner();
    let mut public =
        c.watch_dossier(WatchDossierRequest { dossier_code: LAN_BIRTH.into() }).await.unwrap().into_inner();

    let mut seen = Vec::new();
    while let Some(msg) = owner.next().await {
        let d = msg.unwrap().dossier.unwrap();
        assert_eq!(d.view(), DossierView::Owner);
        assert_eq!(d.history.len(), seen.len() + 2, "each message adds one status change");
        assert_eq!(d.history.last().unwrap().status, d.status);
        seen.push(d.status());
    }
    assert_eq!(
        seen,
        [DossierStatus::Received, DossierStatus::Processing, DossierStatus::Completed, DossierStatus::ResultReturned]
    );

    let mut public_seen = Vec::new();
    while let Some(msg) = public.next().await {
        let d = msg.unwrap().dossier.unwrap();
        assert!(d.applicant.is_none() && d.view() == DossierView::Public);
        public_seen.push((d.status(), d.r#final));
    }
    assert_eq!(public_seen.last(), Some(&(DossierStatus::ResultReturned, true)));
    assert_eq!(public_seen.len(), 4);

    // A final dossier sends its state once and ends.
    let mut done =
        c.watch_dossier(WatchDossierRequest { dossier_code: MINH_REJECTED.into() }).await.unwrap().into_inner();
    assert_eq!(done.next().await.unwrap().unwrap().dossier.unwrap().status(), DossierStatus::Rejected);
    assert!(done.next().await.is_none());

    let e =
        c.watch_dossier(WatchDossierRequest { dossier_code: "000.00.04.H29-250101-9999".into() }).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
}

#[tokio::test]
async fn the_least_identity_level_is_configured_per_rpc() {
    // Configuring one RPC leaves the others' defaults (GetDossier,
    // WatchDossier and ListMyDossiers need level 2) in force.
    let toml = format!("{}\n[identity]\nmin_level = {{ GetMyProfile = 2 }}\n", lienthong::config::SANDBOX_DEFAULT);
    let gw = TestGateway::with_toml(&toml, lienthong::server::adapter_registry()).await;
    let hoa = gw.token("hoa").await; // a level-1 account
    let e = IdentityServiceClient::new(gw.channel.clone())
        .get_my_profile(authed(GetMyProfileRequest::default(), &hoa))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().contains("GetMyProfile needs a level 2"), "{}", e.message());
    // Level-2 citizens are unaffected.
    let lan = gw.token("lan").await;
    assert!(
        IdentityServiceClient::new(gw.channel.clone())
            .get_my_profile(authed(GetMyProfileRequest::default(), &lan))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_level_1_owner_gets_the_public_view_and_is_told_why() {
    let gw = TestGateway::sandbox().await;
    let hoa = gw.token("hoa").await; // a level-1 account, owner of this dossier
    let mut c = PublicServicesServiceClient::new(gw.channel.clone());
    let answer = c.get_dossier(authed(GetDossierRequest { dossier_code: HOA_DOSSIER.into() }, &hoa)).await.unwrap();
    let reason = answer.metadata().get("x-lienthong-view-reason").unwrap().to_str().unwrap().to_owned();
    assert!(reason.contains("level 2") && reason.contains("level 1"), "{reason}");
    let d = answer.into_inner().dossier.unwrap();
    assert_eq!(d.view(), DossierView::Public);
    assert!(d.applicant.is_none());
    // Watching it: the same.
    let watch = c.watch_dossier(authed(WatchDossierRequest { dossier_code: HOA_DOSSIER.into() }, &hoa)).await.unwrap();
    assert!(watch.metadata().get("x-lienthong-view-reason").is_some());
    let d = watch.into_inner().next().await.unwrap().unwrap().dossier.unwrap();
    assert_eq!(d.view(), DossierView::Public);
    assert!(d.applicant.is_none());
    // Anyone else's public view says nothing of levels.
    let lan = gw.token("lan").await;
    let answer = c.get_dossier(authed(GetDossierRequest { dossier_code: HOA_DOSSIER.into() }, &lan)).await.unwrap();
    assert!(answer.metadata().get("x-lienthong-view-reason").is_none());
    // With the level lowered by config, the owner's view again.
    let toml = format!("{}\n[identity]\nmin_level = {{ GetDossier = 1 }}\n", lienthong::config::SANDBOX_DEFAULT);
    let gw = TestGateway::with_toml(&toml, lienthong::server::adapter_registry()).await;
    let hoa = gw.token("hoa").await;
    let d = PublicServicesServiceClient::new(gw.channel.clone())
        .get_dossier(authed(GetDossierRequest { dossier_code: HOA_DOSSIER.into() }, &hoa))
        .await
        .unwrap()
        .into_inner()
        .dossier
        .unwrap();
    assert_eq!(d.view(), DossierView::Owner);
}

/// A dossier of `hoa`, the sandbox's level-1 citizen.
const HOA_DOSSIER: &str = "000.30.67.H29-251118-0010";

#[tokio::test]
async fn citizens_over_their_rate_get_resource_exhausted_with_a_delay() {
    let toml =
        format!("{}\n[limits]\nper_citizen = {{ per_second = 1, burst = 2 }}\n", lienthong::config::SANDBOX_DEFAULT);
    let gw = TestGateway::with_toml(&toml, lienthong::server::adapter_registry()).await;
    let (lan, minh) = (gw.token("lan").await, gw.token("minh").await);
    let mut c = IdentityServiceClient::new(gw.channel.clone());
    for _ in 0..2 {
        c.get_my_profile(authed(GetMyProfileRequest::default(), &lan)).await.unwrap();
    }
    let e = c.get_my_profile(authed(GetMyProfileRequest::default(), &lan)).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    use tonic_types::StatusExt;
    let delay = e.get_details_retry_info().unwrap().retry_delay.unwrap();
    assert!(delay > Duration::ZERO && delay <= Duration::from_secs(1), "{delay:?}");
    assert!(!e.message().contains("079190012345"));
    // Another citizen has their own budget.
    c.get_my_profile(authed(GetMyProfileRequest::default(), &minh)).await.unwrap();
}

#[tokio::test]
async fn personal_answers_are_cached_per_citizen_and_never_shared() {
    let gw = TestGateway::sandbox().await;
    let (lan, minh) = (gw.token("lan").await, gw.token("minh").await);
    let mut ps = PublicServicesServiceClient::new(gw.channel.clone());
    let cache = |m: &tonic::metadata::MetadataMap| m.get("x-lienthong-cache").unwrap().to_str().unwrap().to_owned();

    let first = ps.list_my_dossiers(authed(ListMyDossiersRequest::default(), &lan)).await.unwrap();
    assert_eq!(cache(first.metadata()), "miss");
    let again = ps.list_my_dossiers(authed(ListMyDossiersRequest::default(), &lan)).await.unwrap();
    assert_eq!(cache(again.metadata()), "hit");
    // The very same request from another citizen is not a hit: his own answer.
    let his = ps.list_my_dossiers(authed(ListMyDossiersRequest::default(), &minh)).await.unwrap();
    assert_eq!(cache(his.metadata()), "miss");
    let (mine, his) = (again.into_inner(), his.into_inner());
    // Each with the renewal of a dossier already final at start.
    assert_eq!((mine.total_size, his.total_size), (5, 3));
    assert!(his.dossiers.iter().all(|d| d.applicant.as_ref().unwrap().full_name == "Trần Văn Minh"));

    let mut id = IdentityServiceClient::new(gw.channel.clone());
    let p1 = id.get_my_profile(authed(GetMyProfileRequest::default(), &lan)).await.unwrap();
    let p2 = id.get_my_profile(authed(GetMyProfileRequest::default(), &lan)).await.unwrap();
    let p3 = id.get_my_profile(authed(GetMyProfileRequest::default(), &minh)).await.unwrap();
    assert_eq!(
        (cache(p1.metadata()), cache(p2.metadata()), cache(p3.metadata())),
        ("miss".into(), "hit".into(), "miss".into())
    );
    assert_eq!(p2.into_inner().profile.unwrap().full_name, "Nguyễn Thị Lan");
    // A cached profile is masked like a fresh one.
    let p3 = p3.into_inner().profile.unwrap();
    assert_eq!((p3.full_name.as_str(), p3.id_number.as_str()), ("Trần Văn Minh", "********4321"));
}
