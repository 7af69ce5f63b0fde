//! Where sessions get their randomness: client and session ids, ping jitter. A node draws from
//! the system's generator; a test hands it a seed, so that a session's behaviour can be
//! replayed exactly.

use std::time::Duration;

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub enum Entropy {
    /// The thread's cryptographically secure generator: session ids must be unguessable.
    System,
    /// A fixed sequence from a seed, for tests.
    Seeded(Box<Mutex<StdRng>>),
}

impl Entropy {
    pub fn seeded(seed: u64) -> Self {
        Self::Seeded(Box::new(Mutex::new(StdRng::seed_from_u64(seed))))
    }

    /// A random (version 4) UUID.
    pub fn uuid(&self) -> uuid::Uuid {
        let bytes: [u8; 16] = match self {
            Self::System => rand::rng().random(),
            Self::Seeded(rng) => rng.lock().random(),
        };
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }

    /// A duration between `low` and `high` (both included).
    pub fn between(&self, low: Duration, high: Duration) -> Duration {
        match self {
            Self::System => rand::rng().random_range(low..=high),
            Self::Seeded(rng) => rng.lock().random_range(low..=high),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_replays_the_same_draws_and_system_draws_differ() {
        let (a, b) = (Entropy::seeded(7), Entropy::seeded(7));
        assert_eq!(a.uuid(), b.uuid());
        let (low, high) = (Duration::from_secs(5), Duration::from_secs(10));
        let drawn = a.between(low, high);
        assert_eq!(drawn, b.between(low, high));
        assert!((low..=high).contains(&drawn));
        assert_eq!(a.uuid().get_version_num(), 4);
        assert_ne!(Entropy::System.uuid(), Entropy::System.uuid());
    }
}
