//! Bidirectional WebSocket (`/connection/websocket`): the session's frames in text (JSON) or
//! binary (Protobuf, subprotocol `centrifuge-protobuf`) WebSocket messages.
//!
//! Two tasks per connection: this one reads frames and drives the session; the writer drains
//! the outbox, writing everything queued as one WebSocket message (messages joined per the
//! encoding's framing), so a burst of publications costs one write, not one per publication.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use gyre_proto::Encoding;
use gyre_proto::codec::FrameBuilder;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use std::sync::atomic::{AtomicBool, Ordering};

use super::driver::Connection;
use super::permessage_deflate::InflatingIo;
use super::uni;
use crate::protocol::codes::{self, Disconnect};
use crate::protocol::node::Node;
use crate::protocol::session::{Mode, TransportInfo};
use crate::queue::Outbox;
use gyre_proto::codec::deflate::{self, Deflate};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

/// Most messages written as one WebSocket message.
const MAX_MESSAGES_PER_FRAME: usize = 64;
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

/// Runs one WebSocket connection to its end.
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
    let outbox = Arc::clone(connection.outbox());
    let (sink, stream) = socket.split();
    let write_timeout = node.config.websocket.write_timeout;
    let shape = match &flavor {
        Flavor::Bidirectional { .. } => Shape::Batched {
            encoding,
            compressed: deflate.is_some(),
        },
        Flavor::Unidirectional { join, .. } => Shape::Pushes { join: *join },
    };
    let writer = tokio::spawn(write_loop(sink, Arc::clone(&outbox), shape, write_timeout));
    // Set when the client's close frame (or the end of its stream) was read.
    let client_gone = Arc::new(AtomicBool::new(false));
    let mut frames = {
        let client_gone = Arc::clone(&client_gone);
        Box::pin(
            stream
                .take_while(move |message| {
                    let open = matches!(message, Ok(m) if !m.is_close());
                    if let Err(error) = message {
                        tracing::debug!(%error, "websocket read failed");
                    }
                    client_gone.store(!open, Ordering::Relaxed);
                    std::future::ready(open)
                })
                .filter_map(|message| {
                    std::future::ready(match message {
                        Ok(Message::Text(text)) => Some(Bytes::from(text)),
                        Ok(Message::Binary(data)) => Some(data),
                        // Pings are answered by tungstenite itself.
                        _ => None,
                    })
                }),
        )
    };
    let end = match flavor {
        Flavor::Bidirectional { .. } => connection.run(frames.by_ref().map(Ok)).await,
        Flavor::Unidirectional { cf_connect, .. } => {
            // The connect request comes from `cf_connect` or else is the first message; what
            // the client sends after it is read (to notice its close) and ignored.
            let mut first = true;
            let inbound = futures_util::stream::iter(cf_connect)
                .chain(frames.by_ref())
                .filter_map(move |frame| {
                    let connect = first.then(|| uni::connect_frame(&frame));
                    first = false;
                    std::future::ready(connect)
                });
            // Boxed: the bidirectional path's inline future is what every idle connection
            // carries; this rarer one should not make it larger.
            Box::pin(connection.run(inbound)).await
        }
    };
    // The writer sends the close frame after what is still queued, and stops.
    connection.close(end).await;
    if tokio::time::timeout(write_timeout * 5, writer)
        .await
        .is_err()
    {
        tracing::debug!("websocket writer did not finish in time");
    }
    if !client_gone.load(Ordering::Relaxed) {
        // Close handshake: read until the client's close frame, so the TCP connection is not
        // dropped under data still in flight (which would reset it and lose our close frame).
        let _ = tokio::time::timeout(CLOSE_WAIT, async { while frames.next().await.is_some() {} })
            .await;
    }
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

/// Drains the outbox into the socket. A write that takes longer than `write_timeout` means the
/// client is not reading: the connection is closed as slow.
async fn write_loop(
    mut sink: futures_util::stream::SplitSink<Socket, Message>,
    outbox: Arc<Outbox>,
    shape: Shape,
    write_timeout: Duration,
) {
    let encoding = match shape {
        Shape::Batched { encoding, .. } => encoding,
        Shape::Pushes { .. } => Encoding::Json,
    };
    let mut frame = FrameBuilder::new(encoding);
    // Looked up once: the macro's registry lookup would otherwise run on every write.
    let sent = metrics::counter!(crate::metrics::MESSAGES_SENT, "transport" => "websocket");
    // Grows to the largest batch seen (usually a few messages) and is reused for every batch.
    let mut messages = Vec::new();
    loop {
        match outbox
            .next_batch_into(MAX_MESSAGES_PER_FRAME, &mut messages)
            .await
        {
            None => {}
            Some(disconnect) => {
                if let Shape::Pushes { .. } = shape {
                    // A unidirectional client reads the reason from a push as well.
                    let push = uni::disconnect_push(&disconnect);
                    let _ = send(&mut sink, text(push), write_timeout).await;
                }
                let close = CloseFrame {
                    code: CloseCode::from(disconnect.code),
                    reason: disconnect.reason.as_ref().into(),
                };
                let _ = send(&mut sink, Message::Close(Some(close)), write_timeout).await;
                return;
            }
        };
        sent.increment(messages.len() as u64);
        let written = match shape {
            Shape::Batched {
                compressed: true, ..
            } => {
                let payload = deflate::message_payload(encoding, &messages);
                let opcode = match encoding {
                    Encoding::Protobuf => OpCode::Data(Data::Binary),
                    Encoding::Json => OpCode::Data(Data::Text),
                };
                let mut frame = Frame::message(payload, opcode, true);
                frame.header_mut().rsv1 = true;
                send(&mut sink, Message::Frame(frame), write_timeout).await
            }
            Shape::Batched { .. } => {
                let payload = if let [single] = messages.as_slice() {
                    single.clone()
                } else {
                    for message in &messages {
                        frame.push(message);
                    }
                    frame.take()
                };
                let message = match encoding {
                    Encoding::Protobuf => Message::Binary(payload),
                    Encoding::Json => text(payload),
                };
                send(&mut sink, message, write_timeout).await
            }
            Shape::Pushes { join: true } => {
                for message in &messages {
                    frame.push(&uni::push_of(message));
                }
                send(&mut sink, text(frame.take()), write_timeout).await
            }
            Shape::Pushes { join: false } => {
                let mut fed = Ok(());
                for message in &messages {
                    fed = feed(&mut sink, text(uni::push_of(message)), write_timeout).await;
                    if fed.is_err() {
                        break;
                    }
                }
                match fed {
                    Ok(()) => flush(&mut sink, write_timeout).await,
                    failed => failed,
                }
            }
        };
        if let Err(disconnect) = written {
            outbox.close(disconnect);
            return;
        }
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

type Sink = futures_util::stream::SplitSink<Socket, Message>;

async fn send(sink: &mut Sink, message: Message, timeout: Duration) -> Result<(), Disconnect> {
    write_outcome(tokio::time::timeout(timeout, sink.send(message)).await)
}

async fn feed(sink: &mut Sink, message: Message, timeout: Duration) -> Result<(), Disconnect> {
    write_outcome(tokio::time::timeout(timeout, sink.feed(message)).await)
}

async fn flush(sink: &mut Sink, timeout: Duration) -> Result<(), Disconnect> {
    write_outcome(tokio::time::timeout(timeout, sink.flush()).await)
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
