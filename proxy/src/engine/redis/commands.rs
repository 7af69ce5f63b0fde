//! The `GYRE.*` commands the engine sends (see `docs/module.md`) and the parsing of their
//! replies. Pure functions of their inputs, so the argument layout and the reply shapes are unit
//! tested without a server.

use std::collections::HashMap;
use std::time::Duration;

use gyre_proto::{ClientInfo, Publication};
use prost::Message;
use redis::{Cmd, Value};

use crate::engine::{
    EngineError, HistoryOptions, HistoryQuery, HistoryResult, PresenceStats, PublishOptions,
    StreamPosition,
};

/// Whole seconds for a module TTL argument, rounded up so that a sub-second TTL never turns into
/// "no TTL" (0) or shortens the lifetime the caller asked for.
pub(super) fn seconds(ttl: Duration) -> u64 {
    ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0)
}

/// `HISTORY <size> <ttl> META-TTL <m>`, or `HISTORY 0 0` for no history. The explicit `0 0`
/// matters: without `HISTORY` the module falls back to the namespace's or the server's
/// defaults, and the contract says `None` means no history.
fn history_args(cmd: &mut Cmd, history: Option<HistoryOptions>) {
    match history {
        Some(h) if h.size > 0 => {
            cmd.arg("HISTORY")
                .arg(h.size)
                // The module rejects size > 0 with ttl 0; the contract promises ttl > 0 anyway.
                .arg(seconds(h.ttl).max(1))
                .arg("META-TTL")
                .arg(seconds(h.meta_ttl));
        }
        _ => {
            cmd.arg("HISTORY").arg(0).arg(0);
        }
    }
}

/// `GYRE.PUBLISH <channel> <data> HISTORY … [INFO …] [TAGS …] [IDEMPOTENCY …] [DELTA]
/// [VERSION … [VERSION-EPOCH …]]`.
pub(super) fn publish(channel: &str, data: &[u8], options: &PublishOptions) -> Cmd {
    let mut cmd = redis::cmd("GYRE.PUBLISH");
    cmd.arg(channel).arg(data);
    history_args(&mut cmd, options.history);
    if let Some(info) = &options.info {
        cmd.arg("INFO")
            .arg(&info.client)
            .arg(&info.user)
            .arg(&info.conn_info[..])
            .arg(&info.chan_info[..]);
    }
    if !options.tags.is_empty() {
        cmd.arg("TAGS").arg(options.tags.len());
        for (key, value) in &options.tags {
            cmd.arg(key).arg(value);
        }
    }
    if let Some(key) = &options.idempotency_key {
        cmd.arg("IDEMPOTENCY").arg(key);
        if let Some(ttl) = options.idempotency_ttl {
            cmd.arg("IDEMPOTENCY-TTL").arg(seconds(ttl).max(1));
        }
    }
    if options.delta {
        cmd.arg("DELTA");
    }
    if options.version > 0 {
        cmd.arg("VERSION").arg(options.version);
        if !options.version_epoch.is_empty() {
            cmd.arg("VERSION-EPOCH").arg(&options.version_epoch);
        }
    }
    cmd
}

/// `GYRE.HISTORY <channel> [SINCE x] [LIMIT n] [REVERSE] RAW`.
pub(super) fn history(channel: &str, query: HistoryQuery) -> Cmd {
    let mut cmd = redis::cmd("GYRE.HISTORY");
    cmd.arg(channel);
    if let Some(since) = query.since {
        cmd.arg("SINCE").arg(since);
    }
    if let Some(limit) = query.limit {
        cmd.arg("LIMIT").arg(limit);
    }
    if query.reverse {
        cmd.arg("REVERSE");
    }
    cmd.arg("RAW");
    cmd
}

/// `GYRE.POSITION <ch> META-TTL <s>`: the stream position, creating the epoch if missing.
pub(super) fn position(channel: &str, meta_ttl: Duration) -> Cmd {
    let mut cmd = redis::cmd("GYRE.POSITION");
    cmd.arg(channel).arg("META-TTL").arg(seconds(meta_ttl));
    cmd
}

