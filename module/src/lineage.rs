//! This node's current lineage (see [`crate::core::lineage`]) and the events that change it.
//!
//! - The module's load starts a lineage: a process start, whose data came from an RDB or AOF file
//!   (or nothing), or a `MODULE LOAD` into a running server.
//! - Every replication role change starts one (`REPLICAOF NO ONE`, a Sentinel or Cluster failover,
//!   `FAILOVER`, and the demotion of a primary): Redis fires the role-changed server event inside
//!   the same call that switches the role, so no command runs between the switch and the renewal.
//! - A stream meta hash that arrives by `RESTORE` (slot migration) stamped with the current lineage
//!   is remembered here until its next write, because the stamp alone would claim a history that
//!   the copy may not have (it may come back from a node that lost a write of its own).
//!
//! Commands read the lineage once per call; everything here runs on Redis's main thread, the
//! atomics and the lock only keep the statics safe to declare.

use std::collections::BTreeSet;
use std::ffi::CStr;
use std::os::raw::{c_char, c_int};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use redis_module::server_events::{ROLE_CHANGED_SERVER_EVENTS_LIST, ServerRole};
use redis_module::{Context, ContextFlags, NotifyEvent, RedisString, Status, raw};

use crate::config::Settings;
use crate::core::keys::is_meta_key;
use crate::core::lineage::Lineage;
use crate::store::key::Key;
use crate::store::string;

static CURRENT: AtomicU64 = AtomicU64::new(0);

/// Meta keys that arrived by `RESTORE` with the current lineage's stamp and were not written
/// since. Normally empty: only a migration round trip fills it.
static ARRIVED: Mutex<BTreeSet<Vec<u8>>> = Mutex::new(BTreeSet::new());
/// `ARRIVED` is not empty (so that the hot path skips the lock).
static ANY_ARRIVED: AtomicBool = AtomicBool::new(false);

/// The lineage commands compare meta hashes against.
pub fn current() -> Lineage {
    Lineage::from_raw(CURRENT.load(Ordering::Relaxed))
}

/// Starts a new lineage and logs it with the reason.
pub fn renew(ctx: &Context, reason: &str) {
    let lineage = Lineage::fresh();
    CURRENT.store(lineage.bits(), Ordering::Relaxed);
    forget_arrivals();
    ctx.log_notice(&format!(
        "lineage {lineage} ({reason}); channels written under an earlier lineage get a new epoch at their next write"
    ));
}

/// Whether the meta key arrived by migration since this lineage last wrote it.
pub fn arrived(meta_key: &[u8]) -> bool {
    ANY_ARRIVED.load(Ordering::Relaxed) && arrivals().contains(meta_key)
}

/// The meta key was just stamped with the current lineage.
pub fn settled(meta_key: &[u8]) {
    if ANY_ARRIVED.load(Ordering::Relaxed) {
        let mut set = arrivals();
        set.remove(meta_key);
        ANY_ARRIVED.store(!set.is_empty(), Ordering::Relaxed);
    }
}

fn forget_arrivals() {
    arrivals().clear();
    ANY_ARRIVED.store(false, Ordering::Relaxed);
}

fn arrivals() -> std::sync::MutexGuard<'static, BTreeSet<Vec<u8>>> {
    // A poisoned lock only means a panic elsewhere; the set itself is always consistent.
    ARRIVED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Registered in redis-module's list of role-changed handlers.
#[linkme::distributed_slice(ROLE_CHANGED_SERVER_EVENTS_LIST)]
fn on_role_changed(ctx: &Context, role: ServerRole) {
    crate::edge::shield(
        || (),
        || {
            let reason = match role {
                ServerRole::Primary => "promoted to primary",
                ServerRole::Replica => "became a replica",
            };
            renew(ctx, reason);
            crate::slots::mark_all();
        },
    );
}

/// Subscribes to generic keyspace events, to see `RESTORE` (slot migration) of meta hashes.
/// Raw, so that the callback sees the event name as bytes and nothing can panic before the guard.
pub fn subscribe(ctx: &Context) -> Status {
    // SAFETY: a valid context during load; the callback matches RedisModuleNotificationFunc.
    let status = unsafe {
        raw::RedisModule_SubscribeToKeyspaceEvents.unwrap()(
            ctx.ctx,
            NotifyEvent::GENERIC.bits(),
            Some(on_generic_event),
        )
    };
    if status == raw::Status::Ok as c_int {
        Status::Ok
    } else {
        ctx.log_warning("could not subscribe to keyspace events");
        Status::Err
    }
}

/// Every generic event of the server (`del`, `expire`, `restore` …) passes here; only `restore`
/// is looked at: it marks the key's slot ([`crate::slots`]) and notes the arrival of a meta hash.
extern "C" fn on_generic_event(
    ctx: *mut raw::RedisModuleCtx,
    _class: c_int,
    event: *const c_char,
    key: *mut raw::RedisModuleString,
) -> c_int {
    // SAFETY: Redis passes a NUL-terminated event name.
    if event.is_null() || unsafe { CStr::from_ptr(event) }.to_bytes() != b"restore" {
        return 0;
    }
    crate::edge::shield(
        || (),
        || {
            let ctx = Context::new(ctx);
            let key = RedisString::string_as_slice(key);
            crate::slots::note_restore(key);
            note_restore(&ctx, key);
        },
    );
    0
}

fn note_restore(ctx: &Context, key: &[u8]) {
    let settings = Settings::current();
    if !is_meta_key(settings.prefix.as_str(), key) {
        return;
    }
    // A replica never writes; its next lineage (at promotion) rotates everything anyway.
    if !ctx.get_flags().contains(ContextFlags::MASTER) {
        return;
    }
    let meta = Key::read(ctx, &string(ctx, key));
    let (l, _) = meta.hash_get_pair(c"l", c"e");
    if current().wrote(l.as_ref().map(|v| v.as_slice())) {
        arrivals().insert(key.to_vec());
        ANY_ARRIVED.store(true, Ordering::Relaxed);
    }
}
