//! The Redis engine: publications, history and presence through `libgyre.so` (the `GYRE.*`
//! commands of `docs/module.md`), delivery through Redis PUB/SUB.
//!
//! Every write is one module command, so publish + history append are atomic in Redis and any
//! number of stateless `gyre` nodes share the same streams.
//!
//! Where the data lives is the [`RedisTopology`] of [`RedisSettings`]; each topology becomes a
//! list of shards (`shard`), each shard an [`Endpoint`](endpoint) (the node to talk to now) and
//! two RESP3 connections to it:
//! - commands (`link`): shared by every caller, multiplexed, replaced when broken, on
//!   `READONLY`, or when the endpoint moves;
//! - subscriptions (`pubsub`): this node's SUBSCRIBEs, subscribed again on every new connection
//!   and followed by [`EngineEvent::Resync`](super::EngineEvent::Resync).
//!
//! Topologies:
//! - standalone addresses shard channels across independent Redis servers as Centrifugo does
//!   (`shard`): a channel's publications, history, presence and subscription all go to the
//!   server its name hashes to; control commands go to any one server (round-robin) and every
//!   node listens for them on every server; namespaces are stored in every server. A TCP proxy
//!   in front of the current primary is a standalone address too;
//! - Sentinel (`sentinel`): one shard, the primary the sentinels name, followed across
//!   failovers;
//! - Redis Cluster (`cluster`): one shard per cluster; inside it redis-rs routes each command
//!   to the primary owning the channel's slot, and the subscriptions live where their slots do
//!   (sharded PUB/SUB when the module publishes with `SPUBLISH`).
//!
//! `connect` turns an address and the node options (credentials, database, TLS) into
//! connections.

mod cluster;
mod cluster_link;
mod commands;
mod connect;
mod endpoint;
mod link;
mod pubsub;
mod sentinel;
mod settings;
mod shard;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use gyre_proto::ClientInfo;
use redis::{Cmd, Value};

use super::{
    ControlCommand, EngineError, EventSender, HistoryOptions, HistoryQuery, HistoryResult,
    PresenceStats, PublishOptions, StreamPosition,
};
use cluster::ClusterShard;
use connect::{Role, Target};
use endpoint::Endpoint;
use link::CommandLink;
pub use settings::{
    ClientIdentity, NodeOptions, RedisSettings, RedisTopology, Secret, SentinelSettings, TlsOptions,
};
use shard::Shard;

/// One independent part of the engine's Redis: a standalone server (or the Sentinel primary),
/// or a whole cluster. Each channel lives in one of them (jump hash).
enum Backend {
    Standalone(Shard),
    Cluster(ClusterShard),
}

impl Backend {
    /// Where it is, for messages.
    fn name(&self) -> String {
        match self {
            Backend::Standalone(shard) => shard.name(),
            Backend::Cluster(cluster) => cluster.seeds.clone(),
        }
    }

    async fn query(&self, cmd: &Cmd) -> Result<Value, EngineError> {
        match self {
            Backend::Standalone(shard) => shard.commands.query(cmd).await,
            Backend::Cluster(cluster) => cluster.query(cmd).await,
        }
    }

    /// Runs `cmd` on every primary (namespaces live in each).
    async fn query_everywhere(&self, cmd: &Cmd) -> Result<(), EngineError> {
        match self {
            Backend::Standalone(shard) => shard.commands.query(cmd).await.map(drop),
            Backend::Cluster(cluster) => cluster.query_all_primaries(cmd).await,
        }
    }

    async fn subscribe(&self, channel: &str) -> Result<(), EngineError> {
        match self {
            Backend::Standalone(shard) => shard.pubsub.subscribe(channel).await,
            Backend::Cluster(cluster) => cluster.pubsub.subscribe(channel).await,
        }
    }

    async fn unsubscribe(&self, channel: &str) -> Result<(), EngineError> {
        match self {
            Backend::Standalone(shard) => shard.pubsub.unsubscribe(channel).await,
            Backend::Cluster(cluster) => cluster.pubsub.unsubscribe(channel).await,
        }
    }

    async fn publish_control(&self, channel: &str, payload: Vec<u8>) -> Result<(), EngineError> {
        match self {
            Backend::Standalone(shard) => {
                let mut cmd = redis::cmd("PUBLISH");
                cmd.arg(channel).arg(payload);
                shard.commands.query(&cmd).await.map(drop)
            }
            Backend::Cluster(cluster) => cluster.publish_control(channel, payload).await,
        }
    }
}

