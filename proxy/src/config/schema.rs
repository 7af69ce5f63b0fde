//! The configuration's sections, one struct each, with Centrifugo v6's key names, nesting and
//! defaults. Every struct is `#[serde(default, deny_unknown_fields)]`: a missing key takes its
//! default, a misspelt one is an error.
//!
//! Only options Gyre acts on are here. A Centrifugo key for a feature Gyre lacks (`grpc_api`,
//! `consumers`, …) is an unknown key and stops the start, rather than being silently ignored while
//! the user believes it is in force. The backend hooks' sections are in [`super::proxy`].

use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

use super::duration;
use super::token::TokenSettings;

/// `http_server`: the listener for client transports and, unless `internal_port` is set, the
/// server API, `/health`, `/metrics` and the admin UI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpServer {
    /// Interface to bind; empty means every interface.
    pub address: String,
    /// TCP port; 0 lets the OS choose (useful in tests).
    pub port: u16,
    /// How long a client may take to send a request's line and headers, counted from the
    /// connection's opening (first request) or from the request's first byte (later requests);
    /// then the connection is closed. 0 = no limit.
    #[serde(with = "duration")]
    pub read_header_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request before it is closed.
    /// 0 = no limit.
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
    /// How long a client may take to send a whole request body (API calls, `/emulation`,
    /// connect requests); 408 beyond it. 0 = no limit.
    #[serde(with = "duration")]
    pub read_body_timeout: Duration,
    /// TCP connections that have not authenticated yet (no successful connect, no API key):
    /// beyond it new connections are answered 503 and closed at once, so that idle or
    /// half-sent connections cannot take every file descriptor. 0 = half of the open-file
    /// limit gyre runs with.
    pub max_unauthenticated_connections: u32,
    /// Interface of the internal port; empty means every interface.
    pub internal_address: String,
    /// A second port for the server API, `/metrics`, `/health` and the admin UI, which then
    /// leave the public port (404 there). 0 = none: everything on `port`. A string is accepted
    /// too, as in Centrifugo.
    #[serde(deserialize_with = "port_number_or_text")]
    pub internal_port: u16,
    /// TLS of the server (Centrifugo's TLS object: `cert_pem` and `key_pem`, as PEM text,
    /// base64 or a file path, or their `_file` / `_b64` forms): clients connect with `wss://`
    /// and `https://`. It covers the internal port too, unless `tls_external` or
    /// `internal_tls`.
    pub tls: TlsConfig,
    /// TLS on the public port only: the internal port stays plain (unless `internal_tls`).
    pub tls_external: bool,
    /// TLS of the internal port when it differs from `tls` (same keys); when not enabled the
    /// internal port uses `tls`, unless `tls_external`.
    pub internal_tls: TlsConfig,
    /// A path every endpoint is mounted under (`/realtime` → `/realtime/connection/websocket`,
    /// `/realtime/api/publish`); empty = none.
    pub handler_prefix: String,
}

impl Default for HttpServer {
    fn default() -> Self {
        Self {
            address: String::new(),
            port: 8000,
            read_header_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            read_body_timeout: Duration::from_secs(10),
            max_unauthenticated_connections: 0,
            internal_address: String::new(),
            internal_port: 0,
            tls: TlsConfig::default(),
            tls_external: false,
            internal_tls: TlsConfig::default(),
            handler_prefix: String::new(),
        }
    }
}

/// A port as a number or as the text of one (Centrifugo's `internal_port` is a string).
fn port_number_or_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u16, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Port {
        Number(u16),
        Text(String),
    }
    match Port::deserialize(deserializer)? {
        Port::Number(port) => Ok(port),
        Port::Text(text) if text.trim().is_empty() => Ok(0),
        Port::Text(text) => text
            .trim()
            .parse()
            .map_err(|_| de::Error::custom(format!("expected a port number, got {text:?}"))),
    }
}

/// `admin`: the admin web UI, served by gyre itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Admin {
    pub enabled: bool,
    /// What the operator types to log in.
    pub password: String,
    /// Signs the session tokens the UI holds after a login.
    pub secret: String,
    /// No login at all (every request is an operator). Only behind a firewall.
    pub insecure: bool,
    /// Path of the UI (its page, `/admin/auth` and `/admin/api` under it); empty = `/`.
    pub handler_prefix: String,
    /// Serve the UI on the public port even when `http_server.internal_port` is set.
    pub external: bool,
}

