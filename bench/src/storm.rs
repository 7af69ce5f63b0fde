//! `gyre-bench storm`: N clients reconnecting at once with recovery, and a live probe meanwhile.
//!
//! 1. Publishes one publication per channel (so every stream has an epoch), connects N gyre
//!    WebSocket JSON clients over C channels of a namespace with history, each subscribing with
//!    `recoverable: true` and keeping the `offset` + `epoch` of its subscribe reply.
//! 2. Starts the live probe (its own thread and runtime, so the storm work of this tool does not
//!    delay it): one more connection subscribed to a probe channel and a publication via
//!    `GYRE.PUBLISH` every `--probe-interval-ms` carrying its send time; latency = receive time −
//!    send time.
//! 3. Closes all N connections from the client side and publishes P publications per channel.
//! 4. Reconnects all N at once: connect + subscribe with `recover: true`, `offset`, `epoch`. An
//!    HTTP 503 (`client.handshake_rate_limit`) or any failure before the subscribe reply is
//!    retried after a jittered exponential backoff like the SDKs (uniform in a window that starts
//!    at `--backoff-min-ms`, doubles per retry up to `--backoff-max-ms` and is at least the
//!    server's `Retry-After`). A client is done when its subscribe reply says `recovered: true`
//!    with exactly the P missed publications, offsets contiguous after the saved one; anything
//!    else is a failed recovery, counted by kind.
//! 5. Reports (JSON on stdout or `--out`, progress on stderr): time from the start of the
//!    reconnect to the last client recovered, the recovered-over-time curve, 503s, errors, CPU of
//!    the server / Redis / this tool, and the probe's latency before, during and after the storm.
//!
//! `gyre-bench storm-report <dir>` prints the Markdown table of the storm results in a directory.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::floor::round3;
use crate::load::{close_reason, json_has_ping, resolve, ws_config};
use crate::payload;
use crate::report::{fmt, num};
use crate::stats::{self, Latency};

#[derive(clap::Args, Debug, Clone)]
pub struct StormArgs {
    /// Base URL of gyre (http://host:port); the WebSocket URL is <url>/connection/websocket.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// Redis URL for GYRE.PUBLISH (the missed publications and the probe).
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// Clients that disconnect and reconnect at once.
    #[arg(long, default_value_t = 10_000)]
    pub clients: usize,
    /// Channels; client i subscribes to channel i % channels.
    #[arg(long, default_value_t = 10)]
    pub channels: usize,
    /// Channel name prefix (the namespace needs history and recovery).
    #[arg(long, default_value = "bench:storm")]
    pub channel_prefix: String,
    /// The live probe's channel.
    #[arg(long, default_value = "bench:probe")]
    pub probe_channel: String,
    /// Publications per channel published while the clients are away (≤ the history size).
    #[arg(long, default_value_t = 10)]
    pub publications: u64,
    /// Payload size in bytes of every publication.
    #[arg(long, default_value_t = 128)]
    pub payload_size: usize,
    /// Milliseconds between two probe publications.
    #[arg(long, default_value_t = 10.0)]
    pub probe_interval_ms: f64,
    /// Seconds of probing with all clients connected before the drop.
    #[arg(long, default_value_t = 2.0)]
    pub before: f64,
    /// Seconds of probing after the last client is done.
    #[arg(long, default_value_t = 2.0)]
    pub after: f64,
    /// Seconds of quiet after the initial connect and after the drop.
    #[arg(long, default_value_t = 1.0)]
    pub settle: f64,
    /// Tokio worker threads for the clients (the probe has its own thread).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Initial connection attempts in flight at once.
    #[arg(long, default_value_t = 200)]
    pub connect_concurrency: usize,
    /// Reconnect attempts in flight at once; 0 = all at once.
    #[arg(long, default_value_t = 0)]
    pub reconnect_concurrency: usize,
    /// First backoff window in ms after a refused attempt (uniform 0..window, doubling per retry).
    #[arg(long, default_value_t = 1000)]
    pub backoff_min_ms: u64,
    /// Largest backoff window in ms.
    #[arg(long, default_value_t = 10_000)]
    pub backoff_max_ms: u64,
    /// Ignore the server's Retry-After (by default the window is at least Retry-After).
    #[arg(long)]
    pub ignore_retry_after: bool,
    /// Seconds one attempt (TCP + WebSocket handshake + connect + subscribe) may take.
    #[arg(long, default_value_t = 10.0)]
    pub attempt_timeout: f64,
    /// Seconds after the start of the reconnect when unfinished clients give up.
    #[arg(long, default_value_t = 60.0)]
    pub deadline: f64,
    /// Milliseconds between two points of the recovered-over-time curve.
    #[arg(long, default_value_t = 250)]
    pub step_ms: u64,
    /// Server process(es) to account CPU and RSS for.
    #[arg(long)]
    pub server_pid: Vec<u32>,
    /// Redis process(es), accounted separately.
    #[arg(long)]
    pub redis_pid: Vec<u32>,
    /// Free-form label stored in the result.
    #[arg(long, default_value = "gyre")]
    pub label: String,
    /// Free-form tag stored in the result (e.g. the admission setting).
    #[arg(long, default_value = "")]
    pub tag: String,
    /// Write the JSON result here instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

// --- backoff -------------------------------------------------------------------------------

/// splitmix64: enough randomness for jitter, no dependency.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in 0..=max.
    pub(crate) fn up_to(&mut self, max: u64) -> u64 {
        if max == u64::MAX {
            self.next_u64()
        } else {
            self.next_u64() % (max + 1)
        }
    }
}

/// The SDKs' reconnect schedule: full jitter over a window that doubles per retry.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Backoff {
    pub min_ms: u64,
    pub max_ms: u64,
    pub honour_retry_after: bool,
}

impl Backoff {
    /// The window of retry number `retry` (0 = first retry): min · 2^retry capped at max, and at
    /// least the server's Retry-After when honoured (a hint that may exceed the cap).
    pub(crate) fn window_ms(&self, retry: u32, retry_after_ms: Option<u64>) -> u64 {
        let doubled = self
            .min_ms
            .saturating_mul(1u64 << retry.min(40))
            .min(self.max_ms);
        match retry_after_ms {
            Some(ra) if self.honour_retry_after => doubled.max(ra),
            _ => doubled,
        }
    }

