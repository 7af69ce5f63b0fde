//! What the unidirectional transports (`uni_websocket`, `uni_sse`, `uni_http_stream`) share:
//! the client sends one bare ConnectRequest (JSON) and then only receives JSON Push objects.
//!
//! The session runs in [`Mode::Unidirectional`](crate::protocol::session::Mode) and queues push
//! Replies like for any client, so broadcasts keep their one shared encoding; the writers take
//! the Push out of each with [`push_of`], which shares the bytes.

use bytes::Bytes;
use gyre_proto::Encoding;
use gyre_proto::codec::{self, json};
use gyre_proto::protocol::{Command, ConnectRequest, Push, Reply};

use crate::protocol::session::Mode;

use gyre_proto::codes::{self, Disconnect};

/// The Push a unidirectional client receives for a queued message.
pub fn push_of(message: &Bytes) -> Bytes {
    json::push_of_reply(message)
}

/// What a client on a connection of `mode` receives of a queued message: the Push inside it
/// when unidirectional, the message as queued otherwise.
pub fn as_sent(mode: Mode, message: &Bytes) -> Bytes {
    match mode {
        Mode::Unidirectional => push_of(message),
        Mode::Bidirectional | Mode::Emulated => message.clone(),
    }
}

/// Parses a ConnectRequest (JSON object) into the connect command frame the session expects.
pub fn connect_frame(request: &[u8]) -> Result<Bytes, Disconnect> {
    let request = parse_connect_request(request)?;
    connect_command(request)
}

/// Parses a ConnectRequest sent as JSON. An empty body is an empty request (anonymous).
pub fn parse_connect_request(request: &[u8]) -> Result<ConnectRequest, Disconnect> {
    if request.iter().all(u8::is_ascii_whitespace) {
        return Ok(ConnectRequest::default());
    }
    codec::json::decode_message(request).map_err(|error| {
        tracing::debug!(%error, "bad unidirectional connect request");
        codes::DISCONNECT_BAD_REQUEST
    })
}

/// The connect command frame for a parsed request.
pub fn connect_command(request: ConnectRequest) -> Result<Bytes, Disconnect> {
    let command = Command {
        id: 1,
        connect: Some(request),
        ..Default::default()
    };
    codec::encode_command(Encoding::Json, &command).map_err(|error| {
        tracing::debug!(%error, "connect request not encodable");
        codes::DISCONNECT_BAD_REQUEST
    })
}

/// The disconnect Push (`{"disconnect":{…}}`) a unidirectional client gets before the end.
pub fn disconnect_push(disconnect: &Disconnect) -> Bytes {
    push_of(&disconnect_reply(Encoding::Json, disconnect))
}

/// The push Reply that tells an emulated or unidirectional client why its stream ends: these
/// transports have no close frame to carry the code.
pub fn disconnect_reply(encoding: Encoding, disconnect: &Disconnect) -> Bytes {
    let reply = Reply {
        push: Some(Push {
            disconnect: Some(disconnect.to_proto()),
            ..Default::default()
        }),
        ..Default::default()
    };
    // A disconnect is a code and a short string: it always encodes.
    codec::encode_reply(encoding, &reply).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_requests_become_connect_commands() {
        let frame = connect_frame(br#"{"token":"t","subs":{"news":{"recover":true}}}"#).unwrap();
        let text = std::str::from_utf8(&frame).unwrap();
        assert!(
            text.starts_with(r#"{"id":1,"connect":{"token":"t""#),
            "{text}"
        );
        assert_eq!(connect_frame(b"").unwrap(), r#"{"id":1,"connect":{}}"#);
        assert_eq!(
            connect_frame(b"{not json").unwrap_err(),
            codes::DISCONNECT_BAD_REQUEST
        );
    }

    #[test]
    fn disconnects_are_bare_pushes() {
        assert_eq!(
            disconnect_push(&codes::SHUTDOWN),
            r#"{"disconnect":{"code":3001,"reason":"shutdown"}}"#
        );
    }
}
