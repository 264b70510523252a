//! The outbox in an SQLite file (the embedded default): one writer thread
//! owns the connection; every operation is a message to it, and the
//! submissions waiting when it turns to them share one transaction, committed
//! (and synced: WAL with `synchronous = FULL`) before any is answered.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

use super::{Delivery, Due, OutboxError, Outcome, State, Stored, Submission};

/// How often the log is copied into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The most operations one transaction takes.
const MAX_BATCH: usize = 512;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS reports (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    code TEXT UNIQUE,
    citizen TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    body BLOB NOT NULL,
    received_ms INTEGER NOT NULL,
    delivery INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    lease_owner TEXT,
    lease_until_ms INTEGER NOT NULL DEFAULT 0,
    upstream_id TEXT,
    reason TEXT,
    UNIQUE (citizen, idempotency_key)
);
CREATE INDEX IF NOT EXISTS reports_due ON reports (delivery, next_attempt_ms, id);
";

type Reply<T> = oneshot::Sender<Result<T, OutboxError>>;

enum Op {
    Submit(Submission, i64, Reply<Stored>),
    Claim { owner: String, now_ms: i64, lease_ms: i64, max: usize, reply: Reply<Vec<Due>> },
    Settle { code: String, owner: String, outcome: Outcome, now_ms: i64, reply: Reply<bool> },
    State(String, Reply<Option<State>>),
}

/// The outbox in an SQLite file (see the module).
#[derive(Debug, Clone)]
pub struct SqliteOutbox {
    tx: mpsc::Sender<Op>,
}

impl SqliteOutbox {
    /// Opens (creating) the store at `path` and starts its writer.
    pub fn open(path: &Path) -> Result<Self, OutboxError> {
        let connection = Connection::open(path)?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        // Every commit reaches the disk before it returns.
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.execute_batch(SCHEMA)?;
        // Checkpoints (copying the log into the database file, with its own
        // fsyncs) run beside the writer, not inside a commit a citizen waits
        // for.
        connection.pragma_update(None, "wal_autocheckpoint", 0)?;
        let checkpoints = Connection::open(path)?;
        let (tx, rx) = mpsc::channel(65_536);
        let writer_gone = tx.downgrade();
        std::thread::Builder::new()
            .name("lienthong-outbox-checkpoint".into())
            .spawn(move || {
                while writer_gone.upgrade().is_some() {
                    std::thread::sleep(CHECKPOINT_EVERY);
                    if let Err(e) = checkpoints.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                        tracing::warn!(error = %e, "checkpointing the reports store failed");
                    }
                }
            })
            .map_err(|e| OutboxError::Store(format!("starting the checkpointer: {e}")))?;
        std::thread::Builder::new()
            .name("lienthong-outbox".into())
            .spawn(move || writer(connection, rx))
            .map_err(|e| OutboxError::Store(format!("starting the writer: {e}")))?;
        Ok(Self { tx })
    }

    async fn ask<T>(&self, op: impl FnOnce(Reply<T>) -> Op) -> Result<T, OutboxError> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(op(reply)).await.map_err(|_| OutboxError::Closed)?;
        answer.await.map_err(|_| OutboxError::Closed)?
    }

    /// Stores `submission` at `now_ms` (Unix milliseconds), durably, unless
    /// its citizen's idempotency key names a stored report: then that one.
    pub async fn submit(&self, submission: Submission, now_ms: i64) -> Result<Stored, OutboxError> {
        self.ask(|reply| Op::Submit(submission, now_ms, reply)).await
    }

    /// Leases to `owner` for `lease_ms` up to `max` reports due at `now_ms`,
    /// oldest first; reports leased to another until later are skipped.
    pub async fn claim(&self, owner: &str, now_ms: i64, lease_ms: i64, max: usize) -> Result<Vec<Due>, OutboxError> {
        let owner = owner.to_owned();
        self.ask(|reply| Op::Claim { owner, now_ms, lease_ms, max, reply }).await
    }

    /// Records what became of `owner`'s delivery of `code`; false when
    /// `owner` no longer holds it (its lease ended and another took it, or
    /// it was settled), and nothing changes.
    pub async fn settle(&self, code: &str, owner: &str, outcome: Outcome, now_ms: i64) -> Result<bool, OutboxError> {
        let (code, owner) = (code.to_owned(), owner.to_owned());
        self.ask(|reply| Op::Settle { code, owner, outcome, now_ms, reply }).await
    }

    /// Where report `code` stands; `None` when there is no such report.
    pub async fn state(&self, code: &str) -> Result<Option<State>, OutboxError> {
        let code = code.to_owned();
        self.ask(|reply| Op::State(code, reply)).await
    }
}

