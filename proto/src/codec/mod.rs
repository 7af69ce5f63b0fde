//! Encodings of the client protocol, shared by every transport.
//!
//! A connection speaks one [`Encoding`] for its whole life (WebSocket subprotocol
//! `centrifuge-protobuf`, or `Content-Type: application/octet-stream` on HTTP emulation, selects
//! Protobuf; everything else is JSON). This module is the only place that knows what the bytes look
//! like; transports only add their own envelope (WS frame, SSE `data:` line, HTTP chunk).
//!
//! # Messages and frames
//!
//! A *message* is one `Command`, `Reply` or `Push`. A *frame* is what one transport unit carries
//! (a WebSocket message, a batch written to an HTTP stream, an `/emulation` body) and holds one
//! or more messages (docs/protocol.md#frames-and-batching):
//!
//! | encoding | one message | frame |
//! |---|---|---|
//! | JSON | the JSON object | messages joined by a single `\n`, none after the last |
//! | Protobuf | varint length prefix + message | the plain concatenation |
//!
//! [`encode`] returns one message in exactly that "one message" form, so a publication is encoded
//! once per encoding and the same [`Bytes`] is appended to every subscriber's frame with
//! [`append_to_frame`] or [`FrameBuilder::push`], never re-encoded per connection.
//! [`FrameDecoder`] splits a received frame back into messages, checking the configured maximum
//! message size before anything is allocated or parsed.
//!
//! # Ping and pong
//!
//! Server ping, client pong and the unidirectional ping are all the *empty* message: `{}` in JSON
//! and a zero length prefix (the single byte `0x00`) in Protobuf; see [`Encoding::empty_message`].
//!
//! # Errors
//!
//! [`DecodeError`]: a client frame that cannot be read (the session disconnects with 3501 "bad
//! request"). [`EncodeError`]: a message that cannot be represented in JSON because a raw `bytes`
//! payload is not valid JSON (the session disconnects with 3506 "inappropriate protocol").

#![deny(missing_docs)]

pub mod deflate;
pub mod json;
pub mod protobuf;

#[cfg(test)]
mod tests;

use std::marker::PhantomData;

use bytes::{Bytes, BytesMut};
use serde::{Serialize, de::DeserializeOwned};

use crate::protocol::{Command, EmulationRequest, Push, Reply};

/// Default maximum size of one message inside a frame, in bytes: Centrifugo's default
/// `websocket.message_size_limit` and emulation body limit.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 65_536;

/// The two wire encodings of the client protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Encoding {
    /// Newline-joined JSON objects; WebSocket text frames. The default when nothing is negotiated.
    #[default]
    Json,
    /// Varint-length-delimited Protobuf messages; WebSocket binary frames.
    Protobuf,
}

impl Encoding {
    /// WebSocket subprotocol that selects JSON (centrifuge-js sends none for JSON).
    pub const JSON_WS_SUBPROTOCOL: &'static str = "centrifuge-json";
    /// WebSocket subprotocol that selects Protobuf; the server must echo it in the handshake.
    pub const PROTOBUF_WS_SUBPROTOCOL: &'static str = "centrifuge-protobuf";

    /// The encoding named by a WebSocket subprotocol offered by the client, if it is one of ours.
    pub fn from_ws_subprotocol(subprotocol: &str) -> Option<Self> {
        match subprotocol {
            Self::JSON_WS_SUBPROTOCOL => Some(Self::Json),
            Self::PROTOBUF_WS_SUBPROTOCOL => Some(Self::Protobuf),
            _ => None,
        }
    }

    /// The WebSocket subprotocol to echo for this encoding.
    pub fn ws_subprotocol(self) -> &'static str {
        match self {
            Self::Json => Self::JSON_WS_SUBPROTOCOL,
            Self::Protobuf => Self::PROTOBUF_WS_SUBPROTOCOL,
        }
    }

    /// Whether frames of this encoding go out as binary (WebSocket binary frames,
    /// `application/octet-stream`) rather than UTF-8 text.
    pub fn is_binary(self) -> bool {
        self == Self::Protobuf
    }

    /// The empty message — server ping (empty Reply), client pong (empty Command) and
    /// unidirectional ping (empty Push) — in its "one message" form: `{}` or `0x00`.
    pub fn empty_message(self) -> Bytes {
        match self {
            Self::Json => Bytes::from_static(b"{}"),
            // A message with no fields encodes to zero bytes; only its length prefix remains.
            Self::Protobuf => Bytes::from_static(&[0x00]),
        }
    }
}

