//! TLS of the public port (`http_server.tls`): clients connect with `wss://` and `https://`
//! without a terminating proxy in front.
//!
//! The plain server is built around the TCP socket itself: the WebSocket transport writes
//! deliveries straight into it from the hub's thread (`transport::websocket`), and the request
//! deadlines live in the socket (`deadline::TimedIo`). Rather than give every transport a
//! second, generic path, a TLS connection is decrypted here and bridged over loopback TCP to a
//! listener of the plain server that only this process connects to: every transport, every
//! limit and every deadline then works on TLS connections unchanged, at the price of one
//! loopback hop per connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::config::Config;
use crate::transport::admission::Unauthenticated;

/// Longest TLS handshake when `http_server.read_header_timeout` is 0 (no limit there): a
/// handshake that stalls would otherwise hold its socket for ever.
const HANDSHAKE_FALLBACK: Duration = Duration::from_secs(10);

/// The rustls server of `http_server.tls`, or `None` when it is off. `Err` names the key at
/// fault (unreadable PEM, a key that does not match the certificate).
pub fn server_config(config: &Config) -> Result<Option<Arc<rustls::ServerConfig>>, String> {
    let tls = &config.http_server.tls;
    if !tls.enabled {
        return Ok(None);
    }
    let options = crate::startup::tls_options("http_server.tls", tls)?;
    let Some(identity) = options.client_identity else {
        return Err("http_server.tls needs cert_pem and key_pem".to_owned());
    };
    let chain = CertificateDer::pem_slice_iter(&identity.cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("http_server.tls.cert_pem: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(identity.key_pem.expose().as_bytes())
        .map_err(|e| format!("http_server.tls.key_pem: {e}"))?;
    crate::tls::install_crypto_provider();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("http_server.tls: certificate and key: {e}"))?;
    // HTTP/1.1 only: browsers then open WebSockets as plain upgrades, which every transport
    // here speaks (over HTTP/2 they would need extended CONNECT).
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Arc::new(server)))
}

/// Where TLS connections are bridged to, and how they are decrypted.
pub struct Bridge {
    address: SocketAddr,
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
}

impl Bridge {
    /// The bridge and the loopback listener it leads to, which the plain server accepts on.
    pub async fn new(
        server: Arc<rustls::ServerConfig>,
        handshake_timeout: Duration,
    ) -> std::io::Result<(Self, TcpListener)> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let address = listener.local_addr()?;
        let bridge = Self {
            address,
            acceptor: TlsAcceptor::from(server),
            handshake_timeout: if handshake_timeout.is_zero() {
                HANDSHAKE_FALLBACK
            } else {
                handshake_timeout
            },
        };
        Ok((bridge, listener))
    }

    /// Completes the handshake of a connection accepted on the TLS port and carries its bytes
    /// to and from the plain server until either side closes. `slot` counts the connection
    /// under `http_server.max_unauthenticated_connections` during the handshake; the bridged
    /// connection takes a slot of its own when the plain server accepts it.
    pub fn spawn(&self, stream: TcpStream, peer: SocketAddr, slot: Unauthenticated) {
        let acceptor = self.acceptor.clone();
        let address = self.address;
        let timeout = self.handshake_timeout;
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(timeout, acceptor.accept(stream)).await;
            drop(slot);
            let mut tls = match handshake {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "tls handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "tls handshake timed out");
                    return;
                }
            };
            let mut plain = match TcpStream::connect(address).await {
                Ok(plain) => plain,
                Err(error) => {
                    tracing::warn!(%error, "tls bridge: cannot reach the plain listener");
                    return;
                }
            };
            let _ = plain.set_nodelay(true);
            if let Err(error) = tokio::io::copy_bidirectional(&mut tls, &mut plain).await {
                tracing::debug!(%peer, %error, "tls connection ended with an error");
            }
        });
    }
}
