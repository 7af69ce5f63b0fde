//! WebSocket permessage-deflate (RFC 7692) around tokio-tungstenite, which has none: the
//! handshake negotiation, and the read side.
//!
//! We always answer `server_no_context_takeover; client_no_context_takeover`: every message is
//! compressed on its own, so a publication is compressed once and the same bytes go to every
//! subscriber that negotiated the extension (`gyre_proto::codec::deflate`), and the client's
//! messages inflate without a per-connection window kept in memory.
//!
//! Writing needs no help: the writer sends pre-compressed payloads as raw frames with RSV1 set.
//! Reading does, because tungstenite fails any frame with RSV1. [`InflatingIo`] sits between
//! the socket and tungstenite and rewrites each compressed message the client sends into one
//! plain frame (masked with the all-zero key, which leaves the payload as it is), passing every
//! other frame through untouched.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, BytesMut};
use gyre_proto::codec::deflate;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The `Sec-WebSocket-Extensions` answer when the client offered permessage-deflate in a form
/// we accept.
pub const RESPONSE: &str =
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// Whether one of the client's offers (`Sec-WebSocket-Extensions` values) can be accepted: a
/// `permessage-deflate` offer whose parameters we can honour. `server_max_window_bits` below 15
/// would need a smaller compression window than the shared broadcast frames use, so such an
/// offer is declined (the connection then goes uncompressed).
pub fn accepts<'a>(offers: impl IntoIterator<Item = &'a str>) -> bool {
    offers
        .into_iter()
        .flat_map(|value| value.split(','))
        .any(|offer| {
            let mut parts = offer.split(';').map(str::trim);
            parts.next() == Some("permessage-deflate")
                && parts.all(|param| {
                    let (name, value) = match param.split_once('=') {
                        Some((name, value)) => (name.trim(), Some(value.trim().trim_matches('"'))),
                        None => (param, None),
                    };
                    match name {
                        "server_no_context_takeover" | "client_no_context_takeover" => {
                            value.is_none()
                        }
                        "client_max_window_bits" => value
                            .is_none_or(|v| v.parse::<u8>().is_ok_and(|b| (8..=15).contains(&b))),
                        "server_max_window_bits" => value == Some("15"),
                        _ => false,
                    }
                })
        })
}

/// The socket as tungstenite reads it: compressed messages arrive inflated.
pub struct InflatingIo<S> {
    inner: S,
    /// `None` when the connection did not negotiate compression: reads pass straight through.
    inflater: Option<Box<Inflater>>,
}

impl<S> InflatingIo<S> {
    pub fn new(inner: S, compressed: bool, max_message_size: usize) -> Self {
        Self {
            inner,
            inflater: compressed.then(|| {
                Box::new(Inflater {
                    limit: max_message_size,
                    ..Inflater::default()
                })
            }),
        }
    }
}

#[derive(Default)]
struct Inflater {
    limit: usize,
    /// Bytes read from the client, not yet a whole frame.
    raw: BytesMut,
    /// Frames ready for tungstenite.
    ready: BytesMut,
    /// A compressed message being reassembled from its fragments: opcode and payload.
    message: Option<(u8, Vec<u8>)>,
    /// The client closed its side.
    eof: bool,
}

/// Where a frame's payload starts, how long it is, and its mask key.
struct FrameHeader {
    header_len: usize,
    payload_len: usize,
    mask: Option<[u8; 4]>,
}

const FIN: u8 = 0x80;
const RSV1: u8 = 0x40;
const MASKED: u8 = 0x80;

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

impl Inflater {
    /// Moves every whole frame of `raw` to `ready`, inflating compressed messages.
    fn process(&mut self) -> io::Result<()> {
        while let Some(FrameHeader {
            header_len: header,
            payload_len,
            mask,
        }) = self.frame_header()?
        {
            let total = header + payload_len;
            if self.raw.len() < total {
                self.raw.reserve(total - self.raw.len());
                return Ok(());
            }
            let first = self.raw[0];
            let opcode = first & 0x0f;
            let compressed = first & RSV1 != 0;
            let fin = first & FIN != 0;
            let control = opcode >= 0x8;
            let frame = self.raw.split_to(total);
            // Control frames, uncompressed messages and their continuations pass through.
            if control || (opcode == 0 && self.message.is_none()) || (opcode != 0 && !compressed) {
                self.ready.put_slice(&frame);
                continue;
            }
            let mut payload = frame[header..].to_vec();
            if let Some(key) = mask {
                for (i, byte) in payload.iter_mut().enumerate() {
                    *byte ^= key[i % 4];
                }
            }
            match &mut self.message {
                Some((_, pending)) => {
                    if pending.len() + payload.len() > self.limit {
                        return Err(invalid("compressed message too large"));
                    }
                    pending.extend_from_slice(&payload);
                }
                None => self.message = Some((opcode, payload)),
            }
            if fin && let Some((opcode, compressed)) = self.message.take() {
                let plain = deflate::inflate(&compressed, self.limit)
                    .map_err(|error| invalid(error.to_string()))?;
                self.write_plain_frame(opcode, &plain);
            }
        }
        Ok(())
    }

