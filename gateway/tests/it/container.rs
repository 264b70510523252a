//! The container image, run the way `deploy/Dockerfile` says on a machine
//! with no container runtime: its user, its working directory (a fresh data
//! directory owned by that user), its environment only, its entrypoint and
//! command; then its health check, a call, and its stop signal.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use lienthong_proto::v1::ListFacilitiesRequest;
use lienthong_proto::v1::healthcare_service_client::HealthcareServiceClient;

use super::common;

/// The final stage of a Dockerfile: its instructions, continuation lines
/// joined, comments dropped.
fn final_stage(dockerfile: &str) -> Vec<(String, String)> {
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line);
                joined.push(std::mem::take(&mut current));
            }
        }
    }
    let instructions: Vec<(String, String)> = joined
        .iter()
        .filter_map(|l| l.split_once(char::is_whitespace))
        .map(|(i, rest)| (i.to_ascii_uppercase(), rest.trim().to_owned()))
        .collect();
    let last_from = instructions.iter().rposition(|(i, _)| i == "FROM").unwrap();
    instructions[last_from..].to_vec()
}

fn one<'a>(stage: &'a [(String, String)], instruction: &str) -> &'a str {
    let found: Vec<&str> = stage.iter().filter(|(i, _)| i == instruction).map(|(_, a)| a.as_str()).collect();
    assert_eq!(found.len(), 1, "{instruction} in the final stage: {found:?}");
    found[0]
}

/// An exec-form argument list (`["a", "b"]`).
fn exec_form(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not the exec form (no shell in the image): {text}: {e}"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A command run as the image runs its processes.
fn as_image(program: &Path, args: &[String], env: &BTreeMap<String, String>, dir: &Path, user: (u32, u32)) -> Command {
    let mut command = Command::new(program);
    command.args(args).env_clear().envs(env).current_dir(dir).stdin(Stdio::null());
    // Tests running as root drop to the image's user; anyone else already
    // is not root.
    if nix_is_root() {
        command.uid(user.0).gid(user.1);
    }
    command
}

fn nix_is_root() -> bool {
    // The owner of a file this process just made is this process's user.
    let probe = common::temp_dir("whoami");
    let uid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&probe).unwrap());
    std::fs::remove_dir_all(&probe).ok();
    uid == 0
}

/// The gateway's process, killed if the test ends before it stops it.
struct Running(Option<std::process::Child>);

impl Running {
    fn child(&mut self) -> &mut std::process::Child {
        self.0.as_mut().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test]
async fn the_image_starts_as_its_user_in_its_data_directory_and_is_healthy() {
    let dockerfile = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/Dockerfile")).unwrap();
    // Every base is pinned by digest.
    for from in dockerfile.lines().filter(|l| l.starts_with("FROM ")) {
        let image = from.split_whitespace().nth(1).unwrap();
        let digest = image.split_once("@sha256:").map(|(_, d)| d).unwrap_or_default();
        assert!(digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()), "not pinned: {from}");
    }
    let stage = final_stage(&dockerfile);
    let (uid, gid) = one(&stage, "USER").split_once(':').unwrap();
    let user: (u32, u32) = (uid.parse().unwrap(), gid.parse().unwrap());
    assert_ne!(user.0, 0, "the image runs as root");
    let workdir = one(&stage, "WORKDIR").to_owned();
    assert!(workdir.starts_with('/'), "{workdir}");
    let volumes = exec_form(one(&stage, "VOLUME"));
    assert!(volumes.contains(&workdir), "the data directory {workdir} is not a volume: {volumes:?}");
    let copies: Vec<&str> = stage.iter().filter(|(i, _)| i == "COPY").map(|(_, a)| a.as_str()).collect();
    assert!(
        copies.iter().any(|c| c.contains(&format!("--chown={uid}:{gid}")) && c.ends_with(&workdir)),
        "the data directory is not made for the image's user: {copies:?}"
    );
    let entrypoint = exec_form(one(&stage, "ENTRYPOINT"));
    let cmd = exec_form(one(&stage, "CMD"));
    let healthcheck = one(&stage, "HEALTHCHECK");
    let check = exec_form(healthcheck.split_once("CMD").map(|(_, c)| c.trim()).unwrap());
    assert_eq!(check[0], entrypoint[0], "the health check needs no shell or curl: the binary itself");

