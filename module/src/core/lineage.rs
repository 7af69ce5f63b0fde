//! Lineages: which run of a primary last wrote a channel's stream meta, and what that means for the
//! channel's epoch (docs/module.md, "When an epoch changes").
//!
//! A lineage is one uninterrupted run of one node as a primary. A node starts a new one when the
//! module loads (a process start: the data came from an RDB or AOF file, or there is none) and
//! whenever its replication role changes (promotion, demotion). Every meta write stamps the
//! writer's lineage into the meta hash (field `l`). A primary knows it holds every write acknowledged
//! under its own lineage, because it made them; anything stamped with another lineage reached it by
//! replication, by loading a file, or by migration, and may lack the writer's last acknowledged
//! writes. Such a channel keeps its offsets but continues under a new epoch, derived from the old
//! epoch and the current lineage, so that a read (`GYRE.HISTORY`) can report the epoch the next
//! write will store without writing anything.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::epoch::epoch_from_seed;

/// Length of a lineage's text form (`l` in the meta hash): 16 lowercase hex digits.
pub const LINEAGE_LEN: usize = 16;

/// One run of a primary. Never zero, so that zero can stand for "not set yet".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lineage(u64);

/// Makes successive fresh lineages differ even when the clock has not moved.
static COUNTER: AtomicU64 = AtomicU64::new(0);

impl Lineage {
    /// A new lineage, unique with overwhelming probability (64 random-looking bits from the clock,
    /// the process id, a counter and a stack address).
    pub fn fresh() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        let local = 0u8;
        let address = &local as *const u8 as u64;
        let pid = u64::from(std::process::id());
        Self::from_seed(nanos ^ count.rotate_left(40) ^ pid.rotate_left(20) ^ address)
    }

    /// The lineage a seed produces (deterministic, for tests).
    pub fn from_seed(seed: u64) -> Self {
        let mut state = seed;
        Self::from_raw(mix(&mut state))
    }

    /// The lineage with these bits; zero becomes one.
    pub const fn from_raw(bits: u64) -> Self {
        Self(if bits == 0 { 1 } else { bits })
    }

    pub const fn bits(self) -> u64 {
        self.0
    }

    /// The text stored in the meta hash.
    pub fn text(self) -> [u8; LINEAGE_LEN] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; LINEAGE_LEN];
        for (i, slot) in out.iter_mut().enumerate() {
            let shift = 4 * (LINEAGE_LEN - 1 - i);
            *slot = HEX[((self.0 >> shift) & 0xf) as usize];
        }
        out
    }

    /// Whether a meta's `l` field names this lineage. A missing field (a meta written before
    /// lineages existed, or by a Centrifugo node) names none.
    pub fn wrote(self, stored: Option<&[u8]>) -> bool {
        stored == Some(&self.text()[..])
    }
}

impl std::fmt::Display for Lineage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Only hex digits: always UTF-8.
        f.write_str(std::str::from_utf8(&self.text()).unwrap_or("?"))
    }
}

/// What the next write on a primary does to a channel's epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EpochStep {
    /// Written under this primary's lineage and not brought in since: the epoch stays.
    Keep(String),
    /// Written under another lineage (or brought in by migration): the channel continues under
    /// this epoch, derived from the old one and the current lineage.
    Rotate(String),
    /// The meta holds no epoch: a fresh random one is created.
    Create,
}

impl EpochStep {
    /// The epoch a read reports now: the one the next write stores, or `""` when that write will
    /// create a random one.
    pub fn reported(&self) -> &str {
        match self {
            EpochStep::Keep(e) | EpochStep::Rotate(e) => e,
            EpochStep::Create => "",
        }
    }
}

/// The rule. `stored_epoch` and `stored_lineage` are the meta's `e` and `l`; `here` is this
/// primary's lineage; `arrived` says the meta came in by migration (`RESTORE`) since this lineage
/// last wrote it.
pub fn next_epoch(
    stored_epoch: Option<String>,
    stored_lineage: Option<&[u8]>,
    here: Lineage,
    arrived: bool,
) -> EpochStep {
    match stored_epoch {
        None => EpochStep::Create,
        Some(epoch) if !arrived && here.wrote(stored_lineage) => EpochStep::Keep(epoch),
        Some(epoch) => EpochStep::Rotate(rotated_epoch(&epoch, here)),
    }
}

