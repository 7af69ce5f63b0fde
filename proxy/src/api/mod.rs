//! The HTTP server API (`POST /api/<method>`), with Centrifugo's request and response shapes so
//! that existing backends and the `cent` client work unchanged.
//!
//! Authentication: `X-API-Key: <key>` or `Authorization: apikey <key>` (`http_api.key`), unless
//! `http_api.insecure`. Answers are HTTP 200 with `{"result":…}` or `{"error":{code,message}}`;
//! requests that are not API calls at all (wrong HTTP method, a body that is not the method's
//! request JSON) get a 4xx with a message. `batch` answers with `{"replies":[…]}` (see `batch`).
//! `POST /api` itself takes Centrifugo's older `{"method":…,"params":…}` commands (see `legacy`).

mod batch;
mod legacy;
mod methods;
mod reply;

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::protocol::node::Node;
use crate::transport::admission::ConnectionSlot;
use crate::transport::http::read_body_within;
use crate::transport::http::{Body, json, text};
use gyre_proto::codes::{self, ErrorCode};

/// Largest API request body (a `batch` of publications can be large, but not unbounded).
const MAX_BODY: usize = 4 << 20;

/// An API error (`{"error":{"code":…,"message":…}}`): the same codes and messages as the
/// client protocol's errors (`gyre_proto::codes`), without the `temporary` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiError(pub ErrorCode);

impl Serialize for ApiError {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut error = serializer.serialize_struct("ApiError", 2)?;
        error.serialize_field("code", &self.0.code)?;
        error.serialize_field("message", self.0.message)?;
        error.end()
    }
}

pub const INTERNAL: ApiError = ApiError(codes::INTERNAL);
pub const UNKNOWN_CHANNEL: ApiError = ApiError(codes::UNKNOWN_CHANNEL);
pub const METHOD_NOT_FOUND: ApiError = ApiError(codes::METHOD_NOT_FOUND);
pub const BAD_REQUEST: ApiError = ApiError(codes::BAD_REQUEST);
pub const NOT_AVAILABLE: ApiError = ApiError(codes::NOT_AVAILABLE);
pub const UNRECOVERABLE_POSITION: ApiError = ApiError(codes::UNRECOVERABLE_POSITION);

impl From<crate::engine::EngineError> for ApiError {
    fn from(error: crate::engine::EngineError) -> Self {
        tracing::warn!(%error, "api: engine call failed");
        INTERNAL
    }
}

/// Why a method call has no result.
#[derive(Debug)]
pub enum CallError {
    /// An answer in Centrifugo's shape: HTTP 200 with `{"error":{code,message}}`.
    Api(ApiError),
    /// The body is not the method's request (bad JSON syntax, wrong types, missing fields): not
    /// an API call at all, so HTTP 400 naming the problem; inside a batch, error 107 for that
    /// command alone.
    Undecodable(serde_json::Error),
}

impl From<ApiError> for CallError {
    fn from(error: ApiError) -> Self {
        Self::Api(error)
    }
}

impl From<crate::engine::EngineError> for CallError {
    fn from(error: crate::engine::EngineError) -> Self {
        Self::Api(error.into())
    }
}

/// The JSON of one method's result, or why there is none.
pub type MethodResult = Result<Box<RawValue>, CallError>;

pub async fn handle(node: Arc<Node>, request: Request<Incoming>) -> Response<Body> {
    if request.method() != Method::POST {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "the server API takes POST requests",
        );
    }
    if !authorized(&node, &request) {
        return text(StatusCode::UNAUTHORIZED, "missing or wrong API key");
    }
    // A backend with the key: its connection is no longer one that may be an attacker's.
    ConnectionSlot::authenticated(&request);
    let method = request
        .uri()
        .path()
        .strip_prefix("/api")
        .unwrap_or("")
        .trim_start_matches('/')
        .to_owned();
    let timeout = node.config.http_server.read_body_timeout;
    let body = match read_body_within(request, MAX_BODY, timeout).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    if method.is_empty() {
        return match legacy::run(&node, &body).await {
            Ok(replies) => json(StatusCode::OK, Bytes::from(replies)),
            Err(error) => {
                tracing::debug!(%error, "api: bad legacy request body");
                text(StatusCode::BAD_REQUEST, &error.to_string())
            }
        };
    }
    if method == "batch" {
        // Centrifugo answers a batch with its replies at the top level, not inside "result".
        return match batch::run(&node, &body).await {
            Ok(replies) => json(StatusCode::OK, Bytes::from(replies)),
            Err(error) => undecodable(&method, &error),
        };
    }
    match methods::call(&node, &method, &body).await {
        Ok(result) => json(
            StatusCode::OK,
            Bytes::from(format!("{{\"result\":{}}}", result.get())),
        ),
        Err(CallError::Api(error)) => json(StatusCode::OK, Bytes::from(reply::error(error))),
        Err(CallError::Undecodable(error)) => undecodable(&method, &error),
    }
}

/// One method call answered as `/api/<method>` answers it, for callers that authenticated
/// their own way (the admin UI's session token instead of the API key).
pub async fn answer(node: &Node, method: &str, body: &[u8]) -> Response<Body> {
    if method == "batch" {
        return match batch::run(node, body).await {
            Ok(replies) => json(StatusCode::OK, Bytes::from(replies)),
            Err(error) => undecodable(method, &error),
        };
    }
    match methods::call(node, method, body).await {
        Ok(result) => json(
            StatusCode::OK,
            Bytes::from(format!("{{\"result\":{}}}", result.get())),
        ),
        Err(CallError::Api(error)) => json(StatusCode::OK, Bytes::from(reply::error(error))),
        Err(CallError::Undecodable(error)) => undecodable(method, &error),
    }
}

/// HTTP 400 for a body that is not `method`'s request, with serde's account of why (which
/// field, what was expected, where).
fn undecodable(method: &str, error: &serde_json::Error) -> Response<Body> {
    tracing::debug!(method, %error, "api: undecodable request body");
    text(
        StatusCode::BAD_REQUEST,
        &format!("the body is not a valid {method} request: {error}"),
    )
}

fn authorized(node: &Node, request: &Request<Incoming>) -> bool {
    let config = &node.config.http_api;
    if config.insecure {
        return true;
    }
    if config.key.is_empty() {
        // No key configured and not insecure: the API is closed rather than open to anyone.
        return false;
    }
    let headers = request.headers();
    let from_header = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let from_authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("apikey "))
        .map(|v| v.trim().to_owned());
    let from_query = request.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("api_key=").map(str::to_owned))
    });
    [from_header, from_authorization, from_query]
        .into_iter()
        .flatten()
        .any(|key| constant_time_eq(key.as_bytes(), config.key.as_bytes()))
}

/// Compares without leaking, through timing, how much of the key was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
