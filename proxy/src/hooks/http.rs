//! Calls over HTTP: a JSON POST to the proxy's endpoint, the answer a JSON body (HTTP 200).
//!
//! One `reqwest` client per proxy keeps its connections alive between calls (HTTP/1.1, or
//! HTTP/2 without TLS with `http.h2c`; `https://` negotiates HTTP/2 by ALPN). An `https://`
//! endpoint is checked against the system's roots, or as `http.tls` says when it is enabled
//! (see [`crate::tls::client_config`]).

use bytes::{Bytes, BytesMut};
use http::{HeaderName, HeaderValue};

use super::{CallError, Tls, TlsHint, error_chain};
use crate::config::Proxy;

/// Largest answer read from a backend; a longer one fails the call.
pub const MAX_RESPONSE_SIZE: usize = 4 * 1024 * 1024;

pub struct HttpClient {
    client: reqwest::Client,
    url: reqwest::Url,
    /// The `http.tls` table of an `https://` endpoint, for hints in error messages.
    tls: Option<TlsHint>,
}

impl HttpClient {
    pub fn new(config: &Proxy, tls: Option<Tls>) -> Result<Self, String> {
        let url = reqwest::Url::parse(&config.endpoint).map_err(|e| e.to_string())?;
        // reqwest is built without a bundled crypto provider (see auth::jwks): ring, unless the
        // process chose one already.
        crate::tls::install_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(config.timeout)
            .pool_max_idle_per_host(config.max_concurrent_requests as usize)
            .pool_idle_timeout(std::time::Duration::from_secs(90))
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none());
        builder = if config.http.h2c {
            builder.http2_prior_knowledge()
        } else if url.scheme() == "http" {
            builder.http1_only()
        } else {
            builder
        };
        let hint = tls.as_ref().map(Tls::hint);
        if let Some(Tls {
            key,
            options: Some(options),
        }) = tls
        {
            let rustls = crate::tls::client_config(&options, &[b"h2", b"http/1.1"])
                .map_err(|e| format!("`{key}`: {e}"))?;
            builder = builder.tls_backend_preconfigured(rustls);
        }
        let client = builder.build().map_err(|e| e.to_string())?;
        Ok(Self {
            client,
            url,
            tls: hint,
        })
    }

    /// POSTs `body` (JSON) with `headers`; returns the body of a 200 answer.
    pub async fn post(
        &self,
        body: Bytes,
        headers: Vec<(HeaderName, HeaderValue)>,
    ) -> Result<Bytes, CallError> {
        let unavailable =
            |e: reqwest::Error| CallError::Unavailable(error_chain(&e, self.tls.as_ref()));
        let mut request = self.client.post(self.url.clone());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let mut response = request
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(unavailable)?;
        let status = response.status();
        if status != http::StatusCode::OK {
            return Err(CallError::Status(status.as_u16()));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_RESPONSE_SIZE as u64)
        {
            return Err(CallError::Decode("answer too large".into()));
        }
        let mut out = BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(unavailable)? {
            if out.len() + chunk.len() > MAX_RESPONSE_SIZE {
                return Err(CallError::Decode("answer too large".into()));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out.freeze())
    }
}
