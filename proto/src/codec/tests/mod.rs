//! Tests of the codec API: exact JSON shapes (docs/protocol.md#json-examples) and frame-level
//! behaviour.

mod framing;
mod json_shapes;

use bytes::Bytes;

use super::{Encoding, encode};
use crate::codec::WireMessage;

/// Encodes `message` as JSON and returns the text.
fn to_json<T: WireMessage>(message: &T) -> String {
    let bytes = encode(Encoding::Json, message).expect("encodes");
    String::from_utf8(bytes.to_vec()).expect("JSON output is UTF-8")
}

/// Compares two JSON documents structurally, for shapes whose key order (the reference's) differs
/// from proto declaration order (serde's) or that contain maps (HashMap order is unspecified).
#[track_caller]
fn assert_same_json(actual: &str, expected: &str) {
    let actual_value: serde_json::Value = serde_json::from_str(actual).expect("actual is JSON");
    let expected_value: serde_json::Value =
        serde_json::from_str(expected).expect("expected is JSON");
    assert_eq!(
        actual_value, expected_value,
        "\nactual:   {actual}\nexpected: {expected}"
    );
}

/// Raw JSON payload for a `bytes` field.
fn raw(json: &'static str) -> Bytes {
    Bytes::from_static(json.as_bytes())
}
