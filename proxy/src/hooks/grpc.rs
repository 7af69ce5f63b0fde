//! Calls over GRPC: unary calls of Centrifugo's `CentrifugoProxy` service
//! (`proto/proxy.proto`), on one HTTP/2 channel per proxy that multiplexes every call.
//!
//! No generated client is needed: every method is a unary call of a known path with prost
//! messages, which tonic's generic client makes.

use http::uri::PathAndQuery;
use http::{HeaderName, HeaderValue};
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};

use super::{CallError, Event};
use crate::config::Proxy;

pub struct GrpcClient {
    channel: tonic::transport::Channel,
}

impl GrpcClient {
    /// A client for `grpc://host:port`; it connects on the first call (and reconnects after
    /// failures), so a backend that starts after Gyre is fine.
    pub fn new(config: &Proxy) -> Result<Self, String> {
        let address = config
            .endpoint
            .strip_prefix("grpc://")
            .ok_or("not a grpc:// endpoint")?
            .trim_end_matches('/');
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| e.to_string())?
            .connect_timeout(config.timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(std::time::Duration::from_secs(30))
            .keep_alive_while_idle(false);
        Ok(Self {
            channel: endpoint.connect_lazy(),
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
        grpc.ready()
            .await
            .map_err(|e| CallError::Unavailable(e.to_string()))?;
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
            .map_err(|status| CallError::Grpc(status.code(), status.message().to_owned()))
    }
}
