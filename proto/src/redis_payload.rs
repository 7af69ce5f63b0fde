//! The byte format the module publishes on a channel's Redis PUB/SUB channel and the proxy decodes.
//!
//! Compatible with Centrifuge's Redis engine, so a Centrifugo node on the same Redis and prefix
//! understands Gyre's publications and the other way round:
//!
//! | prefix   | layout                                          | meaning                          |
//! |----------|-------------------------------------------------|----------------------------------|
//! | (none)   | `<Publication>`                                 | publication without history      |
//! | `__p1:`  | `__p1:<offset>:<epoch>__<Publication>`          | publication at a stream position |
//! | `__j__`  | `__j__<ClientInfo>`                             | join                             |
//! | `__l__`  | `__l__<ClientInfo>`                             | leave                            |
//!
//! Messages are protobuf-encoded. The epoch travels in the header, not in the Publication.

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;

use crate::{ClientInfo, Publication};

const POSITIONED: &[u8] = b"__p1:";
const JOIN: &[u8] = b"__j__";
const LEAVE: &[u8] = b"__l__";
const DELTA: &[u8] = b"__d1:";

/// One message received on a client PUB/SUB channel.
// Publications are the common case on the hot path; boxing them would add an allocation per
// message to make the rare join/leave variants smaller.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum ChannelEvent {
    /// A publication; `offset` is set from the header when the channel has history.
    Publication {
        publication: Publication,
        epoch: String,
    },
    Join(ClientInfo),
    Leave(ClientInfo),
}

/// Why a PUB/SUB payload could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PayloadError {
    #[error("malformed stream position header")]
    BadHeader,
    #[error("delta payloads (__d1:) are not supported")]
    UnsupportedDelta,
    #[error("invalid protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
}

/// `__p1:<offset>:<epoch>__` followed by an already encoded Publication.
pub fn encode_positioned(offset: u64, epoch: &str, publication: &[u8]) -> Bytes {
    let header = format!("__p1:{offset}:{epoch}__");
    let mut out = BytesMut::with_capacity(header.len() + publication.len());
    out.put_slice(header.as_bytes());
    out.put_slice(publication);
    out.freeze()
}

/// A publication on a channel without history: the bare Publication bytes.
pub fn encode_plain(publication: &[u8]) -> Bytes {
    Bytes::copy_from_slice(publication)
}

/// `__j__<ClientInfo>`.
pub fn encode_join(info: &ClientInfo) -> Bytes {
    prefixed(JOIN, info)
}

/// `__l__<ClientInfo>`.
pub fn encode_leave(info: &ClientInfo) -> Bytes {
    prefixed(LEAVE, info)
}

fn prefixed(prefix: &[u8], info: &ClientInfo) -> Bytes {
    let mut out = BytesMut::with_capacity(prefix.len() + info.encoded_len());
    out.put_slice(prefix);
    info.encode(&mut out)
        .expect("BytesMut grows to fit the encoded message");
    out.freeze()
}

/// Decodes a message received on a client PUB/SUB channel.
pub fn decode(payload: &[u8]) -> Result<ChannelEvent, PayloadError> {
    if let Some(rest) = payload.strip_prefix(POSITIONED) {
        let (offset, epoch, body) = split_position(rest)?;
        let mut publication = Publication::decode(body)?;
        publication.offset = offset;
        return Ok(ChannelEvent::Publication {
            publication,
            epoch: epoch.to_owned(),
        });
    }
    if let Some(rest) = payload.strip_prefix(JOIN) {
        return Ok(ChannelEvent::Join(ClientInfo::decode(rest)?));
    }
    if let Some(rest) = payload.strip_prefix(LEAVE) {
        return Ok(ChannelEvent::Leave(ClientInfo::decode(rest)?));
    }
    if payload.starts_with(DELTA) {
        return Err(PayloadError::UnsupportedDelta);
    }
    Ok(ChannelEvent::Publication {
        publication: Publication::decode(payload)?,
        epoch: String::new(),
    })
}

/// Splits `<offset>:<epoch>__<body>`. The epoch never contains `_` (it is alphanumeric), so the
/// first `__` after the colon ends the header even when the body starts with `_`.
fn split_position(rest: &[u8]) -> Result<(u64, &str, &[u8]), PayloadError> {
    let colon = rest
        .iter()
        .position(|&b| b == b':')
        .ok_or(PayloadError::BadHeader)?;
    let offset = std::str::from_utf8(&rest[..colon])
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or(PayloadError::BadHeader)?;
    let after = &rest[colon + 1..];
    let end = after
        .windows(2)
        .position(|w| w == b"__")
        .ok_or(PayloadError::BadHeader)?;
    let epoch = std::str::from_utf8(&after[..end]).map_err(|_| PayloadError::BadHeader)?;
    Ok((offset, epoch, &after[end + 2..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publication(data: &str) -> Publication {
        Publication {
            data: Bytes::copy_from_slice(data.as_bytes()),
            time: 1_700_000_000_000,
            ..Default::default()
        }
    }

    #[test]
    fn positioned_round_trip() {
        let body = publication(r#"{"text":"hi"}"#).encode_to_vec();
        let payload = encode_positioned(42, "AbCdEfGh", &body);
        assert!(payload.starts_with(b"__p1:42:AbCdEfGh__"));
        let ChannelEvent::Publication { publication, epoch } = decode(&payload).unwrap() else {
            panic!("not a publication");
        };
        assert_eq!(epoch, "AbCdEfGh");
        assert_eq!(publication.offset, 42);
        assert_eq!(&publication.data[..], br#"{"text":"hi"}"#);
    }

    #[test]
    fn plain_publication_has_no_position() {
        let body = publication("1").encode_to_vec();
        let ChannelEvent::Publication { publication, epoch } =
            decode(&encode_plain(&body)).unwrap()
        else {
            panic!("not a publication");
        };
        assert_eq!((publication.offset, epoch.as_str()), (0, ""));
    }

    #[test]
    fn join_and_leave() {
        let info = ClientInfo {
            user: "42".into(),
            client: "c1".into(),
            ..Default::default()
        };
        assert_eq!(
            decode(&encode_join(&info)).unwrap(),
            ChannelEvent::Join(info.clone())
        );
        assert_eq!(
            decode(&encode_leave(&info)).unwrap(),
            ChannelEvent::Leave(info)
        );
    }

    #[test]
    fn malformed_headers_are_errors() {
        assert_eq!(decode(b"__p1:x:e__").unwrap_err(), PayloadError::BadHeader);
        assert_eq!(decode(b"__p1:12").unwrap_err(), PayloadError::BadHeader);
        assert_eq!(decode(b"__p1:12:abc").unwrap_err(), PayloadError::BadHeader);
        assert_eq!(
            decode(b"__d1:1:e:0::0:").unwrap_err(),
            PayloadError::UnsupportedDelta
        );
    }
}
