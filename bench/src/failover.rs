//! `gyre-bench failover`: subscribers on channels with history and recovery, publications at a
//! steady rate, then a Redis primary killed with SIGKILL; how long until publishing works again,
//! until every subscriber is back in sync, and what the subscribers were told.
//!
//! 1. Connects N gyre WebSocket JSON clients over C channels (client i takes channel i % C) of a
//!    namespace with history and `force_recovery`; each keeps its stream position (offset and
//!    epoch) from its subscribe reply and every publication after it, and checks that offsets
//!    run on without gaps or repeats.
//! 2. Publishes at `--rate` publications/s, round-robin over the channels, each publication its
//!    own `GYRE.PUBLISH` routed by [`crate::route`] (one Redis, a cluster's slot owner or
//!    Sentinel's primary). A failed publication is counted, not retried: the schedule goes on.
//! 3. After `--before` seconds sends SIGKILL to `--kill-pid` (the primary). The channels whose
//!    slot the killed node served (`--kill-addr`; all of them outside a cluster) are the killed
//!    shard's.
//! 4. Clients behave like the SDKs: an `unsubscribe` push with code ≥ 2500 is answered with a
//!    subscribe with `recover`, `offset` and `epoch` at once; a failed resubscribe is retried
//!    after a jittered backoff; a closed connection reconnects the same way. The reply says
//!    `recovered: true` (with the missed publications) or `recovered: false` (the client takes the
//!    new position and continues from there).
//! 5. A client is **in sync** once it has received a publication made after the kill, since the
//!    last time it lost its subscription (2500 or disconnect). The run ends `--settle` seconds
//!    after every client is in sync (or at `--deadline`), then waits `--drain` seconds.
//!
//! Reported (JSON): publishing: the first publication after the kill that succeeded on a killed
//! shard's channel (from the kill to its reply), the last failure, failures by kind and shard;
//! subscribers: time until all are in sync (and percentiles), per shard; 2500s, recovered true /
//! false, reconnects, offsets that skipped or repeated; publications acknowledged by Redis that a
//! subscriber never received, and how many of those it was not told about (`recovered: false`
//! after the publication was made) — the silent losses, which must be 0.
//!
//! `gyre-bench failover-report <dir>` prints the Markdown table of the results in a directory.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::floor::round3;
use crate::load::{close_reason, resolve, ws_config};
use crate::payload;
use crate::report::{fmt, num};
use crate::route::{Router, Topology};
use crate::stats;
use crate::storm::{Backoff, Rng};

#[derive(clap::Args, Debug, Clone)]
pub struct FailoverArgs {
    /// Base URL of gyre (http://host:port); the WebSocket URL is <url>/connection/websocket.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// One Redis to publish to (when neither --redis-cluster nor --redis-sentinel is given).
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// Seed nodes of a Redis Cluster (host:port, comma-separated).
    #[arg(long)]
    pub redis_cluster: Option<String>,
    /// Sentinels (host:port, comma-separated) watching --sentinel-master.
    #[arg(long)]
    pub redis_sentinel: Option<String>,
    /// The primary's name for --redis-sentinel.
    #[arg(long, default_value = "gyre")]
    pub sentinel_master: String,
    /// Subscriber connections.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Channels; client i subscribes to channel i % channels.
    #[arg(long, default_value_t = 48)]
    pub channels: usize,
    /// Channel name prefix (its namespace needs history and force_recovery).
    #[arg(long, default_value = "bench:f")]
    pub channel_prefix: String,
    /// Publications per second over all channels (round-robin).
    #[arg(long, default_value_t = 480.0)]
    pub rate: f64,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 128)]
    pub payload_size: usize,
    /// Seconds of steady publishing before the kill.
    #[arg(long, default_value_t = 5.0)]
    pub before: f64,
    /// Processes to SIGKILL at the kill (the primary).
    #[arg(long)]
    pub kill_pid: Vec<u32>,
    /// host:port of the killed primary, to tell its channels from the others in a cluster.
    #[arg(long)]
    pub kill_addr: Option<String>,
    /// Seconds after the kill to give up waiting for every client to be in sync.
    #[arg(long, default_value_t = 60.0)]
    pub deadline: f64,
    /// Seconds of publishing once every client is in sync (later losses still count).
    #[arg(long, default_value_t = 3.0)]
    pub settle: f64,
    /// Seconds to wait for deliveries after the last publication.
    #[arg(long, default_value_t = 2.0)]
    pub drain: f64,
    /// Seconds one publication may take (connect + reply).
    #[arg(long, default_value_t = 1.0)]
    pub publish_timeout: f64,
    /// First backoff window (ms) before retrying a failed resubscribe or reconnect (uniform
    /// 0..window, doubling per retry); the SDKs' minimum is 500 ms.
    #[arg(long, default_value_t = 500)]
    pub backoff_min_ms: u64,
    /// Largest backoff window in ms (the SDKs': 10 s for resubscribes, 20 s for reconnects).
    #[arg(long, default_value_t = 10_000)]
    pub backoff_max_ms: u64,
    /// Tokio worker threads of this tool.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Connection attempts in flight at once during the initial connect.
    #[arg(long, default_value_t = 200)]
    pub connect_concurrency: usize,
    /// Milliseconds between two points of the curve after the kill.
    #[arg(long, default_value_t = 100)]
    pub step_ms: u64,
    /// Server process(es) to account CPU for.
    #[arg(long)]
    pub server_pid: Vec<u32>,
    /// Free-form label stored in the result (e.g. cluster, sentinel).
    #[arg(long, default_value = "")]
    pub label: String,
    /// Free-form tag stored in the result.
    #[arg(long, default_value = "")]
    pub tag: String,
    /// Write the JSON result here instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

// --- shared state ----------------------------------------------------------------------------

