//! WebSocket permessage-deflate (RFC 7692) for encoded messages, compressed once per broadcast.
//!
//! With `server_no_context_takeover` a compressed message depends on nothing sent before, so one
//! compressed copy of a publication serves every subscriber that negotiated the extension.
//! Each message is compressed on its own into a *piece*: deflate blocks ending with a sync flush
//! (the empty stored block `00 00 ff ff`), which leaves the stream byte-aligned. Pieces from fresh
//! compressors concatenate into one valid deflate stream, so a writer can still put a batch of
//! queued messages into one WebSocket message ([`message_payload`]): the pieces, separated by a
//! piece holding the encoding's separator, minus the last four bytes (RFC 7692 §7.2.1).

use std::cell::RefCell;

use bytes::{BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

use super::Encoding;

/// How a connection that negotiated permessage-deflate gets its messages compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deflate {
    /// zlib level, 1 (fastest) to 9.
    pub level: u8,
    /// Messages shorter than this are sent as stored (uncompressed) blocks: compressing them
    /// costs more CPU than the bytes it saves.
    pub min_size: usize,
}

/// The tail of every piece, removed from the end of a message (RFC 7692 §7.2.1).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

thread_local! {
    /// Reused between messages (reset each time: no context is carried over), so compressing a
    /// message does not allocate the compressor's window.
    static COMPRESSOR: RefCell<Option<(u8, Compress)>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Decompress> = RefCell::new(Decompress::new(false));
}

impl Deflate {
    /// `message` as one piece.
    pub fn compress(&self, message: &[u8]) -> Bytes {
        if message.len() < self.min_size {
            return stored_piece(message);
        }
        COMPRESSOR.with(|cell| {
            let mut cell = cell.borrow_mut();
            let compressor = match &mut *cell {
                Some((level, compressor)) if *level == self.level => {
                    compressor.reset();
                    compressor
                }
                slot => {
                    let compressor = Compress::new(Compression::new(u32::from(self.level)), false);
                    &mut slot.insert((self.level, compressor)).1
                }
            };
            compress_with(compressor, message)
        })
    }
}

fn compress_with(compressor: &mut Compress, message: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(message.len() / 2 + 64);
    let mut input = message;
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(64));
        }
        let before = compressor.total_in();
        if compressor
            .compress_vec(input, &mut out, FlushCompress::Sync)
            .is_err()
        {
            // Cannot happen with memory to spare; the message still goes out, stored.
            return stored_piece(message);
        }
        input = &input[(compressor.total_in() - before) as usize..];
        // The flush is complete once everything is in and the output did not fill up.
        if input.is_empty() && out.len() < out.capacity() {
            break;
        }
    }
    Bytes::from(out)
}

/// `message` in stored (uncompressed) deflate blocks, ending like a sync-flushed piece.
pub fn stored_piece(message: &[u8]) -> Bytes {
    let blocks = message.len().div_ceil(usize::from(u16::MAX)).max(1);
    let mut out = BytesMut::with_capacity(message.len() + 5 * blocks + 5);
    for chunk in message.chunks(usize::from(u16::MAX)) {
        stored_block(&mut out, chunk);
    }
    stored_block(&mut out, &[]);
    out.freeze()
}

fn stored_block(out: &mut BytesMut, data: &[u8]) {
    // BFINAL = 0, BTYPE = 00, padded to the byte boundary; then LEN and its complement.
    let len = data.len() as u16;
    out.put_u8(0x00);
    out.put_u16_le(len);
    out.put_u16_le(!len);
    out.put_slice(data);
}

/// The payload of one compressed WebSocket message carrying `pieces` as a frame of `encoding`
/// (JSON messages separated by `\n`, Protobuf ones length-prefixed).
pub fn message_payload(encoding: Encoding, pieces: &[Bytes]) -> Bytes {
    if let [single] = pieces {
        return single.slice(..single.len() - TAIL.len());
    }
    const NEWLINE_PIECE: [u8; 11] = [
        0x00, 0x01, 0x00, 0xfe, 0xff, b'\n', 0x00, 0x00, 0x00, 0xff, 0xff,
    ];
    let separator: &[u8] = match encoding {
        Encoding::Json => &NEWLINE_PIECE,
        Encoding::Protobuf => &[],
    };
    let size = pieces.iter().map(Bytes::len).sum::<usize>() + separator.len() * pieces.len();
    let mut out = BytesMut::with_capacity(size);
    for (i, piece) in pieces.iter().enumerate() {
        if i > 0 {
            out.put_slice(separator);
        }
        out.put_slice(piece);
    }
    out.truncate(out.len() - TAIL.len());
    out.freeze()
}

