//! What an adapter instance shares with the same instance on the gateway's
//! other replicas: messages every replica sees in one order, ids seen once
//! across replicas, leases held by one replica at a time, and marks (a set
//! whose members expire).
//!
//! With the gateway's `[cluster]` section these live in Redis; without it
//! the instance is [`Alone`]: messages reach this replica only, nothing is
//! seen elsewhere, every lease is held, no mark is kept. Adapters are written
//! once against [`Shared`] and work either way.
//!
//! Names (topics, ids, leases, sets) are the instance's own: the gateway
//! keeps each instance's apart. What an adapter publishes and marks may be
//! personal data: the gateway seals it before it leaves the process.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::{AdapterError, ErrorKind};

/// How many messages a subscriber may fall behind before it misses some.
pub const SUBSCRIBER_BACKLOG: usize = 1024;

/// What a subscription receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// A message, in the order it was published among all replicas.
    Message(Arc<[u8]>),
    /// Messages were missed (the shared log was trimmed while this replica
    /// was away, or the subscriber fell behind): whatever the messages keep
    /// up to date must be read afresh.
    Missed,
}

/// What [`Shared::claim`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Nobody had claimed it: this replica acts on it.
    Mine,
    /// Another replica is acting on it now.
    Busy,
    /// A replica did it.
    Done,
}

/// State an adapter instance shares with its replicas (see the module).
#[async_trait]
pub trait Shared: Send + Sync + fmt::Debug {
    /// Sends `message` to the subscribers of `topic` on every replica, this
    /// one included. Unavailable when other replicas could not be told (the
    /// message still reaches this replica's subscribers): a caller acting for
    /// a sender that retries (a webhook) fails so that it does.
    async fn publish(&self, topic: &str, message: Vec<u8>) -> Result<(), AdapterError>;

    /// The messages published on `topic` from now on, from every replica.
    fn subscribe(&self, topic: &str) -> broadcast::Receiver<Delivery>;

    /// Claims `id` (a delivery) for this replica while it acts on it, for at
    /// most `acting`: [`Claim::Mine`] when no replica had, [`Claim::Busy`]
    /// while another acts on it, [`Claim::Done`] when one did; `None` when
    /// nothing shared answers, and the caller keeps its own record.
    async fn claim(&self, id: &str, acting: Duration) -> Option<Claim>;

    /// Records `id`, claimed by this replica, as done, for `ttl`.
    async fn complete(&self, id: &str, ttl: Duration);

    /// Gives up the claim on `id` (it was not done, and may come again).
    async fn release(&self, id: &str);

    /// Takes or renews the lease `name` for `ttl`: whether this replica holds
    /// it now. When nothing shared answers, every replica holds it (each acts
    /// alone, as without replicas).
    async fn hold(&self, name: &str, ttl: Duration) -> bool;

    /// Marks `members` of `set` for `ttl` (a mark is renewed by marking it
    /// again); whether the marks were recorded. Without shared state,
    /// nothing is kept (and nothing needs to be: true).
    async fn mark(&self, set: &str, members: &[String], ttl: Duration) -> bool;

    /// Whether any replica marked `member` of `set` within its ttl; `None`
    /// when nothing shared answers (another replica may have).
    async fn is_marked(&self, set: &str, member: &str) -> Option<bool>;

    /// Every member of `set` some replica marked, within their ttls.
    async fn marked(&self, set: &str) -> Vec<String>;
}

/// An instance without replicas (see the module).
#[derive(Debug, Default)]
pub struct Alone {
    topics: Mutex<HashMap<String, broadcast::Sender<Delivery>>>,
}

impl Alone {
    fn sender(&self, topic: &str) -> broadcast::Sender<Delivery> {
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        topics.entry(topic.to_owned()).or_insert_with(|| broadcast::channel(SUBSCRIBER_BACKLOG).0).clone()
    }
}

#[async_trait]
impl Shared for Alone {
    async fn publish(&self, topic: &str, message: Vec<u8>) -> Result<(), AdapterError> {
        // No subscriber yet is not an error: nobody was waiting.
        let _ = self.sender(topic).send(Delivery::Message(message.into()));
        Ok(())
    }

    fn subscribe(&self, topic: &str) -> broadcast::Receiver<Delivery> {
        self.sender(topic).subscribe()
    }

    async fn claim(&self, _id: &str, _acting: Duration) -> Option<Claim> {
        None
    }

    async fn complete(&self, _id: &str, _ttl: Duration) {}

    async fn release(&self, _id: &str) {}

    async fn hold(&self, _name: &str, _ttl: Duration) -> bool {
        true
    }

    async fn mark(&self, _set: &str, _members: &[String], _ttl: Duration) -> bool {
        true
    }

    async fn is_marked(&self, _set: &str, _member: &str) -> Option<bool> {
        Some(false)
    }

    async fn marked(&self, _set: &str) -> Vec<String> {
        Vec::new()
    }
}

/// The error a publication that reached this replica only answers with.
pub fn not_shared(why: &str) -> AdapterError {
    AdapterError::new(ErrorKind::Unavailable, format!("the other replicas could not be told: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn alone_delivers_to_this_replica_and_holds_every_lease() {
        let alone = Alone::default();
        let mut a = alone.subscribe("t");
        let mut b = alone.subscribe("t");
        let mut other = alone.subscribe("u");
        alone.publish("t", b"one".to_vec()).await.unwrap();
        alone.publish("t", b"two".to_vec()).await.unwrap();
        for rx in [&mut a, &mut b] {
            assert_eq!(rx.recv().await.unwrap(), Delivery::Message(Arc::from(&b"one"[..])));
            assert_eq!(rx.recv().await.unwrap(), Delivery::Message(Arc::from(&b"two"[..])));
        }
        assert!(other.try_recv().is_err());
        // Publishing with nobody listening is fine.
        alone.publish("nobody", vec![1]).await.unwrap();
        assert!(alone.hold("poller", Duration::from_secs(1)).await);
        assert_eq!(alone.claim("x", Duration::from_secs(1)).await, None);
        assert!(alone.mark("watched", &["a".to_owned()], Duration::from_secs(1)).await);
        assert_eq!(alone.is_marked("watched", "a").await, Some(false));
        assert!(alone.marked("watched").await.is_empty());
    }
}
