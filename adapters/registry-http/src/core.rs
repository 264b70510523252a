//! The portal's HTTP API and its JSON, mapped to API records.
//!
//! The portal schema (all answers JSON):
//!
//! | request | answer |
//! |---|---|
//! | `GET /agencies?offset&limit&level&ward_code&q` | `{"items": [agency], "total": n}` |
//! | `GET /agencies/{code}` | `agency` |
//! | `GET /procedures?offset&limit&q&field&agency&level&online_level` | `{"items": [procedure], "total": n}` |
//! | `GET /procedures/{code}` (local or national code) | `procedure` |
//! | `GET /dossiers/{code}` | `dossier` |
//! | `GET /me/dossiers?offset&limit&status` with the citizen's bearer token | `{"items": [dossier], "total": n}` |
//!
//! Enum values are our names without their prefix (`PROVINCE`, `FULL`);
//! dossier statuses are the national numbers 1-10; times are epoch seconds.

use lienthong_adapter_core::{AdapterError, CitizenId, ErrorKind, OwnedDossier, admin, api};
use lienthong_adapter_http::Upstream;

use crate::error::parse_error;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::config::RegistryConfig;

const UPSTREAM: &str = "registry";

#[derive(Debug, Deserialize)]
pub(crate) struct Page<T> {
    pub items: Vec<T>,
    #[serde(default)]
    pub total: i64,
}

#[derive(Debug, Deserialize)]
pub(crate) struct PortalAgency {
    agency_code: String,
    name: String,
    level: String,
    #[serde(default)]
    street: String,
    #[serde(default)]
    ward_code: String,
    #[serde(default)]
    lat: Option<f64>,
    #[serde(default)]
    lng: Option<f64>,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    website: String,
}

#[derive(Debug, Deserialize)]
struct PortalFee {
    description: String,
    amount_vnd: i64,
}

#[derive(Debug, Deserialize)]
struct PortalDocument {
    name: String,
    #[serde(default)]
    copies: i32,
}