/// The Redis engine of one node.
pub struct RedisEngine {
    /// One per address, per cluster, or the one Sentinel primary, in the configured order (the
    /// order decides each channel's shard).
    shards: Vec<Backend>,
    /// Round-robin counter of [`RedisEngine::publish_control`].
    next_control: AtomicUsize,
    presence_ttl: Duration,
    /// `<prefix>.control`: server API commands for every node's connections.
    control_channel: String,
    /// What [`RedisEngine::register_namespace`] stored, to store again after a shard comes back
    /// (a restart without persistence forgets it).
    namespaces: Namespaces,
}

/// Namespace history options registered in Redis, by name.
pub(super) type Namespaces = Arc<parking_lot::Mutex<Vec<(String, Option<HistoryOptions>)>>>;

impl RedisEngine {
    /// Connects the command and subscription connections of every shard, checks that the
    /// module is loaded with the same prefix in each, and starts delivering subscribed channels'
    /// events into `events`.
    pub async fn connect(
        settings: RedisSettings,
        events: EventSender,
    ) -> Result<RedisEngine, EngineError> {
        let namespaces = Namespaces::default();
        let mut shards = Vec::new();
        if let RedisTopology::Cluster { shards: clusters } = &settings.topology {
            let several = clusters.len() > 1;
            for seeds in clusters {
                let cluster =
                    ClusterShard::connect(seeds, &settings, events.clone(), namespaces.clone())
                        .await;
                shards.push(Backend::Cluster(match cluster {
                    Ok(cluster) => cluster,
                    Err(e) if several => return Err(naming(&seeds.join(","), e)),
                    Err(e) => return Err(e),
                }));
            }
        } else {
            for endpoint in endpoints(&settings).await? {
                shards.push(Backend::Standalone(
                    Shard::connect(
                        endpoint,
                        &settings.prefix,
                        events.clone(),
                        namespaces.clone(),
                    )
                    .await?,
                ));
            }
        }
        Ok(RedisEngine {
            shards,
            next_control: AtomicUsize::new(0),
            presence_ttl: settings.presence_ttl,
            control_channel: pubsub::control_channel(&settings.prefix),
            namespaces,
        })
    }

    /// The shard holding `channel`.
    fn shard(&self, channel: &str) -> &Backend {
        &self.shards[shard::index(channel, self.shards.len())]
    }

    /// Runs a command of `channel` on its shard.
    async fn query(&self, channel: &str, cmd: &Cmd) -> Result<Value, EngineError> {
        self.shard(channel).query(cmd).await
    }

    /// Stores a namespace's history options in Redis (`GYRE.NAMESPACE SET`), so that publishes
    /// without `HISTORY` (e.g. from `redis-cli`) on its channels keep the same history as the
    /// proxy's. `""` is the namespace of channels without `:`.
    pub async fn register_namespace(
        &self,
        name: &str,
        history: Option<HistoryOptions>,
    ) -> Result<(), EngineError> {
        let cmd = commands::register_namespace(name, history);
        for shard in &self.shards {
            shard
                .query_everywhere(&cmd)
                .await
                .map_err(|e| naming(&shard.name(), e))?;
        }
        let mut namespaces = self.namespaces.lock();
        namespaces.retain(|(known, _)| known != name);
        namespaces.push((name.to_owned(), history));
        Ok(())
    }

    /// `PUBLISH <prefix>.control <json>` on one shard (round-robin): every node's subscription
    /// connection to that shard receives it, so every node gets it once.
    pub async fn publish_control(&self, command: &ControlCommand) -> Result<(), EngineError> {
        let payload = serde_json::to_vec(command)
            .map_err(|e| EngineError::Protocol(format!("control command: {e}")))?;
        let next = if self.shards.len() == 1 {
            0
        } else {
            self.next_control.fetch_add(1, Ordering::Relaxed) % self.shards.len()
        };
        self.shards[next]
            .publish_control(&self.control_channel, payload)
            .await
    }

    pub async fn publish(
        &self,
        channel: &str,
        data: Bytes,
        options: &PublishOptions,
    ) -> Result<StreamPosition, EngineError> {
        let reply = self
            .query(channel, &commands::publish(channel, &data, options))
            .await?;
        commands::parse_publish(&reply)
    }

    pub async fn history(
        &self,
        channel: &str,
        query: HistoryQuery,
    ) -> Result<HistoryResult, EngineError> {
        let reply = self
            .query(channel, &commands::history(channel, query))
            .await?;
        commands::parse_history(&reply)
    }

    pub async fn position(
        &self,
        channel: &str,
        meta_ttl: Duration,
    ) -> Result<StreamPosition, EngineError> {
        let reply = self
            .query(channel, &commands::position(channel, meta_ttl))
            .await?;
        commands::parse_position(&reply)
    }

