//! Keys from the configuration file: one HMAC secret (and the one it replaced, during a
//! rotation), one RSA and one ECDSA public key (PEM).
//!
//! The token header's `alg` picks the key family, so an RSA public key can never be used as an
//! HMAC secret (the classic algorithm-confusion attack): each family has its own slot.

use jsonwebtoken::{Algorithm, DecodingKey};

use super::error::{AuthConfigError, InvalidReason};
use crate::config::TokenSettings;

/// The configured static keys; `None` = that family is disabled.
pub(super) struct StaticKeys {
    hmac: Option<DecodingKey>,
    hmac_previous: Option<PreviousKey>,
    rsa: Option<DecodingKey>,
    ecdsa: Option<DecodingKey>,
}

/// `hmac_previous_secret_key` and until when it counts.
pub(super) struct PreviousKey {
    key: DecodingKey,
    /// Unix seconds; `None` = no end.
    valid_until: Option<i64>,
}

impl PreviousKey {
    /// The key, if it is still accepted at `now_unix`. The cut-off is the server's clock, never
    /// a claim of the token: whoever kept the old secret could write any `iat`.
    pub fn at(&self, now_unix: i64) -> Option<&DecodingKey> {
        match self.valid_until {
            Some(until) if now_unix >= until => None,
            _ => Some(&self.key),
        }
    }
}

impl StaticKeys {
    /// Loads and sanity-checks every configured key; `scope` is the config section for errors.
    pub fn load(settings: &TokenSettings, scope: &str) -> Result<Self, AuthConfigError> {
        let bad = |field: &str, reason: String| AuthConfigError::InvalidKey {
            field: format!("{scope}.{field}"),
            reason,
        };
        let hmac = match settings.hmac_secret_key.as_str() {
            "" => None,
            secret => Some(
                DecodingKey::from_secret(secret.as_bytes())
                    .map_err(|e| bad("hmac_secret_key", e.to_string()))?,
            ),
        };
        let hmac_previous = match settings.hmac_previous_secret_key.as_str() {
            "" => None,
            secret => Some(PreviousKey {
                key: DecodingKey::from_secret(secret.as_bytes())
                    .map_err(|e| bad("hmac_previous_secret_key", e.to_string()))?,
                valid_until: Some(settings.hmac_previous_secret_key_valid_until)
                    .filter(|&until| until > 0),
            }),
        };
        let rsa = match settings.rsa_public_key.trim() {
            "" => None,
            pem => {
                let key = DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| {
                    bad("rsa_public_key", format!("not an RSA public key PEM: {e}"))
                })?;
                probe(&key, Algorithm::RS256)
                    .map_err(|e| bad("rsa_public_key", format!("unusable RSA key: {e}")))?;
                Some(key)
            }
        };
        let ecdsa = match settings.ecdsa_public_key.trim() {
            "" => None,
            pem => {
                let key = DecodingKey::from_ec_pem(pem.as_bytes()).map_err(|e| {
                    bad("ecdsa_public_key", format!("not an EC public key PEM: {e}"))
                })?;
                // The curve decides the algorithm; accept the key if either supported one can
                // use it (P-521, for ES512, can't: jsonwebtoken has no ES512).
                probe(&key, Algorithm::ES256)
                    .or_else(|_| probe(&key, Algorithm::ES384))
                    .map_err(|e| {
                        bad(
                            "ecdsa_public_key",
                            format!("unusable EC key (P-256 or P-384 expected): {e}"),
                        )
                    })?;
                Some(key)
            }
        };
        Ok(StaticKeys {
            hmac,
            hmac_previous,
            rsa,
            ecdsa,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.hmac.is_none() && self.rsa.is_none() && self.ecdsa.is_none()
    }

    /// The previous HMAC secret, for an HS* token the current one refused.
    pub fn hmac_previous(&self) -> Option<&PreviousKey> {
        self.hmac_previous.as_ref()
    }

    /// The key for the header's algorithm. Only Centrifugo's static-key algorithms are accepted:
    /// HS*, RS*, ES256/ES384.
    pub fn for_alg(&self, alg: Algorithm) -> Result<&DecodingKey, InvalidReason> {
        use Algorithm::*;
        let slot = match alg {
            HS256 | HS384 | HS512 => &self.hmac,
            RS256 | RS384 | RS512 => &self.rsa,
            ES256 | ES384 => &self.ecdsa,
            other => return Err(InvalidReason::UnsupportedAlgorithm(format!("{other:?}"))),
        };
        slot.as_ref()
            .ok_or_else(|| InvalidReason::AlgorithmNotConfigured(format!("{alg:?}")))
    }
}

/// Builds the verifier for `alg` once so a key that parses as PEM but not as a key (wrong
/// curve, truncated modulus...) fails at startup instead of on every token. The signature
/// check itself is expected to fail: only a construction error matters.
fn probe(key: &DecodingKey, alg: Algorithm) -> Result<(), String> {
    jsonwebtoken::crypto::verify("AA", b"probe", key, alg)
        .map(|_| ())
        .map_err(|e| e.to_string())
}
