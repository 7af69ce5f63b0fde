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
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::protocol::codes::{self, Disconnect};
use crate::protocol::node::Node;
use crate::protocol::session::{Session, TransportInfo};
use crate::queue::{Batch, Outbox};

/// Most messages written as one WebSocket message.
const MAX_MESSAGES_PER_FRAME: usize = 64;
/// How long to wait for the client's close frame after sending ours.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// Read buffer per connection: small, because idle connections are the common case and the
/// default (128 KiB) would cost that much memory per connection.
const READ_BUFFER: usize = 4096;

type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// Wraps an upgraded connection with our WebSocket limits.
pub async fn accept(upgraded: Upgraded, max_message_size: usize) -> Socket {
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(Some(max_message_size))
        .max_frame_size(Some(max_message_size));
    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await
}

/// Runs one WebSocket connection to its end.
pub async fn serve(node: Arc<Node>, socket: Socket, encoding: Encoding) {
    let outbox = Arc::new(Outbox::new(node.queue_max_size()));
    let (control_tx, mut control_rx) = mpsc::unbounded_channel();
    let transport = TransportInfo {
        name: "websocket",
        encoding,
    };
    let mut session = Session::new(
        Arc::clone(&node),
        transport,
        Arc::clone(&outbox),
        control_tx,
    );
    let (sink, mut stream) = socket.split();
    let write_timeout = node.config.websocket.write_timeout;
    let writer = tokio::spawn(write_loop(
        sink,
        Arc::clone(&outbox),
        encoding,
        write_timeout,
    ));
    // Set when the client's close frame (or the end of its stream) was read.
    let mut client_gone = false;

    let outcome: Result<(), Disconnect> = loop {
        let deadline = tokio::time::Instant::from_std(session.deadline());
        let step = tokio::select! {
            message = stream.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    received();
                    session.handle_frame(Bytes::from(text)).await
                }
                Some(Ok(Message::Binary(data))) => {
                    received();
                    session.handle_frame(data).await
                }
                Some(Ok(Message::Close(_))) | None => {
                    client_gone = true;
                    break Ok(());
                }
                Some(Err(error)) => {
                    tracing::debug!(%error, "websocket read failed");
                    client_gone = true;
                    break Ok(());
                }
                Some(Ok(_)) => Ok(()), // pings are answered by tungstenite itself
            },
            Some(control) = control_rx.recv() => session.handle_control(control).await,
            () = outbox.closed() => break Ok(()),
            () = tokio::time::sleep_until(deadline) => {
                session.handle_timeout(std::time::Instant::now()).await
            }
        };
        if let Err(disconnect) = step {
            break Err(disconnect);
        }
        if outbox.is_closing() {
            break Ok(());
        }
    };
    session.close().await;
    let code = outcome
        .as_ref()
        .err()
        .map_or(codes::CONNECTION_CLOSED.code, |d| d.code);
    metrics::counter!(crate::metrics::DISCONNECTS, "code" => code.to_string()).increment(1);
    // The client closed, or the session ended it: either way the writer sends the close frame
    // (after what is still queued) and stops.
    outbox.close(outcome.err().unwrap_or(codes::CONNECTION_CLOSED));
    if tokio::time::timeout(write_timeout * 5, writer)
        .await
        .is_err()
    {
        tracing::debug!("websocket writer did not finish in time");
    }
    if !client_gone {
        // Close handshake: read until the client's close frame, so the TCP connection is not
        // dropped under data still in flight (which would reset it and lose our close frame).
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            while let Some(Ok(message)) = stream.next().await {
                if message.is_close() {
                    break;
                }
            }
        })
        .await;
    }
}

fn received() {
    metrics::counter!(crate::metrics::MESSAGES_RECEIVED, "transport" => "websocket").increment(1);
}

/// Drains the outbox into the socket. A write that takes longer than `write_timeout` means the
/// client is not reading: the connection is closed as slow.
async fn write_loop(
    mut sink: futures_util::stream::SplitSink<Socket, Message>,
    outbox: Arc<Outbox>,
    encoding: Encoding,
    write_timeout: Duration,
) {
    let mut frame = FrameBuilder::new(encoding);
    loop {
        match outbox.next_batch(MAX_MESSAGES_PER_FRAME).await {
            Batch::Messages(messages) => {
                metrics::counter!(crate::metrics::MESSAGES_SENT, "transport" => "websocket")
                    .increment(messages.len() as u64);
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
                    Encoding::Json => match Utf8Bytes::try_from(payload) {
                        Ok(text) => Message::Text(text),
                        Err(_) => {
                            outbox.close(codes::INAPPROPRIATE_PROTOCOL);
                            continue;
                        }
                    },
                };
                match tokio::time::timeout(write_timeout, sink.send(message)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => {
                        tracing::debug!(%error, "websocket write failed");
                        outbox.close(codes::WRITE_ERROR);
                        return;
                    }
                    Err(_) => {
                        outbox.close(codes::SLOW);
                        return;
                    }
                }
            }
            Batch::Close(disconnect) => {
                let close = CloseFrame {
                    code: CloseCode::from(disconnect.code),
                    reason: disconnect.reason.as_ref().into(),
                };
                let _ = tokio::time::timeout(write_timeout, sink.send(Message::Close(Some(close))))
                    .await;
                return;
            }
        }
    }
}
