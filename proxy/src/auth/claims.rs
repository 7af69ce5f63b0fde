//! Claim shapes: what tokens carry on the wire (`Raw*`, borrowed from the payload) and the typed
//! results handed to the session ([`ConnectToken`], [`SubscribeToken`]).
//!
//! `info`, `data` and `meta` stay as the exact JSON bytes the backend signed (no re-encoding),
//! because they are forwarded to clients verbatim. Empty bytes mean "absent", as in the protobuf
//! messages they end up in (JSON `null` counts as absent too). `b64info`/`b64data` win over their
//! JSON twins when both are present, as in Centrifugo.

use std::collections::HashMap;

use base64::Engine as _;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::error::InvalidReason;

/// A verified connection token (docs/protocol.md#tokens).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectToken {
    /// User id from `user_id_claim` (default `sub`); empty = anonymous.
    pub user: String,
    /// `exp`, unix seconds.
    pub exp: Option<i64>,
    /// `expire_at`, unix seconds, as given; `Some(0)` (or negative) = the connection never
    /// expires although the token itself still had to pass `exp`. See [`Self::expires_at`].
    pub expire_at: Option<i64>,
    /// `info` as raw JSON bytes, or the decoded `b64info`.
    pub info: Bytes,
    /// `channels`: server-side subscriptions.
    pub channels: Vec<String>,
    /// `subs`: server-side subscriptions with per-channel options.
    pub subs: HashMap<String, SubOptions>,
    /// `meta` as raw JSON bytes; never sent to clients.
    pub meta: Bytes,
}

impl ConnectToken {
    /// When the connection itself expires (unix seconds), `None` = never: `expire_at` when given
    /// (`<= 0` meaning never), else `exp`.
    pub fn expires_at(&self) -> Option<i64> {
        effective_expiry(self.exp, self.expire_at)
    }
}

/// A verified subscription token (docs/protocol.md#tokens). The session must still check that
/// `channel` equals the requested channel, `user` the connection's user and `client` (when set)
/// the client id; a mismatch is disconnect 3500.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscribeToken {
    /// User id from `user_id_claim` (default `sub`); empty = anonymous.
    pub user: String,
    /// `channel` (required).
    pub channel: String,
    /// `client`: binds the token to one client id.
    pub client: Option<String>,
    /// `info` raw JSON, or decoded `b64info`.
    pub info: Bytes,
    /// `data` raw JSON, or decoded `b64data` (returned in `SubscribeResult.data`).
    pub data: Bytes,
    /// `exp`, unix seconds.
    pub exp: Option<i64>,
    /// `expire_at`, unix seconds, as given (`<= 0` = the subscription never expires).
    pub expire_at: Option<i64>,
    /// `override` of channel options.
    pub overrides: Overrides,
}

impl SubscribeToken {
    /// When the subscription expires (unix seconds), `None` = never; same rule as
    /// [`ConnectToken::expires_at`].
    pub fn expires_at(&self) -> Option<i64> {
        effective_expiry(self.exp, self.expire_at)
    }
}

/// Options of one server-side subscription from a connection token's `subs` claim (or the
/// connect proxy's `subs`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubOptions {
    pub info: Bytes,
    pub data: Bytes,
    pub overrides: Overrides,
    /// Unix seconds; `None` = never expires. Only the connect proxy sets it (tokens have no
    /// such claim per subscription).
    pub expires_at: Option<i64>,
    /// Recover in cache mode (only the latest publication), whatever the namespace's
    /// `force_recovery_mode`: the connect proxy's `cache_recover`.
    pub cache_recover: bool,
}

/// Channel option overrides (`override` claim); `None` = use the namespace's setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overrides {
    pub presence: Option<bool>,
    pub join_leave: Option<bool>,
    pub force_push_join_leave: Option<bool>,
    pub force_positioning: Option<bool>,
    pub force_recovery: Option<bool>,
}

fn effective_expiry(exp: Option<i64>, expire_at: Option<i64>) -> Option<i64> {
    match expire_at {
        Some(at) if at > 0 => Some(at),
        Some(_) => None,
        None => exp,
    }
}

/// Claims every token kind shares, parsed in a separate pass over the payload: serde's
/// `flatten` would buffer every field and break the borrowed `RawValue`s below, and one extra
/// parse of a small payload costs little next to the signature check.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Registered {
    pub sub: Option<String>,
    #[serde(default, deserialize_with = "numeric_date")]
    pub exp: Option<i64>,
    #[serde(default, deserialize_with = "numeric_date")]
    pub nbf: Option<i64>,
    pub aud: Option<Audience>,
    pub iss: Option<String>,
}

/// `aud`: one string or a list (RFC 7519 §4.1.3).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let list: &[String] = match self {
            Audience::One(a) => std::slice::from_ref(a),
            Audience::Many(list) => list,
        };
        list.iter().map(String::as_str)
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct RawConnect<'a> {
    #[serde(borrow)]
    info: Option<&'a RawValue>,
    b64info: Option<String>,
    channels: Option<Vec<String>>,
    #[serde(borrow)]
    subs: Option<HashMap<String, RawSubOptions<'a>>>,
    #[serde(borrow)]
    meta: Option<&'a RawValue>,
    expire_at: Option<i64>,
    channel: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawSubscribe<'a> {
    #[serde(borrow)]
    info: Option<&'a RawValue>,
    b64info: Option<String>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    b64data: Option<String>,
    #[serde(rename = "override")]
    overrides: Option<RawOverrides>,
    channel: Option<String>,
    client: Option<String>,
    expire_at: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct RawSubOptions<'a> {
    #[serde(borrow)]
    info: Option<&'a RawValue>,
    b64info: Option<String>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    b64data: Option<String>,
    #[serde(rename = "override")]
    overrides: Option<RawOverrides>,
}

