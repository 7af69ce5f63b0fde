//! A GRPC application backend for the hook tests: Centrifugo's `CentrifugoProxy` service,
//! generated from `proto/proto/proxy.proto` (the messages are gyre-proto's), served by tonic
//! over hyper on its own runtime thread, on a free port of 127.0.0.1.
//!
//! It follows the rules of the Python HTTP backend (`tests/backend/http_backend.py`): the user
//! comes from the `cookie` metadata (`session=s-<user>`), `hooks:denied-*` channels are refused
//! with 403, publications are rewritten, RPC `echo`/`fail`/`bye` (in any RPC namespace), refresh
//! prolongs by 3 s unless the user is in `expire_users`. Every request is recorded as JSON with
//! its metadata.
//!
//! [`GrpcBackend::start_with`] serves over TLS (rustls with ring, ALPN h2; a certificate of the
//! test PKI, optionally requiring one from clients) and with gzip: requests compressed with gzip
//! are accepted and answers are compressed for clients that accept gzip (a tonic server
//! without it refuses gzipped requests).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::codec::CompressionEncoding;

use crate::tls_pki::CertFiles;

use gyre_proto::proxy as wire;
use serde_json::{Value, json};
use tonic::{Request, Response, Status};

mod generated {
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/centrifugal.centrifugo.proxy.rs"));
}

use generated::centrifugo_proxy_server::{CentrifugoProxy, CentrifugoProxyServer};

/// What the backend received and how it behaves.
#[derive(Default)]
struct State {
    /// `{method, body, metadata}` per call.
    requests: Vec<Value>,
    expire_users: Vec<String>,
    /// Per TLS connection accepted: whether the client presented a certificate.
    tls_connections: Vec<bool>,
}

/// How a [`GrpcBackend`] serves; the default is plaintext without compression.
#[derive(Debug, Clone, Default)]
pub struct GrpcOptions {
    /// TLS, presenting this certificate.
    pub tls: Option<CertFiles>,
    /// With TLS: clients must present a certificate signed by this CA.
    pub client_ca: Option<PathBuf>,
    /// Accept gzip-compressed requests; compress answers for clients that accept gzip.
    pub gzip: bool,
}

#[derive(Clone, Default)]
struct Service {
    state: Arc<Mutex<State>>,
}

/// The running backend; stops with its runtime when dropped.
pub struct GrpcBackend {
    port: u16,
    state: Arc<Mutex<State>>,
    _runtime: tokio::runtime::Runtime,
}

impl GrpcBackend {
    pub fn start() -> Self {
        Self::start_with(GrpcOptions::default())
    }

    pub fn start_with(options: GrpcOptions) -> Self {
        let acceptor = options.tls.as_ref().map(|cert| {
            tokio_rustls::TlsAcceptor::from(Arc::new(server_tls(cert, options.client_ca.as_ref())))
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let service = Service::default();
        let state = Arc::clone(&service.state);
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let accepted = Arc::clone(&state);
        runtime.spawn(async move {
            let mut server = CentrifugoProxyServer::new(service);
            if options.gzip {
                server = server
                    .accept_compressed(CompressionEncoding::Gzip)
                    .send_compressed(CompressionEncoding::Gzip);
            }
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let server = server.clone();
                let acceptor = acceptor.clone();
                let accepted = Arc::clone(&accepted);
                tokio::spawn(async move {
                    let builder = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    );
                    let service = hyper_util::service::TowerToHyperService::new(server);
                    match acceptor {
                        None => {
                            let io = hyper_util::rt::TokioIo::new(stream);
                            let _ = builder.http2_only().serve_connection(io, service).await;
                        }
                        Some(acceptor) => {
                            // A failed handshake (an untrusted or missing certificate) ends
                            // the connection here.
                            let Ok(tls) = acceptor.accept(stream).await else {
                                return;
                            };
                            let client_cert = tls.get_ref().1.peer_certificates().is_some();
                            accepted.lock().unwrap().tls_connections.push(client_cert);
                            let io = hyper_util::rt::TokioIo::new(tls);
                            let _ = builder.http2_only().serve_connection(io, service).await;
                        }
                    }
                });
            }
        });
        Self {
            port,
            state,
            _runtime: runtime,
        }
    }

    /// `grpc://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("grpc://127.0.0.1:{}", self.port)
    }

    /// The calls of one method (`"Connect"`, `"RPC"`…): `{method, body, metadata}`.
    pub fn requests_to(&self, method: &str) -> Vec<Value> {
        self.state
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|r| r["method"] == method)
            .cloned()
            .collect()
    }

    /// Per TLS connection accepted so far: whether the client presented a certificate.
    pub fn tls_connections(&self) -> Vec<bool> {
        self.state.lock().unwrap().tls_connections.clone()
    }

    /// From now on, refresh calls for `user` answer `expired`.
    pub fn expire_user(&self, user: &str) {
        self.state
            .lock()
            .unwrap()
            .expire_users
            .push(user.to_owned());
    }
}

impl Service {
    fn record<T: serde::Serialize>(
        &self,
        method: &str,
        request: &Request<T>,
    ) -> HashMap<String, String> {
        let metadata: HashMap<String, String> = request
            .metadata()
            .iter()
            .filter_map(|entry| match entry {
                tonic::metadata::KeyAndValueRef::Ascii(key, value) => Some((
                    key.as_str().to_owned(),
                    value.to_str().unwrap_or_default().to_owned(),
                )),
                tonic::metadata::KeyAndValueRef::Binary(..) => None,
            })
            .collect();
        let body = serde_json::to_value(request.get_ref()).expect("request as JSON");
        self.state.lock().unwrap().requests.push(json!({
            "method": method,
            "body": body,
            "metadata": metadata,
        }));
        metadata
    }
}

