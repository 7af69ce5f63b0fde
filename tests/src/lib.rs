//! Test harness: spawns real redis-server processes with the Gyre module loaded.
//!
//! - [`module_path`] finds `libgyre.so` (env `GYRE_MODULE`, else `<workspace>/target/debug`) and
//!   builds it once per test process when it is missing or older than its sources, because
//!   `cargo test` does not build the cdylib.
//! - [`RedisServer`] owns one `redis-server` in its own temporary directory (unix socket, optional
//!   TCP port for replication), waits for readiness, restarts in place and kills + removes
//!   everything on drop.
//! - [`Subscriber`] is a raw RESP PUB/SUB client (SUBSCRIBE or SSUBSCRIBE) with timeouts and a
//!   barrier, so tests can assert the exact set of messages a command published.
//! - Reply helpers ([`publish`], [`history`], [`expect_error`] …) turn replies into plain values
//!   and panic with the command that failed.

use std::collections::{BTreeMap, VecDeque};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use gyre_proto::redis_payload::{ChannelEvent, decode};
pub use gyre_proto::{ClientInfo, Publication};
pub use redis::{Connection, RedisError, RedisResult, Value};

/// How long a server may take to answer PING after it was spawned.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// Read timeout of every connection the harness hands out, so a hung server fails the test.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Locating and building the module
// ---------------------------------------------------------------------------------------------

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives inside the workspace")
}

/// Absolute path of `libgyre.so`, built once per process if it is missing or stale. A failed
/// build is remembered too, so every test of the process reports it without rebuilding.
pub fn module_path() -> &'static Path {
    static PATH: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match PATH.get_or_init(locate_module) {
        Ok(path) => path,
        Err(e) => panic!("{e}"),
    }
}

fn locate_module() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("GYRE_MODULE").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        let path = if path.is_absolute() {
            path
        } else {
            std::env::current_dir().unwrap().join(path)
        };
        if !path.is_file() {
            return Err(format!("GYRE_MODULE={} does not exist", path.display()));
        }
        return Ok(path);
    }
    let root = workspace_root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| if t.is_absolute() { t } else { root.join(t) })
        .unwrap_or_else(|| root.join("target"));
    let so = target.join("debug").join("libgyre.so");
    if needs_build(root, &so) {
        build_module(root)?;
    }
    if !so.is_file() {
        return Err(format!(
            "cargo build -p gyre-module did not produce {}",
            so.display()
        ));
    }
    Ok(so)
}

fn needs_build(root: &Path, so: &Path) -> bool {
    let Ok(built) = std::fs::metadata(so).and_then(|m| m.modified()) else {
        return true;
    };
    let sources = [
        root.join("module/src"),
        root.join("module/Cargo.toml"),
        root.join("proto/src"),
        root.join("proto/proto"),
        root.join("proto/build.rs"),
        root.join("proto/Cargo.toml"),
    ];
    sources
        .iter()
        .filter_map(|p| newest_mtime(p))
        .any(|t| t > built)
}

fn newest_mtime(path: &Path) -> Option<SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.is_file() {
        return meta.modified().ok();
    }
    let mut newest = None;
    for entry in std::fs::read_dir(path).ok()?.flatten() {
        if let Some(t) = newest_mtime(&entry.path()) {
            newest = newest.max(Some(t));
        }
    }
    newest
}

fn build_module(root: &Path) -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(["build", "-p", "gyre-module"])
        .current_dir(root)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run cargo build -p gyre-module: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo build -p gyre-module failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// redis-server processes
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// PUB/SUB
// ---------------------------------------------------------------------------------------------

/// A RESP2 value as read from a raw socket or an AOF file.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Frame>>),
}

impl Frame {
    fn bytes(&self) -> Option<&[u8]> {
        match self {
            Frame::Bulk(Some(b)) => Some(b),
            Frame::Simple(s) => Some(s.as_bytes()),
            _ => None,
        }
    }
}

