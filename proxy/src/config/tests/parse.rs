//! Files: every key of the issue in TOML and JSON, a Centrifugo v6 config as its users write
//! it, unknown keys and bad values.

use std::time::Duration;

use super::*;
use crate::config::{EngineType, LogLevel, Origin};

/// Every key the issue lists, each away from its default.
const ISSUE_KEYS_TOML: &str = r#"
[http_server]
address = "127.0.0.1"
port = 9000

[log]
level = "debug"

[node]
name = "edge-1"

[client]
allowed_origins = ["https://example.com", "https://*.example.org"]
allow_anonymous_connect_without_token = true
insecure = true
queue_max_size = 2097152
channel_limit = 64
connection_limit = 10000
user_connection_limit = 5
ping_interval = "20s"
pong_timeout = "5s"
expired_close_delay = "30s"
expired_sub_close_delay = "31s"
presence_update_interval = "20s"
recovery_max_publication_limit = 100
history_max_publication_limit = 50

[client.token]
hmac_secret_key = "secret"
rsa_public_key = "-----BEGIN PUBLIC KEY-----\nRSA\n-----END PUBLIC KEY-----"
ecdsa_public_key = "-----BEGIN PUBLIC KEY-----\nEC\n-----END PUBLIC KEY-----"
jwks_public_endpoint = "https://auth.example.com/.well-known/jwks.json"

[client.subscription_token]
enabled = true
hmac_secret_key = "sub-secret"

[http_api]
key = "api-key"
insecure = true

[engine]
type = "redis"

[engine.redis]
address = ["redis://10.0.0.1:6379", "rediss://user:pw@10.0.0.2:6380/1"]
prefix = "myapp"
presence_ttl = "90s"

[websocket]
message_size_limit = 131072

[shutdown]
timeout = "1m30s"

[health]
enabled = true

[prometheus]
enabled = true

[channel]
max_length = 128
history_meta_ttl = "48h"

[channel.without_namespace]
presence = true
allow_subscribe_for_client = true

[[channel.namespaces]]
name = "chat"
history_size = 100
history_ttl = "300s"
history_meta_ttl = "24h"
force_recovery = true
allow_recovery = true
force_positioning = true
allow_positioning = true
presence = true
join_leave = true
force_push_join_leave = true
allow_subscribe_for_client = true
allow_subscribe_for_anonymous = true
allow_publish_for_subscriber = true
allow_publish_for_client = true
allow_publish_for_anonymous = true
allow_history_for_subscriber = true
allow_history_for_client = true
allow_history_for_anonymous = true
allow_presence_for_subscriber = true
allow_presence_for_client = true
allow_presence_for_anonymous = true
allow_user_limited_channels = true
allow_tags_filter = true
allowed_delta_types = ["fossil"]
delta_publish = true
"#;

