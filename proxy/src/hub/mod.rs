//! The node's channel registry: which local connections subscribe to which channel, and the
//! broadcast of engine events to them.
//!
//! Encode once: a publication is encoded at most once per encoding (JSON, Protobuf) and the same
//! `Bytes` goes to every subscriber's queue. The registry is sharded by channel so that
//! broadcasts on different channels never wait for each other, and a broadcast holds only its
//! shard's lock while it pushes to the (never blocking) queues.

mod subscription;

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use bytes::Bytes;
use gyre_proto::codec::Wire;
use gyre_proto::protocol::{Join, Leave, Push, Reply};
use gyre_proto::{ClientInfo, Encoding, Publication};
use parking_lot::Mutex;

pub use subscription::{
    ConnectionId, Control, ControlReceiver, ControlSender, LivePosition, Subscription,
    control_channel,
};

use crate::engine::{ControlCommand, EngineEvent};
use crate::protocol::codes::Disconnect;

const SHARDS: usize = 64;

pub struct Hub {
    shards: Vec<Mutex<Shard>>,
    /// Serialises engine subscribe/unsubscribe per channel (see [`Hub::channel_gate`]).
    gates: Vec<tokio::sync::Mutex<()>>,
    /// Every connection of this node, for node-wide signals and server API commands.
    connections: Mutex<Connections>,
}

#[derive(Default)]
struct Connections {
    by_id: HashMap<ConnectionId, Connection>,
    /// Connections of each user, once connected (server API commands name users).
    by_user: HashMap<String, HashSet<ConnectionId>>,
    /// Connections of emulated transports, by the session id their clients post commands to.
    by_session: HashMap<String, ConnectionId>,
}

/// One entry per connection of the node: kept small (56 bytes, 64 with its key), since the map
/// keeps ~1.1–2.3 buckets per connection.
struct Connection {
    control: ControlSender,
    /// Set when the client has connected: who it is.
    identity: Option<Identity>,
    /// The emulation session id, for connections of emulated transports.
    session: Option<Box<str>>,
}

struct Identity {
    user: Box<str>,
    /// The client id, kept as the 16 bytes it is rather than as its 36-character string.
    client: uuid::Uuid,
}

impl Identity {
    /// Whether the client id reads `client` (the hyphenated lower-case form the client was
    /// given).
    fn client_is(&self, client: &str) -> bool {
        let mut buffer = uuid::Uuid::encode_buffer();
        self.client.hyphenated().encode_lower(&mut buffer) == client
    }
}