    /// How long to wait before retry number `retry`: uniform in 0..=window.
    pub(crate) fn delay(&self, retry: u32, retry_after_ms: Option<u64>, rng: &mut Rng) -> Duration {
        Duration::from_millis(rng.up_to(self.window_ms(retry, retry_after_ms)))
    }
}

/// `Retry-After` in milliseconds: delay-seconds only (gyre sends `1`); an HTTP date is ignored.
pub(crate) fn parse_retry_after(value: Option<&str>) -> Option<u64> {
    value?.trim().parse::<u64>().ok().map(|s| s * 1000)
}

// --- recovery check ------------------------------------------------------------------------

/// Why a subscribe reply is not a full recovery.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RecoveryFailure {
    /// The reply is an error (code, message).
    Error(String),
    /// `recovered` is not true.
    NotRecovered,
    /// recovered, but not exactly the expected number of publications.
    WrongCount { got: usize },
    /// The publication offsets do not run saved+1, saved+2, … .
    NotContiguous,
}

impl RecoveryFailure {
    fn key(&self) -> String {
        match self {
            Self::Error(e) => format!("subscribe error {e}"),
            Self::NotRecovered => "not recovered".into(),
            Self::WrongCount { got } => format!("wrong count ({got} publications)"),
            Self::NotContiguous => "offsets not contiguous".into(),
        }
    }
}

/// Checks one subscribe reply line (`{"id":…,"subscribe":{…}}` or `{"id":…,"error":{…}}`) of a
/// client that saved `saved_offset` and missed `expected` publications.
pub(crate) fn check_recovery(
    reply: &Value,
    saved_offset: u64,
    expected: u64,
) -> Result<(), RecoveryFailure> {
    if let Some(err) = reply.get("error") {
        return Err(RecoveryFailure::Error(format!(
            "{} {}",
            err["code"],
            err["message"].as_str().unwrap_or("")
        )));
    }
    let sub = &reply["subscribe"];
    if sub["recovered"].as_bool() != Some(true) {
        return Err(RecoveryFailure::NotRecovered);
    }
    let pubs = sub["publications"].as_array().map_or(&[][..], |a| a);
    if pubs.len() as u64 != expected {
        return Err(RecoveryFailure::WrongCount { got: pubs.len() });
    }
    for (k, p) in pubs.iter().enumerate() {
        if p["offset"].as_u64() != Some(saved_offset + 1 + k as u64) {
            return Err(RecoveryFailure::NotContiguous);
        }
    }
    Ok(())
}

/// The stream position of a subscribe reply: (offset, epoch); a missing offset is 0.
pub(crate) fn position(reply: &Value) -> (u64, String) {
    let sub = &reply["subscribe"];
    (
        sub["offset"].as_u64().unwrap_or(0),
        sub["epoch"].as_str().unwrap_or("").to_string(),
    )
}

// --- clients -------------------------------------------------------------------------------

pub(crate) type Ws = WebSocketStream<TcpStream>;

const STAGE_CONNECT: u8 = 0;
const STAGE_DROP: u8 = 2;
const STAGE_STORM: u8 = 3;
const STAGE_END: u8 = 4;

struct Cfg {
    addr: SocketAddr,
    ws_url: String,
    prefix: String,
    channels: usize,
    publications: u64,
    backoff: Backoff,
    attempt_timeout: Duration,
    deadline: Duration,
}

impl Cfg {
    fn channel(&self, i: usize) -> String {
        format!("{}{}", self.prefix, i % self.channels)
    }
}

