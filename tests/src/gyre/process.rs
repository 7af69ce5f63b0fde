//! A running `gyre`: started, probed, stopped, restarted, and cleaned up.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use super::binary::gyre_command;
use super::config::GyreBuilder;
use crate::http::http_request;
use crate::server::free_port;

/// How long `gyre` may take to answer `GET /health` after it was spawned.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `gyre` with its config file and log in a temporary directory. Dropping it kills and
/// reaps the process and removes the directory.
#[derive(Debug)]
pub struct GyreProcess {
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
    port: u16,
    /// What the accessors (prefix, internal port, API key) read; the default for a config text.
    config: GyreBuilder,
    /// The config file's name in `dir` (its extension tells gyre the format).
    config_file: String,
    /// The config as written, for error messages.
    config_text: String,
    /// Variables added to the cleaned environment.
    env: Vec<(String, String)>,
}

impl GyreBuilder {
    /// Writes the config, spawns `gyre --config <file>` and waits for `GET /health` = 200.
    /// Retries with another port when the chosen one was taken meanwhile.
    pub fn start(self) -> GyreProcess {
        GyreProcess::launch(self, "gyre.toml", Vec::new(), |config, port| {
            config.config_toml(port)
        })
    }
}

impl GyreProcess {
    pub fn builder() -> GyreBuilder {
        GyreBuilder::default()
    }

    /// `gyre` configured by a text of the test's own, `config(port)`, for what [`GyreBuilder`]
    /// cannot express. The accessors that read the builder (prefix, internal port, API key,
    /// HMAC secret) answer its defaults.
    pub fn start_text(config: impl Fn(u16) -> String) -> Self {
        Self::start_text_with("gyre.toml", &[], config)
    }

    /// [`GyreProcess::start_text`] with the config in a file named `file_name` (its extension
    /// picks the format) and `env` as the only `GYRE_*`/`CENTRIFUGO_*` variables.
    pub fn start_text_with(
        file_name: &str,
        env: &[(&str, &str)],
        config: impl Fn(u16) -> String,
    ) -> Self {
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::launch(GyreBuilder::default(), file_name, env, |_, port| {
            config(port)
        })
    }

    fn launch(
        builder: GyreBuilder,
        config_file: &str,
        env: Vec<(String, String)>,
        render: impl Fn(&GyreBuilder, u16) -> String,
    ) -> Self {
        let mut dir = Some(
            tempfile::Builder::new()
                .prefix("gyre-proxy-it-")
                .tempdir()
                .expect("create temp dir"),
        );
        let attempts = 5;
        for attempt in 1..=attempts {
            let port = free_port();
            let mut config = builder.clone();
            if config.internal_port.is_some() {
                config.internal_port = Some(free_port());
            }
            let config_text = render(&config, port);
            let mut gyre = GyreProcess {
                child: None,
                dir: dir.take(),
                port,
                config,
                config_file: config_file.to_owned(),
                config_text,
                env: env.clone(),
            };
            std::fs::write(gyre.config_path(), &gyre.config_text).expect("write the config");
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
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("gyre dir").path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir().join(&self.config_file)
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
        let mut command = gyre_command(
            &[],
            &self.config_path(),
            &self.log_path(),
            &self.env,
            self.config.open_files,
        )
        .map_err(|e| format!("open gyre.log: {e}"))?;
        let child = command
            .current_dir(self.dir())
            .spawn()
            .map_err(|e| format!("spawn gyre: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!(
                    "gyre exited with {status}\n--- config ---\n{}\n--- log ---\n{}",
                    self.config_text,
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
                    self.config_text,
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

    /// Sends SIGTERM and returns (see [`GyreProcess::wait_exit`]).
    pub fn terminate(&mut self) {
        let child = self.child.as_ref().expect("gyre is running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits for the process to exit; `None` if it still runs after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut().expect("gyre is running");
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
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
