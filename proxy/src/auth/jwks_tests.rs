//! JWKS verification against a tiny HTTP server on 127.0.0.1:0 that serves a set built from the
//! test keys; the tests change what it serves (or break it) between calls.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::tests::{EC256_PRIVATE, NOW, RSA_PRIVATE, sign};
use super::*;

const ED25519_PRIVATE: &str = include_str!("testdata/ed25519_private.pem");

/// Serves `body` with `status` on every request and counts requests. `stall` = accept but
/// never answer (to hit the timeout).
struct KeyServer {
    url: String,
    body: Arc<Mutex<String>>,
    status: Arc<AtomicU16>,
    hits: Arc<AtomicUsize>,
    /// The path of every request, in order.
    paths: Arc<Mutex<Vec<String>>>,
}

impl KeyServer {
    async fn start(body: String, stall: bool) -> KeyServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        let server = KeyServer {
            url,
            body: Arc::new(Mutex::new(body)),
            status: Arc::new(AtomicU16::new(200)),
            hits: Arc::new(AtomicUsize::new(0)),
            paths: Arc::new(Mutex::new(Vec::new())),
        };
        let (body, status, hits, paths) = (
            server.body.clone(),
            server.status.clone(),
            server.hits.clone(),
            server.paths.clone(),
        );
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let (body, status, hits, paths) =
                    (body.clone(), status.clone(), hits.clone(), paths.clone());
                tokio::spawn(async move {
                    let mut req = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                    }
                    hits.fetch_add(1, Ordering::SeqCst);
                    let head = String::from_utf8_lossy(&req);
                    let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
                    paths.lock().push(path);
                    if stall {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        return;
                    }
                    let body = body.lock().clone();
                    let status = status.load(Ordering::SeqCst);
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n\
                         content-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        server
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn serve(&self, body: String) {
        *self.body.lock() = body;
    }
}

fn rsa_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap()
}

/// Public JWK of `key` under `kid`; `alg` = whether the JWK names its algorithm.
fn jwk(key: &EncodingKey, alg: Algorithm, kid: &str, with_alg: bool) -> Jwk {
    let mut jwk = Jwk::from_encoding_key(key, alg).unwrap();
    jwk.common.key_id = Some(kid.into());
    if !with_alg {
        jwk.common.key_algorithm = None;
    }
    jwk
}

fn set(keys: Vec<Jwk>) -> String {
    serde_json::to_string(&JwkSet { keys }).unwrap()
}

/// Production behaviour, but without the refetch rate limit unless a test wants it.
fn opts(refetch_min_interval: Duration) -> JwksOptions {
    JwksOptions {
        refetch_min_interval,
        ..JwksOptions::default()
    }
}

fn jwks_verifier(url: &str, o: JwksOptions) -> Verifier {
    let s = TokenSettings {
        jwks_public_endpoint: url.into(),
        // Ignored once JWKS is configured: every token goes through the set.
        hmac_secret_key: "unused".into(),
        ..Default::default()
    };
    Verifier::with_jwks_options(&s, o).unwrap()
}

fn claims() -> Value {
    json!({"sub": "u", "exp": NOW + 60})
}

#[tokio::test]
async fn rsa_ec_and_ed25519_keys_by_kid() {
    let ec = EncodingKey::from_ec_pem(EC256_PRIVATE.as_bytes()).unwrap();
    let ed = EncodingKey::from_ed_pem(ED25519_PRIVATE.as_bytes()).unwrap();
    let body = set(vec![
        jwk(&rsa_key(), Algorithm::RS256, "rsa", false),
        jwk(&ec, Algorithm::ES256, "ec", true),
        jwk(&ed, Algorithm::EdDSA, "ed", true),
    ]);
    let server = KeyServer::start(body, false).await;
    let v = jwks_verifier(&server.url, opts(Duration::ZERO));

    for alg in [Algorithm::RS256, Algorithm::RS512] {
        let t = sign(alg, &rsa_key(), Some("rsa"), &claims());
        assert_eq!(v.verify_connect(&t, NOW).await.unwrap().user, "u");
    }
    let t = sign(Algorithm::ES256, &ec, Some("ec"), &claims());
    assert_eq!(v.verify_connect(&t, NOW).await.unwrap().user, "u");
    let t = sign(
        Algorithm::EdDSA,
        &ed,
        Some("ed"),
        &json!({"sub": "u", "channel": "c"}),
    );
    assert_eq!(v.verify_subscribe(&t, NOW).await.unwrap().channel, "c");
    assert_eq!(server.hits(), 1, "the set is cached");

    // Claims checks still apply after a JWKS signature check.
    let t = sign(
        Algorithm::RS256,
        &rsa_key(),
        Some("rsa"),
        &json!({"exp": NOW - 1}),
    );
    assert_eq!(
        v.verify_connect(&t, NOW).await.unwrap_err(),
        TokenError::Expired
    );
}

