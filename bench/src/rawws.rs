//! A minimal WebSocket client with permessage-deflate (RFC 7692) for `--target gyre-ws-deflate`.
//!
//! tokio-tungstenite fails every frame with RSV1 set, so this client does the upgrade itself over
//! a `TcpStream`, offers `permessage-deflate; client_max_window_bits`, checks the 101 and the
//! extension in the answer, writes masked (uncompressed) client frames and reads server frames,
//! inflating compressed messages with [`gyre_proto::codec::deflate::inflate`] (no context
//! takeover: each message inflates on its own). Ping is answered with pong; close ends the
//! connection. Per connection it holds the socket and one read buffer that starts at 4 KiB and
//! shrinks back after a large message.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// The offer sent in `Sec-WebSocket-Extensions`.
pub const OFFER: &str = "permessage-deflate; client_max_window_bits";

const READ_CHUNK: usize = 4096;
const MAX_HANDSHAKE: usize = 16 * 1024;

const FIN: u8 = 0x80;
const RSV1: u8 = 0x40;
const OP_CONT: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// What the server's frames cost on the wire, counted by [`RawWs`] as they are read.
#[derive(Default)]
pub struct WireCounters {
    /// Bytes of server frames (headers + payloads) carrying data messages.
    pub bytes: AtomicU64,
    /// Data messages received.
    pub messages: AtomicU64,
    /// Of those, messages that came compressed (RSV1).
    pub compressed: AtomicU64,
    /// Bytes of data messages after inflating.
    pub inflated_bytes: AtomicU64,
}

/// One client connection.
pub struct RawWs {
    tcp: TcpStream,
    buf: Vec<u8>,
    /// Whether the server answered with permessage-deflate.
    pub deflate: bool,
    /// The server's `Sec-WebSocket-Extensions` answer (empty when none).
    pub extensions: String,
    mask_state: u64,
    max_message: usize,
    /// A fragmented message being reassembled: opcode, compressed, payload.
    partial: Option<(u8, bool, Vec<u8>)>,
}

/// Where a frame's payload starts and how long it is.
struct Header {
    first: u8,
    header_len: usize,
    payload_len: usize,
    mask: Option<[u8; 4]>,
}

fn parse_header(buf: &[u8], max: usize) -> Result<Option<Header>, String> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (first, second) = (buf[0], buf[1]);
    let masked = second & 0x80 != 0;
    let (mut header_len, payload_len) = match second & 0x7f {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (4, usize::from(u16::from_be_bytes([buf[2], buf[3]])))
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let len = u64::from_be_bytes(buf[2..10].try_into().unwrap());
            (10, usize::try_from(len).map_err(|_| "frame too large")?)
        }
        n => (2, usize::from(n)),
    };
    if payload_len > max {
        return Err(format!("frame of {payload_len} bytes over the limit"));
    }
    let mask = if masked {
        if buf.len() < header_len + 4 {
            return Ok(None);
        }
        let m = buf[header_len..header_len + 4].try_into().unwrap();
        header_len += 4;
        Some(m)
    } else {
        None
    };
    Ok(Some(Header {
        first,
        header_len,
        payload_len,
        mask,
    }))
}

