//! The node's channel registry: which local connections subscribe to which channel, and the
//! broadcast of engine events to them.
//!
//! Encode once: a publication is encoded at most once per encoding (JSON, Protobuf) and the same
//! `Bytes` goes to every subscriber's queue. The registry is sharded by channel; a broadcast
//! holds its shard's lock only to take the channel's subscriber list (shared, copied on write
//! by a subscribe or unsubscribe during a broadcast) and, with delta subscribers, to make the
//! patch; it writes to sockets holding no hub lock (see [`Subscription::deliver_publication`]).
//! [`Fanout`] runs the broadcasts of different channels in parallel, each channel's in order.
//!
//! Tags filters are grouped per channel: each distinct filter is evaluated once per
//! publication, whatever the number of subscribers using it. Delta subscribers share one patch
//! per publication, made against the channel's previous publication, which the channel keeps
//! while it has such subscribers.

mod fanout;
pub mod filter;
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

pub use fanout::{Fanout, HubOwner};
pub use filter::TagsFilter;
pub use subscription::{
    ConnectionId, Control, ControlReceiver, ControlSender, Delivery, Interest, LivePosition,
    Subscription, control_channel,
};

use crate::engine::{ControlCommand, EngineEvent};
use gyre_proto::codes::Disconnect;

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

impl Connections {
    /// Takes `connection` out of the user and session indexes it was in.
    fn forget(
        &mut self,
        connection: ConnectionId,
        identity: Option<Identity>,
        session: Option<Box<str>>,
    ) {
        if let Some(session) = session {
            self.by_session.remove(&*session);
        }
        if let Some(Identity { user, .. }) = identity
            && let Some(ids) = self.by_user.get_mut(&*user)
        {
            ids.remove(&connection);
            if ids.is_empty() {
                self.by_user.remove(&*user);
            }
        }
    }
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
    channels: HashMap<String, Channel>,
}

/// One channel's subscribers on this node.
#[derive(Default)]
struct Channel {
    /// Shared with the broadcasts in progress, which deliver outside the shard's lock.
    subscribers: Arc<Vec<Subscriber>>,
    filters: Filters,
    /// Subscribers that negotiated delta compression, and those of them in a `delta_publish`
    /// namespace (every publication is patched for them; for the others only publications
    /// marked `delta_allowed`).
    delta_subscribers: usize,
    patch_subscribers: usize,
    /// The last positioned publication, while there are delta subscribers: the base of the next
    /// patch.
    last: Option<Last>,
}

#[derive(Clone)]
struct Subscriber {
    subscription: Arc<Subscription>,
    /// Index of its tags filter in [`Channel::filters`].
    filter: Option<usize>,
}

/// The distinct tags filters of a channel's subscribers, each with how many use it.
#[derive(Default)]
struct Filters {
    slots: Vec<Option<(Arc<TagsFilter>, usize)>>,
    by_filter: HashMap<Arc<TagsFilter>, usize>,
}

impl Filters {
    fn acquire(&mut self, filter: &Arc<TagsFilter>) -> usize {
        if let Some(&slot) = self.by_filter.get(filter) {
            if let Some((_, users)) = &mut self.slots[slot] {
                *users += 1;
            }
            return slot;
        }
        let entry = Some((Arc::clone(filter), 1));
        let slot = match self.slots.iter().position(Option::is_none) {
            Some(free) => {
                self.slots[free] = entry;
                free
            }
            None => {
                self.slots.push(entry);
                self.slots.len() - 1
            }
        };
        self.by_filter.insert(Arc::clone(filter), slot);
        slot
    }

    /// Each slot's filter, for a broadcast to evaluate outside the shard's lock.
    fn snapshot(&self) -> Vec<Option<Arc<TagsFilter>>> {
        self.slots
            .iter()
            .map(|slot| slot.as_ref().map(|(filter, _)| Arc::clone(filter)))
            .collect()
    }

    fn release(&mut self, slot: usize) {
        if let Some((filter, users)) = &mut self.slots[slot] {
            *users -= 1;
            if *users == 0 {
                self.by_filter.remove(&**filter);
                self.slots[slot] = None;
            }
        }
    }
}

