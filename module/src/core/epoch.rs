//! Epochs: 8 random ASCII letters that name one life of a channel's offset sequence.
//!
//! They only need to differ between lives of the same channel, not to be secret, so a small
//! splitmix64 generator seeded from the clock, a counter and an address is enough and adds no
//! dependency.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Length of an epoch, as Centrifuge generates them.
pub const EPOCH_LEN: usize = 8;

const LETTERS: &[u8; 52] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// Makes successive calls differ even when the clock has not moved.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh epoch.
pub fn new_epoch() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let local = 0u8;
    let address = &local as *const u8 as u64;
    epoch_from_seed(nanos ^ count.rotate_left(32) ^ address.rotate_left(17))
}

/// The epoch a given seed produces (deterministic, for tests).
pub fn epoch_from_seed(seed: u64) -> String {
    let mut state = seed;
    let mut out = String::with_capacity(EPOCH_LEN);
    for _ in 0..EPOCH_LEN {
        let r = splitmix64(&mut state);
        // 52 letters; the modulo bias over 2^64 is negligible.
        out.push(LETTERS[(r % LETTERS.len() as u64) as usize] as char);
    }
    out
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn eight_ascii_letters() {
        for seed in 0..1000 {
            let e = epoch_from_seed(seed);
            assert_eq!(e.len(), EPOCH_LEN);
            assert!(e.bytes().all(|b| b.is_ascii_alphabetic()), "{e}");
        }
    }

    #[test]
    fn successive_epochs_differ() {
        let set: HashSet<String> = (0..1000).map(|_| new_epoch()).collect();
        assert_eq!(set.len(), 1000);
    }

    #[test]
    fn deterministic_per_seed() {
        assert_eq!(epoch_from_seed(42), epoch_from_seed(42));
        assert_ne!(epoch_from_seed(42), epoch_from_seed(43));
    }
}
