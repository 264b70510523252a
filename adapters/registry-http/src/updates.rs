//! Dossier status changes: the hub that fans them out to watchers, the
//! signed-webhook check, and the poller.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use lienthong_adapter_core::shared::Delivery as Announced;
use lienthong_adapter_core::{AdapterError, CitizenId, ErrorKind, OwnedDossier, Shared, api};
use prost::Message as _;
use serde::Deserialize;
use tokio::sync::broadcast;

use crate::core::Portal;

/// Header carrying the push's Unix time in seconds.
pub const TIMESTAMP_HEADER: &str = "x-lienthong-timestamp";
/// Header carrying `sha256=<hex of HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub const SIGNATURE_HEADER: &str = "x-lienthong-signature";

/// Fans dossier states out to the watchers of each code.
#[derive(Debug, Default)]
pub(crate) struct Hub {
    channels: Mutex<HashMap<String, broadcast::Sender<OwnedDossier>>>,
}

impl Hub {
    pub(crate) fn subscribe(&self, code: &str) -> broadcast::Receiver<OwnedDossier> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        channels.entry(code.to_owned()).or_insert_with(|| broadcast::channel(16).0).subscribe()
    }

    /// Codes someone watches (channels nobody listens to are dropped).
    pub(crate) fn watched(&self) -> Vec<String> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        channels.retain(|_, tx| tx.receiver_count() > 0);
        channels.keys().cloned().collect()
    }

    pub(crate) fn is_watched(&self, code: &str) -> bool {
        self.channels.lock().unwrap_or_else(|p| p.into_inner()).get(code).is_some_and(|tx| tx.receiver_count() > 0)
    }

    pub(crate) fn publish(&self, dossier: OwnedDossier) {
        let channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = channels.get(&dossier.dossier.dossier_code) {
            let _ = tx.send(dossier);
        }
    }
}

/// A verified push. `event_id`, when the portal sends one, names the
/// delivery (a status change reported twice has two); without it the
/// signature does (over the timestamp and the whole body).
#[derive(Debug, Deserialize)]
pub(crate) struct Push {
    pub dossier_code: String,
    pub status: i32,
    #[serde(default)]
    pub event_id: Option<String>,
}

/// A push whose signature and age check out.
#[derive(Debug)]
pub(crate) struct Delivery {
    pub push: Push,
    /// What makes it unique, for replay protection.
    pub key: String,
    /// Its timestamp (Unix seconds).
    pub at: i64,
}

/// Verifies signed pushes; remembers applied ones.
pub(crate) struct WebhookVerifier {
    key: hmac::Key,
    max_skew: Duration,
    /// Deliveries applied, kept where a restart finds them.
    pub(crate) seen: Arc<crate::seen::SeenStore>,
}

impl std::fmt::Debug for WebhookVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookVerifier").field("max_skew", &self.max_skew).finish_non_exhaustive()
    }
}

