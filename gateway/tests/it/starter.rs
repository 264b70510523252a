//! The province starter kit, end to end: `lienthong dev-certs` makes the
//! PKI, the Python example serves over mutual TLS with it, and the gateway
//! routes a province's families to it and answers apps through it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use lienthong_proto::v1::healthcare_service_client::HealthcareServiceClient;
use lienthong_proto::v1::public_services_service_client::PublicServicesServiceClient;
use lienthong_proto::v1::{ListFacilitiesRequest, ListMyDossiersRequest};

use lienthong_contract_tests::examples;

use crate::common::{TestGateway, authed, request, temp_dir};

#[tokio::test]
async fn dev_certs_let_the_gateway_reach_the_python_example_over_mutual_tls() {
    let dir = temp_dir("dev-certs");
    let out = Command::new(env!("CARGO_BIN_EXE_lienthong"))
        .args(["dev-certs", "--out"])
        .arg(&dir)
        .args(["--valid-for", "1d"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("tls_ca_file") && printed.contains("--client-ca"), "{printed}");
    let file = |name: &str| dir.join(name).display().to_string();

    // The adapter serves TLS and requires the gateway's client certificate.
    let (cert, key, ca) = (file("adapter-server.pem"), file("adapter-server.key"), file("ca.pem"));
    let python = examples::python(&["--tls-cert", &cert, "--tls-key", &key, "--client-ca", &ca]).await.unwrap();
    let port = python.port;

    // Healthcare and public services of province 79 go to it; identity
    // stays with the sandbox (whose demo citizens own the example's dossiers).
    let toml = lienthong::config::SANDBOX_DEFAULT
        .replace("healthcare = \"sandbox\"", "healthcare = \"python\"")
        .replace("public_services = \"sandbox\"", "public_services = \"python\"")
        + &format!(
            r#"
[adapters.python]
kind = "remote"
endpoint = "https://localhost:{port}"
families = ["healthcare", "education", "public_services"]
tls_ca_file = "{ca}"

[adapters.python.tls]
client_cert_file = "{cert}"
client_key_file = "{key}"
"#,
            ca = file("ca.pem"),
            cert = file("gateway-client.pem"),
            key = file("gateway-client.key"),
        );
    let gw = TestGateway::with_toml(&toml, lienthong::server::adapter_registry()).await;

    let mut health = HealthcareServiceClient::new(gw.channel.clone());
    let listed = health
        .list_facilities(request(ListFacilitiesRequest { page_size: 5, ..Default::default() }, &[]))
        .await
        .expect("facilities come from the Python example over mutual TLS")
        .into_inner();
    assert_eq!(listed.facilities.len(), 5);
    assert!(listed.total_size > 5);

    // A citizen's dossiers: the gateway verifies the token and sends the ID
    // number; the example answers with that citizen's own.
    let token = gw.token("lan").await;
    let mut services = PublicServicesServiceClient::new(gw.channel.clone());
    let mine = services
        .list_my_dossiers(authed(ListMyDossiersRequest::default(), &token))
        .await
        .expect("the citizen's dossiers over mutual TLS")
        .into_inner();
    assert!(!mine.dossiers.is_empty());
    assert!(mine.dossiers.iter().all(|d| d.applicant.as_ref().is_some_and(|a| a.masked_id_number.ends_with("2345"))));
    std::fs::remove_dir_all(dir).ok();
}

/// Copies `from` (a file or a directory) to `to`.
fn copy(from: &std::path::Path, to: &std::path::Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap().flatten() {
            copy(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to).unwrap();
    }
}

#[tokio::test]
async fn the_container_recipe_runs_the_adapter_from_what_it_copies_and_the_compose_gateway_routes_to_it() {
    // No image can be built here (no registry): the Dockerfile's layout is
    // rebuilt from its COPY lines, and its ENTRYPOINT run in it.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let example = root.join("deploy/examples/python-adapter");
    let dockerfile = std::fs::read_to_string(example.join("Dockerfile")).unwrap();
    let app = temp_dir("python-image");
    for line in dockerfile.lines().filter(|l| l.starts_with("COPY ")) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let (source, target) = (parts[1], parts[2]);
        assert!(root.join(source).exists(), "the Dockerfile copies {source}, which is not in the repository");
        copy(&root.join(source), &app.join(target));
    }
    let entrypoint = dockerfile.lines().find_map(|l| l.strip_prefix("ENTRYPOINT ")).unwrap();
    let argv: Vec<String> = serde_json::from_str(entrypoint).unwrap();
    assert_eq!(&argv[..2], ["python3", "deploy/examples/python-adapter/server.py"]);
    // As compose runs it, on a free port of this machine (argparse: the last wins).
    let mut command = Command::new(&argv[0]);
    command.args(&argv[1..]).args(["--province", "79", "--host", "127.0.0.1", "--port", "0"]).current_dir(&app);
    let running = examples::start(command, "the image's entrypoint").await.unwrap();
    let port = running.port;

    // The compose gateway's config, checked, then served with the adapter's
    // address for `adapter:50061`.
    let config = example.join("gateway.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_lienthong")).arg("check-config").arg(&config).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let toml = std::fs::read_to_string(&config)
        .unwrap()
        .replace("adapter:50061", &format!("127.0.0.1:{port}"))
        .replace("0.0.0.0:50051", "127.0.0.1:0");
    let gw = TestGateway::with_toml(&toml, lienthong::server::adapter_registry()).await;
    let mut health = HealthcareServiceClient::new(gw.channel.clone());
    let listed = health
        .list_facilities(request(ListFacilitiesRequest { page_size: 3, ..Default::default() }, &[]))
        .await
        .expect("the compose gateway answers from the adapter container")
        .into_inner();
    assert_eq!(listed.facilities.len(), 3);
    std::fs::remove_dir_all(app).ok();
}

