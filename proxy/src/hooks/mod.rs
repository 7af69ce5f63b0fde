//! Backend hooks (Centrifugo's "proxies"): the application backend decides who connects, who
//! subscribes and publishes, whether connections and subscriptions live on, and answers RPC
//! calls. The session calls them at a few points ([`crate::protocol::session`]); this module
//! only knows how to reach a backend and what its answers mean.
//!
//! - [`Hooks`]: the node's backends by event and name, built once from the config.
//! - [`Backend`]: one endpoint, over HTTP ([`http`]) or GRPC ([`grpc`]), with its timeout, its
//!   bound on calls in flight and its metrics; [`Caller`] is what a call says about the client.
//!   TLS (`http.tls`, `grpc.tls`) is read by [`crate::startup::tls_options`] and set up by
//!   [`crate::tls::client_config`]; a failed handshake is logged with a hint naming the key.
//! - [`headers`]: which request and emulated headers a connection keeps and a call forwards.
//! - [`outcome`]: what an answer means for the client, as pure functions.

mod grpc;
pub mod headers;
mod http;
pub mod outcome;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::http::{HeaderName, HeaderValue};
use bytes::{Bytes, BytesMut};
use gyre_proto::proxy as wire;

use self::headers::{ClientContext, Names, Rules};
use self::outcome::{Answer, Response};
use crate::config::{ChannelOptions, Config, DEFAULT_PROXY_NAME, Proxy, StatusTransform};

/// The events a backend is asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Connect,
    Refresh,
    Subscribe,
    Publish,
    SubRefresh,
    Rpc,
}

impl Event {
    const ALL: [Event; 6] = [
        Event::Connect,
        Event::Refresh,
        Event::Subscribe,
        Event::Publish,
        Event::SubRefresh,
        Event::Rpc,
    ];

    /// The metrics label.
    pub fn name(self) -> &'static str {
        match self {
            Event::Connect => "connect",
            Event::Refresh => "refresh",
            Event::Subscribe => "subscribe",
            Event::Publish => "publish",
            Event::SubRefresh => "sub_refresh",
            Event::Rpc => "rpc",
        }
    }

    fn grpc_path(self) -> &'static str {
        match self {
            Event::Connect => "/centrifugal.centrifugo.proxy.CentrifugoProxy/Connect",
            Event::Refresh => "/centrifugal.centrifugo.proxy.CentrifugoProxy/Refresh",
            Event::Subscribe => "/centrifugal.centrifugo.proxy.CentrifugoProxy/Subscribe",
            Event::Publish => "/centrifugal.centrifugo.proxy.CentrifugoProxy/Publish",
            Event::SubRefresh => "/centrifugal.centrifugo.proxy.CentrifugoProxy/SubRefresh",
            Event::Rpc => "/centrifugal.centrifugo.proxy.CentrifugoProxy/RPC",
        }
    }
}

/// Why a call produced no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No answer within the proxy's timeout (waiting for a free request slot included).
    #[error("no answer within the timeout")]
    Timeout,
    /// The backend could not be reached, or the connection broke.
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// HTTP status other than 200 (and not in `status_to_code_transforms`).
    #[error("HTTP status {0}")]
    Status(u16),
    /// GRPC status other than OK.
    #[error("GRPC status {0:?}: {1}")]
    Grpc(tonic::Code, String),
    /// The answer is not a message of the expected kind.
    #[error("bad answer: {0}")]
    Decode(String),
    /// The request could not be written (a payload that is not JSON, without binary_encoding).
    #[error("request not encodable: {0}")]
    Encode(String),
}

impl CallError {
    /// The metrics label.
    fn reason(&self) -> &'static str {
        match self {
            CallError::Timeout => "timeout",
            CallError::Unavailable(_) => "unavailable",
            CallError::Status(_) => "http_status",
            CallError::Grpc(..) => "grpc_status",
            CallError::Decode(_) => "bad_answer",
            CallError::Encode(_) => "encode",
        }
    }
}

