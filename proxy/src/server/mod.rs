//! The HTTP server: a public port for client connections (over TLS with `http_server.tls`) and,
//! with `http_server.internal_port`, a second one for the server API, `/metrics`, `/health` and
//! the admin UI (else all on the public port), every endpoint under `http_server.handler_prefix`;
//! what every connection must do in time (`transport::deadline`), how many may wait unauthenticated
//! (`transport::admission`), accepting (`listener`), and graceful shutdown.

mod listener;
mod tls;

pub use listener::{OpenFiles, listen, raise_open_files_limit};
pub use tls::{ServerTls, server_configs as tls_server_configs, warnings as tls_warnings};

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::protocol::node::Node;
use crate::protocol::session::Mode;
use crate::transport::admission::ConnectionSlot;
use crate::transport::deadline::{Activity, Deadlines, TimedIo, TrackedBody};
use crate::transport::http::{Body, Peer, full, html, json, text, with_type};
use crate::transport::{self, Transports, http_stream, websocket};
use gyre_proto::codes;

const DEMO_PAGE: &str = include_str!("../demo.html");

/// The sockets the server accepts on.
pub struct Listeners {
    /// Client endpoints (and everything else unless there is an internal port).
    pub public: TcpListener,
    /// `http_server.internal_port`: the server API, `/metrics`, `/health` and the admin UI.
    pub internal: Option<TcpListener>,
    /// `http_server.tls` and `internal_tls`: which ports speak TLS.
    pub tls: ServerTls,
}

/// Which listener a connection arrived on: it decides which endpoints the connection reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    Public,
    Internal,
}

/// Serves until `shutdown` resolves, then closes every client connection with 3001 (the SDKs
/// reconnect, to another node if there is one) and waits for them for at most `drain`.
pub async fn run(
    node: Arc<Node>,
    transports: Arc<Transports>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    let deadlines = Deadlines::from_config(&node.config.http_server);
    let mut public = listener::Acceptor::new(listeners.public);
    let mut internal = listeners.internal.map(listener::Acceptor::new);
    let timeout = node.config.http_server.read_header_timeout;
    let (public_bridge, mut public_bridged) = bridge(listeners.tls.public, timeout).await?;
    let (internal_bridge, mut internal_bridged) = bridge(
        listeners.tls.internal.filter(|_| internal.is_some()),
        timeout,
    )
    .await?;
    tokio::pin!(shutdown);
    loop {
        // Where it arrived, and the TLS bridge to hand it to (TLS ports) or that it came
        // through (their loopback listeners).
        let (stream, peer, port, bridge, encrypted) = tokio::select! {
            (stream, peer) = public.accept() => (stream, peer, Port::Public, &public_bridge, true),
            (stream, peer) = accept_from(&mut internal) => {
                (stream, peer, Port::Internal, &internal_bridge, true)
            }
            (stream, peer) = accept_from(&mut public_bridged) => {
                (stream, peer, Port::Public, &public_bridge, false)
            }
            (stream, peer) = accept_from(&mut internal_bridged) => {
                (stream, peer, Port::Internal, &internal_bridge, false)
            }
            () = &mut shutdown => break,
        };
        let peer = match bridge {
            Some(bridge) if !encrypted => bridge.client_of(peer).unwrap_or(peer),
            _ => peer,
        };
        let Some(unauthenticated) = transports.unauthenticated.try_acquire() else {
            listener::refuse(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        if encrypted && let Some(bridge) = bridge {
            bridge.spawn(stream, peer, unauthenticated);
            continue;
        }
        let slot = ConnectionSlot::new(unauthenticated);
        let activity = Arc::new(Activity::default());
        let io = TimedIo::new(stream, Arc::clone(&activity), deadlines);
        let node = Arc::clone(&node);
        let transports = Arc::clone(&transports);
        let service = service_fn(move |mut request: Request<Incoming>| {
            // From here until its response body is dropped, the connection owes nothing.
            let in_progress = activity.request();
            request.extensions_mut().insert(slot.clone());
            request.extensions_mut().insert(Arc::clone(&activity));
            request.extensions_mut().insert(Peer(peer));
            let routed = route(Arc::clone(&node), Arc::clone(&transports), port, request);
            async move {
                let response = routed.await;
                Ok::<_, Infallible>(response.map(|body| TrackedBody::new(body, in_progress)))
            }
        });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(io), service)
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
    // Connections that left hyper's view (upgraded, streaming) drain here.
    transports.tasks.close();
    let drained = async {
        graceful.shutdown().await;
        transports.tasks.wait().await;
    };
    if tokio::time::timeout(drain, drained).await.is_err() {
        tracing::warn!("connections still open after {drain:?}; exiting anyway");
    }
    Ok(())
}

/// The TLS bridge of a port with `tls`, and the loopback listener it leads to.
async fn bridge(
    tls: Option<Arc<rustls::ServerConfig>>,
    handshake_timeout: Duration,
) -> std::io::Result<(Option<tls::Bridge>, Option<listener::Acceptor>)> {
    Ok(match tls {
        Some(server) => {
            let (bridge, listener) = tls::Bridge::new(server, handshake_timeout).await?;
            (Some(bridge), Some(listener::Acceptor::new(listener)))
        }
        None => (None, None),
    })
}

/// The next connection of an optional listener; never, without one.
async fn accept_from(
    acceptor: &mut Option<listener::Acceptor>,
) -> (tokio::net::TcpStream, std::net::SocketAddr) {
    match acceptor {
        Some(acceptor) => acceptor.accept().await,
        None => std::future::pending().await,
    }
}

/// `path` without the mount prefix `mount` (`http_server.handler_prefix`), or `None` when it is
/// not under it.
fn unmounted<'a>(path: &'a str, mount: &str) -> Option<&'a str> {
    if mount.is_empty() {
        return Some(path);
    }
    match path.strip_prefix(mount)? {
        "" => Some("/"),
        rest if rest.starts_with('/') => Some(rest),
        _ => None,
    }
}

