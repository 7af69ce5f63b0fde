//! The subscription side of the Redis engine: one dedicated RESP3 connection per shard carrying
//! every `SUBSCRIBE <prefix>.client.<channel>` of this node, separate from the command
//! connection so a flood of messages never delays command replies.
//!
//! The connection's pushes go into one unbounded channel, tagged with the connection's id.
//! Two tasks:
//! - the **drain** task turns `message` pushes into [`EngineEvent`]s. It only decodes and sends
//!   into the unbounded event channel, so it never waits on anything but the next push; a
//!   `Disconnection` push of the live connection wakes the supervisor;
//! - the **supervisor** task replaces the connection when it broke (disconnection, a failed
//!   health-check PING), or when the shard's [`Endpoint`] moved to another primary (Sentinel
//!   failover, `READONLY` behind a TCP proxy). It opens a connection to the endpoint's current
//!   target, SUBSCRIBEs every channel this node holds (redis-rs resolves SUBSCRIBE once Redis
//!   confirmed it), installs it, stores the namespaces again and only then sends
//!   [`EngineEvent::Resync`]: a resync before resubscription could miss publications made in
//!   between. Until it succeeds it retries with backoff (50 ms doubling to 2 s).
//!
//! Subscribes and unsubscribes hold the live connection shared, a replacement holds it
//! exclusively: a channel subscribed while the connection is replaced is either in the set the
//! new connection subscribes, or subscribed on the new connection itself.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gyre_proto::redis_payload::{self, ChannelEvent};
use redis::aio::{AsyncPushSender, MultiplexedConnection, SendError};
use redis::{PushInfo, PushKind, Value};
use tokio::sync::{Notify, RwLock, mpsc};
use tokio::task::JoinHandle;

use super::endpoint::Endpoint;
use super::link::{CommandLink, is_broken};
use crate::engine::{EngineError, EngineEvent, EventSender};

/// Pause between reconnection attempts while the subscription connection is down.
const RECONNECT_MIN: Duration = Duration::from_millis(50);
const RECONNECT_MAX: Duration = Duration::from_secs(2);
/// How often the live connection is PINGed: a connection to a host that vanished without
/// closing it (power loss, partition) would otherwise look alive until TCP gives up, hours
/// later.
const HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// The `live_id` while there is no live connection.
const NO_CONNECTION: u64 = u64::MAX;
/// Channels per SUBSCRIBE when a new connection subscribes everything again.
const RESUBSCRIBE_BATCH: usize = 1000;

