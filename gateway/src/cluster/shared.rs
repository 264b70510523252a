//! What adapter instances (and the gateway itself) share with the other
//! replicas, in Redis: the [`Shared`] of `lienthong-adapter-core`.
//!
//! - Messages: one Redis stream per topic. A publication is appended with a
//!   sequence number by a script (one round trip); one task per replica
//!   tails every topic on its own connection (`XREAD BLOCK`), from the
//!   position it last read, so a replica that lost Redis for a while reads
//!   what it missed when Redis is back; a gap in the sequence (the stream was
//!   trimmed meanwhile) is told to subscribers as [`Delivery::Missed`].
//! - Claims on deliveries: a key that is `busy` while a replica acts on
//!   the delivery (for a bounded time: a replica that crashed meanwhile does
//!   not block it), then `done` until the delivery's replay horizon.
//! - Leases: a key holding the replica's id, renewed by its holder.
//! - Marks: a sorted set of pseudonyms by expiry, beside a hash of the
//!   sealed members.
//!
//! Messages and marked members are sealed (AES-256-GCM under a key derived
//! from `server.page_token_key`, bound to the topic or set), and ids, set
//! members and names of Redis keys hold no personal data: Redis sees
//! pseudonyms and ciphertext only.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use lienthong_adapter_core::shared::{Delivery, SUBSCRIBER_BACKLOG, not_shared};
use lienthong_adapter_core::{AdapterError, Claim, Shared};
use redis::streams::{StreamReadOptions, StreamReadReply};
use tokio::sync::broadcast;

use super::{Cluster, millis};
use crate::crypto::{Sealer, SecretKey};

/// The longest a shared stream grows (older messages are trimmed; a replica
/// away for longer than it takes to publish these learns it missed some).
pub const STREAM_LENGTH: usize = 10_000;

/// How long a topic nobody publishes on is kept (a replica reading it after
/// that learns it missed messages).
const UNUSED_TOPIC: Duration = Duration::from_secs(24 * 3600);

/// How long one blocking read waits for messages before it reads the topics
/// again (a topic subscribed meanwhile is read from then on).
const BLOCK: Duration = Duration::from_millis(500);

/// `KEYS[1]` the stream, `KEYS[2]` its sequence; `ARGV[1]` the message,
/// `ARGV[2]` the stream's length, `ARGV[3]` how long an unused topic lives
/// (milliseconds). Appends the message numbered one past the last; returns
/// the number.
const APPEND: &str = r"
local n = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'n', n, 'm', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return n
";

/// `KEYS[1]` the stream, `KEYS[2]` its sequence: the id of the last message
/// and the sequence number (`0-0` and the counter when the stream is empty).
const POSITION: &str = r"
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local n = tonumber(redis.call('GET', KEYS[2])) or 0
if last[1] then
  return {last[1][1], n}
end
return {'0-0', n}
";

/// `KEYS[1]` the claim; `ARGV[1]` milliseconds, `ARGV[2]` this replica.
/// Claims it (`busy:<replica>`) for that long when nobody has; returns
/// `mine`, or what it holds (`busy`, `done`).
const CLAIM: &str = r"
local found = redis.call('GET', KEYS[1])
if found == 'done' then
  return 'done'
end
if found then
  return 'busy'
end
redis.call('SET', KEYS[1], 'busy:' .. ARGV[2], 'PX', ARGV[1])
return 'mine'
";

/// `KEYS[1]` the claim; `ARGV[1]` this replica, `ARGV[2]` `done` (with
/// `ARGV[3]` milliseconds) or `release`. Acts only on this replica's own
/// claim: one whose claim lapsed, and was taken by another meanwhile,
/// leaves the other's alone.
const SETTLE: &str = r"
if redis.call('GET', KEYS[1]) ~= 'busy:' .. ARGV[1] then
  return 0
end
if ARGV[2] == 'done' then
  redis.call('SET', KEYS[1], 'done', 'PX', ARGV[3])
else
  redis.call('DEL', KEYS[1])
end
return 1
";