struct Last {
    offset: u64,
    epoch: String,
    data: Bytes,
}

impl Channel {
    fn insert(&mut self, subscription: Arc<Subscription>) {
        let filter = subscription
            .filter
            .as_ref()
            .map(|f| self.filters.acquire(f));
        if subscription.delta {
            self.delta_subscribers += 1;
            if subscription.delta_publish {
                self.patch_subscribers += 1;
            }
        }
        Arc::make_mut(&mut self.subscribers).push(Subscriber {
            subscription,
            filter,
        });
    }

    /// Removes `connection`'s subscription, which a broadcast in progress then skips; whether
    /// there was one.
    fn remove(&mut self, connection: ConnectionId) -> bool {
        let Some(index) = self
            .subscribers
            .iter()
            .position(|s| s.subscription.connection == connection)
        else {
            return false;
        };
        let removed = Arc::make_mut(&mut self.subscribers).remove(index);
        removed.subscription.retire();
        if let Some(slot) = removed.filter {
            self.filters.release(slot);
        }
        if removed.subscription.delta {
            self.delta_subscribers -= 1;
            if removed.subscription.delta_publish {
                self.patch_subscribers -= 1;
            }
        }
        if self.delta_subscribers == 0 {
            self.last = None;
        }
        true
    }

    /// The patch of `publication` against the previous publication, when this one is patched
    /// (`delta_publish`, or marked `delta_allowed`) and that one is known (it is remembered for
    /// the next call, patched or not); `None` means "send it whole".
    fn patch(&mut self, publication: &Publication, epoch: &str) -> Option<Bytes> {
        if self.delta_subscribers == 0 {
            return None;
        }
        if publication.offset == 0 {
            // Not in the stream (skip_history), yet delivered: clients now hold its data, which
            // no later patch is based on. The next publication goes whole.
            self.last = None;
            return None;
        }
        let data = &publication.data;
        let patched = self.patch_subscribers > 0 || publication.delta_allowed;
        let patch = match &self.last {
            Some(last)
                if patched && last.offset + 1 == publication.offset && last.epoch == epoch =>
            {
                let patch = gyre_proto::fossil::create(&last.data, data);
                (patch.len() < data.len()).then(|| Bytes::from(patch))
            }
            _ => None,
        };
        match &mut self.last {
            Some(last) => {
                last.offset = publication.offset;
                last.data = data.clone();
                if last.epoch != epoch {
                    epoch.clone_into(&mut last.epoch);
                }
            }
            None => {
                self.last = Some(Last {
                    offset: publication.offset,
                    epoch: epoch.to_owned(),
                    data: data.clone(),
                })
            }
        }
        patch
    }
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
        let channel = shard
            .channels
            .entry(subscription.channel.clone())
            .or_default();
        channel.remove(subscription.connection);
        channel.insert(subscription);
        channel.subscribers.len() == 1
    }

    /// Removes a connection's subscription; true if the channel has no subscriber left on this
    /// node (the caller unsubscribes the engine, holding [`Self::channel_gate`]).
    pub fn remove(&self, channel: &str, connection: ConnectionId) -> bool {
        let mut shard = self.shards[Self::index(channel)].lock();
        let Some(subscribers) = shard.channels.get_mut(channel) else {
            return false;
        };
        let removed = subscribers.remove(connection);
        if subscribers.subscribers.is_empty() {
            shard.channels.remove(channel);
        }
        removed && !shard.channels.contains_key(channel)
    }

    /// Tells the channel's delta state the publication a delta subscriber just recovered (the
    /// last of its subscribe reply), unless the channel already knows a publication: the next
    /// live one can then be a patch, also when this subscriber is the channel's first again.
    pub fn seed_delta_base(&self, channel: &str, publication: &Publication, epoch: &str) {
        let mut shard = self.shards[Self::index(channel)].lock();
        if let Some(channel) = shard.channels.get_mut(channel)
            && channel.delta_subscribers > 0
            && channel.last.is_none()
            && publication.offset > 0
        {
            channel.last = Some(Last {
                offset: publication.offset,
                epoch: epoch.to_owned(),
                data: publication.data.clone(),
            });
        }
    }

    pub fn num_channels(&self) -> usize {
        self.shards.iter().map(|s| s.lock().channels.len()).sum()
    }

    /// Subscriptions of all connections of this node.
    pub fn num_subscriptions(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let shard = s.lock();
                shard
                    .channels
                    .values()
                    .map(|c| c.subscribers.len())
                    .sum::<usize>()
            })
            .sum()
    }

    pub fn num_subscribers(&self, channel: &str) -> usize {
        self.shards[Self::index(channel)]
            .lock()
            .channels
            .get(channel)
            .map_or(0, |c| c.subscribers.len())
    }

    /// The channels with local subscribers and their counts.
    pub fn channels(&self) -> Vec<(String, usize)> {
        self.shards
            .iter()
            .flat_map(|s| {
                s.lock()
                    .channels
                    .iter()
                    .map(|(c, channel)| (c.clone(), channel.subscribers.len()))
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

    /// Undoes [`Self::identify`] and [`Self::register_session`]: the connect failed after them,
    /// and a connection that is not connected must not count for its user or take commands.
    pub fn forget_identity(&self, connection: ConnectionId) {
        let mut connections = self.connections.lock();
        let Some(entry) = connections.by_id.get_mut(&connection) else {
            return;
        };
        let (identity, session) = (entry.identity.take(), entry.session.take());
        connections.forget(connection, identity, session);
    }

    pub fn unregister_connection(&self, connection: ConnectionId) {
        let mut connections = self.connections.lock();
        let Some(entry) = connections.by_id.remove(&connection) else {
            return;
        };
        connections.forget(connection, entry.identity, entry.session);
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

    /// Delivers one engine event to this node's subscribers, on the calling thread ([`Fanout`]
    /// calls it from the event's lane). `direct`: write into idle sockets from this thread (the
    /// lane keeps up: lowest latency, one write per delivery and no task wake-up); otherwise
    /// queue for the connections' tasks (the lane is behind: the writes spread over every
    /// thread and each connection's backlog goes out in one write).
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
        let (subscribers, filters, patch) = {
            let mut shard = self.shards[Self::index(channel)].lock();
            let Some(subscribers) = shard.channels.get_mut(channel) else {
                return;
            };
            let patch = subscribers.patch(publication, epoch);
            (
                Arc::clone(&subscribers.subscribers),
                subscribers.filters.snapshot(),
                patch,
            )
        };
        let mut plain = Encoded::new(|_| {
            Some(Push {
                channel: channel.to_owned(),
                r#pub: Some(client_publication(publication)),
                ..Default::default()
            })
        });
        // What delta subscribers get: the data as a JSON string for JSON clients (whole, or the
        // patch); Protobuf clients take the plain push's bytes when it is whole.
        let delta_push = |data: &Bytes, delta: bool, encoding: Encoding| {
            Some(Push {
                channel: channel.to_owned(),
                r#pub: Some(delta_publication(publication, data, delta, encoding)?),
                ..Default::default()
            })
        };
        let mut whole = Encoded::new(|encoding| delta_push(&publication.data, false, encoding));
        let mut patched = Encoded::new(|encoding| {
            patch
                .as_ref()
                .and_then(|patch| delta_push(patch, true, encoding))
        });
        // Each distinct filter's verdict, computed when a subscriber first needs it.
        let mut verdicts = vec![None; filters.len()];
        // One clock read per publication, not per subscriber.
        let now = std::time::Instant::now();
        for subscriber in subscribers.iter() {
            let subscription = &subscriber.subscription;
            let passes = subscriber.filter.is_none_or(|slot| {
                *verdicts[slot].get_or_insert_with(|| {
                    filters[slot]
                        .as_ref()
                        .is_some_and(|filter| filter.matches(&publication.tags))
                })
            });
            let wire = subscription.wire;
            let (message, patch) = if !passes {
                (None, None)
            } else if subscription.delta {
                let whole = match wire.encoding {
                    Encoding::Json => whole.get(wire).cloned(),
                    Encoding::Protobuf => plain.get(wire).cloned(),
                };
                (whole, patched.get(wire).cloned())
            } else {
                (plain.get(wire).cloned(), None)
            };
            if passes && message.is_none() {
                // Binary data for a JSON client: nothing valid can be sent, and skipping it
                // would lose it silently ("inappropriate protocol",
                // docs/protocol.md#json-encoding).
                subscription.close_connection(gyre_proto::codes::INAPPROPRIATE_PROTOCOL);
                continue;
            }
            let delivery = Delivery {
                offset: publication.offset,
                epoch,
                message: message.as_ref(),
                patch: patch.as_ref(),
            };
            subscription.deliver_publication(delivery, now, direct);
        }
    }

    fn broadcast_presence(&self, channel: &str, info: ClientInfo, join: bool, direct: bool) {
        let Some(subscribers) = self.shards[Self::index(channel)]
            .lock()
            .channels
            .get(channel)
            .map(|channel| Arc::clone(&channel.subscribers))
        else {
            return;
        };
        let mut encoded = Encoded::new(|_| {
            Some(Push {
                channel: channel.to_owned(),
                join: join.then(|| Join {
                    info: Some(info.clone()),
                }),
                leave: (!join).then(|| Leave {
                    info: Some(info.clone()),
                }),
                ..Default::default()
            })
        });
        for subscriber in subscribers
            .iter()
            .map(|s| &s.subscription)
            .filter(|s| s.join_leave)
        {
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
        delta_allowed: false,
        ..publication.clone()
    }
}

/// A publication as a delta subscriber receives it: `data` (the whole payload or a patch) as a
/// JSON string for JSON clients, raw for Protobuf ones. `None` for a JSON client when `data` is
/// not text (or, whole, not JSON): nothing valid can be sent.
pub fn delta_publication(
    publication: &Publication,
    data: &Bytes,
    delta: bool,
    encoding: Encoding,
) -> Option<Publication> {
    let data = match encoding {
        Encoding::Protobuf => data.clone(),
        Encoding::Json => {
            let text = std::str::from_utf8(data).ok()?;
            if !delta && serde_json::from_str::<&serde_json::value::RawValue>(text).is_err() {
                return None;
            }
            Bytes::from(serde_json::to_vec(text).ok()?)
        }
    };
    Some(Publication {
        data,
        delta,
        ..client_publication(publication)
    })
}

/// A push encoded lazily, at most once per encoding, and compressed at most once per encoding
/// for the connections that negotiated permessage-deflate.
struct Encoded<F> {
    /// The push for an encoding; `None` when there is none to send (no patch, or data a JSON
    /// client cannot receive).
    build: F,
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

impl<F: FnMut(Encoding) -> Option<Push>> Encoded<F> {
    fn new(build: F) -> Self {
        Self {
            build,
            slots: Default::default(),
        }
    }

    /// The reply carrying the push as `wire` wants it; `None` if it cannot be encoded that way
    /// (data that is not JSON, for a JSON client: nothing valid can be sent).
    fn get(&mut self, wire: Wire) -> Option<&Bytes> {
        let plain = slot(wire.encoding, false);
        if self.slots[plain].is_none() {
            let encoding = wire.encoding;
            let reply = (self.build)(encoding).map(|push| Reply {
                push: Some(push),
                ..Default::default()
            });
            self.slots[plain] =
                Some(reply.and_then(|reply| {
                    match gyre_proto::codec::encode_reply(encoding, &reply) {
                        Ok(bytes) => Some(bytes),
                        Err(error) => {
                            tracing::warn!(%error, "push not encodable for {encoding:?} clients");
                            None
                        }
                    }
                }));
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
        subscriber_with(hub, connection, wire, Interest::default())
    }

    fn subscriber_with(
        hub: &Hub,
        connection: ConnectionId,
        wire: Wire,
        interest: Interest,
    ) -> Arc<Outbox> {
        let outbox = Arc::new(Outbox::new(1 << 20));
        let (control, receiver) = control_channel();
        // Kept alive: a positioned subscriber must be able to report gaps.
        std::mem::forget(receiver);
        let subscription = Arc::new(Subscription::new(
            connection,
            "news".into(),
            wire,
            interest,
            Arc::clone(&outbox),
            control,
        ));
        subscription.go_live(
            None,
            LivePosition {
                positioned: true,
                offset: 0,
                epoch: "e".into(),
            },
            std::time::Instant::now(),
        );
        hub.add(subscription);
        outbox
    }

    fn publish(hub: &Hub, offset: u64, data: &str, tags: &[(&str, &str)]) {
        hub.dispatch(
            EngineEvent::Publication {
                channel: "news".into(),
                publication: Box::new(Publication {
                    data: Bytes::copy_from_slice(data.as_bytes()),
                    offset,
                    tags: tags
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    ..Default::default()
                }),
                epoch: "e".into(),
            },
            true,
        );
    }

    async fn all(outbox: &Outbox) -> Vec<Bytes> {
        match outbox.next_batch(100).await {
            Batch::Messages(messages) => messages,
            other => panic!("expected messages, got {other:?}"),
        }
    }

    fn filter(key: &str, value: &str) -> Option<Arc<TagsFilter>> {
        let node = gyre_proto::protocol::FilterNode {
            key: key.into(),
            cmp: "eq".into(),
            val: value.into(),
            ..Default::default()
        };
        Some(Arc::new(TagsFilter::compile(&node).unwrap()))
    }

    #[tokio::test]
    async fn equal_filters_share_one_slot_and_only_matches_are_delivered() {
        let hub = Hub::new();
        let json = Wire::plain(Encoding::Json);
        let wants = |value| Interest {
            filter: filter("ticker", value),
            ..Interest::default()
        };
        let aapl = [
            subscriber_with(&hub, 1, json, wants("AAPL")),
            subscriber_with(&hub, 2, json, wants("AAPL")),
        ];
        let msft = subscriber_with(&hub, 3, json, wants("MSFT"));
        let everything = subscriber(&hub, 4, json);
        {
            let shard = hub.shards[Hub::index("news")].lock();
            let filters = &shard.channels["news"].filters;
            assert_eq!(filters.by_filter.len(), 2, "one slot per distinct filter");
        }
        publish(&hub, 1, r#"{"p":1}"#, &[("ticker", "AAPL")]);
        publish(&hub, 2, r#"{"p":2}"#, &[("ticker", "MSFT")]);
        publish(&hub, 3, r#"{"p":3}"#, &[]);
        for outbox in &aapl {
            let got = all(outbox).await;
            assert_eq!(got.len(), 1);
            assert!(
                String::from_utf8_lossy(&got[0]).contains(r#"{"p":1}"#),
                "{got:?}"
            );
        }
        assert_eq!(all(&msft).await.len(), 1);
        assert_eq!(all(&everything).await.len(), 3);
        hub.remove("news", 1);
        hub.remove("news", 3);
        let shard = hub.shards[Hub::index("news")].lock();
        assert_eq!(shard.channels["news"].filters.by_filter.len(), 1);
    }

    #[tokio::test]
    async fn delta_subscribers_share_one_patch_per_publication() {
        let hub = Hub::new();
        let delta = Interest {
            delta: true,
            delta_publish: true,
            ..Interest::default()
        };
        let json = Wire::plain(Encoding::Json);
        let outboxes = [
            subscriber_with(&hub, 1, json, delta.clone()),
            subscriber_with(&hub, 2, json, delta.clone()),
        ];
        let first = r#"{"board":"........................................","turn":1}"#;
        let second = r#"{"board":"..........X.............................","turn":2}"#;
        publish(&hub, 1, first, &[]);
        publish(&hub, 2, second, &[]);
        let received = [all(&outboxes[0]).await, all(&outboxes[1]).await];
        assert_eq!(received[0][1].as_ptr(), received[1][1].as_ptr(), "shared");
        let pushes: Vec<Publication> = received[0]
            .iter()
            .map(|bytes| {
                let reply: Reply = gyre_proto::codec::json::decode_message(bytes).unwrap();
                reply.push.unwrap().r#pub.unwrap()
            })
            .collect();
        let text = |p: &Publication| serde_json::from_slice::<String>(&p.data).unwrap();
        assert!(!pushes[0].delta, "the first one is whole");
        assert_eq!(text(&pushes[0]), first);
        assert!(pushes[1].delta);
        let patch = text(&pushes[1]);
        assert!(patch.len() < second.len());
        let applied = gyre_proto::fossil::apply(first.as_bytes(), patch.as_bytes(), 1 << 16);
        assert_eq!(applied.unwrap(), second.as_bytes());
        // A publication outside the stream replaces the clients' base: the next one is whole.
        publish(&hub, 0, r#"{"off":"stream"}"#, &[]);
        publish(&hub, 3, second, &[]);
        let after = all(&outboxes[0]).await;
        let reply: Reply = gyre_proto::codec::json::decode_message(&after[1]).unwrap();
        assert!(!reply.push.unwrap().r#pub.unwrap().delta);
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

    /// A socket that records, at every write, whether the hub's shard, the subscription or the
    /// outbox was locked, and subscribes another connection to the channel during the first
    /// write (a subscribe arriving mid-broadcast).
    struct LockProbe {
        hub: Arc<Hub>,
        watched: std::sync::OnceLock<(Arc<Subscription>, Arc<Outbox>)>,
        locked: Mutex<Vec<[bool; 3]>>,
        late: Mutex<Option<Arc<Outbox>>>,
    }

    impl crate::queue::DirectWrite for Arc<LockProbe> {
        fn try_write(&self, _: &Bytes, _: bool) -> crate::queue::Direct {
            let (subscription, outbox) = self.watched.get().unwrap();
            let shard = self.hub.shards[Hub::index("news")].is_locked();
            self.locked
                .lock()
                .push([shard, subscription.is_locked(), outbox.is_locked()]);
            let mut late = self.late.lock();
            if late.is_none() {
                *late = Some(subscriber(&self.hub, 2, Wire::plain(Encoding::Json)));
            }
            crate::queue::Direct::Written
        }
    }

    #[tokio::test]
    async fn sockets_are_written_with_no_hub_lock_held() {
        let hub = Arc::new(Hub::new());
        let probe = Arc::new(LockProbe {
            hub: Arc::clone(&hub),
            watched: Default::default(),
            locked: Mutex::default(),
            late: Mutex::default(),
        });
        let outbox = Arc::new(Outbox::new(1 << 20));
        outbox.set_direct(Box::new(Arc::clone(&probe)));
        let (control, _receiver) = control_channel();
        let interest = Interest {
            join_leave: true,
            ..Interest::default()
        };
        let subscription = Arc::new(Subscription::new(
            1,
            "news".into(),
            Wire::plain(Encoding::Json),
            interest,
            Arc::clone(&outbox),
            control,
        ));
        let _ = probe
            .watched
            .set((Arc::clone(&subscription), Arc::clone(&outbox)));
        subscription.go_live(
            None,
            LivePosition {
                positioned: true,
                offset: 0,
                epoch: "e".into(),
            },
            std::time::Instant::now(),
        );
        hub.add(subscription);
        // Offsets 0 (no history): the late subscriber has no position to keep.
        publish(&hub, 0, r#"{"p":1}"#, &[]);
        hub.dispatch(
            EngineEvent::Join {
                channel: "news".into(),
                info: ClientInfo::default(),
            },
            true,
        );
        publish(&hub, 0, r#"{"p":2}"#, &[]);
        assert_eq!(*probe.locked.lock(), [[false; 3]; 3]);
        // The subscriber added during the first broadcast gets the publications after it.
        let late = probe.late.lock().take().unwrap();
        assert_eq!(all(&late).await.len(), 1);
        assert_eq!(hub.num_subscribers("news"), 2);
    }
}
