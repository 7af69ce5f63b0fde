//! `/connection/sockjs`: the SockJS protocol (0.3.3) for centrifuge-js's `sockjs` transport
//! (sockjs-client 1.x). Each SockJS message is one Centrifuge JSON frame: commands from the
//! client, newline-separated replies from the server (JSON only; no Protobuf over SockJS).
//!
//! | path under `/connection/sockjs` | method | |
//! |---|---|---|
//! | `/` | GET | greeting |
//! | `/info` | GET, OPTIONS | `{"websocket":true,"origins":["*:*"],"cookie_needed":false,"entropy":…}` |
//! | `/<server>/<session>/websocket` | GET (upgrade) | `websocket` sub-transport ([`websocket`]) |
//! | `/<server>/<session>/xhr` | POST | `xhr-polling` receiver |
//! | `/<server>/<session>/xhr_streaming` | POST | `xhr-streaming` receiver |
//! | `/<server>/<session>/eventsource` | GET | `eventsource` receiver |
//! | `/<server>/<session>/xhr_send` | POST | the client's messages for the session (204) |
//! | `/websocket` | GET (upgrade) | raw WebSocket: Centrifuge JSON frames, no SockJS framing |
//!
//! Not served (404): the iframe-based sub-transports (`/iframe*.html`, `htmlfile`, `jsonp`,
//! `jsonp_send`), which only browsers without CORS-capable XHR need; sockjs-client falls back
//! to the ones above.
//!
//! Sessions of the HTTP sub-transports ([`session`]) live in the memory of the node that
//! created them, and every later request of the session (`xhr_send`, the next poll or stream)
//! must reach that node: behind a load balancer with several gyre nodes, SockJS needs sticky
//! routing (e.g. nginx `ip_hash`, or a cookie). Unlike `http_stream`/`sse`, whose `/emulation`
//! requests any node forwards through the engine, a SockJS request that lands on another node
//! finds no session (`xhr_send` gets 404, a receiver starts a new session the client does not
//! know). The `websocket` sub-transport is one connection and needs nothing of the sort.

// The error of the request checks is the response that refuses the request, built only then.
#![allow(clippy::result_large_err)]

pub mod frames;
pub mod session;
pub mod websocket;

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use self::session::Receiver;
pub use self::session::Sessions;
use super::http as shared;
use super::websocket::BadHandshake;
use crate::protocol::node::Node;
use crate::transport::Transports;
use crate::transport::admission::ConnectionSlot;
use crate::transport::http::{Body, empty, full, text};

const PREFIX: &str = "/connection/sockjs";

pub async fn handle(
    node: Arc<Node>,
    transports: Arc<Transports>,
    request: Request<Incoming>,
) -> Response<Body> {
    let path = request.uri().path().to_owned();
    let Some(rest) = path.strip_prefix(PREFIX) else {
        return not_found();
    };
    match rest {
        "" | "/" => text(StatusCode::OK, "Welcome to SockJS!"),
        "/info" => info(&node, &request),
        "/websocket" => upgrade(node, &transports, request, Upgrade::Raw),
        _ => match session_path(rest) {
            Some((session_id, transport)) => {
                let session_id = session_id.to_owned();
                session_request(node, transports, request, &session_id, transport.to_owned()).await
            }
            None => not_found(),
        },
    }
}

/// `/<server>/<session>/<transport>`: server and session ids are non-empty and have no dots.
fn session_path(rest: &str) -> Option<(&str, &str)> {
    let mut parts = rest.strip_prefix('/')?.split('/');
    let (server, session, transport) = (parts.next()?, parts.next()?, parts.next()?);
    let valid = |id: &str| !id.is_empty() && !id.contains('.');
    (parts.next().is_none() && valid(server) && valid(session)).then_some((session, transport))
}

async fn session_request(
    node: Arc<Node>,
    transports: Arc<Transports>,
    request: Request<Incoming>,
    session_id: &str,
    transport: String,
) -> Response<Body> {
    const SCRIPT: &str = "application/javascript; charset=UTF-8";
    let (receiver, method, content_type) = match transport.as_str() {
        "websocket" => return upgrade(node, &transports, request, Upgrade::SockJs),
        "xhr_send" => return xhr_send(&node, &transports, request, session_id).await,
        "xhr" => (Receiver::Polling, Method::POST, SCRIPT),
        "xhr_streaming" => (Receiver::XhrStreaming, Method::POST, SCRIPT),
        "eventsource" => (
            Receiver::EventSource,
            Method::GET,
            "text/event-stream; charset=UTF-8",
        ),
        // htmlfile, jsonp, jsonp_send: not served (see the module documentation).
        _ => return not_found(),
    };
    if request.method() == Method::OPTIONS {
        return options(&node, &request, "OPTIONS, POST");
    }
    if request.method() != method {
        return text(StatusCode::METHOD_NOT_ALLOWED, &format!("use {method}"));
    }
    let cors = match shared::cors(&node, request.headers()) {
        Ok(cors) => cors,
        Err(refused) => return refused,
    };
    // A new session is a new connection: the node's connection limit applies.
    let mut refused = None;
    let unauthenticated = ConnectionSlot::take(&request);
    let lookup = transports.sockjs.get_or_create(
        &node,
        &transports,
        session_id,
        unauthenticated,
        request.headers(),
        || match shared::admit(&node, &transports, request.headers()) {
            Ok(_) => true,
            Err(response) => {
                refused = Some(response);
                false
            }
        },
    );
    let Some(lookup) = lookup else {
        return refused.unwrap_or_else(|| text(StatusCode::SERVICE_UNAVAILABLE, "refused"));
    };
    let config = &node.config;
    let heartbeat_delay = config.sockjs.heartbeat_delay;
    let body = if receiver == Receiver::Polling {
        full(session::poll(lookup, heartbeat_delay).await)
    } else {
        let (sink, body) = super::stream_writer::response_body();
        let write_timeout = config.websocket.write_timeout;
        tokio::spawn(session::stream(
            lookup,
            receiver,
            sink,
            heartbeat_delay,
            write_timeout,
        ));
        body
    };
    shared::stream_response(content_type, &cors, body)
}

