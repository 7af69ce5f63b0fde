//! The `gyre` edge proxy as a child process, and the driver of the SDK scenario scripts.
//!
//! - [`gyre_binary()`] finds `target/debug/gyre` (env `GYRE_BIN` overrides) and builds it with
//!   `cargo build -p gyre-proxy --bin gyre` once per test process when it is missing or older than
//!   its sources (`cargo test` does not build another package's binary).
//! - [`GyreProcess`] writes a TOML config (Centrifugo v6 key names) into its own temporary
//!   directory, starts `gyre --config <file>` on a free port of 127.0.0.1, polls `GET /health`
//!   until it answers 200, captures stdout+stderr in `gyre.log`, and kills the process on drop
//!   (printing the log tail when the test failed). [`GyreBuilder`] and [`Namespace`] configure it.
//! - [`http_request`] is a minimal HTTP/1.1 client (raw `TcpStream`), for `/health` and `/api`.
//! - [`SdkEnv`] is Redis + `gyre` with the namespaces the scenarios use; `json_*` read results.
//! - [`SdkScript`] runs one scenario script (Node from `tests/sdk/node`, Python from the venv in
//!   `tests/sdk/python/.venv`), answers its `GYRE-STEP <name>` requests through a callback, kills
//!   it after a deadline and returns its one JSON stdout line ([`ScriptOutput`]);
//!   [`node_sdk_status`] / [`python_sdk_status`] say whether the SDK dependencies are installed.
//!   `GYRE_SDK_VERBOSE=1` prints every script's result line and stderr, also on success.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::module_build::{Artifact, workspace_root};
use crate::server::{RedisServer, free_port};

/// How long `gyre` may take to answer `GET /health` after it was spawned.
const START_TIMEOUT: Duration = Duration::from_secs(20);

// ------------------------------------------------------------------------------------------------
// The binary.

/// Debian's Chromium, driven through npm `playwright-core` by the browser scenarios.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Whether the browser tests can run: Chromium and the Node packages are installed. Without
/// them the test fails (see [`sdk_available`]).
pub fn chromium_ready() -> bool {
    let status = if Path::new(CHROMIUM).exists() {
        node_sdk_status()
    } else {
        Err(format!("{CHROMIUM} is missing (apt-get install chromium)"))
    };
    sdk_available("Chromium", status)
}

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

// ------------------------------------------------------------------------------------------------
// Configuration.

/// One `[[channel.namespaces]]` entry. [`Namespace::new`] starts with everything off; the
/// builder methods switch options on.
#[derive(Debug, Clone, Default)]
pub struct Namespace {
    pub name: String,
    pub history_size: u64,
    pub history_ttl_secs: u64,
    pub force_recovery: bool,
    pub presence: bool,
    pub join_leave: bool,
    pub force_push_join_leave: bool,
    pub allow_subscribe_for_client: bool,
    pub allow_publish_for_client: bool,
    pub allow_history_for_subscriber: bool,
    pub allow_presence_for_subscriber: bool,
}

impl Namespace {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            ..Self::default()
        }
    }

    /// Everything the SDK scenarios use: history (`size`, `ttl_secs`) with forced recovery,
    /// presence, join/leave pushed to every subscriber, and clients allowed to subscribe,
    /// publish, and read history and presence of channels they are subscribed to.
    pub fn full(name: &str, size: u64, ttl_secs: u64) -> Self {
        Self::new(name)
            .history(size, ttl_secs)
            .force_recovery()
            .presence()
            .join_leave()
            .force_push_join_leave()
            .allow_subscribe()
            .allow_publish()
            .allow_history()
            .allow_presence()
    }

    /// History (`size`, `ttl_secs`), presence and join/leave that only subscribers may read
    /// (`allow_*_for_subscriber`, no `*_for_client`), clients allowed to subscribe, nothing
    /// forced: a subscription is recoverable, positioned or gets join/leave pushes only when the
    /// client asks for it and counts as a subscriber while it subscribes.
    pub fn subscribers_only(name: &str, size: u64, ttl_secs: u64) -> Self {
        Self::new(name)
            .history(size, ttl_secs)
            .presence()
            .join_leave()
            .allow_subscribe()
            .allow_history()
            .allow_presence()
    }

    pub fn history(mut self, size: u64, ttl_secs: u64) -> Self {
        self.history_size = size;
        self.history_ttl_secs = ttl_secs;
        self
    }
    pub fn force_recovery(mut self) -> Self {
        self.force_recovery = true;
        self
    }
    pub fn presence(mut self) -> Self {
        self.presence = true;
        self
    }
    pub fn join_leave(mut self) -> Self {
        self.join_leave = true;
        self
    }
    pub fn force_push_join_leave(mut self) -> Self {
        self.force_push_join_leave = true;
        self
    }
    /// `allow_subscribe_for_client`.
    pub fn allow_subscribe(mut self) -> Self {
        self.allow_subscribe_for_client = true;
        self
    }
    /// `allow_publish_for_client`.
    pub fn allow_publish(mut self) -> Self {
        self.allow_publish_for_client = true;
        self
    }
    /// `allow_history_for_subscriber`.
    pub fn allow_history(mut self) -> Self {
        self.allow_history_for_subscriber = true;
        self
    }
    /// `allow_presence_for_subscriber`.
    pub fn allow_presence(mut self) -> Self {
        self.allow_presence_for_subscriber = true;
        self
    }

    fn to_toml(&self, out: &mut String) {
        let _ = writeln!(out, "\n[[channel.namespaces]]");
        let _ = writeln!(out, "name = {}", toml_str(&self.name));
        let _ = writeln!(out, "history_size = {}", self.history_size);
        let _ = writeln!(out, "history_ttl = \"{}s\"", self.history_ttl_secs);
        for (key, value) in [
            ("force_recovery", self.force_recovery),
            ("presence", self.presence),
            ("join_leave", self.join_leave),
            ("force_push_join_leave", self.force_push_join_leave),
            (
                "allow_subscribe_for_client",
                self.allow_subscribe_for_client,
            ),
            ("allow_publish_for_client", self.allow_publish_for_client),
            (
                "allow_history_for_subscriber",
                self.allow_history_for_subscriber,
            ),
            (
                "allow_presence_for_subscriber",
                self.allow_presence_for_subscriber,
            ),
        ] {
            let _ = writeln!(out, "{key} = {value}");
        }
    }
}