/// Who a call is about: what every request carries.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The client id.
    pub client: &'a str,
    /// Its transport's name (`websocket`, `sse`, `uni_sse`…).
    pub transport: &'static str,
    /// Whether it speaks Protobuf (else JSON).
    pub protobuf: bool,
    pub user: &'a str,
    /// Its forwarded headers and meta (sent with `include_connection_meta`).
    pub context: &'a ClientContext,
}

impl Caller<'_> {
    fn protocol(&self) -> String {
        if self.protobuf { "protobuf" } else { "json" }.to_owned()
    }
}

enum Client {
    Http(http::HttpClient),
    Grpc(grpc::GrpcClient),
}

/// The TLS table of an `https://` or `grpc://` backend: its key, for messages, and its options
/// when it is enabled.
struct Tls {
    key: String,
    options: Option<crate::tls::TlsOptions>,
}

/// The TLS table of a backend, for hints in messages: its key, and whether it is enabled.
struct TlsHint {
    key: String,
    enabled: bool,
}

impl Tls {
    fn hint(&self) -> TlsHint {
        TlsHint {
            key: self.key.clone(),
            enabled: self.options.is_some(),
        }
    }
}

/// An error and its sources on one line ("error sending request: connection refused"), with
/// a hint when it is a TLS failure.
fn error_chain(error: &dyn std::error::Error, tls: Option<&TlsHint>) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // tonic and hyper may repeat their source's text in their own.
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    with_hint(text, tls)
}

/// `text` and, when it is a TLS failure, what to change in the backend's TLS table.
fn with_hint(text: String, tls: Option<&TlsHint>) -> String {
    match tls.and_then(|tls| crate::tls::failure_hint(&text, &tls.key, tls.enabled)) {
        Some(hint) => format!("{text} ({hint})"),
        None => text,
    }
}

/// Metric handles of one (backend, event).
struct Metrics {
    duration: metrics::Histogram,
    in_flight: metrics::Gauge,
    errors: Vec<(&'static str, metrics::Counter)>,
}

/// One backend endpoint.
pub struct Backend {
    client: Client,
    timeout: Duration,
    /// Calls in flight (`max_concurrent_requests`).
    slots: tokio::sync::Semaphore,
    headers: Rules,
    binary: bool,
    include_meta: bool,
    transforms: Vec<StatusTransform>,
    metrics: Vec<Metrics>,
}

const REASONS: &[&str] = &[
    "timeout",
    "unavailable",
    "http_status",
    "grpc_status",
    "bad_answer",
    "encode",
];

impl Backend {
    /// A backend for `config` (the proxy object at `path`), named `name` in metrics (`default`
    /// for a section's own proxy). Reads the PEM files of its TLS table, if TLS is on.
    pub fn new(name: &str, path: &str, config: &Proxy) -> Result<Self, String> {
        let grpc = config.endpoint.starts_with("grpc://");
        let tls = match crate::startup::proxy_tls(path, config) {
            Some((key, table)) => {
                let options = if table.enabled {
                    Some(crate::startup::tls_options(&key, table)?)
                } else {
                    None
                };
                Some(Tls { key, options })
            }
            None => None,
        };
        let client = if grpc {
            Client::Grpc(grpc::GrpcClient::new(config, tls)?)
        } else {
            Client::Http(http::HttpClient::new(config, tls)?)
        };
        let mut fixed = Vec::new();
        let mut add_fixed = |key: &str, value: &str| -> Result<(), String> {
            let name = HeaderName::from_bytes(key.as_bytes())
                .map_err(|_| format!("`{key}` is not a valid header name"))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| format!("the value of `{key}` is not a valid header value"))?;
            fixed.retain(|(n, _): &(HeaderName, HeaderValue)| *n != name);
            fixed.push((name, value));
            Ok(())
        };
        if grpc {
            for (key, value) in &config.grpc.static_metadata {
                add_fixed(&key.to_ascii_lowercase(), value)?;
            }
            if !config.grpc.credentials_key.is_empty() {
                add_fixed(
                    &config.grpc.credentials_key.to_ascii_lowercase(),
                    &config.grpc.credentials_value,
                )?;
            }
        } else {
            for (key, value) in config
                .static_http_headers
                .iter()
                .chain(&config.http.static_headers)
            {
                add_fixed(key, value)?;
            }
        }
        let headers = Rules {
            forward: Names::parse(&config.http_headers)?,
            emulated: Names::parse(&config.emulated_headers)?,
            fixed,
        };
        let protocol = if grpc { "grpc" } else { "http" };
        let metrics = Event::ALL
            .iter()
            .map(|event| {
                let labels = [
                    ("protocol", protocol.to_owned()),
                    ("event", event.name().to_owned()),
                    ("name", name.to_owned()),
                ];
                Metrics {
                    duration: metrics::histogram!(crate::metrics::PROXY_DURATION, &labels),
                    in_flight: metrics::gauge!(crate::metrics::PROXY_IN_FLIGHT, &labels),
                    errors: REASONS
                        .iter()
                        .map(|reason| {
                            let mut labels = labels.to_vec();
                            labels.push(("reason", (*reason).to_owned()));
                            (
                                *reason,
                                metrics::counter!(crate::metrics::PROXY_ERRORS, &labels),
                            )
                        })
                        .collect(),
                }
            })
            .collect();
        Ok(Self {
            client,
            timeout: config.timeout,
            slots: tokio::sync::Semaphore::new(config.max_concurrent_requests as usize),
            headers,
            binary: config.binary_encoding,
            include_meta: config.include_connection_meta,
            transforms: config.http.status_to_code_transforms.clone(),
            metrics,
        })
    }

