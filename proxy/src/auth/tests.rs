//! Static-key verification: algorithms, time checks, claim checks and claim decoding. Tokens are
//! minted with jsonwebtoken's encoder and the key pairs in `testdata/` (test-only keys).

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::*;

pub(super) const NOW: i64 = 1_700_000_000;
const SECRET: &str = "gyre-test-secret";

pub(super) const RSA_PRIVATE: &str = include_str!("testdata/rsa_private.pem");
pub(super) const RSA_PUBLIC: &str = include_str!("testdata/rsa_public.pem");
pub(super) const EC256_PRIVATE: &str = include_str!("testdata/ec256_private.pem");
const EC256_PUBLIC: &str = include_str!("testdata/ec256_public.pem");
const EC384_PRIVATE: &str = include_str!("testdata/ec384_private.pem");
const EC384_PUBLIC: &str = include_str!("testdata/ec384_public.pem");

/// Signs `claims` with `alg`; `kid` goes into the header when given.
pub(super) fn sign(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).expect("encode")
}

fn hs(alg: Algorithm, secret: &str, claims: &Value) -> String {
    sign(
        alg,
        &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
        None,
        claims,
    )
}

fn hs256(claims: &Value) -> String {
    hs(Algorithm::HS256, SECRET, claims)
}

fn settings() -> TokenSettings {
    TokenSettings {
        hmac_secret_key: SECRET.into(),
        rsa_public_key: RSA_PUBLIC.into(),
        ecdsa_public_key: EC256_PUBLIC.into(),
        ..Default::default()
    }
}

fn verifier(s: &TokenSettings) -> Verifier {
    Verifier::new(s).expect("verifier")
}

