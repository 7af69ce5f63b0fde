//! Bidirectional WebSocket (`/connection/websocket`): the session's frames in text (JSON) or
//! binary (Protobuf, subprotocol `centrifuge-protobuf`) WebSocket messages.
//!
//! Reading goes through tungstenite, in the connection's one task (the driver's duplex loop).
//! Writing does not: a message pushed while nothing is queued is framed and written into the TCP
//! socket right where it is pushed ([`DirectSocket`]: the hub's broadcast writes every
//! subscriber's frame itself, one vectored send each, with no task to wake). What the socket
//! does not take at once queues in the outbox, and the task writes everything queued as one
//! WebSocket message (messages joined per the encoding's framing) once the socket is writable,
//! so a client that falls behind catches up in few writes. tungstenite's own frames (pongs, close)
//! join the same order through the outbox ([`SocketIo`]).

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use base64::Engine as _;
use bytes::{Buf, Bytes, BytesMut};
use futures_util::future::Either;
use futures_util::{FutureExt, StreamExt};
use gyre_proto::Encoding;
use gyre_proto::codec::FrameBuilder;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto::upgrade::{self, Parts};
use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};

use super::driver::{Connection, Duplex, End};
use super::permessage_deflate::InflatingIo;
use super::uni;
use crate::hooks::headers::ClientContext;
use crate::protocol::node::Node;
use crate::protocol::session::{Mode, TransportInfo};
use crate::queue::{Direct, DirectWrite, Outbox, Writes};
use crate::transport::Transports;
use crate::transport::admission::{ConnectionSlot, Unauthenticated};
use crate::transport::deadline::{TimedIo, upgrading};
use crate::transport::http::{Body, empty, text};
use crate::transport::stream_writer::within;
use gyre_proto::codec::deflate::{self, Deflate};
use gyre_proto::codes::{self, Disconnect};

/// How long to wait for the client's close frame after sending ours.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// Read buffer per connection: small, because idle connections are the common case and the
/// default (128 KiB) would cost that much memory per connection.
const READ_BUFFER: usize = 512;

pub type Socket = WebSocketStream<InflatingIo<TokioIo<Upgraded>>>;

/// Wraps an upgraded connection with our WebSocket limits, for a transport that reads and
/// writes through tungstenite (SockJS's `websocket`); `compressed` when the handshake
/// negotiated permessage-deflate.
pub async fn accept(upgraded: Upgraded, max_message_size: usize, compressed: bool) -> Socket {
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(Some(max_message_size))
        .max_frame_size(Some(max_message_size));
    let io = InflatingIo::new(TokioIo::new(upgraded), compressed, max_message_size);
    WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await
}

/// Why a request is not a WebSocket handshake this server completes (RFC 6455 §4.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadHandshake {
    /// The opening handshake is a GET.
    NotGet,
    /// No `Upgrade: websocket` (and `Connection: upgrade`), or no key at all.
    NotUpgrade,
    /// `Sec-WebSocket-Version` is not 13, the only version there is.
    Version,
    /// `Sec-WebSocket-Key` is not 16 bytes in base64.
    Key,
}

impl BadHandshake {
    /// The answer: 405, 400, or 426 naming the version we speak (RFC 6455 §4.4).
    pub fn response(self) -> Response<Body> {
        match self {
            BadHandshake::NotGet => {
                let mut response = text(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "a WebSocket connection starts with GET and Upgrade: websocket",
                );
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET"));
                response
            }
            BadHandshake::NotUpgrade => text(
                StatusCode::BAD_REQUEST,
                "expected a WebSocket upgrade (Upgrade: websocket, Connection: Upgrade, \
                 Sec-WebSocket-Key)",
            ),
            BadHandshake::Version => {
                let mut response = text(
                    StatusCode::UPGRADE_REQUIRED,
                    "unsupported Sec-WebSocket-Version: this server speaks version 13",
                );
                response.headers_mut().insert(
                    header::SEC_WEBSOCKET_VERSION,
                    HeaderValue::from_static("13"),
                );
                response
            }
            BadHandshake::Key => text(
                StatusCode::BAD_REQUEST,
                "Sec-WebSocket-Key must be 16 bytes in base64",
            ),
        }
    }
}

