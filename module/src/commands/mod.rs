//! One file per command family: parse the arguments (`core`), do the Redis work (`store`),
//! shape the reply. Every handler has the [`crate::edge::Handler`] signature.

use redis_module::Context;

use crate::config::Settings;
use crate::core::GyreResult;
use crate::core::migration::{after_check, check_needed, key_slot};
use crate::slots;
use crate::stats::{COUNTERS, bump};
use crate::store::slot::{key_exists, slot_is_stable};

pub mod history;
pub mod namespace;
pub mod presence;
pub mod publish;

/// The slot-migration guard of every command that touches a channel's keys (docs/module.md, "Slot
/// migration"), called after the reads and before the first write: goes on when every key the
/// command needs is on this node (`here`: one flag per key) or when the node can tell locally that
/// the missing ones do not exist ([`check_needed`]); otherwise asks Redis whether the slot is
/// stable here with the channel's `keys` (two or more distinct names, one missing) and refuses
/// with `TRYAGAIN` while the slot migrates.
pub fn require_keys_or_stable_slot(
    ctx: &Context,
    settings: &Settings,
    channel: &[u8],
    here: &[bool],
    keys: &[&[u8]],
) -> GyreResult<()> {
    let slot = || key_slot(channel);
    let might_migrate = || slots::is_marked(slot()) || key_exists(ctx, channel);
    if !check_needed(settings.cluster, here, might_migrate) {
        return Ok(());
    }
    bump(&COUNTERS.slot_checks);
    let stable = slot_is_stable(ctx, keys);
    if stable {
        slots::clear(slot());
    } else {
        bump(&COUNTERS.slot_retries);
    }
    after_check(stable, slot())
}