/// How one connection's messages look on the wire: its encoding, and the permessage-deflate
/// compression it negotiated, if any. Broadcasts are encoded once per `Wire`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wire {
    /// JSON or Protobuf.
    pub encoding: Encoding,
    /// Compress every message (WebSocket permessage-deflate).
    pub deflate: Option<deflate::Deflate>,
}

impl Wire {
    /// `encoding`, uncompressed.
    pub const fn plain(encoding: Encoding) -> Self {
        Self {
            encoding,
            deflate: None,
        }
    }

    /// A Reply as this connection's outbox holds it.
    pub fn encode_reply(&self, reply: &Reply) -> Result<Bytes, EncodeError> {
        encode_reply(self.encoding, reply).map(|bytes| self.finish(bytes))
    }

    /// An encoded message (from [`encode_reply`]) as this connection's outbox holds it.
    pub fn finish(&self, encoded: Bytes) -> Bytes {
        match &self.deflate {
            Some(deflate) => deflate.compress(&encoded),
            None => encoded,
        }
    }

    /// The empty message (a ping) as this connection's outbox holds it.
    pub fn empty_message(&self) -> Bytes {
        self.finish(self.encoding.empty_message())
    }
}

/// Why a received frame or message could not be decoded. Every variant is a client protocol
/// violation (disconnect 3501 for a client frame).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The frame holds no message at all (Centrifuge: "empty request received").
    #[error("empty frame")]
    EmptyFrame,
    /// A JSON line, or the length a Protobuf prefix declares, is above the configured maximum.
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    MessageTooLarge {
        /// Length of the JSON line without its `\n`, or the declared Protobuf length.
        size: u64,
        /// The configured maximum message size.
        limit: usize,
    },
    /// A JSON line is not a valid JSON object of the expected message type.
    #[error("malformed JSON message: {0}")]
    Json(#[source] serde_json::Error),
    /// A Protobuf message body does not decode as the expected message type.
    #[error("malformed protobuf message: {0}")]
    Protobuf(#[source] prost::DecodeError),
    /// The frame ends in the middle of a varint length prefix.
    #[error("frame ends inside a varint length prefix")]
    TruncatedVarint,
    /// A varint length prefix is longer than 10 bytes or does not fit in 64 bits.
    #[error("invalid varint length prefix")]
    InvalidVarint,
    /// A Protobuf length prefix declares more bytes than the frame has left.
    #[error("message declares {declared} bytes but the frame has only {available} left")]
    TruncatedMessage {
        /// Length declared by the prefix.
        declared: u64,
        /// Bytes remaining in the frame after the prefix.
        available: usize,
    },
}

/// Why a message could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// A raw `bytes` field (`data`, `conn_info`, `chan_info`, …) that JSON embeds verbatim is not
    /// valid UTF-8 JSON. Protobuf never fails: there the payload is opaque bytes.
    #[error("payload is not valid JSON and cannot be sent to a JSON connection: {0}")]
    InvalidRawJson(#[source] serde_json::Error),
}

/// A message type both codecs can handle: every generated protocol message qualifies.
pub trait WireMessage: prost::Message + Default + Serialize + DeserializeOwned {}

impl<T: prost::Message + Default + Serialize + DeserializeOwned> WireMessage for T {}

/// Encodes one message in its frame-ready form: the JSON object, or the Protobuf message with its
/// varint length prefix. The result can be appended to any number of frames of this encoding.
pub fn encode<T: WireMessage>(encoding: Encoding, message: &T) -> Result<Bytes, EncodeError> {
    let mut buf = match encoding {
        // Protobuf reserves its exact size itself.
        Encoding::Protobuf => BytesMut::new(),
        // Payloads are the same size in both encodings and JSON adds key names, so the protobuf
        // size plus a margin is a cheap estimate that avoids regrowing for large publications.
        Encoding::Json => {
            let estimate = message.encoded_len();
            BytesMut::with_capacity(estimate + estimate / 4 + 64)
        }
    };
    encode_into(encoding, message, &mut buf)?;
    Ok(buf.freeze())
}

/// Encodes one Reply (a command result, or `Reply { push, .. }` on bidirectional transports).
pub fn encode_reply(encoding: Encoding, reply: &Reply) -> Result<Bytes, EncodeError> {
    encode(encoding, reply)
}

/// Encodes one bare Push, as unidirectional transports send them
/// (docs/protocol.md#unidirectional-transports).
pub fn encode_push(encoding: Encoding, push: &Push) -> Result<Bytes, EncodeError> {
    encode(encoding, push)
}

/// Encodes one Command (test clients and the bench tool).
pub fn encode_command(encoding: Encoding, command: &Command) -> Result<Bytes, EncodeError> {
    encode(encoding, command)
}

/// Appends one message in its frame-ready form to `buf`, without any separator. On error `buf`
/// is left exactly as it was.
pub fn encode_into<T: WireMessage>(
    encoding: Encoding,
    message: &T,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    match encoding {
        Encoding::Json => json::encode_into(message, buf),
        Encoding::Protobuf => {
            protobuf::encode_into(message, buf);
            Ok(())
        }
    }
}

/// Appends one already-encoded message (from [`encode`]) to a frame under construction: JSON puts
/// a `\n` before it unless the frame is empty; Protobuf needs nothing since the message carries
/// its length prefix. The frame must hold only whole messages of this encoding.
pub fn append_to_frame(encoding: Encoding, frame: &mut BytesMut, message: &[u8]) {
    // A JSON message is never empty (at least `{}`), so an empty frame holds no message yet.
    if encoding == Encoding::Json && !frame.is_empty() {
        frame.reserve(1 + message.len());
        frame.extend_from_slice(&[json::SEPARATOR]);
    }
    frame.extend_from_slice(message);
}

/// Builds one outgoing frame from several messages, reusing its buffer between frames.
///
/// The writer of a connection pushes the shared, pre-encoded publications with [`push`](Self::push)
/// and encodes its own replies directly into the frame with [`encode`](Self::encode) (no
/// intermediate buffer), then hands [`take`](Self::take)'s result to the transport.
#[derive(Debug, Clone)]
pub struct FrameBuilder {
    encoding: Encoding,
    buf: BytesMut,
    messages: usize,
}

impl FrameBuilder {
    /// An empty frame builder.
    pub fn new(encoding: Encoding) -> Self {
        Self::with_capacity(encoding, 0)
    }

    /// An empty frame builder with room for `capacity` bytes.
    pub fn with_capacity(encoding: Encoding, capacity: usize) -> Self {
        Self {
            encoding,
            buf: BytesMut::with_capacity(capacity),
            messages: 0,
        }
    }

    /// The encoding of the frames being built.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// Appends one already-encoded message of this builder's encoding (see [`encode`]).
    pub fn push(&mut self, message: &[u8]) {
        append_to_frame(self.encoding, &mut self.buf, message);
        self.messages += 1;
    }

    /// Encodes one message straight into the frame. On error the frame is unchanged.
    pub fn encode<T: WireMessage>(&mut self, message: &T) -> Result<(), EncodeError> {
        let start = self.buf.len();
        if self.encoding == Encoding::Json && start > 0 {
            self.buf.extend_from_slice(&[json::SEPARATOR]);
        }
        if let Err(error) = encode_into(self.encoding, message, &mut self.buf) {
            self.buf.truncate(start);
            return Err(error);
        }
        self.messages += 1;
        Ok(())
    }

    /// Number of messages in the frame so far.
    pub fn message_count(&self) -> usize {
        self.messages
    }

    /// Size of the frame so far, in bytes.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether the frame holds no message yet (every encoded message is at least one byte).
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Returns the frame built so far and starts a new, empty one.
    ///
    /// The builder keeps no memory: the frame takes the whole buffer. (`split` would leave the
    /// rest of it here, shared with the frame: a builder kept per connection would hold its
    /// largest frame's buffer for as long as the connection lives.)
    pub fn take(&mut self) -> Bytes {
        self.messages = 0;
        std::mem::take(&mut self.buf).freeze()
    }
}

/// Splits a received frame into messages, in order; an iterator of `Result<T, DecodeError>`.
///
/// Rules (Centrifuge's `decode_stream.go`): a frame without any message yields
/// [`DecodeError::EmptyFrame`]; a JSON frame may end with one `\n`, but any other empty line is
/// malformed JSON; each JSON line (without its `\n`) and each declared Protobuf length must be at
/// most `max_message_size`, checked before the message is parsed. After the first error the
/// iterator ends, so a session processes the commands before the bad one and then disconnects.
///
/// Protobuf `bytes` fields are zero-copy slices of `frame`.
#[derive(Debug, Clone)]
pub struct FrameDecoder<T> {
    encoding: Encoding,
    rest: Bytes,
    max_message_size: usize,
    decoded: usize,
    failed: bool,
    _message: PhantomData<fn() -> T>,
}

impl<T: WireMessage> FrameDecoder<T> {
    /// A decoder over one received frame.
    pub fn new(encoding: Encoding, frame: Bytes, max_message_size: usize) -> Self {
        Self {
            encoding,
            rest: frame,
            max_message_size,
            decoded: 0,
            failed: false,
            _message: PhantomData,
        }
    }

    /// Number of messages decoded so far.
    pub fn decoded(&self) -> usize {
        self.decoded
    }

    fn next_message(&mut self) -> Option<Result<T, DecodeError>> {
        if self.rest.is_empty() {
            return (self.decoded == 0).then_some(Err(DecodeError::EmptyFrame));
        }
        let limit = self.max_message_size;
        let result =
            match self.encoding {
                Encoding::Json => json::split_line(&mut self.rest, limit)
                    .and_then(|line| json::decode_message(&line)),
                Encoding::Protobuf => protobuf::split_delimited(&mut self.rest, limit)
                    .and_then(protobuf::decode_message),
            };
        Some(result)
    }
}

impl<T: WireMessage> Iterator for FrameDecoder<T> {
    type Item = Result<T, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let item = self.next_message()?;
        match item {
            Ok(_) => self.decoded += 1,
            Err(_) => self.failed = true,
        }
        Some(item)
    }
}

