//! Rules across keys: every broken one is reported, each naming the key to change.

use std::time::Duration;

use super::*;
use crate::config::Invalid;

fn invalid(text: &str) -> Vec<Invalid> {
    toml_problems(text)
        .into_iter()
        .map(|p| match p {
            Problem::Invalid(i) => i,
            other => panic!("not a validation problem: {other:?}"),
        })
        .collect()
}

#[test]
fn history_needs_size_and_ttl() {
    assert_eq!(
        invalid(
            r#"
            [channel.without_namespace]
            history_size = 10
            [[channel.namespaces]]
            name = "chat"
            history_ttl = "60s"
            "#
        ),
        [
            Invalid::HistorySizeWithoutTtl {
                path: "channel.without_namespace.history_size".into()
            },
            Invalid::HistoryTtlWithoutSize {
                path: "channel.namespaces[0].history_ttl".into()
            },
        ]
    );
}

#[test]
fn history_ttl_fits_under_meta_ttl() {
    let found = invalid(
        r#"
        [channel]
        history_meta_ttl = "1h"
        [[channel.namespaces]]
        name = "a1"
        history_size = 1
        history_ttl = "2h"
        [[channel.namespaces]]
        name = "a2"
        history_size = 1
        history_ttl = "2h"
        history_meta_ttl = "3h"
        [[channel.namespaces]]
        name = "a3"
        history_size = 1
        history_ttl = "2h"
        history_meta_ttl = "90m"
        "#,
    );
    assert_eq!(
        found,
        [
            Invalid::HistoryTtlAboveMetaTtl {
                path: "channel.namespaces[0].history_ttl".into(),
                ttl: Duration::from_secs(7200),
                meta_ttl: Duration::from_secs(3600),
            },
            Invalid::HistoryTtlAboveMetaTtl {
                path: "channel.namespaces[2].history_ttl".into(),
                ttl: Duration::from_secs(7200),
                meta_ttl: Duration::from_secs(5400),
            },
        ]
    );
    assert_eq!(
        found[0].to_string(),
        "`channel.namespaces[0].history_ttl` (2h) is longer than the history meta TTL (1h): \
         the stream position would expire before the publications"
    );
}

