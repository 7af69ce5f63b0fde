//! What a backend's answer means, as pure functions of the answer (and the time): the session
//! applies the result; nothing here does IO. Centrifugo's rules:
//!
//! - An answer is read in this order: `disconnect`, then `error`, then `result` ([`Answer`]).
//! - `connect`, `subscribe`, `publish`, `rpc`: a failed call (backend down, timeout, not 200,
//!   not JSON) is error 100 "internal server error", temporary, so SDKs retry; a `disconnect`
//!   or `error` answer reaches the client as it is.
//! - `refresh`, `sub_refresh`: their `error` and `disconnect` are ignored; a failed call keeps
//!   the connection (subscription) for [`RETRY_AFTER`] and asks again; no result, or
//!   `expired`, ends it.
//! - `b64*` fields win over their raw JSON twins; bad base64 is an internal error.

use std::collections::HashMap;

use base64::Engine as _;
use bytes::Bytes;
use gyre_proto::proxy as wire;

use crate::auth::{Overrides, SubOptions};

/// How long a connection or subscription lives on when its refresh call failed, before the
/// next attempt (Centrifugo's fixed minute).
pub const RETRY_AFTER: i64 = 60;

/// A backend's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer<R> {
    Disconnect(wire::Disconnect),
    Error(wire::Error),
    /// `None`: the answer had neither of the above nor a result.
    Result(Option<R>),
}

/// The answer messages of every event.
pub trait Response: prost::Message + Default + serde::de::DeserializeOwned + 'static {
    type Result;
    fn answer(self) -> Answer<Self::Result>;
}

macro_rules! responses {
    ($($response:ident => $result:ident,)*) => {$(
        impl Response for wire::$response {
            type Result = wire::$result;
            fn answer(self) -> Answer<wire::$result> {
                if let Some(disconnect) = self.disconnect {
                    Answer::Disconnect(disconnect)
                } else if let Some(error) = self.error {
                    Answer::Error(error)
                } else {
                    Answer::Result(self.result)
                }
            }
        }
    )*};
}

responses! {
    ConnectResponse => ConnectResult,
    RefreshResponse => RefreshResult,
    SubscribeResponse => SubscribeResult,
    PublishResponse => PublishResult,
    RpcResponse => RpcResult,
    SubRefreshResponse => SubRefreshResult,
}

/// Why a hook refuses what the client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// An error reply with the backend's code and message.
    Error {
        code: u32,
        message: String,
        temporary: bool,
    },
    /// The connection ends with this code (3000–4999; anything else became 3004).
    Disconnect { code: u16, reason: String },
    /// The call failed or its answer was unusable: error 100 "internal server error"
    /// (temporary), or disconnect 3004 where no error reply can be sent.
    Internal,
}

impl Refusal {
    /// The refusal an `error` or `disconnect` answer means.
    pub fn from_error(error: wire::Error) -> Self {
        Self::Error {
            code: error.code,
            message: error.message,
            temporary: error.temporary,
        }
    }

    /// Disconnect codes outside 3000–4999 cannot be WebSocket close codes of ours, so they
    /// are refused (as an internal error) rather than sent.
    pub fn from_disconnect(disconnect: wire::Disconnect) -> Self {
        match u16::try_from(disconnect.code) {
            Ok(code) if (3000..=4999).contains(&code) => Self::Disconnect {
                code,
                reason: disconnect.reason,
            },
            _ => {
                tracing::warn!(
                    code = disconnect.code,
                    "backend disconnect code outside 3000-4999 replaced by 3004"
                );
                Self::Internal
            }
        }
    }
}

/// The answer of an interactive event (connect, subscribe, publish, RPC) as its result or a
/// refusal; `Err(())` of the call (it failed) is [`Refusal::Internal`].
pub fn interactive<R>(answer: Result<Answer<R>, ()>) -> Result<Option<R>, Refusal> {
    match answer {
        Err(()) => Err(Refusal::Internal),
        Ok(Answer::Disconnect(disconnect)) => Err(Refusal::from_disconnect(disconnect)),
        Ok(Answer::Error(error)) => Err(Refusal::from_error(error)),
        Ok(Answer::Result(result)) => Ok(result),
    }
}

/// A payload given as raw JSON or as base64 (which wins when both are set).
pub fn payload(raw: Bytes, b64: &str) -> Result<Bytes, Refusal> {
    if b64.is_empty() {
        return Ok(raw);
    }
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map(Bytes::from)
        .map_err(|error| {
            tracing::warn!(%error, "backend sent bad base64");
            Refusal::Internal
        })
}

