//! A redis-rs cluster connection that is replaced by a new one when it stops answering.
//!
//! redis-rs 1.8's cluster connection can wedge for good after a primary dies while many
//! requests are in flight: it starts a slot refresh that waits for the write side of its
//! connection map, which requests it no longer drives hold; from then on every request times
//! out (measured with `scripts/bench-failover.sh`: 300 subscribers resyncing after a `kill -9`
//! were stuck for the whole 20 s run, every time). A fresh connection from the seeds does not
//! inherit that state. So every request reports how it went, and the link builds a new
//! connection, swaps it in and says so (`rebuilt`, so that its owner can put back what lived on
//! the old one: subscriptions) when
//! - a request timed out and nothing was answered in the later half of its wait: the connection is
//!   silent, not one node slow (a failover in progress still answers for the other nodes); or
//! - requests have been timing out or finding no connection for longer than a normal failover
//!   takes.
//!
//! Requests that come while a new connection is being built wait for it (at most
//! `stuck_after`) instead of joining the old one's queue, where they would time out too.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{ErrorKind, RedisError, RedisResult};
use tokio::sync::{Notify, watch};

pub(super) struct ClusterLink {
    connection: parking_lot::RwLock<ClusterConnection>,
    /// Builds a connection like the first one (same seeds, options and push sender).
    builder: Box<dyn Fn() -> RedisResult<ClusterClientBuilder> + Send + Sync>,
    /// How long requests may fail as a wedged connection's do before it is replaced: longer
    /// than a command's own timeout plus a reconnect, so a slow node is not mistaken for it.
    stuck_after: Duration,
    /// The least time between two attempts to build a new connection.
    retry_gap: Duration,
    health: parking_lot::Mutex<Health>,
    /// Whether a new connection is being built (changed under the `health` lock).
    rebuilding: watch::Sender<bool>,
    /// Signalled after each replacement.
    pub rebuilt: Notify,
    /// For logs: which of the shard's connections this is.
    what: &'static str,
}

#[derive(Default)]
struct Health {
    /// When a request last got an answer (an error reply counts: the connection works).
    last_answer: Option<Instant>,
    /// Since when requests have been failing as a wedged connection's do.
    failing_since: Option<Instant>,
    /// When the current connection was swapped in: failures of requests sent before on the
    /// old one say nothing about it.
    replaced_at: Option<Instant>,
    /// When a new connection was last attempted.
    attempted_at: Option<Instant>,
}

impl ClusterLink {
    pub async fn connect(
        what: &'static str,
        builder: impl Fn() -> RedisResult<ClusterClientBuilder> + Send + Sync + 'static,
        stuck_after: Duration,
        retry_gap: Duration,
    ) -> RedisResult<Arc<ClusterLink>> {
        let connection = builder()?.build()?.get_async_connection().await?;
        Ok(Arc::new(ClusterLink {
            connection: parking_lot::RwLock::new(connection),
            builder: Box::new(builder),
            stuck_after,
            retry_gap,
            health: parking_lot::Mutex::new(Health::default()),
            rebuilding: watch::Sender::new(false),
            rebuilt: Notify::new(),
            what,
        }))
    }

    /// Runs `request` on the current connection and learns from its outcome.
    pub async fn run<T, F, Fut>(self: &Arc<Self>, request: F) -> RedisResult<T>
    where
        F: FnOnce(ClusterConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let mut rebuilding = self.rebuilding.subscribe();
        if *rebuilding.borrow_and_update() {
            // Whatever the outcome, go on: the request's own timeout still applies.
            let _ = tokio::time::timeout(self.stuck_after, rebuilding.wait_for(|busy| !busy)).await;
        }
        let connection = self.connection.read().clone();
        let sent = Instant::now();
        let outcome = request(connection).await;
        match &outcome {
            Err(error) if looks_wedged(error) => self.failed(sent, error.is_timeout()),
            _ => {
                let mut health = self.health.lock();
                health.last_answer = Some(Instant::now());
                health.failing_since = None;
            }
        }
        outcome
    }

    fn failed(self: &Arc<Self>, sent: Instant, timed_out: bool) {
        let now = Instant::now();
        {
            let mut health = self.health.lock();
            if health.replaced_at.is_some_and(|replaced| replaced > sent) {
                return;
            }
            let since = *health.failing_since.get_or_insert(now);
            // Silent: nothing answered during (at least) the second half of the wait. Not "since
            // it was sent": answers that came just before the connection wedged would hide it.
            let waited = now.duration_since(sent);
            let silent = timed_out
                && health
                    .last_answer
                    .is_none_or(|answer| now.duration_since(answer) >= waited / 2);
            let wedged = silent || now.duration_since(since) >= self.stuck_after;
            let too_soon = health
                .attempted_at
                .is_some_and(|attempt| now.duration_since(attempt) < self.retry_gap);
            if !wedged || too_soon || *self.rebuilding.borrow() {
                return;
            }
            self.rebuilding.send_replace(true);
            health.attempted_at = Some(now);
        }
        let link = Arc::clone(self);
        tokio::spawn(async move {
            let fresh = match (link.builder)().and_then(|b| b.build()) {
                Ok(client) => client.get_async_connection().await,
                Err(error) => Err(error),
            };
            let failure = {
                let mut health = link.health.lock();
                let failure = match fresh {
                    Ok(connection) => {
                        *link.connection.write() = connection;
                        health.replaced_at = Some(Instant::now());
                        health.failing_since = None;
                        None
                    }
                    Err(error) => Some(error),
                };
                link.rebuilding.send_replace(false);
                failure
            };
            match failure {
                None => {
                    tracing::warn!(
                        connection = link.what,
                        "redis cluster connection stopped answering; replaced it with a new one \
                         from the seeds"
                    );
                    link.rebuilt.notify_one();
                }
                Some(error) => {
                    tracing::debug!(%error, connection = link.what, "new cluster connection failed")
                }
            }
        });
    }
}

/// Failures that a wedged connection produces (and a healthy one only while the cluster is
/// down): a request that got no answer in time, or no connection to send it on. Error replies
/// (the module's, `CLUSTERDOWN`, `TRYAGAIN`) come from a working connection.
fn looks_wedged(error: &RedisError) -> bool {
    error.is_timeout() || error.kind() == ErrorKind::ClusterConnectionNotFound
}
