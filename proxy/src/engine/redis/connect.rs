//! The one place that turns settings into Redis connections: an address (a URL, `host:port`,
//! or a primary named by Sentinel) plus [`NodeOptions`] become a [`Target`], which opens RESP3
//! connections with the credentials, database and TLS applied.
//!
//! Precedence: the URL's user, password and database (path `/N`, or `?db=N` for unix sockets)
//! win over the `user`/`password`/`db` keys, field by field; the keys fill in what the URL
//! leaves out. TLS is used for `rediss://` addresses and, when `tls.enabled`, for every TCP
//! address.
//!
//! `tls.server_name`: redis-rs checks the certificate against the host it connects to. To check
//! it against another name, the target connects *to that name* and resolves the name itself to
//! the configured host's addresses (a DNS resolver of its own), so SNI and verification use the
//! configured name while the socket goes to the configured host.
//!
//! Errors name the node (password hidden) and the reason, with a hint for the usual mistakes;
//! they never carry a password or a key.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{AsyncPushSender, MultiplexedConnection};
use redis::io::AsyncDNSResolver;
use redis::{
    AsyncConnectionConfig, Client, ClientTlsConfig, ConnectionAddr, IntoConnectionInfo,
    ProtocolVersion, RedisError, RedisFuture, TlsCertificates,
};

use super::settings::{NodeOptions, TlsOptions};
use crate::engine::EngineError;

/// What a connection is for, so that hints name the right configuration keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// A node holding data (the `tls`, `user`, `password` keys).
    DataNode,
    /// A Sentinel (the `sentinel_tls`, `sentinel_user`, `sentinel_password` keys).
    Sentinel,
}

impl Role {
    fn tls_key(self) -> &'static str {
        match self {
            Role::DataNode => "engine.redis.tls",
            Role::Sentinel => "engine.redis.sentinel_tls",
        }
    }

    fn password_key(self) -> &'static str {
        match self {
            Role::DataNode => "engine.redis.password",
            Role::Sentinel => "engine.redis.sentinel_password",
        }
    }
}

