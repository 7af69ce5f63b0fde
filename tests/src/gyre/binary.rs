//! Where the `gyre` binary comes from, and how a test runs it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::module_build::Artifact;

/// Absolute path of the `gyre` binary, built once per process if it is missing or stale. A failed
/// build is remembered, so every test of the process reports it without rebuilding.
pub fn gyre_binary() -> &'static Path {
    static PATH: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match PATH.get_or_init(|| GYRE.locate()) {
        Ok(path) => path,
        Err(e) => panic!("{e}"),
    }
}

const GYRE: Artifact = Artifact {
    env_override: "GYRE_BIN",
    file_name: "gyre",
    cargo_args: &["build", "-p", "gyre-proxy", "--bin", "gyre"],
    sources: &[
        "proxy/src",
        "proxy/Cargo.toml",
        "proto/src",
        "proto/proto",
        "proto/build.rs",
        "proto/Cargo.toml",
        "Cargo.lock",
    ],
};

/// `gyre [args] --config <config>` with stdout and stderr appended to `log`, no stdin, and only
/// the file configuring it: the environment's `GYRE_*`/`CENTRIFUGO_*` variables (the harness's
/// `GYRE_MODULE`, `GYRE_BIN`, or a developer's own settings) are removed and `env` is added.
/// `RUST_LOG` defaults to `info`; `NO_COLOR` because the log is a file, not a terminal.
/// `open_files` runs it under `ulimit -n`.
pub fn gyre_command(
    args: &[&str],
    config: &Path,
    log: &Path,
    env: &[(String, String)],
    open_files: Option<u64>,
) -> std::io::Result<Command> {
    let stdout = File::options().create(true).append(true).open(log)?;
    let stderr = stdout.try_clone()?;
    let mut command = match open_files {
        None => Command::new(gyre_binary()),
        Some(limit) => {
            // dash's `ulimit -n` sets the soft and the hard limit.
            let mut shell = Command::new("sh");
            shell
                .arg("-c")
                .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
                .arg(gyre_binary());
            shell
        }
    };
    command
        .args(args)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("GYRE_") || name.starts_with("CENTRIFUGO_") {
            command.env_remove(name.as_ref());
        }
    }
    if std::env::var_os("RUST_LOG").is_none() {
        command.env("RUST_LOG", "info");
    }
    command.env("NO_COLOR", "1");
    command.envs(env.iter().map(|(k, v)| (k, v)));
    Ok(command)
}
