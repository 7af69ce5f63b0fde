//! Engines: where publications, history and presence live, and how publications reach every
//! `gyre` node.
//!
//! - [`memory`]: one process, no Redis; the default for a first run.
//! - [`redis`]: Redis with `libgyre.so` loaded; any number of stateless `gyre` nodes.
//!
//! Both keep the same contract, checked by one conformance suite:
//! - **publish + history append are atomic per channel**: a publication gets the next offset of
//!   its channel's stream and is delivered to subscribers in offset order;
//! - delivery to this node's subscribers is through [`EngineEvent`]s on the channel given to
//!   the engine's constructor ([`memory::MemoryEngine::new`], [`redis::RedisEngine::connect`]);
//!   the engine never calls into the hub, so `engine` depends on `proto` only;
//! - at-most-once delivery: an engine may lose live messages (a Redis reconnect); it then sends
//!   [`EngineEvent::Resync`] so that positioned subscriptions are checked against history.

pub mod memory;
pub mod redis;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use gyre_proto::{ClientInfo, Publication};
use tokio::sync::mpsc;

/// A position in a channel's history stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamPosition {
    pub offset: u64,
    pub epoch: String,
}

/// How a channel keeps history; `None` in [`PublishOptions::history`] means no history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryOptions {
    /// Publications kept (> 0).
    pub size: u64,
    /// How long publications are kept (> 0).
    pub ttl: Duration,
    /// How long offset and epoch survive the last publication (`ZERO` = forever).
    pub meta_ttl: Duration,
}

/// What a publish carries besides the data.
#[derive(Debug, Clone, Default)]
pub struct PublishOptions {
    pub history: Option<HistoryOptions>,
    /// The publisher, for client publications.
    pub info: Option<ClientInfo>,
    pub tags: HashMap<String, String>,
    /// Publishes with the same key within [`Self::idempotency_ttl`] return the first result.
    pub idempotency_key: Option<String>,
    pub idempotency_ttl: Option<Duration>,
    /// The publication may reach delta subscribers as a patch even when its namespace's
    /// `delta_publish` is off (carried as `Publication::delta_allowed`, so every node decides
    /// the same).
    pub delta: bool,
    /// When > 0 and the channel has history: the publication is skipped, atomically with the
    /// append, unless `version` is greater than the channel's stored version of the same
    /// `version_epoch` (an empty `version_epoch` compares with whatever epoch is stored). A
    /// skipped publication takes no offset, reaches nobody, and the publish returns
    /// `StreamPosition::default()`, as a publication outside the stream would.
    pub version: u64,
    pub version_epoch: String,
}

/// Which publications a history call returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Only publications after (or, reversed, before) this offset.
    pub since: Option<u64>,
    /// `None`: all; `Some(0)`: none, only the stream position.
    pub limit: Option<u64>,
    /// Newest first.
    pub reverse: bool,
}

/// The stream position of a channel and the publications a [`HistoryQuery`] selected, each with
/// its `offset` set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistoryResult {
    pub position: StreamPosition,
    pub publications: Vec<Publication>,
}

/// Counts of a channel's presence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PresenceStats {
    pub num_clients: u32,
    pub num_users: u32,
}

/// What an engine delivers to this node.
#[derive(Debug, Clone)]
pub enum EngineEvent {
    /// A publication on a channel this node subscribed to; `offset` is set when the channel has
    /// history, and `epoch` is its stream's epoch (empty without history). Boxed: a
    /// Publication is several times larger than the other variants.
    Publication {
        channel: String,
        publication: Box<Publication>,
        epoch: String,
    },
    Join {
        channel: String,
        info: ClientInfo,
    },
    Leave {
        channel: String,
        info: ClientInfo,
    },
    /// Live messages may have been lost (e.g. the Redis connection dropped and came back):
    /// every positioned subscription must compare its position with the stream.
    Resync,
    /// A command for this node's connections, from any node's server API.
    Control(ControlCommand),
}

/// A server API action aimed at a user's (or one client's) connections, wherever they are:
/// [`Engine::publish_control`] delivers it to every node, which applies it to its own
/// connections. An empty `client` means every connection of `user`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ControlCommand {
    Disconnect {
        user: String,
        #[serde(default)]
        client: String,
        code: u16,
        reason: String,
        /// Client ids to spare.
        #[serde(default)]
        whitelist: Vec<String>,
    },
    /// End a subscription (the client gets an unsubscribe push, code 2000).
    Unsubscribe {
        user: String,
        channel: String,
        #[serde(default)]
        client: String,
    },
    /// Add a server-side subscription (the client gets a subscribe push).
    Subscribe {
        user: String,
        channel: String,
        #[serde(default)]
        client: String,
        /// Raw JSON for the subscription's ClientInfo.chan_info; empty = none.
        #[serde(default)]
        info: String,
        /// Raw JSON sent to the client in the subscribe push; empty = none.
        #[serde(default)]
        data: String,
    },
    /// Extend (or end, with `expired`) connections' lifetime, as a refresh proxy would.
    Refresh {
        user: String,
        #[serde(default)]
        client: String,
        #[serde(default)]
        expired: bool,
        /// Unix seconds; 0 = never expires.
        #[serde(default)]
        expire_at: i64,
    },
    /// Commands POSTed to `/emulation` on one node for a session held by another: the node
    /// holding `session` feeds `frame` to it, every other node ignores it.
    Emulation {
        session: String,
        #[serde(with = "base64_bytes")]
        frame: Bytes,
    },
    /// A node saying it is alive, and how busy it is: every node publishes one every
    /// [`NODE_INFO_INTERVAL`], so each knows the others (server API `info`, `/emulation`
    /// forwarding only to nodes that exist).
    Node(NodeInfo),
    /// A question one node asks every node (the server API's `channels`), or one node's answer
    /// to it (see `protocol::survey`).
    Survey(Survey),
}

