//! Bidirectional WebSocket (`/connection/websocket`): the session's frames in text (JSON) or
//! binary (Protobuf, subprotocol `centrifuge-protobuf`) WebSocket messages.
//!
//! One task per connection (the driver's duplex loop): it reads frames into the session and
//! drains the outbox, writing everything queued as one WebSocket message (messages joined per
//! the encoding's framing), so a burst of publications costs one write, not one per
//! publication. No second task and no lock between a reading and a writing half: an idle
//! connection costs less memory, a delivery less work.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use gyre_proto::Encoding;
use gyre_proto::codec::FrameBuilder;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::driver::{Connection, Duplex};
use super::permessage_deflate::InflatingIo;
use super::uni;
use crate::protocol::codes::{self, Disconnect};
use crate::protocol::node::Node;
use crate::protocol::session::{Mode, TransportInfo};
use gyre_proto::codec::deflate::{self, Deflate};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

/// How long to wait for the client's close frame after sending ours.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// Read buffer per connection: small, because idle connections are the common case and the
/// default (128 KiB) would cost that much memory per connection.
const READ_BUFFER: usize = 512;

pub type Socket = WebSocketStream<InflatingIo<TokioIo<Upgraded>>>;

/// Wraps an upgraded connection with our WebSocket limits; `compressed` when the handshake
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

/// The `Sec-WebSocket-Key` of a WebSocket upgrade request; `None` when the request is not one.
pub fn upgrade_key(headers: &HeaderMap) -> Option<HeaderValue> {
    let is_upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    is_upgrade
        .then(|| headers.get(header::SEC_WEBSOCKET_KEY).cloned())
        .flatten()
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

/// What a WebSocket connection carries.
#[derive(Debug, Clone)]
pub enum Flavor {
    /// `/connection/websocket`: commands in, replies and pushes out, batched per message;
    /// compressed when the client negotiated permessage-deflate.
    Bidirectional {
        encoding: Encoding,
        deflate: Option<Deflate>,
    },
    /// `/connection/uni_websocket`: a ConnectRequest in (`cf_connect`, else the first message),
    /// then only JSON pushes out, one per message unless `join` puts a batch in one message.
    Unidirectional {
        cf_connect: Option<Bytes>,
        join: bool,
    },
}

/// Runs one WebSocket connection to its end, in one task: the session, reading and writing.
pub async fn serve(node: Arc<Node>, socket: Socket, flavor: Flavor) {
    let (encoding, deflate, mode, name) = match &flavor {
        Flavor::Bidirectional { encoding, deflate } => {
            (*encoding, *deflate, Mode::Bidirectional, "websocket")
        }
        Flavor::Unidirectional { .. } => {
            (Encoding::Json, None, Mode::Unidirectional, "uni_websocket")
        }
    };
    let mut connection = Connection::open(
        &node,
        TransportInfo {
            name,
            encoding,
            mode,
            deflate,
        },
    );
    let (shape, cf_connect) = match flavor {
        Flavor::Bidirectional { .. } => (
            Shape::Batched {
                encoding,
                compressed: deflate.is_some(),
            },
            None,
        ),
        Flavor::Unidirectional { cf_connect, join } => (Shape::Pushes { join }, cf_connect),
    };
    let mut socket = WsDuplex {
        socket,
        shape,
        write_timeout: node.config.websocket.write_timeout,
        frame: FrameBuilder::new(encoding),
        sent: metrics::counter!(crate::metrics::MESSAGES_SENT, "transport" => "websocket"),
        client_gone: false,
        connect_pending: matches!(shape, Shape::Pushes { .. }),
        cf_connect,
    };
    // Grows to the largest batch seen (usually a few messages) and is reused for every batch.
    let mut batch = Vec::new();
    let end = connection.run_duplex(&mut socket, &mut batch).await;
    connection.close_duplex(end, &mut socket, &mut batch).await;
}

/// How queued messages become WebSocket messages.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// Everything queued as one message, joined per the encoding's framing; with `compressed`,
    /// the queued messages are permessage-deflate pieces and the message goes out with RSV1.
    Batched {
        encoding: Encoding,
        compressed: bool,
    },
    /// Unidirectional pushes, one per message, or joined with `\n` into one.
    Pushes { join: bool },
}

/// One WebSocket connection as the driver reads and writes it.
struct WsDuplex {
    socket: Socket,
    shape: Shape,
    /// A write that takes longer means the client is not reading: closed as slow.
    write_timeout: Duration,
    frame: FrameBuilder,
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
        self.client_gone = true;
        None
    }

    async fn send(&mut self, message: Message) -> Result<(), Disconnect> {
        write_outcome(tokio::time::timeout(self.write_timeout, self.socket.send(message)).await)
    }
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

    async fn write(&mut self, messages: &[Bytes]) -> Result<(), Disconnect> {
        self.sent.increment(messages.len() as u64);
        match self.shape {
            Shape::Batched {
                encoding,
                compressed: true,
            } => {
                let payload = deflate::message_payload(encoding, messages);
                let opcode = match encoding {
                    Encoding::Protobuf => OpCode::Data(Data::Binary),
                    Encoding::Json => OpCode::Data(Data::Text),
                };
                let mut frame = Frame::message(payload, opcode, true);
                frame.header_mut().rsv1 = true;
                self.send(Message::Frame(frame)).await
            }
            Shape::Batched { encoding, .. } => {
                let payload = if let [single] = messages {
                    single.clone()
                } else {
                    for message in messages {
                        self.frame.push(message);
                    }
                    self.frame.take()
                };
                let message = match encoding {
                    Encoding::Protobuf => Message::Binary(payload),
                    Encoding::Json => text(payload),
                };
                self.send(message).await
            }
            Shape::Pushes { join: true } => {
                for message in messages {
                    self.frame.push(&uni::push_of(message));
                }
                let payload = self.frame.take();
                self.send(text(payload)).await
            }
            Shape::Pushes { join: false } => {
                let timeout = self.write_timeout;
                let socket = &mut self.socket;
                let all = async {
                    for message in messages {
                        socket.feed(text(uni::push_of(message))).await?;
                    }
                    socket.flush().await
                };
                write_outcome(tokio::time::timeout(timeout, all).await)
            }
        }
    }

    async fn close(&mut self, disconnect: &Disconnect) {
        if let Shape::Pushes { .. } = self.shape {
            // A unidirectional client reads the reason from a push as well.
            let push = uni::disconnect_push(disconnect);
            let _ = self.send(text(push)).await;
        }
        let close = CloseFrame {
            code: CloseCode::from(disconnect.code),
            reason: disconnect.reason.as_ref().into(),
        };
        if self.send(Message::Close(Some(close))).await.is_err() || self.client_gone {
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

/// A JSON message as a text message. Every JSON message the codec writes is UTF-8, so the check
/// is a formality; an invalid one is sent as binary rather than dropped.
fn text(payload: Bytes) -> Message {
    match Utf8Bytes::try_from(payload.clone()) {
        Ok(text) => Message::Text(text),
        Err(error) => {
            tracing::warn!(%error, "JSON message is not UTF-8");
            Message::Binary(payload)
        }
    }
}

fn write_outcome<E: std::fmt::Display>(
    outcome: Result<Result<(), E>, tokio::time::error::Elapsed>,
) -> Result<(), Disconnect> {
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => {
            tracing::debug!(%error, "websocket write failed");
            Err(codes::WRITE_ERROR)
        }
        Err(_) => Err(codes::SLOW),
    }
}