/// One client's view, updated by its task and read by the monitor and the final analysis.
#[derive(Default)]
struct ClientState {
    ready: bool,
    /// Time of the first subscribe reply (the client's publications start after it).
    subscribed_ns: u64,
    subscribed: bool,
    offset: u64,
    epoch: String,
    /// A publication made after the kill received since the last loss (ns of its receipt).
    synced_ns: Option<u64>,
    /// Last loss of the subscription after the kill.
    last_loss_ns: Option<u64>,
    first_unsubscribe_ns: Option<u64>,
    unsubscribes_2500: u32,
    unsubscribes_other: u32,
    disconnects: u32,
    recovered_true: u32,
    recovered_false: u32,
    /// Receipt of the last `recovered: false` reply.
    not_recovered_ns: Option<u64>,
    resubscribe_errors: u32,
    gaps: u32,
    repeats: u32,
    /// Send times of every publication received.
    received: HashSet<u64>,
}

struct Shared {
    clients: Vec<Mutex<ClientState>>,
    ready: AtomicUsize,
    initial_failed: AtomicUsize,
    /// ns of the kill; 0 before it.
    kill_ns: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    /// Every publication attempt.
    pubs: Mutex<Vec<PubRecord>>,
    publishing: AtomicBool,
}

impl Shared {
    fn error(&self, what: impl Into<String>) {
        crate::stats::count_error(&self.errors, what);
    }
}

struct PubRecord {
    channel: usize,
    sent_ns: u64,
    done_ns: u64,
    result: Result<(u64, String), String>,
}

struct Cfg {
    addr: SocketAddr,
    ws_url: String,
    prefix: String,
    channels: usize,
    backoff: Backoff,
}

impl Cfg {
    fn channel(&self, i: usize) -> String {
        format!("{}{}", self.prefix, i % self.channels)
    }
}

// --- one client ------------------------------------------------------------------------------

type Ws = WebSocketStream<TcpStream>;

/// The publication's send time, from its payload (`{"t":…}`).
fn sent_ns(publication: &Value) -> Option<u64> {
    publication["data"]["t"].as_u64()
}

impl ClientState {
    fn receive(&mut self, sent: u64, now: u64, kill: u64) {
        self.received.insert(sent);
        if kill != 0 && sent > kill && self.subscribed && self.synced_ns.is_none() {
            self.synced_ns = Some(now);
        }
    }

    /// A live publication at `offset`.
    fn live(&mut self, offset: u64, sent: Option<u64>, now: u64, kill: u64) {
        if offset != 0 {
            if offset <= self.offset {
                self.repeats += 1;
            } else if offset != self.offset + 1 {
                self.gaps += 1;
            }
            self.offset = self.offset.max(offset);
        }
        if let Some(sent) = sent {
            self.receive(sent, now, kill);
        }
    }

    fn lost(&mut self, now: u64, kill: u64) {
        self.subscribed = false;
        if kill != 0 {
            self.synced_ns = None;
            self.last_loss_ns = Some(now);
        }
    }

    /// A successful subscribe reply (`{"subscribe":{…}}`).
    fn subscribe_reply(&mut self, sub: &Value, recovering: bool, now: u64, kill: u64) {
        if recovering {
            if sub["recovered"].as_bool() == Some(true) {
                self.recovered_true += 1;
                // The missed publications follow the saved offset without a hole.
                let mut expect = self.offset + 1;
                for p in sub["publications"].as_array().map_or(&[][..], |a| a) {
                    if let Some(o) = p["offset"].as_u64() {
                        if o != expect {
                            self.gaps += 1;
                        }
                        expect = o + 1;
                    }
                }
            } else {
                self.recovered_false += 1;
                self.not_recovered_ns = Some(now);
            }
        } else {
            self.subscribed_ns = now;
        }
        // A recovered reply carries the requested offset (as Centrifugo's does): the position
        // advances through its publications.
        self.offset = sub["offset"].as_u64().unwrap_or(0);
        self.epoch = sub["epoch"].as_str().unwrap_or("").to_string();
        self.subscribed = true;
        for p in sub["publications"].as_array().map_or(&[][..], |a| a) {
            if let Some(offset) = p["offset"].as_u64() {
                self.offset = self.offset.max(offset);
            }
            if let Some(sent) = sent_ns(p) {
                self.receive(sent, now, kill);
            }
        }
    }
}

enum Outcome {
    /// The connection ended (reconnect).
    Closed(String),
    /// The run is over.
    Stop,
}

