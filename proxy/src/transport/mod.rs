//! Transports: how bytes reach a client. Every transport adapts the same session
//! (`protocol::session`) and drains the same per-connection queue ([`outbox`]).
//!
//! - [`outbox`]: the bounded per-connection write queue.
//! - [`websocket`]: bidirectional WebSocket.

pub mod outbox;
pub mod websocket;
