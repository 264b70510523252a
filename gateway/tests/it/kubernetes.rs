//! `deploy/kubernetes`: every overlay rendered by kustomize (`kubectl
//! kustomize`, as operators apply it), validated offline against the
//! Kubernetes 1.30 schemas (`kubernetes-validate --strict`, the oldest
//! release with the preStop sleep the gateway's distroless image needs), and
//! checked against what the gateway and its image actually do: the config it
//! mounts passes `lienthong check-config` with the Secret's values in the
//! environment, the probes ask the ops port's endpoints, the grace period
//! outlasts the pause and the drain, the user is the image's, and every
//! selector finds the pods.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use super::common;

/// The oldest Kubernetes the manifests are for.
const KUBERNETES: &str = "1.30";

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes")
}

/// Runs `command`; its stdout, or a panic with its stderr.
pub(crate) fn run(command: &mut Command, what: &str) -> String {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e} (tools/test installs it)"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what} failed:\n{stderr}");
    String::from_utf8(out.stdout).unwrap()
}

/// YAML documents as JSON values (PyYAML, which kubernetes-validate brings).
pub(crate) fn parse_yaml(yaml: &str) -> Vec<Value> {
    let mut child = Command::new("python3")
        .args(["-c", "import sys, json, yaml; json.dump([d for d in yaml.safe_load_all(sys.stdin) if d], sys.stdout)"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), yaml.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the YAML does not parse");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Validates `file` against the schemas, strictly (unknown fields are errors).
fn validate(file: &Path) {
    run(
        Command::new("python3").args(["-m", "kubernetes_validate", "--strict", "--quiet", "-k", KUBERNETES]).arg(file),
        &format!("kubernetes-validate {}", file.display()),
    );
}

fn of_kind<'d>(docs: &'d [Value], kind: &str) -> &'d Value {
    docs.iter().find(|d| d["kind"] == kind).unwrap_or_else(|| panic!("no {kind}"))
}

