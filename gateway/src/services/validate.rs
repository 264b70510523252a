//! Request validation: every field a caller sets is checked before any
//! adapter sees the request, and every problem is reported at once.

use lienthong_adapter_core::{admin, api, paging};

use crate::errors::Violations;

/// Longest free-text filter, in characters.
pub const MAX_TEXT_CHARS: usize = 200;
/// Largest near-search radius, in metres.
pub const MAX_RADIUS_M: f64 = 50_000.0;
/// Longest page token accepted.
const MAX_PAGE_TOKEN: usize = crate::gateway::page_tokens::MAX_SEALED_TOKEN;

/// The shape of an identifier or code.
#[derive(Debug, Clone, Copy)]
pub enum CodeKind {
    /// A 5-character facility code (MA_CSKCB).
    Facility,
    /// A record id of the city's registers: 1-64 of `A-Z a-z 0-9 . _ -`.
    RecordId,
    /// A bus route number: 1-16 of `A-Z a-z 0-9 -`.
    RouteNumber,
    /// A certificate number: 1-64 letters (Vietnamese included), digits, `- / .`.
    Certificate,
    /// An agency code: `000.00.12.H29`.
    Agency,
    /// A procedure code: national `1.000894` or local `1.000894.000.00.00.H29`.
    Procedure,
    /// A dossier code: `000.00.12.H29-251114-0001`.
    Dossier,
}

impl CodeKind {
    fn expectation(self) -> &'static str {
        match self {
            Self::Facility => "a 5-character facility code of letters and digits, such as \"79001\"",
            Self::RecordId => "an id of 1 to 64 letters, digits, '.', '_' or '-'",
            Self::RouteNumber => "a route number of 1 to 16 letters, digits or '-', such as \"03\" or \"61-6\"",
            Self::Certificate => "a certificate number of 1 to 64 letters, digits, '-', '/' or '.'",
            Self::Agency => "an agency code of the national catalogue, such as \"000.00.12.H29\"",
            Self::Procedure => "a procedure code such as \"1.000894\" or \"1.000894.000.00.00.H29\"",
            Self::Dossier => "a dossier code such as \"000.00.12.H29-251114-0001\" (agency code, YYMMDD, sequence)",
        }
    }

    fn matches(self, v: &str) -> bool {
        let charset = |max: usize, ok: fn(char) -> bool| !v.is_empty() && v.chars().count() <= max && v.chars().all(ok);
        match self {
            Self::Facility => v.len() == 5 && v.bytes().all(|b| b.is_ascii_alphanumeric()),
            Self::RecordId => charset(64, |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')),
            Self::RouteNumber => charset(16, |c| c.is_ascii_alphanumeric() || c == '-'),
            Self::Certificate => charset(64, |c| c.is_alphanumeric() || matches!(c, '-' | '/' | '.')),
            Self::Agency => shape(v, "DDD.DD.DD.ADD"),
            Self::Procedure => shape(v, "D.DDDDDD") || shape(v, "D.DDDDDD.DDD.DD.DD.ADD"),
            Self::Dossier => {
                shape(v, "DDD.DD.DD.ADD-DDDDDD-DDDD") && {
                    let month: u8 = v[16..18].parse().unwrap_or(0);
                    let day: u8 = v[18..20].parse().unwrap_or(0);
                    (1..=12).contains(&month) && (1..=31).contains(&day)
                }
            }
        }
    }
}

/// Whether `v` has the shape `pattern`: `D` a digit, `A` an upper-case ASCII
/// letter, anything else itself.
fn shape(v: &str, pattern: &str) -> bool {
    v.len() == pattern.len()
        && v.bytes().zip(pattern.bytes()).all(|(c, p)| match p {
            b'D' => c.is_ascii_digit(),
            b'A' => c.is_ascii_uppercase(),
            p => c == p,
        })
}

/// A required code or id.
pub fn code(v: &mut Violations, field: &str, value: &str, kind: CodeKind) {
    if value.is_empty() {
        v.add(field, format!("is required: {}", kind.expectation()));
    } else if !kind.matches(value) {
        v.add(field, format!("is not {}", kind.expectation()));
    }
}

/// An optional code or id: empty means "no filter".
pub fn optional_code(v: &mut Violations, field: &str, value: &str, kind: CodeKind) {
    if !value.is_empty() {
        code(v, field, value, kind);
    }
}

/// `page_size` in 0..=100 and a plausible `page_token`.
pub fn page(v: &mut Violations, page_size: i32, page_token: &str) {
    if !(0..=paging::MAX_PAGE_SIZE as i32).contains(&page_size) {
        v.add(
            "page_size",
            format!("must be between 0 (the default, {}) and {}", paging::DEFAULT_PAGE_SIZE, paging::MAX_PAGE_SIZE),
        );
    }
    if page_token.len() > MAX_PAGE_TOKEN || !page_token.bytes().all(|b| b.is_ascii_graphic()) {
        v.add("page_token", "is not a token this server issued; pass next_page_token back unchanged");
    }
}

/// A free-text filter: at most 200 characters, no control characters.
pub fn text(v: &mut Violations, field: &str, value: &str) {
    if value.chars().count() > MAX_TEXT_CHARS {
        v.add(field, format!("must be at most {MAX_TEXT_CHARS} characters"));
    } else if value.chars().any(char::is_control) {
        v.add(field, "must not contain control characters");
    }
}

