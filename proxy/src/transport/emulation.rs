//! `/emulation`: the client→server half of `http_stream` and `sse`. The body names the session
//! (and node) from the connect result and carries a frame of commands; their replies travel
//! down the session's stream, so this answers 204 at once.
//!
//! No sticky sessions: a POST that reaches another node than the one holding the stream is
//! forwarded there through the engine's control channel (Redis PUB/SUB), which every node
//! reads; the node holding the session feeds it the frame. With the memory engine there is one
//! node, so a foreign node id is answered 404.

use std::sync::Arc;

use gyre_proto::Encoding;
use gyre_proto::codec;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::admission::ConnectionSlot;
use super::http as shared;
use crate::engine::{ControlCommand, Engine};
use crate::protocol::node::Node;
use crate::transport::Transports;
use crate::transport::http::{Body, empty, text};

pub async fn handle(
    node: Arc<Node>,
    transports: &Transports,
    request: Request<Incoming>,
) -> Response<Body> {
    if request.method() == Method::OPTIONS {
        return shared::preflight(&node, &request, "POST, OPTIONS");
    }
    if request.method() != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use POST");
    }
    let cors = match shared::cors(&node, request.headers()) {
        Ok(cors) => cors,
        Err(refused) => return refused,
    };
    let mut response = route(&node, transports, request).await;
    cors.apply(&mut response);
    response
}

async fn route(node: &Node, transports: &Transports, request: Request<Incoming>) -> Response<Body> {
    let encoding = if shared::is_protobuf(request.headers()) {
        Encoding::Protobuf
    } else {
        Encoding::Json
    };
    let limit = node.config.emulation.max_request_body_size;
    // Reading the body consumes the request; the connection's slot is needed after it.
    let connection = ConnectionSlot::of(&request);
    let body = match shared::read_body(node, request, limit).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let request = match codec::decode_emulation_request(encoding, body) {
        Ok(request) => request,
        Err(error) => {
            return text(
                StatusCode::BAD_REQUEST,
                &format!("not an emulation request: {error}"),
            );
        }
    };
    if request.session.is_empty() || request.data.is_empty() {
        return text(StatusCode::BAD_REQUEST, "session and data are required");
    }
    metrics::counter!(crate::metrics::EMULATION_REQUESTS).increment(1);
    if request.node == node.id {
        // A session that is gone is not an error: its client is reconnecting anyway.
        if node.hub.emulate(&request.session, request.data)
            && let Some(connection) = connection
        {
            // It carries a live session's commands: not a connection waiting to authenticate.
            connection.release();
        }
        return no_content();
    }
    // Only to a node that announced itself: a made-up node id would otherwise have every node
    // receive (and drop) whatever anyone posts.
    if matches!(node.engine, Engine::Memory(_)) || !node.nodes.is_alive(&request.node) {
        return text(StatusCode::NOT_FOUND, "unknown node");
    }
    let Ok(_forwarding) = transports.emulation_forwards.try_acquire() else {
        let mut response = text(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many requests being forwarded to other nodes (emulation.max_concurrent_forwards)",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    };
    let command = ControlCommand::Emulation {
        session: request.session,
        frame: request.data,
    };
    match node.engine.publish_control(&command).await {
        Ok(()) => no_content(),
        Err(error) => {
            tracing::warn!(%error, "emulation request not forwarded");
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                "the node holding the session is unreachable",
            )
        }
    }
}

fn no_content() -> Response<Body> {
    let mut response = Response::new(empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}