impl<T: WireMessage> std::iter::FusedIterator for FrameDecoder<T> {}

/// Splits a client frame into Commands (see [`FrameDecoder`] for the rules).
pub fn decode_commands(
    encoding: Encoding,
    frame: Bytes,
    max_message_size: usize,
) -> FrameDecoder<Command> {
    FrameDecoder::new(encoding, frame, max_message_size)
}

/// Splits a server frame of a bidirectional transport into Replies (test clients, bench tool).
pub fn decode_replies(
    encoding: Encoding,
    frame: Bytes,
    max_message_size: usize,
) -> FrameDecoder<Reply> {
    FrameDecoder::new(encoding, frame, max_message_size)
}

/// Splits a frame of a unidirectional transport into bare Pushes (test clients, bench tool).
pub fn decode_pushes(
    encoding: Encoding,
    frame: Bytes,
    max_message_size: usize,
) -> FrameDecoder<Push> {
    FrameDecoder::new(encoding, frame, max_message_size)
}

/// Decodes one message that is not framed: a whole JSON document, or a plain Protobuf message
/// without length prefix. Used for bodies that carry exactly one message, such as the
/// `ConnectRequest` of unidirectional transports; the transport bounds the body size.
pub fn decode_message<T: WireMessage>(encoding: Encoding, bytes: Bytes) -> Result<T, DecodeError> {
    match encoding {
        Encoding::Json => json::decode_message(&bytes),
        Encoding::Protobuf => protobuf::decode_message(bytes),
    }
}