/// The same, converted to JSON by hand the way a Centrifugo user writes `config.json`.
const ISSUE_KEYS_JSON: &str = r#"{
  "http_server": {"address": "127.0.0.1", "port": 9000},
  "log": {"level": "debug"},
  "node": {"name": "edge-1"},
  "client": {
    "allowed_origins": ["https://example.com", "https://*.example.org"],
    "allow_anonymous_connect_without_token": true,
    "insecure": true,
    "queue_max_size": 2097152,
    "channel_limit": 64,
    "connection_limit": 10000,
    "user_connection_limit": 5,
    "ping_interval": "20s",
    "pong_timeout": "5s",
    "expired_close_delay": "30s",
    "expired_sub_close_delay": "31s",
    "presence_update_interval": "20s",
    "recovery_max_publication_limit": 100,
    "history_max_publication_limit": 50,
    "token": {
      "hmac_secret_key": "secret",
      "rsa_public_key": "-----BEGIN PUBLIC KEY-----\nRSA\n-----END PUBLIC KEY-----",
      "ecdsa_public_key": "-----BEGIN PUBLIC KEY-----\nEC\n-----END PUBLIC KEY-----",
      "jwks_public_endpoint": "https://auth.example.com/.well-known/jwks.json"
    },
    "subscription_token": {"enabled": true, "hmac_secret_key": "sub-secret"}
  },
  "http_api": {"key": "api-key", "insecure": true},
  "engine": {
    "type": "redis",
    "redis": {
      "address": ["redis://10.0.0.1:6379", "rediss://user:pw@10.0.0.2:6380/1"],
      "prefix": "myapp",
      "presence_ttl": "90s"
    }
  },
  "websocket": {"message_size_limit": 131072},
  "shutdown": {"timeout": "1m30s"},
  "health": {"enabled": true},
  "prometheus": {"enabled": true},
  "channel": {
    "max_length": 128,
    "history_meta_ttl": "48h",
    "without_namespace": {"presence": true, "allow_subscribe_for_client": true},
    "namespaces": [{
      "name": "chat",
      "history_size": 100,
      "history_ttl": "300s",
      "history_meta_ttl": "24h",
      "force_recovery": true,
      "allow_recovery": true,
      "force_positioning": true,
      "allow_positioning": true,
      "presence": true,
      "join_leave": true,
      "force_push_join_leave": true,
      "allow_subscribe_for_client": true,
      "allow_subscribe_for_anonymous": true,
      "allow_publish_for_subscriber": true,
      "allow_publish_for_client": true,
      "allow_publish_for_anonymous": true,
      "allow_history_for_subscriber": true,
      "allow_history_for_client": true,
      "allow_history_for_anonymous": true,
      "allow_presence_for_subscriber": true,
      "allow_presence_for_client": true,
      "allow_presence_for_anonymous": true,
      "allow_user_limited_channels": true,
      "allow_tags_filter": true,
      "allowed_delta_types": ["fossil"],
      "delta_publish": true
    }]
  }
}"#;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn every_issue_key_reads_from_toml_and_json() {
    let from_toml = toml_ok(ISSUE_KEYS_TOML);
    let from_json = Config::from_json(ISSUE_KEYS_JSON).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(from_toml, from_json);
    let c = from_toml;

    assert_eq!(c.http_server.address, "127.0.0.1");
    assert_eq!(c.http_server.port, 9000);
    assert_eq!(c.log.level, LogLevel::Debug);
    assert_eq!(c.node.name, "edge-1");

    let client = &c.client;
    assert_eq!(client.token.hmac_secret_key, "secret");
    assert!(client.token.rsa_public_key.contains("RSA\n"));
    assert!(client.token.ecdsa_public_key.contains("EC\n"));
    assert!(client.token.jwks_public_endpoint.ends_with("jwks.json"));
    assert!(client.subscription_token.enabled);
    assert_eq!(
        client.subscription_token.token.hmac_secret_key,
        "sub-secret"
    );
    assert_eq!(
        client.subscription_token_settings().hmac_secret_key,
        "sub-secret"
    );
    assert_eq!(client.allowed_origins.len(), 2);
    assert!(client.allow_anonymous_connect_without_token);
    assert!(client.insecure);
    assert_eq!(client.queue_max_size, 2_097_152);
    assert_eq!(client.channel_limit, 64);
    assert_eq!(client.connection_limit, 10_000);
    assert_eq!(client.user_connection_limit, 5);
    assert_eq!(client.ping_interval, secs(20));
    assert_eq!(client.pong_timeout, secs(5));
    assert_eq!(client.expired_close_delay, secs(30));
    assert_eq!(client.expired_sub_close_delay, secs(31));
    assert_eq!(client.presence_update_interval, secs(20));
    assert_eq!(client.recovery_max_publication_limit, 100);
    assert_eq!(client.history_max_publication_limit, 50);

    assert_eq!(c.http_api.key, "api-key");
    assert!(c.http_api.insecure);
    assert_eq!(c.engine.kind, EngineType::Redis);
    assert_eq!(
        c.engine.redis.address[1],
        "rediss://user:pw@10.0.0.2:6380/1"
    );
    assert_eq!(c.engine.redis.prefix, "myapp");
    assert_eq!(c.engine.redis.presence_ttl, secs(90));
    assert_eq!(c.websocket.message_size_limit, 131_072);
    assert_eq!(c.shutdown.timeout, secs(90));
    assert!(c.health.enabled && c.prometheus.enabled);

    assert_eq!(c.channel.max_length, 128);
    assert_eq!(c.channel.history_meta_ttl, secs(48 * 3600));
    assert!(c.channel.without_namespace.presence);
    let chat = &c.channel.namespaces[0];
    assert_eq!(chat.name, "chat");
    assert_eq!(chat.history_size, 100);
    assert_eq!(chat.history_ttl, secs(300));
    assert_eq!(chat.history_meta_ttl, secs(24 * 3600));
    assert_eq!(chat.allowed_delta_types, ["fossil"]);
    // Every boolean option of the namespace was set: compare against all-true (the proxy
    // switches have their own test, `centrifugo_v6_proxy_config_loads`).
    let json = serde_json::to_value(chat.options()).unwrap();
    for (key, value) in json.as_object().unwrap() {
        if value.is_boolean() && !key.contains("proxy") && !key.starts_with("subscribe_stream") {
            assert_eq!(value, true, "{key}");
        }
    }
}

