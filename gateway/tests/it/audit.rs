//! The audit log end to end: every access to personal data recorded before
//! the answer leaves, nothing personal in it, tampering caught by `lienthong
//! audit verify`, and no answered call left unrecorded by a `kill -9`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{TestGateway, authed, request, violated_fields};
use lienthong::audit::AuditRecord;
use lienthong_proto::sandbox::v1::IssueTokenRequest;
use lienthong_proto::sandbox::v1::sandbox_identity_service_client::SandboxIdentityServiceClient;
use lienthong_proto::v1::identity_service_client::IdentityServiceClient;
use lienthong_proto::v1::public_services_service_client::PublicServicesServiceClient;
use lienthong_proto::v1::*;
use tonic::Code;

const LAN_BIRTH: &str = "000.30.67.H29-251114-0001";

fn records(path: &Path) -> Vec<AuditRecord> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines().filter_map(|l| AuditRecord::parse(l).ok()).map(|(r, _)| r).collect()
}

/// The records of `path` once there are at least `n`, polled with a deadline.
async fn records_eventually(path: &Path, n: usize) -> Vec<AuditRecord> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let r = records(path);
        if r.len() >= n {
            return r;
        }
        assert!(tokio::time::Instant::now() < deadline, "{} of {n} records written", r.len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn sandbox_with_audit(path: &Path, extra: &str) -> String {
    format!("{}\n[audit]\npath = {:?}\n{extra}", lienthong::config::SANDBOX_DEFAULT, path)
}

fn lienthong() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lienthong"))
}

#[tokio::test]
async fn personal_data_accesses_are_recorded_and_public_ones_are_not() {
    let path = common::temp_dir("audit").join("audit.jsonl");
    let gw = TestGateway::with_toml(&sandbox_with_audit(&path, ""), lienthong::server::adapter_registry()).await;
    let (lan, minh, hoa) = (gw.token("lan").await, gw.token("minh").await, gw.token("hoa").await);
    let mut ps = PublicServicesServiceClient::new(gw.channel.clone());
    let dossier = || GetDossierRequest { dossier_code: LAN_BIRTH.into() };
    // Public data and public views: nothing to record.
    ps.get_procedure(GetProcedureRequest { procedure_code: "1.000894".into() }).await.unwrap();
    ps.get_dossier(dossier()).await.unwrap();
    ps.get_dossier(authed(dossier(), &minh)).await.unwrap();
    assert!(records(&path).is_empty());
    // The owner's view, a profile, "my dossiers", and a refused attempt.
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut own = authed(dossier(), &lan);
    own.metadata_mut().insert("traceparent", traceparent.parse().unwrap());
    ps.get_dossier(own).await.unwrap();
    IdentityServiceClient::new(gw.channel.clone())
        .get_my_profile(authed(GetMyProfileRequest::default(), &lan))
        .await
        .unwrap();
    let mine = ps.list_my_dossiers(authed(ListMyDossiersRequest::default(), &lan)).await.unwrap().into_inner();
    let e = ps.list_my_dossiers(authed(ListMyDossiersRequest::default(), &hoa)).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    // (A refusal is recorded without holding up the answer: poll.)
    let r = records_eventually(&path, 4).await;
    let methods: Vec<&str> = r.iter().map(|r| r.method.rsplit('/').next().unwrap()).collect();
    assert_eq!(methods, ["GetDossier", "GetMyProfile", "ListMyDossiers", "ListMyDossiers"]);
    assert_eq!(r[0].records, [LAN_BIRTH]);
    assert_eq!(r[0].trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(r[1].records, ["profile"]);
    let codes: Vec<String> = mine.dossiers.iter().map(|d| d.dossier_code.clone()).collect();
    assert_eq!(r[2].records, codes);
    assert_eq!(r.iter().map(|r| r.outcome.as_str()).collect::<Vec<_>>(), ["OK", "OK", "OK", "PERMISSION_DENIED"]);
    assert!(r.iter().all(|r| r.app == "anonymous" && r.purpose == "unspecified" && r.trace_id.len() == 32));
    // One pseudonym per citizen; no ID number, name or token in the file.
    assert!(r[0].citizen == r[1].citizen && r[1].citizen == r[2].citizen && r[2].citizen != r[3].citizen);
    let text = std::fs::read_to_string(&path).unwrap();
    for secret in ["079190012345", "Nguyễn Thị Lan", lan.as_str(), hoa.as_str()] {
        assert!(!text.contains(secret), "the audit log holds personal data");
    }

    // `lienthong audit verify` accepts it, and names the record tampered with.
    let ok = lienthong().args(["audit", "verify"]).arg(&path).output().unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stdout));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("OK, 4 records"));
    let tampered = path.with_file_name("tampered.jsonl");
    std::fs::write(&tampered, text.replacen("\"PERMISSION_DENIED\"", "\"OK\"", 1)).unwrap();
    let bad = lienthong().args(["audit", "verify"]).arg(&tampered).output().unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stdout).contains("line 4 (record 4)"),
        "{}",
        String::from_utf8_lossy(&bad.stdout)
    );
    let mut lines: Vec<&str> = text.lines().collect();
    lines.remove(1);
    std::fs::write(&tampered, lines.join("\n") + "\n").unwrap();
    let bad = lienthong().args(["audit", "verify"]).arg(&tampered).output().unwrap();
    assert!(
        String::from_utf8_lossy(&bad.stdout).contains("line 2 (record 2)"),
        "{}",
        String::from_utf8_lossy(&bad.stdout)
    );
}

