//! Backend hooks ("proxies" in Centrifugo's words): where Gyre asks the application backend
//! about connects, refreshes, subscriptions, publications and RPC calls. Centrifugo v6's keys and
//! nesting:
//!
//! - `client.proxy.connect` / `client.proxy.refresh`: [`SwitchedProxy`] (`enabled` + a
//!   [`Proxy`]);
//! - `channel.proxy.subscribe|publish|sub_refresh|subscribe_stream`: a [`Proxy`] each, used by
//!   namespaces that set `*_proxy_enabled` and leave `*_proxy_name` at `default`;
//! - `rpc.proxy` plus [`Rpc`]'s namespaces;
//! - `proxies`: [`NamedProxy`]s that namespaces name in `*_proxy_name` (the granular mode).
//!
//! A proxy object is the same everywhere. Gyre adds two keys of its own to it,
//! `max_concurrent_requests` and `http.h2c` (see [`Proxy`]).
//!
//! Also here: what a failed connect means for unidirectional clients
//! (`client.connect_code_to_unidirectional_disconnect`, `uni_sse` and `uni_http_stream`'s
//! `connect_code_to_http_response`), and Centrifugo PRO's `cache_empty` and `state` proxies,
//! accepted without effect.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration;
use super::schema::TlsConfig;

/// One backend endpoint and how to call it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Proxy {
    /// `http://…` or `https://…` (JSON POST), or `grpc://host:port` (Centrifugo's
    /// `CentrifugoProxy` service). Empty = not configured.
    pub endpoint: String,
    /// Deadline of one call, waiting for a free request slot included.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Headers of the connection's own request (WebSocket upgrade, HTTP stream, SSE, SockJS)
    /// forwarded to the backend (as GRPC metadata for `grpc://`).
    pub http_headers: Vec<String>,
    /// Headers the client put in its connect command (`ConnectRequest.headers`, "headers
    /// emulation") forwarded to the backend. Client-controlled: the backend must treat them as
    /// untrusted. A real header of the same name wins.
    pub emulated_headers: Vec<String>,
    /// Metadata of GRPC client connections to forward. Gyre has no GRPC client transport, so
    /// this is accepted for Centrifugo configs and has no effect.
    pub grpc_metadata: Vec<String>,
    /// Send payloads as base64 (`b64data`, encoding `binary`) instead of raw JSON.
    pub binary_encoding: bool,
    /// Add the connection's `meta` (from the connect proxy result or the token) to requests.
    pub include_connection_meta: bool,
    /// Centrifugo v5's name of `http.static_headers`; both are merged, `http.static_headers`
    /// winning on a name set in both.
    pub static_http_headers: BTreeMap<String, String>,
    /// Gyre: calls in flight to this backend at once; further calls wait for a slot within
    /// `timeout`, then fail like a timeout.
    pub max_concurrent_requests: u32,
    pub http: ProxyHttp,
    pub grpc: ProxyGrpc,
}

impl Default for Proxy {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            timeout: Duration::from_secs(1),
            http_headers: Vec::new(),
            emulated_headers: Vec::new(),
            grpc_metadata: Vec::new(),
            binary_encoding: false,
            include_connection_meta: false,
            static_http_headers: BTreeMap::new(),
            max_concurrent_requests: 256,
            http: ProxyHttp::default(),
            grpc: ProxyGrpc::default(),
        }
    }
}

impl Proxy {
    /// Whether an endpoint is set.
    pub fn is_configured(&self) -> bool {
        !self.endpoint.is_empty()
    }
}

/// `<proxy>.http`: options of HTTP endpoints only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyHttp {
    /// TLS of `https://` endpoints when `enabled`: the CA to trust, a client certificate, the
    /// name to check, or no check. Without it an `https://` endpoint is checked against the
    /// system's roots.
    pub tls: TlsConfig,
    /// Headers added to every request; forwarded headers of the same name win.
    pub static_headers: BTreeMap<String, String>,
    /// What a non-200 answer means for the client; unlisted statuses are internal errors.
    pub status_to_code_transforms: Vec<StatusTransform>,
    /// Gyre: speak HTTP/2 without TLS ("prior knowledge") to an `http://` endpoint; default is
    /// HTTP/1.1 with keep-alive. `https://` endpoints negotiate HTTP/2 by ALPN anyway.
    pub h2c: bool,
}

/// `<proxy>.grpc`: options of `grpc://` endpoints only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyGrpc {
    /// TLS to the GRPC server when `enabled` (the endpoint stays `grpc://host:port`); else
    /// plaintext HTTP/2.
    pub tls: TlsConfig,
    /// Metadata key added to every call with `credentials_value` (per-RPC credentials).
    pub credentials_key: String,
    pub credentials_value: String,
    /// Compress requests with gzip, and accept gzip-compressed answers.
    pub compression: bool,
    /// Metadata added to every call; forwarded headers of the same name win.
    pub static_metadata: BTreeMap<String, String>,
}