/// One Redis server (or sentinel) and how to connect to it.
pub(super) struct Target {
    /// The address as configured or discovered, any password hidden: for logs and errors.
    name: String,
    /// `host:port` or the socket path: the node's identity when comparing rediscoveries.
    node: String,
    client: Client,
    /// Set when TLS checks the certificate against `tls.server_name` rather than the host.
    resolver: Option<PinnedName>,
    connect_timeout: Duration,
    io_timeout: Duration,
    role: Role,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl Target {
    /// A node from a configured address: `redis://`, `rediss://`, `unix://` / `redis+unix://`
    /// URLs, or a bare `host:port` (as `redis://host:port`).
    pub fn from_address(
        address: &str,
        options: &NodeOptions,
        role: Role,
    ) -> Result<Target, EngineError> {
        let name = redact(address);
        let url_text = if address.contains("://") {
            address.to_owned()
        } else {
            format!("redis://{address}")
        };
        let bad = |reason: String| EngineError::Unavailable(format!("redis {name}: {reason}"));
        let url = redis::parse_redis_url(&url_text)
            .ok_or_else(|| bad("not a redis://, rediss:// or unix:// URL".into()))?;
        let names_db = match url.scheme() {
            "unix" | "redis+unix" => url.query_pairs().any(|(key, _)| key == "db"),
            _ => !url.path().trim_matches('/').is_empty(),
        };
        let insecure_fragment = url.fragment() == Some("insecure");
        let info = url.into_connection_info().map_err(|e| bad(e.to_string()))?;
        let mut redis = info.redis_settings().clone();
        if redis.username().is_none()
            && let Some(user) = &options.user
        {
            redis = redis.set_username(user);
        }
        if redis.password().is_none()
            && let Some(password) = &options.password
        {
            redis = redis.set_password(password.expose());
        }
        if !names_db {
            redis = redis.set_db(i64::from(options.db));
        }
        let redis = redis.set_protocol(ProtocolVersion::RESP3);
        let info = info.set_redis_settings(redis);
        let (host, port, tls) = match info.addr() {
            ConnectionAddr::Tcp(host, port) => (host.clone(), *port, options.tls.enabled),
            ConnectionAddr::TcpTls { host, port, .. } => (host.clone(), *port, true),
            ConnectionAddr::Unix(path) => {
                if options.tls.enabled {
                    return Err(bad(format!(
                        "TLS is not available over a unix socket ({}.enabled)",
                        role.tls_key()
                    )));
                }
                let client = Client::open(info.clone()).map_err(|e| bad(e.to_string()))?;
                return Ok(Target {
                    name,
                    node: path.display().to_string(),
                    client,
                    resolver: None,
                    connect_timeout: options.connect_timeout,
                    io_timeout: options.io_timeout,
                    role,
                });
            }
            // `ConnectionAddr` is non-exhaustive; a new kind of address is not ours to guess.
            other => return Err(bad(format!("unsupported address kind {other}"))),
        };
        let node = format!("{host}:{port}");
        let (addr, resolver) = if tls {
            tls_addr(host, port, &options.tls, insecure_fragment)
        } else {
            (ConnectionAddr::Tcp(host, port), None)
        };
        let client = tls_client(info.set_addr(addr), &options.tls, tls)
            .map_err(|e| bad(format!("TLS settings ({}): {e}", role.tls_key())))?;
        Ok(Target {
            name,
            node,
            client,
            resolver,
            connect_timeout: options.connect_timeout,
            io_timeout: options.io_timeout,
            role,
        })
    }

    /// A node at `host:port` (as Sentinel reports a primary), with `options` applied.
    pub fn from_host_port(
        host: &str,
        port: u16,
        options: &NodeOptions,
        role: Role,
    ) -> Result<Target, EngineError> {
        // Through the URL form, so that one code path applies credentials and TLS.
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        Self::from_address(&format!("redis://{host}:{port}"), options, role)
    }

    /// The address for logs and errors (no password).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `host:port` or the socket path.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// A RESP3 connection whose pushes (PUB/SUB messages, the disconnection notice) go to
    /// `push`. The error says which node failed and why.
    pub async fn open_with_push(
        &self,
        push: impl AsyncPushSender,
    ) -> Result<MultiplexedConnection, String> {
        self.open_config(self.config().set_push_sender(push)).await
    }

    /// A RESP3 connection for commands.
    pub async fn open(&self) -> Result<MultiplexedConnection, String> {
        self.open_config(self.config()).await
    }

    fn config(&self) -> AsyncConnectionConfig {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.io_timeout));
        match &self.resolver {
            Some(resolver) => config.set_dns_resolver(resolver.clone()),
            None => config,
        }
    }

    async fn open_config(
        &self,
        config: AsyncConnectionConfig,
    ) -> Result<MultiplexedConnection, String> {
        crate::tls::install_crypto_provider();
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| self.describe(&e))
    }

    /// `e` as a sentence naming this node, with a hint when the cause is a usual mistake.
    pub fn describe(&self, e: &RedisError) -> String {
        let what = match self.role {
            Role::DataNode => "redis",
            Role::Sentinel => "sentinel",
        };
        let timeout = if e.is_timeout() {
            format!(" (no answer within {:?})", self.connect_timeout)
        } else {
            String::new()
        };
        match hint(e, self.role) {
            Some(hint) => format!("{what} {}: {hint}: {e}{timeout}", self.name),
            None => format!("{what} {}: {e}{timeout}", self.name),
        }
    }
}

/// The TLS address: connects to `server_name` (resolved to `host`) when one is set, so that
/// the certificate is checked against it.
fn tls_addr(
    host: String,
    port: u16,
    tls: &TlsOptions,
    insecure_fragment: bool,
) -> (ConnectionAddr, Option<PinnedName>) {
    let insecure = tls.insecure_skip_verify || insecure_fragment;
    let (connect_to, resolver) = match &tls.server_name {
        Some(name) if !insecure && *name != host => (
            name.clone(),
            Some(PinnedName {
                name: Arc::from(name.as_str()),
                host: Arc::from(host.as_str()),
            }),
        ),
        _ => (host, None),
    };
    let addr = ConnectionAddr::TcpTls {
        host: connect_to,
        port,
        insecure,
        tls_params: None,
    };
    (addr, resolver)
}

