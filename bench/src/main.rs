//! `gyre-bench`: the load generator for gyre and Nchan, and the loopback write floor.
//!
//! - `gyre-bench load`: subscribers over WebSocket (JSON, Protobuf), gyre's unidirectional
//!   transports or Nchan WebSocket, publications via `GYRE.PUBLISH`, gyre's HTTP API or Nchan's
//!   publisher location; latency percentiles, losses, server/Redis CPU per delivery, RSS per
//!   idle connection. One JSON result on stdout (or `--out`), progress on stderr.
//! - `gyre-bench floor`: CPU per frame of writing one WebSocket frame per `write()` to thousands
//!   of loopback connections: what no server can beat on this machine.
//! - `gyre-bench report <dir>`: Markdown tables of a results directory (scripts/bench-nchan.sh).
//! - `gyre-bench storm`: N clients reconnecting at once with recovery, time to full recovery and a
//!   live probe's latency meanwhile; `gyre-bench storm-report <dir>` tabulates the results
//!   (scripts/bench-storm.sh).
//! - `gyre-bench failover`: a Redis primary killed (cluster or Sentinel) under steady publishing:
//!   time until publishing resumes, until every subscriber is back in sync, and how many were
//!   told `recovered: false`; `gyre-bench failover-report <dir>` tabulates the results
//!   (scripts/bench-failover.sh).
//! - `gyre-bench soak`: thousands of connections with steady churn and publishing for a long
//!   time, the server's RSS, descriptors, tasks and Redis memory sampled each minute, and the
//!   slope of each (scripts/bench-soak.sh).

mod failover;
mod floor;
mod hooks;
mod load;
mod payload;
mod rawws;
mod report;
mod route;
mod soak;
mod stats;
mod storm;

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    version,
    about = "Load generator for gyre and Nchan, and the loopback write floor"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Subscribers + publishers against a running server; prints one JSON result.
    Load(Box<load::LoadArgs>),
    /// The physical limit: CPU per WebSocket frame written to loopback TCP connections.
    Floor(floor::FloorArgs),
    /// Markdown tables of the JSON results in a directory.
    Report {
        /// Directory holding floor.json and the load results.
        dir: PathBuf,
    },
    /// Reconnect storm: N clients drop, miss publications and reconnect at once with recovery.
    Storm(Box<storm::StormArgs>),
    /// An instant backend for the proxy hooks (HTTP and GRPC).
    HookBackend(hooks::BackendArgs),
    /// Connects per second and RPC latency through the proxy hooks of a running gyre.
    Hooks(Box<hooks::HooksArgs>),
    /// Markdown table of the storm results in a directory.
    StormReport {
        /// Directory holding `gyre-bench storm` JSON results.
        dir: PathBuf,
    },
    /// A Redis primary killed under steady publishing: time until publishing resumes, until every
    /// subscriber is back in sync, and what the subscribers were told.
    Failover(Box<failover::FailoverArgs>),
    /// Markdown table of the failover results in a directory.
    FailoverReport {
        /// Directory holding `gyre-bench failover` JSON results.
        dir: PathBuf,
    },
    /// Long run with churn and steady publishing; samples the server's resources each minute.
    Soak(Box<soak::SoakArgs>),
}

/// Writes `value` as pretty JSON to `out`, or to stdout.
/// Runs a measurement on a runtime of `threads` workers and writes its JSON result. The
/// runtime is dropped without waiting: closing thousands of connections is not worth it.
pub fn run_measurement<T: serde::Serialize>(
    threads: usize,
    measurement: impl std::future::Future<Output = Result<T, Box<dyn std::error::Error>>>,
    out: Option<&Path>,
) -> Result<(), Box<dyn std::error::Error>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    let result = rt.block_on(measurement)?;
    let written = write_json(&result, out);
    rt.shutdown_background();
    written
}

pub fn write_json<T: serde::Serialize>(
    value: &T,
    out: Option<&Path>,
) -> Result<(), Box<dyn std::error::Error>> {
    let text = serde_json::to_string_pretty(value)?;
    match out {
        Some(path) => std::fs::write(path, text + "\n")?,
        None => println!("{text}"),
    }
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Load(args) => load::run(*args),
        Cmd::Floor(args) => floor::run(args),
        Cmd::Report { dir } => report::run(&dir),
        Cmd::Storm(args) => storm::run(*args),
        Cmd::StormReport { dir } => storm::report(&dir),
        Cmd::HookBackend(args) => hooks::backend(args),
        Cmd::Hooks(args) => hooks::run(*args),
        Cmd::Failover(args) => failover::run(*args),
        Cmd::FailoverReport { dir } => failover::report(&dir),
        Cmd::Soak(args) => soak::run(*args),
    };
    if let Err(e) = result {
        eprintln!("gyre-bench: {e}");
        std::process::exit(1);
    }
}