/// Opens the WebSocket and sends connect + subscribe (recovering from the saved position when
/// there is one); the subscribe reply is handled by [`serve`].
async fn open(cfg: &Cfg, channel: &str, recover: Option<(u64, String)>) -> Result<Ws, String> {
    let req = cfg
        .ws_url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("request: {e}"))?;
    let tcp = TcpStream::connect(cfg.addr)
        .await
        .map_err(|e| format!("tcp connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(req, tcp, Some(ws_config()))
        .await
        .map_err(|e| format!("ws handshake: {e}"))?;
    let frame = format!(
        "{}\n{}",
        json!({"id": 1, "connect": {}}),
        json!({"id": 2, "subscribe": subscribe_body(channel, recover)})
    );
    ws.send(Message::text(frame))
        .await
        .map_err(|e| format!("send: {e}"))?;
    Ok(ws)
}

fn subscribe_body(channel: &str, recover: Option<(u64, String)>) -> Value {
    let mut sub = json!({"channel": channel});
    if let Some((offset, epoch)) = recover {
        sub["recover"] = json!(true);
        sub["offset"] = json!(offset);
        sub["epoch"] = json!(epoch);
    }
    sub
}

/// Serves one connection whose subscribe (id 2) is in flight, until it closes or the run ends.
async fn serve(
    i: usize,
    ws: &mut Ws,
    recovering: bool,
    cfg: &Cfg,
    shared: &Shared,
    ctl: &mut watch::Receiver<bool>,
    rng: &mut Rng,
) -> Outcome {
    let channel = cfg.channel(i);
    let state = &shared.clients[i];
    // The subscribe in flight: its id and whether it recovers.
    let mut pending: Option<(u64, bool)> = Some((2, recovering));
    let mut next_id: u64 = 3;
    let mut retries: u32 = 0;
    let mut resubscribe_at: Option<tokio::time::Instant> = None;
    loop {
        if *ctl.borrow() {
            return Outcome::Stop;
        }
        let timer = async {
            match resubscribe_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let msg = tokio::select! {
            changed = ctl.changed() => {
                if changed.is_err() {
                    return Outcome::Stop;
                }
                continue;
            }
            () = timer => {
                resubscribe_at = None;
                let recover = {
                    let st = state.lock().unwrap();
                    Some((st.offset, st.epoch.clone()))
                };
                let id = next_id;
                next_id += 1;
                pending = Some((id, true));
                let frame = json!({"id": id, "subscribe": subscribe_body(&channel, recover)});
                if let Err(e) = ws.send(Message::text(frame.to_string())).await {
                    return Outcome::Closed(format!("send: {e}"));
                }
                continue;
            }
            msg = ws.next() => msg,
        };
        let text = match msg {
            None => return Outcome::Closed("eof".into()),
            Some(Err(e)) => return Outcome::Closed(format!("read: {e}")),
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(f))) => return Outcome::Closed(close_reason(f)),
            Some(Ok(_)) => continue,
        };
        for line in text.as_str().split('\n') {
            if line == "{}" {
                if let Err(e) = ws.send(Message::text("{}")).await {
                    return Outcome::Closed(format!("pong: {e}"));
                }
                continue;
            }
            let v: Value = match serde_json::from_str(line) {
                Ok(v) => v,
                Err(e) => {
                    shared.error(format!("bad frame: {e}"));
                    continue;
                }
            };
            let now = payload::now_ns();
            let kill = shared.kill_ns.load(Relaxed);
            if let Some(id) = v["id"].as_u64() {
                if id == 1 {
                    if let Some(err) = v.get("error") {
                        return Outcome::Closed(format!("connect error {err}"));
                    }
                    continue;
                }
                let Some((want, recovering)) = pending else {
                    continue;
                };
                if id != want {
                    continue;
                }
                pending = None;
                if let Some(err) = v.get("error") {
                    shared.error(format!("subscribe error {err}"));
                    let mut st = state.lock().unwrap();
                    st.resubscribe_errors += 1;
                    drop(st);
                    let delay = cfg.backoff.delay(retries, None, rng);
                    retries += 1;
                    resubscribe_at = Some(tokio::time::Instant::now() + delay);
                    continue;
                }
                retries = 0;
                let mut st = state.lock().unwrap();
                let first = !st.ready;
                st.subscribe_reply(&v["subscribe"], recovering, now, kill);
                if first {
                    st.ready = true;
                    drop(st);
                    shared.ready.fetch_add(1, Relaxed);
                }
                continue;
            }
            let push = &v["push"];
            if push.is_null() {
                continue;
            }
            if let Some(d) = push.get("disconnect") {
                return Outcome::Closed(format!("disconnect {d}"));
            }
            if push["channel"].as_str() != Some(channel.as_str()) {
                continue;
            }
            if let Some(p) = push.get("pub") {
                let mut st = state.lock().unwrap();
                st.live(p["offset"].as_u64().unwrap_or(0), sent_ns(p), now, kill);
            } else if let Some(u) = push.get("unsubscribe") {
                let code = u["code"].as_u64().unwrap_or(0);
                let mut st = state.lock().unwrap();
                st.lost(now, kill);
                if code >= 2500 {
                    st.unsubscribes_2500 += 1;
                    if kill != 0 && st.first_unsubscribe_ns.is_none() {
                        st.first_unsubscribe_ns = Some(now);
                    }
                    drop(st);
                    // The SDKs resubscribe at once, recovering from their position.
                    resubscribe_at = Some(tokio::time::Instant::now());
                } else {
                    st.unsubscribes_other += 1;
                    drop(st);
                    shared.error(format!("unsubscribed {u}"));
                    return Outcome::Closed(format!("unsubscribed with code {code}"));
                }
            }
        }
    }
}