/// Each endpoint whose path Centrifugo lets be set (`<section>.handler_prefix`): the configured
/// path (empty = the standard one) and the standard path the routes know it by.
fn endpoint_paths(config: &crate::config::Config) -> [(&str, &'static str); 10] {
    [
        (&config.websocket.handler_prefix, "/connection/websocket"),
        (
            &config.http_stream.handler_prefix,
            "/connection/http_stream",
        ),
        (&config.sse.handler_prefix, "/connection/sse"),
        (&config.emulation.handler_prefix, "/emulation"),
        (
            &config.uni_websocket.handler_prefix,
            "/connection/uni_websocket",
        ),
        (&config.uni_sse.handler_prefix, "/connection/uni_sse"),
        (
            &config.uni_http_stream.handler_prefix,
            "/connection/uni_http_stream",
        ),
        (&config.http_api.handler_prefix, "/api"),
        (&config.health.handler_prefix, "/health"),
        (&config.prometheus.handler_prefix, "/metrics"),
    ]
}

/// `path` as the routes know it: an endpoint's configured path becomes its standard one (the
/// API's with the method after it), and the standard path of an endpoint moved elsewhere is
/// no endpoint at all (`None`), as in Centrifugo.
fn standard_path<'a>(config: &crate::config::Config, path: &'a str) -> Option<Cow<'a, str>> {
    let moved = endpoint_paths(config)
        .into_iter()
        .filter(|(configured, standard)| !configured.is_empty() && configured != standard);
    let under = |path: &'a str, base: &str, standard: &str| -> Option<&'a str> {
        let rest = path.strip_prefix(base)?;
        (rest.is_empty() || (standard == "/api" && rest.starts_with('/'))).then_some(rest)
    };
    let mut vacated = false;
    for (configured, standard) in moved {
        if let Some(rest) = under(path, configured, standard) {
            return Some(Cow::Owned(format!("{standard}{rest}")));
        }
        vacated |= under(path, standard, standard).is_some();
    }
    (!vacated).then_some(Cow::Borrowed(path))
}