/// A masked client frame (FIN, no RSV bits).
fn client_frame(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(FIN | opcode);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// The value of header `name` (case-insensitive) in an HTTP response head, all values joined.
fn header_value(head: &str, name: &str) -> Option<String> {
    let values: Vec<&str> = head
        .split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

/// Whether an extensions answer holds permessage-deflate.
pub fn has_deflate(extensions: &str) -> bool {
    extensions
        .split(',')
        .any(|e| e.split(';').next().map(str::trim) == Some("permessage-deflate"))
}

impl RawWs {
    /// TCP connect + upgrade of `path` on `authority`, offering permessage-deflate.
    pub async fn connect(
        addr: std::net::SocketAddr,
        authority: &str,
        path: &str,
        max_message: usize,
    ) -> Result<Self, String> {
        let mut tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("tcp connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let key = generate_key();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Extensions: {OFFER}\r\n\r\n"
        );
        tcp.write_all(request.as_bytes())
            .await
            .map_err(|e| format!("ws handshake: {e}"))?;
        let mut buf = Vec::with_capacity(READ_CHUNK);
        let end = loop {
            if let Some(pos) = memchr::memmem::find(&buf, b"\r\n\r\n") {
                break pos + 4;
            }
            if buf.len() > MAX_HANDSHAKE {
                return Err("ws handshake: response head too large".into());
            }
            buf.reserve(READ_CHUNK);
            let n = tcp
                .read_buf(&mut buf)
                .await
                .map_err(|e| format!("ws handshake: {e}"))?;
            if n == 0 {
                return Err("ws handshake: eof".into());
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let status = head.lines().next().unwrap_or_default();
        if status.split_whitespace().nth(1) != Some("101") {
            return Err(format!("ws handshake: {status}"));
        }
        let accept = header_value(&head, "sec-websocket-accept").unwrap_or_default();
        if accept != derive_accept_key(key.as_bytes()) {
            return Err("ws handshake: bad Sec-WebSocket-Accept".into());
        }
        let extensions = header_value(&head, "sec-websocket-extensions").unwrap_or_default();
        buf.drain(..end);
        Ok(Self {
            tcp,
            buf,
            deflate: has_deflate(&extensions),
            extensions,
            mask_state: payload_seed(),
            max_message,
            partial: None,
        })
    }

    fn next_mask(&mut self) -> [u8; 4] {
        // xorshift64: client masks only need to be unpredictable to intermediaries, not secret.
        let mut x = self.mask_state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.mask_state = x;
        (x as u32).to_le_bytes()
    }

    async fn send(&mut self, opcode: u8, payload: &[u8]) -> Result<(), String> {
        let mask = self.next_mask();
        let frame = client_frame(opcode, payload, mask);
        self.tcp
            .write_all(&frame)
            .await
            .map_err(|e| format!("write: {e}"))
    }

    /// Sends a text message (uncompressed: RSV1 is optional for the client).
    pub async fn send_text(&mut self, text: &str) -> Result<(), String> {
        self.send(OP_TEXT, text.as_bytes()).await
    }

    /// The next data message (inflated), answering pings meanwhile. `Err` holds why the
    /// connection ended (close frame, EOF, protocol error).
    pub async fn next_message(&mut self, wire: &WireCounters) -> Result<Vec<u8>, String> {
        loop {
            if let Some(msg) = self.take_frame(wire).await? {
                return Ok(msg);
            }
        }
    }

    /// Reads until one whole frame is buffered, handles it; `Some` for a complete data message.
    async fn take_frame(&mut self, wire: &WireCounters) -> Result<Option<Vec<u8>>, String> {
        let h = loop {
            if let Some(h) = parse_header(&self.buf, self.max_message)?
                && self.buf.len() >= h.header_len + h.payload_len
            {
                break h;
            }
            if self.buf.capacity() - self.buf.len() < 1024 {
                self.buf.reserve(READ_CHUNK);
            }
            let n = self
                .tcp
                .read_buf(&mut self.buf)
                .await
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("eof".into());
            }
        };
        let total = h.header_len + h.payload_len;
        let mut payload = self.buf[h.header_len..total].to_vec();
        self.buf.drain(..total);
        if self.buf.is_empty() && self.buf.capacity() > 4 * READ_CHUNK {
            self.buf = Vec::with_capacity(READ_CHUNK);
        }
        if let Some(mask) = h.mask {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
        }
        let fin = h.first & FIN != 0;
        let rsv1 = h.first & RSV1 != 0;
        if h.first & 0x30 != 0 {
            return Err("frame with RSV2/RSV3".into());
        }
        let opcode = h.first & 0x0f;
        match opcode {
            OP_PING => {
                self.send(OP_PONG, &payload).await?;
                Ok(None)
            }
            OP_PONG => Ok(None),
            OP_CLOSE => {
                let reason = if payload.len() >= 2 {
                    format!(
                        "close {} {}",
                        u16::from_be_bytes([payload[0], payload[1]]),
                        String::from_utf8_lossy(&payload[2..])
                    )
                } else {
                    "close".to_string()
                };
                let _ = self.send(OP_CLOSE, &payload[..payload.len().min(2)]).await;
                Err(reason)
            }
            OP_TEXT | OP_BINARY | OP_CONT => {
                wire.bytes.fetch_add(total as u64, Relaxed);
                if rsv1 && !self.deflate {
                    return Err("RSV1 frame without permessage-deflate".into());
                }
                let (op, compressed, data) = if opcode == OP_CONT {
                    let (op, compressed, mut data) = self
                        .partial
                        .take()
                        .ok_or("continuation without a message")?;
                    if data.len() + payload.len() > self.max_message {
                        return Err("message over the limit".into());
                    }
                    data.extend_from_slice(&payload);
                    (op, compressed, data)
                } else {
                    if self.partial.is_some() {
                        return Err("new message inside a fragmented one".into());
                    }
                    (opcode, rsv1, payload)
                };
                if !fin {
                    self.partial = Some((op, compressed, data));
                    return Ok(None);
                }
                wire.messages.fetch_add(1, Relaxed);
                let data = if compressed {
                    wire.compressed.fetch_add(1, Relaxed);
                    gyre_proto::codec::deflate::inflate(&data, self.max_message)
                        .map_err(|e| format!("inflate: {e}"))?
                } else {
                    data
                };
                wire.inflated_bytes.fetch_add(data.len() as u64, Relaxed);
                Ok(Some(data))
            }
            op => Err(format!("unknown opcode {op}")),
        }
    }
}

fn payload_seed() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Relaxed);
    (crate::payload::now_ns() ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1
}

/// Size of the header of an unmasked server frame with `len` bytes of payload.
pub fn server_header_len(len: usize) -> usize {
    match len {
        n if n < 126 => 2,
        n if n <= 0xffff => 4,
        _ => 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames() {
        let f = client_frame(OP_TEXT, b"hello", [1, 2, 3, 4]);
        assert_eq!(f[0], 0x81);
        assert_eq!(f[1], 0x80 | 5);
        let h = parse_header(&f, 1 << 20).unwrap().unwrap();
        assert_eq!((h.header_len, h.payload_len), (6, 5));
        let m = h.mask.unwrap();
        let p: Vec<u8> = f[6..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ m[i % 4])
            .collect();
        assert_eq!(p, b"hello");
        let big = client_frame(OP_BINARY, &[0u8; 300], [0; 4]);
        let h = parse_header(&big, 1 << 20).unwrap().unwrap();
        assert_eq!((h.header_len, h.payload_len), (8, 300));
        assert!(parse_header(&big[..3], 1 << 20).unwrap().is_none());
        assert!(parse_header(&big, 100).is_err());
        let mut huge = vec![0x82, 127];
        huge.extend_from_slice(&70_000u64.to_be_bytes());
        let h = parse_header(&huge, 1 << 20).unwrap().unwrap();
        assert_eq!((h.header_len, h.payload_len), (10, 70_000));
        assert_eq!(server_header_len(125), 2);
        assert_eq!(server_header_len(126), 4);
        assert_eq!(server_header_len(70_000), 10);
    }

    #[test]
    fn headers() {
        let head = "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\
                    Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n\r\n";
        let ext = header_value(head, "sec-websocket-extensions").unwrap();
        assert!(has_deflate(&ext));
        assert!(!has_deflate("x-webkit-deflate-frame"));
        assert!(header_value(head, "sec-websocket-accept").is_none());
    }

    #[test]
    fn inflates_what_the_server_compresses() {
        let msg = br#"{"push":{"channel":"c","pub":{"data":{"x":"aaaaaaaaaaaaaaaaaaaaaaaa"}}}}"#;
        let d = gyre_proto::codec::deflate::Deflate {
            level: 1,
            min_size: 0,
        };
        let piece = d.compress(msg);
        let payload = gyre_proto::codec::deflate::message_payload(
            gyre_proto::Encoding::Json,
            std::slice::from_ref(&piece),
        );
        let out = gyre_proto::codec::deflate::inflate(&payload, 1 << 20).unwrap();
        assert_eq!(out, msg);
    }
}
