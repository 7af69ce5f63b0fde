//! The Redis Cluster hash-tag rule that decides a channel's slot, shared by the module (which
//! names a channel's keys and PUB/SUB channel with it) and the proxy (which subscribes to that
//! PUB/SUB channel on the node owning the slot).

/// Whether Redis Cluster hashes `name` by a `{…}` section rather than the whole name: the first
/// `{` is followed, later on, by a `}` with at least one byte in between.
pub fn has_hash_tag(name: &[u8]) -> bool {
    let Some(open) = name.iter().position(|&b| b == b'{') else {
        return false;
    };
    match name[open + 1..].iter().position(|&b| b == b'}') {
        Some(len) => len > 0,
        None => false,
    }
}

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
    }
}