#[tokio::test]
async fn key_must_allow_the_header_algorithm() {
    let body = set(vec![jwk(&rsa_key(), Algorithm::RS256, "k", true)]);
    let server = KeyServer::start(body, false).await;
    let v = jwks_verifier(&server.url, opts(Duration::ZERO));
    let t = sign(Algorithm::RS384, &rsa_key(), Some("k"), &claims());
    let mismatch = InvalidReason::AlgorithmMismatch {
        kid: "k".into(),
        alg: "RS384".into(),
    };
    assert_eq!(
        v.verify_connect(&t, NOW).await.unwrap_err(),
        mismatch.into()
    );
    // The configured HMAC secret is not consulted, and an RSA JWK can't verify HS256.
    let t = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"unused").unwrap(),
        Some("k"),
        &claims(),
    );
    assert!(matches!(
        v.verify_connect(&t, NOW).await,
        Err(TokenError::Invalid(InvalidReason::AlgorithmMismatch { .. }))
    ));
    let t = sign(Algorithm::RS256, &rsa_key(), None, &claims());
    assert_eq!(
        v.verify_connect(&t, NOW).await.unwrap_err(),
        InvalidReason::MissingKid.into()
    );
}

#[tokio::test]
async fn unknown_kid_triggers_refetch() {
    let k1 = jwk(&rsa_key(), Algorithm::RS256, "k1", true);
    let k2 = jwk(&rsa_key(), Algorithm::RS256, "k2", true);
    let server = KeyServer::start(set(vec![k1.clone()]), false).await;
    let v = jwks_verifier(&server.url, opts(Duration::ZERO));

    let t1 = sign(Algorithm::RS256, &rsa_key(), Some("k1"), &claims());
    assert!(v.verify_connect(&t1, NOW).await.is_ok());
    assert_eq!(server.hits(), 1);

    // Key rotation: k2 appears; the first token naming it makes us refetch.
    server.serve(set(vec![k1, k2]));
    let t2 = sign(Algorithm::RS256, &rsa_key(), Some("k2"), &claims());
    assert!(v.verify_connect(&t2, NOW).await.is_ok());
    assert_eq!(server.hits(), 2);
    assert!(v.verify_connect(&t2, NOW).await.is_ok());
    assert_eq!(server.hits(), 2);

    // A kid still missing after a fresh fetch is invalid (terminal for the client).
    let t3 = sign(Algorithm::RS256, &rsa_key(), Some("k3"), &claims());
    let err = v.verify_connect(&t3, NOW).await.unwrap_err();
    assert_eq!(err, InvalidReason::UnknownKid("k3".into()).into());
    assert_eq!(
        err.connect_outcome(),
        Reject::Disconnect(3500, "invalid token")
    );
    assert_eq!(server.hits(), 3);
}

#[tokio::test]
async fn refetch_is_rate_limited() {
    let k1 = jwk(&rsa_key(), Algorithm::RS256, "k1", true);
    let server = KeyServer::start(set(vec![k1.clone()]), false).await;
    let v = jwks_verifier(&server.url, opts(Duration::from_secs(60)));
    let t1 = sign(Algorithm::RS256, &rsa_key(), Some("k1"), &claims());
    assert!(v.verify_connect(&t1, NOW).await.is_ok());

    server.serve(set(vec![k1, jwk(&rsa_key(), Algorithm::RS256, "k2", true)]));
    let t2 = sign(Algorithm::RS256, &rsa_key(), Some("k2"), &claims());
    for _ in 0..5 {
        let err = v.verify_connect(&t2, NOW).await.unwrap_err();
        // Temporary: the SDK retries and gets through once the interval has passed.
        assert!(matches!(err, TokenError::KeysUnavailable(_)), "{err:?}");
        assert_eq!(err.connect_outcome(), Reject::Error(100));
    }
    assert_eq!(server.hits(), 1, "no refetch inside the interval");
}

