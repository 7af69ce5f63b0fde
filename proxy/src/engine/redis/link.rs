//! The command connection of a shard: one multiplexed RESP3 connection shared by every caller,
//! replaced when it breaks, when its node turns out to be a replica (`READONLY`), or when the
//! shard's [`Endpoint`] moves to another primary.
//!
//! The connection also listens for its own end (RESP3 delivers a disconnection notice even to
//! an idle connection), so the first command after a Redis restart goes to a new connection
//! rather than failing on the dead one.
//!
//! Callers never wait for Redis longer than one connection attempt: while a connection is
//! being opened they all wait for that one attempt; after it failed, commands fail at once with
//! [`EngineError::Unavailable`] until the next attempt is due (50 ms, doubling up to 1 s), so a
//! Redis outage turns into quick errors (the session reports them to the client), not a queue.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use redis::aio::{AsyncPushSender, MultiplexedConnection, SendError};
use redis::{Cmd, ErrorKind, PushInfo, PushKind, RedisError, ServerErrorKind, Value};

use super::endpoint::Endpoint;
use crate::engine::EngineError;

const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(1);

/// A reconnecting command connection; see the module docs.
pub(super) struct CommandLink {
    endpoint: Arc<Endpoint>,
    /// Shared with the connections' disconnection watchers.
    slot: Arc<parking_lot::Mutex<Slot>>,
    /// Numbers connections, so that a failure reported late cannot discard a newer one.
    next_id: AtomicU64,
}

/// One connection attempt, awaited by every command that needs it.
type Attempt = Shared<BoxFuture<'static, Result<Ready, String>>>;

enum Slot {
    Empty,
    Connecting {
        attempt: Attempt,
        /// The connection id the attempt will give its connection.
        id: u64,
        /// The endpoint generation it connects to.
        generation: u64,
        /// How long to wait before the next attempt if this one fails.
        pause_if_failed: Duration,
    },
    Ready(Ready),
    /// The last attempt failed; until `retry_at`, commands fail at once with its error. A new
    /// endpoint generation (another primary) is tried at once.
    Failed {
        error: String,
        generation: u64,
        retry_at: Instant,
        pause: Duration,
    },
}

#[derive(Clone)]
struct Ready {
    connection: MultiplexedConnection,
    id: u64,
    generation: u64,
}

impl CommandLink {
    /// Connects now, so that a bad address or password stops the start.
    pub async fn connect(endpoint: Arc<Endpoint>) -> Result<Self, EngineError> {
        let link = Self {
            endpoint,
            slot: Arc::new(parking_lot::Mutex::new(Slot::Empty)),
            next_id: AtomicU64::new(0),
        };
        link.ready().await?;
        Ok(link)
    }

    /// Runs `cmd`. A broken connection is replaced by the next command; `READONLY` replaces it
    /// (and tells the endpoint) at once.
    pub async fn query(&self, cmd: &Cmd) -> Result<Value, EngineError> {
        let ready = self.ready().await?;
        let mut connection = ready.connection.clone();
        match cmd.query_async::<Value>(&mut connection).await {
            Ok(value) => Ok(value),
            Err(e) if is_readonly(&e) => {
                self.discard(ready.id);
                self.endpoint.demoted(ready.generation);
                Err(EngineError::Unavailable(format!(
                    "redis {} is a replica now (READONLY); reconnecting to the primary",
                    self.endpoint.name()
                )))
            }
            Err(e) => {
                if is_broken(&e) {
                    self.discard(ready.id);
                }
                Err(EngineError::Unavailable(e.to_string()))
            }
        }
    }

    /// The connection to use now, opening one if needed.
    async fn ready(&self) -> Result<Ready, EngineError> {
        let generation = self.endpoint.generation();
        let (attempt, id) = {
            let mut slot = self.slot.lock();
            match &*slot {
                Slot::Ready(ready) if ready.generation == generation => {
                    return Ok(ready.clone());
                }
                Slot::Connecting {
                    attempt,
                    id,
                    generation: connecting_to,
                    ..
                } if *connecting_to == generation => (attempt.clone(), *id),
                Slot::Failed {
                    error,
                    generation: failed_at,
                    retry_at,
                    ..
                } if *failed_at == generation && Instant::now() < *retry_at => {
                    return Err(EngineError::Unavailable(error.clone()));
                }
                other => {
                    // No connection yet, a stale one, the last failure long enough ago, or
                    // an endpoint that moved since.
                    let pause_if_failed = match other {
                        Slot::Failed {
                            pause,
                            generation: failed_at,
                            ..
                        } if *failed_at == generation => (*pause * 2).min(RETRY_MAX),
                        _ => RETRY_MIN,
                    };
                    let (attempt, id, generation) = self.attempt();
                    *slot = Slot::Connecting {
                        attempt: attempt.clone(),
                        id,
                        generation,
                        pause_if_failed,
                    };
                    (attempt, id)
                }
            }
        };
        let result = attempt.await;
        let mut slot = self.slot.lock();
        // Only the attempt still in the slot is recorded: every waiter gets the same result,
        // the first one to come back stores it.
        if let Slot::Connecting {
            id: connecting,
            generation,
            pause_if_failed,
            ..
        } = &*slot
            && *connecting == id
        {
            *slot = match &result {
                Ok(ready) => Slot::Ready(ready.clone()),
                Err(error) => Slot::Failed {
                    error: error.clone(),
                    generation: *generation,
                    retry_at: Instant::now() + *pause_if_failed,
                    pause: *pause_if_failed,
                },
            };
        }
        drop(slot);
        result.map_err(|error| {
            self.endpoint.unreachable();
            EngineError::Unavailable(error)
        })
    }

    /// One connection attempt to the endpoint's current target, shareable by every waiter;
    /// with the id its connection gets and the generation it belongs to.
    fn attempt(&self) -> (Attempt, u64, u64) {
        let current = self.endpoint.current();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let watcher = DisconnectWatcher {
            slot: Arc::downgrade(&self.slot),
            id,
        };
        let generation = current.generation;
        let attempt = async move {
            let connection = current.target.open_with_push(watcher).await?;
            Ok(Ready {
                connection,
                id,
                generation: current.generation,
            })
        }
        .boxed()
        .shared();
        (attempt, id, generation)
    }

    /// Forgets connection `id` if it is still the current one.
    fn discard(&self, id: u64) {
        discard(&self.slot, id);
    }
}

fn discard(slot: &parking_lot::Mutex<Slot>, id: u64) {
    let mut slot = slot.lock();
    if matches!(&*slot, Slot::Ready(ready) if ready.id == id) {
        *slot = Slot::Empty;
    }
}

/// The push receiver of command connection `id`: its disconnection notice discards it.
struct DisconnectWatcher {
    slot: Weak<parking_lot::Mutex<Slot>>,
    id: u64,
}

impl AsyncPushSender for DisconnectWatcher {
    fn send(&self, info: PushInfo) -> Result<(), SendError> {
        if info.kind == PushKind::Disconnection {
            let slot = self.slot.upgrade().ok_or(SendError)?;
            discard(&slot, self.id);
        }
        Ok(())
    }
}

/// `READONLY You can't write against a read only replica.`
pub(super) fn is_readonly(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly)
}

/// Errors after which the connection cannot be trusted: the socket is gone, or a reply did not
/// come within the I/O timeout (a half-open connection to a dead host never answers).
pub(super) fn is_broken(e: &RedisError) -> bool {
    e.is_unrecoverable_error() || e.is_io_error() || e.is_timeout() || e.is_connection_dropped()
}