#[tokio::test]
async fn an_app_with_several_purposes_names_one_for_personal_data() {
    let path = common::temp_dir("purpose").join("audit.jsonl");
    let key = "purpose-app-key";
    let app = format!(
        "[apps.city]\nprovinces = [\"79\"]\nallow = [\"*\"]\npurposes = [\"public-service\", \"healthcare\"]\napi_key_sha256 = [\"{}\"]\n",
        lienthong::crypto::hex(&lienthong::crypto::sha256(key.as_bytes()))
    );
    let gw = TestGateway::with_toml(&sandbox_with_audit(&path, &app), lienthong::server::adapter_registry()).await;
    let lan = gw.token("lan").await;
    let mut id = IdentityServiceClient::new(gw.channel.clone());
    let with = |purpose: Option<&str>| {
        let mut r = authed(GetMyProfileRequest::default(), &lan);
        r.metadata_mut().insert("x-lienthong-api-key", key.parse().unwrap());
        if let Some(p) = purpose {
            r.metadata_mut().insert("x-lienthong-purpose", p.parse().unwrap());
        }
        r
    };
    let e = id.get_my_profile(with(None)).await.unwrap_err();
    assert_eq!(violated_fields(&e), ["metadata x-lienthong-purpose"]);
    assert_eq!(id.get_my_profile(with(Some("marketing"))).await.unwrap_err().code(), Code::InvalidArgument);
    id.get_my_profile(with(Some("healthcare"))).await.unwrap();
    let r = records(&path);
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].app.as_str(), r[0].purpose.as_str()), ("city", "healthcare"));
    // Public data needs no purpose.
    let public = request(GetProcedureRequest { procedure_code: "1.000894".into() }, &[("x-lienthong-api-key", key)]);
    assert!(PublicServicesServiceClient::new(gw.channel.clone()).get_procedure(public).await.is_ok());
}

