//! What a deployment moving from Centrifugo v6 relies on, through a real `gyre`: HMAC key
//! rotation and claim regexes for tokens, `b64data` and the legacy `POST /api` of the server
//! API, `client.connection_rate_limit`, YAML config files and `CENTRIFUGO_*` environment
//! variables.

use std::process::Command as Process;

use gyre_proto::protocol::{Command, SubscribeRequest};
use gyre_tests::ws_client::{Encoding, WAIT, WsClient, WsOptions, cmd, hs256_token, unix_now};
use gyre_tests::{
    GyreProcess, SdkScript, free_port, gyre_binary, http_request, require_node_sdk, workspace_root,
};
use serde_json::{Value, json};

const API_KEY: &str = "compat-api-key";

/// A config with `[http_server]` on `port`, an API key, and `rest` (TOML tables).
fn toml_config(port: u16, rest: &str) -> String {
    format!(
        "[http_server]\naddress = \"127.0.0.1\"\nport = {port}\n\
         [http_api]\nkey = \"{API_KEY}\"\n{rest}"
    )
}

/// POST `path` with the API key; status and body.
fn post(port: u16, path: &str, key: &str, body: &str) -> (u16, String) {
    http_request(port, "POST", path, &[("X-API-Key", key)], body.as_bytes())
        .unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

fn api(port: u16, method: &str, body: Value) -> Value {
    let (status, text) = post(port, &format!("/api/{method}"), API_KEY, &body.to_string());
    assert_eq!(status, 200, "{method}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// Connects with `token`: the client id, or the close code the server answered with.
fn connect(url: &str, encoding: Encoding, token: &str) -> Result<(WsClient, String), u16> {
    let mut client = WsClient::connect(url, encoding);
    client.send(&[cmd::connect(1, token)]);
    match client.next_message(WAIT) {
        Some(incoming) => {
            let reply = incoming.reply;
            match reply.connect {
                Some(result) => Ok((client, result.client)),
                None => panic!("not a connect result: {:?}", reply.error),
            }
        }
        None => Err(client.expect_close(WAIT).code),
    }
}

/// Connection tokens signed with the previous secret verify during a rotation, and `iss` must
/// match `issuer_regex` (else disconnect 3500, Centrifugo's "invalid token"); a subscription
/// token signed with a previous secret whose `valid_until` has passed is refused (error 103).
#[test]
fn token_rotation_and_issuer_regex() {
    let gyre = GyreProcess::start_text(|port| {
        toml_config(
            port,
            r#"
[client.token]
hmac_secret_key = "secret-2026"
hmac_previous_secret_key = "secret-2025"
issuer_regex = '^https://auth\.example\.com/'

[client.subscription_token]
enabled = true
hmac_secret_key = "sub-2026"
hmac_previous_secret_key = "sub-2025"
hmac_previous_secret_key_valid_until = 1000000000
"#,
        )
    });
    let url = gyre.ws_url();
    let exp = unix_now() + 3600;
    let token = |secret: &str, iss: &str| {
        hs256_token(secret, &json!({"sub": "alice", "iss": iss, "exp": exp}))
    };
    let good_iss = "https://auth.example.com/realms/app";

    let (mut alice, _) = connect(&url, Encoding::Json, &token("secret-2025", good_iss))
        .unwrap_or_else(|code| panic!("previous secret refused with {code}"));
    assert!(connect(&url, Encoding::Json, &token("secret-2026", good_iss)).is_ok());
    for (secret, iss, what) in [
        (
            "secret-2025",
            "https://evil.example/realms/app",
            "wrong issuer",
        ),
        ("secret-2026", "", "no issuer"),
        ("secret-2024", good_iss, "a secret never configured"),
    ] {
        let refused = connect(&url, Encoding::Json, &token(secret, iss)).map(|(_, id)| id);
        assert_eq!(refused, Err(3500), "{what}");
    }

    let subscribe = |id: u32, secret: &str| Command {
        id,
        subscribe: Some(SubscribeRequest {
            channel: "news".to_owned(),
            token: hs256_token(secret, &json!({"sub": "alice", "channel": "news"})),
            ..Default::default()
        }),
        ..Default::default()
    };
    let stale = alice.call(subscribe(2, "sub-2025"));
    assert_eq!(
        stale.error.map(|e| e.code),
        Some(103),
        "past hmac_previous_secret_key_valid_until"
    );
    let fresh = alice.call(subscribe(3, "sub-2026"));
    assert!(
        fresh.error.is_none() && fresh.subscribe.is_some(),
        "{fresh:?}"
    );
}

/// The npm SDK (JSON and Protobuf builds) during a key rotation: a token signed with the
/// previous secret connects, a wrong issuer is disconnected with 3500, and a Protobuf client
/// receives a `b64data` publication as the bytes sent.
fn sdk_key_rotation(protocol: &str) {
    require_node_sdk();
    let issuer = "https://auth.example.com/realms/app";
    let gyre = GyreProcess::start_text(|port| {
        toml_config(
            port,
            r#"
[client]
allowed_origins = ["*"]
[client.token]
hmac_secret_key = "secret-2026"
hmac_previous_secret_key = "secret-2025"
issuer_regex = '^https://auth\.example\.com/'
[channel.without_namespace]
allow_subscribe_for_client = true
"#,
        )
    });
    let r = SdkScript::node("key_rotation.mjs")
        .arg("url", gyre.ws_url())
        .arg("protocol", protocol)
        .arg("secret", "secret-2026")
        .arg("previous-secret", "secret-2025")
        .arg("issuer", issuer)
        .arg("api", format!("http://127.0.0.1:{}/api", gyre.port()))
        .arg("api-key", API_KEY)
        .arg("channel", format!("rotation-{protocol}"))
        .run()
        .json();
    assert_eq!(r["previous"]["connected"], true, "{r}");
    assert_eq!(r["current"]["connected"], true, "{r}");
    assert_eq!(r["badIssuer"]["disconnected"]["code"], 3500, "{r}");
    assert_eq!(r["badIssuer"]["state"], "disconnected", "{r}");
    let wanted = match protocol {
        "protobuf" => json!([[0, 159, 146, 150, 255]]),
        _ => json!([{"n": 1}]),
    };
    assert_eq!(r["received"], wanted, "{r}");
}

#[test]
fn sdk_key_rotation_json() {
    sdk_key_rotation("json");
}

#[test]
fn sdk_key_rotation_protobuf() {
    sdk_key_rotation("protobuf");
}

/// A templated JWKS endpoint (one URL per realm, the realm taken from `iss` by a named group of
/// `issuer_regex`), with RS256 tokens from the npm SDK against a JWKS server the script runs.
#[test]
fn sdk_jwks_endpoint_per_realm() {
    require_node_sdk();
    let jwks_port = free_port();
    let gyre = GyreProcess::start_text(|port| {
        toml_config(
            port,
            &format!(
                r#"
[client]
allowed_origins = ["*"]
[client.token]
jwks_public_endpoint = "http://127.0.0.1:{jwks_port}/realms/{{{{realm}}}}/certs"
issuer_regex = '^https://kc\.example/realms/(?P<realm>acme|beta)$'
"#
            ),
        )
    });
    let key = workspace_root().join("proxy/src/auth/testdata/rsa_private.pem");
    let r = SdkScript::node("jwks_realms.mjs")
        .arg("url", gyre.ws_url())
        .arg("protocol", "json")
        .arg("jwks-port", jwks_port)
        .arg("key", key.display())
        .run()
        .json();
    assert_eq!(r["acme"]["connected"], true, "{r}");
    assert_eq!(r["beta"]["connected"], true, "{r}");
    assert_eq!(r["crossRealm"]["code"], 3500, "{r}");
    assert_eq!(r["otherIssuer"]["code"], 3500, "{r}");
    // The cross-realm token made beta's set be fetched again (its kid is unknown there); the
    // other issuer's token made no request.
    let paths = r["paths"].as_array().expect("paths");
    assert!(
        paths
            .iter()
            .all(|p| p == "/realms/acme/certs" || p == "/realms/beta/certs"),
        "{r}"
    );
    assert!(paths.iter().any(|p| p == "/realms/acme/certs"), "{r}");
    assert!(paths.iter().any(|p| p == "/realms/beta/certs"), "{r}");
}

/// `b64data` publishes bytes that are not JSON: Protobuf subscribers receive them as they are,
/// through `publish` and `broadcast`; exactly one of `data` and `b64data` must be given.
#[test]
fn b64data_reaches_protobuf_subscribers() {
    let gyre = GyreProcess::start_text(|port| {
        toml_config(
            port,
            "[client.token]\nhmac_secret_key = \"s\"\n\
             [channel.without_namespace]\nhistory_size = 10\nhistory_ttl = \"60s\"\n\
             allow_subscribe_for_client = true\n",
        )
    });
    let port = gyre.port();
    let token = hs256_token("s", &json!({"sub": "bob"}));
    let (mut bob, _) = connect(&gyre.ws_url(), Encoding::Protobuf, &token).expect("connect");
    for channel in ["bina", "binb"] {
        let reply = bob.call(cmd::subscribe(0, channel));
        assert!(reply.error.is_none(), "{reply:?}");
    }
    // Not UTF-8, let alone JSON.
    let bytes = [0u8, 159, 146, 150, 255, b'\n'];
    let reply = api(
        port,
        "publish",
        json!({"channel": "bina", "b64data": "AJ+Slv8K"}),
    );
    assert_eq!(reply["result"]["offset"], 1, "{reply}");
    let publications = bob.publications("bina", 1, WAIT);
    assert_eq!(&publications[0].publication().data[..], &bytes[..]);

    let reply = api(
        port,
        "broadcast",
        json!({"channels": ["bina", "binb"], "b64data": "AQID"}),
    );
    let responses = reply["result"]["responses"].as_array().expect("responses");
    assert_eq!(responses.len(), 2, "{reply}");
    for channel in ["bina", "binb"] {
        let publications = bob.publications(channel, 1, WAIT);
        assert_eq!(&publications[0].publication().data[..], &[1u8, 2, 3][..]);
    }

    let bad_request = json!({"error": {"code": 107, "message": "bad request"}});
    for body in [
        json!({"channel": "bina", "data": {"n": 1}, "b64data": "AQID"}),
        json!({"channel": "bina"}),
        json!({"channel": "bina", "b64data": "not base64!"}),
        json!({"channel": "bina", "b64data": ""}),
    ] {
        assert_eq!(api(port, "publish", body.clone()), bad_request, "{body}");
    }
    let both = json!({"channels": ["bina"], "data": 1, "b64data": "AQID"});
    assert_eq!(api(port, "broadcast", both), bad_request);
    // Nothing of the refused calls was published.
    let history = api(port, "history", json!({"channel": "bina"}));
    assert_eq!(history["result"]["offset"], 2, "{history}");
}

/// `POST /api` with `{"method":…,"params":…}` commands, one reply per line, as Centrifugo's
/// API before v5 answers.
#[test]
fn legacy_api_endpoint() {
    let gyre = GyreProcess::start_text(|port| {
        toml_config(
            port,
            "[channel.without_namespace]\nhistory_size = 10\nhistory_ttl = \"60s\"\n",
        )
    });
    let port = gyre.port();
    let body = r#"{"method": "publish", "params": {"channel": "news", "data": {"n": 1}}}
{"id": 2, "method": "PUBLISH", "params": {"channel": "news", "data": {"n": 2}}}
{"id": 3, "method": 6, "params": {"channel": "news", "limit": -1}}
{"id": 4, "method": "publish", "params": {"channel": 5}}
{"id": 5, "method": "rpc", "params": {}}
{"id": 6, "method": "info", "params": {}}"#;
    let (status, text) = post(port, "/api", API_KEY, body);
    assert_eq!(status, 200, "{text}");
    let replies: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
        .collect();
    assert_eq!(replies.len(), 6, "{text}");
    assert_eq!(replies[0]["result"]["offset"], 1, "{text}");
    assert!(replies[0].get("id").is_none(), "no id, none echoed: {text}");
    assert_eq!(
        (&replies[1]["id"], &replies[1]["result"]["offset"]),
        (&json!(2), &json!(2))
    );
    let publications = &replies[2]["result"]["publications"];
    assert_eq!(publications[0]["data"], json!({"n": 1}), "{text}");
    assert_eq!(publications[1]["data"], json!({"n": 2}), "{text}");
    assert_eq!(
        replies[3],
        json!({"id": 4, "error": {"code": 107, "message": "bad request"}})
    );
    assert_eq!(
        replies[4],
        json!({"id": 5, "error": {"code": 104, "message": "method not found"}})
    );
    assert!(
        replies[5]["result"]["nodes"][0]["uid"].is_string(),
        "{text}"
    );

    // Not commands at all: HTTP 400 saying why, and nothing runs.
    for (body, why) in [
        ("", "empty"),
        (
            r#"{"method": "publish", "params": {"channel": "news", "data": 3}} {"#,
            "EOF",
        ),
    ] {
        let (status, text) = post(port, "/api", API_KEY, body);
        assert_eq!(status, 400, "{body:?}: {text}");
        assert!(text.contains(why), "{body:?}: {text}");
    }
    let history = api(port, "history", json!({"channel": "news"}));
    assert_eq!(history["result"]["offset"], 2, "{history}");
    assert_eq!(post(port, "/api", "wrong-key", "{}").0, 401);
}

/// `client.connection_rate_limit` (Centrifugo's key) limits handshakes like Gyre's own
/// `handshake_rate_limit`: beyond the burst (one second's worth) clients get 503.
#[test]
fn connection_rate_limit_refuses_handshakes_beyond_it() {
    let gyre = GyreProcess::start_text(|port| {
        toml_config(
            port,
            "[client]\nconnection_rate_limit = 1\nallow_anonymous_connect_without_token = true\n",
        )
    });
    let attempts: Vec<_> = (0..4)
        .map(|_| WsClient::connect_with(&gyre.ws_url(), WsOptions::default()))
        .collect();
    let admitted = attempts.iter().filter(|a| a.is_ok()).count();
    // One per second: however slowly the machine makes the attempts, not all four fit.
    assert!((1..4).contains(&admitted), "admitted {admitted} of 4");
    for refused in attempts.iter().filter_map(|a| a.as_ref().err()) {
        assert_eq!(refused.status, Some(503), "{refused:?}");
    }
}

/// `gyre checkconfig` on a file; exit success and stderr.
fn checkconfig(file_name: &str, text: &str, env: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(file_name);
    std::fs::write(&path, text).expect("write config");
    let mut command = Process::new(gyre_binary());
    command.arg("checkconfig").arg("--config").arg(&path);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("GYRE_") || name.starts_with("CENTRIFUGO_") {
            command.env_remove(name.as_ref());
        }
    }
    let output = command
        .envs(env.iter().copied())
        .output()
        .expect("run gyre");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.success(), stderr)
}

#[test]
fn contradicting_rate_limits_are_a_config_error() {
    let (ok, stderr) = checkconfig(
        "gyre.toml",
        "[client]\nhandshake_rate_limit = 10\nconnection_rate_limit = 20\n",
        &[],
    );
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("client.handshake_rate_limit")
            && stderr.contains("client.connection_rate_limit"),
        "{stderr}"
    );
}

