//! The sandbox's data files as serde records: the format of `data/*.json`,
//! written by `tools/build_sandbox_data.py`.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FacilityRecord {
    pub facility_code: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub ownership: String,
    pub street: String,
    pub ward_code: String,
    pub lat: f64,
    pub lng: f64,
    pub phone: String,
    pub insurance: bool,
    pub emergency: bool,
    pub specialties: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SchoolRecord {
    pub school_id: String,
    pub name: String,
    pub level: String,
    pub ownership: String,
    pub street: String,
    pub ward_code: String,
    pub lat: f64,
    pub lng: f64,
    pub phone: String,
    pub website: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StopRecord {
    pub stop_id: String,
    pub code: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub lat: f64,
    pub lng: f64,
    pub street: String,
    pub ward_code: String,
    pub wheelchair: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DirectionRecord {
    pub outbound: bool,
    pub name: String,
    pub headsign: String,
    pub distance_m: f64,
    pub running_minutes: u32,
    pub stop_ids: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RouteRecord {
    pub route_number: String,
    pub name: String,
    pub directions: Vec<DirectionRecord>,
    pub first_departure: String,
    pub last_departure: String,
    pub headway_minutes: u32,
    pub fare_vnd: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CameraRecord {
    pub camera_id: String,
    pub code: String,
    pub name: String,
    pub lat: f64,
    pub lng: f64,
    pub streets: Vec<String>,
    pub portal_id: String,
    pub ptz: bool,
    pub ward_code: String,
    pub online: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HousingRecord {
    pub project_id: String,
    pub name: String,
    pub investor: String,
    pub street: String,
    pub ward_code: String,
    pub lat: f64,
    pub lng: f64,
    pub status: String,
    pub total_units: i32,
    pub site_area_sqm: f64,
    pub approval_decision: String,
    pub completion_date: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CertificateRecord {
    pub certificate_number: String,
    pub holder_name: String,
    pub issuing_authority: String,
    pub issued_date: String,
    pub expiry_date: String,
    pub revoked: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AgencyRecord {
    pub agency_code: String,
    pub name: String,
    pub level: String,
    pub street: String,
    pub ward_code: String,
    pub lat: Option<f64>,
    pub lng: Option<f64>,
    pub phone: String,
    pub email: String,
    pub website: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FeeRecord {
    pub description: String,
    pub amount_vnd: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DocumentRecord {
    pub name: String,
    pub copies: i32,
}

/// Either an explicit list of agency codes or `"EVERY_COMMUNE"`: handled by
/// the people's committee of every ward.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum AgencyList {
    Codes(Vec<String>),
    Keyword(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProcedureRecord {
    pub national_code: String,
    pub procedure_code: String,
    pub name: String,
    pub field: String,
    pub level: String,
    pub agencies: AgencyList,
    pub processing_time: String,
    pub processing_days: i32,
    pub fees: Vec<FeeRecord>,
    pub documents: Vec<DocumentRecord>,
    pub online_level: String,
    pub decision_number: String,
    pub legal_bases: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CitizenRecord {
    pub handle: String,
    pub id_number: String,
    pub full_name: String,
    pub birth_date: String,
    pub sex: String,
    pub identity_level: u8,
    pub residence_ward_code: String,
    pub street: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DossierRecord {
    pub seq: u32,
    pub code: String,
    pub owner: String,
    pub procedure: String,
    pub procedure_code: String,
    pub agency: String,
    pub submitted: String,
    /// The national statuses the dossier passes through, in order.
    pub timeline: Vec<i32>,
    /// How many of them had happened when the sandbox started.
    pub done: usize,
}
