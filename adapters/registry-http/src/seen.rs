//! Webhook deliveries already applied, kept where a restart finds them: an
//! append-only file of `<unix seconds> <key>` lines, each fsynced before the
//! push is acknowledged, pruned of entries older than the replay horizon
//! (twice `max_skew`: older pushes are refused by their timestamp anyway).
//!
//! A delivery is recorded only after it was applied, so a push whose re-read
//! failed (answered 503) is applied when the portal retries it.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use lienthong_adapter_core::{AdapterError, ErrorKind};

/// Keys of applied deliveries, with their push times.
#[derive(Debug)]
pub(crate) struct SeenStore {
    path: Option<PathBuf>,
    horizon: i64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    seen: HashMap<String, i64>,
    file: Option<File>,
    /// Lines in the file, live or not: when far more than live, it is
    /// rewritten.
    lines: usize,
}

fn unavailable(what: &str, path: &Path, e: std::io::Error) -> AdapterError {
    AdapterError::new(ErrorKind::Unavailable, format!("{what} the webhook replay file {}: {e}", path.display()))
}

impl SeenStore {
    /// Loads `path` (created if missing), keeping entries within `horizon`
    /// seconds of `now`; without a path, memory only.
    pub(crate) fn open(path: Option<&Path>, horizon: i64, now: i64) -> Result<Self, AdapterError> {
        let mut state = State::default();
        if let Some(path) = path {
            if let Ok(file) = File::open(path) {
                for line in BufReader::new(file).lines() {
                    let line = line.map_err(|e| unavailable("reading", path, e))?;
                    // A torn last line (a crash mid-write) is skipped.
                    if let Some((at, key)) = line.split_once(' ')
                        && let Ok(at) = at.parse::<i64>()
                        && now - at <= horizon
                    {
                        state.seen.insert(key.to_owned(), at);
                    }
                }
            }
            state.file = Some(rewrite(path, &state.seen)?);
            state.lines = state.seen.len();
        }
        Ok(Self { path: path.map(Path::to_path_buf), horizon, state: Mutex::new(state) })
    }

    /// Whether `key` was applied already.
    pub(crate) fn contains(&self, key: &str) -> bool {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).seen.contains_key(key)
    }

    /// Records `key` (pushed at `at`) as applied, durably.
    pub(crate) fn insert(&self, key: &str, at: i64, now: i64) -> Result<(), AdapterError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let horizon = self.horizon;
        state.seen.retain(|_, t| now - *t <= horizon);
        state.seen.insert(key.to_owned(), at);
        let Some(path) = &self.path else { return Ok(()) };
        if state.lines > 10_000 && state.lines > 4 * state.seen.len() {
            state.file = Some(rewrite(path, &state.seen)?);
            state.lines = state.seen.len();
            return Ok(());
        }
        let file =
            state.file.as_mut().ok_or_else(|| unavailable("writing", path, std::io::ErrorKind::NotFound.into()))?;
        file.write_all(format!("{at} {key}\n").as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(|e| unavailable("writing", path, e))?;
        state.lines += 1;
        Ok(())
    }
}

/// Writes `seen` to `path` afresh (through a temporary file and a rename) and
/// opens it for appending.
fn rewrite(path: &Path, seen: &HashMap<String, i64>) -> Result<File, AdapterError> {
    let tmp = path.with_extension("tmp");
    let mut out = File::create(&tmp).map_err(|e| unavailable("creating", &tmp, e))?;
    for (key, at) in seen {
        out.write_all(format!("{at} {key}\n").as_bytes()).map_err(|e| unavailable("writing", &tmp, e))?;
    }
    out.sync_all().map_err(|e| unavailable("writing", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| unavailable("replacing", path, e))?;
    OpenOptions::new().append(true).open(path).map_err(|e| unavailable("opening", path, e))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn applied_deliveries_survive_a_restart_until_they_age_out() {
        let dir = std::env::temp_dir().join(format!("lienthong-seen-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("portal.seen");
        let _ = std::fs::remove_file(&path);
        let store = SeenStore::open(Some(&path), 600, 1_000).unwrap();
        assert!(!store.contains("a"));
        store.insert("a", 1_000, 1_000).unwrap();
        store.insert("b", 1_100, 1_100).unwrap();
        assert!(store.contains("a"));
        drop(store);
        // A torn last line from a crash is ignored.
        OpenOptions::new().append(true).open(&path).unwrap().write_all(b"12").unwrap();
        let again = SeenStore::open(Some(&path), 600, 1_200).unwrap();
        assert!(again.contains("a") && again.contains("b"));
        // Past the horizon, forgotten (the timestamp check refuses them).
        let later = SeenStore::open(Some(&path), 600, 1_650).unwrap();
        assert!(!later.contains("a") && later.contains("b"));
    }
}
