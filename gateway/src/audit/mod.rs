//! The audit log: a record of every access to personal data — which app,
//! which citizen (pseudonymised), which method and records, for what
//! declared purpose, with what outcome, under which trace, when.
//!
//! Append-only and hash-chained ([`record`]), so removing, reordering or
//! editing a record is caught by `lienthong audit verify` ([`verify`]).
//! Written durably before the response leaves: a dedicated writer thread
//! appends each batch of records, `fdatasync`s the file, and only then lets
//! the calls that wait on them answer (group commit: one sync serves every
//! call that arrived meanwhile). A crash can leave at most a partial last
//! line, which no response depended on; the next start trims it.

pub mod postgres;
pub mod record;
pub mod verify;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use tokio::sync::{mpsc, oneshot};
use tonic::Status;

pub use record::{AuditEvent, AuditRecord};

use crate::crypto::SecretKey;

pub use crate::config::{AuditConfig, AuditSink};

/// The lines of `events` chained after (`seq`, `hash`), keyed with `key`
/// when there is one, and the new head.
pub(crate) fn chain_lines(
    events: &[AuditEvent],
    mut seq: u64,
    mut prev: String,
    key: Option<&SecretKey>,
) -> (Vec<String>, u64, String) {
    let time = now_ms();
    let lines = events
        .iter()
        .map(|e| {
            seq += 1;
            let record = AuditRecord::new(e.clone(), seq, time, std::mem::take(&mut prev), key.is_some());
            let (line, hash) = record.line(key);
            prev = hash;
            line
        })
        .collect();
    (lines, seq, prev)
}

struct Pending {
    event: AuditEvent,
    done: oneshot::Sender<Result<(), String>>,
}

/// The audit log of a running gateway.
pub struct AuditLog {
    tx: Option<mpsc::Sender<Pending>>,
    pseudonyms: crate::crypto::CitizenScopes,
    refusals: Option<Refusals>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").field("enabled", &self.tx.is_some()).finish_non_exhaustive()
    }
}

/// Where the chain stands: the last record's number and hash.
struct Head {
    seq: u64,
    hash: String,
}

/// The audit file is locked by another writer.
#[derive(Debug)]
struct Locked(std::path::PathBuf);

impl std::fmt::Display for Locked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the audit log {} is being written by another process: give each replica its own audit.path \
             (LIENTHONG_AUDIT__PATH), or let them share one chain with sink = \"postgres\"",
            self.0.display()
        )
    }
}

impl std::error::Error for Locked {}

