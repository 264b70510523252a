//! The registry of calling apps, and who is calling.
//!
//! Each app (`[apps.<id>]`) is registered with the provinces it may reach,
//! the methods it may call, its scopes, its quota, and its credentials: the
//! SHA-256 digests of its API keys (sent as `x-lienthong-api-key`) and of its
//! TLS client certificates (mutual TLS). Only digests are configured; a
//! presented key is hashed and compared in constant time with every
//! registered digest. Listing a new digest beside the old one rotates a
//! credential without downtime; removing the old one revokes it.
//!
//! A call that presents a client certificate is that certificate's app; else
//! an API key's; else, where `[anonymous]` is enabled, the anonymous app.

use std::collections::BTreeMap;
use std::fmt;

use lienthong_adapter_core::{Capabilities, Method};
use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

use crate::crypto::{any_equal, hex, parse_digest, sha256};

pub use crate::config::{AppConfig, allowed_methods};

/// The client's certificate chain, when it presented one (mutual TLS); a
/// request extension.
#[derive(Debug, Clone)]
pub struct ClientCertificates(pub std::sync::Arc<Vec<rustls_pki_types::CertificateDer<'static>>>);

/// Metadata carrying an app's API key.
pub const API_KEY_HEADER: &str = "x-lienthong-api-key";
/// Metadata naming the purpose of a call touching personal data.
pub const PURPOSE_HEADER: &str = "x-lienthong-purpose";

/// A registered app, as calls see it.
pub struct App {
    /// Its id in config (`anonymous` for calls without credentials).
    pub id: String,
    /// The provinces it may reach, its default first.
    pub provinces: Vec<String>,
    /// What it may call.
    pub methods: Capabilities,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// Its registered purposes.
    pub purposes: Vec<String>,
    keys: Vec<[u8; 32]>,
    certs: Vec<[u8; 32]>,
}

impl fmt::Debug for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("App").field("id", &self.id).field("provinces", &self.provinces).finish_non_exhaustive()
    }
}

impl App {
    fn new(id: &str, config: &AppConfig) -> Self {
        let methods =
            config.allow.iter().flat_map(|e| allowed_methods(e)).fold(Capabilities::none(), Capabilities::with);
        Self {
            id: id.to_owned(),
            provinces: config.provinces.clone(),
            methods,
            scopes: config.scopes.clone(),
            purposes: config.purposes.clone(),
            keys: config.api_key_sha256.iter().filter_map(|d| parse_digest(d)).collect(),
            certs: config.client_cert_sha256.iter().filter_map(|d| parse_digest(d)).collect(),
        }
    }

    /// The purpose of a call touching personal data: the app's only one, or
    /// the one the call names in `x-lienthong-purpose` among its several.
    pub fn purpose(&self, metadata: &MetadataMap) -> Result<String, Status> {
        let named = metadata.get(PURPOSE_HEADER).and_then(|v| v.to_str().ok());
        match (self.purposes.as_slice(), named) {
            ([], _) => Ok("unspecified".to_owned()),
            ([only], None) => Ok(only.clone()),
            (all, Some(p)) if all.iter().any(|a| a == p) => Ok(p.to_owned()),
            (all, _) => {
                let mut v = crate::errors::Violations::new();
                v.add(
                    format!("metadata {PURPOSE_HEADER}"),
                    format!("name the purpose of this access, one of this app's: {}", all.join(", ")),
                );
                Err(v.into_result().err().unwrap_or_else(|| Status::invalid_argument("name the purpose")))
            }
        }
    }

    /// Whether it may call `method`.
    pub fn may_call(&self, method: Method) -> bool {
        self.methods.supports(method)
    }
}

/// Every registered app, and the anonymous one.
#[derive(Debug)]
pub struct AppRegistry {
    apps: Vec<App>,
    anonymous: Option<App>,
}

impl AppRegistry {
    /// The apps of `apps`, plus the anonymous app when `anonymous` is on.
    pub fn new(apps: &BTreeMap<String, AppConfig>, anonymous: &crate::config::AnonymousConfig) -> Self {
        let anonymous = anonymous.enabled.then(|| {
            App::new(
                "anonymous",
                &AppConfig {
                    provinces: anonymous.provinces.clone(),
                    allow: vec!["*".to_owned()],
                    scopes: anonymous.scopes.clone(),
                    ..Default::default()
                },
            )
        });
        Self { apps: apps.iter().map(|(id, c)| App::new(id, c)).collect(), anonymous }
    }

