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
use super::session::{self, Frame};
use crate::protocol::node::Node;
use crate::transport::admission::Unauthenticated;
use crate::transport::driver::Connection;
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
    let (mut sink, stream) = socket.split();
    let config = &node.config;
    let (heartbeat_delay, write_timeout) = (
        config.sockjs.heartbeat_delay,
        config.websocket.write_timeout,
    );
    let writer = tokio::spawn(async move {
        if let Err(disconnect) = send(&mut sink, frames::OPEN, write_timeout).await {
            outbox.close(disconnect);
            return;
        }
        loop {
            let frame = session::next_frame(&outbox, heartbeat_delay).await;
            let sent = send(&mut sink, frame.bytes(), write_timeout).await;
            if let Frame::Close(_) = frame {
                // SockJS carries the code in the `c` frame; the WebSocket closes normally.
                let close = CloseFrame {
                    code: CloseCode::Normal,
                    reason: "".into(),
                };
                let _ = tokio::time::timeout(write_timeout, sink.send(Message::Close(Some(close))))
                    .await;
                return;
            }
            if let Err(disconnect) = sent {
                outbox.close(disconnect);
                return;
            }
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

type Sink = futures_util::stream::SplitSink<Socket, Message>;

async fn send(sink: &mut Sink, frame: &[u8], timeout: Duration) -> Result<(), Disconnect> {
    // Frames are ASCII or JSON (UTF-8).
    let text = String::from_utf8_lossy(frame).into_owned();
    match tokio::time::timeout(timeout, sink.send(Message::text(text))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => {
            tracing::debug!(%error, "sockjs websocket write failed");
            Err(codes::WRITE_ERROR)
        }
        Err(_) => Err(codes::SLOW),
    }
}