/// `KEYS[1]` the lease; `ARGV[1]` this replica, `ARGV[2]` milliseconds.
/// Renews the lease when this replica holds it, takes it when nobody does;
/// whether this replica holds it.
const HOLD: &str = r"
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
";

/// `KEYS[1]` the expiries, `KEYS[2]` the sealed members; `ARGV[1]` the
/// milliseconds, then pseudonym and sealed member pairs. Drops the expired
/// marks first (the set holds only live ones, however long it is used); the
/// keys live as long as their longest-lived mark.
const MARK: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for _, p in ipairs(gone) do
  redis.call('HDEL', KEYS[2], p)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
for i = 2, #ARGV, 2 do
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[i])
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
for _, key in ipairs(KEYS) do
  if redis.call('PTTL', key) < ttl then
    redis.call('PEXPIRE', key, ttl)
  end
end
return 1
";

/// `KEYS[1]` the expiries, `KEYS[2]` the sealed members: drops the expired
/// ones, returns the sealed members left.
const MARKED: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for _, p in ipairs(gone) do
  redis.call('HDEL', KEYS[2], p)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('HVALS', KEYS[2])
";

/// `KEYS[1]` the expiries; `ARGV[1]` a pseudonym: whether it is marked.
const IS_MARKED: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expiry = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]))
if expiry and expiry > now then
  return 1
end
return 0
";

/// A topic this replica reads: its subscribers, and where reading is.
#[derive(Debug)]
struct Topic {
    name: String,
    subscribers: broadcast::Sender<Delivery>,
    /// The id of the last message read and its sequence number; unknown
    /// until the reader first looks.
    read: Option<(String, u64)>,
}

/// The shared state of every instance on this replica (see the module).
pub struct Streams {
    cluster: Arc<Cluster>,
    sealer: Sealer,
    pseudonyms: SecretKey,
    /// This replica, as a lease holder.
    replica: String,
    /// By stream key.
    topics: Mutex<BTreeMap<String, Topic>>,
    append: redis::Script,
    position: redis::Script,
    claim: redis::Script,
    settle: redis::Script,
    hold: redis::Script,
    mark: redis::Script,
    marked: redis::Script,
    is_marked: redis::Script,
}

impl std::fmt::Debug for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streams").field("replica", &self.replica).finish_non_exhaustive()
    }
}

impl Streams {
    /// The shared state of `cluster`, sealed under a key derived from `key`,
    /// held as `replica`; starts the task that reads the topics (it ends when
    /// the last handle is dropped).
    pub fn start(cluster: Arc<Cluster>, key: &SecretKey, replica: String) -> anyhow::Result<Arc<Self>> {
        let streams = Arc::new(Self {
            cluster,
            sealer: Sealer::new(&key.derive("lienthong/cluster/shared-seal/v1"))?,
            pseudonyms: key.derive("lienthong/cluster/shared-pseudonym/v1"),
            replica,
            topics: Mutex::new(BTreeMap::new()),
            append: redis::Script::new(APPEND),
            position: redis::Script::new(POSITION),
            claim: redis::Script::new(CLAIM),
            settle: redis::Script::new(SETTLE),
            hold: redis::Script::new(HOLD),
            mark: redis::Script::new(MARK),
            marked: redis::Script::new(MARKED),
            is_marked: redis::Script::new(IS_MARKED),
        });
        tokio::spawn(read_topics(Arc::downgrade(&streams)));
        Ok(streams)
    }

    /// Finds where every topic subscribed so far is read from, so that what
    /// is published from now on reaches this replica (the gateway calls it
    /// once its adapters have subscribed, before it serves). Topics whose
    /// position Redis does not tell now are found by the reader later.
    pub async fn settle(&self) {
        let unread: Vec<String> =
            self.topics().iter().filter(|(_, t)| t.read.is_none()).map(|(k, _)| k.clone()).collect();
        for stream in unread {
            let position: Option<(String, u64)> = self
                .cluster
                .run(|mut redis| {
                    let mut call = self.position.prepare_invoke();
                    call.key(&stream).key(format!("{stream}:seq"));
                    async move { call.invoke_async(&mut redis).await }
                })
                .await;
            let Some(position) = position else { return };
            if let Some(topic) = self.topics().get_mut(&stream) {
                topic.read.get_or_insert(position);
            }
        }
    }