async fn route(
    node: Arc<Node>,
    transports: Arc<Transports>,
    port: Port,
    mut request: Request<Incoming>,
) -> Response<Body> {
    let config = &node.config;
    let path = unmounted(request.uri().path(), &config.http_server.handler_prefix)
        .and_then(|path| standard_path(config, path));
    let Some(path) = path.map(Cow::into_owned) else {
        return text(StatusCode::NOT_FOUND, "not found");
    };
    if path != request.uri().path() {
        // Handlers below read the path themselves (`/api/<method>`, SockJS's session paths):
        // they see the standard one, as if no prefix or custom path were configured.
        let standard_uri = match request.uri().query() {
            Some(query) => format!("{path}?{query}"),
            None => path.clone(),
        };
        if let Ok(uri) = standard_uri.parse() {
            *request.uri_mut() = uri;
        }
    }
    let split = config.http_server.internal_port != 0;
    let internal_here = !split || port == Port::Internal;
    let admin_here = internal_here || (config.admin.external && port == Port::Public);
    if config.admin.enabled
        && admin_here
        && let Some(rest) = crate::admin::path_in(&path, &config.admin.handler_prefix)
    {
        let rest = rest.to_owned();
        return crate::admin::handle(node, request, &rest).await;
    }
    if internal_here {
        match (request.method(), path.as_str()) {
            (&Method::GET, "/health") => return json(StatusCode::OK, "{}"),
            (&Method::GET, "/metrics") => {
                return with_type(StatusCode::OK, "text/plain; version=0.0.4", {
                    crate::metrics::set_node_gauges(crate::metrics::NodeGauges {
                        unauthenticated_connections: transports.unauthenticated.held(),
                        clients: node.hub.num_connections(),
                        users: node.hub.num_users(),
                        channels: node.hub.num_channels(),
                        subscriptions: node.hub.num_subscriptions(),
                    });
                    full(crate::metrics::render())
                });
            }
            (_, p) if p == "/api" || p.starts_with("/api/") => {
                return crate::api::handle(node, request).await;
            }
            _ => {}
        }
    }
    if split && port == Port::Internal {
        return text(StatusCode::NOT_FOUND, "not found");
    }
    match (request.method(), path.as_str()) {
        (_, "/connection/websocket") => {
            websocket::upgrade(node, &transports, request, Mode::Bidirectional)
        }
        (_, "/connection/uni_websocket") if config.uni_websocket.enabled => {
            websocket::upgrade(node, &transports, request, Mode::Unidirectional)
        }
        (_, p) if p.starts_with("/connection/sockjs") && config.sockjs.enabled => {
            transport::sockjs::handle(node, transports, request).await
        }
        (&Method::OPTIONS, p) if p.starts_with("/connection/") => {
            transport::http::preflight(&node, &request, "GET, POST, OPTIONS")
        }
        (_, "/connection/http_stream") if config.http_stream.enabled => {
            http_stream::http_stream(node, transports, request).await
        }
        (_, "/connection/sse") if config.sse.enabled => {
            http_stream::sse(node, transports, request).await
        }
        (_, "/connection/uni_http_stream") if config.uni_http_stream.enabled => {
            http_stream::uni_http_stream(node, transports, request).await
        }
        (_, "/connection/uni_sse") if config.uni_sse.enabled => {
            http_stream::uni_sse(node, transports, request).await
        }
        (_, "/emulation") if config.http_stream.enabled || config.sse.enabled => {
            transport::emulation::handle(node, &transports, request).await
        }
        (_, p) if p.starts_with("/connection/sockjs") => disabled("/connection/sockjs"),
        (_, p) if p.starts_with("/connection/") || p == "/emulation" => disabled(p),
        (&Method::GET, "/") => html(demo_page(&node.config)),
        _ => text(StatusCode::NOT_FOUND, "not found"),
    }
}

/// A transport endpoint that is off: say which setting turns it on. Paths that are no endpoint
/// at all are only not found.
fn disabled(path: &str) -> Response<Body> {
    let section = match path {
        "/emulation" => "http_stream or sse",
        p => p.trim_start_matches("/connection/"),
    };
    const SWITCHABLE: &[&str] = &[
        "http_stream or sse",
        "http_stream",
        "sse",
        "uni_websocket",
        "uni_http_stream",
        "uni_sse",
        "sockjs",
    ];
    if !SWITCHABLE.contains(&section) {
        return text(StatusCode::NOT_FOUND, "not found");
    }
    text(
        StatusCode::NOT_FOUND,
        &format!("{path} is not enabled (set {section}.enabled = true)"),
    )
}

/// The demo page, told the `redis-cli` command line that reaches this node's Redis (when there
/// is exactly one standalone server, not sentinels or clusters), so its publish hint works as
/// shown, and the paths of the WebSocket endpoint and the API.
fn demo_page(config: &crate::config::Config) -> String {
    let redis = &config.engine.redis;
    let standalone = redis.sentinel_address.is_empty() && redis.cluster_address.is_empty();
    let redis_cli = match (config.engine.kind, redis.address.as_slice()) {
        (crate::config::EngineType::Redis, [address]) if standalone => {
            redis_cli_command(address, redis.tls.enabled, redis.db)
        }
        _ => None,
    };
    let value = redis_cli.map_or_else(
        || "null".to_owned(),
        |cli| serde_json::json!(cli).to_string(),
    );
    let path = |configured: &str, standard: &str| {
        let path = if configured.is_empty() {
            standard
        } else {
            configured
        };
        serde_json::json!(format!("{}{path}", config.http_server.handler_prefix)).to_string()
    };
    DEMO_PAGE
        .replacen("/*REDIS_CLI*/null", &value, 1)
        .replacen(
            "/*WS_PATH*/'/connection/websocket'",
            &path(&config.websocket.handler_prefix, "/connection/websocket"),
            1,
        )
        .replacen(
            "/*API_PATH*/'/api'",
            &path(&config.http_api.handler_prefix, "/api"),
            1,
        )
}

