//! Slot migration: when a command may run on a node whose slot is moving (docs/module.md, "Slot
//! migration").
//!
//! Every GYRE command declares the channel name (argv[1]) as its key, and that name is never a
//! real key. Redis's cluster check therefore cannot see where a channel's keys are while its slot
//! migrates: the source finds the declared key missing and answers `-ASK` for every GYRE command
//! of the slot, and the target runs whatever comes with `ASKING`, holding the channel's keys or
//! not. A target that created a meta, a stream, a result or a presence key while the source still
//! held it would start the channel over (offset 1, another epoch) and make the `MIGRATE` of the
//! source's key fail with `BUSYKEY`.
//!
//! The rule: a command runs as usual when every key it needs is on this node (the common path).
//! When one is missing, it may be missing because it does not exist, or because it is on the other
//! node of a migration; the command then asks Redis whether the slot is stable here
//! ([`crate::store::slot`], 1.5 to 2 µs) and answers `-TRYAGAIN` if it is not,
//! before writing anything. Which keys a command needs is listed in docs/module.md.
//!
//! A command that finds some of the channel's keys here but not all (an idempotent publish with a
//! new key, a meta whose stream expired, one presence key without the other) skips the question
//! when the node can tell locally that no migration is involved ([`check_needed`]):
//! - a node that imports the slot holds keys of it only because they arrived by `RESTORE`
//!   (`MIGRATE` runs it on the target), so the node marks the slot of every key that arrives that
//!   way and clears the mark only once Redis said the slot is stable here (marks start set for
//!   every slot when the module loads or the role changes);
//! - a node that migrates the slot away runs a GYRE command only when a key named like the
//!   channel exists there (otherwise Redis answers `-ASK`).
//!
//! Without a mark and without such a key, the node owns the slot and no migration of it is going
//! on, so a missing key does not exist anywhere.
use super::error::{GyreError, GyreResult};
pub use gyre_proto::keys::{SLOTS, key_slot};

/// Whether a command must ask Redis about its slot before it goes on. Only in cluster mode, and
/// only when one of the keys it needs (`here`: one flag per key) is not on this node. When none of
/// them is here, it always asks; when some are, only if `might_migrate` says the slot may be
/// involved in a migration (it received keys by `RESTORE` and was not seen stable since, or a key
/// named like the channel exists on this node).
pub fn check_needed(cluster: bool, here: &[bool], might_migrate: impl FnOnce() -> bool) -> bool {
    if !cluster || here.iter().all(|&present| present) {
        return false;
    }
    if here.iter().all(|&present| !present) {
        return true;
    }
    might_migrate()
}

/// What a command does after the check: go on when the slot is stable on this node (the missing
/// keys do not exist anywhere), otherwise refuse with a retry for the channel's `slot`.
pub fn after_check(stable: bool, slot: u16) -> GyreResult<()> {
    if stable {
        Ok(())
    } else {
        Err(GyreError::SlotMigrating(slot))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::keys::ChannelKeys;

    #[test]
    fn every_key_of_a_channel_is_in_the_channels_slot() {
        for channel in ["chat:a", "a{b}c", "a{b", "{x}", "plain"] {
            let keys = ChannelKeys::new("gyre", channel.as_bytes(), true).unwrap();
            let slot = key_slot(channel.as_bytes());
            for key in [
                keys.meta(),
                keys.stream(),
                keys.result(b"k"),
                keys.presence_data(),
                keys.presence_expire(),
                keys.pubsub_channel(),
            ] {
                assert_eq!(key_slot(&key), slot, "{}", String::from_utf8_lossy(&key));
            }
        }
    }

    #[test]
    fn only_a_missing_key_in_cluster_mode_can_cost_a_check() {
        let never = || -> bool { panic!("not consulted") };
        assert!(!check_needed(false, &[false, false], never), "standalone");
        assert!(!check_needed(true, &[true, true], never), "everything here");
        assert!(
            !check_needed(true, &[], never),
            "a command that needs no key"
        );
        assert!(check_needed(true, &[false, false], never), "nothing here");
        assert!(check_needed(true, &[false], never));
    }

    #[test]
    fn some_keys_here_ask_only_when_a_migration_may_be_involved() {
        assert!(!check_needed(true, &[true, true, false], || false));
        assert!(check_needed(true, &[true, true, false], || true));
        assert!(!check_needed(true, &[true, false], || false));
        assert!(check_needed(true, &[false, true], || true));
    }

    #[test]
    fn an_unstable_slot_asks_for_a_retry() {
        assert_eq!(after_check(true, 7), Ok(()));
        assert_eq!(after_check(false, 7), Err(GyreError::SlotMigrating(7)));
    }
}