/// A payload for a request: raw JSON, or base64 in binary mode.
pub fn request_payload(data: &Bytes, binary: bool) -> (Bytes, String) {
    if binary {
        (
            Bytes::new(),
            if data.is_empty() {
                String::new()
            } else {
                base64::engine::general_purpose::STANDARD.encode(data)
            },
        )
    } else {
        (data.clone(), String::new())
    }
}

/// Who the connect proxy says the client is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Connected {
    pub user: String,
    /// Unix seconds; `None` = never expires.
    pub expires_at: Option<i64>,
    pub info: Bytes,
    /// Returned to the client in the connect result.
    pub data: Bytes,
    /// Server-side subscriptions: `channels` first, then `subs` (which win for a channel in
    /// both), sorted by channel within each.
    pub subscriptions: Vec<(String, SubOptions)>,
    pub meta: Bytes,
}

pub fn connected(result: wire::ConnectResult) -> Result<Connected, Refusal> {
    let mut subs: Vec<(String, wire::SubscribeOptions)> = result.subs.into_iter().collect();
    subs.sort_by(|a, b| a.0.cmp(&b.0));
    let mut channels: Vec<String> = result
        .channels
        .into_iter()
        .filter(|channel| !subs.iter().any(|(c, _)| c == channel))
        .collect();
    channels.sort();
    channels.dedup();
    let mut subscriptions: Vec<(String, SubOptions)> = channels
        .into_iter()
        .map(|channel| (channel, SubOptions::default()))
        .collect();
    for (channel, options) in subs {
        subscriptions.push((
            channel,
            SubOptions {
                info: payload(options.info, &options.b64info)?,
                data: payload(options.data, &options.b64data)?,
                overrides: overrides(options.r#override),
                expires_at: (options.expire_at > 0).then_some(options.expire_at),
                cache_recover: options.cache_recover,
            },
        ));
    }
    Ok(Connected {
        user: result.user,
        expires_at: (result.expire_at > 0).then_some(result.expire_at),
        info: payload(result.info, &result.b64info)?,
        data: payload(result.data, &result.b64data)?,
        subscriptions,
        meta: result.meta,
    })
}

/// The namespace option changes of an `override` object.
pub fn overrides(value: Option<wire::SubscribeOptionOverride>) -> Overrides {
    let value = value.unwrap_or_default();
    let get = |v: Option<wire::BoolValue>| v.map(|b| b.value);
    Overrides {
        presence: get(value.presence),
        join_leave: get(value.join_leave),
        force_push_join_leave: get(value.force_push_join_leave),
        force_positioning: get(value.force_positioning),
        force_recovery: get(value.force_recovery),
    }
}

/// What the subscribe proxy grants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscribed {
    pub info: Bytes,
    pub data: Bytes,
    /// Unix seconds; `None` = never expires.
    pub expires_at: Option<i64>,
    pub overrides: Overrides,
}

pub fn subscribed(result: Option<wire::SubscribeResult>) -> Result<Subscribed, Refusal> {
    let Some(result) = result else {
        return Ok(Subscribed::default());
    };
    Ok(Subscribed {
        info: payload(result.info, &result.b64info)?,
        data: payload(result.data, &result.b64data)?,
        expires_at: (result.expire_at > 0).then_some(result.expire_at),
        overrides: overrides(result.r#override),
    })
}

/// How the publish proxy changes a publication.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Publish {
    /// Replaces the client's data when set.
    pub data: Option<Bytes>,
    pub skip_history: bool,
    pub tags: HashMap<String, String>,
    pub idempotency_key: Option<String>,
    /// May reach delta subscribers as a patch (as the publish API's `delta`).
    pub delta: bool,
    /// Skipped unless newer than the channel's version (as the publish API's `version`).
    pub version: u64,
    pub version_epoch: String,
}

pub fn publish(result: Option<wire::PublishResult>) -> Result<Publish, Refusal> {
    let Some(result) = result else {
        return Ok(Publish::default());
    };
    let data = payload(result.data, &result.b64data)?;
    Ok(Publish {
        data: (!data.is_empty()).then_some(data),
        skip_history: result.skip_history,
        tags: result.tags,
        idempotency_key: (!result.idempotency_key.is_empty()).then_some(result.idempotency_key),
        delta: result.delta,
        version: result.version,
        version_epoch: result.version_epoch,
    })
}

pub fn rpc(result: Option<wire::RpcResult>) -> Result<Bytes, Refusal> {
    match result {
        Some(result) => payload(result.data, &result.b64data),
        None => Ok(Bytes::new()),
    }
}