/// A TOML basic string (quotes and backslashes escaped).
fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Which engine `gyre` uses.
#[derive(Debug, Clone)]
enum EngineChoice {
    Memory,
    /// Redis URLs.
    Redis(Vec<String>),
}

/// Configures and starts a [`GyreProcess`].
#[derive(Debug, Clone)]
pub struct GyreBuilder {
    engine: EngineChoice,
    redis_extra: Vec<String>,
    hmac_secret: String,
    api_key: String,
    namespaces: Vec<Namespace>,
    client_extra: Vec<String>,
    http_server_extra: Vec<String>,
    http_api_extra: Vec<String>,
    extra_toml: String,
    open_files: Option<u64>,
    /// `http_server.internal_port`: `Some(0)` until [`GyreBuilder::start`] picks a free port.
    internal_port: Option<u16>,
    /// `http_server.handler_prefix`.
    handler_prefix: String,
}

impl Default for GyreBuilder {
    fn default() -> Self {
        Self {
            engine: EngineChoice::Memory,
            redis_extra: Vec::new(),
            hmac_secret: "gyre-test-hmac-secret".to_owned(),
            api_key: "gyre-test-api-key".to_owned(),
            namespaces: Vec::new(),
            client_extra: Vec::new(),
            http_server_extra: Vec::new(),
            http_api_extra: Vec::new(),
            extra_toml: String::new(),
            open_files: None,
            internal_port: None,
            handler_prefix: String::new(),
        }
    }
}

impl GyreBuilder {
    /// `engine.type = "redis"` with `engine.redis.address = ["redis://127.0.0.1:<port>"]`;
    /// `redis` must have been started with [`crate::ServerBuilder::tcp`].
    pub fn redis(mut self, redis: &RedisServer) -> Self {
        let port = redis
            .port()
            .expect("gyre connects to Redis over TCP: start the RedisServer with .tcp()");
        self.engine = EngineChoice::Redis(vec![format!("redis://127.0.0.1:{port}")]);
        self
    }

    /// `engine.type = "redis"` with these `engine.redis.address` URLs; none leaves the key out
    /// (e.g. for `sentinel_address`, through [`GyreBuilder::redis_option`]).
    pub fn redis_urls(mut self, urls: &[String]) -> Self {
        self.engine = EngineChoice::Redis(urls.to_vec());
        self
    }

    /// An extra `key = value` line in the `[engine.redis]` table (Redis engine only), e.g.
    /// `password = "secret"`.
    pub fn redis_option(mut self, line: &str) -> Self {
        self.redis_extra.push(line.to_owned());
        self
    }

    /// `engine.type = "memory"` (the default).
    pub fn memory(mut self) -> Self {
        self.engine = EngineChoice::Memory;
        self
    }

    /// `client.token.hmac_secret_key`.
    pub fn hmac_secret(mut self, secret: &str) -> Self {
        self.hmac_secret = secret.to_owned();
        self
    }

    /// `http_api.key`.
    pub fn api_key(mut self, key: &str) -> Self {
        self.api_key = key.to_owned();
        self
    }

    pub fn namespace(mut self, ns: Namespace) -> Self {
        self.namespaces.push(ns);
        self
    }

    /// An extra `key = value` line in the `[client]` table, e.g. `expired_close_delay = "2s"`.
    pub fn client_option(mut self, line: &str) -> Self {
        self.client_extra.push(line.to_owned());
        self
    }

    /// An extra `key = value` line in the `[http_server]` table, e.g. `idle_timeout = "2s"`.
    pub fn http_server_option(mut self, line: &str) -> Self {
        self.http_server_extra.push(line.to_owned());
        self
    }

    /// Starts gyre with this open-file limit, soft and hard (so it cannot raise it).
    pub fn open_files_limit(mut self, limit: u64) -> Self {
        self.open_files = Some(limit);
        self
    }

    /// An extra `key = value` line in the `[http_api]` table, e.g. `batch_max_commands = 10`.
    pub fn http_api_option(mut self, line: &str) -> Self {
        self.http_api_extra.push(line.to_owned());
        self
    }

    /// A free `http_server.internal_port`: the API, `/health` and `/metrics` move there (the
    /// process's [`GyreProcess::api`] and health checks follow them).
    pub fn internal_port(mut self) -> Self {
        self.internal_port = Some(0);
        self
    }

    /// `http_server.handler_prefix` (e.g. `/rt`): every URL of the process is under it.
    pub fn handler_prefix(mut self, prefix: &str) -> Self {
        self.handler_prefix = prefix.to_owned();
        self
    }

    /// Raw TOML appended at the end of the file (new tables only).
    pub fn extra_toml(mut self, toml: &str) -> Self {
        self.extra_toml.push_str(toml);
        self.extra_toml.push('\n');
        self
    }