/// The `Sec-WebSocket-Key` of a valid WebSocket opening handshake.
pub fn handshake_key(method: &Method, headers: &HeaderMap) -> Result<HeaderValue, BadHandshake> {
    if method != Method::GET {
        return Err(BadHandshake::NotGet);
    }
    let has_token = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|v| v.trim().eq_ignore_ascii_case(token))
    };
    if !has_token(header::UPGRADE, "websocket") || !has_token(header::CONNECTION, "upgrade") {
        return Err(BadHandshake::NotUpgrade);
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or(BadHandshake::NotUpgrade)?;
    let version = headers.get(header::SEC_WEBSOCKET_VERSION);
    if version.is_none_or(|v| v.as_bytes() != b"13") {
        return Err(BadHandshake::Version);
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(key.as_bytes());
    if decoded.is_ok_and(|nonce| nonce.len() == 16) {
        Ok(key.clone())
    } else {
        Err(BadHandshake::Key)
    }
}

/// The `101 Switching Protocols` answer to an upgrade request with `key`; the caller adds the
/// negotiated subprotocol and extensions.
pub fn switching_protocols(key: &HeaderValue) -> http::response::Builder {
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade")
        .header(
            header::SEC_WEBSOCKET_ACCEPT,
            derive_accept_key(key.as_bytes()),
        )
}

/// Answers a WebSocket upgrade request: the handshake, admission, the subprotocol (encoding) and
/// permessage-deflate negotiation; the connection is served in a task of `transports`. `mode`
/// is [`Mode::Unidirectional`] for `/connection/uni_websocket` (a ConnectRequest in, from
/// `cf_connect` or else the first message, then only JSON pushes out), else bidirectional
/// (`/connection/websocket`: commands in, replies and pushes out).
pub fn upgrade(
    node: Arc<Node>,
    transports: &Transports,
    mut request: Request<Incoming>,
    mode: Mode,
) -> Response<Body> {
    let headers = request.headers();
    let key = match handshake_key(request.method(), headers) {
        Ok(key) => key,
        Err(bad) => return bad.response(),
    };
    if let Err(refused) = super::http::admit(&node, transports, headers) {
        return refused;
    }
    let offered: Vec<String> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|p| p.trim().to_owned()))
        .collect();
    let query = request.uri().query().unwrap_or("");
    let protobuf_query = query
        .split('&')
        .any(|kv| kv == "format=protobuf" || kv == "cf_protocol=protobuf");
    let (transport, echo, cf_connect, max_message_size) = if mode == Mode::Unidirectional {
        let cf_connect = super::http::query_param(&request, "cf_connect").map(Bytes::from);
        let limit = node.config.uni_websocket.max_message_size();
        let transport = TransportInfo {
            name: "uni_websocket",
            encoding: Encoding::Json,
            mode,
            deflate: None,
        };
        (transport, None, cf_connect, limit)
    } else {
        let (encoding, echo) = if offered
            .iter()
            .any(|p| p == Encoding::PROTOBUF_WS_SUBPROTOCOL)
        {
            (Encoding::Protobuf, Some(Encoding::PROTOBUF_WS_SUBPROTOCOL))
        } else if offered.iter().any(|p| p == Encoding::JSON_WS_SUBPROTOCOL) {
            (Encoding::Json, Some(Encoding::JSON_WS_SUBPROTOCOL))
        } else if protobuf_query {
            (Encoding::Protobuf, None)
        } else {
            (Encoding::Json, None)
        };
        let limit = node.config.websocket.max_message_size();
        let offers = headers
            .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
            .iter()
            .filter_map(|v| v.to_str().ok());
        let deflate = (node.config.websocket.compression
            && super::permessage_deflate::accepts(offers))
        .then(|| node.config.websocket.deflate());
        (bidirectional(encoding, deflate), echo, None, limit)
    };
    let compressed = transport.deflate.is_some();
    // What the backend hooks forward of the upgrade request's headers.
    let context = node.hooks.capture(request.headers());
    let upgrade = hyper::upgrade::on(&mut request);
    // The session authenticates the connection (or it closes): its slot goes along.
    let unauthenticated = ConnectionSlot::take(&request);
    upgrading(&request);
    transports.tasks.spawn(async move {
        // Scoped so that nothing of the upgrade stays in the task (and in every idle
        // connection's memory) while the connection is served.
        let upgraded = match upgrade.await {
            Ok(upgraded) => upgraded,
            Err(error) => {
                tracing::debug!(%error, "websocket upgrade failed");
                return;
            }
        };
        serve(
            node,
            upgraded,
            transport,
            cf_connect,
            max_message_size,
            unauthenticated,
            context,
        )
        .await;
    });

    let mut response = switching_protocols(&key);
    if let Some(protocol) = echo {
        response = response.header(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(protocol),
        );
    }
    if compressed {
        response = response.header(
            header::SEC_WEBSOCKET_EXTENSIONS,
            HeaderValue::from_static(super::permessage_deflate::RESPONSE),
        );
    }
    response
        .body(empty())
        .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "upgrade"))
}