#[test]
fn defaults_are_centrifugos() {
    let c = toml_ok("");
    assert_eq!(c, Config::default());
    assert_eq!(c.http_server.port, 8000);
    assert_eq!(c.engine.kind, EngineType::Memory);
    assert_eq!(c.engine.redis.address, ["redis://127.0.0.1:6379"]);
    assert_eq!(c.engine.redis.prefix, "gyre");
    assert_eq!(c.engine.redis.presence_ttl, secs(60));
    assert_eq!(c.client.queue_max_size, 1_048_576);
    assert_eq!(c.client.channel_limit, 128);
    assert_eq!(c.client.connection_limit, 0);
    assert_eq!(c.client.ping_interval, secs(25));
    assert_eq!(c.client.pong_timeout, secs(8));
    assert_eq!(c.client.expired_close_delay, secs(25));
    assert_eq!(c.client.expired_sub_close_delay, secs(25));
    assert_eq!(c.client.presence_update_interval, secs(27));
    assert_eq!(c.client.recovery_max_publication_limit, 300);
    assert_eq!(c.client.history_max_publication_limit, 300);
    assert_eq!(c.websocket.message_size_limit, 65_536);
    assert_eq!(c.shutdown.timeout, secs(30));
    assert_eq!(c.log.level, LogLevel::Info);
    assert_eq!(c.channel.max_length, 255);
    assert_eq!(c.channel.history_meta_ttl, secs(720 * 3600));
    assert!(!c.client.subscription_token.enabled);
    assert_eq!(Config::from_json("{}").unwrap(), Config::default());
}

/// A config as a Centrifugo v6 user has it (`centrifugo genconfig` style, plus a typical
/// namespace set-up), unchanged.
const CENTRIFUGO_V6_JSON: &str = r#"{
  "client": {
    "token": {"hmac_secret_key": "bbe7d157-a253-4094-9759-06a8236543f9"},
    "allowed_origins": ["http://localhost:3000"]
  },
  "http_api": {"key": "d7627bb6-2292-4911-82e1-615c0ed3eebb"},
  "admin": {"enabled": false}
}"#;

const CENTRIFUGO_V6_TOML: &str = r#"
[http_server]
port = 8000

[log]
level = "info"

[client]
allowed_origins = ["https://app.example.com"]
allow_anonymous_connect_without_token = false
channel_limit = 128
ping_interval = "25s"
pong_timeout = "8s"

[client.token]
hmac_secret_key = "my_secret"
audience = "centrifugo"
issuer = "example.com"

[engine]
type = "redis"

[engine.redis]
address = "redis://redis:6379"
presence_ttl = "60s"

[http_api]
key = "my_api_key"

[channel]
history_meta_ttl = "720h"

[channel.without_namespace]
allow_subscribe_for_client = true
presence = true

[[channel.namespaces]]
name = "chat"
presence = true
join_leave = true
force_push_join_leave = true
history_size = 50
history_ttl = "300s"
force_recovery = true
allow_subscribe_for_client = true
allow_publish_for_subscriber = true
allow_history_for_subscriber = true
allow_presence_for_subscriber = true

[[channel.namespaces]]
name = "personal"
allow_user_limited_channels = true
allow_subscribe_for_client = true

[[channel.namespaces]]
name = "prices.eu"
history_size = 1
history_ttl = "60s"
force_positioning = true
allow_subscribe_for_client = true
allow_subscribe_for_anonymous = true
"#;

