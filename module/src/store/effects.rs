//! What a low-level write owes the rest of Redis: replication of a concrete command, the keyspace
//! event the equivalent command would fire, and PUB/SUB delivery.
//!
//! Everything one module command replicates ends up in one MULTI/EXEC, so a command that writes
//! through [`super::key::Key`] must replicate only through here, never mix in `RM_Call` with `!`.

use std::ffi::CStr;
use std::os::raw::c_int;

use redis_module::raw::{self, NotifyEvent};
use redis_module::{Context, RedisString};

/// Where a replicated command goes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Replicas and the AOF: every data change.
    Everywhere,
    /// Replicas only: PUB/SUB messages, as Redis's own PUBLISH does, so that subscribers on
    /// replicas receive them while an AOF load does not replay old messages.
    ReplicasOnly,
}

/// Replicates `command args…` as is: every argument must already be concrete (explicit ids,
/// absolute times), because replicas and AOF loads run it without the module's logic.
pub fn replicate(ctx: &Context, target: Target, command: &CStr, args: &[&RedisString]) {
    // The module replicates at most a handful of arguments at a time; keep them off the heap.
    let mut stack = [std::ptr::null_mut::<raw::RedisModuleString>(); 8];
    let mut heap = Vec::new();
    let argv: &mut [*mut raw::RedisModuleString] = if args.len() <= stack.len() {
        for (slot, arg) in stack.iter_mut().zip(args) {
            *slot = arg.inner;
        }
        &mut stack[..args.len()]
    } else {
        heap.extend(args.iter().map(|a| a.inner));
        &mut heap
    };
    let format = match target {
        Target::Everywhere => c"v",
        Target::ReplicasOnly => c"vA",
    };
    // SAFETY: `v` takes an array of strings and its length; the strings outlive the call
    // (Redis takes its own references).
    unsafe {
        raw::RedisModule_Replicate.unwrap()(
            ctx.ctx,
            command.as_ptr(),
            format.as_ptr(),
            argv.as_mut_ptr(),
            argv.len(),
        );
    }
}

/// Fires the keyspace event the equivalent Redis command fires.
pub fn notify(ctx: &Context, class: NotifyEvent, event: &CStr, key: &RedisString) {
    // SAFETY: valid context, NUL-terminated event name and key string.
    unsafe {
        raw::RedisModule_NotifyKeyspaceEvent.unwrap()(
            ctx.ctx,
            class.bits() as c_int,
            event.as_ptr(),
            key.inner,
        );
    }
}

/// Delivers a message to this node's subscribers, and in cluster mode over the cluster bus (to
/// every node, or to the shard's nodes when `sharded`). Nothing reaches replicas in standalone
/// mode; see [`publish`].
fn publish_local(ctx: &Context, sharded: bool, channel: &RedisString, message: &RedisString) {
    // SAFETY: valid context and strings; RedisModule_PublishMessageShard exists since 7.0.
    unsafe {
        let f = if sharded {
            raw::RedisModule_PublishMessageShard.unwrap()
        } else {
            raw::RedisModule_PublishMessage.unwrap()
        };
        f(ctx.ctx, channel.inner, message.inner);
    }
}

/// Publishes like a client's `PUBLISH`/`SPUBLISH` would: local delivery plus, in cluster mode,
/// the cluster bus; in standalone mode the command is replicated (replicas only) so that
/// subscribers of replicas get the message too.
pub fn publish(
    ctx: &Context,
    cluster: bool,
    sharded: bool,
    channel: &RedisString,
    message: &RedisString,
) {
    publish_local(ctx, sharded, channel, message);
    if !cluster {
        let command = if sharded { c"SPUBLISH" } else { c"PUBLISH" };
        replicate(ctx, Target::ReplicasOnly, command, &[channel, message]);
    }
}