    /// The configuration file's text for `port`.
    pub fn config_toml(&self, port: u16) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# Written by gyre-tests (tests/src/gyre_process.rs).");
        let _ = writeln!(out, "[http_server]");
        let _ = writeln!(out, "address = \"127.0.0.1\"");
        let _ = writeln!(out, "port = {port}");
        if let Some(internal) = self.internal_port.filter(|p| *p != 0) {
            let _ = writeln!(out, "internal_address = \"127.0.0.1\"");
            let _ = writeln!(out, "internal_port = {internal}");
        }
        if !self.handler_prefix.is_empty() {
            let _ = writeln!(out, "handler_prefix = {}", toml_str(&self.handler_prefix));
        }
        for line in &self.http_server_extra {
            let _ = writeln!(out, "{line}");
        }
        let _ = writeln!(out, "\n[client]");
        if !self
            .client_extra
            .iter()
            .any(|line| line.starts_with("allowed_origins"))
        {
            let _ = writeln!(out, "allowed_origins = [\"*\"]");
        }
        for line in &self.client_extra {
            let _ = writeln!(out, "{line}");
        }
        let _ = writeln!(out, "\n[client.token]");
        let _ = writeln!(out, "hmac_secret_key = {}", toml_str(&self.hmac_secret));
        let _ = writeln!(out, "\n[http_api]");
        let _ = writeln!(out, "key = {}", toml_str(&self.api_key));
        for line in &self.http_api_extra {
            let _ = writeln!(out, "{line}");
        }
        let _ = writeln!(out, "\n[engine]");
        match &self.engine {
            EngineChoice::Memory => {
                let _ = writeln!(out, "type = \"memory\"");
            }
            EngineChoice::Redis(addresses) => {
                let _ = writeln!(out, "type = \"redis\"");
                let _ = writeln!(out, "\n[engine.redis]");
                if !addresses.is_empty() {
                    let list: Vec<String> = addresses.iter().map(|a| toml_str(a)).collect();
                    let _ = writeln!(out, "address = [{}]", list.join(", "));
                }
                for line in &self.redis_extra {
                    let _ = writeln!(out, "{line}");
                }
            }
        }
        for ns in &self.namespaces {
            ns.to_toml(&mut out);
        }
        if !self.extra_toml.is_empty() {
            out.push('\n');
            out.push_str(&self.extra_toml);
        }
        out
    }

    /// Writes the config, spawns `gyre --config <file>` and waits for `GET /health` = 200.
    /// Retries with another port when the chosen one was taken meanwhile.
    pub fn start(self) -> GyreProcess {
        let binary = gyre_binary().to_path_buf();
        let mut dir = Some(
            tempfile::Builder::new()
                .prefix("gyre-proxy-it-")
                .tempdir()
                .expect("create temp dir"),
        );
        let attempts = 5;
        for attempt in 1..=attempts {
            let port = free_port();
            let mut config = self.clone();
            if config.internal_port.is_some() {
                config.internal_port = Some(free_port());
            }
            let mut gyre = GyreProcess {
                child: None,
                dir: dir.take(),
                port,
                binary: binary.clone(),
                config: config.clone(),
            };
            std::fs::write(gyre.config_path(), config.config_toml(port)).expect("write gyre.toml");
            match gyre.spawn() {
                Ok(()) => return gyre,
                Err(log) if attempt < attempts && log.to_ascii_lowercase().contains("in use") => {
                    // Someone took the free port before gyre bound it: try another.
                    let _ = std::fs::remove_file(gyre.log_path());
                    dir = gyre.dir.take();
                }
                Err(log) => panic!("gyre did not start:\n{log}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }
}

// ------------------------------------------------------------------------------------------------
// The process.

/// A running `gyre` with its config file and log in a temporary directory. Dropping it kills and
/// reaps the process and removes the directory.
#[derive(Debug)]
pub struct GyreProcess {
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
    port: u16,
    binary: PathBuf,
    config: GyreBuilder,
}

impl GyreProcess {
    pub fn builder() -> GyreBuilder {
        GyreBuilder::default()
    }

    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("gyre dir").path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir().join("gyre.toml")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir().join("gyre.log")
    }

    /// stdout + stderr of the process so far (all runs, when restarted).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id while it runs, e.g. to read `/proc/<pid>/status`.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `ws://127.0.0.1:<port>[prefix]/connection/websocket`.
    pub fn ws_url(&self) -> String {
        format!(
            "ws://127.0.0.1:{}{}/connection/websocket",
            self.port, self.config.handler_prefix
        )
    }

    /// `http://127.0.0.1:<port>[prefix]/api` (methods are POSTed to `<api_url>/<method>`), on
    /// the internal port when there is one.
    pub fn api_url(&self) -> String {
        format!(
            "http://127.0.0.1:{}{}/api",
            self.internal_port(),
            self.config.handler_prefix
        )
    }

    /// The port of the API, `/health`, `/metrics` and the admin UI: `http_server.internal_port`
    /// when set, else the public port.
    pub fn internal_port(&self) -> u16 {
        self.config
            .internal_port
            .filter(|p| *p != 0)
            .unwrap_or(self.port)
    }

    /// `http_server.handler_prefix` ("" when none).
    pub fn handler_prefix(&self) -> &str {
        &self.config.handler_prefix
    }

    pub fn api_key(&self) -> &str {
        &self.config.api_key
    }

    pub fn hmac_secret(&self) -> &str {
        &self.config.hmac_secret
    }

    fn spawn(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| format!("open gyre.log: {e}"))?;
        let log2 = log.try_clone().map_err(|e| format!("dup gyre.log: {e}"))?;
        let mut command = match self.config.open_files {
            None => Command::new(&self.binary),
            Some(limit) => {
                // dash's `ulimit -n` sets the soft and the hard limit.
                let mut shell = Command::new("sh");
                shell
                    .arg("-c")
                    .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
                    .arg(&self.binary);
                shell
            }
        };
        command
            .arg("--config")
            .arg(self.config_path())
            .current_dir(self.dir())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        // Only the file configures this process: drop GYRE_*/CENTRIFUGO_* variables of the
        // environment (GYRE_MODULE, GYRE_BIN… of the harness, or a developer's own settings).
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("GYRE_") || name.starts_with("CENTRIFUGO_") {
                command.env_remove(name.as_ref());
            }
        }
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "info");
        }
        // A log file, not a terminal: no colour codes.
        command.env("NO_COLOR", "1");
        let child = command
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", self.binary.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!(
                    "gyre exited with {status}\n--- config ---\n{}\n--- log ---\n{}",
                    self.config.config_toml(self.port),
                    self.log()
                ));
            }
            let health = format!("{}/health", self.config.handler_prefix);
            let internal = self.internal_port();
            if let Ok((200, _)) = http_request(internal, "GET", &health, &[], b"") {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!(
                    "gyre did not answer GET /health with 200 within {START_TIMEOUT:?}\n--- config ---\n{}\n--- log ---\n{}",
                    self.config.config_toml(self.port),
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Is the process running and answering `GET /health` with 200?
    pub fn is_alive(&mut self) -> bool {
        let running = match self.child.as_mut() {
            Some(c) => c.try_wait().map(|s| s.is_none()).unwrap_or(false),
            None => false,
        };
        let health = format!("{}/health", self.config.handler_prefix);
        running
            && matches!(
                http_request(self.internal_port(), "GET", &health, &[], b""),
                Ok((200, _))
            )
    }

    /// One HTTP request to this server; `(status, body)`.
    pub fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(u16, String), String> {
        http_request(self.port, method, path, headers, body)
    }

    /// POSTs `body` (JSON text) to `/api/<method>` with the API key; returns the response body.
    /// Panics unless the status is 200.
    pub fn api(&self, method: &str, body: &str) -> String {
        let path = format!("{}/api/{method}", self.config.handler_prefix);
        match http_request(
            self.internal_port(),
            "POST",
            &path,
            &[
                ("X-API-Key", self.api_key()),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        ) {
            Ok((200, reply)) => reply,
            Ok((status, reply)) => panic!("POST {path} {body}: HTTP {status}: {reply}"),
            Err(e) => panic!("POST {path} {body}: {e}"),
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM (graceful shutdown), then SIGKILL after `timeout`.
    pub fn stop(&mut self, timeout: Duration) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                self.child = None;
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }

    /// Starts the process again with the same config and port after [`GyreProcess::kill`] (a
    /// `kill -9`), and waits for `GET /health` = 200.
    pub fn respawn(&mut self) {
        assert!(self.child.is_none(), "respawn: gyre is still running");
        if let Err(log) = self.spawn() {
            panic!("gyre did not start again:\n{log}");
        }
    }

    /// Stops the process and starts it again with the same config and port.
    pub fn restart(&mut self) {
        self.stop(Duration::from_secs(10));
        if let Err(log) = self.spawn() {
            panic!("gyre did not restart:\n{log}");
        }
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let tail: Vec<&str> = log.lines().rev().take(lines).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for GyreProcess {
    fn drop(&mut self) {
        if std::thread::panicking() && self.dir.is_some() {
            eprintln!(
                "--- gyre log tail ({}) ---\n{}",
                self.dir().display(),
                self.log_tail(60)
            );
        }
        self.kill();
    }
}

// ------------------------------------------------------------------------------------------------
// HTTP.

/// One HTTP/1.1 request to `127.0.0.1:<port>` over a fresh connection (`Connection: close`);
/// returns `(status, body)`. Understands `Content-Length`, chunked and read-to-EOF bodies.
/// Connecting, and each read and write, may take up to 5 s.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, String), String> {
    http_request_with_timeout(port, method, path, headers, body, Duration::from_secs(5))
}

/// [`http_request`] with another `timeout` for connecting and for each read and write, for
/// requests the server takes longer to answer.
pub fn http_request_with_timeout(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<(u16, String), String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect {addr}: {e}"))?;
    stream.set_read_timeout(Some(timeout)).ok();
    stream.set_write_timeout(Some(timeout)).ok();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        let _ = write!(request, "{name}: {value}\r\n");
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    stream
        .write_all(&bytes)
        .map_err(|e| format!("write request: {e}"))?;

    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader
        .read_line(&mut status_line)
        .map_err(|e| format!("read status line: {e}"))?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut content_length = None;
    let mut chunked = false;
    loop {
        let mut line = String::new();
        let n = reader
            .read_line(&mut line)
            .map_err(|e| format!("read headers: {e}"))?;
        let line = line.trim_end();
        if n == 0 || line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            if name == "content-length" {
                content_length = value.parse::<usize>().ok();
            } else if name == "transfer-encoding" && value.to_ascii_lowercase().contains("chunked")
            {
                chunked = true;
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size_line = String::new();
            reader
                .read_line(&mut size_line)
                .map_err(|e| format!("read chunk size: {e}"))?;
            let size_text = size_line.trim().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| format!("bad chunk size {size_line:?}"))?;
            if size == 0 {
                break;
            }
            let mut chunk = vec![0; size + 2];
            reader
                .read_exact(&mut chunk)
                .map_err(|e| format!("read chunk: {e}"))?;
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(len) = content_length {
        body.resize(len, 0);
        reader
            .read_exact(&mut body)
            .map_err(|e| format!("read body: {e}"))?;
    } else {
        reader
            .read_to_end(&mut body)
            .map_err(|e| format!("read body: {e}"))?;
    }
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

// ------------------------------------------------------------------------------------------------
// SDK scenario scripts.

/// `tests/sdk` in the workspace.
pub fn sdk_dir() -> PathBuf {
    workspace_root().join("tests").join("sdk")
}

/// `Ok(())` when `node` runs and `tests/sdk/node/node_modules` has `centrifuge` and `ws`;
/// otherwise what is missing and how to install it.
pub fn node_sdk_status() -> Result<(), String> {
    let dir = sdk_dir().join("node");
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => return Err(format!("`node --version` failed: {}", out.status)),
        Err(e) => return Err(format!("node is not installed ({e})")),
    }
    for package in ["centrifuge", "ws"] {
        let manifest = dir.join("node_modules").join(package).join("package.json");
        if !manifest.is_file() {
            return Err(format!(
                "{} is missing: run `npm ci` in {} (scripts/test.sh does)",
                manifest.display(),
                dir.display()
            ));
        }
    }
    Ok(())
}

/// The venv's Python interpreter, `tests/sdk/python/.venv/bin/python`.
pub fn python_venv() -> PathBuf {
    sdk_dir()
        .join("python")
        .join(".venv")
        .join("bin")
        .join("python")
}

/// `Ok(())` when the venv exists and imports `centrifuge` and `cent`; otherwise what is missing
/// and how to install it.
pub fn python_sdk_status() -> Result<(), String> {
    let python = python_venv();
    let hint = format!(
        "create it: python3 -m venv {0} && {0}/bin/pip install -r {1} (scripts/test.sh does)",
        sdk_dir().join("python").join(".venv").display(),
        sdk_dir().join("python").join("requirements.txt").display()
    );
    if !python.is_file() {
        return Err(format!("{} is missing: {hint}", python.display()));
    }
    match Command::new(&python)
        .args(["-c", "import centrifuge, cent"])
        .output()
    {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "the venv cannot import centrifuge/cent ({}): {}; {hint}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("run {}: {e}; {hint}", python.display())),
    }
}

/// `true` when `status` is Ok; when it is an error the test fails, saying what is missing: a
/// test that did not run must never show as passed. `scripts/test.sh` installs everything.
pub fn sdk_available(what: &str, status: Result<(), String>) -> bool {
    if let Err(e) = status {
        panic!(
            "{what} SDK dependencies are missing, so this test cannot run: {e} (scripts/test.sh installs them)"
        )
    }
    true
}

/// One run of a scenario script: program, arguments, deadline.
#[derive(Debug, Clone)]
pub struct SdkScript {
    program: PathBuf,
    args: Vec<String>,
    cwd: PathBuf,
    label: String,
    timeout: Duration,
    env: Vec<(String, String)>,
}

/// What a script run produced.
#[derive(Debug, Clone)]
pub struct ScriptOutput {
    /// Exit code (None when killed by a signal, e.g. at the deadline).
    pub code: Option<i32>,
    /// The last non-empty stdout line (the scenario's JSON result), empty when none.
    pub line: String,
    pub stdout: String,
    pub stderr: String,
    /// Steps the script asked for, in order.
    pub steps: Vec<String>,
    pub elapsed: Duration,
    pub timed_out: bool,
    pub label: String,
}

impl ScriptOutput {
    /// Panics with everything the script printed unless it exited 0 with a result line.
    pub fn expect_success(&self) -> &str {
        if self.code != Some(0) || self.line.is_empty() || self.timed_out {
            panic!("{}", self.describe("failed"));
        }
        &self.line
    }

    /// A report of the run for failure messages.
    pub fn describe(&self, what: &str) -> String {
        format!(
            "{} {what} (exit {:?}, {:?}{})\n--- result line ---\n{}\n--- stderr ---\n{}",
            self.label,
            self.code,
            self.elapsed,
            if self.timed_out {
                ", killed at the deadline"
            } else {
                ""
            },
            self.line,
            tail(&self.stderr, 80)
        )
    }
}

fn tail(text: &str, lines: usize) -> String {
    let v: Vec<&str> = text.lines().rev().take(lines).collect();
    v.into_iter().rev().collect::<Vec<_>>().join("\n")
}

impl SdkScript {
    /// `node tests/sdk/node/<script>`.
    pub fn node(script: &str) -> Self {
        let dir = sdk_dir().join("node");
        Self {
            program: PathBuf::from("node"),
            args: vec![dir.join(script).to_string_lossy().into_owned()],
            label: format!("node {script}"),
            cwd: dir,
            timeout: Duration::from_secs(60),
            env: Vec::new(),
        }
    }

    /// `tests/sdk/python/.venv/bin/python tests/sdk/python/<script>`.
    pub fn python(script: &str) -> Self {
        let dir = sdk_dir().join("python");
        Self {
            program: python_venv(),
            args: vec![dir.join(script).to_string_lossy().into_owned()],
            label: format!("python {script}"),
            cwd: dir,
            timeout: Duration::from_secs(60),
            env: Vec::new(),
        }
    }

    /// `--key value`.
    pub fn arg(mut self, key: &str, value: impl ToString) -> Self {
        self.args.push(format!("--{key}"));
        self.args.push(value.to_string());
        self
    }

    /// `--url`, `--secret`, `--api`, `--api-key` of `gyre`.
    pub fn gyre(self, gyre: &GyreProcess) -> Self {
        self.arg("url", gyre.ws_url())
            .arg("secret", gyre.hmac_secret())
            .arg("api", gyre.api_url())
            .arg("api-key", gyre.api_key())
    }

    /// An environment variable of the script's process (e.g. `NODE_EXTRA_CA_CERTS`).
    pub fn env(mut self, key: &str, value: impl ToString) -> Self {
        self.env.push((key.to_owned(), value.to_string()));
        self
    }

    /// The script's own `--timeout` (ms) is `timeout`; the driver kills it 10 s later.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs the script without steps.
    pub fn run(self) -> ScriptOutput {
        self.run_with(|step| Err(format!("this test does not handle step {step:?}")))
    }

    /// Runs the script; each `GYRE-STEP <name>` line on its stderr calls `on_step(name)`, and the
    /// answer (`ok`, or `ERR <message>`) is written to its stdin.
    pub fn run_with(self, mut on_step: impl FnMut(&str) -> Result<(), String>) -> ScriptOutput {
        let started = Instant::now();
        let mut args = self.args.clone();
        args.push("--timeout".to_owned());
        args.push(self.timeout.as_millis().to_string());
        let mut child = Command::new(&self.program)
            .args(&args)
            .current_dir(&self.cwd)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {} {args:?}: {e}", self.program.display()));
        let mut stdin: Option<ChildStdin> = child.stdin.take();
        let mut stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");

        let stdout_thread = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stdout.read_to_string(&mut text);
            text
        });
        // stderr lines go through a channel so steps are handled on this thread.
        let (tx, rx) = mpsc::channel::<String>();
        let stderr_thread = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });

        let deadline = started + self.timeout + Duration::from_secs(10);
        let mut stderr_text = String::new();
        let mut steps = Vec::new();
        let mut timed_out = false;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                timed_out = true;
                let _ = child.kill();
                break;
            }
            match rx.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(line) => {
                    stderr_text.push_str(&line);
                    stderr_text.push('\n');
                    if let Some(step) = line.strip_prefix("GYRE-STEP ") {
                        let step = step.trim().to_owned();
                        let answer = match on_step(&step) {
                            Ok(()) => "ok".to_owned(),
                            Err(e) => format!("ERR {}", e.replace('\n', " ")),
                        };
                        steps.push(step);
                        if let Some(stdin) = stdin.as_mut() {
                            let _ = writeln!(stdin, "{answer}");
                            let _ = stdin.flush();
                        }
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        drop(stdin.take());
        let status = child.wait().ok();
        let _ = stderr_thread.join();
        while let Ok(line) = rx.try_recv() {
            stderr_text.push_str(&line);
            stderr_text.push('\n');
        }
        let stdout_text = stdout_thread.join().unwrap_or_default();
        let line = stdout_text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .to_owned();
        let output = ScriptOutput {
            code: status.and_then(|s| s.code()),
            line,
            stdout: stdout_text,
            stderr: stderr_text,
            steps,
            elapsed: started.elapsed(),
            timed_out,
            label: self.label,
        };
        if std::env::var_os("GYRE_SDK_VERBOSE").is_some() {
            eprintln!("{}", output.describe("finished"));
        }
        output
    }
}

impl ScriptOutput {
    /// The result line parsed as JSON, after checking that the script exited 0 and reported
    /// `"ok": true`; panics with the script's output otherwise.
    pub fn json(&self) -> serde_json::Value {
        let line = self.expect_success();
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{}", self.describe(&format!("printed no JSON ({e})"))));
        if value["ok"] != serde_json::Value::Bool(true) {
            panic!("{}", self.describe("reported ok != true"));
        }
        value
    }
}

// ------------------------------------------------------------------------------------------------
// The environment every SDK scenario runs in.

/// Namespace with everything on (history 100 / 300 s, forced recovery, presence, join/leave
/// pushed to all, clients may subscribe, publish, read history and presence).
pub const SDK_NS: &str = "chat";
/// Namespace with history and presence but no client permission at all (→ 103).
pub const SDK_LOCKED_NS: &str = "locked";
/// Namespace with history, presence and join/leave that only subscribers may read, nothing
/// forced ([`Namespace::subscribers_only`]): the SDK's `recoverable` and `joinLeave` options must
/// get recovery and join/leave pushes there.
pub const SDK_SUBSCRIBER_NS: &str = "members";
/// `history_size` / `history_ttl` (seconds) of [`SDK_NS`] and [`SDK_SUBSCRIBER_NS`].
pub const SDK_HISTORY: (u64, u64) = (100, 300);

/// Redis (with the module, on TCP) and `gyre` configured for the SDK scenarios; or `gyre` alone
/// with the memory engine.
pub struct SdkEnv {
    // Declared first so gyre is killed before Redis goes away.
    pub gyre: GyreProcess,
    pub redis: Option<RedisServer>,
}

impl SdkEnv {
    /// The builder every SDK environment uses: [`SDK_NS`], [`SDK_LOCKED_NS`],
    /// [`SDK_SUBSCRIBER_NS`], and `client.expired_close_delay = "2s"` so a connection whose token
    /// is not refreshed is closed within the scenario (Centrifugo's default is 25 s).
    pub fn gyre_builder() -> GyreBuilder {
        let (size, ttl) = SDK_HISTORY;
        GyreProcess::builder()
            .namespace(Namespace::full(SDK_NS, size, ttl))
            .namespace(Namespace::new(SDK_LOCKED_NS).history(10, 300).presence())
            .namespace(Namespace::subscribers_only(SDK_SUBSCRIBER_NS, size, ttl))
            .client_option("expired_close_delay = \"2s\"")
    }

    /// Redis engine, Redis without persistence.
    pub fn redis() -> Self {
        Self::with_redis(RedisServer::builder().tcp().start())
    }

    /// Redis engine, Redis with `appendonly yes`, so [`RedisServer::restart`] keeps history.
    pub fn redis_aof() -> Self {
        Self::with_redis(RedisServer::builder().tcp().appendonly().start())
    }

    pub fn with_redis(redis: RedisServer) -> Self {
        let gyre = Self::gyre_builder().redis(&redis).start();
        Self {
            gyre,
            redis: Some(redis),
        }
    }

    /// Redis engine, Redis without persistence, and gyre configured further by `configure`
    /// (e.g. a transport's table through [`GyreBuilder::extra_toml`]).
    pub fn redis_configured(configure: impl FnOnce(GyreBuilder) -> GyreBuilder) -> Self {
        let redis = RedisServer::builder().tcp().start();
        let gyre = configure(Self::gyre_builder()).redis(&redis).start();
        Self {
            gyre,
            redis: Some(redis),
        }
    }

    /// Memory engine, no Redis.
    pub fn memory() -> Self {
        Self {
            gyre: Self::gyre_builder().memory().start(),
            redis: None,
        }
    }

    pub fn redis_server(&mut self) -> &mut RedisServer {
        self.redis.as_mut().expect("this environment has no Redis")
    }

    /// The Redis TCP port (for `--redis-port`).
    pub fn redis_port(&self) -> u16 {
        self.redis
            .as_ref()
            .and_then(|r| r.port())
            .expect("this environment has no Redis")
    }
}

/// The SDK's basic scenarios on one deployment, in `protocol`: `receive.mjs` (publications from
/// the API, `redis-cli GYRE.PUBLISH` and a client; `redis_cli` are its `--redis-*` arguments, e.g.
/// `("redis-port", …)`, and empty leaves the redis-cli publication out), `presence.mjs`
/// (presence, stats, history) and `recovery.mjs` (five publications missed while offline), each
/// on its own channel `<prefix>-<scenario>-<protocol>`, with their [`sdk_expect`] assertions.
pub fn sdk_basic_scenarios(
    gyre: &GyreProcess,
    protocol: &str,
    prefix: &str,
    redis_cli: &[(&str, String)],
) {
    let channel = |scenario: &str| format!("{prefix}-{scenario}-{protocol}");
    let mut receive = SdkScript::node("receive.mjs")
        .gyre(gyre)
        .arg("protocol", protocol)
        .arg("channel", channel("receive"));
    for (key, value) in redis_cli {
        receive = receive.arg(key, value);
    }
    sdk_expect::receive(&receive.run().json(), !redis_cli.is_empty());
    let r = SdkScript::node("presence.mjs")
        .gyre(gyre)
        .arg("protocol", protocol)
        .arg("channel", channel("presence"))
        .run()
        .json();
    sdk_expect::presence(&r);
    let r = SdkScript::node("recovery.mjs")
        .gyre(gyre)
        .arg("protocol", protocol)
        .arg("channel", channel("recovery"))
        .arg("count", 5)
        .run()
        .json();
    sdk_expect::recovery(&r, 5);
}

// ------------------------------------------------------------------------------------------------
// Reading scenario results.

/// The `offset` of every publication in a JSON array of publications.
pub fn json_offsets(pubs: &serde_json::Value) -> Vec<u64> {
    json_array(pubs)
        .iter()
        .map(|p| {
            p["offset"]
                .as_u64()
                .unwrap_or_else(|| panic!("publication without an offset: {p}"))
        })
        .collect()
}

/// The `data` of every publication in a JSON array of publications.
pub fn json_data(pubs: &serde_json::Value) -> Vec<serde_json::Value> {
    json_array(pubs).iter().map(|p| p["data"].clone()).collect()
}

/// `value` as an array; panics with the value otherwise.
pub fn json_array(value: &serde_json::Value) -> &Vec<serde_json::Value> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("expected a JSON array, got {value}"))
}

