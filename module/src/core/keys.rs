//! Key and PUB/SUB channel names: Centrifuge's Redis layout under Gyre's prefix.
//!
//! In Redis Cluster every key of a channel must hash to the slot of the channel name itself,
//! because the channel (argv[1]) is the key each command declares. Wrapping the channel part in a
//! hash tag (`P.stream.{ch}`) does that, except when the channel already carries a hash tag of its
//! own (then that tag decides the slot of both) or holds a `}` that would end our tag early.

use super::error::{GyreError, GyreResult};

/// Longest accepted `gyre.prefix`, in bytes.
pub const MAX_PREFIX_LEN: usize = 64;

/// Why a `gyre.prefix` value was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrefixError {
    Empty,
    TooLong,
    /// The first byte outside letters, digits and `_ - . :`.
    BadByte(u8),
}

/// Only characters that can never form or break a hash tag, and that read well in `redis-cli`.
pub fn validate_prefix(prefix: &str) -> Result<(), PrefixError> {
    if prefix.is_empty() {
        return Err(PrefixError::Empty);
    }
    if prefix.len() > MAX_PREFIX_LEN {
        return Err(PrefixError::TooLong);
    }
    match prefix
        .bytes()
        .find(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':')))
    {
        Some(bad) => Err(PrefixError::BadByte(bad)),
        None => Ok(()),
    }
}

/// The hash-tag rule is shared with the proxy, which subscribes to the PUB/SUB channels named here.
pub use gyre_proto::keys::has_hash_tag;

/// The names of every key and the PUB/SUB channel of one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelKeys<'a> {
    prefix: &'a str,
    channel: &'a [u8],
    /// Cluster mode without a hash tag of the channel's own: names carry `{channel}`.
    wrap: bool,
}

impl<'a> ChannelKeys<'a> {
    pub fn new(prefix: &'a str, channel: &'a [u8], cluster: bool) -> GyreResult<Self> {
        let wrap = cluster && !has_hash_tag(channel);
        // An empty channel would wrap to `{}`, an empty hash tag, which Redis ignores: each key
        // would hash by its whole name, into a slot of its own.
        if wrap && (channel.is_empty() || channel.contains(&b'}')) {
            return Err(GyreError::UnslottableChannel);
        }
        Ok(Self {
            prefix,
            channel,
            wrap,
        })
    }

    fn name(&self, kind: &str, suffix: &[u8]) -> Vec<u8> {
        let mut key = Vec::with_capacity(
            self.prefix.len() + kind.len() + self.channel.len() + suffix.len() + 4,
        );
        key.extend_from_slice(self.prefix.as_bytes());
        key.push(b'.');
        key.extend_from_slice(kind.as_bytes());
        key.push(b'.');
        if self.wrap {
            key.push(b'{');
        }
        key.extend_from_slice(self.channel);
        if self.wrap {
            key.push(b'}');
        }
        key.extend_from_slice(suffix);
        key
    }

    /// `P.stream.ch`: the history stream.
    pub fn stream(&self) -> Vec<u8> {
        self.name("stream", b"")
    }

    /// `P.stream.meta.ch`: epoch `e` and top offset `s`.
    pub fn meta(&self) -> Vec<u8> {
        self.name("stream.meta", b"")
    }

    /// `P.result.ch.<key>`: the remembered reply of an idempotent publish.
    pub fn result(&self, idempotency_key: &[u8]) -> Vec<u8> {
        let mut suffix = Vec::with_capacity(idempotency_key.len() + 1);
        suffix.push(b'.');
        suffix.extend_from_slice(idempotency_key);
        self.name("result", &suffix)
    }

    /// `P.presence.data.ch`: client id → ClientInfo.
    pub fn presence_data(&self) -> Vec<u8> {
        self.name("presence.data", b"")
    }

    /// `P.presence.expire.ch`: client id scored by its expiry (unix seconds).
    pub fn presence_expire(&self) -> Vec<u8> {
        self.name("presence.expire", b"")
    }

    /// `P.client.ch`: the PUB/SUB channel the proxies subscribe to.
    pub fn pubsub_channel(&self) -> Vec<u8> {
        self.name("client", b"")
    }
}

/// Whether `key` is a stream meta hash of this prefix (`P.stream.meta.…`), whatever its channel.
pub fn is_meta_key(prefix: &str, key: &[u8]) -> bool {
    let rest = key.strip_prefix(prefix.as_bytes());
    rest.is_some_and(|r| r.starts_with(b".stream.meta.") && r.len() > b".stream.meta.".len())
}

