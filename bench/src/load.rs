//! `gyre-bench load`: N subscribers over C channels, M publications at rate R, latency and cost.
//!
//! Every subscriber is one tokio task holding one connection with small buffers (4 KiB WebSocket
//! read buffer, no write buffer), so 5,000–10,000 of them fit in a few hundred MB and one worker
//! thread. Deliveries are counted by scanning each received frame for the payload marker
//! ([`crate::payload`]); the latency is the receive time minus the send time embedded by the
//! publisher (same host, same clock).
//!
//! One run = connect everything, measure idle RSS, then one publish phase per `--rate` value on
//! the same connections (a list makes a saturation sweep), each with its own latency histogram and
//! CPU accounting of the server, Redis and this tool.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde_json::json;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use gyre_proto::Encoding;
use gyre_proto::protocol::{Command, ConnectRequest, Reply, SubscribeRequest};

use crate::floor::round3;
use crate::payload;
use crate::rawws::{self, RawWs, WireCounters};
use crate::route::{Router, Topology};
use crate::stats::{self, Latency};

/// What the subscribers connect to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// gyre /connection/websocket, JSON: connect + subscribe commands.
    GyreWs,
    /// gyre /connection/websocket, JSON like gyre-ws, offering permessage-deflate (own client).
    GyreWsDeflate,
    /// gyre /connection/websocket, JSON like gyre-ws, subscribing with `delta: "fossil"`: the
    /// client applies every patch to its previous payload before reading the timestamp (the
    /// namespace needs positioning, `allowed_delta_types = ["fossil"]` and `delta_publish`).
    GyreWsDelta,
    /// gyre /connection/websocket, subprotocol centrifuge-protobuf.
    GyreWsProtobuf,
    /// gyre /connection/uni_websocket: a ConnectRequest with subs.
    GyreUniWs,
    /// gyre /connection/uni_sse (GET with cf_connect).
    GyreUniSse,
    /// gyre /connection/uni_http_stream (POST ConnectRequest).
    GyreUniHttpStream,
    /// Nchan WebSocket subscriber location /sub/<channel>.
    NchanWs,
}

/// Where publications go in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PublishVia {
    /// GYRE.PUBLISH <channel> <data> on --redis-url, pipelined when behind schedule.
    Redis,
    /// gyre's server API: POST <publish-url>/api/publish with X-API-Key.
    GyreApi,
    /// Nchan's publisher location: POST <publish-url>/pub/<channel>.
    Nchan,
}

