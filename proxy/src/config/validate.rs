//! Rules a value can break even though it parsed: they involve several keys, or a format that
//! no type expresses (namespace names, Redis URLs). [`Config::validate`] checks them all and
//! reports every broken one.

use std::collections::HashSet;
use std::time::Duration;

use base64::Engine as _;

use super::duration::format_duration;
use super::error::{ConfigError, Problem};
use super::{
    ChannelOptions, Config, DEFAULT_PROXY_NAME, EngineType, Proxy, RedisEngine, TlsConfig,
    TokenSettings,
};

/// One broken rule; `path` is the key to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("`{path}` is set but history_ttl is 0: history needs both size and TTL")]
    HistorySizeWithoutTtl { path: String },
    #[error("`{path}` is set but history_size is 0: history needs both size and TTL")]
    HistoryTtlWithoutSize { path: String },
    #[error(
        "`{path}` ({}) is longer than the history meta TTL ({}): the stream position would \
         expire before the publications",
        format_duration(*.ttl),
        format_duration(*.meta_ttl)
    )]
    HistoryTtlAboveMetaTtl {
        path: String,
        ttl: Duration,
        meta_ttl: Duration,
    },
    #[error("`{path}` needs history in the same options (history_size and history_ttl)")]
    NeedsHistory { path: String },
    #[error("`{path}` ({}) has a fraction of a second; Redis keeps whole seconds", format_duration(*.value))]
    SubSecond { path: String, value: Duration },
    #[error("`{path}` must be greater than 0")]
    Zero { path: String },
    #[error("`{path}` = {value}: {reason}")]
    OutOfRange {
        path: String,
        value: u64,
        reason: &'static str,
    },
    #[error("namespace name `{name}` at `{path}` must be at least 2 of a-z A-Z 0-9 - _ .")]
    BadNamespaceName { path: String, name: String },
    #[error("namespace `{name}` at `{path}` is defined twice")]
    DuplicateNamespace { path: String, name: String },
    #[error("`engine.redis.address` is empty but engine.type is redis")]
    NoRedisAddress,
    #[error("`{path}` = `{address}`: {reason}")]
    BadRedisAddress {
        path: String,
        address: String,
        reason: &'static str,
    },
    #[error("`{first}` and `{second}` cannot be used together: {reason}")]
    Conflict {
        first: String,
        second: String,
        reason: &'static str,
    },
    #[error("`{path}` needs `{required}`: {reason}")]
    Requires {
        path: String,
        required: String,
        reason: &'static str,
    },
    #[error(
        "`{path}` is set but no connection uses TLS: set `{tls}.enabled = true`{}",
        if *.sentinel { " or use rediss:// sentinel addresses" } else { " or use rediss:// addresses" }
    )]
    TlsUnused {
        path: String,
        tls: &'static str,
        sentinel: bool,
    },
    #[error("`{path}`: {reason}")]
    BadPem { path: String, reason: String },
    #[error("`engine.redis.prefix` = `{prefix}`: use 1 to 64 of letters, digits, _ - . :")]
    BadRedisPrefix { prefix: String },
    #[error(
        "`client.pong_timeout` ({}) must be shorter than `client.ping_interval` ({})",
        format_duration(*.pong),
        format_duration(*.ping)
    )]
    PongNotBelowPing { ping: Duration, pong: Duration },
    #[error(
        "`engine.redis.presence_ttl` ({}) must be longer than `client.presence_update_interval` \
         ({}), or presence entries expire between refreshes",
        format_duration(*.ttl),
        format_duration(*.interval)
    )]
    PresenceTtlNotAboveUpdate { ttl: Duration, interval: Duration },
    #[error("`{path}` = `{claim}`: a claim name is letters and _ only")]
    BadUserIdClaim { path: String, claim: String },
    #[error("`{path}` = `{url}`: must be an http:// or https:// URL")]
    BadJwksEndpoint { path: String, url: String },
    #[error(
        "`{path}`: {{{{{name}}}}} is not a named group of issuer_regex or audience_regex, \
         which fill the endpoint's placeholders"
    )]
    JwksTemplate { path: String, name: String },
    #[error(
        "`{path}`: {{{{{name}}}}} comes from a group of `{regex}` that matches open-ended values, \
         so a token's issuer would choose where keys are fetched from: list the values \
         (a|b|c), or set `{skip}`"
    )]
    UnsafeJwksTemplate {
        path: String,
        name: String,
        regex: String,
        skip: String,
    },
    #[error("`{path}` is not a valid regular expression: {reason}")]
    BadRegex { path: String, reason: String },
    #[error("`{path}` = `{endpoint}`: {reason}")]
    BadProxyEndpoint {
        path: String,
        endpoint: String,
        reason: &'static str,
    },
    #[error("`{path}` is true but `{endpoint_path}` is empty")]
    ProxyWithoutEndpoint { path: String, endpoint_path: String },
    #[error("`{path}` = `{name}`: no such proxy ({reason})")]
    UnknownProxy {
        path: String,
        name: String,
        reason: &'static str,
    },
    #[error(
        "proxy name `{name}` at `{path}` must be at least 2 of a-z A-Z 0-9 - _ . and not `default`"
    )]
    BadProxyName { path: String, name: String },
    #[error("proxy `{name}` at `{path}` is defined twice")]
    DuplicateProxy { path: String, name: String },
    #[error("`{path}`: {reason}")]
    BadText { path: String, reason: &'static str },
    #[error("`{path}`: {what} is not supported by Gyre")]
    Unsupported { path: String, what: &'static str },
    #[error("`{path}` = `{value}`: unknown delta type (the only one is \"fossil\")")]
    UnknownDeltaType { path: String, value: String },
    #[error("`{path}` = `{value}`: unknown recovery mode (\"stream\" or \"cache\")")]
    UnknownRecoveryMode { path: String, value: String },
}

impl Config {
    /// Checks every rule; `Err` lists all that are broken.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut out = Vec::new();
        self.validate_channels(&mut out);
        self.validate_engine(&mut out);
        self.validate_client(&mut out);
        self.validate_http_api(&mut out);
        self.validate_proxies(&mut out);
        self.validate_http_server(&mut out);
        if out.is_empty() {
            Ok(())
        } else {
            Err(ConfigError {
                problems: out.into_iter().map(Problem::Invalid).collect(),
            })
        }
    }

    fn validate_channels(&self, out: &mut Vec<Invalid>) {
        let global_meta_ttl = self.channel.history_meta_ttl;
        whole_seconds("channel.history_meta_ttl", global_meta_ttl, out);
        channel_options(
            "channel.without_namespace",
            &self.channel.without_namespace,
            global_meta_ttl,
            out,
        );
        let mut seen = HashSet::new();
        for (i, ns) in self.channel.namespaces.iter().enumerate() {
            let path = format!("channel.namespaces[{i}]");
            if !valid_namespace_name(&ns.name) {
                out.push(Invalid::BadNamespaceName {
                    path: format!("{path}.name"),
                    name: ns.name.clone(),
                });
            } else if !seen.insert(ns.name.as_str()) {
                out.push(Invalid::DuplicateNamespace {
                    path: format!("{path}.name"),
                    name: ns.name.clone(),
                });
            }
            channel_options(&path, &ns.options(), global_meta_ttl, out);
        }
    }

    fn validate_engine(&self, out: &mut Vec<Invalid>) {
        let redis = &self.engine.redis;
        validate_redis_topology(self.engine.kind, redis, out);
        // The module's rule for `gyre.prefix`: both sides must agree on it anyway.
        let prefix_ok = (1..=64).contains(&redis.prefix.len())
            && redis
                .prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b));
        if !prefix_ok {
            out.push(Invalid::BadRedisPrefix {
                prefix: redis.prefix.clone(),
            });
        }
        // The module stores presence TTLs in whole seconds, at least one.
        positive("engine.redis.presence_ttl", redis.presence_ttl, out);
        whole_seconds("engine.redis.presence_ttl", redis.presence_ttl, out);
        positive("engine.redis.connect_timeout", redis.connect_timeout, out);
        positive("engine.redis.io_timeout", redis.io_timeout, out);
        let interval = self.client.presence_update_interval;
        if !interval.is_zero() && redis.presence_ttl <= interval {
            out.push(Invalid::PresenceTtlNotAboveUpdate {
                ttl: redis.presence_ttl,
                interval,
            });
        }
    }

    fn validate_client(&self, out: &mut Vec<Invalid>) {
        let client = &self.client;
        positive("client.ping_interval", client.ping_interval, out);
        positive(
            "client.presence_update_interval",
            client.presence_update_interval,
            out,
        );
        positive("websocket.write_timeout", self.websocket.write_timeout, out);
        if self.emulation.max_concurrent_forwards == 0 {
            out.push(Invalid::Zero {
                path: "emulation.max_concurrent_forwards".into(),
            });
        }
        if !(1..=9).contains(&self.websocket.compression_level) {
            out.push(Invalid::OutOfRange {
                path: "websocket.compression_level".into(),
                value: u64::from(self.websocket.compression_level),
                reason: "use 1 (fastest) to 9",
            });
        }
        if !client.ping_interval.is_zero() && client.pong_timeout >= client.ping_interval {
            out.push(Invalid::PongNotBelowPing {
                ping: client.ping_interval,
                pong: client.pong_timeout,
            });
        }
        let (rate, alias) = (client.handshake_rate_limit, client.connection_rate_limit);
        if rate != 0 && alias != 0 && rate != alias {
            out.push(Invalid::Conflict {
                first: "client.handshake_rate_limit".into(),
                second: "client.connection_rate_limit".into(),
                reason: "they are two names of one limit and disagree; keep one",
            });
        }
        token("client.token", &client.token, out);
        token(
            "client.subscription_token",
            &client.subscription_token.token,
            out,
        );
    }

    fn validate_http_api(&self, out: &mut Vec<Invalid>) {
        // Unlike other limits, 0 does not mean "no limit": the cap keeps a batch's memory bounded.
        if self.http_api.batch_max_commands == 0 {
            out.push(Invalid::Zero {
                path: "http_api.batch_max_commands".into(),
            });
        }
    }
}

