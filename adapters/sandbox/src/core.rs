//! Loads and validates the sandbox dataset, and shapes it into API records.
//!
//! The data files are embedded in the binary so that a bare `lienthong` runs
//! anywhere; `data_dir` in config loads the same files from disk instead.
//! Every file is validated at start: unknown fields, NFC text, codes and
//! formats, ward codes of the 2025 units, coordinates inside the city,
//! duplicate ids, and references between files. Every problem is reported.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use lienthong_adapter_core::{CitizenId, admin, api, geo, text};
use serde::de::DeserializeOwned;

use crate::calendar;
use crate::records::*;

/// A record with its folded search text and sort key precomputed.
#[derive(Debug, Clone)]
pub(crate) struct Indexed<T> {
    pub item: T,
    /// Folded text that text filters search.
    pub search: String,
    pub location: Option<api::GeoPoint>,
}

/// A demo citizen.
#[derive(Debug, Clone)]
pub(crate) struct Citizen {
    pub handle: String,
    pub id: CitizenId,
    pub profile: api::CitizenProfile,
}

/// A dossier and the statuses it will pass through.
#[derive(Debug, Clone)]
pub(crate) struct DossierPlan {
    /// For a dossier the sandbox submits while it runs (a renewal of a
    /// dataset's dossier, so that there is always something to watch): when
    /// it arrives, after the sandbox's start. `None` for the dataset's own.
    pub arrival: Option<std::time::Duration>,
    pub seq: u32,
    pub base: api::Dossier,
    pub owner: CitizenId,
    pub timeline: Vec<api::DossierStatus>,
    pub done: usize,
    pub processing_days: u32,
}

/// Everything the sandbox serves.
#[derive(Debug)]
pub(crate) struct Dataset {
    pub facilities: Vec<Indexed<api::Facility>>,
    pub schools: Vec<Indexed<api::School>>,
    pub stops: Vec<Indexed<api::BusStop>>,
    pub stop_index: HashMap<String, usize>,
    pub routes: Vec<Indexed<api::BusRoute>>,
    pub cameras: Vec<Indexed<(api::TrafficCamera, String)>>,
    pub housing: Vec<Indexed<api::HousingProject>>,
    pub certificates: HashMap<String, CertificateRecord>,
    pub agencies: Vec<Indexed<api::Agency>>,
    pub procedures: Vec<Indexed<api::Procedure>>,
    pub citizens: Vec<Citizen>,
    pub dossiers: Vec<DossierPlan>,
}

macro_rules! embedded {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../data/", $name))),)*]
    };
}

static EMBEDDED: &[(&str, &str)] = embedded!(
    "health-facilities.json",
    "schools.json",
    "bus-stops.json",
    "bus-routes.json",
    "traffic-cameras.json",
    "housing-projects.json",
    "practicing-certificates.json",
    "agencies.json",
    "procedures.json",
    "citizens.json",
    "dossiers.json",
);

/// Collects every problem found while loading.
#[derive(Debug, Default)]
pub(crate) struct Problems(pub Vec<String>);

impl Problems {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.0.push(what());
        }
    }
}

struct Source<'a> {
    dir: Option<&'a Path>,
}

impl Source<'_> {
    fn read<T: DeserializeOwned>(&self, name: &str, problems: &mut Problems) -> Vec<T> {
        let text = match self.dir {
            Some(dir) => match std::fs::read_to_string(dir.join(name)) {
                Ok(t) => t,
                Err(e) => {
                    problems.0.push(format!("{}: {e}", dir.join(name).display()));
                    return Vec::new();
                }
            },
            None => EMBEDDED.iter().find(|(n, _)| *n == name).map(|(_, t)| (*t).to_owned()).unwrap_or_default(),
        };
        match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                problems.0.push(format!("{name}: {e}"));
                Vec::new()
            }
        }
    }
}

const HCMC: &str = "79";

fn address(street: &str, ward_code: &str) -> api::Address {
    api::Address {
        street: street.to_owned(),
        ward_code: ward_code.to_owned(),
        ward_name: admin::ward(ward_code).map(|w| w.full_name.to_owned()).unwrap_or_default(),
        province_code: HCMC.to_owned(),
    }
}

/// Checks text is NFC, a ward code belongs to the city, a point lies in it.
struct Checker<'p> {
    problems: &'p mut Problems,
    file: &'static str,
}

