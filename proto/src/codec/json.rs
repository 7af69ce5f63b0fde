//! JSON encoding of the client protocol.

/// `skip_serializing_if` for every non-bytes field: proto3 zero values are omitted on the wire.
pub fn is_zero_value<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// Serde adapter for `bytes` fields: they carry raw JSON embedded verbatim, never base64.
pub mod raw_json_bytes {
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};
    use serde_json::value::RawValue;

    pub fn serialize<S: Serializer>(value: &Bytes, serializer: S) -> Result<S::Ok, S::Error> {
        let text = std::str::from_utf8(value).map_err(serde::ser::Error::custom)?;
        let raw: Box<RawValue> = if text.contains('\n') {
            RawValue::from_string(text.replace('\n', ""))
        } else {
            RawValue::from_string(text.to_owned())
        }
        .map_err(serde::ser::Error::custom)?;
        serde::Serialize::serialize(&raw, serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Bytes, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        Ok(Bytes::copy_from_slice(raw.get().as_bytes()))
    }
}
