//! `redis-server` processes: [`ServerBuilder`] configures one, [`RedisServer`] owns it (temporary
//! directory, unix socket, optional TCP port) and kills + removes everything on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis::{Connection, RedisResult};

use crate::module_build::module_path;
use crate::pubsub::Subscriber;
use crate::replies::info_section;
use crate::wait::wait_until;

/// How long a server may take to answer PING after it was spawned.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// Read timeout of every connection the harness hands out, so a hung server fails the test.
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Configures and starts a [`RedisServer`].
#[derive(Debug, Clone, Default)]
pub struct ServerBuilder {
    module_args: Vec<String>,
    extra_args: Vec<String>,
    tcp: bool,
    no_module: bool,
}

impl ServerBuilder {
    /// Arguments appended after `--loadmodule <so>` (e.g. `["history-size", "10"]`).
    pub fn module_args(mut self, args: &[&str]) -> Self {
        self.module_args.extend(args.iter().map(|s| s.to_string()));
        self
    }

    /// Extra `redis-server` arguments, appended after the harness's own (later ones win).
    pub fn args(mut self, args: &[&str]) -> Self {
        self.extra_args.extend(args.iter().map(|s| s.to_string()));
        self
    }

    /// `--appendonly yes`.
    pub fn appendonly(self) -> Self {
        self.args(&["--appendonly", "yes"])
    }

    /// `--enable-debug-command yes` (for `DEBUG RELOAD`).
    pub fn debug_command(self) -> Self {
        self.args(&["--enable-debug-command", "yes"])
    }

    /// Listen on a free TCP port of 127.0.0.1 too (needed for replication).
    pub fn tcp(mut self) -> Self {
        self.tcp = true;
        self
    }

    /// Replicate from `primary` (which must have been started with [`ServerBuilder::tcp`]).
    pub fn replica_of(self, primary: &RedisServer) -> Self {
        let port = primary
            .port()
            .expect("the primary must listen on TCP: use .tcp()");
        self.args(&["--replicaof", "127.0.0.1", &port.to_string()])
    }

    /// Start without loading the module.
    pub fn without_module(mut self) -> Self {
        self.no_module = true;
        self
    }

    /// Spawns the server and waits until it answers PING.
    pub fn start(self) -> RedisServer {
        let mut dir = tempfile::Builder::new()
            .prefix("gyre-it-")
            .tempdir()
            .expect("create temp dir");
        // A TCP port from bind(127.0.0.1:0) can be taken by someone else before redis binds it:
        // retry with a new port when that happens.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let port = if self.tcp { Some(free_port()) } else { None };
            let mut server = RedisServer {
                child: None,
                dir: Some(dir),
                port,
                args: Vec::new(),
            };
            server.args = server.command_line(&self);
            match server.spawn() {
                Ok(()) => return server,
                Err(log) if self.tcp && attempts < 5 && log.contains("Address already in use") => {
                    dir = server.dir.take().expect("dir");
                    continue;
                }
                Err(log) => panic!("redis-server did not start:\n{log}"),
            }
        }
    }
}

/// A TCP port of 127.0.0.1 that was free a moment ago (bind to port 0, then release it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// A running `redis-server` with `libgyre.so` loaded, in its own temporary directory.
/// Dropping it kills and reaps the process and removes the directory.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
    port: Option<u16>,
    args: Vec<String>,
}

