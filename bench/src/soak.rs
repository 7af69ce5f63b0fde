//! `gyre-bench soak`: many connections with steady churn and publishing for a long time, and
//! the server's resources sampled at a fixed interval, to see whether anything grows.
//!
//! 1. Connects N gyre WebSocket JSON clients over C channels (namespace with history and
//!    recovery), each subscribing with `recoverable: true`.
//! 2. For `--duration` seconds: publishes `--rate` publications per second round-robin over the
//!    channels (`GYRE.PUBLISH`), and churns `--churn-percent` of the clients per second: client i
//!    closes its connection at t0 + P·i/N + k·P (P = 100 / churn-percent seconds, so the drops are
//!    spread evenly), stays away `--away-ms`, then reconnects with `recover: true` from the last
//!    offset it saw.
//! 3. Every client checks its stream: offsets must rise by one, live or recovered; a gap counts
//!    the publications missed, a `recovered: false` is counted apart (the client was told).
//! 4. Every `--sample-interval` seconds one CSV row (`--csv`): the server's RSS and open
//!    descriptors (/proc), its live tokio tasks (`gyre_runtime_alive_tasks` on /metrics), Redis
//!    `used_memory` and RSS, and the clients' counters and latency since the previous row.
//! 5. At the end: publishing stops, connected clients compare their last offset with the last
//!    one published on their channel, and the summary (JSON on `--out`, Markdown on `--report`)
//!    gives the least-squares slope per hour of every resource series.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::floor::round3;
use crate::load::{close_reason, json_has_ping, resolve};
use crate::payload;
use crate::route::{Router, Topology};
use crate::stats::{self, Latency};
use crate::storm::{AttemptError, Backoff, Rng, Ws, attempt, position};