impl Config {
    /// The ports, the path prefixes, the server's TLS and the admin UI's login.
    fn validate_http_server(&self, out: &mut Vec<Invalid>) {
        let server = &self.http_server;
        if server.internal_port != 0
            && server.internal_port == server.port
            && server.internal_address == server.address
        {
            out.push(Invalid::Conflict {
                first: "http_server.internal_port".into(),
                second: "http_server.port".into(),
                reason: "the internal port must be another port than the public one",
            });
        }
        for (path, prefix) in [
            ("http_server.handler_prefix", &server.handler_prefix),
            ("admin.handler_prefix", &self.admin.handler_prefix),
            ("websocket.handler_prefix", &self.websocket.handler_prefix),
            (
                "http_stream.handler_prefix",
                &self.http_stream.handler_prefix,
            ),
            ("sse.handler_prefix", &self.sse.handler_prefix),
            ("emulation.handler_prefix", &self.emulation.handler_prefix),
            (
                "uni_websocket.handler_prefix",
                &self.uni_websocket.handler_prefix,
            ),
            ("uni_sse.handler_prefix", &self.uni_sse.handler_prefix),
            (
                "uni_http_stream.handler_prefix",
                &self.uni_http_stream.handler_prefix,
            ),
            ("http_api.handler_prefix", &self.http_api.handler_prefix),
            ("health.handler_prefix", &self.health.handler_prefix),
            ("prometheus.handler_prefix", &self.prometheus.handler_prefix),
        ] {
            if !prefix.is_empty() && (!prefix.starts_with('/') || prefix.ends_with('/')) {
                out.push(Invalid::BadText {
                    path: path.into(),
                    reason: "a path prefix starts with / and does not end with one, e.g. \"/realtime\"",
                });
            }
        }
        for (path, tls) in [
            ("http_server.tls", &server.tls),
            ("http_server.internal_tls", &server.internal_tls),
        ] {
            tls_keys(path, tls, out);
            let missing = |keys: [&str; 3]| keys.iter().all(|k| k.is_empty());
            // One without the other is already reported by `tls_keys`.
            if tls.enabled
                && missing([&tls.cert_pem, &tls.cert_pem_file, &tls.cert_pem_b64])
                && missing([&tls.key_pem, &tls.key_pem_file, &tls.key_pem_b64])
            {
                out.push(Invalid::Requires {
                    path: format!("{path}.enabled"),
                    required: format!("{path}.cert_pem and key_pem"),
                    reason: "a TLS server shows its certificate and proves it holds the key",
                });
            }
        }
        let admin = &self.admin;
        if admin.enabled && !admin.insecure {
            for (path, value) in [
                ("admin.password", &admin.password),
                ("admin.secret", &admin.secret),
            ] {
                if value.is_empty() {
                    out.push(Invalid::Requires {
                        path: "admin.enabled".into(),
                        required: path.into(),
                        reason: "the UI logs operators in with the password and signs their \
                                 sessions with the secret (or set admin.insecure = true behind \
                                 a firewall)",
                    });
                }
            }
        }
    }
}