impl Checker<'_> {
    fn nfc(&mut self, id: &str, field: &str, value: &str) {
        let file = self.file;
        self.problems.check(text::is_nfc_text(value), || format!("{file}: {id}: {field} is not in NFC"));
    }

    fn ward(&mut self, id: &str, code: &str, required: bool) {
        let file = self.file;
        if code.is_empty() {
            self.problems.check(!required, || format!("{file}: {id}: ward_code is missing"));
            return;
        }
        let ok = admin::ward(code).is_some_and(|w| w.province_code == HCMC);
        self.problems.check(ok, || format!("{file}: {id}: ward_code {code} is not a ward of Ho Chi Minh City"));
    }

    fn point(&mut self, id: &str, lat: f64, lng: f64) -> api::GeoPoint {
        let file = self.file;
        // The city since 2025: from Củ Chi in the north to Côn Đảo in the south.
        let ok = (8.5..=11.3).contains(&lat) && (106.3..=107.6).contains(&lng);
        self.problems.check(ok, || format!("{file}: {id}: ({lat}, {lng}) is outside Ho Chi Minh City"));
        geo::point(lat, lng)
    }

    /// Bus stops may lie in neighbouring provinces: inter-provincial routes
    /// run to Tây Ninh, Đồng Nai and Long An.
    fn region_point(&mut self, id: &str, lat: f64, lng: f64) -> api::GeoPoint {
        let file = self.file;
        let ok = (10.0..=11.8).contains(&lat) && (105.8..=107.6).contains(&lng);
        self.problems.check(ok, || format!("{file}: {id}: ({lat}, {lng}) is outside the city and its neighbours"));
        geo::point(lat, lng)
    }

    fn unique(&mut self, seen: &mut HashSet<String>, id: &str) {
        let file = self.file;
        self.problems.check(seen.insert(id.to_owned()), || format!("{file}: duplicate id {id}"));
    }

    /// Parses a data file's enum name (`GENERAL_HOSPITAL`) as the API enum
    /// whose values are named `prefix` + name (`FACILITY_TYPE_GENERAL_HOSPITAL`).
    fn enum_value<E: Into<i32>>(
        &mut self,
        id: &str,
        field: &str,
        name: &str,
        prefix: &str,
        parse: fn(&str) -> Option<E>,
    ) -> i32 {
        let file = self.file;
        let value = parse(&format!("{prefix}{name}")).map(Into::into);
        self.problems.check(value.is_some(), || format!("{file}: {id}: unknown {field} {name:?}"));
        value.unwrap_or_default()
    }
}

fn indexed<T>(item: T, search: &[&str], location: Option<api::GeoPoint>) -> Indexed<T> {
    Indexed { item, search: text::fold(&search.join(" \u{1f} ")), location }
}

/// Sorts by folded name, then id, for a stable listing order.
fn sort_by_name<T>(items: &mut [Indexed<T>], name: impl Fn(&T) -> (&str, &str)) {
    items.sort_by_cached_key(|i| {
        let (n, id) = name(&i.item);
        (text::fold(n), id.to_owned())
    });
}