#[derive(clap::Args, Debug, Clone)]
pub struct LoadArgs {
    /// Subscriber transport.
    #[arg(long, value_enum, default_value = "gyre-ws")]
    pub target: Target,
    /// Base URL of the server (http://host:port); WebSocket URLs are derived from it.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// Subscriber connections.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Channels; connection i subscribes to channel i % channels.
    #[arg(long, default_value_t = 10)]
    pub channels: usize,
    /// Channel name prefix [default: "bench:c" for gyre, "bench_c" for Nchan (its locations match \w+)].
    #[arg(long)]
    pub channel_prefix: Option<String>,
    /// How to publish [default: redis for gyre targets, nchan for nchan-ws].
    #[arg(long, value_enum)]
    pub publish: Option<PublishVia>,
    /// Redis URL for --publish redis.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// --publish redis into a Redis Cluster: seed nodes (host:port, comma-separated); each
    /// publication goes to the primary of its channel's slot, one pipeline per primary.
    #[arg(long)]
    pub redis_cluster: Option<String>,
    /// Base URL for HTTP publishing [default: --url].
    #[arg(long)]
    pub publish_url: Option<String>,
    /// API key for --publish gyre-api.
    #[arg(long, default_value = "")]
    pub api_key: String,
    /// Publications per phase (ignored when --duration is given).
    #[arg(long, default_value_t = 1000)]
    pub messages: u64,
    /// Publish rate(s) per second; a comma-separated list runs one phase per rate on the same connections.
    #[arg(long, value_delimiter = ',', default_value = "200")]
    pub rate: Vec<f64>,
    /// Seconds of publishing per phase (messages = rate × duration) instead of --messages.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Concurrent publishers splitting the rate.
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Payload size in bytes (JSON with the send timestamp, padded).
    #[arg(long, default_value_t = 128)]
    pub payload_size: usize,
    /// Server process(es) to account CPU and RSS for (repeat to sum, e.g. nginx workers).
    #[arg(long)]
    pub server_pid: Vec<u32>,
    /// Redis process(es), accounted separately.
    #[arg(long)]
    pub redis_pid: Vec<u32>,
    /// Tokio worker threads of this tool.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Connection attempts in flight at once.
    #[arg(long, default_value_t = 200)]
    pub connect_concurrency: usize,
    /// Seconds one connection attempt (handshake + subscribe) may take.
    #[arg(long, default_value_t = 30.0)]
    pub connect_timeout: f64,
    /// Seconds to wait after everything connected before the idle RSS sample.
    #[arg(long, default_value_t = 2.0)]
    pub idle_settle: f64,
    /// Seconds to wait for outstanding deliveries after the last publish of a phase.
    #[arg(long, default_value_t = 10.0)]
    pub drain_timeout: f64,
    /// Stalled subscribers (gyre-ws only): N more connections that connect and subscribe (client k
    /// to channel k % channels) and then never read their socket. They are not counted in the
    /// deliveries; at the end each is read to see whether the server closed it.
    #[arg(long, default_value_t = 0)]
    pub stalled: usize,
    /// Receive buffer (SO_RCVBUF) of the stalled connections, bytes: small, so the server's own
    /// queue rather than the kernel holds what they do not read.
    #[arg(long, default_value_t = 4096)]
    pub stalled_rcvbuf: u32,
    /// Sign HS256 connection tokens (sub = bench<i>) with this secret instead of connecting anonymously.
    #[arg(long)]
    pub token_secret: Option<String>,
    /// Free-form label stored in the result (e.g. gyre, nchan).
    #[arg(long, default_value = "")]
    pub label: String,
    /// Free-form tag stored in the result (e.g. reference, sweep).
    #[arg(long, default_value = "")]
    pub tag: String,
    /// Write the JSON result here instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Serialize)]
struct Connections {
    requested: usize,
    ready: usize,
    failed: usize,
    closed_before_publishing: usize,
    connect_s: f64,
    connects_per_s: f64,
    server_cpu_us_per_connect: Option<f64>,
    /// gyre-ws-deflate: connections whose 101 answered with permessage-deflate.
    #[serde(skip_serializing_if = "Option::is_none")]
    deflate_negotiated: Option<usize>,
    /// gyre-ws-deflate: the server's Sec-WebSocket-Extensions answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    deflate_extensions: Option<String>,
}

#[derive(Serialize)]
struct Memory {
    server_rss_before_kib: u64,
    server_rss_idle_kib: u64,
    server_rss_per_connection_kib: Option<f64>,
    redis_rss_before_kib: u64,
    redis_rss_idle_kib: u64,
    client_rss_idle_kib: u64,
}

#[derive(Serialize)]
struct Phase {
    rate: f64,
    messages: u64,
    publishers: usize,
    published: u64,
    publish_errors: u64,
    publish_s: f64,
    achieved_rate: f64,
    subscribers_at_start: usize,
    deliveries_expected: u64,
    delivered: u64,
    lost: u64,
    extra: u64,
    connections_closed: usize,
    deliveries_per_s: f64,
    latency: Latency,
    wall_s: f64,
    server_cpu_s: f64,
    server_cpu_us_per_delivery: Option<f64>,
    server_cpu_percent: f64,
    redis_cpu_s: f64,
    redis_cpu_us_per_delivery: Option<f64>,
    redis_cpu_us_per_publication: Option<f64>,
    client_cpu_s: f64,
    client_cpu_us_per_delivery: Option<f64>,
    /// WebSocket targets: data messages received, of which compressed (RSV1).
    ws_messages: u64,
    ws_compressed_messages: u64,
    /// Bytes of server frames (header + payload as sent) for data messages.
    wire_bytes: u64,
    wire_bytes_per_delivery: Option<f64>,
    /// The same messages after inflating (= wire payload when uncompressed).
    inflated_bytes_per_delivery: Option<f64>,
    /// When the deliveries later than [`LATE_US`] were sent, as episodes: one stall of the
    /// server shows as one episode that holds every publication sent during it; a queue that
    /// grows shows as a long one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    late: Vec<LateEpisode>,
    /// CPU time the hypervisor gave to other guests during the phase (all CPUs, ms).
    steal_ms: u64,
}

/// A delivery this late (µs) counts in [`Phase::late`].
const LATE_US: u64 = 20_000;
/// The send times of late deliveries are grouped in slots of this many ms; slots in a row make
/// one episode.
const LATE_SLOT_MS: u64 = 10;

/// Late deliveries whose publications were sent in consecutive [`LATE_SLOT_MS`] slots.
#[derive(Serialize)]
struct LateEpisode {
    /// When the first of them was sent, ms after the phase's start.
    sent_from_ms: u64,
    /// Until when (exclusive, slot granularity).
    sent_until_ms: u64,
    deliveries: u64,
    max_ms: f64,
    /// Steal time seen from the episode's first send until its last late delivery (ms).
    steal_ms: u64,
}

/// Groups late deliveries (slot → count, max µs) into episodes, each with the steal time
/// (`steal`: unix ns, ms) seen while it lasted.
fn late_episodes(
    slots: BTreeMap<u64, (u64, u64)>,
    start_ns: u64,
    steal: &[(u64, u64)],
) -> Vec<LateEpisode> {
    let first_slot = start_ns / 1_000_000 / LATE_SLOT_MS;
    let mut episodes: Vec<LateEpisode> = Vec::new();
    let mut previous = None;
    for (slot, (count, max_us)) in slots {
        let from = slot.saturating_sub(first_slot) * LATE_SLOT_MS;
        let max_ms = max_us as f64 / 1000.0;
        match episodes.last_mut() {
            Some(episode) if previous == Some(slot - 1) => {
                episode.sent_until_ms = from + LATE_SLOT_MS;
                episode.deliveries += count;
                episode.max_ms = episode.max_ms.max(max_ms);
            }
            _ => episodes.push(LateEpisode {
                sent_from_ms: from,
                sent_until_ms: from + LATE_SLOT_MS,
                deliveries: count,
                max_ms,
                steal_ms: 0,
            }),
        }
        previous = Some(slot);
    }
    let start_ms = start_ns / 1_000_000;
    for episode in &mut episodes {
        let from = start_ms + episode.sent_from_ms;
        let until = start_ms + episode.sent_until_ms + episode.max_ms.ceil() as u64;
        episode.steal_ms = steal
            .iter()
            .filter(|(at, _)| (from..=until + LATE_SLOT_MS).contains(&(at / 1_000_000)))
            .map(|(_, ms)| ms)
            .sum();
    }
    episodes
}

/// What became of the stalled subscribers.
#[derive(Serialize, Default)]
struct Stalled {
    requested: usize,
    subscribed: usize,
    /// Closed by the server (or reset) by the end of the run; the rest were still open.
    disconnected: usize,
    still_open: usize,
    /// How each closed one ended (close code and reason, eof, read error).
    endings: BTreeMap<String, u64>,
}

#[derive(Serialize)]
struct LoadResult {
    mode: &'static str,
    label: String,
    tag: String,
    target: Target,
    publish: PublishVia,
    url: String,
    channels: usize,
    payload_size: usize,
    threads: usize,
    server_pids: Vec<u32>,
    redis_pids: Vec<u32>,
    connections: Connections,
    memory: Memory,
    phases: Vec<Phase>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stalled: Option<Stalled>,
    errors: BTreeMap<String, u64>,
}

const SHARDS: usize = 16;

struct Shared {
    ready: AtomicUsize,
    failed: AtomicUsize,
    closed: AtomicUsize,
    per_channel: Vec<AtomicUsize>,
    delivered: AtomicU64,
    last_delivery_ns: AtomicU64,
    hist: Vec<Mutex<Histogram<u64>>>,
    /// Late deliveries by their send time's slot: (count, max latency µs).
    late: Mutex<BTreeMap<u64, (u64, u64)>>,
    errors: Mutex<BTreeMap<String, u64>>,
    phase: Mutex<String>,
    wire: WireCounters,
    deflate_negotiated: AtomicUsize,
    deflate_extensions: Mutex<Option<String>>,
}

impl Shared {
    fn deliver(&self, shard: usize, frame: &[u8]) {
        if memchr::memmem::find(frame, payload::MARKER).is_none() {
            return;
        }
        let now = payload::now_ns();
        let mut h = self.hist[shard % SHARDS].lock().unwrap();
        let n = payload::scan(frame, |t| {
            let latency_us = now.saturating_sub(t) / 1000;
            stats::record(&mut h, latency_us);
            if latency_us > LATE_US {
                let slot = t / 1_000_000 / LATE_SLOT_MS;
                let mut late = self.late.lock().unwrap();
                let (count, max) = late.entry(slot).or_default();
                *count += 1;
                *max = (*max).max(latency_us);
            }
        });
        drop(h);
        self.delivered.fetch_add(n as u64, Relaxed);
        self.last_delivery_ns.fetch_max(now, Relaxed);
    }

    /// A data message read by tungstenite (uncompressed, one unfragmented frame).
    fn count_plain(&self, len: usize) {
        self.wire
            .bytes
            .fetch_add((len + rawws::server_header_len(len)) as u64, Relaxed);
        self.wire.messages.fetch_add(1, Relaxed);
        self.wire.inflated_bytes.fetch_add(len as u64, Relaxed);
    }

