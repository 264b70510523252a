//! Replicas that act as one gateway through Redis (`[cluster]`): cache
//! invalidations, dossier status changes, webhook replays and the polling
//! lease reach every replica. The real Redis on 127.0.0.1:6379 (each test
//! under a key prefix of its own), and a Redis of the test's own where a
//! connection must break.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lienthong::cluster::shared::Streams;
use lienthong::cluster::{Cluster, ClusterConfig};
use lienthong_adapter_core::{Claim, Delivery, Shared};
use lienthong_contract_tests::fakes::{FakeOidc, FakePortal};
use lienthong_proto::admin::v1::InvalidateCacheRequest;
use lienthong_proto::admin::v1::admin_service_client::AdminServiceClient;
use lienthong_proto::admin::v1::invalidate_cache_request::Target;
use lienthong_proto::v1::healthcare_service_client::HealthcareServiceClient;
use lienthong_proto::v1::public_services_service_client::PublicServicesServiceClient;
use lienthong_proto::v1::*;
use tokio::time::Instant;

use crate::common::{self, TestGateway};

const REDIS: &str = "redis://127.0.0.1:6379";
const KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
const ADMIN_TOKEN: &str = "an-operator-token-for-replicas";
const SECRET: &str = "webhook-secret-webhook-secret-0001";
const LAN_BIRTH: &str = "000.30.67.H29-251114-0001";
/// How long a change may take to reach another replica before the test
/// calls it lost (the 1 s goal is measured by the benchmark, not here).
const PATIENCE: Duration = Duration::from_secs(10);

fn prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("lienthong-test:{test}:{}:{nanos}:", std::process::id())
}

fn cluster_toml(redis_url: &str, prefix: &str) -> String {
    format!(
        "\n[cluster]\nredis_url = \"{redis_url}\"\nkey_prefix = \"{prefix}\"\nexpected_replicas = 2\ncommand_timeout = \"1s\"\n"
    )
}

fn admin<T>(message: T) -> tonic::Request<T> {
    common::request(message, &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))])
}

/// Sandbox gateways sharing Redis under `prefix`, with an admin token.
async fn sandbox_replicas(n: usize, prefix: &str) -> Vec<TestGateway> {
    let toml = lienthong::config::SANDBOX_DEFAULT
        .replace("drain_timeout = \"10s\"", &format!("drain_timeout = \"10s\"\npage_token_key = \"{KEY}\""))
        + &format!("\n[admin]\ntoken_sha256 = [\"{}\"]\n", lienthong::crypto::digest_hex(ADMIN_TOKEN))
        + &cluster_toml(REDIS, prefix);
    let mut gateways = Vec::new();
    for _ in 0..n {
        gateways.push(TestGateway::with_toml(&toml, lienthong::server::adapter_registry()).await);
    }
    gateways
}