/// `log`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Log {
    pub level: LogLevel,
}

/// `log.level`, with Centrifugo's level names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    None,
    Trace,
    Debug,
    #[default]
    Info,
    Warn,
    Error,
}

impl LogLevel {
    /// The level as `tracing` filters name it: Centrifugo's names, except `none`, which is
    /// `off`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::None => "off",
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// `node`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Node {
    /// Human-readable node name shown by the `info` API; empty means the bin derives one from
    /// the host name and port, as Centrifugo does.
    pub name: String,
}

/// `engine`: where publications, history and presence live.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Engine {
    #[serde(rename = "type")]
    pub kind: EngineType,
    pub redis: RedisEngine,
}

/// `engine.type`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineType {
    #[default]
    Memory,
    Redis,
}

/// `engine.redis`: the Redis engine's servers, with Centrifugo v6's key names.
///
/// One topology at a time: `address` (standalone servers, or a TCP proxy in front of the
/// primary), `sentinel_address` + `sentinel_master_name`, or `cluster_address`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisEngine {
    /// Redis URLs (`redis://`, `rediss://`, `unix://`), each with optional `user:password@`
    /// and `/db`; several mean client-side sharding. A single string is accepted too, as
    /// Centrifugo does.
    #[serde(deserialize_with = "string_or_list")]
    pub address: Vec<String>,
    /// ACL user of the data nodes, for addresses whose URL names none.
    pub user: String,
    /// Password of the data nodes, for addresses whose URL has none.
    pub password: String,
    /// Database number, for addresses whose URL names none.
    pub db: u32,
    /// TLS to the data nodes (also used for every `rediss://` address).
    pub tls: TlsConfig,
    /// Redis Cluster deployments: each string is a comma-separated list of seed nodes
    /// (`host:port` or URLs) of one cluster; several clusters shard channels between them.
    #[serde(deserialize_with = "string_or_list")]
    pub cluster_address: Vec<String>,
    /// Sentinels (`host:port`, `redis://host:port` or `rediss://host:port`) to ask for the
    /// primary of `sentinel_master_name`.
    #[serde(deserialize_with = "string_or_list")]
    pub sentinel_address: Vec<String>,
    pub sentinel_master_name: String,
    /// ACL user of the sentinels.
    pub sentinel_user: String,
    /// Password of the sentinels (their `requirepass`).
    pub sentinel_password: String,
    /// TLS to the sentinels.
    pub sentinel_tls: TlsConfig,
    /// Key and channel prefix; must equal the module's `gyre.prefix`. Gyre's default differs
    /// from Centrifugo's `centrifugo` on purpose: the module's default is `gyre`.
    pub prefix: String,
    /// How long a presence entry lives without a refresh.
    #[serde(with = "duration")]
    pub presence_ttl: Duration,
    #[serde(with = "duration")]
    pub connect_timeout: Duration,
    /// Timeout of one Redis command round trip.
    #[serde(with = "duration")]
    pub io_timeout: Duration,
}

impl RedisEngine {
    /// The default of `address`: what counts as "address left alone" next to another topology.
    pub fn default_address() -> Vec<String> {
        vec!["redis://127.0.0.1:6379".to_owned()]
    }
}

impl Default for RedisEngine {
    fn default() -> Self {
        Self {
            address: Self::default_address(),
            user: String::new(),
            password: String::new(),
            db: 0,
            tls: TlsConfig::default(),
            cluster_address: Vec::new(),
            sentinel_address: Vec::new(),
            sentinel_master_name: String::new(),
            sentinel_user: String::new(),
            sentinel_password: String::new(),
            sentinel_tls: TlsConfig::default(),
            prefix: "gyre".to_owned(),
            presence_ttl: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(1),
            io_timeout: Duration::from_secs(4),
        }
    }
}