fn refused(why: &str) -> AdapterError {
    tracing::warn!(upstream = "registry", why, "webhook refused");
    AdapterError::new(ErrorKind::Unauthenticated, format!("webhook refused: {why}"))
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// Now, in Unix seconds.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

impl WebhookVerifier {
    /// A verifier with `secret`, remembering applied deliveries in
    /// `replay_file` (memory only without one).
    pub(crate) fn new(
        secret: &str,
        max_skew: Duration,
        replay_file: Option<&std::path::Path>,
    ) -> Result<Self, AdapterError> {
        let horizon = 2 * max_skew.as_secs() as i64;
        let seen = Arc::new(crate::seen::SeenStore::open(replay_file, horizon, unix_now())?);
        Ok(Self { key: hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()), max_skew, seen })
    }

    /// How long a delivery is remembered: twice the skew allowed (older
    /// pushes are refused by their timestamp anyway).
    pub(crate) fn horizon(&self) -> Duration {
        self.max_skew * 2
    }

    /// Records `key` as applied, durably (the fsync off the async workers).
    pub(crate) async fn applied(&self, key: String, at: i64) -> Result<(), AdapterError> {
        let seen = self.seen.clone();
        tokio::task::spawn_blocking(move || seen.insert(&key, at, unix_now()))
            .await
            .map_err(|_| AdapterError::new(ErrorKind::Unavailable, "recording the webhook delivery failed"))?
    }

    /// Checks the signature over timestamp and body and the timestamp's age;
    /// then parses the push. Whether it was applied before is for the caller
    /// to ask ([`Self::seen`]), after which it records it.
    pub(crate) fn verify(&self, headers: &BTreeMap<String, String>, body: &[u8]) -> Result<Delivery, AdapterError> {
        let timestamp = headers.get(TIMESTAMP_HEADER).ok_or_else(|| refused("no timestamp header"))?;
        let ts: i64 = timestamp.trim().parse().map_err(|_| refused("the timestamp is not Unix seconds"))?;
        let signature = headers
            .get(SIGNATURE_HEADER)
            .and_then(|s| s.trim().strip_prefix("sha256="))
            .and_then(hex_decode)
            .ok_or_else(|| refused("no sha256 signature header"))?;
        let mut signed = Vec::with_capacity(timestamp.len() + 1 + body.len());
        signed.extend_from_slice(timestamp.trim().as_bytes());
        signed.push(b'.');
        signed.extend_from_slice(body);
        // Constant-time comparison.
        hmac::verify(&self.key, &signed, &signature).map_err(|_| refused("the signature does not verify"))?;
        let skew = self.max_skew.as_secs() as i64;
        if (unix_now() - ts).abs() > skew {
            return Err(refused("the timestamp is too far from our clock"));
        }
        let push: Push = serde_json::from_slice(body).map_err(|_| {
            AdapterError::new(
                ErrorKind::InvalidArgument,
                "webhook body must be JSON: {\"dossier_code\": ..., \"status\": 1-10, \"event_id\": optional}",
            )
        })?;
        let key = match &push.event_id {
            Some(id) if !id.is_empty() && id.len() <= 200 && !id.contains(char::is_whitespace) => format!("event:{id}"),
            Some(_) => {
                return Err(AdapterError::new(
                    ErrorKind::InvalidArgument,
                    "event_id must be 1 to 200 characters without whitespace",
                ));
            }
            None => format!("sig:{}", signature.iter().map(|b| format!("{b:02x}")).collect::<String>()),
        };
        Ok(Delivery { push, key, at: ts })
    }
}

/// The topic dossier states travel on between replicas.
const TOPIC: &str = "dossiers";
/// The set of dossiers watched on some replica.
const WATCHED: &str = "watched";
/// How often a replica marks the dossiers it watches, and how long a mark
/// lasts (a replica that stops marking, crashed, is forgotten after that).
const MARK_EVERY: Duration = Duration::from_secs(5);
const MARK_TTL: Duration = Duration::from_secs(15);

/// Dossier states, shared with this instance on every replica: a state read
/// on one replica (after a push, or by the poller) reaches the watchers on
/// all of them, in the order published.
#[derive(Debug)]
pub(crate) struct Changes {
    pub(crate) shared: Arc<dyn Shared>,
    pub(crate) hub: Arc<Hub>,
    pub(crate) portal: Arc<Portal>,
}

impl Changes {
    /// Sends `dossier`'s state to its watchers on every replica. When the
    /// others could not be told, this replica's watchers still have it and
    /// the error says so (a push fails, so the portal sends it again).
    pub(crate) async fn announce(&self, dossier: OwnedDossier) -> Result<(), AdapterError> {
        let owner = dossier.owner.expose().as_bytes();
        let mut message = Vec::with_capacity(1 + owner.len() + dossier.dossier.encoded_len());
        message.push(owner.len() as u8);
        message.extend_from_slice(owner);
        dossier.dossier.encode(&mut message).unwrap_or_default();
        self.shared.publish(TOPIC, message).await
    }

    /// Whether anyone on any replica may watch `code` (when the other
    /// replicas cannot be asked, they may).
    pub(crate) async fn is_watched(&self, code: &str) -> bool {
        self.hub.is_watched(code) || self.shared.is_marked(WATCHED, code).await != Some(false)
    }

    /// Tells the other replicas that `code` is watched here (at once, so a
    /// push arriving at another replica right after is read, asked twice if
    /// Redis missed the first; then every [`MARK_EVERY`] while watched, by
    /// [`keep_marked`]).
    pub(crate) async fn watching(&self, code: &str) {
        let code = [code.to_owned()];
        if !self.shared.mark(WATCHED, &code, MARK_TTL).await {
            self.shared.mark(WATCHED, &code, MARK_TTL).await;
        }
    }