pub(super) fn remove_history(channel: &str) -> Cmd {
    let mut cmd = redis::cmd("GYRE.HISTORY.REMOVE");
    cmd.arg(channel);
    cmd
}

/// `GYRE.PRESENCE.ADD <channel> <client> <user> [INFO …] [CHANINFO …] TTL <s> [JOINLEAVE]`.
pub(super) fn add_presence(
    channel: &str,
    info: &ClientInfo,
    ttl: Duration,
    join_leave: bool,
) -> Cmd {
    let mut cmd = redis::cmd("GYRE.PRESENCE.ADD");
    cmd.arg(channel).arg(&info.client).arg(&info.user);
    if !info.conn_info.is_empty() {
        cmd.arg("INFO").arg(&info.conn_info[..]);
    }
    if !info.chan_info.is_empty() {
        cmd.arg("CHANINFO").arg(&info.chan_info[..]);
    }
    // The module wants TTL >= 1.
    cmd.arg("TTL").arg(seconds(ttl).max(1));
    if join_leave {
        cmd.arg("JOINLEAVE");
    }
    cmd
}

pub(super) fn remove_presence(channel: &str, client: &str, join_leave: bool) -> Cmd {
    let mut cmd = redis::cmd("GYRE.PRESENCE.REM");
    cmd.arg(channel).arg(client);
    if join_leave {
        cmd.arg("JOINLEAVE");
    }
    cmd
}

pub(super) fn presence(channel: &str) -> Cmd {
    let mut cmd = redis::cmd("GYRE.PRESENCE");
    cmd.arg(channel).arg("RAW");
    cmd
}

pub(super) fn presence_stats(channel: &str) -> Cmd {
    let mut cmd = redis::cmd("GYRE.PRESENCE.STATS");
    cmd.arg(channel);
    cmd
}

/// `GYRE.NAMESPACE SET <name> HISTORY <size> <ttl> [META-TTL <m>]` (`HISTORY 0 0` without
/// history, so the module's server-wide default does not apply to the namespace).
pub(super) fn register_namespace(name: &str, history: Option<HistoryOptions>) -> Cmd {
    let mut cmd = redis::cmd("GYRE.NAMESPACE");
    cmd.arg("SET").arg(name);
    history_args(&mut cmd, history);
    cmd
}

fn protocol(what: &str, value: &Value) -> EngineError {
    EngineError::Protocol(format!("unexpected {what} in a GYRE reply: {value:?}"))
}

fn int(value: &Value, what: &str) -> Result<i64, EngineError> {
    match value {
        Value::Int(n) => Ok(*n),
        other => Err(protocol(what, other)),
    }
}

fn unsigned(value: &Value, what: &str) -> Result<u64, EngineError> {
    let n = int(value, what)?;
    u64::try_from(n).map_err(|_| protocol(what, value))
}

fn bytes<'a>(value: &'a Value, what: &str) -> Result<&'a [u8], EngineError> {
    match value {
        Value::BulkString(b) => Ok(b),
        Value::SimpleString(s) => Ok(s.as_bytes()),
        Value::VerbatimString { text, .. } => Ok(text.as_bytes()),
        other => Err(protocol(what, other)),
    }
}

fn string(value: &Value, what: &str) -> Result<String, EngineError> {
    String::from_utf8(bytes(value, what)?.to_vec()).map_err(|_| protocol(what, value))
}

fn array<'a>(value: &'a Value, what: &str) -> Result<&'a [Value], EngineError> {
    match value {
        Value::Array(items) | Value::Set(items) => Ok(items),
        other => Err(protocol(what, other)),
    }
}

/// `[offset, epoch]` of `GYRE.PUBLISH`, or nil for a publication its version skipped (no
/// position, as without history).
pub(super) fn parse_publish(value: &Value) -> Result<StreamPosition, EngineError> {
    match value {
        Value::Nil => Ok(StreamPosition::default()),
        _ => parse_position(value),
    }
}