/// Centrifugo v6's TLS object, for the connections Gyre opens: `engine.redis.tls`,
/// `engine.redis.sentinel_tls`, and the backend hooks' `http.tls` and `grpc.tls`.
///
/// Each PEM comes from one of its three keys. The plain key (`server_ca_pem`, `cert_pem`,
/// `key_pem`) takes what Centrifugo v6 takes there: PEM text, base64 of the PEM text, or the
/// path of a PEM file. `_file` and `_b64` are Centrifugo v5's explicit forms of the last two.
/// PEM files are read, and every PEM parsed, at start (and by `gyre checkconfig`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Use TLS (for Redis: every address; `rediss://` addresses use it anyway).
    pub enabled: bool,
    /// CA certificates to trust instead of the system's.
    pub server_ca_pem: String,
    pub server_ca_pem_file: String,
    pub server_ca_pem_b64: String,
    /// Client certificate (chain), for servers that require one; needs the key.
    pub cert_pem: String,
    pub cert_pem_file: String,
    pub cert_pem_b64: String,
    /// The client certificate's private key.
    pub key_pem: String,
    pub key_pem_file: String,
    pub key_pem_b64: String,
    /// CA of client certificates, which only a TLS server checks: accepted because it is part
    /// of Centrifugo's TLS object, without effect on Gyre's outgoing connections (a warning at
    /// start says so).
    pub client_ca_pem: String,
    pub client_ca_pem_file: String,
    pub client_ca_pem_b64: String,
    /// Name the server's certificate must be valid for, when it is not the host connected to.
    pub server_name: String,
    /// Accept any server certificate. Development only; logged as a warning at start.
    pub insecure_skip_verify: bool,
}

impl TlsConfig {
    /// Whether any key other than `enabled` is set.
    pub fn has_settings(&self) -> bool {
        *self
            != TlsConfig {
                enabled: self.enabled,
                ..TlsConfig::default()
            }
    }

    /// Whether one of the `client_ca_pem` keys is set (no effect; see the field).
    pub fn has_client_ca(&self) -> bool {
        !(self.client_ca_pem.is_empty()
            && self.client_ca_pem_file.is_empty()
            && self.client_ca_pem_b64.is_empty())
    }
}

/// `client`: real-time connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Client {
    /// Backend hooks of the connection: `connect` and `refresh`.
    pub proxy: super::proxy::ClientProxies,
    /// Keys for connection tokens, and for subscription tokens unless
    /// `subscription_token.enabled`.
    pub token: TokenSettings,
    pub subscription_token: SubscriptionToken,
    /// Origins allowed to open browser connections (`*` wildcards allowed); empty means only
    /// same-origin requests and clients that send no `Origin`.
    #[serde(deserialize_with = "string_or_list")]
    pub allowed_origins: Vec<String>,
    pub allow_anonymous_connect_without_token: bool,
    pub disallow_anonymous_connection_tokens: bool,
    /// No authentication and no permission checks at all. Development only.
    pub insecure: bool,
    #[serde(with = "duration")]
    pub ping_interval: Duration,
    /// 0 disables the pong check.
    #[serde(with = "duration")]
    pub pong_timeout: Duration,
    #[serde(with = "duration")]
    pub expired_close_delay: Duration,
    #[serde(with = "duration")]
    pub expired_sub_close_delay: Duration,
    /// How long a new connection may take to send its `connect` command.
    #[serde(with = "duration")]
    pub stale_close_delay: Duration,
    /// Subscriptions per connection.
    pub channel_limit: u32,
    /// Bytes waiting to be written to one connection before it is closed as slow; 0 = no limit.
    pub queue_max_size: u64,
    #[serde(with = "duration")]
    pub presence_update_interval: Duration,
    /// Connections per node; 0 = no limit.
    pub connection_limit: u32,
    /// Connections of one user per node; 0 = no limit.
    pub user_connection_limit: u32,
    /// Connection handshakes per second per node; beyond it clients get 503 and retry after
    /// their backoff. 0 = no limit.
    pub handshake_rate_limit: u32,
    /// Handshakes allowed at once above the rate; 0 = one second's worth.
    pub handshake_burst: u32,
    /// Centrifugo v6's name for `handshake_rate_limit` (new connections per second per node,
    /// with one second's worth as burst), so its configs carry over. Setting both to different
    /// values is a config error.
    pub connection_rate_limit: u32,
    pub history_max_publication_limit: u32,
    pub recovery_max_publication_limit: u32,
    /// The disconnect a unidirectional client gets for a connect error code.
    pub connect_code_to_unidirectional_disconnect:
        super::proxy::ConnectCodeToUnidirectionalDisconnect,
}

