//! The subscription side of the Redis engine: one dedicated RESP3 connection carrying every
//! `SUBSCRIBE <prefix>.client.<channel>` of this node, separate from the command connection so a
//! flood of messages never delays command replies.
//!
//! redis-rs delivers every push of that connection into one unbounded channel. Two tasks:
//! - the **drain** task turns `message` pushes into [`EngineEvent`]s. It only decodes and sends
//!   into the unbounded event channel, so it never waits on anything but the next push;
//! - the **resync** task runs after a `Disconnection` push: the connection manager reconnects
//!   and re-sends the tracked SUBSCRIBEs before it hands out the new connection, so a PING that
//!   succeeds on it means the subscriptions are active again; only then is
//!   [`EngineEvent::Resync`] sent (a resync before resubscription could miss publications made
//!   in between).

use std::sync::Arc;
use std::time::Duration;

use gyre_proto::redis_payload::{self, ChannelEvent};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, PushInfo, PushKind, Value};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use super::unavailable;
use crate::engine::{EngineError, EngineEvent, EventSender};

/// Pause between PINGs while the subscription connection is down.
const RECONNECT_PROBE_MIN: Duration = Duration::from_millis(50);
const RECONNECT_PROBE_MAX: Duration = Duration::from_secs(2);

/// Aborts its task when dropped, so the engine's background tasks end with the engine.
pub(super) struct AbortOnDrop(pub JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The subscription connection and its two tasks.
pub(super) struct PubSub {
    manager: ConnectionManager,
    /// `<prefix>.client.`: Redis channel = this + engine channel.
    channel_prefix: String,
    _drain: AbortOnDrop,
    _resync: AbortOnDrop,
}

impl PubSub {
    /// Opens the subscription connection (the client must speak RESP3) and starts the tasks.
    pub(super) async fn connect(
        client: Client,
        config: ConnectionManagerConfig,
        prefix: &str,
        events: EventSender,
        reregister: Reregister,
    ) -> Result<Self, EngineError> {
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        let config = config
            .set_push_sender(push_tx)
            .set_automatic_resubscription();
        let manager = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(unavailable)?;
        let channel_prefix = format!("{prefix}.client.");
        let control = control_channel(prefix);
        let reconnected = Arc::new(Notify::new());
        let drain = tokio::spawn(drain(
            push_rx,
            Channels {
                client_prefix: channel_prefix.clone(),
                control: control.clone(),
            },
            events.clone(),
            reconnected.clone(),
        ));
        let resync = tokio::spawn(resync(manager.clone(), reconnected, events, reregister));
        // Tracked like every subscription, so it comes back after a reconnect too.
        manager
            .clone()
            .subscribe(&control)
            .await
            .map_err(unavailable)?;
        Ok(Self {
            manager,
            channel_prefix,
            _drain: AbortOnDrop(drain),
            _resync: AbortOnDrop(resync),
        })
    }

    fn redis_channel(&self, channel: &str) -> String {
        format!("{}{channel}", self.channel_prefix)
    }

    /// SUBSCRIBE; redis-rs resolves it only once Redis's confirmation push arrived, so the
    /// subscription is active when this returns. Subscribing twice is harmless in Redis.
    pub(super) async fn subscribe(&self, channel: &str) -> Result<(), EngineError> {
        self.manager
            .clone()
            .subscribe(self.redis_channel(channel))
            .await
            .map_err(unavailable)
    }

    /// UNSUBSCRIBE; harmless for a channel that is not subscribed. Messages already received
    /// for the channel may still come out of the drain task afterwards.
    pub(super) async fn unsubscribe(&self, channel: &str) -> Result<(), EngineError> {
        self.manager
            .clone()
            .unsubscribe(self.redis_channel(channel))
            .await
            .map_err(unavailable)
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

/// Forwards the pushes of the subscription connection until the connection manager is gone.
async fn drain(
    mut pushes: mpsc::UnboundedReceiver<PushInfo>,
    channels: Channels,
    events: EventSender,
    reconnected: Arc<Notify>,
) {
    while let Some(push) = pushes.recv().await {
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
            PushKind::Disconnection => {
                tracing::warn!("redis subscription connection lost; resubscribing");
                reconnected.notify_one();
            }
            // Subscribe/unsubscribe confirmations and anything else: nothing to deliver.
            _ => {}
        }
    }
}

/// What has to be written into Redis again when it comes back.
pub(super) struct Reregister {
    pub commands: ConnectionManager,
    pub namespaces: super::Namespaces,
}

impl Reregister {
    /// Stores every registered namespace again (idempotent). Failures are logged: the next
    /// reconnect tries again.
    async fn run(&self) {
        let namespaces = self.namespaces.lock().clone();
        for (name, history) in namespaces {
            let cmd = super::commands::register_namespace(&name, history);
            if let Err(e) = cmd.query_async::<Value>(&mut self.commands.clone()).await {
                tracing::warn!("re-registering namespace {name:?} in redis failed: {e}");
            }
        }
    }
}

/// Sends [`EngineEvent::Resync`] once the connection is back after each disconnection. A
/// disconnection while waiting leaves a stored permit in the `Notify`, so it gets its own
/// resync too.
async fn resync(
    mut manager: ConnectionManager,
    reconnected: Arc<Notify>,
    events: EventSender,
    reregister: Reregister,
) {
    loop {
        reconnected.notified().await;
        let mut pause = RECONNECT_PROBE_MIN;
        // A failed PING also makes the manager start a new reconnect when its own retries ran
        // out, so this loop is what keeps the subscription connection coming back.
        while let Err(e) = redis::cmd("PING").query_async::<Value>(&mut manager).await {
            tracing::debug!("redis subscription connection still down: {e}");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RECONNECT_PROBE_MAX);
        }
        tracing::info!("redis subscription connection back; resyncing subscriptions");
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
