//! JSON encoding of the client protocol (docs/protocol.md#json-encoding).
//!
//! The shape comes from the serde attributes `build.rs` puts on every generated message: keys are
//! the proto field names, zero values are omitted, 64-bit integers are plain JSON numbers, and
//! `bytes` fields hold raw JSON embedded verbatim through [`raw_json_bytes`]. Messages are written
//! straight into the output buffer with serde_json; there is no intermediate `serde_json::Value`.
//!
//! In a frame, messages are separated by a single `\n`. That is unambiguous only because no
//! encoded message contains a `\n` byte: serde_json escapes it inside strings, and
//! [`raw_json_bytes`] strips it from raw payloads (where it can only be whitespace).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Serialize, de::DeserializeOwned};

use super::{DecodeError, EncodeError};

/// Separator between the messages of a JSON frame.
pub(super) const SEPARATOR: u8 = b'\n';

/// `skip_serializing_if` for every non-bytes field: proto3 zero values are omitted on the wire
/// (`false`, `0`, `""`, empty list or map, absent message). A present but empty message is not a
/// zero value and is written as `{}`, as in `"publish":{}`.
pub fn is_zero_value<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// Appends the JSON object of `message` to `buf`. On error `buf` is left as it was.
pub fn encode_into<T: Serialize>(message: &T, buf: &mut BytesMut) -> Result<(), EncodeError> {
    let start = buf.len();
    let mut serializer = serde_json::Serializer::new((&mut *buf).writer());
    if let Err(error) = message.serialize(&mut serializer) {
        // Writing into memory cannot fail, so the error comes from a raw payload that is not
        // JSON; drop the partial object rather than leave broken JSON in a shared frame.
        buf.truncate(start);
        return Err(EncodeError::InvalidRawJson(error));
    }
    Ok(())
}

/// The Push inside an encoded push Reply (`{"push":P}` → `P`), sharing the bytes: how a
/// unidirectional connection, which receives bare Push objects, reuses a broadcast's encoding.
/// Any other message (the `{}` ping) is returned as it is.
pub fn push_of_reply(message: &Bytes) -> Bytes {
    const PREFIX: &[u8] = b"{\"push\":";
    if message.starts_with(PREFIX) && message.ends_with(b"}") {
        message.slice(PREFIX.len()..message.len() - 1)
    } else {
        message.clone()
    }
}

/// Decodes one JSON document as a message. Unknown keys are ignored (newer SDK fields such as
/// `flag` on connect must not break older servers); surrounding whitespace is allowed.
///
/// The document must be an object. serde's derived structs would also accept the positional array
/// form (`[]` as an empty Command, i.e. a pong; `[1]` as `{"id":1}`), which Centrifuge rejects.
/// Only the top level is checked: nested messages in array form are harmless leniency.
pub fn decode_message<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let first = bytes
        .iter()
        .find(|byte| !matches!(byte, b' ' | b'\t' | b'\r' | b'\n'));
    if first == Some(&b'[') {
        let error = serde::de::Error::invalid_type(serde::de::Unexpected::Seq, &"a JSON object");
        return Err(DecodeError::Json(error));
    }
    serde_json::from_slice(bytes).map_err(DecodeError::Json)
}

/// Takes the next line off a non-empty frame, without its `\n`, and consumes the `\n`.
///
/// The size check runs on the line slice before anything is parsed or allocated. The length
/// excludes the `\n`, so a message's limit does not depend on whether it is the last in the frame.
pub(super) fn split_line(rest: &mut Bytes, limit: usize) -> Result<Bytes, DecodeError> {
    let (line_len, consumed) = match rest.iter().position(|&byte| byte == SEPARATOR) {
        Some(newline) => (newline, newline + 1),
        None => (rest.len(), rest.len()),
    };
    if line_len > limit {
        return Err(DecodeError::MessageTooLarge {
            size: line_len as u64,
            limit,
        });
    }
    let line = rest.slice(..line_len);
    rest.advance(consumed);
    Ok(line)
}

/// Serde adapter for `bytes` fields: they carry raw JSON embedded verbatim, never base64.
///
/// Serializing validates the payload (UTF-8 and exactly one JSON value) and fails otherwise, so a
/// non-JSON publication can never produce broken output; it also drops any `\n` byte, which in
/// valid JSON can only be insignificant whitespace, to keep the frame separator unambiguous.
/// Deserializing captures the raw text of whatever JSON value is there (object, string, number…),
/// byte for byte apart from the whitespace around it.
pub mod raw_json_bytes {
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::value::RawValue;

    /// Writes `value` verbatim as a JSON value; an error if it is not valid JSON.
    pub fn serialize<S: Serializer>(value: &Bytes, serializer: S) -> Result<S::Ok, S::Error> {
        // Borrowed: validates without copying the payload on the common path.
        let raw: &RawValue = serde_json::from_slice(value).map_err(serde::ser::Error::custom)?;
        if raw.get().as_bytes().contains(&b'\n') {
            let stripped = RawValue::from_string(raw.get().replace('\n', ""))
                .map_err(serde::ser::Error::custom)?;
            stripped.serialize(serializer)
        } else {
            raw.serialize(serializer)
        }
    }

