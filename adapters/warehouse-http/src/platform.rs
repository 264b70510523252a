//! What a dataset asks of its platform: the query of a list, with the
//! request's filters in the platform's own language (CKAN's JSON `filters`,
//! ArcGIS's SQL `where` and `geometry`, OData's `$filter`), each value quoted
//! and escaped so that it can never leave its quotes; and the request of a
//! get (a path with the id, or a search for it).

use lienthong_adapter_core::{AdapterError, api};
use lienthong_adapter_http::Upstream;

use crate::config::{DatasetConfig, Platform};

/// A list's upstream query, and what is left to check here.
#[derive(Debug, Default)]
pub(crate) struct Asked {
    /// The query parameters.
    pub query: Vec<(String, String)>,
    /// Text searched here (folded), where the platform does not search it
    /// (or not ignoring case and diacritics).
    pub local_text: Option<String>,
}

/// A filter the platform cannot express.
fn cannot(dataset: &str, filter: &str) -> AdapterError {
    AdapterError::invalid_field(
        filter.split('.').next().unwrap_or(filter),
        format!("this province's data warehouse cannot filter {dataset} by {filter}"),
    )
}

/// `value` as an SQL or OData string literal: in single quotes, a quote
/// inside doubled.
pub(crate) fn quoted(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// The list query of `ds` on `platform` for `filters` (our filter → the value
/// as the upstream writes it; `text` as the caller gave it) and `near`.
pub(crate) fn list_query(
    platform: Platform,
    dataset: &str,
    ds: &DatasetConfig,
    filters: &[(&str, String)],
    near: Option<&api::NearFilter>,
) -> Result<Asked, AdapterError> {
    let mut asked = Asked { query: ds.params.iter().map(|(k, v)| (k.clone(), v.clone())).collect(), local_text: None };
    // A `rest` dataset may borrow a platform's query language.
    let language = if platform == Platform::Rest { ds.filter_language.unwrap_or(platform) } else { platform };
    let field = |ours: &str| ds.upstream_field(language, ours).ok_or_else(|| cannot(dataset, ours));
    match language {
        Platform::Rest => {
            let mut wanted: Vec<(&str, String)> = filters.to_vec();
            if let Some(near) = near {
                let c = near.center.unwrap_or_default();
                // Near parameters narrow the candidates where the warehouse
                // has them; the circle and the order are ours either way.
                if ds.filters.contains_key("near.latitude") {
                    wanted.push(("near.latitude", c.latitude.to_string()));
                    wanted.push(("near.longitude", c.longitude.to_string()));
                    wanted.push(("near.radius_meters", near.radius_meters.to_string()));
                }
            }
            for (filter, value) in wanted {
                let param = ds.filters.get(filter).ok_or_else(|| cannot(dataset, filter))?;
                asked.query.push((param.clone(), value));
            }
        }
        Platform::Ckan => {
            let mut object = serde_json::Map::new();
            for (ours, value) in filters {
                if *ours == "text" {
                    asked.local_text = Some(value.clone());
                    continue;
                }
                object.insert(field(ours)?, serde_json::Value::String(value.clone()));
            }
            if !object.is_empty() {
                asked.query.push(("filters".into(), serde_json::Value::Object(object).to_string()));
            }
        }
        Platform::Arcgis => {
            let mut clauses = Vec::new();
            for (ours, value) in filters {
                if *ours == "text" {
                    asked.local_text = Some(value.clone());
                    continue;
                }
                clauses.push(format!("{} = {}", field(ours)?, quoted(value)));
            }
            let clause = if clauses.is_empty() { "1=1".to_owned() } else { clauses.join(" AND ") };
            asked.query.push(("where".into(), clause));
            if let Some(near) = near {
                let c = near.center.unwrap_or_default();
                for (k, v) in [
                    ("geometry", format!("{},{}", c.longitude, c.latitude)),
                    ("geometryType", "esriGeometryPoint".to_owned()),
                    ("inSR", "4326".to_owned()),
                    ("spatialRel", "esriSpatialRelIntersects".to_owned()),
                    ("distance", near.radius_meters.to_string()),
                    ("units", "esriSRUnit_Meter".to_owned()),
                ] {
                    asked.query.push((k.into(), v));
                }
            }
        }
        Platform::Odata => {
            let mut clauses = Vec::new();
            for (ours, value) in filters {
                if *ours == "text" {
                    asked.local_text = Some(value.clone());
                    continue;
                }
                clauses.push(format!("{} eq {}", field(ours)?, quoted(value)));
            }
            if !clauses.is_empty() {
                asked.query.push(("$filter".into(), clauses.join(" and ")));
            }
        }
    }
    Ok(asked)
}

/// The path and query that get record `id` (whose field is `id_field`).
pub(crate) fn get_request(
    platform: Platform,
    ds: &DatasetConfig,
    id_field: &str,
    id: &str,
) -> Option<(String, Vec<(String, String)>)> {
    let mut query: Vec<(String, String)> = ds.params.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    match platform {
        Platform::Rest => {
            let path = ds.get_path.as_deref()?.replace("{id}", &Upstream::segment(id));
            Some((path, query))
        }
        Platform::Ckan => {
            let mut filter = serde_json::Map::new();
            filter.insert(ds.upstream_field(platform, id_field)?, serde_json::Value::String(id.to_owned()));
            query.push(("filters".into(), serde_json::Value::Object(filter).to_string()));
            query.push(("limit".into(), "1".into()));
            Some((ds.path.clone(), query))
        }
        Platform::Arcgis => {
            query.push(("where".into(), format!("{} = {}", ds.upstream_field(platform, id_field)?, quoted(id))));
            Some((ds.path.clone(), query))
        }
        Platform::Odata => {
            // `Schools('79-THPT-0001')`: the key quoted, then percent-encoded.
            query.retain(|(k, _)| k != "$count");
            Some((format!("{}({})", ds.path, Upstream::segment(&quoted(id))), query))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_never_leaves_its_quotes() {
        assert_eq!(quoted("26743"), "'26743'");
        assert_eq!(quoted("x' OR '1'='1"), "'x'' OR ''1''=''1'");
        // Inside, every quote is doubled: the literal ends only at the last.
        let q = quoted("a'b''c");
        let inner = &q[1..q.len() - 1];
        assert!(!inner.replace("''", "").contains('\''));
    }
}
