//! Connection and subscription tokens: JWT verification compatible with Centrifugo v6
//! (docs/protocol.md#tokens).
//!
//! - [`Verifier`] is built once from `client.token` (and, when
//!   `client.subscription_token.enabled`, `client.subscription_token`) and shared by every
//!   session; cloning it is cheap.
//! - [`Verifier::verify_connect`] / [`Verifier::verify_subscribe`] return typed claims
//!   ([`ConnectToken`], [`SubscribeToken`]) or a [`TokenError`]; the caller passes `now` so the
//!   checks are deterministic in tests.
//! - [`TokenError::outcome`] says what the session answers (docs/protocol.md#token-failures):
//!   expired → error 109; invalid → disconnect 3500 (connect, refresh, sub_refresh) or error
//!   103 (subscribe). A subscription token whose channel/user/client differ from the request is
//!   the session's check and is answered with disconnect 3500 ([`DISCONNECT_INVALID_TOKEN`]).
//!
//! `audience_regex` / `issuer_regex` stand in for `audience` / `issuer` (one of each pair):
//! some `aud` value, or `iss`, must match the regular expression. Their named groups fill the
//! `{{name}}` placeholders of a templated `jwks_public_endpoint` (one key set per issuer, e.g.
//! per Keycloak realm; see `jwks::JwksTemplate`).
//!
//! Order of checks, as in Centrifugo: header and key → signature → claim types → aud/iss →
//! `channel` claim (connection tokens) → `exp`/`nbf` → payload decoding. So an expired token with
//! a bad signature is *invalid*, not *expired*.
//!
//! Keys: HS256/384/512 (`hmac_secret_key`; during a rotation also `hmac_previous_secret_key`,
//! tried when the current secret refuses the signature, until
//! `hmac_previous_secret_key_valid_until`), RS256/384/512 (`rsa_public_key`), ES256/ES384
//! (`ecdsa_public_key`), picked by the header's `alg`; or, when `jwks_public_endpoint` is set,
//! only the JWKS (RSA, EC, Ed25519 keys by `kid`; caching rules in `jwks.rs`). ES512 is not
//! supported (jsonwebtoken has no ES512).

mod claims;
mod error;
mod jwks;
mod keys;

#[cfg(test)]
mod jwks_tests;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde_json::value::RawValue;

pub use crate::config::TokenSettings;
pub use claims::{ConnectToken, Overrides, SubOptions, SubscribeToken};
pub use error::{
    AuthConfigError, DISCONNECT_EXPIRED, DISCONNECT_INVALID_TOKEN, ERROR_INTERNAL,
    ERROR_PERMISSION_DENIED, ERROR_TOKEN_EXPIRED, InvalidReason, Reject, TokenError, TokenUse,
};

use claims::{RawConnect, RawSubscribe, Registered};
use jwks::{Jwks, JwksOptions, JwksTemplate};
use keys::StaticKeys;

/// Verifies connection and subscription tokens. Cheap to clone (shared state behind an `Arc`).
#[derive(Clone)]
pub struct Verifier {
    connect: Arc<KeyRing>,
    /// Same `Arc` as `connect` unless subscription tokens have their own settings.
    subscribe: Arc<KeyRing>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field(
                "separate_subscription_keys",
                &!Arc::ptr_eq(&self.connect, &self.subscribe),
            )
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// One key configuration (`client.token`) for both token kinds: Centrifugo's behaviour when
    /// `client.subscription_token.enabled` is false. Bad PEM, bad URL → error now.
    pub fn new(settings: &TokenSettings) -> Result<Verifier, AuthConfigError> {
        let ring = Arc::new(KeyRing::new(
            settings,
            "client.token",
            JwksOptions::default(),
        )?);
        Ok(Verifier {
            connect: ring.clone(),
            subscribe: ring,
        })
    }

    /// Separate keys for subscription tokens (`client.subscription_token.enabled = true`):
    /// connection tokens use `settings`, subscription tokens only `sub_settings`.
    pub fn with_subscription(
        settings: &TokenSettings,
        sub_settings: &TokenSettings,
    ) -> Result<Verifier, AuthConfigError> {
        Ok(Verifier {
            connect: Arc::new(KeyRing::new(
                settings,
                "client.token",
                JwksOptions::default(),
            )?),
            subscribe: Arc::new(KeyRing::new(
                sub_settings,
                "client.subscription_token",
                JwksOptions::default(),
            )?),
        })
    }

