//! The argument parsers of the module's commands (`GYRE.PUBLISH`, `GYRE.HISTORY`,
//! `GYRE.PRESENCE.ADD` / `.REM` / `GYRE.PRESENCE`, `GYRE.NAMESPACE`) and the key names of a
//! channel: any client of Redis can send any arguments. Parsing must never panic; a successful
//! parse rendered back to arguments parses to the same result; in cluster mode every key of a
//! channel hashes to the channel's slot.
//!
//! Input: the first byte picks the command, the rest are its arguments separated by NUL bytes
//! (fuzz/dictionaries/module_args.dict holds the keywords).
#![no_main]

// The module is a cdylib that installs Redis' allocator; its pure `core` (no redis-module) is
// compiled here from the same sources instead of linking the module.
#[allow(dead_code, unused_imports)]
#[path = "../../module/src/core/mod.rs"]
mod core;

use libfuzzer_sys::fuzz_target;

use crate::core::history::{HistoryArgs, Limit};
use crate::core::keys::ChannelKeys;
use crate::core::namespace::NamespaceCommand;
use crate::core::presence::{AddArgs, GetArgs, RemArgs};
use crate::core::publish::PublishArgs;

/// Arguments rendered back from a parse, owned.
struct Render(Vec<Vec<u8>>);

impl Render {
    fn new() -> Self {
        Self(Vec::new())
    }
    fn arg(&mut self, a: impl AsRef<[u8]>) -> &mut Self {
        self.0.push(a.as_ref().to_vec());
        self
    }
    fn num(&mut self, n: u64) -> &mut Self {
        self.arg(n.to_string())
    }
    fn slices(&self) -> Vec<&[u8]> {
        self.0.iter().map(Vec::as_slice).collect()
    }
}

fn publish(args: &[&[u8]]) {
    let Ok(p) = PublishArgs::parse(args) else {
        return;
    };
    let mut r = Render::new();
    r.arg(p.channel).arg(p.data);
    if let Some(h) = p.history {
        r.arg("HISTORY").num(h.size).num(h.ttl);
    }
    if let Some(ttl) = p.meta_ttl {
        r.arg("META-TTL").num(ttl);
    }
    if let Some(key) = p.idempotency_key {
        r.arg("IDEMPOTENCY").arg(key);
    }
    if let Some(ttl) = p.idempotency_ttl {
        r.arg("IDEMPOTENCY-TTL").num(ttl);
    }
    if let Some(info) = p.info {
        r.arg("INFO")
            .arg(info.client)
            .arg(info.user)
            .arg(info.conn_info)
            .arg(info.chan_info);
    }
    if p.delta {
        r.arg("DELTA");
    }
    if let Some(version) = p.version {
        r.arg("VERSION").num(version);
        if !p.version_epoch.is_empty() {
            r.arg("VERSION-EPOCH").arg(p.version_epoch);
        }
    }
    // Tags last: every TAGS clause of the input, as one.
    if !p.tags.is_empty() {
        r.arg("TAGS").num(p.tags.len() as u64);
        for (k, v) in &p.tags {
            r.arg(k).arg(v);
        }
    }
    let again = r.slices();
    assert_eq!(PublishArgs::parse(&again).as_ref(), Ok(&p), "publish");
    channel_keys(p.channel, p.idempotency_key);
}

fn history(args: &[&[u8]]) {
    let Ok(h) = HistoryArgs::parse(args) else {
        return;
    };
    let mut r = Render::new();
    r.arg(h.channel);
    if let Some(since) = h.since {
        r.arg("SINCE").num(since);
    }
    if let Limit::AtMost(n) = h.limit {
        r.arg("LIMIT").num(n);
    }
    if h.reverse {
        r.arg("REVERSE");
    }
    if h.raw {
        r.arg("RAW");
    }
    let again = r.slices();
    assert_eq!(HistoryArgs::parse(&again).as_ref(), Ok(&h), "history");
    // The range a query reads never panics either.
    let _ = h.range();
    channel_keys(h.channel, None);
}

fn presence_add(args: &[&[u8]]) {
    let Ok(a) = AddArgs::parse(args) else {
        return;
    };
    let mut r = Render::new();
    r.arg(a.channel).arg(a.info.client).arg(a.info.user);
    r.arg("INFO").arg(a.info.conn_info);
    r.arg("CHANINFO").arg(a.info.chan_info);
    if let Some(ttl) = a.ttl {
        r.arg("TTL").num(ttl);
    }
    if a.join_leave {
        r.arg("JOINLEAVE");
    }
    let again = r.slices();
    assert_eq!(AddArgs::parse(&again).as_ref(), Ok(&a), "presence add");
    channel_keys(a.channel, None);
}

fn presence_rem(args: &[&[u8]]) {
    let Ok(a) = RemArgs::parse(args) else {
        return;
    };
    let mut r = Render::new();
    r.arg(a.channel).arg(a.client);
    if a.join_leave {
        r.arg("JOINLEAVE");
    }
    let again = r.slices();
    assert_eq!(RemArgs::parse(&again).as_ref(), Ok(&a), "presence rem");
}

fn presence_get(args: &[&[u8]]) {
    let Ok(a) = GetArgs::parse(args) else {
        return;
    };
    let mut r = Render::new();
    r.arg(a.channel);
    if a.raw {
        r.arg("RAW");
    }
    let again = r.slices();
    assert_eq!(GetArgs::parse(&again).as_ref(), Ok(&a), "presence get");
}

fn namespace(args: &[&[u8]]) {
    let Ok(n) = NamespaceCommand::parse(args) else {
        return;
    };
    let mut r = Render::new();
    match &n {
        NamespaceCommand::Set {
            name,
            history_size,
            history_ttl,
            meta_ttl,
        } => {
            r.arg("SET").arg(name).arg("HISTORY");
            r.num(*history_size).num(*history_ttl);
            if let Some(ttl) = meta_ttl {
                r.arg("META-TTL").num(*ttl);
            }
        }
        NamespaceCommand::Get(name) => {
            r.arg("GET").arg(name);
        }
        NamespaceCommand::Del(name) => {
            r.arg("DEL").arg(name);
        }
        NamespaceCommand::List => {
            r.arg("LIST");
        }
    }
    let again = r.slices();
    assert_eq!(NamespaceCommand::parse(&again).as_ref(), Ok(&n), "namespace");
}

/// Every key of a channel lands in the channel's slot in cluster mode (or the channel is refused).
fn channel_keys(channel: &[u8], idempotency_key: Option<&[u8]>) {
    let _ = ChannelKeys::new("gyre", channel, false).map(|k| k.stream());
    let Ok(keys) = ChannelKeys::new("gyre", channel, true) else {
        return;
    };
    let slot = gyre_proto::keys::key_slot(channel);
    let mut all = vec![
        keys.stream(),
        keys.meta(),
        keys.presence_data(),
        keys.presence_expire(),
        keys.pubsub_channel(),
    ];
    if let Some(k) = idempotency_key {
        all.push(keys.result(k));
    }
    for key in all {
        assert_eq!(
            gyre_proto::keys::key_slot(&key),
            slot,
            "{:?}",
            String::from_utf8_lossy(&key)
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let args: Vec<&[u8]> = if rest.is_empty() {
        Vec::new()
    } else {
        rest.split(|&b| b == 0).collect()
    };
    match which % 6 {
        0 => publish(&args),
        1 => history(&args),
        2 => presence_add(&args),
        3 => presence_rem(&args),
        4 => presence_get(&args),
        _ => namespace(&args),
    }
});