#[test]
fn a_centrifugo_v6_config_loads_unchanged() {
    let c = Config::from_json(CENTRIFUGO_V6_JSON).unwrap_or_else(|e| panic!("{e}"));
    assert!(!c.admin.enabled);
    // A Centrifugo feature Gyre lacks is refused by name, not ignored.
    let with_grpc_api =
        CENTRIFUGO_V6_JSON.replacen('{', "{\n  \"grpc_api\": {\"enabled\": true},", 1);
    let problems = problems(Config::from_json(&with_grpc_api).map(|config| Loaded {
        config,
        warnings: vec![],
        centrifugo_env: vec![],
    }));
    assert_eq!(
        problems,
        [Problem::UnknownKey {
            path: "grpc_api".into(),
            origin: Origin::File
        }]
    );
    assert_eq!(c.http_api.key, "d7627bb6-2292-4911-82e1-615c0ed3eebb");

    let c = toml_ok(CENTRIFUGO_V6_TOML);
    // A single address string is a one-element list, as in Centrifugo.
    assert_eq!(c.engine.redis.address, ["redis://redis:6379"]);
    assert_eq!(c.client.token.audience, "centrifugo");
    let names: Vec<&str> = c.namespaces().map(|(name, _)| name).collect();
    assert_eq!(names, ["chat", "personal", "prices.eu"]);
    let chat = c.channel_options("chat:index").unwrap();
    assert!(chat.force_recovery && chat.has_history());
    // The namespace left history_meta_ttl at 0: the lookup resolves channel.history_meta_ttl.
    assert_eq!(chat.history_meta_ttl, secs(720 * 3600));
}