    /// One call: within the timeout, a free slot, then the request. The answer of a status in
    /// `status_to_code_transforms` is the error or disconnect it names. Failures are logged
    /// and counted here; the caller only decides what they mean for the client.
    async fn call<Req, Resp>(
        &self,
        event: Event,
        caller: &Caller<'_>,
        request: Req,
    ) -> Result<Answer<Resp::Result>, CallError>
    where
        Req: prost::Message + serde::Serialize + Send + Sync + 'static,
        Resp: Response + Send + Sync,
    {
        let metrics = &self.metrics[event as usize];
        let started = Instant::now();
        let headers = self.headers.outgoing(caller.context);
        let outcome = tokio::time::timeout(self.timeout, async {
            let _slot = self.slots.acquire().await.map_err(|_| CallError::Timeout)?;
            metrics.in_flight.increment(1.0);
            let _in_flight = scopeguard(|| metrics.in_flight.decrement(1.0));
            match &self.client {
                Client::Http(client) => {
                    let mut body = BytesMut::new();
                    gyre_proto::codec::json::encode_into(&request, &mut body)
                        .map_err(|e| CallError::Encode(e.to_string()))?;
                    match client.post(body.freeze(), headers).await {
                        Ok(answer) => gyre_proto::codec::json::decode_message::<Resp>(&answer)
                            .map(Response::answer)
                            .map_err(|e| CallError::Decode(e.to_string())),
                        Err(CallError::Status(status)) => self.transformed(status),
                        Err(error) => Err(error),
                    }
                }
                Client::Grpc(client) => client
                    .call::<Req, Resp>(event, request, headers, self.timeout)
                    .await
                    .map(Response::answer),
            }
        })
        .await
        .unwrap_or(Err(CallError::Timeout));
        metrics.duration.record(started.elapsed().as_secs_f64());
        if let Err(error) = &outcome {
            tracing::warn!(event = event.name(), client = caller.client, %error, "backend hook failed");
            if let Some((_, counter)) = metrics.errors.iter().find(|(r, _)| *r == error.reason()) {
                counter.increment(1);
            }
        }
        outcome
    }