/// A YAML config file runs gyre like its TOML twin; its mistakes are named by key.
#[test]
fn yaml_config_files() {
    let gyre = GyreProcess::start_text_with("config.yaml", &[], |port| {
        format!(
            r#"# Centrifugo v6 keys in YAML
http_server:
  address: "127.0.0.1"
  port: {port}
http_api:
  key: {API_KEY}
client:
  token:
    hmac_secret_key: yaml-secret
channel:
  namespaces:
    - name: chat
      history_size: 5
      history_ttl: 60s
"#
        )
    });
    let token = hs256_token("yaml-secret", &json!({"sub": "carol"}));
    assert!(connect(&gyre.ws_url(), Encoding::Json, &token).is_ok());
    let reply = api(
        gyre.port(),
        "publish",
        json!({"channel": "chat:x", "data": 1}),
    );
    assert_eq!(
        reply["result"]["offset"], 1,
        "history from the YAML namespace: {reply}"
    );

    let (ok, stderr) = checkconfig(
        "gyre.yml",
        "client:\n  ping_interval: soon\n  token:\n    hmac_secret: x\n",
        &[],
    );
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("unknown key `client.token.hmac_secret`"),
        "{stderr}"
    );
    assert!(stderr.contains("`client.ping_interval`"), "{stderr}");
    let (ok, stderr) = checkconfig("gyre.yaml", "client: [1\n", &[]);
    assert!(!ok && stderr.contains("not valid YAML"), "{stderr}");
}

