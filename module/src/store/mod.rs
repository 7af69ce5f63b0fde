//! Redis-side plumbing shared by the commands: strings, clocks, low-level keys ([`key`]), and
//! the two ways a command's writes reach replicas and the AOF:
//! - `GYRE.PUBLISH`, the hot path, writes through [`key::Key`] and replicates concrete commands
//!   itself ([`effects`]);
//! - every other write runs a Redis command through `RM_Call` with `!` ([`call_replicated`]).
//!
//! A command uses one of the two, never both, so its propagation stays one MULTI/EXEC.
//!
//! [`slot`] asks Redis whether a channel's slot is stable on this node (slot migration), with a
//! read that replicates nothing.

pub mod effects;
pub mod key;
pub mod namespace_table;
pub mod slot;

use std::mem::ManuallyDrop;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use redis_module::{CallOptionsBuilder, CallResult, Context, RedisString};

use crate::core::namespace::NamespaceOptions;
use crate::core::publish::StoredMeta;
use crate::core::{GyreError, GyreResult};
use key::Key;

/// A binary-safe string (`Context::create_string` panics on NUL bytes).
pub fn string(ctx: &Context, bytes: &[u8]) -> RedisString {
    RedisString::create_from_slice(ctx.ctx, bytes)
}

/// Unix milliseconds as Redis sees them for the current command (the time its own EXPIRE
/// family uses), falling back to the system clock.
pub fn now_ms() -> i64 {
    // SAFETY: a plain read of the server's cached clock (Redis >= 7.0).
    match unsafe { redis_module::raw::RedisModule_CachedMicroseconds } {
        Some(cached) => (unsafe { cached() }) / 1000,
        None => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64),
    }
}

/// A decimal number as a Redis string, formatted by Redis.
pub fn number(ctx: &Context, n: i64) -> RedisString {
    // SAFETY: valid context; the new string is owned by the wrapper.
    let s = unsafe { redis_module::raw::RedisModule_CreateStringFromLongLong.unwrap()(ctx.ctx, n) };
    RedisString::from_redis_module_string(ctx.ctx, s)
}

/// Runs a write command that Redis replicates to replicas and the AOF after its own rewriting
/// (`!`), with errors as replies (`E`) so they come back as values.
pub fn call_replicated(ctx: &Context, command: &str, args: &[&[u8]]) -> GyreResult<()> {
    let options = CallOptionsBuilder::new()
        .replicate()
        .errors_as_replies()
        .build();
    let result: CallResult = ctx.call_ext(command, &options, args);
    match result {
        Ok(_) => Ok(()),
        Err(e) => Err(GyreError::Redis(
            e.to_utf8_string()
                .unwrap_or_else(|| format!("ERR {command} failed")),
        )),
    }
}

/// A channel's stream meta hash (`e`, `s`, `l`) through an open key; a missing key reads as
/// empty. Also the type check of the key.
pub fn read_meta(meta: &Key) -> GyreResult<StoredMeta> {
    meta.check(redis_module::KeyType::Hash)?;
    let (e, s, l) = meta.hash_get_triple(c"e", c"s", c"l");
    StoredMeta::parse(bytes(&e), bytes(&s), bytes(&l))
}

fn bytes(value: &Option<RedisString>) -> Option<&[u8]> {
    value.as_ref().map(RedisString::as_slice)
}

/// The options registered for a namespace, if any: in the `P.namespaces` hash, or in a
/// cluster in the node's memory ([`namespace_table`]).
pub fn read_namespace(
    ctx: &Context,
    namespaces_key: &[u8],
    name: &[u8],
) -> GyreResult<Option<NamespaceOptions>> {
    if crate::config::Settings::current().cluster {
        return Ok(namespace_table::get(name));
    }
    let key = Key::read(ctx, &string(ctx, namespaces_key));
    if !key.check(redis_module::KeyType::Hash)? {
        return Ok(None);
    }
    key.hash_get(&string(ctx, name))
        .map(|v| NamespaceOptions::decode(v.as_slice()))
        .transpose()
}

/// Publishes through `RM_Call` with `!`: Redis delivers locally, sends the message over the
/// cluster bus in cluster mode, and otherwise propagates it to replicas (not to the AOF, like a
/// client's own PUBLISH), so subscribers on replicas receive it too.
pub fn publish_replicated(
    ctx: &Context,
    sharded: bool,
    channel: &[u8],
    payload: &[u8],
) -> GyreResult<()> {
    let command = if sharded { "SPUBLISH" } else { "PUBLISH" };
    call_replicated(ctx, command, &[channel, payload])
}

/// A Redis string created once and never freed, for the words the publish path replicates on
/// every call.
pub struct Constant(ManuallyDrop<RedisString>);

// SAFETY: module commands, and so every use of these strings (whose reference counts Redis
// changes while propagating), run on Redis's main thread only.
unsafe impl Send for Constant {}
unsafe impl Sync for Constant {}

impl std::ops::Deref for Constant {
    type Target = RedisString;
    fn deref(&self) -> &RedisString {
        &self.0
    }
}

/// Field and keyword strings of the stream and meta writes.
pub struct Words {
    pub d: Constant,
    pub e: Constant,
    pub s: Constant,
    /// The lineage field of the meta hash.
    pub l: Constant,
    /// The last accepted publication version and its version epoch, in the meta hash.
    pub v: Constant,
    pub ve: Constant,
    pub maxlen: Constant,
}

pub fn words() -> &'static Words {
    static WORDS: OnceLock<Words> = OnceLock::new();
    WORDS.get_or_init(|| {
        let c = |w: &[u8]| {
            Constant(ManuallyDrop::new(RedisString::create_from_slice(
                std::ptr::null_mut(),
                w,
            )))
        };
        Words {
            d: c(b"d"),
            e: c(b"e"),
            s: c(b"s"),
            l: c(b"l"),
            v: c(b"v"),
            ve: c(b"ve"),
            maxlen: c(b"MAXLEN"),
        }
    })
}