/// Why a compressed message from a client could not be inflated.
#[derive(Debug, thiserror::Error)]
pub enum InflateError {
    /// The message would inflate beyond the size limit (a "zip bomb" or just too big).
    #[error("compressed message inflates beyond {0} bytes")]
    TooLarge(usize),
    /// The payload is not a deflate stream.
    #[error("invalid deflate data: {0}")]
    Invalid(String),
}

/// Inflates the payload of one compressed message from a client that negotiated
/// `client_no_context_takeover`, refusing to produce more than `limit` bytes.
pub fn inflate(payload: &[u8], limit: usize) -> Result<Vec<u8>, InflateError> {
    DECOMPRESSOR.with(|cell| {
        let mut decompressor = cell.borrow_mut();
        decompressor.reset(false);
        // One byte of room beyond the limit tells an oversized message from one that fits.
        let cap = limit.saturating_add(1);
        let mut out = Vec::with_capacity((payload.len().saturating_mul(3) + 16).min(cap));
        for mut input in [payload, &TAIL[..]] {
            loop {
                if out.len() == out.capacity() {
                    if out.len() >= cap {
                        return Err(InflateError::TooLarge(limit));
                    }
                    out.reserve(out.capacity().max(64).min(cap - out.len()));
                }
                let (before_in, before_out) = (decompressor.total_in(), out.len());
                decompressor
                    .decompress_vec(input, &mut out, FlushDecompress::Sync)
                    .map_err(|error| InflateError::Invalid(error.to_string()))?;
                let consumed = (decompressor.total_in() - before_in) as usize;
                input = &input[consumed..];
                let stalled = consumed == 0 && out.len() == before_out;
                if (input.is_empty() && out.len() < out.capacity()) || stalled {
                    break;
                }
            }
        }
        if out.len() > limit {
            return Err(InflateError::TooLarge(limit));
        }
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: Deflate = Deflate {
        level: 1,
        min_size: 0,
    };

    #[test]
    fn a_piece_inflates_to_the_message() {
        let message =
            br#"{"push":{"channel":"news","pub":{"data":{"text":"hello hello hello hello"}}}}"#;
        let piece = FAST.compress(message);
        assert!(piece.ends_with(&TAIL));
        assert!(piece.len() < message.len());
        let payload = message_payload(Encoding::Json, std::slice::from_ref(&piece));
        assert_eq!(inflate(&payload, 1 << 20).unwrap(), message);
    }

    #[test]
    fn pieces_concatenate_into_one_message() {
        let first = FAST.compress(br#"{"id":1,"subscribe":{}}"#);
        let stored = Deflate {
            level: 1,
            min_size: 1000,
        }
        .compress(b"{}");
        let big: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let third = FAST.compress(&big);
        let payload = message_payload(Encoding::Json, &[first, stored, third]);
        let mut expected = br#"{"id":1,"subscribe":{}}"#.to_vec();
        expected.extend_from_slice(b"\n{}\n");
        expected.extend_from_slice(&big);
        assert_eq!(inflate(&payload, 1 << 20).unwrap(), expected);
    }

    #[test]
    fn stored_pieces_split_long_messages() {
        let long = vec![7u8; 70_000];
        let payload = message_payload(Encoding::Protobuf, &[stored_piece(&long)]);
        assert_eq!(inflate(&payload, 1 << 20).unwrap(), long);
    }

    #[test]
    fn inflating_stops_at_the_limit() {
        let zeros = vec![0u8; 1 << 20];
        let payload = message_payload(Encoding::Json, &[FAST.compress(&zeros)]);
        assert!(payload.len() < zeros.len() / 50, "zeros compress well");
        assert!(matches!(
            inflate(&payload, 65_536),
            Err(InflateError::TooLarge(65_536))
        ));
        assert!(matches!(
            inflate(&[0xff, 0xff, 0xff], 100),
            Err(InflateError::Invalid(_))
        ));
    }
}
