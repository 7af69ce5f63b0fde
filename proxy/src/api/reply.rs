//! Answers written straight into one byte buffer. A list of replies (`batch`'s `replies`,
//! `broadcast`'s `responses`) grows by each reply's JSON as soon as it is known, so its memory is
//! the size of the answer, not a tree of `serde_json::Value`s many times that size.

use serde::Serialize;
use serde_json::value::RawValue;

use super::ApiError;

/// `{"error":{"code":…,"message":…}}`.
pub fn error(error: ApiError) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    push_error(&mut out, error);
    out
}

/// A JSON object with one array field, `{"<field>":[…]}`, written one element at a time.
pub struct ReplyList {
    out: Vec<u8>,
    empty: bool,
}

impl ReplyList {
    /// Starts `{"<field>":[`; `capacity` is a guess of the bytes needed.
    pub fn new(field: &str, capacity: usize) -> Self {
        let mut out = Vec::with_capacity(capacity);
        out.push(b'{');
        push_json(&mut out, field);
        out.extend_from_slice(b":[");
        Self { out, empty: true }
    }

    /// Appends `{"<key>":<result>}`, e.g. `{"publish":{"offset":1}}` or `{"result":{}}`.
    pub fn push_result(&mut self, key: &str, result: &RawValue) {
        self.separate();
        self.out.push(b'{');
        push_json(&mut self.out, key);
        self.out.push(b':');
        self.out.extend_from_slice(result.get().as_bytes());
        self.out.push(b'}');
    }

    /// Appends `{"error":{"code":…,"message":…}}`.
    pub fn push_error(&mut self, error: ApiError) {
        self.separate();
        push_error(&mut self.out, error);
    }

    /// Closes the array and the object.
    pub fn finish(mut self) -> Vec<u8> {
        self.out.extend_from_slice(b"]}");
        self.out
    }

    fn separate(&mut self) {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
    }
}

fn push_error(out: &mut Vec<u8>, error: ApiError) {
    out.extend_from_slice(b"{\"error\":");
    push_json(out, &error);
    out.push(b'}');
}

/// Appends `value`'s JSON. Only for strings and `ApiError`: serde_json fails only on a failing
/// writer (a `Vec` never fails) or on values these are not (maps with non-string keys,
/// serializers that fail on purpose), so the result is dropped rather than passed up.
pub(super) fn push_json<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let written = serde_json::to_writer(out, value);
    debug_assert!(written.is_ok(), "{written:?}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{BAD_REQUEST, METHOD_NOT_FOUND};

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).expect("valid JSON")
    }

    fn parsed(bytes: &[u8]) -> serde_json::Value {
        serde_json::from_slice(bytes).expect("the encoder wrote valid JSON")
    }

    #[test]
    fn an_empty_list_is_an_empty_array() {
        let out = ReplyList::new("replies", 0).finish();
        assert_eq!(out, br#"{"replies":[]}"#);
    }

    #[test]
    fn results_and_errors_keep_their_order_and_shape() {
        let mut list = ReplyList::new("replies", 0);
        list.push_result("publish", &raw(r#"{"offset":1,"epoch":"abcd"}"#));
        list.push_error(METHOD_NOT_FOUND);
        list.push_result("history", &raw(r#"{"publications":[]}"#));
        let out = list.finish();
        assert_eq!(
            std::str::from_utf8(&out).expect("UTF-8"),
            r#"{"replies":[{"publish":{"offset":1,"epoch":"abcd"}},{"error":{"code":104,"message":"method not found"}},{"history":{"publications":[]}}]}"#
        );
    }

    #[test]
    fn keys_are_escaped() {
        let mut list = ReplyList::new("a\"b", 0);
        list.push_result("c\\d\n", &raw("1"));
        assert_eq!(
            parsed(&list.finish()),
            serde_json::json!({"a\"b": [{"c\\d\n": 1}]})
        );
    }

    #[test]
    fn a_lone_error() {
        assert_eq!(
            parsed(&error(BAD_REQUEST)),
            serde_json::json!({"error": {"code": 107, "message": "bad request"}})
        );
    }
}