#[tokio::test]
async fn endpoint_down_is_a_temporary_error() {
    // A port nobody listens on.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let v = jwks_verifier(&format!("http://{addr}/jwks"), opts(Duration::ZERO));
    let t = sign(Algorithm::RS256, &rsa_key(), Some("k1"), &claims());
    let err = v.verify_connect(&t, NOW).await.unwrap_err();
    assert!(matches!(err, TokenError::KeysUnavailable(_)), "{err:?}");
    assert_eq!(err.connect_outcome(), Reject::Error(100));
    assert_eq!(err.subscribe_outcome(), Reject::Error(100));

    // HTTP errors: one retry, then give up.
    let server = KeyServer::start(String::new(), false).await;
    server.status.store(500, Ordering::SeqCst);
    let v = jwks_verifier(&server.url, opts(Duration::ZERO));
    let err = v.verify_connect(&t, NOW).await.unwrap_err();
    assert!(
        matches!(err, TokenError::KeysUnavailable(ref e) if e.contains("500")),
        "{err:?}"
    );
    assert_eq!(server.hits(), 2);

    // Not a JWKS document.
    server.status.store(200, Ordering::SeqCst);
    server.serve("<html>".into());
    assert!(matches!(
        v.verify_connect(&t, NOW).await,
        Err(TokenError::KeysUnavailable(_))
    ));
}

#[tokio::test]
async fn request_timeout() {
    let server = KeyServer::start(String::new(), true).await;
    let o = JwksOptions {
        request_timeout: Duration::from_millis(200),
        refetch_min_interval: Duration::ZERO,
        ..JwksOptions::default()
    };
    let v = jwks_verifier(&server.url, o);
    let t = sign(Algorithm::RS256, &rsa_key(), Some("k1"), &claims());
    let started = Instant::now();
    let err = v.verify_connect(&t, NOW).await.unwrap_err();
    assert!(matches!(err, TokenError::KeysUnavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.hits(), 2, "one retry");
}

#[tokio::test]
async fn stale_keys_serve_while_the_endpoint_fails() {
    let server = KeyServer::start(
        set(vec![jwk(&rsa_key(), Algorithm::RS256, "k1", true)]),
        false,
    )
    .await;
    let o = JwksOptions {
        cache_ttl: Duration::ZERO,
        refetch_min_interval: Duration::ZERO,
        ..JwksOptions::default()
    };
    let v = jwks_verifier(&server.url, o);
    let t = sign(Algorithm::RS256, &rsa_key(), Some("k1"), &claims());
    assert!(v.verify_connect(&t, NOW).await.is_ok());
    server.status.store(503, Ordering::SeqCst);
    // The cache is stale (TTL 0): a refresh is tried, fails, and the old key still serves.
    assert!(v.verify_connect(&t, NOW).await.is_ok());
    assert_eq!(server.hits(), 3);
}

#[tokio::test]
async fn unusable_entries_do_not_void_the_set() {
    let mut keys: Vec<Value> = vec![
        json!({"kty": "oct", "kid": "sym", "k": "c2VjcmV0"}),
        json!({"kty": "EC", "kid": "p521", "crv": "P-521", "x": "AA", "y": "AA"}),
        json!({"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"}),
        json!({"kty": "weird"}),
    ];
    keys.push(serde_json::to_value(jwk(&rsa_key(), Algorithm::RS256, "good", false)).unwrap());
    let server = KeyServer::start(json!({"keys": keys}).to_string(), false).await;
    let v = jwks_verifier(&server.url, opts(Duration::ZERO));
    let t = sign(Algorithm::RS256, &rsa_key(), Some("good"), &claims());
    assert!(v.verify_connect(&t, NOW).await.is_ok());
    let t = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"secret").unwrap(),
        Some("sym"),
        &claims(),
    );
    assert!(matches!(
        v.verify_connect(&t, NOW).await,
        Err(TokenError::Invalid(InvalidReason::UnknownKid(_)))
    ));
}

#[tokio::test]
async fn concurrent_misses_share_one_fetch() {
    let server = KeyServer::start(
        set(vec![jwk(&rsa_key(), Algorithm::RS256, "k1", true)]),
        false,
    )
    .await;
    let v = jwks_verifier(&server.url, opts(Duration::ZERO));
    let t = sign(Algorithm::RS256, &rsa_key(), Some("k1"), &claims());
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (v, t) = (v.clone(), t.clone());
            tokio::spawn(async move { v.verify_connect(&t, NOW).await })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap().is_ok());
    }
    assert_eq!(server.hits(), 1);
}