/// A survey message: a query every node answers, or an answer meant for the node that asked.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "survey", rename_all = "snake_case")]
pub enum Survey {
    /// Which channels have subscribers on your node (those matching `pattern`, if not empty)?
    ChannelsQuery {
        id: String,
        from: String,
        #[serde(default)]
        pattern: String,
    },
    /// Node `node`'s channels and their subscriber counts, for survey `id` of node `to`.
    ChannelsAnswer {
        id: String,
        to: String,
        node: String,
        channels: Vec<(String, u64)>,
    },
}

/// How often a node announces itself on the control channel.
pub const NODE_INFO_INTERVAL: Duration = Duration::from_secs(3);

/// What a node announces about itself (the server API `info` lists these).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeInfo {
    /// The node's id (unique per process start).
    pub uid: String,
    pub name: String,
    pub version: String,
    /// Seconds since the node started.
    pub uptime: u64,
    pub num_clients: u64,
    pub num_users: u64,
    pub num_channels: u64,
    pub num_subs: u64,
}

/// Frames may be Protobuf: carried as base64 in the JSON control message.
mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &Bytes, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Bytes, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        STANDARD
            .decode(text.as_bytes())
            .map(Bytes::from)
            .map_err(serde::de::Error::custom)
    }
}

/// Why an engine call failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Redis is unreachable or answered with an error; the operation may be retried.
    #[error("engine unavailable: {0}")]
    Unavailable(String),
    /// The stored data or a reply could not be understood.
    #[error("engine protocol error: {0}")]
    Protocol(String),
}

/// Sender half of the event channel an engine delivers into.
pub type EventSender = mpsc::UnboundedSender<EngineEvent>;

/// The engine a node runs with. An enum rather than a trait object: two implementations, static
/// dispatch, and `async fn` without boxing.
pub enum Engine {
    Memory(memory::MemoryEngine),
    Redis(redis::RedisEngine),
}

macro_rules! dispatch {
    ($self:ident, $engine:ident => $call:expr) => {
        match $self {
            Engine::Memory($engine) => $call,
            Engine::Redis($engine) => $call,
        }
    };
}

impl Engine {
    /// Publishes to a channel: appends to its history when `options.history` is set, delivers
    /// to every node subscribed to it, and returns the publication's position (offset 0 and an
    /// empty epoch without history, or when its `version` skipped it).
    pub async fn publish(
        &self,
        channel: &str,
        data: Bytes,
        options: &PublishOptions,
    ) -> Result<StreamPosition, EngineError> {
        dispatch!(self, e => e.publish(channel, data, options).await)
    }

    /// Reads a channel's stream position and the publications `query` selects.
    pub async fn history(
        &self,
        channel: &str,
        query: HistoryQuery,
    ) -> Result<HistoryResult, EngineError> {
        dispatch!(self, e => e.history(channel, query).await)
    }

    /// A channel's stream position, creating its epoch (kept for `meta_ttl`; `ZERO` = forever)
    /// when the channel has none yet: a positioned client always learns a real epoch, the one
    /// the next publication will carry.
    pub async fn position(
        &self,
        channel: &str,
        meta_ttl: Duration,
    ) -> Result<StreamPosition, EngineError> {
        dispatch!(self, e => e.position(channel, meta_ttl).await)
    }

    /// Drops a channel's publications; offset and epoch stay.
    pub async fn remove_history(&self, channel: &str) -> Result<(), EngineError> {
        dispatch!(self, e => e.remove_history(channel).await)
    }

    /// Adds or refreshes a client's presence entry for `ttl`; with `join_leave`, a client that
    /// was not present is announced with a join event to every node.
    pub async fn add_presence(
        &self,
        channel: &str,
        info: &ClientInfo,
        ttl: Duration,
        join_leave: bool,
    ) -> Result<(), EngineError> {
        dispatch!(self, e => e.add_presence(channel, info, ttl, join_leave).await)
    }

    /// Removes a client's presence entry; with `join_leave`, removing a present client is
    /// announced with a leave event.
    pub async fn remove_presence(
        &self,
        channel: &str,
        info: &ClientInfo,
        join_leave: bool,
    ) -> Result<(), EngineError> {
        dispatch!(self, e => e.remove_presence(channel, info, join_leave).await)
    }

    /// The live presence entries of a channel, by client id.
    pub async fn presence(
        &self,
        channel: &str,
    ) -> Result<HashMap<String, ClientInfo>, EngineError> {
        dispatch!(self, e => e.presence(channel).await)
    }

    pub async fn presence_stats(&self, channel: &str) -> Result<PresenceStats, EngineError> {
        dispatch!(self, e => e.presence_stats(channel).await)
    }

    /// Starts delivering this channel's events to the node (the hub calls it when the channel
    /// gets its first local subscriber). Returns once the subscription is active, so that a
    /// history read after it cannot miss a publication.
    pub async fn subscribe(&self, channel: &str) -> Result<(), EngineError> {
        dispatch!(self, e => e.subscribe(channel).await)
    }

    /// Delivers a control command to every node (this one included) as
    /// [`EngineEvent::Control`].
    pub async fn publish_control(&self, command: &ControlCommand) -> Result<(), EngineError> {
        dispatch!(self, e => e.publish_control(command).await)
    }

    /// Stops delivering this channel's events (its last local subscriber left). Events already
    /// on their way may still arrive; the hub drops events of channels it no longer holds.
    pub async fn unsubscribe(&self, channel: &str) -> Result<(), EngineError> {
        dispatch!(self, e => e.unsubscribe(channel).await)
    }
}