/// `value[key]` as a string; panics otherwise.
pub fn json_str<'a>(value: &'a serde_json::Value, key: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("expected a string at {key:?} in {value}"))
}

impl SdkEnv {
    /// The driver's side of the `restart-redis` step of the Redis restart scenarios: stop Redis,
    /// keep it down for 1.5 s (gyre notices, API publishes fail meanwhile), start it again (its AOF
    /// keeps history), then publish `{"source":"redis","n":1..=3}` to `channel` straight into
    /// Redis with GYRE.PUBLISH, most likely before gyre has resubscribed.
    pub fn restart_redis_step(&mut self, step: &str, channel: &str) -> Result<(), String> {
        if step != "restart-redis" {
            return Err(format!("unknown step {step}"));
        }
        let (size, ttl) = SDK_HISTORY;
        let redis = self.redis_server();
        redis.stop();
        std::thread::sleep(Duration::from_millis(1500));
        redis.restart();
        let mut con = redis.connection();
        for n in 1..=3 {
            let data = serde_json::json!({"source": "redis", "n": n}).to_string();
            crate::replies::cmd(
                &mut con,
                &[
                    "GYRE.PUBLISH",
                    channel,
                    &data,
                    "HISTORY",
                    &size.to_string(),
                    &ttl.to_string(),
                ],
            );
        }
        Ok(())
    }
}