/// One entry of `http.status_to_code_transforms`: an HTTP status and the error or disconnect
/// the client gets for it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatusTransform {
    pub status_code: u16,
    pub to_error: TransformError,
    pub to_disconnect: TransformDisconnect,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransformError {
    pub code: u32,
    pub message: String,
    pub temporary: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransformDisconnect {
    pub code: u32,
    pub reason: String,
}

/// `client.proxy.connect` and `client.proxy.refresh`: a proxy with an `enabled` switch.
///
/// Deserialized by hand: serde's `flatten` cannot be combined with `deny_unknown_fields`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SwitchedProxy {
    pub enabled: bool,
    #[serde(flatten)]
    pub proxy: Proxy,
}

impl<'de> Deserialize<'de> for SwitchedProxy {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (enabled, proxy) = with_extra_key(deserializer, "enabled")?;
        Ok(Self {
            enabled: enabled.unwrap_or(false),
            proxy,
        })
    }
}

/// One entry of the top-level `proxies` list: a [`Proxy`] with a `name` that namespaces refer
/// to in `*_proxy_name`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NamedProxy {
    pub name: String,
    #[serde(flatten)]
    pub proxy: Proxy,
}

impl<'de> Deserialize<'de> for NamedProxy {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (name, proxy) = with_extra_key(deserializer, "name")?;
        Ok(Self {
            name: name.unwrap_or_default(),
            proxy,
        })
    }
}

/// Takes `key` out of a table and deserializes the rest as a [`Proxy`] (which rejects unknown
/// keys, with their path).
fn with_extra_key<'de, D, T>(deserializer: D, key: &str) -> Result<(Option<T>, Proxy), D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    use serde::de::Error as _;
    let mut map = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)?;
    let extra = match map.remove(key) {
        None => None,
        Some(value) => Some(
            serde_json::from_value(value).map_err(|e| D::Error::custom(format!("{key}: {e}")))?,
        ),
    };
    let proxy = serde_path_to_error::deserialize(serde_json::Value::Object(map))
        .map_err(|e| D::Error::custom(format!("{}: {}", e.path(), e.inner())))?;
    Ok((extra, proxy))
}

/// `client.proxy`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientProxies {
    /// Asked who a client is when it connects without a token.
    pub connect: SwitchedProxy,
    /// Asked whether a connection that reached its `expire_at` may go on (the server refreshes
    /// connections itself instead of the SDK sending a new token).
    pub refresh: SwitchedProxy,
}

/// `channel.proxy`: the proxies named `default` in the namespaces' `*_proxy_name`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelProxies {
    pub subscribe: Proxy,
    pub publish: Proxy,
    pub sub_refresh: Proxy,
    /// Accepted for Centrifugo configs; subscription streams are not supported (a namespace that
    /// enables them is refused at start).
    pub subscribe_stream: Proxy,
    /// Centrifugo PRO's cache-miss notifications: accepted, never called (a warning at start).
    pub cache_empty: Proxy,
    /// Centrifugo PRO's channel occupied/vacated notifications: accepted, never called (a
    /// warning at start).
    pub state: Proxy,
}

/// `rpc`: client RPC calls, proxied to the backend by namespace of the method name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rpc {
    /// The proxy named `default` in `proxy_name`.
    pub proxy: Proxy,
    /// Methods without a namespace (no `namespace_boundary` in the name).
    pub without_namespace: RpcOptions,
    pub namespaces: Vec<RpcNamespace>,
    /// What separates the namespace from the rest of a method name.
    pub namespace_boundary: String,
    pub ping: RpcPing,
}

impl Default for Rpc {
    fn default() -> Self {
        Self {
            proxy: Proxy::default(),
            without_namespace: RpcOptions::default(),
            namespaces: Vec::new(),
            namespace_boundary: ":".to_owned(),
            ping: RpcPing::default(),
        }
    }
}

impl Rpc {
    /// The options of `method`'s namespace; `None` when it names an unknown one.
    pub fn options(&self, method: &str) -> Option<&RpcOptions> {
        let boundary = self.namespace_boundary.as_str();
        let namespace = match method.split_once(boundary) {
            Some((namespace, _)) if !boundary.is_empty() && !namespace.is_empty() => namespace,
            _ => return Some(&self.without_namespace),
        };
        self.namespaces
            .iter()
            .find(|ns| ns.name == namespace)
            .map(|ns| &ns.options)
    }
}

/// Options of an RPC namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RpcOptions {
    /// Calls are proxied to the backend; otherwise they get 108 "not available".
    pub proxy_enabled: bool,
    /// `default` (= `rpc.proxy`) or the name of an entry of `proxies`.
    pub proxy_name: String,
}

impl Default for RpcOptions {
    fn default() -> Self {
        Self {
            proxy_enabled: false,
            proxy_name: DEFAULT_PROXY_NAME.to_owned(),
        }
    }
}

