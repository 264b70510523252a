//! Traffic cameras from the warehouse's datasets.

use async_trait::async_trait;
use lienthong_adapter_core::{AdapterError, CallContext, Capabilities, Method, TransportAdapter, api, paging};

use lienthong_adapter_core::filters_of;

use crate::records;
use crate::{ListCall, WarehouseAdapter};

#[async_trait]
impl TransportAdapter for WarehouseAdapter {
    fn capabilities(&self) -> Capabilities {
        self.supports(&[("traffic_cameras", Method::ListTrafficCameras, Method::GetTrafficCamera)])
    }

    async fn list_traffic_cameras(
        &self,
        ctx: &CallContext,
        req: api::ListTrafficCamerasRequest,
    ) -> Result<api::ListTrafficCamerasResponse, AdapterError> {
        let call = ListCall {
            dataset: "traffic_cameras",
            filters: vec![("text", req.text.trim().to_owned())],
            near: req.near.as_ref(),
            page_size: req.page_size,
            page_token: &req.page_token,
            fingerprint: paging::filters_fingerprint(&filters_of!(req)),
            build: records::traffic_camera,
            matches: records::camera_matches,
            located: Some(|c| (c.location, &mut c.distance_meters)),
        };
        let (cameras, next_page_token, total_size) = self.list(ctx, Method::ListTrafficCameras, call).await?;
        Ok(api::ListTrafficCamerasResponse { cameras, next_page_token, total_size })
    }

    async fn get_traffic_camera(
        &self,
        ctx: &CallContext,
        req: api::GetTrafficCameraRequest,
    ) -> Result<api::TrafficCamera, AdapterError> {
        self.get(ctx, Method::GetTrafficCamera, "traffic_cameras", &req.camera_id, records::traffic_camera).await
    }
}
