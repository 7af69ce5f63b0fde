//! One file per command family: parse the arguments (`core`), do the Redis work (`store`),
//! shape the reply. Every handler has the [`crate::edge::Handler`] signature.

pub mod history;
pub mod namespace;
pub mod presence;
pub mod publish;
