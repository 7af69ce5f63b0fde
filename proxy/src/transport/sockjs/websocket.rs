//! The `websocket` sub-transport (`<server>/<session>/websocket`): SockJS frames in WebSocket
//! text messages — `o` first, then `a[...]`, `h` and finally `c[code,"reason"]`; the client
//! sends JSON arrays of message strings. No session registry: the WebSocket is the session.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::frames;
use super::session::{self, Frames, Receiver};
use crate::protocol::node::Node;
use crate::transport::admission::Unauthenticated;
use crate::transport::driver::Connection;
use crate::transport::stream_writer::{Ended, Sink, Writer, within};
use crate::transport::websocket::Socket;
use gyre_proto::codes::{self, Disconnect};

/// How long to wait for the client's close frame after sending ours.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

pub async fn serve(
    node: Arc<Node>,
    socket: Socket,
    unauthenticated: Option<Unauthenticated>,
    context: crate::hooks::headers::ClientContext,
) {
    let mut connection = Connection::open(&node, session::transport_info(), context);
    connection.until_connected(unauthenticated);
    let outbox = Arc::clone(connection.outbox());
    let (sink, stream) = socket.split();
    let config = &node.config;
    let (heartbeat_delay, write_timeout) = (
        config.sockjs.heartbeat_delay,
        config.websocket.write_timeout,
    );
    let writer = tokio::spawn(async move {
        let mut sink = TextMessages(sink);
        let frames = Frames::new(Receiver::WebSocket, true, heartbeat_delay);
        let ended = Writer::new(&outbox, frames)
            .run(&mut sink, write_timeout, None)
            .await;
        match ended {
            Ended::Closed { .. } => {
                // SockJS carries the code in the `c` frame; the WebSocket closes normally.
                let close = CloseFrame {
                    code: CloseCode::Normal,
                    reason: "".into(),
                };
                let _ = within(write_timeout, sink.write(Message::Close(Some(close)))).await;
            }
            Ended::Failed(disconnect) => outbox.close(disconnect),
            // Not limited.
            Ended::Limit => {}
        }
    });
    let mut messages = Box::pin(
        stream
            .take_while(|message| {
                if let Err(error) = message {
                    tracing::debug!(%error, "sockjs websocket read failed");
                }
                std::future::ready(matches!(message, Ok(m) if !m.is_close()))
            })
            .filter_map(|message| {
                std::future::ready(match message {
                    Ok(Message::Text(text)) => Some(Bytes::from(text)),
                    Ok(Message::Binary(data)) => Some(data),
                    _ => None,
                })
            }),
    );
    // Each WebSocket message is a JSON array of the client's messages; anything else ends the
    // connection as a bad request.
    let inbound = messages.by_ref().flat_map(|payload| {
        let messages: Vec<Result<Bytes, Disconnect>> = match frames::client_messages(&payload) {
            Ok(messages) => messages.into_iter().map(Ok).collect(),
            // An empty WebSocket message carries nothing, as in sockjs-node.
            Err(frames::PayloadError::Empty) => Vec::new(),
            Err(frames::PayloadError::BrokenJson) => vec![Err(codes::DISCONNECT_BAD_REQUEST)],
        };
        futures_util::stream::iter(messages)
    });
    let end = connection.run(inbound).await;
    connection.close(end).await;
    if tokio::time::timeout(write_timeout * 5, writer)
        .await
        .is_err()
    {
        tracing::debug!("sockjs websocket writer did not finish in time");
    }
    // Read until the client's close frame, so the TCP connection is not reset under our close.
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while messages.next().await.is_some() {}
    })
    .await;
}

/// The socket's writing half: each chunk one text message.
struct TextMessages(futures_util::stream::SplitSink<Socket, Message>);

impl TextMessages {
    async fn write(&mut self, message: Message) -> Result<(), Disconnect> {
        self.0.send(message).await.map_err(|error| {
            tracing::debug!(%error, "sockjs websocket write failed");
            codes::WRITE_ERROR
        })
    }
}

impl Sink for TextMessages {
    async fn send(&mut self, frame: Bytes) -> Result<(), Disconnect> {
        // Frames are ASCII or JSON (UTF-8).
        let text = String::from_utf8_lossy(&frame).into_owned();
        self.write(Message::text(text)).await
    }

    /// The reader finds out (a close frame, a failed read), and the session ends.
    async fn client_gone(&self) {
        std::future::pending().await
    }
}