async fn client(
    i: usize,
    cfg: Arc<Cfg>,
    shared: Arc<Shared>,
    sem: Arc<Semaphore>,
    mut ctl: watch::Receiver<bool>,
) {
    let channel = cfg.channel(i);
    let mut rng = Rng::new(payload::now_ns() ^ (i as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let mut failures: u32 = 0;
    loop {
        if *ctl.borrow() {
            return;
        }
        let (ready, recover) = {
            let st = shared.clients[i].lock().unwrap();
            (st.ready, st.ready.then(|| (st.offset, st.epoch.clone())))
        };
        let permit = if ready {
            None
        } else {
            Some(sem.clone().acquire_owned().await)
        };
        let opened = tokio::time::timeout(
            Duration::from_secs(10),
            open(&cfg, &channel, recover.clone()),
        )
        .await;
        drop(permit);
        let why = match opened {
            Ok(Ok(mut ws)) => {
                match serve(
                    i,
                    &mut ws,
                    recover.is_some(),
                    &cfg,
                    &shared,
                    &mut ctl,
                    &mut rng,
                )
                .await
                {
                    Outcome::Stop => return,
                    Outcome::Closed(why) => why,
                }
            }
            Ok(Err(e)) => e,
            Err(_) => "connect timeout".into(),
        };
        if !ready && !shared.clients[i].lock().unwrap().ready {
            shared.initial_failed.fetch_add(1, Relaxed);
            shared.error(format!("initial connect: {why}"));
            return;
        }
        shared.error(format!("closed: {why}"));
        {
            let kill = shared.kill_ns.load(Relaxed);
            let mut st = shared.clients[i].lock().unwrap();
            st.disconnects += 1;
            st.lost(payload::now_ns(), kill);
        }
        let delay = cfg.backoff.delay(failures, None, &mut rng);
        failures += 1;
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = ctl.changed() => return,
        }
    }
}

// --- the publisher ---------------------------------------------------------------------------

/// Publishes at `rate`/s round-robin over the channels until `publishing` is cleared; every
/// publication is its own task, so a slow or failing node never delays the schedule.
async fn publisher(
    router: Arc<Router>,
    cfg: Arc<Cfg>,
    shared: Arc<Shared>,
    rate: f64,
    payload_size: usize,
    timeout: Duration,
) {
    let start = tokio::time::Instant::now();
    let mut i: u64 = 0;
    while shared.publishing.load(Relaxed) {
        tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / rate)).await;
        let ch = (i as usize) % cfg.channels;
        i += 1;
        let router = router.clone();
        let shared = shared.clone();
        let channel = cfg.channel(ch);
        tokio::spawn(async move {
            let sent_ns = payload::now_ns();
            let data = payload::make(payload_size, sent_ns);
            let result = match tokio::time::timeout(timeout, router.publish(&channel, &data)).await
            {
                Ok(r) => r,
                Err(_) => Err("timeout".into()),
            };
            let done_ns = payload::now_ns();
            shared.pubs.lock().unwrap().push(PubRecord {
                channel: ch,
                sent_ns,
                done_ns,
                result,
            });
        });
    }
}

/// A coarse kind for a publish error.
fn error_kind(e: &str) -> String {
    for kind in [
        "CLUSTERDOWN",
        "MOVED",
        "TRYAGAIN",
        "READONLY",
        "LOADING",
        "MASTERDOWN",
        "timeout",
    ] {
        if e.contains(kind) {
            return kind.to_string();
        }
    }
    let lower = e.to_ascii_lowercase();
    if lower.contains("refused") {
        "connection refused".into()
    } else if lower.contains("reset")
        || lower.contains("broken pipe")
        || lower.contains("closed")
        || lower.contains("terminated")
    {
        "connection lost".into()
    } else if lower.contains("no node serves") {
        "slot unserved".into()
    } else {
        let mut s = e.to_string();
        s.truncate(80);
        s
    }
}

// --- results ---------------------------------------------------------------------------------

#[derive(Serialize, Default, Clone)]
pub struct ShardStats {
    pub channels: usize,
    pub clients: usize,
    /// Publications attempted after the kill, and how many failed.
    pub published_after_kill: u64,
    pub failed_after_kill: u64,
    pub failures_by_kind: BTreeMap<String, u64>,
    /// Kill → reply of the first publication made after the kill that succeeded.
    pub publish_resumed_s: Option<f64>,
    /// Kill → reply of the first and of the last failed publication.
    pub first_failure_s: Option<f64>,
    pub last_failure_s: Option<f64>,
    /// Kill → the last client's return to sync; null unless all did.
    pub all_in_sync_s: Option<f64>,
    pub in_sync_p50_s: Option<f64>,
    pub in_sync_p90_s: Option<f64>,
    pub in_sync_p99_s: Option<f64>,
    pub clients_in_sync: usize,
    /// Clients without a subscription at the end (still resubscribing or reconnecting).
    pub clients_unsubscribed_at_end: usize,
    /// Kill → the first and the median first 2500 push of a client.
    pub first_unsubscribe_s: Option<f64>,
    pub unsubscribe_p50_s: Option<f64>,
    pub clients_unsubscribed_2500: usize,
    pub unsubscribes_2500: u64,
    pub unsubscribes_other: u64,
    pub clients_told_not_recovered: usize,
    pub recovered_false: u64,
    pub recovered_true: u64,
    pub resubscribe_errors: u64,
    pub disconnects: u64,
    pub offset_gaps: u64,
    pub offset_repeats: u64,
    /// Publications acknowledged (Redis replied) that some subscriber of the channel never
    /// received: (subscriber, publication) pairs.
    pub acknowledged_missed: u64,
    /// …of which the subscriber had no subscription at the end (it was told with 2500 or a
    /// disconnect and is still trying to come back: neither recovered nor announced yet).
    pub missed_while_unsubscribed: u64,
    /// …of which the subscriber was subscribed at the end and never told `recovered: false`
    /// after the publication was made: lost without a word. Must be 0.
    pub silently_missed: u64,
}

#[derive(Serialize)]
struct FailoverResult {
    mode: &'static str,
    label: String,
    tag: String,
    url: String,
    topology: String,
    connections: usize,
    ready: usize,
    initial_failed: usize,
    channels: usize,
    rate: f64,
    payload_size: usize,
    before_s: f64,
    backoff_min_ms: u64,
    backoff_max_ms: u64,
    killed_pids: Vec<u32>,
    killed_addr: Option<String>,
    /// Kill → end of publishing.
    published_for_s: f64,
    publications: u64,
    publications_failed: u64,
    publications_before_kill_failed: u64,
    /// The killed primary's channels, and the others (in a cluster).
    killed_shard: ShardStats,
    other_shards: ShardStats,
    all: ShardStats,
    /// Every `step_ms` after the kill: clients in sync, publications ok / failed in the step.
    curve: Vec<CurvePoint>,
    server_cpu_s: f64,
    router_refreshes: u64,
    errors: BTreeMap<String, u64>,
}

#[derive(Serialize, Clone)]
struct CurvePoint {
    t_ms: u64,
    in_sync: usize,
    subscribed: usize,
    published_ok: u64,
    published_failed: u64,
}

