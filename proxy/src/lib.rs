//! The Gyre edge proxy: terminates client connections and fans publications out.
//!
//! Data path, one folder per stage:
//! `engine` (Redis PUB/SUB or in-process) → `hub` (channel → local subscribers, each publication
//! encoded once per encoding) → `queue` (per connection, bounded) → `transport` (the writer). Client commands go the other way: transport → `protocol::session`
//! → engine.
//!
//! - [`config`]: the configuration (Centrifugo v6 names), loading and validation.
//! - [`auth`]: connection and subscription tokens (JWT, JWKS).
//! - [`engine`]: memory and Redis engines behind one contract.
//! - [`hooks`]: backend hooks (proxies): connect, refresh, subscribe, publish, sub_refresh, RPC.
//! - [`hub`]: the node's channel registry and broadcast.
//! - [`protocol`]: the client session state machine shared by every transport.
//! - [`queue`]: the bounded per-connection write queue.
//! - [`transport`]: the WebSocket transport.
//! - [`api`]: the HTTP server API.
//! - [`admin`]: the admin web UI (`admin.enabled`).
//! - [`metrics`]: Prometheus metrics.
//! - [`server`]: the HTTP listener, routing and graceful shutdown.
//! - [`startup`]: turns the configuration into the engines' settings (reads the files it names).
//! - [`tls`]: the process's rustls crypto provider.

#![forbid(unsafe_code)]

pub mod admin;
pub mod api;
pub mod auth;
pub mod config;
pub mod engine;
pub mod hooks;
pub mod hub;
pub mod metrics;
pub mod protocol;
pub mod queue;
pub mod server;
pub mod startup;
pub mod tls;
pub mod transport;

pub use gyre_proto as proto;
