//! The Redis engine: publications, history and presence through `libgyre.so` (the `GYRE.*`
//! commands of `docs/module.md`), delivery through Redis PUB/SUB.
//!
//! Every write is one module command, so publish + history append are atomic in Redis and any
//! number of stateless `gyre` nodes share the same streams. Two RESP3 connections, each a
//! reconnecting [`ConnectionManager`]:
//! - commands (`commands`): shared by every caller, multiplexed;
//! - subscriptions (`pubsub`): this node's SUBSCRIBEs, resubscribed automatically after a
//!   reconnect and followed by [`EngineEvent::Resync`](super::EngineEvent::Resync).
//!
//! One Redis for now: [`RedisSettings::addresses`] takes a list for the client-side sharding
//! Centrifugo does (jump consistent hash of the channel), but only the first address is used.

mod commands;
mod pubsub;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gyre_proto::ClientInfo;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Cmd, IntoConnectionInfo, ProtocolVersion, RedisError, Value};

use super::{
    ControlCommand, EngineError, EventSender, HistoryOptions, HistoryQuery, HistoryResult,
    PresenceStats, PublishOptions, StreamPosition,
};
use pubsub::PubSub;

/// Where the Redis engine connects and how it names things.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// `redis://host:port[/db]` or `unix:///path` URLs (`rediss://` needs a TLS feature of the
    /// `redis` crate that is not enabled yet). Only the first is used (sharding across several
    /// is future work).
    pub addresses: Vec<String>,
    /// Key and channel prefix; must equal the module's `gyre.prefix` (checked on connect).
    pub prefix: String,
    /// Presence TTL used when [`RedisEngine::add_presence`] is given a zero TTL.
    pub presence_ttl: Duration,
    /// Limit of one connection attempt.
    pub connect_timeout: Duration,
    /// Limit of one command's round trip (named like `engine.redis.io_timeout` in the config).
    pub io_timeout: Duration,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            addresses: vec!["redis://127.0.0.1:6379".into()],
            prefix: "gyre".into(),
            presence_ttl: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(1),
            io_timeout: Duration::from_secs(4),
        }
    }
}

/// The Redis engine of one node.
pub struct RedisEngine {
    commands: ConnectionManager,
    pubsub: PubSub,
    presence_ttl: Duration,
    /// `<prefix>.control`: server API commands for every node's connections.
    control_channel: String,
    /// What [`RedisEngine::register_namespace`] stored, to store again after Redis comes back
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
    /// Connects the command and subscription connections, checks that the module is loaded
    /// with the same prefix, and starts delivering subscribed channels' events into `events`.
    pub async fn connect(
        settings: RedisSettings,
        events: EventSender,
    ) -> Result<RedisEngine, EngineError> {
        let address = settings
            .addresses
            .first()
            .ok_or_else(|| EngineError::Unavailable("no redis address configured".into()))?;
        if settings.addresses.len() > 1 {
            tracing::warn!(
                "sharding across several redis addresses is not supported yet; using {address}"
            );
        }
        let client = resp3_client(address)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.connect_timeout))
            .set_response_timeout(Some(settings.io_timeout))
            // Few retries per reconnect: a command waits for them, and failing fast with
            // Unavailable beats holding a client's request while Redis is down. The next command
            // (or the subscription side's resync probe) starts a new reconnect anyway.
            .set_number_of_retries(3)
            .set_max_delay(Duration::from_secs(1));
        let commands = ConnectionManager::new_with_config(client.clone(), config.clone())
            .await
            .map_err(unavailable)?;
        check_module(&mut commands.clone(), &settings.prefix).await?;
        let namespaces = Namespaces::default();
        let reregister = pubsub::Reregister {
            commands: commands.clone(),
            namespaces: namespaces.clone(),
        };
        let pubsub = PubSub::connect(client, config, &settings.prefix, events, reregister).await?;
        Ok(RedisEngine {
            commands,
            pubsub,
            presence_ttl: settings.presence_ttl,
            control_channel: pubsub::control_channel(&settings.prefix),
            namespaces,
        })
    }

    async fn query(&self, cmd: &Cmd) -> Result<Value, EngineError> {
        cmd.query_async(&mut self.commands.clone())
            .await
            .map_err(unavailable)
    }

    /// Stores a namespace's history options in Redis (`GYRE.NAMESPACE SET`), so that publishes
    /// without `HISTORY` (e.g. from `redis-cli`) on its channels keep the same history as the
    /// proxy's. `""` is the namespace of channels without `:`.
    pub async fn register_namespace(
        &self,
        name: &str,
        history: Option<HistoryOptions>,
    ) -> Result<(), EngineError> {
        self.query(&commands::register_namespace(name, history))
            .await?;
        let mut namespaces = self.namespaces.lock();
        namespaces.retain(|(known, _)| known != name);
        namespaces.push((name.to_owned(), history));
        Ok(())
    }

    /// `PUBLISH <prefix>.control <json>`: every node's subscription connection receives it.
    pub async fn publish_control(&self, command: &ControlCommand) -> Result<(), EngineError> {
        let payload = serde_json::to_vec(command)
            .map_err(|e| EngineError::Protocol(format!("control command: {e}")))?;
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(&self.control_channel).arg(payload);
        self.query(&cmd).await.map(drop)
    }

    pub async fn publish(
        &self,
        channel: &str,
        data: Bytes,
        options: &PublishOptions,
    ) -> Result<StreamPosition, EngineError> {
        let reply = self
            .query(&commands::publish(channel, &data, options))
            .await?;
        commands::parse_position(&reply)
    }

    pub async fn history(
        &self,
        channel: &str,
        query: HistoryQuery,
    ) -> Result<HistoryResult, EngineError> {
        let reply = self.query(&commands::history(channel, query)).await?;
        commands::parse_history(&reply)
    }

    pub async fn position(
        &self,
        channel: &str,
        meta_ttl: Duration,
    ) -> Result<StreamPosition, EngineError> {
        let reply = self.query(&commands::position(channel, meta_ttl)).await?;
        commands::parse_position(&reply)
    }

    pub async fn remove_history(&self, channel: &str) -> Result<(), EngineError> {
        let reply = self.query(&commands::remove_history(channel)).await?;
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
            .query(&commands::add_presence(channel, info, ttl, join_leave))
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
            .query(&commands::remove_presence(
                channel,
                &info.client,
                join_leave,
            ))
            .await?;
        commands::expect_int(&reply)
    }

    pub async fn presence(
        &self,
        channel: &str,
    ) -> Result<HashMap<String, ClientInfo>, EngineError> {
        let reply = self.query(&commands::presence(channel)).await?;
        commands::parse_presence(&reply)
    }

    pub async fn presence_stats(&self, channel: &str) -> Result<PresenceStats, EngineError> {
        let reply = self.query(&commands::presence_stats(channel)).await?;
        commands::parse_presence_stats(&reply)
    }

    pub async fn subscribe(&self, channel: &str) -> Result<(), EngineError> {
        self.pubsub.subscribe(channel).await
    }

    pub async fn unsubscribe(&self, channel: &str) -> Result<(), EngineError> {
        self.pubsub.unsubscribe(channel).await
    }
}

/// A client for `address` that speaks RESP3 whatever the URL says: PUB/SUB messages arrive as
/// push frames on a connection that also answers commands (PING, SUBSCRIBE confirmations).
fn resp3_client(address: &str) -> Result<Client, EngineError> {
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
async fn check_module(con: &mut ConnectionManager, prefix: &str) -> Result<(), EngineError> {
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