    /// The app calling `request`.
    pub fn identify<T>(&self, request: &Request<T>) -> Result<&App, Status> {
        if let Some(certs) = request.extensions().get::<ClientCertificates>()
            && let Some(leaf) = certs.0.first()
        {
            let digest = sha256(leaf.as_ref());
            return self.apps.iter().find(|a| any_equal(a.certs.iter().copied(), &digest)).ok_or_else(|| {
                Status::unauthenticated(format!(
                    "this client certificate (SHA-256 {}) is not registered for any app",
                    hex(&digest)
                ))
            });
        }
        self.identify_by_key(request.metadata())
    }

    fn identify_by_key(&self, metadata: &MetadataMap) -> Result<&App, Status> {
        let Some(value) = metadata.get(API_KEY_HEADER) else {
            return self.anonymous.as_ref().ok_or_else(|| {
                Status::unauthenticated(format!(
                    "this gateway serves registered apps only: present the app's API key in {API_KEY_HEADER} or its client certificate"
                ))
            });
        };
        let key = value.as_bytes();
        if key.is_empty() || key.len() > 512 {
            return Err(Status::unauthenticated(format!("{API_KEY_HEADER} must hold an API key of 1 to 512 bytes")));
        }
        let digest = sha256(key);
        // Every app's every key is compared, matched or not.
        let mut found = None;
        for app in &self.apps {
            if any_equal(app.keys.iter().copied(), &digest) && found.is_none() {
                found = Some(app);
            }
        }
        found.ok_or_else(|| Status::unauthenticated("this API key is not registered (or was revoked)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RateLimit;

    #[test]
    fn allow_entries_name_methods() {
        assert_eq!(allowed_methods("*").len(), Method::ALL.len());
        assert_eq!(allowed_methods("HealthcareService/*"), [Method::ListFacilities, Method::GetFacility]);
        assert_eq!(allowed_methods("PublicServicesService/GetDossier"), [Method::GetDossier]);
        assert_eq!(allowed_methods("GetMyProfile"), [Method::GetMyProfile]);
        assert!(allowed_methods("HealthService/*").is_empty());
        assert!(allowed_methods("GetEverything").is_empty());
    }

    #[test]
    fn keys_identify_apps_and_revoked_ones_do_not() {
        let app = |keys: &[&str]| AppConfig {
            provinces: vec!["79".into()],
            allow: vec!["*".into()],
            api_key_sha256: keys.iter().map(|k| hex(&sha256(k.as_bytes()))).collect(),
            ..Default::default()
        };
        let apps = BTreeMap::from([("a".to_owned(), app(&["old-key", "new-key"])), ("b".to_owned(), app(&["b-key"]))]);
        let registry = AppRegistry::new(&apps, &Default::default());
        let with = |key: &str| {
            let mut m = MetadataMap::new();
            m.insert(API_KEY_HEADER, key.parse().unwrap());
            m
        };
        assert_eq!(registry.identify_by_key(&with("old-key")).unwrap().id, "a");
        assert_eq!(registry.identify_by_key(&with("new-key")).unwrap().id, "a");
        assert_eq!(registry.identify_by_key(&with("b-key")).unwrap().id, "b");
        let e = registry.identify_by_key(&with("nope")).unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        assert!(!e.message().contains("nope"));
        assert_eq!(registry.identify_by_key(&MetadataMap::new()).unwrap_err().code(), tonic::Code::Unauthenticated);
        // Neither keys nor digests show in Debug.
        let shown = format!("{:?} {:?}", apps["a"], registry);
        assert!(!shown.contains(&hex(&sha256(b"old-key"))[..12]), "{shown}");
    }

    #[test]
    fn registrations_are_checked() {
        let bad = AppConfig {
            provinces: vec!["01".into()],
            allow: vec!["HealthService/*".into()],
            scopes: vec!["everything".into()],
            api_key_sha256: vec!["the-key-itself".into()],
            rate_limit: Some(RateLimit { per_second: 0, burst: 1 }),
            ..Default::default()
        };
        let paths: Vec<String> = bad.problems("app", &|p| p == "79").into_iter().map(|(p, _)| p).collect();
        assert_eq!(
            paths,
            [
                "apps.app.provinces[0]",
                "apps.app.allow[0]",
                "apps.app.scopes[0]",
                "apps.app.api_key_sha256[0]",
                "apps.app.rate_limit"
            ]
        );
        let none = AppConfig { provinces: vec!["79".into()], allow: vec!["*".into()], ..Default::default() };
        assert_eq!(none.problems("x", &|_| true)[0].0, "apps.x");
    }
}