fn percentile_s(sorted_ns: &[u64], q: f64) -> Option<f64> {
    if sorted_ns.is_empty() {
        return None;
    }
    let idx = ((q * sorted_ns.len() as f64).ceil() as usize).clamp(1, sorted_ns.len()) - 1;
    Some(round3(sorted_ns[idx] as f64 / 1e9))
}

fn secs(ns: u64) -> f64 {
    round3(ns as f64 / 1e9)
}

/// Statistics over the clients of the channels in `shard` (a predicate on the channel index).
fn shard_stats(
    shared: &Shared,
    cfg: &Cfg,
    kill: u64,
    pubs_end_ns: u64,
    in_shard: &dyn Fn(usize) -> bool,
) -> ShardStats {
    let mut s = ShardStats {
        channels: (0..cfg.channels).filter(|&c| in_shard(c)).count(),
        ..Default::default()
    };
    let pubs = shared.pubs.lock().unwrap();
    let mut first_failure: Option<u64> = None;
    let mut last_failure: Option<u64> = None;
    let mut first_failure_sent: Option<u64> = None;
    for p in pubs
        .iter()
        .filter(|p| in_shard(p.channel) && p.sent_ns > kill)
    {
        s.published_after_kill += 1;
        if let Err(e) = &p.result {
            s.failed_after_kill += 1;
            *s.failures_by_kind.entry(error_kind(e)).or_default() += 1;
            let t = p.done_ns.saturating_sub(kill);
            last_failure = Some(last_failure.map_or(t, |l| l.max(t)));
            first_failure = Some(first_failure.map_or(t, |f| f.min(t)));
            first_failure_sent = Some(first_failure_sent.map_or(p.sent_ns, |f| f.min(p.sent_ns)));
        }
    }
    // Resumed: the first success among the publications made after the first failure (a
    // publication already on its way when the node died may still have succeeded).
    let resumed = pubs
        .iter()
        .filter(|p| in_shard(p.channel) && p.sent_ns > first_failure_sent.unwrap_or(kill))
        .filter(|p| p.result.is_ok())
        .map(|p| p.done_ns.saturating_sub(kill))
        .min();
    s.publish_resumed_s = resumed.map(secs);
    s.first_failure_s = first_failure.map(secs);
    s.last_failure_s = last_failure.map(secs);

    // Acknowledged publications per channel: (sent, done).
    let mut acked: Vec<Vec<(u64, u64)>> = vec![Vec::new(); cfg.channels];
    for p in pubs.iter() {
        if p.result.is_ok() {
            acked[p.channel].push((p.sent_ns, p.done_ns));
        }
    }
    drop(pubs);

    let mut sync = Vec::new();
    let mut unsub = Vec::new();
    for (i, c) in shared.clients.iter().enumerate() {
        let ch = i % cfg.channels;
        if !in_shard(ch) {
            continue;
        }
        let st = c.lock().unwrap();
        if !st.ready {
            continue;
        }
        s.clients += 1;
        if let Some(t) = st.synced_ns
            && st.subscribed
        {
            s.clients_in_sync += 1;
            sync.push(t.saturating_sub(kill));
        }
        if let Some(t) = st.first_unsubscribe_ns {
            unsub.push(t.saturating_sub(kill));
        }
        s.clients_unsubscribed_at_end += usize::from(!st.subscribed);
        s.clients_unsubscribed_2500 += usize::from(st.unsubscribes_2500 > 0);
        s.unsubscribes_2500 += u64::from(st.unsubscribes_2500);
        s.unsubscribes_other += u64::from(st.unsubscribes_other);
        s.clients_told_not_recovered += usize::from(st.recovered_false > 0);
        s.recovered_false += u64::from(st.recovered_false);
        s.recovered_true += u64::from(st.recovered_true);
        s.resubscribe_errors += u64::from(st.resubscribe_errors);
        s.disconnects += u64::from(st.disconnects);
        s.offset_gaps += u64::from(st.gaps);
        s.offset_repeats += u64::from(st.repeats);
        for &(sent, done) in &acked[ch] {
            // Publications made after the client subscribed, acknowledged before the end.
            if sent < st.subscribed_ns || done > pubs_end_ns || st.received.contains(&sent) {
                continue;
            }
            s.acknowledged_missed += 1;
            if !st.subscribed {
                s.missed_while_unsubscribed += 1;
            } else if st.not_recovered_ns.is_none_or(|t| t < sent) {
                s.silently_missed += 1;
            }
        }
    }
    sync.sort_unstable();
    unsub.sort_unstable();
    s.all_in_sync_s =
        (s.clients > 0 && sync.len() == s.clients).then(|| secs(sync[sync.len() - 1]));
    s.in_sync_p50_s = percentile_s(&sync, 0.5);
    s.in_sync_p90_s = percentile_s(&sync, 0.9);
    s.in_sync_p99_s = percentile_s(&sync, 0.99);
    s.first_unsubscribe_s = unsub.first().map(|&t| secs(t));
    s.unsubscribe_p50_s = percentile_s(&unsub, 0.5);
    s
}

pub fn run(mut args: FailoverArgs) -> Result<(), Box<dyn std::error::Error>> {
    args.threads = args.threads.max(1);
    args.channels = args.channels.max(1);
    args.step_ms = args.step_ms.max(10);
    crate::run_measurement(args.threads, run_async(args.clone()), args.out.as_deref())
}

