//! `gyre` where it must refuse to start, and `gyre checkconfig`: the tests of start errors read
//! what it printed.

use std::time::{Duration, Instant};

use super::binary::gyre_command;
use super::config::GyreBuilder;
use crate::server::free_port;

impl GyreBuilder {
    /// Runs `gyre --config <file>` with this configuration, expecting it to exit with an error
    /// within `within`; returns everything it printed. Panics if it exits with 0 or still runs.
    pub fn start_failure(&self, within: Duration) -> String {
        let (status, output) = self.run_gyre(&[], within);
        match status {
            Some(0) => panic!("gyre exited with 0 where it should have failed:\n{output}"),
            Some(_) => output,
            None => {
                panic!("gyre still runs after {within:?} where it should have failed:\n{output}")
            }
        }
    }

    /// `gyre checkconfig --config <file>`: whether it said the configuration is valid, and what
    /// it printed.
    pub fn checkconfig(&self) -> (bool, String) {
        let (status, output) = self.run_gyre(&["checkconfig"], Duration::from_secs(20));
        (status == Some(0), output)
    }

    /// Runs gyre with this configuration until it exits or `within` passed (then kills it);
    /// its exit code (`None`: killed) and stdout + stderr.
    fn run_gyre(&self, args: &[&str], within: Duration) -> (Option<i32>, String) {
        run_gyre_with(&self.config_toml(free_port()), args, within)
    }
}

/// `gyre checkconfig --config <file>` on exactly `toml`: whether it said the configuration is
/// valid, and what it printed.
pub fn checkconfig_toml(toml: &str) -> (bool, String) {
    let (status, output) = run_gyre_with(toml, &["checkconfig"], Duration::from_secs(20));
    (status == Some(0), output)
}

fn run_gyre_with(toml: &str, args: &[&str], within: Duration) -> (Option<i32>, String) {
    let dir = tempfile::Builder::new()
        .prefix("gyre-fail-it-")
        .tempdir()
        .expect("create temp dir");
    let config = dir.path().join("gyre.toml");
    std::fs::write(&config, toml).expect("write gyre.toml");
    let log_path = dir.path().join("gyre.log");
    let mut command = gyre_command(args, &config, &log_path, &[], None).expect("create gyre.log");
    let mut child = command.spawn().expect("spawn gyre");
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for gyre") {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    (status, output)
}