/// `P.namespaces`: namespace → history options. Not tied to any channel's slot.
pub fn namespaces_key(prefix: &str) -> Vec<u8> {
    format!("{prefix}.namespaces").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(channel: &str, cluster: bool) -> GyreResult<ChannelKeys<'_>> {
        ChannelKeys::new("gyre", channel.as_bytes(), cluster)
    }

    fn s(v: Vec<u8>) -> String {
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn standalone_layout_is_centrifuges() {
        let k = keys("chat:room", false).unwrap();
        assert_eq!(s(k.stream()), "gyre.stream.chat:room");
        assert_eq!(s(k.meta()), "gyre.stream.meta.chat:room");
        assert_eq!(s(k.result(b"k1")), "gyre.result.chat:room.k1");
        assert_eq!(s(k.presence_data()), "gyre.presence.data.chat:room");
        assert_eq!(s(k.presence_expire()), "gyre.presence.expire.chat:room");
        assert_eq!(s(k.pubsub_channel()), "gyre.client.chat:room");
        assert_eq!(s(namespaces_key("gyre")), "gyre.namespaces");
    }

    #[test]
    fn standalone_keeps_braces_as_they_are() {
        let k = keys("a}b", false).unwrap();
        assert_eq!(s(k.stream()), "gyre.stream.a}b");
    }

    #[test]
    fn cluster_wraps_the_channel_in_a_hash_tag() {
        let k = keys("chat", true).unwrap();
        assert_eq!(s(k.stream()), "gyre.stream.{chat}");
        assert_eq!(s(k.meta()), "gyre.stream.meta.{chat}");
        assert_eq!(s(k.result(b"x")), "gyre.result.{chat}.x");
        assert_eq!(s(k.pubsub_channel()), "gyre.client.{chat}");
    }

    #[test]
    fn cluster_uses_an_existing_hash_tag() {
        let k = keys("a{b}c", true).unwrap();
        assert_eq!(s(k.stream()), "gyre.stream.a{b}c");
        assert_eq!(s(k.presence_data()), "gyre.presence.data.a{b}c");
    }

    #[test]
    fn cluster_wraps_an_open_brace_without_close() {
        // "a{b" hashes as a whole; "{a{b}" hashes by "a{b": the same bytes.
        let k = keys("a{b", true).unwrap();
        assert_eq!(s(k.stream()), "gyre.stream.{a{b}");
    }

    #[test]
    fn cluster_rejects_a_close_brace_without_a_hash_tag() {
        for channel in ["a}b", "}", "a{}b", "}{a}"] {
            // "}{a}" has a tag: the first "{" is followed by "a}".
            let expected = has_hash_tag(channel.as_bytes());
            assert_eq!(keys(channel, true).is_ok(), expected, "{channel}");
        }
        assert_eq!(keys("a{}b", true), Err(GyreError::UnslottableChannel));
    }

    #[test]
    fn cluster_rejects_an_empty_channel() {
        assert_eq!(keys("", true), Err(GyreError::UnslottableChannel));
        assert!(keys("", false).is_ok());
    }

    #[test]
    fn hash_tag_rules_match_redis_cluster() {
        assert!(has_hash_tag(b"{a}"));
        assert!(has_hash_tag(b"x{a}y"));
        assert!(has_hash_tag(b"x{a}}"));
        assert!(has_hash_tag(b"{{a}"));
        assert!(!has_hash_tag(b"{}a"));
        assert!(!has_hash_tag(b"a{b"));
        assert!(!has_hash_tag(b"a}b{"));
        assert!(!has_hash_tag(b"plain"));
    }

    #[test]
    fn meta_keys_are_recognised_by_prefix_and_kind() {
        assert!(is_meta_key("gyre", b"gyre.stream.meta.chat"));
        assert!(is_meta_key("gyre", b"gyre.stream.meta.{chat}"));
        assert!(!is_meta_key("gyre", b"gyre.stream.meta."));
        assert!(!is_meta_key("gyre", b"gyre.stream.chat"));
        assert!(!is_meta_key("gyre", b"other.stream.meta.chat"));
        assert!(!is_meta_key("gyre", b"gyrex.stream.meta.chat"));
        assert!(!is_meta_key("app", b"gyre.stream.meta.chat"));
    }

    #[test]
    fn prefix_validation() {
        assert_eq!(validate_prefix("gyre"), Ok(()));
        assert_eq!(validate_prefix("my-app_1.v2:x"), Ok(()));
        assert_eq!(validate_prefix(""), Err(PrefixError::Empty));
        assert_eq!(validate_prefix("a{b"), Err(PrefixError::BadByte(b'{')));
        assert_eq!(validate_prefix("a b"), Err(PrefixError::BadByte(b' ')));
        assert_eq!(validate_prefix(&"x".repeat(64)), Ok(()));
        assert_eq!(validate_prefix(&"x".repeat(65)), Err(PrefixError::TooLong));
    }
}
