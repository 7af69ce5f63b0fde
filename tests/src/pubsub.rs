//! PUB/SUB: [`Subscriber`] (SUBSCRIBE or SSUBSCRIBE on a raw unix socket, with timeouts) and the
//! barrier that proves exactly which messages a command published.
//!
//! RESP encoding and decoding come from the `redis` crate (`Cmd::get_packed_command`,
//! [`redis::Parser`]). Its `PubSub` type is not used: the sync API has no SSUBSCRIBE, ignores
//! `smessage` frames over RESP2, and unsubscribes when dropped.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gyre_proto::redis_payload::{ChannelEvent, decode};
use redis::{Connection, Parser, Value};

use crate::server::{IO_TIMEOUT, RedisServer};

static BARRIER_SEQ: AtomicU64 = AtomicU64::new(0);
const BARRIER_PREFIX: &[u8] = b"gyre-test-barrier:";

/// A raw PUB/SUB connection (RESP2 over the server's unix socket) subscribed to one channel.
/// Messages queue in the socket until read, so no background thread is needed.
pub struct Subscriber {
    stream: UnixStream,
    /// Keeps a partly received reply across read timeouts.
    parser: Parser,
    pending: VecDeque<Vec<u8>>,
    channel: String,
    sharded: bool,
}

/// Reads the socket with the time left until `deadline` as read timeout (at least 1 ms), retrying
/// reads interrupted by a signal.
struct DeadlineReader<'a> {
    stream: &'a mut UnixStream,
    deadline: Instant,
}

impl Read for DeadlineReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let wait = self.deadline.saturating_duration_since(Instant::now());
            self.stream
                .set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
            match self.stream.read(buf) {
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }
}

/// The bytes of a bulk or simple string reply.
fn value_bytes(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

impl Subscriber {
    pub(crate) fn new(server: &RedisServer, channel: &str, sharded: bool) -> Self {
        let stream = UnixStream::connect(server.socket()).expect("connect subscriber");
        let mut sub = Subscriber {
            stream,
            parser: Parser::new(),
            pending: VecDeque::new(),
            channel: channel.to_string(),
            sharded,
        };
        let verb = if sharded { "SSUBSCRIBE" } else { "SUBSCRIBE" };
        sub.stream
            .write_all(&redis::cmd(verb).arg(channel).get_packed_command())
            .expect("send SUBSCRIBE");
        let confirm: &[u8] = if sharded { b"ssubscribe" } else { b"subscribe" };
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            let value = sub
                .read_value(deadline)
                .unwrap_or_else(|| panic!("no subscribe confirmation for {channel}"));
            match &value {
                Value::Array(items) if items.first().and_then(value_bytes) == Some(confirm) => {
                    break;
                }
                Value::ServerError(e) => panic!("subscribe to {channel} failed: {e}"),
                _ => sub.push_message(value),
            }
        }
        sub
    }

    /// The channel this subscriber listens to.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The next reply, or `None` if none is complete by `deadline`.
    fn read_value(&mut self, deadline: Instant) -> Option<Value> {
        let reader = DeadlineReader {
            stream: &mut self.stream,
            deadline,
        };
        match self.parser.parse_value(reader) {
            Ok(value) => Some(value),
            Err(e) if e.is_timeout() => None,
            Err(e) if e.is_connection_dropped() => {
                panic!("subscriber connection closed by the server: {e}")
            }
            Err(e) if e.is_io_error() => panic!("subscriber read: {e}"),
            Err(e) => panic!("subscriber got malformed RESP: {e}"),
        }
    }

    fn push_message(&mut self, value: Value) {
        if let Value::Array(items) = &value {
            let kind = items.first().and_then(value_bytes);
            if matches!(kind, Some(b"message") | Some(b"smessage"))
                && items.len() == 3
                && let Some(payload) = value_bytes(&items[2])
            {
                self.pending.push_back(payload.to_vec());
            }
        }
    }

    /// The next raw payload, or `None` if none arrives within `timeout`.
    pub fn next_payload(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        while self.pending.is_empty() {
            let value = self.read_value(deadline)?;
            self.push_message(value);
        }
        self.pending.pop_front()
    }

    /// The next payload decoded with `gyre_proto::redis_payload::decode`; panics on timeout or
    /// an undecodable payload.
    pub fn next_event(&mut self, timeout: Duration) -> ChannelEvent {
        let payload = self
            .next_payload(timeout)
            .unwrap_or_else(|| panic!("no message on {} within {timeout:?}", self.channel));
        decode_payload(&payload)
    }

    /// Publishes a barrier message on the subscribed channel through `publisher` (PUBLISH or
    /// SPUBLISH, so it travels after every message already published, including over
    /// replication when `publisher` is the primary) and returns every raw payload received
    /// before it.
    pub fn payloads_until_barrier(&mut self, publisher: &mut Connection) -> Vec<Vec<u8>> {
        let seq = BARRIER_SEQ.fetch_add(1, Ordering::Relaxed);
        let mut marker = BARRIER_PREFIX.to_vec();
        marker.extend_from_slice(format!("{}:{seq}", std::process::id()).as_bytes());
        let verb = if self.sharded { "SPUBLISH" } else { "PUBLISH" };
        redis::cmd(verb)
            .arg(&self.channel)
            .arg(&marker)
            .query::<i64>(publisher)
            .expect("publish barrier");
        let mut out = Vec::new();
        loop {
            let payload = self.next_payload(IO_TIMEOUT).unwrap_or_else(|| {
                panic!(
                    "barrier on {} did not arrive within {IO_TIMEOUT:?}",
                    self.channel
                )
            });
            if payload == marker {
                return out;
            }
            if payload.starts_with(BARRIER_PREFIX) {
                continue; // a stale barrier of an earlier call
            }
            out.push(payload);
        }
    }

    /// Like [`Subscriber::payloads_until_barrier`], decoded.
    pub fn events_until_barrier(&mut self, publisher: &mut Connection) -> Vec<ChannelEvent> {
        self.payloads_until_barrier(publisher)
            .iter()
            .map(|p| decode_payload(p))
            .collect()
    }
}

/// Decodes a PUB/SUB payload, panicking with the bytes when it is not valid.
pub fn decode_payload(payload: &[u8]) -> ChannelEvent {
    decode(payload).unwrap_or_else(|e| {
        panic!(
            "undecodable PUB/SUB payload {:?}: {e}",
            String::from_utf8_lossy(payload)
        )
    })
}