/// A `{{realm}}` endpoint: each realm's set is fetched from its own URL, filled from the
/// issuer's named group; tokens the regex refuses, or whose value is not a plain name, make no
/// request at all.
#[tokio::test]
async fn templated_endpoint_per_realm() {
    let body = set(vec![jwk(&rsa_key(), Algorithm::RS256, "k", true)]);
    let server = KeyServer::start(body, false).await;
    let base = server.url.trim_end_matches("/.well-known/jwks.json");
    let s = TokenSettings {
        jwks_public_endpoint: format!("{base}/realms/{{{{realm}}}}/certs"),
        // Open-ended on purpose: the values themselves are checked too.
        issuer_regex: r"^https://kc\.example/realms/(?P<realm>[^/]+)$".into(),
        insecure_skip_jwks_endpoint_safety_check: true,
        ..Default::default()
    };
    let v = Verifier::with_jwks_options(&s, opts(Duration::ZERO)).unwrap();
    let token = |iss: &str| {
        sign(
            Algorithm::RS256,
            &rsa_key(),
            Some("k"),
            &json!({"sub": "u", "iss": iss}),
        )
    };
    for realm in ["acme", "beta", "acme"] {
        let t = token(&format!("https://kc.example/realms/{realm}"));
        assert_eq!(
            v.verify_connect(&t, NOW).await.unwrap().user,
            "u",
            "{realm}"
        );
    }
    assert_eq!(
        *server.paths.lock(),
        ["/realms/acme/certs", "/realms/beta/certs"],
        "one fetch per realm, each set cached"
    );
    for (iss, wanted) in [
        ("https://evil.example/realms/acme", "issuer mismatch"),
        ("https://kc.example/realms/..", "not a plain name"),
        ("https://kc.example/realms/a%2fb", "not a plain name"),
        ("https://kc.example/realms/x@evil", "not a plain name"),
    ] {
        let err = v.verify_connect(&token(iss), NOW).await.unwrap_err();
        assert!(err.to_string().contains(wanted), "{iss}: {err}");
        assert_eq!(
            err.connect_outcome(),
            Reject::Disconnect(3500, "invalid token")
        );
    }
    assert_eq!(server.hits(), 2, "refused tokens make no request");
}

#[test]
fn a_template_needs_a_named_group_for_each_placeholder() {
    let s = TokenSettings {
        jwks_public_endpoint: "https://kc.example/realms/{{realm}}/certs".into(),
        issuer_regex: "^https://kc.example/realms/(?P<tenant>[a-z]+)$".into(),
        ..Default::default()
    };
    let err = Verifier::new(&s).unwrap_err();
    assert!(
        err.to_string().contains("{{realm}} is not a named group"),
        "{err}"
    );
}

/// Centrifugo's safety check: a placeholder's group must match a fixed list of values, unless
/// `insecure_skip_jwks_endpoint_safety_check`.
#[test]
fn template_groups_must_list_their_values() {
    let settings = |issuer_regex: &str, audience_regex: &str| TokenSettings {
        jwks_public_endpoint: "https://kc.example/realms/{{realm}}/certs".into(),
        issuer_regex: issuer_regex.into(),
        audience_regex: audience_regex.into(),
        ..Default::default()
    };
    for safe in [
        "^https://kc/realms/(?P<realm>acme|globex)$",
        "/realms/(?P<realm>prod)",
        "(?i)/realms/(?P<realm>acme|beta)",
        "/realms/(?P<realm>a|b|c)",
        "/realms/(?P<realm>dev[12])/(?P<other>.+)",
    ] {
        let s = settings(safe, "");
        assert!(s.unsafe_jwks_placeholders().is_empty(), "{safe}");
        assert!(Verifier::new(&s).is_ok(), "{safe}");
    }
    for open in [
        "/realms/(?P<realm>[a-z]+)",
        "/realms/(?P<realm>.+)",
        r"/realms/(?P<realm>\w*)",
        "/realms/(?P<realm>a{3})",
        "/realms/(?P<realm>foo?)",
        "/realms/(?P<realm>acme|.)",
        "/realms/(?P<realm>[a-z])",
    ] {
        let s = settings(open, "");
        assert_eq!(
            s.unsafe_jwks_placeholders(),
            [("realm", "issuer_regex")],
            "{open}"
        );
        let err = Verifier::new(&s).unwrap_err().to_string();
        assert!(
            err.contains("insecure_skip_jwks_endpoint_safety_check"),
            "{open}: {err}"
        );
        let skipped = TokenSettings {
            insecure_skip_jwks_endpoint_safety_check: true,
            ..s
        };
        assert!(Verifier::new(&skipped).is_ok(), "{open}");
    }
    let s = settings("", "^(?P<realm>[a-z]+)$");
    assert_eq!(s.unsafe_jwks_placeholders(), [("realm", "audience_regex")]);
}