    fn error(&self, what: impl Into<String>) {
        crate::stats::count_error(&self.errors, what);
    }

    fn take_latency(&self) -> Histogram<u64> {
        let mut all = stats::new_histogram();
        for h in &self.hist {
            let mut h = h.lock().unwrap();
            let _ = all.add(&*h);
            h.reset();
        }
        all
    }
}

struct Cfg {
    target: Target,
    addr: SocketAddr,
    authority: String,
    ws_base: String,
    prefix: String,
    channels: usize,
    token_secret: Option<String>,
    connect_timeout: Duration,
}

impl Cfg {
    fn channel(&self, i: usize) -> String {
        format!("{}{}", self.prefix, i % self.channels)
    }

    fn token(&self, i: usize) -> Result<String, String> {
        let Some(secret) = &self.token_secret else {
            return Ok(String::new());
        };
        let exp = payload::now_ns() / 1_000_000_000 + 86_400;
        let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes())
            .map_err(|e| format!("token key: {e}"))?;
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &json!({"sub": format!("bench{i}"), "exp": exp}),
            &key,
        )
        .map_err(|e| format!("token: {e}"))
    }
}

pub(crate) fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum WsKind {
    GyreJson,
    /// JSON with fossil deltas: publications are decoded against the previous payload.
    GyreJsonDelta,
    GyreProtobuf,
    Passive,
}

enum Conn {
    Ws {
        ws: Box<WebSocketStream<TcpStream>>,
        kind: WsKind,
    },
    Http {
        _sender: SendRequest<Full<Bytes>>,
        body: Incoming,
        pending: Vec<u8>,
    },
    /// gyre-ws-deflate: the hand-written client with permessage-deflate.
    Raw(Box<RawWs>),
}

/// Whether a JSON frame holds an empty message (server ping `{}`) as one of its lines.
pub(crate) fn json_has_ping(frame: &[u8]) -> bool {
    frame == b"{}" || frame.starts_with(b"{}\n") || memchr::memmem::find(frame, b"\n{}").is_some()
}

