//! Distances on the Earth's surface.

use crate::api::GeoPoint;

const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// The great-circle distance between two points in metres (haversine).
pub fn distance_m(a: &GeoPoint, b: &GeoPoint) -> f64 {
    let (la1, la2) = (a.latitude.to_radians(), b.latitude.to_radians());
    let dlat = la2 - la1;
    let dlon = (b.longitude - a.longitude).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
}

/// A point from latitude and longitude.
pub fn point(latitude: f64, longitude: f64) -> GeoPoint {
    GeoPoint { latitude, longitude }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ben_thanh_to_cho_ray_is_about_3_km() {
        // Bến Thành market and Chợ Rẫy hospital.
        let d = distance_m(&point(10.7725, 106.6980), &point(10.7579, 106.6594));
        assert!((4_000.0..4_600.0).contains(&d), "{d}");
        assert_eq!(distance_m(&point(10.0, 106.0), &point(10.0, 106.0)), 0.0);
    }
}
