//! The config a test's `gyre` runs with: Centrifugo v6 key names in TOML.

use std::fmt::Write as _;

use crate::server::RedisServer;

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
    pub(super) hmac_secret: String,
    pub(super) api_key: String,
    namespaces: Vec<Namespace>,
    client_extra: Vec<String>,
    http_server_extra: Vec<String>,
    http_api_extra: Vec<String>,
    extra_toml: String,
    pub(super) open_files: Option<u64>,
    /// `http_server.internal_port`: `Some(0)` until [`GyreBuilder::start`] picks a free port.
    pub(super) internal_port: Option<u16>,
    /// `http_server.handler_prefix`.
    pub(super) handler_prefix: String,
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
        let _ = writeln!(out, "# Written by gyre-tests (tests/src/gyre/config.rs).");
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
}
