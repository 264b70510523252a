//! Limits shared by replicas in Redis (`[cluster]`): the real Redis on
//! 127.0.0.1:6379 (each test under a key prefix of its own), and a Redis
//! this test starts and stops to see the gateway survive it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use lienthong::cluster::limits::{SharedLimits, Take};
use lienthong::cluster::{Cluster, ClusterConfig};
use lienthong::config::RateLimit;
use tokio::time::Instant;

fn prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("lienthong-test:{test}:{}:{nanos}:", std::process::id())
}

fn replica(url: &str, prefix: &str) -> SharedLimits {
    // A generous timeout: a loaded test machine is not a Redis away.
    let config = ClusterConfig {
        redis_url: url.to_owned(),
        key_prefix: prefix.to_owned(),
        command_timeout: Duration::from_secs(1),
        ..Default::default()
    };
    SharedLimits::new(Cluster::new(&config).unwrap())
}

#[tokio::test]
async fn a_limit_holds_across_three_replicas_at_a_fraction_of_a_round_trip_per_call() {
    let prefix = prefix("three");
    let replicas: Vec<Arc<SharedLimits>> =
        (0..3).map(|_| Arc::new(replica("redis://127.0.0.1:6379", &prefix))).collect();
    let rate = RateLimit { per_second: 1_000, burst: 1_000 };
    let started = Instant::now();
    let run = Duration::from_millis(1_500);
    let tasks: Vec<_> = replicas
        .iter()
        .map(|r| {
            let r = r.clone();
            tokio::spawn(async move {
                let mut admitted = 0u64;
                while started.elapsed() < run {
                    match r.take("app:kiosk", rate, 1).await.expect("Redis answers") {
                        Take::Admitted => admitted += 1,
                        Take::Refused(wait) => tokio::time::sleep(wait.min(Duration::from_millis(5))).await,
                        Take::Never => panic!("a cost of 1 within a burst of 1,000"),
                    }
                }
                admitted
            })
        })
        .collect();
    let mut admitted = 0;
    for t in tasks {
        admitted += t.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    // The bucket's burst and refill over the run, plus one lease of drift.
    let allowed = 1_000.0 + 1_000.0 * (elapsed + 0.4);
    assert!((admitted as f64) <= allowed, "{admitted} admitted, {allowed:.0} allowed");
    assert!((admitted as f64) >= 0.9 * (1_000.0 + 1_000.0 * elapsed), "{admitted} admitted in {elapsed:.2} s");
    let (trips, calls): (u64, u64) =
        replicas.iter().map(|r| r.counts()).fold((0, 0), |(t, c), (rt, rc)| (t + rt, c + rc));
    assert_eq!(calls, admitted);
    let per_call = trips as f64 / calls as f64;
    assert!(per_call <= 0.1, "{trips} round trips for {calls} calls");
}

#[tokio::test]
async fn a_slow_limit_is_leased_a_cell_at_a_time_and_tells_when_to_retry() {
    let prefix = prefix("citizen");
    let limits = replica("redis://127.0.0.1:6379", &prefix);
    let rate = RateLimit { per_second: 2, burst: 5 };
    for i in 0..5 {
        assert_eq!(limits.take("citizen:p1", rate, 1).await, Some(Take::Admitted), "call {i}");
    }
    let Some(Take::Refused(wait)) = limits.take("citizen:p1", rate, 1).await else { panic!("a sixth call passed") };
    assert!(wait > Duration::from_millis(100) && wait <= Duration::from_millis(500), "{wait:?}");
    // One round trip per cell: a lease of several would be lost unused.
    assert_eq!(limits.counts(), (6, 5));
    // Another key is another bucket; a cost beyond the burst never passes.
    assert_eq!(limits.take("citizen:p2", rate, 1).await, Some(Take::Admitted));
    assert_eq!(limits.take("citizen:p3", rate, 6).await, Some(Take::Never));
}

/// A Redis of this test's own on a free port.
/// A redis-server of the test's own, stopped when dropped.
pub(crate) struct OwnRedis {
    pub(crate) port: u16,
    process: std::process::Child,
}

impl OwnRedis {
    /// Starts one on `port` and waits until it listens.
    pub(crate) fn start(port: u16) -> Self {
        let process = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (tools/test installs it)");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "redis-server did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { port, process }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

#[tokio::test]
async fn without_redis_calls_are_decided_locally_at_once_and_shared_again_when_it_returns() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let redis = OwnRedis::start(port);
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let limits = replica(&url, &prefix("away"));
    let rate = RateLimit { per_second: 100, burst: 100 };
    assert_eq!(limits.take("app:a", rate, 1).await, Some(Take::Admitted));
    assert!(limits.cluster().is_up());

    drop(redis);
    // Used up the lease, then Redis is asked, and does not answer.
    let mut answered = 0;
    while limits.take("app:a", rate, 1).await.is_some() {
        answered += 1;
        assert!(answered < 100, "Redis is gone but calls are still decided by it");
    }
    assert!(!limits.cluster().is_up());
    // Meanwhile calls do not wait for Redis again: decided at once.
    let asked = Instant::now();
    for _ in 0..20 {
        assert_eq!(limits.take("app:b", rate, 1).await, None);
    }
    assert!(asked.elapsed() < limits.cluster().config().command_timeout, "{:?}", asked.elapsed());

    // Back on the same port: shared again, without a restart.
    let _redis = OwnRedis::start(port);
    let deadline = Instant::now() + Duration::from_secs(10);
    while limits.take("app:b", rate, 1).await.is_none() {
        assert!(Instant::now() < deadline, "Redis is back but calls are still decided locally");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(limits.cluster().is_up());
    // Once it answered, every call asks it again (not only the one that
    // found it back).
    for key in ["app:c", "app:d", "app:e"] {
        assert_eq!(limits.take(key, rate, 1).await, Some(Take::Admitted), "{key} was decided locally");
    }
}

/// Three gateways sharing one Redis under `prefix`, with a citizen limit of
/// 10 cells at once, refilled at 1 a second.
async fn three_gateways(prefix: &str, redis_url: &str) -> Vec<crate::common::TestGateway> {
    let toml = lienthong::config::SANDBOX_DEFAULT
        .replace(
            "drain_timeout = \"10s\"",
            "drain_timeout = \"10s\"\npage_token_key = \"0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0\"",
        )
        .replace("dossier_pace = \"30s\"", "dossier_pace = \"30s\"\ntoken_secret = \"one secret for every replica of this test\"")
        + &format!(
            "\n[limits]\nper_citizen = {{ per_second = 1, burst = 10 }}\n\n[cluster]\nredis_url = \"{redis_url}\"\nkey_prefix = \"{prefix}\"\nexpected_replicas = 3\ncommand_timeout = \"1s\"\n"
        );
    let mut gateways = Vec::new();
    for _ in 0..3 {
        let config = lienthong::config::Config::from_toml(&toml).unwrap();
        gateways.push(crate::common::TestGateway::start(config, lienthong::server::adapter_registry()).await);
    }
    gateways
}

/// Lan's profile asked 30 times, of each gateway in turn: (admitted,
/// refused, seconds it took).
async fn thirty_calls_in_turn(gateways: &[crate::common::TestGateway]) -> (u64, u64, f64) {
    use lienthong_proto::v1::GetMyProfileRequest;
    use lienthong_proto::v1::identity_service_client::IdentityServiceClient;
    let token = gateways[0].token("lan").await;
    let started = Instant::now();
    let (mut admitted, mut refused) = (0, 0);
    for i in 0..30 {
        let call = crate::common::authed(GetMyProfileRequest::default(), &token);
        match IdentityServiceClient::new(gateways[i % 3].channel.clone()).get_my_profile(call).await {
            Ok(_) => admitted += 1,
            Err(e) if e.code() == tonic::Code::ResourceExhausted => refused += 1,
            Err(e) => panic!("{e:?}"),
        }
    }
    (admitted, refused, started.elapsed().as_secs_f64())
}

#[tokio::test]
async fn a_citizens_limit_holds_across_three_gateways_called_in_turn() {
    let prefix = prefix("gateways");
    let gateways = three_gateways(&prefix, "redis://127.0.0.1:6379").await;
    let (admitted, refused, seconds) = thirty_calls_in_turn(&gateways).await;
    // Alone, each gateway would have let 10 through: 30 in all. Together,
    // the burst of 10 and the refill (1 a second).
    let refill = seconds.ceil() as u64;
    assert!(admitted >= 10 && admitted <= 10 + refill, "{admitted} admitted, {refused} refused in {seconds:.1} s");
    // Redis decided every call, and its keys name no citizen.
    for gw in &gateways {
        let metrics = reqwest::get(format!("http://{}/metrics", gw.ops_addr)).await.unwrap().text().await.unwrap();
        assert!(metrics.lines().any(|l| l == "lienthong_cluster_fallbacks_total 0"), "{metrics}");
    }
    let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}*")).query_async(&mut redis).await.unwrap();
    assert!(keys.iter().any(|k| k.contains(":rl:citizen:")), "{keys:?}");
    assert!(keys.iter().all(|k| !k.contains("079") && !k.contains("lan")), "{keys:?}");
}

#[tokio::test]
async fn without_redis_each_gateway_holds_its_share_of_the_limit() {
    // Nothing listens there: every call is decided locally, with a third of
    // the burst on each gateway, but never less than the dearest RPC costs
    // (WatchDossier, 5 cells), which must still pass: 5 each.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let gateways = three_gateways(&prefix("away"), &format!("redis://127.0.0.1:{port}")).await;
    let (admitted, refused, seconds) = thirty_calls_in_turn(&gateways).await;
    let refill = 3 * seconds.ceil() as u64;
    assert!(admitted >= 15 && admitted <= 15 + refill, "{admitted} admitted, {refused} refused in {seconds:.1} s");
    // Still ready, but degraded, and the decisions made without Redis are
    // counted.
    let ops = gateways[0].ops_addr;
    let ready = reqwest::get(format!("http://{ops}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    let degraded = body["degraded"].as_array().unwrap();
    assert!(degraded.iter().any(|d| d.as_str().unwrap().starts_with("cluster")), "{body}");
    let metrics = reqwest::get(format!("http://{ops}/metrics")).await.unwrap().text().await.unwrap();
    let fallbacks: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("lienthong_cluster_fallbacks_total ")?.parse().ok())
        .unwrap_or_else(|| panic!("no lienthong_cluster_fallbacks_total in\n{metrics}"));
    assert!(fallbacks >= 10.0, "{fallbacks}");
}

#[test]
fn the_redis_password_is_never_shown() {
    let config = ClusterConfig { redis_url: "rediss://user:p@ss@redis.internal:6380/2".into(), ..Default::default() };
    let shown = format!("{config:?}");
    assert!(shown.contains("rediss://<redacted>@redis.internal:6380/2"), "{shown}");
    assert!(!shown.contains("p@ss") && !shown.contains("user"), "{shown}");
}

#[tokio::test]
async fn an_idle_gateway_tells_redis_is_away_and_back() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let gateways = three_gateways(&prefix("idle"), &format!("redis://127.0.0.1:{port}")).await;
    let ops = gateways[0].ops_addr;
    let degraded = || async move {
        let body: serde_json::Value = reqwest::get(format!("http://{ops}/readyz")).await.unwrap().json().await.unwrap();
        body["degraded"].as_array().unwrap().iter().any(|d| d.as_str().unwrap().starts_with("cluster"))
    };
    // No call at all: the gateway's own ping finds Redis away...
    let deadline = Instant::now() + Duration::from_secs(10);
    while !degraded().await {
        assert!(Instant::now() < deadline, "/readyz does not say Redis is away");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ...and, once it listens, back.
    let _redis = OwnRedis::start(port);
    let deadline = Instant::now() + Duration::from_secs(15);
    while degraded().await {
        assert!(Instant::now() < deadline, "/readyz still says Redis is away");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_write_refused_by_a_demoted_node_makes_a_new_connection() {
    let ports: Vec<u16> =
        (0..2).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()).collect();
    let (node, primary) = (OwnRedis::start(ports[0]), OwnRedis::start(ports[1]));
    let limits = replica(&format!("redis://127.0.0.1:{}", node.port), &prefix("failover"));
    let cluster = limits.cluster().clone();
    let id = || async {
        cluster.run(|mut r| async move { redis::cmd("CLIENT").arg("ID").query_async::<i64>(&mut r).await }).await
    };
    let before = id().await.expect("Redis answers");
    assert_eq!(id().await, Some(before), "one connection while nothing happens");
    // A failover demotes the node this replica is connected to: writes are
    // refused with READONLY on a connection that is otherwise fine.
    let mut admin = redis::Client::open(format!("redis://127.0.0.1:{}", node.port))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("REPLICAOF").arg("127.0.0.1").arg(primary.port).query_async(&mut admin).await.unwrap();
    let rate = RateLimit { per_second: 100, burst: 100 };
    assert_eq!(limits.take("app:a", rate, 1).await, None, "a refused write is decided locally");
    // The next command goes over a new connection (in production, to
    // wherever the URL's name now leads).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match id().await {
            Some(after) if after != before => break,
            _ => {
                assert!(Instant::now() < deadline, "still on the connection to the demoted node");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