#[derive(Default)]
struct Shard {
    channels: HashMap<String, Vec<Arc<Subscription>>>,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    pub fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            gates: (0..SHARDS).map(|_| tokio::sync::Mutex::new(())).collect(),
            connections: Mutex::default(),
        }
    }

    fn index(channel: &str) -> usize {
        let mut hasher = DefaultHasher::new();
        channel.hash(&mut hasher);
        (hasher.finish() as usize) % SHARDS
    }

    /// The lock to hold while changing a channel's subscribers together with the engine's
    /// subscription, so that "first subscriber → engine subscribe" and "last subscriber left →
    /// engine unsubscribe" can never interleave for one channel.
    pub fn channel_gate(&self, channel: &str) -> &tokio::sync::Mutex<()> {
        &self.gates[Self::index(channel)]
    }

    /// Adds a subscriber; true if the channel had none on this node (the caller subscribes the
    /// engine, holding [`Self::channel_gate`]).
    pub fn add(&self, subscription: Arc<Subscription>) -> bool {
        let mut shard = self.shards[Self::index(&subscription.channel)].lock();
        let subscribers = shard
            .channels
            .entry(subscription.channel.clone())
            .or_default();
        subscribers.retain(|s| s.connection != subscription.connection);
        subscribers.push(subscription);
        subscribers.len() == 1
    }

    /// Removes a connection's subscription; true if the channel has no subscriber left on this
    /// node (the caller unsubscribes the engine, holding [`Self::channel_gate`]).
    pub fn remove(&self, channel: &str, connection: ConnectionId) -> bool {
        let mut shard = self.shards[Self::index(channel)].lock();
        let Some(subscribers) = shard.channels.get_mut(channel) else {
            return false;
        };
        let before = subscribers.len();
        subscribers.retain(|s| s.connection != connection);
        let removed = subscribers.len() < before;
        if subscribers.is_empty() {
            shard.channels.remove(channel);
        }
        removed && !shard.channels.contains_key(channel)
    }

    pub fn num_channels(&self) -> usize {
        self.shards.iter().map(|s| s.lock().channels.len()).sum()
    }

    /// Subscriptions of all connections of this node.
    pub fn num_subscriptions(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().channels.values().map(Vec::len).sum::<usize>())
            .sum()
    }

    pub fn num_subscribers(&self, channel: &str) -> usize {
        self.shards[Self::index(channel)]
            .lock()
            .channels
            .get(channel)
            .map_or(0, Vec::len)
    }

    /// The channels with local subscribers and their counts.
    pub fn channels(&self) -> Vec<(String, usize)> {
        self.shards
            .iter()
            .flat_map(|s| {
                s.lock()
                    .channels
                    .iter()
                    .map(|(c, subs)| (c.clone(), subs.len()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    pub fn register_connection(&self, connection: ConnectionId, control: ControlSender) {
        self.connections.lock().by_id.insert(
            connection,
            Connection {
                control,
                identity: None,
                session: None,
            },
        );
    }

    /// Makes a connection reachable by its emulation session id (see [`Hub::emulate`]).
    pub fn register_session(&self, connection: ConnectionId, session: &str) {
        let mut connections = self.connections.lock();
        if let Some(entry) = connections.by_id.get_mut(&connection) {
            entry.session = Some(session.into());
            connections
                .by_session
                .insert(session.to_owned(), connection);
        }
    }

    /// Hands a frame of commands to the session `session` of this node. False when no such
    /// session is here (gone, or never was).
    pub fn emulate(&self, session: &str, frame: Bytes) -> bool {
        let connections = self.connections.lock();
        connections
            .by_session
            .get(session)
            .and_then(|id| connections.by_id.get(id))
            .is_some_and(|entry| entry.control.send(Control::Emulation(frame)).is_ok())
    }

    /// Records who a connection is once it connected, so server API commands can find it.
    pub fn identify(&self, connection: ConnectionId, user: &str, client: uuid::Uuid) {
        let mut connections = self.connections.lock();
        if let Some(entry) = connections.by_id.get_mut(&connection) {
            entry.identity = Some(Identity {
                user: user.into(),
                client,
            });
            connections
                .by_user
                .entry(user.to_owned())
                .or_default()
                .insert(connection);
        }
    }

    pub fn unregister_connection(&self, connection: ConnectionId) {
        let mut connections = self.connections.lock();
        let Some(entry) = connections.by_id.remove(&connection) else {
            return;
        };
        if let Some(session) = &entry.session {
            connections.by_session.remove(&**session);
        }
        if let Some(Identity { user, .. }) = entry.identity
            && let Some(ids) = connections.by_user.get_mut(&*user)
        {
            ids.remove(&connection);
            if ids.is_empty() {
                connections.by_user.remove(&*user);
            }
        }
    }

    /// Number of this node's connections of `user`.
    pub fn user_connections(&self, user: &str) -> usize {
        self.connections
            .lock()
            .by_user
            .get(user)
            .map_or(0, HashSet::len)
    }

    /// Asks every connection of this node to close with `disconnect`.
    pub fn disconnect_all(&self, disconnect: &Disconnect) {
        for entry in self.connections.lock().by_id.values() {
            let _ = entry.control.send(Control::Disconnect(disconnect.clone()));
        }
    }

    pub fn num_connections(&self) -> usize {
        self.connections.lock().by_id.len()
    }

    pub fn num_users(&self) -> usize {
        self.connections.lock().by_user.len()
    }

    /// Applies a server API command to the matching connections of this node.
    fn apply_control(&self, command: ControlCommand) {
        if let ControlCommand::Emulation { session, frame } = command {
            self.emulate(&session, frame);
            return;
        }
        let (user, client, spare) = match &command {
            ControlCommand::Disconnect {
                user,
                client,
                whitelist,
                ..
            } => (user, client, whitelist.as_slice()),
            ControlCommand::Unsubscribe { user, client, .. }
            | ControlCommand::Subscribe { user, client, .. }
            | ControlCommand::Refresh { user, client, .. } => (user, client, &[][..]),
            ControlCommand::Emulation { .. }
            | ControlCommand::Node(_)
            | ControlCommand::Survey(_) => return,
        };
        let control = match &command {
            ControlCommand::Disconnect { code, reason, .. } => {
                Control::Disconnect(Disconnect::custom(*code, reason))
            }
            ControlCommand::Unsubscribe { channel, .. } => Control::Unsubscribe {
                channel: channel.clone(),
            },
            ControlCommand::Subscribe {
                channel,
                info,
                data,
                ..
            } => Control::Subscribe {
                channel: channel.clone(),
                chan_info: Bytes::from(info.clone().into_bytes()),
                data: Bytes::from(data.clone().into_bytes()),
            },
            ControlCommand::Refresh {
                expired, expire_at, ..
            } => Control::Refresh {
                expired: *expired,
                expires_at: (*expire_at > 0).then_some(*expire_at),
            },
            ControlCommand::Emulation { .. }
            | ControlCommand::Node(_)
            | ControlCommand::Survey(_) => return,
        };
        let connections = self.connections.lock();
        let Some(ids) = connections.by_user.get(user) else {
            return;
        };
        for entry in ids.iter().filter_map(|id| connections.by_id.get(id)) {
            let Some(identity) = &entry.identity else {
                continue;
            };
            if (!client.is_empty() && !identity.client_is(client))
                || spare.iter().any(|c| identity.client_is(c))
            {
                continue;
            }
            let _ = entry.control.send(control.clone());
        }
    }

    /// Delivers one engine event to this node's subscribers. `direct`: write into idle sockets
    /// from this thread (the dispatcher keeps up: lowest latency, one write per delivery and no
    /// task wake-up); otherwise queue for the connections' tasks (the dispatcher is behind: the
    /// writes spread over every thread and each connection's backlog goes out in one write).
    pub fn dispatch(&self, event: EngineEvent, direct: bool) {
        match event {
            EngineEvent::Publication {
                channel,
                publication,
                epoch,
            } => self.broadcast_publication(&channel, &publication, &epoch, direct),
            EngineEvent::Join { channel, info } => {
                self.broadcast_presence(&channel, info, true, direct)
            }
            EngineEvent::Leave { channel, info } => {
                self.broadcast_presence(&channel, info, false, direct)
            }
            EngineEvent::Resync => {
                metrics::counter!(crate::metrics::ENGINE_RESYNCS).increment(1);
                for entry in self.connections.lock().by_id.values() {
                    let _ = entry.control.send(Control::Resync);
                }
            }
            EngineEvent::Control(command) => self.apply_control(command),
        }
    }

    fn broadcast_publication(
        &self,
        channel: &str,
        publication: &Publication,
        epoch: &str,
        direct: bool,
    ) {
        let shard = self.shards[Self::index(channel)].lock();
        let Some(subscribers) = shard.channels.get(channel) else {
            return;
        };
        let mut encoded = Encoded::new(|| Push {
            channel: channel.to_owned(),
            r#pub: Some(client_publication(publication)),
            ..Default::default()
        });
        // One clock read per publication, not per subscriber.
        let now = std::time::Instant::now();
        for subscriber in subscribers {
            match encoded.get(subscriber.wire) {
                Some(message) => {
                    subscriber.deliver_publication(publication.offset, epoch, message, now, direct)
                }
                // Binary data for a JSON client: nothing valid can be sent, and skipping it
                // would lose it silently ("inappropriate protocol",
                // docs/protocol.md#json-encoding).
                None => subscriber.close_connection(crate::protocol::codes::INAPPROPRIATE_PROTOCOL),
            }
        }
    }

    fn broadcast_presence(&self, channel: &str, info: ClientInfo, join: bool, direct: bool) {
        let shard = self.shards[Self::index(channel)].lock();
        let Some(subscribers) = shard.channels.get(channel) else {
            return;
        };
        let mut encoded = Encoded::new(|| Push {
            channel: channel.to_owned(),
            join: join.then(|| Join {
                info: Some(info.clone()),
            }),
            leave: (!join).then(|| Leave {
                info: Some(info.clone()),
            }),
            ..Default::default()
        });
        for subscriber in subscribers.iter().filter(|s| s.join_leave) {
            if let Some(message) = encoded.get(subscriber.wire) {
                subscriber.deliver_presence(message, direct);
            }
        }
    }
}

/// What clients see of a publication: the broker-only fields stay behind.
pub fn client_publication(publication: &Publication) -> Publication {
    Publication {
        epoch: String::new(),
        prev_data: Bytes::new(),
        time: 0,
        ..publication.clone()
    }
}

/// A push encoded lazily, at most once per encoding, and compressed at most once per encoding
/// for the connections that negotiated permessage-deflate.
struct Encoded<F> {
    build: Option<F>,
    reply: Reply,
    /// Indexed by [`slot`]: JSON, Protobuf, then the same deflated.
    slots: [Option<Option<Bytes>>; 4],
}

/// Where a wire format's bytes are kept in [`Encoded`].
fn slot(encoding: Encoding, deflated: bool) -> usize {
    let encoding = match encoding {
        Encoding::Json => 0,
        Encoding::Protobuf => 1,
    };
    encoding + if deflated { 2 } else { 0 }
}

impl<F: FnOnce() -> Push> Encoded<F> {
    fn new(build: F) -> Self {
        Self {
            build: Some(build),
            reply: Reply::default(),
            slots: Default::default(),
        }
    }

    /// The reply carrying the push as `wire` wants it; `None` if it cannot be encoded that way
    /// (data that is not JSON, for a JSON client: nothing valid can be sent).
    fn get(&mut self, wire: Wire) -> Option<&Bytes> {
        let plain = slot(wire.encoding, false);
        if self.slots[plain].is_none() {
            if let Some(build) = self.build.take() {
                self.reply.push = Some(build());
            }
            let encoding = wire.encoding;
            self.slots[plain] = Some(
                match gyre_proto::codec::encode_reply(encoding, &self.reply) {
                    Ok(bytes) => Some(bytes),
                    Err(error) => {
                        tracing::warn!(%error, "push not encodable for {encoding:?} clients");
                        None
                    }
                },
            );
        }
        let Some(deflate) = wire.deflate else {
            return self.slots[plain].as_ref().and_then(Option::as_ref);
        };
        let compressed = slot(wire.encoding, true);
        if self.slots[compressed].is_none() {
            let encoded = self.slots[plain].clone().flatten();
            self.slots[compressed] = Some(encoded.map(|bytes| deflate.compress(&bytes)));
        }
        self.slots[compressed].as_ref().and_then(Option::as_ref)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{Batch, Outbox};
    use gyre_proto::codec::deflate::{self, Deflate};

    /// A live subscriber of `channel` on `hub` with its own outbox.
    fn subscriber(hub: &Hub, connection: ConnectionId, wire: Wire) -> Arc<Outbox> {
        let outbox = Arc::new(Outbox::new(1 << 20));
        let (control, _receiver) = control_channel();
        let subscription = Arc::new(Subscription::new(
            connection,
            "news".into(),
            wire,
            false,
            Arc::clone(&outbox),
            control,
        ));
        subscription.go_live(None, LivePosition::default());
        hub.add(subscription);
        outbox
    }

    async fn single(outbox: &Outbox) -> Bytes {
        match outbox.next_batch(10).await {
            Batch::Messages(mut messages) if messages.len() == 1 => messages.remove(0),
            other => panic!("expected one message, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_publication_is_encoded_and_compressed_once_for_all_subscribers() {
        let hub = Hub::new();
        let compressed = Wire {
            encoding: Encoding::Json,
            deflate: Some(Deflate {
                level: 1,
                min_size: 0,
            }),
        };
        let outboxes = [
            subscriber(&hub, 1, compressed),
            subscriber(&hub, 2, compressed),
            subscriber(&hub, 3, Wire::plain(Encoding::Json)),
            subscriber(&hub, 4, Wire::plain(Encoding::Json)),
        ];
        hub.dispatch(
            EngineEvent::Publication {
                channel: "news".into(),
                publication: Box::new(Publication {
                    data: Bytes::from_static(br#"{"text":"compress me once, compress me once"}"#),
                    ..Default::default()
                }),
                epoch: String::new(),
            },
            true,
        );
        let mut received = Vec::new();
        for outbox in &outboxes {
            received.push(single(outbox).await);
        }
        // The very same bytes (one allocation) per wire format.
        assert_eq!(received[0].as_ptr(), received[1].as_ptr());
        assert_eq!(received[2].as_ptr(), received[3].as_ptr());
        let payload = deflate::message_payload(Encoding::Json, &received[..1]);
        assert_eq!(deflate::inflate(&payload, 1 << 16).unwrap(), received[2]);
    }
}