#[test]
fn unknown_keys_are_named_by_path_all_at_once() {
    let problems = toml_problems(
        r#"
        verbose = true
        [http_server]
        prot = 8001
        [client.token]
        hmac_secret = "x"
        [[channel.namespaces]]
        name = "ok"
        [[channel.namespaces]]
        name = "chat"
        histroy_size = 10
        "#,
    );
    let paths: Vec<&str> = problems
        .iter()
        .map(|p| match p {
            Problem::UnknownKey { path, origin } => {
                assert_eq!(*origin, Origin::File);
                path.as_str()
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        paths,
        [
            "channel.namespaces[1].histroy_size",
            "client.token.hmac_secret",
            "http_server.prot",
            "verbose",
        ]
    );
    let text = problems[0].to_string();
    assert_eq!(text, "unknown key `channel.namespaces[1].histroy_size`");
}

#[test]
fn unknown_key_in_json_and_in_subscription_token() {
    let err =
        Config::from_json(r#"{"client": {"subscription_token": {"enabld": true}}}"#).unwrap_err();
    assert_eq!(
        err.problems,
        [Problem::UnknownKey {
            path: "client.subscription_token.enabld".into(),
            origin: Origin::File
        }]
    );
}

#[test]
fn bad_values_are_named_by_path_all_at_once() {
    let problems = toml_problems(
        r#"
        [http_server]
        port = 70000
        [engine]
        type = "etcd"
        [client]
        ping_interval = "5 parsecs"
        insecure = "yes"
        [[channel.namespaces]]
        name = "chat"
        history_size = -1
        "#,
    );
    let bad: Vec<(&str, &str)> = problems
        .iter()
        .map(|p| match p {
            Problem::BadValue { path, message, .. } => (path.as_str(), message.as_str()),
            other => panic!("{other:?}"),
        })
        .collect();
    let paths: Vec<&str> = bad.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        paths,
        [
            "channel.namespaces[0].history_size",
            "client.insecure",
            "client.ping_interval",
            "engine.type",
            "http_server.port",
        ]
    );
    assert!(
        bad[2].1.contains("invalid duration `5 parsecs`"),
        "{}",
        bad[2].1
    );
    assert!(bad[3].1.contains("`memory` or `redis`"), "{}", bad[3].1);
}

#[test]
fn syntax_errors_and_formats() {
    let err = Config::from_toml("[http_server\nport = 1").unwrap_err();
    assert!(matches!(
        &err.problems[..],
        [Problem::Syntax {
            format: Format::Toml,
            ..
        }]
    ));
    let err = Config::from_json("{\"http_server\": ").unwrap_err();
    assert!(matches!(
        &err.problems[..],
        [Problem::Syntax {
            format: Format::Json,
            ..
        }]
    ));
    let err = Config::from_json("[1]").unwrap_err();
    assert!(
        err.to_string().contains("top level must be an object"),
        "{err}"
    );

    assert_eq!(Format::from_extension("TOML").unwrap(), Format::Toml);
    assert_eq!(
        Format::from_path(std::path::Path::new("/etc/gyre/config.json")).unwrap(),
        Format::Json
    );
    for name in ["config.yaml", "config.YML"] {
        let format = Format::from_path(std::path::Path::new(name)).unwrap();
        assert_eq!(format, Format::Yaml, "{name}");
    }
    let err = Format::from_path(std::path::Path::new("config.ini")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid configuration: unsupported config file extension `ini`: use .toml, .json, \
         .yaml or .yml"
    );
    let err = Config::from_yaml("http_server:\n  port: [1\n").unwrap_err();
    assert!(matches!(
        &err.problems[..],
        [Problem::Syntax {
            format: Format::Yaml,
            ..
        }]
    ));
    let err = Config::from_yaml("- 1\n").unwrap_err();
    assert!(
        err.to_string().contains("top level must be an object"),
        "{err}"
    );
}

/// JSON is YAML: the same file read as YAML is the same config.
#[test]
fn every_issue_key_reads_from_yaml() {
    let from_yaml = Config::from_yaml(ISSUE_KEYS_JSON).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(from_yaml, toml_ok(ISSUE_KEYS_TOML));
}

/// YAML as people write it: block style, a PEM as a literal block, comments, an empty value
/// (the default), a list of namespaces.
#[test]
fn a_yaml_config_in_block_style() {
    let c = Config::from_yaml(
        r#"
# Centrifugo v6 keys, YAML style
http_server:
  port: 9001
client:
  allowed_origins:
    - "https://*.example.com"
  token:
    hmac_secret_key: "secret"
    rsa_public_key: |
      -----BEGIN PUBLIC KEY-----
      AAAA
      -----END PUBLIC KEY-----
    audience:
  ping_interval: 20s
channel:
  namespaces:
    - name: chat
      history_size: 10
      history_ttl: 5m
      presence: yes
"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.http_server.port, 9001);
    assert_eq!(c.client.allowed_origins, ["https://*.example.com"]);
    assert_eq!(c.client.token.hmac_secret_key, "secret");
    assert!(
        c.client
            .token
            .rsa_public_key
            .starts_with("-----BEGIN PUBLIC KEY-----\nAAAA\n")
    );
    assert_eq!(c.client.token.audience, "");
    assert_eq!(c.client.ping_interval, secs(20));
    let chat = &c.channel.namespaces[0];
    assert_eq!((chat.name.as_str(), chat.history_size), ("chat", 10));
    assert_eq!(chat.history_ttl, secs(300));
}

/// The same validation as TOML and JSON, with errors naming the key.
#[test]
fn yaml_errors_name_the_key() {
    let err =
        Config::from_yaml("http_server:\n  prot: 1\nclient:\n  ping_interval: soon\n").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("unknown key `http_server.prot`"), "{text}");
    assert!(text.contains("`client.ping_interval`"), "{text}");
    let err =
        Config::from_yaml("channel:\n  namespaces:\n    - name: chat\n      history_size: 5\n")
            .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("channel.namespaces[0].history_size"),
        "{text}"
    );
}

#[test]
fn durations_accept_whole_seconds() {
    let c = toml_ok(
        "[client]\nping_interval = 30\npong_timeout = \"1.5s\"\n[shutdown]\ntimeout = \"500ms\"",
    );
    assert_eq!(c.client.ping_interval, secs(30));
    assert_eq!(c.client.pong_timeout, Duration::from_millis(1500));
    assert_eq!(c.shutdown.timeout, Duration::from_millis(500));
}

/// A Centrifugo v6 config with every kind of proxy, as the Centrifugo docs write them (JSON).
const CENTRIFUGO_PROXY_CONFIG: &str = r#"{
  "client": {
    "allowed_origins": ["https://example.com"],
    "proxy": {
      "connect": {
        "enabled": true,
        "endpoint": "https://backend.example.com/centrifugo/connect",
        "timeout": "2s",
        "http_headers": ["Cookie", "Origin", "User-Agent", "X-Real-Ip"],
        "emulated_headers": ["Authorization"],
        "include_connection_meta": true,
        "http": {
          "static_headers": {"X-Custom-Header": "custom value"},
          "status_to_code_transforms": [
            {"status_code": 404, "to_error": {"code": 404, "message": "not found", "temporary": false}},
            {"status_code": 403, "to_disconnect": {"code": 4903, "reason": "permission denied"}}
          ]
        }
      },
      "refresh": {
        "enabled": true,
        "endpoint": "grpc://backend.example.com:9000",
        "timeout": "1s",
        "grpc": {"credentials_key": "authorization", "credentials_value": "secret", "static_metadata": {"x-app": "chat"}}
      }
    }
  },
  "channel": {
    "proxy": {
      "subscribe": {"endpoint": "http://localhost:3000/centrifugo/subscribe"},
      "publish": {"endpoint": "http://localhost:3000/centrifugo/publish", "binary_encoding": true},
      "sub_refresh": {"endpoint": "http://localhost:3000/centrifugo/sub_refresh"}
    },
    "without_namespace": {"subscribe_proxy_enabled": true},
    "namespaces": [
      {
        "name": "ns1",
        "subscribe_proxy_enabled": true,
        "subscribe_proxy_name": "subscribe1",
        "publish_proxy_enabled": true,
        "publish_proxy_name": "publish1",
        "sub_refresh_proxy_enabled": true
      },
      {"name": "sun", "publish_proxy_enabled": true}
    ]
  },
  "rpc": {
    "proxy": {"endpoint": "http://localhost:3000/centrifugo/rpc"},
    "without_namespace": {"proxy_enabled": true},
    "namespace_boundary": ":",
    "namespaces": [
      {"name": "ns1", "proxy_enabled": true, "proxy_name": "rpc1"},
      {"name": "ns2", "proxy_enabled": true, "proxy_name": "rpc2"}
    ]
  },
  "proxies": [
    {"name": "subscribe1", "endpoint": "http://localhost:3001/centrifugo/subscribe"},
    {"name": "publish1", "endpoint": "grpc://localhost:3002"},
    {"name": "rpc1", "endpoint": "http://localhost:3001/centrifugo/rpc"},
    {"name": "rpc2", "endpoint": "grpc://localhost:3002", "timeout": "3s"}
  ]
}"#;