/// What a refresh call decided for the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refresh {
    /// Disconnect with 3005 "connection expired".
    Expired,
    /// Bad base64 info: disconnect with 3004.
    Internal,
    Prolonged {
        /// Unix seconds (always in the future).
        expires_at: i64,
        /// New connection info, when given.
        info: Option<Bytes>,
        /// New connection meta, when given.
        meta: Option<Bytes>,
    },
}

/// `answer`: the result, or `Err(())` when the call failed. `current`: the expiry that was
/// reached. A result without `expire_at` keeps it, so the connection is over.
pub fn refresh(answer: Result<Option<wire::RefreshResult>, ()>, current: i64, now: i64) -> Refresh {
    let result = match answer {
        Err(()) => {
            return Refresh::Prolonged {
                expires_at: now + RETRY_AFTER,
                info: None,
                meta: None,
            };
        }
        Ok(None) => return Refresh::Expired,
        Ok(Some(result)) if result.expired => return Refresh::Expired,
        Ok(Some(result)) => result,
    };
    let Ok(info) = payload(result.info, &result.b64info) else {
        return Refresh::Internal;
    };
    let expires_at = if result.expire_at > 0 {
        result.expire_at
    } else {
        current
    };
    if expires_at <= now {
        return Refresh::Expired;
    }
    Refresh::Prolonged {
        expires_at,
        info: (!info.is_empty()).then_some(info),
        meta: (!result.meta.is_empty()).then_some(result.meta),
    }
}

/// What a sub_refresh call decided for a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubRefresh {
    /// Unsubscribe with 2501 "subscription expired".
    Expired,
    Prolonged {
        /// `None`: the subscription no longer expires (the backend gave no `expire_at`).
        expires_at: Option<i64>,
        info: Option<Bytes>,
    },
}

