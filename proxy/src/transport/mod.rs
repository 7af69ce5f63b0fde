//! Transports: how bytes reach a client. Every transport drives the same session
//! (`protocol::session`) and writes what the connection's queue (`crate::queue`) holds.
//!
//! - [`websocket`]: bidirectional WebSocket.

pub mod websocket;