impl Dataset {
    /// Loads the embedded dataset, or the one in `dir`.
    pub(crate) fn load(dir: Option<&Path>) -> Result<Self, Problems> {
        let src = Source { dir };
        let mut problems = Problems::default();
        let facilities = load_facilities(src.read("health-facilities.json", &mut problems), &mut problems);
        let schools = load_schools(src.read("schools.json", &mut problems), &mut problems);
        let (mut stops, stop_index) = load_stops(src.read("bus-stops.json", &mut problems), &mut problems);
        let route_records: Vec<RouteRecord> = src.read("bus-routes.json", &mut problems);
        for r in &route_records {
            let ids: HashSet<&String> = r.directions.iter().flat_map(|d| &d.stop_ids).collect();
            for id in ids {
                if let Some(i) = stop_index.get(id) {
                    stops[*i].item.route_numbers.push(r.route_number.clone());
                }
            }
        }
        let routes = load_routes(route_records, &stops, &stop_index, &mut problems);
        let cameras = load_cameras(src.read("traffic-cameras.json", &mut problems), &mut problems);
        let housing = load_housing(src.read("housing-projects.json", &mut problems), &mut problems);
        let certificates = load_certificates(src.read("practicing-certificates.json", &mut problems), &mut problems);
        let agencies = load_agencies(src.read("agencies.json", &mut problems), &mut problems);
        let procedures = load_procedures(src.read("procedures.json", &mut problems), &agencies, &mut problems);
        let citizens = load_citizens(src.read("citizens.json", &mut problems), &mut problems);
        let dossiers =
            load_dossiers(src.read("dossiers.json", &mut problems), &procedures, &agencies, &citizens, &mut problems);
        let minimum = [
            ("health facilities", facilities.len(), 60),
            ("schools", schools.len(), 120),
            ("bus routes", routes.len(), 25),
            ("traffic cameras", cameras.len(), 40),
            ("housing projects", housing.len(), 25),
            ("practicing certificates", certificates.len(), 60),
            ("agencies", agencies.len(), 40),
            ("procedures", procedures.len(), 150),
        ];
        for (what, n, min) in minimum {
            problems.check(n >= min, || format!("the dataset holds {n} {what}; the sandbox needs at least {min}"));
        }
        if !problems.0.is_empty() {
            return Err(problems);
        }
        Ok(Self {
            facilities,
            schools,
            stops,
            stop_index,
            routes,
            cameras,
            housing,
            certificates,
            agencies,
            procedures,
            citizens,
            dossiers,
        })
    }
}

fn load_facilities(records: Vec<FacilityRecord>, problems: &mut Problems) -> Vec<Indexed<api::Facility>> {
    let mut c = Checker { problems, file: "health-facilities.json" };
    let mut seen = HashSet::new();
    let mut out: Vec<_> = records
        .into_iter()
        .map(|r| {
            let id = r.facility_code.clone();
            c.unique(&mut seen, &id);
            let ok = id.len() == 5 && id.bytes().all(|b| b.is_ascii_alphanumeric());
            c.problems.check(ok, || format!("health-facilities.json: {id}: a facility code has 5 letters or digits"));
            c.nfc(&id, "name", &r.name);
            c.ward(&id, &r.ward_code, true);
            let location = c.point(&id, r.lat, r.lng);
            let kind = c.enum_value(&id, "type", &r.kind, "FACILITY_TYPE_", api::FacilityType::from_str_name);
            let ownership = c.enum_value(&id, "ownership", &r.ownership, "OWNERSHIP_", api::Ownership::from_str_name);
            let f = api::Facility {
                facility_code: r.facility_code,
                name: r.name,
                r#type: kind,
                ownership,
                address: Some(address(&r.street, &r.ward_code)),
                location: Some(location),
                phone: r.phone,
                accepts_health_insurance: r.insurance,
                emergency_24h: r.emergency,
                specialties: r.specialties,
                distance_meters: None,
            };
            indexed(f.clone(), &[&f.name, &r.street], Some(location))
        })
        .collect();
    sort_by_name(&mut out, |f| (&f.name, &f.facility_code));
    out
}

fn load_schools(records: Vec<SchoolRecord>, problems: &mut Problems) -> Vec<Indexed<api::School>> {
    let mut c = Checker { problems, file: "schools.json" };
    let mut seen = HashSet::new();
    let mut out: Vec<_> = records
        .into_iter()
        .map(|r| {
            let id = r.school_id.clone();
            c.unique(&mut seen, &id);
            c.nfc(&id, "name", &r.name);
            c.ward(&id, &r.ward_code, true);
            let location = c.point(&id, r.lat, r.lng);
            let level = c.enum_value(&id, "level", &r.level, "SCHOOL_LEVEL_", api::SchoolLevel::from_str_name);
            let ownership = c.enum_value(&id, "ownership", &r.ownership, "OWNERSHIP_", api::Ownership::from_str_name);
            let s = api::School {
                school_id: r.school_id,
                name: r.name,
                level,
                ownership,
                address: Some(address(&r.street, &r.ward_code)),
                location: Some(location),
                phone: r.phone,
                website: r.website,
                distance_meters: None,
            };
            indexed(s.clone(), &[&s.name, &r.street], Some(location))
        })
        .collect();
    sort_by_name(&mut out, |s| (&s.name, &s.school_id));
    out
}

