//! One Redis Cluster as a shard of the engine: commands routed to the node owning the channel's
//! slot, and the node's subscriptions held where their slots live.
//!
//! Two cluster connections, like the standalone shard's two connections, so a flood of messages
//! never delays a command reply: `commands` (no push sender) and `pubsub` (RESP3 with a push
//! sender). Each keeps one socket per cluster node, so with sharded PUB/SUB a node's
//! subscriptions of all channels of one primary share one socket.
//!
//! redis-rs follows MOVED/ASK, refreshes its slot map when a node answers with a redirect or
//! fails, and resubscribes what it tracks after a reconnect. Two things it does not do, which
//! this shard does (`Repair`):
//! - when a slot moves to another primary, its old owner ends the shard channels of that slot
//!   with a `sunsubscribe` push, and the subscription is gone: the shard subscribes again (the
//!   request is redirected to the new owner);
//! - publications made while a subscription was not in place (the slot was moving, a primary
//!   died and its replica was not promoted yet) were never delivered: once everything is
//!   subscribed again the shard sends [`EngineEvent::Resync`], and every positioned
//!   subscription compares its position with the stream.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::cluster::ClusterClientBuilder;
use redis::cluster::TlsMode;
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
use redis::{ClientTlsConfig, Cmd, ProtocolVersion, PushInfo, PushKind, TlsCertificates, Value};
use tokio::sync::{Notify, mpsc};

use super::Namespaces;
use super::cluster_link::ClusterLink;
use super::pubsub::{self, AbortOnDrop};
use super::{NodeOptions, RedisSettings, connect};
use crate::engine::{EngineError, EngineEvent, EventSender};

/// How the module names and publishes a channel's PUB/SUB messages in this cluster, as the
/// module itself reports it (`gyre.sharded-pubsub`): never configured on the proxy's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Delivery {
    /// `SPUBLISH`: a message stays inside the shard of its channel's slot.
    Sharded,
    /// `PUBLISH`: every cluster node forwards every message to every other node.
    Broadcast,
}

/// A Redis failure as the engine's retryable error, keeping Redis's message.
fn unavailable(e: redis::RedisError) -> EngineError {
    EngineError::Unavailable(e.to_string())
}

/// Retries of one command on a redirect, TRYAGAIN or a lost node, and the pauses between them.
const RETRIES: u32 = 10;
const RETRY_WAIT_MIN_MS: u64 = 10;
const RETRY_WAIT_MAX_MS: u64 = 500;

/// Pause between rounds of resubscription while the cluster is not serving a slot.
const REPAIR_RETRY_MIN: Duration = Duration::from_millis(50);
const REPAIR_RETRY_MAX: Duration = Duration::from_secs(1);
/// Subscriptions sent at once while repairing (each one a round trip to its slot's owner).
const REPAIR_PARALLELISM: usize = 32;

pub(super) struct ClusterShard {
    /// The seed addresses as configured, for messages.
    pub seeds: String,
    commands: Arc<ClusterLink>,
    pub pubsub: ClusterPubSub,
}

impl ClusterShard {
    /// Connects to the cluster through `seeds`, checks the module on every node and starts the
    /// subscription side.
    pub async fn connect(
        seeds: &[String],
        settings: &RedisSettings,
        events: EventSender,
        namespaces: Namespaces,
    ) -> Result<ClusterShard, EngineError> {
        crate::tls::install_crypto_provider();
        check_options(seeds, &settings.nodes)?;
        let options = &settings.nodes;
        let stuck_after = options.io_timeout + options.connect_timeout;
        let (seeds_owned, options_owned) = (seeds.to_vec(), options.clone());
        let commands = ClusterLink::connect(
            "commands",
            move || Ok(client_builder(&seeds_owned, &options_owned)),
            stuck_after,
            options.connect_timeout,
        )
        .await
        .map_err(unavailable)?;
        let delivery = check_module(&commands, &settings.prefix).await?;
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        let (seeds_owned, options_owned) = (seeds.to_vec(), options.clone());
        let connection = ClusterLink::connect(
            "subscriptions",
            move || Ok(client_builder(&seeds_owned, &options_owned).push_sender(push_tx.clone())),
            stuck_after,
            options.connect_timeout,
        )
        .await
        .map_err(unavailable)?;
        let pubsub = ClusterPubSub::start(
            connection,
            Arc::clone(&commands),
            &settings.prefix,
            delivery,
            push_rx,
            events,
            namespaces,
        )
        .await?;
        Ok(ClusterShard {
            seeds: seeds
                .iter()
                .map(|s| connect::redact(s))
                .collect::<Vec<_>>()
                .join(","),
            commands,
            pubsub,
        })
    }