    /// Captures the raw text of the JSON value.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Bytes, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        // Box<RawValue> -> Box<str> -> String -> Bytes reuses the one allocation serde made.
        Ok(Bytes::from(String::from(Box::<str>::from(raw))))
    }
}

/// Deserializer for the `bytes` fields of the backend hook messages: raw JSON like
/// [`raw_json_bytes`], except that `null` counts as absent (empty), as a backend writing
/// `"info": null` means.
pub fn raw_json_or_null<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Bytes, D::Error> {
    let raw = raw_json_bytes::deserialize(deserializer)?;
    Ok(if raw == "null" { Bytes::new() } else { raw })
}

/// Deserializer for 64-bit integers from backends: a JSON number, or a string holding one (how
/// protobuf's canonical JSON writes them).
pub fn number_or_string<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de> + std::str::FromStr,
{
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum NumberOrString<T> {
        Number(T),
        String(String),
    }
    match <NumberOrString<T> as serde::Deserialize>::deserialize(deserializer)? {
        NumberOrString::Number(n) => Ok(n),
        NumberOrString::String(text) => text
            .parse::<T>()
            .map_err(|_| serde::de::Error::custom(format!("not an integer: {text:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Publication, Reply};

    #[test]
    fn backend_json_is_read_leniently() {
        use crate::proxy::ConnectResponse;
        let response: ConnectResponse = decode_message(
            br#"{"result":{"user":"56","expire_at":"1565436268","info":null,"data":{"a":1},"x":1}}"#,
        )
        .unwrap();
        let result = response.result.unwrap();
        assert_eq!(result.user, "56");
        assert_eq!(result.expire_at, 1_565_436_268);
        assert!(result.info.is_empty());
        assert_eq!(result.data, r#"{"a":1}"#);
        let response: ConnectResponse =
            decode_message(br#"{"result":{"expire_at":1565436268}}"#).unwrap();
        assert_eq!(response.result.unwrap().expire_at, 1_565_436_268);
        assert!(decode_message::<ConnectResponse>(br#"{"result":{"expire_at":"soon"}}"#).is_err());
    }

    #[test]
    fn push_of_reply_is_the_push_encoded_alone() {
        use crate::protocol::Push;
        let push = Push {
            channel: "news:1".into(),
            r#pub: Some(Publication {
                data: Bytes::from_static(br#"{"text":"hi"}"#),
                offset: 7,
                ..Default::default()
            }),
            ..Default::default()
        };
        let reply = Reply {
            push: Some(push.clone()),
            ..Default::default()
        };
        let mut encoded_reply = BytesMut::new();
        encode_into(&reply, &mut encoded_reply).unwrap();
        let mut encoded_push = BytesMut::new();
        encode_into(&push, &mut encoded_push).unwrap();
        assert_eq!(
            push_of_reply(&encoded_reply.freeze()),
            encoded_push.freeze()
        );
        assert_eq!(push_of_reply(&Bytes::from_static(b"{}")), "{}");
    }

    #[test]
    fn split_line_limits_exclude_the_separator() {
        let mut rest = Bytes::from_static(b"{}\n{\"id\":1}");
        assert_eq!(split_line(&mut rest, 2).unwrap(), "{}");
        assert!(matches!(
            split_line(&mut rest, 7),
            Err(DecodeError::MessageTooLarge { size: 8, limit: 7 })
        ));
        assert_eq!(split_line(&mut rest, 8).unwrap(), "{\"id\":1}");
        assert!(rest.is_empty());
    }

    #[test]
    fn failed_encode_leaves_buffer_untouched() {
        let mut buf = BytesMut::from(&b"{\"id\":1}"[..]);
        let publication = Publication {
            data: Bytes::from_static(b"{not json"),
            ..Default::default()
        };
        let error = encode_into(&publication, &mut buf).unwrap_err();
        assert!(matches!(error, EncodeError::InvalidRawJson(_)));
        assert_eq!(&buf[..], b"{\"id\":1}");
    }

    #[test]
    fn raw_payload_must_be_exactly_one_json_value() {
        for bad in [
            &b"{\"a\":1} {\"b\":2}"[..],
            b"   ",
            b"\xff\xfe",
            b"{\"a\":\"\xff\"}",
            b"[1,2",
            b"nul",
        ] {
            let publication = Publication {
                data: Bytes::copy_from_slice(bad),
                ..Default::default()
            };
            let mut buf = BytesMut::new();
            assert!(
                encode_into(&publication, &mut buf).is_err(),
                "{:?} was accepted",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn raw_payload_surrounding_whitespace_is_trimmed() {
        let publication = Publication {
            data: Bytes::from_static(b"\r\n  {\"a\": 1}\t\n"),
            ..Default::default()
        };
        let mut buf = BytesMut::new();
        encode_into(&publication, &mut buf).unwrap();
        assert_eq!(&buf[..], br#"{"data":{"a": 1}}"#);
    }

    #[test]
    fn decoded_raw_payload_keeps_its_bytes() {
        let reply: Reply =
            decode_message(br#"{"push":{"pub":{"data": [1, {"x" : "y"}] ,"offset":1}}}"#).unwrap();
        let publication = reply.push.unwrap().r#pub.unwrap();
        assert_eq!(publication.data, r#"[1, {"x" : "y"}]"#);
    }
}
