//! The datasets this adapter knows, and the mapping of an upstream JSON
//! record to an API record through the configured field paths and values.

use lienthong_adapter_core::{AdapterError, ErrorKind, admin, api};
use serde_json::Value;

use crate::config::DatasetConfig;

/// Parses one of our enum value names (without its prefix) to its number.
pub(crate) type EnumParser = fn(&str) -> Option<i32>;

/// What a dataset's records may carry.
pub(crate) struct Schema {
    pub name: &'static str,
    pub fields: &'static [&'static str],
    pub required: &'static [&'static str],
    pub enums: &'static [(&'static str, EnumParser)],
    pub filters: &'static [&'static str],
}

const NEAR: [&str; 3] = ["near.latitude", "near.longitude", "near.radius_meters"];

pub(crate) static DATASETS: &[Schema] = &[
    Schema {
        name: "facilities",
        fields: &[
            "facility_code",
            "name",
            "type",
            "ownership",
            "street",
            "ward_code",
            "latitude",
            "longitude",
            "phone",
            "accepts_health_insurance",
            "emergency_24h",
            "specialties",
        ],
        required: &["facility_code", "name"],
        enums: &[
            ("type", |s| api::FacilityType::from_str_name(&format!("FACILITY_TYPE_{s}")).map(Into::into)),
            ("ownership", |s| api::Ownership::from_str_name(&format!("OWNERSHIP_{s}")).map(Into::into)),
        ],
        filters: &["ward_code", "type", "text", NEAR[0], NEAR[1], NEAR[2]],
    },
    Schema {
        name: "schools",
        fields: &[
            "school_id",
            "name",
            "level",
            "ownership",
            "street",
            "ward_code",
            "latitude",
            "longitude",
            "phone",
            "website",
        ],
        required: &["school_id", "name"],
        enums: &[
            ("level", |s| api::SchoolLevel::from_str_name(&format!("SCHOOL_LEVEL_{s}")).map(Into::into)),
            ("ownership", |s| api::Ownership::from_str_name(&format!("OWNERSHIP_{s}")).map(Into::into)),
        ],
        filters: &["ward_code", "level", "ownership", "text", NEAR[0], NEAR[1], NEAR[2]],
    },
    Schema {
        name: "housing_projects",
        fields: &[
            "project_id",
            "name",
            "investor",
            "street",
            "ward_code",
            "latitude",
            "longitude",
            "status",
            "total_units",
            "site_area_sqm",
            "approval_decision",
            "completion_date",
        ],
        required: &["project_id", "name"],
        enums: &[("status", |s| {
            api::HousingProjectStatus::from_str_name(&format!("HOUSING_PROJECT_STATUS_{s}")).map(Into::into)
        })],
        filters: &["ward_code", "status", "investor", "text"],
    },
    Schema {
        name: "traffic_cameras",
        fields: &[
            "camera_id",
            "code",
            "name",
            "latitude",
            "longitude",
            "streets",
            "snapshot_url",
            "updated_time",
            "status",
            "ptz",
        ],
        required: &["camera_id", "name"],
        enums: &[("status", |s| api::CameraStatus::from_str_name(&format!("CAMERA_STATUS_{s}")).map(Into::into))],
        filters: &["text", NEAR[0], NEAR[1], NEAR[2]],
    },
];

/// The schema of a dataset name.
pub(crate) fn schema(name: &str) -> Option<&'static Schema> {
    DATASETS.iter().find(|s| s.name == name)
}

/// The value at a dotted path (`data.items`, `vi_tri.lat`, `features.0`);
/// the empty path is the value itself. A key may itself hold dots
/// (`@odata.count`, `@odata.nextLink`): at each object the longest run of
/// segments that is a key there is taken.
pub(crate) fn at<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    if path.is_empty() {
        return Some(value);
    }
    let segments: Vec<&str> = path.split('.').collect();
    walk(value, &segments)
}