const ADDRESS: &str = "engine.redis.address";
const CLUSTER_ADDRESS: &str = "engine.redis.cluster_address";
const SENTINEL_ADDRESS: &str = "engine.redis.sentinel_address";

/// The addresses of every topology, which one is in use, and what contradicts it.
fn validate_redis_topology(kind: EngineType, redis: &RedisEngine, out: &mut Vec<Invalid>) {
    let cluster = !redis.cluster_address.is_empty();
    let sentinel = !redis.sentinel_address.is_empty();
    let custom_address = redis.address != RedisEngine::default_address();
    let conflict = |first: &str, second: &str, reason| Invalid::Conflict {
        first: first.to_owned(),
        second: second.to_owned(),
        reason,
    };
    if cluster && sentinel {
        out.push(conflict(
            CLUSTER_ADDRESS,
            SENTINEL_ADDRESS,
            "a Redis Cluster fails over by itself, without sentinels; configure one of them",
        ));
    }
    if custom_address && cluster {
        out.push(conflict(
            ADDRESS,
            CLUSTER_ADDRESS,
            "address lists standalone servers, cluster_address the seeds of clusters; keep one",
        ));
    }
    if custom_address && sentinel {
        out.push(conflict(
            ADDRESS,
            SENTINEL_ADDRESS,
            "with sentinels the primary's address comes from them; remove address",
        ));
    }
    if cluster && redis.db != 0 {
        out.push(conflict(
            "engine.redis.db",
            CLUSTER_ADDRESS,
            "Redis Cluster only has database 0",
        ));
    }
    let standalone = !cluster && !sentinel;
    if kind == EngineType::Redis && standalone && redis.address.is_empty() {
        out.push(Invalid::NoRedisAddress);
    }
    for (i, address) in redis.address.iter().enumerate() {
        if let Err(reason) = check_redis_url(address) {
            out.push(Invalid::BadRedisAddress {
                path: format!("{ADDRESS}[{i}]"),
                address: address.clone(),
                reason,
            });
        } else if standalone && redis.tls.enabled && is_unix_url(address) {
            out.push(conflict(
                "engine.redis.tls.enabled",
                &format!("{ADDRESS}[{i}]"),
                "TLS is not available over a unix socket",
            ));
        }
    }
    for (i, cluster) in redis.cluster_address.iter().enumerate() {
        let path = format!("{CLUSTER_ADDRESS}[{i}]");
        if cluster.split(',').all(|seed| seed.trim().is_empty()) {
            out.push(Invalid::BadRedisAddress {
                path,
                address: cluster.clone(),
                reason: "empty: list seed nodes of the cluster, comma-separated",
            });
            continue;
        }
        for seed in cluster.split(',').map(str::trim) {
            let checked = check_node_address(seed).and_then(|()| {
                if url_names_db(seed) {
                    Err("Redis Cluster only has database 0: remove the /db")
                } else {
                    Ok(())
                }
            });
            if let Err(reason) = checked {
                out.push(Invalid::BadRedisAddress {
                    path: path.clone(),
                    address: seed.to_owned(),
                    reason,
                });
            }
        }
    }
    for (i, address) in redis.sentinel_address.iter().enumerate() {
        let checked = check_node_address(address).and_then(|()| {
            if url_names_db(address) {
                Err("a sentinel has no database: remove the /db (db applies to the primary)")
            } else {
                Ok(())
            }
        });
        if let Err(reason) = checked {
            out.push(Invalid::BadRedisAddress {
                path: format!("{SENTINEL_ADDRESS}[{i}]"),
                address: address.clone(),
                reason,
            });
        }
    }
    if sentinel && redis.sentinel_master_name.is_empty() {
        out.push(Invalid::Requires {
            path: SENTINEL_ADDRESS.into(),
            required: "engine.redis.sentinel_master_name".into(),
            reason: "the name the sentinels monitor (their `sentinel monitor <name> …` line)",
        });
    }
    if !sentinel {
        let sentinel_only = [
            (
                "engine.redis.sentinel_master_name",
                !redis.sentinel_master_name.is_empty(),
            ),
            (
                "engine.redis.sentinel_user",
                !redis.sentinel_user.is_empty(),
            ),
            (
                "engine.redis.sentinel_password",
                !redis.sentinel_password.is_empty(),
            ),
            (
                "engine.redis.sentinel_tls",
                redis.sentinel_tls.enabled || redis.sentinel_tls.has_settings(),
            ),
        ];
        for (path, set) in sentinel_only {
            if set {
                out.push(Invalid::Requires {
                    path: path.into(),
                    required: SENTINEL_ADDRESS.into(),
                    reason: "it only applies to sentinels",
                });
            }
        }
    }
    tls_keys("engine.redis.tls", &redis.tls, out);
    tls_keys("engine.redis.sentinel_tls", &redis.sentinel_tls, out);
    // TLS material nobody uses is a forgotten `enabled` more often than not.
    let data_addresses: &[String] = if cluster {
        &redis.cluster_address
    } else if sentinel {
        &[] // The sentinels name the primaries by host and port: only `enabled` turns TLS on.
    } else {
        &redis.address
    };
    let any_rediss = |addresses: &[String]| {
        addresses
            .iter()
            .flat_map(|a| a.split(','))
            .any(|a| a.trim().starts_with("rediss://"))
    };
    if redis.tls.has_settings() && !redis.tls.enabled && !any_rediss(data_addresses) {
        out.push(Invalid::TlsUnused {
            path: first_tls_key("engine.redis.tls", &redis.tls),
            tls: "engine.redis.tls",
            sentinel: false,
        });
    }
    if sentinel
        && redis.sentinel_tls.has_settings()
        && !redis.sentinel_tls.enabled
        && !any_rediss(&redis.sentinel_address)
    {
        out.push(Invalid::TlsUnused {
            path: first_tls_key("engine.redis.sentinel_tls", &redis.sentinel_tls),
            tls: "engine.redis.sentinel_tls",
            sentinel: true,
        });
    }
}