/// Whether a Protobuf frame holds an empty message (length prefix 0).
fn protobuf_has_ping(mut frame: &[u8]) -> bool {
    while !frame.is_empty() {
        let mut len: usize = 0;
        let mut shift = 0;
        let mut used = 0;
        for &b in frame.iter().take(10) {
            used += 1;
            len |= usize::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        if len == 0 {
            return true;
        }
        frame = frame.get(used + len..).unwrap_or(&[]);
    }
    false
}

pub(crate) fn close_reason(
    frame: Option<tokio_tungstenite::tungstenite::protocol::CloseFrame>,
) -> String {
    match frame {
        Some(f) => format!("close {} {}", u16::from(f.code), f.reason),
        None => "close".to_string(),
    }
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn open_ws(
    cfg: &Cfg,
    path: &str,
    protobuf: bool,
) -> Result<WebSocketStream<TcpStream>, String> {
    let mut req = format!("{}{}", cfg.ws_base, path)
        .into_client_request()
        .map_err(|e| format!("request: {e}"))?;
    if protobuf {
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            Encoding::PROTOBUF_WS_SUBPROTOCOL.parse().unwrap(),
        );
    }
    let tcp = TcpStream::connect(cfg.addr)
        .await
        .map_err(|e| format!("tcp connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let (ws, _) = tokio_tungstenite::client_async_with_config(req, tcp, Some(ws_config()))
        .await
        .map_err(|e| format!("ws handshake: {e}"))?;
    Ok(ws)
}

/// The JSON connect + subscribe frame of gyre-ws (with `delta`: asking for fossil deltas).
fn json_connect_subscribe(token: &str, channel: &str, delta: bool) -> String {
    let mut connect = json!({});
    if !token.is_empty() {
        connect["token"] = json!(token);
    }
    let mut subscribe = json!({"channel": channel});
    if delta {
        subscribe["delta"] = json!("fossil");
    }
    format!(
        "{}\n{}",
        json!({"id": 1, "connect": connect}),
        json!({"id": 2, "subscribe": subscribe})
    )
}

/// The payloads of a JSON frame of a delta subscription, each rebuilt from `base` (the previous
/// payload, updated): `data` is a JSON string, the whole payload or, with `"delta":true`, a
/// fossil patch against the previous one. Lines without a publication are skipped.
pub(crate) fn delta_payloads(frame: &[u8], base: &mut Vec<u8>) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    for line in frame.split(|&b| b == b'\n') {
        let Ok(reply) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        let publication = &reply["push"]["pub"];
        let Some(data) = publication["data"].as_str() else {
            continue;
        };
        let payload = if publication["delta"] == true {
            gyre_proto::fossil::apply(base, data.as_bytes(), 1 << 24)
                .map_err(|e| format!("delta: {e}"))?
        } else {
            data.as_bytes().to_vec()
        };
        base.clone_from(&payload);
        out.push(payload);
    }
    Ok(out)
}

/// Connects and subscribes connection `i`; returns once the subscription is live.
async fn open(i: usize, cfg: &Cfg, shared: &Shared) -> Result<Conn, String> {
    let channel = cfg.channel(i);
    let token = cfg.token(i)?;
    match cfg.target {
        Target::GyreWsDeflate => {
            let mut ws =
                RawWs::connect(cfg.addr, &cfg.authority, "/connection/websocket", 1 << 20).await?;
            if !ws.deflate {
                return Err(format!(
                    "permessage-deflate not negotiated (Sec-WebSocket-Extensions: {:?})",
                    ws.extensions
                ));
            }
            shared.deflate_negotiated.fetch_add(1, Relaxed);
            shared
                .deflate_extensions
                .lock()
                .unwrap()
                .get_or_insert_with(|| ws.extensions.clone());
            ws.send_text(&json_connect_subscribe(&token, &channel, false))
                .await?;
            // The replies are not data for the phase counters: count them aside.
            let setup = WireCounters::default();
            loop {
                let msg = ws.next_message(&setup).await?;
                for line in msg.split(|&b| b == b'\n') {
                    if line == b"{}" {
                        ws.send_text("{}").await?;
                        continue;
                    }
                    let v: serde_json::Value =
                        serde_json::from_slice(line).map_err(|e| format!("bad reply: {e}"))?;
                    if let Some(err) = v.get("error") {
                        return Err(format!("reply {}: error {err}", v["id"]));
                    }
                    if v["id"] == 2 {
                        return Ok(Conn::Raw(Box::new(ws)));
                    }
                }
            }
        }
        Target::GyreWs | Target::GyreWsDelta => {
            let delta = cfg.target == Target::GyreWsDelta;
            let mut ws = open_ws(cfg, "/connection/websocket", false).await?;
            let frame = json_connect_subscribe(&token, &channel, delta);
            ws.send(Message::text(frame))
                .await
                .map_err(|e| format!("send: {e}"))?;
            loop {
                let msg = ws.next().await.ok_or("eof before subscribe reply")?;
                match msg.map_err(|e| format!("read: {e}"))? {
                    Message::Text(t) => {
                        for line in t.as_str().split('\n') {
                            if line == "{}" {
                                ws.send(Message::text("{}"))
                                    .await
                                    .map_err(|e| e.to_string())?;
                                continue;
                            }
                            let v: serde_json::Value = serde_json::from_str(line)
                                .map_err(|e| format!("bad reply: {e}"))?;
                            if let Some(err) = v.get("error") {
                                return Err(format!("reply {}: error {err}", v["id"]));
                            }
                            if v["id"] == 2 {
                                if delta && v["subscribe"]["delta"] != true {
                                    return Err(format!("delta not negotiated: {v}"));
                                }
                                let kind = if delta {
                                    WsKind::GyreJsonDelta
                                } else {
                                    WsKind::GyreJson
                                };
                                return Ok(Conn::Ws {
                                    ws: Box::new(ws),
                                    kind,
                                });
                            }
                        }
                    }
                    Message::Close(f) => return Err(close_reason(f)),
                    _ => {}
                }
            }
        }
        Target::GyreWsProtobuf => {
            let mut ws = open_ws(cfg, "/connection/websocket", true).await?;
            let mut frame = gyre_proto::FrameBuilder::new(Encoding::Protobuf);
            let connect = Command {
                id: 1,
                connect: Some(ConnectRequest {
                    token,
                    ..Default::default()
                }),
                ..Default::default()
            };
            let subscribe = Command {
                id: 2,
                subscribe: Some(SubscribeRequest {
                    channel,
                    ..Default::default()
                }),
                ..Default::default()
            };
            frame.encode(&connect).map_err(|e| e.to_string())?;
            frame.encode(&subscribe).map_err(|e| e.to_string())?;
            ws.send(Message::binary(frame.take()))
                .await
                .map_err(|e| format!("send: {e}"))?;
            loop {
                let msg = ws.next().await.ok_or("eof before subscribe reply")?;
                match msg.map_err(|e| format!("read: {e}"))? {
                    Message::Binary(b) => {
                        for reply in
                            gyre_proto::codec::decode_replies(Encoding::Protobuf, b, 1 << 20)
                        {
                            let reply: Reply = reply.map_err(|e| format!("bad reply: {e}"))?;
                            if reply == Reply::default() {
                                ws.send(Message::binary(vec![0u8]))
                                    .await
                                    .map_err(|e| e.to_string())?;
                                continue;
                            }
                            if let Some(err) = reply.error {
                                return Err(format!(
                                    "reply {}: error {} {}",
                                    reply.id, err.code, err.message
                                ));
                            }
                            if reply.id == 2 {
                                return Ok(Conn::Ws {
                                    ws: Box::new(ws),
                                    kind: WsKind::GyreProtobuf,
                                });
                            }
                        }
                    }
                    Message::Close(f) => return Err(close_reason(f)),
                    _ => {}
                }
            }
        }
        Target::GyreUniWs => {
            let mut ws = open_ws(cfg, "/connection/uni_websocket", false).await?;
            let req = connect_request(&token, &channel);
            ws.send(Message::text(req))
                .await
                .map_err(|e| format!("send: {e}"))?;
            loop {
                let msg = ws.next().await.ok_or("eof before connect push")?;
                match msg.map_err(|e| format!("read: {e}"))? {
                    Message::Text(t) => {
                        if t.as_str().contains("\"disconnect\"") {
                            return Err(t.as_str().to_string());
                        }
                        if t.as_str().contains("\"connect\"") {
                            return Ok(Conn::Ws {
                                ws: Box::new(ws),
                                kind: WsKind::Passive,
                            });
                        }
                    }
                    Message::Close(f) => return Err(close_reason(f)),
                    _ => {}
                }
            }
        }
        Target::NchanWs => {
            let ws = open_ws(cfg, &format!("/sub/{channel}"), false).await?;
            Ok(Conn::Ws {
                ws: Box::new(ws),
                kind: WsKind::Passive,
            })
        }
        Target::GyreUniSse | Target::GyreUniHttpStream => {
            let req = connect_request(&token, &channel);
            let request = if cfg.target == Target::GyreUniSse {
                hyper::Request::get(format!(
                    "/connection/uni_sse?cf_connect={}",
                    percent_encode(&req)
                ))
                .header(hyper::header::ACCEPT, "text/event-stream")
                .body(Full::new(Bytes::new()))
            } else {
                hyper::Request::post("/connection/uni_http_stream")
                    .header(hyper::header::CONTENT_TYPE, "application/json")
                    .body(Full::new(Bytes::from(req)))
            };
            let mut request = request.map_err(|e| e.to_string())?;
            request.headers_mut().insert(
                hyper::header::HOST,
                cfg.authority.parse().map_err(|_| "bad host")?,
            );
            let tcp = TcpStream::connect(cfg.addr)
                .await
                .map_err(|e| format!("tcp connect: {e}"))?;
            let _ = tcp.set_nodelay(true);
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .map_err(|e| format!("http handshake: {e}"))?;
            tokio::spawn(conn);
            let resp = sender
                .send_request(request)
                .await
                .map_err(|e| format!("request: {e}"))?;
            if !resp.status().is_success() {
                return Err(format!("http status {}", resp.status()));
            }
            let mut body = resp.into_body();
            let mut pending = Vec::new();
            loop {
                let frame = body
                    .frame()
                    .await
                    .ok_or("eof before connect push")?
                    .map_err(|e| format!("read: {e}"))?;
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                pending.extend_from_slice(&data);
                if let Some(pos) = memchr::memmem::find(&pending, b"\"connect\"") {
                    // Keep whatever follows the connect push's line for the delivery loop.
                    let end = memchr::memchr(b'\n', &pending[pos..])
                        .map_or(pending.len(), |e| pos + e + 1);
                    pending.drain(..end);
                    return Ok(Conn::Http {
                        _sender: sender,
                        body,
                        pending,
                    });
                }
                if memchr::memmem::find(&pending, b"\"disconnect\"").is_some() {
                    return Err(String::from_utf8_lossy(&pending).into_owned());
                }
            }
        }
    }
}

fn connect_request(token: &str, channel: &str) -> String {
    let mut req = json!({"subs": {channel: {}}});
    if !token.is_empty() {
        req["token"] = json!(token);
    }
    req.to_string()
}

/// Reads deliveries until the connection ends; returns why it ended.
async fn receive(conn: Conn, shard: usize, shared: &Shared) -> String {
    match conn {
        Conn::Ws { mut ws, kind } => {
            // The previous payload of a delta subscription: what the next patch applies to.
            let mut base = Vec::new();
            loop {
                match ws.next().await {
                    None => return "eof".into(),
                    Some(Err(e)) => return format!("read: {e}"),
                    Some(Ok(Message::Text(t))) => {
                        shared.count_plain(t.len());
                        if kind == WsKind::GyreJsonDelta {
                            match delta_payloads(t.as_bytes(), &mut base) {
                                Ok(payloads) => {
                                    for payload in payloads {
                                        shared.deliver(shard, &payload);
                                    }
                                }
                                Err(why) => return why,
                            }
                        } else {
                            shared.deliver(shard, t.as_bytes());
                        }
                        if matches!(kind, WsKind::GyreJson | WsKind::GyreJsonDelta)
                            && json_has_ping(t.as_bytes())
                            && let Err(e) = ws.send(Message::text("{}")).await
                        {
                            return format!("pong: {e}");
                        }
                    }
                    Some(Ok(Message::Binary(b))) => {
                        shared.count_plain(b.len());
                        shared.deliver(shard, &b);
                        if kind == WsKind::GyreProtobuf
                            && protobuf_has_ping(&b)
                            && let Err(e) = ws.send(Message::binary(vec![0u8])).await
                        {
                            return format!("pong: {e}");
                        }
                    }
                    Some(Ok(Message::Close(f))) => return close_reason(f),
                    Some(Ok(_)) => {}
                }
            }
        }
        Conn::Raw(mut ws) => loop {
            match ws.next_message(&shared.wire).await {
                Err(why) => return why,
                Ok(msg) => {
                    shared.deliver(shard, &msg);
                    if json_has_ping(&msg)
                        && let Err(e) = ws.send_text("{}").await
                    {
                        return format!("pong: {e}");
                    }
                }
            }
        },
        Conn::Http {
            _sender,
            mut body,
            mut pending,
        } => loop {
            // Only whole lines are scanned, so a payload split across chunks is counted once.
            if let Some(last) = memchr::memrchr(b'\n', &pending) {
                shared.deliver(shard, &pending[..=last]);
                pending.drain(..=last);
            }
            match body.frame().await {
                None => return "eof".into(),
                Some(Err(e)) => return format!("read: {e}"),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        pending.extend_from_slice(&data);
                    }
                }
            }
        },
    }
}

