//! One audit record and the hash chain that links it to the one before.
//!
//! A record is one JSON line: its fields, then `hash`, over the previous
//! record's hash, a newline, and the record's own JSON without `hash`. With
//! `audit.chain_key` the hash is an HMAC-SHA-256 under that key (the record
//! says `"keyed":true`), so a chain rewritten from some record on cannot be
//! made to verify without the key; without a key it is a plain SHA-256, and
//! only a head kept elsewhere catches a rewrite. The first record's `prev` is
//! 64 zeros. Editing, removing or reordering any record breaks the chain at
//! that record.
//!
//! A line is valid only as the canonical encoding of its record: the exact
//! bytes this module writes (no other whitespace, escapes, key order, and no
//! duplicate keys), so what one tool reads is what every tool reads.

use serde::{Deserialize, Serialize};

use crate::crypto::SecretKey;
use crate::crypto::{hex, sha256};

/// The `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What one access to personal data was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// The calling app's id.
    pub app: String,
    /// The citizen's pseudonym (never the ID number).
    pub citizen: String,
    /// The RPC, for example `lienthong.v1.IdentityService/GetMyProfile`.
    pub method: String,
    /// The records touched: dossier codes, or `profile`.
    pub records: Vec<String>,
    /// The declared purpose.
    pub purpose: String,
    /// The outcome: a gRPC code name (`OK`, `PERMISSION_DENIED`, …).
    pub outcome: String,
    /// The call's trace id.
    pub trace_id: String,
    /// How many accesses (or refusals) this event stands for: refusals of
    /// one citizen over one window are recorded once, with their count.
    pub count: u32,
}

/// An audit record as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// Position in the chain, from 1.
    pub seq: u64,
    /// When, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// See [`AuditEvent`].
    pub app: String,
    /// See [`AuditEvent`].
    pub citizen: String,
    /// See [`AuditEvent`].
    pub method: String,
    /// See [`AuditEvent`].
    pub records: Vec<String>,
    /// See [`AuditEvent`].
    pub purpose: String,
    /// See [`AuditEvent`].
    pub outcome: String,
    /// See [`AuditEvent`]; written only when more than 1.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub count: u32,
    /// See [`AuditEvent`].
    pub trace_id: String,
    /// The previous record's hash.
    pub prev: String,
    /// Whether `hash` is an HMAC under the chain key; written only when so.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keyed: bool,
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

impl AuditRecord {
    /// The record of `event` following the record whose hash is `prev`,
    /// keyed when the chain has a key.
    pub fn new(event: AuditEvent, seq: u64, time_ms: u64, prev: String, keyed: bool) -> Self {
        let AuditEvent { app, citizen, method, records, purpose, outcome, trace_id, count } = event;
        Self { seq, time_ms, app, citizen, method, records, purpose, outcome, count, trace_id, prev, keyed }
    }

    /// This record's hash: HMAC-SHA-256 under `key` for a keyed record,
    /// SHA-256 otherwise; none for a keyed record without the key.
    pub fn hash(&self, key: Option<&SecretKey>) -> Option<String> {
        let body = serde_json::to_string(self).unwrap_or_default();
        let mut input = Vec::with_capacity(self.prev.len() + 1 + body.len());
        input.extend_from_slice(self.prev.as_bytes());
        input.push(b'\n');
        input.extend_from_slice(body.as_bytes());
        match (self.keyed, key) {
            (true, Some(key)) => Some(hex(&crate::crypto::hmac_sha256(key, &input))),
            (true, None) => None,
            (false, _) => Some(hex(&sha256(&input))),
        }
    }

    /// The record's line (with its hash, without the newline) and its hash.
    pub fn line(&self, key: Option<&SecretKey>) -> (String, String) {
        let hash = self.hash(key).unwrap_or_default();
        (self.line_with(&hash), hash)
    }

    /// The canonical line of this record claiming `hash`.
    pub fn line_with(&self, hash: &str) -> String {
        let body = serde_json::to_string(self).unwrap_or_default();
        // `{...}` → `{...,"hash":"…"}`
        format!("{},\"hash\":\"{hash}\"}}", body.strip_suffix('}').unwrap_or(&body))
    }

    /// Parses a line: the record and the hash it claims.
    pub fn parse(line: &str) -> Result<(Self, String), String> {
        let mut value: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
        let claimed = value
            .as_object_mut()
            .and_then(|o| o.remove("hash"))
            .and_then(|h| h.as_str().map(str::to_owned))
            .ok_or("no hash")?;
        let record: Self = serde_json::from_value(value).map_err(|e| format!("not an audit record: {e}"))?;
        Ok((record, claimed))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A record of citizen `n`'s profile being read.
    pub(crate) fn event(n: u32) -> AuditEvent {
        AuditEvent {
            app: "city-app".into(),
            citizen: format!("{n:032x}"),
            method: "lienthong.v1.IdentityService/GetMyProfile".into(),
            records: vec!["profile".into()],
            purpose: "public-service".into(),
            outcome: "OK".into(),
            trace_id: format!("{n:032x}"),
            count: 1,
        }
    }

    #[test]
    fn a_line_parses_back_to_its_record_and_hash() {
        let r = AuditRecord::new(event(1), 1, 1_763_900_000_000, GENESIS.into(), false);
        let (line, hash) = r.line(None);
        assert!(line.ends_with(&format!("\"hash\":\"{hash}\"}}")), "{line}");
        assert!(!line.contains("count") && !line.contains("keyed"), "{line}");
        let (back, claimed) = AuditRecord::parse(&line).unwrap();
        assert_eq!((back.clone(), claimed), (r, hash.clone()));
        assert_eq!(back.hash(None).unwrap(), hash);
        assert_eq!(back.line_with(&hash), line);
        // Any change of any field changes the hash.
        let mut edited = back;
        edited.outcome = "PERMISSION_DENIED".into();
        assert_ne!(edited.hash(None).unwrap(), hash);
        // A keyed record's hash needs its key.
        let key = SecretKey::random().unwrap();
        let keyed = AuditRecord::new(event(1), 1, 1_763_900_000_000, GENESIS.into(), true);
        let (line, hash) = keyed.line(Some(&key));
        assert!(line.contains("\"keyed\":true"), "{line}");
        assert_eq!(keyed.hash(None), None);
        assert_ne!(keyed.hash(Some(&SecretKey::random().unwrap())).unwrap(), hash);
        assert!(AuditRecord::parse(&line.replace("\"seq\"", "\"extra\":1,\"seq\"")).is_err());
    }
}