/// Parses one RESP2 frame from the start of `buf`: `Ok(Some((frame, consumed)))`, `Ok(None)` when
/// more bytes are needed, `Err` on malformed input.
pub fn parse_frame(buf: &[u8]) -> Result<Option<(Frame, usize)>, String> {
    fn line(buf: &[u8]) -> Option<(&[u8], usize)> {
        let end = buf.windows(2).position(|w| w == b"\r\n")?;
        Some((&buf[..end], end + 2))
    }
    fn num(s: &[u8]) -> Result<i64, String> {
        std::str::from_utf8(s)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad RESP number {:?}", String::from_utf8_lossy(s)))
    }
    let Some(&kind) = buf.first() else {
        return Ok(None);
    };
    let Some((head, head_len)) = line(&buf[1..]) else {
        return Ok(None);
    };
    let mut pos = 1 + head_len;
    let frame = match kind {
        b'+' => Frame::Simple(String::from_utf8_lossy(head).into_owned()),
        b'-' => Frame::Error(String::from_utf8_lossy(head).into_owned()),
        b':' => Frame::Int(num(head)?),
        b'$' => {
            let len = num(head)?;
            if len < 0 {
                Frame::Bulk(None)
            } else {
                let len = len as usize;
                if buf.len() < pos + len + 2 {
                    return Ok(None);
                }
                let data = buf[pos..pos + len].to_vec();
                pos += len + 2;
                Frame::Bulk(Some(data))
            }
        }
        b'*' => {
            let n = num(head)?;
            if n < 0 {
                Frame::Array(None)
            } else {
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    match parse_frame(&buf[pos..])? {
                        Some((f, used)) => {
                            items.push(f);
                            pos += used;
                        }
                        None => return Ok(None),
                    }
                }
                Frame::Array(Some(items))
            }
        }
        other => return Err(format!("unexpected RESP type byte {other:#x}")),
    };
    Ok(Some((frame, pos)))
}

/// Encodes a command as a RESP array of bulk strings.
pub fn encode_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

static BARRIER_SEQ: AtomicU64 = AtomicU64::new(0);
const BARRIER_PREFIX: &[u8] = b"gyre-test-barrier:";

/// A raw PUB/SUB connection (RESP2 over the server's unix socket) subscribed to one channel.
/// Messages queue in the socket until read, so no background thread is needed.
pub struct Subscriber {
    stream: UnixStream,
    buf: Vec<u8>,
    pending: VecDeque<Vec<u8>>,
    channel: String,
    sharded: bool,
}

