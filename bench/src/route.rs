//! Publishing `GYRE.PUBLISH` into one Redis, a Redis Cluster or a Sentinel group, with the
//! routing done here rather than in a client library, so that what a failover costs a publisher
//! is the topology's own time plus one short retry pause, not a library's backoff schedule.
//!
//! - **Single**: one address.
//! - **Cluster**: the slot map from `CLUSTER SLOTS` (asked of the seeds and of every node seen
//!   since, first answer wins); a command goes to the primary of its channel's slot (CRC16 of the
//!   channel, or of its hash tag: the channel is the command's key).
//! - **Sentinel**: the primary named by the first sentinel that answers
//!   `SENTINEL get-master-addr-by-name`.
//!
//! One multiplexed connection per node. Any failure (connection error, timeout, `MOVED`,
//! `CLUSTERDOWN`, `TRYAGAIN`, `READONLY`, …) drops that node's connection and marks the map
//! stale; the next command asks the topology again, at most once per [`REFRESH_PAUSE`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use gyre_proto::keys::{SLOTS, key_slot};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Value};
use tokio::sync::Mutex;

/// Shortest pause between two topology refreshes (a failing node makes every command ask).
pub const REFRESH_PAUSE: Duration = Duration::from_millis(20);

/// Where publications go.
#[derive(Debug, Clone)]
pub enum Topology {
    /// One Redis (`redis://host:port`).
    Single(String),
    /// Seed nodes (`host:port`) of one Redis Cluster.
    Cluster(Vec<String>),
    /// Sentinels (`host:port`) and the name of the primary they watch.
    Sentinel {
        sentinels: Vec<String>,
        name: String,
    },
}

impl Topology {
    /// `--redis-url`, `--redis-cluster` (comma-separated seeds) or `--redis-sentinel` +
    /// `--sentinel-master`, whichever is given (cluster, then sentinel, then the URL).
    pub fn from_args(url: &str, cluster: Option<&str>, sentinel: Option<&str>, name: &str) -> Self {
        let list = |s: &str| {
            s.split(',')
                .map(|a| a.trim().trim_start_matches("redis://").to_string())
                .filter(|a| !a.is_empty())
                .collect::<Vec<_>>()
        };
        if let Some(seeds) = cluster {
            Self::Cluster(list(seeds))
        } else if let Some(sentinels) = sentinel {
            Self::Sentinel {
                sentinels: list(sentinels),
                name: name.to_string(),
            }
        } else {
            Self::Single(url.trim_start_matches("redis://").to_string())
        }
    }
}

struct State {
    /// Cluster: node address of every slot (index into `nodes`), `None` while unserved.
    slots: Vec<Option<u16>>,
    nodes: Vec<String>,
    /// Single and Sentinel: the primary's address.
    primary: Option<String>,
    conns: HashMap<String, MultiplexedConnection>,
    stale: bool,
    refreshed: Option<Instant>,
    refreshes: u64,
}

/// A shared router: clone-free, use it through `&` from many tasks.
pub struct Router {
    topology: Topology,
    timeout: Duration,
    state: Mutex<State>,
}

/// One publish's reply: (offset, epoch) of a publication with history, (0, "") without.
pub type Published = (u64, String);

impl Router {
    /// Connects to the topology once (an error when nothing answers). `timeout` bounds each
    /// connection attempt and each command.
    pub async fn new(topology: Topology, timeout: Duration) -> Result<Self, String> {
        let nodes = match &topology {
            Topology::Cluster(seeds) => seeds.clone(),
            _ => Vec::new(),
        };
        let router = Self {
            topology,
            timeout,
            state: Mutex::new(State {
                slots: vec![None; usize::from(SLOTS)],
                nodes,
                primary: None,
                conns: HashMap::new(),
                stale: true,
                refreshed: None,
                refreshes: 0,
            }),
        };
        {
            let mut st = router.state.lock().await;
            router.refresh(&mut st).await?;
        }
        Ok(router)
    }

    /// Topology refreshes so far (the first one included).
    pub async fn refreshes(&self) -> u64 {
        self.state.lock().await.refreshes
    }