    /// Runs `cmd` on the node owning the slot of its first argument (the channel).
    pub async fn query(&self, cmd: &Cmd) -> Result<Value, EngineError> {
        self.commands
            .run(|mut connection| async move { cmd.query_async(&mut connection).await })
            .await
            .map_err(unavailable)
    }

    /// Runs `cmd` on every primary (namespaces live in each).
    pub async fn query_all_primaries(&self, cmd: &Cmd) -> Result<(), EngineError> {
        all_primaries(&self.commands, cmd).await
    }

    /// Publishes a control message on this cluster (the same way the module publishes).
    pub async fn publish_control(
        &self,
        channel: &str,
        payload: Vec<u8>,
    ) -> Result<(), EngineError> {
        let verb = match self.pubsub.delivery {
            Delivery::Sharded => "SPUBLISH",
            Delivery::Broadcast => "PUBLISH",
        };
        let mut cmd = redis::cmd(verb);
        cmd.arg(channel).arg(payload);
        self.query(&cmd).await.map(drop)
    }
}

/// Runs `cmd` on every primary; fails if any of them answers with an error (naming it).
/// A cluster client for `seeds` (`host:port` or URLs) with the node options: credentials of
/// the keys unless the first seed's URL names them, TLS for `rediss://` or `tls.enabled`, the
/// CA and client certificate, the timeouts. redis-rs connects to the nodes the cluster reports
/// by their addresses, so `tls.server_name` cannot be honoured here and is refused.
fn client_builder(seeds: &[String], options: &NodeOptions) -> ClusterClientBuilder {
    let tls = uses_tls(seeds, options);
    let scheme = if tls { "rediss" } else { "redis" };
    let urls: Vec<String> = seeds
        .iter()
        .map(|seed| match seed.split_once("://") {
            Some((_, rest)) => format!("{scheme}://{rest}"),
            None => format!("{scheme}://{seed}"),
        })
        .collect();
    let mut builder = ClusterClientBuilder::new(urls)
        .use_protocol(ProtocolVersion::RESP3)
        .connection_timeout(options.connect_timeout)
        .response_timeout(options.io_timeout)
        // A slot being migrated answers TRYAGAIN until the channel's keys have moved (see the
        // module's "Slot migration"), usually milliseconds; redis-rs's default first pause is
        // over a second. Short pauses, more tries, at most ~3 s in all.
        .retries(RETRIES)
        .min_retry_wait(RETRY_WAIT_MIN_MS)
        .max_retry_wait(RETRY_WAIT_MAX_MS);
    let url_names_user = seeds.iter().any(|s| s.contains('@'));
    if !url_names_user {
        if let Some(user) = &options.user {
            builder = builder.username(user);
        }
        if let Some(password) = &options.password {
            builder = builder.password(password.expose());
        }
    }
    if tls {
        let mode = if options.tls.insecure_skip_verify {
            TlsMode::Insecure
        } else {
            TlsMode::Secure
        };
        builder = builder.tls(mode);
        if options.tls.ca_pem.is_some() || options.tls.client_identity.is_some() {
            builder =
                builder.certs(TlsCertificates {
                    client_tls: options.tls.client_identity.as_ref().map(|identity| {
                        ClientTlsConfig {
                            client_cert: identity.cert_pem.clone(),
                            client_key: identity.key_pem.expose().as_bytes().to_vec(),
                        }
                    }),
                    root_cert: options.tls.ca_pem.clone(),
                });
        }
    }
    builder
}

fn uses_tls(seeds: &[String], options: &NodeOptions) -> bool {
    options.tls.enabled || seeds.iter().any(|s| s.starts_with("rediss://"))
}