impl Subscriber {
    fn new(server: &RedisServer, channel: &str, sharded: bool) -> Self {
        let stream = UnixStream::connect(server.socket()).expect("connect subscriber");
        let mut sub = Subscriber {
            stream,
            buf: Vec::new(),
            pending: VecDeque::new(),
            channel: channel.to_string(),
            sharded,
        };
        let verb: &[u8] = if sharded { b"SSUBSCRIBE" } else { b"SUBSCRIBE" };
        sub.stream
            .write_all(&encode_command(&[verb, channel.as_bytes()]))
            .expect("send SUBSCRIBE");
        let confirm: &[u8] = if sharded { b"ssubscribe" } else { b"subscribe" };
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            let frame = sub
                .read_frame(deadline)
                .unwrap_or_else(|| panic!("no subscribe confirmation for {channel}"));
            match &frame {
                Frame::Array(Some(items))
                    if items.first().and_then(Frame::bytes) == Some(confirm) =>
                {
                    break;
                }
                Frame::Error(e) => panic!("subscribe to {channel} failed: {e}"),
                _ => sub.push_message(frame),
            }
        }
        sub
    }

    /// The channel this subscriber listens to.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    fn read_frame(&mut self, deadline: Instant) -> Option<Frame> {
        loop {
            match parse_frame(&self.buf) {
                Ok(Some((frame, used))) => {
                    self.buf.drain(..used);
                    return Some(frame);
                }
                Ok(None) => {}
                Err(e) => panic!("subscriber got malformed RESP: {e}"),
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            self.stream
                .set_read_timeout(Some((deadline - now).max(Duration::from_millis(1))))
                .unwrap();
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("subscriber connection closed by the server"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return None;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => panic!("subscriber read: {e}"),
            }
        }
    }

    fn push_message(&mut self, frame: Frame) {
        if let Frame::Array(Some(items)) = &frame {
            let kind = items.first().and_then(Frame::bytes);
            if matches!(kind, Some(b"message") | Some(b"smessage"))
                && items.len() == 3
                && let Some(payload) = items[2].bytes()
            {
                self.pending.push_back(payload.to_vec());
            }
        }
    }

    /// The next raw payload, or `None` if none arrives within `timeout`.
    pub fn next_payload(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        while self.pending.is_empty() {
            let frame = self.read_frame(deadline)?;
            self.push_message(frame);
        }
        self.pending.pop_front()
    }

    /// The next payload decoded with `gyre_proto::redis_payload::decode`; panics on timeout or
    /// an undecodable payload.
    pub fn next_event(&mut self, timeout: Duration) -> ChannelEvent {
        let payload = self
            .next_payload(timeout)
            .unwrap_or_else(|| panic!("no message on {} within {timeout:?}", self.channel));
        decode_payload(&payload)
    }

    /// Publishes a barrier message on the subscribed channel through `publisher` (PUBLISH or
    /// SPUBLISH, so it travels after every message already published, including over
    /// replication when `publisher` is the primary) and returns every raw payload received
    /// before it.
    pub fn payloads_until_barrier(&mut self, publisher: &mut Connection) -> Vec<Vec<u8>> {
        let seq = BARRIER_SEQ.fetch_add(1, Ordering::Relaxed);
        let mut marker = BARRIER_PREFIX.to_vec();
        marker.extend_from_slice(format!("{}:{seq}", std::process::id()).as_bytes());
        let verb = if self.sharded { "SPUBLISH" } else { "PUBLISH" };
        redis::cmd(verb)
            .arg(&self.channel)
            .arg(&marker)
            .query::<i64>(publisher)
            .expect("publish barrier");
        let mut out = Vec::new();
        loop {
            let payload = self.next_payload(IO_TIMEOUT).unwrap_or_else(|| {
                panic!(
                    "barrier on {} did not arrive within {IO_TIMEOUT:?}",
                    self.channel
                )
            });
            if payload == marker {
                return out;
            }
            if payload.starts_with(BARRIER_PREFIX) {
                continue; // a stale barrier of an earlier call
            }
            out.push(payload);
        }
    }

    /// Like [`Subscriber::payloads_until_barrier`], decoded.
    pub fn events_until_barrier(&mut self, publisher: &mut Connection) -> Vec<ChannelEvent> {
        self.payloads_until_barrier(publisher)
            .iter()
            .map(|p| decode_payload(p))
            .collect()
    }
}

/// Decodes a PUB/SUB payload, panicking with the bytes when it is not valid.
pub fn decode_payload(payload: &[u8]) -> ChannelEvent {
    decode(payload).unwrap_or_else(|e| {
        panic!(
            "undecodable PUB/SUB payload {:?}: {e}",
            String::from_utf8_lossy(payload)
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Waiting
// ---------------------------------------------------------------------------------------------

/// Polls `cond` every 20 ms until it is true; panics with `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

// ---------------------------------------------------------------------------------------------
// Commands and replies
// ---------------------------------------------------------------------------------------------

fn build_cmd(args: &[&str]) -> redis::Cmd {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c
}

/// Runs a command and returns the reply or the error.
pub fn try_cmd(con: &mut Connection, args: &[&str]) -> RedisResult<Value> {
    build_cmd(args).query::<Value>(con)
}

/// Runs a command and returns the reply; panics (naming the command) on an error reply.
pub fn cmd(con: &mut Connection, args: &[&str]) -> Value {
    try_cmd(con, args).unwrap_or_else(|e| panic!("{args:?} failed: {}", error_text(&e)))
}

/// Like [`cmd`] but with binary arguments.
pub fn cmd_bytes(con: &mut Connection, args: &[&[u8]]) -> Value {
    let mut c = redis::cmd(std::str::from_utf8(args[0]).expect("utf-8 command name"));
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query::<Value>(con)
        .unwrap_or_else(|e| panic!("{:?} failed: {}", args[0], error_text(&e)))
}

/// `"<CODE> <detail>"` of an error reply (e.g. `ERR syntax error near 'X'`).
pub fn error_text(e: &RedisError) -> String {
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        (Some(code), None) => code.to_string(),
        _ => e.to_string(),
    }
}

/// Runs a command that must fail with an error reply; returns the error text. Panics if the
/// command succeeds or the connection fails (which would mean the server died).
pub fn expect_error(con: &mut Connection, args: &[&str]) -> String {
    match try_cmd(con, args) {
        Ok(v) => panic!("{args:?} should have failed but replied {v:?}"),
        Err(e) => {
            assert!(
                e.code().is_some(),
                "{args:?} did not get an error reply but a client/IO error: {e}"
            );
            error_text(&e)
        }
    }
}

/// Asserts the server still answers PING on this connection.
pub fn assert_ping(con: &mut Connection, after: &str) {
    let pong: String = redis::cmd("PING")
        .query(con)
        .unwrap_or_else(|e| panic!("server did not answer PING after {after}: {e}"));
    assert_eq!(pong, "PONG", "PING after {after}");
}

pub fn as_int(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        other => panic!("expected an integer, got {other:?}"),
    }
}

pub fn as_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::BulkString(b) => b.clone(),
        Value::SimpleString(s) => s.clone().into_bytes(),
        Value::VerbatimString { text, .. } => text.clone().into_bytes(),
        other => panic!("expected a string, got {other:?}"),
    }
}