/// `CENTRIFUGO_*` variables set the options their `GYRE_*` twins set; a `GYRE_` one wins over
/// its twin; gyre says once which `CENTRIFUGO_*` ones it read.
#[test]
fn centrifugo_environment_variables() {
    let gyre = GyreProcess::start_text_with(
        "gyre.toml",
        &[
            (
                "CENTRIFUGO_CLIENT_TOKEN_HMAC_SECRET_KEY",
                "from-centrifugo-env",
            ),
            ("CENTRIFUGO_HTTP_API_KEY", "centrifugo-key"),
            ("GYRE_HTTP_API_KEY", "gyre-key"),
            ("CENTRIFUGO_GRPC_API_KEY", "unused"),
        ],
        |port| format!("[http_server]\naddress = \"127.0.0.1\"\nport = {port}\n"),
    );
    let token = hs256_token("from-centrifugo-env", &json!({"sub": "dave"}));
    assert!(connect(&gyre.ws_url(), Encoding::Json, &token).is_ok());
    let body = r#"{"channel":"news","data":1}"#;
    assert_eq!(post(gyre.port(), "/api/publish", "gyre-key", body).0, 200);
    assert_eq!(
        post(gyre.port(), "/api/publish", "centrifugo-key", body).0,
        401
    );

    let log = gyre.log();
    let told: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("Centrifugo environment variables"))
        .collect();
    assert_eq!(
        told,
        [
            "gyre: read Centrifugo environment variables as GYRE_* aliases: \
          CENTRIFUGO_CLIENT_TOKEN_HMAC_SECRET_KEY"
        ],
        "{log}"
    );
    assert!(
        log.contains("CENTRIFUGO_HTTP_API_KEY is ignored: GYRE_HTTP_API_KEY is set too"),
        "{log}"
    );
    assert!(
        log.contains("CENTRIFUGO_GRPC_API_KEY names no Gyre option"),
        "{log}"
    );

    let (ok, stderr) = checkconfig(
        "gyre.toml",
        "",
        &[("CENTRIFUGO_CLIENT_PING_INTERVAL", "soon")],
    );
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("client.ping_interval")
            && stderr.contains("CENTRIFUGO_CLIENT_PING_INTERVAL"),
        "{stderr}"
    );
}