    /// The codes watched on any replica.
    async fn watched_anywhere(&self) -> Vec<String> {
        let mut codes = self.hub.watched();
        codes.extend(self.shared.marked(WATCHED).await);
        codes.sort_unstable();
        codes.dedup();
        codes
    }
}

/// A state as [`Changes::announce`] sent it; `None` when it is not one.
fn decode(message: &[u8]) -> Option<OwnedDossier> {
    let (&len, rest) = message.split_first()?;
    let owner = std::str::from_utf8(rest.get(..usize::from(len))?).ok()?;
    let dossier = api::Dossier::decode(rest.get(usize::from(len)..)?).ok()?;
    Some(OwnedDossier { dossier, owner: CitizenId::parse(owner).ok()? })
}

/// Hands the states any replica announces to this replica's watchers until
/// the adapter is dropped. When states were missed, the watched dossiers
/// are read again.
pub(crate) async fn follow(changes: Arc<Changes>, mut announced: broadcast::Receiver<Announced>) {
    loop {
        match announced.recv().await {
            Ok(Announced::Message(message)) => match decode(&message) {
                Some(d) => changes.hub.publish(d),
                None => tracing::warn!(upstream = "registry", "a shared dossier state did not decode"),
            },
            Ok(Announced::Missed) | Err(broadcast::error::RecvError::Lagged(_)) => {
                for code in changes.hub.watched() {
                    match changes.portal.dossier(&code, None).await {
                        Ok(d) => changes.hub.publish(d),
                        Err(e) => {
                            tracing::warn!(upstream = "registry", error = %e, "re-reading a watched dossier failed")
                        }
                    }
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Keeps this replica's watched dossiers marked for the other replicas, every
/// [`MARK_EVERY`], until the adapter is dropped (a task of its own: slow
/// re-reads elsewhere never let the marks lapse).
pub(crate) async fn keep_marked(changes: Arc<Changes>) {
    let mut mark = tokio::time::interval(MARK_EVERY);
    mark.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        mark.tick().await;
        let watched = changes.hub.watched();
        changes.shared.mark(WATCHED, &watched, MARK_TTL).await;
    }
}

/// Re-reads of dossiers asked for by replayed pushes: one at a time per
/// dossier, a quarter second after the ask, so any number of replays costs
/// the portal at most four reads a second per dossier, and a change reported
/// by an identical push is still read.
#[derive(Debug, Default)]
pub(crate) struct DeferredReads {
    pending: Mutex<std::collections::HashSet<String>>,
}

impl DeferredReads {
    /// Schedules a re-read of `code` unless one is pending.
    pub(crate) fn schedule(self: &Arc<Self>, code: &str, changes: Arc<Changes>) {
        if !self.pending.lock().unwrap_or_else(|p| p.into_inner()).insert(code.to_owned()) {
            return;
        }
        let (this, code) = (self.clone(), code.to_owned());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(250)).await;
            // Unmarked before the read: a push arriving during it asks again.
            this.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&code);
            match changes.portal.dossier(&code, None).await {
                Ok(d) => {
                    let _ = changes.announce(d).await;
                }
                Err(e) => tracing::warn!(upstream = "registry", error = %e, "re-reading a pushed dossier failed"),
            }
        });
    }
}

