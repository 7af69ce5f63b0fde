//! What every session of this node shares: configuration, engine, hub, token verifier.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::auth::Verifier;
use crate::config::Config;
use crate::engine::Engine;
use crate::hub::{ConnectionId, Hub};

pub struct Node {
    /// Unique per process start (returned to emulation clients, used for cross-node routing).
    pub id: String,
    pub name: String,
    pub config: Arc<Config>,
    pub engine: Engine,
    pub hub: Hub,
    pub verifier: Verifier,
    /// When this node started (server API `info`: uptime).
    pub started: std::time::Instant,
    /// The sessions of SockJS's HTTP sub-transports, which outlive their requests.
    pub sockjs: crate::transport::sockjs::Sessions,
    /// `client.handshake_rate_limit`.
    pub handshakes: crate::transport::admission::HandshakeLimiter,
    next_connection: AtomicU64,
}

/// Engine events waiting for the dispatcher beyond which it stops writing into sockets itself
/// and queues for the connections' tasks instead (see [`crate::hub::Hub::dispatch`]).
const DIRECT_DISPATCH_BACKLOG: usize = 16;

impl Node {
    pub fn new(config: Arc<Config>, engine: Engine, verifier: Verifier) -> Self {
        let handshakes = crate::transport::admission::HandshakeLimiter::new(
            config.client.handshake_rate_limit,
            config.client.handshake_burst,
        );
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
            started: std::time::Instant::now(),
            sockjs: crate::transport::sockjs::Sessions::default(),
            handshakes,
            next_connection: AtomicU64::new(1),
        }
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

    pub fn next_connection_id(&self) -> ConnectionId {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    /// Runs the hub's delivery loop: engine events in, subscriber queues out. One task, so that
    /// each channel's publications keep their order.
    pub fn spawn_dispatcher(
        self: &Arc<Self>,
        mut events: tokio::sync::mpsc::UnboundedReceiver<crate::engine::EngineEvent>,
    ) -> tokio::task::JoinHandle<()> {
        let node = Arc::clone(self);
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                // Direct writes while the dispatcher keeps up; queued once events pile up. A
                // few waiting events are normal (one read from Redis can bring several).
                let direct = events.len() < DIRECT_DISPATCH_BACKLOG;
                node.hub.dispatch(event, direct);
            }
        })
    }
}