/// The PEM keys of a TLS table: `(name, [inline, file, base64])`.
fn pem_sources(tls: &TlsConfig) -> [(&'static str, [&str; 3]); 3] {
    [
        (
            "server_ca_pem",
            [
                &tls.server_ca_pem,
                &tls.server_ca_pem_file,
                &tls.server_ca_pem_b64,
            ],
        ),
        (
            "cert_pem",
            [&tls.cert_pem, &tls.cert_pem_file, &tls.cert_pem_b64],
        ),
        (
            "key_pem",
            [&tls.key_pem, &tls.key_pem_file, &tls.key_pem_b64],
        ),
    ]
}

/// Each PEM from at most one source, `_b64` keys that decode to PEM, a certificate with its
/// key.
fn tls_keys(path: &str, tls: &TlsConfig, out: &mut Vec<Invalid>) {
    let mut given = [false; 3];
    for (slot, (name, [inline, file, b64])) in pem_sources(tls).into_iter().enumerate() {
        let keys = [
            name.to_owned(),
            format!("{name}_file"),
            format!("{name}_b64"),
        ];
        let set: Vec<&String> = [inline, file, b64]
            .iter()
            .zip(&keys)
            .filter(|(value, _)| !value.is_empty())
            .map(|(_, key)| key)
            .collect();
        given[slot] = !set.is_empty();
        if let [first, second, ..] = set.as_slice() {
            out.push(Invalid::Conflict {
                first: format!("{path}.{first}"),
                second: format!("{path}.{second}"),
                reason: "give each PEM once: inline, as a file, or as base64",
            });
        }
        // The plain key may also hold base64 or a file path (Centrifugo v6): resolved, and
        // checked, at start.
        if !b64.is_empty() {
            let compact: String = b64.split_whitespace().collect();
            match base64::engine::general_purpose::STANDARD.decode(compact) {
                Err(e) => out.push(Invalid::BadPem {
                    path: format!("{path}.{name}_b64"),
                    reason: format!("not valid base64 ({e})"),
                }),
                Ok(pem) if !String::from_utf8_lossy(&pem).contains("-----BEGIN ") => {
                    out.push(Invalid::BadPem {
                        path: format!("{path}.{name}_b64"),
                        reason: "does not decode to PEM text (no -----BEGIN line)".into(),
                    });
                }
                Ok(_) => {}
            }
        }
    }
    let [_, cert, key] = given;
    if cert != key {
        let (path_set, missing) = if cert {
            ("cert_pem", "key_pem")
        } else {
            ("key_pem", "cert_pem")
        };
        out.push(Invalid::Requires {
            path: format!("{path}.{path_set}"),
            required: format!("{path}.{missing}"),
            reason: "a client certificate and its private key go together (inline, _file or _b64)",
        });
    }
}

/// The first key set in a TLS table, for a message about the table.
fn first_tls_key(path: &str, tls: &TlsConfig) -> String {
    let named = [
        ("server_ca_pem", !tls.server_ca_pem.is_empty()),
        ("server_ca_pem_file", !tls.server_ca_pem_file.is_empty()),
        ("server_ca_pem_b64", !tls.server_ca_pem_b64.is_empty()),
        ("cert_pem", !tls.cert_pem.is_empty()),
        ("cert_pem_file", !tls.cert_pem_file.is_empty()),
        ("cert_pem_b64", !tls.cert_pem_b64.is_empty()),
        ("key_pem", !tls.key_pem.is_empty()),
        ("key_pem_file", !tls.key_pem_file.is_empty()),
        ("key_pem_b64", !tls.key_pem_b64.is_empty()),
        ("client_ca_pem", !tls.client_ca_pem.is_empty()),
        ("client_ca_pem_file", !tls.client_ca_pem_file.is_empty()),
        ("client_ca_pem_b64", !tls.client_ca_pem_b64.is_empty()),
        ("server_name", !tls.server_name.is_empty()),
        ("insecure_skip_verify", tls.insecure_skip_verify),
    ];
    let name = named
        .iter()
        .find(|(_, set)| *set)
        .map_or("enabled", |(name, _)| name);
    format!("{path}.{name}")
}

impl Config {
    fn validate_proxies(&self, out: &mut Vec<Invalid>) {
        let client = &self.client.proxy;
        for (name, switched) in [("connect", &client.connect), ("refresh", &client.refresh)] {
            let path = format!("client.proxy.{name}");
            if switched.enabled && !switched.proxy.is_configured() {
                out.push(Invalid::ProxyWithoutEndpoint {
                    path: format!("{path}.enabled"),
                    endpoint_path: format!("{path}.endpoint"),
                });
            }
            proxy(&path, &switched.proxy, out);
        }
        let channel = &self.channel.proxy;
        for (name, p) in [
            ("subscribe", &channel.subscribe),
            ("publish", &channel.publish),
            ("sub_refresh", &channel.sub_refresh),
            ("subscribe_stream", &channel.subscribe_stream),
            ("cache_empty", &channel.cache_empty),
            ("state", &channel.state),
        ] {
            proxy(&format!("channel.proxy.{name}"), p, out);
        }
        proxy("rpc.proxy", &self.rpc.proxy, out);
        let mut seen = HashSet::new();
        for (i, named) in self.proxies.iter().enumerate() {
            let path = format!("proxies[{i}]");
            if !valid_namespace_name(&named.name) || named.name == DEFAULT_PROXY_NAME {
                out.push(Invalid::BadProxyName {
                    path: format!("{path}.name"),
                    name: named.name.clone(),
                });
            } else if !seen.insert(named.name.as_str()) {
                out.push(Invalid::DuplicateProxy {
                    path: format!("{path}.name"),
                    name: named.name.clone(),
                });
            }
            if !named.proxy.is_configured() {
                out.push(Invalid::BadProxyEndpoint {
                    path: format!("{path}.endpoint"),
                    endpoint: String::new(),
                    reason: "a named proxy needs an endpoint",
                });
            }
            proxy(&path, &named.proxy, out);
        }
        let namespaces = std::iter::once((
            "channel.without_namespace".to_owned(),
            self.channel.without_namespace.clone(),
        ))
        .chain(
            self.channel
                .namespaces
                .iter()
                .enumerate()
                .map(|(i, ns)| (format!("channel.namespaces[{i}]"), ns.options())),
        );
        for (path, options) in namespaces {
            for (enabled, name, key, default) in [
                (
                    options.subscribe_proxy_enabled,
                    &options.subscribe_proxy_name,
                    "subscribe_proxy_name",
                    &channel.subscribe,
                ),
                (
                    options.publish_proxy_enabled,
                    &options.publish_proxy_name,
                    "publish_proxy_name",
                    &channel.publish,
                ),
                (
                    options.sub_refresh_proxy_enabled,
                    &options.sub_refresh_proxy_name,
                    "sub_refresh_proxy_name",
                    &channel.sub_refresh,
                ),
            ] {
                if enabled {
                    self.proxy_reference(&format!("{path}.{key}"), name, default, out);
                }
            }
            if options.subscribe_stream_proxy_enabled {
                out.push(Invalid::Unsupported {
                    path: format!("{path}.subscribe_stream_proxy_enabled"),
                    what: "a subscription stream proxy",
                });
            }
        }
        self.validate_connect_code_transforms(out);
        let rpc = &self.rpc;
        if rpc.namespace_boundary.is_empty() {
            out.push(Invalid::Zero {
                path: "rpc.namespace_boundary".into(),
            });
        }
        if rpc.ping.enabled && rpc.ping.method.is_empty() {
            out.push(Invalid::Zero {
                path: "rpc.ping.method".into(),
            });
        }
        if rpc.without_namespace.proxy_enabled {
            self.proxy_reference(
                "rpc.without_namespace.proxy_name",
                &rpc.without_namespace.proxy_name,
                &rpc.proxy,
                out,
            );
        }
        let mut seen = HashSet::new();
        for (i, ns) in rpc.namespaces.iter().enumerate() {
            let path = format!("rpc.namespaces[{i}]");
            if !valid_namespace_name(&ns.name) {
                out.push(Invalid::BadNamespaceName {
                    path: format!("{path}.name"),
                    name: ns.name.clone(),
                });
            } else if !seen.insert(ns.name.as_str()) {
                out.push(Invalid::DuplicateNamespace {
                    path: format!("{path}.name"),
                    name: ns.name.clone(),
                });
            }
            if ns.options.proxy_enabled {
                self.proxy_reference(
                    &format!("{path}.proxy_name"),
                    &ns.options.proxy_name,
                    &rpc.proxy,
                    out,
                );
            }
        }
    }

    /// `client.connect_code_to_unidirectional_disconnect` and the `connect_code_to_http_response`
    /// of `uni_sse` and `uni_http_stream`: every transform names a code and what it becomes.
    fn validate_connect_code_transforms(&self, out: &mut Vec<Invalid>) {
        let uni = &self.client.connect_code_to_unidirectional_disconnect;
        for (i, transform) in uni.transforms.iter().enumerate() {
            let path = format!("client.connect_code_to_unidirectional_disconnect.transforms[{i}]");
            if transform.code == 0 {
                out.push(Invalid::Zero {
                    path: format!("{path}.code"),
                });
            }
            let to = &transform.to;
            if !(3000..=4999).contains(&to.code) {
                out.push(Invalid::OutOfRange {
                    path: format!("{path}.to.code"),
                    value: u64::from(to.code),
                    reason: "a disconnect code is 3000-4999",
                });
            }
            if !to.reason.is_ascii() || to.reason.len() > 123 {
                out.push(Invalid::BadText {
                    path: format!("{path}.to.reason"),
                    reason: "a disconnect reason is ASCII, at most 123 bytes",
                });
            }
        }
        for (name, transport) in [
            ("uni_sse", &self.uni_sse),
            ("uni_http_stream", &self.uni_http_stream),
        ] {
            let transforms = &transport.connect_code_to_http_response.transforms;
            for (i, transform) in transforms.iter().enumerate() {
                let path = format!("{name}.connect_code_to_http_response.transforms[{i}]");
                if transform.code == 0 {
                    out.push(Invalid::Zero {
                        path: format!("{path}.code"),
                    });
                }
                let status = transform.to.status_code;
                if !(200..=599).contains(&status) {
                    out.push(Invalid::OutOfRange {
                        path: format!("{path}.to.status_code"),
                        value: u64::from(status),
                        reason: "an HTTP status of a final answer is 200-599",
                    });
                }
            }
        }
    }

    /// A `*_proxy_name` of an enabled proxy must name one that exists: `default` the section's
    /// own (which then needs an endpoint), anything else an entry of `proxies`.
    fn proxy_reference(&self, path: &str, name: &str, default: &Proxy, out: &mut Vec<Invalid>) {
        let name = ChannelOptions::proxy_name(name);
        if name == DEFAULT_PROXY_NAME {
            if !default.is_configured() {
                out.push(Invalid::UnknownProxy {
                    path: path.to_owned(),
                    name: name.to_owned(),
                    reason: "the section's default proxy has no endpoint",
                });
            }
        } else if !self.proxies.iter().any(|p| p.name == name) {
            out.push(Invalid::UnknownProxy {
                path: path.to_owned(),
                name: name.to_owned(),
                reason: "not in `proxies`",
            });
        }
    }
}

/// One proxy object: its endpoint (when set), timeout, limits and unsupported options.
fn proxy(path: &str, proxy: &Proxy, out: &mut Vec<Invalid>) {
    if proxy.is_configured()
        && let Err(reason) = check_proxy_endpoint(&proxy.endpoint)
    {
        out.push(Invalid::BadProxyEndpoint {
            path: format!("{path}.endpoint"),
            endpoint: proxy.endpoint.clone(),
            reason,
        });
    }
    positive(&format!("{path}.timeout"), proxy.timeout, out);
    if proxy.max_concurrent_requests == 0 {
        out.push(Invalid::Zero {
            path: format!("{path}.max_concurrent_requests"),
        });
    }
    tls_keys(&format!("{path}.http.tls"), &proxy.http.tls, out);
    tls_keys(&format!("{path}.grpc.tls"), &proxy.grpc.tls, out);
    for (i, transform) in proxy.http.status_to_code_transforms.iter().enumerate() {
        let has_error = transform.to_error.code != 0;
        let has_disconnect = transform.to_disconnect.code != 0;
        if has_error == has_disconnect || !(100..=599).contains(&transform.status_code) {
            out.push(Invalid::BadProxyEndpoint {
                path: format!("{path}.http.status_to_code_transforms[{i}]"),
                endpoint: transform.status_code.to_string(),
                reason: "needs an HTTP status (100-599) and exactly one of to_error.code and \
                         to_disconnect.code",
            });
        }
    }
}

/// `http://host[:port][/path]`, `https://…` or `grpc://host:port`.
fn check_proxy_endpoint(endpoint: &str) -> Result<(), &'static str> {
    let Some((scheme, rest)) = endpoint.split_once("://") else {
        return Err("not a URL: write http://host:port/path, https://… or grpc://host:port");
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    match scheme {
        "http" | "https" => {}
        "grpc" => {
            if rest.len() != authority.len() && rest != format!("{authority}/") {
                return Err("a grpc:// endpoint is host:port only, without a path");
            }
        }
        _ => return Err("unsupported scheme: use http://, https:// or grpc://"),
    }
    if authority.is_empty() || authority.starts_with(':') {
        return Err("missing host");
    }
    Ok(())
}

fn channel_options(
    path: &str,
    options: &ChannelOptions,
    global_meta_ttl: Duration,
    out: &mut Vec<Invalid>,
) {
    let key = |name: &str| format!("{path}.{name}");
    whole_seconds(&key("history_ttl"), options.history_ttl, out);
    whole_seconds(&key("history_meta_ttl"), options.history_meta_ttl, out);
    match (options.history_size > 0, !options.history_ttl.is_zero()) {
        (true, false) => out.push(Invalid::HistorySizeWithoutTtl {
            path: key("history_size"),
        }),
        (false, true) => out.push(Invalid::HistoryTtlWithoutSize {
            path: key("history_ttl"),
        }),
        _ => {}
    }
    let meta_ttl = if options.history_meta_ttl.is_zero() {
        global_meta_ttl
    } else {
        options.history_meta_ttl
    };
    // 0 = the stream position never expires, so any history TTL fits under it.
    if !meta_ttl.is_zero() && options.history_ttl > meta_ttl {
        out.push(Invalid::HistoryTtlAboveMetaTtl {
            path: key("history_ttl"),
            ttl: options.history_ttl,
            meta_ttl,
        });
    }
    // Recovery and positioning read the history stream; without one they can only fail.
    if !options.has_history() {
        for (set, name) in [
            (options.force_recovery, "force_recovery"),
            (options.allow_recovery, "allow_recovery"),
            (options.force_positioning, "force_positioning"),
            (options.allow_positioning, "allow_positioning"),
        ] {
            if set {
                out.push(Invalid::NeedsHistory { path: key(name) });
            }
        }
    }
    for (i, value) in options.allowed_delta_types.iter().enumerate() {
        if value != "fossil" {
            out.push(Invalid::UnknownDeltaType {
                path: key(&format!("allowed_delta_types[{i}]")),
                value: value.clone(),
            });
        }
    }
    if !matches!(
        options.force_recovery_mode.as_str(),
        "" | "stream" | "cache"
    ) {
        out.push(Invalid::UnknownRecoveryMode {
            path: key("force_recovery_mode"),
            value: options.force_recovery_mode.clone(),
        });
    }
}

fn token(path: &str, token: &TokenSettings, out: &mut Vec<Invalid>) {
    let claim = &token.user_id_claim;
    if !claim.is_empty() && !claim.bytes().all(|b| b.is_ascii_alphabetic() || b == b'_') {
        out.push(Invalid::BadUserIdClaim {
            path: format!("{path}.user_id_claim"),
            claim: claim.clone(),
        });
    }
    let url = &token.jwks_public_endpoint;
    let is_http = url.starts_with("http://") || url.starts_with("https://");
    if !url.is_empty() && !is_http {
        out.push(Invalid::BadJwksEndpoint {
            path: format!("{path}.jwks_public_endpoint"),
            url: url.clone(),
        });
    } else {
        let groups: Vec<String> = [&token.issuer_regex, &token.audience_regex]
            .into_iter()
            .filter_map(|pattern| regex::Regex::new(pattern).ok())
            .flat_map(|re| {
                let names: Vec<String> = re.capture_names().flatten().map(str::to_owned).collect();
                names
            })
            .collect();
        for name in super::token::jwks_placeholders(url) {
            if !groups.iter().any(|g| g == name) {
                out.push(Invalid::JwksTemplate {
                    path: format!("{path}.jwks_public_endpoint"),
                    name: name.to_owned(),
                });
            }
        }
        if !token.insecure_skip_jwks_endpoint_safety_check {
            for (name, regex) in token.unsafe_jwks_placeholders() {
                out.push(Invalid::UnsafeJwksTemplate {
                    path: format!("{path}.jwks_public_endpoint"),
                    name: name.to_owned(),
                    regex: format!("{path}.{regex}"),
                    skip: format!("{path}.insecure_skip_jwks_endpoint_safety_check"),
                });
            }
        }
    }
    if !token.hmac_previous_secret_key.is_empty() && token.hmac_secret_key.is_empty() {
        out.push(Invalid::Requires {
            path: format!("{path}.hmac_previous_secret_key"),
            required: format!("{path}.hmac_secret_key"),
            reason: "the previous secret is only tried after the current one",
        });
    }
    for (exact, pattern, name) in [
        (&token.audience, &token.audience_regex, "audience"),
        (&token.issuer, &token.issuer_regex, "issuer"),
    ] {
        if pattern.is_empty() {
            continue;
        }
        if !exact.is_empty() {
            out.push(Invalid::Conflict {
                first: format!("{path}.{name}"),
                second: format!("{path}.{name}_regex"),
                reason: "set the exact value or the regular expression, not both",
            });
        }
        if let Err(e) = regex::Regex::new(pattern) {
            out.push(Invalid::BadRegex {
                path: format!("{path}.{name}_regex"),
                reason: e.to_string(),
            });
        }
    }
}

fn whole_seconds(path: &str, value: Duration, out: &mut Vec<Invalid>) {
    if value.subsec_nanos() != 0 {
        out.push(Invalid::SubSecond {
            path: path.to_owned(),
            value,
        });
    }
}

fn positive(path: &str, value: Duration, out: &mut Vec<Invalid>) {
    if value.is_zero() {
        out.push(Invalid::Zero {
            path: path.to_owned(),
        });
    }
}

/// Centrifugo v6's rule, `^[-a-zA-Z0-9_.]{2,}$`. (Its docs omit the `.`, its code allows it;
/// accepting it lets every config Centrifugo accepts load here.)
fn valid_namespace_name(name: &str) -> bool {
    name.len() >= 2
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Accepts `redis://[user:pass@]host[:port][/db][?…]`, the same with `rediss://`, and
/// `unix:///path` (or `redis+unix:///path`). Plain `host:port` is refused with a hint rather
/// than guessed at.
fn check_redis_url(url: &str) -> Result<(), &'static str> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("not a URL: write redis://host:port, rediss://host:port or unix:///path");
    };
    match scheme {
        "redis" | "rediss" => {}
        "unix" | "redis+unix" => {
            let path = rest.split('?').next().unwrap_or("");
            return if path.starts_with('/') && path.len() > 1 {
                Ok(())
            } else {
                Err("a unix socket URL needs an absolute path: unix:///path/to/redis.sock")
            };
        }
        _ => return Err("unsupported scheme: use redis://, rediss:// or unix://"),
    }
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (authority, db) = rest.split_once('/').unwrap_or((rest, ""));
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or("unclosed [ in the host")?;
        (host, after.strip_prefix(':'))
    } else {
        match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return Err("missing host");
    }
    if let Some(port) = port {
        match port.parse::<u16>() {
            Ok(p) if p > 0 => {}
            _ => return Err("the port must be a number from 1 to 65535"),
        }
    }
    if !db.is_empty() && db.parse::<u32>().is_err() {
        return Err("the path must be a database number (redis://host:6379/0)");
    }
    Ok(())
}