    /// Whether any key (or a JWKS endpoint) is configured for connection tokens; without one
    /// every token is refused, which the server may want to warn about at startup.
    pub fn has_connect_keys(&self) -> bool {
        self.connect.has_keys()
    }

    /// Verifies a connection token at time `now_unix` (seconds).
    pub async fn verify_connect(
        &self,
        token: &str,
        now_unix: i64,
    ) -> Result<ConnectToken, TokenError> {
        let ring = &*self.connect;
        let payload = ring.verified_payload(token, now_unix).await?;
        let raw: RawConnect<'_> = parse(payload.get())?;
        let reg: Registered = parse(payload.get())?;
        ring.check_audience_issuer(&reg)?;
        if raw.has_channel() {
            return Err(InvalidReason::ChannelInConnectToken.into());
        }
        check_times(&reg, now_unix)?;
        let user = ring.user_id(&reg, payload.get())?;
        Ok(raw.into_token(user, reg.exp)?)
    }

    /// Verifies a subscription token at time `now_unix` (seconds). The caller compares
    /// `channel`, `user` and `client` with the request.
    pub async fn verify_subscribe(
        &self,
        token: &str,
        now_unix: i64,
    ) -> Result<SubscribeToken, TokenError> {
        let ring = &*self.subscribe;
        let payload = ring.verified_payload(token, now_unix).await?;
        let raw: RawSubscribe<'_> = parse(payload.get())?;
        let reg: Registered = parse(payload.get())?;
        ring.check_audience_issuer(&reg)?;
        check_times(&reg, now_unix)?;
        let user = ring.user_id(&reg, payload.get())?;
        Ok(raw.into_token(user, reg.exp)?)
    }

    #[cfg(test)]
    fn with_jwks_options(
        settings: &TokenSettings,
        opts: JwksOptions,
    ) -> Result<Verifier, AuthConfigError> {
        let ring = Arc::new(KeyRing::new(settings, "client.token", opts)?);
        Ok(Verifier {
            connect: ring.clone(),
            subscribe: ring,
        })
    }
}

/// Where keys come from: the config file or a JWKS endpoint (never both: Centrifugo sends every
/// token through JWKS once it is configured).
enum KeySource {
    Static(StaticKeys),
    Jwks(Jwks),
    /// `jwks_public_endpoint` with `{{name}}` placeholders, filled from the regexes' groups.
    JwksTemplate(JwksTemplate),
}

/// Keys plus the claim checks of one `TokenSettings`.
struct KeyRing {
    source: KeySource,
    audience: Option<Expected>,
    issuer: Option<Expected>,
    /// `None` = the standard `sub` claim.
    user_id_claim: Option<String>,
}

impl KeyRing {
    fn new(s: &TokenSettings, scope: &str, opts: JwksOptions) -> Result<Self, AuthConfigError> {
        let audience = Expected::new(&s.audience, &s.audience_regex, scope, "audience")?;
        let issuer = Expected::new(&s.issuer, &s.issuer_regex, scope, "issuer")?;
        let field = format!("{scope}.jwks_public_endpoint");
        let source = if s.jwks_public_endpoint.is_empty() {
            KeySource::Static(StaticKeys::load(s, scope)?)
        } else if s.jwks_public_endpoint.contains("{{") {
            let names: Vec<&str> = [&audience, &issuer]
                .into_iter()
                .flatten()
                .flat_map(Expected::group_names)
                .collect();
            let unsafe_groups = if s.insecure_skip_jwks_endpoint_safety_check {
                Vec::new()
            } else {
                s.unsafe_jwks_placeholders()
            };
            KeySource::JwksTemplate(JwksTemplate::new(
                &s.jwks_public_endpoint,
                &field,
                opts,
                &names,
                &unsafe_groups,
            )?)
        } else {
            KeySource::Jwks(Jwks::new(&s.jwks_public_endpoint, &field, opts)?)
        };
        let non_empty = |v: &str| (!v.is_empty()).then(|| v.to_owned());
        Ok(KeyRing {
            source,
            audience,
            issuer,
            user_id_claim: non_empty(&s.user_id_claim).filter(|c| c != "sub"),
        })
    }