/// What the scenario results must show, shared by the Node and the Python tests (both SDKs'
/// scripts print the same shapes).
pub mod sdk_expect {
    use serde_json::{Value as Json, json};

    use super::{json_array, json_data, json_offsets, json_str};

    /// `receive`: subscribed recoverable + positioned, not recovering; publications from the API
    /// (offset 1), redis-cli (offset 2, only `with_redis`) and bob's client publish, in order,
    /// exactly once; only the client publication carries `info` (bob's).
    pub fn receive(r: &Json, with_redis: bool) {
        let sub = &r["subscribed"];
        assert_eq!(sub["recoverable"], true, "{sub}");
        assert_eq!(sub["positioned"], true, "{sub}");
        assert_eq!(sub["wasRecovering"], false, "{sub}");
        assert_eq!(sub["recovered"], false, "{sub}");

        let published = json_array(&r["published"]);
        assert_eq!(published[0]["offset"], 1, "API publish: {r}");
        let epoch = json_str(&published[0], "epoch");
        assert_eq!(epoch.len(), 8, "epoch {epoch:?}");
        let mut data = vec![json!({"source": "api", "n": 1})];
        if with_redis {
            assert_eq!(published.len(), 3, "{r}");
            assert_eq!(
                published[1]["offset"], 2,
                "redis-cli GYRE.PUBLISH (gyre registers its namespaces with GYRE.NAMESPACE): {r}"
            );
            assert_eq!(published[1]["epoch"], epoch);
            data.push(json!({"source": "redis", "n": 2}));
        }
        data.push(json!({"source": "client", "n": 3}));
        let n = data.len() as u64;

        let received = &r["received"];
        assert_eq!(
            json_offsets(received),
            (1..=n).collect::<Vec<_>>(),
            "{received}"
        );
        assert_eq!(json_data(received), data);
        let received = json_array(received);
        let last = received.len() - 1;
        for p in &received[..last] {
            assert!(p.get("info").is_none(), "server publication with info: {p}");
        }
        assert_eq!(received[last]["info"]["user"], "bob", "{}", received[last]);
        assert_eq!(received[last]["info"]["client"], r["clients"]["bob"]);
    }

