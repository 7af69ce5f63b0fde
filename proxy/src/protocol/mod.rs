//! The client protocol: the session state machine every transport adapts, and what it decides
//! with.
//!
//! - [`session`]: one client's session (commands, pings, expiry) — transport-independent.
//! - [`recovery`]: recovery decisions from positions and history.
//! - [`node`]: what all sessions of this node share; [`entropy`]: their randomness.
//! - [`nodes`], [`survey`]: the other nodes of the cluster, and questions asked to all of them.
//! - [`channel_pattern`]: the glob syntax of the server API's `channels` pattern.

pub mod channel_pattern;
pub mod entropy;
pub mod node;
pub mod nodes;
pub mod recovery;
pub mod session;
pub mod survey;