fn walk<'a>(value: &'a Value, segments: &[&str]) -> Option<&'a Value> {
    let Some(first) = segments.first() else { return Some(value) };
    match value {
        Value::Object(map) => (1..=segments.len()).rev().find_map(|n| {
            let key = if n == 1 { (*first).to_owned() } else { segments[..n].join(".") };
            map.get(&key).and_then(|inner| walk(inner, &segments[n..]))
        }),
        Value::Array(items) => {
            first.parse::<usize>().ok().and_then(|i| items.get(i)).and_then(|v| walk(v, &segments[1..]))
        }
        _ => None,
    }
}

/// One upstream record read through a dataset's mapping.
pub(crate) struct Record<'a> {
    pub json: &'a Value,
    pub dataset: &'a DatasetConfig,
    pub schema: &'static Schema,
}

impl Record<'_> {
    fn raw(&self, field: &str) -> Option<&Value> {
        let path = self.dataset.fields.get(field)?;
        at(self.json, path).filter(|v| !v.is_null())
    }

    fn malformed(&self, field: &str, what: &str) -> AdapterError {
        let upstream = self.dataset.fields.get(field).map(String::as_str).unwrap_or("?");
        tracing::warn!(
            upstream = "warehouse",
            dataset = self.schema.name,
            field,
            upstream_field = upstream,
            what,
            "malformed record"
        );
        AdapterError::new(
            ErrorKind::Unavailable,
            format!(
                "the warehouse sent a {} record whose {field} (upstream field {upstream:?}) {what}",
                self.schema.name
            ),
        )
        .with_temporary(false)
        .with_field(field)
    }

    /// A text field: strings as they are, numbers written out, else empty.
    pub fn text(&self, field: &str) -> String {
        match self.raw(field) {
            Some(Value::String(s)) => s.trim().to_owned(),
            Some(Value::Number(n)) => n.to_string(),
            _ => String::new(),
        }
    }

    /// A required, non-empty text field.
    pub fn id(&self, field: &str) -> Result<String, AdapterError> {
        let v = self.text(field);
        if v.is_empty() { Err(self.malformed(field, "is missing or empty")) } else { Ok(v) }
    }

    /// A number, from a JSON number or a numeric string.
    pub fn number(&self, field: &str) -> Result<Option<f64>, AdapterError> {
        match self.raw(field) {
            None => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| self.malformed(field, "is not a number")),
            Some(_) => Err(self.malformed(field, "is not a number")),
        }
    }

    /// A flag: true/false, 1/0, "true"/"false", "có"/"không".
    pub fn flag(&self, field: &str) -> bool {
        match self.raw(field) {
            Some(Value::Bool(b)) => *b,
            Some(Value::Number(n)) => n.as_f64().is_some_and(|x| x != 0.0),
            Some(Value::String(s)) => matches!(s.trim().to_lowercase().as_str(), "true" | "1" | "có" | "co" | "yes"),
            _ => false,
        }
    }

    /// A list of strings: a JSON array, or one string split on `;`.
    pub fn list(&self, field: &str) -> Vec<String> {
        match self.raw(field) {
            Some(Value::Array(items)) => items.iter().filter_map(|i| i.as_str()).map(|s| s.trim().to_owned()).collect(),
            Some(Value::String(s)) => {
                s.split(';').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
            }
            _ => Vec::new(),
        }
    }

    /// An enum field: the upstream value through `values`, or our own value
    /// name; unknown values become unspecified (and are logged).
    pub fn enumeration(&self, field: &str) -> i32 {
        let raw = self.text(field);
        if raw.is_empty() {
            return 0;
        }
        let name = self.dataset.values.get(field).and_then(|m| m.get(&raw)).map(String::as_str).unwrap_or(&raw);
        let parse = self.schema.enums.iter().find(|(f, _)| *f == field).map(|(_, p)| *p);
        match parse.and_then(|p| p(name)) {
            Some(v) => v,
            None => {
                tracing::debug!(upstream = "warehouse", dataset = self.schema.name, field, "unmapped enum value");
                0
            }
        }
    }

    /// A point from `latitude` and `longitude`, checked.
    pub fn location(&self) -> Result<Option<api::GeoPoint>, AdapterError> {
        match (self.number("latitude")?, self.number("longitude")?) {
            (Some(latitude), Some(longitude)) => {
                if !(-90.0..=90.0).contains(&latitude) || !(-180.0..=180.0).contains(&longitude) {
                    return Err(self.malformed("latitude", "is outside the globe"));
                }
                Ok(Some(api::GeoPoint { latitude, longitude }))
            }
            _ => Ok(None),
        }
    }

    /// The address from `street` and `ward_code`.
    pub fn address(&self, province: &str) -> api::Address {
        let ward_code = self.text("ward_code");
        let unit = admin::ward(&ward_code);
        api::Address {
            street: self.text("street"),
            ward_name: unit.map(|w| w.full_name.to_owned()).unwrap_or_default(),
            province_code: unit.map(|w| w.province_code.to_owned()).unwrap_or_else(|| province.to_owned()),
            ward_code,
        }
    }

    /// A time: RFC 3339 (`2025-11-19T16:00:16Z`) is not parsed here; epoch
    /// seconds (number or string) are.
    pub fn epoch(&self, field: &str) -> Result<Option<prost_types::Timestamp>, AdapterError> {
        Ok(self.number(field)?.map(|s| prost_types::Timestamp { seconds: s as i64, nanos: 0 }))
    }
}

