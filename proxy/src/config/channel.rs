//! Channel name → channel options, the lookup every subscribe, publish, history and presence
//! call makes.
//!
//! Centrifugo's rule: strip one leading `$` (private prefix), then the namespace is the text
//! before the first `:`; no `:` (or nothing before it) means `channel.without_namespace`.
//! `#` (user-limited channels) plays no part here: `news#42` is a channel without namespace.
//!
//! The table is built once per [`Config`] and holds options with `history_meta_ttl` already
//! resolved, so a lookup is a length check, an ASCII scan, one `:` search and one hash probe:
//! no allocation.

use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

use super::{ChannelOptions, Config};

/// Why a channel name has no options. Variants carry no text so that building one costs
/// nothing; the caller still has the channel name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    #[error("empty channel name")]
    Empty,
    #[error("channel name is {len} bytes, longer than channel.max_length {max}")]
    TooLong { len: usize, max: u32 },
    #[error("unknown channel namespace")]
    UnknownNamespace,
    /// Centrifugo refuses non-ASCII names (checked after the namespace, in its order).
    #[error("channel name is not ASCII")]
    NotAscii,
}

impl Config {
    /// Options of `channel`, in Centrifugo's check order: empty, too long, unknown namespace,
    /// not ASCII. The returned options have `history_meta_ttl` resolved (never 0 unless
    /// `channel.history_meta_ttl` is 0).
    pub fn channel_options(&self, channel: &str) -> Result<&ChannelOptions, ChannelError> {
        if channel.is_empty() {
            return Err(ChannelError::Empty);
        }
        let max = self.channel.max_length;
        if max > 0 && channel.len() > max as usize {
            return Err(ChannelError::TooLong {
                len: channel.len(),
                max,
            });
        }
        let index = self.index.get(self);
        let unprefixed = channel.strip_prefix('$').unwrap_or(channel);
        let options = match unprefixed.split_once(':') {
            Some((namespace, _)) if !namespace.is_empty() => index
                .by_name
                .get(namespace)
                .map(|&i| &index.namespaces[i].1)
                .ok_or(ChannelError::UnknownNamespace)?,
            _ => &index.without_namespace,
        };
        if !channel.is_ascii() {
            return Err(ChannelError::NotAscii);
        }
        Ok(options)
    }

    /// Every namespace with its resolved options, in config order (for registering history
    /// options with the Redis module at start).
    pub fn namespaces(&self) -> impl Iterator<Item = (&str, &ChannelOptions)> {
        self.index
            .get(self)
            .namespaces
            .iter()
            .map(|(name, options)| (name.as_str(), options))
    }
}

/// The lookup table, built on first use. Cloning yields an empty cell, so a cloned and then
/// edited config never serves stale options; equality ignores it.
#[derive(Default)]
pub(super) struct ChannelIndex(OnceLock<Index>);

struct Index {
    without_namespace: ChannelOptions,
    namespaces: Vec<(String, ChannelOptions)>,
    by_name: HashMap<String, usize>,
}

impl ChannelIndex {
    fn get(&self, config: &Config) -> &Index {
        self.0.get_or_init(|| Index::build(config))
    }

    /// Builds the table now rather than on the first subscribe.
    pub(super) fn prime(&self, config: &Config) {
        self.get(config);
    }
}

impl Index {
    fn build(config: &Config) -> Self {
        let global_meta_ttl = config.channel.history_meta_ttl;
        let resolve = |mut options: ChannelOptions| {
            if options.history_meta_ttl.is_zero() {
                options.history_meta_ttl = global_meta_ttl;
            }
            options
        };
        let namespaces: Vec<(String, ChannelOptions)> = config
            .channel
            .namespaces
            .iter()
            .map(|ns| (ns.name.clone(), resolve(ns.options())))
            .collect();
        let mut by_name = HashMap::with_capacity(namespaces.len());
        for (i, (name, _)) in namespaces.iter().enumerate() {
            // Validation rejects duplicates; should an unvalidated config have one, the first
            // wins, as in Centrifugo's linear search.
            by_name.entry(name.clone()).or_insert(i);
        }
        Self {
            without_namespace: resolve(config.channel.without_namespace.clone()),
            namespaces,
            by_name,
        }
    }
}

impl Clone for ChannelIndex {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for ChannelIndex {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for ChannelIndex {}

impl fmt::Debug for ChannelIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "ChannelIndex(built)"
        } else {
            "ChannelIndex(empty)"
        })
    }
}