/// `/connection/websocket`'s transport, with the negotiated encoding and compression.
pub fn bidirectional(encoding: Encoding, deflate: Option<Deflate>) -> TransportInfo {
    TransportInfo {
        name: "websocket",
        encoding,
        mode: Mode::Bidirectional,
        deflate,
    }
}

/// Runs one upgraded WebSocket connection to its end, in one task: the session and reading;
/// writing happens in this task or, for a message pushed while nothing is queued, right where it
/// is pushed (see [`DirectSocket`]). A unidirectional connection's connect request is
/// `cf_connect` when the URL carried it, else the client's first message.
///
/// Not an `async fn`: its arguments and what is built from them would all stay in the future,
/// which every idle connection's task carries. The state is built here and the future holds
/// only that.
pub fn serve(
    node: Arc<Node>,
    upgraded: Upgraded,
    transport: TransportInfo,
    cf_connect: Option<Bytes>,
    max_message_size: usize,
    unauthenticated: Option<Unauthenticated>,
    context: ClientContext,
) -> impl Future<Output = ()> + Send {
    let Some((mut connection, mut socket)) = open(
        node,
        upgraded,
        transport,
        cf_connect,
        max_message_size,
        context,
    ) else {
        return Either::Left(std::future::ready(()));
    };
    connection.until_connected(unauthenticated);
    Either::Right(async move {
        let end = connection.run_duplex(&mut socket).await;
        // Boxed: the closing future (which owns the connection) is larger than the run loop's,
        // and inline it would set the size of every idle connection's task.
        Box::pin(connection.close_duplex(end, &mut socket)).await;
        // The direct writer holds the socket too: without it, the socket closes with this task.
        socket.outbox.detach_direct();
    })
}

