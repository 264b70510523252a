//! One audit record and the hash chain that links it to the one before.
//!
//! A record is one JSON line: its fields, then `hash`, the SHA-256 (hex) of
//! the previous record's hash, a newline, and the record's own JSON without
//! `hash`. The first record's `prev` is 64 zeros. Editing, removing or
//! reordering any record breaks the chain at that record.

use serde::{Deserialize, Serialize};

use crate::apps::{hex, sha256};

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
    /// See [`AuditEvent`].
    pub trace_id: String,
    /// The previous record's hash.
    pub prev: String,
}

impl AuditRecord {
    /// The record of `event` following the record whose hash is `prev`.
    pub fn new(event: AuditEvent, seq: u64, time_ms: u64, prev: String) -> Self {
        let AuditEvent { app, citizen, method, records, purpose, outcome, trace_id } = event;
        Self { seq, time_ms, app, citizen, method, records, purpose, outcome, trace_id, prev }
    }

    /// This record's hash.
    pub fn hash(&self) -> String {
        let body = serde_json::to_string(self).unwrap_or_default();
        let mut input = Vec::with_capacity(self.prev.len() + 1 + body.len());
        input.extend_from_slice(self.prev.as_bytes());
        input.push(b'\n');
        input.extend_from_slice(body.as_bytes());
        hex(&sha256(&input))
    }

    /// The record's line (with its hash, without the newline).
    pub fn line(&self) -> (String, String) {
        let hash = self.hash();
        let body = serde_json::to_string(self).unwrap_or_default();
        // `{...}` → `{...,"hash":"…"}`
        let line = format!("{},\"hash\":\"{hash}\"}}", body.strip_suffix('}').unwrap_or(&body));
        (line, hash)
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
        }
    }

    #[test]
    fn a_line_parses_back_to_its_record_and_hash() {
        let r = AuditRecord::new(event(1), 1, 1_763_900_000_000, GENESIS.into());
        let (line, hash) = r.line();
        assert!(line.ends_with(&format!("\"hash\":\"{hash}\"}}")), "{line}");
        let (back, claimed) = AuditRecord::parse(&line).unwrap();
        assert_eq!((back.clone(), claimed), (r, hash.clone()));
        assert_eq!(back.hash(), hash);
        // Any change of any field changes the hash.
        let mut edited = back;
        edited.outcome = "PERMISSION_DENIED".into();
        assert_ne!(edited.hash(), hash);
        assert!(AuditRecord::parse(&line.replace("\"seq\"", "\"extra\":1,\"seq\"")).is_err());
    }
}