    async fn connect(&self, addr: &str) -> Result<MultiplexedConnection, String> {
        let client = redis::Client::open(format!("redis://{addr}")).map_err(|e| e.to_string())?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))
    }

    /// Asks the topology where things are now.
    async fn refresh(&self, st: &mut State) -> Result<(), String> {
        st.refreshed = Some(Instant::now());
        st.refreshes += 1;
        match &self.topology {
            Topology::Single(addr) => {
                st.primary = Some(addr.clone());
                st.stale = false;
                Ok(())
            }
            Topology::Sentinel { sentinels, name } => {
                let mut last = String::from("no sentinel");
                for s in sentinels {
                    let answer = async {
                        let mut con = self.connect(s).await?;
                        redis::cmd("SENTINEL")
                            .arg("get-master-addr-by-name")
                            .arg(name)
                            .query_async::<Option<(String, u16)>>(&mut con)
                            .await
                            .map_err(|e| format!("sentinel {s}: {e}"))
                    }
                    .await;
                    match answer {
                        Ok(Some((host, port))) => {
                            let addr = format!("{host}:{port}");
                            if st.primary.as_deref() != Some(addr.as_str()) {
                                st.conns.clear();
                            }
                            st.primary = Some(addr);
                            st.stale = false;
                            return Ok(());
                        }
                        Ok(None) => last = format!("sentinel {s} does not know {name}"),
                        Err(e) => last = e,
                    }
                }
                Err(last)
            }
            Topology::Cluster(seeds) => {
                let mut asked: Vec<String> = seeds.clone();
                for n in &st.nodes {
                    if !asked.contains(n) {
                        asked.push(n.clone());
                    }
                }
                let mut last = String::from("no node");
                for addr in asked {
                    let answer = async {
                        let mut con = match st.conns.get(&addr) {
                            Some(c) => c.clone(),
                            None => self.connect(&addr).await?,
                        };
                        redis::cmd("CLUSTER")
                            .arg("SLOTS")
                            .query_async::<Value>(&mut con)
                            .await
                            .map_err(|e| format!("CLUSTER SLOTS on {addr}: {e}"))
                    }
                    .await;
                    let ranges = match answer.and_then(|v| parse_cluster_slots(&v)) {
                        Ok(r) if !r.is_empty() => r,
                        Ok(_) => {
                            last = format!("CLUSTER SLOTS on {addr}: empty");
                            continue;
                        }
                        Err(e) => {
                            last = e;
                            continue;
                        }
                    };
                    st.slots.iter_mut().for_each(|s| *s = None);
                    for (from, to, node) in ranges {
                        let idx = match st.nodes.iter().position(|n| *n == node) {
                            Some(i) => i,
                            None => {
                                st.nodes.push(node);
                                st.nodes.len() - 1
                            }
                        };
                        for slot in from..=to.min(SLOTS - 1) {
                            st.slots[slot as usize] = Some(idx as u16);
                        }
                    }
                    st.stale = false;
                    return Ok(());
                }
                Err(last)
            }
        }
    }

    /// The node a command on `channel` goes to now.
    fn node_of(&self, st: &State, channel: &str) -> Option<String> {
        match self.topology {
            Topology::Cluster(_) => st.slots[key_slot(channel.as_bytes()) as usize]
                .map(|i| st.nodes[i as usize].clone()),
            _ => st.primary.clone(),
        }
    }

    /// The node address for `channel` and a connection to it, refreshing the topology first
    /// when it is stale (and the last refresh is older than [`REFRESH_PAUSE`]).
    pub async fn target(&self, channel: &str) -> Result<(String, MultiplexedConnection), String> {
        let mut st = self.state.lock().await;
        if st.stale && st.refreshed.is_none_or(|t| t.elapsed() >= REFRESH_PAUSE) {
            self.refresh(&mut st).await?;
        }
        let addr = self
            .node_of(&st, channel)
            .ok_or_else(|| format!("no node serves the slot of {channel}"))?;
        if let Some(con) = st.conns.get(&addr) {
            return Ok((addr, con.clone()));
        }
        let con = match self.connect(&addr).await {
            Ok(c) => c,
            Err(e) => {
                st.stale = true;
                return Err(e);
            }
        };
        st.conns.insert(addr.clone(), con.clone());
        Ok((addr, con))
    }

    /// A command to `addr` failed: forget its connection and ask the topology again.
    pub async fn failed(&self, addr: &str) {
        let mut st = self.state.lock().await;
        st.conns.remove(addr);
        st.stale = true;
    }

    /// One `GYRE.PUBLISH channel data`.
    pub async fn publish(&self, channel: &str, data: &[u8]) -> Result<Published, String> {
        let (addr, mut con) = self.target(channel).await?;
        let reply = redis::cmd("GYRE.PUBLISH")
            .arg(channel)
            .arg(data)
            .query_async::<Value>(&mut con)
            .await;
        match reply {
            Ok(v) => Ok(published(&v)),
            Err(e) => {
                self.failed(&addr).await;
                Err(format!("{addr}: {e}"))
            }
        }
    }

    /// `GYRE.PUBLISH` of every (channel, data), one pipeline per node, the nodes in parallel.
    /// Returns the outcome of each, in order.
    pub async fn publish_batch(
        &self,
        batch: &[(String, Vec<u8>)],
    ) -> Vec<Result<Published, String>> {
        let mut by_node: HashMap<String, (MultiplexedConnection, Vec<usize>)> = HashMap::new();
        let mut out: Vec<Result<Published, String>> =
            (0..batch.len()).map(|_| Err(String::new())).collect();
        for (i, (channel, _)) in batch.iter().enumerate() {
            match self.target(channel).await {
                Ok((addr, con)) => by_node.entry(addr).or_insert((con, Vec::new())).1.push(i),
                Err(e) => out[i] = Err(e),
            }
        }
        let sends = by_node
            .into_iter()
            .map(|(addr, (mut con, idx))| async move {
                let mut pipe = redis::pipe();
                pipe.ignore_errors();
                for &i in &idx {
                    let (channel, data) = &batch[i];
                    pipe.cmd("GYRE.PUBLISH").arg(channel).arg(data.as_slice());
                }
                let reply = pipe.query_async::<Vec<Value>>(&mut con).await;
                (addr, idx, reply)
            });
        for (addr, idx, reply) in futures_util::future::join_all(sends).await {
            match reply {
                Ok(values) => {
                    let mut failed = false;
                    for (&i, v) in idx.iter().zip(values.iter()) {
                        out[i] = match v {
                            Value::ServerError(e) => {
                                failed = true;
                                Err(format!("{addr}: {e:?}"))
                            }
                            v => Ok(published(v)),
                        };
                    }
                    if failed {
                        self.failed(&addr).await;
                    }
                }
                Err(e) => {
                    for &i in &idx {
                        out[i] = Err(format!("{addr}: {e}"));
                    }
                    self.failed(&addr).await;
                }
            }
        }
        out
    }
}

