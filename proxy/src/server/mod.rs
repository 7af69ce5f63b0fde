//! The HTTP server: one port for client connections, the server API, health and the demo page;
//! graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gyre_proto::Encoding;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

use crate::protocol::codes;
use crate::protocol::node::Node;
use crate::transport::{self, http_stream, websocket};

pub type Body = BoxBody<Bytes, hyper::Error>;

const DEMO_PAGE: &str = include_str!("demo.html");

/// Pending connections the kernel may queue before `accept`; it caps this at
/// `net.core.somaxconn`. tokio's default (1024) overflows when thousands of clients reconnect at
/// once (a deploy, a network blip): dropped SYNs are retried only after the kernel's 1 s SYN
/// timeout, which was the whole tail of a measured 10,000-client reconnect storm.
const LISTEN_BACKLOG: u32 = 65_535;

/// Binds the client listener on `address` (`host:port`) with a deep accept queue.
pub async fn listen(address: &str) -> std::io::Result<TcpListener> {
    let mut last_error = None;
    for addr in tokio::net::lookup_host(address).await? {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket
            .bind(addr)
            .and_then(|()| socket.listen(LISTEN_BACKLOG))
        {
            Ok(listener) => return Ok(listener),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to listen on")
    }))
}

/// Serves until `shutdown` resolves, then closes every client connection with 3001 (the SDKs
/// reconnect, to another node if there is one) and waits for them for at most `drain`.
pub async fn run(
    node: Arc<Node>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    let graceful = GracefulShutdown::new();
    // Upgraded WebSocket connections leave hyper's view once upgraded; this tracks them so the
    // drain waits until each has written its close frame.
    let sessions = TaskTracker::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Running out of file descriptors must not end the server.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let node = Arc::clone(&node);
        let sessions = sessions.clone();
        let service =
            service_fn(move |request| route(Arc::clone(&node), sessions.clone(), request));
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "http connection ended with an error");
            }
        });
    }
    tracing::info!("shutting down: closing client connections");
    node.hub.disconnect_all(&codes::SHUTDOWN);
    sessions.close();
    let drained = async {
        graceful.shutdown().await;
        sessions.wait().await;
    };
    if tokio::time::timeout(drain, drained).await.is_err() {
        tracing::warn!("connections still open after {drain:?}; exiting anyway");
    }
}

async fn route(
    node: Arc<Node>,
    sessions: TaskTracker,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path().to_owned();
    let config = &node.config;
    let response = match (request.method(), path.as_str()) {
        (&Method::GET, "/connection/websocket") => {
            websocket_upgrade(node, &sessions, request, Kind::Bidirectional)
        }
        (_, "/connection/uni_websocket") if config.uni_websocket.enabled => {
            websocket_upgrade(node, &sessions, request, Kind::Unidirectional)
        }
        (_, p) if p.starts_with("/connection/sockjs") && config.sockjs.enabled => {
            transport::sockjs::handle(node, sessions, request).await
        }
        (&Method::OPTIONS, p) if p.starts_with("/connection/") => {
            transport::http::preflight(&node, &request, "GET, POST, OPTIONS")
        }
        (_, "/connection/http_stream") if config.http_stream.enabled => {
            http_stream::http_stream(node, sessions, request).await
        }
        (_, "/connection/sse") if config.sse.enabled => {
            http_stream::sse(node, sessions, request).await
        }
        (_, "/connection/uni_http_stream") if config.uni_http_stream.enabled => {
            http_stream::uni_http_stream(node, sessions, request).await
        }
        (_, "/connection/uni_sse") if config.uni_sse.enabled => {
            http_stream::uni_sse(node, sessions, request).await
        }
        (_, "/emulation") if config.http_stream.enabled || config.sse.enabled => {
            transport::emulation::handle(node, request).await
        }
        (_, p) if p.starts_with("/connection/sockjs") => disabled("/connection/sockjs"),
        (_, p) if p.starts_with("/connection/") || p == "/emulation" => disabled(p),
        (&Method::GET, "/health") => json(StatusCode::OK, "{}"),
        (&Method::GET, "/metrics") => with_type(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            full(crate::metrics::render(&node.hub)),
        ),
        (&Method::GET, "/") => html(DEMO_PAGE),
        (_, p) if p == "/api" || p.starts_with("/api/") => crate::api::handle(node, request).await,
        _ => text(StatusCode::NOT_FOUND, "not found"),
    };
    Ok(response)
}