pub fn as_string(v: &Value) -> String {
    String::from_utf8(as_bytes(v)).expect("utf-8 string reply")
}

pub fn as_array(v: &Value) -> &[Value] {
    match v {
        Value::Array(items) | Value::Set(items) => items,
        other => panic!("expected an array, got {other:?}"),
    }
}

pub fn as_strings(v: &Value) -> Vec<String> {
    as_array(v).iter().map(as_string).collect()
}

/// `GYRE.PUBLISH <channel> <data> <opts…>` → `(offset, epoch)`.
pub fn publish(con: &mut Connection, channel: &str, data: &str, opts: &[&str]) -> (i64, String) {
    let mut args = vec!["GYRE.PUBLISH", channel, data];
    args.extend_from_slice(opts);
    let reply = cmd(con, &args);
    let items = as_array(&reply);
    assert_eq!(items.len(), 2, "{args:?} reply {reply:?}");
    (as_int(&items[0]), as_string(&items[1]))
}

/// `GYRE.PUBLISH … HISTORY <size> <ttl>`.
pub fn publish_hist(
    con: &mut Connection,
    channel: &str,
    data: &str,
    size: u32,
    ttl: u32,
) -> (i64, String) {
    publish(
        con,
        channel,
        data,
        &["HISTORY", &size.to_string(), &ttl.to_string()],
    )
}

/// One entry of a (non-RAW) `GYRE.HISTORY` reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub offset: i64,
    pub data: Vec<u8>,
    pub time_ms: i64,
    pub info: Vec<String>,
    pub tags: Vec<String>,
}

/// A `GYRE.HISTORY` reply.
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    pub top: i64,
    pub epoch: String,
    pub entries: Vec<Entry>,
}

impl History {
    pub fn offsets(&self) -> Vec<i64> {
        self.entries.iter().map(|e| e.offset).collect()
    }

    pub fn data(&self) -> Vec<String> {
        self.entries
            .iter()
            .map(|e| String::from_utf8_lossy(&e.data).into_owned())
            .collect()
    }
}

fn history_value(con: &mut Connection, channel: &str, opts: &[&str]) -> (i64, String, Vec<Value>) {
    let mut args = vec!["GYRE.HISTORY", channel];
    args.extend_from_slice(opts);
    let reply = cmd(con, &args);
    let items = as_array(&reply);
    assert_eq!(items.len(), 3, "{args:?} reply {reply:?}");
    (
        as_int(&items[0]),
        as_string(&items[1]),
        as_array(&items[2]).to_vec(),
    )
}

/// `GYRE.HISTORY <channel> <opts…>` (without RAW).
pub fn history(con: &mut Connection, channel: &str, opts: &[&str]) -> History {
    let (top, epoch, raw) = history_value(con, channel, opts);
    let entries = raw
        .iter()
        .map(|e| {
            let f = as_array(e);
            assert_eq!(f.len(), 5, "history entry {e:?}");
            Entry {
                offset: as_int(&f[0]),
                data: as_bytes(&f[1]),
                time_ms: as_int(&f[2]),
                info: as_strings(&f[3]),
                tags: as_strings(&f[4]),
            }
        })
        .collect();
    History {
        top,
        epoch,
        entries,
    }
}

