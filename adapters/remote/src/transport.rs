//! Buses, stops, arrivals and traffic cameras, forwarded to the adapter service.

use async_trait::async_trait;
use lienthong_adapter_core::{AdapterError, CallContext, Capabilities, TransportAdapter, api};

use crate::core::{RemoteAdapter, forwarding_impl};

forwarding_impl!(TransportAdapter {
    list_bus_routes(api::ListBusRoutesRequest) -> api::ListBusRoutesResponse;
    get_bus_route(api::GetBusRouteRequest) -> api::BusRoute;
    list_nearby_stops(api::ListNearbyStopsRequest) -> api::ListNearbyStopsResponse;
    list_arrivals(api::ListArrivalsRequest) -> api::ListArrivalsResponse;
    list_traffic_cameras(api::ListTrafficCamerasRequest) -> api::ListTrafficCamerasResponse;
    get_traffic_camera(api::GetTrafficCameraRequest) -> api::TrafficCamera;
});