    /// The answer `status_to_code_transforms` gives an HTTP status, if any.
    fn transformed<R>(&self, status: u16) -> Result<Answer<R>, CallError> {
        let Some(transform) = self.transforms.iter().find(|t| t.status_code == status) else {
            return Err(CallError::Status(status));
        };
        if transform.to_disconnect.code != 0 {
            return Ok(Answer::Disconnect(wire::Disconnect {
                code: transform.to_disconnect.code,
                reason: transform.to_disconnect.reason.clone(),
            }));
        }
        Ok(Answer::Error(wire::Error {
            code: transform.to_error.code,
            message: transform.to_error.message.clone(),
            temporary: transform.to_error.temporary,
        }))
    }

    fn encoding(&self) -> String {
        if self.binary { "binary" } else { "json" }.to_owned()
    }

    fn meta(&self, caller: &Caller<'_>) -> Bytes {
        if self.include_meta {
            caller.context.meta().clone()
        } else {
            Bytes::new()
        }
    }

    /// `connect`: who the client is. `channels`: server-side channels it asks for.
    pub async fn connect(
        &self,
        caller: &Caller<'_>,
        data: &Bytes,
        name: &str,
        version: &str,
        channels: Vec<String>,
    ) -> Result<Answer<wire::ConnectResult>, CallError> {
        let (data, b64data) = outcome::request_payload(data, self.binary);
        let request = wire::ConnectRequest {
            client: caller.client.to_owned(),
            transport: caller.transport.to_owned(),
            protocol: caller.protocol(),
            encoding: self.encoding(),
            data,
            b64data,
            name: name.to_owned(),
            version: version.to_owned(),
            channels,
        };
        self.call::<_, wire::ConnectResponse>(Event::Connect, caller, request)
            .await
    }

    /// `refresh`: only the result counts (an `error` or `disconnect` answer is no result).
    pub async fn refresh(
        &self,
        caller: &Caller<'_>,
    ) -> Result<Option<wire::RefreshResult>, CallError> {
        let request = wire::RefreshRequest {
            client: caller.client.to_owned(),
            transport: caller.transport.to_owned(),
            protocol: caller.protocol(),
            encoding: self.encoding(),
            user: caller.user.to_owned(),
            meta: self.meta(caller),
        };
        self.call::<_, wire::RefreshResponse>(Event::Refresh, caller, request)
            .await
            .map(result_only)
    }

    pub async fn subscribe(
        &self,
        caller: &Caller<'_>,
        channel: &str,
        token: &str,
        data: &Bytes,
    ) -> Result<Answer<wire::SubscribeResult>, CallError> {
        let (data, b64data) = outcome::request_payload(data, self.binary);
        let request = wire::SubscribeRequest {
            client: caller.client.to_owned(),
            transport: caller.transport.to_owned(),
            protocol: caller.protocol(),
            encoding: self.encoding(),
            user: caller.user.to_owned(),
            channel: channel.to_owned(),
            token: token.to_owned(),
            meta: self.meta(caller),
            data,
            b64data,
        };
        self.call::<_, wire::SubscribeResponse>(Event::Subscribe, caller, request)
            .await
    }

    pub async fn publish(
        &self,
        caller: &Caller<'_>,
        channel: &str,
        data: &Bytes,
    ) -> Result<Answer<wire::PublishResult>, CallError> {
        let (data, b64data) = outcome::request_payload(data, self.binary);
        let request = wire::PublishRequest {
            client: caller.client.to_owned(),
            transport: caller.transport.to_owned(),
            protocol: caller.protocol(),
            encoding: self.encoding(),
            user: caller.user.to_owned(),
            channel: channel.to_owned(),
            data,
            b64data,
            meta: self.meta(caller),
        };
        self.call::<_, wire::PublishResponse>(Event::Publish, caller, request)
            .await
    }

