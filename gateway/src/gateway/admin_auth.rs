//! Who may call the admin API: tokens configured as SHA-256 digests only
//! (`[admin] token_sha256`), compared in constant time; several may be valid
//! at once, so a token is rotated by adding the new digest, switching
//! callers, then removing the old one.

use tonic::Status;
use tonic::metadata::MetadataMap;

use crate::config::AdminConfig;
use crate::crypto::{parse_digest, sha256};

/// Who may call the admin API.
pub struct AdminAuth {
    digests: Vec<[u8; 32]>,
}

impl std::fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminAuth").field("tokens", &self.digests.len()).finish()
    }
}

impl AdminAuth {
    /// The tokens of `config` (digests already validated).
    pub fn new(config: &AdminConfig) -> Self {
        Self { digests: config.token_sha256.iter().filter_map(|d| parse_digest(d)).collect() }
    }

    /// Ok when `metadata` carries a valid admin token.
    pub fn check(&self, metadata: &MetadataMap) -> Result<(), Status> {
        if self.digests.is_empty() {
            return Err(Status::permission_denied(
                "the admin API is off on this gateway: configure [admin] token_sha256 to turn it on",
            ));
        }
        let token = metadata
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 1024)
            .ok_or_else(|| Status::unauthenticated("the admin API needs \"authorization: Bearer <admin token>\""))?;
        let valid = crate::crypto::any_equal(self.digests.iter().copied(), &sha256(token.as_bytes()));
        if valid { Ok(()) } else { Err(Status::unauthenticated("this admin token is not valid on this gateway")) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{digest_hex, new_token};

    fn metadata(token: Option<&str>) -> MetadataMap {
        let mut m = MetadataMap::new();
        if let Some(t) = token {
            m.insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        m
    }

    #[test]
    fn tokens_are_checked_against_digests_and_rotate() {
        let (old, new) = (new_token().unwrap(), new_token().unwrap());
        assert_ne!(old, new);
        let both = AdminAuth::new(&AdminConfig { token_sha256: vec![digest_hex(&old), digest_hex(&new)] });
        assert!(both.check(&metadata(Some(&old))).is_ok());
        assert!(both.check(&metadata(Some(&new))).is_ok());
        let rotated = AdminAuth::new(&AdminConfig { token_sha256: vec![digest_hex(&new)] });
        assert_eq!(rotated.check(&metadata(Some(&old))).unwrap_err().code(), tonic::Code::Unauthenticated);
        assert_eq!(rotated.check(&metadata(None)).unwrap_err().code(), tonic::Code::Unauthenticated);
        let off = AdminAuth::new(&AdminConfig::default());
        assert_eq!(off.check(&metadata(Some(&new))).unwrap_err().code(), tonic::Code::PermissionDenied);
        // Neither the token nor its digest shows in Debug.
        assert!(!format!("{rotated:?}").contains(&digest_hex(&new)[..16]));
    }

    #[test]
    fn digests_are_validated() {
        let config = AdminConfig { token_sha256: vec![digest_hex("x"), "secret-token".into()] };
        let paths: Vec<String> = config.problems().into_iter().map(|(p, _)| p).collect();
        assert_eq!(paths, ["admin.token_sha256[1]"]);
        assert_eq!(digest_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