/// Builds an API record of the dataset from an upstream record.
pub(crate) fn facility(r: &Record<'_>, province: &str) -> Result<api::Facility, AdapterError> {
    Ok(api::Facility {
        facility_code: r.id("facility_code")?,
        name: r.id("name")?,
        r#type: r.enumeration("type"),
        ownership: r.enumeration("ownership"),
        address: Some(r.address(province)),
        location: r.location()?,
        phone: r.text("phone"),
        accepts_health_insurance: r.flag("accepts_health_insurance"),
        emergency_24h: r.flag("emergency_24h"),
        specialties: r.list("specialties"),
        distance_meters: None,
    })
}

/// See [`facility`].
pub(crate) fn school(r: &Record<'_>, province: &str) -> Result<api::School, AdapterError> {
    Ok(api::School {
        school_id: r.id("school_id")?,
        name: r.id("name")?,
        level: r.enumeration("level"),
        ownership: r.enumeration("ownership"),
        address: Some(r.address(province)),
        location: r.location()?,
        phone: r.text("phone"),
        website: r.text("website"),
        distance_meters: None,
    })
}

/// See [`facility`].
pub(crate) fn housing_project(r: &Record<'_>, province: &str) -> Result<api::HousingProject, AdapterError> {
    let completion = r.text("completion_date");
    let completion_date = if completion.is_empty() {
        None
    } else {
        let mut parts = completion.splitn(3, '-').map(|p| p.parse::<i32>().ok());
        match (parts.next().flatten(), parts.next().flatten(), parts.next().flatten()) {
            (Some(year), Some(month), Some(day)) => Some(api::Date { year, month, day }),
            _ => return Err(r.malformed("completion_date", "is not YYYY-MM-DD")),
        }
    };
    Ok(api::HousingProject {
        project_id: r.id("project_id")?,
        name: r.id("name")?,
        investor: r.text("investor"),
        address: Some(r.address(province)),
        location: r.location()?,
        status: r.enumeration("status"),
        total_units: r.number("total_units")?.unwrap_or(0.0) as i32,
        site_area_sqm: r.number("site_area_sqm")?.unwrap_or(0.0),
        approval_decision: r.text("approval_decision"),
        completion_date,
    })
}

/// See [`facility`].
pub(crate) fn traffic_camera(r: &Record<'_>, _province: &str) -> Result<api::TrafficCamera, AdapterError> {
    Ok(api::TrafficCamera {
        camera_id: r.id("camera_id")?,
        code: r.text("code"),
        name: r.id("name")?,
        location: r.location()?,
        streets: r.list("streets"),
        snapshot_url: r.text("snapshot_url"),
        updated_time: r.epoch("updated_time")?,
        status: r.enumeration("status"),
        ptz: r.flag("ptz"),
        distance_meters: None,
    })
}