impl Default for Client {
    fn default() -> Self {
        Self {
            proxy: super::proxy::ClientProxies::default(),
            token: TokenSettings::default(),
            subscription_token: SubscriptionToken::default(),
            allowed_origins: Vec::new(),
            allow_anonymous_connect_without_token: false,
            disallow_anonymous_connection_tokens: false,
            insecure: false,
            ping_interval: Duration::from_secs(25),
            pong_timeout: Duration::from_secs(8),
            expired_close_delay: Duration::from_secs(25),
            expired_sub_close_delay: Duration::from_secs(25),
            stale_close_delay: Duration::from_secs(10),
            channel_limit: 128,
            queue_max_size: 1_048_576,
            presence_update_interval: Duration::from_secs(27),
            connection_limit: 0,
            user_connection_limit: 0,
            handshake_rate_limit: 0,
            handshake_burst: 0,
            connection_rate_limit: 0,
            history_max_publication_limit: 300,
            recovery_max_publication_limit: 300,
            connect_code_to_unidirectional_disconnect: Default::default(),
        }
    }
}

impl Client {
    /// Connection handshakes per second per node (0 = no limit): `handshake_rate_limit`, or
    /// Centrifugo's `connection_rate_limit` when only that one is set.
    pub fn handshake_rate(&self) -> u32 {
        match self.handshake_rate_limit {
            0 => self.connection_rate_limit,
            rate => rate,
        }
    }

    /// The keys subscription tokens are checked with: `subscription_token` when it is
    /// enabled, else `token` (Centrifugo's rule).
    pub fn subscription_token_settings(&self) -> &TokenSettings {
        if self.subscription_token.enabled {
            &self.subscription_token.token
        } else {
            &self.token
        }
    }
}

/// `client.subscription_token`: `enabled` plus the same keys as `client.token`, side by side
/// as in Centrifugo.
///
/// Deserialization is written by hand because serde's `flatten` cannot be combined with
/// `deny_unknown_fields`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SubscriptionToken {
    pub enabled: bool,
    #[serde(flatten)]
    pub token: TokenSettings,
}

impl<'de> Deserialize<'de> for SubscriptionToken {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use de::Error as _;
        let mut map = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)?;
        let enabled = match map.remove("enabled") {
            None => false,
            Some(v) => {
                bool::deserialize(v).map_err(|e| D::Error::custom(format!("enabled: {e}")))?
            }
        };
        let token = serde_path_to_error::deserialize(serde_json::Value::Object(map))
            .map_err(|e| D::Error::custom(format!("{}: {}", e.path(), e.inner())))?;
        Ok(Self { enabled, token })
    }
}

