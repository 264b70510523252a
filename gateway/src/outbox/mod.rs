//! The reports outbox: what citizens send the city (issue 19), stored
//! durably before the gateway acknowledges it, then delivered to the
//! city's system by a worker that may run on any replica.
//!
//! - **Never lost**: a submission is answered only once its transaction is
//!   committed and synced to disk. Concurrent submissions share one commit
//!   (group commit, as the audit writer does): durability costs one fsync per
//!   batch, not per report.
//! - **Never twice**: a citizen's idempotency key names one report; the same
//!   key again returns the first report, never a second one.
//! - **Delivered once at a time**: a delivery worker claims due reports with
//!   a lease; another claimer (another replica) skips them until the lease
//!   ends, so a crashed worker's reports are delivered by another.
//!
//! The embedded store is SQLite in the data directory (WAL, `synchronous =
//! FULL`), written by one thread. What a report holds is opaque here: the
//! caller seals its personal data before storing it; the citizen is kept as
//! a pseudonym, for their own listings.

pub mod sqlite;

use std::time::Duration;

/// A submission to store.
#[derive(Clone, PartialEq, Eq)]
pub struct Submission {
    /// The citizen's pseudonym (never the ID number).
    pub citizen: String,
    /// The app's idempotency key, unique per citizen.
    pub idempotency_key: String,
    /// The report, sealed by the caller.
    pub body: Vec<u8>,
}

impl std::fmt::Debug for Submission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Submission").field("body_bytes", &self.body.len()).finish_non_exhaustive()
    }
}

/// A stored report, as its submitter learns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The report's code.
    pub code: String,
    /// When it was first stored (Unix milliseconds).
    pub received_ms: i64,
    /// Whether this submission stored it (false: the key named an earlier
    /// one, returned instead).
    pub new: bool,
}

/// A report due for delivery, claimed by a worker until its lease ends.
#[derive(Clone, PartialEq, Eq)]
pub struct Due {
    /// The report's code.
    pub code: String,
    /// The idempotency key the upstream gets, so that a delivery repeated
    /// after a crash creates one record there.
    pub idempotency_key: String,
    /// The report, sealed.
    pub body: Vec<u8>,
    /// Deliveries tried before this one.
    pub attempts: u32,
}

impl std::fmt::Debug for Due {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Due").field("code", &self.code).field("attempts", &self.attempts).finish_non_exhaustive()
    }
}

/// Where a report stands in the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Stored, not yet accepted by the city's system.
    Pending,
    /// The city's system has it.
    Delivered,
    /// The city's system refused it for good.
    Rejected,
}

impl Delivery {
    /// The state stored as `code` (0 pending, 1 delivered, 2 rejected).
    fn from_code(code: i64) -> Option<Self> {
        match code {
            0 => Some(Self::Pending),
            1 => Some(Self::Delivered),
            2 => Some(Self::Rejected),
            _ => None,
        }
    }
}

/// What became of a delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted, under the upstream's id.
    Delivered(String),
    /// Refused for good, with the reason the citizen is shown.
    Rejected(String),
    /// Not now (the upstream is down or refusing): tried again after this.
    RetryAfter(Duration),
}

/// A report's delivery state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// Where it stands.
    pub delivery: Delivery,
    /// Deliveries tried.
    pub attempts: u32,
    /// The upstream's id, once delivered.
    pub upstream_id: Option<String>,
    /// Why it was rejected.
    pub reason: Option<String>,
}

/// The outbox could not do what was asked.
#[derive(Debug)]
pub enum OutboxError {
    /// The store failed (disk full, file unreadable): nothing was
    /// acknowledged.
    Store(String),
    /// The store's writer is gone (the gateway is stopping).
    Closed,
}

impl std::fmt::Display for OutboxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Store(e) => write!(f, "the reports store failed: {e}"),
            Self::Closed => f.write_str("the reports store is closed"),
        }
    }
}

impl std::error::Error for OutboxError {}

impl From<rusqlite::Error> for OutboxError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Store(e.to_string())
    }
}
