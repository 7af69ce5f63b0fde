//! The process's one rustls crypto provider.
//!
//! Every TLS client of gyre (JWKS fetches, Redis connections) is rustls with the `ring`
//! provider: `aws-lc-rs` is a slow C build and native-tls would add OpenSSL. rustls picks the
//! process-wide default when a config is built, so it must be installed before the first one.

/// Installs `ring` as the process-wide rustls provider unless one is already there. Losing the
/// race to another installer is fine: some provider is then in place.
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
