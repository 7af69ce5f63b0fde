//! [`RedisCluster`]: a Redis Cluster of six real `redis-server` processes (three primaries, three
//! replicas) with `libgyre.so` loaded, for tests of cluster behaviour: routing by slot, failovers
//! (clean and with lost writes) and slot migration.
//!
//! Starting one costs a few seconds, so a test binary normally shares one:
//! [`RedisCluster::shared`] starts it on first use, hands it to one test at a time, repairs it
//! between tests ([`RedisCluster::heal`]) and kills its processes when the test binary exits.
//! [`RedisCluster::start`] gives a cluster of one's own, killed on drop.
//!
//! Nodes are addressed by index (`0..6`); which node is a primary changes with failovers, so ask
//! [`RedisCluster::primaries`], [`RedisCluster::owner_of`] or [`RedisCluster::replicas_of`]
//! rather than assuming. Connections go over each node's unix socket and are not cluster-aware:
//! a command for a slot the node does not own gets a `MOVED` error.
//!
//! ```no_run
//! use gyre_tests::*;
//! let mut cluster = RedisCluster::shared();
//! let mut con = cluster.connection_for("chat");
//! publish(&mut con, "chat", "hi", &["HISTORY", "10", "60"]);
//! let owner = cluster.owner_of("chat");
//! let promoted = cluster.kill_primary(owner);
//! assert_eq!(cluster.owner_of("chat"), promoted);
//! cluster.heal(); // the killed node comes back as a replica of `promoted`
//! ```

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, Once};
use std::time::Duration;

use redis::Connection;

use crate::cluster_client::ClusterClient;
use crate::replies::{as_int, as_string, as_strings, cmd, error_text, info_section, try_cmd};
use crate::server::{RedisServer, ServerBuilder};
use crate::tail_loss::crash_with_tail_loss;
use crate::wait::wait_until;

/// `cluster-node-timeout` of every node: small, so that a failover takes seconds, but large enough
/// that a loaded CI machine does not fail nodes over by itself.
pub const NODE_TIMEOUT: Duration = Duration::from_millis(1500);

/// How long the cluster may take to settle after a change (start, failover, restart, migration).
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(40);

const NODES: usize = 6;

/// One node as a cluster member sees it (a line of `CLUSTER NODES`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// The node's index in the [`RedisCluster`], if it is one of its processes.
    pub index: Option<usize>,
    pub id: String,
    pub port: u16,
    pub primary: bool,
    /// Flagged `fail` or `fail?` by the member that was asked.
    pub failing: bool,
    /// For a replica: its primary's node id.
    pub primary_id: Option<String>,
    /// Slot ranges it serves (inclusive), without migration markers.
    pub slots: Vec<(u16, u16)>,
}

impl NodeView {
    pub fn owns(&self, slot: u16) -> bool {
        self.slots.iter().any(|&(a, b)| a <= slot && slot <= b)
    }
}