    /// `presence`: both clients with their users (and alice's token `info`), stats 2/2, history
    /// of the 3 publications with every limit, then 1/1 after bob left.
    pub fn presence(r: &Json) {
        let alice = json_str(&r["clients"], "alice").to_owned();
        let bob = json_str(&r["clients"], "bob").to_owned();
        let alice_info = json!({"client": alice, "user": "alice", "connInfo": {"name": "Alice"}});
        let expected = json!({
            alice.clone(): alice_info,
            bob.clone(): {"client": bob, "user": "bob"},
        });
        assert_eq!(r["presence"], expected);
        assert_eq!(r["presenceViaClient"], expected);
        assert_eq!(r["stats"], json!({"numClients": 2, "numUsers": 2}));

        assert_eq!(json_offsets(&r["received"]), [1, 2, 3]);
        let epoch = json_str(&r["published"][0], "epoch").to_owned();
        let h = &r["history"];
        assert_eq!(json_offsets(&h["all"]["publications"]), [1, 2, 3], "{h}");
        assert_eq!(
            json_data(&h["all"]["publications"]),
            [json!({"n": 1}), json!({"n": 2}), json!({"n": 3})]
        );
        for key in [
            "all",
            "first2",
            "last1Reverse",
            "sinceFirst",
            "positionOnly",
        ] {
            assert_eq!(h[key]["offset"], 3, "history {key}: {}", h[key]);
            assert_eq!(h[key]["epoch"], epoch.as_str(), "history {key}: {}", h[key]);
        }
        assert_eq!(json_offsets(&h["first2"]["publications"]), [1, 2]);
        assert_eq!(json_offsets(&h["last1Reverse"]["publications"]), [3]);
        assert_eq!(json_offsets(&h["sinceFirst"]["publications"]), [2, 3]);
        assert_eq!(json_offsets(&h["positionOnly"]["publications"]), [0u64; 0]);

        assert_eq!(
            r["statsAfterBobLeft"],
            json!({"numClients": 1, "numUsers": 1})
        );
        assert_eq!(r["presenceAfterBobLeft"], json!({alice: alice_info}));
    }