/// The epoch that follows `old` under lineage `here`: deterministic, so that every read on the
/// same primary reports the epoch its next write stores, and never equal to `old`.
pub fn rotated_epoch(old: &str, here: Lineage) -> String {
    // FNV-1a over the old epoch, then mixed with the lineage.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in old.as_bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut seed = hash ^ here.bits().rotate_left(29);
    loop {
        let epoch = epoch_from_seed(mix(&mut seed));
        if epoch != old {
            return epoch;
        }
    }
}

/// splitmix64 step.
fn mix(state: &mut u64) -> u64 {
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

    const HERE: Lineage = Lineage::from_raw(0x0123_4567_89ab_cdef);

    #[test]
    fn text_is_sixteen_hex_digits() {
        assert_eq!(&HERE.text(), b"0123456789abcdef");
        assert_eq!(HERE.to_string(), "0123456789abcdef");
        assert_eq!(&Lineage::from_raw(0).text(), b"0000000000000001");
        assert_eq!(Lineage::from_raw(0).bits(), 1);
    }

    #[test]
    fn fresh_lineages_differ() {
        let set: HashSet<u64> = (0..1000).map(|_| Lineage::fresh().bits()).collect();
        assert_eq!(set.len(), 1000);
        assert!(!set.contains(&0));
    }

    #[test]
    fn only_its_own_text_names_a_lineage() {
        assert!(HERE.wrote(Some(b"0123456789abcdef")));
        assert!(!HERE.wrote(None));
        assert!(!HERE.wrote(Some(b"")));
        assert!(!HERE.wrote(Some(b"0123456789ABCDEF")));
        assert!(!HERE.wrote(Some(b"0123456789abcdef ")));
        assert!(!HERE.wrote(Some(&Lineage::from_raw(7).text())));
    }

    #[test]
    fn own_lineage_keeps_the_epoch() {
        let step = next_epoch(Some("Epoch".into()), Some(&HERE.text()), HERE, false);
        assert_eq!(step, EpochStep::Keep("Epoch".into()));
        assert_eq!(step.reported(), "Epoch");
    }

    #[test]
    fn another_or_no_lineage_rotates() {
        let other = Lineage::from_raw(42);
        for stored in [Some(&other.text()[..]), None, Some(&b"garbage"[..])] {
            let step = next_epoch(Some("Epoch".into()), stored, HERE, false);
            let EpochStep::Rotate(new) = &step else {
                panic!("{stored:?} should rotate, got {step:?}")
            };
            assert_ne!(new, "Epoch");
            assert_eq!(new.len(), 8);
            assert_eq!(step.reported(), new);
        }
    }

    #[test]
    fn arrival_by_migration_rotates_even_under_the_own_lineage() {
        let step = next_epoch(Some("Epoch".into()), Some(&HERE.text()), HERE, true);
        assert!(matches!(step, EpochStep::Rotate(_)), "{step:?}");
    }

    #[test]
    fn no_epoch_creates_one_whatever_the_lineage() {
        for stored in [Some(&HERE.text()[..]), None] {
            let step = next_epoch(None, stored, HERE, false);
            assert_eq!(step, EpochStep::Create);
            assert_eq!(step.reported(), "");
        }
    }

    #[test]
    fn rotation_is_deterministic_per_epoch_and_lineage() {
        let a = rotated_epoch("Epoch", HERE);
        assert_eq!(a, rotated_epoch("Epoch", HERE), "reads and writes agree");
        assert_ne!(a, rotated_epoch("Epoch", Lineage::from_raw(2)));
        assert_ne!(a, rotated_epoch("Epocj", HERE));
        assert!(a.bytes().all(|b| b.is_ascii_alphabetic()), "{a}");
    }

    #[test]
    fn rotation_never_returns_the_old_epoch() {
        for seed in 0..2000u64 {
            let here = Lineage::from_seed(seed);
            let old = epoch_from_seed(seed.wrapping_mul(31));
            assert_ne!(rotated_epoch(&old, here), old);
        }
        // Also for epochs that are not 8 letters (hand-written meta hashes).
        assert_ne!(rotated_epoch("", HERE), "");
    }

    #[test]
    fn successive_rotations_do_not_return_to_an_earlier_epoch() {
        let mut seen = HashSet::new();
        let mut epoch = "Start000".to_string();
        seen.insert(epoch.clone());
        for seed in 0..500 {
            epoch = rotated_epoch(&epoch, Lineage::from_seed(seed));
            assert!(seen.insert(epoch.clone()), "{epoch} repeated");
        }
    }
}