#[derive(Default)]
struct Shared {
    ready: AtomicUsize,
    initial_failed: AtomicUsize,
    initial_refused: AtomicU64,
    lost_before_drop: AtomicUsize,
    closed: AtomicUsize,
    reconnecting: AtomicUsize,
    recovered: AtomicUsize,
    failed: AtomicUsize,
    refused_503: AtomicU64,
    transient: AtomicU64,
    attempts: AtomicU64,
    storm_t0: OnceLock<Instant>,
    /// Microseconds from the start of the reconnect to each client's full recovery.
    done_us: Mutex<Vec<u64>>,
    /// Attempts a recovered client needed → clients.
    attempts_hist: Mutex<BTreeMap<u32, u64>>,
    failures: Mutex<BTreeMap<String, u64>>,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Shared {
    fn error(&self, map: &Mutex<BTreeMap<String, u64>>, what: impl Into<String>) {
        crate::stats::count_error(map, what);
    }
}

/// Why an attempt did not reach a subscribe reply.
pub(crate) enum AttemptError {
    /// HTTP 503 on the upgrade, with Retry-After in ms.
    Refused(Option<u64>),
    Transient(String),
}

/// Sends connect + subscribe (with recovery when `recover` holds a position) and returns the
/// open connection and the subscribe reply line.
pub(crate) async fn attempt(
    addr: SocketAddr,
    ws_url: &str,
    channel: &str,
    recover: Option<&(u64, String)>,
) -> Result<(Ws, Value), AttemptError> {
    use AttemptError::Transient;
    let req = ws_url
        .into_client_request()
        .map_err(|e| Transient(format!("request: {e}")))?;
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| Transient(format!("tcp connect: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let mut ws =
        match tokio_tungstenite::client_async_with_config(req, tcp, Some(ws_config())).await {
            Ok((ws, _)) => ws,
            Err(tungstenite::Error::Http(resp)) => {
                if resp.status() == 503 {
                    let ra = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok());
                    return Err(AttemptError::Refused(parse_retry_after(ra)));
                }
                return Err(Transient(format!("http {}", resp.status())));
            }
            Err(e) => return Err(Transient(format!("ws handshake: {e}"))),
        };
    let mut sub = json!({"channel": channel, "recoverable": true});
    if let Some((offset, epoch)) = recover {
        sub["recover"] = json!(true);
        sub["offset"] = json!(offset);
        sub["epoch"] = json!(epoch);
    }
    let frame = format!(
        "{}\n{}",
        json!({"id": 1, "connect": {}}),
        json!({"id": 2, "subscribe": sub})
    );
    ws.send(Message::text(frame))
        .await
        .map_err(|e| Transient(format!("send: {e}")))?;
    loop {
        let msg = ws
            .next()
            .await
            .ok_or_else(|| Transient("eof before subscribe reply".into()))?
            .map_err(|e| Transient(format!("read: {e}")))?;
        match msg {
            Message::Text(t) => {
                for line in t.as_str().split('\n') {
                    if line == "{}" {
                        ws.send(Message::text("{}"))
                            .await
                            .map_err(|e| Transient(format!("pong: {e}")))?;
                        continue;
                    }
                    let v: Value = serde_json::from_str(line)
                        .map_err(|e| Transient(format!("bad reply: {e}")))?;
                    if v["id"] == 1 {
                        if let Some(err) = v.get("error") {
                            return Err(Transient(format!("connect error {err}")));
                        }
                    } else if v["id"] == 2 {
                        return Ok((ws, v));
                    } else if v.get("disconnect").is_some() {
                        return Err(Transient(format!("disconnect {}", v["disconnect"])));
                    }
                }
            }
            Message::Close(f) => return Err(Transient(close_reason(f))),
            _ => {}
        }
    }
}

/// Keeps the connection alive (answers pings) until the stage reaches `until`.
async fn hold(ws: &mut Ws, ctl: &mut watch::Receiver<u8>, until: u8) -> Result<(), String> {
    loop {
        if *ctl.borrow_and_update() >= until {
            return Ok(());
        }
        tokio::select! {
            changed = ctl.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
            }
            msg = ws.next() => match msg {
                None => return Err("eof".into()),
                Some(Err(e)) => return Err(format!("read: {e}")),
                Some(Ok(Message::Text(t))) => {
                    if json_has_ping(t.as_bytes()) {
                        ws.send(Message::text("{}")).await.map_err(|e| format!("pong: {e}"))?;
                    }
                }
                Some(Ok(Message::Close(f))) => return Err(close_reason(f)),
                Some(Ok(_)) => {}
            }
        }
    }
}

async fn client(
    i: usize,
    cfg: Arc<Cfg>,
    shared: Arc<Shared>,
    connect_sem: Arc<Semaphore>,
    storm_sem: Option<Arc<Semaphore>>,
    mut ctl: watch::Receiver<u8>,
) {
    let channel = cfg.channel(i);
    // 1. Initial connect, remembering the stream position.
    // A handshake rate limit refuses some of these too: retry them like the storm does.
    let mut rng = Rng::new(payload::now_ns() ^ (i as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let mut refused: u32 = 0;
    let opened = loop {
        let permit = connect_sem.clone().acquire_owned().await;
        let opened = tokio::time::timeout(
            cfg.attempt_timeout,
            attempt(cfg.addr, &cfg.ws_url, &channel, None),
        )
        .await;
        drop(permit);
        match opened {
            Ok(Err(AttemptError::Refused(ra))) if refused < 20 => {
                shared.initial_refused.fetch_add(1, Relaxed);
                tokio::time::sleep(cfg.backoff.delay(refused, ra, &mut rng)).await;
                refused += 1;
            }
            other => break other,
        }
    };
    let (mut ws, pos) = match opened {
        Ok(Ok((ws, reply))) => {
            if let Some(err) = reply.get("error") {
                shared.initial_failed.fetch_add(1, Relaxed);
                shared.error(&shared.errors, format!("initial subscribe error {err}"));
                return;
            }
            if reply["subscribe"]["recoverable"].as_bool() != Some(true) {
                shared.error(
                    &shared.errors,
                    "initial subscribe not recoverable (namespace needs history + recovery)",
                );
            }
            let pos = position(&reply);
            (ws, pos)
        }
        Ok(Err(AttemptError::Refused(_))) => {
            shared.initial_failed.fetch_add(1, Relaxed);
            shared.error(&shared.errors, "initial connect: 503");
            return;
        }
        Ok(Err(AttemptError::Transient(e))) => {
            shared.initial_failed.fetch_add(1, Relaxed);
            shared.error(&shared.errors, format!("initial connect: {e}"));
            return;
        }
        Err(_) => {
            shared.initial_failed.fetch_add(1, Relaxed);
            shared.error(&shared.errors, "initial connect: timeout");
            return;
        }
    };
    shared.ready.fetch_add(1, Relaxed);

    // 2. Hold until the drop, then close from the client side.
    if let Err(e) = hold(&mut ws, &mut ctl, STAGE_DROP).await {
        shared.lost_before_drop.fetch_add(1, Relaxed);
        shared.error(&shared.errors, format!("lost before the drop: {e}"));
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = ws.close(None).await;
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    drop(ws);
    shared.closed.fetch_add(1, Relaxed);

    // 3. Wait for the storm, then reconnect with recovery until done.
    while *ctl.borrow_and_update() < STAGE_STORM {
        if ctl.changed().await.is_err() {
            return;
        }
    }
    shared.reconnecting.fetch_add(1, Relaxed);
    let t0 = *shared
        .storm_t0
        .get()
        .expect("storm start set before the stage");
    let mut rng = Rng::new(payload::now_ns() ^ (i as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let mut tries: u32 = 0;
    let mut ws = loop {
        if t0.elapsed() > cfg.deadline {
            shared.failed.fetch_add(1, Relaxed);
            shared.error(&shared.failures, "gave up (deadline)");
            return;
        }
        let permit = match &storm_sem {
            Some(s) => Some(s.clone().acquire_owned().await),
            None => None,
        };
        tries += 1;
        shared.attempts.fetch_add(1, Relaxed);
        let result = tokio::time::timeout(
            cfg.attempt_timeout,
            attempt(cfg.addr, &cfg.ws_url, &channel, Some(&pos)),
        )
        .await;
        drop(permit);
        let retry_after = match result {
            Ok(Ok((ws, reply))) => match check_recovery(&reply, pos.0, cfg.publications) {
                Ok(()) => {
                    let us = t0.elapsed().as_micros() as u64;
                    shared.done_us.lock().unwrap().push(us);
                    *shared
                        .attempts_hist
                        .lock()
                        .unwrap()
                        .entry(tries)
                        .or_default() += 1;
                    shared.recovered.fetch_add(1, Relaxed);
                    break ws;
                }
                Err(f) => {
                    shared.failed.fetch_add(1, Relaxed);
                    shared.error(&shared.failures, f.key());
                    break ws;
                }
            },
            Ok(Err(AttemptError::Refused(ra))) => {
                shared.refused_503.fetch_add(1, Relaxed);
                ra
            }
            Ok(Err(AttemptError::Transient(e))) => {
                shared.transient.fetch_add(1, Relaxed);
                shared.error(&shared.errors, format!("reconnect: {e}"));
                None
            }
            Err(_) => {
                shared.transient.fetch_add(1, Relaxed);
                shared.error(&shared.errors, "reconnect: attempt timeout");
                None
            }
        };
        tokio::time::sleep(cfg.backoff.delay(tries - 1, retry_after, &mut rng)).await;
    };
    // 4. Stay connected (the "after" phase has every client back).
    if let Err(e) = hold(&mut ws, &mut ctl, STAGE_END).await {
        shared.error(&shared.errors, format!("lost after recovery: {e}"));
    }
}

// --- the probe -----------------------------------------------------------------------------

#[derive(Default)]
struct ProbeShared {
    ready: AtomicBool,
    stop: AtomicBool,
    /// Send times (ns) of the probe publications.
    sent: Mutex<Vec<u64>>,
    /// (send ns, receive ns) of every probe delivery.
    received: Mutex<Vec<(u64, u64)>>,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl ProbeShared {
    fn error(&self, what: String) {
        *self.errors.lock().unwrap().entry(what).or_default() += 1;
    }
}

async fn probe_main(cfg: Arc<Cfg>, args: StormArgs, probe: Arc<ProbeShared>) {
    let (mut ws, _) = match attempt(cfg.addr, &cfg.ws_url, &args.probe_channel, None).await {
        Ok(x) => x,
        Err(AttemptError::Refused(_)) => return probe.error("probe connect: 503".into()),
        Err(AttemptError::Transient(e)) => return probe.error(format!("probe connect: {e}")),
    };
    let con = match redis::Client::open(args.redis_url.as_str()) {
        Ok(c) => match c.get_multiplexed_async_connection().await {
            Ok(con) => con,
            Err(e) => return probe.error(format!("probe redis: {e}")),
        },
        Err(e) => return probe.error(format!("probe redis: {e}")),
    };
    let rx = probe.clone();
    tokio::spawn(async move {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let now = payload::now_ns();
                    let mut got = Vec::new();
                    payload::scan(t.as_bytes(), |sent| got.push((sent, now)));
                    rx.received.lock().unwrap().extend(got);
                    if json_has_ping(t.as_bytes()) && ws.send(Message::text("{}")).await.is_err() {
                        rx.error("probe pong failed".into());
                        return;
                    }
                }
                Some(Ok(Message::Close(f))) => {
                    return rx.error(format!("probe {}", close_reason(f)));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return rx.error(format!("probe read: {e}")),
                None => return rx.error("probe eof".into()),
            }
        }
    });
    probe.ready.store(true, Relaxed);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(
        args.probe_interval_ms.max(0.1) / 1e3,
    ));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !probe.stop.load(Relaxed) {
        tick.tick().await;
        let t = payload::now_ns();
        probe.sent.lock().unwrap().push(t);
        // One task per publication: a slow Redis must not delay the next send time.
        let mut con = con.clone();
        let data = payload::make(args.payload_size, t);
        let channel = args.probe_channel.clone();
        let p = probe.clone();
        tokio::spawn(async move {
            let r: redis::RedisResult<redis::Value> = redis::cmd("GYRE.PUBLISH")
                .arg(&channel)
                .arg(data)
                .query_async(&mut con)
                .await;
            if let Err(e) = r {
                p.error(format!("probe publish: {e}"));
            }
        });
    }
    // Let the last deliveries arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
}

#[derive(Serialize, Default, Clone)]
pub struct ProbePhase {
    pub seconds: f64,
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    pub latency: Latency,
}

fn probe_phase(sent: &[u64], received: &[(u64, u64)], from: u64, to: u64) -> ProbePhase {
    let got: HashSet<u64> = received.iter().map(|&(s, _)| s).collect();
    let in_phase = |t: u64| t >= from && t < to;
    let sent_n = sent.iter().filter(|&&t| in_phase(t)).count() as u64;
    let lost = sent
        .iter()
        .filter(|&&t| in_phase(t) && !got.contains(&t))
        .count() as u64;
    let mut h = stats::new_histogram();
    let mut n = 0;
    for &(s, r) in received.iter().filter(|(s, _)| in_phase(*s)) {
        stats::record(&mut h, r.saturating_sub(s) / 1000);
        n += 1;
    }
    ProbePhase {
        seconds: round3(to.saturating_sub(from) as f64 / 1e9),
        sent: sent_n,
        received: n,
        lost,
        latency: Latency::of(&h),
    }
}

// --- kernel counters -----------------------------------------------------------------------

/// The TcpExt counters that show a full accept queue (SYNs dropped and retransmitted a second
/// later): system-wide, from /proc/net/netstat.
const TCP_COUNTERS: [&str; 5] = [
    "ListenOverflows",
    "ListenDrops",
    "TCPSynRetrans",
    "SyncookiesSent",
    "TCPTimeouts",
];

fn parse_tcp_ext(netstat: &str) -> BTreeMap<String, u64> {
    let mut lines = netstat.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(keys), Some(values)) = (lines.next(), lines.next()) else {
        return BTreeMap::new();
    };
    keys.split_whitespace()
        .zip(values.split_whitespace())
        .filter(|(k, _)| TCP_COUNTERS.contains(k))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect()
}

fn tcp_ext() -> BTreeMap<String, u64> {
    std::fs::read_to_string("/proc/net/netstat")
        .map(|t| parse_tcp_ext(&t))
        .unwrap_or_default()
}

fn tcp_delta(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v.saturating_sub(*before.get(k).unwrap_or(&0))))
        .collect()
}

// --- the run -------------------------------------------------------------------------------

#[derive(Serialize)]
struct Initial {
    requested: usize,
    ready: usize,
    failed: usize,
    /// 503s during the initial connect (retried).
    refused_503: u64,
    connect_s: f64,
}

#[derive(Serialize, Clone)]
struct CurvePoint {
    t_ms: u64,
    recovered: usize,
    failed: usize,
    refused_503: u64,
    transient_errors: u64,
    server_cpu_percent: f64,
    redis_cpu_percent: f64,
    tool_cpu_percent: f64,
    /// Largest probe latency among the probe publications sent in this step.
    probe_max_ms: Option<f64>,
}

#[derive(Serialize)]
struct Storm {
    reconnecting: usize,
    recovered: usize,
    failed: usize,
    failures: BTreeMap<String, u64>,
    /// From the start of the reconnect to the last client fully recovered; null unless all did.
    full_recovery_s: Option<f64>,
    /// From the start of the reconnect to the last client done (recovered or failed).
    last_done_s: f64,
    recovery_p50_s: Option<f64>,
    recovery_p90_s: Option<f64>,
    recovery_p99_s: Option<f64>,
    attempts: u64,
    refused_503: u64,
    transient_errors: u64,
    /// Attempts a recovered client needed → clients.
    attempts_per_client: BTreeMap<u32, u64>,
    server_cpu_s: f64,
    server_cpu_percent: f64,
    server_rss_before_kib: u64,
    server_rss_after_kib: u64,
    redis_cpu_s: f64,
    redis_cpu_percent: f64,
    tool_cpu_s: f64,
    tool_cpu_percent: f64,
    /// System-wide TcpExt counters over the storm (a full accept queue drops SYNs: the client
    /// retransmits after 1 s).
    tcp: BTreeMap<String, u64>,
}

#[derive(Serialize)]
struct Probe {
    interval_ms: f64,
    /// All clients connected, idle.
    before: ProbePhase,
    /// Clients closing, missed publications going out.
    drop: ProbePhase,
    /// From the start of the reconnect to the last client done.
    during: ProbePhase,
    /// All clients back.
    after: ProbePhase,
    errors: BTreeMap<String, u64>,
}

#[derive(Serialize)]
struct StormResult {
    mode: &'static str,
    label: String,
    tag: String,
    url: String,
    clients: usize,
    channels: usize,
    publications: u64,
    payload_size: usize,
    threads: usize,
    reconnect_concurrency: usize,
    backoff_min_ms: u64,
    backoff_max_ms: u64,
    honour_retry_after: bool,
    initial: Initial,
    storm: Storm,
    curve: Vec<CurvePoint>,
    probe: Probe,
    errors: BTreeMap<String, u64>,
}

pub fn run(mut args: StormArgs) -> Result<(), Box<dyn std::error::Error>> {
    args.threads = args.threads.max(1);
    args.channels = args.channels.max(1);
    args.step_ms = args.step_ms.max(10);
    crate::run_measurement(args.threads, run_async(args.clone()), args.out.as_deref())
}

async fn publish_missed(
    con: &mut redis::aio::MultiplexedConnection,
    cfg: &Cfg,
    per_channel: u64,
    payload_size: usize,
) -> Result<(), String> {
    let mut pipe = redis::pipe();
    for _ in 0..per_channel {
        for c in 0..cfg.channels {
            pipe.cmd("GYRE.PUBLISH")
                .arg(cfg.channel(c))
                .arg(payload::make(payload_size, payload::now_ns()));
        }
    }
    let values: Vec<redis::Value> = pipe
        .query_async(con)
        .await
        .map_err(|e| format!("GYRE.PUBLISH: {e}"))?;
    if let Some(e) = values
        .iter()
        .find(|v| matches!(v, redis::Value::ServerError(_)))
    {
        return Err(format!("GYRE.PUBLISH: {e:?}"));
    }
    Ok(())
}

fn percentile_s(sorted_us: &[u64], q: f64) -> Option<f64> {
    if sorted_us.is_empty() {
        return None;
    }
    let idx = ((q * sorted_us.len() as f64).ceil() as usize).clamp(1, sorted_us.len()) - 1;
    Some(round3(sorted_us[idx] as f64 / 1e6))
}

fn percent(cpu_s: f64, wall_s: f64) -> f64 {
    if wall_s > 0.0 {
        (cpu_s / wall_s * 1000.0).round() / 10.0
    } else {
        0.0
    }
}

/// One sample of everything the curve shows, taken by the monitor thread.
struct Sample {
    t_ms: u64,
    recovered: usize,
    failed: usize,
    refused_503: u64,
    transient: u64,
    server_cpu: f64,
    redis_cpu: f64,
    tool_cpu: f64,
}

/// Samples the counters and CPU every `step_ms` from the start of the reconnect (a plain thread:
/// the clients' runtime is busy during the storm) and prints progress every second.
fn monitor(
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    step_ms: u64,
    server_pid: Vec<u32>,
    redis_pid: Vec<u32>,
) -> std::thread::JoinHandle<Vec<Sample>> {
    std::thread::spawn(move || {
        let t0 = *shared.storm_t0.get().expect("storm started");
        let mut samples = Vec::new();
        let mut k: u64 = 0;
        let mut next_print_ms = 1000;
        loop {
            let t_ms = t0.elapsed().as_millis() as u64;
            let s = Sample {
                t_ms,
                recovered: shared.recovered.load(Relaxed),
                failed: shared.failed.load(Relaxed),
                refused_503: shared.refused_503.load(Relaxed),
                transient: shared.transient.load(Relaxed),
                server_cpu: stats::sample(&server_pid).cpu_s,
                redis_cpu: stats::sample(&redis_pid).cpu_s,
                tool_cpu: stats::self_cpu(),
            };
            if t_ms >= next_print_ms {
                next_print_ms += 1000;
                eprintln!(
                    "[storm {:.1}s] reconnecting {} recovered {} failed {} 503s {} errors {}",
                    t_ms as f64 / 1e3,
                    shared.reconnecting.load(Relaxed),
                    s.recovered,
                    s.failed,
                    s.refused_503,
                    s.transient
                );
            }
            samples.push(s);
            if stop.load(Relaxed) {
                return samples;
            }
            k += 1;
            let next = t0 + Duration::from_millis(k * step_ms);
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
    })
}

async fn run_async(args: StormArgs) -> Result<StormResult, Box<dyn std::error::Error>> {
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
        publications: args.publications,
        backoff: Backoff {
            min_ms: args.backoff_min_ms,
            max_ms: args.backoff_max_ms.max(args.backoff_min_ms),
            honour_retry_after: !args.ignore_retry_after,
        },
        attempt_timeout: Duration::from_secs_f64(args.attempt_timeout),
        deadline: Duration::from_secs_f64(args.deadline),
    });
    let shared = Arc::new(Shared::default());
    let mut con = redis::Client::open(args.redis_url.as_str())?
        .get_multiplexed_async_connection()
        .await?;