#[derive(Debug, Default, Deserialize)]
struct RawOverrides {
    presence: Option<BoolValue>,
    join_leave: Option<BoolValue>,
    force_push_join_leave: Option<BoolValue>,
    force_positioning: Option<BoolValue>,
    force_recovery: Option<BoolValue>,
}

/// Protobuf-style `{"value": bool}` wrapper; `{}` means false, as Go's `omitempty` decoding does.
#[derive(Debug, Deserialize)]
struct BoolValue {
    #[serde(default)]
    value: bool,
}

impl From<Option<RawOverrides>> for Overrides {
    fn from(raw: Option<RawOverrides>) -> Self {
        let raw = raw.unwrap_or_default();
        let get = |v: Option<BoolValue>| v.map(|b| b.value);
        Overrides {
            presence: get(raw.presence),
            join_leave: get(raw.join_leave),
            force_push_join_leave: get(raw.force_push_join_leave),
            force_positioning: get(raw.force_positioning),
            force_recovery: get(raw.force_recovery),
        }
    }
}

/// JWT NumericDate: integer or fractional seconds (Go's decoder takes both); fractions are
/// truncated since `now` is whole seconds too.
fn numeric_date<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let n: Option<serde_json::Number> = Option::deserialize(d)?;
    Ok(n.map(|n| match n.as_i64() {
        Some(i) => i,
        // `as` saturates, which is the right answer for absurd dates.
        None => n.as_f64().unwrap_or(0.0) as i64,
    }))
}

/// `b64` (when non-empty) decoded, else the raw JSON bytes; empty = absent.
fn payload(
    json: Option<&RawValue>,
    b64: Option<&str>,
    field: &'static str,
) -> Result<Bytes, InvalidReason> {
    match b64 {
        Some(s) if !s.is_empty() => base64::engine::general_purpose::STANDARD
            .decode(s)
            .map(Bytes::from)
            .map_err(|_| InvalidReason::Base64(field)),
        _ => Ok(raw_bytes(json)),
    }
}

fn raw_bytes(v: Option<&RawValue>) -> Bytes {
    v.map_or_else(Bytes::new, |v| Bytes::copy_from_slice(v.get().as_bytes()))
}

impl RawConnect<'_> {
    /// Centrifugo only rejects a non-empty `channel`.
    pub fn has_channel(&self) -> bool {
        self.channel.as_deref().is_some_and(|c| !c.is_empty())
    }

    pub fn into_token(self, user: String, exp: Option<i64>) -> Result<ConnectToken, InvalidReason> {
        let mut subs = HashMap::new();
        for (channel, raw) in self.subs.unwrap_or_default() {
            let opts = SubOptions {
                info: payload(raw.info, raw.b64info.as_deref(), "subs.b64info")?,
                data: payload(raw.data, raw.b64data.as_deref(), "subs.b64data")?,
                overrides: raw.overrides.into(),
                expires_at: None,
                cache_recover: false,
            };
            subs.insert(channel, opts);
        }
        Ok(ConnectToken {
            user,
            exp,
            expire_at: self.expire_at,
            info: payload(self.info, self.b64info.as_deref(), "b64info")?,
            channels: self.channels.unwrap_or_default(),
            subs,
            meta: raw_bytes(self.meta),
        })
    }
}

impl RawSubscribe<'_> {
    pub fn into_token(
        self,
        user: String,
        exp: Option<i64>,
    ) -> Result<SubscribeToken, InvalidReason> {
        let channel = match self.channel {
            Some(c) if !c.is_empty() => c,
            _ => return Err(InvalidReason::MissingChannel),
        };
        Ok(SubscribeToken {
            user,
            channel,
            // Go decodes an absent and an empty `client` alike: no binding.
            client: self.client.filter(|c| !c.is_empty()),
            info: payload(self.info, self.b64info.as_deref(), "b64info")?,
            data: payload(self.data, self.b64data.as_deref(), "b64data")?,
            exp,
            expire_at: self.expire_at,
            overrides: self.overrides.into(),
        })
    }
}

/// Reads a custom `user_id_claim` from the whole payload: an exact top-level key first (claim
/// names like `https://example.com/uid` contain dots), then a dotted path into nested objects
/// (Centrifugo resolves the name as a path). Strings are taken as is, numbers and booleans in
/// their JSON spelling; absent or null = anonymous.
pub(super) fn custom_user_id(payload: &str, claim: &str) -> Result<String, InvalidReason> {
    let root: serde_json::Value =
        serde_json::from_str(payload).map_err(|e| InvalidReason::Claims(e.to_string()))?;
    let found = root
        .get(claim)
        .or_else(|| claim.split('.').try_fold(&root, |node, key| node.get(key)));
    match found {
        None | Some(serde_json::Value::Null) => Ok(String::new()),
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => Ok(v.to_string()),
        Some(_) => Err(InvalidReason::UserIdClaim),
    }
}
