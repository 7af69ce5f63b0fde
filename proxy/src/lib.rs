//! The Gyre edge proxy. Issue 3 builds it; for now the crate only links the protocol crate.

pub use gyre_proto as proto;