/// Six `redis-server` processes forming one Redis Cluster, each with the module loaded
/// (`sharded-pubsub yes` unless [`RedisCluster::start_with`] says otherwise) and
/// `--enable-debug-command local`. Dropping it kills every process and removes their directories.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// A cluster of one's own with the module loaded as `sharded-pubsub yes`.
    pub fn start() -> Self {
        Self::start_with(&["sharded-pubsub", "yes"])
    }

    /// A cluster of one's own whose module gets these `loadmodule` arguments.
    pub fn start_with(module_args: &[&str]) -> Self {
        let builder = RedisServer::builder()
            .cluster_node(NODE_TIMEOUT)
            .module_args(module_args)
            .args(&["--enable-debug-command", "local"]);
        let nodes = spawn_nodes(&builder);
        let cluster = Self { nodes };
        cluster.create();
        cluster.wait_settled();
        cluster
    }

    /// The cluster shared by every test of this test binary, for this test alone until the
    /// returned guard drops. It is started on first use and healed ([`RedisCluster::heal`]) on
    /// every later one, so a test may kill nodes and move slots (a migration it leaves open is
    /// finished by the next heal). Its processes are killed when the test binary exits.
    pub fn shared() -> SharedCluster {
        static SHARED: Mutex<Option<RedisCluster>> = Mutex::new(None);
        static CLEANUP: Once = Once::new();

        extern "C" fn drop_shared() {
            // Never unwind out of an atexit handler; a test still holding the lock keeps it.
            let _ = std::panic::catch_unwind(|| {
                let taken = match SHARED.try_lock() {
                    Ok(mut guard) => guard.take(),
                    Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner().take(),
                    Err(std::sync::TryLockError::WouldBlock) => None,
                };
                drop(taken);
            });
        }

        // A test that panicked while holding the cluster poisons the lock; heal() repairs what
        // it left.
        let mut guard = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_mut() {
            Some(cluster) => cluster.heal(),
            None => {
                *guard = Some(RedisCluster::start());
                CLEANUP.call_once(|| {
                    // SAFETY: registers a plain extern "C" function that takes no arguments.
                    unsafe { libc::atexit(drop_shared) };
                });
            }
        }
        SharedCluster(guard)
    }

    /// Number of nodes (running or not).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `index` (its log, directory, socket, connection).
    pub fn node(&self, index: usize) -> &RedisServer {
        &self.nodes[index]
    }

    /// TCP port of node `index`.
    pub fn port(&self, index: usize) -> u16 {
        self.nodes[index]
            .port()
            .expect("cluster nodes listen on TCP")
    }

    /// `127.0.0.1:<port>` of every running node: seeds for a cluster client.
    pub fn seeds(&self) -> Vec<String> {
        self.running()
            .into_iter()
            .map(|i| format!("127.0.0.1:{}", self.port(i)))
            .collect()
    }

    /// A connection to node `index` (unix socket).
    pub fn connection(&self, index: usize) -> Connection {
        self.nodes[index].connection()
    }

    /// The hash slot of a key (`CLUSTER KEYSLOT`, hash tags included). For GYRE.* commands the
    /// key is the channel name.
    pub fn slot(&self, key: &str) -> u16 {
        let node = self.any_running();
        as_int(&cmd(
            &mut self.connection(node),
            &["CLUSTER", "KEYSLOT", key],
        )) as u16
    }

    /// Index of the primary serving `slot`, as the first running node sees it.
    pub fn owner(&self, slot: u16) -> usize {
        let view = self.view(self.any_running());
        view.iter()
            .find(|n| n.primary && !n.failing && n.owns(slot))
            .and_then(|n| n.index)
            .unwrap_or_else(|| panic!("no running primary serves slot {slot}: {view:?}"))
    }

    /// Index of the primary serving `key`'s slot.
    pub fn owner_of(&self, key: &str) -> usize {
        self.owner(self.slot(key))
    }

    /// A connection to the primary serving `key`'s slot.
    pub fn connection_for(&self, key: &str) -> Connection {
        self.connection(self.owner_of(key))
    }

    /// Indexes of the primaries that serve slots.
    pub fn primaries(&self) -> Vec<usize> {
        self.view(self.any_running())
            .iter()
            .filter(|n| n.primary && !n.slots.is_empty())
            .filter_map(|n| n.index)
            .collect()
    }

    /// Indexes of the replicas of `primary`.
    pub fn replicas_of(&self, primary: usize) -> Vec<usize> {
        let view = self.view(self.any_running());
        let id = node_id(&view, primary);
        view.iter()
            .filter(|n| n.primary_id.as_deref() == Some(id.as_str()))
            .filter_map(|n| n.index)
            .collect()
    }

    /// The cluster as node `index` sees it (`CLUSTER NODES`).
    pub fn view(&self, index: usize) -> Vec<NodeView> {
        let text = as_string(&cmd(&mut self.connection(index), &["CLUSTER", "NODES"]));
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| self.parse_node_line(line))
            .collect()
    }

    /// `kill -9` of `primary`; returns once one of its replicas has been promoted and every
    /// running node reports `cluster_state:ok` and agrees on who serves every slot. Returns the
    /// promoted replica's index. The killed node stays down until [`RedisCluster::heal`].
    pub fn kill_primary(&mut self, primary: usize) -> usize {
        let replicas = self.replicas_of(primary);
        assert!(!replicas.is_empty(), "node {primary} has no replica");
        self.nodes[primary].crash();
        self.wait_promoted(&replicas)
    }

    /// The tail-loss failover of `primary` ([`crash_with_tail_loss`]): its first replica stops
    /// reading, the primary acknowledges whatever `write` writes during `window` alone and is
    /// killed; the cluster then promotes the replica, which lacks those writes. Returns the
    /// promoted replica's index once the cluster is ok. `write` gets a connection to `primary`.
    pub fn tail_loss_failover(
        &mut self,
        primary: usize,
        window: Duration,
        write: impl FnMut(&mut Connection),
    ) -> usize {
        let replica = *self
            .replicas_of(primary)
            .first()
            .unwrap_or_else(|| panic!("node {primary} has no replica"));
        let replica_con = self.connection(replica);
        crash_with_tail_loss(&mut self.nodes[primary], replica_con, window, write);
        self.wait_promoted(&[replica])
    }

    /// Moves `slot` with its keys to primary `to`, the way `redis-cli --cluster reshard` does:
    /// `CLUSTER SETSLOT … IMPORTING/MIGRATING`, `MIGRATE … KEYS` in batches, then `SETSLOT …
    /// NODE` on both ends and every other primary. Returns the number of keys moved, once every
    /// running node sees `to` as the owner. Panics if a `MIGRATE` was refused.
    pub fn move_slot(&mut self, slot: u16, to: usize) -> usize {
        let migration = self.move_slot_paced(slot, to, 100, Duration::ZERO);
        assert!(
            migration.refused.is_empty(),
            "MIGRATE refused: {:?}",
            migration.refused
        );
        migration.keys_moved
    }

    /// [`RedisCluster::move_slot`] in steps that others can run between: `keys_per_batch` keys
    /// per `MIGRATE` (redis-cli's `--cluster-pipeline`, 10 by default), and a `pause` after the
    /// slot is opened (IMPORTING/MIGRATING) and after every batch, so that commands sent meanwhile
    /// meet every intermediate state (a channel whose meta moved and whose stream did not yet …).
    ///
    /// A refused `MIGRATE` (`BUSYKEY`: the target already holds a key of that name) is recorded
    /// in [`Migration::refused`] and the batch is moved again with `REPLACE`, as an operator
    /// forcing the resharding would, so that the slot always ends up on `to` and the cluster stays
    /// usable for the next test.
    pub fn move_slot_paced(
        &mut self,
        slot: u16,
        to: usize,
        keys_per_batch: usize,
        pause: Duration,
    ) -> Migration {
        let from = self.owner(slot);
        assert_ne!(from, to, "slot {slot} is already on node {to}");
        let (from_id, to_id) = (self.node_id(from), self.node_id(to));
        let slot_text = slot.to_string();
        let mut source = self.connection(from);
        let mut target = self.connection(to);
        cmd(
            &mut target,
            &["CLUSTER", "SETSLOT", &slot_text, "IMPORTING", &from_id],
        );
        cmd(
            &mut source,
            &["CLUSTER", "SETSLOT", &slot_text, "MIGRATING", &to_id],
        );
        std::thread::sleep(pause);
        let to_port = self.port(to).to_string();
        let batch = keys_per_batch.max(1).to_string();
        let mut migration = Migration::default();
        loop {
            let keys = as_strings(&cmd(
                &mut source,
                &["CLUSTER", "GETKEYSINSLOT", &slot_text, &batch],
            ));
            if keys.is_empty() {
                break;
            }
            let mut args = vec!["MIGRATE", "127.0.0.1", &to_port, "", "0", "10000", "KEYS"];
            args.extend(keys.iter().map(String::as_str));
            if let Err(e) = try_cmd(&mut source, &args) {
                migration
                    .refused
                    .push(format!("{keys:?}: {}", error_text(&e)));
                args.insert(6, "REPLACE");
                cmd(&mut source, &args);
            }
            migration.keys_moved += keys.len();
            std::thread::sleep(pause);
        }
        self.assign_slot(slot, from, to);
        migration
    }

    /// `redis-cli --cluster reshard` of `slots` slots from primary `from` to primary `to`, with
    /// `pipeline` keys per `MIGRATE`. redis-cli takes the lowest slots of `from`
    /// ([`RedisCluster::lowest_slot`]). On success, returns once every running node agrees on the
    /// new owners; on failure the slot redis-cli stopped at stays open (IMPORTING/MIGRATING) for the
    /// test to look at, and [`RedisCluster::heal`] closes it.
    pub fn reshard(&mut self, from: usize, to: usize, slots: usize, pipeline: usize) -> Reshard {
        let output = Command::new("redis-cli")
            .args([
                "--cluster",
                "reshard",
                &format!("127.0.0.1:{}", self.port(to)),
            ])
            .args(["--cluster-from", &self.node_id(from)])
            .args(["--cluster-to", &self.node_id(to)])
            .args(["--cluster-slots", &slots.to_string()])
            .args(["--cluster-pipeline", &pipeline.to_string()])
            .arg("--cluster-yes")
            .output()
            .expect("run redis-cli --cluster reshard");
        let reshard = Reshard {
            success: output.status.success(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        };
        if reshard.success {
            self.wait_ok();
        }
        reshard
    }

    /// The lowest slot primary `index` serves: the first one `redis-cli --cluster reshard`
    /// takes from it.
    pub fn lowest_slot(&self, index: usize) -> u16 {
        self.view(index)
            .into_iter()
            .find(|n| n.index == Some(index))
            .and_then(|n| n.slots.iter().map(|r| r.0).min())
            .unwrap_or_else(|| panic!("node {index} serves no slot"))
    }

    /// The keys node `index` holds in `slot` (`CLUSTER GETKEYSINSLOT`, at most 10000), sorted.
    pub fn keys_in_slot(&self, index: usize, slot: u16) -> Vec<String> {
        let mut keys = as_strings(&cmd(
            &mut self.connection(index),
            &["CLUSTER", "GETKEYSINSLOT", &slot.to_string(), "10000"],
        ));
        keys.sort();
        keys
    }

    /// The cluster node id of node `index`.
    pub fn node_id(&self, index: usize) -> String {
        node_id(&self.view(self.any_running()), index)
    }

    /// A [`ClusterClient`] that knows every node of this cluster.
    pub fn client(&self) -> ClusterClient {
        ClusterClient::new((0..self.nodes.len()).map(|i| (self.port(i), self.nodes[i].socket())))
    }

    /// `CLUSTER SETSLOT <slot> NODE <to>` on `to`, on `from` and on every other primary (what
    /// redis-cli does to close a migration); returns once every running node sees `to` as owner.
    fn assign_slot(&mut self, slot: u16, from: usize, to: usize) {
        let slot_text = slot.to_string();
        let to_id = self.node_id(to);
        let set_node = ["CLUSTER", "SETSLOT", &slot_text, "NODE", &to_id];
        cmd(&mut self.connection(to), &set_node);
        cmd(&mut self.connection(from), &set_node);
        for other in self.primaries() {
            if other != from && other != to {
                // Informs the rest sooner than gossip; a refusal only means it knew already.
                let _ = try_cmd(&mut self.connection(other), &set_node);
            }
        }
        wait_until(SETTLE_TIMEOUT, "every node sees the moved slot", || {
            self.running()
                .iter()
                .all(|&i| self.owner_seen_by(i, slot) == Some(to))
        });
    }

    /// Finishes every migration a test left open: the keys still on a `MIGRATING` node move to
    /// its target (with `REPLACE`) and the slot is assigned to the target; an `IMPORTING` mark
    /// without a matching source is cleared (`SETSLOT … STABLE`).
    fn close_open_slots(&mut self) {
        for node in self.running() {
            for open in self.open_slots(node) {
                if !open.migrating {
                    continue;
                }
                let Some(to) = self.index_of(&open.peer) else {
                    continue;
                };
                let slot_text = open.slot.to_string();
                let to_port = self.port(to).to_string();
                let mut source = self.connection(node);
                loop {
                    let keys = as_strings(&cmd(
                        &mut source,
                        &["CLUSTER", "GETKEYSINSLOT", &slot_text, "100"],
                    ));
                    if keys.is_empty() {
                        break;
                    }
                    let mut args = vec![
                        "MIGRATE",
                        "127.0.0.1",
                        &to_port,
                        "",
                        "0",
                        "10000",
                        "REPLACE",
                        "KEYS",
                    ];
                    args.extend(keys.iter().map(String::as_str));
                    cmd(&mut source, &args);
                }
                self.assign_slot(open.slot, node, to);
            }
        }
        for node in self.running() {
            for open in self.open_slots(node) {
                let stable = ["CLUSTER", "SETSLOT", &open.slot.to_string(), "STABLE"];
                cmd(&mut self.connection(node), &stable);
            }
        }
    }

    /// The migration marks (`[slot->-id]`, `[slot-<-id]`) on node `index`'s own line of
    /// `CLUSTER NODES`.
    fn open_slots(&self, index: usize) -> Vec<OpenSlot> {
        let text = as_string(&cmd(&mut self.connection(index), &["CLUSTER", "NODES"]));
        let Some(line) = text.lines().find(|l| l.contains("myself")) else {
            return Vec::new();
        };
        line.split_whitespace()
            .filter_map(|f| f.strip_prefix('[')?.strip_suffix(']'))
            .filter_map(|mark| {
                let (slot, migrating, peer) = if let Some((s, p)) = mark.split_once("->-") {
                    (s, true, p)
                } else {
                    let (s, p) = mark.split_once("-<-")?;
                    (s, false, p)
                };
                Some(OpenSlot {
                    slot: slot.parse().ok()?,
                    migrating,
                    peer: peer.to_string(),
                })
            })
            .collect()
    }

    fn index_of(&self, id: &str) -> Option<usize> {
        self.view(self.any_running())
            .into_iter()
            .find(|n| n.id == id)
            .and_then(|n| n.index)
    }

    /// Brings the cluster back to full strength: starts every node that is down again (a killed
    /// primary returns as a replica of the node that replaced it, with an empty dataset), finishes
    /// any slot migration left open, and waits until the cluster is ok, no node is flagged
    /// failing, and every primary has a replica in sync.
    pub fn heal(&mut self) {
        for node in &mut self.nodes {
            if !node.is_running() {
                node.crash(); // reaps a node that died by itself
                node.respawn();
            }
        }
        self.close_open_slots();
        self.wait_settled();
    }

    /// Waits until every running node reports `cluster_state:ok` and they agree on who serves
    /// every slot, and that owner is running.
    pub fn wait_ok(&mut self) {
        wait_until(SETTLE_TIMEOUT, "cluster_state:ok everywhere", || {
            self.ok_and_agreed()
        });
    }

    fn create(&self) {
        let mut command = Command::new("redis-cli");
        command.arg("--cluster").arg("create");
        for i in 0..self.nodes.len() {
            command.arg(format!("127.0.0.1:{}", self.port(i)));
        }
        command.args(["--cluster-replicas", "1", "--cluster-yes"]);
        let output = command.output().expect("run redis-cli --cluster create");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed ({}):\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn wait_settled(&self) {
        wait_until(
            SETTLE_TIMEOUT,
            "cluster ok, no failing node, every primary with a replica in sync",
            || self.ok_and_agreed() && self.fully_replicated(),
        );
    }

    fn wait_promoted(&mut self, candidates: &[usize]) -> usize {
        let mut promoted = None;
        wait_until(SETTLE_TIMEOUT, "a replica promoted", || {
            promoted = candidates.iter().copied().find(|&r| {
                info_section(&mut self.connection(r), "replication")
                    .get("role")
                    .is_some_and(|role| role == "master")
            });
            promoted.is_some()
        });
        self.wait_ok();
        promoted.expect("promoted")
    }

    fn ok_and_agreed(&self) -> bool {
        let running = self.running();
        let mut maps = Vec::new();
        for &i in &running {
            let mut con = self.connection(i);
            let Ok(info) = try_cmd(&mut con, &["CLUSTER", "INFO"]) else {
                return false;
            };
            if !as_string(&info).contains("cluster_state:ok") {
                return false;
            }
            let map: BTreeMap<(u16, u16), Option<usize>> = self
                .view(i)
                .into_iter()
                .filter(|n| n.primary && !n.failing)
                .flat_map(|n| n.slots.iter().map(|&r| (r, n.index)).collect::<Vec<_>>())
                .collect();
            let covered: u32 = map.keys().map(|&(a, b)| u32::from(b - a) + 1).sum();
            if covered != 16384
                || map
                    .values()
                    .any(|o| o.is_none_or(|o| !running.contains(&o)))
            {
                return false;
            }
            maps.push(map);
        }
        maps.windows(2).all(|w| w[0] == w[1])
    }

    fn fully_replicated(&self) -> bool {
        let running = self.running();
        if running.len() != self.nodes.len() {
            return false;
        }
        let views: Vec<Vec<NodeView>> = running.iter().map(|&i| self.view(i)).collect();
        if views.iter().flatten().any(|n| n.failing) {
            return false;
        }
        let view = &views[0];
        view.iter()
            .filter(|n| n.primary && !n.slots.is_empty())
            .all(|p| {
                view.iter()
                    .filter(|r| r.primary_id.as_deref() == Some(p.id.as_str()))
                    .filter_map(|r| r.index)
                    .any(|r| {
                        let info = info_section(&mut self.connection(r), "replication");
                        info.get("master_link_status").map(String::as_str) == Some("up")
                            && info.get("master_sync_in_progress").map(String::as_str) == Some("0")
                    })
            })
    }

    fn owner_seen_by(&self, index: usize, slot: u16) -> Option<usize> {
        self.view(index)
            .into_iter()
            .find(|n| n.primary && n.owns(slot))
            .and_then(|n| n.index)
    }

    /// Nodes not killed through this fixture (a node that died by itself fails its connection).
    fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].pid().is_some())
            .collect()
    }

    fn any_running(&self) -> usize {
        *self.running().first().expect("no cluster node is running")
    }

    fn parse_node_line(&self, line: &str) -> NodeView {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert!(fields.len() >= 8, "CLUSTER NODES line: {line}");
        let address = fields[1].split(',').next().unwrap_or_default();
        let port: u16 = address
            .split('@')
            .next()
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let flags: Vec<&str> = fields[2].split(',').collect();
        let slots = fields[8..]
            .iter()
            .filter(|s| !s.starts_with('['))
            .filter_map(|s| match s.split_once('-') {
                Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                None => s.parse().ok().map(|n| (n, n)),
            })
            .collect();
        NodeView {
            index: (0..self.nodes.len()).find(|&i| self.nodes[i].port() == Some(port)),
            id: fields[0].to_string(),
            port,
            primary: flags.contains(&"master"),
            failing: flags.iter().any(|f| *f == "fail" || *f == "fail?"),
            primary_id: (fields[3] != "-").then(|| fields[3].to_string()),
            slots,
        }
    }
}

