//! [`ClusterClient`]: a small Redis Cluster client for tests that follows `MOVED` and `ASK` and
//! retries `TRYAGAIN` the way cluster clients do (redis-rs, redis-cli -c), and counts each, so a
//! test can run commands while slots migrate and see what a client would have seen.
//!
//! It routes by the hash slot of the command's first argument ([`key_slot`]): for `GYRE.*` the
//! channel, for Redis's own single-key commands the key.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use redis::{Connection, RedisError, RedisResult, Value};

pub use gyre_proto::keys::key_slot;

use crate::replies::error_text;
use crate::server::IO_TIMEOUT;

/// Pause before a command that got `TRYAGAIN` (or `CLUSTERDOWN`) is sent again. redis-rs waits at
/// least `min_retry_wait` (1.28 s by default); tests want to see many retries in little time.
pub const RETRY_PAUSE: Duration = Duration::from_millis(3);

/// How long a command may keep getting `TRYAGAIN` before [`ClusterClient::query`] gives up.
pub const RETRY_BUDGET: Duration = Duration::from_secs(20);

/// What the cluster answered on the way to a reply: redirections and retries.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Redirections {
    pub moved: u64,
    pub ask: u64,
    pub tryagain: u64,
}

impl std::ops::AddAssign for Redirections {
    fn add_assign(&mut self, other: Self) {
        self.moved += other.moved;
        self.ask += other.ask;
        self.tryagain += other.tryagain;
    }
}

/// A cluster client over the nodes' unix sockets. Send, so a test can publish from a thread while
/// the main thread migrates slots.
pub struct ClusterClient {
    /// TCP port (as redirections name nodes) → unix socket.
    sockets: HashMap<u16, PathBuf>,
    connections: HashMap<u16, Connection>,
    /// Slot → port of the node that answered last without a redirection (or that MOVED named).
    owners: HashMap<u16, u16>,
    /// Every redirection and retry since the client was made.
    pub seen: Redirections,
}

impl ClusterClient {
    /// A client for nodes given as (TCP port, unix socket).
    pub fn new(nodes: impl IntoIterator<Item = (u16, PathBuf)>) -> Self {
        Self {
            sockets: nodes.into_iter().collect(),
            connections: HashMap::new(),
            owners: HashMap::new(),
            seen: Redirections::default(),
        }
    }

    /// Runs `args` on the node that serves its slot: follows `MOVED` and `ASK` (with `ASKING`),
    /// retries `TRYAGAIN` and `CLUSTERDOWN` every [`RETRY_PAUSE`] for up to [`RETRY_BUDGET`].
    /// Returns the reply, or the first error that is none of these (or the last `TRYAGAIN`).
    pub fn query(&mut self, args: &[&str]) -> RedisResult<Value> {
        self.query_counted(args).0
    }

    /// [`ClusterClient::query`] and the redirections this one command went through.
    pub fn query_counted(&mut self, args: &[&str]) -> (RedisResult<Value>, Redirections) {
        let slot = key_slot(args.get(1).copied().unwrap_or_default().as_bytes());
        let deadline = Instant::now() + RETRY_BUDGET;
        let mut seen = Redirections::default();
        let mut asking: Option<u16> = None;
        let result = loop {
            let port = asking.unwrap_or_else(|| self.owner_guess(slot));
            let reply = self.send(port, asking.is_some(), args);
            asking = None;
            let error = match reply {
                Ok(value) => {
                    self.owners.entry(slot).or_insert(port);
                    break Ok(value);
                }
                Err(e) => e,
            };
            match error.code() {
                Some("MOVED") => {
                    seen.moved += 1;
                    let to = redirect_port(&error);
                    self.owners.insert(slot, to);
                }
                Some("ASK") => {
                    seen.ask += 1;
                    asking = Some(redirect_port(&error));
                }
                Some("TRYAGAIN") | Some("CLUSTERDOWN") => {
                    if error.code() == Some("TRYAGAIN") {
                        seen.tryagain += 1;
                    }
                    if Instant::now() > deadline {
                        break Err(error);
                    }
                    std::thread::sleep(RETRY_PAUSE);
                }
                _ => break Err(error),
            }
        };
        self.seen += seen;
        (result, seen)
    }

    /// [`ClusterClient::query`] that panics (naming the command) on an error reply.
    pub fn cmd(&mut self, args: &[&str]) -> Value {
        self.query(args)
            .unwrap_or_else(|e| panic!("{args:?} failed: {}", error_text(&e)))
    }

    /// Forgets which node serves which slot (as after a resharding the client did not see).
    pub fn forget_slots(&mut self) {
        self.owners.clear();
    }

    fn owner_guess(&self, slot: u16) -> u16 {
        match self.owners.get(&slot) {
            Some(&port) => port,
            None => *self.sockets.keys().min().expect("the client knows no node"),
        }
    }

    fn send(&mut self, port: u16, asking: bool, args: &[&str]) -> RedisResult<Value> {
        let con = self.connection(port);
        if asking {
            redis::cmd("ASKING").query::<()>(con)?;
        }
        let mut c = redis::cmd(args[0]);
        for a in &args[1..] {
            c.arg(*a);
        }
        c.query(con)
    }

    fn connection(&mut self, port: u16) -> &mut Connection {
        let socket = self.sockets.get(&port).unwrap_or_else(|| {
            panic!("redirected to port {port}, which is no node of the cluster")
        });
        self.connections.entry(port).or_insert_with(|| {
            let url = format!("redis+unix://{}", socket.display());
            let con = redis::Client::open(url)
                .and_then(|c| c.get_connection_with_timeout(IO_TIMEOUT))
                .unwrap_or_else(|e| panic!("connect to {}: {e}", socket.display()));
            con.set_read_timeout(Some(IO_TIMEOUT))
                .expect("read timeout");
            con
        })
    }
}

/// The port of `MOVED <slot> <host>:<port>` / `ASK <slot> <host>:<port>`.
fn redirect_port(error: &RedisError) -> u16 {
    error
        .redirect_node()
        .and_then(|(address, _)| address.rsplit(':').next()?.parse().ok())
        .unwrap_or_else(|| panic!("redirection without an address: {}", error_text(error)))
}

/// A hash tag (`t<n>`) whose keys live in `slot`: `{t<n>}`-tagged names and channels go there.
pub fn tag_for_slot(slot: u16) -> String {
    (0u64..)
        .map(|i| format!("t{i}"))
        .find(|tag| key_slot(tag.as_bytes()) == slot)
        .expect("every slot has a tag")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_for_a_slot_hashes_to_it() {
        assert_eq!(key_slot(tag_for_slot(42).as_bytes()), 42);
    }
}