/// `[offset, epoch]` of `GYRE.PUBLISH` and `GYRE.POSITION`.
pub(super) fn parse_position(value: &Value) -> Result<StreamPosition, EngineError> {
    match array(value, "publish reply")? {
        [offset, epoch] => Ok(StreamPosition {
            offset: unsigned(offset, "offset")?,
            epoch: string(epoch, "epoch")?,
        }),
        _ => Err(protocol("publish reply", value)),
    }
}

/// `[top_offset, epoch, [[offset, Publication], …]]` of `GYRE.HISTORY … RAW`.
pub(super) fn parse_history(value: &Value) -> Result<HistoryResult, EngineError> {
    let [top, epoch, entries] = array(value, "history reply")? else {
        return Err(protocol("history reply", value));
    };
    let entries = array(entries, "history entries")?;
    let mut publications = Vec::with_capacity(entries.len());
    for entry in entries {
        let [offset, body] = array(entry, "history entry")? else {
            return Err(protocol("history entry", entry));
        };
        let mut publication = Publication::decode(bytes(body, "publication")?)
            .map_err(|e| EngineError::Protocol(format!("stored publication: {e}")))?;
        // The stream keeps the offset in the entry id, not in the protobuf.
        publication.offset = unsigned(offset, "entry offset")?;
        publications.push(publication);
    }
    Ok(HistoryResult {
        position: StreamPosition {
            offset: unsigned(top, "top offset")?,
            epoch: string(epoch, "epoch")?,
        },
        publications,
    })
}

/// Flat `[client, ClientInfo, …]` of `GYRE.PRESENCE … RAW`.
pub(super) fn parse_presence(value: &Value) -> Result<HashMap<String, ClientInfo>, EngineError> {
    let items = array(value, "presence reply")?;
    if items.len() % 2 != 0 {
        return Err(protocol("presence reply", value));
    }
    let mut presence = HashMap::with_capacity(items.len() / 2);
    for pair in items.chunks_exact(2) {
        let client = string(&pair[0], "client id")?;
        let info = ClientInfo::decode(bytes(&pair[1], "client info")?)
            .map_err(|e| EngineError::Protocol(format!("stored client info: {e}")))?;
        presence.insert(client, info);
    }
    Ok(presence)
}

/// `[num_clients, num_unique_users]` of `GYRE.PRESENCE.STATS`.
pub(super) fn parse_presence_stats(value: &Value) -> Result<PresenceStats, EngineError> {
    let [clients, users] = array(value, "presence stats reply")? else {
        return Err(protocol("presence stats reply", value));
    };
    let count =
        |v: &Value, what: &str| u32::try_from(unsigned(v, what)?).map_err(|_| protocol(what, v));
    Ok(PresenceStats {
        num_clients: count(clients, "num_clients")?,
        num_users: count(users, "num_users")?,
    })
}