    // Every stream gets an epoch and an offset before anyone subscribes.
    publish_missed(&mut con, &cfg, 1, args.payload_size).await?;

    // 1. Connect everything.
    let (ctl_tx, ctl_rx) = watch::channel(STAGE_CONNECT);
    let connect_sem = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let storm_sem = (args.reconnect_concurrency > 0)
        .then(|| Arc::new(Semaphore::new(args.reconnect_concurrency)));
    let t0 = Instant::now();
    for i in 0..args.clients {
        tokio::spawn(client(
            i,
            cfg.clone(),
            shared.clone(),
            connect_sem.clone(),
            storm_sem.clone(),
            ctl_rx.clone(),
        ));
    }
    let mut last_print = Instant::now();
    while shared.ready.load(Relaxed) + shared.initial_failed.load(Relaxed) < args.clients {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if last_print.elapsed() >= Duration::from_secs(1) {
            last_print = Instant::now();
            eprintln!(
                "[connect] ready {} failed {}",
                shared.ready.load(Relaxed),
                shared.initial_failed.load(Relaxed)
            );
        }
    }
    let connect_s = t0.elapsed().as_secs_f64();
    let ready = shared.ready.load(Relaxed);
    let initial = Initial {
        requested: args.clients,
        ready,
        failed: shared.initial_failed.load(Relaxed),
        refused_503: shared.initial_refused.load(Relaxed),
        connect_s: round3(connect_s),
    };
    eprintln!(
        "connected {ready}/{} in {connect_s:.1}s ({} failed)",
        args.clients, initial.failed
    );
    if ready == 0 {
        return Err(format!("no client connected: {:?}", shared.errors.lock().unwrap()).into());
    }