#[test]
fn every_overlay_renders_validates_and_matches_what_the_gateway_does() {
    let secret_file = deploy().join("secret.example.yaml");
    validate(&secret_file);
    let secret = parse_yaml(&std::fs::read_to_string(&secret_file).unwrap()).remove(0);
    let secret_values = secret["stringData"].as_object().unwrap();
    let dockerfile = std::fs::read_to_string(deploy().join("../Dockerfile")).unwrap();
    let image_user = dockerfile.lines().rev().find_map(|l| l.trim().strip_prefix("USER ")).unwrap().trim().to_owned();

    let overlays = ["production", "staging"];
    for overlay in overlays {
        let dir = deploy().join("overlays").join(overlay);
        let mut kustomize = Command::new("kubectl");
        kustomize.arg("kustomize").arg(&dir);
        let out = kustomize.output().expect("kubectl (tools/test installs it)");
        let warnings = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && warnings.trim().is_empty(), "{overlay}: kustomize says:\n{warnings}");
        let rendered = String::from_utf8(out.stdout).unwrap();
        let file = common::temp_dir("kubernetes").join(format!("{overlay}.yaml"));
        std::fs::write(&file, &rendered).unwrap();
        validate(&file);
        let docs = parse_yaml(&rendered);
        for kind in
            ["ServiceAccount", "ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"]
        {
            of_kind(&docs, kind);
        }
        let namespace = &of_kind(&docs, "Deployment")["metadata"]["namespace"];
        assert!(docs.iter().all(|d| &d["metadata"]["namespace"] == namespace), "{overlay}: one namespace");

        // The configuration the pods mount, checked by the gateway itself
        // with the Secret's values where the Deployment puts them.
        let deployment = of_kind(&docs, "Deployment");
        let pod = &deployment["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        let config_map = of_kind(&docs, "ConfigMap");
        let volumes = pod["volumes"].as_array().unwrap();
        assert!(
            volumes.iter().any(|v| v["configMap"]["name"] == config_map["metadata"]["name"]),
            "{overlay}: the generated ConfigMap is not mounted"
        );
        let toml = config_map["data"]["lienthong.toml"].as_str().unwrap();
        let config_file = common::temp_dir("kubernetes").join("lienthong.toml");
        std::fs::write(&config_file, toml).unwrap();
        let mut check = Command::new(env!("CARGO_BIN_EXE_lienthong"));
        check.arg("check-config").arg(&config_file).env_clear();
        let mut pod_name = false;
        for env in container["env"].as_array().unwrap() {
            let name = env["name"].as_str().unwrap();
            if let Some(key) = env["valueFrom"]["secretKeyRef"]["key"].as_str() {
                assert_eq!(env["valueFrom"]["secretKeyRef"]["name"], secret["metadata"]["name"]);
                let value = secret_values.get(key).unwrap_or_else(|| panic!("the Secret has no {key}"));
                check.env(name, value.as_str().unwrap());
            } else if let Some(value) = env["value"].as_str() {
                check.env(name, value);
            }
            pod_name |= name == "POD_NAME" && env["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name";
        }
        assert!(pod_name, "{overlay}: service.instance.id must come from the pod's name");
        run(&mut check, &format!("{overlay}: lienthong check-config with the Secret's values"));
        let config = lienthong::config::Config::from_toml(toml).unwrap();

        // Ports and probes: the ones the config listens on.
        let ports = container["ports"].as_array().unwrap();
        let port = |name: &str| ports.iter().find(|p| p["name"] == name).unwrap()["containerPort"].as_u64().unwrap();
        assert_eq!(port("grpc"), u64::from(config.server.listen.port()));
        let ops = config.telemetry.ops_listen.expect("the probes need the ops port");
        assert!(ops.ip().is_unspecified(), "{overlay}: the kubelet reaches the ops port on the pod's address");
        assert_eq!(port("ops"), u64::from(ops.port()));
        for (probe, path) in [("startupProbe", "/readyz"), ("readinessProbe", "/readyz"), ("livenessProbe", "/livez")] {
            assert_eq!(container[probe]["httpGet"]["path"], path, "{overlay}: {probe}");
            assert_eq!(container[probe]["httpGet"]["port"], "ops", "{overlay}: {probe}");
        }

        // Shutdown: the pause, then the drain, within the grace period.
        let pause = container["lifecycle"]["preStop"]["sleep"]["seconds"].as_u64().expect("a preStop pause");
        let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
        let drain = config.server.drain_timeout.as_secs();
        assert!(pause + drain + 5 <= grace, "{overlay}: pause {pause}s + drain {drain}s must end before {grace}s");

        // The image's user, nothing writable but the mounted volumes, and
        // the paths the config writes are on one of them.
        let context = &pod["securityContext"];
        assert_eq!(format!("{}:{}", context["runAsUser"], context["runAsGroup"]), image_user);
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(container["securityContext"]["allowPrivilegeEscalation"], false);
        assert_eq!(container["securityContext"]["capabilities"]["drop"][0], "ALL");
        let writable: Vec<&str> = container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["readOnly"] != true)
            .map(|m| m["mountPath"].as_str().unwrap())
            .collect();
        let replay = config.adapters["hcm-portal"].options["updates"]["replay_file"].as_str().unwrap();
        assert!(writable.iter().any(|m| replay.starts_with(m)), "{overlay}: {replay} is on no writable volume");
        assert!(pod["affinity"]["podAntiAffinity"].is_object(), "{overlay}: replicas spread over nodes");

        // Every selector finds the pods; the autoscaler's floor is what
        // the cluster's shares assume.
        let labels = &deployment["spec"]["template"]["metadata"]["labels"];
        let selects = |selector: &Value| {
            selector.as_object().unwrap().iter().all(|(k, v)| &labels[k] == v)
                && !selector.as_object().unwrap().is_empty()
        };
        assert!(selects(&deployment["spec"]["selector"]["matchLabels"]));
        assert!(selects(&of_kind(&docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"]));
        for service in docs.iter().filter(|d| d["kind"] == "Service") {
            assert!(selects(&service["spec"]["selector"]), "{overlay}: {}", service["metadata"]["name"]);
            for p in service["spec"]["ports"].as_array().unwrap() {
                assert!(ports.iter().any(|c| c["name"] == p["targetPort"]), "{overlay}: {p}");
            }
        }
        let hpa = of_kind(&docs, "HorizontalPodAutoscaler");
        assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], deployment["metadata"]["name"]);
        let cluster = config.cluster.as_ref().expect("replicas share state in Redis");
        assert_eq!(hpa["spec"]["minReplicas"].as_u64(), Some(u64::from(cluster.expected_replicas)), "{overlay}");
        assert!(deployment["spec"]["replicas"].as_u64().unwrap() >= u64::from(cluster.expected_replicas));
    }
}