    /// The view of instance (or gateway part) `scope`: its names kept apart
    /// from every other scope's.
    pub fn scope(self: &Arc<Self>, scope: &str) -> Arc<dyn Shared> {
        Arc::new(Scoped { streams: self.clone(), base: self.cluster.key(&format!("shared/{scope}/")) })
    }

    fn topics(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Topic>> {
        self.topics.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A pseudonym of `value` within `context`: the same on every replica,
    /// telling nothing about `value` without the key.
    fn pseudonym(&self, context: &str, value: &str) -> String {
        let mut data = Vec::with_capacity(context.len() + 1 + value.len());
        data.extend_from_slice(context.as_bytes());
        data.push(0);
        data.extend_from_slice(value.as_bytes());
        crate::crypto::hex(&crate::crypto::hmac_sha256(&self.pseudonyms, &data)[..16])
    }
}

/// One scope's names (see [`Streams::scope`]).
#[derive(Debug)]
struct Scoped {
    streams: Arc<Streams>,
    /// `<prefix>shared/<scope>/`.
    base: String,
}

impl Scoped {
    fn stream(&self, topic: &str) -> String {
        format!("{}topic/{topic}", self.base)
    }

    /// Marks this replica's claim on `id` done for `ttl`, or (`None`) lets
    /// it go.
    async fn settle(&self, id: &str, done: Option<Duration>) {
        let key = self.claim_key(id);
        let s = &self.streams;
        let _ = s
            .cluster
            .run(|mut redis| {
                let mut call = s.settle.prepare_invoke();
                call.key(&key).arg(&s.replica);
                match done {
                    Some(ttl) => call.arg("done").arg(millis(ttl)),
                    None => call.arg("release"),
                };
                async move { call.invoke_async::<i64>(&mut redis).await }
            })
            .await;
    }

    fn claim_key(&self, id: &str) -> String {
        format!("{}claim/{}", self.base, self.streams.pseudonym("claim", id))
    }

    fn set_keys(&self, set: &str) -> (String, String) {
        (format!("{}set/{set}", self.base), format!("{}set/{set}:sealed", self.base))
    }
}

#[async_trait]
impl Shared for Scoped {
    async fn publish(&self, topic: &str, message: Vec<u8>) -> Result<(), AdapterError> {
        let stream = self.stream(topic);
        let sealed = self.streams.sealer.seal(stream.as_bytes(), &message);
        let s = &self.streams;
        let appended: Option<u64> = s
            .cluster
            .run(|mut redis| {
                let mut call = s.append.prepare_invoke();
                call.key(&stream)
                    .key(format!("{stream}:seq"))
                    .arg(&sealed)
                    .arg(STREAM_LENGTH)
                    .arg(millis(UNUSED_TOPIC));
                async move { call.invoke_async(&mut redis).await }
            })
            .await;
        let mut topics = s.topics();
        let topic = topics.get_mut(&stream);
        if appended.is_some() {
            // Every subscriber, this replica's included, reads it from Redis;
            // while this replica has not found where it reads from (Redis
            // was away at the start), it will read from after this one, so
            // its own subscribers have it now.
            if let Some(topic) = topic.filter(|t| t.read.is_none()) {
                let _ = topic.subscribers.send(Delivery::Message(message.into()));
            }
            return Ok(());
        }
        if let Some(topic) = topic {
            let _ = topic.subscribers.send(Delivery::Message(message.into()));
        }
        Err(not_shared("Redis does not answer"))
    }

    fn subscribe(&self, topic: &str) -> broadcast::Receiver<Delivery> {
        let stream = self.stream(topic);
        let mut topics = self.streams.topics();
        topics
            .entry(stream)
            .or_insert_with(|| Topic {
                name: topic.to_owned(),
                subscribers: broadcast::channel(SUBSCRIBER_BACKLOG).0,
                read: None,
            })
            .subscribers
            .subscribe()
    }

    async fn claim(&self, id: &str, acting: Duration) -> Option<Claim> {
        let key = self.claim_key(id);
        let s = &self.streams;
        let found: String = s
            .cluster
            .run(|mut redis| {
                let mut call = s.claim.prepare_invoke();
                call.key(&key).arg(millis(acting)).arg(&s.replica);
                async move { call.invoke_async(&mut redis).await }
            })
            .await?;
        Some(match found.as_str() {
            "mine" => Claim::Mine,
            "done" => Claim::Done,
            _ => Claim::Busy,
        })
    }

    async fn complete(&self, id: &str, ttl: Duration) {
        self.settle(id, Some(ttl)).await;
    }

    async fn release(&self, id: &str) {
        self.settle(id, None).await;
    }

    async fn hold(&self, name: &str, ttl: Duration) -> bool {
        let key = format!("{}lease/{name}", self.base);
        let s = &self.streams;
        s.cluster
            .run(|mut redis| {
                let mut call = s.hold.prepare_invoke();
                call.key(&key).arg(&s.replica).arg(millis(ttl));
                async move { call.invoke_async::<i64>(&mut redis).await }
            })
            .await
            .is_none_or(|held| held == 1)
    }

    async fn mark(&self, set: &str, members: &[String], ttl: Duration) -> bool {
        if members.is_empty() {
            return true;
        }
        let (expiries, sealed) = self.set_keys(set);
        let s = &self.streams;
        s.cluster
            .run(|mut redis| {
                let mut call = s.mark.prepare_invoke();
                call.key(&expiries).key(&sealed).arg(millis(ttl));
                for m in members {
                    call.arg(s.pseudonym(&expiries, m)).arg(s.sealer.seal(expiries.as_bytes(), m.as_bytes()));
                }
                async move { call.invoke_async::<i64>(&mut redis).await }
            })
            .await
            .is_some()
    }

    async fn is_marked(&self, set: &str, member: &str) -> Option<bool> {
        let (expiries, _) = self.set_keys(set);
        let s = &self.streams;
        s.cluster
            .run(|mut redis| {
                let mut call = s.is_marked.prepare_invoke();
                call.key(&expiries).arg(s.pseudonym(&expiries, member));
                async move { call.invoke_async::<i64>(&mut redis).await }
            })
            .await
            .map(|marked| marked == 1)
    }

    async fn marked(&self, set: &str) -> Vec<String> {
        let (expiries, sealed) = self.set_keys(set);
        let s = &self.streams;
        let values: Vec<String> = s
            .cluster
            .run(|mut redis| {
                let mut call = s.marked.prepare_invoke();
                call.key(&expiries).key(&sealed);
                async move { call.invoke_async(&mut redis).await }
            })
            .await
            .unwrap_or_default();
        values.iter().filter_map(|v| String::from_utf8(s.sealer.open(expiries.as_bytes(), v)?).ok()).collect()
    }
}

/// Reads every topic until `streams` is dropped, on a connection of its
/// own (a blocking read holds its connection).
async fn read_topics(streams: Weak<Streams>) {
    let mut connection: Option<redis::aio::MultiplexedConnection> = None;
    loop {
        let Some(s) = streams.upgrade() else { return };
        if connection.is_none() {
            connection = connect(&s.cluster).await;
            if connection.is_none() {
                drop(s);
                tokio::time::sleep(super::RETRY_AFTER).await;
                continue;
            }
        }
        let Some(redis) = connection.as_mut() else { continue };
        if let Err(e) = read_once(&s, redis).await {
            tracing::debug!(error = %e, "reading the shared streams failed; reconnecting");
            connection = None;
            drop(s);
            tokio::time::sleep(super::RETRY_AFTER).await;
        }
    }
}

async fn connect(cluster: &Cluster) -> Option<redis::aio::MultiplexedConnection> {
    let made =
        tokio::time::timeout(cluster.config().connect_timeout, cluster.client().get_multiplexed_async_connection());
    let mut connection = made.await.ok()?.ok()?;
    connection.set_response_timeout(BLOCK + cluster.config().command_timeout + Duration::from_secs(1));
    Some(connection)
}

/// Finds where unread topics start, then waits up to [`BLOCK`] for messages
/// on every topic and hands them to the subscribers.
async fn read_once(s: &Streams, redis: &mut redis::aio::MultiplexedConnection) -> redis::RedisResult<()> {
    let unread: Vec<String> = s.topics().iter().filter(|(_, t)| t.read.is_none()).map(|(k, _)| k.clone()).collect();
    for stream in unread {
        let (id, n): (String, u64) =
            s.position.prepare_invoke().key(&stream).key(format!("{stream}:seq")).invoke_async(redis).await?;
        if let Some(topic) = s.topics().get_mut(&stream) {
            topic.read.get_or_insert((id, n));
        }
    }
    let (keys, ids): (Vec<String>, Vec<String>) =
        s.topics().iter().filter_map(|(k, t)| Some((k.clone(), t.read.as_ref()?.0.clone()))).unzip();
    if keys.is_empty() {
        tokio::time::sleep(BLOCK).await;
        return Ok(());
    }
    let options = StreamReadOptions::default().block(millis(BLOCK) as usize).count(512);
    let reply: Option<StreamReadReply> = redis::AsyncCommands::xread_options(redis, &keys, &ids, &options).await?;
    let Some(reply) = reply else { return notice_restarts(s, redis, &keys).await };
    let mut topics = s.topics();
    for stream in reply.keys {
        let Some(topic) = topics.get_mut(&stream.key) else { continue };
        for entry in stream.ids {
            let n: u64 = entry.get("n").unwrap_or(0);
            let last = topic.read.as_ref().map_or(0, |r| r.1);
            if n > last + 1 {
                tracing::warn!(
                    topic = topic.name,
                    missed = n - last - 1,
                    "shared messages were trimmed before this replica read them"
                );
                let _ = topic.subscribers.send(Delivery::Missed);
            } else if n <= last {
                // Numbered from the start again: Redis lost its data (a
                // restart, a failover); what was published meanwhile is gone.
                tracing::warn!(topic = topic.name, "the shared messages started over (Redis lost them)");
                let _ = topic.subscribers.send(Delivery::Missed);
            }
            let message = entry.get::<String>("m").and_then(|m| s.sealer.open(stream.key.as_bytes(), &m));
            match message {
                Some(m) => {
                    let _ = topic.subscribers.send(Delivery::Message(m.into()));
                }
                None => tracing::warn!(
                    topic = topic.name,
                    "a shared message that this replica's key does not open was skipped"
                ),
            }
            topic.read = Some((entry.id, n));
        }
    }
    Ok(())
}

/// After a read that found nothing: whether a topic's numbering went back
/// (Redis lost its data, and new messages may carry ids below the last one
/// read, which a read from there never returns). Such a topic is read again
/// from its start, and its subscribers told they missed messages.
async fn notice_restarts(
    s: &Streams,
    redis: &mut redis::aio::MultiplexedConnection,
    keys: &[String],
) -> redis::RedisResult<()> {
    let counters: Vec<String> = keys.iter().map(|k| format!("{k}:seq")).collect();
    let numbers: Vec<Option<u64>> = redis::cmd("MGET").arg(&counters).query_async(redis).await?;
    let mut topics = s.topics();
    for (stream, number) in keys.iter().zip(numbers) {
        let Some(topic) = topics.get_mut(stream) else { continue };
        if topic.read.as_ref().is_some_and(|(_, last)| number.unwrap_or(0) < *last) {
            tracing::warn!(topic = topic.name, "the shared messages started over (Redis lost them)");
            topic.read = Some(("0-0".to_owned(), 0));
            let _ = topic.subscribers.send(Delivery::Missed);
        }
    }
    Ok(())
}