    pub async fn rpc(
        &self,
        caller: &Caller<'_>,
        method: &str,
        data: &Bytes,
    ) -> Result<Answer<wire::RpcResult>, CallError> {
        let (data, b64data) = outcome::request_payload(data, self.binary);
        let request = wire::RpcRequest {
            client: caller.client.to_owned(),
            transport: caller.transport.to_owned(),
            protocol: caller.protocol(),
            encoding: self.encoding(),
            user: caller.user.to_owned(),
            method: method.to_owned(),
            data,
            b64data,
            meta: self.meta(caller),
        };
        self.call::<_, wire::RpcResponse>(Event::Rpc, caller, request)
            .await
    }

    /// `sub_refresh`: only the result counts.
    pub async fn sub_refresh(
        &self,
        caller: &Caller<'_>,
        channel: &str,
    ) -> Result<Option<wire::SubRefreshResult>, CallError> {
        let request = wire::SubRefreshRequest {
            client: caller.client.to_owned(),
            transport: caller.transport.to_owned(),
            protocol: caller.protocol(),
            encoding: self.encoding(),
            user: caller.user.to_owned(),
            channel: channel.to_owned(),
            meta: self.meta(caller),
        };
        self.call::<_, wire::SubRefreshResponse>(Event::SubRefresh, caller, request)
            .await
            .map(result_only)
    }
}

/// The result of an answer whatever else it says (refresh and sub_refresh ignore `error` and
/// `disconnect`; with them there is no result, which means "expired").
fn result_only<R>(answer: Answer<R>) -> Option<R> {
    match answer {
        Answer::Result(result) => result,
        Answer::Error(_) | Answer::Disconnect(_) => None,
    }
}

/// Runs `f` when dropped (the in-flight gauge goes down however the call ends).
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

/// The node's backends, built once from the config. Events without one fall back to the
/// session's own rules (tokens, namespace permissions). A clone shares the backends.
#[derive(Clone, Default)]
pub struct Hooks {
    connect: Option<Arc<Backend>>,
    refresh: Option<Arc<Backend>>,
    /// By proxy name (`default` = the section's own).
    subscribe: HashMap<String, Arc<Backend>>,
    publish: HashMap<String, Arc<Backend>>,
    sub_refresh: HashMap<String, Arc<Backend>>,
    rpc: HashMap<String, Arc<Backend>>,
    /// Request headers some backend forwards (the union of `http_headers`).
    forwarded: Names,
    /// Connect command headers some backend forwards (the union of `emulated_headers`).
    emulated: Names,
    /// Some backend sends the connection's meta.
    keeps_meta: bool,
    /// RPC calls are proxied at all (else every call is 104 "method not found").
    rpc_enabled: bool,
}

