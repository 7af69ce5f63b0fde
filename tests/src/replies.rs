//! Commands and replies: run a command and turn its reply into plain values, panicking with the
//! command that failed; GYRE.PUBLISH / GYRE.HISTORY wrappers; XRANGE, HGETALL, INFO and AOF
//! readers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gyre_proto::{ClientInfo, Publication};
use redis::{Connection, RedisError, RedisResult, Value};

fn build_cmd(args: &[&str]) -> redis::Cmd {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c
}

/// Runs a command and returns the reply or the error.
pub fn try_cmd(con: &mut Connection, args: &[&str]) -> RedisResult<Value> {
    build_cmd(args).query::<Value>(con)
}

/// Runs a command and returns the reply; panics (naming the command) on an error reply.
pub fn cmd(con: &mut Connection, args: &[&str]) -> Value {
    try_cmd(con, args).unwrap_or_else(|e| panic!("{args:?} failed: {}", error_text(&e)))
}

/// Like [`cmd`] but with binary arguments.
pub fn cmd_bytes(con: &mut Connection, args: &[&[u8]]) -> Value {
    let mut c = redis::cmd(std::str::from_utf8(args[0]).expect("utf-8 command name"));
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query::<Value>(con)
        .unwrap_or_else(|e| panic!("{:?} failed: {}", args[0], error_text(&e)))
}

/// `"<CODE> <detail>"` of an error reply (e.g. `ERR syntax error near 'X'`).
pub fn error_text(e: &RedisError) -> String {
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        (Some(code), None) => code.to_string(),
        _ => e.to_string(),
    }
}

/// Runs a command that must fail with an error reply; returns the error text. Panics if the
/// command succeeds or the connection fails (which would mean the server died).
pub fn expect_error(con: &mut Connection, args: &[&str]) -> String {
    match try_cmd(con, args) {
        Ok(v) => panic!("{args:?} should have failed but replied {v:?}"),
        Err(e) => {
            assert!(
                e.code().is_some(),
                "{args:?} did not get an error reply but a client/IO error: {e}"
            );
            error_text(&e)
        }
    }
}

/// Asserts the server still answers PING on this connection.
pub fn assert_ping(con: &mut Connection, after: &str) {
    let pong: String = redis::cmd("PING")
        .query(con)
        .unwrap_or_else(|e| panic!("server did not answer PING after {after}: {e}"));
    assert_eq!(pong, "PONG", "PING after {after}");
}

pub fn as_int(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        other => panic!("expected an integer, got {other:?}"),
    }
}

pub fn as_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::BulkString(b) => b.clone(),
        Value::SimpleString(s) => s.clone().into_bytes(),
        Value::VerbatimString { text, .. } => text.clone().into_bytes(),
        other => panic!("expected a string, got {other:?}"),
    }
}

pub fn as_string(v: &Value) -> String {
    String::from_utf8(as_bytes(v)).expect("utf-8 string reply")
}

pub fn as_array(v: &Value) -> &[Value] {
    match v {
        Value::Array(items) | Value::Set(items) => items,
        other => panic!("expected an array, got {other:?}"),
    }
}

pub fn as_strings(v: &Value) -> Vec<String> {
    as_array(v).iter().map(as_string).collect()
}

/// `GYRE.PUBLISH <channel> <data> <opts…>` → `(offset, epoch)`.
pub fn publish(con: &mut Connection, channel: &str, data: &str, opts: &[&str]) -> (i64, String) {
    let mut args = vec!["GYRE.PUBLISH", channel, data];
    args.extend_from_slice(opts);
    let reply = cmd(con, &args);
    let items = as_array(&reply);
    assert_eq!(items.len(), 2, "{args:?} reply {reply:?}");
    (as_int(&items[0]), as_string(&items[1]))
}

/// `GYRE.PUBLISH … HISTORY <size> <ttl>`.
pub fn publish_hist(
    con: &mut Connection,
    channel: &str,
    data: &str,
    size: u32,
    ttl: u32,
) -> (i64, String) {
    publish(
        con,
        channel,
        data,
        &["HISTORY", &size.to_string(), &ttl.to_string()],
    )
}

/// One entry of a (non-RAW) `GYRE.HISTORY` reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub offset: i64,
    pub data: Vec<u8>,
    pub time_ms: i64,
    pub info: Vec<String>,
    pub tags: Vec<String>,
}

/// A `GYRE.HISTORY` reply.
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    pub top: i64,
    pub epoch: String,
    pub entries: Vec<Entry>,
}

impl History {
    pub fn offsets(&self) -> Vec<i64> {
        self.entries.iter().map(|e| e.offset).collect()
    }

    pub fn data(&self) -> Vec<String> {
        self.entries
            .iter()
            .map(|e| String::from_utf8_lossy(&e.data).into_owned())
            .collect()
    }
}

fn history_value(con: &mut Connection, channel: &str, opts: &[&str]) -> (i64, String, Vec<Value>) {
    let mut args = vec!["GYRE.HISTORY", channel];
    args.extend_from_slice(opts);
    let reply = cmd(con, &args);
    let items = as_array(&reply);
    assert_eq!(items.len(), 3, "{args:?} reply {reply:?}");
    (
        as_int(&items[0]),
        as_string(&items[1]),
        as_array(&items[2]).to_vec(),
    )
}