fn load_stops(
    records: Vec<StopRecord>,
    problems: &mut Problems,
) -> (Vec<Indexed<api::BusStop>>, HashMap<String, usize>) {
    let mut c = Checker { problems, file: "bus-stops.json" };
    let mut seen = HashSet::new();
    let stops: Vec<_> = records
        .into_iter()
        .map(|r| {
            let id = r.stop_id.clone();
            c.unique(&mut seen, &id);
            c.nfc(&id, "name", &r.name);
            c.ward(&id, &r.ward_code, false);
            let location = c.region_point(&id, r.lat, r.lng);
            let kind = c.enum_value(&id, "type", &r.kind, "STOP_TYPE_", api::StopType::from_str_name);
            let s = api::BusStop {
                stop_id: r.stop_id,
                code: r.code,
                name: r.name,
                r#type: kind,
                location: Some(location),
                street: r.street,
                ward_code: r.ward_code,
                route_numbers: Vec::new(),
                wheelchair_accessible: r.wheelchair,
                distance_meters: None,
            };
            indexed(s.clone(), &[&s.name, &s.code, &s.street], Some(location))
        })
        .collect();
    let index = stops.iter().enumerate().map(|(i, s)| (s.item.stop_id.clone(), i)).collect();
    (stops, index)
}

fn load_routes(
    records: Vec<RouteRecord>,
    stops: &[Indexed<api::BusStop>],
    stop_index: &HashMap<String, usize>,
    problems: &mut Problems,
) -> Vec<Indexed<api::BusRoute>> {
    let mut c = Checker { problems, file: "bus-routes.json" };
    let mut seen = HashSet::new();
    records
        .into_iter()
        .map(|r| {
            let id = r.route_number.clone();
            c.unique(&mut seen, &id);
            c.nfc(&id, "name", &r.name);
            let directions = r
                .directions
                .into_iter()
                .map(|d| {
                    let ordered: Vec<api::BusStop> = d
                        .stop_ids
                        .iter()
                        .filter_map(|sid| {
                            let found = stop_index.get(sid).map(|i| stops[*i].item.clone());
                            c.problems.check(found.is_some(), || format!("bus-routes.json: {id}: unknown stop {sid}"));
                            found
                        })
                        .collect();
                    api::RouteDirection {
                        outbound: d.outbound,
                        name: d.name,
                        headsign: d.headsign,
                        distance_meters: d.distance_m,
                        running_time: Some(prost_types::Duration {
                            seconds: i64::from(d.running_minutes) * 60,
                            nanos: 0,
                        }),
                        stop_count: ordered.len() as i32,
                        stops: ordered,
                    }
                })
                .collect();
            let first = calendar::parse_time_of_day(&r.first_departure);
            let last = calendar::parse_time_of_day(&r.last_departure);
            c.problems.check(first.is_some() && last.is_some(), || {
                format!("bus-routes.json: {id}: departures must be HH:MM")
            });
            let route = api::BusRoute {
                route_number: r.route_number,
                name: r.name,
                operator: String::new(),
                directions,
                first_departure: first,
                last_departure: last,
                headway: Some(prost_types::Duration { seconds: i64::from(r.headway_minutes) * 60, nanos: 0 }),
                fare_vnd: r.fare_vnd,
            };
            indexed(route.clone(), &[&route.route_number, &route.name], None)
        })
        .collect()
}

fn load_cameras(records: Vec<CameraRecord>, problems: &mut Problems) -> Vec<Indexed<(api::TrafficCamera, String)>> {
    let mut c = Checker { problems, file: "traffic-cameras.json" };
    let mut seen = HashSet::new();
    let mut out: Vec<_> = records
        .into_iter()
        .map(|r| {
            let id = r.camera_id.clone();
            c.unique(&mut seen, &id);
            c.nfc(&id, "name", &r.name);
            c.ward(&id, &r.ward_code, false);
            let location = c.point(&id, r.lat, r.lng);
            let status = if r.online { api::CameraStatus::Online } else { api::CameraStatus::Offline };
            let cam = api::TrafficCamera {
                camera_id: r.camera_id,
                code: r.code,
                name: r.name,
                location: Some(location),
                streets: r.streets,
                snapshot_url: String::new(),
                updated_time: None,
                status: status as i32,
                ptz: r.ptz,
                distance_meters: None,
            };
            let search = format!("{} {} {}", cam.name, cam.code, cam.streets.join(" "));
            indexed((cam, r.portal_id), &[&search], Some(location))
        })
        .collect();
    out.sort_by_cached_key(|i| (text::fold(&i.item.0.code), i.item.0.camera_id.clone()));
    out
}