/// Aborts its task when dropped, so the engine's background tasks end with the engine.
pub(super) struct AbortOnDrop(pub JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The subscription side of one shard: its connection and its two tasks.
pub(super) struct PubSub {
    shared: Arc<Subscriptions>,
    /// `<prefix>.client.`: Redis channel = this + engine channel.
    channel_prefix: String,
    _drain: AbortOnDrop,
    _supervisor: AbortOnDrop,
}

/// What the subscribers, the drain and the supervisor share.
struct Subscriptions {
    endpoint: Arc<Endpoint>,
    /// The live connection; `None` while it is being replaced.
    live: RwLock<Option<Live>>,
    /// Every Redis channel this node subscribed to, the control channel excepted: what a new
    /// connection subscribes again.
    channels: parking_lot::Mutex<HashSet<String>>,
    /// `<prefix>.control`, subscribed on every connection.
    control: String,
    pushes: mpsc::UnboundedSender<(u64, PushInfo)>,
    /// Id of the live connection: a disconnection of an older one is not news.
    live_id: AtomicU64,
    next_id: AtomicU64,
    /// Wakes the supervisor: the live connection broke.
    broken: Notify,
}

struct Live {
    connection: MultiplexedConnection,
    id: u64,
    generation: u64,
}

/// Pushes of connection `id` into the shared channel.
struct TaggedPushes {
    id: u64,
    pushes: mpsc::UnboundedSender<(u64, PushInfo)>,
}

impl AsyncPushSender for TaggedPushes {
    fn send(&self, info: PushInfo) -> Result<(), SendError> {
        self.pushes.send((self.id, info)).map_err(|_| SendError)
    }
}

impl PubSub {
    /// Opens the subscription connection to the endpoint's target and starts the tasks.
    pub(super) async fn connect(
        endpoint: Arc<Endpoint>,
        prefix: &str,
        events: EventSender,
        reregister: Reregister,
    ) -> Result<Self, EngineError> {
        let (pushes, push_rx) = mpsc::unbounded_channel();
        let channel_prefix = format!("{prefix}.client.");
        let shared = Arc::new(Subscriptions {
            endpoint,
            live: RwLock::new(None),
            channels: parking_lot::Mutex::new(HashSet::new()),
            control: control_channel(prefix),
            pushes,
            live_id: AtomicU64::new(NO_CONNECTION),
            next_id: AtomicU64::new(0),
            broken: Notify::new(),
        });
        let node = shared.replace().await.map_err(EngineError::Unavailable)?;
        let drain = tokio::spawn(drain(
            push_rx,
            Channels {
                client_prefix: channel_prefix.clone(),
                control: shared.control.clone(),
            },
            events.clone(),
            Arc::clone(&shared),
        ));
        let supervisor = tokio::spawn(supervise(Arc::clone(&shared), events, reregister, node));
        Ok(Self {
            shared,
            channel_prefix,
            _drain: AbortOnDrop(drain),
            _supervisor: AbortOnDrop(supervisor),
        })
    }

    fn redis_channel(&self, channel: &str) -> String {
        format!("{}{channel}", self.channel_prefix)
    }

    /// SUBSCRIBE; redis-rs resolves it only once Redis's confirmation push arrived, so the
    /// subscription is active when this returns. Subscribing twice is harmless in Redis.
    pub(super) async fn subscribe(&self, channel: &str) -> Result<(), EngineError> {
        let redis_channel = self.redis_channel(channel);
        let live = self.shared.live.read().await;
        let Some(live) = live.as_ref() else {
            return Err(self.shared.reconnecting());
        };
        self.shared.channels.lock().insert(redis_channel.clone());
        let result = live.connection.clone().subscribe(&redis_channel).await;
        result.map_err(|e| {
            self.shared.channels.lock().remove(&redis_channel);
            self.shared.failed(live, &e)
        })
    }

    /// UNSUBSCRIBE; harmless for a channel that is not subscribed. Messages already received
    /// for the channel may still come out of the drain task afterwards.
    pub(super) async fn unsubscribe(&self, channel: &str) -> Result<(), EngineError> {
        let redis_channel = self.redis_channel(channel);
        let live = self.shared.live.read().await;
        self.shared.channels.lock().remove(&redis_channel);
        // Without a live connection nothing is subscribed, and the next one will not be.
        let Some(live) = live.as_ref() else {
            return Ok(());
        };
        let result = live.connection.clone().unsubscribe(&redis_channel).await;
        result.map_err(|e| self.shared.failed(live, &e))
    }
}

impl Subscriptions {
    fn reconnecting(&self) -> EngineError {
        EngineError::Unavailable(format!(
            "redis {}: the subscription connection is reconnecting",
            self.endpoint.name()
        ))
    }

    /// The error of a command on `live`; wakes the supervisor when the connection broke.
    fn failed(&self, live: &Live, e: &redis::RedisError) -> EngineError {
        if is_broken(e) && self.live_id.load(Ordering::Acquire) == live.id {
            self.broken.notify_one();
        }
        EngineError::Unavailable(format!("redis {}: {e}", self.endpoint.name()))
    }

    /// Opens a connection to the endpoint's current target, subscribes every channel on it and
    /// makes it the live one. Returns the target's node (`host:port`).
    async fn replace(&self) -> Result<String, String> {
        let current = self.endpoint.current();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let pushes = TaggedPushes {
            id,
            pushes: self.pushes.clone(),
        };
        let connection = current.target.open_with_push(pushes).await?;
        let mut live = self.live.write().await;
        let mut channels = vec![self.control.clone()];
        channels.extend(self.channels.lock().iter().cloned());
        for batch in channels.chunks(RESUBSCRIBE_BATCH) {
            connection
                .clone()
                .subscribe(batch)
                .await
                .map_err(|e| current.target.describe(&e))?;
        }
        self.live_id.store(id, Ordering::Release);
        *live = Some(Live {
            connection,
            id,
            generation: current.generation,
        });
        Ok(current.target.node().to_owned())
    }

    /// Drops the live connection (subscribers fail fast meanwhile). Its disconnection notice,
    /// if one comes, is not news any more.
    async fn drop_live(&self) {
        let mut live = self.live.write().await;
        self.live_id.store(NO_CONNECTION, Ordering::Release);
        *live = None;
    }

    /// PINGs the live connection; false when it does not answer within the I/O timeout.
    async fn healthy(&self) -> bool {
        let live = self.live.read().await;
        let Some(live) = live.as_ref() else {
            return false;
        };
        let ping = redis::cmd("PING");
        match ping
            .query_async::<Value>(&mut live.connection.clone())
            .await
        {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(redis = %self.endpoint.name(), "redis subscription connection failed its health check: {e}");
                false
            }
        }
    }

    /// The generation of the live connection, if any.
    async fn live_generation(&self) -> Option<u64> {
        self.live.read().await.as_ref().map(|live| live.generation)
    }
}