/// `GYRE.HISTORY <channel> <opts…>` (without RAW).
pub fn history(con: &mut Connection, channel: &str, opts: &[&str]) -> History {
    let (top, epoch, raw) = history_value(con, channel, opts);
    let entries = raw
        .iter()
        .map(|e| {
            let f = as_array(e);
            assert_eq!(f.len(), 5, "history entry {e:?}");
            Entry {
                offset: as_int(&f[0]),
                data: as_bytes(&f[1]),
                time_ms: as_int(&f[2]),
                info: as_strings(&f[3]),
                tags: as_strings(&f[4]),
            }
        })
        .collect();
    History {
        top,
        epoch,
        entries,
    }
}

/// `GYRE.HISTORY <channel> <opts…> RAW` → `(top, epoch, [(offset, Publication bytes)])`.
pub fn history_raw(
    con: &mut Connection,
    channel: &str,
    opts: &[&str],
) -> (i64, String, Vec<(i64, Vec<u8>)>) {
    let mut all = opts.to_vec();
    all.push("RAW");
    let (top, epoch, raw) = history_value(con, channel, &all);
    let entries = raw
        .iter()
        .map(|e| {
            let f = as_array(e);
            assert_eq!(f.len(), 2, "RAW history entry {e:?}");
            (as_int(&f[0]), as_bytes(&f[1]))
        })
        .collect();
    (top, epoch, entries)
}

/// Decodes a Publication protobuf.
pub fn decode_publication(bytes: &[u8]) -> Publication {
    <Publication as prost::Message>::decode(bytes).expect("valid Publication protobuf")
}

/// Decodes a ClientInfo protobuf.
pub fn decode_client_info(bytes: &[u8]) -> ClientInfo {
    <ClientInfo as prost::Message>::decode(bytes).expect("valid ClientInfo protobuf")
}

/// One stream entry: `(id, [(field, value)])`.
pub type StreamEntry = (String, Vec<(String, Vec<u8>)>);

/// `XRANGE <key> - +`.
pub fn xrange(con: &mut Connection, key: &str) -> Vec<StreamEntry> {
    let reply = cmd(con, &["XRANGE", key, "-", "+"]);
    as_array(&reply)
        .iter()
        .map(|e| {
            let f = as_array(e);
            let fields = as_array(&f[1])
                .chunks(2)
                .map(|kv| (as_string(&kv[0]), as_bytes(&kv[1])))
                .collect();
            (as_string(&f[0]), fields)
        })
        .collect()
}

/// `HGETALL <key>` as a map of strings (values lossily decoded).
pub fn hgetall(con: &mut Connection, key: &str) -> BTreeMap<String, String> {
    let reply = cmd(con, &["HGETALL", key]);
    let items = match &reply {
        Value::Map(pairs) => {
            return pairs
                .iter()
                .map(|(k, v)| (as_string(k), as_string(v)))
                .collect();
        }
        other => as_array(other),
    };
    items
        .chunks(2)
        .map(|kv| {
            (
                as_string(&kv[0]),
                String::from_utf8_lossy(&as_bytes(&kv[1])).into_owned(),
            )
        })
        .collect()
}

pub fn exists(con: &mut Connection, key: &str) -> bool {
    as_int(&cmd(con, &["EXISTS", key])) == 1
}

/// `TTL <key>` in seconds (-1 no expiry, -2 missing).
pub fn ttl(con: &mut Connection, key: &str) -> i64 {
    as_int(&cmd(con, &["TTL", key]))
}

/// `INFO <section>` parsed into `field → value` (comment lines skipped).
pub fn info_section(con: &mut Connection, section: &str) -> BTreeMap<String, String> {
    let text = as_string(&cmd(con, &["INFO", section]));
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Every command (as a list of arguments) in the `*.aof` files of `dir/appendonlydir`.
pub fn aof_commands(dir: &Path) -> Vec<Vec<Vec<u8>>> {
    let aof_dir = dir.join("appendonlydir");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&aof_dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", aof_dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "aof"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        let mut reader = &bytes[..];
        let mut parser = redis::Parser::new();
        // The parser reads ahead, so the position is counted by re-encoding each command: Redis
        // writes the AOF in the same canonical form (`*N`, then `$len` bulk strings). A truncated
        // or non-canonical file fails on the next parse instead of ending silently.
        let mut pos = 0;
        while pos < bytes.len() {
            match parser.parse_value(&mut reader) {
                Ok(Value::Array(items)) => {
                    let args: Vec<Vec<u8>> = items
                        .iter()
                        .map(|v| match v {
                            Value::BulkString(b) => b.clone(),
                            Value::SimpleString(s) => s.clone().into_bytes(),
                            _ => Vec::new(),
                        })
                        .collect();
                    let mut encoded = redis::Cmd::new();
                    for a in &args {
                        encoded.arg(a.as_slice());
                    }
                    pos += encoded.get_packed_command().len();
                    out.push(args);
                }
                other => panic!(
                    "{}: unexpected AOF content at byte {pos}: {other:?}",
                    file.display()
                ),
            }
        }
    }
    out
}