/// Options the cluster client cannot honour, refused at start.
fn check_options(seeds: &[String], options: &NodeOptions) -> Result<(), EngineError> {
    if uses_tls(seeds, options) && options.tls.server_name.is_some() {
        return Err(EngineError::Unavailable(
            "engine.redis.tls.server_name is not supported with cluster_address: nodes are \
             reached at the addresses the cluster reports"
                .into(),
        ));
    }
    Ok(())
}

/// Runs `cmd` on every primary; fails if any of them answers with an error (naming it).
async fn all_primaries(link: &Arc<ClusterLink>, cmd: &Cmd) -> Result<(), EngineError> {
    let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
    let reply = link
        .run(|mut connection| async move { connection.route_command(cmd.clone(), routing).await })
        .await
        .map_err(unavailable)?;
    // Without a response policy: node address → that node's reply (errors included as values).
    let Value::Map(per_node) = reply else {
        return reply.extract_error().map(drop).map_err(unavailable);
    };
    for (node, reply) in per_node {
        if let Err(error) = reply.extract_error() {
            let node = pubsub::text(&node).unwrap_or_default();
            return Err(EngineError::Unavailable(format!(
                "cluster node {node}: {error}"
            )));
        }
    }
    Ok(())
}

/// Every node must run the module with the engine's prefix, and all with one delivery mode.
async fn check_module(link: &Arc<ClusterLink>, prefix: &str) -> Result<Delivery, EngineError> {
    let mut cmd = redis::cmd("CONFIG");
    cmd.arg("GET").arg("gyre.*");
    let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllNodes, None));
    let reply = link
        .run(|mut connection| async move { connection.route_command(cmd, routing).await })
        .await
        .map_err(unavailable)?;
    // Without a response policy redis-rs answers a map of node address → that node's reply.
    let Value::Map(per_node) = reply else {
        return Err(EngineError::Protocol(format!(
            "unexpected CONFIG GET reply from the cluster: {reply:?}"
        )));
    };
    let mut delivery = None;
    for (node, reply) in per_node {
        let node = pubsub::text(&node).unwrap_or_default();
        let settings = config_pairs(&reply);
        let Some(module_prefix) = settings.get("gyre.prefix") else {
            return Err(EngineError::Unavailable(format!(
                "the gyre module (libgyre.so) is not loaded in cluster node {node}"
            )));
        };
        if module_prefix != prefix {
            return Err(EngineError::Protocol(format!(
                "cluster node {node}: module prefix is {module_prefix:?} but gyre is configured \
                 with {prefix:?}"
            )));
        }
        let node_delivery = match settings.get("gyre.sharded-pubsub").map(String::as_str) {
            Some("yes") => Delivery::Sharded,
            _ => Delivery::Broadcast,
        };
        match delivery {
            None => delivery = Some(node_delivery),
            Some(seen) if seen != node_delivery => {
                return Err(EngineError::Protocol(format!(
                    "cluster nodes disagree on gyre.sharded-pubsub (node {node}): set it the \
                     same on every node"
                )));
            }
            Some(_) => {}
        }
    }
    delivery.ok_or_else(|| EngineError::Unavailable("the cluster has no node".into()))
}

/// `CONFIG GET` pairs (RESP3 map or RESP2 flat array) as text.
fn config_pairs(reply: &Value) -> HashMap<String, String> {
    let pairs: Vec<(&Value, &Value)> = match reply {
        Value::Map(pairs) => pairs.iter().map(|(k, v)| (k, v)).collect(),
        Value::Array(items) => items
            .chunks(2)
            .filter_map(|c| Some((c.first()?, c.get(1)?)))
            .collect(),
        _ => Vec::new(),
    };
    pairs
        .into_iter()
        .filter_map(|(k, v)| Some((pubsub::text(k)?, pubsub::text(v)?)))
        .collect()
}

/// The subscription side of one cluster.
pub(super) struct ClusterPubSub {
    connection: Arc<ClusterLink>,
    delivery: Delivery,
    /// `<prefix>.client.`, followed by the channel (hash-tagged, see [`client_channel`]).
    client_prefix: String,
    /// Redis channel → engine channel, for every channel this node subscribes to: what the
    /// repair subscribes again, and how messages find their channel.
    wanted: Arc<parking_lot::Mutex<HashMap<Vec<u8>, String>>>,
    _drain: AbortOnDrop,
    _repair: AbortOnDrop,
}

