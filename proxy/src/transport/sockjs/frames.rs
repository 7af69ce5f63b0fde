//! SockJS frames (protocol 0.3.3) and the client's messages.
//!
//! Server → client: `o` (open), `h` (heartbeat), `a[...]` (an array of message strings),
//! `c[code,"reason"]` (close). Client → server (`xhr_send` bodies and WebSocket messages): a
//! JSON array of strings, each one message.

use bytes::{BufMut, Bytes, BytesMut};

use gyre_proto::codes::Disconnect;

pub const OPEN: &[u8] = b"o";
pub const HEARTBEAT: &[u8] = b"h";

/// The code and reason SockJS uses when a session already has a receiving request.
pub const ANOTHER_CONNECTION: (u16, &str) = (2010, "Another connection still open");

/// `a[...]` carrying a batch of encoded Replies as ONE message string, joined with `\n`:
/// centrifuge-js splits every SockJS message on newlines (as it does a WebSocket message), so a
/// burst of replies costs the client one message event, like one WebSocket message does.
pub fn messages(batch: &[Bytes]) -> Bytes {
    let mut joined = String::with_capacity(batch.iter().map(|m| m.len() + 1).sum());
    for (i, message) in batch.iter().enumerate() {
        if i > 0 {
            joined.push('\n');
        }
        // The JSON codec writes UTF-8; a broken message is passed on mangled, not dropped.
        joined.push_str(&String::from_utf8_lossy(message));
    }
    let mut frame = BytesMut::with_capacity(joined.len() + joined.len() / 8 + 4);
    frame.put_slice(b"a[");
    frame.put_slice(json_string(&joined).as_bytes());
    frame.put_u8(b']');
    frame.freeze()
}

/// `c[code,"reason"]`: the session's disconnect, which sockjs-client hands to centrifuge-js as
/// the close event's code and reason.
pub fn close(disconnect: &Disconnect) -> Bytes {
    close_with(disconnect.code, &disconnect.reason)
}

pub fn close_with(code: u16, reason: &str) -> Bytes {
    Bytes::from(format!("c[{code},{}]", json_string(reason)))
}

fn json_string(text: &str) -> String {
    // Serializing a str cannot fail; the fallback keeps this panic-free all the same.
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_owned())
}

/// Why a client's payload was refused, with the text the SockJS spec gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadError {
    Empty,
    BrokenJson,
}

impl PayloadError {
    pub fn message(self) -> &'static str {
        match self {
            Self::Empty => "Payload expected.",
            Self::BrokenJson => "Broken JSON encoding.",
        }
    }
}

/// The messages of a client payload: a JSON array of strings (a single JSON string is taken
/// as one message, as sockjs-node does). Empty strings carry nothing and are skipped.
pub fn client_messages(payload: &[u8]) -> Result<Vec<Bytes>, PayloadError> {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Err(PayloadError::Empty);
    }
    let messages: Vec<String> = match serde_json::from_slice::<serde_json::Value>(payload) {
        Ok(serde_json::Value::String(single)) => vec![single],
        Ok(array @ serde_json::Value::Array(_)) => {
            serde_json::from_value(array).map_err(|_| PayloadError::BrokenJson)?
        }
        _ => return Err(PayloadError::BrokenJson),
    };
    Ok(messages
        .into_iter()
        .filter(|message| !message.is_empty())
        .map(Bytes::from)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gyre_proto::codes;

    #[test]
    fn a_batch_is_one_escaped_message() {
        let frame = messages(&[
            Bytes::from_static(br#"{"id":1,"connect":{}}"#),
            Bytes::from_static(b"{}"),
        ]);
        assert_eq!(frame, r#"a["{\"id\":1,\"connect\":{}}\n{}"]"#);
    }

    #[test]
    fn close_frames_carry_the_disconnect() {
        assert_eq!(close(&codes::INVALID_TOKEN), r#"c[3500,"invalid token"]"#);
        let (code, reason) = ANOTHER_CONNECTION;
        assert_eq!(
            close_with(code, reason),
            r#"c[2010,"Another connection still open"]"#
        );
    }

    #[test]
    fn client_payloads() {
        assert_eq!(
            client_messages(br#"["a","","b\nc"]"#).unwrap(),
            vec![Bytes::from_static(b"a"), Bytes::from_static(b"b\nc")]
        );
        assert_eq!(
            client_messages(br#""x""#).unwrap(),
            vec![Bytes::from_static(b"x")]
        );
        assert_eq!(client_messages(b"").unwrap_err(), PayloadError::Empty);
        assert_eq!(client_messages(b" \n").unwrap_err(), PayloadError::Empty);
        assert_eq!(
            client_messages(b"[\"a\",").unwrap_err(),
            PayloadError::BrokenJson
        );
        assert_eq!(
            client_messages(b"[1]").unwrap_err(),
            PayloadError::BrokenJson
        );
        assert_eq!(
            client_messages(b"{}").unwrap_err(),
            PayloadError::BrokenJson
        );
    }
}
