//! Why a token was refused, and what the session answers for each case
//! (docs/protocol.md#token-failures).
//!
//! Verification never decides wire behaviour itself: it returns a [`TokenError`], and the session
//! asks [`TokenError::outcome`] what to send for the command it is handling. Codes are
//! Centrifugo's numbers (docs/protocol.md#error-codes, #disconnect-codes), so they line up with
//! `gyre_proto::codes`.

/// A token was refused; docs/protocol.md#token-failures says what each variant is answered with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// `exp` has passed. The SDK fetches a new token and retries (error 109).
    #[error("token expired")]
    Expired,
    /// `nbf` is still in the future. Centrifugo reports this exactly like an expired token (109),
    /// which makes the SDK fetch a fresh token and retry after a backoff; kept separate only so
    /// logs say which check failed.
    #[error("token not valid yet (nbf)")]
    NotYetValid,
    /// Bad signature, bad claims, disallowed algorithm... Terminal for a connection (3500).
    #[error("invalid token: {0}")]
    Invalid(InvalidReason),
    /// The JWKS endpoint could not be read and no usable cached key exists. Not the client's
    /// fault, so it is answered with the temporary internal error (100) and the SDK retries.
    /// (Centrifugo folds this into "invalid token", which makes every SDK give up for good while
    /// the key server is down; we deliberately don't.)
    #[error("token keys unavailable: {0}")]
    KeysUnavailable(String),
}

/// What exactly made a token invalid. For logs and tests; the wire answer is the same for all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidReason {
    /// Not three base64url parts, bad header JSON, bad payload encoding.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The header names an algorithm we never accept (`none`, `ES512`, `PS256`...).
    #[error("unsupported algorithm {0}")]
    UnsupportedAlgorithm(String),
    /// The header's algorithm is supported, but no key for it is configured.
    #[error("algorithm {0} is not configured")]
    AlgorithmNotConfigured(String),
    /// The JWKS key named by `kid` is not meant for the header's algorithm.
    #[error("key {kid} does not allow algorithm {alg}")]
    AlgorithmMismatch { kid: String, alg: String },
    /// JWKS verification needs a `kid` header.
    #[error("token has no kid header")]
    MissingKid,
    /// The JWKS, freshly fetched, has no key with this `kid`.
    #[error("no key with kid {0}")]
    UnknownKid(String),
    /// The key could not be used for this algorithm (e.g. a P-384 key with ES256).
    #[error("key unusable: {0}")]
    BadKey(String),
    #[error("bad signature")]
    BadSignature,
    /// A claim has the wrong JSON type (e.g. `exp` as a string, `channels` not an array).
    #[error("bad claims: {0}")]
    Claims(String),
    #[error("audience mismatch")]
    Audience,
    #[error("issuer mismatch")]
    Issuer,
    /// A connection token carries a `channel` claim (only subscription tokens may).
    #[error("connection token can not contain a channel claim")]
    ChannelInConnectToken,
    /// A subscription token without a `channel` claim.
    #[error("subscription token has no channel claim")]
    MissingChannel,
    /// `b64info` / `b64data` is not standard base64.
    #[error("{0} is not valid base64")]
    Base64(&'static str),
    /// A `{{name}}` of a templated `jwks_public_endpoint` got no value, or one that is not a
    /// plain name, from the token's `iss` / `aud`.
    #[error("JWKS endpoint from the token's claims: {0}")]
    JwksVariable(String),
    /// The configured `user_id_claim` holds an object or array.
    #[error("user id claim is not a string or number")]
    UserIdClaim,
}

impl From<InvalidReason> for TokenError {
    fn from(reason: InvalidReason) -> Self {
        TokenError::Invalid(reason)
    }
}

/// The command a token came with: the same failure is answered differently for each
/// (docs/protocol.md#token-failures).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenUse {
    /// `connect` command.
    Connect,
    /// `refresh` command (new connection token).
    Refresh,
    /// `subscribe` command with a subscription token.
    Subscribe,
    /// `sub_refresh` command (new subscription token).
    SubRefresh,
}

/// What the session does with a refused token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Reply to the command with this client error code (docs/protocol.md#error-codes).
    Error(u32),
    /// Close the connection with this disconnect code and reason
    /// (docs/protocol.md#disconnect-codes).
    Disconnect(u16, &'static str),
    /// `sub_refresh` only: answer without a new expiry and let the subscription's existing expiry
    /// timer end it (Centrifugo's handler returns an `Expired` reply that nothing acts on).
    Expired,
}

/// 100 internal server error (temporary: the SDK retries).
pub const ERROR_INTERNAL: u32 = 100;
/// 103 permission denied.
pub const ERROR_PERMISSION_DENIED: u32 = 103;
/// 109 token expired (the SDK fetches a new token first).
pub const ERROR_TOKEN_EXPIRED: u32 = 109;
/// 3005 connection expired (reconnect).
pub const DISCONNECT_EXPIRED: (u16, &str) = (3005, "connection expired");
/// 3500 invalid token (terminal).
pub const DISCONNECT_INVALID_TOKEN: (u16, &str) = (3500, "invalid token");

impl TokenError {
    /// The answer for this failure when the token came with `usage`
    /// (docs/protocol.md#token-failures).
    pub fn outcome(&self, usage: TokenUse) -> Reject {
        let (code, reason) = DISCONNECT_INVALID_TOKEN;
        match (self, usage) {
            (Self::KeysUnavailable(_), _) => Reject::Error(ERROR_INTERNAL),
            (Self::Expired | Self::NotYetValid, TokenUse::Connect | TokenUse::Subscribe) => {
                Reject::Error(ERROR_TOKEN_EXPIRED)
            }
            (Self::Expired | Self::NotYetValid, TokenUse::Refresh) => {
                Reject::Disconnect(DISCONNECT_EXPIRED.0, DISCONNECT_EXPIRED.1)
            }
            (Self::Expired | Self::NotYetValid, TokenUse::SubRefresh) => Reject::Expired,
            (Self::Invalid(_), TokenUse::Subscribe) => Reject::Error(ERROR_PERMISSION_DENIED),
            (Self::Invalid(_), TokenUse::Connect | TokenUse::Refresh | TokenUse::SubRefresh) => {
                Reject::Disconnect(code, reason)
            }
        }
    }

    /// Shorthand for [`outcome`](Self::outcome) with [`TokenUse::Connect`]:
    /// expired → error 109, invalid → disconnect 3500.
    pub fn connect_outcome(&self) -> Reject {
        self.outcome(TokenUse::Connect)
    }

    /// Shorthand for [`outcome`](Self::outcome) with [`TokenUse::Subscribe`]:
    /// expired → error 109, invalid → error 103.
    pub fn subscribe_outcome(&self) -> Reject {
        self.outcome(TokenUse::Subscribe)
    }
}

/// The token configuration can't be used; reported once, at startup.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthConfigError {
    /// A PEM key (or the HMAC secret) could not be loaded. `field` is the full config path.
    #[error("{field}: {reason}")]
    InvalidKey { field: String, reason: String },
    /// `jwks_public_endpoint` is not an http(s) URL.
    #[error("{field}: {reason}")]
    InvalidJwksEndpoint { field: String, reason: String },
    /// `audience_regex` / `issuer_regex` does not compile, or is set beside its exact twin.
    #[error("{field}: {reason}")]
    InvalidRegex { field: String, reason: String },
    /// The HTTP client for JWKS could not be built.
    #[error("JWKS HTTP client: {0}")]
    HttpClient(String),
}
