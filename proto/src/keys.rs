//! The Redis Cluster rules that decide a channel's slot: the hash tag, shared by the module (which
//! names a channel's keys and PUB/SUB channel with it) and the proxy (which subscribes to that
//! PUB/SUB channel on the node owning the slot), and the slot itself (the module's migration
//! check, the tests' and the load tool's routing).

/// Slots of a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// The `{…}` section Redis Cluster hashes `name` by instead of the whole name: after the first
/// `{`, up to the next `}`, when at least one byte is in between.
pub fn hash_tag(name: &[u8]) -> Option<&[u8]> {
    let open = name.iter().position(|&b| b == b'{')?;
    let len = name[open + 1..].iter().position(|&b| b == b'}')?;
    (len > 0).then(|| &name[open + 1..open + 1 + len])
}

/// Whether Redis Cluster hashes `name` by a `{…}` section rather than the whole name.
pub fn has_hash_tag(name: &[u8]) -> bool {
    hash_tag(name).is_some()
}

/// The hash slot of a key as Redis Cluster computes it: CRC16 (XMODEM) of its hash tag, or of
/// the whole key without one, modulo 16384.
pub fn key_slot(key: &[u8]) -> u16 {
    crc16(hash_tag(key).unwrap_or(key)) % SLOTS
}

/// CRC16/XMODEM (polynomial 0x1021, initial value 0), the checksum of Redis Cluster's key slots.
fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |crc, &byte| {
        (crc << 8) ^ CRC16_TABLE[usize::from((crc >> 8) as u8 ^ byte)]
    })
}

/// The CRC16/XMODEM value of every byte.
const CRC16_TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_tags_as_redis_cluster_reads_them() {
        assert!(has_hash_tag(b"{user1}.following"));
        assert!(has_hash_tag(b"a{b}c"));
        assert!(has_hash_tag(b"a{b}{c}"), "the first tag counts");
        assert!(!has_hash_tag(b"{}x"), "an empty tag is no tag");
        assert!(!has_hash_tag(b"a{bc"), "no closing brace");
        assert!(!has_hash_tag(b"a}b{"), "closing before opening");
        assert!(!has_hash_tag(b"chat:room"));
        assert_eq!(hash_tag(b"a{b}{c}"), Some(&b"b"[..]));
    }

    #[test]
    fn slots_are_redis_clusters() {
        // The check value of CRC16/XMODEM, and slots reported by CLUSTER KEYSLOT on Redis 7.0.
        assert_eq!(crc16(b"123456789"), 0x31c3);
        assert_eq!(key_slot(b"123456789"), 12739);
        assert_eq!(key_slot(b"chat:a"), 14206);
        assert_eq!(key_slot(b"b"), 3300);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"gyre.namespaces"), 12676);
        assert_eq!(key_slot(b"gyre.stream.{chat:a}"), 14206);
        assert_eq!(key_slot(b"{}b"), 6680, "an empty tag does not count");
        assert_eq!(
            key_slot(b"foo{}{bar}"),
            crc16(b"foo{}{bar}") % SLOTS,
            "only the first opening brace counts"
        );
        assert_eq!(key_slot(b"a{b}c"), key_slot(b"b"));
        assert_eq!(key_slot(b""), 0);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
    }
}
