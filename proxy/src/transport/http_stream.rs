//! The transports whose server→client half is one long HTTP response:
//!
//! | endpoint | request | response |
//! |---|---|---|
//! | `/connection/http_stream` | POST, body = connect command frame (JSON, or Protobuf with `Content-Type: application/octet-stream`) | JSON lines / varint-delimited Protobuf Replies |
//! | `/connection/sse` | GET `?cf_connect=<connect command>`, or POST | `data: <Reply>` events |
//! | `/connection/uni_http_stream` | POST, body = ConnectRequest | JSON lines of Pushes |
//! | `/connection/uni_sse` | GET `?cf_connect=<ConnectRequest>`, or POST | `data: <Push>` events, with [`cursor`](super::cursor) ids |
//!
//! The emulated ones get their further commands through `/emulation`. A writer task drains the
//! connection's outbox into the response through a one-chunk channel: hyper takes the next
//! chunk only when the previous one is on its way, so a client that stops reading holds up the
//! writer, which closes the connection as slow after `websocket.write_timeout`; a client that
//! goes away drops the response and the writer ends the session. Queued messages are written
//! together, as on WebSocket.

// The error of the request checks is the response that refuses the request, built only then.
#![allow(clippy::result_large_err)]

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt as _;
use gyre_proto::Encoding;
use http::{Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::{mpsc, oneshot};

use super::admission::{ConnectionSlot, Unauthenticated};
use super::cursor::{self, Cursor};
use super::driver::Connection;
use super::http as shared;
use super::uni;
use crate::config::ConnectCodeToHttpResponse;
use crate::hooks::headers::ClientContext;
use crate::protocol::node::Node;
use crate::protocol::session::{ConnectOutcome, Mode, TransportInfo};
use crate::queue::{Batch, Outbox};
use crate::transport::Transports;
use crate::transport::http::{Body, text};
use gyre_proto::codes;

/// Most queued messages written in one chunk.
const MAX_MESSAGES_PER_CHUNK: usize = 64;

/// How messages are laid out in the response.
#[derive(Debug)]
enum Framing {
    /// Each message followed by `\n` (JSON); pushes only, when unidirectional.
    Lines { uni: bool },
    /// Varint-delimited Protobuf messages, as queued.
    Delimited,
    /// One `data:` event per message; with a cursor, the last event of each chunk carries the
    /// channels' positions as its id.
    Events { uni: bool, cursor: Option<Cursor> },
}

impl Framing {
    /// Written first, before any message: SSE starts with an empty line, so that the browser
    /// sees the stream open at once.
    fn preamble(&self) -> Option<Bytes> {
        matches!(self, Self::Events { .. }).then(|| Bytes::from_static(b"\r\n"))
    }

    fn chunk(&mut self, messages: &[Bytes]) -> Bytes {
        if let ([single], Self::Delimited) = (messages, &*self) {
            return single.clone();
        }
        let size: usize = messages.iter().map(|m| m.len() + 8).sum();
        let mut chunk = BytesMut::with_capacity(size);
        match self {
            Self::Delimited => messages.iter().for_each(|m| chunk.put_slice(m)),
            Self::Lines { uni } => {
                for message in messages {
                    chunk.put_slice(&unwrap(*uni, message));
                    chunk.put_u8(b'\n');
                }
            }
            Self::Events { uni, cursor } => {
                let last = messages.len().saturating_sub(1);
                for (i, message) in messages.iter().enumerate() {
                    let message = unwrap(*uni, message);
                    chunk.put_slice(b"data: ");
                    chunk.put_slice(&message);
                    chunk.put_u8(b'\n');
                    if let Some(cursor) = cursor.as_mut() {
                        cursor.observe(&message);
                        // The id goes on the chunk's last event: an EventSource keeps only the
                        // last id it saw, and by then the cursor has seen every message.
                        if i == last
                            && let Some(id) = cursor.take_id()
                        {
                            chunk.put_slice(b"id: ");
                            chunk.put_slice(id.as_bytes());
                            chunk.put_u8(b'\n');
                        }
                    }
                    chunk.put_u8(b'\n');
                }
            }
        }
        chunk.freeze()
    }
}

fn unwrap(uni: bool, message: &Bytes) -> Bytes {
    if uni {
        uni::push_of(message)
    } else {
        message.clone()
    }
}

/// The response body: chunks from the writer task.
pub struct StreamBody {
    chunks: mpsc::Receiver<Bytes>,
}

/// A response body streaming what a writer task sends into `chunks`; it ends when the writer
/// drops its sender.
pub(crate) fn stream_body(chunks: mpsc::Receiver<Bytes>) -> Body {
    StreamBody { chunks }
        .map_err(|never| match never {})
        .boxed()
}

impl http_body::Body for StreamBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.chunks
            .poll_recv(cx)
            .map(|chunk| chunk.map(|chunk| Ok(Frame::data(chunk))))
    }
}