impl ClusterPubSub {
    async fn start(
        connection: Arc<ClusterLink>,
        commands: Arc<ClusterLink>,
        prefix: &str,
        delivery: Delivery,
        pushes: mpsc::UnboundedReceiver<PushInfo>,
        events: EventSender,
        namespaces: Namespaces,
    ) -> Result<Self, EngineError> {
        let wanted: Arc<parking_lot::Mutex<HashMap<Vec<u8>, String>>> = Arc::default();
        let control = pubsub::control_channel(prefix);
        let repair_needed = Arc::new(Notify::new());
        let drain = tokio::spawn(drain(
            pushes,
            Arc::clone(&wanted),
            control.clone(),
            events.clone(),
            Arc::clone(&repair_needed),
        ));
        let repair = tokio::spawn(
            Repair {
                connection: Arc::clone(&connection),
                commands,
                delivery,
                wanted: Arc::clone(&wanted),
                control: control.clone(),
                events,
                namespaces,
            }
            .run(repair_needed),
        );
        let pubsub = ClusterPubSub {
            connection,
            delivery,
            client_prefix: format!("{prefix}.client."),
            wanted,
            _drain: AbortOnDrop(drain),
            _repair: AbortOnDrop(repair),
        };
        subscribe_to(&pubsub.connection, delivery, control.into_bytes()).await?;
        Ok(pubsub)
    }

    /// Subscribes on the node owning the channel's slot; active when this returns.
    pub async fn subscribe(&self, channel: &str) -> Result<(), EngineError> {
        let name = client_channel(&self.client_prefix, channel);
        self.wanted.lock().insert(name.clone(), channel.to_owned());
        subscribe_to(&self.connection, self.delivery, name).await
    }

    pub async fn unsubscribe(&self, channel: &str) -> Result<(), EngineError> {
        let name = client_channel(&self.client_prefix, channel);
        self.wanted.lock().remove(&name);
        let delivery = self.delivery;
        self.connection
            .run(|mut connection| async move {
                match delivery {
                    Delivery::Sharded => connection.sunsubscribe(&name).await,
                    Delivery::Broadcast => connection.unsubscribe(&name).await,
                }
            })
            .await
            .map_err(unavailable)
    }
}

async fn subscribe_to(
    link: &Arc<ClusterLink>,
    delivery: Delivery,
    name: Vec<u8>,
) -> Result<(), EngineError> {
    link.run(|mut connection| async move {
        match delivery {
            Delivery::Sharded => connection.ssubscribe(&name).await,
            Delivery::Broadcast => connection.subscribe(&name).await,
        }
    })
    .await
    .map_err(unavailable)
}

/// The module's PUB/SUB channel of `channel` in a cluster: the channel wrapped in a hash tag
/// (`P.client.{ch}`), unless it carries one of its own, so it lives in the slot of the channel's
/// keys.
pub(super) fn client_channel(client_prefix: &str, channel: &str) -> Vec<u8> {
    let wrap = !gyre_proto::keys::has_hash_tag(channel.as_bytes());
    let mut name = Vec::with_capacity(client_prefix.len() + channel.len() + 2);
    name.extend_from_slice(client_prefix.as_bytes());
    if wrap {
        name.push(b'{');
    }
    name.extend_from_slice(channel.as_bytes());
    if wrap {
        name.push(b'}');
    }
    name
}