async fn connection(i: usize, cfg: Arc<Cfg>, shared: Arc<Shared>, sem: Arc<Semaphore>) {
    let ch = i % cfg.channels;
    let permit = sem.acquire_owned().await;
    let opened = tokio::time::timeout(cfg.connect_timeout, open(i, &cfg, &shared)).await;
    drop(permit);
    let conn = match opened {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            shared.failed.fetch_add(1, Relaxed);
            shared.error(format!("connect: {e}"));
            return;
        }
        Err(_) => {
            shared.failed.fetch_add(1, Relaxed);
            shared.error("connect: timeout");
            return;
        }
    };
    shared.per_channel[ch].fetch_add(1, Relaxed);
    shared.ready.fetch_add(1, Relaxed);
    let why = receive(conn, i, &shared).await;
    shared.per_channel[ch].fetch_sub(1, Relaxed);
    shared.closed.fetch_add(1, Relaxed);
    shared.error(format!("closed: {why}"));
}

/// A gyre-ws connection subscribed to channel `k % channels` whose reader then stops: the
/// returned socket is not read again until [`stalled_ending`].
async fn open_stalled(
    k: usize,
    cfg: &Cfg,
    rcvbuf: u32,
) -> Result<WebSocketStream<TcpStream>, String> {
    let socket = tokio::net::TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    socket
        .set_recv_buffer_size(rcvbuf)
        .map_err(|e| format!("SO_RCVBUF: {e}"))?;
    let tcp = socket
        .connect(cfg.addr)
        .await
        .map_err(|e| format!("tcp connect: {e}"))?;
    let req = format!("{}/connection/websocket", cfg.ws_base)
        .into_client_request()
        .map_err(|e| format!("request: {e}"))?;
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(req, tcp, Some(ws_config()))
        .await
        .map_err(|e| format!("ws handshake: {e}"))?;
    let frame = json_connect_subscribe(&cfg.token(k)?, &cfg.channel(k), false);
    ws.send(Message::text(frame))
        .await
        .map_err(|e| format!("send: {e}"))?;
    loop {
        match ws.next().await.ok_or("eof before subscribe reply")? {
            Ok(Message::Text(t)) => {
                for line in t.as_str().split('\n') {
                    let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                        continue;
                    };
                    if let Some(err) = v.get("error") {
                        return Err(format!("reply {}: error {err}", v["id"]));
                    }
                    if v["id"] == 2 {
                        return Ok(ws);
                    }
                }
            }
            Ok(Message::Close(f)) => return Err(close_reason(f)),
            Ok(_) => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

/// Reads a stalled connection now: how the server ended it, or None when it is still open
/// (nothing but a quiet socket for 3 s after what was buffered).
async fn stalled_ending(mut ws: WebSocketStream<TcpStream>) -> Option<String> {
    loop {
        match tokio::time::timeout(Duration::from_secs(3), ws.next()).await {
            Err(_) => return None,
            Ok(None) => return Some("eof".into()),
            Ok(Some(Err(e))) => return Some(format!("read: {e}")),
            Ok(Some(Ok(Message::Close(f)))) => return Some(close_reason(f)),
            Ok(Some(Ok(_))) => {}
        }
    }
}

enum Publisher {
    Redis(Router),
    Http {
        sender: SendRequest<Full<Bytes>>,
        authority: String,
        gyre: bool,
        api_key: String,
    },
}

impl Publisher {
    async fn new(args: &LoadArgs, via: PublishVia, base: &str) -> Result<Self, String> {
        match via {
            PublishVia::Redis => {
                let topology =
                    Topology::from_args(&args.redis_url, args.redis_cluster.as_deref(), None, "");
                let router = Router::new(topology, Duration::from_secs(5))
                    .await
                    .map_err(|e| format!("redis: {e}"))?;
                Ok(Self::Redis(router))
            }
            PublishVia::GyreApi | PublishVia::Nchan => {
                let (addr, authority) = resolve(base)?;
                let tcp = TcpStream::connect(addr)
                    .await
                    .map_err(|e| format!("publisher connect: {e}"))?;
                let _ = tcp.set_nodelay(true);
                let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::spawn(conn);
                Ok(Self::Http {
                    sender,
                    authority,
                    gyre: via == PublishVia::GyreApi,
                    api_key: args.api_key.clone(),
                })
            }
        }
    }

    /// Publishes the batch; returns how many succeeded, plus the first error.
    async fn publish(&mut self, batch: &[(String, Vec<u8>)]) -> (usize, Option<String>) {
        match self {
            Self::Redis(router) => {
                let results = router.publish_batch(batch).await;
                let ok = results.iter().filter(|r| r.is_ok()).count();
                let first_error = results.into_iter().find_map(|r| r.err());
                (ok, first_error.map(|e| format!("GYRE.PUBLISH: {e}")))
            }
            Self::Http {
                sender,
                authority,
                gyre,
                api_key,
            } => {
                let mut ok = 0;
                let mut first_error = None;
                for (channel, data) in batch {
                    let (path, body) = if *gyre {
                        let mut body = Vec::with_capacity(data.len() + 48);
                        body.extend_from_slice(b"{\"channel\":");
                        body.extend_from_slice(json!(channel).to_string().as_bytes());
                        body.extend_from_slice(b",\"data\":");
                        body.extend_from_slice(data);
                        body.push(b'}');
                        ("/api/publish".to_string(), body)
                    } else {
                        (format!("/pub/{channel}"), data.clone())
                    };
                    let mut req = hyper::Request::post(path)
                        .header(hyper::header::HOST, authority.as_str())
                        .header(hyper::header::CONTENT_TYPE, "application/json");
                    if *gyre {
                        req = req.header("X-API-Key", api_key.as_str());
                    }
                    let req = req.body(Full::new(Bytes::from(body))).expect("request");
                    let result = async {
                        sender.ready().await.map_err(|e| e.to_string())?;
                        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
                        let status = resp.status();
                        let body = resp
                            .into_body()
                            .collect()
                            .await
                            .map_err(|e| e.to_string())?
                            .to_bytes();
                        if !status.is_success()
                            || (*gyre && memchr::memmem::find(&body, b"\"error\"").is_some())
                        {
                            return Err(format!(
                                "http {status}: {}",
                                String::from_utf8_lossy(&body)
                            ));
                        }
                        Ok(())
                    }
                    .await;
                    match result {
                        Ok(()) => ok += 1,
                        Err(e) => {
                            first_error.get_or_insert(e);
                        }
                    }
                }
                (ok, first_error)
            }
        }
    }
}

#[derive(Default)]
struct PubStats {
    published: u64,
    errors: u64,
    expected: u64,
}

#[allow(clippy::too_many_arguments)]
async fn publisher(
    mut p: Publisher,
    first: u64,
    step: u64,
    messages: u64,
    rate: f64,
    start: tokio::time::Instant,
    payload_size: usize,
    cfg: Arc<Cfg>,
    shared: Arc<Shared>,
) -> PubStats {
    let mut st = PubStats::default();
    let max_batch = if matches!(p, Publisher::Redis(_)) {
        256
    } else {
        1
    };
    let due = |i: u64| start + Duration::from_secs_f64(i as f64 / rate);
    let mut i = first;
    let mut batch = Vec::with_capacity(max_batch);
    while i < messages {
        tokio::time::sleep_until(due(i)).await;
        let now = tokio::time::Instant::now();
        let mut channels = Vec::with_capacity(max_batch);
        while i < messages && (batch.is_empty() || due(i) <= now) && batch.len() < max_batch {
            let ch = (i as usize) % cfg.channels;
            channels.push(ch);
            batch.push((
                cfg.channel(ch),
                payload::make(payload_size, payload::now_ns()),
            ));
            i += step;
        }
        // Subscribers present when the batch goes out are the ones that should get it.
        let expected: u64 = channels
            .iter()
            .map(|&c| shared.per_channel[c].load(Relaxed) as u64)
            .sum();
        let (ok, err) = p.publish(&batch).await;
        if ok == batch.len() {
            st.expected += expected;
        } else if ok > 0 {
            st.expected += expected * ok as u64 / batch.len() as u64;
        }
        st.published += ok as u64;
        st.errors += (batch.len() - ok) as u64;
        if let Some(e) = err {
            shared.error(format!("publish: {e}"));
        }
        batch.clear();
    }
    st
}

pub(crate) fn resolve(url: &str) -> Result<(SocketAddr, String), String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("bad url {url}: {e}"))?;
    let authority = uri
        .authority()
        .ok_or_else(|| format!("no host in {url}"))?
        .to_string();
    let with_port = if uri.port().is_some() {
        authority.clone()
    } else {
        format!("{authority}:80")
    };
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&with_port)
        .map_err(|e| format!("resolve {with_port}: {e}"))?
        .next()
        .ok_or_else(|| format!("resolve {with_port}: no address"))?;
    Ok((addr, authority))
}

