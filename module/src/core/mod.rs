//! Pure logic of the module: no `redis-module` imports, unit-tested with plain `cargo test`.
//!
//! - [`parse`]: the argument cursor and number rules shared by every command.
//! - [`keys`]: key and PUB/SUB channel names, cluster hash tags, prefix validation.
//! - [`publish`], [`history`], [`presence`], [`namespace`]: one file per command family with its
//!   typed arguments and the rules that do not need Redis (offsets, ranges, expiry, retention).
//! - [`epoch`]: epoch generation.
//! - [`error`]: the module's error enum.

pub mod epoch;
pub mod error;
pub mod history;
pub mod keys;
pub mod namespace;
pub mod parse;
pub mod presence;
pub mod publish;

pub use error::{GyreError, GyreResult};
