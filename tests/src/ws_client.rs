//! A raw WebSocket client of the Centrifugo client protocol, for protocol-level tests of `gyre`
//! (tests/tests/proxy_*.rs), plus the few helpers those tests need beside it.
//!
//! - [`WsClient`] speaks JSON (text frames, `\n`-joined messages) or Protobuf (subprotocol
//!   `centrifuge-protobuf`, binary frames, varint-delimited messages), using `gyre_proto::codec`
//!   for both directions. It is synchronous: every read has a deadline (socket read timeouts),
//!   so a test never hangs. Replies are matched by id while pushes are collected meanwhile;
//!   server pings (empty replies) are counted and, unless switched off, answered with a pong;
//!   the close frame's code and reason are kept. JSON messages are also kept as
//!   `serde_json::Value`, so tests can assert exact wire shapes.
//! - [`hs256_token`] signs connection/subscription JWTs (HS256) without depending on the proxy.
//! - [`ProxyEnv`] is `gyre` on either engine with the helpers the protocol tests share.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use gyre_proto::codec::{self, FrameBuilder};
use gyre_proto::protocol::{Command, Publication, Push, Reply};
use hmac::{KeyInit, Mac};
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::HandshakeError;
use tungstenite::http::HeaderValue;
use tungstenite::protocol::WebSocket;
use tungstenite::{Message, Utf8Bytes};

pub use gyre_proto::Encoding;

/// Default deadline for an expected reply, push or close.
pub const WAIT: Duration = Duration::from_secs(5);
/// Largest message the client accepts inside a frame.
const MAX_MESSAGE: usize = 16 << 20;

// ------------------------------------------------------------------------------------------------
// Connecting.

/// How to open a connection.
#[derive(Debug, Clone, Default)]
pub struct WsOptions {
    /// `Sec-WebSocket-Protocol` to offer (`centrifuge-protobuf` selects Protobuf).
    pub subprotocol: Option<String>,
    /// `Origin` header.
    pub origin: Option<String>,
    /// More request headers (`Cookie`…).
    pub headers: Vec<(String, String)>,
    /// `SO_RCVBUF` set before connecting.
    pub receive_buffer: Option<usize>,
    /// `TCP_MAXSEG` set before connecting: a small MSS keeps the server's send buffer for this
    /// connection small (Linux sizes it from the MSS), so a client that stops reading
    /// back-pressures the server after kilobytes instead of megabytes.
    pub max_segment: Option<u32>,
}

impl WsOptions {
    /// The options of an SDK in this encoding: no subprotocol for JSON (as centrifuge-js),
    /// `centrifuge-protobuf` for Protobuf.
    pub fn for_encoding(encoding: Encoding) -> Self {
        Self {
            subprotocol: (encoding == Encoding::Protobuf)
                .then(|| Encoding::PROTOBUF_WS_SUBPROTOCOL.to_owned()),
            ..Self::default()
        }
    }
}

/// Why the WebSocket handshake did not complete.
#[derive(Debug)]
pub struct HandshakeFailure {
    /// The HTTP status, when the server answered with something other than 101.
    pub status: Option<u16>,
    pub message: String,
}

/// A close frame (or an abrupt end, code 1006) as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    pub code: u16,
    pub reason: String,
}

/// Code recorded when the TCP connection ended without a close frame (RFC 6455's 1006).
pub const ABNORMAL_CLOSE: u16 = 1006;

/// One message received from the server.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub reply: Reply,
    /// The message as JSON (JSON connections only).
    pub json: Option<serde_json::Value>,
    /// Index of the WebSocket message (frame) it arrived in, counted from 0.
    pub frame: usize,
}

impl Incoming {
    /// The JSON of this message; panics on a Protobuf connection.
    pub fn json(&self) -> &serde_json::Value {
        self.json.as_ref().expect("a JSON connection")
    }

    pub fn push(&self) -> &Push {
        self.reply.push.as_ref().expect("a push")
    }

