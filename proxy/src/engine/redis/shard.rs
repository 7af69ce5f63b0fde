//! Client-side sharding across independent Redis servers, as Centrifugo does
//! (`redis_shard.go consistentIndex`): a channel lives on shard
//! `jump_hash(fnv1a_64(channel), shards)`, for its history, presence and PUB/SUB alike, so every
//! `gyre` node configured with the same address list finds a channel on the same server.

use std::sync::Arc;

use super::endpoint::Endpoint;
use super::link::CommandLink;
use super::pubsub::{self, PubSub};
use super::{Namespaces, check_module, naming};
use crate::engine::{EngineError, EventSender};

/// One shard: the node its [`Endpoint`] points at (a server, a TCP proxy, or the primary
/// Sentinel names), its command connection and its subscription connection.
pub(super) struct Shard {
    pub endpoint: Arc<Endpoint>,
    pub commands: Arc<CommandLink>,
    pub pubsub: PubSub,
}

impl Shard {
    /// Connects to the endpoint's node, checks the module's prefix and starts the subscription
    /// side. Namespaces in `namespaces` are stored again whenever this shard's subscription
    /// connection comes back.
    pub async fn connect(
        endpoint: Arc<Endpoint>,
        prefix: &str,
        events: EventSender,
        namespaces: Namespaces,
    ) -> Result<Shard, EngineError> {
        let commands = Arc::new(CommandLink::connect(Arc::clone(&endpoint)).await?);
        check_module(&commands, prefix)
            .await
            .map_err(|e| naming(&endpoint.name(), e))?;
        let reregister = pubsub::Reregister {
            commands: Arc::clone(&commands),
            namespaces,
        };
        let pubsub = PubSub::connect(Arc::clone(&endpoint), prefix, events, reregister).await?;
        Ok(Shard {
            endpoint,
            commands,
            pubsub,
        })
    }

    /// The node's address, for error messages.
    pub fn name(&self) -> String {
        self.endpoint.name()
    }
}

/// The shard of `channel` among `shards` (> 0) shards.
pub(super) fn index(channel: &str, shards: usize) -> usize {
    if shards <= 1 {
        return 0;
    }
    let buckets = i32::try_from(shards).unwrap_or(i32::MAX);
    jump_hash(fnv1a_64(channel.as_bytes()), buckets) as usize
}

/// FNV-1a, 64 bits (Go's `hash/fnv.New64a`).
pub(super) fn fnv1a_64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

/// Jump Consistent Hash (Lamping & Veach, 2014): the bucket in `0..buckets` of `key`; growing
/// `buckets` by one moves only the keys that land in the new bucket.
pub(super) fn jump_hash(mut key: u64, buckets: i32) -> i32 {
    let (mut b, mut j) = (-1i64, 0i64);
    while j < i64::from(buckets) {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1i64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_64_known_vectors() {
        assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a_64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn jump_hash_one_bucket_is_zero() {
        for key in [0, 1, 42, u64::MAX, fnv1a_64(b"news")] {
            assert_eq!(jump_hash(key, 1), 0);
        }
    }

    #[test]
    fn jump_hash_known_values() {
        // key 0: the first step makes key = 1, so j = 2^31 / 1: bucket 0 whatever the count.
        for buckets in [1, 2, 7, 1000, i32::MAX] {
            assert_eq!(jump_hash(0, buckets), 0);
        }
        // key 1: the first step gives key >> 33 = 333289331, j = 2^31 / 333289332 = 6.44 -> 6,
        // so key 1 stays in bucket 0 up to 6 buckets and jumps to bucket 6 at 7.
        for buckets in 1..=6 {
            assert_eq!(jump_hash(1, buckets), 0);
        }
        assert_eq!(jump_hash(1, 7), 6);
        // The reference implementation's published vectors (dgryski/go-jump).
        assert_eq!(jump_hash(42, 57), 43);
        assert_eq!(jump_hash(0xDEAD_10CC, 666), 361);
        assert_eq!(jump_hash(256, 1024), 520);
    }

    #[test]
    fn jump_hash_is_consistent() {
        // Deterministic, in range, and one more bucket only moves keys into the new bucket.
        for i in 0..2000u64 {
            let key = fnv1a_64(format!("ch{i}").as_bytes());
            let mut previous = 0;
            for buckets in 1..=16 {
                let b = jump_hash(key, buckets);
                assert_eq!(b, jump_hash(key, buckets));
                assert!((0..buckets).contains(&b));
                assert!(b == previous || b == buckets - 1, "{key} moved to {b}");
                previous = b;
            }
        }
    }

    #[test]
    fn index_spreads_channels() {
        assert_eq!(index("anything", 1), 0);
        let mut counts = [0usize; 2];
        for i in 0..1000 {
            counts[index(&format!("ch{i}"), 2)] += 1;
        }
        assert!(counts.iter().all(|&n| n > 400), "{counts:?}");
        // ch0..ch4 as computed by the reference algorithm.
        let first: Vec<usize> = (0..5).map(|i| index(&format!("ch{i}"), 2)).collect();
        assert_eq!(first, [0, 1, 0, 0, 1]);
    }
}
