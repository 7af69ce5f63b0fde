//! The `gyre` edge proxy as a child process.
//!
//! - `binary`: [`gyre_binary()`] finds `target/debug/gyre` (env `GYRE_BIN` overrides) and builds
//!   it with `cargo build -p gyre-proxy --bin gyre` once per test process when it is missing or
//!   older than its sources (`cargo test` does not build another package's binary);
//!   [`gyre_command`] is the one way a test runs it (config file, log file, clean environment).
//! - `config`: [`GyreBuilder`] and [`Namespace`] write a TOML config with Centrifugo v6 key names.
//! - `process`: [`GyreProcess`] runs `gyre --config <file>` on a free port of 127.0.0.1 in its own
//!   temporary directory (from a builder or from a config text of the test's own), waits for
//!   `GET /health`, captures stdout+stderr in `gyre.log`, and kills the process on drop (printing
//!   the log tail when the test failed).
//! - `failure`: [`GyreBuilder::start_failure`] and [`GyreBuilder::checkconfig`]: gyre where it
//!   must refuse to start.

mod binary;
mod config;
mod failure;
mod process;

pub use binary::{gyre_binary, gyre_command};
pub use config::{GyreBuilder, Namespace};
pub use failure::checkconfig_toml;
pub use process::GyreProcess;