    /// The publication of a `pub` push; panics otherwise.
    pub fn publication(&self) -> &Publication {
        self.push()
            .r#pub
            .as_ref()
            .unwrap_or_else(|| panic!("not a publication push: {:?}", self.reply))
    }
}

/// A raw client connection.
pub struct WsClient {
    ws: WebSocket<TcpStream>,
    encoding: Encoding,
    /// Received and not yet taken (pings are not kept).
    inbox: VecDeque<Incoming>,
    frames: usize,
    /// Raw frames received, when [`WsClient::record_frames`] is on.
    raw_frames: Vec<Bytes>,
    record: bool,
    close: Option<Close>,
    auto_pong: bool,
    pings: usize,
    next_id: u32,
    /// `Sec-WebSocket-Protocol` of the handshake response.
    pub subprotocol: Option<String>,
}

impl WsClient {
    /// Connects to `url` in `encoding` as an SDK would; panics on failure.
    pub fn connect(url: &str, encoding: Encoding) -> Self {
        Self::connect_with(url, WsOptions::for_encoding(encoding))
            .unwrap_or_else(|e| panic!("WebSocket handshake with {url} failed: {e:?}"))
    }

    /// Connects with explicit options. The encoding follows the negotiated subprotocol.
    pub fn connect_with(url: &str, options: WsOptions) -> Result<Self, HandshakeFailure> {
        let failure = |message: String| HandshakeFailure {
            status: None,
            message,
        };
        let mut request = url
            .into_client_request()
            .map_err(|e| failure(format!("bad url {url}: {e}")))?;
        if let Some(protocol) = &options.subprotocol {
            request.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                HeaderValue::from_str(protocol).expect("header value"),
            );
        }
        if let Some(origin) = &options.origin {
            request.headers_mut().insert(
                "Origin",
                HeaderValue::from_str(origin).expect("header value"),
            );
        }
        for (name, value) in &options.headers {
            request.headers_mut().append(
                tungstenite::http::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
                HeaderValue::from_str(value).expect("header value"),
            );
        }
        let authority = request
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_default();
        let addr: SocketAddr = authority
            .parse()
            .map_err(|e| failure(format!("need ip:port in {url}: {e}")))?;
        let stream =
            open_tcp(addr, &options).map_err(|e| failure(format!("connect {addr}: {e}")))?;
        stream.set_read_timeout(Some(WAIT)).ok();
        stream.set_write_timeout(Some(WAIT)).ok();
        stream.set_nodelay(true).ok();
        let config = tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE));
        let (ws, response) =
            match tungstenite::client::client_with_config(request, stream, Some(config)) {
                Ok(ok) => ok,
                Err(HandshakeError::Failure(tungstenite::Error::Http(response))) => {
                    return Err(HandshakeFailure {
                        status: Some(response.status().as_u16()),
                        message: format!("HTTP {}", response.status()),
                    });
                }
                Err(e) => return Err(failure(e.to_string())),
            };
        let subprotocol = response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let encoding = match subprotocol.as_deref() {
            Some(Encoding::PROTOBUF_WS_SUBPROTOCOL) => Encoding::Protobuf,
            _ if url.contains("format=protobuf") || url.contains("cf_protocol=protobuf") => {
                Encoding::Protobuf
            }
            _ => Encoding::Json,
        };
        Ok(Self {
            ws,
            encoding,
            inbox: VecDeque::new(),
            frames: 0,
            raw_frames: Vec::new(),
            record: false,
            close: None,
            auto_pong: true,
            pings: 0,
            next_id: 1000,
            subprotocol,
        })
    }

    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// Answer server pings with a pong (the default) or ignore them.
    pub fn set_auto_pong(&mut self, on: bool) {
        self.auto_pong = on;
    }

    /// Keep every received frame's bytes (see [`WsClient::raw_frames`]).
    pub fn record_frames(&mut self) {
        self.record = true;
    }

    pub fn raw_frames(&self) -> &[Bytes] {
        &self.raw_frames
    }

    /// Server pings seen so far.
    pub fn pings(&self) -> usize {
        self.pings
    }

    /// A fresh command id (1000, 1001, …), so ids written by hand in JSON (below 1000) never
    /// collide with it.
    pub fn next_id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id - 1
    }

    // --------------------------------------------------------------------------------------------
    // Sending.

    /// Sends `text` as one text frame, verbatim.
    pub fn send_text(&mut self, text: &str) {
        self.send_message(Message::Text(Utf8Bytes::from(text)));
    }

    /// Sends `bytes` as one binary frame, verbatim.
    pub fn send_binary(&mut self, bytes: &[u8]) {
        self.send_message(Message::Binary(Bytes::copy_from_slice(bytes)));
    }

    /// Encodes `commands` in this connection's encoding and sends them as ONE frame.
    pub fn send(&mut self, commands: &[Command]) {
        let mut frame = FrameBuilder::new(self.encoding);
        for command in commands {
            let bytes = codec::encode_command(self.encoding, command).expect("encode command");
            frame.push(&bytes);
        }
        let bytes = frame.take();
        match self.encoding {
            Encoding::Json => self.send_message(Message::Text(
                Utf8Bytes::try_from(bytes).expect("JSON frames are UTF-8"),
            )),
            Encoding::Protobuf => self.send_message(Message::Binary(bytes)),
        }
    }

    /// Sends one command and waits for its reply (any id the command has; 0 gets a fresh one).
    pub fn call(&mut self, mut command: Command) -> Reply {
        if command.id == 0 {
            command.id = self.next_id();
        }
        let id = command.id;
        self.send(&[command]);
        self.reply(id).reply
    }

    /// The pong: an empty command (`{}` / `0x00`).
    pub fn pong(&mut self) {
        let empty = self.encoding.empty_message();
        match self.encoding {
            Encoding::Json => {
                self.send_message(Message::Text(Utf8Bytes::try_from(empty).expect("utf-8")))
            }
            Encoding::Protobuf => self.send_message(Message::Binary(empty)),
        }
    }

    fn send_message(&mut self, message: Message) {
        if let Err(e) = self.ws.send(message) {
            panic!("WebSocket send failed: {e} (close seen: {:?})", self.close);
        }
    }

    /// Sends a message, tolerating a connection the server already closed.
    pub fn try_send_text(&mut self, text: &str) -> bool {
        self.ws.send(Message::Text(Utf8Bytes::from(text))).is_ok()
    }

    // --------------------------------------------------------------------------------------------
    // Receiving.

    /// Waits for the reply with `id` (pushes received meanwhile stay queued); panics after
    /// [`WAIT`] or when the connection closes first.
    pub fn reply(&mut self, id: u32) -> Incoming {
        self.reply_within(id, WAIT)
    }

    pub fn reply_within(&mut self, id: u32, timeout: Duration) -> Incoming {
        match self.take_matching(timeout, |m| m.reply.id == id) {
            Some(m) => m,
            None => panic!(
                "no reply with id {id} within {timeout:?}; close: {:?}; queued: {:?}",
                self.close,
                self.inbox.iter().map(|m| &m.reply).collect::<Vec<_>>()
            ),
        }
    }

    /// The next push (any kind), or `None` after `timeout`.
    pub fn next_push(&mut self, timeout: Duration) -> Option<Incoming> {
        self.take_matching(timeout, |m| m.reply.id == 0 && m.reply.push.is_some())
    }

    /// The next message of any kind (replies and pushes, not pings), or `None` after `timeout`.
    pub fn next_message(&mut self, timeout: Duration) -> Option<Incoming> {
        self.take_matching(timeout, |_| true)
    }

    /// The next `n` publication pushes of `channel` (other pushes are kept); panics if they do
    /// not all arrive within `timeout`.
    pub fn publications(&mut self, channel: &str, n: usize, timeout: Duration) -> Vec<Incoming> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            let is_pub = |m: &Incoming| {
                m.reply
                    .push
                    .as_ref()
                    .is_some_and(|p| p.channel == channel && p.r#pub.is_some())
            };
            match self.take_matching(left, is_pub) {
                Some(m) => out.push(m),
                None => panic!(
                    "got {} of {n} publications on {channel} within {timeout:?} (offsets {:?}); close: {:?}",
                    out.len(),
                    out.iter()
                        .map(|m| m.publication().offset)
                        .collect::<Vec<_>>(),
                    self.close
                ),
            }
        }
        out
    }

    /// Asserts that no publication of `channel` arrives within `quiet`.
    pub fn assert_no_publication(&mut self, channel: &str, quiet: Duration) {
        let got = self.take_matching(quiet, |m| {
            m.reply
                .push
                .as_ref()
                .is_some_and(|p| p.channel == channel && p.r#pub.is_some())
        });
        if let Some(m) = got {
            panic!("unexpected publication on {channel}: {:?}", m.reply);
        }
    }

    /// Reads until the server closes the connection; returns the close frame's code and reason
    /// (1006 when the TCP connection ended without one). Messages before it stay queued.
    pub fn expect_close(&mut self, timeout: Duration) -> Close {
        let deadline = Instant::now() + timeout;
        while self.close.is_none() {
            if Instant::now() >= deadline {
                panic!(
                    "connection not closed within {timeout:?}; queued: {:?}",
                    self.inbox.iter().map(|m| &m.reply).collect::<Vec<_>>()
                );
            }
            self.read_once(deadline);
        }
        self.close.clone().expect("close")
    }

    /// Reads (answering pings when auto-pong is on) for `duration` and panics if the server
    /// closes the connection meanwhile.
    pub fn stay_open(&mut self, duration: Duration) {
        let deadline = Instant::now() + duration;
        while Instant::now() < deadline {
            self.read_once(deadline);
            if let Some(close) = &self.close {
                panic!("connection closed while it should stay open: {close:?}");
            }
        }
    }

    /// The close seen so far, if any.
    pub fn closed(&self) -> Option<&Close> {
        self.close.as_ref()
    }

    /// Everything received and not taken yet.
    pub fn drain(&mut self) -> Vec<Incoming> {
        self.inbox.drain(..).collect()
    }

    fn take_matching(
        &mut self,
        timeout: Duration,
        matches: impl Fn(&Incoming) -> bool,
    ) -> Option<Incoming> {
        let deadline = Instant::now() + timeout;
        let mut seen = 0;
        loop {
            if let Some(pos) = self.inbox.iter().skip(seen).position(&matches) {
                return self.inbox.remove(seen + pos);
            }
            seen = self.inbox.len();
            if self.close.is_some() || Instant::now() >= deadline {
                return None;
            }
            self.read_once(deadline);
        }
    }

    /// One read with a deadline: decodes a frame into the inbox, records a close, or returns on
    /// timeout.
    fn read_once(&mut self, deadline: Instant) {
        if self.close.is_some() {
            return;
        }
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        self.ws.get_mut().set_read_timeout(Some(left)).ok();
        match self.ws.read() {
            Ok(Message::Text(text)) => self.decode_frame(Bytes::from(text), Encoding::Json),
            Ok(Message::Binary(data)) => self.decode_frame(data, Encoding::Protobuf),
            Ok(Message::Close(frame)) => {
                self.close = Some(match frame {
                    Some(f) => Close {
                        code: u16::from(f.code),
                        reason: f.reason.to_string(),
                    },
                    // A close frame without a status code (RFC 6455: 1005).
                    None => Close {
                        code: 1005,
                        reason: String::new(),
                    },
                });
                // Answer the close (tungstenite queued the reply); errors do not matter now.
                let _ = self.ws.flush();
            }
            Ok(_) => {} // WebSocket ping/pong frames: tungstenite answers pings itself.
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => {
                self.close = Some(Close {
                    code: ABNORMAL_CLOSE,
                    reason: format!("no close frame: {e}"),
                });
            }
        }
    }

    fn decode_frame(&mut self, frame: Bytes, kind: Encoding) {
        assert_eq!(
            kind, self.encoding,
            "a {kind:?} frame on a {:?} connection",
            self.encoding
        );
        if self.record {
            self.raw_frames.push(frame.clone());
        }
        let index = self.frames;
        self.frames += 1;
        let jsons: Vec<Option<serde_json::Value>> = match kind {
            Encoding::Json => {
                let text = std::str::from_utf8(&frame).expect("text frame");
                text.split('\n')
                    .map(|line| {
                        Some(serde_json::from_str(line).unwrap_or_else(|e| {
                            panic!("server sent invalid JSON line {line:?}: {e}")
                        }))
                    })
                    .collect()
            }
            Encoding::Protobuf => Vec::new(),
        };
        let replies: Vec<Reply> = codec::decode_replies(kind, frame.clone(), MAX_MESSAGE)
            .map(|r| r.unwrap_or_else(|e| panic!("undecodable server frame {frame:?}: {e}")))
            .collect();
        if kind == Encoding::Json {
            assert_eq!(jsons.len(), replies.len(), "frame {frame:?}");
        }
        for (i, reply) in replies.into_iter().enumerate() {
            if reply == Reply::default() {
                self.pings += 1;
                if self.auto_pong {
                    self.pong();
                }
                continue;
            }
            self.inbox.push_back(Incoming {
                reply,
                json: jsons.get(i).cloned().flatten(),
                frame: index,
            });
        }
    }
}