#[derive(Debug, Deserialize)]
pub(crate) struct PortalProcedure {
    procedure_code: String,
    national_code: String,
    name: String,
    #[serde(default)]
    field: String,
    level: String,
    #[serde(default)]
    agencies: Vec<String>,
    #[serde(default)]
    processing_time: String,
    #[serde(default)]
    processing_days: i32,
    #[serde(default)]
    fees: Vec<PortalFee>,
    #[serde(default)]
    documents: Vec<PortalDocument>,
    online_level: String,
    #[serde(default)]
    decision_number: String,
    #[serde(default)]
    legal_bases: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct PortalChange {
    status: i32,
    at: i64,
    #[serde(default)]
    note: String,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct PortalDossier {
    pub code: String,
    procedure_code: String,
    #[serde(default)]
    procedure_name: String,
    agency_code: String,
    #[serde(default)]
    agency_name: String,
    #[serde(default)]
    applicant_name: String,
    applicant_id_number: String,
    pub status: i32,
    #[serde(default)]
    received_at: Option<i64>,
    #[serde(default)]
    due_at: Option<i64>,
    #[serde(default)]
    history: Vec<PortalChange>,
}

fn malformed(what: &str, why: &str) -> AdapterError {
    tracing::warn!(upstream = UPSTREAM, what, why, "malformed record");
    AdapterError::new(ErrorKind::Unavailable, format!("the public-service portal sent a {what} record whose {why}"))
        .with_temporary(false)
}

fn level(name: &str) -> i32 {
    api::AdministrativeLevel::from_str_name(&format!("ADMINISTRATIVE_LEVEL_{name}")).map(Into::into).unwrap_or(0)
}

fn ts(seconds: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds, nanos: 0 }
}

impl PortalAgency {
    pub(crate) fn into_api(self) -> api::Agency {
        let unit = admin::ward(&self.ward_code);
        api::Agency {
            level: level(&self.level),
            address: Some(api::Address {
                street: self.street,
                ward_name: unit.map(|w| w.full_name.to_owned()).unwrap_or_default(),
                province_code: unit.map(|w| w.province_code.to_owned()).unwrap_or_default(),
                ward_code: self.ward_code,
            }),
            location: self.lat.zip(self.lng).map(|(latitude, longitude)| api::GeoPoint { latitude, longitude }),
            agency_code: self.agency_code,
            name: self.name,
            phone: self.phone,
            email: self.email,
            website: self.website,
        }
    }
}

impl PortalProcedure {
    pub(crate) fn into_api(self) -> api::Procedure {
        api::Procedure {
            level: level(&self.level),
            online_level: api::OnlineLevel::from_str_name(&format!("ONLINE_LEVEL_{}", self.online_level))
                .map(Into::into)
                .unwrap_or(0),
            procedure_code: self.procedure_code,
            national_code: self.national_code,
            name: self.name,
            field: self.field,
            agency_codes: self.agencies,
            processing_time: self.processing_time,
            processing_days: self.processing_days,
            fees: self
                .fees
                .into_iter()
                .map(|f| api::Fee { description: f.description, amount_vnd: f.amount_vnd })
                .collect(),
            required_documents: self
                .documents
                .into_iter()
                .map(|d| api::RequiredDocument { name: d.name, copies: d.copies })
                .collect(),
            decision_number: self.decision_number,
            legal_bases: self.legal_bases,
        }
    }
}

impl PortalDossier {
    pub(crate) fn into_api(self) -> Result<OwnedDossier, AdapterError> {
        let owner =
            CitizenId::parse(&self.applicant_id_number).map_err(|_| malformed("dossier", "applicant is malformed"))?;
        let status =
            api::DossierStatus::try_from(self.status).map_err(|_| malformed("dossier", "status is not 1-10"))?;
        let mut history = Vec::with_capacity(self.history.len());
        for c in self.history {
            api::DossierStatus::try_from(c.status)
                .map_err(|_| malformed("dossier", "history has a status not 1-10"))?;
            history.push(api::DossierStatusChange { status: c.status, change_time: Some(ts(c.at)), note: c.note });
        }
        Ok(OwnedDossier {
            dossier: api::Dossier {
                dossier_code: self.code,
                procedure_code: self.procedure_code,
                procedure_name: self.procedure_name,
                status: status as i32,
                received_time: self.received_at.map(ts),
                due_time: self.due_at.map(ts),
                handling_agency_code: self.agency_code,
                handling_agency_name: self.agency_name,
                history,
                view: api::DossierView::Owner as i32,
                applicant: Some(api::Applicant { full_name: self.applicant_name, masked_id_number: owner.masked() }),
                r#final: lienthong_adapter_core::is_final_status(status),
            },
            owner,
        })
    }
}

/// The portal client.
#[derive(Debug)]
pub(crate) struct Portal {
    config: RegistryConfig,
    upstream: Upstream,
}

impl Portal {
    pub(crate) fn new(config: RegistryConfig) -> Result<Self, AdapterError> {
        let upstream =
            Upstream::new(UPSTREAM, "the public-service portal", config.timeout, config.tls_ca_file.as_deref())?;
        Ok(Self { config, upstream })
    }

    pub(crate) fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// GETs `path` with `query` within the deadline and parses the JSON.
    pub(crate) async fn get<T: DeserializeOwned>(
        &self,
        what: &str,
        path: &str,
        query: &[(&str, String)],
        citizen_token: Option<&str>,
        deadline: Option<Instant>,
    ) -> Result<T, AdapterError> {
        let timeout = self.upstream.timeout_for(deadline)?;
        let url = format!("{}{path}", self.config.base_url.trim_end_matches('/'));
        let query: Vec<(&str, &str)> =
            query.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (*k, v.as_str())).collect();
        let mut req = self
            .upstream
            .client()
            .get(url)
            .query(&query)
            .timeout(timeout)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(key) = &self.config.api_key {
            req = req.header("x-api-key", key);
        }
        if let Some(token) = citizen_token {
            req = req.bearer_auth(token);
        }
        let resp = self.upstream.send(what, req, |s, r| parse_error(&self.upstream, what, s, r)).await?;
        self.upstream.json(what, resp).await
    }

    /// One dossier, fresh from the portal.
    pub(crate) async fn dossier(&self, code: &str, deadline: Option<Instant>) -> Result<OwnedDossier, AdapterError> {
        let d: PortalDossier =
            self.get("dossier", &format!("/dossiers/{}", Upstream::segment(code)), &[], None, deadline).await?;
        d.into_api()
    }
}