/// `GYRE.HISTORY <channel> <opts…> RAW` → `(top, epoch, [(offset, Publication bytes)])`.
pub fn history_raw(
    con: &mut Connection,
    channel: &str,
    opts: &[&str],
) -> (i64, String, Vec<(i64, Vec<u8>)>) {
    let mut all = opts.to_vec();
    all.push("RAW");
    let (top, epoch, raw) = history_value(con, channel, &all);
    let entries = raw
        .iter()
        .map(|e| {
            let f = as_array(e);
            assert_eq!(f.len(), 2, "RAW history entry {e:?}");
            (as_int(&f[0]), as_bytes(&f[1]))
        })
        .collect();
    (top, epoch, entries)
}

/// Decodes a Publication protobuf.
pub fn decode_publication(bytes: &[u8]) -> Publication {
    <Publication as prost::Message>::decode(bytes).expect("valid Publication protobuf")
}

/// Decodes a ClientInfo protobuf.
pub fn decode_client_info(bytes: &[u8]) -> ClientInfo {
    <ClientInfo as prost::Message>::decode(bytes).expect("valid ClientInfo protobuf")
}

/// One stream entry: `(id, [(field, value)])`.
pub type StreamEntry = (String, Vec<(String, Vec<u8>)>);

/// `XRANGE <key> - +`.
pub fn xrange(con: &mut Connection, key: &str) -> Vec<StreamEntry> {
    let reply = cmd(con, &["XRANGE", key, "-", "+"]);
    as_array(&reply)
        .iter()
        .map(|e| {
            let f = as_array(e);
            let fields = as_array(&f[1])
                .chunks(2)
                .map(|kv| (as_string(&kv[0]), as_bytes(&kv[1])))
                .collect();
            (as_string(&f[0]), fields)
        })
        .collect()
}

/// `HGETALL <key>` as a map of strings (values lossily decoded).
pub fn hgetall(con: &mut Connection, key: &str) -> BTreeMap<String, String> {
    let reply = cmd(con, &["HGETALL", key]);
    let items = match &reply {
        Value::Map(pairs) => {
            return pairs
                .iter()
                .map(|(k, v)| (as_string(k), as_string(v)))
                .collect();
        }
        other => as_array(other),
    };
    items
        .chunks(2)
        .map(|kv| {
            (
                as_string(&kv[0]),
                String::from_utf8_lossy(&as_bytes(&kv[1])).into_owned(),
            )
        })
        .collect()
}

pub fn exists(con: &mut Connection, key: &str) -> bool {
    as_int(&cmd(con, &["EXISTS", key])) == 1
}

/// `TTL <key>` in seconds (-1 no expiry, -2 missing).
pub fn ttl(con: &mut Connection, key: &str) -> i64 {
    as_int(&cmd(con, &["TTL", key]))
}

/// `INFO <section>` parsed into `field → value` (comment lines skipped).
pub fn info_section(con: &mut Connection, section: &str) -> BTreeMap<String, String> {
    let text = as_string(&cmd(con, &["INFO", section]));
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Every command (as a list of arguments) in the `*.aof` files of `dir/appendonlydir`.
pub fn aof_commands(dir: &Path) -> Vec<Vec<Vec<u8>>> {
    let aof_dir = dir.join("appendonlydir");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&aof_dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", aof_dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "aof"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        let mut pos = 0;
        while pos < bytes.len() {
            match parse_frame(&bytes[pos..]) {
                Ok(Some((Frame::Array(Some(items)), used))) => {
                    out.push(
                        items
                            .iter()
                            .map(|f| f.bytes().map(<[u8]>::to_vec).unwrap_or_default())
                            .collect(),
                    );
                    pos += used;
                }
                other => panic!(
                    "{}: unexpected AOF content at byte {pos}: {other:?}",
                    file.display()
                ),
            }
        }
    }
    out
}
