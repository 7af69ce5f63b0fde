//! What the engine test files share: engines under test, their events, small builders.

#![allow(dead_code, unused_imports)]

pub use std::collections::{HashMap, HashSet};
pub use std::time::{Duration, Instant};

pub use bytes::Bytes;
pub use gyre_proxy::engine::memory::MemoryEngine;
pub use gyre_proxy::engine::redis::{
    RedisEngine, RedisSettings, RedisTopology, SentinelSettings, TlsOptions,
};
pub use gyre_proxy::engine::{
    Engine, EngineError, EngineEvent, HistoryOptions, HistoryQuery, HistoryResult, PresenceStats,
    PublishOptions, StreamPosition,
};
pub use gyre_proxy::proto::ClientInfo;
pub use gyre_tests::RedisServer;
pub use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

/// How long an expected event may take.
pub const WAIT: Duration = Duration::from_secs(5);
pub const MARKER: &str = "marker";

/// An engine under test, its event stream and, for Redis, the server (or cluster) it talks to.
pub struct Subject {
    pub engine: Engine,
    pub events: UnboundedReceiver<EngineEvent>,
    pub server: Option<RedisServer>,
    /// The test binary's shared cluster, held for this test alone.
    pub cluster: Option<gyre_tests::SharedCluster>,
}

pub fn memory() -> Subject {
    let (tx, events) = unbounded_channel();
    Subject {
        engine: Engine::Memory(MemoryEngine::new(tx)),
        events,
        server: None,
        cluster: None,
    }
}

/// The unix socket URL of `server`.
pub fn redis_address(server: &RedisServer) -> String {
    format!("redis+unix://{}", server.socket().display())
}

pub fn redis_settings(server: &RedisServer) -> RedisSettings {
    RedisSettings::standalone(vec![redis_address(server)])
}

pub async fn redis() -> Subject {
    let server = RedisServer::start();
    let (tx, events) = unbounded_channel();
    let engine = RedisEngine::connect(redis_settings(&server), tx)
        .await
        .expect("connect the redis engine");
    Subject {
        engine: Engine::Redis(engine),
        events,
        server: Some(server),
        cluster: None,
    }
}

/// Settings for the Redis engine on `cluster` (one cluster, all its running nodes as seeds).
pub fn cluster_settings(cluster: &gyre_tests::RedisCluster) -> RedisSettings {
    RedisSettings {
        topology: RedisTopology::Cluster {
            shards: vec![cluster.seeds()],
        },
        ..RedisSettings::default()
    }
}

/// The Redis engine on the test binary's shared cluster (held by the subject until it drops).
pub async fn cluster() -> Subject {
    let cluster = gyre_tests::RedisCluster::shared();
    let (tx, events) = unbounded_channel();
    let engine = RedisEngine::connect(cluster_settings(&cluster), tx)
        .await
        .expect("connect the redis engine to the cluster");
    Subject {
        engine: Engine::Redis(engine),
        events,
        server: None,
        cluster: Some(cluster),
    }
}

impl Subject {
    pub fn redis(&self) -> &RedisEngine {
        match &self.engine {
            Engine::Redis(e) => e,
            Engine::Memory(_) => panic!("not the redis engine"),
        }
    }

    pub fn server(&self) -> &RedisServer {
        self.server.as_ref().expect("a redis subject")
    }

    pub async fn publish(
        &self,
        channel: &str,
        data: &str,
        options: &PublishOptions,
    ) -> StreamPosition {
        self.engine
            .publish(channel, Bytes::from(data.to_owned()), options)
            .await
            .unwrap_or_else(|e| panic!("publish {data:?} on {channel}: {e}"))
    }

    pub async fn history(&self, channel: &str, query: HistoryQuery) -> HistoryResult {
        self.engine
            .history(channel, query)
            .await
            .unwrap_or_else(|e| panic!("history of {channel}: {e}"))
    }

    pub async fn next_event(&mut self) -> EngineEvent {
        tokio::time::timeout(WAIT, self.events.recv())
            .await
            .expect("no engine event in time")
            .expect("event channel closed")
    }

    /// Waits for an event that `wanted` accepts, skipping any other; fails after `within`.
    pub async fn wait_for(
        &mut self,
        within: Duration,
        what: &str,
        wanted: impl Fn(&EngineEvent) -> bool,
    ) {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.events.recv()).await {
                Ok(Some(event)) if wanted(&event) => return,
                Ok(Some(_)) => {}
                Ok(None) => panic!("event channel closed"),
                Err(_) => panic!("no {what} within {within:?}"),
            }
        }
    }

    /// Waits for [`EngineEvent::Resync`], skipping anything else.
    pub async fn wait_for_resync(&mut self, within: Duration) {
        self.wait_for(within, "Resync", |e| matches!(e, EngineEvent::Resync))
            .await;
    }

    /// Publishes [`MARKER`] on `channel` (subscribed) and returns the events before it.
    pub async fn events_until_marker(&mut self, channel: &str) -> Vec<EngineEvent> {
        self.publish(channel, MARKER, &PublishOptions::default())
            .await;
        let mut seen = Vec::new();
        loop {
            match self.next_event().await {
                EngineEvent::Publication {
                    channel: c,
                    publication,
                    ..
                } if c == channel && &publication.data[..] == MARKER.as_bytes() => return seen,
                event => seen.push(event),
            }
        }
    }
}

pub fn with_history() -> PublishOptions {
    PublishOptions {
        history: Some(HistoryOptions {
            size: 100,
            ttl: Duration::from_secs(300),
            meta_ttl: Duration::ZERO,
        }),
        ..PublishOptions::default()
    }
}

pub fn client(client: &str, user: &str) -> ClientInfo {
    ClientInfo {
        client: client.into(),
        user: user.into(),
        ..ClientInfo::default()
    }
}

pub fn offsets(h: &HistoryResult) -> Vec<u64> {
    h.publications.iter().map(|p| p.offset).collect()
}

pub fn data(h: &HistoryResult) -> Vec<String> {
    h.publications
        .iter()
        .map(|p| String::from_utf8_lossy(&p.data).into_owned())
        .collect()
}

pub fn query(since: Option<u64>, limit: Option<u64>, reverse: bool) -> HistoryQuery {
    HistoryQuery {
        since,
        limit,
        reverse,
    }
}

/// `(channel, offset, epoch, data)` of a publication event; panics on other events.
pub fn publication(event: &EngineEvent) -> (String, u64, String, String) {
    match event {
        EngineEvent::Publication {
            channel,
            publication,
            epoch,
        } => (
            channel.clone(),
            publication.offset,
            epoch.clone(),
            String::from_utf8_lossy(&publication.data).into_owned(),
        ),
        other => panic!("expected a publication, got {other:?}"),
    }
}