fn cache_state(m: &tonic::metadata::MetadataMap) -> String {
    m.get("x-lienthong-cache").unwrap().to_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_invalidation_on_one_replica_clears_the_answer_on_every_replica() {
    let gateways = sandbox_replicas(3, &prefix("invalidate")).await;
    let facility = |code: &str| GetFacilityRequest { facility_code: code.into() };
    for gw in &gateways {
        let mut h = HealthcareServiceClient::new(gw.channel.clone());
        h.get_facility(facility("79001")).await.unwrap();
        h.get_facility(facility("79002")).await.unwrap();
        assert_eq!(cache_state(h.get_facility(facility("79001")).await.unwrap().metadata()), "hit");
    }
    let any = prost_types::Any {
        type_url: "type.googleapis.com/lienthong.v1.GetFacilityRequest".into(),
        value: prost::Message::encode_to_vec(&facility("79001")),
    };
    let removed = AdminServiceClient::new(gateways[0].channel.clone())
        .invalidate_cache(admin(InvalidateCacheRequest { province: "79".into(), target: Some(Target::Request(any)) }))
        .await
        .unwrap()
        .into_inner()
        .removed;
    assert_eq!(removed, 1, "counted on the replica asked");
    // The other replicas drop it too (each asked until it misses: a hit
    // leaves the entry as it was), and keep the facility not named.
    for gw in &gateways[1..] {
        let mut h = HealthcareServiceClient::new(gw.channel.clone());
        let deadline = Instant::now() + PATIENCE;
        while cache_state(h.get_facility(facility("79001")).await.unwrap().metadata()) == "hit" {
            assert!(Instant::now() < deadline, "another replica still serves the invalidated answer");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(cache_state(h.get_facility(facility("79002")).await.unwrap().metadata()), "hit");
    }
}

#[tokio::test]
async fn without_redis_an_invalidation_clears_its_replica_and_says_the_others_were_not_told() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let toml = lienthong::config::SANDBOX_DEFAULT
        .replace("drain_timeout = \"10s\"", &format!("drain_timeout = \"10s\"\npage_token_key = \"{KEY}\""))
        + &format!("\n[admin]\ntoken_sha256 = [\"{}\"]\n", lienthong::crypto::digest_hex(ADMIN_TOKEN))
        + &cluster_toml(&format!("redis://127.0.0.1:{port}"), &prefix("no-redis"));
    let gw = TestGateway::with_toml(&toml, lienthong::server::adapter_registry()).await;
    let mut h = HealthcareServiceClient::new(gw.channel.clone());
    h.get_facility(GetFacilityRequest { facility_code: "79001".into() }).await.unwrap();
    let e = AdminServiceClient::new(gw.channel.clone())
        .invalidate_cache(admin(InvalidateCacheRequest { province: String::new(), target: Some(Target::All(true)) }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable);
    assert!(e.message().contains("removed 1 entries on this replica") && e.message().contains("call again"), "{e:?}");
    let again = h.get_facility(GetFacilityRequest { facility_code: "79001".into() }).await.unwrap();
    assert_eq!(cache_state(again.metadata()), "miss");
}

/// Gateways over one portal, sharing Redis under `prefix`, taking pushes
/// (each remembering deliveries in a file of its own) or polling.
async fn portal_replicas(
    n: usize,
    (idp, portal): (&FakeOidc, &FakePortal),
    (redis_url, prefix): (&str, &str),
    updates: &str,
) -> Vec<TestGateway> {
    let mut gateways = Vec::new();
    for _ in 0..n {
        let replay_file = common::temp_dir("webhooks").join("portal.seen");
        let server = format!("page_token_key = \"{KEY}\"");
        let toml = crate::registry::portal_toml_with(idp, portal, &replay_file, &server, updates)
            + &cluster_toml(redis_url, prefix);
        gateways.push(TestGateway::with_toml(&toml, lienthong::server::adapter_registry()).await);
    }
    gateways
}

async fn watch(gw: &TestGateway, code: &str) -> tonic::Streaming<WatchDossierResponse> {
    let mut watch = PublicServicesServiceClient::new(gw.channel.clone())
        .watch_dossier(WatchDossierRequest { dossier_code: code.into() })
        .await
        .unwrap()
        .into_inner();
    watch.next().await.unwrap().unwrap();
    watch
}

async fn next_status(watch: &mut tonic::Streaming<WatchDossierResponse>) -> (DossierStatus, usize) {
    let d = tokio::time::timeout(PATIENCE, watch.next())
        .await
        .expect("the change did not reach this replica's watcher")
        .unwrap()
        .unwrap()
        .dossier
        .unwrap();
    (d.status(), d.history.len())
}

async fn push(gw: &TestGateway, body: &str, headers: &[(&'static str, String)]) -> u16 {
    let mut req = reqwest::Client::new()
        .post(format!("http://{}/webhooks/portal", gw.addr))
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    req.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn a_push_to_one_replica_reaches_watchers_on_every_replica_and_its_replay_is_refused_by_all() {
    let (idp, portal) = (FakeOidc::start().await.unwrap(), FakePortal::start().await.unwrap());
    let gateways = portal_replicas(3, (&idp, &portal), (REDIS, &prefix("pushes")), "mode = \"webhook\"").await;
    let (mut on_b, mut on_c) = (watch(&gateways[1], LAN_BIRTH).await, watch(&gateways[2], LAN_BIRTH).await);

    // Nobody watches on the replica the portal reaches; both watchers see
    // the change, in order.
    portal.advance(LAN_BIRTH, 4);
    let (body, headers) = FakePortal::signed_push(SECRET, LAN_BIRTH, 4, FakePortal::now());
    assert_eq!(push(&gateways[0], &body, &headers).await, 204);
    assert_eq!(next_status(&mut on_b).await, (DossierStatus::Processing, 3));
    assert_eq!(next_status(&mut on_c).await, (DossierStatus::Processing, 3));
    // The same delivery again, to replicas whose own records never saw it.
    assert_eq!(push(&gateways[1], &body, &headers).await, 401);
    assert_eq!(push(&gateways[2], &body, &headers).await, 401);

    portal.advance(LAN_BIRTH, 9);
    portal.advance(LAN_BIRTH, 10);
    for (status, gw) in [(9, &gateways[2]), (10, &gateways[1])] {
        let (body, headers) = FakePortal::signed_push(SECRET, LAN_BIRTH, status, FakePortal::now() - 1);
        assert_eq!(push(gw, &body, &headers).await, 204);
    }
    // Each watcher ends at the portal's final state, never going back.
    for watch in [&mut on_b, &mut on_c] {
        let mut last = 3;
        loop {
            let (status, n) = next_status(watch).await;
            assert!(n > last, "a watcher went back from {last} to {n} changes");
            last = n;
            if status == DossierStatus::ResultReturned {
                break;
            }
        }
        assert_eq!(last, 5);
    }
}

#[tokio::test]
async fn while_redis_is_away_a_push_is_answered_503_and_applied_everywhere_when_the_portal_retries() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let redis = crate::cluster::OwnRedis::start(port);
    let url = format!("redis://127.0.0.1:{port}");
    let (idp, portal) = (FakeOidc::start().await.unwrap(), FakePortal::start().await.unwrap());
    let gateways = portal_replicas(2, (&idp, &portal), (&url, &prefix("away")), "mode = \"webhook\"").await;
    let (mut on_a, mut on_b) = (watch(&gateways[0], LAN_BIRTH).await, watch(&gateways[1], LAN_BIRTH).await);

    drop(redis);
    portal.advance(LAN_BIRTH, 4);
    let (body, headers) = FakePortal::signed_push(SECRET, LAN_BIRTH, 4, FakePortal::now());
    // The replica's own watcher has the change; the others could not be
    // told, so the push is not acknowledged.
    assert_eq!(push(&gateways[0], &body, &headers).await, 503);
    assert_eq!(next_status(&mut on_a).await, (DossierStatus::Processing, 3));

    // Redis is back: the portal's retry of the same delivery is applied, and
    // reaches the other replica.
    let _redis = crate::cluster::OwnRedis::start(port);
    let push = (body.as_str(), headers.as_slice());
    retried_until(&gateways[0], push, 204, "Redis is back but pushes are still refused").await;
    assert_eq!(next_status(&mut on_b).await, (DossierStatus::Processing, 3));
    // Now it was applied: sent again to the other replica (once that one
    // reaches Redis again, until when it answers 503), it is a replay.
    retried_until(&gateways[1], push, 401, "the other replica never reached Redis again").await;
}

/// Sends `push` to `gw` again, as a portal does after a 503, until it is
/// answered `wanted`; any other answer fails the test.
async fn retried_until(gw: &TestGateway, (body, headers): (&str, &[(&'static str, String)]), wanted: u16, why: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match push(gw, body, headers).await {
            status if status == wanted => return,
            503 => assert!(Instant::now() < deadline, "{why}"),
            other => panic!("the push was answered {other}, not {wanted}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn one_replica_polls_the_portal_for_every_replicas_watchers() {
    let (idp, portal) = (FakeOidc::start().await.unwrap(), FakePortal::start().await.unwrap());
    let gateways =
        portal_replicas(3, (&idp, &portal), (REDIS, &prefix("polls")), "mode = \"poll\"\npoll_interval = \"100ms\"")
            .await;
    let mut watchers = Vec::new();
    for gw in &gateways {
        watchers.push(watch(gw, LAN_BIRTH).await);
    }
    // A change the portal does not push: read by the poller, seen on every
    // replica.
    portal.advance(LAN_BIRTH, 4);
    for w in &mut watchers {
        assert_eq!(next_status(w).await, (DossierStatus::Processing, 3));
    }
    // Over the next second the portal is read about once per interval (a
    // poller per replica would read it three times as often).
    let (reads, started) = (portal.dossier_reads(), Instant::now());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rounds = started.elapsed().as_secs_f64() / 0.1;
    let per_round = (portal.dossier_reads() - reads) as f64 / rounds;
    assert!(per_round <= 1.5, "{per_round:.2} reads per polling round: more than one replica polls");
}

/// Two replicas' shared state over `redis_url` under `prefix`.
fn two_streams(redis_url: &str, prefix: &str) -> (Arc<dyn Shared>, Arc<dyn Shared>) {
    let config = ClusterConfig {
        redis_url: redis_url.to_owned(),
        key_prefix: prefix.to_owned(),
        command_timeout: Duration::from_secs(1),
        ..Default::default()
    };
    let key = lienthong::crypto::SecretKey::from_hex(KEY).unwrap();
    let start = |replica: &str| Streams::start(Cluster::new(&config).unwrap(), &key, replica.to_owned()).unwrap();
    (start("a").scope("test"), start("b").scope("test"))
}

async fn next(rx: &mut tokio::sync::broadcast::Receiver<Delivery>, what: &str) -> Delivery {
    match tokio::time::timeout(PATIENCE, rx.recv()).await {
        Ok(delivery) => delivery.unwrap(),
        Err(_) => panic!("{what} did not arrive"),
    }
}

fn message(text: &str) -> Delivery {
    Delivery::Message(Arc::from(text.as_bytes()))
}

/// Breaks the connections blocked reading streams (other tests' readers
/// too: they read what they missed, which is what is tested here); how
/// many.
async fn kill_readers(redis: &mut redis::aio::MultiplexedConnection) -> usize {
    let clients: String = redis::cmd("CLIENT").arg("LIST").query_async(redis).await.unwrap();
    let readers: Vec<&str> = clients
        .lines()
        .filter(|l| l.contains("cmd=xread"))
        .filter_map(|l| l.split_whitespace().find_map(|f| f.strip_prefix("id=")))
        .collect();
    for id in &readers {
        let _: redis::RedisResult<i64> = redis::cmd("CLIENT").arg("KILL").arg("ID").arg(id).query_async(redis).await;
    }
    readers.len()
}

#[tokio::test]
async fn a_replica_whose_connection_broke_reads_what_it_missed_and_is_told_when_messages_were_lost() {
    let prefix = prefix("streams");
    let (a, b) = two_streams(REDIS, &prefix);
    let mut on_b = b.subscribe("news");
    let deadline = Instant::now() + PATIENCE;
    // Published until b's reader has its position (messages before that are
    // not promised to it).
    loop {
        a.publish("news", b"hello".to_vec()).await.unwrap();
        if tokio::time::timeout(Duration::from_millis(200), on_b.recv()).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "b never read the topic");
    }
    while on_b.try_recv().is_ok() {}

    let mut redis = redis::Client::open(REDIS).unwrap().get_multiplexed_async_connection().await.unwrap();
    assert!(kill_readers(&mut redis).await > 0);
    // While b reconnects: two messages, then they are trimmed away and one
    // more is published.
    a.publish("news", b"one".to_vec()).await.unwrap();
    a.publish("news", b"two".to_vec()).await.unwrap();
    assert_eq!(next(&mut on_b, "one").await, message("one"), "a message published while b was away was lost");
    assert_eq!(next(&mut on_b, "two").await, message("two"));

    // A message b never saw (appended and trimmed away before it read it:
    // its number taken), then one more: b is told it missed some.
    let stream = format!("{prefix}shared/test/topic/news");
    let _: i64 = redis::cmd("INCR").arg(format!("{stream}:seq")).query_async(&mut redis).await.unwrap();
    a.publish("news", b"four".to_vec()).await.unwrap();
    assert_eq!(next(&mut on_b, "missed (gap)").await, Delivery::Missed, "a trimmed message went unnoticed");
    assert_eq!(next(&mut on_b, "four").await, message("four"));
    // Redis lost everything (a restart without persistence, a failover):
    // numbering starts over, and b is told too.
    let _: i64 = redis::cmd("DEL").arg(&stream).arg(format!("{stream}:seq")).query_async(&mut redis).await.unwrap();
    a.publish("news", b"five".to_vec()).await.unwrap();
    assert_eq!(
        next(&mut on_b, "missed (reset)").await,
        Delivery::Missed,
        "messages lost with Redis's data went unnoticed"
    );
    assert_eq!(next(&mut on_b, "five").await, message("five"));
    // What Redis holds is sealed: neither the text nor anything readable.
    let entries: redis::Value =
        redis::cmd("XRANGE").arg(&stream).arg("-").arg("+").query_async(&mut redis).await.unwrap();
    assert!(!format!("{entries:?}").contains("four"));
}

#[tokio::test]
async fn leases_seen_ids_and_marks_are_shared() {
    let prefix = prefix("leases");
    let (a, b) = two_streams(REDIS, &prefix);
    let ttl = Duration::from_secs(5);
    assert!(a.hold("poller", ttl).await);
    assert!(!b.hold("poller", ttl).await, "two replicas hold one lease");
    assert!(a.hold("poller", ttl).await, "the holder renews it");
    // A delivery: claimed by one, busy for the other, released, claimed
    // again, done.
    assert_eq!(a.claim("delivery-1", ttl).await, Some(Claim::Mine));
    assert_eq!(b.claim("delivery-1", ttl).await, Some(Claim::Busy));
    a.release("delivery-1").await;
    assert_eq!(b.claim("delivery-1", ttl).await, Some(Claim::Mine));
    // Only the claim's holder settles it.
    a.release("delivery-1").await;
    a.complete("delivery-1", ttl).await;
    assert_eq!(a.claim("delivery-1", ttl).await, Some(Claim::Busy), "a settled another replica's claim");
    b.complete("delivery-1", ttl).await;
    assert_eq!(a.claim("delivery-1", ttl).await, Some(Claim::Done));
    // A claim whose holder vanished lapses.
    assert_eq!(a.claim("delivery-2", Duration::from_millis(1)).await, Some(Claim::Mine));
    let deadline = Instant::now() + PATIENCE;
    while b.claim("delivery-2", ttl).await != Some(Claim::Mine) {
        assert!(Instant::now() < deadline, "a lapsed claim still blocks the delivery");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    a.mark("watched", &["000.30.67.H29-251114-0001".to_owned()], ttl).await;
    b.mark("watched", &["000.00.04.H29-251112-0004".to_owned()], Duration::from_millis(1)).await;
    assert_eq!(b.is_marked("watched", "000.30.67.H29-251114-0001").await, Some(true));
    assert_eq!(b.is_marked("watched", "000.30.67.H29-251114-0002").await, Some(false));
    // Marking drops expired marks: the set holds only live ones, even when
    // nobody lists it.
    let deadline = Instant::now() + PATIENCE;
    let mut redis = redis::Client::open(REDIS).unwrap().get_multiplexed_async_connection().await.unwrap();
    loop {
        assert!(a.mark("watched", &["000.30.67.H29-251114-0001".to_owned()], ttl).await);
        let live: u64 =
            redis::cmd("ZCARD").arg(format!("{prefix}shared/test/set/watched")).query_async(&mut redis).await.unwrap();
        if live == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "{live} marks kept, one live");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    b.mark("watched", &["000.00.04.H29-251112-0004".to_owned()], Duration::from_millis(1)).await;
    let deadline = Instant::now() + PATIENCE;
    loop {
        let marked = a.marked("watched").await;
        if marked == ["000.30.67.H29-251114-0001"] {
            break;
        }
        assert!(Instant::now() < deadline, "an expired mark stays: {marked:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// This replica's `lienthong_cache_shared_total` of `outcome`.
async fn shared_cache_count(gw: &TestGateway, outcome: &str) -> u64 {
    let text = reqwest::get(format!("http://{}/metrics", gw.ops_addr)).await.unwrap().text().await.unwrap();
    let series = format!("lienthong_cache_shared_total{{outcome=\"{outcome}\"");
    text.lines().filter(|l| l.starts_with(&series)).filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok()).sum()
}

#[tokio::test]
async fn a_herd_spread_over_replicas_makes_one_upstream_call_and_an_invalidation_clears_the_shared_answer() {
    let prefix = prefix("shared-cache");
    let toml = lienthong::config::SANDBOX_DEFAULT
        .replace("drain_timeout = \"10s\"", &format!("drain_timeout = \"10s\"\npage_token_key = \"{KEY}\""))
        + &format!("\n[admin]\ntoken_sha256 = [\"{}\"]\n", lienthong::crypto::digest_hex(ADMIN_TOKEN))
        + &cluster_toml(REDIS, &prefix)
        + "shared_cache = [\"GetFacility\"]\n";
    let mut gateways = Vec::new();
    for _ in 0..3 {
        gateways.push(TestGateway::with_toml(&toml, lienthong::server::adapter_registry()).await);
    }
    // Ten callers on each replica at once.
    let calls = gateways.iter().flat_map(|gw| {
        (0..10).map(|_| {
            let mut h = HealthcareServiceClient::new(gw.channel.clone());
            async move { h.get_facility(GetFacilityRequest { facility_code: "79001".into() }).await.unwrap() }
        })
    });
    let answers = futures_util::future::join_all(calls).await;
    assert!(answers.iter().all(|a| a.get_ref().facility.as_ref().unwrap().facility_code == "79001"));
    let mut counts = [0u64; 4];
    for gw in &gateways {
        for (i, outcome) in ["filled", "hit", "waited", "alone"].into_iter().enumerate() {
            counts[i] += shared_cache_count(gw, outcome).await;
        }
    }
    // One replica filled from the upstream; the others took its answer.
    assert_eq!(counts, [1, counts[1], counts[2], 0], "filled, hit, waited, alone");
    assert_eq!(counts[1] + counts[2], 2);
    // The answer in Redis is public data, under a key naming what it is.
    let mut redis = redis::Client::open(REDIS).unwrap().get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}cache/*")).query_async(&mut redis).await.unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys[0].starts_with(&format!("{prefix}cache/79/GetFacility/")), "{keys:?}");

    // An operator's invalidation on one replica removes it from Redis too:
    // the next miss elsewhere is filled from the upstream again.
    let removed = AdminServiceClient::new(gateways[0].channel.clone())
        .invalidate_cache(admin(InvalidateCacheRequest {
            province: String::new(),
            target: Some(Target::Dataset("facilities".into())),
        }))
        .await
        .unwrap()
        .into_inner()
        .removed;
    assert_eq!(removed, 1);
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}cache/*")).query_async(&mut redis).await.unwrap();
    assert!(keys.is_empty(), "{keys:?}");
    let filled_before: u64 = shared_cache_count(&gateways[1], "filled").await;
    let mut h = HealthcareServiceClient::new(gateways[1].channel.clone());
    let deadline = Instant::now() + PATIENCE;
    while cache_state(h.get_facility(GetFacilityRequest { facility_code: "79001".into() }).await.unwrap().metadata())
        == "hit"
    {
        assert!(Instant::now() < deadline, "the invalidation never reached this replica");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(shared_cache_count(&gateways[1], "filled").await, filled_before + 1);
}

#[test]
fn personal_answers_are_refused_for_the_shared_cache() {
    let toml = lienthong::config::SANDBOX_DEFAULT
        .replace("drain_timeout = \"10s\"", &format!("drain_timeout = \"10s\"\npage_token_key = \"{KEY}\""))
        + &cluster_toml(REDIS, "lienthong-test:")
        + "shared_cache = [\"GetMyProfile\", \"ListMyDossiers\", \"WatchDossier\", \"GetFacilty\", \"ListFacilities\"]\n";
    let config = lienthong::config::Config::from_toml(&toml).unwrap();
    let e = config.validate(&lienthong::server::adapter_registry()).unwrap_err().to_string();
    for (i, why) in [
        "personal data, which never goes to Redis",
        "personal data, which never goes to Redis",
        "never cached",
        "no RPC is named \"GetFacilty\"; did you mean \"GetFacility\"?",
    ]
    .iter()
    .enumerate()
    {
        assert!(e.lines().any(|l| l.contains(&format!("cluster.shared_cache[{i}]")) && l.contains(why)), "{e}");
    }
    assert!(!e.contains("cluster.shared_cache[4]"), "{e}");
}