/// Runs operations until every handle is dropped, a batch per transaction.
fn writer(mut connection: Connection, mut rx: mpsc::Receiver<Op>) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        run_batch(&mut connection, batch);
    }
}

/// An operation's answer, sent once its transaction's fate is known (given
/// the commit's error, if it failed).
type Answer = Box<dyn FnOnce(Option<&str>) + Send>;

/// The answer `reply` gets: `result`, unless the commit failed.
fn answer<T: Send + 'static>(reply: Reply<T>, result: Result<T, OutboxError>) -> Answer {
    Box::new(move |failed: Option<&str>| {
        let _ = reply.send(match failed {
            Some(e) => Err(OutboxError::Store(e.to_owned())),
            None => result,
        });
    })
}

/// Runs `op` in `transaction`, or (when none could be begun) fails it.
fn run(op: Op, transaction: Result<&rusqlite::Transaction<'_>, &str>) -> Answer {
    let begun = transaction.map_err(|e| OutboxError::Store(e.to_owned()));
    match op {
        Op::Submit(s, now_ms, reply) => answer(reply, begun.and_then(|t| submit(t, &s, now_ms))),
        Op::Claim { owner, now_ms, lease_ms, max, reply } => {
            answer(reply, begun.and_then(|t| claim(t, &owner, now_ms, lease_ms, max)))
        }
        Op::Settle { code, owner, outcome, now_ms, reply } => {
            answer(reply, begun.and_then(|t| settle(t, &code, &owner, &outcome, now_ms)))
        }
        Op::State(code, reply) => answer(reply, begun.and_then(|t| state(t, &code))),
    }
}

fn run_batch(connection: &mut Connection, batch: Vec<Op>) {
    let transaction = match connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
        Ok(t) => t,
        Err(e) => {
            let e = e.to_string();
            for op in batch {
                run(op, Err(&e))(None);
            }
            return;
        }
    };
    let answers: Vec<Answer> = batch.into_iter().map(|op| run(op, Ok(&transaction))).collect();
    // Nothing is answered before the commit: an answer promises the disk.
    let failed = transaction.commit().err().map(|e| e.to_string());
    for answer in answers {
        answer(failed.as_deref());
    }
}

/// A report's code: `PA-<Vietnam date>-<number>`, unique in the store.
fn code(id: i64, received_ms: i64) -> String {
    let days = (received_ms + 7 * 3_600_000).div_euclid(86_400_000);
    let date = time::Date::from_julian_day(2_440_588 + i32::try_from(days).unwrap_or(0))
        .map_or_else(|_| "00000000".to_owned(), |d| format!("{:04}{:02}{:02}", d.year(), u8::from(d.month()), d.day()));
    format!("PA-{date}-{id:07}")
}

