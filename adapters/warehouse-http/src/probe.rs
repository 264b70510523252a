//! `lienthong check-config --probe`: each configured dataset called once or
//! a few times, reporting what in its mapping finds nothing or does not
//! filter, so a province sees a wrong mapping before its citizens do.

use lienthong_adapter_core::{AdapterError, ErrorKind, api, text};
use lienthong_adapter_http::enum_value_name;
use serde_json::Value;

use crate::config::{DatasetConfig, Platform};
use crate::core::PageAsk;
use crate::records::{self, Record, Schema, at, schema};
use crate::{WarehouseAdapter, platform};

/// How many records the probe reads per call.
const SAMPLE: usize = 50;

/// What the probe needs of one built record.
struct Seen {
    id: String,
    name: String,
    location: Option<api::GeoPoint>,
    /// Exact filters and the value the record carries (ours).
    values: Vec<(&'static str, String)>,
}

fn ward(address: &Option<api::Address>) -> String {
    address.as_ref().map(|a| a.ward_code.clone()).unwrap_or_default()
}

fn seen(dataset: &str, r: &Record<'_>) -> Result<Seen, AdapterError> {
    Ok(match dataset {
        "facilities" => {
            let f = records::facility(r, "")?;
            let kind = enum_value_name(f.r#type, api::FacilityType::as_str_name, "FACILITY_TYPE_");
            Seen {
                values: vec![("ward_code", ward(&f.address)), ("type", kind)],
                id: f.facility_code,
                name: f.name,
                location: f.location,
            }
        }
        "schools" => {
            let s = records::school(r, "")?;
            let level = enum_value_name(s.level, api::SchoolLevel::as_str_name, "SCHOOL_LEVEL_");
            let ownership = enum_value_name(s.ownership, api::Ownership::as_str_name, "OWNERSHIP_");
            Seen {
                values: vec![("ward_code", ward(&s.address)), ("level", level), ("ownership", ownership)],
                id: s.school_id,
                name: s.name,
                location: s.location,
            }
        }
        "housing_projects" => {
            let p = records::housing_project(r, "")?;
            let status = enum_value_name(p.status, api::HousingProjectStatus::as_str_name, "HOUSING_PROJECT_STATUS_");
            Seen {
                values: vec![("ward_code", ward(&p.address)), ("status", status)],
                id: p.project_id,
                name: p.name,
                location: p.location,
            }
        }
        _ => {
            let c = records::traffic_camera(r, "")?;
            Seen { values: Vec::new(), id: c.camera_id, name: c.name, location: c.location }
        }
    })
}

/// Whether `p` lies in or near Việt Nam (degrees, the right way round).
fn in_vietnam(p: &api::GeoPoint) -> bool {
    (7.0..=24.0).contains(&p.latitude) && (101.0..=118.0).contains(&p.longitude)
}

impl WarehouseAdapter {
    /// Every finding of the probe, each `datasets.<name>: what is wrong`;
    /// empty when every dataset answers as its mapping says.
    pub async fn probe(&self) -> Vec<String> {
        let mut findings = Vec::new();
        for (name, ds) in &self.warehouse.config().datasets {
            let Some(schema) = schema(name) else { continue };
            for finding in self.probe_dataset(name, ds, schema).await {
                findings.push(format!("datasets.{name}: {finding}"));
            }
        }
        findings
    }

    /// The raw records of one upstream page for `filters` (ours → upstream value).
    async fn sample(
        &self,
        name: &str,
        ds: &DatasetConfig,
        filters: &[(&str, String)],
    ) -> Result<(Vec<Value>, i32), AdapterError> {
        let asked = platform::list_query(self.warehouse.config().platform, name, ds, filters, None)?;
        let ask = PageAsk { query: asked.query, page_size: SAMPLE, page_token: "", fingerprint: 0 };
        let page = self.warehouse.list(name, ds, ask, None, |json| Some(json.clone())).await?;
        Ok((page.items, page.total))
    }

    async fn probe_dataset(&self, name: &str, ds: &DatasetConfig, schema: &'static Schema) -> Vec<String> {
        let mut findings = Vec::new();
        let (raw, total) = match self.sample(name, ds, &[]).await {
            Ok(sample) => sample,
            Err(e) => return vec![format!("the list fails: {e}")],
        };
        if raw.is_empty() {
            return vec![format!("the list finds no records at items = {:?}: check path and items", ds.items)];
        }
        if let Some(path) = &ds.total
            && total == 0
        {
            findings.push(format!("total = {path:?} finds no count in the answer"));
        }
        let mut complete = Vec::new();
        let mut failures = Vec::new();
        for json in &raw {
            match seen(name, &Record { json, dataset: ds, schema }) {
                Ok(s) => complete.push(s),
                Err(e) => failures.push(e.message().to_owned()),
            }
        }
        if let Some(first) = failures.first() {
            let hint = if first.contains("latitude") || first.contains("longitude") {
                " (coordinates not in degrees? ArcGIS: outSR = 4326)"
            } else {
                ""
            };
            findings.push(format!(
                "{} of {} records fail validation, for example: {first}{hint}",
                failures.len(),
                raw.len()
            ));
        }
        let located = complete.iter().filter(|s| s.location.is_some()).count();
        if schema.filters.contains(&"near.latitude") && located == 0 && !complete.is_empty() {
            findings.push("no record has coordinates: check the latitude and longitude fields".to_owned());
        }
        if let Some(off) = complete.iter().filter_map(|s| s.location).find(|p| !in_vietnam(p)) {
            findings.push(format!(
                "coordinates ({:.4}, {:.4}) lie outside Việt Nam: swapped, or not in degrees (ArcGIS: outSR = 4326)?",
                off.latitude, off.longitude
            ));
        }
        // The other checks read the records without their coordinates, so
        // that bad coordinates hide nothing else.
        let mut bare = ds.clone();
        bare.fields.remove("latitude");
        bare.fields.remove("longitude");
        let ds_bare = &bare;
        let built: Vec<Seen> =
            raw.iter().filter_map(|json| seen(name, &Record { json, dataset: ds_bare, schema }).ok()).collect();
        let Some(first) = built.first() else { return findings };
        // The get of a listed record.
        let id_field = schema.required.first().copied().unwrap_or("id");
        if let Some((path, query)) = platform::get_request(self.warehouse.config().platform, ds, id_field, &first.id) {
            match self.warehouse.get_json(name, &path, &query, None).await {
                Ok(body) if at(&body, &ds.record).is_none_or(Value::is_null) => findings.push(format!(
                    "the get of {:?}, a listed record, finds nothing at record = {:?}",
                    first.id, ds.record
                )),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    findings.push(format!("the get of {:?}, a listed record, is not found: check get_path", first.id));
                }
                Err(e) => findings.push(format!("the get fails: {e}")),
            }
        }
        // Each exact filter, with a value some records carry and some do not.
        let platform = self.warehouse.config().platform;
        for filter in ["ward_code", "type", "level", "ownership", "status"] {
            let mapped = match platform {
                Platform::Rest => ds.filters.contains_key(filter),
                _ => ds.upstream_field(platform, filter).is_some(),
            };
            if !mapped {
                continue;
            }
            let values: Vec<&str> = built
                .iter()
                .filter_map(|s| s.values.iter().find(|(f, _)| *f == filter))
                .map(|(_, v)| v.as_str())
                .collect();
            let Some(value) = values.iter().find(|v| !v.is_empty() && values.iter().any(|o| o != *v)) else { continue };
            let upstream = ds.upstream_value(filter, value);
            match self.sample(name, ds, &[(filter, upstream.clone())]).await {
                Ok((got, _)) => {
                    let others = got
                        .iter()
                        .filter_map(|json| seen(name, &Record { json, dataset: ds_bare, schema }).ok())
                        .filter(|s| s.values.iter().any(|(f, v)| *f == filter && v != value))
                        .count();
                    if got.is_empty() {
                        findings.push(format!(
                            "filter {filter} = {upstream:?} finds nothing, though a listed record has it"
                        ));
                    } else if others > 0 {
                        findings.push(format!(
                            "filter {filter} = {upstream:?} is not applied by the warehouse: {others} of {} records have another \
                             value (they are dropped here, and counted)",
                            got.len()
                        ));
                    }
                }
                Err(e) => findings.push(format!("filter {filter}: {e}")),
            }
        }
        // Text search without diacritics, where the warehouse searches text.
        if platform == Platform::Rest && ds.filters.contains_key("text") {
            let word = built
                .iter()
                .flat_map(|s| s.name.split_whitespace().map(|w| (w.to_owned(), s.id.clone())))
                .find(|(w, _)| w.chars().count() >= 3 && text::fold(w) != w.to_lowercase());
            if let Some((word, id)) = word {
                let folded = text::fold(&word);
                match self.sample(name, ds, &[("text", folded.clone())]).await {
                    Ok((got, _)) => {
                        let found = got
                            .iter()
                            .filter_map(|json| seen(name, &Record { json, dataset: ds_bare, schema }).ok())
                            .any(|s| s.id == id);
                        if !found {
                            findings.push(format!(
                                "text search does not ignore diacritics: {folded:?} does not find {id:?}, whose name has {word:?}"
                            ));
                        }
                    }
                    Err(e) => findings.push(format!("text search fails: {e}")),
                }
            }
        }
        findings
    }
}
