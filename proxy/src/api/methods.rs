//! The API methods. Request and result field names are Centrifugo's.

use std::collections::HashMap;

use bytes::Bytes;
use gyre_proto::Publication;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::reply::ReplyList;
use super::{
    ApiError, BAD_REQUEST, CallError, METHOD_NOT_FOUND, MethodResult, NOT_AVAILABLE,
    UNKNOWN_CHANNEL, UNRECOVERABLE_POSITION,
};
use crate::engine::{ControlCommand, HistoryQuery, PublishOptions, StreamPosition};
use crate::protocol::channel_pattern::ChannelPattern;
use crate::protocol::node::Node;
use crate::protocol::session::history_options;
use crate::protocol::survey;
use gyre_proto::codes;

/// Runs one method on its JSON body. `batch` is not one of them: it runs only at the top level
/// (`super::batch`), so a `batch` command inside a batch is "method not found" and batches
/// never nest, as in Centrifugo.
pub async fn call(node: &Node, method: &str, body: &[u8]) -> MethodResult {
    match method {
        "publish" => to_raw(&publish(node, parse(body)?).await?),
        "broadcast" => broadcast(node, parse(body)?).await,
        "history" => to_raw(&history(node, parse(body)?).await?),
        "history_remove" => {
            let request: ChannelRequest = parse(body)?;
            node.config
                .channel_options(&request.channel)
                .map_err(|_| UNKNOWN_CHANNEL)?;
            node.engine.remove_history(&request.channel).await?;
            to_raw(&Empty {})
        }
        "presence" => {
            let request: ChannelRequest = parse(body)?;
            presence_enabled(node, &request.channel)?;
            let presence = node.engine.presence(&request.channel).await?;
            let presence: HashMap<String, ClientInfoJson> = presence
                .into_iter()
                .map(|(client, info)| (client, ClientInfoJson::from(info)))
                .collect();
            to_raw(&serde_json::json!({ "presence": presence }))
        }
        "presence_stats" => {
            let request: ChannelRequest = parse(body)?;
            presence_enabled(node, &request.channel)?;
            let stats = node.engine.presence_stats(&request.channel).await?;
            to_raw(&serde_json::json!({
                "num_clients": stats.num_clients,
                "num_users": stats.num_users,
            }))
        }
        "channels" => {
            let request: ChannelsRequest = parse(body)?;
            if !request.pattern.is_empty()
                && let Err(reason) = ChannelPattern::parse(&request.pattern)
            {
                tracing::debug!(pattern = %request.pattern, %reason, "api: bad channels pattern");
                return Err(BAD_REQUEST.into());
            }
            // Every node's subscribers, not only this node's.
            let totals = survey::cluster_channels(node, &request.pattern).await?;
            let channels: HashMap<String, serde_json::Value> = totals
                .into_iter()
                .map(|(channel, n)| (channel, serde_json::json!({ "num_clients": n })))
                .collect();
            to_raw(&serde_json::json!({ "channels": channels }))
        }
        "info" => {
            let _: NoParams = parse(body)?;
            // Every node that announced itself lately, this one with its figures of now.
            let mut nodes = node.nodes.alive();
            nodes.retain(|other| other.uid != node.id);
            nodes.insert(0, node.info());
            to_raw(&serde_json::json!({ "nodes": nodes }))
        }
        "subscribe" | "unsubscribe" | "disconnect" | "refresh" => {
            let command = control_command(node, method, parse(body)?)?;
            node.engine.publish_control(&command).await?;
            to_raw(&Empty {})
        }
        _ => Err(METHOD_NOT_FOUND.into()),
    }
}

/// The request of a method without parameters: any JSON object (fields are ignored).
#[derive(Deserialize)]
struct NoParams {}

/// `channels`: an optional glob pattern (`protocol::channel_pattern`).
#[derive(Deserialize)]
struct ChannelsRequest {
    #[serde(default)]
    pattern: String,
}

