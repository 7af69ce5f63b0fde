//! TLS of the public port (`http_server.tls`): clients connect with `wss://` and `https://`
//! without a terminating proxy in front.
//!
//! The plain server is built around the TCP socket itself: the WebSocket transport writes
//! deliveries straight into it from the hub's thread (`transport::websocket`), and the request
//! deadlines live in the socket (`transport::deadline::TimedIo`). Rather than give every transport a
//! second, generic path, a TLS connection is decrypted here and bridged over loopback TCP to a
//! listener of the plain server that only this process connects to: every transport, every
//! limit and every deadline then works on TLS connections unchanged, at the price of one
//! loopback hop per connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::config::{Config, TlsConfig};
use crate::transport::admission::Unauthenticated;

/// Longest TLS handshake when `http_server.read_header_timeout` is 0 (no limit there): a
/// handshake that stalls would otherwise hold its socket for ever.
const HANDSHAKE_FALLBACK: Duration = Duration::from_secs(10);

/// The TLS of each port: `None` where it is plain.
#[derive(Clone, Default)]
pub struct ServerTls {
    pub public: Option<Arc<rustls::ServerConfig>>,
    pub internal: Option<Arc<rustls::ServerConfig>>,
}

/// The rustls servers of `http_server.tls` and `internal_tls`, as Centrifugo applies them: `tls`
/// on the public port, and on the internal one `internal_tls` when enabled, else `tls` unless
/// `tls_external`. `Err` names the key at fault (unreadable PEM, a key that does not match the
/// certificate).
pub fn server_configs(config: &Config) -> Result<ServerTls, String> {
    let server = &config.http_server;
    let public = server_config("http_server.tls", &server.tls)?;
    let internal = if server.internal_tls.enabled {
        server_config("http_server.internal_tls", &server.internal_tls)?
    } else if server.tls_external {
        None
    } else {
        public.clone()
    };
    Ok(ServerTls { public, internal })
}

/// What the server's TLS tables set that it does not use (printed at start and by
/// `checkconfig`): the keys of TLS clients, and client certificates, which it does not ask for.
pub fn warnings(config: &Config) -> Vec<String> {
    let server = &config.http_server;
    let mut out = Vec::new();
    for (path, tls) in [
        ("http_server.tls", &server.tls),
        ("http_server.internal_tls", &server.internal_tls),
    ] {
        if tls.has_client_ca() {
            out.push(format!(
                "{path}.client_ca_pem is ignored: gyre does not ask clients for certificates"
            ));
        }
        let client_keys = [
            ("server_ca_pem", !tls.server_ca_pem.is_empty()),
            ("server_ca_pem_file", !tls.server_ca_pem_file.is_empty()),
            ("server_ca_pem_b64", !tls.server_ca_pem_b64.is_empty()),
            ("server_name", !tls.server_name.is_empty()),
            ("insecure_skip_verify", tls.insecure_skip_verify),
        ];
        for (key, _) in client_keys.iter().filter(|(_, set)| *set) {
            out.push(format!("{path}.{key} is ignored: it is for TLS clients"));
        }
    }
    out
}

fn server_config(path: &str, tls: &TlsConfig) -> Result<Option<Arc<rustls::ServerConfig>>, String> {
    if !tls.enabled {
        return Ok(None);
    }
    let options = crate::startup::tls_options(path, tls)?;
    let Some(identity) = options.client_identity else {
        return Err(format!("{path} needs cert_pem and key_pem"));
    };
    let chain = CertificateDer::pem_slice_iter(&identity.cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{path}.cert_pem: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(identity.key_pem.expose().as_bytes())
        .map_err(|e| format!("{path}.key_pem: {e}"))?;
    crate::tls::install_crypto_provider();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("{path}: certificate and key: {e}"))?;
    // HTTP/1.1 only: browsers then open WebSockets as plain upgrades, which every transport
    // here speaks (over HTTP/2 they would need extended CONNECT).
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Arc::new(server)))
}

/// Where a port's TLS connections are bridged to, and how they are decrypted.
pub struct Bridge {
    address: SocketAddr,
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
    /// The client behind each bridged connection, by the connection's loopback address, until
    /// the plain server accepts it and asks ([`Bridge::client_of`]).
    clients: Arc<Mutex<HashMap<SocketAddr, SocketAddr>>>,
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
            clients: Arc::default(),
        };
        Ok((bridge, listener))
    }

    /// The client address behind a connection accepted on the bridge's listener from
    /// `loopback` (so that what is per client, such as the admin login throttle, sees the
    /// client rather than this process).
    pub fn client_of(&self, loopback: SocketAddr) -> Option<SocketAddr> {
        self.clients.lock().remove(&loopback)
    }

    /// Completes the handshake of a connection accepted on the TLS port and carries its bytes
    /// to and from the plain server until either side closes. `slot` counts the connection
    /// under `http_server.max_unauthenticated_connections` during the handshake; the bridged
    /// connection takes a slot of its own when the plain server accepts it.
    pub fn spawn(&self, stream: TcpStream, peer: SocketAddr, slot: Unauthenticated) {
        let acceptor = self.acceptor.clone();
        let address = self.address;
        let timeout = self.handshake_timeout;
        let clients = Arc::clone(&self.clients);
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
            let mut plain = match connect_as(address, peer, &clients).await {
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

/// Connects to the plain listener at `address`, recording `client` under the connection's
/// local address before the listener can accept it.
async fn connect_as(
    address: SocketAddr,
    client: SocketAddr,
    clients: &Mutex<HashMap<SocketAddr, SocketAddr>>,
) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let local = socket.local_addr()?;
    clients.lock().insert(local, client);
    let connected = socket.connect(address).await;
    if connected.is_err() {
        clients.lock().remove(&local);
    }
    connected
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bridged_connection_is_known_by_its_client() {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let address = listener.local_addr().unwrap();
        let clients = Mutex::new(HashMap::new());
        let client: SocketAddr = "203.0.113.7:50000".parse().unwrap();
        let _plain = connect_as(address, client, &clients).await.unwrap();
        let (_, loopback) = listener.accept().await.unwrap();
        assert_eq!(clients.lock().remove(&loopback), Some(client));
        assert!(clients.lock().is_empty());
    }
}