/// The client for `info`, with the CA and client certificate of `options` when `tls` is used.
fn tls_client(
    info: redis::ConnectionInfo,
    options: &TlsOptions,
    tls: bool,
) -> Result<Client, RedisError> {
    let has_material = options.ca_pem.is_some() || options.client_identity.is_some();
    if !tls || !has_material {
        return Client::open(info);
    }
    let certificates = TlsCertificates {
        client_tls: options
            .client_identity
            .as_ref()
            .map(|identity| ClientTlsConfig {
                client_cert: identity.cert_pem.clone(),
                client_key: identity.key_pem.expose().as_bytes().to_vec(),
            }),
        root_cert: options.ca_pem.clone(),
    };
    Client::build_with_tls(info, certificates)
}

/// Resolves `name` to the addresses of `host`, and any other name normally: the connection
/// goes to the configured host while TLS uses `name`.
#[derive(Clone)]
struct PinnedName {
    name: Arc<str>,
    host: Arc<str>,
}

impl AsyncDNSResolver for PinnedName {
    fn resolve<'a, 'b: 'a>(
        &'a self,
        host: &'b str,
        port: u16,
    ) -> RedisFuture<'a, Box<dyn Iterator<Item = SocketAddr> + Send + 'a>> {
        let lookup = if host == &*self.name {
            &*self.host
        } else {
            host
        };
        Box::pin(async move {
            let addresses: Vec<SocketAddr> =
                tokio::net::lookup_host((lookup, port)).await?.collect();
            Ok(Box::new(addresses.into_iter()) as Box<dyn Iterator<Item = SocketAddr> + Send>)
        })
    }
}

/// What to tell the operator about a failed connection, beyond redis-rs's own message.
fn hint(e: &RedisError, role: Role) -> Option<String> {
    let text = e.to_string();
    let tls = role.tls_key();
    let hint = if text.contains("UnknownIssuer") || text.contains("BadSignature") {
        format!(
            "the server's TLS certificate is not trusted: give its CA in {tls}.server_ca_pem \
             (or _file, _b64)"
        )
    } else if text.contains("not valid for name") || text.contains("NotValidForName") {
        format!(
            "the server's TLS certificate is not valid for the host gyre connects to: set \
             {tls}.server_name to a name the certificate has"
        )
    } else if text.contains("certificate expired") || text.contains("Expired") {
        "the server's TLS certificate has expired (or is not valid yet)".to_owned()
    } else if text.contains("CertificateRequired")
        || text.contains("BadCertificate")
        || text.contains("UnknownCA")
        || text.contains("CertificateUnknown")
    {
        format!(
            "the server refused gyre's TLS client certificate: it requires one signed by a CA \
             it trusts ({tls}.cert_pem and key_pem, or their _file, _b64 forms)"
        )
    } else if text.contains("corrupt message") || text.contains("InvalidContentType") {
        "the server does not speak TLS here: use redis:// without TLS, or its TLS port".to_owned()
    } else if text.contains("WRONGPASS") || text.contains("invalid password") {
        "authentication failed: wrong user or password".to_owned()
    } else if text.contains("NOAUTH") || text.contains("Authentication required") {
        format!(
            "the server requires a password: set {} (or user:password@ in the address)",
            role.password_key()
        )
    } else if text.contains("NOPERM") {
        "the user lacks a permission gyre needs".to_owned()
    } else {
        return None;
    };
    Some(hint)
}

