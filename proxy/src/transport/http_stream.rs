//! The transports whose server→client half is one long HTTP response:
//!
//! | endpoint | request | response |
//! |---|---|---|
//! | `/connection/http_stream` | POST, body = connect command frame (JSON, or Protobuf with `Content-Type: application/octet-stream`) | JSON lines / varint-delimited Protobuf Replies |
//! | `/connection/sse` | GET `?cf_connect=<connect command>`, or POST | `data: <Reply>` events |
//! | `/connection/uni_http_stream` | POST, body = ConnectRequest | JSON lines of Pushes |
//! | `/connection/uni_sse` | GET `?cf_connect=<ConnectRequest>`, or POST | `data: <Push>` events, with [`cursor`](super::cursor) ids |
//!
//! The emulated ones get their further commands through `/emulation`. A writer task
//! ([`stream_writer`](super::stream_writer)) drains the connection's outbox into the response
//! through a one-chunk channel: hyper takes the next
//! chunk only when the previous one is on its way, so a client that stops reading holds up the
//! writer, which closes the connection as slow after `websocket.write_timeout`; a client that
//! goes away drops the response and the writer ends the session. Queued messages are written
//! together, as on WebSocket.

// The error of the request checks is the response that refuses the request, built only then.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt as _;
use gyre_proto::Encoding;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::sync::oneshot;

use super::admission::{ConnectionSlot, Unauthenticated};
use super::cursor::{self, Cursor};
use super::driver::Connection;
use super::http as shared;
use super::uni;
use crate::config::ConnectCodeToHttpResponse;
use crate::hooks::headers::ClientContext;
use crate::protocol::node::Node;
use crate::protocol::session::{ConnectOutcome, Mode, TransportInfo};
use crate::transport::Transports;
use crate::transport::http::{Body, text};
use crate::transport::stream_writer::{Ended, Framing, Writer, response_body};
use gyre_proto::codes::Disconnect;

/// How a response lays messages out.
#[derive(Debug)]
enum Layout {
    /// The encoding's own stream: JSON lines, or varint-delimited Protobuf as queued.
    Stream,
    /// One `data:` event per message; with a cursor, the last event of each chunk carries the
    /// channels' positions as its id.
    Events { cursor: Option<Cursor> },
}

/// How a response carries a connection's messages: laid out per `layout`, each as the client
/// of the connection's mode receives it ([`uni::as_sent`]).
#[derive(Debug)]
struct ResponseFraming {
    layout: Layout,
    encoding: Encoding,
    mode: Mode,
}

impl ResponseFraming {
    fn new(transport: &TransportInfo, layout: Layout) -> Self {
        Self {
            layout,
            encoding: transport.encoding,
            mode: transport.mode,
        }
    }
}

impl Framing for ResponseFraming {
    const TRANSPORT: &'static str = "http";

    /// SSE starts with an empty line, so that the browser sees the stream open at once.
    fn opening(&self) -> Vec<Bytes> {
        match self.layout {
            Layout::Events { .. } => vec![Bytes::from_static(b"\r\n")],
            Layout::Stream => Vec::new(),
        }
    }

