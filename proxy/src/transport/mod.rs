//! Transports: how bytes reach a client. Every transport drives the same session
//! (`protocol::session`) through [`driver`] and writes what the connection's queue
//! (`crate::queue`) holds.
//!
//! - [`websocket`]: bidirectional WebSocket, and unidirectional (`uni_websocket`);
//!   [`permessage_deflate`]: its compression, negotiated per connection, compressed once.
//! - [`http_stream`]: the long-lived HTTP responses: `http_stream` and `sse` with bidirectional
//!   emulation, `uni_http_stream` and `uni_sse`.
//! - [`emulation`]: `/emulation`, the client→server half of the emulated transports, routed to
//!   the node holding the session.
//! - [`uni`]: what the unidirectional transports share; [`cursor`]: the `uni_sse` event ids
//!   that let an EventSource resume every channel.
//! - [`sockjs`]: the SockJS protocol and its sub-transports.
//! - [`stream_writer`]: the one writer of the HTTP streams and SockJS: the outbox into a
//!   response body or a SockJS WebSocket, every write within the write timeout.
//! - [`admission`]: the handshake rate limit that spreads reconnect storms out.
//! - [`deadline`]: every client connection's socket ([`deadline::TimedIo`]) with the deadlines of
//!   its HTTP phase, until a transport takes it over ([`deadline::upgrading`]).
//! - [`http`]: CORS, body limits and headers the HTTP transports share, and the response
//!   helpers of every HTTP answer.
//!
//! [`Transports`] is what the transports of a node share beyond the session's `Node`.

pub mod admission;
pub mod cursor;
pub mod deadline;
pub mod driver;
pub mod emulation;
pub mod http;
pub mod http_stream;
pub mod permessage_deflate;
pub mod sockjs;
pub mod stream_writer;
pub mod uni;
pub mod websocket;

use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::config::Config;

/// What this node's transports share beyond the sessions' `Node`: the tasks of the connections
/// they serve (the shutdown drain waits for them), admission, and the SockJS sessions that
/// outlive their requests.
pub struct Transports {
    /// Connections that left hyper's view (upgraded WebSockets, streams, SockJS sessions).
    pub tasks: TaskTracker,
    /// The sessions of SockJS's HTTP sub-transports.
    pub sockjs: sockjs::Sessions,
    /// `client.handshake_rate_limit` (or `connection_rate_limit`).
    pub handshakes: admission::HandshakeLimiter,
    /// `http_server.max_unauthenticated_connections`.
    pub unauthenticated: Arc<admission::UnauthenticatedLimit>,
    /// `/emulation` requests being forwarded to other nodes now
    /// (`emulation.max_concurrent_forwards`).
    pub emulation_forwards: Semaphore,
}

impl Transports {
    /// From the config; `open_files` is the process's open-file limit, which bounds the
    /// default of `max_unauthenticated_connections`.
    pub fn new(config: &Config, open_files: u64) -> Arc<Self> {
        Arc::new(Self {
            tasks: TaskTracker::new(),
            sockjs: sockjs::Sessions::default(),
            handshakes: admission::HandshakeLimiter::new(
                config.client.handshake_rate(),
                config.client.handshake_burst,
            ),
            unauthenticated: admission::UnauthenticatedLimit::new(
                config.http_server.max_unauthenticated_connections,
                open_files,
            ),
            emulation_forwards: Semaphore::new(config.emulation.max_concurrent_forwards as usize),
        })
    }
}
