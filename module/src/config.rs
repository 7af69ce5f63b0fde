//! The `gyre.*` configuration values.
//!
//! Redis owns these: it registers them as module configs (`CONFIG GET/SET gyre.*`, `redis.conf`
//! lines after `loadmodule`, `loadmodule` arguments) and calls back into the statics below, always
//! on the main thread. Commands read a [`Settings`] snapshot once per call.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use redis_module::configuration::{ConfigurationContext, ConfigurationValue};
use redis_module::{RedisError, RedisString};

use crate::core::keys::{MAX_PREFIX_LEN, PrefixError, validate_prefix};
use crate::core::publish::{Defaults, History};
use crate::edge;

/// A validated prefix, stored inline so that reading the config never allocates.
#[derive(Clone, Copy)]
pub struct PrefixText {
    len: usize,
    bytes: [u8; MAX_PREFIX_LEN],
}

impl PrefixText {
    const fn from_static(text: &'static str) -> Self {
        let mut bytes = [0; MAX_PREFIX_LEN];
        let mut i = 0;
        while i < text.len() && i < MAX_PREFIX_LEN {
            bytes[i] = text.as_bytes()[i];
            i += 1;
        }
        Self { len: i, bytes }
    }

    pub fn as_str(&self) -> &str {
        // Only validated ASCII is ever stored.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or("gyre")
    }
}

impl std::fmt::Debug for PrefixText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `gyre.prefix`, validated on every set so no key name can ever carry a hash tag or space
/// coming from the prefix.
pub struct Prefix(Mutex<PrefixText>);

impl Prefix {
    const fn new(default: &'static str) -> Self {
        Self(Mutex::new(PrefixText::from_static(default)))
    }

    fn read(&self) -> PrefixText {
        // A poisoned lock only means a panic elsewhere; the value itself is always valid.
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ConfigurationValue<RedisString> for Prefix {
    fn get(&self, _ctx: &ConfigurationContext) -> RedisString {
        RedisString::create_from_slice(std::ptr::null_mut(), self.read().as_str().as_bytes())
    }

    fn set(&self, _ctx: &ConfigurationContext, value: RedisString) -> Result<(), RedisError> {
        edge::shield(
            || Err(RedisError::Str("internal error")),
            || {
                let text = std::str::from_utf8(value.as_slice())
                    .map_err(|_| edge::prefix_error(PrefixError::BadByte(0x80)))?;
                validate_prefix(text).map_err(edge::prefix_error)?;
                let mut stored = PrefixText {
                    len: text.len(),
                    bytes: [0; MAX_PREFIX_LEN],
                };
                stored.bytes[..text.len()].copy_from_slice(text.as_bytes());
                *self.0.lock().unwrap_or_else(|e| e.into_inner()) = stored;
                Ok(())
            },
        )
    }
}

/// Every `gyre.*` config, in one place.
pub struct Config {
    pub prefix: Prefix,
    pub history_size: AtomicI64,
    pub history_ttl: AtomicI64,
    pub history_meta_ttl: AtomicI64,
    pub presence_ttl: AtomicI64,
    pub idempotency_ttl: AtomicI64,
    pub sharded_pubsub: AtomicBool,
    /// Not a config: whether the server runs with `cluster-enabled yes`, detected at load time
    /// (it cannot change without a restart).
    pub cluster: AtomicBool,
}

/// Defaults as documented; Redis overwrites them from arguments and `redis.conf` at load.
pub static CONFIG: Config = Config {
    prefix: Prefix::new("gyre"),
    history_size: AtomicI64::new(0),
    history_ttl: AtomicI64::new(0),
    history_meta_ttl: AtomicI64::new(2_592_000),
    presence_ttl: AtomicI64::new(60),
    idempotency_ttl: AtomicI64::new(300),
    sharded_pubsub: AtomicBool::new(false),
    cluster: AtomicBool::new(false),
};

/// The values one command works with.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub prefix: PrefixText,
    pub defaults: Defaults,
    pub presence_ttl: u64,
    pub idempotency_ttl: u64,
    pub sharded_pubsub: bool,
    pub cluster: bool,
}

impl Settings {
    pub fn current() -> Self {
        // The registered minimums are >= 0, so the casts never see a negative number.
        let n = |v: &AtomicI64| v.load(Ordering::Relaxed).max(0) as u64;
        Self {
            prefix: CONFIG.prefix.read(),
            defaults: Defaults {
                history: History {
                    size: n(&CONFIG.history_size),
                    ttl: n(&CONFIG.history_ttl),
                },
                meta_ttl: n(&CONFIG.history_meta_ttl),
            },
            presence_ttl: n(&CONFIG.presence_ttl),
            idempotency_ttl: n(&CONFIG.idempotency_ttl),
            sharded_pubsub: CONFIG.sharded_pubsub.load(Ordering::Relaxed),
            cluster: CONFIG.cluster.load(Ordering::Relaxed),
        }
    }
}
