//! The benchmark's baseline: a bare tonic server answering
//! `PublicServicesService/GetProcedure` with a fixed response of the same
//! bytes the gateway returns from its cache (procedure 1.000894 of the
//! sandbox). No routing, validation, cache or limits: the floor the gateway is
//! measured against.
//!
//!     cargo run --release -p lienthong --example bare -- 127.0.0.1:50081

#[path = "common/help.rs"]
mod help;

use std::pin::Pin;

use lienthong_adapter_core::{CallContext, PublicServicesAdapter, api};
use lienthong_adapter_sandbox::{Sandbox, SandboxConfig};
use lienthong_proto::v1::public_services_service_server::{PublicServicesService, PublicServicesServiceServer};
use tonic::{Request, Response, Status};

struct Bare {
    procedure: api::GetProcedureResponse,
}

type WatchStream = Pin<Box<dyn futures_util::Stream<Item = Result<api::WatchDossierResponse, Status>> + Send>>;

#[tonic::async_trait]
impl PublicServicesService for Bare {
    async fn get_procedure(
        &self,
        _: Request<api::GetProcedureRequest>,
    ) -> Result<Response<api::GetProcedureResponse>, Status> {
        Ok(Response::new(self.procedure.clone()))
    }
    async fn list_agencies(
        &self,
        _: Request<api::ListAgenciesRequest>,
    ) -> Result<Response<api::ListAgenciesResponse>, Status> {
        Err(Status::unimplemented("bare"))
    }
    async fn get_agency(&self, _: Request<api::GetAgencyRequest>) -> Result<Response<api::GetAgencyResponse>, Status> {
        Err(Status::unimplemented("bare"))
    }
    async fn list_procedures(
        &self,
        _: Request<api::ListProceduresRequest>,
    ) -> Result<Response<api::ListProceduresResponse>, Status> {
        Err(Status::unimplemented("bare"))
    }
    async fn get_dossier(
        &self,
        _: Request<api::GetDossierRequest>,
    ) -> Result<Response<api::GetDossierResponse>, Status> {
        Err(Status::unimplemented("bare"))
    }
    async fn list_my_dossiers(
        &self,
        _: Request<api::ListMyDossiersRequest>,
    ) -> Result<Response<api::ListMyDossiersResponse>, Status> {
        Err(Status::unimplemented("bare"))
    }
    type WatchDossierStream = WatchStream;
    async fn watch_dossier(&self, _: Request<api::WatchDossierRequest>) -> Result<Response<WatchStream>, Status> {
        Err(Status::unimplemented("bare"))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if help::asked(include_str!("bare.rs")) {
        return Ok(());
    }
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:50081".into()).parse()?;
    let sandbox = Sandbox::new(SandboxConfig::default())?;
    let procedure = sandbox
        .get_procedure(&CallContext::anonymous("79"), api::GetProcedureRequest { procedure_code: "1.000894".into() })
        .await?;
    let bare = Bare { procedure: api::GetProcedureResponse { procedure: Some(procedure) } };
    eprintln!("bare tonic server on {addr}");
    tonic::transport::Server::builder().add_service(PublicServicesServiceServer::new(bare)).serve(addr).await?;
    Ok(())
}