pub fn sub_refresh(answer: Result<Option<wire::SubRefreshResult>, ()>, now: i64) -> SubRefresh {
    let result = match answer {
        Err(()) => {
            return SubRefresh::Prolonged {
                expires_at: Some(now + RETRY_AFTER),
                info: None,
            };
        }
        Ok(None) => return SubRefresh::Expired,
        Ok(Some(result)) if result.expired => return SubRefresh::Expired,
        Ok(Some(result)) => result,
    };
    if result.expire_at > 0 && result.expire_at < now {
        return SubRefresh::Expired;
    }
    let Ok(info) = payload(result.info, &result.b64info) else {
        return SubRefresh::Expired;
    };
    SubRefresh::Prolonged {
        expires_at: (result.expire_at > 0).then_some(result.expire_at),
        info: (!info.is_empty()).then_some(info),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_disconnect_first_then_error_then_result() {
        let both = wire::ConnectResponse {
            result: Some(wire::ConnectResult::default()),
            error: Some(wire::Error {
                code: 1000,
                message: "nope".into(),
                temporary: false,
            }),
            disconnect: Some(wire::Disconnect {
                code: 4501,
                reason: "unauthorized".into(),
            }),
        };
        assert_eq!(
            interactive(Ok(both.clone().answer())),
            Err::<Option<wire::ConnectResult>, _>(Refusal::Disconnect {
                code: 4501,
                reason: "unauthorized".into()
            })
        );
        let error_only = wire::ConnectResponse {
            disconnect: None,
            ..both
        };
        assert_eq!(
            interactive(Ok(error_only.answer())),
            Err::<Option<wire::ConnectResult>, _>(Refusal::Error {
                code: 1000,
                message: "nope".into(),
                temporary: false
            })
        );
        assert_eq!(
            interactive::<wire::ConnectResult>(Err(())),
            Err(Refusal::Internal)
        );
    }

    #[test]
    fn disconnect_codes_outside_the_close_code_range_become_internal() {
        for code in [0, 1000, 2999, 5000, 70_000] {
            assert_eq!(
                Refusal::from_disconnect(wire::Disconnect {
                    code,
                    reason: "x".into()
                }),
                Refusal::Internal,
                "{code}"
            );
        }
        assert!(matches!(
            Refusal::from_disconnect(wire::Disconnect {
                code: 3000,
                reason: String::new()
            }),
            Refusal::Disconnect { code: 3000, .. }
        ));
    }

    #[test]
    fn connect_results_become_credentials() {
        let mut subs = HashMap::new();
        subs.insert(
            "news".to_owned(),
            wire::SubscribeOptions {
                b64info: "eyJhIjoxfQ==".into(),
                data: Bytes::from_static(b"{\"d\":1}"),
                r#override: Some(wire::SubscribeOptionOverride {
                    presence: Some(wire::BoolValue { value: false }),
                    ..Default::default()
                }),
                ..Default::default()
            },
        );
        let result = wire::ConnectResult {
            user: "56".into(),
            expire_at: 1_900_000_000,
            info: Bytes::from_static(b"{\"name\":\"Ann\"}"),
            b64data: "aGk=".into(),
            channels: vec!["b".into(), "news".into(), "a".into(), "a".into()],
            subs,
            meta: Bytes::from_static(b"{\"m\":1}"),
            ..Default::default()
        };
        let c = connected(result).unwrap();
        assert_eq!(c.user, "56");
        assert_eq!(c.expires_at, Some(1_900_000_000));
        assert_eq!(c.data, "hi");
        let channels: Vec<&str> = c.subscriptions.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(channels, ["a", "b", "news"]);
        assert_eq!(c.subscriptions[2].1.info, "{\"a\":1}");
        assert_eq!(c.subscriptions[2].1.overrides.presence, Some(false));
        assert_eq!(c.meta, "{\"m\":1}");
        let bad = wire::ConnectResult {
            b64info: "%%%".into(),
            ..Default::default()
        };
        assert_eq!(connected(bad), Err(Refusal::Internal));
        assert_eq!(
            connected(wire::ConnectResult::default())
                .unwrap()
                .expires_at,
            None
        );
    }

    #[test]
    fn refresh_prolongs_expires_or_retries() {
        let now = 1000;
        let prolonged = |expires_at| wire::RefreshResult {
            expire_at: expires_at,
            ..Default::default()
        };
        assert_eq!(
            refresh(Ok(Some(prolonged(1600))), 990, now),
            Refresh::Prolonged {
                expires_at: 1600,
                info: None,
                meta: None
            }
        );
        assert_eq!(
            refresh(Err(()), 990, now),
            Refresh::Prolonged {
                expires_at: now + RETRY_AFTER,
                info: None,
                meta: None
            },
            "a backend that is down does not end connections"
        );
        assert_eq!(refresh(Ok(None), 990, now), Refresh::Expired);
        let expired = wire::RefreshResult {
            expired: true,
            expire_at: 5000,
            ..Default::default()
        };
        assert_eq!(refresh(Ok(Some(expired)), 990, now), Refresh::Expired);
        assert_eq!(
            refresh(Ok(Some(prolonged(0))), 990, now),
            Refresh::Expired,
            "no new expiry: the old one stands and has passed"
        );
        assert_eq!(
            refresh(Ok(Some(prolonged(999))), 990, now),
            Refresh::Expired
        );
    }

    #[test]
    fn sub_refresh_prolongs_expires_or_retries() {
        let now = 1000;
        let result = |expire_at, expired| wire::SubRefreshResult {
            expire_at,
            expired,
            ..Default::default()
        };
        assert_eq!(
            sub_refresh(Ok(Some(result(2000, false))), now),
            SubRefresh::Prolonged {
                expires_at: Some(2000),
                info: None
            }
        );
        assert_eq!(
            sub_refresh(Ok(Some(result(0, false))), now),
            SubRefresh::Prolonged {
                expires_at: None,
                info: None
            },
            "no expire_at: the subscription stops expiring, as in Centrifugo"
        );
        assert_eq!(
            sub_refresh(Ok(Some(result(2000, true))), now),
            SubRefresh::Expired
        );
        assert_eq!(
            sub_refresh(Ok(Some(result(999, false))), now),
            SubRefresh::Expired
        );
        assert_eq!(sub_refresh(Ok(None), now), SubRefresh::Expired);
        assert_eq!(
            sub_refresh(Err(()), now),
            SubRefresh::Prolonged {
                expires_at: Some(now + RETRY_AFTER),
                info: None
            }
        );
    }

    #[test]
    fn publish_results_replace_data_only_when_given() {
        assert_eq!(publish(None).unwrap(), Publish::default());
        let p = publish(Some(wire::PublishResult {
            data: Bytes::from_static(b"{\"x\":1}"),
            skip_history: true,
            idempotency_key: "k".into(),
            delta: true,
            version: 3,
            version_epoch: "e".into(),
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(p.data.unwrap(), "{\"x\":1}");
        assert!(p.skip_history && p.delta);
        assert_eq!(p.idempotency_key.as_deref(), Some("k"));
        assert_eq!((p.version, p.version_epoch.as_str()), (3, "e"));
        assert_eq!(request_payload(&Bytes::from_static(b"hi"), true).1, "aGk=");
        assert_eq!(request_payload(&Bytes::from_static(b"{}"), false).0, "{}");
    }
}