    // The image's environment, ports moved to free ones, its directories to
    // a fresh data directory owned by its user.
    let root = common::temp_dir("image");
    let data = root.join(workdir.trim_start_matches('/'));
    std::fs::create_dir_all(&data).unwrap();
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for (_, assignments) in stage.iter().filter(|(i, _)| i == "ENV") {
        for pair in assignments.split_whitespace() {
            let (key, value) = pair.split_once('=').unwrap();
            env.insert(key.to_owned(), value.replace(&workdir, &data.display().to_string()));
        }
    }
    let (grpc, ops) = (free_port(), free_port());
    env.insert("LIENTHONG_SERVER__LISTEN".into(), format!("0.0.0.0:{grpc}"));
    env.insert("LIENTHONG_TELEMETRY__OPS_LISTEN".into(), format!("0.0.0.0:{ops}"));
    // The audit log's default path is relative: in the working directory.
    let default_audit = lienthong::config::AuditConfig::default().path;
    assert!(default_audit.is_relative());
    let audit = data.join(&default_audit);
    // The binary where the image puts it, readable by everyone.
    let bin = root.join(entrypoint[0].trim_start_matches('/'));
    std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_lienthong"), &bin).unwrap();
    for dir in bin.ancestors().skip(1).take_while(|d| d.starts_with(&root)) {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    if nix_is_root() {
        std::os::unix::fs::chown(&data, Some(user.0), Some(user.1)).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    }

    let args: Vec<String> = entrypoint[1..].iter().chain(cmd.iter()).cloned().collect();
    let child = as_image(&bin, &args, &env, &data, user).stderr(Stdio::piped()).spawn().unwrap();
    let mut gateway = Running(Some(child));
    // Its log, read as it comes so that the pipe never fills.
    let stderr = gateway.child().stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::BufReader::new(stderr), &mut text).ok();
        text
    });

    // Its health check turns healthy (polled, with a deadline).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let healthy = loop {
        let out = as_image(&bin, &check[1..], &env, &data, user).output().unwrap();
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        if let Some(status) = gateway.child().try_wait().unwrap() {
            panic!("the gateway exited ({status}) before it was healthy:\n{}", log.join().unwrap());
        }
        assert!(std::time::Instant::now() < deadline, "{}", String::from_utf8_lossy(&out.stderr));
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(healthy.contains("\"ready\":true"), "{healthy}");

    // It serves, and what it writes is in its data directory, as its user.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{grpc}")).unwrap().connect().await;
    let mut client = HealthcareServiceClient::new(channel.unwrap());
    let facilities = client.list_facilities(ListFacilitiesRequest::default()).await.unwrap().into_inner();
    assert!(!facilities.facilities.is_empty());
    let written = std::fs::metadata(&audit).unwrap();
    if nix_is_root() {
        assert_eq!(std::os::unix::fs::MetadataExt::uid(&written), user.0);
    }

    // The stop signal drains it; it exits 0.
    let mut gateway = gateway.0.take().unwrap();
    let pid = gateway.id().to_string();
    let signal = one(&stage, "STOPSIGNAL").trim_start_matches("SIG");
    assert!(Command::new("kill").args(["-s", signal, &pid]).status().unwrap().success());
    let status = tokio::task::spawn_blocking(move || gateway.wait()).await.unwrap().unwrap();
    let log = log.join().unwrap();
    assert!(status.success(), "{status}\n{log}");
    assert!(!log.contains("Permission denied"), "{log}");
    // Stopped, the health check says so.
    let out = as_image(&bin, &check[1..], &env, &data, user).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unhealthy"), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::remove_dir_all(&root).ok();
}