/// How long opening waits for the file's last writer to let it go (a
/// writer stopping in this process, a process exiting).
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Opens `path` for appending: trims a partial last line (an unacknowledged
/// write cut by a crash) and reads the head of the chain.
fn open(path: &Path, key: Option<&SecretKey>) -> anyhow::Result<(File, Head)> {
    let mut file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening the audit log {}", path.display()))?;
    // One writer per file: two replicas appending to one file would each
    // number records from their own head and break the chain.
    if file.try_lock().is_err() {
        return Err(anyhow::Error::new(Locked(path.to_owned())));
    }
    let len = file.metadata()?.len();
    // The last complete line lies within the tail (records are small).
    let start = len.saturating_sub(64 * 1024);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    let complete = tail.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    if complete < tail.len() {
        let keep = start + complete as u64;
        tracing::warn!(bytes = len - keep, "trimming a partial last audit record left by a crash");
        file.set_len(keep)?;
        file.sync_all()?;
        tail.truncate(complete);
    }
    let last = tail.strip_suffix(b"\n").unwrap_or(&tail).rsplit(|b| *b == b'\n').next().unwrap_or_default();
    if last.is_empty() {
        // Empty, or one line longer than the tail: not a log of ours.
        anyhow::ensure!(
            start == 0,
            "the audit log {} ends in a line over 64 KiB; run `lienthong audit verify` on it",
            path.display()
        );
        return Ok((file, Head { seq: 0, hash: record::GENESIS.to_owned() }));
    }
    let (last, hash) =
        std::str::from_utf8(last).map_err(|_| "not UTF-8".to_owned()).and_then(AuditRecord::parse).map_err(|e| {
            anyhow::anyhow!(
                "the audit log {} ends in an unreadable record ({e}); run `lienthong audit verify` on it",
                path.display()
            )
        })?;
    check_chain_key(&last, &hash, key).with_context(|| format!("the audit log {}", path.display()))?;
    Ok((file, Head { seq: last.seq, hash }))
}

/// A chain is continued only under the key it was written with: keyed
/// records need `audit.chain_key`, and the same one; an unkeyed chain is not
/// continued keyed (start a new log for that).
pub(crate) fn check_chain_key(last: &AuditRecord, hash: &str, key: Option<&SecretKey>) -> anyhow::Result<()> {
    match (last.keyed, key) {
        (true, None) => anyhow::bail!("is keyed: configure the audit.chain_key it was written with"),
        (false, Some(_)) => anyhow::bail!(
            "was written without audit.chain_key: start a new log (another path or schema) for a keyed chain"
        ),
        (true, Some(key)) if last.hash(Some(key)).as_deref() != Some(hash) => {
            anyhow::bail!("was keyed with another audit.chain_key than the one configured")
        }
        _ => Ok(()),
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// `first` and whatever else is waiting already (group commit), up to 4,096.
fn batch_from(first: Pending, rx: &mut mpsc::Receiver<Pending>) -> (Vec<Pending>, Vec<AuditEvent>) {
    let mut batch = vec![first];
    while batch.len() < 4096 {
        match rx.try_recv() {
            Ok(p) => batch.push(p),
            Err(_) => break,
        }
    }
    let events = batch.iter().map(|p| p.event.clone()).collect();
    (batch, events)
}

/// Lets the calls of `batch` answer: served if their records were written.
fn acknowledge(batch: Vec<Pending>, failed: &Option<String>) {
    for p in batch {
        let _ = p.done.send(failed.clone().map_or(Ok(()), Err));
    }
}

/// Appends batches until every sender is gone; fails closed: after a failed
/// write every later record is refused too (the file's end is uncertain).
fn writer(mut file: File, mut head: Head, key: Option<SecretKey>, mut rx: mpsc::Receiver<Pending>) {
    let mut failed: Option<String> = None;
    while let Some(first) = rx.blocking_recv() {
        let (batch, events) = batch_from(first, &mut rx);
        if failed.is_none() {
            let (lines, seq, prev) = chain_lines(&events, head.seq, head.hash.clone(), key.as_ref());
            let mut buf = lines.join("\n");
            buf.push('\n');
            match file.write_all(buf.as_bytes()).and_then(|()| file.sync_data()) {
                Ok(()) => head = Head { seq, hash: prev },
                Err(e) => {
                    tracing::error!(error = %e, "writing the audit log failed; refusing personal-data calls from now on");
                    failed = Some(e.to_string());
                }
            }
        }
        acknowledge(batch, &failed);
    }
}

/// Appends batches to PostgreSQL until every sender is gone; like the file
/// writer, fails closed after a failed batch.
async fn postgres_writer(
    mut client: tokio_postgres::Client,
    schema: String,
    key: Option<SecretKey>,
    mut rx: mpsc::Receiver<Pending>,
) {
    let mut failed: Option<String> = None;
    while let Some(first) = rx.recv().await {
        let (batch, events) = batch_from(first, &mut rx);
        if failed.is_none()
            && let Err(e) = postgres::append(&mut client, &schema, &events, key.as_ref()).await
        {
            tracing::error!(error = %e, "writing the audit log to PostgreSQL failed; refusing personal-data calls from now on");
            failed = Some(e);
        }
        acknowledge(batch, &failed);
    }
}

impl AuditLog {
    /// Opens the log per `config` and starts its writer (PostgreSQL: an
    /// async task, so call this within the runtime).
    pub async fn open(config: &AuditConfig) -> anyhow::Result<Self> {
        let pseudonyms = match &config.pseudonym_key_file {
            Some(path) => {
                let key = std::fs::read(path)
                    .with_context(|| format!("reading audit.pseudonym_key_file ({})", path.display()))?;
                anyhow::ensure!(key.len() >= 32, "audit.pseudonym_key_file must hold at least 32 bytes");
                crate::crypto::CitizenScopes::with_key(&key)
            }
            None => crate::crypto::CitizenScopes::new()?,
        };
        if !config.enabled {
            return Ok(Self { tx: None, pseudonyms, refusals: None });
        }
        let (tx, rx) = mpsc::channel(65_536);
        if config.sink == AuditSink::Postgres {
            let client = postgres::connect(&config.postgres_url, &config.postgres_schema).await?;
            postgres::check_head(&client, &config.postgres_schema, config.chain_key.as_ref()).await?;
            tokio::spawn(postgres_writer(client, config.postgres_schema.clone(), config.chain_key.clone(), rx));
        } else {
            let deadline = tokio::time::Instant::now() + LOCK_WAIT;
            let (file, head) = loop {
                match open(&config.path, config.chain_key.as_ref()) {
                    Err(e) if e.is::<Locked>() && tokio::time::Instant::now() < deadline => {
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                    opened => break opened?,
                }
            };
            let key = config.chain_key.clone();
            std::thread::Builder::new()
                .name("lienthong-audit".into())
                .spawn(move || writer(file, head, key, rx))
                .context("starting the audit writer")?;
        }
        if config.chain_key.is_none() {
            tracing::warn!(
                "the audit chain is unkeyed: set audit.chain_key so that a rewritten chain is caught without a head kept elsewhere"
            );
        }
        let refusals = Refusals::start(tx.clone(), config.refusal_window);
        Ok(Self { tx: Some(tx), pseudonyms, refusals: Some(refusals) })
    }

    /// The pseudonym of `citizen` in this log.
    pub fn pseudonym(&self, citizen: &lienthong_adapter_core::CitizenId) -> String {
        String::from_utf8_lossy(&self.pseudonyms.scope(citizen)).into_owned()
    }

    /// Records a refusal of a signed-in citizen (identity level, scope, rate
    /// limit), without waiting: the first of its kind for this citizen in the
    /// window at once, the rest as one record with their count when the
    /// window ends.
    pub fn refused(&self, event: AuditEvent) {
        if let Some(refusals) = &self.refusals {
            refusals.add(event);
        }
    }

    /// Records `event` durably, or UNAVAILABLE: an access that cannot be
    /// audited is not served.
    pub async fn record(&self, event: AuditEvent) -> Result<(), Status> {
        let Some(tx) = &self.tx else { return Ok(()) };
        let refused =
            || Status::unavailable("this access could not be recorded in the audit log, so it was not served");
        let (done, wait) = oneshot::channel();
        tx.send(Pending { event, done }).await.map_err(|_| refused())?;
        match wait.await {
            Ok(Ok(())) => Ok(()),
            _ => Err(refused()),
        }
    }
}

/// Refusals being counted: per (app, citizen, method, outcome), how many
/// since the first of the window, which was recorded at once.
struct Refusals {
    counts: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<RefusalKey, AuditEvent>>>,
    tx: mpsc::Sender<Pending>,
    flusher: tokio::task::JoinHandle<()>,
}

type RefusalKey = (String, String, String, String);

impl Refusals {
    fn start(tx: mpsc::Sender<Pending>, window: std::time::Duration) -> Self {
        let counts: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<RefusalKey, AuditEvent>>> =
            Default::default();
        let (flushed, sender) = (counts.clone(), tx.clone());
        let flusher = tokio::spawn(async move {
            let mut every = tokio::time::interval(window);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            every.tick().await;
            loop {
                every.tick().await;
                let due: Vec<AuditEvent> = match flushed.lock() {
                    Ok(mut counts) => counts.drain().map(|(_, e)| e).filter(|e| e.count > 0).collect(),
                    Err(_) => Vec::new(),
                };
                for event in due {
                    send_unawaited(&sender, event);
                }
            }
        });
        Self { counts, tx, flusher }
    }

    fn add(&self, event: AuditEvent) {
        let key = (event.app.clone(), event.citizen.clone(), event.method.clone(), event.outcome.clone());
        let first = match self.counts.lock() {
            Ok(mut counts) => match counts.get_mut(&key) {
                Some(counted) => {
                    counted.count = counted.count.saturating_add(1);
                    false
                }
                None => {
                    counts.insert(key, AuditEvent { count: 0, ..event.clone() });
                    true
                }
            },
            Err(_) => true,
        };
        if first {
            send_unawaited(&self.tx, event);
        }
    }
}

impl Drop for Refusals {
    fn drop(&mut self) {
        self.flusher.abort();
        // What was counted is written on the way out.
        if let Ok(mut counts) = self.counts.lock() {
            for (_, event) in counts.drain().filter(|(_, e)| e.count > 0) {
                send_unawaited(&self.tx, event);
            }
        }
    }
}

/// Queues `event` without waiting for its write (a refusal answers at
/// once); a full queue drops it with a warning.
fn send_unawaited(tx: &mpsc::Sender<Pending>, event: AuditEvent) {
    let (done, _) = oneshot::channel();
    if tx.try_send(Pending { event, done }).is_err() {
        tracing::warn!("the audit queue is full: a refusal record was dropped");
    }
}

/// Records accesses of one call's citizen in the audit log.
#[derive(Debug, Clone)]
pub struct Auditor {
    pub(crate) log: std::sync::Arc<AuditLog>,
    pub(crate) template: AuditEvent,
}

impl Auditor {
    /// Records durably that `records` were accessed, with `outcome`.
    pub async fn record(&self, records: Vec<String>, outcome: tonic::Code) -> Result<(), Status> {
        let event =
            AuditEvent { records, outcome: crate::errors::code_name(outcome).to_owned(), ..self.template.clone() };
        self.log.record(event).await
    }

    /// Records a refusal with `outcome`, aggregated per citizen and window,
    /// without waiting for the write.
    pub fn refused(&self, outcome: tonic::Code) {
        let event = AuditEvent {
            records: Vec::new(),
            outcome: crate::errors::code_name(outcome).to_owned(),
            ..self.template.clone()
        };
        self.log.refused(event);
    }
}

#[cfg(test)]
mod tests {
    use super::record::tests::event;
    use super::*;
    use std::path::PathBuf;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("lienthong-audit-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("audit.jsonl")
    }

    fn verify_file(path: &Path) -> verify::Verified {
        verify::verify(std::io::BufReader::new(File::open(path).unwrap()), None).unwrap()
    }

    #[tokio::test]
    async fn concurrent_records_form_one_chain_that_continues_after_a_restart() {
        let path = temp("chain");
        let config = AuditConfig { path: path.clone(), ..Default::default() };
        let log = std::sync::Arc::new(AuditLog::open(&config).await.unwrap());
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let log = log.clone();
                tokio::spawn(async move { log.record(event(i)).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(verify_file(&path).records, 200);
        drop(log);
        // A crash mid-write left half a record: trimmed, and the chain goes on.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"seq\":201,\"time_ms\":17").unwrap();
        assert!(verify_file(&path).torn_tail);
        let log = AuditLog::open(&config).await.unwrap();
        log.record(event(999)).await.unwrap();
        let v = verify_file(&path);
        assert_eq!((v.records, v.torn_tail), (201, false));
    }

    #[tokio::test]
    async fn a_log_ending_in_garbage_is_not_appended_to() {
        let path = temp("garbage");
        std::fs::write(&path, "this is not an audit record\n").unwrap();
        let e = AuditLog::open(&AuditConfig { path, ..Default::default() }).await.unwrap_err();
        assert!(e.to_string().contains("audit verify"), "{e}");
    }

    #[tokio::test]
    async fn pseudonyms_are_stable_under_a_configured_key_and_hide_the_number() {
        let key = temp("key").with_file_name("key");
        std::fs::write(&key, [7u8; 32]).unwrap();
        let config = AuditConfig { enabled: false, pseudonym_key_file: Some(key), ..Default::default() };
        let (a, b) = (AuditLog::open(&config).await.unwrap(), AuditLog::open(&config).await.unwrap());
        let lan = lienthong_adapter_core::CitizenId::parse("079190012345").unwrap();
        assert_eq!(a.pseudonym(&lan), b.pseudonym(&lan));
        assert_eq!(a.pseudonym(&lan).len(), 32);
        assert!(!a.pseudonym(&lan).contains("2345"));
    }
}
