//! What the HTTP transports share: admission (origin, connection limit), CORS, request bodies
//! with a size limit, the query's `cf_connect`, and the headers that keep proxies from caching
//! or buffering a stream.

// The error of the request checks is the response that refuses the request, built only then.
#![allow(clippy::result_large_err)]

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited, combinators::BoxBody};
use hyper::body::Incoming;

use crate::protocol::node::Node;

/// CORS response headers for a request whose origin passed [`admit`].
#[derive(Debug, Default, Clone)]
pub struct Cors {
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Cors {
    /// Adds the headers to a response.
    pub fn apply(&self, response: &mut Response<Body>) {
        for (name, value) in &self.headers {
            response.headers_mut().insert(name.clone(), value.clone());
        }
    }

    /// `response` with the headers added.
    pub fn applied(&self, mut response: Response<Body>) -> Response<Body> {
        self.apply(&mut response);
        response
    }
}

/// The checks every connection endpoint makes before anything else: the origin
/// (`client.allowed_origins`; requests without an Origin pass) and the node's connection limit.
/// Returns the CORS headers to send, or the response that refuses the request.
pub fn admit(
    node: &Node,
    transports: &super::Transports,
    headers: &HeaderMap,
) -> Result<Cors, Response<Body>> {
    let cors = cors(node, headers)?;
    let limit = node.config.client.connection_limit as usize;
    if limit > 0 && node.hub.num_connections() >= limit {
        let mut response = text(
            StatusCode::SERVICE_UNAVAILABLE,
            "connection limit of this node reached (client.connection_limit)",
        );
        cors.apply(&mut response);
        return Err(response);
    }
    if !transports.handshakes.admit() {
        metrics::counter!(crate::metrics::HANDSHAKES_REFUSED).increment(1);
        let mut response = text(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many connection attempts: retry shortly (client.handshake_rate_limit or \
             connection_rate_limit)",
        );
        cors.apply(&mut response);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return Err(response);
    }
    Ok(cors)
}

/// Whether a page at `origin` talks to the host it came from (`scheme://host[:port]` against the
/// request's `Host`): what an empty `allowed_origins` admits.
fn same_host(origin: &str, host: Option<&HeaderValue>) -> bool {
    let Some(host) = host.and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let authority = origin.split_once("://").map_or("", |(_, rest)| rest);
    let authority = authority.split('/').next().unwrap_or_default();
    !authority.is_empty() && authority.eq_ignore_ascii_case(host)
}

/// Checks the Origin and builds the CORS headers for an allowed one.
pub fn cors(node: &Node, headers: &HeaderMap) -> Result<Cors, Response<Body>> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(Cors::default());
    };
    let patterns = &node.config.client.allowed_origins;
    let allowed = origin.to_str().is_ok_and(|origin| {
        if patterns.is_empty() {
            same_host(origin, headers.get(header::HOST))
        } else {
            origin_allowed(patterns, origin)
        }
    });
    if !allowed {
        return Err(text(
            StatusCode::FORBIDDEN,
            "origin not allowed (client.allowed_origins)",
        ));
    }
    let mut cors = Cors::default();
    cors.headers
        .push((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone()));
    cors.headers.push((
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    ));
    if let Some(requested) = headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        cors.headers
            .push((header::ACCESS_CONTROL_ALLOW_HEADERS, requested.clone()));
    }
    Ok(cors)
}

/// The answer to a CORS preflight (`OPTIONS`) of a connection or `/emulation` endpoint.
pub fn preflight(
    node: &Node,
    request: &Request<Incoming>,
    methods: &'static str,
) -> Response<Body> {
    match cors(node, request.headers()) {
        Ok(cors) => {
            let mut response = Response::new(empty());
            *response.status_mut() = StatusCode::NO_CONTENT;
            cors.apply(&mut response);
            let headers = response.headers_mut();
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(methods),
            );
            headers.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("300"),
            );
            response
        }
        Err(refused) => refused,
    }
}

/// Reads a request body of at most `limit` bytes within `http_server.read_body_timeout`: 413
/// beyond the size, 408 beyond the time, 400 if it cannot be read.
pub async fn read_body(
    node: &Node,
    request: Request<Incoming>,
    limit: u32,
) -> Result<Bytes, Response<Body>> {
    read_body_within(
        request,
        limit as usize,
        node.config.http_server.read_body_timeout,
    )
    .await
}

