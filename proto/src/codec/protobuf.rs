//! Protobuf encoding of the client protocol (docs/protocol.md#protobuf-encoding).
//!
//! Every message in a frame, even the only one, is prefixed with its length as an unsigned varint
//! (Centrifuge `ProtobufDataEncoder`, JS `encodeDelimited`). An empty message has length 0, so a
//! ping or pong is the single byte `0x00`. `bytes` fields are opaque: binary payloads are fine.

use bytes::{Buf, Bytes, BytesMut};
use prost::Message;

use super::DecodeError;

/// Longest valid varint for a 64-bit value.
const MAX_VARINT_LEN: usize = 10;

/// Appends `message` with its varint length prefix to `buf`. Cannot fail.
///
/// This is what `Message::encode_length_delimited` writes; it is spelled out so that the only
/// error that function has (a fixed-capacity buffer running out) is ruled out by type rather than
/// handled: `BytesMut` grows, and the exact size is reserved first.
pub fn encode_into<T: Message>(message: &T, buf: &mut BytesMut) {
    let len = message.encoded_len();
    buf.reserve(prost::length_delimiter_len(len) + len);
    prost::encoding::encode_varint(len as u64, buf);
    message.encode_raw(buf);
}

/// Decodes one plain (not length-prefixed) Protobuf message. `bytes` fields of the result are
/// zero-copy slices of `bytes`.
pub fn decode_message<T: Message + Default>(bytes: Bytes) -> Result<T, DecodeError> {
    T::decode(bytes).map_err(DecodeError::Protobuf)
}

/// Takes the next length-prefixed message body off a non-empty frame.
///
/// The declared length is checked against `limit` and against what the frame holds before the
/// body is touched, so a hostile prefix cannot cause an allocation or a long read.
pub(super) fn split_delimited(rest: &mut Bytes, limit: usize) -> Result<Bytes, DecodeError> {
    let (declared, prefix_len) = read_varint(rest)?;
    if declared > limit as u64 {
        return Err(DecodeError::MessageTooLarge {
            size: declared,
            limit,
        });
    }
    let available = rest.len() - prefix_len;
    if declared > available as u64 {
        return Err(DecodeError::TruncatedMessage {
            declared,
            available,
        });
    }
    rest.advance(prefix_len);
    // `declared <= available`, a usize, so the cast is lossless.
    Ok(rest.split_to(declared as usize))
}

/// Reads an unsigned varint at the start of `bytes` without consuming it: (value, its length).
fn read_varint(bytes: &[u8]) -> Result<(u64, usize), DecodeError> {
    let mut value = 0u64;
    for (index, &byte) in bytes.iter().take(MAX_VARINT_LEN).enumerate() {
        let payload = u64::from(byte & 0x7f);
        // The tenth byte holds only the top bit of a u64.
        if index == MAX_VARINT_LEN - 1 && payload > 1 {
            return Err(DecodeError::InvalidVarint);
        }
        value |= payload << (7 * index);
        if byte & 0x80 == 0 {
            return Ok((value, index + 1));
        }
    }
    if bytes.len() < MAX_VARINT_LEN {
        Err(DecodeError::TruncatedVarint)
    } else {
        Err(DecodeError::InvalidVarint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_match_prost() {
        for value in [
            0,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u32::MAX as u64,
            u64::MAX,
        ] {
            let mut buf = BytesMut::new();
            prost::encoding::encode_varint(value, &mut buf);
            buf.extend_from_slice(b"tail");
            let (decoded, len) = read_varint(&buf).unwrap();
            assert_eq!(
                (decoded, len),
                (value, prost::encoding::encoded_len_varint(value))
            );
        }
    }

    #[test]
    fn truncated_and_invalid_varints() {
        assert!(matches!(
            read_varint(&[]),
            Err(DecodeError::TruncatedVarint)
        ));
        assert!(matches!(
            read_varint(&[0x80]),
            Err(DecodeError::TruncatedVarint)
        ));
        assert!(matches!(
            read_varint(&[0xff; 9]),
            Err(DecodeError::TruncatedVarint)
        ));
        // Ten continuation bytes: longer than any u64.
        assert!(matches!(
            read_varint(&[0xff; 11]),
            Err(DecodeError::InvalidVarint)
        ));
        // Tenth byte carrying more than the 64th bit.
        let mut overflow = [0xff; 10];
        overflow[9] = 0x02;
        assert!(matches!(
            read_varint(&overflow),
            Err(DecodeError::InvalidVarint)
        ));
    }

    #[test]
    fn declared_length_checked_before_reading() {
        // Declares u64::MAX bytes: rejected by the limit, never allocated.
        let mut frame = BytesMut::new();
        prost::encoding::encode_varint(u64::MAX, &mut frame);
        let mut rest = frame.freeze();
        assert!(matches!(
            split_delimited(&mut rest, 65_536),
            Err(DecodeError::MessageTooLarge {
                size: u64::MAX,
                limit: 65_536
            })
        ));

        // Within the limit but longer than the frame.
        let mut rest = Bytes::from_static(&[0x05, 1, 2]);
        assert!(matches!(
            split_delimited(&mut rest, 65_536),
            Err(DecodeError::TruncatedMessage {
                declared: 5,
                available: 2
            })
        ));
    }

    #[test]
    fn encode_into_matches_encode_length_delimited() {
        let publication = crate::Publication {
            data: Bytes::from_static(&[0, 0xff, b'\n', 7]),
            offset: u64::MAX,
            ..Default::default()
        };
        let mut buf = BytesMut::new();
        encode_into(&publication, &mut buf);
        assert_eq!(&buf[..], &publication.encode_length_delimited_to_vec()[..]);
    }
}