/// The connection and its socket, for [`serve`]; `None` when the upgraded connection is not a
/// TCP socket.
fn open(
    node: Arc<Node>,
    upgraded: Upgraded,
    transport: TransportInfo,
    cf_connect: Option<Bytes>,
    max_message_size: usize,
    context: ClientContext,
) -> Option<(Connection, WsDuplex)> {
    // The TCP socket itself, so that any thread can write to it without waiting (the
    // connection is HTTP/1.1 over TCP: the server never serves anything else).
    let Parts {
        io,
        read_buf: unread,
        ..
    } = match upgrade::downcast::<TokioIo<TimedIo>>(upgraded) {
        Ok(parts) => parts,
        Err(_) => {
            tracing::warn!("websocket upgrade is not over a TCP socket; closing it");
            return None;
        }
    };
    let stream = Arc::new(io.into_inner().into_inner());
    let connection = Connection::open(&node, transport, context);
    let shape = Shape::of(&transport, node.config.uni_websocket.join_push_messages);
    let outbox = Arc::clone(connection.outbox());
    let sent = crate::metrics::transport_counter(crate::metrics::MESSAGES_SENT, "websocket");
    outbox.set_direct(Box::new(DirectSocket {
        stream: Arc::clone(&stream),
        shape,
        sent: sent.clone(),
    }));
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(Some(max_message_size))
        .max_frame_size(Some(max_message_size));
    let reader = SocketIo {
        stream: Arc::clone(&stream),
        // Even empty, hyper's slice keeps its whole read buffer alive: copy what is there.
        unread: Bytes::copy_from_slice(&unread),
        outbox: Arc::clone(&outbox),
    };
    let io = InflatingIo::new(reader, shape.compressed, max_message_size);
    // Completes at once (it only builds the stream): no need to carry a future for it.
    let Some(socket) =
        WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).now_or_never()
    else {
        // Not expected; if it happens, the session still leaves the hub properly.
        tracing::error!("websocket stream not ready at once; closing the connection");
        tokio::spawn(connection.close(End::ClientGone));
        return None;
    };
    let socket = WsDuplex {
        socket,
        stream,
        outbox,
        shape,
        write_timeout: node.config.websocket.write_timeout,
        sent,
        client_gone: false,
        connect_pending: shape.mode == Mode::Unidirectional,
        cf_connect,
    };
    Some((connection, socket))
}

/// How queued messages become WebSocket messages.
#[derive(Debug, Clone, Copy)]
struct Shape {
    /// A unidirectional client gets the Push of each queued Reply ([`uni::as_sent`]).
    mode: Mode,
    /// The messages' encoding, which sets the frames' opcode (text or binary).
    encoding: Encoding,
    /// The queued messages are permessage-deflate pieces; their message goes out with RSV1.
    compressed: bool,
    /// Everything queued goes out as one message, joined per the encoding's framing, rather
    /// than one message each (`uni_websocket.join_push_messages`).
    joined: bool,
}

impl Shape {
    /// `join_pushes` applies to a unidirectional connection; a bidirectional one always joins.
    fn of(transport: &TransportInfo, join_pushes: bool) -> Self {
        Self {
            mode: transport.mode,
            encoding: transport.encoding,
            compressed: transport.deflate.is_some(),
            joined: transport.mode != Mode::Unidirectional || join_pushes,
        }
    }

    /// The frame header and payload that carry one queued message on its own.
    fn frame(self, message: &Bytes) -> (FrameHead, Bytes) {
        let payload = if self.compressed {
            deflate::message_payload(self.encoding, std::slice::from_ref(message))
        } else {
            uni::as_sent(self.mode, message)
        };
        (
            FrameHead::data(self.encoding, self.compressed, payload.len()),
            payload,
        )
    }

    /// Adds the frames that carry several queued messages: one joined message, or one each.
    fn frames(self, messages: &[Bytes], frames: &mut Vec<(FrameHead, Bytes)>) {
        if !self.joined {
            frames.extend(messages.iter().map(|message| self.frame(message)));
            return;
        }
        let payload = if self.compressed {
            deflate::message_payload(self.encoding, messages)
        } else {
            let mut frame = FrameBuilder::with_capacity(self.encoding, payload_size(messages));
            for message in messages {
                frame.push(&uni::as_sent(self.mode, message));
            }
            frame.take()
        };
        let head = FrameHead::data(self.encoding, self.compressed, payload.len());
        frames.push((head, payload));
    }
}