/// `address` with the password of its user info (and a unix URL's `pass=`) replaced by `***`.
pub(super) fn redact(address: &str) -> String {
    let Some((scheme, rest)) = address.split_once("://") else {
        // `host:port`, or something without a scheme that cannot carry credentials we know of;
        // an `@` still hides what precedes it.
        return match address.rsplit_once('@') {
            Some((_, host)) => format!("***@{host}"),
            None => address.to_owned(),
        };
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => format!("{user_info}@{host}"),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some(("pass" | "password", _)) => {
                        format!("{}=***", pair.split('=').next().unwrap_or("pass"))
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::redis::settings::Secret;

    fn options() -> NodeOptions {
        NodeOptions::default()
    }

    #[test]
    fn redact_hides_passwords_only() {
        for (address, shown) in [
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            (
                "redis://alice:s3cret@host:6380/2",
                "redis://alice:***@host:6380/2",
            ),
            ("rediss://:s3cret@host", "rediss://:***@host"),
            ("redis://alice@host", "redis://alice@host"),
            (
                "unix:///run/r.sock?db=1&pass=s3cret",
                "unix:///run/r.sock?db=1&pass=***",
            ),
            ("host:6379", "host:6379"),
            ("user:pw@host:6379", "***@host:6379"),
        ] {
            assert_eq!(redact(address), shown, "{address}");
        }
    }

    fn settings_of(target: &Target) -> redis::RedisConnectionInfo {
        target.client.get_connection_info().redis_settings().clone()
    }

    #[test]
    fn url_credentials_and_db_win_field_by_field() {
        let keys = NodeOptions {
            user: Some("key-user".into()),
            password: Some(Secret::new("key-password")),
            db: 3,
            ..options()
        };
        let target =
            Target::from_address("redis://url-user:url-pw@h:1/5", &keys, Role::DataNode).unwrap();
        let s = settings_of(&target);
        assert_eq!(
            (s.username(), s.password(), s.db()),
            (Some("url-user"), Some("url-pw"), 5)
        );
        assert_eq!(target.name(), "redis://url-user:***@h:1/5");
        assert_eq!(target.node(), "h:1");

        let target = Target::from_address("redis://alice@h:1", &keys, Role::DataNode).unwrap();
        let s = settings_of(&target);
        assert_eq!(
            (s.username(), s.password(), s.db()),
            (Some("alice"), Some("key-password"), 3)
        );

        let target = Target::from_address("h:7000", &keys, Role::DataNode).unwrap();
        let s = settings_of(&target);
        assert_eq!((s.username(), s.db()), (Some("key-user"), 3));
        assert_eq!(s.protocol(), ProtocolVersion::RESP3);

        let target = Target::from_address("unix:///r.sock?db=2", &keys, Role::DataNode).unwrap();
        assert_eq!(settings_of(&target).db(), 2);
        assert_eq!(target.node(), "/r.sock");
    }

    #[test]
    fn tls_by_scheme_or_by_key() {
        let plain = Target::from_address("redis://h:1", &options(), Role::DataNode).unwrap();
        assert!(matches!(
            plain.client.get_connection_info().addr(),
            ConnectionAddr::Tcp(..)
        ));
        let by_scheme = Target::from_address("rediss://h:1", &options(), Role::DataNode).unwrap();
        assert!(matches!(
            by_scheme.client.get_connection_info().addr(),
            ConnectionAddr::TcpTls {
                insecure: false,
                ..
            }
        ));
        let tls_on = NodeOptions {
            tls: TlsOptions {
                enabled: true,
                insecure_skip_verify: true,
                ..TlsOptions::default()
            },
            ..options()
        };
        let by_key = Target::from_address("redis://h:1", &tls_on, Role::DataNode).unwrap();
        assert!(matches!(
            by_key.client.get_connection_info().addr(),
            ConnectionAddr::TcpTls { insecure: true, .. }
        ));
        let err = Target::from_address("unix:///r.sock", &tls_on, Role::DataNode).unwrap_err();
        assert!(err.to_string().contains("unix socket"), "{err}");
    }

    #[test]
    fn server_name_is_connected_to_and_resolved_to_the_host() {
        let named = NodeOptions {
            tls: TlsOptions {
                enabled: true,
                server_name: Some("redis.internal".into()),
                ..TlsOptions::default()
            },
            ..options()
        };
        let target =
            Target::from_address("redis://127.0.0.1:6390", &named, Role::DataNode).expect("target");
        match target.client.get_connection_info().addr() {
            ConnectionAddr::TcpTls { host, port, .. } => {
                assert_eq!((host.as_str(), *port), ("redis.internal", 6390));
            }
            other => panic!("not TLS: {other:?}"),
        }
        let resolver = target.resolver.as_ref().expect("a pinned name");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let resolved: Vec<SocketAddr> = runtime
            .block_on(resolver.resolve("redis.internal", 6390))
            .unwrap()
            .collect();
        assert_eq!(resolved, ["127.0.0.1:6390".parse().unwrap()]);
        // The node is still the configured one.
        assert_eq!(target.node(), "127.0.0.1:6390");
    }

    #[test]
    fn bad_pem_names_the_tls_key() {
        let broken = NodeOptions {
            tls: TlsOptions {
                enabled: true,
                ca_pem: Some(
                    b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n"
                        .to_vec(),
                ),
                ..TlsOptions::default()
            },
            ..options()
        };
        let err = Target::from_address("redis://h:1", &broken, Role::Sentinel).unwrap_err();
        assert!(
            err.to_string().contains("engine.redis.sentinel_tls"),
            "{err}"
        );
    }
}