/// The Redis channel of server API control commands.
pub(super) fn control_channel(prefix: &str) -> String {
    format!("{prefix}.control")
}

/// The Redis channels the subscription connection listens to.
struct Channels {
    /// `<prefix>.client.`, followed by a channel name.
    client_prefix: String,
    /// `<prefix>.control`.
    control: String,
}

/// Forwards the pushes of the subscription connections until the engine is gone.
async fn drain(
    mut pushes: mpsc::UnboundedReceiver<(u64, PushInfo)>,
    channels: Channels,
    events: EventSender,
    shared: Arc<Subscriptions>,
) {
    while let Some((id, push)) = pushes.recv().await {
        match push.kind {
            PushKind::Message => {
                let event = match control_message(&channels.control, &push.data) {
                    Some(command) => command,
                    None => decode_message(&channels.client_prefix, &push.data),
                };
                if let Some(event) = event
                    && events.send(event).is_err()
                {
                    return; // The node stopped listening.
                }
            }
            PushKind::Disconnection if id == shared.live_id.load(Ordering::Acquire) => {
                tracing::warn!(
                    redis = %shared.endpoint.name(),
                    "redis subscription connection lost; resubscribing"
                );
                shared.broken.notify_one();
            }
            // Subscribe/unsubscribe confirmations, disconnections of replaced connections:
            // nothing to deliver.
            _ => {}
        }
    }
}

/// What has to be written into Redis again when it comes back.
pub(super) struct Reregister {
    pub commands: Arc<CommandLink>,
    pub namespaces: super::Namespaces,
}

impl Reregister {
    /// Stores every registered namespace again (idempotent). A failure is tried once more (the
    /// command connection may have been the old one); then logged: the next reconnect tries
    /// again.
    async fn run(&self) {
        let namespaces = self.namespaces.lock().clone();
        for (name, history) in namespaces {
            let cmd = super::commands::register_namespace(&name, history);
            let result = match self.commands.query(&cmd).await {
                Err(_) => self.commands.query(&cmd).await,
                ok => ok,
            };
            if let Err(e) = result {
                tracing::warn!("re-registering namespace {name:?} in redis failed: {e}");
            }
        }
    }
}

/// Replaces the subscription connection whenever it broke or the endpoint moved, then
/// resyncs; see the module docs.
async fn supervise(
    shared: Arc<Subscriptions>,
    events: EventSender,
    reregister: Reregister,
    mut node: String,
) {
    let mut changes = shared.endpoint.changes();
    let mut health = tokio::time::interval(HEALTH_CHECK_INTERVAL);
    health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    health.reset();
    loop {
        let switched = tokio::select! {
            () = shared.broken.notified() => false,
            changed = changes.changed() => {
                if changed.is_err() {
                    return; // The endpoint is gone: so is the engine.
                }
                // A switch this connection already follows (it was opened after it).
                let generation = *changes.borrow_and_update();
                if shared.live_generation().await.is_some_and(|live| live >= generation) {
                    continue;
                }
                true
            }
            _ = health.tick() => {
                if shared.healthy().await {
                    continue;
                }
                false
            }
        };
        shared.drop_live().await;
        let mut pause = RECONNECT_MIN;
        let mut failures = 0u32;
        let new_node = loop {
            match shared.replace().await {
                Ok(new_node) => break new_node,
                Err(e) => {
                    // The first failure of an outage is news; the retries are not.
                    if failures == 0 {
                        tracing::warn!("redis subscription connection: {e}; retrying");
                    } else {
                        tracing::debug!("redis subscription connection still down: {e}");
                    }
                    failures += 1;
                    shared.endpoint.unreachable();
                    // A new primary is tried at once, not after the pause.
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        changed = changes.changed() => {
                            if changed.is_err() {
                                return;
                            }
                            pause = RECONNECT_MIN / 2;
                        }
                    }
                    pause = (pause * 2).min(RECONNECT_MAX);
                }
            }
        };
        // Another node, or the same address leading elsewhere now (READONLY behind a proxy).
        let moved = switched || new_node != node;
        node = new_node;
        let channels = shared.channels.lock().len();
        tracing::info!(
            redis = %shared.endpoint.name(),
            channels,
            "redis subscription connection {}; resubscribed, resyncing subscriptions",
            if moved { "moved to the new primary" } else { "back" },
        );
        health.reset();
        reregister.run().await;
        if events.send(EngineEvent::Resync).is_err() {
            return;
        }
    }
}