/// A server frame's header (RFC 6455 §5.2): FIN set, never masked. Written by hand rather than
/// through tungstenite because the direct write path frames every delivery and must not fail.
#[derive(Clone, Copy)]
struct FrameHead {
    bytes: [u8; 10],
    len: u8,
}

impl FrameHead {
    fn data(encoding: Encoding, compressed: bool, payload: usize) -> Self {
        let opcode = match encoding {
            Encoding::Json => 0x1,
            Encoding::Protobuf => 0x2,
        };
        let rsv1 = if compressed { 0x40 } else { 0 };
        let mut bytes = [0; 10];
        bytes[0] = 0x80 | rsv1 | opcode;
        let len = match payload {
            0..=125 => {
                bytes[1] = payload as u8;
                2
            }
            126..=0xffff => {
                bytes[1] = 126;
                bytes[2..4].copy_from_slice(&(payload as u16).to_be_bytes());
                4
            }
            _ => {
                bytes[1] = 127;
                bytes[2..10].copy_from_slice(&(payload as u64).to_be_bytes());
                10
            }
        };
        Self { bytes, len }
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// The direct writer [`serve`] installs for a bidirectional connection over `stream` (frames of
/// `encoding`, uncompressed). Public for the fan-out benchmark (`proxy/benches/fanout.rs`), which
/// drives the hub into real sockets without WebSocket handshakes.
pub fn direct_writer(stream: Arc<TcpStream>, encoding: Encoding) -> Box<dyn DirectWrite> {
    Box::new(DirectSocket {
        stream,
        shape: Shape::of(&bidirectional(encoding, None), false),
        sent: crate::metrics::transport_counter(crate::metrics::MESSAGES_SENT, "websocket"),
    })
}

/// Writes a connection's messages into its socket from whichever thread delivers them, without
/// waiting: one vectored send of header and shared payload per delivery, no task to wake. The
/// outbox calls it only while nothing is queued or being written (see [`crate::queue`]).
struct DirectSocket {
    stream: Arc<TcpStream>,
    shape: Shape,
    sent: metrics::Counter,
}

impl DirectWrite for DirectSocket {
    fn try_write(&self, message: &Bytes, framed: bool) -> Direct {
        let (head, payload) = if framed {
            (None, message.clone())
        } else {
            let (head, payload) = self.shape.frame(message);
            (Some(head), payload)
        };
        let head = head.as_ref().map_or(&[][..], FrameHead::as_slice);
        // Straight to the socket, not through tokio's readiness bookkeeping (one cache miss
        // less per delivery). A full socket is then seen by the connection's task, whose
        // `writable()` finds out with one extra try.
        let written = match SockRef::from(&*self.stream)
            .send_vectored(&[IoSlice::new(head), IoSlice::new(&payload)])
        {
            // Errors other than a full socket show again when the connection's task writes.
            Ok(0) | Err(_) => return Direct::Blocked,
            Ok(written) => written,
        };
        if !framed {
            self.sent.increment(1);
        }
        if written == head.len() + payload.len() {
            Direct::Written
        } else if written >= head.len() {
            Direct::Partial(payload.slice(written - head.len()..))
        } else {
            let mut rest = BytesMut::with_capacity(head.len() - written + payload.len());
            rest.extend_from_slice(&head[written..]);
            rest.extend_from_slice(&payload);
            Direct::Partial(rest.freeze())
        }
    }
}

/// The socket as tungstenite sees it: reads come from the shared TCP socket (after what hyper
/// read past the upgrade request), and what tungstenite writes itself (pongs, close frames)
/// joins the connection's write order through the outbox instead of racing direct writes.
struct SocketIo {
    stream: Arc<TcpStream>,
    unread: Bytes,
    outbox: Arc<Outbox>,
}

impl AsyncRead for SocketIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.unread.is_empty() {
            let n = self.unread.len().min(buf.remaining());
            buf.put_slice(&self.unread[..n]);
            self.unread.advance(n);
            if self.unread.is_empty() {
                // An emptied slice still holds hyper's whole read buffer.
                self.unread = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        loop {
            ready!(self.stream.poll_read_ready(cx))?;
            match self.stream.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
    }
}

impl AsyncWrite for SocketIo {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.outbox.push_framed(Bytes::copy_from_slice(buf));
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The socket closes when the connection's last handle on it drops.
        Poll::Ready(Ok(()))
    }
}

/// One WebSocket connection as the driver reads and writes it.
struct WsDuplex {
    socket: WebSocketStream<InflatingIo<SocketIo>>,
    stream: Arc<TcpStream>,
    outbox: Arc<Outbox>,
    shape: Shape,
    /// A write that takes longer means the client is not reading: closed as slow.
    write_timeout: Duration,
    sent: metrics::Counter,
    /// The client's close frame (or the end of its stream) was read.
    client_gone: bool,
    /// Unidirectional: the connect request has not been read yet.
    connect_pending: bool,
    /// Unidirectional: the connect request from the URL, used instead of a first message.
    cf_connect: Option<Bytes>,
}

impl WsDuplex {
    /// The next data message from the client; `None` once it closed or failed.
    async fn next_message(&mut self) -> Option<Bytes> {
        loop {
            match self.socket.next().await {
                Some(Ok(Message::Text(text))) => return Some(Bytes::from(text)),
                Some(Ok(Message::Binary(data))) => return Some(data),
                // Pings are answered by tungstenite itself.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_))) | None => break,
                Some(Err(error)) => {
                    tracing::debug!(%error, "websocket read failed");
                    break;
                }
            }
        }
        if !self.client_gone {
            self.client_gone = true;
            // Nothing more goes to a client that closed, not even from a broadcast in flight.
            self.outbox.detach_direct();
        }
        None
    }

    /// Writes frames (header and payload pairs, or framed bytes with an empty header) in one
    /// `writev` where the socket takes them, within the write timeout.
    async fn write_frames(&self, frames: &[(FrameHead, Bytes)]) -> Result<(), Disconnect> {
        let mut slices = Vec::with_capacity(frames.len() * 2);
        for (head, payload) in frames {
            slices.push(IoSlice::new(head.as_slice()));
            slices.push(IoSlice::new(payload));
        }
        let all = write_all(&self.stream, &mut slices);
        within(self.write_timeout, async {
            all.await.map_err(|error| {
                tracing::debug!(%error, "websocket write failed");
                codes::WRITE_ERROR
            })
        })
        .await
    }
}

/// Writes every slice, waiting for the socket to take them.
async fn write_all(stream: &TcpStream, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    while !slices.is_empty() {
        stream.writable().await?;
        match stream.try_write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Room for `messages` joined into one payload (and their separators).
fn payload_size(messages: &[Bytes]) -> usize {
    messages.iter().map(|message| message.len() + 1).sum()
}

/// Framed bytes as a frame list entry: no header of their own.
fn as_is(framed: &Bytes) -> (FrameHead, Bytes) {
    (
        FrameHead {
            bytes: [0; 10],
            len: 0,
        },
        framed.clone(),
    )
}

impl Duplex for WsDuplex {
    async fn next_frame(&mut self) -> Option<Result<Bytes, Disconnect>> {
        if !self.connect_pending {
            return self.next_message().await.map(Ok);
        }
        // Unidirectional: the connect request comes from `cf_connect` or else is the first
        // message; what the client sends after it is read (to notice its close) and ignored.
        let request = match self.cf_connect.take() {
            Some(request) => request,
            None => self.next_message().await?,
        };
        self.connect_pending = false;
        Some(uni::connect_frame(&request))
    }

    async fn write(&mut self, writes: &Writes) -> Result<(), Disconnect> {
        let messages = &writes.messages;
        self.sent.increment(messages.len() as u64);
        let mut frames: Vec<(FrameHead, Bytes)> = writes.framed.iter().map(as_is).collect();
        match messages.as_slice() {
            [] => {}
            [single] => frames.push(self.shape.frame(single)),
            several => self.shape.frames(several, &mut frames),
        }
        self.write_frames(&frames).await
    }

    async fn close(&mut self, disconnect: &Disconnect) {
        if self.shape.mode == Mode::Unidirectional && !self.client_gone {
            // A unidirectional client reads the reason from a push as well.
            let push = uni::disconnect_push(disconnect);
            let head = FrameHead::data(Encoding::Json, false, push.len());
            if self.write_frames(&[(head, push)]).await.is_err() {
                return;
            }
        }
        let close = CloseFrame {
            code: CloseCode::from(disconnect.code),
            reason: disconnect.reason.as_ref().into(),
        };
        // tungstenite frames our close (or, when the client closed first, its answer to the
        // client's) into the outbox; what the socket did not take at once is written here.
        let _ = self.socket.close(Some(close)).await;
        let framed: Vec<_> = self.outbox.take_framed().iter().map(as_is).collect();
        if self.write_frames(&framed).await.is_err() || self.client_gone {
            return;
        }
        // Close handshake: read until the client's close frame, so the TCP connection is not
        // dropped under data still in flight (which would reset it and lose our close frame).
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            while self.next_message().await.is_some() {}
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

    fn payloads(shape: Shape, messages: &[Bytes]) -> Vec<Bytes> {
        let mut frames = Vec::new();
        shape.frames(messages, &mut frames);
        frames.into_iter().map(|(_, payload)| payload).collect()
    }

    #[test]
    fn unidirectional_connections_get_pushes_joined_only_when_configured() {
        let replies = [
            Bytes::from_static(br#"{"push":{"channel":"a","pub":{"data":1}}}"#),
            Bytes::from_static(br#"{"push":{"channel":"b","pub":{"data":2}}}"#),
        ];
        let uni = TransportInfo {
            name: "uni_websocket",
            encoding: Encoding::Json,
            mode: Mode::Unidirectional,
            deflate: None,
        };
        assert_eq!(
            payloads(Shape::of(&uni, false), &replies),
            [
                r#"{"channel":"a","pub":{"data":1}}"#,
                r#"{"channel":"b","pub":{"data":2}}"#
            ]
        );
        assert_eq!(
            payloads(Shape::of(&uni, true), &replies),
            ["{\"channel\":\"a\",\"pub\":{\"data\":1}}\n{\"channel\":\"b\",\"pub\":{\"data\":2}}"]
        );
        // A bidirectional connection joins whatever the unidirectional setting says, and
        // sends the Replies as they are.
        let bidirectional = Shape::of(&bidirectional(Encoding::Json, None), false);
        assert_eq!(
            payloads(bidirectional, &replies),
            [[&replies[0][..], b"\n", &replies[1][..]].concat()]
        );
    }

    #[test]
    fn frame_heads_match_tungstenite_at_every_length_boundary() {
        for (encoding, compressed) in [
            (Encoding::Json, false),
            (Encoding::Protobuf, false),
            (Encoding::Json, true),
        ] {
            for len in [0, 1, 125, 126, 127, 0xffff, 0x1_0000, 1 << 20] {
                let ours = FrameHead::data(encoding, compressed, len);
                let theirs = FrameHeader {
                    rsv1: compressed,
                    opcode: OpCode::Data(match encoding {
                        Encoding::Json => Data::Text,
                        Encoding::Protobuf => Data::Binary,
                    }),
                    ..FrameHeader::default()
                };
                let mut expected = Vec::new();
                theirs.format(len as u64, &mut expected).unwrap();
                assert_eq!(ours.as_slice(), expected, "{encoding:?} {compressed} {len}");
            }
        }
    }
}
