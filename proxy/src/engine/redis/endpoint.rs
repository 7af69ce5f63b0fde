//! Where a shard's data node is, now and after failovers.
//!
//! An [`Endpoint`] holds the shard's current [`Target`] and a generation that grows whenever the
//! shard's connections must be replaced:
//! - a fixed address (a server, or a TCP proxy in front of the primary) keeps its target; its
//!   generation grows when a write is refused with `READONLY`, since the proxy (or whatever
//!   sits behind the address) then holds a connection to a demoted node: reconnecting through
//!   the same address reaches the new primary;
//! - a Sentinel endpoint gets a new target from its watcher (`sentinel.rs`) after
//!   `+switch-master` or a rediscovery; `READONLY` and failed connections ask it to consult
//!   the sentinels again.
//!
//! The command connection compares generations before each command; the subscription side
//! waits on [`Endpoint::changes`], resubscribes on the new connection and then resyncs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};

use super::connect::Target;
use super::pubsub::AbortOnDrop;

/// Least time between two reconnections caused by `READONLY` at a fixed address: while the
/// address still leads to a replica, every write would cause one.
const DEMOTION_REPEAT: Duration = Duration::from_secs(1);

/// The current target of one shard; see the module docs.
pub(super) struct Endpoint {
    target: parking_lot::Mutex<Arc<Target>>,
    /// When a fixed address last answered `READONLY`.
    last_demotion: parking_lot::Mutex<Option<Instant>>,
    generation: AtomicU64,
    changed: watch::Sender<u64>,
    /// Set for Sentinel: wakes the watcher to ask the sentinels where the primary is.
    rediscover: Option<Arc<Notify>>,
    /// The Sentinel watcher task, ended with the endpoint.
    watcher: parking_lot::Mutex<Option<AbortOnDrop>>,
}

/// A target and the generation it belongs to.
#[derive(Clone)]
pub(super) struct Current {
    pub target: Arc<Target>,
    pub generation: u64,
}

impl Endpoint {
    /// An address that stays the same (connections are replaced only on `READONLY`).
    pub fn fixed(target: Target) -> Arc<Endpoint> {
        Arc::new(Self::new(target, None))
    }

    /// A target found through Sentinel; `rediscover` wakes its watcher (attached with
    /// [`Endpoint::attach_watcher`]).
    pub fn discovered(target: Target, rediscover: Arc<Notify>) -> Arc<Endpoint> {
        Arc::new(Self::new(target, Some(rediscover)))
    }

    fn new(target: Target, rediscover: Option<Arc<Notify>>) -> Self {
        let (changed, _) = watch::channel(0);
        Self {
            target: parking_lot::Mutex::new(Arc::new(target)),
            last_demotion: parking_lot::Mutex::new(None),
            generation: AtomicU64::new(0),
            changed,
            rediscover,
            watcher: parking_lot::Mutex::new(None),
        }
    }

    pub fn attach_watcher(&self, watcher: AbortOnDrop) {
        *self.watcher.lock() = Some(watcher);
    }

    pub fn current(&self) -> Current {
        let target = self.target.lock();
        Current {
            target: Arc::clone(&target),
            generation: self.generation.load(Ordering::Acquire),
        }
    }

    /// The generation connections must belong to; cheaper than [`Endpoint::current`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The target, for error messages.
    pub fn name(&self) -> String {
        self.target.lock().name().to_owned()
    }

    /// Notified with the new generation whenever connections must be replaced.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// A node of `generation` refused a write with `READONLY`: it is a replica now.
    pub fn demoted(&self, generation: u64) {
        match &self.rediscover {
            // Sentinel knows where the primary went; the new target brings a new generation.
            Some(rediscover) => rediscover.notify_one(),
            None => {
                let target = self.target.lock();
                if self.generation.load(Ordering::Acquire) != generation {
                    return; // Another connection of that generation reported it already.
                }
                let mut last = self.last_demotion.lock();
                let now = Instant::now();
                if last.is_some_and(|at| now.duration_since(at) < DEMOTION_REPEAT) {
                    return;
                }
                *last = Some(now);
                tracing::warn!(
                    redis = %target.name(),
                    "redis answered READONLY: the node behind this address is a replica now; \
                     reconnecting both connections to reach the primary"
                );
                self.bump();
            }
        }
    }

    /// Connecting to the target failed: with Sentinel, the primary may have moved.
    pub fn unreachable(&self) {
        if let Some(rediscover) = &self.rediscover {
            rediscover.notify_one();
        }
    }

    /// Replaces the target (Sentinel named another primary); every connection moves to it.
    pub fn switch(&self, target: Target) {
        let mut current = self.target.lock();
        *current = Arc::new(target);
        self.bump();
    }

    /// Next generation; the caller holds the target lock.
    fn bump(&self) {
        let next = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        self.changed.send_replace(next);
    }
}