/// `redis-cli` with the options that reach `address` (no password: the page is public), with
/// TLS when `tls` (the `tls.enabled` key) and database `db` unless the URL names one.
fn redis_cli_command(address: &str, tls: bool, db: u32) -> Option<String> {
    use redis::{ConnectionAddr, IntoConnectionInfo};
    let info = address.into_connection_info().ok()?;
    let mut command = String::from("redis-cli");
    let (host, port) = match info.addr() {
        ConnectionAddr::Tcp(host, port) if !tls => (host, *port),
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
            command.push_str(" --tls");
            (host, *port)
        }
        ConnectionAddr::Unix(path) => {
            command.push_str(&format!(" -s {}", path.display()));
            return Some(command);
        }
        _ => return None,
    };
    if host != "127.0.0.1" && host != "localhost" {
        command.push_str(&format!(" -h {host}"));
    }
    if port != 6379 {
        command.push_str(&format!(" -p {port}"));
    }
    let url_db = info.redis_settings().db();
    let db = if url_db != 0 { url_db } else { i64::from(db) };
    if db != 0 {
        command.push_str(&format!(" -n {db}"));
    }
    Some(command)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_found_under_the_mount_and_at_their_configured_paths() {
        assert_eq!(unmounted("/rt/api/info", "/rt"), Some("/api/info"));
        assert_eq!(unmounted("/rt", "/rt"), Some("/"));
        assert_eq!(unmounted("/rtx/api", "/rt"), None);
        assert_eq!(unmounted("/api", ""), Some("/api"));

        let mut config = crate::config::Config::default();
        let standard = |config: &crate::config::Config, path: &str| {
            standard_path(config, path).map(Cow::into_owned)
        };
        assert_eq!(standard(&config, "/api/info").as_deref(), Some("/api/info"));
        config.websocket.handler_prefix = "/ws".into();
        config.http_api.handler_prefix = "/v1/api".into();
        config.health.handler_prefix = "/connection/websocket".into();
        assert_eq!(
            standard(&config, "/ws").as_deref(),
            Some("/connection/websocket")
        );
        assert_eq!(
            standard(&config, "/v1/api/publish").as_deref(),
            Some("/api/publish")
        );
        assert_eq!(standard(&config, "/v1/api").as_deref(), Some("/api"));
        // The old paths are gone, unless another endpoint took them.
        assert_eq!(standard(&config, "/api/publish"), None);
        assert_eq!(standard(&config, "/health"), None);
        assert_eq!(
            standard(&config, "/connection/websocket").as_deref(),
            Some("/health")
        );
        assert_eq!(
            standard(&config, "/ws/x").as_deref(),
            Some("/ws/x"),
            "not the endpoint"
        );
        assert_eq!(standard(&config, "/metrics").as_deref(), Some("/metrics"));
    }

    #[test]
    fn the_demo_page_names_the_redis_it_publishes_to() {
        assert_eq!(
            redis_cli_command("redis://127.0.0.1:6390", false, 0).as_deref(),
            Some("redis-cli -p 6390")
        );
        assert_eq!(
            redis_cli_command("redis://:secret@cache.internal:6379/2", false, 0).as_deref(),
            Some("redis-cli -h cache.internal -n 2")
        );
        assert_eq!(
            redis_cli_command("redis://127.0.0.1:6390", true, 3).as_deref(),
            Some("redis-cli --tls -p 6390 -n 3")
        );
        let mut config = crate::config::Config::default();
        assert!(demo_page(&config).contains("const redisCli = null;"));
        config.engine.kind = crate::config::EngineType::Redis;
        config.engine.redis.address = vec!["redis://127.0.0.1:6390".into()];
        assert!(demo_page(&config).contains(r#"const redisCli = "redis-cli -p 6390";"#));
        // The primary behind sentinels is not known when the page is made.
        config.engine.redis.address = crate::config::RedisEngine::default_address();
        config.engine.redis.sentinel_address = vec!["127.0.0.1:26379".into()];
        assert!(demo_page(&config).contains("const redisCli = null;"));
        assert!(demo_page(&config).contains(r#"const wsPath = "/connection/websocket";"#));
        config.http_server.handler_prefix = "/rt".into();
        config.websocket.handler_prefix = "/ws".into();
        assert!(demo_page(&config).contains(r#"const wsPath = "/rt/ws";"#));
        assert!(demo_page(&config).contains(r#"const apiPath = "/rt/api";"#));
    }
}