/// Decodes the body of an `/emulation` POST (docs/protocol.md#the-emulation-endpoint) and
/// returns it with `data` holding the frame of Commands, ready for [`decode_commands`].
///
/// The JSON form carries that frame as a JSON *string* (`"data":"{\"id\":2,…}"`), which is
/// unescaped here; the Protobuf form carries the varint-delimited frame as plain bytes.
pub fn decode_emulation_request(
    encoding: Encoding,
    body: Bytes,
) -> Result<EmulationRequest, DecodeError> {
    let mut request: EmulationRequest = decode_message(encoding, body)?;
    if encoding == Encoding::Json && !request.data.is_empty() {
        let frame: String = serde_json::from_slice(&request.data).map_err(DecodeError::Json)?;
        request.data = Bytes::from(frame);
    }
    Ok(request)
}

/// Encodes the body of an `/emulation` POST carrying `frame` (test clients). The inverse of
/// [`decode_emulation_request`]; a JSON `frame` must be UTF-8.
pub fn encode_emulation_request(
    encoding: Encoding,
    node: &str,
    session: &str,
    frame: &[u8],
) -> Result<Bytes, EncodeError> {
    let data = match encoding {
        Encoding::Protobuf => Bytes::copy_from_slice(frame),
        Encoding::Json => {
            let text = std::str::from_utf8(frame)
                .map_err(|error| EncodeError::InvalidRawJson(serde::ser::Error::custom(error)))?;
            // The JSON string literal is itself the raw JSON value embedded as `data`.
            Bytes::from(serde_json::to_vec(text).map_err(EncodeError::InvalidRawJson)?)
        }
    };
    let request = EmulationRequest {
        node: node.to_owned(),
        session: session.to_owned(),
        data,
    };
    Ok(match encoding {
        Encoding::Json => encode(encoding, &request)?,
        Encoding::Protobuf => Bytes::from(prost::Message::encode_to_vec(&request)),
    })
}