    fn messages(&mut self, messages: &[Bytes]) -> Bytes {
        if let ([single], Layout::Stream, Encoding::Protobuf) =
            (messages, &self.layout, self.encoding)
        {
            return single.clone();
        }
        let size: usize = messages.iter().map(|m| m.len() + 8).sum();
        let mut chunk = BytesMut::with_capacity(size);
        match (&mut self.layout, self.encoding) {
            (Layout::Stream, Encoding::Protobuf) => {
                messages.iter().for_each(|m| chunk.put_slice(m))
            }
            (Layout::Stream, Encoding::Json) => {
                for message in messages {
                    chunk.put_slice(&uni::as_sent(self.mode, message));
                    chunk.put_u8(b'\n');
                }
            }
            (Layout::Events { cursor }, _) => {
                let last = messages.len().saturating_sub(1);
                for (i, message) in messages.iter().enumerate() {
                    let message = uni::as_sent(self.mode, message);
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

    /// The session's pings keep the stream alive.
    fn heartbeat(&self) -> Option<(Duration, Bytes)> {
        None
    }

    /// No close frame exists here: the code travels as a disconnect push.
    fn close(&mut self, disconnect: &Disconnect) -> Bytes {
        self.messages(&[uni::disconnect_reply(self.encoding, disconnect)])
    }
}

/// Starts a streaming connection: the session gets `connect` as the client's first frame and
/// then only what `/emulation` routes to it. With `report`, also how the connect ends.
#[allow(clippy::too_many_arguments)]
fn start(
    node: &Arc<Node>,
    transports: &Transports,
    transport: TransportInfo,
    layout: Layout,
    connect: Bytes,
    unauthenticated: Option<Unauthenticated>,
    context: ClientContext,
    report: bool,
) -> (Body, Option<oneshot::Receiver<ConnectOutcome>>) {
    let mut connection = Connection::open(node, transport, context);
    connection.until_connected(unauthenticated);
    let outcome = report.then(|| connection.report_connect());
    let outbox = Arc::clone(connection.outbox());
    let (mut sink, body) = response_body();
    let write_timeout = node.config.websocket.write_timeout;
    let framing = ResponseFraming::new(&transport, layout);
    transports.tasks.spawn(async move {
        let writer = tokio::spawn(async move {
            let ended = Writer::new(&outbox, framing)
                .run(&mut sink, write_timeout, None)
                .await;
            if let Ended::Failed(disconnect) = ended {
                outbox.close(disconnect);
            }
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
    (body, outcome)
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
    let (encoding, content_type) = if protobuf {
        (Encoding::Protobuf, "application/octet-stream")
    } else {
        (Encoding::Json, "application/json")
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
        Layout::Stream,
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
    let (body, _) = start(
        &node,
        &transports,
        transport,
        Layout::Events { cursor: None },
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
        Layout::Stream,
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
    let layout = Layout::Events {
        cursor: Some(Cursor::default()),
    };
    let transforms = &node.config.uni_sse.connect_code_to_http_response;
    let started = start(
        &node,
        &transports,
        uni_transport("uni_sse"),
        layout,
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
        let mut framing = ResponseFraming::new(
            &uni_transport("uni_sse"),
            Layout::Events {
                cursor: Some(Cursor::default()),
            },
        );
        let connect = Bytes::from_static(
            br#"{"push":{"connect":{"client":"c","subs":{"n":{"recoverable":true,"epoch":"e","offset":1}}}}}"#,
        );
        let publication =
            Bytes::from_static(br#"{"push":{"channel":"n","pub":{"data":{},"offset":2}}}"#);
        let chunk = framing.messages(&[connect, publication]);
        assert_eq!(
            std::str::from_utf8(&chunk).unwrap(),
            "data: {\"connect\":{\"client\":\"c\",\"subs\":{\"n\":{\"recoverable\":true,\"epoch\":\"e\",\"offset\":1}}}}\n\n\
             data: {\"channel\":\"n\",\"pub\":{\"data\":{},\"offset\":2}}\nid: 2:e:n\n\n"
        );
        let ping = framing.messages(&[Bytes::from_static(b"{}")]);
        assert_eq!(ping, "data: {}\n\n", "no id when nothing moved");
    }

    #[test]
    fn lines_end_every_message() {
        let transport = TransportInfo {
            name: "http_stream",
            encoding: Encoding::Json,
            mode: Mode::Emulated,
            deflate: None,
        };
        let mut framing = ResponseFraming::new(&transport, Layout::Stream);
        let chunk =
            framing.messages(&[Bytes::from_static(b"{\"id\":1}"), Bytes::from_static(b"{}")]);
        assert_eq!(chunk, "{\"id\":1}\n{}\n");
    }
}
