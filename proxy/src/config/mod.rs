//! Gyre's configuration: typed sections with Centrifugo v6's key names, nesting and defaults,
//! so a Centrifugo user's config file carries over.
//!
//! This module is a leaf (nothing below it in the crate): it reads no files, environment or
//! flags. The bin hands it the file text, the environment pairs and the flag overrides, and gets
//! back a validated [`Config`] or a [`ConfigError`] listing every problem found.
//!
//! - [`schema`]: the section structs and their defaults.
//! - [`load`](load()): layering defaults < file (TOML, JSON or YAML) < `CENTRIFUGO_*` and
//!   `GYRE_*` environment < flags.
//! - [`validate`]: rules no single field can check (history needs size and TTL, unique
//!   namespaces, Redis URLs, ping vs pong, …).
//! - [`channel`]: channel name → options, on every subscribe, without allocating.
//! - [`genconfig()`]: a commented TOML file with every option at its default.
//! - [`proxy`]: the backend hooks' sections (`client.proxy`, `channel.proxy`, `rpc`, `proxies`).
//!
//! Durations are written as in Centrifugo (`"25s"`, `"1m30s"`, `"500ms"`, `"720h"`); a whole
//! number of seconds is accepted too (see [`duration`]).

pub mod channel;
pub mod duration;
mod env;
mod error;
mod genconfig;
mod load;
pub mod proxy;
pub mod schema;
#[cfg(test)]
mod tests;
pub mod token;
pub mod validate;

use serde::{Deserialize, Serialize};

pub use self::channel::ChannelError;
pub use self::duration::{format_duration, parse_duration};
pub use self::env::{env_var_name, known_keys};
pub use self::error::{ConfigError, Origin, Problem};
pub use self::genconfig::genconfig;
pub use self::load::{ConfigFile, Format, Loaded, Warning, load};
pub use self::proxy::{
    ChannelProxies, ClientProxies, ConnectCodeToHttpResponse,
    ConnectCodeToUnidirectionalDisconnect, DEFAULT_PROXY_NAME, HttpResponseTransform, NamedProxy,
    Proxy, Rpc, RpcNamespace, RpcOptions, StatusTransform, SwitchedProxy, UniDisconnectTransform,
};
pub use self::schema::*;
pub use self::token::TokenSettings;
pub use self::validate::Invalid;

use self::channel::ChannelIndex;

/// The whole configuration. Build it with [`load`], [`Config::from_toml`] or
/// [`Config::from_json`]; those validate it. `Config::default()` is valid too.
///
/// Treat a loaded config as read-only: the channel lookup table is built on the first
/// [`Config::channel_options`] call from the namespaces present then (a clone starts afresh).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub http_server: HttpServer,
    pub log: Log,
    pub node: Node,
    pub client: Client,
    pub channel: Channel,
    pub engine: Engine,
    pub http_api: HttpApi,
    pub websocket: WebSocket,
    pub http_stream: HttpTransport,
    pub sse: HttpTransport,
    pub emulation: Emulation,
    pub uni_websocket: UniWebSocket,
    pub uni_sse: UniHttpTransport,
    pub uni_http_stream: UniHttpTransport,
    pub sockjs: SockJs,
    pub shutdown: Shutdown,
    pub health: Endpoint,
    pub prometheus: Endpoint,
    /// Client RPC calls and their proxies.
    pub rpc: Rpc,
    /// Named proxies that namespaces refer to by `*_proxy_name` (Centrifugo's granular mode).
    pub proxies: Vec<NamedProxy>,
    /// The admin web UI.
    pub admin: Admin,
    #[serde(skip)]
    index: ChannelIndex,
}

impl Config {
    /// Parses and validates a TOML config (no environment, no overrides).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Self::from_file(text, Format::Toml)
    }

    /// Parses and validates a JSON config (no environment, no overrides).
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        Self::from_file(text, Format::Json)
    }

    /// Parses and validates a YAML config (no environment, no overrides).
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        Self::from_file(text, Format::Yaml)
    }

    fn from_file(text: &str, format: Format) -> Result<Self, ConfigError> {
        let loaded = load(Some(ConfigFile { text, format }), std::iter::empty(), &[])?;
        Ok(loaded.config)
    }
}