    /// `join_leave`: alice saw bob join twice and leave twice (exactly), and nothing of anyone
    /// else; her own join, if the server sends it, is tolerated once, her own leave never.
    pub fn join_leave(r: &Json) {
        let alice = json_str(&r["clients"], "alice");
        let bob = json_str(&r["clients"], "bob");
        for kind in ["joins", "leaves"] {
            let events = json_array(&r[kind]);
            let of_bob: Vec<&Json> = events.iter().filter(|e| e["client"] == bob).collect();
            assert_eq!(of_bob.len(), 2, "{kind} of bob: {}", r[kind]);
            assert!(of_bob.iter().all(|e| e["user"] == "bob"), "{}", r[kind]);
            assert!(
                events
                    .iter()
                    .all(|e| e["client"] == bob || e["client"] == alice),
                "{kind} of unknown clients: {}",
                r[kind]
            );
        }
        let own_joins = json_array(&r["joins"])
            .iter()
            .filter(|e| e["client"] == alice)
            .count();
        assert!(own_joins <= 1, "alice saw her own join {own_joins} times");
        assert!(
            !json_array(&r["leaves"])
                .iter()
                .any(|e| e["client"] == alice),
            "alice saw her own leave"
        );
    }

    /// `recovery`: 2 live + `missed` recovered + 1 live publication, offsets 1.. exactly once and
    /// in order; both subscriptions recoverable and positioned, the second a successful recovery.
    pub fn recovery(r: &Json, missed: u64) {
        let total = 3 + missed;
        let first = &r["subscribedFirst"];
        assert_eq!(first["recoverable"], true, "{first}");
        assert_eq!(first["positioned"], true, "{first}");
        assert_eq!(first["wasRecovering"], false, "{first}");
        assert_eq!(first["recovered"], false, "{first}");
        let again = &r["subscribedAgain"];
        assert_eq!(again["recoverable"], true, "{again}");
        assert_eq!(again["positioned"], true, "{again}");
        assert_eq!(again["wasRecovering"], true, "{again}");
        assert_eq!(again["recovered"], true, "{again}");
        assert_eq!(r["receivedWhileOffline"], 0, "{r}");
        let expected: Vec<u64> = (1..=total).collect();
        assert_eq!(json_offsets(&r["published"]), expected, "publish offsets");
        assert_eq!(
            json_offsets(&r["received"]),
            expected,
            "every publication exactly once, in order: {}",
            r["received"]
        );
        let data: Vec<Json> = (1..=total).map(|n| json!({"n": n})).collect();
        assert_eq!(json_data(&r["received"]), data);
    }

