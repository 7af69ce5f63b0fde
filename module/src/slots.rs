//! Slots that may be taking part in a migration into this node (see [`crate::core::migration`]):
//! a slot is marked when one of its keys arrives by `RESTORE` (`MIGRATE` runs it on the target),
//! and cleared once Redis said the slot is stable on this node. Every slot starts marked when the
//! module loads, and is marked again when the node's replication role changes: the node may then
//! hold keys of a migration it did not see arrive (loaded from a file mid-migration, or
//! replicated). A marked slot only costs the next command that misses a key one question to Redis.
//!
//! Everything here runs on Redis's main thread; the atomics only make the static safe to declare.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::core::migration::{SLOTS, key_slot};

const WORDS: usize = SLOTS as usize / 64;

static MARKS: [AtomicU64; WORDS] = [const { AtomicU64::new(u64::MAX) }; WORDS];

fn word_and_bit(slot: u16) -> (&'static AtomicU64, u64) {
    let slot = usize::from(slot % SLOTS);
    (&MARKS[slot / 64], 1 << (slot % 64))
}

/// A key arrived by `RESTORE`: its slot may be importing.
pub fn note_restore(key: &[u8]) {
    let (word, bit) = word_and_bit(key_slot(key));
    word.fetch_or(bit, Ordering::Relaxed);
}

/// Marks every slot (module load, role change).
pub fn mark_all() {
    for word in &MARKS {
        word.store(u64::MAX, Ordering::Relaxed);
    }
}

/// Redis said `slot` is stable on this node.
pub fn clear(slot: u16) {
    let (word, bit) = word_and_bit(slot);
    word.fetch_and(!bit, Ordering::Relaxed);
}

/// Whether `slot` received keys by `RESTORE` (or the node started or changed role) since it was
/// last seen stable.
pub fn is_marked(slot: u16) -> bool {
    let (word, bit) = word_and_bit(slot);
    word.load(Ordering::Relaxed) & bit != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_start_set_and_follow_restores_and_checks() {
        // One test, since the marks are one static.
        assert!(is_marked(0) && is_marked(16383), "every slot starts marked");
        clear(14206);
        assert!(!is_marked(14206));
        assert!(is_marked(14205) && is_marked(14207), "only that slot");
        note_restore(b"gyre.stream.{chat:a}");
        assert!(is_marked(14206), "a key of the slot arrived");
        clear(14206);
        clear(3300);
        mark_all();
        assert!(is_marked(14206) && is_marked(3300));
    }
}
