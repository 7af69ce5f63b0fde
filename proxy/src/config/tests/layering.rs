//! Defaults < file < environment < flags, and errors that name the variable or flag.

use std::time::Duration;

use super::*;
use crate::config::{EngineType, Origin, Warning};

const FILE: &str = r#"
[http_server]
port = 9000
[client.token]
hmac_secret_key = "from-file"
[engine.redis]
address = ["redis://file:6379"]
"#;

#[test]
fn env_beats_file_and_flags_beat_env() {
    let loaded = load_toml(
        FILE,
        &[
            ("GYRE_HTTP_SERVER_PORT", "9100"),
            ("GYRE_CLIENT_TOKEN_HMAC_SECRET_KEY", "from-env"),
            ("GYRE_ENGINE_TYPE", "redis"),
            ("GYRE_ENGINE_REDIS_ADDRESS", "redis://a:1,redis://b:2"),
            ("GYRE_CLIENT_INSECURE", "true"),
            ("GYRE_CLIENT_PING_INTERVAL", "40"),
            ("GYRE_CHANNEL_WITHOUT_NAMESPACE_HISTORY_SIZE", "10"),
            ("GYRE_CHANNEL_WITHOUT_NAMESPACE_HISTORY_TTL", "5m"),
            ("PATH", "/usr/bin"),
        ],
        &[("http_server.port", "9200"), ("log.level", "warn")],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let c = loaded.config;
    assert_eq!(c.http_server.port, 9200, "flag beats env and file");
    assert_eq!(c.client.token.hmac_secret_key, "from-env");
    assert_eq!(c.engine.kind, EngineType::Redis);
    assert_eq!(c.engine.redis.address, ["redis://a:1", "redis://b:2"]);
    assert!(c.client.insecure);
    assert_eq!(c.client.ping_interval, Duration::from_secs(40));
    assert_eq!(c.channel.without_namespace.history_size, 10);
    assert_eq!(
        c.channel.without_namespace.history_ttl,
        Duration::from_secs(300)
    );
    assert_eq!(c.log.level, crate::config::LogLevel::Warn);
}

#[test]
fn no_file_at_all() {
    let loaded = load(None, env(&[("GYRE_NODE_NAME", "n1")]), &[]).unwrap();
    assert_eq!(loaded.config.node.name, "n1");
    assert_eq!(loaded.config.http_server.port, 8000);
}

#[test]
fn namespaces_from_env_as_json() {
    let json = r#"[{"name":"chat","presence":true,"history_size":10,"history_ttl":"300s"}]"#;
    let c = load_toml("", &[("GYRE_CHANNEL_NAMESPACES", json)], &[])
        .unwrap()
        .config;
    let chat = c.channel_options("chat:1").unwrap();
    assert!(chat.presence && chat.has_history());

    let problems = problems(load_toml(
        "",
        &[(
            "GYRE_CHANNEL_NAMESPACES",
            r#"[{"name":"chat","histroy_size":1}]"#,
        )],
        &[],
    ));
    assert_eq!(
        problems,
        [Problem::UnknownKey {
            path: "channel.namespaces[0].histroy_size".into(),
            origin: Origin::Env("GYRE_CHANNEL_NAMESPACES".into()),
        }]
    );
    let problems = problems_of_env("GYRE_CHANNEL_NAMESPACES", "chat");
    assert!(
        matches!(&problems[..], [Problem::BadValue { message, .. }] if message.contains("JSON array"))
    );
}

fn problems_of_env(var: &str, value: &str) -> Vec<Problem> {
    problems(load_toml("", &[(var, value)], &[]))
}

#[test]
fn env_errors_name_the_variable() {
    let p = problems_of_env("GYRE_CLIENT_INSECURE", "maybe");
    assert_eq!(
        p[0].to_string(),
        "`client.insecure` (from environment variable GYRE_CLIENT_INSECURE): \
         expected true or false, got `maybe`"
    );
    let p = problems_of_env("GYRE_HTTP_SERVER_PORT", "http");
    assert!(
        p[0].to_string().contains("GYRE_HTTP_SERVER_PORT"),
        "{}",
        p[0]
    );
    // Parsed as a number here, refused by the field's type later: still names the variable.
    let p = problems_of_env("GYRE_HTTP_SERVER_PORT", "70000");
    assert!(
        matches!(&p[..], [Problem::BadValue { path, origin: Origin::Env(var), .. }]
            if path == "http_server.port" && var == "GYRE_HTTP_SERVER_PORT"),
        "{p:?}"
    );
    let p = problems_of_env("GYRE_CLIENT_PONG_TIMEOUT", "soon");
    assert!(
        p[0].to_string().contains("GYRE_CLIENT_PONG_TIMEOUT"),
        "{}",
        p[0]
    );
    assert!(
        p[0].to_string().contains("invalid duration `soon`"),
        "{}",
        p[0]
    );
    let p = problems_of_env("GYRE_ENGINE_TYPE", "etcd");
    assert!(p[0].to_string().contains("GYRE_ENGINE_TYPE"), "{}", p[0]);
}

#[test]
fn unknown_env_vars_are_warnings() {
    let loaded = load_toml(
        "",
        &[
            ("GYRE_HTTP_SERVER_PROT", "1"),
            ("GYRE_CONFIG", "/etc/gyre.toml"),
            // `admin` is known since the admin UI; GRPC API is not.
            ("CENTRIFUGO_GRPC_API_ENABLED", "true"),
        ],
        &[],
    )
    .unwrap();
    assert_eq!(loaded.config.http_server.port, 8000);
    assert_eq!(
        loaded.warnings,
        [
            Warning::UnknownCentrifugoEnv {
                var: "CENTRIFUGO_GRPC_API_ENABLED".into()
            },
            Warning::UnknownEnv {
                var: "GYRE_HTTP_SERVER_PROT".into()
            },
        ]
    );
    assert!(loaded.centrifugo_env.is_empty());
}

/// A Centrifugo deployment's environment sets the same keys; its `GYRE_` twin wins.
#[test]
fn centrifugo_env_vars_are_aliases_that_gyre_vars_beat() {
    let loaded = load_toml(
        FILE,
        &[
            ("CENTRIFUGO_HTTP_SERVER_PORT", "8001"),
            ("CENTRIFUGO_CLIENT_TOKEN_HMAC_SECRET_KEY", "from-centrifugo"),
            ("GYRE_CLIENT_TOKEN_HMAC_SECRET_KEY", "from-gyre"),
            ("CENTRIFUGO_CHANNEL_WITHOUT_NAMESPACE_PRESENCE", "true"),
        ],
        &[],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let c = &loaded.config;
    assert_eq!(c.http_server.port, 8001, "CENTRIFUGO_ beats the file");
    assert_eq!(c.client.token.hmac_secret_key, "from-gyre");
    assert!(c.channel.without_namespace.presence);
    assert_eq!(
        loaded.centrifugo_env,
        [
            "CENTRIFUGO_CHANNEL_WITHOUT_NAMESPACE_PRESENCE",
            "CENTRIFUGO_HTTP_SERVER_PORT"
        ]
    );
    assert_eq!(
        loaded.warnings,
        [Warning::CentrifugoEnvShadowed {
            var: "CENTRIFUGO_CLIENT_TOKEN_HMAC_SECRET_KEY".into(),
            by: "GYRE_CLIENT_TOKEN_HMAC_SECRET_KEY".into(),
        }]
    );
}

#[test]
fn a_bad_centrifugo_value_names_its_variable() {
    let p = problems(load_toml("", &[("CENTRIFUGO_HTTP_SERVER_PORT", "x")], &[]));
    assert_eq!(p.len(), 1, "{p:?}");
    let text = p[0].to_string();
    assert!(text.contains("http_server.port"), "{text}");
    assert!(text.contains("CENTRIFUGO_HTTP_SERVER_PORT"), "{text}");
    // Shadowed: never parsed, so its bad value does not matter.
    let loaded = load_toml(
        "",
        &[
            ("CENTRIFUGO_HTTP_SERVER_PORT", "x"),
            ("GYRE_HTTP_SERVER_PORT", "8100"),
        ],
        &[],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.config.http_server.port, 8100);
}

#[test]
fn flag_errors_name_the_flag() {
    let p = problems(load_toml("", &[], &[("http_server.prot", "1")]));
    assert_eq!(
        p,
        [Problem::UnknownKey {
            path: "http_server.prot".into(),
            origin: Origin::Flag("http_server.prot".into())
        }]
    );
    let p = problems(load_toml("", &[], &[("client.channel_limit", "lots")]));
    assert_eq!(
        p[0].to_string(),
        "`client.channel_limit` (from command-line flag client.channel_limit): \
         expected a whole number, got `lots`"
    );
    // A flag's value that the file also had: the error is the flag's.
    let p = problems(load_toml(
        "[log]\nlevel = \"info\"",
        &[],
        &[("log.level", "loud")],
    ));
    assert!(
        matches!(
            &p[..],
            [Problem::BadValue {
                origin: Origin::Flag(_),
                ..
            }]
        ),
        "{p:?}"
    );
}

#[test]
fn validation_runs_on_the_merged_result() {
    let p = problems(load_toml(
        "[channel.without_namespace]\nhistory_size = 10",
        &[],
        &[],
    ));
    assert_eq!(p.len(), 1, "{p:?}");
    let ok = load_toml(
        "[channel.without_namespace]\nhistory_size = 10",
        &[("GYRE_CHANNEL_WITHOUT_NAMESPACE_HISTORY_TTL", "60s")],
        &[],
    );
    assert!(ok.is_ok());
}

#[test]
fn known_keys_and_env_names() {
    let keys = crate::config::known_keys();
    assert!(keys.contains(&"client.token.hmac_secret_key".to_owned()));
    assert!(keys.contains(&"channel.namespaces".to_owned()));
    assert!(!keys.iter().any(|k| k.contains("namespaces.")));
    assert_eq!(
        crate::config::env_var_name("engine.redis.address"),
        "GYRE_ENGINE_REDIS_ADDRESS"
    );
}

#[test]
fn redis_topology_keys_from_env() {
    let loaded = load(
        None,
        env(&[
            (
                "GYRE_ENGINE_REDIS_SENTINEL_ADDRESS",
                "127.0.0.1:26379, 127.0.0.1:26380",
            ),
            ("GYRE_ENGINE_REDIS_SENTINEL_MASTER_NAME", "gyre"),
            ("GYRE_ENGINE_REDIS_SENTINEL_TLS_ENABLED", "true"),
            (
                "GYRE_ENGINE_REDIS_SENTINEL_TLS_SERVER_CA_PEM_FILE",
                "/ca.pem",
            ),
            ("GYRE_ENGINE_REDIS_PASSWORD", "p"),
            ("GYRE_ENGINE_REDIS_DB", "3"),
        ]),
        &[],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let redis = loaded.config.engine.redis;
    assert_eq!(
        redis.sentinel_address,
        ["127.0.0.1:26379", "127.0.0.1:26380"]
    );
    assert_eq!(redis.sentinel_master_name, "gyre");
    assert!(redis.sentinel_tls.enabled);
    assert_eq!(redis.sentinel_tls.server_ca_pem_file, "/ca.pem");
    assert_eq!((redis.password.as_str(), redis.db), ("p", 3));

    // Plain text is one cluster (its seeds are comma-separated); a JSON array lists several.
    let one = load(
        None,
        env(&[("GYRE_ENGINE_REDIS_CLUSTER_ADDRESS", "h:7000,h:7001")]),
        &[],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(one.config.engine.redis.cluster_address, ["h:7000,h:7001"]);
    let two = load(
        None,
        env(&[(
            "GYRE_ENGINE_REDIS_CLUSTER_ADDRESS",
            r#"["a:7000,a:7001", "b:7000"]"#,
        )]),
        &[],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        two.config.engine.redis.cluster_address,
        ["a:7000,a:7001", "b:7000"]
    );
}