/// An optional ward code: 5 digits, a real ward, of the routed province.
pub fn ward(v: &mut Violations, field: &str, value: &str, province: &str) {
    if value.is_empty() {
        return;
    }
    if !shape(value, "DDDDD") {
        v.add(field, "is not a ward code: ward codes have 5 digits, such as \"26740\"");
        return;
    }
    match admin::ward(value) {
        None => v.add(field, "is not a ward code in force since 1 July 2025"),
        Some(w) if w.province_code != province => {
            v.add(
                field,
                format!("is a ward of province {}, but this call is routed to province {province}", w.province_code),
            );
        }
        Some(_) => {}
    }
}

/// A near filter: a centre with valid coordinates and a radius in (0, 50 km].
pub fn near(v: &mut Violations, field: &str, near: Option<&api::NearFilter>, required: bool) {
    let Some(near) = near else {
        if required {
            v.add(field, "is required: give a center and a radius_meters");
        }
        return;
    };
    match &near.center {
        None => v.add(format!("{field}.center"), "is required"),
        Some(c) => {
            if !c.latitude.is_finite() || !(-90.0..=90.0).contains(&c.latitude) {
                v.add(format!("{field}.center.latitude"), "must be between -90 and 90 degrees");
            }
            if !c.longitude.is_finite() || !(-180.0..=180.0).contains(&c.longitude) {
                v.add(format!("{field}.center.longitude"), "must be between -180 and 180 degrees");
            }
        }
    }
    if !near.radius_meters.is_finite() || near.radius_meters <= 0.0 || near.radius_meters > MAX_RADIUS_M {
        v.add(format!("{field}.radius_meters"), format!("must be greater than 0 and at most {MAX_RADIUS_M} metres"));
    }
}

/// An enum field holding a value this API version defines.
pub fn enum_value<E: TryFrom<i32>>(v: &mut Violations, field: &str, value: i32) {
    if E::try_from(value).is_err() {
        v.add(field, format!("{value} is not a defined value of this enum"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(f: impl FnOnce(&mut Violations)) -> bool {
        let mut v = Violations::new();
        f(&mut v);
        v.into_result().is_ok()
    }

    #[test]
    fn codes() {
        assert!(CodeKind::Agency.matches("000.00.12.H29"));
        assert!(!CodeKind::Agency.matches("000.00.12.h29"));
        assert!(CodeKind::Procedure.matches("1.000894"));
        assert!(CodeKind::Procedure.matches("1.000894.000.00.00.H29"));
        assert!(!CodeKind::Procedure.matches("1.000894.000"));
        assert!(CodeKind::Dossier.matches("000.30.67.H29-251114-0001"));
        assert!(!CodeKind::Dossier.matches("000.30.67.H29-251314-0001"));
        assert!(!CodeKind::Dossier.matches("../../etc/passwd"));
        assert!(CodeKind::Certificate.matches("79-MGBĐS-2024-00001"));
        assert!(!CodeKind::RecordId.matches("a/b"));
        assert!(!CodeKind::Facility.matches("7900"));
    }

    #[test]
    fn wards_belong_to_the_province() {
        assert!(check(|v| ward(v, "ward_code", "26740", "79")));
        assert!(check(|v| ward(v, "ward_code", "", "79")));
        assert!(!check(|v| ward(v, "ward_code", "00004", "79")));
        assert!(!check(|v| ward(v, "ward_code", "99999", "79")));
        assert!(!check(|v| ward(v, "ward_code", "2674", "79")));
    }

    #[test]
    fn near_filters() {
        let n = |lat, lng, r| api::NearFilter {
            center: Some(api::GeoPoint { latitude: lat, longitude: lng }),
            radius_meters: r,
        };
        assert!(check(|v| near(v, "near", Some(&n(10.77, 106.7, 1000.0)), true)));
        assert!(!check(|v| near(v, "near", None, true)));
        assert!(check(|v| near(v, "near", None, false)));
        assert!(!check(|v| near(v, "near", Some(&n(91.0, 106.7, 1000.0)), false)));
        assert!(!check(|v| near(v, "near", Some(&n(10.0, 181.0, 1000.0)), false)));
        assert!(!check(|v| near(v, "near", Some(&n(10.0, 106.0, 0.0)), false)));
        assert!(!check(|v| near(v, "near", Some(&n(10.0, 106.0, 50_001.0)), false)));
        assert!(!check(|v| near(v, "near", Some(&n(f64::NAN, 106.0, 10.0)), false)));
    }

    #[test]
    fn pages_and_text() {
        assert!(check(|v| page(v, 0, "")));
        assert!(check(|v| page(v, 100, "abc")));
        assert!(!check(|v| page(v, 101, "")));
        assert!(!check(|v| page(v, -1, "")));
        assert!(!check(|v| page(v, 10, "with space")));
        assert!(check(|v| text(v, "text", "Chợ Rẫy")));
        assert!(!check(|v| text(v, "text", &"a".repeat(201))));
        assert!(!check(|v| text(v, "text", "a\u{0}b")));
    }
}