    pub async fn remove_history(&self, channel: &str) -> Result<(), EngineError> {
        let reply = self
            .query(channel, &commands::remove_history(channel))
            .await?;
        commands::expect_int(&reply)
    }

    pub async fn add_presence(
        &self,
        channel: &str,
        info: &ClientInfo,
        ttl: Duration,
        join_leave: bool,
    ) -> Result<(), EngineError> {
        let ttl = if ttl.is_zero() {
            self.presence_ttl
        } else {
            ttl
        };
        let reply = self
            .query(
                channel,
                &commands::add_presence(channel, info, ttl, join_leave),
            )
            .await?;
        commands::expect_int(&reply)
    }

    pub async fn remove_presence(
        &self,
        channel: &str,
        info: &ClientInfo,
        join_leave: bool,
    ) -> Result<(), EngineError> {
        let reply = self
            .query(
                channel,
                &commands::remove_presence(channel, &info.client, join_leave),
            )
            .await?;
        commands::expect_int(&reply)
    }

    pub async fn presence(
        &self,
        channel: &str,
    ) -> Result<HashMap<String, ClientInfo>, EngineError> {
        let reply = self.query(channel, &commands::presence(channel)).await?;
        commands::parse_presence(&reply)
    }

    pub async fn presence_stats(&self, channel: &str) -> Result<PresenceStats, EngineError> {
        let reply = self
            .query(channel, &commands::presence_stats(channel))
            .await?;
        commands::parse_presence_stats(&reply)
    }

    pub async fn subscribe(&self, channel: &str) -> Result<(), EngineError> {
        self.shard(channel).subscribe(channel).await
    }

    pub async fn unsubscribe(&self, channel: &str) -> Result<(), EngineError> {
        self.shard(channel).unsubscribe(channel).await
    }
}

/// The shards' endpoints of `settings`' topology, in shard order.
async fn endpoints(settings: &RedisSettings) -> Result<Vec<Arc<Endpoint>>, EngineError> {
    match &settings.topology {
        RedisTopology::Standalone { addresses } => {
            if addresses.is_empty() {
                return Err(EngineError::Unavailable(
                    "no redis address configured".into(),
                ));
            }
            addresses
                .iter()
                .map(|address| {
                    Target::from_address(address, &settings.nodes, Role::DataNode)
                        .map(Endpoint::fixed)
                })
                .collect()
        }
        RedisTopology::Sentinel(sentinel) => {
            Ok(vec![sentinel::connect(sentinel, &settings.nodes).await?])
        }
        // Each cluster is a shard of its own (`ClusterShard`), with no single endpoint.
        RedisTopology::Cluster { .. } => Err(EngineError::Protocol(
            "a Redis Cluster has no single endpoint".into(),
        )),
    }
}

/// `error` with the shard's address in its message, same kind.
fn naming(address: &str, error: EngineError) -> EngineError {
    match error {
        EngineError::Unavailable(e) => EngineError::Unavailable(format!("redis {address}: {e}")),
        EngineError::Protocol(e) => EngineError::Protocol(format!("redis {address}: {e}")),
    }
}

/// Fails when the module is not loaded or uses another prefix: the proxy would then subscribe
/// to channels nobody publishes on. A Redis that refuses `CONFIG` (managed services rename it)
/// is only warned about.
async fn check_module(commands: &CommandLink, prefix: &str) -> Result<(), EngineError> {
    let reply = match commands
        .query(redis::cmd("CONFIG").arg("GET").arg("gyre.prefix"))
        .await
    {
        Ok(reply) => reply,
        Err(e) => {
            tracing::warn!("cannot check the gyre module's prefix (CONFIG GET failed: {e})");
            return Ok(());
        }
    };
    // RESP3 answers CONFIG GET with a map; RESP2 with a flat array.
    let value = match &reply {
        Value::Map(pairs) => pairs.first().map(|(_, v)| v),
        Value::Array(items) => items.get(1),
        _ => None,
    };
    let module_prefix = match value {
        Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(Value::SimpleString(s)) => s.clone(),
        Some(other) => {
            return Err(EngineError::Protocol(format!(
                "unexpected CONFIG GET gyre.prefix reply: {other:?}"
            )));
        }
        None => {
            return Err(EngineError::Unavailable(
                "the gyre module (libgyre.so) is not loaded in redis".into(),
            ));
        }
    };
    if module_prefix != prefix {
        return Err(EngineError::Protocol(format!(
            "redis module prefix is {module_prefix:?} but gyre is configured with {prefix:?}"
        )));
    }
    Ok(())
}