async fn run_async(args: FailoverArgs) -> Result<FailoverResult, Box<dyn std::error::Error>> {
    let (addr, _) = resolve(&args.url)?;
    let ws_base = args
        .url
        .replacen("https://", "wss://", 1)
        .replacen("http://", "ws://", 1);
    let cfg = Arc::new(Cfg {
        addr,
        ws_url: format!("{}/connection/websocket", ws_base.trim_end_matches('/')),
        prefix: args.channel_prefix.clone(),
        channels: args.channels,
        backoff: Backoff {
            min_ms: args.backoff_min_ms,
            max_ms: args.backoff_max_ms.max(args.backoff_min_ms),
            honour_retry_after: true,
        },
    });
    let topology = Topology::from_args(
        &args.redis_url,
        args.redis_cluster.as_deref(),
        args.redis_sentinel.as_deref(),
        &args.sentinel_master,
    );
    let topology_name = match &topology {
        Topology::Single(a) => format!("single {a}"),
        Topology::Cluster(s) => format!("cluster {}", s.join(",")),
        Topology::Sentinel { sentinels, name } => {
            format!("sentinel {name} via {}", sentinels.join(","))
        }
    };
    let publish_timeout = Duration::from_secs_f64(args.publish_timeout);
    let router = Arc::new(Router::new(topology.clone(), publish_timeout).await?);

    // The killed shard's channels: in a cluster those whose slot --kill-addr serves now.
    let mut killed_channel = vec![true; cfg.channels];
    if let (Topology::Cluster(_), Some(kill_addr)) = (&topology, &args.kill_addr) {
        for (c, killed) in killed_channel.iter_mut().enumerate() {
            *killed = router.target(&cfg.channel(c)).await?.0 == *kill_addr;
        }
    }
    // Every stream gets its epoch before anyone subscribes.
    for c in 0..cfg.channels {
        router
            .publish(&cfg.channel(c), &payload::make(args.payload_size, 0))
            .await
            .map_err(|e| format!("first publication: {e}"))?;
    }

    let shared = Arc::new(Shared {
        clients: (0..args.connections)
            .map(|_| Mutex::new(ClientState::default()))
            .collect(),
        ready: AtomicUsize::new(0),
        initial_failed: AtomicUsize::new(0),
        kill_ns: AtomicU64::new(0),
        errors: Mutex::new(BTreeMap::new()),
        pubs: Mutex::new(Vec::new()),
        publishing: AtomicBool::new(true),
    });

    // 1. Connect everything.
    let (stop_tx, stop_rx) = watch::channel(false);
    let sem = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    for i in 0..args.connections {
        tokio::spawn(client(
            i,
            cfg.clone(),
            shared.clone(),
            sem.clone(),
            stop_rx.clone(),
        ));
    }
    let t0 = tokio::time::Instant::now();
    while shared.ready.load(Relaxed) + shared.initial_failed.load(Relaxed) < args.connections {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if t0.elapsed() > Duration::from_secs(120) {
            return Err("clients did not connect within 120 s".into());
        }
    }
    let ready = shared.ready.load(Relaxed);
    eprintln!(
        "connected {ready}/{} in {:.1}s",
        args.connections,
        t0.elapsed().as_secs_f64()
    );

    // 2. Steady publishing, then the kill.
    let server_before = stats::sample(&args.server_pid);
    let pub_task = tokio::spawn(publisher(
        router.clone(),
        cfg.clone(),
        shared.clone(),
        args.rate.max(1.0),
        args.payload_size,
        publish_timeout,
    ));
    tokio::time::sleep(Duration::from_secs_f64(args.before)).await;
    let kill_ns = payload::now_ns();
    shared.kill_ns.store(kill_ns, Relaxed);
    for &pid in &args.kill_pid {
        // SAFETY: kill(2) with a pid given on the command line; no memory is involved.
        if unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) } != 0 {
            shared.error(format!("kill {pid}: {}", std::io::Error::last_os_error()));
        }
    }
    eprintln!("killed {:?} ({:?})", args.kill_pid, args.kill_addr);

    // 3. Until every client is back in sync, then settle.
    let step = Duration::from_millis(args.step_ms);
    let kill_at = tokio::time::Instant::now();
    let mut curve = Vec::new();
    let mut all_synced_at: Option<tokio::time::Instant> = None;
    let mut k: u32 = 0;
    let mut last_print = 0;
    let mut pubs_seen = 0;
    loop {
        k += 1;
        tokio::time::sleep_until(kill_at + step * k).await;
        let (mut in_sync, mut subscribed) = (0, 0);
        for c in &shared.clients {
            let st = c.lock().unwrap();
            if st.ready {
                subscribed += usize::from(st.subscribed);
                in_sync += usize::from(st.subscribed && st.synced_ns.is_some());
            }
        }
        let (ok, failed) = {
            let pubs = shared.pubs.lock().unwrap();
            let new = &pubs[pubs_seen..];
            pubs_seen = pubs.len();
            let failed = new.iter().filter(|p| p.result.is_err()).count() as u64;
            (new.len() as u64 - failed, failed)
        };
        let t_ms = kill_at.elapsed().as_millis() as u64;
        curve.push(CurvePoint {
            t_ms,
            in_sync,
            subscribed,
            published_ok: ok,
            published_failed: failed,
        });
        if t_ms / 1000 != last_print {
            last_print = t_ms / 1000;
            eprintln!(
                "[{:.1}s after the kill] subscribed {subscribed}/{ready}, in sync {in_sync}",
                t_ms as f64 / 1e3
            );
        }
        if in_sync == ready && all_synced_at.is_none() {
            all_synced_at = Some(tokio::time::Instant::now());
        }
        if all_synced_at.is_some_and(|t| t.elapsed().as_secs_f64() >= args.settle)
            || kill_at.elapsed().as_secs_f64() >= args.deadline
        {
            break;
        }
    }
    shared.publishing.store(false, Relaxed);
    let _ = pub_task.await;
    let pubs_end_ns = payload::now_ns();
    tokio::time::sleep(Duration::from_secs_f64(args.drain)).await;
    let _ = stop_tx.send(true);
    let server_after = stats::sample(&args.server_pid);

    let killed = |c: usize| killed_channel[c];
    let other = |c: usize| !killed_channel[c];
    let all = |_: usize| true;
    let killed_shard = shard_stats(&shared, &cfg, kill_ns, pubs_end_ns, &killed);
    let other_shards = shard_stats(&shared, &cfg, kill_ns, pubs_end_ns, &other);
    let all = shard_stats(&shared, &cfg, kill_ns, pubs_end_ns, &all);
    let (publications, publications_failed, before_failed) = {
        let pubs = shared.pubs.lock().unwrap();
        (
            pubs.len() as u64,
            pubs.iter().filter(|p| p.result.is_err()).count() as u64,
            pubs.iter()
                .filter(|p| p.result.is_err() && p.sent_ns <= kill_ns)
                .count() as u64,
        )
    };
    eprintln!(
        "publishing resumed {:?} s (killed shard), all in sync {:?} s, told recovered:false {}",
        killed_shard.publish_resumed_s, all.all_in_sync_s, all.clients_told_not_recovered
    );
    let errors = shared.errors.lock().unwrap().clone();
    Ok(FailoverResult {
        mode: "failover",
        label: args.label.clone(),
        tag: args.tag.clone(),
        url: args.url.clone(),
        topology: topology_name,
        connections: args.connections,
        ready,
        initial_failed: shared.initial_failed.load(Relaxed),
        channels: args.channels,
        rate: args.rate,
        payload_size: args.payload_size,
        before_s: args.before,
        backoff_min_ms: args.backoff_min_ms,
        backoff_max_ms: args.backoff_max_ms,
        killed_pids: args.kill_pid.clone(),
        killed_addr: args.kill_addr.clone(),
        published_for_s: secs(pubs_end_ns.saturating_sub(kill_ns)),
        publications,
        publications_failed,
        publications_before_kill_failed: before_failed,
        killed_shard,
        other_shards,
        all,
        curve,
        server_cpu_s: round3(server_after.cpu_s - server_before.cpu_s),
        router_refreshes: router.refreshes().await,
        errors,
    })
}