#[test]
fn centrifugo_v6_proxy_config_loads() {
    let c = Config::from_json(CENTRIFUGO_PROXY_CONFIG).unwrap_or_else(|e| panic!("{e}"));
    let connect = &c.client.proxy.connect;
    assert!(connect.enabled);
    assert_eq!(connect.proxy.timeout, secs(2));
    assert_eq!(connect.proxy.http_headers.len(), 4);
    assert_eq!(connect.proxy.emulated_headers, ["Authorization"]);
    assert!(connect.proxy.include_connection_meta);
    assert_eq!(
        connect.proxy.http.static_headers["X-Custom-Header"],
        "custom value"
    );
    let transforms = &connect.proxy.http.status_to_code_transforms;
    assert_eq!(transforms[0].to_error.code, 404);
    assert_eq!(transforms[1].to_disconnect.code, 4903);
    let refresh = &c.client.proxy.refresh.proxy;
    assert_eq!(refresh.grpc.static_metadata["x-app"], "chat");
    assert_eq!(refresh.grpc.credentials_value, "secret");
    assert!(c.channel.proxy.publish.binary_encoding);
    assert!(c.channel.without_namespace.subscribe_proxy_enabled);
    let ns1 = &c.channel.namespaces[0];
    assert_eq!(ns1.subscribe_proxy_name, "subscribe1");
    assert!(ns1.sub_refresh_proxy_enabled);
    assert_eq!(c.rpc.namespaces[1].options.proxy_name, "rpc2");
    assert!(c.rpc.without_namespace.proxy_enabled);
    assert_eq!(c.proxies[3].proxy.timeout, secs(3));
    assert_eq!(c.proxies[1].proxy.endpoint, "grpc://localhost:3002");
}

