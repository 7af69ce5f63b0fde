//! The Redis engine: publications, history and presence through `libgyre.so` (the `GYRE.*`
//! commands of `docs/module.md`), delivery through Redis PUB/SUB.
//!
//! Every write is one module command, so publish + history append are atomic in Redis and any
//! number of stateless `gyre` nodes share the same streams. Two RESP3 connections per Redis, each a
//! reconnecting [`ConnectionManager`]:
//! - commands (`commands`): shared by every caller, multiplexed;
//! - subscriptions (`pubsub`): this node's SUBSCRIBEs, resubscribed automatically after a
//!   reconnect and followed by [`EngineEvent::Resync`](super::EngineEvent::Resync).
//!
//! Several addresses shard channels across independent Redis servers as Centrifugo does
//! (`shard`): each server gets its own pair of connections; a channel's publications, history,
//! presence and subscription all go to the server its name hashes to; control commands go to any
//! one server (round-robin) and every node listens for them on every server; namespaces are
//! stored in every server.

mod cluster;
mod commands;
mod pubsub;
mod shard;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use gyre_proto::ClientInfo;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Cmd, IntoConnectionInfo, ProtocolVersion, RedisError, Value};

use super::{
    ControlCommand, EngineError, EventSender, HistoryOptions, HistoryQuery, HistoryResult,
    PresenceStats, PublishOptions, StreamPosition,
};
use cluster::ClusterShard;
use shard::Shard;

/// Where the Redis engine connects and how it names things.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// `redis://host:port[/db]` or `unix:///path` URLs (`rediss://` needs a TLS feature of the
    /// `redis` crate that is not enabled yet). Several: one shard per address, each an
    /// independent Redis with the module (not DB numbers of one Redis: PUB/SUB ignores them).
    /// Every node must list the same addresses in the same order.
    pub addresses: Vec<String>,
    /// Key and channel prefix; must equal the module's `gyre.prefix` (checked on connect).
    pub prefix: String,
    /// Presence TTL used when [`RedisEngine::add_presence`] is given a zero TTL.
    pub presence_ttl: Duration,
    /// Limit of one connection attempt.
    pub connect_timeout: Duration,
    /// Limit of one command's round trip (named like `engine.redis.io_timeout` in the config).
    pub io_timeout: Duration,
    /// Redis Clusters, each given by its seed addresses; when set, `addresses` is not used and
    /// channels are sharded across the clusters like across standalone servers.
    pub clusters: Vec<Vec<String>>,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            addresses: vec!["redis://127.0.0.1:6379".into()],
            prefix: "gyre".into(),
            presence_ttl: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(1),
            io_timeout: Duration::from_secs(4),
            clusters: Vec::new(),
        }
    }
}

/// One independent part of the engine's Redis: a standalone server or a whole cluster. Each
/// channel lives in one of them (jump hash).
enum Backend {
    Standalone(Shard),
    Cluster(ClusterShard),
}

impl Backend {
    /// Where it is, for messages.
    fn name(&self) -> &str {
        match self {
            Backend::Standalone(shard) => &shard.address,
            Backend::Cluster(cluster) => &cluster.seeds,
        }
    }

    async fn query(&self, cmd: &Cmd) -> Result<Value, EngineError> {
        match self {
            Backend::Standalone(shard) => query(&shard.commands, cmd).await,
            Backend::Cluster(cluster) => cluster.query(cmd).await,
        }
    }

    /// Runs `cmd` on every primary (namespaces live in each).
    async fn query_everywhere(&self, cmd: &Cmd) -> Result<(), EngineError> {
        match self {
            Backend::Standalone(shard) => query(&shard.commands, cmd).await.map(drop),
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
                query(&shard.commands, &cmd).await.map(drop)
            }
            Backend::Cluster(cluster) => cluster.publish_control(channel, payload).await,
        }
    }
}