#[derive(clap::Args, Debug, Clone)]
pub struct SoakArgs {
    /// Base URL of gyre (http://host:port); the WebSocket URL is <url>/connection/websocket.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// gyre's Prometheus endpoint, read for `gyre_runtime_alive_tasks` [default: <url>/metrics].
    #[arg(long)]
    pub metrics_url: Option<String>,
    /// Redis URL for GYRE.PUBLISH and INFO memory.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// Client connections.
    #[arg(long, default_value_t = 15_000)]
    pub connections: usize,
    /// Channels; client i subscribes to channel i % channels.
    #[arg(long, default_value_t = 100)]
    pub channels: usize,
    /// Channel name prefix (the namespace needs history and recovery).
    #[arg(long, default_value = "bench:soak")]
    pub channel_prefix: String,
    /// Publications per second, round-robin over the channels.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Payload size in bytes of every publication.
    #[arg(long, default_value_t = 128)]
    pub payload_size: usize,
    /// Seconds of churn and publishing.
    #[arg(long, default_value_t = 1800.0)]
    pub duration: f64,
    /// Percent of the clients that disconnect and reconnect per second (0 = no churn).
    #[arg(long, default_value_t = 1.0)]
    pub churn_percent: f64,
    /// Milliseconds a churned client stays away before reconnecting with recovery.
    #[arg(long, default_value_t = 1000)]
    pub away_ms: u64,
    /// Seconds between two samples.
    #[arg(long, default_value_t = 60.0)]
    pub sample_interval: f64,
    /// The gyre process sampled (RSS, descriptors).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// The Redis process sampled (RSS).
    #[arg(long)]
    pub redis_pid: Option<u32>,
    /// Tokio worker threads of this tool.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Connection attempts in flight at once.
    #[arg(long, default_value_t = 200)]
    pub connect_concurrency: usize,
    /// Seconds one attempt (TCP + WebSocket handshake + connect + subscribe) may take.
    #[arg(long, default_value_t = 10.0)]
    pub attempt_timeout: f64,
    /// Seconds after publishing stops for the last deliveries to arrive.
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,
    /// One row per sample is appended here (CSV with a header).
    #[arg(long)]
    pub csv: PathBuf,
    /// The Markdown summary (samples, slopes, totals) is written here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Write the JSON result here instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

const STAGE_CONNECT: u8 = 0;
const STAGE_SOAK: u8 = 1;
/// Publishing and churn have stopped; the last deliveries arrive.
const STAGE_DRAIN: u8 = 2;
const STAGE_END: u8 = 3;

struct Cfg {
    addr: SocketAddr,
    ws_url: String,
    prefix: String,
    channels: usize,
    connections: usize,
    /// Every client drops once per period; None: no churn.
    churn_period: Option<Duration>,
    away: Duration,
    attempt_timeout: Duration,
    backoff: Backoff,
}

impl Cfg {
    fn channel(&self, i: usize) -> String {
        format!("{}{}", self.prefix, i % self.channels)
    }
}

#[derive(Default)]
struct Counters {
    /// Clients holding a subscribed connection now.
    connected: AtomicI64,
    /// Clients whose first subscribe succeeded.
    initial_ready: AtomicU64,
    initial_failed: AtomicU64,
    /// Scheduled drops (churn) and reconnects that got a subscribe reply.
    churned: AtomicU64,
    reconnects: AtomicU64,
    recovered: AtomicU64,
    /// Reconnects answered `recovered: false` (the client is told; not silent).
    not_recovered: AtomicU64,
    /// Publications received live, and inside recovering subscribe replies.
    deliveries: AtomicU64,
    recovered_publications: AtomicU64,
    /// Publications skipped in a client's stream (offset jumped), and offsets seen twice.
    missed: AtomicU64,
    duplicates: AtomicU64,
    /// Connections the server closed (or that broke) outside the churn.
    unexpected_closes: AtomicU64,
    /// Failed attempts (503s included); each is retried after a backoff.
    attempt_errors: AtomicU64,
    published: AtomicU64,
    publish_errors: AtomicU64,
    /// End: connected clients behind the last published offset of their channel, and by how
    /// many publications in total.
    behind_at_end: AtomicU64,
    behind_publications: AtomicU64,
    reported_at_end: AtomicU64,
}

struct Shared {
    n: Counters,
    /// Last offset published per channel (from the GYRE.PUBLISH replies).
    top: Vec<AtomicU64>,
    latency: Mutex<Histogram<u64>>,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Shared {
    fn error(&self, what: impl Into<String>) {
        stats::count_error(&self.errors, what);
    }
}

/// A client's view of its stream: the last offset seen and the epoch.
struct Stream {
    offset: u64,
    epoch: String,
}

impl Stream {
    /// One publication at `offset`: counts what was skipped or seen twice.
    fn advance(&mut self, offset: u64, shared: &Shared) {
        if offset <= self.offset {
            shared.n.duplicates.fetch_add(1, Relaxed);
            return;
        }
        let skipped = offset - self.offset - 1;
        if skipped > 0 {
            shared.n.missed.fetch_add(skipped, Relaxed);
        }
        self.offset = offset;
    }
}

/// The offsets of the publications in a JSON frame (push lines), after answering its pings.
fn push_offsets(frame: &str) -> Vec<u64> {
    let mut out = Vec::new();
    for line in frame.split('\n') {
        if !line.starts_with("{\"push\"") {
            continue;
        }
        if let Ok(v) = serde_json::from_str::<Value>(line)
            && let Some(offset) = v["push"]["pub"]["offset"].as_u64()
        {
            out.push(offset);
        }
    }
    out
}

/// When client `i` drops for the `k`-th time (k ≥ 0) after the soak started at `t0`.
fn drop_time(cfg: &Cfg, t0: Instant, i: usize, k: u64) -> Option<Instant> {
    let period = cfg.churn_period?;
    let phase = period.mul_f64(i as f64 / cfg.connections as f64);
    Some(t0 + phase + period * k as u32)
}

enum Ended {
    /// The churn schedule closed it: stay away, then reconnect.
    Churn,
    /// The server closed it or it broke: reconnect at once.
    Unexpected,
    /// The stage moved on (the schedule starts or stops).
    Stage,
    /// The soak is over.
    End,
}

/// Connects (recovering from `stream` when set) until a subscribe reply arrives; None when the
/// soak ends first.
async fn connect(
    cfg: &Cfg,
    channel: &str,
    stream: Option<&Stream>,
    shared: &Shared,
    sem: &Semaphore,
    ctl: &mut watch::Receiver<u8>,
    rng: &mut Rng,
) -> Option<(Ws, Value)> {
    let recover = stream.map(|s| (s.offset, s.epoch.clone()));
    let mut tries: u32 = 0;
    loop {
        if *ctl.borrow() >= STAGE_END {
            return None;
        }
        let permit = sem.acquire().await.ok()?;
        let result = tokio::time::timeout(
            cfg.attempt_timeout,
            attempt(cfg.addr, &cfg.ws_url, channel, recover.as_ref()),
        )
        .await;
        drop(permit);
        let retry_after = match result {
            Ok(Ok((ws, reply))) => {
                if let Some(err) = reply.get("error") {
                    shared.error(format!("subscribe error {err}"));
                    None
                } else {
                    return Some((ws, reply));
                }
            }
            Ok(Err(AttemptError::Refused(ra))) => {
                shared.error("connect: 503");
                ra
            }
            Ok(Err(AttemptError::Transient(e))) => {
                shared.error(format!("connect: {e}"));
                None
            }
            Err(_) => {
                shared.error("connect: attempt timeout");
                None
            }
        };
        shared.n.attempt_errors.fetch_add(1, Relaxed);
        tokio::time::sleep(cfg.backoff.delay(tries, retry_after, rng)).await;
        tries = tries.saturating_add(1);
    }
}

/// Reads publications until the churn schedule, the server or the end closes the connection.
async fn hold(
    ws: &mut Ws,
    stream: &mut Stream,
    drop_at: Option<Instant>,
    shared: &Shared,
    ctl: &mut watch::Receiver<u8>,
) -> Ended {
    let far = Instant::now() + Duration::from_secs(365 * 86400);
    loop {
        if *ctl.borrow_and_update() >= STAGE_END {
            return Ended::End;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(drop_at.unwrap_or(far)) => return Ended::Churn,
            changed = ctl.changed() => {
                if changed.is_err() {
                    return Ended::End;
                }
                return Ended::Stage;
            }
            msg = ws.next() => {
                let why = match msg {
                    None => "eof".to_string(),
                    Some(Err(e)) => format!("read: {e}"),
                    Some(Ok(Message::Close(f))) => close_reason(f),
                    Some(Ok(Message::Text(t))) => {
                        let text = t.as_str();
                        {
                            let now = payload::now_ns();
                            let mut h = shared.latency.lock().unwrap();
                            payload::scan(text.as_bytes(), |sent| {
                                stats::record(&mut h, now.saturating_sub(sent) / 1000);
                            });
                        }
                        for offset in push_offsets(text) {
                            shared.n.deliveries.fetch_add(1, Relaxed);
                            stream.advance(offset, shared);
                        }
                        if json_has_ping(text.as_bytes())
                            && let Err(e) = ws.send(Message::text("{}")).await
                        {
                            format!("pong: {e}")
                        } else {
                            continue;
                        }
                    }
                    Some(Ok(_)) => continue,
                };
                shared.n.unexpected_closes.fetch_add(1, Relaxed);
                shared.error(format!("closed outside the churn: {why}"));
                return Ended::Unexpected;
            }
        }
    }
}

async fn client(
    i: usize,
    cfg: Arc<Cfg>,
    shared: Arc<Shared>,
    sem: Arc<Semaphore>,
    mut ctl: watch::Receiver<u8>,
    t0: Arc<std::sync::OnceLock<Instant>>,
) {
    let channel = cfg.channel(i);
    let ch = i % cfg.channels;
    let mut rng = Rng::new(payload::now_ns() ^ (i as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let mut stream: Option<Stream> = None;
    let mut drops: u64 = 0;
    loop {
        let Some((mut ws, reply)) = connect(
            &cfg,
            &channel,
            stream.as_ref(),
            &shared,
            &sem,
            &mut ctl,
            &mut rng,
        )
        .await
        else {
            if stream.is_none() {
                shared.n.initial_failed.fetch_add(1, Relaxed);
            }
            return;
        };
        match stream.as_mut() {
            None => {
                let (offset, epoch) = position(&reply);
                stream = Some(Stream { offset, epoch });
                shared.n.initial_ready.fetch_add(1, Relaxed);
            }
            Some(s) => {
                shared.n.reconnects.fetch_add(1, Relaxed);
                let sub = &reply["subscribe"];
                if sub["recovered"].as_bool() == Some(true) {
                    shared.n.recovered.fetch_add(1, Relaxed);
                    for p in sub["publications"].as_array().map_or(&[][..], |a| a) {
                        if let Some(offset) = p["offset"].as_u64() {
                            shared.n.recovered_publications.fetch_add(1, Relaxed);
                            s.advance(offset, &shared);
                        }
                    }
                    // The reply's offset is the stream top: anything between is missing.
                    let (top, _) = position(&reply);
                    if top > s.offset {
                        shared.n.missed.fetch_add(top - s.offset, Relaxed);
                        s.offset = top;
                    }
                } else {
                    shared.n.not_recovered.fetch_add(1, Relaxed);
                    (s.offset, s.epoch) = position(&reply);
                }
            }
        }
        let s = stream.as_mut().expect("set above");
        shared.n.connected.fetch_add(1, Relaxed);
        let ended = loop {
            // The schedule runs during the soak stage only.
            let soaking = *ctl.borrow() == STAGE_SOAK;
            let drop_at = t0.get().filter(|_| soaking).and_then(|&t0| {
                let now = Instant::now();
                loop {
                    let at = drop_time(&cfg, t0, i, drops)?;
                    if at > now {
                        return Some(at);
                    }
                    drops += 1;
                }
            });
            match hold(&mut ws, s, drop_at, &shared, &mut ctl).await {
                Ended::Stage => continue,
                other => break other,
            }
        };
        shared.n.connected.fetch_sub(1, Relaxed);
        match ended {
            Ended::End => {
                let top = shared.top[ch].load(Relaxed);
                if top > s.offset {
                    shared.n.behind_at_end.fetch_add(1, Relaxed);
                    shared
                        .n
                        .behind_publications
                        .fetch_add(top - s.offset, Relaxed);
                }
                shared.n.reported_at_end.fetch_add(1, Relaxed);
                let _ = ws.close(None).await;
                return;
            }
            Ended::Churn => {
                drops += 1;
                shared.n.churned.fetch_add(1, Relaxed);
                let _ = tokio::time::timeout(Duration::from_secs(2), async {
                    let _ = ws.close(None).await;
                    while let Some(Ok(_)) = ws.next().await {}
                })
                .await;
                drop(ws);
                tokio::time::sleep(cfg.away).await;
            }
            Ended::Unexpected | Ended::Stage => drop(ws),
        }
    }
}

/// Publishes `rate` per second round-robin over the channels until the stage leaves the soak,
/// catching up in pipelined batches when behind.
async fn publisher(
    router: Router,
    cfg: Arc<Cfg>,
    shared: Arc<Shared>,
    rate: f64,
    payload_size: usize,
    ctl: watch::Receiver<u8>,
) {
    let start = Instant::now();
    let due = |i: u64| start + Duration::from_secs_f64(i as f64 / rate);
    let mut i: u64 = 0;
    while *ctl.borrow() == STAGE_SOAK {
        tokio::time::sleep_until(due(i)).await;
        let now = Instant::now();
        let mut batch = Vec::new();
        let mut channels = Vec::new();
        while (batch.is_empty() || due(i) <= now) && batch.len() < 256 {
            let ch = (i as usize) % cfg.channels;
            channels.push(ch);
            batch.push((
                cfg.channel(ch),
                payload::make(payload_size, payload::now_ns()),
            ));
            i += 1;
        }
        for (ch, result) in channels.into_iter().zip(router.publish_batch(&batch).await) {
            match result {
                Ok((offset, _)) => {
                    shared.top[ch].fetch_max(offset, Relaxed);
                    shared.n.published.fetch_add(1, Relaxed);
                }
                Err(e) => {
                    shared.n.publish_errors.fetch_add(1, Relaxed);
                    shared.error(format!("publish: {e}"));
                }
            }
        }
    }
}

// --- sampling ------------------------------------------------------------------------------

/// One row of the CSV.
#[derive(Serialize, Clone, Debug, Default)]
struct Sample {
    minute: f64,
    elapsed_s: f64,
    gyre_rss_kib: Option<u64>,
    gyre_fds: Option<u64>,
    gyre_tasks: Option<u64>,
    redis_used_memory: Option<u64>,
    redis_rss_kib: Option<u64>,
    connected: i64,
    churned: u64,
    reconnects: u64,
    not_recovered: u64,
    deliveries: u64,
    missed: u64,
    duplicates: u64,
    unexpected_closes: u64,
    attempt_errors: u64,
    published: u64,
    p50_us: u64,
    p99_us: u64,
    max_us: u64,
}

const CSV_HEADER: &str = "minute,elapsed_s,gyre_rss_kib,gyre_fds,gyre_tasks,redis_used_memory,redis_rss_kib,connected,churned,reconnects,not_recovered,deliveries,missed,duplicates,unexpected_closes,attempt_errors,published,p50_us,p99_us,max_us";

impl Sample {
    fn csv(&self) -> String {
        let o = |v: Option<u64>| v.map_or(String::new(), |v| v.to_string());
        format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            self.minute,
            self.elapsed_s,
            o(self.gyre_rss_kib),
            o(self.gyre_fds),
            o(self.gyre_tasks),
            o(self.redis_used_memory),
            o(self.redis_rss_kib),
            self.connected,
            self.churned,
            self.reconnects,
            self.not_recovered,
            self.deliveries,
            self.missed,
            self.duplicates,
            self.unexpected_closes,
            self.attempt_errors,
            self.published,
            self.p50_us,
            self.p99_us,
            self.max_us
        )
    }
}

fn open_fds(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

fn rss_kib(pid: u32) -> Option<u64> {
    let s = stats::sample(&[pid]);
    (s.missing == 0).then_some(s.rss_kib)
}

/// The value of an unlabelled metric in a Prometheus text exposition.
fn metric_value(exposition: &str, name: &str) -> Option<u64> {
    exposition.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix(' ')?;
        rest.trim().parse::<f64>().ok().map(|v| v as u64)
    })
}

async fn fetch(url: &str) -> Result<String, String> {
    let (addr, authority) = resolve(url)?;
    let uri: hyper::Uri = url.parse().map_err(|e| format!("bad url {url}: {e}"))?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, authority)
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if !status.is_success() {
        return Err(format!("http {status}"));
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

async fn redis_used_memory(con: &mut redis::aio::MultiplexedConnection) -> Result<u64, String> {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(con)
        .await
        .map_err(|e| e.to_string())?;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| "no used_memory in INFO memory".to_string())
}

async fn take_sample(
    args: &SoakArgs,
    metrics_url: &str,
    redis: &mut Option<redis::aio::MultiplexedConnection>,
    shared: &Shared,
    t0: Instant,
) -> Sample {
    let elapsed_s = t0.elapsed().as_secs_f64();
    let tasks = match fetch(metrics_url).await {
        Ok(text) => {
            let v = metric_value(&text, "gyre_runtime_alive_tasks");
            if v.is_none() {
                shared.error("metrics: no gyre_runtime_alive_tasks");
            }
            v
        }
        Err(e) => {
            shared.error(format!("metrics: {e}"));
            None
        }
    };
    // A sample missing here is counted, not silently dropped: on a loaded machine INFO can
    // outlast the client's response timeout.
    let redis_used_memory = match redis.as_mut() {
        Some(con) => match redis_used_memory(con).await {
            Ok(v) => Some(v),
            Err(e) => {
                shared.error(format!("redis INFO memory: {e}"));
                None
            }
        },
        None => {
            shared.error("redis INFO memory: no connection");
            None
        }
    };
    let latency = {
        let mut h = shared.latency.lock().unwrap();
        let l = Latency::of(&h);
        h.reset();
        l
    };
    let n = &shared.n;
    Sample {
        minute: round3(elapsed_s / 60.0),
        elapsed_s: round3(elapsed_s),
        gyre_rss_kib: args.server_pid.and_then(rss_kib),
        gyre_fds: args.server_pid.and_then(open_fds),
        gyre_tasks: tasks,
        redis_used_memory,
        redis_rss_kib: args.redis_pid.and_then(rss_kib),
        connected: n.connected.load(Relaxed),
        churned: n.churned.load(Relaxed),
        reconnects: n.reconnects.load(Relaxed),
        not_recovered: n.not_recovered.load(Relaxed),
        deliveries: n.deliveries.load(Relaxed),
        missed: n.missed.load(Relaxed),
        duplicates: n.duplicates.load(Relaxed),
        unexpected_closes: n.unexpected_closes.load(Relaxed),
        attempt_errors: n.attempt_errors.load(Relaxed),
        published: n.published.load(Relaxed),
        p50_us: latency.p50_us,
        p99_us: latency.p99_us,
        max_us: latency.max_us,
    }
}

// --- summary -------------------------------------------------------------------------------

/// Least-squares fit of a series against time.
#[derive(Serialize, Debug, Clone, PartialEq)]
struct Trend {
    series: &'static str,
    samples: usize,
    first: f64,
    last: f64,
    min: f64,
    max: f64,
    /// Units per hour over all samples, and over the second half of the run (after warm-up).
    slope_per_hour: Option<f64>,
    slope_per_hour_second_half: Option<f64>,
    /// The slope over the run as a percentage of the mean (how much it would grow in an hour).
    slope_percent_of_mean_per_hour: Option<f64>,
}

/// Slope of y over x (least squares); None with fewer than two distinct x.
fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

fn trend(series: &'static str, samples: &[Sample], get: impl Fn(&Sample) -> Option<u64>) -> Trend {
    let points: Vec<(f64, f64)> = samples
        .iter()
        .filter_map(|s| get(s).map(|v| (s.elapsed_s / 3600.0, v as f64)))
        .collect();
    let ys = || points.iter().map(|p| p.1);
    let mean = ys().sum::<f64>() / points.len().max(1) as f64;
    let end = points.last().map_or(0.0, |p| p.0);
    let second_half: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|p| p.0 >= end / 2.0)
        .collect();
    let all = slope(&points);
    Trend {
        series,
        samples: points.len(),
        first: points.first().map_or(0.0, |p| p.1),
        last: points.last().map_or(0.0, |p| p.1),
        min: ys().fold(f64::INFINITY, f64::min),
        max: ys().fold(f64::NEG_INFINITY, f64::max),
        slope_per_hour: all.map(round3),
        slope_per_hour_second_half: slope(&second_half).map(round3),
        slope_percent_of_mean_per_hour: all
            .filter(|_| mean > 0.0)
            .map(|v| round3(v / mean * 100.0)),
    }
}

fn trends(samples: &[Sample]) -> Vec<Trend> {
    vec![
        trend("gyre_rss_kib", samples, |s| s.gyre_rss_kib),
        trend("gyre_fds", samples, |s| s.gyre_fds),
        trend("gyre_tasks", samples, |s| s.gyre_tasks),
        trend("redis_used_memory", samples, |s| s.redis_used_memory),
        trend("redis_rss_kib", samples, |s| s.redis_rss_kib),
    ]
}

#[derive(Serialize)]
struct Totals {
    connections: usize,
    initial_ready: u64,
    initial_failed: u64,
    churned: u64,
    reconnects: u64,
    recovered: u64,
    not_recovered: u64,
    deliveries: u64,
    recovered_publications: u64,
    missed: u64,
    duplicates: u64,
    unexpected_closes: u64,
    attempt_errors: u64,
    published: u64,
    publish_errors: u64,
    behind_at_end: u64,
    behind_publications: u64,
    reported_at_end: u64,
}

#[derive(Serialize)]
struct SoakResult {
    mode: &'static str,
    connections: usize,
    channels: usize,
    rate: f64,
    payload_size: usize,
    duration_s: f64,
    churn_percent_per_s: f64,
    away_ms: u64,
    connect_s: f64,
    samples: Vec<Sample>,
    trends: Vec<Trend>,
    totals: Totals,
    errors: BTreeMap<String, u64>,
}

fn markdown(r: &SoakResult) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| minute | gyre RSS (MiB) | gyre fds | gyre tasks | Redis used_memory (MiB) | Redis RSS (MiB) | connected | reconnects | deliveries | missed | p99 (ms) |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
    let mib =
        |v: Option<u64>, div: f64| v.map_or("–".into(), |v| format!("{:.1}", v as f64 / div));
    let num = |v: Option<u64>| v.map_or("–".into(), |v| v.to_string());
    let step = if r.samples.len() > 16 { 5 } else { 1 };
    for (k, s) in r.samples.iter().enumerate() {
        if k % step != 0 && k + 1 != r.samples.len() {
            continue;
        }
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} |",
            (s.minute * 10.0).round() / 10.0,
            mib(s.gyre_rss_kib, 1024.0),
            num(s.gyre_fds),
            num(s.gyre_tasks),
            mib(s.redis_used_memory, 1048576.0),
            mib(s.redis_rss_kib, 1024.0),
            s.connected,
            s.reconnects,
            s.deliveries,
            s.missed,
            s.p99_us as f64 / 1000.0
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| series | first | last | min | max | slope/hour (all) | slope/hour (2nd half) | % of mean/hour |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    let opt = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.1}"));
    for t in &r.trends {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            t.series,
            t.first,
            t.last,
            t.min,
            t.max,
            opt(t.slope_per_hour),
            opt(t.slope_per_hour_second_half),
            opt(t.slope_percent_of_mean_per_hour)
        );
    }
    let t = &r.totals;
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Totals: {} of {} connected initially ({} failed) in {:.1} s; {} churn drops, {} reconnects ({} recovered, {} `recovered: false`), {} unexpected closes, {} failed attempts (retried); {} published ({} errors); {} live deliveries + {} recovered; missed {}, duplicates {}; at the end {} of {} connected clients behind by {} publications in total.",
        t.initial_ready,
        t.connections,
        t.initial_failed,
        r.connect_s,
        t.churned,
        t.reconnects,
        t.recovered,
        t.not_recovered,
        t.unexpected_closes,
        t.attempt_errors,
        t.published,
        t.publish_errors,
        t.deliveries,
        t.recovered_publications,
        t.missed,
        t.duplicates,
        t.behind_at_end,
        t.reported_at_end,
        t.behind_publications
    );
    if !r.errors.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "Errors: {:?}", r.errors);
    }
    out
}