fn open_tcp(addr: SocketAddr, options: &WsOptions) -> std::io::Result<TcpStream> {
    if options.receive_buffer.is_none() && options.max_segment.is_none() {
        return TcpStream::connect_timeout(&addr, WAIT);
    }
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    if let Some(size) = options.receive_buffer {
        socket.set_recv_buffer_size(size)?;
    }
    if let Some(mss) = options.max_segment {
        socket.set_tcp_mss(mss)?;
    }
    socket.connect_timeout(&addr.into(), WAIT)?;
    Ok(socket.into())
}

// ------------------------------------------------------------------------------------------------
// Commands.

/// Builders for the commands tests send as structs (Protobuf connections, or to avoid JSON by
/// hand).
pub mod cmd {
    use gyre_proto::protocol::{
        Command, ConnectRequest, HistoryRequest, PublishRequest, StreamPosition, SubscribeRequest,
    };

    pub fn connect(id: u32, token: &str) -> Command {
        Command {
            id,
            connect: Some(ConnectRequest {
                token: token.to_owned(),
                name: "gyre-tests".to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    pub fn subscribe(id: u32, channel: &str) -> Command {
        Command {
            id,
            subscribe: Some(SubscribeRequest {
                channel: channel.to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A recovering subscribe from `offset`/`epoch`.
    pub fn recover(id: u32, channel: &str, offset: u64, epoch: &str) -> Command {
        Command {
            id,
            subscribe: Some(SubscribeRequest {
                channel: channel.to_owned(),
                recover: true,
                recoverable: true,
                positioned: true,
                offset,
                epoch: epoch.to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    pub fn publish(id: u32, channel: &str, data: &[u8]) -> Command {
        Command {
            id,
            publish: Some(PublishRequest {
                channel: channel.to_owned(),
                data: bytes::Bytes::copy_from_slice(data),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// `history` with `limit` (-1 = all) and an optional `since`.
    pub fn history(id: u32, channel: &str, limit: i32, since: Option<(u64, &str)>) -> Command {
        Command {
            id,
            history: Some(HistoryRequest {
                channel: channel.to_owned(),
                limit,
                since: since.map(|(offset, epoch)| StreamPosition {
                    offset,
                    epoch: epoch.to_owned(),
                }),
                reverse: false,
            }),
            ..Default::default()
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Tokens.

/// An HS256 JWT of `claims` signed with `secret`.
pub fn hs256_token(secret: &str, claims: &serde_json::Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{header}.{payload}");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key");
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

/// Unix time in seconds.
pub fn unix_now() -> i64 {
    crate::wait::now_ms() / 1000
}

// ------------------------------------------------------------------------------------------------
// Test environments.

/// Which engine a [`ProxyEnv`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    Memory,
    Redis,
}

/// `gyre` (and, for the Redis engine, a `redis-server` with the module on TCP).
pub struct ProxyEnv {
    // Declared first, so gyre is killed before Redis goes away.
    pub gyre: crate::GyreProcess,
    pub redis: Option<crate::RedisServer>,
    pub engine: EngineKind,
}

impl ProxyEnv {
    /// Starts `builder` on `engine`.
    pub fn start(engine: EngineKind, builder: crate::GyreBuilder) -> Self {
        match engine {
            EngineKind::Memory => Self {
                gyre: builder.memory().start(),
                redis: None,
                engine,
            },
            EngineKind::Redis => {
                let redis = crate::RedisServer::builder().tcp().start();
                Self {
                    gyre: builder.redis(&redis).start(),
                    redis: Some(redis),
                    engine,
                }
            }
        }
    }

    pub fn ws_url(&self) -> String {
        self.gyre.ws_url()
    }

    /// A connection token of `user`, valid for an hour.
    pub fn token(&self, user: &str) -> String {
        hs256_token(
            self.gyre.hmac_secret(),
            &serde_json::json!({"sub": user, "exp": unix_now() + 3600}),
        )
    }

    /// A JSON client connected as `user` (connect reply checked).
    pub fn client(&self, user: &str) -> WsClient {
        self.client_in(Encoding::Json, user)
    }

    /// A client in `encoding` connected as `user`.
    pub fn client_in(&self, encoding: Encoding, user: &str) -> WsClient {
        let mut client = WsClient::connect(&self.ws_url(), encoding);
        let reply = client.call(cmd::connect(0, &self.token(user)));
        assert!(
            reply.error.is_none() && reply.connect.is_some(),
            "connect as {user}: {reply:?}"
        );
        client
    }

    /// POSTs `/api/<method>` and returns the response JSON (panics unless HTTP 200).
    pub fn api(&self, method: &str, body: serde_json::Value) -> serde_json::Value {
        let text = self.gyre.api(method, &body.to_string());
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("/api/{method} answered non-JSON {text:?}: {e}"))
    }

    /// `/api/publish` of `data` to `channel`; returns `(offset, epoch)`.
    pub fn publish(&self, channel: &str, data: serde_json::Value) -> (u64, String) {
        let reply = self.api(
            "publish",
            serde_json::json!({"channel": channel, "data": data}),
        );
        let result = &reply["result"];
        let offset = result["offset"]
            .as_u64()
            .unwrap_or_else(|| panic!("publish to {channel}: {reply}"));
        let epoch = result["epoch"].as_str().unwrap_or_default().to_owned();
        (offset, epoch)
    }

    /// A redis connection (Redis engine only).
    pub fn redis_connection(&self) -> crate::Connection {
        self.redis
            .as_ref()
            .expect("a Redis engine environment")
            .connection()
    }
}

/// Both engines, for tests that must hold on each.
pub fn engines() -> [EngineKind; 2] {
    [EngineKind::Memory, EngineKind::Redis]
}

/// One `#[test]` per engine (`memory::<name>`, `redis::<name>`) for each scenario function
/// `fn <name>(EngineKind)` of the calling test file.
#[macro_export]
macro_rules! on_both_engines {
    ($($(#[$attr:meta])* $name:ident,)*) => {
        mod memory {
            $( $(#[$attr])* #[test] fn $name() {
                super::$name($crate::ws_client::EngineKind::Memory)
            } )*
        }
        mod redis {
            $( $(#[$attr])* #[test] fn $name() {
                super::$name($crate::ws_client::EngineKind::Redis)
            } )*
        }
    };
}
