//! Keys from a JWKS endpoint, chosen by the token's `kid`.
//!
//! - The whole set is cached for an hour (Centrifugo's TTL).
//! - An unknown `kid` triggers a refetch (key rotation), at most once per
//!   `refetch_min_interval`, so tokens with made-up `kid`s can't turn us into a load generator
//!   against the key server.
//! - Each fetch is a GET with a 1 s timeout and one retry, awaited on the runtime (never
//!   blocking it); concurrent misses share one fetch (a tokio mutex held across the await) and
//!   readers never wait on it (the cache is behind a short `RwLock`).
//! - If a refresh fails, keys from the last good fetch keep working: a key-server outage should
//!   not log everybody out. Without any usable key the error is `KeysUnavailable` (temporary).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use parking_lot::RwLock;

use super::error::{AuthConfigError, InvalidReason, TokenError};
use crate::config::token::jwks_placeholders as placeholders;

/// Timing knobs; [`Default`] is the production behaviour, tests shrink them.
#[derive(Debug, Clone)]
pub(super) struct JwksOptions {
    pub cache_ttl: Duration,
    pub refetch_min_interval: Duration,
    pub request_timeout: Duration,
    /// Extra attempts after a failed GET.
    pub retries: u32,
}

impl Default for JwksOptions {
    fn default() -> Self {
        JwksOptions {
            cache_ttl: Duration::from_secs(3600),
            refetch_min_interval: Duration::from_secs(5),
            request_timeout: Duration::from_secs(1),
            retries: 1,
        }
    }
}

/// A JWKS is a few KiB; anything far larger is not one.
const MAX_BODY: usize = 1 << 20;

/// One usable key and the algorithms it may verify.
pub(super) struct JwkKey {
    pub key: DecodingKey,
    pub algs: Vec<Algorithm>,
}

#[derive(Default)]
struct Cache {
    keys: HashMap<String, Arc<JwkKey>>,
    /// Last successful fetch.
    fetched_at: Option<Instant>,
    /// Last fetch attempt, successful or not (for the refetch rate limit).
    attempted_at: Option<Instant>,
    /// Why the last attempt failed, if it did.
    last_error: Option<String>,
}

pub(super) struct Jwks {
    url: reqwest::Url,
    client: reqwest::Client,
    opts: JwksOptions,
    cache: RwLock<Cache>,
    /// Serializes fetches so a burst of misses makes one request.
    fetching: tokio::sync::Mutex<()>,
}