/// Starts a streaming connection: the session gets `connect` as the client's first frame and
/// then only what `/emulation` routes to it. With `report`, also how the connect ends.
#[allow(clippy::too_many_arguments)]
fn start(
    node: &Arc<Node>,
    transports: &Transports,
    transport: TransportInfo,
    mut framing: Framing,
    connect: Bytes,
    unauthenticated: Option<Unauthenticated>,
    context: ClientContext,
    report: bool,
) -> (Body, Option<oneshot::Receiver<ConnectOutcome>>) {
    let mut connection = Connection::open(node, transport, context);
    connection.until_connected(unauthenticated);
    let outcome = report.then(|| connection.report_connect());
    let outbox = Arc::clone(connection.outbox());
    let (chunks, rx) = mpsc::channel(1);
    let write_timeout = node.config.websocket.write_timeout;
    let encoding = transport.encoding;
    transports.tasks.spawn(async move {
        let writer = tokio::spawn(async move {
            write_loop(&outbox, &mut framing, encoding, &chunks, write_timeout).await;
        });
        let inbound = futures_util::stream::once(std::future::ready(Ok(connect)))
            .chain(futures_util::stream::pending());
        let end = connection.run(inbound).await;
        connection.close(end).await;
        if tokio::time::timeout(write_timeout * 5, writer)
            .await
            .is_err()
        {
            tracing::debug!("stream writer did not finish in time");
        }
    });
    (stream_body(rx), outcome)
}

/// The answer to a unidirectional HTTP connect: the stream once the connect succeeded, or,
/// with `connect_code_to_http_response` enabled, the status and body its transforms give a
/// failed one (500 without a match, or when the session ended first).
async fn uni_response(
    transforms: &ConnectCodeToHttpResponse,
    content_type: &'static str,
    cors: &shared::Cors,
    (body, outcome): (Body, Option<oneshot::Receiver<ConnectOutcome>>),
) -> Response<Body> {
    if let Some(outcome) = outcome {
        let (status, text) = match outcome.await {
            Ok(ConnectOutcome::Connected) => {
                return shared::stream_response(content_type, cors, body);
            }
            Ok(ConnectOutcome::Refused { code, text }) => transforms.response_for(code, &text),
            Err(_) => (500, "Internal Server Error".to_owned()),
        };
        // The stream is dropped: its writer finds no reader, the session ends on its own.
        drop(body);
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = Response::new(crate::transport::http::full(text));
        *response.status_mut() = status;
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        return cors.applied(response);
    }
    shared::stream_response(content_type, cors, body)
}

async fn write_loop(
    outbox: &Outbox,
    framing: &mut Framing,
    encoding: Encoding,
    chunks: &mpsc::Sender<Bytes>,
    write_timeout: Duration,
) {
    if let Some(preamble) = framing.preamble()
        && let Err(disconnect) = send(chunks, preamble, write_timeout).await
    {
        outbox.close(disconnect);
        return;
    }
    let sent = metrics::counter!(crate::metrics::MESSAGES_SENT, "transport" => "http");
    loop {
        let batch = tokio::select! {
            batch = outbox.next_batch(MAX_MESSAGES_PER_CHUNK) => batch,
            // hyper drops the response when the client goes away: end the session now, not at
            // the next message or ping.
            () = chunks.closed() => {
                outbox.close(codes::CONNECTION_CLOSED);
                return;
            }
        };
        match batch {
            Batch::Messages(messages) => {
                sent.increment(messages.len() as u64);
                let chunk = framing.chunk(&messages);
                if let Err(disconnect) = send(chunks, chunk, write_timeout).await {
                    outbox.close(disconnect);
                    return;
                }
            }
            Batch::Close(disconnect) => {
                // No close frame exists here: the code travels as a disconnect push.
                let push = uni::disconnect_reply(encoding, &disconnect);
                let _ = send(chunks, framing.chunk(&[push]), write_timeout).await;
                return;
            }
        }
    }
}