    /// `token_errors`: a bad signature ends with 3500 and no reconnect; an expired token is
    /// refreshed through getToken (one connect error 109); without getToken the SDK gives up.
    pub fn token_errors(r: &Json) {
        let bad = &r["badSignature"];
        assert_eq!(bad["disconnected"]["code"], 3500, "bad signature: {bad}");
        assert_eq!(bad["state"], "disconnected", "3500 is terminal: {bad}");
        assert_eq!(bad["connectedCount"], 0, "{bad}");
        assert_eq!(bad["connectingCount"], 1, "no reconnect after 3500: {bad}");

        let expired = &r["expired"];
        assert_eq!(
            expired["errors"],
            json!([{"type": "connect", "code": 109}]),
            "expired token: {expired}"
        );
        assert_eq!(expired["getTokenCalls"], 1, "{expired}");
        assert_eq!(expired["state"], "connected", "{expired}");

        let gave_up = &r["expiredNoRefresh"];
        assert_eq!(
            gave_up["errors"][0],
            json!({"type": "connect", "code": 109}),
            "{gave_up}"
        );
        assert_eq!(
            gave_up["disconnected"]["code"], 1,
            "unauthorized: {gave_up}"
        );
        assert_eq!(gave_up["connectedCount"], 0, "{gave_up}");
        assert_eq!(gave_up["state"], "disconnected", "{gave_up}");
    }

    /// `token_refresh`: at least two refreshes (the second getToken call proves the refresh reply
    /// announced the next expiry), one connection throughout, both publications received.
    pub fn token_refresh(r: &Json) {
        let calls = r["getTokenCalls"].as_u64().unwrap();
        assert!(calls >= 2, "getToken called {calls} times: {r}");
        assert_eq!(r["connectedCount"], 1, "one connection throughout: {r}");
        assert_eq!(r["disconnects"], json!([]), "{r}");
        assert_eq!(json_offsets(&r["received"]), [1, 2]);
    }

    /// `sub_errors`: 102 for the unknown namespace, 103 for everything on the locked one, and
    /// the connection survives.
    pub fn channel_errors(r: &Json) {
        for (key, code) in [("unknown", 102), ("denied", 103)] {
            let s = &r[key];
            assert_eq!(s["unsubscribed"]["code"], code, "{key}: {s}");
            assert_eq!(s["subscribedCount"], 0, "{key}: {s}");
            assert_eq!(s["state"], "unsubscribed", "{key}: {s}");
        }
        for call in ["publish", "history", "presence", "presenceStats"] {
            assert_eq!(
                r[call]["code"], 103,
                "{call} on a locked channel: {}",
                r[call]
            );
        }
        assert_eq!(r["publishUnknown"]["code"], 102, "{}", r["publishUnknown"]);
        assert_eq!(r["stillConnected"], true);
        assert_eq!(r["connectedCount"], 1, "errors must not disconnect");
    }

    /// `redis_restart`: 5 API publications; then 3 straight into the restarted Redis and 5 API,
    /// interleaved in any order; then one more API publication. The client never reconnected,
    /// nothing arrived twice, and either every publication arrived (offsets 1..=14 in order, each
    /// source's in its own order) or the client was told it could not recover (a restart from
    /// the AOF starts a new epoch, see the module's "When an epoch changes") and the last one
    /// still reached it.
    pub fn redis_restart(r: &Json) {
        let data = json_data(&r["received"]);
        let mut unique = data.clone();
        unique.sort_by_key(|d| d.to_string());
        unique.dedup();
        assert_eq!(
            unique.len(),
            data.len(),
            "a publication arrived twice: {data:?}"
        );
        let first: Vec<Json> = (1..=5).map(|n| json!({"source": "api", "n": n})).collect();
        assert_eq!(data[..5], first[..], "before the restart");
        assert!(
            data.contains(&json!({"source": "api", "n": 11})),
            "publications resume: {data:?}"
        );
        if r["lostContinuity"] == false {
            let expected: Vec<u64> = (1..=14).collect();
            assert_eq!(
                json_offsets(&r["received"]),
                expected,
                "every publication exactly once, in order: {}",
                r["received"]
            );
            let of = |source: &str| -> Vec<Json> {
                data[5..]
                    .iter()
                    .filter(|d| d["source"] == source)
                    .map(|d| d["n"].clone())
                    .collect()
            };
            assert_eq!(of("redis"), [json!(1), json!(2), json!(3)], "{data:?}");
            assert_eq!(
                of("api"),
                (6..=11).map(|n| json!(n)).collect::<Vec<_>>(),
                "{data:?}"
            );
        } else {
            // Told so: a resubscription that could not recover (the client reloads its state).
            assert!(
                json_array(&r["events"])
                    .iter()
                    .any(|e| e["ev"] == "subscribed"
                        && e["wasRecovering"] == true
                        && e["recovered"] == false),
                "{r}"
            );
        }
        assert_eq!(r["connectedCount"], 1, "the client stays connected: {r}");
        // Code 0 is the script's own disconnect() at the end.
        let disconnects: Vec<&Json> = json_array(&r["events"])
            .iter()
            .filter(|e| e["ev"] == "disconnected" && e["code"] != 0)
            .collect();
        assert!(disconnects.is_empty(), "{disconnects:?}");
    }
}
