//! Bus routes, stops, timetable arrivals and traffic cameras.

use std::time::UNIX_EPOCH;

use async_trait::async_trait;
use lienthong_adapter_core::{AdapterError, CallContext, Capabilities, Family, TransportAdapter, api};

use crate::Sandbox;
use crate::calendar;
use lienthong_adapter_core::filters_of;

use crate::listing::{ListQuery, list};

const DEFAULT_ARRIVALS: usize = 10;
const MAX_ARRIVALS: usize = 50;

fn view(route: &api::BusRoute, view: api::BusRouteView) -> api::BusRoute {
    let mut route = route.clone();
    if view != api::BusRouteView::Full {
        for d in &mut route.directions {
            d.stops.clear();
        }
    }
    route
}

impl Sandbox {
    fn camera(&self, camera: &api::TrafficCamera, portal_id: &str) -> api::TrafficCamera {
        let mut c = camera.clone();
        c.snapshot_url =
            self.config.camera_snapshot_url.replace("{camera_id}", &c.camera_id).replace("{portal_id}", portal_id);
        // Online cameras refresh about every minute; offline ones stopped an hour ago.
        let now = self.now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let jitter = c.camera_id.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))) % 60;
        let age = if c.status == api::CameraStatus::Online as i32 { jitter } else { 3600 + jitter };
        c.updated_time = Some(prost_types::Timestamp { seconds: now.saturating_sub(age) as i64, nanos: 0 });
        c
    }

    /// Timetable arrivals at the stop over the next 24 hours.
    fn arrivals(&self, stop_id: &str, route_filter: &str, limit: usize) -> Vec<api::Arrival> {
        let now = self.now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        let today = calendar::timestamp(calendar::start_of_day(self.now())).seconds;
        let mut out = Vec::new();
        for route in &self.data.routes {
            let r = &route.item;
            if !route_filter.is_empty() && r.route_number != route_filter {
                continue;
            }
            let (Some(first), Some(last), Some(headway)) = (r.first_departure, r.last_departure, r.headway) else {
                continue;
            };
            let headway = headway.seconds.max(60);
            for dir in &r.directions {
                let n = dir.stops.len();
                let Some(k) = dir.stops.iter().position(|s| s.stop_id == stop_id) else { continue };
                // Stops are assumed evenly spaced in time along the run.
                let run = dir.running_time.map(|d| d.seconds).unwrap_or(0);
                let offset = if n > 1 { run * k as i64 / (n as i64 - 1) } else { 0 };
                let (first, last) = (
                    i64::from(first.hours * 3600 + first.minutes * 60),
                    i64::from(last.hours * 3600 + last.minutes * 60),
                );
                for day in [0, 86_400] {
                    let mut dep = first;
                    while dep <= last {
                        let at = today + day + dep + offset;
                        if at >= now && at < now + 86_400 {
                            out.push(api::Arrival {
                                route_number: r.route_number.clone(),
                                headsign: dir.headsign.clone(),
                                outbound: dir.outbound,
                                arrival_time: Some(prost_types::Timestamp { seconds: at, nanos: 0 }),
                                scheduled: true,
                            });
                        }
                        dep += headway;
                    }
                }
            }
        }
        out.sort_by(|a, b| {
            let t = |x: &api::Arrival| x.arrival_time.map(|t| t.seconds).unwrap_or(0);
            t(a).cmp(&t(b)).then_with(|| a.route_number.cmp(&b.route_number)).then(b.outbound.cmp(&a.outbound))
        });
        out.truncate(limit);
        out
    }
}

#[async_trait]
impl TransportAdapter for Sandbox {
    fn capabilities(&self) -> Capabilities {
        Capabilities::family(Family::Transport)
    }

    async fn list_bus_routes(
        &self,
        _: &CallContext,
        req: api::ListBusRoutesRequest,
    ) -> Result<api::ListBusRoutesResponse, AdapterError> {
        let query = ListQuery::new(req.page_size, &req.page_token, &filters_of!(req), &req.text, None)?;
        let wanted = match req.view() {
            api::BusRouteView::Full => api::BusRouteView::Full,
            _ => api::BusRouteView::Basic,
        };
        let page = list(
            &self.data.routes,
            &query,
            |r| req.stop_id.is_empty() || r.directions.iter().any(|d| d.stops.iter().any(|s| s.stop_id == req.stop_id)),
            |_, _| {},
        );
        Ok(api::ListBusRoutesResponse {
            routes: page.items.iter().map(|r| view(r, wanted)).collect(),
            next_page_token: page.next_page_token,
            total_size: page.total_size,
        })
    }

    async fn get_bus_route(
        &self,
        _: &CallContext,
        req: api::GetBusRouteRequest,
    ) -> Result<api::BusRoute, AdapterError> {
        let wanted = match req.view() {
            api::BusRouteView::Basic => api::BusRouteView::Basic,
            _ => api::BusRouteView::Full,
        };
        self.data
            .routes
            .iter()
            .find(|r| r.item.route_number == req.route_number)
            .map(|r| view(&r.item, wanted))
            .ok_or_else(|| AdapterError::not_found("bus route"))
    }

    async fn list_nearby_stops(
        &self,
        _: &CallContext,
        req: api::ListNearbyStopsRequest,
    ) -> Result<api::ListNearbyStopsResponse, AdapterError> {
        let near = req.near.as_ref().ok_or_else(|| AdapterError::invalid_field("near", "near is required"))?;
        let query = ListQuery::new(req.page_size, &req.page_token, &filters_of!(req), "", Some(near))?;
        let page = list(&self.data.stops, &query, |_| true, |s, d| s.distance_meters = Some(d));
        Ok(api::ListNearbyStopsResponse {
            stops: page.items,
            next_page_token: page.next_page_token,
            total_size: page.total_size,
        })
    }

    async fn list_arrivals(
        &self,
        _: &CallContext,
        req: api::ListArrivalsRequest,
    ) -> Result<api::ListArrivalsResponse, AdapterError> {
        let stop = self
            .data
            .stop_index
            .get(&req.stop_id)
            .map(|i| self.data.stops[*i].item.clone())
            .ok_or_else(|| AdapterError::not_found("bus stop"))?;
        let limit = match req.limit {
            0 => DEFAULT_ARRIVALS,
            n => (n.max(1) as usize).min(MAX_ARRIVALS),
        };
        Ok(api::ListArrivalsResponse {
            arrivals: self.arrivals(&req.stop_id, &req.route_number, limit),
            stop: Some(stop),
        })
    }

    async fn list_traffic_cameras(
        &self,
        _: &CallContext,
        req: api::ListTrafficCamerasRequest,
    ) -> Result<api::ListTrafficCamerasResponse, AdapterError> {
        let query = ListQuery::new(req.page_size, &req.page_token, &filters_of!(req), &req.text, req.near.as_ref())?;
        let page = list(&self.data.cameras, &query, |_| true, |c, d| c.0.distance_meters = Some(d));
        Ok(api::ListTrafficCamerasResponse {
            cameras: page.items.iter().map(|(c, portal)| self.camera(c, portal)).collect(),
            next_page_token: page.next_page_token,
            total_size: page.total_size,
        })
    }

    async fn get_traffic_camera(
        &self,
        _: &CallContext,
        req: api::GetTrafficCameraRequest,
    ) -> Result<api::TrafficCamera, AdapterError> {
        self.data
            .cameras
            .iter()
            .find(|c| c.item.0.camera_id == req.camera_id)
            .map(|c| self.camera(&c.item.0, &c.item.1))
            .ok_or_else(|| AdapterError::not_found("traffic camera"))
    }
}