async fn send(
    chunks: &mpsc::Sender<Bytes>,
    chunk: Bytes,
    write_timeout: Duration,
) -> Result<(), codes::Disconnect> {
    match tokio::time::timeout(write_timeout, chunks.send(chunk)).await {
        Ok(Ok(())) => Ok(()),
        // The response was dropped: the client is gone.
        Ok(Err(_)) => Err(codes::CONNECTION_CLOSED),
        Err(_) => Err(codes::SLOW),
    }
}

/// `/connection/http_stream` (bidirectional emulation).
pub async fn http_stream(
    node: Arc<Node>,
    transports: Arc<Transports>,
    request: Request<Incoming>,
) -> Response<Body> {
    if request.method() != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use POST");
    }
    let cors = match shared::admit(&node, &transports, request.headers()) {
        Ok(cors) => cors,
        Err(refused) => return refused,
    };
    let unauthenticated = ConnectionSlot::take(&request);
    let context = node.hooks.capture(request.headers());
    let protobuf = shared::is_protobuf(request.headers());
    let limit = node.config.http_stream.max_request_body_size;
    let connect = match shared::read_body(&node, request, limit).await {
        Ok(body) => body,
        Err(refused) => return cors.applied(refused),
    };
    let (encoding, framing, content_type) = if protobuf {
        (
            Encoding::Protobuf,
            Framing::Delimited,
            "application/octet-stream",
        )
    } else {
        (
            Encoding::Json,
            Framing::Lines { uni: false },
            "application/json",
        )
    };
    let transport = TransportInfo {
        name: "http_stream",
        encoding,
        mode: Mode::Emulated,
        deflate: None,
    };
    let (body, _) = start(
        &node,
        &transports,
        transport,
        framing,
        connect,
        unauthenticated,
        context,
        false,
    );
    shared::stream_response(content_type, &cors, body)
}

/// `/connection/sse` (bidirectional emulation, JSON).
pub async fn sse(
    node: Arc<Node>,
    transports: Arc<Transports>,
    request: Request<Incoming>,
) -> Response<Body> {
    let cors = match shared::admit(&node, &transports, request.headers()) {
        Ok(cors) => cors,
        Err(refused) => return refused,
    };
    let unauthenticated = ConnectionSlot::take(&request);
    let context = node.hooks.capture(request.headers());
    let limit = node.config.sse.max_request_body_size;
    let connect = match connect_payload(&node, request, limit).await {
        Ok(connect) => connect,
        Err(refused) => return cors.applied(refused),
    };
    let transport = TransportInfo {
        name: "sse",
        encoding: Encoding::Json,
        mode: Mode::Emulated,
        deflate: None,
    };
    let framing = Framing::Events {
        uni: false,
        cursor: None,
    };
    let (body, _) = start(
        &node,
        &transports,
        transport,
        framing,
        connect,
        unauthenticated,
        context,
        false,
    );
    shared::stream_response(SSE_TYPE, &cors, body)
}

/// `/connection/uni_http_stream`.
pub async fn uni_http_stream(
    node: Arc<Node>,
    transports: Arc<Transports>,
    request: Request<Incoming>,
) -> Response<Body> {
    if request.method() != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use POST");
    }
    let cors = match shared::admit(&node, &transports, request.headers()) {
        Ok(cors) => cors,
        Err(refused) => return refused,
    };
    let unauthenticated = ConnectionSlot::take(&request);
    let context = node.hooks.capture(request.headers());
    let limit = node.config.uni_http_stream.max_request_body_size;
    let connect = match shared::read_body(&node, request, limit).await {
        Ok(body) => body,
        Err(refused) => return cors.applied(refused),
    };
    let connect = match uni::connect_frame(&connect) {
        Ok(frame) => frame,
        Err(_) => return cors.applied(bad_connect_request()),
    };
    let transforms = &node.config.uni_http_stream.connect_code_to_http_response;
    let started = start(
        &node,
        &transports,
        uni_transport("uni_http_stream"),
        Framing::Lines { uni: true },
        connect,
        unauthenticated,
        context,
        transforms.enabled,
    );
    uni_response(transforms, "application/json", &cors, started).await
}