#[test]
fn recovery_and_positioning_need_history() {
    let found = invalid(
        r#"
        [channel.without_namespace]
        force_recovery = true
        allow_recovery = true
        force_positioning = true
        allow_positioning = true
        "#,
    );
    let paths: Vec<String> = found
        .iter()
        .map(|i| match i {
            Invalid::NeedsHistory { path } => path.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        paths,
        [
            "channel.without_namespace.force_recovery",
            "channel.without_namespace.allow_recovery",
            "channel.without_namespace.force_positioning",
            "channel.without_namespace.allow_positioning",
        ]
    );
}

#[test]
fn namespace_names_are_valid_and_unique() {
    assert_eq!(
        invalid(
            r#"
            [[channel.namespaces]]
            name = "chat"
            [[channel.namespaces]]
            name = "x"
            [[channel.namespaces]]
            name = "chat"
            [[channel.namespaces]]
            name = "a:b"
            [[channel.namespaces]]
            "#
        ),
        [
            Invalid::BadNamespaceName {
                path: "channel.namespaces[1].name".into(),
                name: "x".into()
            },
            Invalid::DuplicateNamespace {
                path: "channel.namespaces[2].name".into(),
                name: "chat".into()
            },
            Invalid::BadNamespaceName {
                path: "channel.namespaces[3].name".into(),
                name: "a:b".into()
            },
            Invalid::BadNamespaceName {
                path: "channel.namespaces[4].name".into(),
                name: "".into()
            },
        ]
    );
}

#[test]
fn engine_rules() {
    assert_eq!(
        invalid(
            r#"
            [engine]
            type = "redis"
            [engine.redis]
            address = []
            prefix = "has space"
            presence_ttl = "1500ms"
            "#
        ),
        [
            Invalid::NoRedisAddress,
            Invalid::BadRedisPrefix {
                prefix: "has space".into()
            },
            Invalid::SubSecond {
                path: "engine.redis.presence_ttl".into(),
                value: Duration::from_millis(1500)
            },
            Invalid::PresenceTtlNotAboveUpdate {
                ttl: Duration::from_millis(1500),
                interval: Duration::from_secs(27)
            },
        ]
    );
    let found = invalid("[engine.redis]\naddress = [\"redis://ok:1\", \"10.0.0.1:6379\"]");
    assert!(
        matches!(&found[..], [Invalid::BadRedisAddress { path, .. }] if path == "engine.redis.address[1]"),
        "{found:?}"
    );
    assert!(
        found[0].to_string().contains("write redis://host:port"),
        "{}",
        found[0]
    );
}

#[test]
fn ping_pong_and_timers() {
    assert_eq!(
        invalid("[client]\nping_interval = \"10s\"\npong_timeout = \"10s\""),
        [Invalid::PongNotBelowPing {
            ping: Duration::from_secs(10),
            pong: Duration::from_secs(10)
        }]
    );
    assert_eq!(
        invalid("[client]\nping_interval = 0\npong_timeout = 0"),
        [Invalid::Zero {
            path: "client.ping_interval".into()
        }]
    );
    // No pong check at all is allowed.
    toml_ok("[client]\npong_timeout = \"0s\"");
}

#[test]
fn batch_cap_is_at_least_one() {
    assert_eq!(
        invalid("[http_api]\nbatch_max_commands = 0"),
        [Invalid::Zero {
            path: "http_api.batch_max_commands".into()
        }]
    );
    toml_ok("[http_api]\nbatch_max_commands = 1");
}

#[test]
fn token_rules() {
    assert_eq!(
        invalid(
            r#"
            [client.token]
            user_id_claim = "user.id"
            jwks_public_endpoint = "auth.example.com/jwks"
            "#
        ),
        [
            Invalid::BadUserIdClaim {
                path: "client.token.user_id_claim".into(),
                claim: "user.id".into()
            },
            Invalid::BadJwksEndpoint {
                path: "client.token.jwks_public_endpoint".into(),
                url: "auth.example.com/jwks".into()
            },
        ]
    );
}

#[test]
fn token_rotation_and_regex_rules() {
    assert_eq!(
        invalid(
            r#"
            [client.token]
            hmac_previous_secret_key = "old"
            issuer = "me"
            issuer_regex = "^me$"
            audience_regex = "(unclosed"
            [client.subscription_token]
            jwks_public_endpoint = "https://kc.example/{{realm}}/certs"
            "#
        )
        .into_iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>(),
        [
            "`client.token.hmac_previous_secret_key` needs `client.token.hmac_secret_key`: the \
             previous secret is only tried after the current one",
            "`client.token.audience_regex` is not a valid regular expression: regex parse \
             error:\n    (unclosed\n    ^\nerror: unclosed group",
            "`client.token.issuer` and `client.token.issuer_regex` cannot be used together: set \
             the exact value or the regular expression, not both",
            "`client.subscription_token.jwks_public_endpoint`: {{realm}} is not a named group of \
             issuer_regex or audience_regex, which fill the endpoint's placeholders",
        ]
    );
    toml_ok(
        r#"
        [client.token]
        hmac_secret_key = "new"
        hmac_previous_secret_key = "old"
        hmac_previous_secret_key_valid_until = 1767225600
        issuer_regex = "^https://auth\\.example\\.com/"
        audience_regex = "gyre"
        [client.subscription_token]
        jwks_public_endpoint = "https://kc.example/realms/{{realm}}/certs"
        issuer_regex = "/realms/(?P<realm>acme|globex)$"
        "#,
    );
    assert_eq!(
        invalid(
            r#"
            [client.token]
            jwks_public_endpoint = "https://kc.example/realms/{{realm}}/certs"
            issuer_regex = "/realms/(?P<realm>[a-z]+)$"
            "#
        )
        .into_iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>(),
        [
            "`client.token.jwks_public_endpoint`: {{realm}} comes from a group of \
             `client.token.issuer_regex` that matches open-ended values, so a token's issuer \
             would choose where keys are fetched from: list the values (a|b|c), or set \
             `client.token.insecure_skip_jwks_endpoint_safety_check`"
        ]
    );
    toml_ok(
        r#"
        [client.token]
        jwks_public_endpoint = "https://kc.example/realms/{{realm}}/certs"
        issuer_regex = "/realms/(?P<realm>[a-z]+)$"
        insecure_skip_jwks_endpoint_safety_check = true
        "#,
    );
}

#[test]
fn connection_rate_limit_is_handshake_rate_limit_by_its_centrifugo_name() {
    let rate = |text: &str| toml_ok(text).client.handshake_rate();
    assert_eq!(rate(""), 0);
    assert_eq!(rate("[client]\nconnection_rate_limit = 50"), 50);
    assert_eq!(rate("[client]\nhandshake_rate_limit = 40"), 40);
    assert_eq!(
        rate("[client]\nhandshake_rate_limit = 40\nconnection_rate_limit = 40"),
        40
    );
    assert_eq!(
        invalid("[client]\nhandshake_rate_limit = 40\nconnection_rate_limit = 50"),
        [Invalid::Conflict {
            first: "client.handshake_rate_limit".into(),
            second: "client.connection_rate_limit".into(),
            reason: "they are two names of one limit and disagree; keep one",
        }]
    );
}

#[test]
fn every_problem_is_listed_in_the_message() {
    let err = Config::from_toml(
        "[client]\nping_interval = \"5s\"\npong_timeout = \"6s\"\n\
         [channel.without_namespace]\nhistory_size = 5",
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("invalid configuration (2 problems):\n  - "),
        "{text}"
    );
    assert!(text.contains("history_size"), "{text}");
    assert!(text.contains("pong_timeout"), "{text}");
}

#[test]
fn default_config_is_valid() {
    Config::default().validate().unwrap();
}

/// The messages of the validation problems of `text`, one string each.
fn messages(text: &str) -> Vec<String> {
    invalid(text).iter().map(ToString::to_string).collect()
}

#[test]
fn redis_topologies_load() {
    let sentinel = toml_ok(
        r#"
        [engine]
        type = "redis"
        [engine.redis]
        sentinel_address = ["127.0.0.1:26379", "rediss://s2:26380"]
        sentinel_master_name = "gyre"
        sentinel_password = "s"
        user = "gyre"
        password = "p"
        db = 1
        [engine.redis.sentinel_tls]
        server_ca_pem_b64 = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="
        "#,
    );
    assert_eq!(sentinel.engine.redis.sentinel_master_name, "gyre");
    assert_eq!(sentinel.engine.redis.db, 1);
    let cluster = toml_ok(
        r#"
        [engine.redis]
        cluster_address = "127.0.0.1:7000,127.0.0.1:7001"
        "#,
    );
    assert_eq!(
        cluster.engine.redis.cluster_address,
        ["127.0.0.1:7000,127.0.0.1:7001"]
    );
    let tls = toml_ok(
        r#"
        [engine.redis]
        address = ["rediss://h:6380"]
        [engine.redis.tls]
        server_ca_pem_file = "/etc/redis/ca.pem"
        server_name = "redis.internal"
        "#,
    );
    assert!(!tls.engine.redis.tls.enabled);
}

#[test]
fn redis_topology_contradictions_name_both_keys() {
    let found = messages(
        r#"
        [engine.redis]
        address = ["redis://h:1"]
        db = 2
        cluster_address = ["h:7000"]
        sentinel_address = ["h:26379"]
        sentinel_master_name = "m"
        "#,
    );
    assert_eq!(found.len(), 4, "{found:#?}");
    for (first, second) in [
        (
            "engine.redis.cluster_address",
            "engine.redis.sentinel_address",
        ),
        ("engine.redis.address", "engine.redis.cluster_address"),
        ("engine.redis.address", "engine.redis.sentinel_address"),
        ("engine.redis.db", "engine.redis.cluster_address"),
    ] {
        let expected = format!("`{first}` and `{second}` cannot be used together");
        assert!(
            found.iter().any(|m| m.starts_with(&expected)),
            "{expected}: {found:#?}"
        );
    }
}

#[test]
fn redis_sentinel_keys_need_each_other() {
    assert_eq!(
        messages("[engine.redis]\nsentinel_address = [\"h:26379\"]"),
        [
            "`engine.redis.sentinel_address` needs `engine.redis.sentinel_master_name`: the name \
          the sentinels monitor (their `sentinel monitor <name> …` line)"
        ]
    );
    let stray = messages(
        "[engine.redis]\nsentinel_master_name = \"m\"\nsentinel_password = \"p\"\n[engine.redis.sentinel_tls]\nenabled = true",
    );
    assert_eq!(stray.len(), 3, "{stray:#?}");
    assert!(
        stray
            .iter()
            .all(|m| m.contains("needs `engine.redis.sentinel_address`"))
    );
}

#[test]
fn redis_node_addresses_are_checked() {
    let found = messages(
        r#"
        [engine.redis]
        cluster_address = ["h:7000, h", "", "redis://h:7000/3"]
        "#,
    );
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(found[0].starts_with("`engine.redis.cluster_address[0]` = `h`"));
    assert!(found[1].contains("empty"));
    assert!(found[2].contains("only has database 0"));
    let found = messages(
        "[engine.redis]\nsentinel_address = [\"unix:///s.sock\", \"h:26379/1\"]\nsentinel_master_name = \"m\"",
    );
    assert_eq!(found.len(), 2, "{found:#?}");
    let found = messages(
        "[engine.redis]\naddress = [\"unix:///r.sock\"]\n[engine.redis.tls]\nenabled = true",
    );
    assert_eq!(
        found,
        [
            "`engine.redis.tls.enabled` and `engine.redis.address[0]` cannot be used together: TLS \
          is not available over a unix socket"
        ]
    );
}

#[test]
fn redis_tls_pem_rules() {
    let found = messages(
        r#"
        [engine.redis]
        address = ["rediss://h:1"]
        [engine.redis.tls]
        server_ca_pem = "-----BEGIN CERTIFICATE-----"
        server_ca_pem_file = "/ca.pem"
        cert_pem_b64 = "!!not base64!!"
        "#,
    );
    assert_eq!(found.len(), 3, "{found:#?}");
    assert_eq!(
        found[0],
        "`engine.redis.tls.server_ca_pem` and `engine.redis.tls.server_ca_pem_file` cannot be \
         used together: give each PEM once: inline, as a file, or as base64"
    );
    assert!(found[1].starts_with("`engine.redis.tls.cert_pem_b64`: not valid base64"));
    assert!(found[2].starts_with(
        "`engine.redis.tls.cert_pem` needs `engine.redis.tls.key_pem`: a client certificate and \
         its private key go together"
    ));
    let found = messages(
        "[engine.redis.sentinel_tls]\nkey_pem = \"no pem\"\n[engine.redis]\nsentinel_address = [\"h:1\"]\nsentinel_master_name = \"m\"",
    );
    // "no pem" may be a file's path (Centrifugo v6): the start reads it, and fails then.
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found[0].contains("needs `engine.redis.sentinel_tls.cert_pem`"));
    assert!(
        found[1]
            .starts_with("`engine.redis.sentinel_tls.key_pem` is set but no connection uses TLS")
    );
}

#[test]
fn redis_tls_settings_without_tls_are_refused() {
    assert_eq!(
        messages("[engine.redis.tls]\nserver_name = \"redis.internal\""),
        [
            "`engine.redis.tls.server_name` is set but no connection uses TLS: set \
          `engine.redis.tls.enabled = true` or use rediss:// addresses"
        ]
    );
    // The sentinels name primaries by host and port: only `enabled` turns TLS on for them.
    let found = messages(
        "[engine.redis]\nsentinel_address = [\"rediss://h:1\"]\nsentinel_master_name = \"m\"\n[engine.redis.tls]\ninsecure_skip_verify = true",
    );
    assert_eq!(found.len(), 1, "{found:#?}");
    // insecure_skip_verify with TLS on is valid (a warning at start).
    toml_ok("[engine.redis.tls]\nenabled = true\ninsecure_skip_verify = true");
}