impl Hooks {
    /// The backends `config` configures (validated config: names resolve). Errors name the
    /// proxy (bad header names, an endpoint the client cannot use).
    pub fn new(config: &Config) -> Result<Self, String> {
        let mut hooks = Hooks::default();
        let mut named: HashMap<&str, Arc<Backend>> = HashMap::new();
        let build = |hooks: &mut Hooks, path: &str, name: &str, proxy: &Proxy| {
            let backend = Backend::new(name, path, proxy).map_err(|e| format!("{path}: {e}"))?;
            hooks.forwarded.extend(&backend.headers.forward);
            hooks.emulated.extend(&backend.headers.emulated);
            hooks.keeps_meta |= backend.include_meta;
            Ok::<_, String>(Arc::new(backend))
        };
        for (i, proxy) in config.proxies.iter().enumerate() {
            let backend = build(
                &mut hooks,
                &format!("proxies[{i}]"),
                &proxy.name,
                &proxy.proxy,
            )?;
            named.insert(proxy.name.as_str(), backend);
        }
        let client = &config.client.proxy;
        if client.connect.enabled {
            hooks.connect = Some(build(
                &mut hooks,
                "client.proxy.connect",
                DEFAULT_PROXY_NAME,
                &client.connect.proxy,
            )?);
        }
        if client.refresh.enabled {
            hooks.refresh = Some(build(
                &mut hooks,
                "client.proxy.refresh",
                DEFAULT_PROXY_NAME,
                &client.refresh.proxy,
            )?);
        }
        let channel = &config.channel.proxy;
        for (proxy, path, event) in [
            (
                &channel.subscribe,
                "channel.proxy.subscribe",
                Event::Subscribe,
            ),
            (&channel.publish, "channel.proxy.publish", Event::Publish),
            (
                &channel.sub_refresh,
                "channel.proxy.sub_refresh",
                Event::SubRefresh,
            ),
        ] {
            if proxy.is_configured() {
                let backend = build(&mut hooks, path, DEFAULT_PROXY_NAME, proxy)?;
                hooks
                    .by_name(event)
                    .insert(DEFAULT_PROXY_NAME.to_owned(), backend);
            }
        }
        if config.rpc.proxy.is_configured() {
            let backend = build(
                &mut hooks,
                "rpc.proxy",
                DEFAULT_PROXY_NAME,
                &config.rpc.proxy,
            )?;
            hooks.rpc.insert(DEFAULT_PROXY_NAME.to_owned(), backend);
        }
        for (name, backend) in named {
            for map in [
                &mut hooks.subscribe,
                &mut hooks.publish,
                &mut hooks.sub_refresh,
                &mut hooks.rpc,
            ] {
                map.insert(name.to_owned(), Arc::clone(&backend));
            }
        }
        hooks.rpc_enabled = config.rpc.without_namespace.proxy_enabled
            || config
                .rpc
                .namespaces
                .iter()
                .any(|ns| ns.options.proxy_enabled);
        Ok(hooks)
    }

    /// The named backends of a channel or RPC event.
    fn by_name(&mut self, event: Event) -> &mut HashMap<String, Arc<Backend>> {
        match event {
            Event::Subscribe => &mut self.subscribe,
            Event::Publish => &mut self.publish,
            Event::SubRefresh => &mut self.sub_refresh,
            // Connect and refresh have one backend each, never a named one.
            Event::Rpc | Event::Connect | Event::Refresh => &mut self.rpc,
        }
    }

    pub fn connect(&self) -> Option<&Backend> {
        self.connect.as_deref()
    }

    pub fn refresh(&self) -> Option<&Backend> {
        self.refresh.as_deref()
    }

    /// The subscribe proxy a namespace names (`None`: not configured, which validation rules
    /// out for an enabled one).
    pub fn subscribe(&self, name: &str) -> Option<&Backend> {
        self.subscribe
            .get(ChannelOptions::proxy_name(name))
            .map(|b| &**b)
    }

    pub fn publish(&self, name: &str) -> Option<&Backend> {
        self.publish
            .get(ChannelOptions::proxy_name(name))
            .map(|b| &**b)
    }

    pub fn sub_refresh(&self, name: &str) -> Option<&Backend> {
        self.sub_refresh
            .get(ChannelOptions::proxy_name(name))
            .map(|b| &**b)
    }

    pub fn rpc(&self, name: &str) -> Option<&Backend> {
        self.rpc.get(ChannelOptions::proxy_name(name)).map(|b| &**b)
    }

    /// Whether any RPC namespace is proxied.
    pub fn rpc_enabled(&self) -> bool {
        self.rpc_enabled
    }

    /// The headers of a connection's request that some backend forwards.
    pub fn capture(&self, request: &::http::HeaderMap) -> ClientContext {
        ClientContext::capture(&self.forwarded, request)
    }

    /// The names of connect command headers some backend forwards.
    pub fn emulated_names(&self) -> &Names {
        &self.emulated
    }

    /// Whether connections must keep their meta for the backends.
    pub fn keeps_meta(&self) -> bool {
        self.keeps_meta
    }
}