#[test]
fn proxy_config_mistakes_are_named() {
    let text = r#"
proxies = [
  {name = "default", endpoint = "http://a/x"},
  {name = "p1", endpoint = "ftp://a"},
  {name = "p1", endpoint = "grpc://h:1/path", grpc = {compression = true, tls = {enabled = true, cert_pem_file = "/c.pem"}}},
]
[client.connect_code_to_unidirectional_disconnect]
enabled = true
transforms = [{code = 0, to = {code = 200, reason = "nicht gefunden ü"}}]
[uni_sse.connect_code_to_http_response]
enabled = true
transforms = [{code = 404, to = {status_code = 100}}]
[client.proxy.connect]
enabled = true
timeout = "0s"
[channel.proxy.subscribe]
endpoint = "grpc://h:9000"
[[channel.namespaces]]
name = "chat"
publish_proxy_enabled = true
sub_refresh_proxy_enabled = true
sub_refresh_proxy_name = "missing"
subscribe_stream_proxy_enabled = true
[rpc.without_namespace]
proxy_enabled = true
"#;
    let text = problems(load_toml(text, &[], &[]))
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(!text.contains("compression"), "gzip is supported:\n{text}");
    for expected in [
        "`client.proxy.connect.enabled` is true but `client.proxy.connect.endpoint` is empty",
        "`client.proxy.connect.timeout` must be greater than 0",
        "proxy name `default` at `proxies[0].name`",
        "`proxies[1].endpoint` = `ftp://a`: unsupported scheme",
        "proxy `p1` at `proxies[2].name` is defined twice",
        "`proxies[2].endpoint` = `grpc://h:1/path`: a grpc:// endpoint is host:port only",
        "`proxies[2].grpc.tls.cert_pem` needs `proxies[2].grpc.tls.key_pem`",
        "`client.connect_code_to_unidirectional_disconnect.transforms[0].code` must be greater \
         than 0",
        "`client.connect_code_to_unidirectional_disconnect.transforms[0].to.code` = 200: a \
         disconnect code is 3000-4999",
        "`client.connect_code_to_unidirectional_disconnect.transforms[0].to.reason`: a \
         disconnect reason is ASCII",
        "`uni_sse.connect_code_to_http_response.transforms[0].to.status_code` = 100",
        "`channel.namespaces[0].publish_proxy_name` = `default`: no such proxy",
        "`channel.namespaces[0].sub_refresh_proxy_name` = `missing`: no such proxy",
        "`channel.namespaces[0].subscribe_stream_proxy_enabled`: a subscription stream proxy",
        "`rpc.without_namespace.proxy_name` = `default`: no such proxy",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn proxy_maps_and_lists_come_from_the_environment() {
    let loaded = load_toml(
        "",
        &[
            (
                "GYRE_CLIENT_PROXY_CONNECT_HTTP_STATIC_HEADERS",
                r#"{"X-Custom-Header": "v"}"#,
            ),
            ("GYRE_CLIENT_PROXY_CONNECT_HTTP_HEADERS", "Cookie, Origin"),
            (
                "GYRE_PROXIES",
                r#"[{"name": "p1", "endpoint": "http://127.0.0.1:1/x"}]"#,
            ),
        ],
        &[],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let connect = &loaded.config.client.proxy.connect.proxy;
    assert_eq!(connect.http.static_headers["X-Custom-Header"], "v");
    assert_eq!(connect.http_headers, ["Cookie", "Origin"]);
    assert_eq!(loaded.config.proxies[0].name, "p1");
    let bad = problems(load_toml(
        "",
        &[("GYRE_CLIENT_PROXY_CONNECT_HTTP_STATIC_HEADERS", "[1]")],
        &[],
    ));
    assert!(
        bad[0].to_string().contains("expected a JSON object"),
        "{bad:?}"
    );
}

#[test]
fn an_unknown_delta_type_names_its_key() {
    let problems = toml_problems(
        r#"
[[channel.namespaces]]
name = "doc"
allowed_delta_types = ["fossil", "xdelta"]
"#,
    );
    let error = format!("{problems:?}");
    assert!(
        error.contains("channel.namespaces[0].allowed_delta_types[1]") && error.contains("xdelta"),
        "{error}"
    );
}