/// The gateway binary on an ephemeral port, and the address it serves.
fn spawn_gateway(config: &Path) -> (std::process::Child, String) {
    let mut child = lienthong()
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .env("LIENTHONG_LOG", "json")
        .env("LIENTHONG_TELEMETRY__OPS_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
            if event["message"] == "lienthong is serving"
                && let Some(addr) = event["addr"].as_str()
            {
                let _ = tx.send(addr.to_owned());
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(60)).expect("the gateway announced its address");
    (child, addr)
}

#[tokio::test]
async fn after_kill_9_every_answered_access_has_its_record() {
    let dir = common::temp_dir("kill9");
    let path = dir.join("audit.jsonl");
    let config = dir.join("lienthong.toml");
    let toml = lienthong::config::SANDBOX_DEFAULT.replace("127.0.0.1:50051", "127.0.0.1:0");
    let limits = "[limits]\nper_citizen = { per_second = 1000000, burst = 1000000 }\n";
    std::fs::write(&config, format!("{toml}\n[audit]\npath = {path:?}\n\n{limits}")).unwrap();
    let (mut child, addr) = spawn_gateway(&config);
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect_lazy();
    let mut tokens = Vec::new();
    for handle in ["lan", "minh", "thao", "khoa"] {
        let mut c = SandboxIdentityServiceClient::new(channel.clone());
        tokens
            .push(c.issue_token(IssueTokenRequest { handle: handle.into() }).await.unwrap().into_inner().access_token);
    }
    let answered = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..16)
        .map(|i| {
            let (channel, token, answered, stop) =
                (channel.clone(), tokens[i % tokens.len()].clone(), answered.clone(), stop.clone());
            tokio::spawn(async move {
                let mut c = IdentityServiceClient::new(channel);
                // Counts the answers received; after the kill, calls fail
                // until the test says stop.
                while !stop.load(Ordering::SeqCst) {
                    if c.get_my_profile(authed(GetMyProfileRequest::default(), &token)).await.is_ok() {
                        answered.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while answered.load(Ordering::SeqCst) < 300 {
        assert!(tokio::time::Instant::now() < deadline, "the load did not get going");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // SIGKILL in the middle of the load: no chance to flush anything.
    child.kill().unwrap();
    child.wait().unwrap();
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    let answered = answered.load(Ordering::SeqCst);
    let text = std::fs::read_to_string(&path).unwrap();
    let verified = lienthong::audit::verify::verify(text.as_bytes(), None).unwrap();
    let recorded = records(&path).iter().filter(|r| r.method.ends_with("/GetMyProfile") && r.outcome == "OK").count();
    assert!(answered >= 300);
    assert!(recorded >= answered, "{answered} answers received, {recorded} recorded");
    eprintln!("{answered} answers received before the kill; {recorded} recorded; torn tail: {}", verified.torn_tail);
    assert_eq!(verified.records as usize, recorded);
    // The gateway starts again on the same log and the chain goes on.
    let (mut again, addr) = spawn_gateway(&config);
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect_lazy();
    // (The sandbox signs tokens with a key of its own run.)
    let token = SandboxIdentityServiceClient::new(channel.clone())
        .issue_token(IssueTokenRequest { handle: "lan".into() })
        .await
        .unwrap()
        .into_inner()
        .access_token;
    IdentityServiceClient::new(channel).get_my_profile(authed(GetMyProfileRequest::default(), &token)).await.unwrap();
    again.kill().unwrap();
    again.wait().unwrap();
    let after = lienthong::audit::verify::verify(std::fs::read(&path).unwrap().as_slice(), None).unwrap();
    assert_eq!(after.records, verified.records + 1);
}

/// The local PostgreSQL (`LIENTHONG_TEST_POSTGRES` overrides), and a schema
/// of this test's own.
pub(crate) fn postgres(name: &str) -> (String, String) {
    let url = std::env::var("LIENTHONG_TEST_POSTGRES")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".to_owned());
    (url, format!("lienthong_test_{}_{name}", std::process::id()))
}

pub(crate) async fn drop_schema(url: &str, schema: &str) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await.unwrap();
}

#[tokio::test]
async fn replicas_write_one_chain_in_postgres_and_tampering_is_caught() {
    use lienthong::audit::{AuditConfig, AuditEvent, AuditLog, AuditSink};
    let (url, schema) = postgres("chain");
    drop_schema(&url, &schema).await;
    let config = AuditConfig {
        sink: AuditSink::Postgres,
        postgres_url: url.clone(),
        postgres_schema: schema.clone(),
        ..Default::default()
    };
    // Two replicas, writing at the same time.
    let replicas = [Arc::new(AuditLog::open(&config).await.unwrap()), Arc::new(AuditLog::open(&config).await.unwrap())];
    let mut tasks = Vec::new();
    for (r, log) in replicas.iter().enumerate() {
        for i in 0..100 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                log.record(AuditEvent {
                    app: format!("replica-{r}"),
                    citizen: format!("{i:032x}"),
                    method: "lienthong.v1.IdentityService/GetMyProfile".into(),
                    records: vec!["profile".into()],
                    purpose: "public-service".into(),
                    outcome: "OK".into(),
                    trace_id: format!("{i:032x}"),
                    count: 1,
                })
                .await
            }));
        }
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let lines = lienthong::audit::postgres::read_all(&url, &schema).await.unwrap();
    let v = lienthong::audit::verify::verify(lines.as_slice(), None).unwrap();
    assert_eq!(v.records, 200);
    let text = String::from_utf8(lines).unwrap();
    assert!(text.contains("replica-0") && text.contains("replica-1"));
    // The CLI reads the same chain, and names a record edited in place.
    let ok = lienthong().args(["audit", "verify", "--postgres", &url, "--schema", &schema]).output().unwrap();
    assert!(String::from_utf8_lossy(&ok.stdout).contains("OK, 200 records"), "{}", String::from_utf8_lossy(&ok.stdout));
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
        .execute(
            &format!("UPDATE {schema}.audit_log SET line = replace(line, '\"OK\"', '\"DENIED\"') WHERE seq = 57"),
            &[],
        )
        .await
        .unwrap();
    let bad = lienthong().args(["audit", "verify", "--postgres", &url, "--schema", &schema]).output().unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stdout).contains("record 57"), "{}", String::from_utf8_lossy(&bad.stdout));
    drop_schema(&url, &schema).await;
}

#[tokio::test]
async fn a_gateway_with_the_postgres_sink_records_before_it_answers() {
    let (url, schema) = postgres("gateway");
    drop_schema(&url, &schema).await;
    let toml = format!(
        "{}\n[audit]\nsink = \"postgres\"\npostgres_url = {url:?}\npostgres_schema = {schema:?}\n",
        lienthong::config::SANDBOX_DEFAULT
    );
    let gw = TestGateway::with_toml(&toml, lienthong::server::adapter_registry()).await;
    let lan = gw.token("lan").await;
    IdentityServiceClient::new(gw.channel.clone())
        .get_my_profile(authed(GetMyProfileRequest::default(), &lan))
        .await
        .unwrap();
    let lines = lienthong::audit::postgres::read_all(&url, &schema).await.unwrap();
    let v = lienthong::audit::verify::verify(lines.as_slice(), None).unwrap();
    assert_eq!(v.records, 1);
    assert!(!String::from_utf8(lines).unwrap().contains("079190012345"));
    drop_schema(&url, &schema).await;
}

/// The sum of `count` over the records of `method` with `outcome`.
fn counted(records: &[AuditRecord], method: &str, outcome: &str) -> (u64, usize) {
    let matching: Vec<&AuditRecord> =
        records.iter().filter(|r| r.method.ends_with(method) && r.outcome == outcome).collect();
    (matching.iter().map(|r| u64::from(r.count)).sum(), matching.len())
}

#[tokio::test]
async fn every_refusal_is_recorded_and_a_flood_is_aggregated() {
    let path = common::temp_dir("refusals").join("audit.jsonl");
    let extra = "refusal_window = \"1s\"\n\n[limits]\nper_citizen = { per_second = 1, burst = 2 }\n";
    let gw = TestGateway::with_toml(&sandbox_with_audit(&path, extra), lienthong::server::adapter_registry()).await;
    let (lan, hoa, minh) = (gw.token("lan").await, gw.token("hoa").await, gw.token("minh").await);
    let mut ps = PublicServicesServiceClient::new(gw.channel.clone());
    let mut id = IdentityServiceClient::new(gw.channel.clone());
    // Refused for the identity level (hoa is level 1).
    let mut level = 0;
    for _ in 0..30 {
        let e = ps.list_my_dossiers(authed(ListMyDossiersRequest::default(), &hoa)).await.unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);
        level += 1;
    }
    // Refused the full ID number (no scope); beyond her rate, refused for
    // the rate first.
    let (mut scope, mut rate) = (0, 0);
    for _ in 0..30 {
        let full = GetMyProfileRequest { include_full_id_number: true };
        match id.get_my_profile(authed(full, &lan)).await {
            Err(e) if e.code() == Code::PermissionDenied => scope += 1,
            Err(e) if e.code() == Code::ResourceExhausted => rate += 1,
            other => panic!("{other:?}"),
        }
    }
    // Over the per-citizen rate.
    for _ in 0..100 {
        match id.get_my_profile(authed(GetMyProfileRequest::default(), &minh)).await {
            Ok(_) => {}
            Err(e) if e.code() == Code::ResourceExhausted => rate += 1,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(level == 30 && scope > 0 && rate > 50, "{level} {scope} {rate}");
    // Every refusal is counted in the log once its window has closed, in a
    // handful of records (not one fsync per refusal).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let r = records(&path);
        let got = [
            counted(&r, "/ListMyDossiers", "PERMISSION_DENIED"),
            counted(&r, "/GetMyProfile", "PERMISSION_DENIED"),
            counted(&r, "/GetMyProfile", "RESOURCE_EXHAUSTED"),
        ];
        if got.iter().map(|g| g.0).collect::<Vec<_>>() == [level, scope, rate] {
            for (n, records) in got.iter().map(|g| g.1).enumerate() {
                assert!(records <= 6, "refusal kind {n} took {records} records");
            }
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "recorded {got:?}, refused {level} {scope} {rate}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\"count\":"), "no aggregated record");
    assert_eq!(lienthong::audit::verify::verify(text.as_bytes(), None).unwrap().records as usize, records(&path).len());
}

#[tokio::test]
async fn a_keyed_chain_names_edits_in_the_file_and_in_postgres_without_a_head() {
    let key = lienthong::crypto::SecretKey::random().unwrap().to_hex();
    // The file sink.
    let path = common::temp_dir("keyed").join("audit.jsonl");
    let extra = format!("chain_key = \"{key}\"\n");
    let gw = TestGateway::with_toml(&sandbox_with_audit(&path, &extra), lienthong::server::adapter_registry()).await;
    let lan = gw.token("lan").await;
    let mut id = IdentityServiceClient::new(gw.channel.clone());
    for _ in 0..5 {
        id.get_my_profile(authed(GetMyProfileRequest::default(), &lan)).await.unwrap();
    }
    drop(gw);
    let verify = |file: &Path, key: &str| {
        let out =
            lienthong().args(["audit", "verify"]).arg(file).env("LIENTHONG_AUDIT__CHAIN_KEY", key).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (code, out) = verify(&path, &key);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("OK, 5 records"), "{out}");
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let edited = path.with_file_name("edited.jsonl");
    // A duplicate key: grep and jq would read different outcomes.
    let mut dup = lines.clone();
    let line = dup[2].replacen("\"outcome\":", "\"outcome\":\"DENIED\",\"outcome\":", 1);
    dup[2] = &line;
    std::fs::write(&edited, dup.join("\n") + "\n").unwrap();
    let (code, out) = verify(&edited, &key);
    assert_eq!(code, Some(1));
    assert!(out.contains("line 3 (record 3)") && out.contains("canonical"), "{out}");
    // The middle record deleted and the rest re-chained without the key.
    let mut rest: Vec<String> = lines[..1].iter().map(|l| (*l).to_owned()).collect();
    let mut prev = AuditRecord::parse(lines[0]).unwrap().1;
    for (i, l) in lines[2..].iter().enumerate() {
        let (mut r, _) = AuditRecord::parse(l).unwrap();
        (r.seq, r.prev, r.keyed) = (i as u64 + 2, prev.clone(), false);
        let (line, hash) = r.line(None);
        prev = hash;
        rest.push(line);
    }
    std::fs::write(&edited, rest.join("\n") + "\n").unwrap();
    let (code, out) = verify(&edited, &key);
    assert_eq!(code, Some(1));
    assert!(out.contains("line 2 (record 2)"), "{out}");
    // A gateway does not continue a keyed chain under another key.
    let other = lienthong::crypto::SecretKey::random().unwrap().to_hex();
    let config =
        lienthong::config::Config::from_toml(&sandbox_with_audit(&path, &format!("chain_key = \"{other}\"\n")))
            .unwrap();
    let e = format!("{:#}", lienthong::audit::AuditLog::open(&config.audit).await.unwrap_err());
    assert!(e.contains("another audit.chain_key"), "{e}");

    // PostgreSQL: the same chain, the same checks.
    let (url, schema) = postgres("keyed");
    drop_schema(&url, &schema).await;
    let toml = format!(
        "{}\n[audit]\nsink = \"postgres\"\npostgres_url = {url:?}\npostgres_schema = {schema:?}\nchain_key = \"{key}\"\n",
        lienthong::config::SANDBOX_DEFAULT
    );
    let gw = TestGateway::with_toml(&toml, lienthong::server::adapter_registry()).await;
    let lan = gw.token("lan").await;
    for _ in 0..5 {
        IdentityServiceClient::new(gw.channel.clone())
            .get_my_profile(authed(GetMyProfileRequest::default(), &lan))
            .await
            .unwrap();
    }
    let pg_verify = || {
        let out = lienthong()
            .args(["audit", "verify", "--postgres", &url, "--schema", &schema])
            .env("LIENTHONG_AUDIT__CHAIN_KEY", &key)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (code, out) = pg_verify();
    assert_eq!(code, Some(0), "{out}");
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let rows = client.query(&format!("SELECT line FROM {schema}.audit_log ORDER BY seq"), &[]).await.unwrap();
    let original: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let set = |seq: i64, line: String| {
        let (client, schema) = (&client, &schema);
        async move {
            client
                .execute(&format!("UPDATE {schema}.audit_log SET line = $1 WHERE seq = $2"), &[&line, &seq])
                .await
                .unwrap();
        }
    };
    // A duplicate key, whitespace, a \u escape: each named at its record.
    for (edited, says) in [
        (original[3].replacen("\"outcome\":", "\"outcome\":\"DENIED\",\"outcome\":", 1), "canonical"),
        (original[3].replacen("\"seq\":", "\"seq\": ", 1), "canonical"),
        (original[3].replacen("\"OK\"", "\"\\u004fK\"", 1), "canonical"),
    ] {
        set(4, edited).await;
        let (code, out) = pg_verify();
        assert_eq!(code, Some(1));
        assert!(out.contains("record 4") && out.contains(says), "{out}");
        set(4, original[3].clone()).await;
    }
    assert_eq!(pg_verify().0, Some(0));
    // Record 3 deleted and the rest re-chained without the key.
    let mut prev = AuditRecord::parse(&original[1]).unwrap().1;
    client.execute(&format!("DELETE FROM {schema}.audit_log WHERE seq >= 3"), &[]).await.unwrap();
    for (i, line) in original[3..].iter().enumerate() {
        let (mut r, _) = AuditRecord::parse(line).unwrap();
        (r.seq, r.prev, r.keyed) = (i as u64 + 3, prev.clone(), false);
        let (line, hash) = r.line(None);
        prev = hash;
        client
            .execute(&format!("INSERT INTO {schema}.audit_log (seq, line) VALUES ($1, $2)"), &[&(r.seq as i64), &line])
            .await
            .unwrap();
    }
    let (code, out) = pg_verify();
    assert_eq!(code, Some(1));
    assert!(out.contains("record 3"), "{out}");
    drop_schema(&url, &schema).await;
}

#[tokio::test]
async fn replicas_with_different_chain_keys_cannot_mix_one_postgres_chain() {
    use lienthong::audit::{AuditConfig, AuditLog, AuditSink};
    let (url, schema) = postgres("mixed");
    drop_schema(&url, &schema).await;
    let config = |key: Option<lienthong::crypto::SecretKey>| AuditConfig {
        sink: AuditSink::Postgres,
        postgres_url: url.clone(),
        postgres_schema: schema.clone(),
        chain_key: key,
        ..Default::default()
    };
    let key = lienthong::crypto::SecretKey::random().unwrap();
    // Two replicas start on the empty schema, one keyed, one not.
    let keyed = AuditLog::open(&config(Some(key.clone()))).await.unwrap();
    let unkeyed = AuditLog::open(&config(None)).await.unwrap();
    let event = || lienthong::audit::AuditEvent {
        app: "app".into(),
        citizen: "0".repeat(32),
        method: "lienthong.v1.IdentityService/GetMyProfile".into(),
        records: vec!["profile".into()],
        purpose: "public-service".into(),
        outcome: "OK".into(),
        trace_id: "0".repeat(32),
        count: 1,
    };
    keyed.record(event()).await.unwrap();
    // The other fails closed: its access is not served unrecorded.
    let e = unkeyed.record(event()).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    keyed.record(event()).await.unwrap();
    let lines = lienthong::audit::postgres::read_all(&url, &schema).await.unwrap();
    assert_eq!(lienthong::audit::verify::verify(lines.as_slice(), Some(&key)).unwrap().records, 2);
    drop_schema(&url, &schema).await;
}

#[tokio::test]
async fn two_writers_of_one_audit_file_are_refused_before_the_chain_breaks() {
    let path = common::temp_dir("one-writer").join("audit.jsonl");
    let config = lienthong::config::Config::from_toml(&sandbox_with_audit(&path, "")).unwrap();
    let first = lienthong::audit::AuditLog::open(&config.audit).await.unwrap();
    // A second replica started in the same directory, say.
    let e = format!("{:#}", lienthong::audit::AuditLog::open(&config.audit).await.unwrap_err());
    assert!(e.contains("being written by another process") && e.contains("LIENTHONG_AUDIT__PATH"), "{e}");
    drop(first);
    // Once the first lets it go, it opens again (a restart).
    lienthong::audit::AuditLog::open(&config.audit).await.unwrap();
}