/// Bytes, messages, compressed messages, inflated bytes received so far.
fn wire_sample(w: &WireCounters) -> (u64, u64, u64, u64) {
    (
        w.bytes.load(Relaxed),
        w.messages.load(Relaxed),
        w.compressed.load(Relaxed),
        w.inflated_bytes.load(Relaxed),
    )
}

fn per(value: f64, count: u64) -> Option<f64> {
    (count > 0).then(|| round3(value * 1e6 / count as f64))
}

fn progress(shared: Arc<Shared>) {
    tokio::spawn(async move {
        let mut last = shared.delivered.load(Relaxed);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        loop {
            tick.tick().await;
            let d = shared.delivered.load(Relaxed);
            eprintln!(
                "[{}] ready {} failed {} closed {} delivered {} ({}/s)",
                shared.phase.lock().unwrap(),
                shared.ready.load(Relaxed),
                shared.failed.load(Relaxed),
                shared.closed.load(Relaxed),
                d,
                d - last
            );
            last = d;
        }
    });
}

pub fn run(mut args: LoadArgs) -> Result<(), Box<dyn std::error::Error>> {
    args.threads = args.threads.max(1);
    args.channels = args.channels.max(1);
    args.publishers = args.publishers.max(1);
    crate::run_measurement(args.threads, run_async(args.clone()), args.out.as_deref())
}