/// The integer reply of the commands that only report a count (`GYRE.HISTORY.REMOVE`,
/// `GYRE.PRESENCE.ADD/REM`): checked so that a wrong module version shows up as an error.
pub(super) fn expect_int(value: &Value) -> Result<(), EngineError> {
    int(value, "reply").map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn args(cmd: &Cmd) -> Vec<String> {
        cmd.args_iter()
            .map(|a| match a {
                redis::Arg::Simple(b) => String::from_utf8_lossy(b).into_owned(),
                _ => "<not simple>".into(),
            })
            .collect()
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(seconds(Duration::ZERO), 0);
        assert_eq!(seconds(Duration::from_millis(1)), 1);
        assert_eq!(seconds(Duration::from_secs(300)), 300);
        assert_eq!(seconds(Duration::from_millis(1500)), 2);
    }

    #[test]
    fn publish_arguments() {
        let options = PublishOptions {
            history: Some(HistoryOptions {
                size: 10,
                ttl: Duration::from_secs(300),
                meta_ttl: Duration::ZERO,
            }),
            info: Some(ClientInfo {
                user: "u".into(),
                client: "c".into(),
                conn_info: Bytes::from_static(b"{}"),
                chan_info: Bytes::new(),
            }),
            tags: HashMap::from([("k".to_string(), "v".to_string())]),
            idempotency_key: Some("key".into()),
            idempotency_ttl: Some(Duration::from_secs(30)),
            delta: true,
            version: 7,
            version_epoch: "v2".into(),
        };
        assert_eq!(
            args(&publish("ch", b"data", &options)),
            [
                "GYRE.PUBLISH",
                "ch",
                "data",
                "HISTORY",
                "10",
                "300",
                "META-TTL",
                "0",
                "INFO",
                "c",
                "u",
                "{}",
                "",
                "TAGS",
                "1",
                "k",
                "v",
                "IDEMPOTENCY",
                "key",
                "IDEMPOTENCY-TTL",
                "30",
                "DELTA",
                "VERSION",
                "7",
                "VERSION-EPOCH",
                "v2"
            ]
        );
        assert_eq!(
            args(&publish("ch", b"d", &PublishOptions::default())),
            ["GYRE.PUBLISH", "ch", "d", "HISTORY", "0", "0"]
        );
    }

    #[test]
    fn history_arguments() {
        let query = HistoryQuery {
            since: Some(3),
            limit: Some(0),
            reverse: true,
        };
        assert_eq!(
            args(&history("ch", query)),
            [
                "GYRE.HISTORY",
                "ch",
                "SINCE",
                "3",
                "LIMIT",
                "0",
                "REVERSE",
                "RAW"
            ]
        );
        assert_eq!(
            args(&history("ch", HistoryQuery::default())),
            ["GYRE.HISTORY", "ch", "RAW"]
        );
    }

    #[test]
    fn presence_add_arguments() {
        let info = ClientInfo {
            user: "u".into(),
            client: "c".into(),
            conn_info: Bytes::new(),
            chan_info: Bytes::from_static(b"x"),
        };
        assert_eq!(
            args(&add_presence("ch", &info, Duration::from_millis(10), true)),
            [
                "GYRE.PRESENCE.ADD",
                "ch",
                "c",
                "u",
                "CHANINFO",
                "x",
                "TTL",
                "1",
                "JOINLEAVE"
            ]
        );
    }

    #[test]
    fn history_reply() {
        let body = Publication {
            data: Bytes::from_static(b"hi"),
            ..Default::default()
        }
        .encode_to_vec();
        let reply = Value::Array(vec![
            Value::Int(7),
            Value::BulkString(b"AbCdEfGh".to_vec()),
            Value::Array(vec![Value::Array(vec![
                Value::Int(7),
                Value::BulkString(body),
            ])]),
        ]);
        let result = parse_history(&reply).unwrap();
        assert_eq!(result.position.offset, 7);
        assert_eq!(result.position.epoch, "AbCdEfGh");
        assert_eq!(result.publications[0].offset, 7);
        assert_eq!(&result.publications[0].data[..], b"hi");
        assert!(matches!(
            parse_history(&Value::Int(1)),
            Err(EngineError::Protocol(_))
        ));
    }

    #[test]
    fn presence_replies() {
        let info = ClientInfo {
            user: "u".into(),
            client: "c".into(),
            ..Default::default()
        };
        let reply = Value::Array(vec![
            Value::BulkString(b"c".to_vec()),
            Value::BulkString(info.encode_to_vec()),
        ]);
        assert_eq!(parse_presence(&reply).unwrap()["c"], info);
        let stats = Value::Array(vec![Value::Int(3), Value::Int(2)]);
        assert_eq!(
            parse_presence_stats(&stats).unwrap(),
            PresenceStats {
                num_clients: 3,
                num_users: 2
            }
        );
        assert!(parse_presence(&Value::Array(vec![Value::Nil])).is_err());
    }
}