fn load_housing(records: Vec<HousingRecord>, problems: &mut Problems) -> Vec<Indexed<api::HousingProject>> {
    let mut c = Checker { problems, file: "housing-projects.json" };
    let mut seen = HashSet::new();
    let mut out: Vec<_> = records
        .into_iter()
        .map(|r| {
            let id = r.project_id.clone();
            c.unique(&mut seen, &id);
            c.nfc(&id, "name", &r.name);
            c.nfc(&id, "investor", &r.investor);
            c.ward(&id, &r.ward_code, true);
            let location = c.point(&id, r.lat, r.lng);
            let status = c.enum_value(
                &id,
                "status",
                &r.status,
                "HOUSING_PROJECT_STATUS_",
                api::HousingProjectStatus::from_str_name,
            );
            let completion = (!r.completion_date.is_empty()).then(|| calendar::parse_date(&r.completion_date));
            c.problems.check(completion.is_none_or(|d| d.is_some()), || {
                format!("housing-projects.json: {id}: bad completion_date")
            });
            let p = api::HousingProject {
                project_id: r.project_id,
                name: r.name,
                investor: r.investor,
                address: Some(address(&r.street, &r.ward_code)),
                location: Some(location),
                status,
                total_units: r.total_units,
                site_area_sqm: r.site_area_sqm,
                approval_decision: r.approval_decision,
                completion_date: completion.flatten(),
            };
            indexed(p.clone(), &[&p.name, &r.street], Some(location))
        })
        .collect();
    sort_by_name(&mut out, |p| (&p.name, &p.project_id));
    out
}

fn load_certificates(records: Vec<CertificateRecord>, problems: &mut Problems) -> HashMap<String, CertificateRecord> {
    let mut c = Checker { problems, file: "practicing-certificates.json" };
    let mut out = HashMap::new();
    for r in records {
        let id = r.certificate_number.clone();
        c.nfc(&id, "holder_name", &r.holder_name);
        let dates_ok = calendar::parse_date(&r.issued_date).is_some() && calendar::parse_date(&r.expiry_date).is_some();
        c.problems.check(dates_ok, || format!("practicing-certificates.json: {id}: dates must be YYYY-MM-DD"));
        let dup = out.insert(text::fold(&id), r).is_some();
        c.problems.check(!dup, || format!("practicing-certificates.json: duplicate id {id}"));
    }
    out
}

fn load_agencies(records: Vec<AgencyRecord>, problems: &mut Problems) -> Vec<Indexed<api::Agency>> {
    let mut c = Checker { problems, file: "agencies.json" };
    let mut seen = HashSet::new();
    let mut out: Vec<_> = records
        .into_iter()
        .map(|r| {
            let id = r.agency_code.clone();
            c.unique(&mut seen, &id);
            c.nfc(&id, "name", &r.name);
            c.ward(&id, &r.ward_code, true);
            let location = match (r.lat, r.lng) {
                (Some(lat), Some(lng)) => Some(c.point(&id, lat, lng)),
                _ => None,
            };
            let level =
                c.enum_value(&id, "level", &r.level, "ADMINISTRATIVE_LEVEL_", api::AdministrativeLevel::from_str_name);
            let a = api::Agency {
                agency_code: r.agency_code,
                name: r.name,
                level,
                address: Some(address(&r.street, &r.ward_code)),
                location,
                phone: r.phone,
                email: r.email,
                website: r.website,
            };
            indexed(a.clone(), &[&a.name], location)
        })
        .collect();
    out.sort_by(|a, b| a.item.agency_code.cmp(&b.item.agency_code));
    out
}

