//! What the Redis engine is given: where the data lives ([`RedisTopology`]), how to reach a node
//! ([`NodeOptions`]: credentials, database, TLS, timeouts) and how it names things. Plain data:
//! `crate::startup` builds it from `engine.redis` (reading the PEM files the config names);
//! nothing here reads files or connects.

use std::time::Duration;

/// Where the Redis engine connects and how it names things.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    pub topology: RedisTopology,
    /// How every data node is reached (for Sentinel: the primaries it names, not the sentinels).
    pub nodes: NodeOptions,
    /// Key and channel prefix; must equal the module's `gyre.prefix` (checked on connect).
    pub prefix: String,
    /// Presence TTL used when the engine is given a zero TTL.
    pub presence_ttl: Duration,
}

impl RedisSettings {
    /// Standalone servers at `addresses` (one shard each), everything else at its default.
    pub fn standalone(addresses: Vec<String>) -> Self {
        Self {
            topology: RedisTopology::Standalone { addresses },
            ..Self::default()
        }
    }
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            topology: RedisTopology::Standalone {
                addresses: vec!["redis://127.0.0.1:6379".into()],
            },
            nodes: NodeOptions::default(),
            prefix: "gyre".into(),
            presence_ttl: Duration::from_secs(60),
        }
    }
}

/// How the Redis servers are deployed. Every variant shards channels across its shards with
/// Centrifugo's function (jump hash of FNV-1a 64), so every node must list them in the same
/// order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTopology {
    /// Independent servers, one shard each: `redis://`, `rediss://` or `unix://` URLs (each
    /// may carry `user:password@` and `/db`). A TCP proxy that always forwards to the current
    /// primary (HAProxy with a role check) is one of these too.
    Standalone { addresses: Vec<String> },
    /// One shard: the primary a group of sentinels names, followed across failovers.
    Sentinel(SentinelSettings),
    /// Redis Cluster deployments, one shard each; each entry lists seed nodes of one cluster
    /// (`host:port` or URLs). Not served by the engine yet.
    Cluster { shards: Vec<Vec<String>> },
}

/// A Redis Sentinel deployment: the sentinels to ask and the master name they monitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelSettings {
    /// `host:port`, `redis://host:port` or `rediss://host:port` (TLS) of each sentinel.
    pub addresses: Vec<String>,
    /// The name in the sentinels' `sentinel monitor <name> …`.
    pub master_name: String,
    /// Credentials and TLS of the sentinels (the data nodes use [`RedisSettings::nodes`]).
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub tls: TlsOptions,
}

/// How to reach a node: credentials, database, TLS and timeouts.
///
/// Credentials and database in an address URL win over these, field by field: an address
/// `redis://alice@host` with `password` set here connects as `alice` with that password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeOptions {
    pub user: Option<String>,
    pub password: Option<Secret>,
    /// Database number, for addresses whose URL names none.
    pub db: u32,
    pub tls: TlsOptions,
    /// Limit of one connection attempt (TCP, TLS and the handshake commands).
    pub connect_timeout: Duration,
    /// Limit of one command's round trip; a connection that misses it is replaced.
    pub io_timeout: Duration,
}

impl Default for NodeOptions {
    fn default() -> Self {
        Self {
            user: None,
            password: None,
            db: 0,
            tls: TlsOptions::default(),
            connect_timeout: Duration::from_secs(1),
            io_timeout: Duration::from_secs(4),
        }
    }
}

/// TLS to a Redis server: [`crate::tls`]'s options, used when `enabled` or for a `rediss://`
/// address. The password type is shared with them.
pub use crate::tls::{ClientIdentity, Secret, TlsOptions};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets() {
        let options = NodeOptions {
            password: Some(Secret::new("hunter2")),
            tls: TlsOptions {
                client_identity: Some(ClientIdentity {
                    cert_pem: b"cert".to_vec(),
                    key_pem: Secret::new("-----BEGIN PRIVATE KEY-----"),
                }),
                ..TlsOptions::default()
            },
            ..NodeOptions::default()
        };
        let shown = format!("{options:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
    }
}
