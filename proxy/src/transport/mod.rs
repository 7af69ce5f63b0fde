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
//! - [`admission`]: the handshake rate limit that spreads reconnect storms out.
//! - [`http`]: CORS, body limits and headers the HTTP transports share.

pub mod admission;
pub mod cursor;
pub mod driver;
pub mod emulation;
pub mod http;
pub mod http_stream;
pub mod permessage_deflate;
pub mod sockjs;
pub mod uni;
pub mod websocket;