fn invalid(r: Result<impl std::fmt::Debug, TokenError>) -> InvalidReason {
    match r {
        Err(TokenError::Invalid(reason)) => reason,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[tokio::test]
async fn hmac_all_sizes() {
    let v = verifier(&settings());
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let t = hs(
            alg,
            SECRET,
            &json!({"sub": "42", "exp": NOW + 60, "info": {"n": 1}}),
        );
        let c = v.verify_connect(&t, NOW).await.unwrap();
        assert_eq!(c.user, "42");
        assert_eq!(c.exp, Some(NOW + 60));
        assert_eq!(c.expires_at(), Some(NOW + 60));
        assert_eq!(&c.info[..], &br#"{"n":1}"#[..]);
    }
}

#[tokio::test]
async fn rsa_and_ecdsa() {
    let v = verifier(&settings());
    let claims = json!({"sub": "u"});
    let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
    for alg in [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512] {
        let t = sign(alg, &rsa, None, &claims);
        assert_eq!(v.verify_connect(&t, NOW).await.unwrap().user, "u");
    }
    let ec = EncodingKey::from_ec_pem(EC256_PRIVATE.as_bytes()).unwrap();
    let t = sign(Algorithm::ES256, &ec, None, &claims);
    assert_eq!(v.verify_connect(&t, NOW).await.unwrap().user, "u");

    // A P-384 key serves ES384.
    let v384 = verifier(&TokenSettings {
        ecdsa_public_key: EC384_PUBLIC.into(),
        ..Default::default()
    });
    let ec384 = EncodingKey::from_ec_pem(EC384_PRIVATE.as_bytes()).unwrap();
    let t = sign(Algorithm::ES384, &ec384, None, &claims);
    assert_eq!(v384.verify_connect(&t, NOW).await.unwrap().user, "u");
    // ...and not ES256 (the curve decides).
    let t = sign(Algorithm::ES256, &ec, None, &claims);
    assert!(matches!(
        v384.verify_connect(&t, NOW).await,
        Err(TokenError::Invalid(_))
    ));
}

#[tokio::test]
async fn expiry_and_not_before() {
    let v = verifier(&settings());
    for exp in [NOW - 100, NOW] {
        let t = hs256(&json!({"sub": "u", "exp": exp}));
        let err = v.verify_connect(&t, NOW).await.unwrap_err();
        assert_eq!(err, TokenError::Expired);
        assert_eq!(err.connect_outcome(), Reject::Error(109));
        assert_eq!(err.subscribe_outcome(), Reject::Error(109));
        assert_eq!(
            err.outcome(TokenUse::Refresh),
            Reject::Disconnect(3005, "connection expired")
        );
        assert_eq!(err.outcome(TokenUse::SubRefresh), Reject::Expired);
    }
    let t = hs256(&json!({"sub": "u", "exp": NOW + 1}));
    assert!(v.verify_connect(&t, NOW).await.is_ok());
    // Fractional NumericDate is accepted.
    let t = hs256(&json!({"sub": "u", "exp": (NOW + 5) as f64 + 0.5}));
    assert_eq!(v.verify_connect(&t, NOW).await.unwrap().exp, Some(NOW + 5));

    let t = hs256(&json!({"sub": "u", "nbf": NOW + 30}));
    let err = v.verify_connect(&t, NOW).await.unwrap_err();
    assert_eq!(err, TokenError::NotYetValid);
    assert_eq!(err.connect_outcome(), Reject::Error(109));
    let t = hs256(&json!({"sub": "u", "nbf": NOW}));
    assert!(v.verify_connect(&t, NOW).await.is_ok());
}

#[tokio::test]
async fn bad_signature_is_invalid() {
    let v = verifier(&settings());
    let t = hs(Algorithm::HS256, "another-secret", &json!({"sub": "u"}));
    let err = v.verify_connect(&t, NOW).await.unwrap_err();
    assert_eq!(err, TokenError::Invalid(InvalidReason::BadSignature));
    assert_eq!(
        err.connect_outcome(),
        Reject::Disconnect(3500, "invalid token")
    );
    assert_eq!(
        err.outcome(TokenUse::Refresh),
        Reject::Disconnect(3500, "invalid token")
    );
    assert_eq!(
        err.outcome(TokenUse::SubRefresh),
        Reject::Disconnect(3500, "invalid token")
    );
    assert_eq!(err.subscribe_outcome(), Reject::Error(103));

    // Payload swapped under a valid signature.
    let good = hs256(&json!({"sub": "u"}));
    let forged = hs256(&json!({"sub": "admin"}));
    let mut parts: Vec<&str> = good.split('.').collect();
    parts[1] = forged.split('.').nth(1).unwrap();
    let t = parts.join(".");
    assert_eq!(
        invalid(v.verify_connect(&t, NOW).await),
        InvalidReason::BadSignature
    );

    // An expired token with a bad signature is invalid, not expired.
    let t = hs(Algorithm::HS256, "another-secret", &json!({"exp": NOW - 1}));
    assert_eq!(
        invalid(v.verify_connect(&t, NOW).await),
        InvalidReason::BadSignature
    );
}

#[tokio::test]
async fn algorithm_must_match_a_configured_key() {
    let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
    let hmac_only = verifier(&TokenSettings {
        hmac_secret_key: SECRET.into(),
        ..Default::default()
    });
    let t = sign(Algorithm::RS256, &rsa, None, &json!({"sub": "u"}));
    assert_eq!(
        invalid(hmac_only.verify_connect(&t, NOW).await),
        InvalidReason::AlgorithmNotConfigured("RS256".into())
    );

    // Algorithm confusion: HS256 "signed" with the RSA public key as the secret.
    let rsa_only = verifier(&TokenSettings {
        rsa_public_key: RSA_PUBLIC.into(),
        ..Default::default()
    });
    let t = hs(Algorithm::HS256, RSA_PUBLIC, &json!({"sub": "u"}));
    assert_eq!(
        invalid(rsa_only.verify_connect(&t, NOW).await),
        InvalidReason::AlgorithmNotConfigured("HS256".into())
    );

    // PS256 is valid JWT but not a Centrifugo static-key algorithm.
    let t = sign(Algorithm::PS256, &rsa, None, &json!({"sub": "u"}));
    assert_eq!(
        invalid(rsa_only.verify_connect(&t, NOW).await),
        InvalidReason::UnsupportedAlgorithm("PS256".into())
    );

    // alg "none" and "ES512" are refused as unsupported, not as garbage.
    let body = jsonwebtoken::crypto::sign(
        b"x",
        &EncodingKey::from_secret(b"k").unwrap(),
        Algorithm::HS256,
    )
    .unwrap();
    for alg in ["none", "ES512"] {
        use base64::Engine as _;
        let enc =
            |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let t = format!(
            "{}.{}.{body}",
            enc(&json!({"alg": alg, "typ": "JWT"})),
            enc(&json!({}))
        );
        assert_eq!(
            invalid(hmac_only.verify_connect(&t, NOW).await),
            InvalidReason::UnsupportedAlgorithm(alg.into())
        );
    }
}

#[tokio::test]
async fn audience_and_issuer() {
    let v = verifier(&TokenSettings {
        audience: "gyre".into(),
        issuer: "auth.example".into(),
        ..settings()
    });
    let ok = [
        json!({"aud": "gyre", "iss": "auth.example"}),
        json!({"aud": ["other", "gyre"], "iss": "auth.example"}),
    ];
    for claims in ok {
        assert!(
            v.verify_connect(&hs256(&claims), NOW).await.is_ok(),
            "{claims}"
        );
    }
    let cases = [
        (
            json!({"aud": "other", "iss": "auth.example"}),
            InvalidReason::Audience,
        ),
        (json!({"iss": "auth.example"}), InvalidReason::Audience),
        (json!({"aud": "gyre", "iss": "evil"}), InvalidReason::Issuer),
        (json!({"aud": "gyre"}), InvalidReason::Issuer),
    ];
    for (claims, reason) in cases {
        assert_eq!(
            invalid(v.verify_connect(&hs256(&claims), NOW).await),
            reason,
            "{claims}"
        );
        assert_eq!(
            invalid(v.verify_subscribe(&hs256(&claims), NOW).await),
            reason
        );
    }
    // Not configured: not checked.
    let plain = verifier(&settings());
    let t = hs256(&json!({"aud": "whatever", "iss": "anyone"}));
    assert!(plain.verify_connect(&t, NOW).await.is_ok());
}

#[tokio::test]
async fn audience_and_issuer_regexes() {
    let v = verifier(&TokenSettings {
        audience_regex: "^gyre-(eu|us)$".into(),
        issuer_regex: r"https://auth\.example\.com/realms/(?P<realm>[a-z]+)".into(),
        ..settings()
    });
    let iss = "https://auth.example.com/realms/acme";
    for claims in [
        json!({"aud": "gyre-eu", "iss": iss}),
        json!({"aud": ["other", "gyre-us"], "iss": iss}),
        // Unanchored, as Go's regexp: a match anywhere in iss counts.
        json!({"aud": "gyre-eu", "iss": format!("{iss}/extra")}),
    ] {
        assert!(
            v.verify_connect(&hs256(&claims), NOW).await.is_ok(),
            "{claims}"
        );
    }
    for (claims, reason) in [
        (
            json!({"aud": "gyre-asia", "iss": iss}),
            InvalidReason::Audience,
        ),
        (json!({"iss": iss}), InvalidReason::Audience),
        (
            json!({"aud": "gyre-eu", "iss": "https://evil.example/realms/acme"}),
            InvalidReason::Issuer,
        ),
        (json!({"aud": "gyre-eu"}), InvalidReason::Issuer),
    ] {
        let err = v.verify_connect(&hs256(&claims), NOW).await.unwrap_err();
        assert_eq!(err, TokenError::Invalid(reason.clone()), "{claims}");
        assert_eq!(
            err.connect_outcome(),
            Reject::Disconnect(3500, "invalid token")
        );
        assert_eq!(
            invalid(v.verify_subscribe(&hs256(&claims), NOW).await),
            reason
        );
    }
}

/// Key rotation: tokens signed with the previous secret verify until `valid_until`; the
/// current secret always does; a third secret never does.
#[tokio::test]
async fn previous_hmac_secret_during_rotation() {
    const OLD: &str = "gyre-old-secret";
    let rotating = TokenSettings {
        hmac_previous_secret_key: OLD.into(),
        hmac_previous_secret_key_valid_until: NOW + 100,
        ..settings()
    };
    let v = verifier(&rotating);
    let claims = json!({"sub": "u", "exp": NOW + 1000});
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let old = hs(alg, OLD, &claims);
        assert_eq!(v.verify_connect(&old, NOW).await.unwrap().user, "u");
        assert_eq!(v.verify_connect(&old, NOW + 99).await.unwrap().user, "u");
        assert_eq!(
            invalid(v.verify_connect(&old, NOW + 100).await),
            InvalidReason::BadSignature,
            "valid_until has passed"
        );
        let current = hs(alg, SECRET, &claims);
        assert!(v.verify_connect(&current, NOW + 500).await.is_ok());
        let other = hs(alg, "someone-else", &claims);
        assert_eq!(
            invalid(v.verify_connect(&other, NOW).await),
            InvalidReason::BadSignature
        );
    }
    // Subscription tokens share the keys (no separate subscription_token section).
    let sub = hs(Algorithm::HS256, OLD, &json!({"sub": "u", "channel": "c"}));
    assert_eq!(v.verify_subscribe(&sub, NOW).await.unwrap().channel, "c");

    // Without an end the previous secret stays accepted.
    let open_ended = verifier(&TokenSettings {
        hmac_previous_secret_key_valid_until: 0,
        ..rotating.clone()
    });
    let old = hs(Algorithm::HS256, OLD, &claims);
    assert!(open_ended.verify_connect(&old, NOW + 999).await.is_ok());
    // Other claim checks still apply to a token signed with the previous secret.
    let expired = hs(Algorithm::HS256, OLD, &json!({"sub": "u", "exp": NOW - 1}));
    assert_eq!(
        open_ended.verify_connect(&expired, NOW).await.unwrap_err(),
        TokenError::Expired
    );
    // An RSA token with a bad signature is not retried with an HMAC secret.
    let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
    let mut forged = sign(Algorithm::RS256, &rsa, None, &claims);
    forged.pop();
    forged.push('A');
    assert!(matches!(
        open_ended.verify_connect(&forged, NOW).await,
        Err(TokenError::Invalid(_))
    ));
}

/// With separate subscription token keys, each section rotates on its own.
#[tokio::test]
async fn previous_secret_of_subscription_tokens() {
    let v = Verifier::with_subscription(
        &settings(),
        &TokenSettings {
            hmac_secret_key: "sub-new".into(),
            hmac_previous_secret_key: "sub-old".into(),
            ..Default::default()
        },
    )
    .unwrap();
    let sub = |secret| {
        hs(
            Algorithm::HS256,
            secret,
            &json!({"sub": "u", "channel": "c"}),
        )
    };
    assert!(v.verify_subscribe(&sub("sub-old"), NOW).await.is_ok());
    assert!(v.verify_subscribe(&sub("sub-new"), NOW).await.is_ok());
    assert!(v.verify_subscribe(&sub("gyre-old"), NOW).await.is_err());
    let connect = hs(Algorithm::HS256, "sub-old", &json!({"sub": "u"}));
    assert!(
        v.verify_connect(&connect, NOW).await.is_err(),
        "connection tokens do not take the subscription section's previous secret"
    );
}

#[test]
fn bad_regexes_are_reported_at_startup() {
    let err = Verifier::new(&TokenSettings {
        issuer_regex: "(unclosed".into(),
        ..settings()
    })
    .unwrap_err();
    assert!(
        matches!(&err, AuthConfigError::InvalidRegex { field, .. } if field == "client.token.issuer_regex"),
        "{err:?}"
    );
    let err = Verifier::new(&TokenSettings {
        audience: "gyre".into(),
        audience_regex: "gyre".into(),
        ..settings()
    })
    .unwrap_err();
    assert!(
        err.to_string().contains("client.token.audience_regex"),
        "{err}"
    );
}

#[tokio::test]
async fn channel_claim_makes_connect_token_invalid() {
    let v = verifier(&settings());
    let t = hs256(&json!({"sub": "u", "channel": "news"}));
    let err = v.verify_connect(&t, NOW).await.unwrap_err();
    assert_eq!(
        err,
        TokenError::Invalid(InvalidReason::ChannelInConnectToken)
    );
    assert_eq!(
        err.connect_outcome(),
        Reject::Disconnect(3500, "invalid token")
    );
    // Empty channel is what Go's decoder sees as absent.
    let t = hs256(&json!({"sub": "u", "channel": ""}));
    assert!(v.verify_connect(&t, NOW).await.is_ok());
}

#[tokio::test]
async fn connect_claims_decoded() {
    let v = verifier(&settings());
    let t = hs256(&json!({
        "sub": "u",
        "exp": NOW + 600,
        "info": {"name": "Alice"},
        "b64info": "AQID",
        "channels": ["news", "chat:1"],
        "meta": {"plan": "pro"},
        "expire_at": NOW + 60,
        "subs": {
            "personal:u": {
                "info": {"role": "owner"},
                "b64data": "AAE=",
                "override": {
                    "presence": {"value": true},
                    "join_leave": {"value": false},
                    "force_recovery": {}
                }
            },
            "bare": {}
        }
    }));
    let c = v.verify_connect(&t, NOW).await.unwrap();
    assert_eq!(&c.info[..], &[1u8, 2, 3][..], "b64info wins over info");
    assert_eq!(c.channels, ["news", "chat:1"]);
    assert_eq!(&c.meta[..], &br#"{"plan":"pro"}"#[..]);
    assert_eq!(c.expire_at, Some(NOW + 60));
    assert_eq!(c.expires_at(), Some(NOW + 60));
    let s = &c.subs["personal:u"];
    assert_eq!(&s.info[..], &br#"{"role":"owner"}"#[..]);
    assert_eq!(&s.data[..], &[0u8, 1][..]);
    let want = Overrides {
        presence: Some(true),
        join_leave: Some(false),
        force_recovery: Some(false),
        ..Default::default()
    };
    assert_eq!(s.overrides, want);
    assert_eq!(c.subs["bare"], SubOptions::default());

    // expire_at 0: the connection never expires, though exp still had to pass.
    let t = hs256(&json!({"exp": NOW + 5, "expire_at": 0}));
    let c = v.verify_connect(&t, NOW).await.unwrap();
    assert_eq!(
        (c.exp, c.expire_at, c.expires_at()),
        (Some(NOW + 5), Some(0), None)
    );
    // Anonymous token: no sub, no exp.
    let c = v.verify_connect(&hs256(&json!({})), NOW).await.unwrap();
    assert_eq!((c.user.as_str(), c.expires_at()), ("", None));
    assert!(c.info.is_empty() && c.meta.is_empty());
    let t = hs256(&json!({"info": null, "meta": null}));
    let c = v.verify_connect(&t, NOW).await.unwrap();
    assert!(c.info.is_empty() && c.meta.is_empty());

    let t = hs256(&json!({"b64info": "***"}));
    assert_eq!(
        invalid(v.verify_connect(&t, NOW).await),
        InvalidReason::Base64("b64info")
    );
    let t = hs256(&json!({"subs": {"a": {"b64info": "%%"}}}));
    assert_eq!(
        invalid(v.verify_connect(&t, NOW).await),
        InvalidReason::Base64("subs.b64info")
    );
}

#[tokio::test]
async fn malformed_tokens_and_claim_types() {
    let v = verifier(&settings());
    for t in ["", "abc", "a.b", "a.b.c"] {
        assert!(
            matches!(
                invalid(v.verify_connect(t, NOW).await),
                InvalidReason::Malformed(_)
            ),
            "{t}"
        );
    }
    for claims in [
        json!({"exp": "soon"}),
        json!({"channels": "news"}),
        json!({"sub": 5}),
    ] {
        let r = v.verify_connect(&hs256(&claims), NOW).await;
        assert!(matches!(invalid(r), InvalidReason::Claims(_)), "{claims}");
    }
}

#[tokio::test]
async fn user_id_claim() {
    let v = verifier(&TokenSettings {
        user_id_claim: "user_id".into(),
        ..settings()
    });
    let t = hs256(&json!({"sub": "ignored", "user_id": "alice"}));
    assert_eq!(v.verify_connect(&t, NOW).await.unwrap().user, "alice");
    let t = hs256(&json!({"user_id": 42}));
    assert_eq!(v.verify_connect(&t, NOW).await.unwrap().user, "42");
    let t = hs256(&json!({"sub": "ignored"}));
    assert_eq!(v.verify_connect(&t, NOW).await.unwrap().user, "");
    let t = hs256(&json!({"user_id": {"id": 1}}));
    assert_eq!(
        invalid(v.verify_connect(&t, NOW).await),
        InvalidReason::UserIdClaim
    );
    let t = hs256(&json!({"channel": "c", "user_id": "bob"}));
    assert_eq!(v.verify_subscribe(&t, NOW).await.unwrap().user, "bob");

    // Namespaced claim names contain dots; nested paths work too.
    let v = verifier(&TokenSettings {
        user_id_claim: "https://example.com/uid".into(),
        ..settings()
    });
    let t = hs256(&json!({"https://example.com/uid": "carol"}));
    assert_eq!(v.verify_connect(&t, NOW).await.unwrap().user, "carol");
    let v = verifier(&TokenSettings {
        user_id_claim: "ext.uid".into(),
        ..settings()
    });
    let t = hs256(&json!({"ext": {"uid": "dave"}}));
    assert_eq!(v.verify_connect(&t, NOW).await.unwrap().user, "dave");
}

#[tokio::test]
async fn subscription_token() {
    let v = verifier(&settings());
    let t = hs256(&json!({
        "sub": "u",
        "channel": "$private:1",
        "client": "c-1",
        "info": {"seat": 3},
        "data": {"welcome": true},
        "exp": NOW + 30,
        "expire_at": NOW + 20,
        "override": {"force_positioning": {"value": true}, "force_push_join_leave": {"value": true}}
    }));
    let s = v.verify_subscribe(&t, NOW).await.unwrap();
    assert_eq!((s.user.as_str(), s.channel.as_str()), ("u", "$private:1"));
    assert_eq!(s.client.as_deref(), Some("c-1"));
    assert_eq!(&s.info[..], &br#"{"seat":3}"#[..]);
    assert_eq!(&s.data[..], &br#"{"welcome":true}"#[..]);
    assert_eq!((s.exp, s.expires_at()), (Some(NOW + 30), Some(NOW + 20)));
    assert_eq!(s.overrides.force_positioning, Some(true));
    assert_eq!(s.overrides.force_push_join_leave, Some(true));
    assert_eq!(s.overrides.presence, None);

    let t = hs256(&json!({"channel": "c", "b64data": "AQ==", "b64info": "Ag=="}));
    let s = v.verify_subscribe(&t, NOW).await.unwrap();
    assert_eq!((&s.data[..], &s.info[..]), (&[1u8][..], &[2u8][..]));
    assert_eq!(s.client, None);

    for claims in [json!({"sub": "u"}), json!({"sub": "u", "channel": ""})] {
        let err = v.verify_subscribe(&hs256(&claims), NOW).await.unwrap_err();
        assert_eq!(err, TokenError::Invalid(InvalidReason::MissingChannel));
        assert_eq!(err.subscribe_outcome(), Reject::Error(103));
    }
    let t = hs256(&json!({"channel": "c", "exp": NOW - 1}));
    assert_eq!(
        v.verify_subscribe(&t, NOW).await.unwrap_err(),
        TokenError::Expired
    );
}

#[tokio::test]
async fn separate_subscription_keys() {
    let conn = TokenSettings {
        hmac_secret_key: "connect-secret".into(),
        ..Default::default()
    };
    let sub = TokenSettings {
        hmac_secret_key: "subscribe-secret".into(),
        ..Default::default()
    };
    let v = Verifier::with_subscription(&conn, &sub).unwrap();
    let claims = json!({"sub": "u", "channel": "c"});
    let by_conn = hs(Algorithm::HS256, "connect-secret", &claims);
    let by_sub = hs(Algorithm::HS256, "subscribe-secret", &claims);
    assert!(v.verify_subscribe(&by_sub, NOW).await.is_ok());
    assert_eq!(
        invalid(v.verify_subscribe(&by_conn, NOW).await),
        InvalidReason::BadSignature
    );
    let t = hs(Algorithm::HS256, "subscribe-secret", &json!({"sub": "u"}));
    assert_eq!(
        invalid(v.verify_connect(&t, NOW).await),
        InvalidReason::BadSignature
    );
    let t = hs(Algorithm::HS256, "connect-secret", &json!({"sub": "u"}));
    assert!(v.verify_connect(&t, NOW).await.is_ok());
}

#[test]
fn config_errors_are_reported_at_startup() {
    let field_of = |s: TokenSettings| match Verifier::new(&s).unwrap_err() {
        AuthConfigError::InvalidKey { field, .. }
        | AuthConfigError::InvalidJwksEndpoint { field, .. } => field,
        other => panic!("unexpected {other:?}"),
    };
    let garbage = "-----BEGIN PUBLIC KEY-----\nnot base64!\n-----END PUBLIC KEY-----\n";
    let cases = [
        (
            TokenSettings {
                rsa_public_key: garbage.into(),
                ..Default::default()
            },
            "rsa_public_key",
        ),
        (
            TokenSettings {
                rsa_public_key: EC256_PUBLIC.into(),
                ..Default::default()
            },
            "rsa_public_key",
        ),
        (
            TokenSettings {
                ecdsa_public_key: RSA_PUBLIC.into(),
                ..Default::default()
            },
            "ecdsa_public_key",
        ),
        (
            TokenSettings {
                ecdsa_public_key: "nope".into(),
                ..Default::default()
            },
            "ecdsa_public_key",
        ),
        (
            TokenSettings {
                jwks_public_endpoint: "ftp://keys.example/jwks".into(),
                ..Default::default()
            },
            "jwks_public_endpoint",
        ),
        (
            TokenSettings {
                jwks_public_endpoint: "not a url".into(),
                ..Default::default()
            },
            "jwks_public_endpoint",
        ),
    ];
    for (s, field) in cases {
        assert_eq!(field_of(s), format!("client.token.{field}"));
    }
    let err = Verifier::with_subscription(
        &TokenSettings::default(),
        &TokenSettings {
            rsa_public_key: garbage.into(),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("client.subscription_token.rsa_public_key"),
        "{err}"
    );
}

#[tokio::test]
async fn no_keys_configured() {
    let v = verifier(&TokenSettings::default());
    assert!(!v.has_connect_keys());
    assert!(verifier(&settings()).has_connect_keys());
    assert_eq!(
        invalid(v.verify_connect(&hs256(&json!({})), NOW).await),
        InvalidReason::AlgorithmNotConfigured("HS256".into())
    );
}