    // 2. The probe, on its own thread.
    let probe = Arc::new(ProbeShared::default());
    let probe_thread = {
        let (cfg, args, probe) = (cfg.clone(), args.clone(), probe.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("probe runtime");
            rt.block_on(probe_main(cfg, args, probe));
            rt.shutdown_background();
        })
    };
    let give_up = Instant::now() + Duration::from_secs(10);
    while !probe.ready.load(Relaxed) {
        if Instant::now() > give_up || probe_thread.is_finished() {
            return Err(format!("probe did not start: {:?}", probe.errors.lock().unwrap()).into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
    eprintln!("probing for {}s with every client connected", args.before);
    let before_from = payload::now_ns();
    tokio::time::sleep(Duration::from_secs_f64(args.before)).await;

    // 3. Drop everything, publish what they will miss.
    let drop_from = payload::now_ns();
    ctl_tx.send_replace(STAGE_DROP);
    let give_up = Instant::now() + Duration::from_secs(30);
    while shared.closed.load(Relaxed) + shared.lost_before_drop.load(Relaxed) < ready
        && Instant::now() < give_up
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "closed {} connections ({} lost before the drop)",
        shared.closed.load(Relaxed),
        shared.lost_before_drop.load(Relaxed)
    );
    tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
    publish_missed(&mut con, &cfg, args.publications, args.payload_size).await?;
    tokio::time::sleep(Duration::from_millis(100)).await;

    // 4. The storm.
    let closed = shared.closed.load(Relaxed);
    let server0 = stats::sample(&args.server_pid);
    let redis0 = stats::sample(&args.redis_pid);
    let tool0 = stats::self_cpu();
    let tcp0 = tcp_ext();
    let storm_from = payload::now_ns();
    let storm_t0 = Instant::now();
    shared.storm_t0.set(storm_t0).expect("storm starts once");
    let stop_monitor = Arc::new(AtomicBool::new(false));
    let monitor = monitor(
        shared.clone(),
        stop_monitor.clone(),
        args.step_ms,
        args.server_pid.clone(),
        args.redis_pid.clone(),
    );
    eprintln!("reconnecting {closed} clients at once");
    ctl_tx.send_replace(STAGE_STORM);
    let deadline = storm_t0 + Duration::from_secs_f64(args.deadline + args.attempt_timeout + 1.0);
    while shared.recovered.load(Relaxed) + shared.failed.load(Relaxed) < closed
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let storm_to = payload::now_ns();
    let server1 = stats::sample(&args.server_pid);
    let redis1 = stats::sample(&args.redis_pid);
    let tool1 = stats::self_cpu();
    let tcp1 = tcp_ext();
    let mut done_us = shared.done_us.lock().unwrap().clone();
    done_us.sort_unstable();
    let recovered = shared.recovered.load(Relaxed);
    let failed = shared.failed.load(Relaxed);
    let last_done_s = (storm_to - storm_from) as f64 / 1e9;
    eprintln!(
        "storm over after {last_done_s:.2}s: recovered {recovered}/{closed}, failed {failed}, 503s {}, listen overflows {}",
        shared.refused_503.load(Relaxed),
        tcp_delta(&tcp0, &tcp1)
            .get("ListenOverflows")
            .copied()
            .unwrap_or(0)
    );

    // 5. After: everyone back.
    tokio::time::sleep(Duration::from_secs_f64(args.after)).await;
    let after_to = payload::now_ns();
    stop_monitor.store(true, Relaxed);
    probe.stop.store(true, Relaxed);
    let samples = monitor.join().map_err(|_| "monitor thread panicked")?;
    let _ = probe_thread.join();
    let server2 = stats::sample(&args.server_pid);
    ctl_tx.send_replace(STAGE_END);

    let sent = probe.sent.lock().unwrap().clone();
    let received = probe.received.lock().unwrap().clone();
    let wall = (storm_to - storm_from) as f64 / 1e9;
    let storm = Storm {
        reconnecting: closed,
        recovered,
        failed,
        failures: shared.failures.lock().unwrap().clone(),
        full_recovery_s: (recovered == closed && closed > 0)
            .then(|| done_us.last().map(|&us| round3(us as f64 / 1e6)))
            .flatten(),
        last_done_s: round3(last_done_s),
        recovery_p50_s: percentile_s(&done_us, 0.50),
        recovery_p90_s: percentile_s(&done_us, 0.90),
        recovery_p99_s: percentile_s(&done_us, 0.99),
        attempts: shared.attempts.load(Relaxed),
        refused_503: shared.refused_503.load(Relaxed),
        transient_errors: shared.transient.load(Relaxed),
        attempts_per_client: shared.attempts_hist.lock().unwrap().clone(),
        server_cpu_s: round3(server1.cpu_s - server0.cpu_s),
        server_cpu_percent: percent(server1.cpu_s - server0.cpu_s, wall),
        server_rss_before_kib: server0.rss_kib,
        server_rss_after_kib: server2.rss_kib,
        redis_cpu_s: round3(redis1.cpu_s - redis0.cpu_s),
        redis_cpu_percent: percent(redis1.cpu_s - redis0.cpu_s, wall),
        tool_cpu_s: round3(tool1 - tool0),
        tool_cpu_percent: percent(tool1 - tool0, wall),
        tcp: tcp_delta(&tcp0, &tcp1),
    };
    let curve = curve(&samples, &received, storm_from);
    let probe_result = Probe {
        interval_ms: args.probe_interval_ms,
        before: probe_phase(&sent, &received, before_from, drop_from),
        drop: probe_phase(&sent, &received, drop_from, storm_from),
        during: probe_phase(&sent, &received, storm_from, storm_to),
        after: probe_phase(&sent, &received, storm_to, after_to),
        errors: probe.errors.lock().unwrap().clone(),
    };
    let ms = |us: u64| us as f64 / 1e3;
    eprintln!(
        "probe p99/max ms: before {:.1}/{:.1}, during {:.1}/{:.1}, after {:.1}/{:.1}; lost during {}",
        ms(probe_result.before.latency.p99_us),
        ms(probe_result.before.latency.max_us),
        ms(probe_result.during.latency.p99_us),
        ms(probe_result.during.latency.max_us),
        ms(probe_result.after.latency.p99_us),
        ms(probe_result.after.latency.max_us),
        probe_result.during.lost
    );
    Ok(StormResult {
        mode: "storm",
        label: args.label.clone(),
        tag: args.tag.clone(),
        url: args.url.clone(),
        clients: args.clients,
        channels: args.channels,
        publications: args.publications,
        payload_size: args.payload_size,
        threads: args.threads,
        reconnect_concurrency: args.reconnect_concurrency,
        backoff_min_ms: cfg.backoff.min_ms,
        backoff_max_ms: cfg.backoff.max_ms,
        honour_retry_after: cfg.backoff.honour_retry_after,
        initial,
        storm,
        curve,
        probe: probe_result,
        errors: shared.errors.lock().unwrap().clone(),
    })
}

/// The curve: one point per sample, CPU as a percentage of the step, and the probe's worst
/// latency among the publications sent in the step.
fn curve(samples: &[Sample], received: &[(u64, u64)], storm_from_ns: u64) -> Vec<CurvePoint> {
    let mut out = Vec::with_capacity(samples.len());
    for (k, s) in samples.iter().enumerate() {
        let prev = k.checked_sub(1).map(|p| &samples[p]);
        let dt = prev.map_or(0.0, |p| (s.t_ms - p.t_ms) as f64 / 1e3);
        let pct = |now: f64, before: Option<f64>| before.map_or(0.0, |b| percent(now - b, dt));
        let from_ns = storm_from_ns + prev.map_or(0, |p| p.t_ms) * 1_000_000;
        let to_ns = storm_from_ns + s.t_ms * 1_000_000;
        let probe_max_ms = received
            .iter()
            .filter(|&&(sent, _)| sent >= from_ns && sent < to_ns)
            .map(|&(sent, recv)| recv.saturating_sub(sent))
            .max()
            .map(|ns| round3(ns as f64 / 1e6));
        out.push(CurvePoint {
            t_ms: s.t_ms,
            recovered: s.recovered,
            failed: s.failed,
            refused_503: s.refused_503,
            transient_errors: s.transient,
            server_cpu_percent: pct(s.server_cpu, prev.map(|p| p.server_cpu)),
            redis_cpu_percent: pct(s.redis_cpu, prev.map(|p| p.redis_cpu)),
            tool_cpu_percent: pct(s.tool_cpu, prev.map(|p| p.tool_cpu)),
            probe_max_ms,
        });
    }
    out
}

// --- storm-report --------------------------------------------------------------------------

fn ms(v: Option<f64>) -> String {
    fmt(v.map(|us| us / 1e3), 1)
}

/// The Markdown table of one storm result per row.
pub fn table(results: &[Value]) -> String {
    let mut out = String::from(
        "| run | recovered | failed | full recovery s | p50 / p99 client s | 503s | other errors | listen overflows | probe p99 / max ms before | probe p99 / max ms during | probe lost during | probe p99 / max ms after | server CPU s (% of 1 core) | Redis CPU s | tool CPU s |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in results {
        let s = &r["storm"];
        let p = &r["probe"];
        let pair = |phase: &str| {
            format!(
                "{} / {}",
                ms(num(p, &[phase, "latency", "p99_us"])),
                ms(num(p, &[phase, "latency", "max_us"]))
            )
        };
        let full = match num(s, &["full_recovery_s"]) {
            Some(v) => format!("**{v:.2}**"),
            None => format!("not all ({} s)", fmt(num(s, &["last_done_s"]), 2)),
        };
        out.push_str(&format!(
            "| {} | {}/{} | {} | {} | {} / {} | {} | {} | {} | {} | {} | {} | {} | {} ({}) | {} | {} |\n",
            r["tag"].as_str().unwrap_or(""),
            fmt(num(s, &["recovered"]), 0),
            fmt(num(s, &["reconnecting"]), 0),
            fmt(num(s, &["failed"]), 0),
            full,
            fmt(num(s, &["recovery_p50_s"]), 2),
            fmt(num(s, &["recovery_p99_s"]), 2),
            fmt(num(s, &["refused_503"]), 0),
            fmt(num(s, &["transient_errors"]), 0),
            fmt(num(s, &["tcp", "ListenOverflows"]), 0),
            pair("before"),
            pair("during"),
            fmt(num(p, &["during", "lost"]), 0),
            pair("after"),
            fmt(num(s, &["server_cpu_s"]), 2),
            fmt(num(s, &["server_cpu_percent"]), 0),
            fmt(num(s, &["redis_cpu_s"]), 2),
            fmt(num(s, &["tool_cpu_s"]), 2),
        ));
    }
    out
}

/// `gyre-bench storm-report <dir>`: the table of every storm result (`mode: "storm"`) in `dir`,
/// in file name order.
pub fn report(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut results = Vec::new();
    for f in files {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&f)?)?;
        if v["mode"] == "storm" {
            results.push(v);
        }
    }
    if results.is_empty() {
        return Err(format!("no storm results in {}", dir.display()).into());
    }
    print!("{}", table(&results));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_honours_retry_after() {
        let b = Backoff {
            min_ms: 1000,
            max_ms: 8000,
            honour_retry_after: true,
        };
        let windows: Vec<u64> = (0..6).map(|r| b.window_ms(r, None)).collect();
        assert_eq!(windows, [1000, 2000, 4000, 8000, 8000, 8000]);
        assert_eq!(b.window_ms(60, None), 8000);
        // Retry-After raises a small window (even beyond the cap) but never lowers one.
        assert_eq!(b.window_ms(0, Some(3000)), 3000);
        assert_eq!(b.window_ms(0, Some(20_000)), 20_000);
        assert_eq!(b.window_ms(2, Some(1000)), 4000);
        let ignore = Backoff {
            honour_retry_after: false,
            ..b
        };
        assert_eq!(ignore.window_ms(0, Some(3000)), 1000);
        // Full jitter: uniform over 0..=window, so both halves get used.
        let mut rng = Rng::new(42);
        let delays: Vec<u64> = (0..10_000)
            .map(|_| b.delay(0, None, &mut rng).as_millis() as u64)
            .collect();
        assert!(delays.iter().all(|&d| d <= 1000));
        let low = delays.iter().filter(|&&d| d < 500).count();
        assert!((4500..5500).contains(&low), "{low}");
        assert_eq!(parse_retry_after(Some("1")), Some(1000));
        assert_eq!(parse_retry_after(Some(" 2 ")), Some(2000));
        assert_eq!(
            parse_retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")),
            None
        );
        assert_eq!(parse_retry_after(None), None);
    }

    fn reply(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn recovery_check() {
        let ok = reply(
            r#"{"id":2,"subscribe":{"recoverable":true,"positioned":true,"epoch":"abcd","offset":5,"recovered":true,"was_recovering":true,"publications":[{"data":{"t":1},"offset":6},{"data":{"t":2},"offset":7}]}}"#,
        );
        assert_eq!(check_recovery(&ok, 5, 2), Ok(()));
        assert_eq!(
            check_recovery(&ok, 5, 3),
            Err(RecoveryFailure::WrongCount { got: 2 })
        );
        assert_eq!(
            check_recovery(&ok, 4, 2),
            Err(RecoveryFailure::NotContiguous)
        );
        let gap = reply(
            r#"{"id":2,"subscribe":{"recovered":true,"publications":[{"offset":6},{"offset":8}]}}"#,
        );
        assert_eq!(
            check_recovery(&gap, 5, 2),
            Err(RecoveryFailure::NotContiguous)
        );
        let not = reply(
            r#"{"id":2,"subscribe":{"recoverable":true,"epoch":"xyzw","offset":17,"was_recovering":true}}"#,
        );
        assert_eq!(
            check_recovery(&not, 5, 2),
            Err(RecoveryFailure::NotRecovered)
        );
        // Nothing missed: recovered with no publications (JSON omits the empty list).
        let nothing = reply(r#"{"id":2,"subscribe":{"recovered":true,"offset":5}}"#);
        assert_eq!(check_recovery(&nothing, 5, 0), Ok(()));
        let err = reply(r#"{"id":2,"error":{"code":112,"message":"unrecoverable position"}}"#);
        assert_eq!(
            check_recovery(&err, 5, 2).unwrap_err().key(),
            "subscribe error 112 unrecoverable position"
        );
        assert_eq!(position(&ok), (5, "abcd".to_string()));
        assert_eq!(
            position(&reply(r#"{"id":2,"subscribe":{}}"#)),
            (0, String::new())
        );
    }

    #[test]
    fn probe_phases_and_curve() {
        let sent = [100, 200, 300, 400];
        let received = [(100, 1_100), (200, 5_200), (400, 2_400)];
        let p = probe_phase(&sent, &received, 100, 350);
        assert_eq!((p.sent, p.received, p.lost), (3, 2, 1));
        assert_eq!(p.latency.max_us, 5);
        let samples = [
            Sample {
                t_ms: 0,
                recovered: 0,
                failed: 0,
                refused_503: 0,
                transient: 0,
                server_cpu: 1.0,
                redis_cpu: 0.0,
                tool_cpu: 0.0,
            },
            Sample {
                t_ms: 250,
                recovered: 10,
                failed: 0,
                refused_503: 3,
                transient: 0,
                server_cpu: 1.25,
                redis_cpu: 0.05,
                tool_cpu: 0.1,
            },
        ];
        let rx = [(1_000_000, 4_000_000), (100_000_000, 150_000_000)];
        let c = curve(&samples, &rx, 0);
        assert_eq!(c.len(), 2);
        assert_eq!(c[1].server_cpu_percent, 100.0);
        assert_eq!(c[1].redis_cpu_percent, 20.0);
        assert_eq!(c[1].probe_max_ms, Some(50.0));
        assert_eq!(c[0].probe_max_ms, None);
        assert_eq!(
            percentile_s(&[1_000_000, 2_000_000, 3_000_000], 0.5),
            Some(2.0)
        );
        assert_eq!(percentile_s(&[], 0.5), None);
    }

    #[test]
    fn tcp_counters() {
        let netstat = "TcpExt: SyncookiesSent ListenOverflows ListenDrops Other\nTcpExt: 1 20 21 5\nIpExt: A\nIpExt: 1\n";
        let c = parse_tcp_ext(netstat);
        assert_eq!(c.get("ListenOverflows"), Some(&20));
        assert_eq!(c.get("Other"), None);
        let mut later = c.clone();
        later.insert("ListenOverflows".into(), 25);
        assert_eq!(tcp_delta(&c, &later)["ListenOverflows"], 5);
        assert!(tcp_ext().contains_key("ListenOverflows"));
    }
}
