//! The client protocol: the session state machine every transport adapts, and its codes.
//!
//! - [`codes`]: error, unsubscribe and disconnect codes.

pub mod codes;