/// Defines [`ChannelOptions`] and [`Namespace`] from one field list, so a namespace's keys sit
/// beside its `name` (Centrifugo's layout) while serde still rejects unknown keys and reports
/// exact paths, which `#[serde(flatten)]` would prevent.
macro_rules! channel_options {
    ($( $(#[$attr:meta])* $field:ident: $ty:ty, )*) => {
        /// Options of a channel: `channel.without_namespace` or one of `channel.namespaces`.
        /// All default to off / zero, as in Centrifugo.
        #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct ChannelOptions {
            $( $(#[$attr])* pub $field: $ty, )*
        }

        /// One entry of `channel.namespaces`: a `name` and the channel options of every channel
        /// named `<name>:…`.
        #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct Namespace {
            /// Matches `^[-a-zA-Z0-9_.]{2,}$`; unique.
            pub name: String,
            $( $(#[$attr])* pub $field: $ty, )*
        }

        impl Namespace {
            /// A namespace with these options.
            pub fn new(name: impl Into<String>, options: ChannelOptions) -> Self {
                Self { name: name.into(), $( $field: options.$field, )* }
            }

            /// This namespace's options, without its name.
            pub fn options(&self) -> ChannelOptions {
                ChannelOptions { $( $field: self.$field.clone(), )* }
            }
        }
    };
}

channel_options! {
    /// Keep presence (who is subscribed) for the channel.
    presence: bool,
    /// Emit join/leave events for the channel.
    join_leave: bool,
    /// Deliver join/leave to every subscriber, whether or not it asked for them.
    force_push_join_leave: bool,
    /// Publications kept in history; 0 = no history.
    history_size: u64,
    /// How long history is kept after the last publication; needed with `history_size`.
    #[serde(with = "duration")]
    history_ttl: Duration,
    /// How long the stream position (offset, epoch) outlives history; 0 = `channel.history_meta_ttl`.
    /// [`crate::config::Config::channel_options`] returns it with that fallback applied.
    #[serde(with = "duration")]
    history_meta_ttl: Duration,
    force_positioning: bool,
    allow_positioning: bool,
    force_recovery: bool,
    allow_recovery: bool,
    allow_subscribe_for_client: bool,
    allow_subscribe_for_anonymous: bool,
    allow_publish_for_subscriber: bool,
    allow_publish_for_client: bool,
    allow_publish_for_anonymous: bool,
    allow_history_for_subscriber: bool,
    allow_history_for_client: bool,
    allow_history_for_anonymous: bool,
    allow_presence_for_subscriber: bool,
    allow_presence_for_client: bool,
    allow_presence_for_anonymous: bool,
    /// Allow `name#user1,user2` channels that only the listed users may subscribe to.
    allow_user_limited_channels: bool,
    /// Ask the subscribe proxy whether a client may subscribe (unless it brings a subscription
    /// token or the channel is user-limited).
    subscribe_proxy_enabled: bool,
    /// Which subscribe proxy: `default` (or empty) = `channel.proxy.subscribe`, else a name of
    /// `proxies`. See [`ChannelOptions::proxy_name`].
    subscribe_proxy_name: String,
    /// Ask the publish proxy whether a client may publish (it may also rewrite the data).
    publish_proxy_enabled: bool,
    publish_proxy_name: String,
    /// Subscriptions that expire are refreshed by the server through the sub_refresh proxy
    /// instead of by the client with a new token.
    sub_refresh_proxy_enabled: bool,
    sub_refresh_proxy_name: String,
    /// Subscription streams from the backend: not supported, refused at start when on.
    subscribe_stream_proxy_enabled: bool,
    subscribe_stream_proxy_name: String,
    /// Centrifugo v6's name of the bidirectional stream switch (no effect, as streams are not
    /// supported).
    subscribe_stream_proxy_bidirectional: bool,
    /// The name of the same switch in earlier Gyre versions (no effect).
    subscribe_stream_bidirectional: bool,
    /// Centrifugo PRO's cache-miss notifications: accepted without effect (a warning at start
    /// when on).
    cache_empty_proxy_enabled: bool,
    cache_empty_proxy_name: String,
    /// Centrifugo PRO's channel occupied/vacated notifications: accepted without effect (a
    /// warning at start when on).
    state_proxy_enabled: bool,
    state_proxy_name: String,
    /// Clients may subscribe with a publication tags filter (`tf`); without it such a subscribe
    /// is refused with 107, as in Centrifugo.
    allow_tags_filter: bool,
    /// Delta types a subscriber may negotiate (`delta` in its subscribe request): `["fossil"]`
    /// or none.
    allowed_delta_types: Vec<String>,
    /// Every publication is sent as a delta against the previous one to subscribers that
    /// negotiated deltas (Centrifugo's per-publication `delta` flag for the whole namespace).
    delta_publish: bool,
    /// `"stream"` (or empty): recovery replays every missed publication; `"cache"`: only the
    /// latest one (the channel works as a key-value cell).
    force_recovery_mode: String,
}

impl ChannelOptions {
    /// Whether recovery gives only the latest publication (`force_recovery_mode = "cache"`).
    pub fn cache_recovery(&self) -> bool {
        self.force_recovery_mode == "cache"
    }

    /// Whether the channel keeps history (size and TTL both set).
    pub fn has_history(&self) -> bool {
        self.history_size > 0 && !self.history_ttl.is_zero()
    }

    /// A `*_proxy_name` as the proxies are registered: empty means `default`, as in Centrifugo
    /// (whose default for these keys is `default`).
    pub fn proxy_name(name: &str) -> &str {
        if name.is_empty() {
            super::proxy::DEFAULT_PROXY_NAME
        } else {
            name
        }
    }
}

/// `channel`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Channel {
    /// The proxies namespaces use under the name `default`.
    pub proxy: super::proxy::ChannelProxies,
    /// Options of channels without a `:`.
    pub without_namespace: ChannelOptions,
    pub namespaces: Vec<Namespace>,
    /// Stream position TTL for channels whose options leave `history_meta_ttl` at 0.
    #[serde(with = "duration")]
    pub history_meta_ttl: Duration,
    /// Longest channel name in bytes; 0 = no limit.
    pub max_length: u32,
}

impl Default for Channel {
    fn default() -> Self {
        Self {
            proxy: super::proxy::ChannelProxies::default(),
            without_namespace: ChannelOptions::default(),
            namespaces: Vec::new(),
            history_meta_ttl: Duration::from_secs(720 * 3600),
            max_length: 255,
        }
    }
}

/// `http_api`: the server API under `/api`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpApi {
    /// Required in `X-API-Key` (or `Authorization: apikey …`) unless `insecure`.
    pub key: String,
    pub insecure: bool,
    /// Most commands in one `batch` request; a longer batch is refused with HTTP 400.
    pub batch_max_commands: u32,
    /// The endpoint's path (Centrifugo's `handler_prefix`); empty = `/api`. Under
    /// `http_server.handler_prefix` when that is set too.
    pub handler_prefix: String,
}

impl Default for HttpApi {
    fn default() -> Self {
        Self {
            key: String::new(),
            insecure: false,
            // Backends batch tens to a few thousand commands (one publication per user channel,
            // say); past that `broadcast` is the tool. 10,000 leaves room for those and bounds
            // one request: the commands run one after another, so 10,000 engine round trips
            // (about a second against Redis) while the caller waits, and only 160 KB of command
            // slices kept. Without a cap the 4 MB body limit allowed 350,000 tiny commands.
            batch_max_commands: 10_000,
            handler_prefix: String::new(),
        }
    }
}

/// `websocket`: the bidirectional WebSocket transport.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSocket {
    /// Largest inbound message in bytes; 0 = no limit.
    pub message_size_limit: u32,
    /// How long one write to the socket may block before the connection is dropped.
    #[serde(with = "duration")]
    pub write_timeout: Duration,
    /// Negotiate permessage-deflate with clients that offer it.
    pub compression: bool,
    /// zlib level, 1 (fastest) to 9.
    pub compression_level: u8,
    /// Messages shorter than this many bytes are sent uncompressed (as stored blocks).
    pub compression_min_size: u32,
    /// The endpoint's path (Centrifugo's `handler_prefix`); empty = `/connection/websocket`. Under
    /// `http_server.handler_prefix` when that is set too.
    pub handler_prefix: String,
}

impl Default for WebSocket {
    fn default() -> Self {
        Self {
            message_size_limit: 65_536,
            write_timeout: Duration::from_secs(1),
            compression: false,
            compression_level: 1,
            compression_min_size: 0,
            handler_prefix: String::new(),
        }
    }
}

impl WebSocket {
    /// `message_size_limit` in bytes, with 0 (no limit) as `usize::MAX`.
    pub fn max_message_size(&self) -> usize {
        size_limit(self.message_size_limit)
    }

    /// How a connection that negotiated permessage-deflate is compressed.
    pub fn deflate(&self) -> gyre_proto::codec::deflate::Deflate {
        gyre_proto::codec::deflate::Deflate {
            level: self.compression_level,
            min_size: self.compression_min_size as usize,
        }
    }
}

/// `http_stream`, `sse`: a bidirectional-emulation transport over plain HTTP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpTransport {
    pub enabled: bool,
    /// Largest connect request body (POST), in bytes.
    pub max_request_body_size: u32,
    /// The endpoint's path (Centrifugo's `handler_prefix`); empty = `/connection/http_stream` or
    /// `/connection/sse`. Under `http_server.handler_prefix` when that is set too.
    pub handler_prefix: String,
}