// --- report ----------------------------------------------------------------------------------

/// Markdown tables of every `gyre-bench failover` result in `dir`: one row per run, then the
/// medians per label (topology).
pub fn report(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let mut runs: Vec<(PathBuf, Value)> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let Ok(v) = serde_json::from_str::<Value>(&std::fs::read_to_string(&path)?) else {
            continue;
        };
        if v["mode"] == "failover" {
            runs.push((path, v));
        }
    }
    runs.sort_by(|a, b| a.0.cmp(&b.0));
    print!("{}", render_report(&runs));
    Ok(())
}

/// One cell: a number, or two joined by " / ".
type Cell = fn(&Value, &dyn Fn(&Value, &[&str]) -> Option<f64>) -> String;

/// The columns of both tables: title and how to compute the cell from a result (or, for the
/// medians, from the median of each number over the runs).
fn columns() -> Vec<(&'static str, Cell)> {
    fn two(
        v: &Value,
        get: &dyn Fn(&Value, &[&str]) -> Option<f64>,
        a: &[&str],
        b: &[&str],
        digits: usize,
    ) -> String {
        format!("{} / {}", fmt(get(v, a), digits), fmt(get(v, b), digits))
    }
    vec![
        ("publishing failed from / to s (killed shard)", |v, g| {
            two(
                v,
                g,
                &["killed_shard", "first_failure_s"],
                &["killed_shard", "last_failure_s"],
                2,
            )
        }),
        ("**publishing resumed s** (killed shard)", |v, g| {
            format!(
                "**{}**",
                fmt(g(v, &["killed_shard", "publish_resumed_s"]), 2)
            )
        }),
        ("publishing failed from / to s (other shards)", |v, g| {
            two(
                v,
                g,
                &["other_shards", "first_failure_s"],
                &["other_shards", "last_failure_s"],
                2,
            )
        }),
        ("first 2500 s", |v, g| {
            fmt(g(v, &["all", "first_unsubscribe_s"]), 2)
        }),
        ("**all in sync s**", |v, g| {
            format!("**{}**", fmt(g(v, &["all", "all_in_sync_s"]), 2))
        }),
        ("in sync p50 / p99 s (killed shard)", |v, g| {
            two(
                v,
                g,
                &["killed_shard", "in_sync_p50_s"],
                &["killed_shard", "in_sync_p99_s"],
                2,
            )
        }),
        ("in sync p50 / p99 s (other shards)", |v, g| {
            two(
                v,
                g,
                &["other_shards", "in_sync_p50_s"],
                &["other_shards", "in_sync_p99_s"],
                2,
            )
        }),
        ("2500 (killed / other shards)", |v, g| {
            two(
                v,
                g,
                &["killed_shard", "clients_unsubscribed_2500"],
                &["other_shards", "clients_unsubscribed_2500"],
                0,
            )
        }),
        (
            "**told recovered:false** (killed / other shards)",
            |v, g| {
                two(
                    v,
                    g,
                    &["killed_shard", "clients_told_not_recovered"],
                    &["other_shards", "clients_told_not_recovered"],
                    0,
                )
            },
        ),
        ("recovered:true", |v, g| {
            fmt(g(v, &["all", "recovered_true"]), 0)
        }),
        ("without a subscription at the end", |v, g| {
            fmt(g(v, &["all", "clients_unsubscribed_at_end"]), 0)
        }),
        (
            "acknowledged, never delivered: all / to a client still out / silently",
            |v, g| {
                format!(
                    "{} / {} / {}",
                    fmt(g(v, &["all", "acknowledged_missed"]), 0),
                    fmt(g(v, &["all", "missed_while_unsubscribed"]), 0),
                    fmt(g(v, &["all", "silently_missed"]), 0)
                )
            },
        ),
        ("offset gaps / repeats", |v, g| {
            two(v, g, &["all", "offset_gaps"], &["all", "offset_repeats"], 0)
        }),
    ]
}

