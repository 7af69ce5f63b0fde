//! Channel name → options, as every subscribe resolves it.

use std::time::Duration;

use super::*;
use crate::config::{ChannelError, ChannelOptions, Namespace};

const CHANNELS: &str = r#"
[channel]
max_length = 32
[channel.without_namespace]
presence = true
[[channel.namespaces]]
name = "private"
allow_subscribe_for_client = true
[[channel.namespaces]]
name = "chat"
history_size = 10
history_ttl = "60s"
history_meta_ttl = "2h"
[[channel.namespaces]]
name = "feed"
history_size = 5
history_ttl = "30s"
"#;

#[test]
fn resolves_namespaces_like_centrifugo() {
    let c = toml_ok(CHANNELS);
    let without = c.channel_options("news").unwrap();
    assert!(without.presence);
    // `#` marks user-limited channels; it plays no part in the namespace.
    assert!(std::ptr::eq(c.channel_options("news#42").unwrap(), without));
    assert!(std::ptr::eq(
        c.channel_options("dialog#42,43").unwrap(),
        without
    ));
    // A leading `$` (private channel) is stripped before looking for the namespace.
    assert!(
        c.channel_options("$private:x")
            .unwrap()
            .allow_subscribe_for_client
    );
    assert!(
        c.channel_options("private:x")
            .unwrap()
            .allow_subscribe_for_client
    );
    assert!(c.channel_options("$news").unwrap().presence);
    // Only the first `:` counts.
    assert_eq!(c.channel_options("chat:a:b").unwrap().history_size, 10);
    // Nothing before the `:` means no namespace (Centrifugo's rule).
    assert!(c.channel_options(":x").unwrap().presence);
    assert_eq!(
        c.channel_options("nope:x"),
        Err(ChannelError::UnknownNamespace)
    );
    assert_eq!(
        c.channel_options("$$private:x"),
        Err(ChannelError::UnknownNamespace)
    );
}

#[test]
fn refuses_bad_names_in_centrifugos_order() {
    let c = toml_ok(CHANNELS);
    assert_eq!(c.channel_options(""), Err(ChannelError::Empty));
    let long = "x".repeat(33);
    assert_eq!(
        c.channel_options(&long),
        Err(ChannelError::TooLong { len: 33, max: 32 })
    );
    assert!(c.channel_options(&long[..32]).is_ok());
    assert_eq!(
        c.channel_options("nope:é"),
        Err(ChannelError::UnknownNamespace)
    );
    assert_eq!(c.channel_options("chat:é"), Err(ChannelError::NotAscii));
    let unlimited = toml_ok("[channel]\nmax_length = 0");
    assert!(unlimited.channel_options(&"x".repeat(10_000)).is_ok());
}

#[test]
fn history_meta_ttl_is_resolved() {
    let c = toml_ok(CHANNELS);
    assert_eq!(
        c.channel_options("chat:1").unwrap().history_meta_ttl,
        Duration::from_secs(7200)
    );
    assert_eq!(
        c.channel_options("feed:1").unwrap().history_meta_ttl,
        Duration::from_secs(720 * 3600)
    );
    // The config itself keeps what the file said.
    assert_eq!(c.channel.namespaces[2].history_meta_ttl, Duration::ZERO);
    let listed: Vec<(&str, u64, Duration)> = c
        .namespaces()
        .map(|(name, o)| (name, o.history_size, o.history_meta_ttl))
        .collect();
    assert_eq!(
        listed,
        [
            ("private", 0, Duration::from_secs(720 * 3600)),
            ("chat", 10, Duration::from_secs(7200)),
            ("feed", 5, Duration::from_secs(720 * 3600)),
        ]
    );
}

#[test]
fn built_configs_and_clones_see_their_own_namespaces() {
    let c = Config::default();
    assert_eq!(
        c.channel_options("chat:1"),
        Err(ChannelError::UnknownNamespace)
    );
    let mut edited = c.clone();
    let options = ChannelOptions {
        presence: true,
        ..Default::default()
    };
    edited
        .channel
        .namespaces
        .push(Namespace::new("chat", options.clone()));
    assert!(edited.channel_options("chat:1").unwrap().presence);
    assert_eq!(edited.channel.namespaces[0].options(), options);
    // A config never looked up before builds its table on first use.
    let mut fresh = Config::default();
    fresh
        .channel
        .namespaces
        .push(Namespace::new("room", options));
    assert!(fresh.channel_options("room:1").unwrap().presence);
}
