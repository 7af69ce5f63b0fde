//! The `uni_sse` event id: a cursor of every recoverable channel's position, so that a browser
//! `EventSource`, which sends the last id it saw as `Last-Event-ID` when it reconnects, resumes
//! all its channels from history without any SDK.
//!
//! Format: entries `<offset>:<epoch>:<channel>` joined by `,`, with `%`, `,`, `:` (in the epoch)
//! and control characters percent-escaped. The channel comes last so that the `:` of namespaced
//! names needs no escape. Example: `12:abcd:chat:room1,3:efgh:news`.
//!
//! The writer learns positions from the pushes it writes (the connect push's `subs`, subscribe
//! pushes, publications, unsubscribe pushes), so the id always matches what the client has
//! received. It parses only uni_sse pushes, and an id is written once per written batch (on its
//! last event), which is all an EventSource keeps.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Deserialize;

/// A channel's position: the offset of the last publication received and the stream's epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub offset: u64,
    pub epoch: String,
}

/// Positions of the recoverable channels of one uni_sse connection.
#[derive(Debug, Default)]
pub struct Cursor {
    channels: BTreeMap<String, Position>,
    changed: bool,
}

#[derive(Deserialize)]
struct PushView<'a> {
    #[serde(default, borrow)]
    channel: Cow<'a, str>,
    #[serde(default, rename = "pub")]
    publication: Option<OffsetView>,
    #[serde(default)]
    subscribe: Option<SubscribedView>,
    #[serde(default)]
    unsubscribe: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    connect: Option<ConnectView>,
}

#[derive(Deserialize)]
struct OffsetView {
    #[serde(default)]
    offset: u64,
}

#[derive(Deserialize)]
struct SubscribedView {
    #[serde(default)]
    recoverable: bool,
    #[serde(default)]
    offset: u64,
    #[serde(default)]
    epoch: String,
    /// Recovered publications: the client's position is past them.
    #[serde(default)]
    publications: Vec<OffsetView>,
}

#[derive(Deserialize)]
struct ConnectView {
    #[serde(default)]
    subs: BTreeMap<String, SubscribedView>,
}

impl Cursor {
    /// Updates positions from one push about to be written.
    pub fn observe(&mut self, push: &[u8]) {
        let Ok(view) = serde_json::from_slice::<PushView>(push) else {
            return;
        };
        if let Some(connect) = view.connect {
            for (channel, sub) in connect.subs {
                self.subscribed(channel, sub);
            }
        } else if let Some(publication) = view.publication {
            if let Some(position) = self.channels.get_mut(view.channel.as_ref()) {
                position.offset = publication.offset.max(position.offset);
                self.changed = true;
            }
        } else if let Some(sub) = view.subscribe {
            self.subscribed(view.channel.into_owned(), sub);
        } else if view.unsubscribe.is_some() {
            self.changed |= self.channels.remove(view.channel.as_ref()).is_some();
        }
    }

    fn subscribed(&mut self, channel: String, sub: SubscribedView) {
        if sub.recoverable {
            self.channels.insert(
                channel,
                Position {
                    offset: sub
                        .publications
                        .iter()
                        .map(|p| p.offset)
                        .fold(sub.offset, u64::max),
                    epoch: sub.epoch,
                },
            );
            self.changed = true;
        }
    }

    /// The id to write on the next event if the positions changed since the last one taken.
    pub fn take_id(&mut self) -> Option<String> {
        if !std::mem::take(&mut self.changed) {
            return None;
        }
        let mut id = String::new();
        for (channel, position) in &self.channels {
            if !id.is_empty() {
                id.push(',');
            }
            let _ = write!(id, "{}:", position.offset);
            escape_into(&position.epoch, true, &mut id);
            id.push(':');
            escape_into(channel, false, &mut id);
        }
        Some(id)
    }
}

fn escape_into(text: &str, colon: bool, out: &mut String) {
    for c in text.chars() {
        if c == '%' || c == ',' || (colon && c == ':') || c.is_control() {
            let mut buf = [0u8; 4];
            for byte in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "%{byte:02X}");
            }
        } else {
            out.push(c);
        }
    }
}

fn unescape(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Reads a `Last-Event-ID` back into channel positions. Malformed entries are skipped: the
/// channel is then subscribed without recovery, as on a first connect.
pub fn parse(id: &str) -> Vec<(String, Position)> {
    id.split(',')
        .filter_map(|entry| {
            let mut parts = entry.splitn(3, ':');
            let offset = parts.next()?.parse().ok()?;
            let epoch = unescape(parts.next()?)?;
            let channel = unescape(parts.next()?)?;
            (!channel.is_empty()).then_some((channel, Position { offset, epoch }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_follows_what_was_written() {
        let mut cursor = Cursor::default();
        cursor.observe(
            br#"{"connect":{"client":"c","subs":{"chat:room,1":{"recoverable":true,"epoch":"ab:c","offset":3},"plain":{}}}}"#,
        );
        assert_eq!(cursor.take_id().unwrap(), "3:ab%3Ac:chat:room%2C1");
        assert_eq!(cursor.take_id(), None, "unchanged");
        cursor.observe(br#"{"channel":"chat:room,1","pub":{"data":{"x":"}"},"offset":4}}"#);
        cursor.observe(br#"{"channel":"plain","pub":{"data":{}}}"#);
        cursor.observe(
            br#"{"channel":"news","subscribe":{"recoverable":true,"epoch":"e","offset":7,"publications":[{"offset":8},{"offset":9}]}}"#,
        );
        let id = cursor.take_id().unwrap();
        assert_eq!(id, "4:ab%3Ac:chat:room%2C1,9:e:news");
        assert_eq!(
            parse(&id),
            vec![
                (
                    "chat:room,1".to_owned(),
                    Position {
                        offset: 4,
                        epoch: "ab:c".to_owned()
                    }
                ),
                (
                    "news".to_owned(),
                    Position {
                        offset: 9,
                        epoch: "e".to_owned()
                    }
                ),
            ]
        );
        cursor.observe(br#"{"channel":"news","unsubscribe":{"code":2000}}"#);
        assert_eq!(cursor.take_id().unwrap(), "4:ab%3Ac:chat:room%2C1");
    }

    #[test]
    fn malformed_entries_are_skipped() {
        assert_eq!(parse(""), vec![]);
        assert_eq!(parse("x:e:a,1:e"), vec![]);
        assert_eq!(parse("1:%zz:a,2:e:b").len(), 1);
    }
}