fn load_procedures(
    records: Vec<ProcedureRecord>,
    agencies: &[Indexed<api::Agency>],
    problems: &mut Problems,
) -> Vec<Indexed<api::Procedure>> {
    let mut c = Checker { problems, file: "procedures.json" };
    let mut seen = HashSet::new();
    let commune: Vec<String> = agencies
        .iter()
        .filter(|a| a.item.level == api::AdministrativeLevel::Commune as i32)
        .map(|a| a.item.agency_code.clone())
        .collect();
    let known: HashSet<&str> = agencies.iter().map(|a| a.item.agency_code.as_str()).collect();
    let mut out: Vec<_> = records
        .into_iter()
        .map(|r| {
            let id = r.procedure_code.clone();
            c.unique(&mut seen, &id);
            c.nfc(&id, "name", &r.name);
            c.problems.check(id.starts_with(&r.national_code) && id.ends_with(".H29"), || {
                format!("procedures.json: {id}: a local code extends the national code and ends with .H29")
            });
            let agency_codes = match r.agencies {
                AgencyList::Codes(codes) => codes,
                AgencyList::Keyword(k) if k == "EVERY_COMMUNE" => commune.clone(),
                AgencyList::Keyword(k) => {
                    c.problems.0.push(format!("procedures.json: {id}: unknown agencies keyword {k}"));
                    Vec::new()
                }
            };
            for a in &agency_codes {
                c.problems.check(known.contains(a.as_str()), || format!("procedures.json: {id}: unknown agency {a}"));
            }
            let level =
                c.enum_value(&id, "level", &r.level, "ADMINISTRATIVE_LEVEL_", api::AdministrativeLevel::from_str_name);
            let online =
                c.enum_value(&id, "online_level", &r.online_level, "ONLINE_LEVEL_", api::OnlineLevel::from_str_name);
            let p = api::Procedure {
                procedure_code: r.procedure_code,
                national_code: r.national_code,
                name: r.name,
                field: r.field,
                level,
                agency_codes,
                processing_time: r.processing_time,
                processing_days: r.processing_days,
                fees: r
                    .fees
                    .into_iter()
                    .map(|f| api::Fee { description: f.description, amount_vnd: f.amount_vnd })
                    .collect(),
                required_documents: r
                    .documents
                    .into_iter()
                    .map(|d| api::RequiredDocument { name: d.name, copies: d.copies })
                    .collect(),
                online_level: online,
                decision_number: r.decision_number,
                legal_bases: r.legal_bases,
            };
            indexed(p.clone(), &[&p.name, &p.procedure_code], None)
        })
        .collect();
    out.sort_by(|a, b| a.item.procedure_code.cmp(&b.item.procedure_code));
    out
}

fn load_citizens(records: Vec<CitizenRecord>, problems: &mut Problems) -> Vec<Citizen> {
    let mut c = Checker { problems, file: "citizens.json" };
    records
        .into_iter()
        .filter_map(|r| {
            let handle = r.handle.clone();
            c.nfc(&handle, "full_name", &r.full_name);
            c.ward(&handle, &r.residence_ward_code, true);
            let id = CitizenId::parse(&r.id_number)
                .map_err(|e| c.problems.0.push(format!("citizens.json: {handle}: {e}")))
                .ok()?;
            let birth = calendar::parse_date(&r.birth_date);
            c.problems.check(birth.is_some(), || format!("citizens.json: {handle}: bad birth_date"));
            let sex = c.enum_value(&handle, "sex", &r.sex, "SEX_", api::Sex::from_str_name);
            let level = match r.identity_level {
                1 => api::IdentityLevel::IdentityLevel1,
                2 => api::IdentityLevel::IdentityLevel2,
                _ => {
                    c.problems.0.push(format!("citizens.json: {handle}: identity_level is 1 or 2"));
                    api::IdentityLevel::Unspecified
                }
            };
            let profile = api::CitizenProfile {
                id_number: id.expose().to_owned(),
                id_number_masked: false,
                full_name: r.full_name,
                birth_date: birth,
                sex,
                identity_level: level as i32,
                residence: Some(address(&r.street, &r.residence_ward_code)),
            };
            Some(Citizen { handle, id, profile })
        })
        .collect()
}