impl Default for HttpTransport {
    fn default() -> Self {
        Self {
            enabled: false,
            max_request_body_size: 65_536,
            handler_prefix: String::new(),
        }
    }
}

/// `uni_sse`, `uni_http_stream`: a unidirectional transport over plain HTTP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UniHttpTransport {
    pub enabled: bool,
    /// Largest connect request body (POST), in bytes.
    pub max_request_body_size: u32,
    /// A failed connect answered with an HTTP status instead of a disconnect push.
    pub connect_code_to_http_response: super::proxy::ConnectCodeToHttpResponse,
    /// The endpoint's path (Centrifugo's `handler_prefix`); empty = `/connection/uni_sse` or
    /// `/connection/uni_http_stream`. Under `http_server.handler_prefix` when that is set too.
    pub handler_prefix: String,
}

impl Default for UniHttpTransport {
    fn default() -> Self {
        Self {
            enabled: false,
            max_request_body_size: 65_536,
            connect_code_to_http_response: Default::default(),
            handler_prefix: String::new(),
        }
    }
}

/// `emulation`: the `/emulation` endpoint, through which clients of `http_stream` and `sse`
/// send their commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Emulation {
    /// Largest request body, in bytes.
    pub max_request_body_size: u32,
    /// Requests for sessions on other nodes being forwarded (through the engine) at once;
    /// beyond it they are answered 503 and the client retries.
    pub max_concurrent_forwards: u32,
    /// The endpoint's path (Centrifugo's `handler_prefix`); empty = `/emulation`. Under
    /// `http_server.handler_prefix` when that is set too.
    pub handler_prefix: String,
}