/// A transport endpoint that is off (or does not exist): say which setting turns it on.
fn disabled(path: &str) -> Response<Body> {
    let section = match path {
        "/emulation" => "http_stream or sse",
        p => p.trim_start_matches("/connection/"),
    };
    text(
        StatusCode::NOT_FOUND,
        &format!("{path} is not enabled (set {section}.enabled = true)"),
    )
}

/// Which WebSocket endpoint an upgrade is for.
enum Kind {
    Bidirectional,
    Unidirectional,
}

fn websocket_upgrade(
    node: Arc<Node>,
    sessions: &TaskTracker,
    mut request: Request<Incoming>,
    kind: Kind,
) -> Response<Body> {
    let headers = request.headers();
    let key = websocket::upgrade_key(headers).filter(|_| request.method() == Method::GET);
    let Some(key) = key else {
        return text(StatusCode::BAD_REQUEST, "expected a WebSocket upgrade");
    };
    if let Err(refused) = transport::http::admit(&node, headers) {
        return refused;
    }
    let offered: Vec<String> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|p| p.trim().to_owned()))
        .collect();
    let query = request.uri().query().unwrap_or("");
    let protobuf_query = query
        .split('&')
        .any(|kv| kv == "format=protobuf" || kv == "cf_protocol=protobuf");
    let (flavor, echo, max_message_size) = match kind {
        Kind::Bidirectional => {
            let (encoding, echo) = if offered
                .iter()
                .any(|p| p == Encoding::PROTOBUF_WS_SUBPROTOCOL)
            {
                (Encoding::Protobuf, Some(Encoding::PROTOBUF_WS_SUBPROTOCOL))
            } else if offered.iter().any(|p| p == Encoding::JSON_WS_SUBPROTOCOL) {
                (Encoding::Json, Some(Encoding::JSON_WS_SUBPROTOCOL))
            } else if protobuf_query {
                (Encoding::Protobuf, None)
            } else {
                (Encoding::Json, None)
            };
            let limit = node.config.websocket.message_size_limit as usize;
            let offers = headers
                .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
                .iter()
                .filter_map(|v| v.to_str().ok());
            let deflate = (node.config.websocket.compression
                && transport::permessage_deflate::accepts(offers))
            .then(|| node.config.websocket.deflate());
            (
                websocket::Flavor::Bidirectional { encoding, deflate },
                echo,
                limit,
            )
        }
        Kind::Unidirectional => {
            let flavor = websocket::Flavor::Unidirectional {
                cf_connect: transport::http::query_param(&request, "cf_connect").map(Bytes::from),
                join: node.config.uni_websocket.join_push_messages,
            };
            let limit = node.config.uni_websocket.message_size_limit as usize;
            (flavor, None, limit)
        }
    };

    let compressed = matches!(
        flavor,
        websocket::Flavor::Bidirectional {
            deflate: Some(_),
            ..
        }
    );
    let upgrade = hyper::upgrade::on(&mut request);
    sessions.spawn(async move {
        // Scoped so that nothing of the upgrade stays in the task (and in every idle
        // connection's memory) while the connection is served.
        let upgraded = match upgrade.await {
            Ok(upgraded) => upgraded,
            Err(error) => {
                tracing::debug!(%error, "websocket upgrade failed");
                return;
            }
        };
        websocket::serve(node, upgraded, flavor, max_message_size).await;
    });

    let mut response = websocket::switching_protocols(&key);
    if let Some(protocol) = echo {
        response = response.header(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(protocol),
        );
    }
    if compressed {
        response = response.header(
            header::SEC_WEBSOCKET_EXTENSIONS,
            HeaderValue::from_static(transport::permessage_deflate::RESPONSE),
        );
    }
    response
        .body(empty())
        .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "upgrade"))
}

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

fn html(page: &'static str) -> Response<Body> {
    with_type(StatusCode::OK, "text/html; charset=utf-8", full(page))
}

fn with_type(status: StatusCode, content_type: &'static str, body: Body) -> Response<Body> {
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