fn load_dossiers(
    records: Vec<DossierRecord>,
    procedures: &[Indexed<api::Procedure>],
    agencies: &[Indexed<api::Agency>],
    citizens: &[Citizen],
    problems: &mut Problems,
) -> Vec<DossierPlan> {
    let c = Checker { problems, file: "dossiers.json" };
    records
        .into_iter()
        .filter_map(|r| {
            let id = r.code.clone();
            let owner = citizens.iter().find(|c| c.handle == r.owner);
            let procedure = procedures.iter().find(|p| p.item.procedure_code == r.procedure_code);
            let agency = agencies.iter().find(|a| a.item.agency_code == r.agency);
            let submitted = calendar::parse_date(&r.submitted);
            let timeline: Vec<_> = r.timeline.iter().filter_map(|s| api::DossierStatus::try_from(*s).ok()).collect();
            let ok = owner.is_some()
                && procedure.is_some()
                && agency.is_some()
                && submitted.is_some()
                && timeline.len() == r.timeline.len()
                && (1..=timeline.len()).contains(&r.done)
                && timeline.last().is_some_and(|s| lienthong_adapter_core::is_final_status(*s));
            c.problems.check(ok, || format!("dossiers.json: {id}: needs a known owner, procedure ({}), agency ({}) and a timeline of national statuses ending final", r.procedure, r.agency));
            let (owner, procedure, agency) = (owner?, procedure?, agency?);
            if !ok {
                return None;
            }
            let base = api::Dossier {
                dossier_code: r.code,
                procedure_code: procedure.item.procedure_code.clone(),
                procedure_name: procedure.item.name.clone(),
                handling_agency_code: agency.item.agency_code.clone(),
                handling_agency_name: agency.item.name.clone(),
                applicant: Some(api::Applicant { full_name: owner.profile.full_name.clone(), masked_id_number: owner.id.masked() }),
                ..Default::default()
            };
            Some(DossierPlan {
                arrival: None,
                seq: r.seq,
                base,
                owner: owner.id.clone(),
                timeline,
                done: r.done,
                processing_days: procedure.item.processing_days.max(1) as u32,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_dataset_loads_and_meets_the_minimums() {
        let d = Dataset::load(None).unwrap_or_else(|p| panic!("{:#?}", p.0));
        assert!(d.facilities.len() >= 60 && d.schools.len() >= 120 && d.routes.len() >= 25);
        assert!(d.cameras.len() >= 40 && d.housing.len() >= 25 && d.certificates.len() >= 60);
        assert!(d.agencies.len() >= 40 && d.procedures.len() >= 150 && !d.dossiers.is_empty());
        // Every route's stops exist and come in order.
        assert!(d.routes.iter().all(|r| r.item.directions.iter().all(|dir| dir.stops.len() >= 2)));
    }

    #[test]
    fn no_two_facilities_or_schools_share_an_address_and_a_phone() {
        // A record copied under a second code would answer a search twice
        // with one place (as 79008 and 79038 once did).
        let d = Dataset::load(None).unwrap_or_else(|p| panic!("{:#?}", p.0));
        let mut seen = HashSet::new();
        for (code, address, phone) in d
            .facilities
            .iter()
            .map(|f| (&f.item.facility_code, &f.item.address, &f.item.phone))
            .chain(d.schools.iter().map(|s| (&s.item.school_id, &s.item.address, &s.item.phone)))
        {
            let street = address.as_ref().map(|a| (a.street.clone(), a.ward_code.clone()));
            if phone.is_empty() || street.as_ref().is_none_or(|(s, _)| s.is_empty()) {
                continue;
            }
            assert!(seen.insert((street, phone.clone())), "{code} shares its address and phone with another record");
        }
        assert!(seen.len() > 100);
    }

    #[test]
    fn a_broken_data_dir_reports_every_problem() {
        let dir = std::env::temp_dir().join(format!("lienthong-sandbox-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in EMBEDDED {
            std::fs::write(dir.join(name), text).unwrap();
        }
        // An unknown ward and a point in the sea, in two different files.
        let schools = EMBEDDED.iter().find(|(n, _)| *n == "schools.json").unwrap().1;
        std::fs::write(dir.join("schools.json"), schools.replacen("\"ward_code\":\"", "\"ward_code\":\"0", 1)).unwrap();
        let stops = EMBEDDED.iter().find(|(n, _)| *n == "bus-stops.json").unwrap().1;
        std::fs::write(dir.join("bus-stops.json"), stops.replacen("\"lat\":", "\"lat\":-", 1)).unwrap();
        let problems = Dataset::load(Some(&dir)).unwrap_err().0;
        std::fs::remove_dir_all(&dir).ok();
        assert!(
            problems.iter().any(|p| p.starts_with("schools.json:") && p.contains("is not a ward")),
            "{problems:#?}"
        );
        assert!(problems.iter().any(|p| p.starts_with("bus-stops.json:") && p.contains("outside")), "{problems:#?}");
    }
}
