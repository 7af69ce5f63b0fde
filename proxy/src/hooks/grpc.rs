//! Calls over GRPC: unary calls of Centrifugo's `CentrifugoProxy` service
//! (`proto/proxy.proto`), on one HTTP/2 channel per proxy that multiplexes every call.
//!
//! No generated client is needed: every method is a unary call of a known path with prost
//! messages, which tonic's generic client makes. With `grpc.tls` enabled the channel speaks
//! HTTP/2 over TLS through a connector of ours ([`TlsConnector`]: rustls as
//! [`crate::tls::client_config`] sets it up); with `grpc.compression` requests are gzipped.

use std::sync::Arc;

use http::uri::PathAndQuery;
use http::{HeaderName, HeaderValue, Uri};
use rustls::pki_types::ServerName;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};

use super::{CallError, Event, Tls, TlsHint, error_chain, with_hint};
use crate::config::Proxy;

pub struct GrpcClient {
    channel: tonic::transport::Channel,
    /// `grpc.compression`: gzip requests, accept gzip answers.
    compression: bool,
    /// The `grpc.tls` table in force, for hints in error messages.
    tls: Option<TlsHint>,
}

impl GrpcClient {
    /// A client for `grpc://host:port`; it connects on the first call (and reconnects after
    /// failures), so a backend that starts after Gyre is fine.
    pub fn new(config: &Proxy, tls: Option<Tls>) -> Result<Self, String> {
        let address = config
            .endpoint
            .strip_prefix("grpc://")
            .ok_or("not a grpc:// endpoint")?
            .trim_end_matches('/');
        let hint = tls
            .as_ref()
            .filter(|tls| tls.options.is_some())
            .map(Tls::hint);
        let tls = tls.and_then(|Tls { key, options }| Some((key, options?)));
        let scheme = if tls.is_some() { "https" } else { "http" };
        let endpoint = tonic::transport::Endpoint::from_shared(format!("{scheme}://{address}"))
            .map_err(|e| e.to_string())?
            .connect_timeout(config.timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(std::time::Duration::from_secs(30))
            .keep_alive_while_idle(false);
        let channel = match tls {
            None => endpoint.connect_lazy(),
            Some((key, options)) => {
                crate::tls::install_crypto_provider();
                let rustls = crate::tls::client_config(&options, &[b"h2"])
                    .map_err(|e| format!("`{key}`: {e}"))?;
                let server_name = match &options.server_name {
                    Some(name) => Some(
                        ServerName::try_from(name.clone())
                            .map_err(|_| format!("`{key}.server_name` = {name:?}: not a name"))?,
                    ),
                    None => None,
                };
                let connector = TlsConnector {
                    tls: tokio_rustls::TlsConnector::from(Arc::new(rustls)),
                    server_name,
                };
                endpoint.connect_with_connector_lazy(connector)
            }
        };
        Ok(Self {
            channel,
            compression: config.grpc.compression,
            tls: hint,
        })
    }

    /// Calls `event`'s method with `request` and `headers` as metadata.
    pub async fn call<Req, Resp>(
        &self,
        event: Event,
        request: Req,
        headers: Vec<(HeaderName, HeaderValue)>,
        timeout: std::time::Duration,
    ) -> Result<Resp, CallError>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        if self.compression {
            grpc = grpc
                .send_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Gzip);
        }
        grpc.ready()
            .await
            .map_err(|e| CallError::Unavailable(error_chain(&e, self.tls.as_ref())))?;
        let mut request = tonic::Request::new(request);
        request.set_timeout(timeout);
        let metadata = request.metadata_mut();
        for (name, value) in headers {
            let (Ok(key), Ok(value)) = (
                AsciiMetadataKey::from_bytes(name.as_str().as_bytes()),
                value.to_str().map(AsciiMetadataValue::try_from),
            ) else {
                tracing::debug!(header = %name, "header not valid as GRPC metadata; not sent");
                continue;
            };
            if let Ok(value) = value {
                metadata.append(key, value);
            }
        }
        let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
        let path = PathAndQuery::from_static(event.grpc_path());
        grpc.unary(request, path, codec)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| {
                let message = match std::error::Error::source(&status) {
                    // A transport failure (the connection or its TLS): its causes, with a hint.
                    Some(source) => {
                        let chain = error_chain(source, None);
                        let text = if chain.contains(status.message()) {
                            chain
                        } else {
                            format!("{}: {chain}", status.message())
                        };
                        with_hint(text, self.tls.as_ref())
                    }
                    None => status.message().to_owned(),
                };
                CallError::Grpc(status.code(), message)
            })
    }
}

/// Connects TCP, then TLS with ALPN `h2`, for the channel of a `grpc://` endpoint with
/// `grpc.tls` enabled. The name sent (SNI) and checked is `server_name` when set, else the
/// endpoint's host.
#[derive(Clone)]
struct TlsConnector {
    tls: tokio_rustls::TlsConnector,
    server_name: Option<ServerName<'static>>,
}

impl tower::Service<Uri> for TlsConnector {
    type Response = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;
    type Error = std::io::Error;
    type Future = std::pin::Pin<
        Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>,
    >;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connector = self.clone();
        Box::pin(async move {
            let invalid = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, what);
            let host = uri.host().ok_or_else(|| invalid("no host"))?;
            // An IPv6 host comes in brackets.
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = uri.port_u16().unwrap_or(443);
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let name = match connector.server_name {
                Some(name) => name,
                None => ServerName::try_from(host).map_err(|_| invalid("host is not a name"))?,
            };
            let stream = connector.tls.connect(name, tcp).await?;
            Ok(hyper_util::rt::TokioIo::new(stream))
        })
    }
}
