//! `lienthong.v1.TransportService`.

use std::sync::Arc;

use lienthong_adapter_core::{Method, api};
use lienthong_proto::v1::transport_service_server::TransportService;
use tonic::{Request, Response, Status};

use crate::call::Call;
use crate::errors::Violations;
use crate::gateway::Gateway;
use crate::services::validate::{self, CodeKind};

/// Most arrivals one call may ask for.
const MAX_ARRIVALS: i32 = 50;

/// Serves buses, stops, arrivals and traffic cameras.
#[derive(Debug, Clone)]
pub struct TransportApi(pub Arc<Gateway>);

#[tonic::async_trait]
impl TransportService for TransportApi {
    async fn list_bus_routes(
        &self,
        request: Request<api::ListBusRoutesRequest>,
    ) -> Result<Response<api::ListBusRoutesResponse>, Status> {
        let call = Call::begin(&self.0, &request, Method::ListBusRoutes).await?;
        let mut req = request.into_inner();
        let mut v = Violations::new();
        validate::page(&mut v, req.page_size, &req.page_token);
        validate::text(&mut v, "text", &req.text);
        validate::optional_code(&mut v, "stop_id", &req.stop_id, CodeKind::RecordId);
        validate::enum_value::<api::BusRouteView>(&mut v, "view", req.view);
        v.into_result()?;
        let paging = call.paging(&mut req)?;
        let a = call.transport()?;
        call.answer_page(a, req, |adapter, ctx, req| async move { adapter.list_bus_routes(&ctx, req).await }, paging)
            .await
    }

    async fn get_bus_route(
        &self,
        request: Request<api::GetBusRouteRequest>,
    ) -> Result<Response<api::GetBusRouteResponse>, Status> {
        let call = Call::begin(&self.0, &request, Method::GetBusRoute).await?;
        let req = request.into_inner();
        let mut v = Violations::new();
        validate::code(&mut v, "route_number", &req.route_number, CodeKind::RouteNumber);
        validate::enum_value::<api::BusRouteView>(&mut v, "view", req.view);
        v.into_result()?;
        let a = call.transport()?;
        call.answer(
            a,
            req,
            |adapter, ctx, req| async move { adapter.get_bus_route(&ctx, req).await },
            |route| api::GetBusRouteResponse { route: Some(route) },
        )
        .await
    }

    async fn list_nearby_stops(
        &self,
        request: Request<api::ListNearbyStopsRequest>,
    ) -> Result<Response<api::ListNearbyStopsResponse>, Status> {
        let call = Call::begin(&self.0, &request, Method::ListNearbyStops).await?;
        let mut req = request.into_inner();
        let mut v = Violations::new();
        validate::page(&mut v, req.page_size, &req.page_token);
        validate::near(&mut v, "near", req.near.as_ref(), true);
        v.into_result()?;
        let paging = call.paging(&mut req)?;
        let a = call.transport()?;
        call.answer_page(a, req, |adapter, ctx, req| async move { adapter.list_nearby_stops(&ctx, req).await }, paging)
            .await
    }

    async fn list_arrivals(
        &self,
        request: Request<api::ListArrivalsRequest>,
    ) -> Result<Response<api::ListArrivalsResponse>, Status> {
        let call = Call::begin(&self.0, &request, Method::ListArrivals).await?;
        let req = request.into_inner();
        let mut v = Violations::new();
        validate::code(&mut v, "stop_id", &req.stop_id, CodeKind::RecordId);
        validate::optional_code(&mut v, "route_number", &req.route_number, CodeKind::RouteNumber);
        if !(0..=MAX_ARRIVALS).contains(&req.limit) {
            v.add("limit", format!("must be between 0 (the default, 10) and {MAX_ARRIVALS}"));
        }
        v.into_result()?;
        let a = call.transport()?;
        call.answer(
            a,
            req,
            |adapter, ctx, req| async move { adapter.list_arrivals(&ctx, req).await },
            |arrivals| arrivals,
        )
        .await
    }

    async fn list_traffic_cameras(
        &self,
        request: Request<api::ListTrafficCamerasRequest>,
    ) -> Result<Response<api::ListTrafficCamerasResponse>, Status> {
        let call = Call::begin(&self.0, &request, Method::ListTrafficCameras).await?;
        let mut req = request.into_inner();
        let mut v = Violations::new();
        validate::page(&mut v, req.page_size, &req.page_token);
        validate::text(&mut v, "text", &req.text);
        validate::near(&mut v, "near", req.near.as_ref(), false);
        v.into_result()?;
        let paging = call.paging(&mut req)?;
        let a = call.transport()?;
        call.answer_page(
            a,
            req,
            |adapter, ctx, req| async move { adapter.list_traffic_cameras(&ctx, req).await },
            paging,
        )
        .await
    }

    async fn get_traffic_camera(
        &self,
        request: Request<api::GetTrafficCameraRequest>,
    ) -> Result<Response<api::GetTrafficCameraResponse>, Status> {
        let call = Call::begin(&self.0, &request, Method::GetTrafficCamera).await?;
        let req = request.into_inner();
        let mut v = Violations::new();
        validate::code(&mut v, "camera_id", &req.camera_id, CodeKind::RecordId);
        v.into_result()?;
        let a = call.transport()?;
        call.answer(
            a,
            req,
            |adapter, ctx, req| async move { adapter.get_traffic_camera(&ctx, req).await },
            |camera| api::GetTrafficCameraResponse { camera: Some(camera) },
        )
        .await
    }
}