/// The Redis engine of one node.
pub struct RedisEngine {
    /// One per address (or cluster), in the configured order (the order decides each channel's
    /// shard).
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

/// A Redis failure as the contract's retryable error, keeping Redis's message.
pub(super) fn unavailable(e: RedisError) -> EngineError {
    EngineError::Unavailable(e.to_string())
}

impl RedisEngine {
    /// Connects the command and subscription connections of every address, checks that the
    /// module is loaded with the same prefix in each, and starts delivering subscribed channels'
    /// events into `events`.
    pub async fn connect(
        settings: RedisSettings,
        events: EventSender,
    ) -> Result<RedisEngine, EngineError> {
        if settings.addresses.is_empty() && settings.clusters.is_empty() {
            return Err(EngineError::Unavailable(
                "no redis address configured".into(),
            ));
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.connect_timeout))
            .set_response_timeout(Some(settings.io_timeout))
            // Few retries per reconnect: a command waits for them, and failing fast with
            // Unavailable beats holding a client's request while Redis is down. The next command
            // (or the subscription side's resync probe) starts a new reconnect anyway.
            .set_number_of_retries(3)
            .set_max_delay(Duration::from_secs(1));
        let namespaces = Namespaces::default();
        if !settings.clusters.is_empty() {
            let sharded = settings.clusters.len() > 1;
            let mut shards = Vec::with_capacity(settings.clusters.len());
            for seeds in &settings.clusters {
                let cluster = ClusterShard::connect(
                    seeds,
                    &settings.prefix,
                    (settings.connect_timeout, settings.io_timeout),
                    events.clone(),
                    namespaces.clone(),
                )
                .await;
                shards.push(Backend::Cluster(match cluster {
                    Ok(cluster) => cluster,
                    Err(e) if sharded => return Err(naming(&seeds.join(","), e)),
                    Err(e) => return Err(e),
                }));
            }
            return Ok(RedisEngine {
                shards,
                next_control: AtomicUsize::new(0),
                presence_ttl: settings.presence_ttl,
                control_channel: pubsub::control_channel(&settings.prefix),
                namespaces,
            });
        }
        let sharded = settings.addresses.len() > 1;
        let mut shards = Vec::with_capacity(settings.addresses.len());
        for address in &settings.addresses {
            let shard = Shard::connect(
                address,
                &settings,
                &config,
                events.clone(),
                namespaces.clone(),
            )
            .await;
            shards.push(match shard {
                Ok(shard) => Backend::Standalone(shard),
                // One address: the caller names it already; several: say which one failed.
                Err(e) if sharded => return Err(naming(address, e)),
                Err(e) => return Err(e),
            });
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
            shard.query_everywhere(&cmd).await.map_err(|e| {
                if self.shards.len() > 1 {
                    naming(shard.name(), e)
                } else {
                    e
                }
            })?;
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
        commands::parse_position(&reply)
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

async fn query(commands: &ConnectionManager, cmd: &Cmd) -> Result<Value, EngineError> {
    cmd.query_async(&mut commands.clone())
        .await
        .map_err(unavailable)
}

/// `error` with the shard's address in its message, same kind.
fn naming(address: &str, error: EngineError) -> EngineError {
    match error {
        EngineError::Unavailable(e) => EngineError::Unavailable(format!("redis {address}: {e}")),
        EngineError::Protocol(e) => EngineError::Protocol(format!("redis {address}: {e}")),
    }
}

/// A client for `address` that speaks RESP3 whatever the URL says: PUB/SUB messages arrive as
/// push frames on a connection that also answers commands (PING, SUBSCRIBE confirmations).
pub(super) fn resp3_client(address: &str) -> Result<Client, EngineError> {
    let info = address
        .into_connection_info()
        .map_err(|e| EngineError::Unavailable(format!("redis address {address:?}: {e}")))?;
    let redis = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    Client::open(info.set_redis_settings(redis)).map_err(unavailable)
}

/// Fails when the module is not loaded or uses another prefix: the proxy would then subscribe
/// to channels nobody publishes on. A Redis that refuses `CONFIG` (managed services rename it)
/// is only warned about.
pub(super) async fn check_module(
    con: &mut ConnectionManager,
    prefix: &str,
) -> Result<(), EngineError> {
    let reply = match redis::cmd("CONFIG")
        .arg("GET")
        .arg("gyre.prefix")
        .query_async::<Value>(con)
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