/// Polls the dossiers watched on any replica and announces those that
/// changed. One replica polls at a time (it holds a lease, renewed each
/// round), so more replicas do not poll the portal more; when the holder
/// stops, another takes over within three rounds.
pub(crate) async fn poll(changes: Arc<Changes>, every: Duration) {
    let mut last: HashMap<String, (i32, usize)> = HashMap::new();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !changes.shared.hold("poller", every * 3).await {
            // Another replica polls; what it last saw is its own.
            last.clear();
            continue;
        }
        let watched = changes.watched_anywhere().await;
        last.retain(|code, _| watched.contains(code));
        for code in watched {
            match changes.portal.dossier(&code, None).await {
                Ok(d) => {
                    let state = (d.dossier.status, d.dossier.history.len());
                    if last.get(&code) != Some(&state) {
                        // Remembered only once the other replicas have it:
                        // an announcement Redis missed is made again next
                        // round.
                        if changes.announce(d).await.is_ok() {
                            last.insert(code, state);
                        }
                    }
                }
                Err(e) => tracing::warn!(upstream = "registry", error = %e, "polling a watched dossier failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(secret: &str, ts: i64, body: &str) -> BTreeMap<String, String> {
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
        let tag = hmac::sign(&key, format!("{ts}.{body}").as_bytes());
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        BTreeMap::from([
            (TIMESTAMP_HEADER.to_owned(), ts.to_string()),
            (SIGNATURE_HEADER.to_owned(), format!("sha256={hex}")),
        ])
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn pushes_are_verified_and_keyed_by_event_id_or_signature() {
        let v = WebhookVerifier::new(SECRET, Duration::from_secs(300), None).unwrap();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
        let body = r#"{"dossier_code":"000.00.04.H29-251112-0004","status":4}"#;
        let headers = signed(SECRET, now, body);
        let d = v.verify(&headers, body.as_bytes()).unwrap();
        assert_eq!(d.push.status, 4);
        assert!(d.key.starts_with("sig:"));
        // The same push again: the same delivery.
        assert_eq!(v.verify(&headers, body.as_bytes()).unwrap().key, d.key);
        // Two changes with the same status, told apart by their event ids.
        let (a, b) = (
            r#"{"dossier_code":"000.00.04.H29-251112-0004","status":4,"event_id":"e-1"}"#,
            r#"{"dossier_code":"000.00.04.H29-251112-0004","status":4,"event_id":"e-2"}"#,
        );
        let ka = v.verify(&signed(SECRET, now, a), a.as_bytes()).unwrap().key;
        let kb = v.verify(&signed(SECRET, now, b), b.as_bytes()).unwrap().key;
        assert_eq!((ka.as_str(), kb.as_str()), ("event:e-1", "event:e-2"));
        // Another body under the same signature.
        let e = v.verify(&signed(SECRET, now + 1, body), body.replace('4', "9").as_bytes()).unwrap_err();
        assert!(e.message().contains("does not verify"));
        // A wrong secret, an old push, no headers, garbage signature.
        assert!(v.verify(&signed("another-secret-another-secret-xx", now, body), body.as_bytes()).is_err());
        assert!(
            v.verify(&signed(SECRET, now - 3600, body), body.as_bytes()).unwrap_err().message().contains("too far")
        );
        assert!(v.verify(&BTreeMap::new(), body.as_bytes()).is_err());
        let mut bad = signed(SECRET, now + 2, body);
        bad.insert(SIGNATURE_HEADER.into(), "sha256=zz".into());
        assert!(v.verify(&bad, body.as_bytes()).is_err());
        // Authentic but malformed: INVALID_ARGUMENT.
        assert_eq!(v.verify(&signed(SECRET, now + 3, "[]"), b"[]").unwrap_err().kind(), ErrorKind::InvalidArgument);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Any headers and body, signed or not: a clear refusal or a push,
        /// never a panic; an unsigned one is never accepted.
        #[test]
        fn arbitrary_pushes_are_refused_cleanly(
            ts in proptest::option::of(".{0,24}"),
            sig in proptest::option::of(".{0,80}"),
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
        ) {
            let v = WebhookVerifier::new(SECRET, Duration::from_secs(300), None).unwrap();
            let mut headers = BTreeMap::new();
            if let Some(ts) = ts {
                headers.insert(TIMESTAMP_HEADER.to_owned(), ts);
            }
            if let Some(sig) = sig {
                headers.insert(SIGNATURE_HEADER.to_owned(), sig);
            }
            let e = v.verify(&headers, &body).unwrap_err();
            proptest::prop_assert_eq!(e.kind(), ErrorKind::Unauthenticated);
        }

        /// Correctly signed garbage (a compromised or buggy portal): a clear
        /// error, never a panic.
        #[test]
        fn signed_garbage_is_refused_cleanly(body in ".{0,300}", status in proptest::prelude::any::<i64>()) {
            let v = WebhookVerifier::new(SECRET, Duration::from_secs(300), None).unwrap();
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
            for body in [body.clone(), format!("{{\"dossier_code\":{body:?},\"status\":{status}}}")] {
                if let Err(e) = v.verify(&signed(SECRET, now, &body), body.as_bytes()) {
                    proptest::prop_assert!(!e.message().is_empty());
                }
            }
        }
    }
}