    fn has_keys(&self) -> bool {
        match &self.source {
            KeySource::Static(keys) => !keys.is_empty(),
            KeySource::Jwks(_) | KeySource::JwksTemplate(_) => true,
        }
    }

    /// Checks the header and signature; returns the payload JSON.
    async fn verified_payload(
        &self,
        token: &str,
        now_unix: i64,
    ) -> Result<Box<RawValue>, TokenError> {
        let header = decode_header(token)?;
        let alg = header.alg;
        // JWKS keys are shared through an `Arc`; hold it while the static key is borrowed.
        let jwk;
        let key: &DecodingKey = match &self.source {
            KeySource::Static(keys) => keys.for_alg(alg)?,
            KeySource::Jwks(jwks) => {
                jwk = jwk_for(jwks, &header).await?;
                &jwk.key
            }
            KeySource::JwksTemplate(template) => {
                let jwks = template.endpoint(&self.endpoint_vars(token)?)?;
                jwk = jwk_for(&jwks, &header).await?;
                &jwk.key
            }
        };
        let validation = signature_only(alg);
        let decoded = jsonwebtoken::decode::<Box<RawValue>>(token, key, &validation);
        let decoded = match (decoded, &self.source) {
            (Err(e), KeySource::Static(keys)) if *e.kind() == ErrorKind::InvalidSignature => {
                match keys.hmac_previous().and_then(|p| p.at(now_unix)) {
                    Some(previous) if is_hmac(alg) => {
                        jsonwebtoken::decode::<Box<RawValue>>(token, previous, &validation)
                    }
                    _ => Err(e),
                }
            }
            (decoded, _) => decoded,
        };
        Ok(decoded.map_err(InvalidReason::from)?.claims)
    }

    /// The values a templated JWKS endpoint needs, from the named groups of the regexes in the
    /// (not yet verified) `iss` and `aud`. A token the regexes refuse is refused here, before
    /// any request is made for it.
    fn endpoint_vars(&self, token: &str) -> Result<HashMap<String, String>, InvalidReason> {
        use base64::Engine as _;
        let payload = token
            .split('.')
            .nth(1)
            .and_then(|p| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(p)
                    .ok()
            })
            .ok_or_else(|| InvalidReason::Malformed("payload is not base64url".into()))?;
        let reg: Registered =
            serde_json::from_slice(&payload).map_err(|e| InvalidReason::Claims(e.to_string()))?;
        self.check_audience_issuer(&reg)?;
        let mut vars = HashMap::new();
        if let (Some(wanted), Some(iss)) = (&self.issuer, reg.iss.as_deref()) {
            wanted.capture(iss, &mut vars);
        }
        if let (Some(wanted), Some(aud)) = (&self.audience, &reg.aud) {
            // The first value that matches, as Centrifugo.
            aud.iter().find(|a| wanted.capture(a, &mut vars));
        }
        Ok(vars)
    }

    fn check_audience_issuer(&self, reg: &Registered) -> Result<(), InvalidReason> {
        if let Some(wanted) = &self.audience
            && !reg
                .aud
                .as_ref()
                .is_some_and(|aud| aud.iter().any(|a| wanted.accepts(a)))
        {
            return Err(InvalidReason::Audience);
        }
        if let Some(wanted) = &self.issuer
            && !reg.iss.as_deref().is_some_and(|iss| wanted.accepts(iss))
        {
            return Err(InvalidReason::Issuer);
        }
        Ok(())
    }

    fn user_id(&self, reg: &Registered, payload: &str) -> Result<String, InvalidReason> {
        match &self.user_id_claim {
            None => Ok(reg.sub.clone().unwrap_or_default()),
            Some(claim) => claims::custom_user_id(payload, claim),
        }
    }
}

/// The key of the header's `kid` in `jwks`, if it may verify the header's algorithm.
async fn jwk_for(jwks: &Jwks, header: &Header) -> Result<Arc<jwks::JwkKey>, TokenError> {
    let kid = header
        .kid
        .as_deref()
        .filter(|k| !k.is_empty())
        .ok_or(InvalidReason::MissingKid)?;
    let jwk = jwks.key(kid).await?;
    if !jwk.algs.contains(&header.alg) {
        return Err(InvalidReason::AlgorithmMismatch {
            kid: kid.to_owned(),
            alg: format!("{:?}", header.alg),
        }
        .into());
    }
    Ok(jwk)
}

