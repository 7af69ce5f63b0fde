//! What every session of this node shares: configuration, engine, hub, token verifier, backend
//! hooks, randomness.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::auth::Verifier;
use crate::config::Config;
use crate::engine::{ControlCommand, Engine, EngineEvent, NODE_INFO_INTERVAL, NodeInfo};
use crate::hub::{ConnectionId, ControlSender, Fanout, Hub, HubOwner};
use crate::protocol::entropy::Entropy;
use crate::protocol::nodes::Nodes;

pub struct Node {
    /// Unique per process start (returned to emulation clients, used for cross-node routing).
    pub id: String,
    pub name: String,
    pub config: Arc<Config>,
    pub engine: Engine,
    pub hub: Hub,
    pub verifier: Verifier,
    /// The backend hooks (proxies) the config sets up.
    pub hooks: crate::hooks::Hooks,
    /// Client and session ids, ping jitter.
    pub entropy: Entropy,
    /// When this node started (server API `info`: uptime).
    pub started: std::time::Instant,
    /// The nodes that announced themselves on the control channel (this one included).
    pub nodes: Nodes,
    /// This node's questions to the cluster that wait for answers (`protocol::survey`).
    pub surveys: crate::protocol::survey::Surveys,
    /// Wakes the announcer out of turn: a new node appeared and should learn of this one now
    /// rather than at the next tick.
    announce_now: tokio::sync::Notify,
    next_connection: AtomicU64,
}

impl Node {
    pub fn new(
        config: Arc<Config>,
        engine: Engine,
        verifier: Verifier,
        hooks: crate::hooks::Hooks,
    ) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            name: if config.node.name.is_empty() {
                "gyre".to_owned()
            } else {
                config.node.name.clone()
            },
            config,
            engine,
            hub: Hub::new(),
            verifier,
            hooks,
            entropy: Entropy::System,
            started: std::time::Instant::now(),
            nodes: Nodes::default(),
            surveys: Default::default(),
            announce_now: tokio::sync::Notify::new(),
            next_connection: AtomicU64::new(1),
        }
    }

    /// The node with `entropy` instead of the system's (tests replay a seed).
    pub fn with_entropy(mut self, entropy: Entropy) -> Self {
        self.entropy = entropy;
        self
    }

    /// How long a presence entry lives unless refreshed (`engine.redis.presence_ttl`, which the
    /// memory engine follows too).
    pub fn presence_ttl(&self) -> Duration {
        self.config.engine.redis.presence_ttl
    }

    /// Bytes a connection may have waiting to be written (`client.queue_max_size`; 0 = no limit).
    pub fn queue_max_size(&self) -> usize {
        match self.config.client.queue_max_size {
            0 => usize::MAX,
            n => usize::try_from(n).unwrap_or(usize::MAX),
        }
    }

    /// A new connection's id, registered in the hub with the sender of its session's signals;
    /// the connection's driver unregisters it when it ends.
    pub fn register_connection(&self, control: ControlSender) -> ConnectionId {
        let id = self.next_connection.fetch_add(1, Ordering::Relaxed);
        self.hub.register_connection(id, control);
        id
    }

    /// What this node announces about itself.
    pub fn info(&self) -> NodeInfo {
        NodeInfo {
            uid: self.id.clone(),
            name: self.name.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime: self.started.elapsed().as_secs(),
            num_clients: self.hub.num_connections() as u64,
            num_users: self.hub.num_users() as u64,
            num_channels: self.hub.num_channels() as u64,
            num_subs: self.hub.num_subscriptions() as u64,
        }
    }

    /// Announces this node on the control channel every [`NODE_INFO_INTERVAL`] (and at once when
    /// a new node appears); it also always knows itself, whether or not the engine is reachable.
    pub fn spawn_announcer(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let node = Arc::clone(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(NODE_INFO_INTERVAL);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    () = node.announce_now.notified() => {}
                }
                let info = node.info();
                node.nodes.heard(info.clone());
                if matches!(node.engine, Engine::Memory(_)) {
                    continue;
                }
                if let Err(error) = node
                    .engine
                    .publish_control(&ControlCommand::Node(info))
                    .await
                {
                    tracing::debug!(%error, "node announcement not published");
                }
            }
        })
    }

    /// Runs the hub's delivery: engine events in, subscriber queues out. Node announcements and
    /// surveys are handled here; everything else goes to the hub's fan-out lanes, which deliver
    /// different channels in parallel on the runtime's worker threads and each channel's events
    /// in order.
    pub fn spawn_dispatcher(
        self: &Arc<Self>,
        mut events: tokio::sync::mpsc::UnboundedReceiver<EngineEvent>,
    ) -> tokio::task::JoinHandle<()> {
        let node = Arc::clone(self);
        tokio::spawn(async move {
            let fanout = Fanout::spawn(Arc::clone(&node) as Arc<dyn HubOwner>);
            while let Some(event) = events.recv().await {
                if let EngineEvent::Control(ControlCommand::Node(info)) = event {
                    let stranger = info.uid != node.id;
                    if node.nodes.heard(info) && stranger {
                        node.announce_now.notify_one();
                    }
                    continue;
                }
                if let EngineEvent::Control(ControlCommand::Survey(survey)) = event {
                    crate::protocol::survey::handle(&node, survey);
                    continue;
                }
                fanout.dispatch(event);
            }
        })
    }
}

impl HubOwner for Node {
    fn hub(&self) -> &Hub {
        &self.hub
    }
}