impl Default for Emulation {
    fn default() -> Self {
        Self {
            max_request_body_size: 65_536,
            max_concurrent_forwards: 1024,
            handler_prefix: String::new(),
        }
    }
}

/// `uni_websocket`: the unidirectional WebSocket transport.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UniWebSocket {
    pub enabled: bool,
    /// Largest message (the connect request) a client may send, in bytes; 0 = no limit.
    pub message_size_limit: u32,
    /// Send the pushes queued together as one message, separated by `\n`.
    pub join_push_messages: bool,
    /// The endpoint's path (Centrifugo's `handler_prefix`); empty = `/connection/uni_websocket`.
    /// Under `http_server.handler_prefix` when that is set too.
    pub handler_prefix: String,
}

impl UniWebSocket {
    /// `message_size_limit` in bytes, with 0 (no limit) as `usize::MAX`.
    pub fn max_message_size(&self) -> usize {
        size_limit(self.message_size_limit)
    }
}

/// A size limit from the config, where 0 means no limit.
fn size_limit(limit: u32) -> usize {
    match limit {
        0 => usize::MAX,
        n => n as usize,
    }
}

impl Default for UniWebSocket {
    fn default() -> Self {
        Self {
            enabled: false,
            message_size_limit: 65_536,
            join_push_messages: false,
            handler_prefix: String::new(),
        }
    }
}

/// `sockjs`: the SockJS endpoint for centrifuge-js's `sockjs` transport (removed from
/// Centrifugo in v6; Gyre keeps it for old clients and networks that need its fallbacks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SockJs {
    pub enabled: bool,
    /// Interval of the heartbeat frames on idle sessions.
    #[serde(with = "duration")]
    pub heartbeat_delay: Duration,
    /// How long a session of a polling or streaming sub-transport survives without a request
    /// from its client.
    #[serde(with = "duration")]
    pub disconnect_delay: Duration,
}

impl Default for SockJs {
    fn default() -> Self {
        Self {
            enabled: false,
            heartbeat_delay: Duration::from_secs(25),
            disconnect_delay: Duration::from_secs(5),
        }
    }
}

/// `shutdown`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Shutdown {
    /// Time allowed for a graceful stop before the process exits anyway.
    #[serde(with = "duration")]
    pub timeout: Duration,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
        }
    }
}

/// `health` and `prometheus`: accepted so Centrifugo configs load; Gyre always serves
/// `/health` and `/metrics`, so `enabled` changes nothing; `handler_prefix` moves them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Endpoint {
    pub enabled: bool,
    /// The endpoint's path (Centrifugo's `handler_prefix`); empty = `/health` or `/metrics`. Under
    /// `http_server.handler_prefix` when that is set too.
    pub handler_prefix: String,
}

/// Accepts `"a"` as `["a"]`: Centrifugo (through viper) takes a single string wherever a list
/// is expected, and configs in the wild rely on it for `engine.redis.address`.
fn string_or_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    struct OneOrMany;

    impl<'de> de::Visitor<'de> for OneOrMany {
        type Value = Vec<String>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string or a list of strings")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<String>, E> {
            Ok(vec![v.to_owned()])
        }

        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(item) = seq.next_element::<String>()? {
                out.push(item);
            }
            Ok(out)
        }
    }

    deserializer.deserialize_any(OneOrMany)
}