impl Jwks {
    pub fn new(url: &str, field: &str, opts: JwksOptions) -> Result<Self, AuthConfigError> {
        let bad = |reason: String| AuthConfigError::InvalidJwksEndpoint {
            field: field.to_owned(),
            reason,
        };
        let url = reqwest::Url::parse(url).map_err(|e| bad(e.to_string()))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(bad(format!(
                "scheme must be http or https, not {}",
                url.scheme()
            )));
        }
        // reqwest is built without a bundled crypto provider.
        crate::tls::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(opts.request_timeout)
            .build()
            .map_err(|e| AuthConfigError::HttpClient(e.to_string()))?;
        Ok(Jwks {
            url,
            client,
            opts,
            cache: RwLock::new(Cache::default()),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    /// The key named `kid`, fetching the set when the cache is cold, stale or lacks `kid`.
    pub async fn key(&self, kid: &str) -> Result<Arc<JwkKey>, TokenError> {
        let started = Instant::now();
        if let Some(key) = self.cached(kid, true) {
            return Ok(key);
        }
        let _fetching = self.fetching.lock().await;
        // Someone may have fetched while we waited for the lock.
        if let Some(key) = self.cached(kid, true) {
            return Ok(key);
        }
        let (may_fetch, fetched_since_start) = {
            let cache = self.cache.read();
            let may = cache
                .attempted_at
                .is_none_or(|t| t.elapsed() >= self.opts.refetch_min_interval);
            let since = cache.fetched_at.is_some_and(|t| t >= started);
            (may, since)
        };
        if fetched_since_start {
            // A fetch that began after this token arrived came back without its kid.
            return Err(InvalidReason::UnknownKid(kid.to_owned()).into());
        }
        if !may_fetch {
            return self.fallback(kid, "JWKS refetch rate-limited");
        }
        match self.fetch().await {
            Ok(keys) => {
                let mut cache = self.cache.write();
                let now = Instant::now();
                cache.keys = keys;
                cache.fetched_at = Some(now);
                cache.attempted_at = Some(now);
                cache.last_error = None;
                cache
                    .keys
                    .get(kid)
                    .cloned()
                    .ok_or_else(|| InvalidReason::UnknownKid(kid.to_owned()).into())
            }
            Err(e) => {
                tracing::warn!(url = %self.url, error = %e, "JWKS fetch failed");
                {
                    let mut cache = self.cache.write();
                    cache.attempted_at = Some(Instant::now());
                    cache.last_error = Some(e);
                }
                self.fallback(kid, "JWKS fetch failed")
            }
        }
    }

    /// The cached key, if present and (when `fresh_only`) the cache is younger than the TTL.
    fn cached(&self, kid: &str, fresh_only: bool) -> Option<Arc<JwkKey>> {
        let cache = self.cache.read();
        let fresh = cache
            .fetched_at
            .is_some_and(|t| t.elapsed() < self.opts.cache_ttl);
        if fresh_only && !fresh {
            return None;
        }
        cache.keys.get(kid).cloned()
    }

    /// No fetch possible now: a stale key still serves; otherwise the failure is temporary
    /// (the key may have been published since the last fetch, or the server may come back).
    fn fallback(&self, kid: &str, why: &str) -> Result<Arc<JwkKey>, TokenError> {
        if let Some(key) = self.cached(kid, false) {
            return Ok(key);
        }
        let cache = self.cache.read();
        let detail = match &cache.last_error {
            Some(e) => format!("{why}: {e}"),
            None => format!("{why}; kid {kid} not in the cached set"),
        };
        Err(TokenError::KeysUnavailable(detail))
    }

    /// GET the set, with retries; parse every usable key.
    async fn fetch(&self) -> Result<HashMap<String, Arc<JwkKey>>, String> {
        let mut last = String::new();
        for _ in 0..=self.opts.retries {
            match self.get_once().await {
                Ok(body) => return parse_set(&body),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn get_once(&self) -> Result<Vec<u8>, String> {
        let mut resp = self
            .client
            .get(self.url.clone())
            .send()
            .await
            .map_err(|e| format!("request: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("status {}", resp.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| format!("body: {e}"))? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err("body larger than 1 MiB".into());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// Parses a JWKS document, keeping the keys we can verify with. Keys are parsed one by one so
/// one exotic entry (an `oct` key, a P-521 curve, an encryption key) doesn't void the set.
fn parse_set(body: &[u8]) -> Result<HashMap<String, Arc<JwkKey>>, String> {
    #[derive(serde::Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set = serde_json::from_slice(body).map_err(|e| format!("not a JWKS: {e}"))?;
    let mut keys = HashMap::new();
    for value in set.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            continue;
        };
        let Some(kid) = jwk.common.key_id.clone() else {
            continue;
        };
        if let Some(key) = usable_key(&jwk) {
            keys.insert(kid, Arc::new(key));
        }
    }
    Ok(keys)
}

/// A signing key of a kind Centrifugo accepts (RSA, EC P-256/P-384, OKP Ed25519), with the
/// algorithms it may verify: its `alg` if it names one, else every algorithm of its kind.
fn usable_key(jwk: &Jwk) -> Option<JwkKey> {
    if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
        return None;
    }
    let kind_algs: &[Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => &[Algorithm::RS256, Algorithm::RS384, Algorithm::RS512],
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => &[Algorithm::ES256],
            EllipticCurve::P384 => &[Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            &[Algorithm::EdDSA]
        }
        _ => return None,
    };
    let algs = match jwk.common.key_algorithm {
        None => kind_algs.to_vec(),
        Some(ka) => {
            let alg = to_algorithm(ka)?;
            if !kind_algs.contains(&alg) {
                return None;
            }
            vec![alg]
        }
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(JwkKey { key, algs })
}

fn to_algorithm(ka: KeyAlgorithm) -> Option<Algorithm> {
    ka.to_string().parse().ok()
}

/// A `jwks_public_endpoint` with `{{name}}` placeholders (Keycloak's one URL per realm), filled
/// for each token from the named groups `issuer_regex` / `audience_regex` captured in its `iss`
/// / `aud`. Each URL it yields is a [`Jwks`] of its own, so a `kid` is only ever looked up in
/// the set of the issuer that signed with it.
pub(super) struct JwksTemplate {
    template: String,
    field: String,
    opts: JwksOptions,
    endpoints: parking_lot::Mutex<HashMap<String, Arc<Jwks>>>,
}

/// URLs remembered at once; beyond it one is forgotten (and fetched again when needed), so
/// tokens naming ever new realms cannot grow memory without bound.
const MAX_TEMPLATE_ENDPOINTS: usize = 256;

impl JwksTemplate {
    /// `names` are the named groups the regexes capture: every placeholder must be one of them.
    /// `unsafe_groups` are those of [`unsafe_placeholders`]; none may be left unless the
    /// operator said the endpoint is safe anyway.
    pub fn new(
        template: &str,
        field: &str,
        opts: JwksOptions,
        names: &[&str],
        unsafe_groups: &[(&str, &str)],
    ) -> Result<Self, AuthConfigError> {
        let bad = |reason: String| AuthConfigError::InvalidJwksEndpoint {
            field: field.to_owned(),
            reason,
        };
        if let Some((name, key)) = unsafe_groups.first() {
            return Err(bad(format!(
                "{{{{{name}}}}} comes from a group of {key} that matches open-ended values: \
                 list them (a|b|c), or set insecure_skip_jwks_endpoint_safety_check"
            )));
        }
        let mut sample = HashMap::new();
        for name in placeholders(template) {
            if !names.contains(&name) {
                return Err(bad(format!(
                    "{{{{{name}}}}} is not a named group of issuer_regex or audience_regex"
                )));
            }
            sample.insert(name.to_owned(), "x".to_owned());
        }
        // The URL's shape is checked once, with every placeholder filled.
        let url = fill(template, &sample).map_err(|e| bad(e.to_string()))?;
        Jwks::new(&url, field, opts.clone())?;
        Ok(JwksTemplate {
            template: template.to_owned(),
            field: field.to_owned(),
            opts,
            endpoints: parking_lot::Mutex::new(HashMap::new()),
        })
    }

    /// The key set of the URL `vars` make of the template.
    pub fn endpoint(&self, vars: &HashMap<String, String>) -> Result<Arc<Jwks>, TokenError> {
        let url = fill(&self.template, vars)?;
        let mut endpoints = self.endpoints.lock();
        if let Some(jwks) = endpoints.get(&url) {
            return Ok(Arc::clone(jwks));
        }
        let jwks = Jwks::new(&url, &self.field, self.opts.clone())
            .map_err(|e| InvalidReason::JwksVariable(e.to_string()))?;
        if endpoints.len() >= MAX_TEMPLATE_ENDPOINTS
            && let Some(old) = endpoints.keys().next().cloned()
        {
            endpoints.remove(&old);
        }
        let jwks = Arc::new(jwks);
        endpoints.insert(url, Arc::clone(&jwks));
        Ok(jwks)
    }
}

/// The template with every placeholder replaced by its value. A value comes from a token that
/// is not verified yet (and, with `insecure_skip_jwks_endpoint_safety_check`, from a group that
/// captures anything), so it may only be a host, port or path segment: letters, digits, `-`,
/// `_`, `.` (not `..`), `:`; never `/`, `@`, `?`, `#` or `%` that would point the request
/// elsewhere.
fn fill(template: &str, vars: &HashMap<String, String>) -> Result<String, InvalidReason> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some((name, tail)) = after.split_once("}}") else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let name = name.trim();
        let value = vars
            .get(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| InvalidReason::JwksVariable(format!("no value for {{{{{name}}}}}")))?;
        let safe = value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
            && !value.contains("..");
        if !safe {
            return Err(InvalidReason::JwksVariable(format!(
                "{{{{{name}}}}} = {value:?} is not a plain name"
            )));
        }
        out.push_str(value);
        rest = tail;
    }
    out.push_str(rest);
    Ok(out)
}
