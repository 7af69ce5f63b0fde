//! TLS of the connections gyre opens: the process's one rustls crypto provider, the options a
//! TLS client is given ([`TlsOptions`], built from the config's TLS objects by
//! [`crate::startup`]), and the rustls client configuration of the backend hooks
//! ([`client_config`]). The Redis engine hands the same options to redis-rs.
//!
//! Every TLS client of gyre (JWKS fetches, Redis connections, backend hooks) is rustls with the
//! `ring` provider: `aws-lc-rs` is a slow C build and native-tls would add OpenSSL. rustls picks
//! the process-wide default when a config is built, so it must be installed before the first one.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Installs `ring` as the process-wide rustls provider unless one is already there. Losing the
/// race to another installer is fine: some provider is then in place.
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// How a TLS client checks the server and shows itself, with every PEM already read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// Use TLS (for Redis: on every address, not only `rediss://` ones).
    pub enabled: bool,
    /// PEM certificates to trust instead of the system's roots.
    pub ca_pem: Option<Vec<u8>>,
    /// A client certificate for servers that require one.
    pub client_identity: Option<ClientIdentity>,
    /// The name the server's certificate must be valid for, when it is not the host connected
    /// to (an IP address, or a name the certificate lacks).
    pub server_name: Option<String>,
    /// Accept any certificate. Development only.
    pub insecure_skip_verify: bool,
}

/// A client certificate chain and its private key, both PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    pub cert_pem: Vec<u8>,
    pub key_pem: Secret,
}

/// A password or private key: compared like its text, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The rustls client configuration for `options` (ring provider, TLS 1.2 and 1.3), offering
/// `alpn`: the CA of `ca_pem` or else the system's roots (as the platform verifier finds
/// them), the client certificate if any, and the certificate checked against `server_name`
/// when one is set, or not at all with `insecure_skip_verify`.
pub fn client_config(options: &TlsOptions, alpn: &[&[u8]]) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = if options.insecure_skip_verify {
        Arc::new(AnyCertificate(Arc::clone(&provider)))
    } else {
        let checked: Arc<dyn ServerCertVerifier> = match &options.ca_pem {
            Some(pem) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(pem) {
                    let cert = cert.map_err(|e| format!("CA certificate: {e}"))?;
                    roots
                        .add(cert)
                        .map_err(|e| format!("CA certificate: {e}"))?;
                }
                rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    Arc::clone(&provider),
                )
                .build()
                .map_err(|e| format!("CA certificate: {e}"))?
            }
            None => Arc::new(
                rustls_platform_verifier::Verifier::new(Arc::clone(&provider))
                    .map_err(|e| format!("system roots: {e}"))?,
            ),
        };
        match &options.server_name {
            Some(name) => {
                let name = ServerName::try_from(name.clone())
                    .map_err(|_| format!("server_name {name:?} is not a DNS name or IP address"))?;
                Arc::new(NamedServer {
                    inner: checked,
                    name,
                })
            }
            None => checked,
        }
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match &options.client_identity {
        Some(identity) => {
            let chain = CertificateDer::pem_slice_iter(&identity.cert_pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("client certificate: {e}"))?;
            let key = PrivateKeyDer::from_pem_slice(identity.key_pem.expose().as_bytes())
                .map_err(|e| format!("client key: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client certificate and key: {e}"))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// Checks the certificate against a configured name instead of the host connected to
/// (`server_name`): the endpoint may be an IP address, or a name the certificate lacks.
#[derive(Debug)]
struct NamedServer {
    inner: Arc<dyn ServerCertVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for NamedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `insecure_skip_verify`: any certificate for any name. The handshake's signatures are still
/// checked, so the peer holds the key of the certificate it shows (whoever that is).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// What to tell the operator about a failed TLS handshake with a backend, or `None` when
/// `error` (an error chain as text) is not about TLS. `key` is the TLS table (`….http.tls`),
/// `enabled` whether it is in force.
pub fn failure_hint(error: &str, key: &str, enabled: bool) -> Option<String> {
    let enable = if enabled {
        String::new()
    } else {
        format!(" (with {key}.enabled = true)")
    };
    let hint = if error.contains("UnknownIssuer") || error.contains("BadSignature") {
        format!(
            "the server's certificate is not trusted: give its CA in {key}.server_ca_pem{enable}"
        )
    } else if error.contains("NotValidForName") || error.contains("not valid for name") {
        format!(
            "the server's certificate is not valid for the host connected to: set \
             {key}.server_name to a name it has{enable}"
        )
    } else if error.contains("Expired") || error.contains("certificate expired") {
        "the server's certificate has expired (or is not valid yet)".to_owned()
    } else if error.contains("CertificateRequired")
        || error.contains("BadCertificate")
        || error.contains("UnknownCA")
        || error.contains("CertificateUnknown")
    {
        format!(
            "the server refused gyre's client certificate: it requires one signed by a CA it \
             trusts ({key}.cert_pem and key_pem{enable})"
        )
    } else {
        return None;
    };
    Some(hint)
}