/// Whether a record built from the warehouse matches one of the request's
/// filters (ours: the value as our API names it; `text` as the caller gave
/// it): every record is checked here, whatever the warehouse did with the
/// filter, so a mapping that does not filter shows as records dropped
/// rather than wrong answers.
pub(crate) type Matches<T> = fn(&T, &str, &str) -> bool;

fn ward_is(address: &Option<api::Address>, ward: &str) -> bool {
    address.as_ref().is_some_and(|a| a.ward_code == ward)
}

/// `text` (folded) in any of `fields` (folded): case and diacritics ignored.
pub(crate) fn text_in(fields: &[&str], text: &str) -> bool {
    let needle = lienthong_adapter_core::text::fold(text);
    fields.iter().any(|f| lienthong_adapter_core::text::contains_folded(f, &needle))
}

fn address_texts(a: &Option<api::Address>) -> [&str; 2] {
    a.as_ref().map(|a| [a.street.as_str(), a.ward_name.as_str()]).unwrap_or(["", ""])
}

fn enum_is(number: i32, name: Option<&str>, prefix: &str, ours: &str) -> bool {
    name.and_then(|n| n.strip_prefix(prefix)).is_some_and(|n| n == ours) && number != 0
}

/// See [`Matches`].
pub(crate) fn facility_matches(f: &api::Facility, filter: &str, value: &str) -> bool {
    match filter {
        "ward_code" => ward_is(&f.address, value),
        "type" => enum_is(
            f.r#type,
            api::FacilityType::try_from(f.r#type).ok().map(|t| t.as_str_name()),
            "FACILITY_TYPE_",
            value,
        ),
        "text" => {
            let [street, ward] = address_texts(&f.address);
            text_in(&[&f.name, street, ward], value)
        }
        _ => true,
    }
}

/// See [`Matches`].
pub(crate) fn school_matches(s: &api::School, filter: &str, value: &str) -> bool {
    match filter {
        "ward_code" => ward_is(&s.address, value),
        "level" => {
            enum_is(s.level, api::SchoolLevel::try_from(s.level).ok().map(|l| l.as_str_name()), "SCHOOL_LEVEL_", value)
        }
        "ownership" => enum_is(
            s.ownership,
            api::Ownership::try_from(s.ownership).ok().map(|o| o.as_str_name()),
            "OWNERSHIP_",
            value,
        ),
        "text" => {
            let [street, ward] = address_texts(&s.address);
            text_in(&[&s.name, street, ward], value)
        }
        _ => true,
    }
}

/// See [`Matches`].
pub(crate) fn housing_matches(p: &api::HousingProject, filter: &str, value: &str) -> bool {
    match filter {
        "ward_code" => ward_is(&p.address, value),
        "status" => enum_is(
            p.status,
            api::HousingProjectStatus::try_from(p.status).ok().map(|s| s.as_str_name()),
            "HOUSING_PROJECT_STATUS_",
            value,
        ),
        "investor" => text_in(&[&p.investor], value),
        "text" => {
            let [street, ward] = address_texts(&p.address);
            text_in(&[&p.name, street, ward], value)
        }
        _ => true,
    }
}

/// See [`Matches`].
pub(crate) fn camera_matches(c: &api::TrafficCamera, filter: &str, value: &str) -> bool {
    match filter {
        "text" => {
            let streets: Vec<&str> = c.streets.iter().map(String::as_str).collect();
            text_in(&[&[c.name.as_str(), c.code.as_str()][..], &streets[..]].concat(), value)
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_reach_keys_that_hold_dots() {
        let v = serde_json::json!({"@odata.count": 60, "value": [{"a": {"b.c": 1}}], "a": {"b": 2}, "a.b": 3});
        assert_eq!(at(&v, "@odata.count"), Some(&serde_json::json!(60)));
        assert_eq!(at(&v, "value.0.a.b.c"), Some(&serde_json::json!(1)));
        // The longest key wins; a shorter one is tried when it leads nowhere.
        assert_eq!(at(&v, "a.b"), Some(&serde_json::json!(3)));
        assert_eq!(at(&v, "value.0.a.x"), None);
        assert_eq!(at(&v, "value.1"), None);
        assert_eq!(at(&v, ""), Some(&v));
    }
}