fn submit(t: &rusqlite::Transaction<'_>, s: &Submission, now_ms: i64) -> Result<Stored, OutboxError> {
    let earlier = t
        .prepare_cached("SELECT code, received_ms FROM reports WHERE citizen = ?1 AND idempotency_key = ?2")?
        .query_row(params![s.citizen, s.idempotency_key], |row| {
            Ok(Stored { code: row.get(0)?, received_ms: row.get(1)?, new: false })
        })
        .optional()?;
    if let Some(earlier) = earlier {
        return Ok(earlier);
    }
    let id: i64 = t
        .prepare_cached(
            "INSERT INTO reports (citizen, idempotency_key, body, received_ms, next_attempt_ms) \
             VALUES (?1, ?2, ?3, ?4, ?4) RETURNING id",
        )?
        .query_row(params![s.citizen, s.idempotency_key, s.body, now_ms], |row| row.get(0))?;
    let code = code(id, now_ms);
    t.prepare_cached("UPDATE reports SET code = ?1 WHERE id = ?2")?.execute(params![code, id])?;
    Ok(Stored { code, received_ms: now_ms, new: true })
}

fn claim(
    t: &rusqlite::Transaction<'_>,
    owner: &str,
    now_ms: i64,
    lease_ms: i64,
    max: usize,
) -> Result<Vec<Due>, OutboxError> {
    let mut select = t.prepare_cached(
        "SELECT id, code, idempotency_key, body, attempts FROM reports \
         WHERE delivery = 0 AND next_attempt_ms <= ?1 AND lease_until_ms <= ?1 ORDER BY id LIMIT ?2",
    )?;
    let rows: Vec<(i64, Due)> = select
        .query_map(params![now_ms, i64::try_from(max).unwrap_or(i64::MAX)], |row| {
            Ok((
                row.get(0)?,
                Due { code: row.get(1)?, idempotency_key: row.get(2)?, body: row.get(3)?, attempts: row.get(4)? },
            ))
        })?
        .collect::<Result<_, _>>()?;
    let mut lease = t.prepare_cached("UPDATE reports SET lease_owner = ?1, lease_until_ms = ?2 WHERE id = ?3")?;
    for (id, _) in &rows {
        lease.execute(params![owner, now_ms.saturating_add(lease_ms), id])?;
    }
    Ok(rows.into_iter().map(|(_, due)| due).collect())
}

fn settle(
    t: &rusqlite::Transaction<'_>,
    code: &str,
    owner: &str,
    outcome: &Outcome,
    now_ms: i64,
) -> Result<bool, OutboxError> {
    // (delivery, the upstream's id, the reason, when to try again)
    let (delivery, upstream_id, reason, next_attempt_ms) = match outcome {
        Outcome::Delivered(id) => (1, Some(id.as_str()), None, None),
        Outcome::Rejected(why) => (2, None, Some(why.as_str()), None),
        Outcome::RetryAfter(after) => {
            (0, None, None, Some(now_ms.saturating_add(i64::try_from(after.as_millis()).unwrap_or(i64::MAX))))
        }
    };
    // Only the lease's holder settles a report still pending.
    let changed = t
        .prepare_cached(
            "UPDATE reports SET delivery = ?3, upstream_id = COALESCE(?4, upstream_id), reason = COALESCE(?5, reason), \
             next_attempt_ms = COALESCE(?6, next_attempt_ms), attempts = attempts + 1, lease_owner = NULL, \
             lease_until_ms = 0 WHERE code = ?1 AND lease_owner = ?2 AND delivery = 0",
        )?
        .execute(params![code, owner, delivery, upstream_id, reason, next_attempt_ms])?;
    Ok(changed == 1)
}