/// `xhr_send`: the client's messages, handed to the session in order before answering 204.
async fn xhr_send(
    node: &Node,
    transports: &Transports,
    request: Request<Incoming>,
    session_id: &str,
) -> Response<Body> {
    if request.method() == Method::OPTIONS {
        return options(node, &request, "OPTIONS, POST");
    }
    if request.method() != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use POST");
    }
    let cors = match shared::cors(node, request.headers()) {
        Ok(cors) => cors,
        Err(refused) => return refused,
    };
    let response = match deliver(node, transports, request, session_id).await {
        Ok(()) => {
            let mut response = Response::new(empty());
            *response.status_mut() = StatusCode::NO_CONTENT;
            response
        }
        Err(refused) => refused,
    };
    cors.applied(response)
}

async fn deliver(
    node: &Node,
    transports: &Transports,
    request: Request<Incoming>,
    session_id: &str,
) -> Result<(), Response<Body>> {
    let session = transports.sockjs.get(session_id).ok_or_else(not_found)?;
    // This connection carries a live session's messages: it is not waiting to authenticate.
    ConnectionSlot::authenticated(&request);
    let limit = node.config.emulation.max_request_body_size;
    let payload = shared::read_body(node, request, limit).await?;
    // The spec's answer to a payload it cannot use is a 500 with its message.
    let messages = frames::client_messages(&payload)
        .map_err(|error| text(StatusCode::INTERNAL_SERVER_ERROR, error.message()))?;
    if session.deliver(messages).await {
        Ok(())
    } else {
        // The session ended meanwhile.
        Err(not_found())
    }
}

fn info(node: &Node, request: &Request<Incoming>) -> Response<Body> {
    if request.method() == Method::OPTIONS {
        return options(node, request, "OPTIONS, GET");
    }
    if request.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use GET");
    }
    let cors = match shared::cors(node, request.headers()) {
        Ok(cors) => cors,
        Err(refused) => return refused,
    };
    let info = serde_json::json!({
        "websocket": true,
        "origins": ["*:*"],
        "cookie_needed": false,
        "entropy": rand::random::<u32>(),
    });
    shared::stream_response(
        "application/json; charset=UTF-8",
        &cors,
        full(info.to_string()),
    )
}

/// A CORS preflight; without an Origin it is still answered (sockjs-client sends none in Node).
fn options(node: &Node, request: &Request<Incoming>, methods: &'static str) -> Response<Body> {
    let mut response = shared::preflight(node, request, methods);
    if response.status() == StatusCode::NO_CONTENT {
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=31536000"),
        );
    }
    response
}

/// Which WebSocket endpoint an upgrade is for.
enum Upgrade {
    /// `/<server>/<session>/websocket`: SockJS framing.
    SockJs,
    /// `/websocket`: Centrifuge JSON frames as on `/connection/websocket`.
    Raw,
}

fn upgrade(
    node: Arc<Node>,
    transports: &Transports,
    mut request: Request<Incoming>,
    kind: Upgrade,
) -> Response<Body> {
    let headers = request.headers();
    let key = match super::websocket::handshake_key(request.method(), headers) {
        Ok(key) => key,
        // The spec's wording.
        Err(BadHandshake::NotUpgrade) => {
            return text(
                StatusCode::BAD_REQUEST,
                "Can \"Upgrade\" only to \"WebSocket\".",
            );
        }
        Err(bad) => return bad.response(),
    };
    if let Err(refused) = shared::admit(&node, transports, headers) {
        return refused;
    }
    let unauthenticated = ConnectionSlot::take(&request);
    let context = node.hooks.capture(request.headers());
    crate::transport::deadline::upgrading(&request);
    // A message is the client's frame inside a JSON string: escaping can double its size.
    let max_message_size = node.config.websocket.max_message_size().saturating_mul(2);
    let upgrade = hyper::upgrade::on(&mut request);
    transports.tasks.spawn(async move {
        match upgrade.await {
            Ok(upgraded) => match kind {
                Upgrade::SockJs => {
                    let socket = super::websocket::accept(upgraded, max_message_size, false).await;
                    websocket::serve(node, socket, unauthenticated, context).await;
                }
                Upgrade::Raw => {
                    let transport =
                        super::websocket::bidirectional(gyre_proto::Encoding::Json, None);
                    super::websocket::serve(
                        node,
                        upgraded,
                        transport,
                        None,
                        max_message_size,
                        unauthenticated,
                        context,
                    )
                    .await;
                }
            },
            Err(error) => tracing::debug!(%error, "sockjs websocket upgrade failed"),
        }
    });
    super::websocket::switching_protocols(&key)
        .body(empty())
        .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "upgrade"))
}

fn not_found() -> Response<Body> {
    text(StatusCode::NOT_FOUND, "Not found")
}