    /// Parses the header at the start of `raw`. `None` until the whole header is there.
    fn frame_header(&self) -> io::Result<Option<FrameHeader>> {
        let raw = &self.raw[..];
        if raw.len() < 2 {
            return Ok(None);
        }
        let masked = raw[1] & MASKED != 0;
        let (mut header, len) = match raw[1] & 0x7f {
            126 if raw.len() >= 4 => (4, usize::from(u16::from_be_bytes([raw[2], raw[3]]))),
            127 if raw.len() >= 10 => {
                let len = u64::from_be_bytes(raw[2..10].try_into().expect("8 bytes"));
                (10, usize::try_from(len).unwrap_or(usize::MAX))
            }
            126 | 127 => return Ok(None),
            len => (2, usize::from(len)),
        };
        if len > self.limit.saturating_add(64) {
            return Err(invalid("frame larger than the message size limit"));
        }
        let mask = if masked {
            let Some(key) = raw.get(header..header + 4) else {
                return Ok(None);
            };
            header += 4;
            Some(key.try_into().expect("4 bytes"))
        } else {
            None
        };
        Ok(Some(FrameHeader {
            header_len: header,
            payload_len: len,
            mask,
        }))
    }

    /// One final, uncompressed frame masked with the zero key (servers only accept masked
    /// frames from clients; XOR with zeros changes nothing).
    fn write_plain_frame(&mut self, opcode: u8, payload: &[u8]) {
        self.ready.reserve(payload.len() + 14);
        self.ready.put_u8(FIN | opcode);
        match payload.len() {
            len @ 0..=125 => self.ready.put_u8(MASKED | len as u8),
            len @ 126..=0xffff => {
                self.ready.put_u8(MASKED | 126);
                self.ready.put_u16(len as u16);
            }
            len => {
                self.ready.put_u8(MASKED | 127);
                self.ready.put_u64(len as u64);
            }
        }
        self.ready.put_slice(&[0; 4]);
        self.ready.put_slice(payload);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for InflatingIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let Some(inflater) = this.inflater.as_mut() else {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        };
        loop {
            if !inflater.ready.is_empty() {
                let n = inflater.ready.len().min(buf.remaining());
                buf.put_slice(&inflater.ready[..n]);
                inflater.ready.advance(n);
                if inflater.ready.is_empty() {
                    // Idle connections keep no buffer.
                    inflater.ready = BytesMut::new();
                }
                return Poll::Ready(Ok(()));
            }
            if inflater.eof {
                // Whatever is left is a partial frame: tungstenite reports the broken stream.
                let rest = inflater.raw.split();
                inflater.ready = rest;
                if inflater.ready.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            let mut chunk = [0u8; 4096];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                inflater.eof = true;
                continue;
            }
            inflater.raw.extend_from_slice(read.filled());
            inflater.process()?;
            if inflater.raw.is_empty() {
                inflater.raw = BytesMut::new();
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for InflatingIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use gyre_proto::Encoding;
    use gyre_proto::codec::deflate::{Deflate, message_payload};
    use tokio::io::AsyncReadExt;

    #[test]
    fn offers_we_can_honour_are_accepted() {
        assert!(accepts(["permessage-deflate; client_max_window_bits"]));
        assert!(accepts(["x-webkit-deflate-frame, permessage-deflate"]));
        assert!(accepts([
            "permessage-deflate; server_no_context_takeover; client_max_window_bits=12"
        ]));
        assert!(!accepts(["permessage-deflate; server_max_window_bits=10"]));
        assert!(!accepts(["permessage-deflate; unknown"]));
        assert!(!accepts(["x-webkit-deflate-frame"]));
        assert!(!accepts([]));
    }

    /// A client frame: FIN and RSV1 as given, masked with `key`.
    fn client_frame(first: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
        let mut frame = vec![first];
        match payload.len() {
            len @ 0..=125 => frame.push(MASKED | len as u8),
            len => {
                frame.push(MASKED | 126);
                frame.extend_from_slice(&(len as u16).to_be_bytes());
            }
        }
        frame.extend_from_slice(&key);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        frame
    }

    #[tokio::test]
    async fn compressed_messages_are_rewritten_and_others_pass_through() {
        let message =
            br#"{"id":1,"publish":{"channel":"news","data":{"text":"hello hello hello"}}}"#;
        let piece = Deflate {
            level: 1,
            min_size: 0,
        }
        .compress(message);
        let payload: Bytes = message_payload(Encoding::Json, &[piece]);
        let (first_half, second_half) = payload.split_at(payload.len() / 2);
        let key = [1, 2, 3, 4];
        let mut wire = Vec::new();
        wire.extend(client_frame(0x89, b"ping", key)); // control: passes through
        wire.extend(client_frame(RSV1 | 0x1, first_half, key)); // compressed, fragmented
        wire.extend(client_frame(0x8a, b"pong", key)); // control between fragments
        wire.extend(client_frame(FIN, second_half, key));
        wire.extend(client_frame(FIN | 0x1, b"{}", key)); // plain text
        let mut io = InflatingIo::new(&wire[..], true, 65_536);
        let mut out = Vec::new();
        io.read_to_end(&mut out).await.unwrap();

        let mut expected = Vec::new();
        expected.extend(client_frame(0x89, b"ping", key));
        expected.extend(client_frame(0x8a, b"pong", key));
        expected.extend(client_frame(FIN | 0x1, message, [0; 4]));
        expected.extend(client_frame(FIN | 0x1, b"{}", key));
        assert_eq!(out, expected);
    }

    #[tokio::test]
    async fn a_message_inflating_past_the_limit_fails_the_read() {
        let zeros = vec![0u8; 100_000];
        let piece = Deflate {
            level: 1,
            min_size: 0,
        }
        .compress(&zeros);
        let payload = message_payload(Encoding::Protobuf, &[piece]);
        let wire = client_frame(FIN | RSV1 | 0x2, &payload, [9, 9, 9, 9]);
        let mut io = InflatingIo::new(&wire[..], true, 65_536);
        let mut out = Vec::new();
        let error = io.read_to_end(&mut out).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }
}