fn is_unix_url(url: &str) -> bool {
    url.starts_with("unix://") || url.starts_with("redis+unix://")
}

/// Whether a `redis(s)://` URL has a `/db` path.
fn url_names_db(address: &str) -> bool {
    let Some((_, rest)) = address.split_once("://") else {
        return false;
    };
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    rest.split_once('/').is_some_and(|(_, db)| !db.is_empty())
}

/// A sentinel or cluster seed: `host:port` (`[v6]:port`), or a `redis://` / `rediss://` URL.
fn check_node_address(address: &str) -> Result<(), &'static str> {
    if address.contains("://") {
        check_redis_url(address)?;
        return if is_unix_url(address) {
            Err("use host:port or a redis:// or rediss:// URL here, not a unix socket")
        } else {
            Ok(())
        };
    }
    let (host, port) = if let Some(v6) = address.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or("unclosed [ in the host")?;
        (host, after.strip_prefix(':'))
    } else {
        match address.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (address, None),
        }
    };
    if host.is_empty() || host.contains(['/', '@', ' ']) {
        return Err("write host:port, redis://host:port or rediss://host:port");
    }
    match port.map(str::parse::<u16>) {
        Some(Ok(p)) if p > 0 => Ok(()),
        None => Err("the port is missing: write host:port"),
        _ => Err("the port must be a number from 1 to 65535"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_urls() {
        for ok in [
            "redis://127.0.0.1:6379",
            "redis://localhost",
            "redis://user:secret@redis.internal:6380/2",
            "redis://:secret@host:1/0?protocol=resp3",
            "rediss://[::1]:6379",
            "unix:///var/run/redis.sock",
            "redis+unix:///tmp/r.sock?db=1",
        ] {
            assert_eq!(check_redis_url(ok), Ok(()), "{ok}");
        }
        for bad in [
            "127.0.0.1:6379",
            "http://host:6379",
            "redis://",
            "redis://host:0",
            "redis://host:99999",
            "redis://host:port",
            "redis://host:6379/db",
            "redis://[::1:6379",
            "unix://",
            "unix://relative.sock",
        ] {
            assert!(check_redis_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn node_addresses() {
        for ok in [
            "127.0.0.1:26379",
            "sentinel.internal:26379",
            "[::1]:7000",
            "redis://h:7000",
            "rediss://user:pw@h:7000",
        ] {
            assert_eq!(check_node_address(ok), Ok(()), "{ok}");
        }
        for bad in [
            "h",
            "h:",
            ":7000",
            "h:0",
            "[::1:7000",
            "unix:///r.sock",
            "http://h:1",
        ] {
            assert!(check_node_address(bad).is_err(), "{bad}");
        }
        assert!(url_names_db("redis://h:1/2"));
        assert!(!url_names_db("redis://h:1/"));
        assert!(!url_names_db("h:1"));
    }

    #[test]
    fn proxy_endpoints() {
        for ok in [
            "http://127.0.0.1:3000/centrifugo/connect",
            "https://backend.example.com/hooks",
            "grpc://127.0.0.1:9000",
            "grpc://backend:9000/",
        ] {
            assert_eq!(check_proxy_endpoint(ok), Ok(()), "{ok}");
        }
        for bad in [
            "127.0.0.1:3000",
            "ftp://host/x",
            "grpc://host:9000/path",
            "http://",
            "http://:80/x",
        ] {
            assert!(check_proxy_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn namespace_names() {
        for ok in ["ab", "chat", "a-b_c.d", "42"] {
            assert!(valid_namespace_name(ok), "{ok}");
        }
        for bad in ["", "a", "a:b", "a b", "ünï", "$x"] {
            assert!(!valid_namespace_name(bad), "{bad}");
        }
    }
}