/// `[offset, epoch]` of a GYRE.PUBLISH reply.
fn published(v: &Value) -> Published {
    match v {
        Value::Array(items) if items.len() >= 2 => {
            let offset = match &items[0] {
                Value::Int(n) => *n as u64,
                _ => 0,
            };
            let epoch = match &items[1] {
                Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                Value::SimpleString(s) => s.clone(),
                _ => String::new(),
            };
            (offset, epoch)
        }
        _ => (0, String::new()),
    }
}

/// `CLUSTER SLOTS` → (first slot, last slot, primary `host:port`).
fn parse_cluster_slots(v: &Value) -> Result<Vec<(u16, u16, String)>, String> {
    let Value::Array(ranges) = v else {
        return Err(format!("CLUSTER SLOTS: unexpected reply {v:?}"));
    };
    let mut out = Vec::new();
    for r in ranges {
        let Value::Array(fields) = r else { continue };
        let (Some(Value::Int(from)), Some(Value::Int(to)), Some(Value::Array(primary))) =
            (fields.first(), fields.get(1), fields.get(2))
        else {
            continue;
        };
        let host = match primary.first() {
            Some(Value::BulkString(h)) => String::from_utf8_lossy(h).into_owned(),
            _ => continue,
        };
        let Some(Value::Int(port)) = primary.get(1) else {
            continue;
        };
        let host = if host.is_empty() {
            "127.0.0.1".into()
        } else {
            host
        };
        out.push((*from as u16, *to as u16, format!("{host}:{port}")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_slots_reply() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let reply = Value::Array(vec![Value::Array(vec![
            Value::Int(0),
            Value::Int(5460),
            Value::Array(vec![bulk("127.0.0.1"), Value::Int(7001), bulk("id")]),
            Value::Array(vec![bulk("127.0.0.1"), Value::Int(7004), bulk("id2")]),
        ])]);
        assert_eq!(
            parse_cluster_slots(&reply).unwrap(),
            vec![(0, 5460, "127.0.0.1:7001".to_string())]
        );
    }
}
