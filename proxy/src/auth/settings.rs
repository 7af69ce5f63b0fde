//! Token verification settings, under `client.token` (and `client.subscription_token`) in the
//! configuration, with Centrifugo v6's names.

use serde::{Deserialize, Serialize};

/// How tokens are verified. Empty strings mean "not configured".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenSettings {
    /// Secret for HS256/HS384/HS512.
    pub hmac_secret_key: String,
    /// The secret before the last rotation: HS* tokens that fail with `hmac_secret_key` are
    /// checked with it, so tokens issued before the switch keep working.
    pub hmac_previous_secret_key: String,
    /// Unix time (seconds) from which `hmac_previous_secret_key` is no longer accepted;
    /// 0 = until it is removed from the config.
    pub hmac_previous_secret_key_valid_until: i64,
    /// PEM public key for RS256/RS384/RS512.
    pub rsa_public_key: String,
    /// PEM public key for ES256/ES384.
    pub ecdsa_public_key: String,
    /// JWKS URL; when set, every token is verified with the key its `kid` names.
    pub jwks_public_endpoint: String,
    /// Required `aud` claim, when set.
    pub audience: String,
    /// A regular expression one of the `aud` values must match (unanchored, like Go's
    /// `regexp`); instead of `audience`.
    pub audience_regex: String,
    /// Required `iss` claim, when set.
    pub issuer: String,
    /// A regular expression `iss` must match (unanchored); instead of `issuer`.
    pub issuer_regex: String,
    /// Claim holding the user id (default `sub`).
    pub user_id_claim: String,
    /// Allow `{{name}}` placeholders of `jwks_public_endpoint` to come from a named group that
    /// matches open-ended values (`[a-z]+`), not only a fixed list (`acme|globex`).
    pub insecure_skip_jwks_endpoint_safety_check: bool,
}