/// [`read_body`] with its limits given; `timeout` zero = no time limit.
pub async fn read_body_within(
    request: Request<Incoming>,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, Response<Body>> {
    if let Some(length) = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && length > limit
    {
        return Err(too_large(limit));
    }
    let collect = Limited::new(request.into_body(), limit).collect();
    let collected = if timeout.is_zero() {
        collect.await
    } else {
        match tokio::time::timeout(timeout, collect).await {
            Ok(collected) => collected,
            Err(_) => {
                metrics::counter!(crate::metrics::HTTP_TIMEOUTS, "phase" => "body").increment(1);
                let mut response = text(
                    StatusCode::REQUEST_TIMEOUT,
                    &format!(
                        "request body not received within {} (http_server.read_body_timeout)",
                        crate::config::format_duration(timeout)
                    ),
                );
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                return Err(response);
            }
        }
    };
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(too_large(limit)),
        Err(error) => Err(text(
            StatusCode::BAD_REQUEST,
            &format!("request body could not be read: {error}"),
        )),
    }
}

fn too_large(limit: usize) -> Response<Body> {
    text(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("request body larger than {limit} bytes"),
    )
}

/// A query parameter, percent-decoded.
pub fn query_param(request: &Request<Incoming>, name: &str) -> Option<String> {
    let query = request.uri().query()?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// Whether a request body is Protobuf: `Content-Type` is exactly `application/octet-stream`.
pub fn is_protobuf(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == b"application/octet-stream")
}

/// A `200 OK` streaming response: headers that keep caches and proxies (nginx's
/// `X-Accel-Buffering`) from storing or buffering it, plus the CORS headers.
pub fn stream_response(content_type: &'static str, cors: &Cors, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    cors.apply(&mut response);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache, no-store, must-revalidate, max-age=0"),
    );
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    headers.insert(header::EXPIRES, HeaderValue::from_static("0"));
    headers.insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    response
}

/// The client address of a request's connection (a request extension): the TCP peer, or for a
/// connection bridged from a TLS port the client behind the bridge.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

/// The body of every response gyre sends: fixed bytes, or a stream of a transport's frames.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// `client.allowed_origins`: `*` wildcards; an empty list allows only requests without an
/// Origin header (i.e. no browsers).
pub fn origin_allowed(patterns: &[String], origin: &str) -> bool {
    let origin = origin.to_ascii_lowercase();
    patterns
        .iter()
        .any(|pattern| glob_match(&pattern.to_ascii_lowercase(), &origin))
}

fn glob_match(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((prefix, rest)) => {
            let Some(mut remaining) = text.strip_prefix(prefix) else {
                return false;
            };
            if rest.is_empty() {
                return true;
            }
            loop {
                if glob_match(rest, remaining) {
                    return true;
                }
                let mut chars = remaining.chars();
                if chars.next().is_none() {
                    return false;
                }
                remaining = chars.as_str();
            }
        }
    }
}

pub fn empty() -> Body {
    Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed()
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn text(status: StatusCode, message: &str) -> Response<Body> {
    with_type(
        status,
        "text/plain; charset=utf-8",
        full(format!("{message}\n")),
    )
}

pub fn json(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    with_type(status, "application/json", full(body))
}

pub fn html(page: impl Into<Bytes>) -> Response<Body> {
    with_type(StatusCode::OK, "text/html; charset=utf-8", full(page))
}

pub fn with_type(status: StatusCode, content_type: &'static str, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_match_globs() {
        let patterns = vec![
            "https://*.example.com".to_owned(),
            "http://localhost:*".to_owned(),
        ];
        assert!(origin_allowed(&patterns, "https://app.example.com"));
        assert!(origin_allowed(&patterns, "HTTP://LOCALHOST:3000"));
        assert!(!origin_allowed(&patterns, "https://example.org"));
        assert!(origin_allowed(&["*".to_owned()], "https://any.where"));
        assert!(!origin_allowed(&[], "https://any.where"));
    }
}