/// `Some` when the push is on the control channel: the decoded command, or `None` inside for a
/// payload that does not decode (logged).
fn control_message(control: &str, data: &[Value]) -> Option<Option<EngineEvent>> {
    let [Value::BulkString(channel), Value::BulkString(payload)] = data else {
        return None;
    };
    if channel.as_slice() != control.as_bytes() {
        return None;
    }
    Some(control_event(payload))
}

/// The control command in a control channel message; `None` (logged) when it does not decode.
pub(super) fn control_event(payload: &[u8]) -> Option<EngineEvent> {
    match serde_json::from_slice(payload) {
        Ok(command) => Some(EngineEvent::Control(command)),
        Err(e) => {
            tracing::warn!("skipping malformed control command: {e}");
            None
        }
    }
}

/// Bulk or simple string reply as text.
pub(super) fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(text) => Some(text.clone()),
        _ => None,
    }
}

/// The event of a `message` push `[redis channel, payload]`; `None` (logged) for a channel
/// outside the prefix or a payload that does not decode.
fn decode_message(channel_prefix: &str, data: &[Value]) -> Option<EngineEvent> {
    let [Value::BulkString(redis_channel), Value::BulkString(payload)] = data else {
        tracing::warn!("unexpected redis message push: {data:?}");
        return None;
    };
    let Some(channel) = std::str::from_utf8(redis_channel)
        .ok()
        .and_then(|c| c.strip_prefix(channel_prefix))
    else {
        let shown = String::from_utf8_lossy(redis_channel);
        tracing::warn!("message on unexpected redis channel {shown:?}");
        return None;
    };
    channel_event(channel.to_owned(), payload)
}

/// The event a message on `channel`'s PUB/SUB channel carries; `None` (logged) when the payload
/// does not decode.
pub(super) fn channel_event(channel: String, payload: &[u8]) -> Option<EngineEvent> {
    match redis_payload::decode(payload) {
        Ok(ChannelEvent::Publication { publication, epoch }) => Some(EngineEvent::Publication {
            channel,
            publication: Box::new(publication),
            epoch,
        }),
        Ok(ChannelEvent::Join(info)) => Some(EngineEvent::Join { channel, info }),
        Ok(ChannelEvent::Leave(info)) => Some(EngineEvent::Leave { channel, info }),
        Err(e) => {
            tracing::warn!("skipping malformed message on channel {channel:?}: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gyre_proto::{ClientInfo, Publication};
    use prost::Message;

    fn push(channel: &str, payload: Vec<u8>) -> Vec<Value> {
        vec![
            Value::BulkString(channel.as_bytes().to_vec()),
            Value::BulkString(payload),
        ]
    }

    #[test]
    fn decodes_positioned_publication() {
        let body = Publication {
            data: bytes::Bytes::from_static(b"x"),
            ..Default::default()
        }
        .encode_to_vec();
        let payload = redis_payload::encode_positioned(5, "epoch", &body).to_vec();
        let Some(EngineEvent::Publication {
            channel,
            publication,
            epoch,
        }) = decode_message("gyre.client.", &push("gyre.client.ns:ch", payload))
        else {
            panic!("not a publication");
        };
        assert_eq!((channel.as_str(), epoch.as_str()), ("ns:ch", "epoch"));
        assert_eq!(publication.offset, 5);
    }

    #[test]
    fn decodes_join_and_leave() {
        let info = ClientInfo {
            client: "c".into(),
            ..Default::default()
        };
        let join = redis_payload::encode_join(&info).to_vec();
        assert!(matches!(
            decode_message("p.client.", &push("p.client.a", join)),
            Some(EngineEvent::Join { channel, info: i }) if channel == "a" && i == info
        ));
        let leave = redis_payload::encode_leave(&info).to_vec();
        assert!(matches!(
            decode_message("p.client.", &push("p.client.a", leave)),
            Some(EngineEvent::Leave { .. })
        ));
    }

    #[test]
    fn skips_malformed_and_foreign() {
        assert!(decode_message("p.client.", &push("p.client.a", b"__p1:x".to_vec())).is_none());
        assert!(decode_message("p.client.", &push("other.a", vec![])).is_none());
        assert!(decode_message("p.client.", &[Value::Nil]).is_none());
    }
}
