//! Whether a channel's slot is stable on this node, asked only by a command that misses one of the
//! keys it needs (see [`crate::core::migration`] for the rule).
//!
//! Redis 7.0's module API says nothing about slots (who owns one, whether it is importing or
//! migrating), and `CLUSTER NODES`, which shows the `[slot-<-node]` / `[slot->-node]` marks, costs
//! about 45 µs per call on a six-node cluster (INFO commandstats, Redis 7.0.15), some thirty times
//! the check below and three times a whole publish. Instead the module runs
//! `EXISTS` on the channel's keys through `RM_Call`: in cluster mode `RM_Call` applies Redis's own
//! cluster check to the command it runs, with the calling client's `ASKING` and `READONLY` flags,
//! and refuses it (`EPERM`) when Redis would redirect it. With two or more distinct keys of which
//! one is missing, that check passes exactly when the slot is stable on this node:
//!
//! | this node | Redis's answer to `EXISTS k1 k2 …` (a key missing) | here |
//! |---|---|---|
//! | owns the slot, no migration | served | stable: the missing keys do not exist |
//! | owns the slot, `MIGRATING` | `-ASK` (the key may be on the target) | refused |
//! | `IMPORTING`, client sent `ASKING` | `-TRYAGAIN` (multi-key, a key missing) | refused |
//! | replica of the owner, `READONLY` read | served | stable (what the replica has) |
//!
//! The call costs 1.5 to 2 µs; a command pays it only when one of its keys is missing and the node
//! cannot tell locally that no migration is involved (see [`crate::core::migration`]).

use std::os::raw::c_char;

use redis_module::{Context, RedisString, raw};

use crate::store::string;

/// `RM_Call("EXISTS", keys)`: whether Redis would run a command on these keys here. `keys` are
/// at least two distinct names of one slot, one of them missing on this node.
pub fn slot_is_stable(ctx: &Context, keys: &[&[u8]]) -> bool {
    debug_assert!(
        keys.len() >= 2,
        "one key would pass the check while importing"
    );
    let strings: Vec<RedisString> = keys.iter().map(|k| string(ctx, k)).collect();
    let mut argv: Vec<*mut raw::RedisModuleString> = strings.iter().map(|s| s.inner).collect();
    // SAFETY: format "v" takes an array of strings and its length; the strings outlive the call.
    // The reply, if any, is freed below.
    let reply = unsafe {
        raw::RedisModule_Call.unwrap()(
            ctx.ctx,
            c"EXISTS".as_ptr(),
            c"v".as_ptr() as *const c_char,
            argv.as_mut_ptr(),
            argv.len(),
        )
    };
    if reply.is_null() {
        // EPERM: Redis would redirect (ASK, TRYAGAIN, MOVED); anything else (cluster down) is
        // no reason to write either.
        return false;
    }
    // SAFETY: a reply returned by RM_Call, freed once.
    unsafe { raw::RedisModule_FreeCallReply.unwrap()(reply) };
    true
}

/// Whether a key with exactly this name exists (`RM_KeyExists`, which leaves its access time
/// alone). For a channel name: whether Redis's cluster check finds the command's declared key.
pub fn key_exists(ctx: &Context, name: &[u8]) -> bool {
    let name = string(ctx, name);
    // SAFETY: a valid context and string for the duration of the call.
    unsafe { raw::RedisModule_KeyExists.unwrap()(ctx.ctx, name.inner) != 0 }
}