#[tokio::test]
async fn unknown_ids_on_a_portal_platform_are_not_found_and_leave_the_instance_ready() {
    use lienthong_proto::v1::GetSchoolRequest;
    use lienthong_proto::v1::education_service_client::EducationServiceClient;
    let portals = lienthong_contract_tests::fakes::portals::FakePortals::start().await.unwrap();
    // Education of province 79 on a CKAN portal, whose gets are searches;
    // a breaker that opens after two failures.
    let toml = lienthong::config::SANDBOX_DEFAULT.replace("education = \"sandbox\"", "education = \"portal\"")
        + &format!(
            r#"
[breaker]
failures_to_open = 2

[adapters.portal]
kind = "warehouse-http"
platform = "ckan"
base_url = "{}/ckan/api/3/action"
allow_insecure_http = true

[adapters.portal.datasets.schools]
resource = "truong-hoc"
fields = {{ school_id = "ma_truong", name = "ten_truong", ward_code = "ma_phuong_xa", latitude = "vi_do", longitude = "kinh_do" }}
"#,
            portals.url()
        );
    let gw = TestGateway::with_toml(&toml, lienthong::server::adapter_registry()).await;
    let mut schools = EducationServiceClient::new(gw.channel.clone());
    for n in 0..5 {
        let id = format!("79-THPT-99{n:02}");
        let e = schools.get_school(request(GetSchoolRequest { school_id: id }, &[])).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    }
    // Not held against the portal: the breaker is closed, lists answer, the
    // gateway is ready.
    let listed = schools
        .list_schools(request(lienthong_proto::v1::ListSchoolsRequest { page_size: 5, ..Default::default() }, &[]))
        .await
        .expect("the portal still answers");
    assert_eq!(listed.into_inner().schools.len(), 5);
    let ready = reqwest::get(format!("http://{}/readyz", gw.ops_addr)).await.unwrap();
    assert!(ready.status().is_success(), "{}", ready.status());
    // A school that exists is got.
    let got = schools
        .get_school(request(GetSchoolRequest { school_id: portals.school_ids()[0].clone() }, &[]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.school.map(|s| s.school_id), Some(portals.school_ids()[0].clone()));
}