async fn run_async(args: LoadArgs) -> Result<LoadResult, Box<dyn std::error::Error>> {
    let nchan = args.target == Target::NchanWs;
    let via = args.publish.unwrap_or(if nchan {
        PublishVia::Nchan
    } else {
        PublishVia::Redis
    });
    let prefix = args.channel_prefix.clone().unwrap_or_else(|| {
        if nchan {
            "bench_c".into()
        } else {
            "bench:c".into()
        }
    });
    let (addr, authority) = resolve(&args.url)?;
    let ws_base = args
        .url
        .replacen("https://", "wss://", 1)
        .replacen("http://", "ws://", 1);
    let ws_base = ws_base.trim_end_matches('/').to_string();
    let cfg = Arc::new(Cfg {
        target: args.target,
        addr,
        authority,
        ws_base,
        prefix,
        channels: args.channels,
        token_secret: args.token_secret.clone(),
        connect_timeout: Duration::from_secs_f64(args.connect_timeout),
    });
    let shared = Arc::new(Shared {
        ready: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        closed: AtomicUsize::new(0),
        per_channel: (0..args.channels).map(|_| AtomicUsize::new(0)).collect(),
        delivered: AtomicU64::new(0),
        last_delivery_ns: AtomicU64::new(0),
        hist: (0..SHARDS)
            .map(|_| Mutex::new(stats::new_histogram()))
            .collect(),
        late: Mutex::new(BTreeMap::new()),
        errors: Mutex::new(BTreeMap::new()),
        phase: Mutex::new("connect".into()),
        wire: WireCounters::default(),
        deflate_negotiated: AtomicUsize::new(0),
        deflate_extensions: Mutex::new(None),
    });
    progress(shared.clone());

    // Connect everything.
    let server_before = stats::sample(&args.server_pid);
    let redis_before = stats::sample(&args.redis_pid);
    let sem = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let t0 = Instant::now();
    for i in 0..args.connections {
        tokio::spawn(connection(i, cfg.clone(), shared.clone(), sem.clone()));
    }
    while shared.ready.load(Relaxed) + shared.failed.load(Relaxed) < args.connections {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let connect_s = t0.elapsed().as_secs_f64();
    let server_connected = stats::sample(&args.server_pid);
    let ready = shared.ready.load(Relaxed);
    eprintln!(
        "connected {ready}/{} in {connect_s:.1}s ({} failed)",
        args.connections,
        shared.failed.load(Relaxed)
    );
    let mut stalled_conns = Vec::new();
    let mut stalled = None;
    if args.stalled > 0 {
        if args.target != Target::GyreWs {
            return Err("--stalled needs --target gyre-ws".into());
        }
        let mut report = Stalled {
            requested: args.stalled,
            ..Stalled::default()
        };
        for k in 0..args.stalled {
            match open_stalled(k, &cfg, args.stalled_rcvbuf).await {
                Ok(ws) => stalled_conns.push(ws),
                Err(e) => shared.error(format!("stalled connect: {e}")),
            }
        }
        report.subscribed = stalled_conns.len();
        eprintln!(
            "stalled subscribers: {} of {}",
            report.subscribed, args.stalled
        );
        stalled = Some(report);
    }
    let deflate = args.target == Target::GyreWsDeflate;
    let negotiated = shared.deflate_negotiated.load(Relaxed);
    if deflate && (negotiated == 0 || negotiated < ready) {
        let errors = shared.errors.lock().unwrap().clone();
        return Err(format!(
            "permessage-deflate negotiated by {negotiated} of {} connections ({ready} ready); errors: {errors:?}",
            args.connections
        )
        .into());
    }
    *shared.phase.lock().unwrap() = "idle".into();
    tokio::time::sleep(Duration::from_secs_f64(args.idle_settle)).await;
    let server_idle = stats::sample(&args.server_pid);
    let redis_idle = stats::sample(&args.redis_pid);
    let client_idle = stats::sample(&[std::process::id()]);
    let connections = Connections {
        requested: args.connections,
        ready,
        failed: shared.failed.load(Relaxed),
        closed_before_publishing: shared.closed.load(Relaxed),
        connect_s: round3(connect_s),
        connects_per_s: (ready as f64 / connect_s).round(),
        server_cpu_us_per_connect: (!args.server_pid.is_empty())
            .then(|| per(server_connected.cpu_s - server_before.cpu_s, ready as u64))
            .flatten(),
        deflate_negotiated: deflate.then_some(negotiated),
        deflate_extensions: shared.deflate_extensions.lock().unwrap().clone(),
    };
    let memory = Memory {
        server_rss_before_kib: server_before.rss_kib,
        server_rss_idle_kib: server_idle.rss_kib,
        server_rss_per_connection_kib: (!args.server_pid.is_empty() && ready > 0).then(|| {
            round3((server_idle.rss_kib as f64 - server_before.rss_kib as f64) / ready as f64)
        }),
        redis_rss_before_kib: redis_before.rss_kib,
        redis_rss_idle_kib: redis_idle.rss_kib,
        client_rss_idle_kib: client_idle.rss_kib,
    };

    let publish_base = args.publish_url.clone().unwrap_or_else(|| args.url.clone());
    let mut phases = Vec::new();
    for (n, &rate) in args.rate.iter().enumerate() {
        let rate = if rate > 0.0 { rate } else { 1.0 };
        let messages = args
            .duration
            .map_or(args.messages, |d| (rate * d).round().max(1.0) as u64);
        *shared.phase.lock().unwrap() = format!("publish {rate}/s");
        let mut pubs = Vec::new();
        for _ in 0..args.publishers {
            pubs.push(Publisher::new(&args, via, &publish_base).await?);
        }
        let _ = shared.take_latency();
        shared.late.lock().unwrap().clear();
        let subscribers_at_start = shared.ready.load(Relaxed) - shared.closed.load(Relaxed);
        let closed0 = shared.closed.load(Relaxed);
        let d0 = shared.delivered.load(Relaxed);
        let s0 = stats::sample(&args.server_pid);
        let r0 = stats::sample(&args.redis_pid);
        let c0 = stats::self_cpu();
        let (wb0, wm0, wc0, wi0) = wire_sample(&shared.wire);
        let steal_timeline = stats::StealTimeline::start();
        let start = tokio::time::Instant::now();
        let start_ns = payload::now_ns();
        let mut handles = Vec::new();
        for (j, p) in pubs.into_iter().enumerate() {
            handles.push(tokio::spawn(publisher(
                p,
                j as u64,
                args.publishers as u64,
                messages,
                rate,
                start,
                args.payload_size,
                cfg.clone(),
                shared.clone(),
            )));
        }
        let mut st = PubStats::default();
        for h in handles {
            let s = h.await?;
            st.published += s.published;
            st.errors += s.errors;
            st.expected += s.expected;
        }
        let publish_s = start.elapsed().as_secs_f64();
        *shared.phase.lock().unwrap() = format!("drain {rate}/s");
        let drain_deadline = Instant::now() + Duration::from_secs_f64(args.drain_timeout);
        while shared.delivered.load(Relaxed) - d0 < st.expected && Instant::now() < drain_deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let wall_s = start.elapsed().as_secs_f64();
        let s1 = stats::sample(&args.server_pid);
        let r1 = stats::sample(&args.redis_pid);
        let c1 = stats::self_cpu();
        let (wb1, wm1, wc1, wi1) = wire_sample(&shared.wire);
        let delivered = shared.delivered.load(Relaxed) - d0;
        let ws_compressed_messages = wc1 - wc0;
        if deflate && delivered > 0 && ws_compressed_messages == 0 {
            eprintln!("WARNING: permessage-deflate negotiated but no compressed frame received");
            shared.error("deflate: negotiated but no compressed frame received");
        }
        let last = shared.last_delivery_ns.load(Relaxed);
        let span_s = (last.saturating_sub(start_ns)) as f64 / 1e9;
        let latency = Latency::of(&shared.take_latency());
        let steal = steal_timeline.finish();
        let late_slots = std::mem::take(&mut *shared.late.lock().unwrap());
        let late = late_episodes(late_slots, start_ns, &steal);
        let server_cpu = s1.cpu_s - s0.cpu_s;
        let redis_cpu = r1.cpu_s - r0.cpu_s;
        let phase = Phase {
            rate,
            messages,
            publishers: args.publishers,
            published: st.published,
            publish_errors: st.errors,
            publish_s: round3(publish_s),
            achieved_rate: (st.published as f64 / publish_s).round(),
            subscribers_at_start,
            deliveries_expected: st.expected,
            delivered,
            lost: st.expected.saturating_sub(delivered),
            extra: delivered.saturating_sub(st.expected),
            connections_closed: shared.closed.load(Relaxed) - closed0,
            deliveries_per_s: if span_s > 0.0 {
                (delivered as f64 / span_s).round()
            } else {
                0.0
            },
            latency,
            wall_s: round3(wall_s),
            server_cpu_s: round3(server_cpu),
            server_cpu_us_per_delivery: (!args.server_pid.is_empty())
                .then(|| per(server_cpu, delivered))
                .flatten(),
            server_cpu_percent: (server_cpu / wall_s * 1000.0).round() / 10.0,
            redis_cpu_s: round3(redis_cpu),
            redis_cpu_us_per_delivery: (!args.redis_pid.is_empty())
                .then(|| per(redis_cpu, delivered))
                .flatten(),
            redis_cpu_us_per_publication: (!args.redis_pid.is_empty())
                .then(|| per(redis_cpu, st.published))
                .flatten(),
            client_cpu_s: round3(c1 - c0),
            client_cpu_us_per_delivery: per(c1 - c0, delivered),
            ws_messages: wm1 - wm0,
            ws_compressed_messages,
            wire_bytes: wb1 - wb0,
            wire_bytes_per_delivery: (wb1 > wb0 && delivered > 0)
                .then(|| round3((wb1 - wb0) as f64 / delivered as f64)),
            inflated_bytes_per_delivery: (wi1 > wi0 && delivered > 0)
                .then(|| round3((wi1 - wi0) as f64 / delivered as f64)),
            late,
            steal_ms: steal.iter().map(|(_, ms)| ms).sum(),
        };
        eprintln!(
            "phase {}: rate {rate}/s, delivered {}/{} (lost {}), p50 {} µs, p99 {} µs, max {} µs, server {:?} µs/delivery, steal {} ms",
            n + 1,
            phase.delivered,
            phase.deliveries_expected,
            phase.lost,
            phase.latency.p50_us,
            phase.latency.p99_us,
            phase.latency.max_us,
            phase.server_cpu_us_per_delivery,
            phase.steal_ms
        );
        for episode in &phase.late {
            eprintln!(
                "  late (> {} ms): {} deliveries of publications sent {}–{} ms into the phase, max {} ms, steal {} ms",
                LATE_US / 1000,
                episode.deliveries,
                episode.sent_from_ms,
                episode.sent_until_ms,
                episode.max_ms,
                episode.steal_ms
            );
        }
        phases.push(phase);
        if n + 1 < args.rate.len() {
            // Let stragglers of an overloaded phase arrive (uncounted) before the next one starts:
            // wait for one quiet second, at most 60 s.
            *shared.phase.lock().unwrap() = "settle".into();
            let give_up = Instant::now() + Duration::from_secs(60);
            let mut seen = shared.delivered.load(Relaxed);
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let now = shared.delivered.load(Relaxed);
                if now == seen || Instant::now() > give_up {
                    break;
                }
                seen = now;
            }
        }
    }
    if let Some(report) = stalled.as_mut() {
        for ws in stalled_conns {
            match stalled_ending(ws).await {
                Some(how) => {
                    report.disconnected += 1;
                    *report.endings.entry(how).or_default() += 1;
                }
                None => report.still_open += 1,
            }
        }
        eprintln!(
            "stalled subscribers: {} disconnected, {} still open {:?}",
            report.disconnected, report.still_open, report.endings
        );
    }
    let errors = shared.errors.lock().unwrap().clone();
    Ok(LoadResult {
        mode: "load",
        label: args.label.clone(),
        tag: args.tag.clone(),
        target: args.target,
        publish: via,
        url: args.url.clone(),
        channels: args.channels,
        payload_size: args.payload_size,
        threads: args.threads,
        server_pids: args.server_pid.clone(),
        redis_pids: args.redis_pid.clone(),
        connections,
        memory,
        phases,
        stalled,
        errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_deliveries_in_consecutive_slots_are_one_episode_and_a_gap_starts_another() {
        let start_ns = 1_000 * 1_000_000_000;
        let slot = |ms: u64| (start_ns / 1_000_000 + ms) / LATE_SLOT_MS;
        let slots = BTreeMap::from([
            (slot(100), (3, 25_000)),
            (slot(110), (5, 40_000)),
            (slot(300), (1, 21_000)),
        ]);
        let steal = [(start_ns + 115_000_000, 10), (start_ns + 900_000_000, 20)];
        let episodes = late_episodes(slots, start_ns, &steal);
        assert_eq!(episodes.len(), 2);
        assert_eq!(
            (episodes[0].sent_from_ms, episodes[0].sent_until_ms),
            (100, 120)
        );
        assert_eq!(episodes[0].deliveries, 8);
        assert_eq!(episodes[0].max_ms, 40.0);
        assert_eq!((episodes[1].sent_from_ms, episodes[1].deliveries), (300, 1));
        assert_eq!((episodes[0].steal_ms, episodes[1].steal_ms), (10, 0));
    }

    #[test]
    fn delta_payloads_are_rebuilt_from_the_previous_one() {
        let first = payload::make(200, 1_700_000_000_000_000_001);
        let second = payload::make(200, 1_700_000_000_000_000_002);
        let patch = gyre_proto::fossil::create(&first, &second);
        let text = |data: &[u8]| String::from_utf8(data.to_vec()).unwrap();
        let frame = format!(
            "{}\n{{}}\n{}",
            json!({"push": {"channel": "c", "pub": {"data": text(&first), "offset": 1}}}),
            json!({"push": {"channel": "c", "pub": {"data": text(&patch), "offset": 2, "delta": true}}})
        );
        let mut base = Vec::new();
        let payloads = delta_payloads(frame.as_bytes(), &mut base).unwrap();
        assert_eq!(payloads, [first, second.clone()]);
        assert_eq!(base, second);
        let broken = json!({"push": {"pub": {"data": "1\n2@999,0;", "delta": true}}}).to_string();
        assert!(delta_payloads(broken.as_bytes(), &mut base).is_err());
    }

    #[test]
    fn ping_detection() {
        assert!(json_has_ping(b"{}"));
        assert!(json_has_ping(b"{}\n{\"push\":{}}"));
        assert!(json_has_ping(b"{\"push\":{\"pub\":{}}}\n{}"));
        assert!(!json_has_ping(b"{\"id\":2,\"subscribe\":{}}"));
        assert!(protobuf_has_ping(&[0]));
        assert!(protobuf_has_ping(&[2, 1, 1, 0]));
        assert!(!protobuf_has_ping(&[2, 1, 1, 1, 9]));
        assert_eq!(percent_encode("{\"a\":1}"), "%7B%22a%22%3A1%7D");
    }
}