impl RedisServer {
    /// A server with the module and default configuration.
    pub fn start() -> Self {
        Self::builder().start()
    }

    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// A server whose module gets these `loadmodule` arguments.
    pub fn with_module_args(args: &[&str]) -> Self {
        Self::builder().module_args(args).start()
    }

    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("server dir").path()
    }

    pub fn socket(&self) -> PathBuf {
        self.dir().join("redis.sock")
    }

    /// The TCP port, when started with [`ServerBuilder::tcp`].
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The server's log file so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("redis.log")).unwrap_or_default()
    }

    fn command_line(&self, b: &ServerBuilder) -> Vec<String> {
        let dir = self.dir().to_str().expect("utf-8 temp dir").to_string();
        let mut args: Vec<String> = vec![
            "--port".into(),
            self.port.unwrap_or(0).to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--unixsocket".into(),
            format!("{dir}/redis.sock"),
            "--unixsocketperm".into(),
            "700".into(),
            "--save".into(),
            "".into(),
            "--appendonly".into(),
            "no".into(),
            "--dir".into(),
            dir.clone(),
            "--logfile".into(),
            format!("{dir}/redis.log"),
            "--daemonize".into(),
            "no".into(),
            "--repl-diskless-sync-delay".into(),
            "0".into(),
        ];
        if !b.no_module {
            args.push("--loadmodule".into());
            args.push(module_path().to_str().expect("utf-8 module path").into());
            args.extend(b.module_args.iter().cloned());
        }
        args.extend(b.extra_args.iter().cloned());
        args
    }

    /// Spawns the process with `self.args` and waits for PING; on failure returns the log.
    fn spawn(&mut self) -> Result<(), String> {
        let child = Command::new("redis-server")
            .args(&self.args)
            .current_dir(self.dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn redis-server: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!(
                    "redis-server exited with {status}; args {:?}\n--- log ---\n{}",
                    self.args,
                    self.log()
                ));
            }
            if let Ok(mut con) = self.try_connection()
                && redis::cmd("PING").query::<String>(&mut con).is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!(
                    "redis-server did not answer PING within {START_TIMEOUT:?}; args {:?}\n--- log ---\n{}",
                    self.args,
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn try_connection(&self) -> RedisResult<Connection> {
        let url = format!("redis+unix://{}", self.socket().display());
        let con = redis::Client::open(url)?.get_connection_with_timeout(IO_TIMEOUT)?;
        con.set_read_timeout(Some(IO_TIMEOUT))?;
        con.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(con)
    }

    /// A new synchronous connection over the unix socket.
    pub fn connection(&self) -> Connection {
        self.try_connection().unwrap_or_else(|e| {
            panic!(
                "connect to {}: {e}\n--- log ---\n{}",
                self.socket().display(),
                self.log()
            )
        })
    }

    /// Is the process still running and answering PING?
    pub fn is_alive(&mut self) -> bool {
        let running = match self.child.as_mut() {
            Some(c) => c.try_wait().map(|s| s.is_none()).unwrap_or(false),
            None => false,
        };
        running
            && self
                .try_connection()
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                .is_ok()
    }

    /// Graceful stop (`SHUTDOWN NOSAVE`, which still flushes and fsyncs the AOF), then wait for
    /// the process to exit; kills it after a timeout.
    pub fn stop(&mut self) {
        if self.child.is_none() {
            return;
        }
        if let Ok(mut con) = self.try_connection() {
            let _ = redis::cmd("SHUTDOWN").arg("NOSAVE").exec(&mut con);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill();
    }

    /// Stops the server gracefully and starts it again with the same directory and arguments.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(log) = self.spawn() {
            panic!("redis-server did not restart:\n{log}");
        }
    }

    /// SIGKILL, as a crash: nothing is flushed, clients see their connections reset.
    pub fn crash(&mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Subscribes to the PUB/SUB channel `channel` (full name) with SUBSCRIBE.
    pub fn subscribe(&self, channel: &str) -> Subscriber {
        Subscriber::new(self, channel, false)
    }

    /// Subscribes to the shard channel `channel` with SSUBSCRIBE.
    pub fn ssubscribe(&self, channel: &str) -> Subscriber {
        Subscriber::new(self, channel, true)
    }

    /// Waits until this replica reports `master_link_status:up` and has no sync in progress.
    pub fn wait_for_replication_link(&self) {
        let mut con = self.connection();
        wait_until(Duration::from_secs(15), "replica link up", || {
            let info = info_section(&mut con, "replication");
            info.get("master_link_status").map(String::as_str) == Some("up")
                && info.get("master_sync_in_progress").map(String::as_str) == Some("0")
        });
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // Print the log when a test fails while this server runs (a failed start already put the
        // log into its panic message).
        if std::thread::panicking() && self.child.is_some() && self.dir.is_some() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- redis-server log tail ({}) ---", self.dir().display());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
        self.kill();
        // TempDir removes the directory when it drops.
    }
}