/// What [`RedisCluster::move_slot_paced`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Migration {
    /// Keys moved by `MIGRATE`.
    pub keys_moved: usize,
    /// Batches the target refused (with the keys and the error, e.g. `BUSYKEY`); each was then
    /// moved with `REPLACE`.
    pub refused: Vec<String>,
}

/// What `redis-cli --cluster reshard` did ([`RedisCluster::reshard`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reshard {
    /// It exited with status 0.
    pub success: bool,
    /// Its stdout and stderr.
    pub output: String,
}

/// A migration mark of `CLUSTER NODES`: `[slot->-peer]` (migrating) or `[slot-<-peer]`.
struct OpenSlot {
    slot: u16,
    migrating: bool,
    peer: String,
}

/// Exclusive use of [`RedisCluster::shared`]'s cluster; derefs to [`RedisCluster`].
pub struct SharedCluster(MutexGuard<'static, Option<RedisCluster>>);

impl Deref for SharedCluster {
    type Target = RedisCluster;
    fn deref(&self) -> &RedisCluster {
        self.0.as_ref().expect("the shared cluster is started")
    }
}

impl DerefMut for SharedCluster {
    fn deref_mut(&mut self) -> &mut RedisCluster {
        self.0.as_mut().expect("the shared cluster is started")
    }
}

fn node_id(view: &[NodeView], index: usize) -> String {
    view.iter()
        .find(|n| n.index == Some(index))
        .map(|n| n.id.clone())
        .unwrap_or_else(|| panic!("node {index} is not in the cluster view {view:?}"))
}

/// Starts the nodes one after the other (each start waits for PING).
fn spawn_nodes(builder: &ServerBuilder) -> Vec<RedisServer> {
    (0..NODES).map(|_| builder.clone().start()).collect()
}