fn state(t: &rusqlite::Transaction<'_>, code: &str) -> Result<Option<State>, OutboxError> {
    let found = t
        .query_row(
            "SELECT delivery, attempts, upstream_id, reason FROM reports WHERE code = ?1",
            params![code],
            |row| Ok((row.get::<_, i64>(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
        )
        .optional()?;
    found
        .map(|(delivery, attempts, upstream_id, reason)| {
            let delivery = Delivery::from_code(delivery)
                .ok_or_else(|| OutboxError::Store(format!("report {code} has an unknown delivery state")))?;
            Ok(State { delivery, attempts, upstream_id, reason })
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn temp(name: &str) -> std::path::PathBuf {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let dir = std::env::temp_dir().join(format!("lienthong-outbox-{}-{name}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("reports.sqlite")
    }

    fn submission(citizen: &str, key: &str) -> Submission {
        Submission {
            citizen: citizen.into(),
            idempotency_key: key.into(),
            body: format!("{citizen}/{key}").into_bytes(),
        }
    }

    /// 2026-12-08 10:00 in Vietnam.
    const NOW: i64 = 1_796_698_800_000;

    #[tokio::test]
    async fn concurrent_submissions_are_stored_once_per_key_and_survive_a_reopen() {
        let path = temp("submit");
        let outbox = SqliteOutbox::open(&path).unwrap();
        // 300 submissions at once, every key sent twice, one key by two
        // citizens.
        let tasks: Vec<_> = (0..300)
            .map(|i| {
                let outbox = outbox.clone();
                let (citizen, key) = if i == 299 {
                    ("c-b".to_owned(), "k-0".to_owned())
                } else {
                    ("c-a".into(), format!("k-{}", i / 2))
                };
                tokio::spawn(async move { outbox.submit(submission(&citizen, &key), NOW + i).await.unwrap() })
            })
            .collect();
        let mut stored = Vec::new();
        for t in tasks {
            stored.push(t.await.unwrap());
        }
        let codes: std::collections::BTreeSet<&str> = stored.iter().map(|s| s.code.as_str()).collect();
        assert_eq!(codes.len(), 151, "150 keys of one citizen, one of another");
        assert_eq!(stored.iter().filter(|s| s.new).count(), 151);
        assert!(stored.iter().all(|s| s.code.starts_with("PA-20261208-")), "{:?}", stored[0]);
        // The same key again, after the fact: the first report.
        let again = outbox.submit(submission("c-a", "k-3"), NOW + 10_000).await.unwrap();
        assert!(!again.new);
        drop(outbox);

        // Reopened (a restart): everything acknowledged is there.
        let outbox = SqliteOutbox::open(&path).unwrap();
        for s in &stored {
            assert_eq!(outbox.state(&s.code).await.unwrap().unwrap().delivery, Delivery::Pending);
        }
        assert_eq!(outbox.submit(submission("c-a", "k-3"), NOW).await.unwrap().code, again.code);
        assert!(outbox.state("PA-20261208-9999999").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn workers_lease_reports_oldest_first_and_one_at_a_time() {
        let outbox = SqliteOutbox::open(&temp("claim")).unwrap();
        let mut codes = Vec::new();
        for i in 0..5 {
            codes.push(outbox.submit(submission("c", &format!("k{i}")), NOW + i).await.unwrap().code);
        }
        let lease = 120_000;
        let a = outbox.claim("replica-a", NOW + 10, lease, 3).await.unwrap();
        assert_eq!(a.iter().map(|d| d.code.as_str()).collect::<Vec<_>>(), &codes[..3]);
        // Another replica gets the rest, not the leased ones.
        let b = outbox.claim("replica-b", NOW + 10, lease, 10).await.unwrap();
        assert_eq!(b.iter().map(|d| d.code.as_str()).collect::<Vec<_>>(), &codes[3..]);
        assert!(outbox.claim("replica-c", NOW + 10, lease, 10).await.unwrap().is_empty());

        // a delivers one, is refused one for good, and finds the upstream down
        // for the third.
        assert!(outbox.settle(&codes[0], "replica-a", Outcome::Delivered("up-1".into()), NOW + 20).await.unwrap());
        assert!(
            outbox
                .settle(&codes[1], "replica-a", Outcome::Rejected("not in this city".into()), NOW + 20)
                .await
                .unwrap()
        );
        let retry = Outcome::RetryAfter(Duration::from_secs(60));
        assert!(outbox.settle(&codes[2], "replica-a", retry, NOW + 20).await.unwrap());
        // Settled ones are never claimed again; the retried one after its time.
        assert!(outbox.claim("replica-c", NOW + 59_000, lease, 10).await.unwrap().is_empty());
        let later = outbox.claim("replica-c", NOW + 61_000, lease, 10).await.unwrap();
        assert_eq!(later.iter().map(|d| (d.code.as_str(), d.attempts)).collect::<Vec<_>>(), [(codes[2].as_str(), 1)]);
        let delivered = outbox.state(&codes[0]).await.unwrap().unwrap();
        assert_eq!((delivered.delivery, delivered.upstream_id.as_deref()), (Delivery::Delivered, Some("up-1")));
        let rejected = outbox.state(&codes[1]).await.unwrap().unwrap();
        assert_eq!((rejected.delivery, rejected.reason.as_deref()), (Delivery::Rejected, Some("not in this city")));

        // b crashed: its lease ends and another takes its reports; b, back
        // late, can no longer settle them.
        let taken = outbox.claim("replica-c", NOW + 10 + lease, lease, 10).await.unwrap();
        assert_eq!(taken.iter().map(|d| d.code.as_str()).collect::<Vec<_>>(), &codes[3..]);
        assert!(!outbox.settle(&codes[3], "replica-b", Outcome::Delivered("up-x".into()), NOW + 40_000).await.unwrap());
        assert!(outbox.settle(&codes[3], "replica-c", Outcome::Delivered("up-4".into()), NOW + 40_000).await.unwrap());
        assert_eq!(outbox.state(&codes[3]).await.unwrap().unwrap().upstream_id.as_deref(), Some("up-4"));
    }

    /// Run as a child by the test below: submits without end (each key
    /// twice, concurrently), printing each acknowledged code.
    async fn submit_until_killed(path: &Path) {
        let outbox = SqliteOutbox::open(path).unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for worker in 0..32 {
            let outbox = outbox.clone();
            tasks.spawn(async move {
                for n in 0.. {
                    let key = format!("k-{}", (worker * 1_000_000 + n) / 2 * 2 + worker % 2);
                    let stored = outbox.submit(submission("c", &key), NOW).await.unwrap();
                    println!("ACK {key} {}", stored.code);
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    }

    #[tokio::test]
    async fn a_kill_9_during_submissions_loses_nothing_acknowledged() {
        if let Ok(path) = std::env::var("LIENTHONG_OUTBOX_CHILD") {
            submit_until_killed(Path::new(&path)).await;
            return;
        }
        let path = temp("kill");
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "outbox::sqlite::tests::a_kill_9_during_submissions_loses_nothing_acknowledged",
                "--exact",
                "--nocapture",
            ])
            .env("LIENTHONG_OUTBOX_CHILD", &path)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut acknowledged = Vec::new();
        let lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
        for line in lines {
            let line = line.unwrap();
            if let Some(ack) = line.strip_prefix("ACK ") {
                let (key, code) = ack.split_once(' ').unwrap();
                acknowledged.push((key.to_owned(), code.to_owned()));
                if acknowledged.len() == 2_000 {
                    break;
                }
            }
        }
        // SIGKILL, mid-load: no chance to flush or close anything.
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(acknowledged.len(), 2_000, "the child stopped acknowledging");

        let outbox = SqliteOutbox::open(&path).unwrap();
        for (key, code) in &acknowledged {
            assert!(outbox.state(code).await.unwrap().is_some(), "{code} was acknowledged and is gone");
            // The key still names that very report.
            assert_eq!(&outbox.submit(submission("c", key), NOW).await.unwrap().code, code);
        }
        let connection = Connection::open(&path).unwrap();
        let check: String = connection.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(check, "ok");
    }

    #[test]
    fn codes_carry_the_date_in_vietnam() {
        // 2026-12-07 20:00 UTC is 2026-12-08 03:00 in Vietnam.
        assert_eq!(code(42, 1_796_673_600_000), "PA-20261208-0000042");
        assert_eq!(code(1, 0), "PA-19700101-0000001");
    }
}