/// `/connection/uni_sse`. A `Last-Event-ID` (an EventSource reconnecting) recovers every
/// channel named in it from the position it holds.
pub async fn uni_sse(
    node: Arc<Node>,
    transports: Arc<Transports>,
    request: Request<Incoming>,
) -> Response<Body> {
    let cors = match shared::admit(&node, &transports, request.headers()) {
        Ok(cors) => cors,
        Err(refused) => return refused,
    };
    let unauthenticated = ConnectionSlot::take(&request);
    let context = node.hooks.capture(request.headers());
    let last_event_id = request
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let limit = node.config.uni_sse.max_request_body_size;
    let payload = match connect_payload(&node, request, limit).await {
        Ok(payload) => payload,
        Err(refused) => return cors.applied(refused),
    };
    let Ok(mut connect) = uni::parse_connect_request(&payload) else {
        return cors.applied(bad_connect_request());
    };
    if let Some(id) = last_event_id {
        for (channel, position) in cursor::parse(&id) {
            let sub = connect.subs.entry(channel).or_default();
            sub.recover = true;
            sub.offset = position.offset;
            sub.epoch = position.epoch;
        }
    }
    let Ok(connect) = uni::connect_command(connect) else {
        return cors.applied(bad_connect_request());
    };
    let framing = Framing::Events {
        uni: true,
        cursor: Some(Cursor::default()),
    };
    let transforms = &node.config.uni_sse.connect_code_to_http_response;
    let started = start(
        &node,
        &transports,
        uni_transport("uni_sse"),
        framing,
        connect,
        unauthenticated,
        context,
        transforms.enabled,
    );
    uni_response(transforms, SSE_TYPE, &cors, started).await
}

const SSE_TYPE: &str = "text/event-stream; charset=utf-8";

fn uni_transport(name: &'static str) -> TransportInfo {
    TransportInfo {
        name,
        encoding: Encoding::Json,
        mode: Mode::Unidirectional,
        deflate: None,
    }
}

/// The connect payload of an SSE endpoint: `cf_connect` of a GET (an EventSource cannot POST),
/// or the body of a POST.
async fn connect_payload(
    node: &Node,
    request: Request<Incoming>,
    limit: u32,
) -> Result<Bytes, Response<Body>> {
    match *request.method() {
        Method::GET => shared::query_param(&request, "cf_connect")
            .map(Bytes::from)
            .ok_or_else(|| {
                text(
                    StatusCode::BAD_REQUEST,
                    "cf_connect query parameter missing",
                )
            }),
        Method::POST => shared::read_body(node, request, limit).await,
        _ => Err(text(StatusCode::METHOD_NOT_ALLOWED, "use GET or POST")),
    }
}

fn bad_connect_request() -> Response<Body> {
    text(
        StatusCode::BAD_REQUEST,
        "the connect request is not a JSON ConnectRequest object",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_carry_one_message_each_and_the_id_on_the_last() {
        let mut framing = Framing::Events {
            uni: true,
            cursor: Some(Cursor::default()),
        };
        let connect = Bytes::from_static(
            br#"{"push":{"connect":{"client":"c","subs":{"n":{"recoverable":true,"epoch":"e","offset":1}}}}}"#,
        );
        let publication =
            Bytes::from_static(br#"{"push":{"channel":"n","pub":{"data":{},"offset":2}}}"#);
        let chunk = framing.chunk(&[connect, publication]);
        assert_eq!(
            std::str::from_utf8(&chunk).unwrap(),
            "data: {\"connect\":{\"client\":\"c\",\"subs\":{\"n\":{\"recoverable\":true,\"epoch\":\"e\",\"offset\":1}}}}\n\n\
             data: {\"channel\":\"n\",\"pub\":{\"data\":{},\"offset\":2}}\nid: 2:e:n\n\n"
        );
        let ping = framing.chunk(&[Bytes::from_static(b"{}")]);
        assert_eq!(ping, "data: {}\n\n", "no id when nothing moved");
    }

    #[test]
    fn lines_end_every_message() {
        let mut framing = Framing::Lines { uni: false };
        let chunk = framing.chunk(&[Bytes::from_static(b"{\"id\":1}"), Bytes::from_static(b"{}")]);
        assert_eq!(chunk, "{\"id\":1}\n{}\n");
    }
}