/// rustls (ring) presenting `cert`, with ALPN h2; with `client_ca`, clients must present a
/// certificate it signed.
fn server_tls(cert: &CertFiles, client_ca: Option<&PathBuf>) -> rustls::ServerConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert.cert)
        .expect("read certificate")
        .collect::<Result<_, _>>()
        .expect("parse certificate");
    let key = PrivateKeyDer::from_pem_file(&cert.key).expect("read key");
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .expect("protocol versions");
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca).expect("read CA") {
                roots.add(cert.expect("parse CA")).expect("add CA");
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .expect("certificate and key");
    config.alpn_protocols = vec![b"h2".to_vec()];
    config
}

fn user_of(metadata: &HashMap<String, String>) -> Option<String> {
    let cookie = metadata.get("cookie")?;
    cookie.split(';').find_map(|part| {
        let value = part.trim().strip_prefix("session=s-")?;
        Some(value.to_owned())
    })
}

fn json_bytes(value: Value) -> bytes::Bytes {
    bytes::Bytes::from(value.to_string())
}

fn now() -> i64 {
    crate::ws_client::unix_now()
}

#[tonic::async_trait]
impl CentrifugoProxy for Service {
    async fn connect(
        &self,
        request: Request<wire::ConnectRequest>,
    ) -> Result<Response<wire::ConnectResponse>, Status> {
        let metadata = self.record("Connect", &request);
        let Some(user) = user_of(&metadata) else {
            return Ok(Response::new(wire::ConnectResponse {
                disconnect: Some(wire::Disconnect {
                    code: 4501,
                    reason: "unauthorized".into(),
                }),
                ..Default::default()
            }));
        };
        let data: Value = serde_json::from_slice(&request.get_ref().data).unwrap_or(Value::Null);
        let expire_at = data["expire_in"].as_i64().map_or(0, |s| now() + s);
        Ok(Response::new(wire::ConnectResponse {
            result: Some(wire::ConnectResult {
                user: user.clone(),
                expire_at,
                info: json_bytes(json!({"name": user})),
                data: json_bytes(json!({"greeting": format!("hello {user}"), "via": "grpc"})),
                meta: json_bytes(json!({"plan": "gold"})),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn refresh(
        &self,
        request: Request<wire::RefreshRequest>,
    ) -> Result<Response<wire::RefreshResponse>, Status> {
        self.record("Refresh", &request);
        let expired = self
            .state
            .lock()
            .unwrap()
            .expire_users
            .contains(&request.get_ref().user);
        Ok(Response::new(wire::RefreshResponse {
            result: Some(wire::RefreshResult {
                expired,
                expire_at: now() + 3,
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn subscribe(
        &self,
        request: Request<wire::SubscribeRequest>,
    ) -> Result<Response<wire::SubscribeResponse>, Status> {
        self.record("Subscribe", &request);
        let channel = request.get_ref().channel.clone();
        if channel.starts_with("hooks:denied") {
            return Ok(Response::new(wire::SubscribeResponse {
                error: Some(wire::Error {
                    code: 403,
                    message: "permission denied".into(),
                    temporary: false,
                }),
                ..Default::default()
            }));
        }
        Ok(Response::new(wire::SubscribeResponse {
            result: Some(wire::SubscribeResult {
                data: json_bytes(json!({"welcome": channel})),
                info: json_bytes(json!({"role": "reader"})),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn publish(
        &self,
        request: Request<wire::PublishRequest>,
    ) -> Result<Response<wire::PublishResponse>, Status> {
        self.record("Publish", &request);
        let original: Value =
            serde_json::from_slice(&request.get_ref().data).unwrap_or(Value::Null);
        Ok(Response::new(wire::PublishResponse {
            result: Some(wire::PublishResult {
                data: json_bytes(json!({"text": original["text"], "by": request.get_ref().user})),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn rpc(
        &self,
        request: Request<wire::RpcRequest>,
    ) -> Result<Response<wire::RpcResponse>, Status> {
        self.record("RPC", &request);
        let call = request.get_ref();
        let mut response = wire::RpcResponse::default();
        // A namespace (`ns:echo`) does not change the method.
        match call.method.rsplit(':').next().unwrap_or_default() {
            "echo" => {
                response.result = Some(wire::RpcResult {
                    data: call.data.clone(),
                    ..Default::default()
                });
            }
            "fail" => {
                response.error = Some(wire::Error {
                    code: 1001,
                    message: "rpc failed".into(),
                    temporary: false,
                });
            }
            "bye" => {
                response.disconnect = Some(wire::Disconnect {
                    code: 4501,
                    reason: "go away".into(),
                });
            }
            _ => return Err(Status::unimplemented("no such method")),
        }
        Ok(Response::new(response))
    }

    async fn sub_refresh(
        &self,
        request: Request<wire::SubRefreshRequest>,
    ) -> Result<Response<wire::SubRefreshResponse>, Status> {
        self.record("SubRefresh", &request);
        Ok(Response::new(wire::SubRefreshResponse {
            result: Some(wire::SubRefreshResult {
                expire_at: now() + 2,
                ..Default::default()
            }),
            ..Default::default()
        }))
    }
}