/// What an `aud` value or the `iss` claim must be: the configured string, or a match of the
/// configured regular expression.
enum Expected {
    Exactly(String),
    Matching(regex::Regex),
}

impl Expected {
    /// From `<name>` and `<name>_regex` of `scope`; both set is a config error (validation
    /// reports it first; this keeps the verifier honest when built another way).
    fn new(
        exact: &str,
        pattern: &str,
        scope: &str,
        name: &str,
    ) -> Result<Option<Self>, AuthConfigError> {
        let field = format!("{scope}.{name}_regex");
        match (exact, pattern) {
            ("", "") => Ok(None),
            (exact, "") => Ok(Some(Expected::Exactly(exact.to_owned()))),
            ("", pattern) => regex::Regex::new(pattern)
                .map(|re| Some(Expected::Matching(re)))
                .map_err(|e| AuthConfigError::InvalidRegex {
                    field,
                    reason: e.to_string(),
                }),
            _ => Err(AuthConfigError::InvalidRegex {
                field,
                reason: format!("cannot be used together with {scope}.{name}"),
            }),
        }
    }

    fn accepts(&self, value: &str) -> bool {
        match self {
            Expected::Exactly(wanted) => value == wanted,
            Expected::Matching(re) => re.is_match(value),
        }
    }

    /// Whether `value` is accepted; if so, its named groups go into `vars`.
    fn capture(&self, value: &str, vars: &mut HashMap<String, String>) -> bool {
        let Expected::Matching(re) = self else {
            return self.accepts(value);
        };
        let Some(captures) = re.captures(value) else {
            return false;
        };
        for name in re.capture_names().flatten() {
            if let Some(m) = captures.name(name) {
                vars.insert(name.to_owned(), m.as_str().to_owned());
            }
        }
        true
    }

    fn group_names(&self) -> Vec<&str> {
        match self {
            Expected::Exactly(_) => Vec::new(),
            Expected::Matching(re) => re.capture_names().flatten().collect(),
        }
    }
}

fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// jsonwebtoken only checks the signature and algorithm here; every claim check is ours because
/// they depend on the caller's `now` and on Centrifugo's rules.
fn signature_only(alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    v
}

/// `exp` must be in the future (a token expiring this very second is already expired, as with
/// Go's `exp.After(now)`); `nbf` must not be.
fn check_times(reg: &Registered, now_unix: i64) -> Result<(), TokenError> {
    if reg.exp.is_some_and(|exp| exp <= now_unix) {
        return Err(TokenError::Expired);
    }
    if reg.nbf.is_some_and(|nbf| nbf > now_unix) {
        return Err(TokenError::NotYetValid);
    }
    Ok(())
}

fn parse<'a, T: serde::Deserialize<'a>>(json: &'a str) -> Result<T, InvalidReason> {
    serde_json::from_str(json).map_err(|e| InvalidReason::Claims(e.to_string()))
}

/// The header, with a precise reason when its `alg` is one jsonwebtoken doesn't know (`none`,
/// `ES512`): that fails as a JSON error otherwise, which reads like a corrupt token.
fn decode_header(token: &str) -> Result<Header, InvalidReason> {
    jsonwebtoken::decode_header(token).map_err(|e| {
        use base64::Engine as _;
        let alg = token
            .split('.')
            .next()
            .and_then(|h| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(h)
                    .ok()
            })
            .and_then(|h| serde_json::from_slice::<serde_json::Value>(&h).ok())
            .and_then(|h| h.get("alg")?.as_str().map(str::to_owned));
        match alg {
            Some(alg) if alg.parse::<Algorithm>().is_err() => {
                InvalidReason::UnsupportedAlgorithm(alg)
            }
            _ => InvalidReason::Malformed(e.to_string()),
        }
    })
}

impl From<jsonwebtoken::errors::Error> for InvalidReason {
    fn from(e: jsonwebtoken::errors::Error) -> Self {
        match e.kind() {
            ErrorKind::InvalidSignature => InvalidReason::BadSignature,
            ErrorKind::InvalidAlgorithm
            | ErrorKind::InvalidKeyFormat
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidEddsaKey
            | ErrorKind::InvalidRsaKey(_)
            | ErrorKind::InvalidAlgorithmName => InvalidReason::BadKey(e.to_string()),
            _ => InvalidReason::Malformed(e.to_string()),
        }
    }
}