fn render_report(runs: &[(PathBuf, Value)]) -> String {
    let cols = columns();
    let titles: Vec<&str> = cols.iter().map(|c| c.0).collect();
    let mut out = format!(
        "| run | clients | {} |\n|---|---|{}\n",
        titles.join(" | "),
        "---|".repeat(cols.len())
    );
    let plain = |v: &Value, p: &[&str]| num(v, p);
    let mut by_label: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for (path, v) in runs {
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("?");
        let cells: Vec<String> = cols.iter().map(|(_, cell)| cell(v, &plain)).collect();
        out.push_str(&format!(
            "| {name} | {}/{} | {} |\n",
            v["ready"],
            v["connections"],
            cells.join(" | ")
        ));
        by_label
            .entry(v["label"].as_str().unwrap_or("").to_string())
            .or_default()
            .push(v);
    }
    out.push_str(&format!(
        "\nMedians:\n\n| topology | runs | {} |\n|---|---|{}\n",
        titles.join(" | "),
        "---|".repeat(cols.len())
    ));
    for (label, vs) in by_label {
        // A median over the runs of every number the cell reads (– when a run has none, e.g.
        // never all in sync: a median that skipped those runs would flatter).
        let median = |_: &Value, p: &[&str]| {
            let mut values: Vec<f64> = vs.iter().filter_map(|v| num(v, p)).collect();
            if values.len() < vs.len() {
                return None;
            }
            stats::median(&mut values)
        };
        let cells: Vec<String> = cols
            .iter()
            .map(|(_, cell)| cell(&Value::Null, &median))
            .collect();
        out.push_str(&format!(
            "| {label} | {} | {} |\n",
            vs.len(),
            cells.join(" | ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_and_sync() {
        let mut st = ClientState {
            ready: true,
            subscribed: true,
            offset: 5,
            ..Default::default()
        };
        st.live(6, Some(100), 100, 0);
        st.live(8, Some(101), 101, 0);
        st.live(8, Some(102), 102, 0);
        assert_eq!((st.gaps, st.repeats, st.offset), (1, 1, 8));
        assert_eq!(st.synced_ns, None, "nothing counts before the kill");
        // After the kill at 200: a publication made before it does not sync, one after does.
        st.live(9, Some(150), 250, 200);
        assert_eq!(st.synced_ns, None);
        st.live(10, Some(260), 270, 200);
        assert_eq!(st.synced_ns, Some(270));
        // A loss resets it; a recovered:false reply takes the new position.
        st.lost(300, 200);
        assert_eq!(st.synced_ns, None);
        let reply = json!({"recovered": false, "offset": 3, "epoch": "new"});
        st.subscribe_reply(&reply, true, 310, 200);
        assert_eq!(
            (st.recovered_false, st.offset, st.epoch.as_str()),
            (1, 3, "new")
        );
        st.live(4, Some(320), 330, 200);
        assert_eq!(st.synced_ns, Some(330));
        assert_eq!(st.gaps, 1);
    }

    #[test]
    fn recovered_publications_must_follow_the_position() {
        let mut st = ClientState {
            ready: true,
            offset: 10,
            ..Default::default()
        };
        // gyre, like Centrifugo, answers a recovery with the requested offset.
        let reply = json!({"recovered": true, "offset": 10, "epoch": "e",
            "publications": [{"offset": 11, "data": {"t": 5}}, {"offset": 12, "data": {"t": 6}}]});
        st.subscribe_reply(&reply, true, 1, 0);
        assert_eq!((st.recovered_true, st.gaps, st.offset), (1, 0, 12));
        assert!(st.received.contains(&5) && st.received.contains(&6));
        st.live(13, None, 2, 0);
        assert_eq!(
            st.gaps, 0,
            "the next live publication follows the recovered ones"
        );
        let reply = json!({"recovered": true, "offset": 13, "epoch": "e",
            "publications": [{"offset": 15, "data": {"t": 7}}]});
        st.subscribe_reply(&reply, true, 3, 0);
        assert_eq!((st.gaps, st.offset), (1, 15));
    }

    #[test]
    fn report_rows_and_medians() {
        let run = |resumed: f64, sync: Option<f64>| {
            json!({"mode": "failover", "label": "cluster", "ready": 10, "connections": 10,
                "killed_shard": {"publish_resumed_s": resumed, "clients_told_not_recovered": 3},
                "other_shards": {"clients_told_not_recovered": 0},
                "all": {"all_in_sync_s": sync, "silently_missed": 0}})
        };
        let runs = vec![
            (PathBuf::from("cluster-1.json"), run(2.0, Some(3.0))),
            (PathBuf::from("cluster-2.json"), run(4.0, Some(5.0))),
            (PathBuf::from("cluster-3.json"), run(3.0, None)),
        ];
        let md = render_report(&runs);
        assert!(
            md.contains("| cluster-1 | 10/10 | – / – | **2.00** |"),
            "{md}"
        );
        assert!(
            md.contains("| **3** / **0** |") || md.contains("| 3 / 0 |"),
            "{md}"
        );
        // The median of "all in sync" is unknown when a run never got there.
        assert!(
            md.contains("| cluster | 3 | – / – | **3.00** | – / – | – | **–** |"),
            "{md}"
        );
    }

    #[test]
    fn error_kinds() {
        assert_eq!(
            error_kind("127.0.0.1:1: CLUSTERDOWN: The cluster is down"),
            "CLUSTERDOWN"
        );
        assert_eq!(
            error_kind("connect 127.0.0.1:1: Connection refused (os error 111)"),
            "connection refused"
        );
    }
}