pub fn run(mut args: SoakArgs) -> Result<(), Box<dyn std::error::Error>> {
    args.threads = args.threads.max(1);
    args.channels = args.channels.max(1);
    args.connections = args.connections.max(1);
    crate::run_measurement(args.threads, run_async(args.clone()), args.out.as_deref())
}

async fn run_async(args: SoakArgs) -> Result<SoakResult, Box<dyn std::error::Error>> {
    let (addr, _) = resolve(&args.url)?;
    let base = args.url.trim_end_matches('/');
    let ws_url = format!(
        "{}/connection/websocket",
        base.replacen("https://", "wss://", 1)
            .replacen("http://", "ws://", 1)
    );
    let metrics_url = args
        .metrics_url
        .clone()
        .unwrap_or_else(|| format!("{base}/metrics"));
    let cfg = Arc::new(Cfg {
        addr,
        ws_url,
        prefix: args.channel_prefix.clone(),
        channels: args.channels,
        connections: args.connections,
        churn_period: (args.churn_percent > 0.0)
            .then(|| Duration::from_secs_f64(100.0 / args.churn_percent)),
        away: Duration::from_millis(args.away_ms),
        attempt_timeout: Duration::from_secs_f64(args.attempt_timeout),
        backoff: Backoff {
            min_ms: 500,
            max_ms: 5000,
            honour_retry_after: true,
        },
    });
    let shared = Arc::new(Shared {
        n: Counters::default(),
        top: (0..args.channels).map(|_| AtomicU64::new(0)).collect(),
        latency: Mutex::new(stats::new_histogram()),
        errors: Mutex::new(BTreeMap::new()),
    });
    let router = Router::new(
        Topology::from_args(&args.redis_url, None, None, ""),
        Duration::from_secs(5),
    )
    .await
    .map_err(|e| format!("redis: {e}"))?;
    // Every channel gets a stream (and an epoch) before anyone subscribes.
    let first: Vec<(String, Vec<u8>)> = (0..args.channels)
        .map(|c| {
            (
                cfg.channel(c),
                payload::make(args.payload_size, payload::now_ns()),
            )
        })
        .collect();
    for (c, r) in router.publish_batch(&first).await.into_iter().enumerate() {
        let (offset, _) = r.map_err(|e| format!("first publish: {e}"))?;
        if offset == 0 {
            return Err(format!(
                "{}: GYRE.PUBLISH returned no offset (the namespace needs history)",
                cfg.channel(c)
            )
            .into());
        }
        shared.top[c].fetch_max(offset, Relaxed);
    }
    let mut redis_info = match redis::Client::open(args.redis_url.as_str()) {
        Ok(c) => c.get_multiplexed_async_connection().await.ok(),
        Err(_) => None,
    };
    let mut csv = std::fs::File::create(&args.csv)?;
    writeln!(csv, "{CSV_HEADER}")?;

    let (ctl_tx, ctl) = watch::channel(STAGE_CONNECT);
    let t0_cell = Arc::new(std::sync::OnceLock::new());
    let sem = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let connect_started = Instant::now();
    for i in 0..args.connections {
        tokio::spawn(client(
            i,
            cfg.clone(),
            shared.clone(),
            sem.clone(),
            ctl.clone(),
            t0_cell.clone(),
        ));
    }
    loop {
        let done = shared.n.initial_ready.load(Relaxed) + shared.n.initial_failed.load(Relaxed);
        if done >= args.connections as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connect_s = round3(connect_started.elapsed().as_secs_f64());
    eprintln!(
        "soak: {} of {} connected in {connect_s} s",
        shared.n.initial_ready.load(Relaxed),
        args.connections
    );

    let t0 = Instant::now();
    let _ = t0_cell.set(t0);
    ctl_tx.send_replace(STAGE_SOAK);
    let publishing = tokio::spawn(publisher(
        router,
        cfg.clone(),
        shared.clone(),
        args.rate.max(0.001),
        args.payload_size,
        ctl.clone(),
    ));
    let mut samples = Vec::new();
    let interval = Duration::from_secs_f64(args.sample_interval.max(1.0));
    let end = t0 + Duration::from_secs_f64(args.duration);
    let mut next = t0;
    loop {
        tokio::time::sleep_until(next.min(end)).await;
        let s = take_sample(&args, &metrics_url, &mut redis_info, &shared, t0).await;
        writeln!(csv, "{}", s.csv())?;
        csv.flush()?;
        eprintln!(
            "soak: minute {:.1}: gyre RSS {:?} KiB, fds {:?}, tasks {:?}, Redis used_memory {:?}; connected {}, reconnects {}, deliveries {}, missed {}, p99 {} µs",
            s.minute,
            s.gyre_rss_kib,
            s.gyre_fds,
            s.gyre_tasks,
            s.redis_used_memory,
            s.connected,
            s.reconnects,
            s.deliveries,
            s.missed,
            s.p99_us
        );
        samples.push(s);
        if Instant::now() >= end {
            break;
        }
        next += interval;
    }

    // Publishing stops; the last publications arrive; then every connected client compares.
    ctl_tx.send_replace(STAGE_DRAIN);
    let _ = publishing.await;
    tokio::time::sleep(Duration::from_secs_f64(args.drain)).await;
    let connected_at_end = shared.n.connected.load(Relaxed).max(0) as u64;
    ctl_tx.send_replace(STAGE_END);
    let wait_until = Instant::now() + Duration::from_secs(30);
    while shared.n.reported_at_end.load(Relaxed) < connected_at_end && Instant::now() < wait_until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let n = &shared.n;
    let totals = Totals {
        connections: args.connections,
        initial_ready: n.initial_ready.load(Relaxed),
        initial_failed: n.initial_failed.load(Relaxed),
        churned: n.churned.load(Relaxed),
        reconnects: n.reconnects.load(Relaxed),
        recovered: n.recovered.load(Relaxed),
        not_recovered: n.not_recovered.load(Relaxed),
        deliveries: n.deliveries.load(Relaxed),
        recovered_publications: n.recovered_publications.load(Relaxed),
        missed: n.missed.load(Relaxed),
        duplicates: n.duplicates.load(Relaxed),
        unexpected_closes: n.unexpected_closes.load(Relaxed),
        attempt_errors: n.attempt_errors.load(Relaxed),
        published: n.published.load(Relaxed),
        publish_errors: n.publish_errors.load(Relaxed),
        behind_at_end: n.behind_at_end.load(Relaxed),
        behind_publications: n.behind_publications.load(Relaxed),
        reported_at_end: n.reported_at_end.load(Relaxed),
    };
    let result = SoakResult {
        mode: "soak",
        connections: args.connections,
        channels: args.channels,
        rate: args.rate,
        payload_size: args.payload_size,
        duration_s: args.duration,
        churn_percent_per_s: args.churn_percent,
        away_ms: args.away_ms,
        connect_s,
        trends: trends(&samples),
        samples,
        totals,
        errors: shared.errors.lock().unwrap().clone(),
    };
    let md = markdown(&result);
    eprint!("{md}");
    if let Some(path) = &args.report {
        std::fs::write(path, md)?;
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_line_and_of_a_flat_series() {
        let line: Vec<(f64, f64)> = (0..10).map(|x| (x as f64, 3.0 * x as f64 + 7.0)).collect();
        assert!((slope(&line).unwrap() - 3.0).abs() < 1e-9);
        let flat: Vec<(f64, f64)> = (0..10).map(|x| (x as f64, 5.0)).collect();
        assert_eq!(slope(&flat), Some(0.0));
        assert_eq!(slope(&[(1.0, 2.0)]), None);
        assert_eq!(slope(&[(1.0, 2.0), (1.0, 3.0)]), None);
    }

    #[test]
    fn metric_lines_are_found_by_exact_name() {
        let text = "# TYPE gyre_runtime_alive_tasks gauge\ngyre_runtime_alive_tasks_x 1\ngyre_runtime_alive_tasks 1234\n";
        assert_eq!(metric_value(text, "gyre_runtime_alive_tasks"), Some(1234));
        assert_eq!(metric_value(text, "gyre_node_num_clients"), None);
    }

    #[test]
    fn push_offsets_skip_replies_and_pings() {
        let frame = "{}\n{\"push\":{\"channel\":\"c\",\"pub\":{\"data\":{\"t\":1},\"offset\":7}}}\n{\"id\":3,\"rpc\":{}}\n{\"push\":{\"channel\":\"c\",\"pub\":{\"data\":{},\"offset\":8}}}";
        assert_eq!(push_offsets(frame), [7, 8]);
    }

    #[test]
    fn drops_are_spread_over_the_period() {
        let cfg = Cfg {
            addr: "127.0.0.1:1".parse().unwrap(),
            ws_url: String::new(),
            prefix: String::new(),
            channels: 1,
            connections: 100,
            churn_period: Some(Duration::from_secs(100)),
            away: Duration::ZERO,
            attempt_timeout: Duration::ZERO,
            backoff: Backoff {
                min_ms: 0,
                max_ms: 0,
                honour_retry_after: false,
            },
        };
        let t0 = Instant::now();
        assert_eq!(drop_time(&cfg, t0, 0, 0), Some(t0));
        assert_eq!(
            drop_time(&cfg, t0, 50, 0),
            Some(t0 + Duration::from_secs(50))
        );
        assert_eq!(
            drop_time(&cfg, t0, 50, 2),
            Some(t0 + Duration::from_secs(250))
        );
        let no_churn = Cfg {
            churn_period: None,
            ..cfg
        };
        assert_eq!(drop_time(&no_churn, t0, 50, 0), None);
    }
}