/// Turns pushes into engine events; a subscription the cluster ended on its own, or a lost
/// node connection, calls for a repair.
async fn drain(
    mut pushes: mpsc::UnboundedReceiver<PushInfo>,
    wanted: Arc<parking_lot::Mutex<HashMap<Vec<u8>, String>>>,
    control: String,
    events: EventSender,
    repair_needed: Arc<Notify>,
) {
    while let Some(push) = pushes.recv().await {
        match push.kind {
            PushKind::Message | PushKind::SMessage => {
                let [Value::BulkString(name), Value::BulkString(payload)] = &push.data[..] else {
                    tracing::warn!("unexpected redis message push: {:?}", push.data);
                    continue;
                };
                let event = if name.as_slice() == control.as_bytes() {
                    pubsub::control_event(payload)
                } else {
                    let channel = wanted.lock().get(name).cloned();
                    match channel {
                        Some(channel) => pubsub::channel_event(channel, payload),
                        // Unsubscribed meanwhile: the hub would drop it anyway.
                        None => None,
                    }
                };
                if let Some(event) = event
                    && events.send(event).is_err()
                {
                    return;
                }
            }
            PushKind::SUnsubscribe | PushKind::Unsubscribe => {
                // Our own unsubscribes removed the channel from `wanted` first; one still wanted
                // was ended by the cluster (its slot moved).
                let still_wanted = match push.data.first() {
                    Some(Value::BulkString(name)) => {
                        name.as_slice() == control.as_bytes() || wanted.lock().contains_key(name)
                    }
                    _ => false,
                };
                if still_wanted {
                    tracing::info!(
                        "redis cluster ended a subscription (slot moved); resubscribing"
                    );
                    repair_needed.notify_one();
                }
            }
            PushKind::Disconnection => {
                tracing::warn!("redis cluster subscription connection lost; resubscribing");
                repair_needed.notify_one();
            }
            _ => {}
        }
    }
}

/// Puts every wanted subscription back where its slot lives now, then has positions checked.
struct Repair {
    connection: Arc<ClusterLink>,
    commands: Arc<ClusterLink>,
    delivery: Delivery,
    wanted: Arc<parking_lot::Mutex<HashMap<Vec<u8>, String>>>,
    control: String,
    events: EventSender,
    namespaces: Namespaces,
}

impl Repair {
    async fn run(self, needed: Arc<Notify>) {
        loop {
            tokio::select! {
                () = needed.notified() => {}
                // A new connection holds none of the old one's subscriptions.
                () = self.connection.rebuilt.notified() => {}
            }
            let mut pause = REPAIR_RETRY_MIN;
            loop {
                // Several triggers in a row (a failover ends many subscriptions) make one round.
                tokio::time::sleep(REPAIR_RETRY_MIN).await;
                match self.resubscribe_all().await {
                    Ok(()) => break,
                    Err(error) => {
                        tracing::debug!(%error, "redis cluster not serving every slot yet");
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(REPAIR_RETRY_MAX);
                    }
                }
            }
            self.reregister_namespaces().await;
            tracing::info!("redis cluster subscriptions in place again; resyncing positions");
            if self.events.send(EngineEvent::Resync).is_err() {
                return;
            }
        }
    }

    async fn resubscribe_all(&self) -> Result<(), EngineError> {
        let mut names: Vec<Vec<u8>> = self.wanted.lock().keys().cloned().collect();
        names.push(self.control.as_bytes().to_vec());
        let results: Vec<Result<(), EngineError>> = futures_util::stream::iter(names)
            .map(|name| subscribe_to(&self.connection, self.delivery, name))
            .buffer_unordered(REPAIR_PARALLELISM)
            .collect()
            .await;
        results.into_iter().collect()
    }

    /// A promoted replica has the namespaces (they replicate); a node that joined has not.
    async fn reregister_namespaces(&self) {
        let namespaces = self.namespaces.lock().clone();
        for (name, history) in namespaces {
            let cmd = super::commands::register_namespace(&name, history);
            if let Err(error) = all_primaries(&self.commands, &cmd).await {
                tracing::warn!(%error, "re-registering namespace {name:?} in the cluster failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_channels_carry_the_channel_slot() {
        assert_eq!(
            client_channel("gyre.client.", "chat:room"),
            b"gyre.client.{chat:room}"
        );
        assert_eq!(
            client_channel("gyre.client.", "user{42}:inbox"),
            b"gyre.client.user{42}:inbox",
            "a channel with a hash tag of its own keeps it"
        );
    }

    #[test]
    fn config_replies_in_both_protocols() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let resp3 = Value::Map(vec![(bulk("gyre.prefix"), bulk("gyre"))]);
        let resp2 = Value::Array(vec![bulk("gyre.prefix"), bulk("gyre"), bulk("dangling")]);
        for reply in [resp3, resp2] {
            let pairs = config_pairs(&reply);
            assert_eq!(pairs.get("gyre.prefix").map(String::as_str), Some("gyre"));
            assert_eq!(pairs.len(), 1);
        }
    }
}
