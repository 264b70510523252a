//! The remote adapter against the example Python adapter service
//! (deploy/examples/python-adapter): the contract suite over real gRPC, and
//! the one command a province runs against its own endpoint.

// Test helpers may unwrap: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::Duration;

use lienthong_adapter_core::{AdapterFactory, BuildContext, CallContext, ErrorKind, api};
use lienthong_adapter_remote::RemoteFactory;
use lienthong_contract_tests::examples::{self, ExampleAdapter};
use lienthong_contract_tests::{Outcome, run};

/// The Python example on a free port.
async fn python_adapter() -> ExampleAdapter {
    python_adapter_with(&[]).await
}

const TLS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/tls");

/// As [`python_adapter`], with extra arguments.
async fn python_adapter_with(extra: &[&str]) -> ExampleAdapter {
    examples::python(extra).await.unwrap()
}

#[tokio::test]
async fn the_python_adapter_passes_the_contract_suite_through_the_remote_adapter() {
    // Dossiers move at the sandbox's pace (30 s): while the suite runs the
    // citizens' dossiers differ in status and one is still moving.
    let python = python_adapter().await;
    let options = serde_json::json!({"endpoint": python.endpoint(), "timeout": "5s"});
    let set = RemoteFactory.build(BuildContext::new("python", options)).await.unwrap();
    assert_eq!(set.provinces, ["79"], "the service says which province's data it holds");
    // Its dossiers belong to the sandbox's demo citizens: two of them test
    // the personal cases, with the sandbox's tokens.
    let sandbox = lienthong_adapter_sandbox::Sandbox::new(Default::default()).unwrap().into_set();
    let target = lienthong_contract_tests::Target::new(set.clone(), "79").with_demo_citizens_of(&sandbox).await;
    let report = lienthong_contract_tests::run_target(&target).await;
    let (_, failed, _) = report.counts();
    assert_eq!((failed, report.warnings().count()), (0, 0), "{report}");
    // Healthcare, education and public services run, every case of them;
    // the rest is skipped as not served.
    for family in ["healthcare", "education", "public_services"] {
        let skipped = report.outcomes.iter().filter(|(n, o)| n.starts_with(family) && matches!(o, Outcome::Skipped(_)));
        assert_eq!(skipped.count(), 0, "{family}: {report}");
    }
    assert!(
        report.outcomes.iter().any(|(n, o)| n.starts_with("transport") && matches!(o, Outcome::Skipped(_))),
        "{report}"
    );

    // Errors cross the process boundary with their kinds.
    let h = set.healthcare.unwrap();
    let e = h
        .get_facility(&CallContext::anonymous("79"), api::GetFacilityRequest { facility_code: "ZZ999".into() })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let bad = api::ListFacilitiesRequest { page_token: "forged:5".into(), ..Default::default() };
    assert_eq!(
        h.list_facilities(&CallContext::anonymous("79"), bad).await.unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    // Methods it does not implement answer UNIMPLEMENTED, mapped to Unsupported.
    let t = set.transport.unwrap();
    let e = t.list_bus_routes(&CallContext::anonymous("79"), api::ListBusRoutesRequest::default()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
}

#[tokio::test]
async fn a_province_validates_its_endpoint_with_one_command() {
    let python = python_adapter().await;
    let out = tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_lienthong-contract-tests"))
            .args(["--adapter", "remote", "--endpoint", &python.endpoint()])
            .output()
            .unwrap();
        drop(python);
        out
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(", 0 failed,"), "{stdout}");

    // Nothing listening: the command fails once, saying it cannot reach the
    // adapter there (no rule is blamed).
    let out = Command::new(env!("CARGO_BIN_EXE_lienthong-contract-tests"))
        .args(["--adapter", "remote", "--endpoint", "http://127.0.0.1:9", "--options", r#"{"timeout": "1s"}"#])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("0 passed (0 with a warning), 1 failed") && !stdout.contains("violates"), "{stdout}");
    assert!(stderr.contains("cannot reach the adapter at http://127.0.0.1:9"), "{stderr}");
}

/// The error of a first call through a remote instance built from `options`
/// (the handshake happens on the first call).
async fn first_failure(name: &str, options: serde_json::Value) -> lienthong_adapter_core::AdapterError {
    let set = RemoteFactory.build(BuildContext::new(name, options)).await.unwrap();
    set.healthcare
        .unwrap()
        .list_facilities(&CallContext::anonymous("79"), api::ListFacilitiesRequest::default())
        .await
        .unwrap_err()
}

#[tokio::test]
async fn mutual_tls_is_required_and_works() {
    let (cert, key, ca) = (format!("{TLS}/server.pem"), format!("{TLS}/server.key"), format!("{TLS}/ca.pem"));
    let python = python_adapter_with(&["--tls-cert", &cert, "--tls-key", &key, "--client-ca", &ca]).await;
    let endpoint = python.endpoint().replace("http://", "https://");
    let with_client_cert = serde_json::json!({
        "endpoint": endpoint, "timeout": "5s",
        "tls": {"ca_file": ca, "client_cert_file": format!("{TLS}/client.pem"), "client_key_file": format!("{TLS}/client.key"), "domain_name": "localhost"},
    });
    let set = RemoteFactory.build(BuildContext::new("mtls", with_client_cert)).await.unwrap();
    let report = run(&set).await;
    assert_eq!(report.counts().1, 0, "{report}");
    assert!(report.counts().0 >= 7, "{report}");

    // Without a client certificate the adapter service refuses the handshake.
    let without =
        serde_json::json!({"endpoint": endpoint, "timeout": "5s", "tls": {"ca_file": ca, "domain_name": "localhost"}});
    let e = first_failure("no-client-cert", without).await;
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");

    // Without the private CA (tls_ca_file, as every HTTP adapter spells it),
    // the failure names its cause.
    let untrusted = serde_json::json!({"endpoint": endpoint, "timeout": "5s", "tls": {
        "client_cert_file": format!("{TLS}/client.pem"), "client_key_file": format!("{TLS}/client.key"), "domain_name": "localhost",
    }});
    let e = first_failure("untrusted", untrusted.clone()).await;
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.message().contains("unknown authority"), "{e}");
    let mut trusted = untrusted;
    trusted["tls_ca_file"] = serde_json::json!(ca);
    let set = RemoteFactory.build(BuildContext::new("trusted", trusted)).await.unwrap();
    assert_eq!(run(&set).await.counts().1, 0);
}

#[tokio::test]
async fn what_a_service_declares_is_learned_when_it_comes_up_after_the_gateway() {
    use lienthong_adapter_core::Method;
    // A port nothing listens on yet: the service is down at start.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let options = serde_json::json!({
        "endpoint": format!("http://127.0.0.1:{port}"),
        "timeout": "2s",
        "connect_timeout": "1s",
    });
    let set = RemoteFactory.build(BuildContext::new("late", options)).await.unwrap();
    let (transport, healthcare) = (set.transport.clone().unwrap(), set.healthcare.clone().unwrap());
    // Until it answers, every method of its families is assumed.
    assert!(transport.capabilities().supports(Method::ListBusRoutes));
    // It comes up declaring healthcare and education only.
    let _python = python_adapter_with(&["--port", &port.to_string()]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while transport.capabilities().supports(Method::ListBusRoutes) {
        assert!(tokio::time::Instant::now() < deadline, "the declared methods were not learned within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(healthcare.capabilities().supports(Method::ListFacilities));
    assert!(!transport.capabilities().supports(Method::ListTrafficCameras));
}

#[tokio::test]
async fn a_service_speaking_another_major_version_of_the_protocol_is_refused_at_start() {
    let python = python_adapter_with(&["--protocol-version", "2.0"]).await;
    let options = serde_json::json!({"endpoint": python.endpoint()});
    let e = RemoteFactory.build(BuildContext::new("future", options)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(
        e.message().contains("\"future\"") && e.message().contains("\"2.0\"") && e.message().contains("1.x"),
        "{}",
        e.message()
    );
    // The version it was written for is accepted.
    let python = python_adapter_with(&["--protocol-version", "1.4"]).await;
    let options = serde_json::json!({"endpoint": python.endpoint()});
    assert!(RemoteFactory.build(BuildContext::new("current", options)).await.is_ok());
}

/// A fake adapter service that records what it receives, reached through a
/// relay the test can cut (an adapter process dying mid-stream).
mod recorder {
    use std::pin::Pin;
    use std::sync::{Arc, Mutex};

    use lienthong_adapter_core::api;
    use lienthong_proto::adapter::v1 as proto;
    use lienthong_proto::adapter::v1::adapter_service_server::{AdapterService, AdapterServiceServer};
    use tonic::{Request, Response, Status};

    /// What the fake saw: each call's method, its `grpc-timeout`, and the
    /// ListMyDossiers token.
    #[derive(Debug, Default)]
    pub struct Seen {
        pub timeouts: Vec<(&'static str, Option<String>)>,
        pub tokens: Vec<String>,
    }

    #[derive(Debug, Default, Clone)]
    pub struct Recorder(pub Arc<Mutex<Seen>>, pub bool);

    impl Recorder {
        fn saw<T>(&self, method: &'static str, req: &Request<T>) {
            let timeout = req.metadata().get("grpc-timeout").and_then(|v| v.to_str().ok()).map(str::to_owned);
            self.0.lock().unwrap().timeouts.push((method, timeout));
        }
    }

    const OWNER: &str = "079190012345";

    fn dossier() -> proto::OwnedDossier {
        proto::OwnedDossier {
            dossier: Some(api::Dossier { dossier_code: "000.00.53.H29-261129-0001".into(), ..Default::default() }),
            owner_id_number: OWNER.into(),
        }
    }

    #[tonic::async_trait]
    impl AdapterService for Recorder {
        async fn get_capabilities(
            &self,
            _: Request<proto::GetCapabilitiesRequest>,
        ) -> Result<Response<proto::GetCapabilitiesResponse>, Status> {
            if self.1 {
                return Err(Status::unimplemented("GetCapabilities"));
            }
            Ok(Response::new(proto::GetCapabilitiesResponse {
                methods: vec![
                    "lienthong.v1.PublicServicesService/ListMyDossiers".into(),
                    "lienthong.v1.PublicServicesService/WatchDossier".into(),
                ],
                protocol_version: "1.2".into(),
                adapter_name: "recorder".into(),
                adapter_version: "0".into(),
                provinces: vec!["79".into()],
            }))
        }

        async fn list_my_dossiers(
            &self,
            request: Request<proto::ListMyDossiersRequest>,
        ) -> Result<Response<api::ListMyDossiersResponse>, Status> {
            self.saw("ListMyDossiers", &request);
            self.0.lock().unwrap().tokens.push(request.into_inner().token);
            Ok(Response::new(api::ListMyDossiersResponse::default()))
        }

        type WatchDossierStream = Pin<Box<dyn futures_util::Stream<Item = Result<proto::OwnedDossier, Status>> + Send>>;

        async fn watch_dossier(
            &self,
            request: Request<api::WatchDossierRequest>,
        ) -> Result<Response<Self::WatchDossierStream>, Status> {
            self.saw("WatchDossier", &request);
            // The current state, then nothing: the test cuts the connection.
            let stream = futures_util::StreamExt::chain(
                futures_util::stream::once(async { Ok(dossier()) }),
                futures_util::stream::pending(),
            );
            Ok(Response::new(Box::pin(stream)))
        }

        async fn authenticate(
            &self,
            _: Request<proto::AuthenticateRequest>,
        ) -> Result<Response<proto::AuthenticateResponse>, Status> {
            Err(Status::unimplemented("authenticate"))
        }

        async fn get_profile(
            &self,
            _: Request<proto::GetProfileRequest>,
        ) -> Result<Response<api::CitizenProfile>, Status> {
            Err(Status::unimplemented("get_profile"))
        }

        async fn list_facilities(
            &self,
            _: Request<api::ListFacilitiesRequest>,
        ) -> Result<Response<api::ListFacilitiesResponse>, Status> {
            Err(Status::unimplemented("list_facilities"))
        }

        async fn get_facility(&self, _: Request<api::GetFacilityRequest>) -> Result<Response<api::Facility>, Status> {
            Err(Status::unimplemented("get_facility"))
        }

        async fn list_schools(
            &self,
            _: Request<api::ListSchoolsRequest>,
        ) -> Result<Response<api::ListSchoolsResponse>, Status> {
            Err(Status::unimplemented("list_schools"))
        }

        async fn get_school(&self, _: Request<api::GetSchoolRequest>) -> Result<Response<api::School>, Status> {
            Err(Status::unimplemented("get_school"))
        }

        async fn list_bus_routes(
            &self,
            _: Request<api::ListBusRoutesRequest>,
        ) -> Result<Response<api::ListBusRoutesResponse>, Status> {
            Err(Status::unimplemented("list_bus_routes"))
        }

        async fn get_bus_route(&self, _: Request<api::GetBusRouteRequest>) -> Result<Response<api::BusRoute>, Status> {
            Err(Status::unimplemented("get_bus_route"))
        }

        async fn list_nearby_stops(
            &self,
            _: Request<api::ListNearbyStopsRequest>,
        ) -> Result<Response<api::ListNearbyStopsResponse>, Status> {
            Err(Status::unimplemented("list_nearby_stops"))
        }

        async fn list_arrivals(
            &self,
            _: Request<api::ListArrivalsRequest>,
        ) -> Result<Response<api::ListArrivalsResponse>, Status> {
            Err(Status::unimplemented("list_arrivals"))
        }

        async fn list_traffic_cameras(
            &self,
            _: Request<api::ListTrafficCamerasRequest>,
        ) -> Result<Response<api::ListTrafficCamerasResponse>, Status> {
            Err(Status::unimplemented("list_traffic_cameras"))
        }

        async fn get_traffic_camera(
            &self,
            _: Request<api::GetTrafficCameraRequest>,
        ) -> Result<Response<api::TrafficCamera>, Status> {
            Err(Status::unimplemented("get_traffic_camera"))
        }

        async fn list_housing_projects(
            &self,
            _: Request<api::ListHousingProjectsRequest>,
        ) -> Result<Response<api::ListHousingProjectsResponse>, Status> {
            Err(Status::unimplemented("list_housing_projects"))
        }

        async fn get_housing_project(
            &self,
            _: Request<api::GetHousingProjectRequest>,
        ) -> Result<Response<api::HousingProject>, Status> {
            Err(Status::unimplemented("get_housing_project"))
        }

        async fn get_practicing_certificate(
            &self,
            _: Request<api::GetPracticingCertificateRequest>,
        ) -> Result<Response<api::PracticingCertificate>, Status> {
            Err(Status::unimplemented("get_practicing_certificate"))
        }

        async fn list_agencies(
            &self,
            _: Request<api::ListAgenciesRequest>,
        ) -> Result<Response<api::ListAgenciesResponse>, Status> {
            Err(Status::unimplemented("list_agencies"))
        }

        async fn get_agency(&self, _: Request<api::GetAgencyRequest>) -> Result<Response<api::Agency>, Status> {
            Err(Status::unimplemented("get_agency"))
        }

        async fn list_procedures(
            &self,
            _: Request<api::ListProceduresRequest>,
        ) -> Result<Response<api::ListProceduresResponse>, Status> {
            Err(Status::unimplemented("list_procedures"))
        }

        async fn get_procedure(
            &self,
            _: Request<api::GetProcedureRequest>,
        ) -> Result<Response<api::Procedure>, Status> {
            Err(Status::unimplemented("get_procedure"))
        }

        async fn get_dossier(
            &self,
            _: Request<api::GetDossierRequest>,
        ) -> Result<Response<proto::OwnedDossier>, Status> {
            Err(Status::unimplemented("get_dossier"))
        }
    }

    /// Serves `recorder` behind a relay; returns the relay's address and a
    /// handle whose abort cuts every relayed connection at once.
    pub async fn serve(recorder: Recorder) -> (String, tokio::task::JoinHandle<()>) {
        let backend = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let backend_addr = backend.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(AdapterServiceServer::new(recorder))
                .serve_with_incoming(tokio_stream_listener(backend)),
        );
        let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = front.local_addr().unwrap();
        let relay = tokio::spawn(async move {
            let mut pipes = tokio::task::JoinSet::new();
            loop {
                let Ok((mut inbound, _)) = front.accept().await else { return };
                pipes.spawn(async move {
                    let mut outbound = tokio::net::TcpStream::connect(backend_addr).await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
            }
        });
        (format!("http://{addr}"), relay)
    }

    fn tokio_stream_listener(
        listener: tokio::net::TcpListener,
    ) -> impl futures_util::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
        futures_util::stream::unfold(listener, |l| async move {
            let accepted = l.accept().await.map(|(s, _)| s);
            Some((accepted, l))
        })
    }

    pub fn owner() -> lienthong_adapter_core::CitizenId {
        lienthong_adapter_core::CitizenId::parse(OWNER).unwrap()
    }
}

/// A signed-in citizen's call context, with a deadline `in` from now.
fn citizen_ctx(deadline_in: Duration) -> CallContext {
    let principal = lienthong_adapter_core::Principal {
        citizen_id: recorder::owner(),
        identity_level: api::IdentityLevel::IdentityLevel2,
        token: lienthong_adapter_core::BearerToken::new("header.payload.signature"),
    };
    let mut ctx = CallContext::anonymous("79");
    ctx.principal = Some(principal);
    ctx.deadline = Some(tokio::time::Instant::now() + deadline_in);
    ctx
}

#[tokio::test]
async fn the_citizens_token_reaches_a_service_only_when_its_config_says_so() {
    for (forward, want) in [(false, ""), (true, "header.payload.signature")] {
        let recorder = recorder::Recorder::default();
        let (endpoint, _relay) = recorder::serve(recorder.clone()).await;
        let options = serde_json::json!({"endpoint": endpoint, "forward_citizen_token": forward});
        let set = RemoteFactory.build(BuildContext::new("registry", options)).await.unwrap();
        let ps = set.public_services.unwrap();
        ps.list_my_dossiers(&citizen_ctx(Duration::from_secs(10)), api::ListMyDossiersRequest::default())
            .await
            .unwrap();
        assert_eq!(recorder.0.lock().unwrap().tokens, [want], "forward_citizen_token = {forward}");
    }
}

#[tokio::test]
async fn a_watch_carries_the_callers_deadline_and_a_service_dying_mid_stream_is_unavailable() {
    use futures_util::StreamExt;
    let recorder = recorder::Recorder::default();
    let (endpoint, relay) = recorder::serve(recorder.clone()).await;
    // The unary timeout is 2 s; the caller's deadline is a minute away.
    let options = serde_json::json!({"endpoint": endpoint, "timeout": "2s"});
    let set = RemoteFactory.build(BuildContext::new("registry", options)).await.unwrap();
    let ps = set.public_services.unwrap();
    let ctx = citizen_ctx(Duration::from_secs(60));
    let mut watch = ps
        .watch_dossier(&ctx, api::WatchDossierRequest { dossier_code: "000.00.53.H29-261129-0001".into() })
        .await
        .unwrap();
    let first = watch.next().await.unwrap().unwrap();
    assert_eq!(first.owner, recorder::owner());
    let sent = recorder.0.lock().unwrap().timeouts.clone();
    let (method, timeout) = &sent[0];
    assert_eq!(*method, "WatchDossier");
    // grpc-timeout as tonic writes it: at most 8 digits and a unit.
    let timeout = timeout.as_deref().expect("a watch carries the caller's deadline");
    let (digits, unit) = timeout.split_at(timeout.len() - 1);
    let seconds = digits.parse::<f64>().unwrap()
        * match unit {
            "S" => 1.0,
            "m" => 1e-3,
            "u" => 1e-6,
            "n" => 1e-9,
            other => panic!("unit {other}"),
        };
    assert!((55.0..=60.0).contains(&seconds), "grpc-timeout {timeout} is not the caller's remaining minute");
    // The service's connection dies mid-stream.
    relay.abort();
    let e = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("the watch ends when the service's connection dies")
        .expect("an error, not a clean end")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
}

#[tokio::test]
async fn a_correct_adapter_holding_hanoi_data_passes_the_suite_for_province_01() {
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/hanoi");
    let python = python_adapter_with(&["--data-dir", data, "--province", "01"]).await;
    let options = serde_json::json!({"endpoint": python.endpoint(), "timeout": "5s"});
    let set = RemoteFactory.build(BuildContext::new("hanoi", options)).await.unwrap();
    let report = lienthong_contract_tests::run_target(&lienthong_contract_tests::Target::new(set, "01")).await;
    let (passed, failed, _) = report.counts();
    assert_eq!(failed, 0, "{report}");
    // The near searches ran around Hà Nội's own records, not Bến Thành.
    for near in ["healthcare/list_facilities near search", "education/list_schools near search"] {
        assert!(
            report.outcomes.iter().any(|(n, o)| *n == near && matches!(o, Outcome::Passed)),
            "{near} did not pass:\n{report}"
        );
    }
    assert!(passed >= 7, "{report}");

    // From the command line, without --province: the suite takes the
    // province the service says it holds (GetCapabilities), and says so.
    let endpoint = python.endpoint();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_lienthong-contract-tests"))
            .args(["--adapter", "remote", "--endpoint", &endpoint])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("province 01 (what the adapter says it holds)"), "{stdout}");
    // Families it does not serve are one line each.
    assert!(
        stdout.contains("skipped  transport: ") && stdout.contains("(this adapter does not serve transport)"),
        "{stdout}"
    );
    assert_eq!(stdout.matches("does not serve transport").count(), 1, "{stdout}");
}

#[tokio::test]
async fn an_adapter_out_of_reach_is_one_clear_failure_not_every_rule() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let options = serde_json::json!({"endpoint": format!("http://127.0.0.1:{port}"), "connect_timeout": "1s"});
    let set = RemoteFactory.build(BuildContext::new("down", options)).await.unwrap();
    let report = run(&set).await;
    let (_, failed, _) = report.counts();
    assert_eq!(failed, 1, "{report}");
    let (name, violation) = report.violations().next().unwrap();
    assert_eq!((name, violation.rule), ("the adapter is reachable", lienthong_contract_tests::UNREACHABLE));
    assert!(violation.detail.starts_with("cannot reach the adapter"), "{report}");
}

#[tokio::test]
async fn a_service_without_get_capabilities_is_refused_with_the_reason() {
    let (endpoint, _relay) = recorder::serve(recorder::Recorder(Default::default(), true)).await;
    let options = serde_json::json!({"endpoint": endpoint});
    let e = RemoteFactory.build(BuildContext::new("partial", options)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(
        e.message().contains("\"partial\"") && e.message().contains("does not implement GetCapabilities"),
        "{}",
        e.message()
    );
}

#[tokio::test]
async fn the_services_health_check_is_read_when_it_offers_one() {
    // The Python example serves grpc.health.v1: it says it serves.
    let python = python_adapter().await;
    let options = serde_json::json!({"endpoint": python.endpoint()});
    let set = RemoteFactory.build(BuildContext::new("python", options)).await.unwrap();
    let health = set.health.clone().expect("a remote instance can be asked");
    assert_eq!(health.serving().await, Some(true));
    // Gone: not serving.
    drop(python);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while health.serving().await != Some(false) {
        assert!(tokio::time::Instant::now() < deadline, "a stopped service still reads as serving");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A service without a health check: nothing to ask (the gateway stops).
    let (endpoint, _relay) = recorder::serve(recorder::Recorder::default()).await;
    let set =
        RemoteFactory.build(BuildContext::new("recorder", serde_json::json!({"endpoint": endpoint}))).await.unwrap();
    assert_eq!(set.health.unwrap().serving().await, None);
}

#[tokio::test]
async fn the_node_example_passes_the_contract_suite_for_its_family() {
    let node = examples::node(&[]).await.unwrap();
    let options = serde_json::json!({"endpoint": node.endpoint(), "families": ["construction"]});
    let set = RemoteFactory.build(BuildContext::new("node", options)).await.unwrap();
    let report = run(&set).await;
    let (passed, failed, _) = report.counts();
    assert_eq!((failed, report.warnings().count()), (0, 0), "{report}");
    // Every construction case ran.
    let skipped =
        report.outcomes.iter().filter(|(n, o)| n.starts_with("construction") && matches!(o, Outcome::Skipped(_)));
    assert_eq!(skipped.count(), 0, "{report}");
    assert!(passed >= 14, "{report}");
}