/// One entry of `rpc.namespaces`.
///
/// Deserialized by hand (a `name` beside the options, see [`SwitchedProxy`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RpcNamespace {
    pub name: String,
    #[serde(flatten)]
    pub options: RpcOptions,
}

impl<'de> Deserialize<'de> for RpcNamespace {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let mut map = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)?;
        let name = match map.remove("name") {
            None => String::new(),
            Some(value) => {
                serde_json::from_value(value).map_err(|e| D::Error::custom(format!("name: {e}")))?
            }
        };
        let options = serde_path_to_error::deserialize(serde_json::Value::Object(map))
            .map_err(|e| D::Error::custom(format!("{}: {}", e.path(), e.inner())))?;
        Ok(Self { name, options })
    }
}

/// `rpc.ping`: a built-in method answered by Gyre itself with an empty result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RpcPing {
    pub enabled: bool,
    pub method: String,
}

impl Default for RpcPing {
    fn default() -> Self {
        Self {
            enabled: false,
            method: "ping".to_owned(),
        }
    }
}

/// The name that refers to the section's own proxy (`channel.proxy.*`, `rpc.proxy`) rather than
/// to an entry of `proxies`.
pub const DEFAULT_PROXY_NAME: &str = "default";

/// `client.connect_code_to_unidirectional_disconnect`: the disconnect a unidirectional client
/// (`uni_websocket`, `uni_sse`, `uni_http_stream`) gets when its connect fails with an error
/// code, instead of the built-in one (3004 for the backend's own codes). The error can come
/// from the connect proxy's `error`, from `http.status_to_code_transforms`, or be Gyre's own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectCodeToUnidirectionalDisconnect {
    pub enabled: bool,
    pub transforms: Vec<UniDisconnectTransform>,
}

impl ConnectCodeToUnidirectionalDisconnect {
    /// The disconnect configured for error `code`, when enabled.
    pub fn disconnect_for(&self, code: u32) -> Option<&TransformDisconnect> {
        if !self.enabled {
            return None;
        }
        self.transforms
            .iter()
            .find(|t| t.code == code)
            .map(|t| &t.to)
    }
}

/// One entry of `connect_code_to_unidirectional_disconnect.transforms`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UniDisconnectTransform {
    /// The connect error's code.
    pub code: u32,
    /// The disconnect (3000–4999) and reason sent instead.
    pub to: TransformDisconnect,
}

/// `uni_sse.connect_code_to_http_response` and `uni_http_stream.connect_code_to_http_response`:
/// the connect runs before the HTTP response starts, and a failed one is answered with an
/// HTTP status instead of a 200 stream that carries a disconnect push. An error code or a
/// disconnect code in `transforms` gives its status and body (the error's message or the
/// disconnect's reason when `body` is empty); any other failure is 500.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectCodeToHttpResponse {
    pub enabled: bool,
    pub transforms: Vec<HttpResponseTransform>,
}

impl ConnectCodeToHttpResponse {
    /// The status and body for a connect that failed with `code` and `text` (message or
    /// reason): the transform's, else 500.
    pub fn response_for(&self, code: u32, text: &str) -> (u16, String) {
        match self.transforms.iter().find(|t| t.code == code) {
            Some(t) if t.to.body.is_empty() => (t.to.status_code, text.to_owned()),
            Some(t) => (t.to.status_code, t.to.body.clone()),
            None => (500, "Internal Server Error".to_owned()),
        }
    }
}

/// One entry of `connect_code_to_http_response.transforms`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpResponseTransform {
    /// The connect error's or disconnect's code.
    pub code: u32,
    pub to: HttpResponse,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpResponse {
    /// 200–599.
    pub status_code: u16,
    /// Empty: the error's message or the disconnect's reason.
    pub body: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_code_transforms_pick_by_code() {
        let uni = ConnectCodeToUnidirectionalDisconnect {
            enabled: true,
            transforms: vec![UniDisconnectTransform {
                code: 404,
                to: TransformDisconnect {
                    code: 4904,
                    reason: "not found".into(),
                },
            }],
        };
        assert_eq!(uni.disconnect_for(404).map(|d| d.code), Some(4904));
        assert_eq!(uni.disconnect_for(403), None);
        let off = ConnectCodeToUnidirectionalDisconnect {
            enabled: false,
            ..uni
        };
        assert_eq!(off.disconnect_for(404), None);

        let http = ConnectCodeToHttpResponse {
            enabled: true,
            transforms: vec![
                HttpResponseTransform {
                    code: 403,
                    to: HttpResponse {
                        status_code: 403,
                        body: String::new(),
                    },
                },
                HttpResponseTransform {
                    code: 4501,
                    to: HttpResponse {
                        status_code: 401,
                        body: "log in".into(),
                    },
                },
            ],
        };
        assert_eq!(http.response_for(403, "denied"), (403, "denied".into()));
        assert_eq!(
            http.response_for(4501, "unauthorized"),
            (401, "log in".into())
        );
        assert_eq!(
            http.response_for(100, "internal server error"),
            (500, "Internal Server Error".into())
        );
    }
}