#[derive(Deserialize)]
struct ControlRequest {
    #[serde(default)]
    user: String,
    #[serde(default)]
    channel: String,
    #[serde(default)]
    client: String,
    #[serde(default)]
    info: Option<Box<RawValue>>,
    #[serde(default)]
    data: Option<Box<RawValue>>,
    #[serde(default)]
    whitelist: Vec<String>,
    #[serde(default)]
    disconnect: Option<DisconnectSpec>,
    #[serde(default)]
    expired: bool,
    #[serde(default)]
    expire_at: i64,
}

#[derive(Deserialize)]
struct DisconnectSpec {
    code: u16,
    #[serde(default)]
    reason: String,
}

/// The control command a `subscribe`/`unsubscribe`/`disconnect`/`refresh` call sends to every
/// node. These act on connections, which are found by user (and optionally client id).
fn control_command(
    node: &Node,
    method: &str,
    request: ControlRequest,
) -> Result<ControlCommand, ApiError> {
    if request.user.is_empty() && request.client.is_empty() {
        return Err(BAD_REQUEST);
    }
    let needs_channel = matches!(method, "subscribe" | "unsubscribe");
    if needs_channel {
        node.config
            .channel_options(&request.channel)
            .map_err(|_| UNKNOWN_CHANNEL)?;
    }
    let raw = |value: Option<Box<RawValue>>| value.map(|v| v.get().to_owned()).unwrap_or_default();
    Ok(match method {
        "subscribe" => ControlCommand::Subscribe {
            user: request.user,
            channel: request.channel,
            client: request.client,
            info: raw(request.info),
            data: raw(request.data),
        },
        "unsubscribe" => ControlCommand::Unsubscribe {
            user: request.user,
            channel: request.channel,
            client: request.client,
        },
        "disconnect" => {
            let spec = request.disconnect.unwrap_or(DisconnectSpec {
                code: codes::FORCE_DISCONNECT.code,
                reason: codes::FORCE_DISCONNECT.reason.to_string(),
            });
            // 0–2999 belong to the client and transport; a server never sends them.
            if spec.code < 3000 {
                return Err(BAD_REQUEST);
            }
            ControlCommand::Disconnect {
                user: request.user,
                client: request.client,
                code: spec.code,
                reason: spec.reason,
                whitelist: request.whitelist,
            }
        }
        _ => ControlCommand::Refresh {
            user: request.user,
            client: request.client,
            expired: request.expired,
            expire_at: request.expire_at,
        },
    })
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, CallError> {
    serde_json::from_slice(body).map_err(CallError::Undecodable)
}

fn to_raw<T: Serialize>(value: &T) -> MethodResult {
    Ok(encode(value)?)
}

/// `value`'s JSON. serde_json fails only on maps with non-string keys, which no result has.
fn encode<T: Serialize>(value: &T) -> Result<Box<RawValue>, ApiError> {
    serde_json::value::to_raw_value(value).map_err(|_| super::INTERNAL)
}

#[derive(Serialize)]
struct Empty {}

#[derive(Deserialize)]
struct ChannelRequest {
    channel: String,
}

#[derive(Deserialize)]
struct PublishRequest {
    channel: String,
    #[serde(default)]
    data: Option<Box<RawValue>>,
    #[serde(default)]
    b64data: Option<String>,
    #[serde(default)]
    skip_history: bool,
    #[serde(default)]
    tags: HashMap<String, String>,
    #[serde(default)]
    idempotency_key: Option<String>,
    #[serde(default)]
    delta: bool,
    #[serde(default)]
    version: u64,
    #[serde(default)]
    version_epoch: String,
}

#[derive(Serialize, Default)]
struct PublishResult {
    #[serde(skip_serializing_if = "is_zero")]
    offset: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    epoch: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

async fn publish(node: &Node, request: PublishRequest) -> Result<PublishResult, ApiError> {
    let data = payload(request.data.as_deref(), request.b64data.as_deref())?;
    let options = PublishOptions {
        tags: request.tags,
        idempotency_key: request.idempotency_key,
        delta: request.delta,
        version: request.version,
        version_epoch: request.version_epoch,
        ..Default::default()
    };
    publish_payload(node, &request.channel, data, request.skip_history, options).await
}

/// The bytes to publish: `data` as its JSON text, or `b64data` decoded (binary payloads, for
/// Protobuf clients: JSON clients cannot be sent what is not JSON). Exactly one of them must
/// be given; an empty `b64data` counts as absent, as in Centrifugo. Bad base64, an empty
/// payload, both or neither are error 107.
fn payload(data: Option<&RawValue>, b64data: Option<&str>) -> Result<Bytes, ApiError> {
    use base64::Engine as _;
    let bytes = match (data, b64data.filter(|b| !b.is_empty())) {
        (Some(raw), None) => Bytes::copy_from_slice(raw.get().as_bytes()),
        (None, Some(b64)) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map(Bytes::from)
            .map_err(|_| BAD_REQUEST)?,
        _ => return Err(BAD_REQUEST),
    };
    if bytes.is_empty() {
        return Err(BAD_REQUEST);
    }
    Ok(bytes)
}

/// Publishes with `publish_options` (their `history` comes from the channel's namespace). A
/// publication its `version` skipped answers like one without history: no offset, no epoch
/// (Centrifugo answers it with success too, and it took no position).
async fn publish_payload(
    node: &Node,
    channel: &str,
    data: Bytes,
    skip_history: bool,
    mut publish_options: PublishOptions,
) -> Result<PublishResult, ApiError> {
    let options = node
        .config
        .channel_options(channel)
        .map_err(|_| UNKNOWN_CHANNEL)?;
    publish_options.history = if skip_history {
        None
    } else {
        history_options(options)
    };
    let StreamPosition { offset, epoch } =
        node.engine.publish(channel, data, &publish_options).await?;
    Ok(PublishResult { offset, epoch })
}

#[derive(Deserialize)]
struct BroadcastRequest {
    channels: Vec<String>,
    #[serde(default)]
    data: Option<Box<RawValue>>,
    #[serde(default)]
    b64data: Option<String>,
    #[serde(default)]
    skip_history: bool,
    #[serde(default)]
    tags: HashMap<String, String>,
    #[serde(default)]
    idempotency_key: Option<String>,
    #[serde(default)]
    delta: bool,
    #[serde(default)]
    version: u64,
    #[serde(default)]
    version_epoch: String,
}

async fn broadcast(node: &Node, request: BroadcastRequest) -> MethodResult {
    // One payload for every channel; a bad one fails the whole call, before any publish.
    let data = payload(request.data.as_deref(), request.b64data.as_deref())?;
    // Written as they come, like batch replies: a 4 MB body can name 400,000 channels.
    let mut responses = ReplyList::new("responses", request.channels.len() * 16);
    for channel in &request.channels {
        let options = PublishOptions {
            tags: request.tags.clone(),
            idempotency_key: request.idempotency_key.clone(),
            delta: request.delta,
            version: request.version,
            version_epoch: request.version_epoch.clone(),
            ..Default::default()
        };
        let published =
            publish_payload(node, channel, data.clone(), request.skip_history, options).await;
        match published.and_then(|result| encode(&result)) {
            Ok(result) => responses.push_result("result", &result),
            Err(error) => responses.push_error(error),
        }
    }
    String::from_utf8(responses.finish())
        .ok()
        .and_then(|json| RawValue::from_string(json).ok())
        .ok_or(super::INTERNAL.into())
}

#[derive(Deserialize)]
struct HistoryRequest {
    channel: String,
    #[serde(default)]
    limit: i64,
    #[serde(default)]
    since: Option<SincePosition>,
    #[serde(default)]
    reverse: bool,
}

#[derive(Deserialize)]
struct SincePosition {
    #[serde(default)]
    offset: u64,
    #[serde(default)]
    epoch: String,
}

#[derive(Serialize)]
struct HistoryResult {
    publications: Vec<PublicationJson>,
    #[serde(skip_serializing_if = "is_zero")]
    offset: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    epoch: String,
}

async fn history(node: &Node, request: HistoryRequest) -> Result<HistoryResult, ApiError> {
    let options = node
        .config
        .channel_options(&request.channel)
        .map_err(|_| UNKNOWN_CHANNEL)?;
    if history_options(options).is_none() {
        return Err(NOT_AVAILABLE);
    }
    let query = HistoryQuery {
        since: request.since.as_ref().map(|s| s.offset),
        limit: match request.limit {
            0 => Some(0),
            n if n < 0 => None,
            n => Some(n as u64),
        },
        reverse: request.reverse,
    };
    let history = node.engine.history(&request.channel, query).await?;
    if let Some(since) = &request.since
        && !since.epoch.is_empty()
        && since.epoch != history.position.epoch
    {
        return Err(UNRECOVERABLE_POSITION);
    }
    Ok(HistoryResult {
        publications: history
            .publications
            .iter()
            .map(PublicationJson::from)
            .collect(),
        offset: history.position.offset,
        epoch: history.position.epoch,
    })
}

fn presence_enabled(node: &Node, channel: &str) -> Result<(), ApiError> {
    let options = node
        .config
        .channel_options(channel)
        .map_err(|_| UNKNOWN_CHANNEL)?;
    if options.presence {
        Ok(())
    } else {
        Err(NOT_AVAILABLE)
    }
}

#[derive(Serialize)]
struct ClientInfoJson {
    #[serde(skip_serializing_if = "String::is_empty")]
    user: String,
    client: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    conn_info: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    chan_info: Option<Box<RawValue>>,
}

impl From<gyre_proto::ClientInfo> for ClientInfoJson {
    fn from(info: gyre_proto::ClientInfo) -> Self {
        Self {
            user: info.user,
            client: info.client,
            conn_info: raw_json(&info.conn_info),
            chan_info: raw_json(&info.chan_info),
        }
    }
}

#[derive(Serialize)]
struct PublicationJson {
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    info: Option<ClientInfoJson>,
    #[serde(skip_serializing_if = "is_zero")]
    offset: u64,
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    tags: HashMap<String, String>,
}

impl From<&Publication> for PublicationJson {
    fn from(publication: &Publication) -> Self {
        Self {
            data: raw_json(&publication.data),
            info: publication.info.clone().map(ClientInfoJson::from),
            offset: publication.offset,
            tags: publication.tags.clone(),
        }
    }
}

/// Stored payloads are JSON when they came from JSON clients or the API; anything else is
/// left out rather than breaking the response.
fn raw_json(bytes: &Bytes) -> Option<Box<RawValue>> {
    if bytes.is_empty() {
        return None;
    }
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| RawValue::from_string(text.to_owned()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).expect("JSON")
    }

    #[test]
    fn payload_is_data_or_b64data_exactly() {
        let data = raw(r#"{"n":1}"#);
        assert_eq!(payload(Some(&data), None).unwrap(), &br#"{"n":1}"#[..]);
        assert_eq!(payload(Some(&data), Some("")).unwrap(), &br#"{"n":1}"#[..]);
        assert_eq!(
            payload(None, Some("AAEC/w==")).unwrap(),
            &[0u8, 1, 2, 255][..]
        );
        for (data, b64) in [
            (Some(&*data), Some("AAEC")),
            (None, None),
            (None, Some("")),
            (None, Some("not base64!")),
        ] {
            assert_eq!(payload(data, b64), Err(BAD_REQUEST), "{data:?} {b64:?}");
        }
    }
}
