//! Backend hooks over GRPC: the same events as `hooks_http.rs`, against a backend implementing
//! Centrifugo's `CentrifugoProxy` service (`GrpcBackend`, built with tonic from
//! `proto/proto/proxy.proto`), so a Go or Java backend written for Centrifugo answers Gyre too.
//! Checks what the client gets and what the backend received (fields and metadata).

use std::time::Duration;

use gyre_tests::ws_client::{WsClient, WsOptions};
use gyre_tests::{GrpcBackend, GyreProcess};
use serde_json::{Value, json};

fn start(backend: &GrpcBackend, connect_endpoint: &str) -> GyreProcess {
    let endpoint = backend.endpoint();
    GyreProcess::builder()
        .extra_toml(&format!(
            r#"
[client.proxy.connect]
enabled = true
endpoint = "{connect_endpoint}"
http_headers = ["Cookie"]
[client.proxy.connect.grpc]
credentials_key = "Authorization"
credentials_value = "Bearer backend-secret"
static_metadata = {{ "x-app" = "gyre-tests" }}
[client.proxy.refresh]
enabled = true
endpoint = "{endpoint}"

[[proxies]]
name = "grpc-backend"
endpoint = "{endpoint}"
include_connection_meta = true

[rpc.without_namespace]
proxy_enabled = true
proxy_name = "grpc-backend"

[[channel.namespaces]]
name = "hooks"
subscribe_proxy_enabled = true
subscribe_proxy_name = "grpc-backend"
publish_proxy_enabled = true
publish_proxy_name = "grpc-backend"
"#
        ))
        .start()
}

fn ws(gyre: &GyreProcess, cookie: Option<&str>) -> WsClient {
    let options = WsOptions {
        headers: cookie
            .map(|c| vec![("Cookie".to_owned(), c.to_owned())])
            .unwrap_or_default(),
        ..Default::default()
    };
    WsClient::connect_with(&gyre.ws_url(), options).expect("handshake")
}

fn call(client: &mut WsClient, id: u32, mut command: Value) -> Value {
    command["id"] = json!(id);
    client.send_text(&command.to_string());
    client.reply(id).json().clone()
}

#[test]
fn connect_subscribe_publish_and_rpc_over_grpc() {
    let backend = GrpcBackend::start();
    let gyre = start(&backend, &backend.endpoint());
    let mut alice = ws(&gyre, Some("session=s-alice"));
    let reply = call(
        &mut alice,
        1,
        json!({"connect": {"name": "raw", "data": {"a": 1}}}),
    );
    let result = &reply["connect"];
    assert_eq!(
        result["data"],
        json!({"greeting": "hello alice", "via": "grpc"}),
        "{reply}"
    );
    let connect = backend.requests_to("Connect").pop().unwrap();
    assert_eq!(connect["body"]["client"], result["client"]);
    assert_eq!(connect["body"]["transport"], "websocket");
    assert_eq!(connect["body"]["protocol"], "json");
    assert_eq!(connect["body"]["encoding"], "json");
    assert_eq!(connect["body"]["name"], "raw");
    assert_eq!(connect["body"]["data"], json!({"a": 1}));
    let metadata = &connect["metadata"];
    assert_eq!(metadata["cookie"], "session=s-alice", "{metadata}");
    assert_eq!(metadata["x-app"], "gyre-tests");
    assert_eq!(metadata["authorization"], "Bearer backend-secret");

    let mut bob = ws(&gyre, Some("session=s-bob"));
    call(&mut bob, 1, json!({"connect": {}}));
    let sub = call(&mut bob, 2, json!({"subscribe": {"channel": "hooks:room"}}));
    assert_eq!(
        sub["subscribe"]["data"],
        json!({"welcome": "hooks:room"}),
        "{sub}"
    );
    let subscribe = backend.requests_to("Subscribe").pop().unwrap();
    assert_eq!(subscribe["body"]["user"], "bob");
    assert_eq!(
        subscribe["body"]["meta"],
        json!({"plan": "gold"}),
        "include_connection_meta"
    );
    let denied = call(
        &mut bob,
        3,
        json!({"subscribe": {"channel": "hooks:denied-1"}}),
    );
    assert_eq!(
        denied["error"],
        json!({"code": 403, "message": "permission denied"})
    );

    let published = call(
        &mut alice,
        2,
        json!({"publish": {"channel": "hooks:room", "data": {"text": "hi"}}}),
    );
    assert_eq!(published["publish"], json!({}), "{published}");
    let publication = bob.publications("hooks:room", 1, Duration::from_secs(5));
    assert_eq!(
        publication[0].json()["push"]["pub"]["data"],
        json!({"text": "hi", "by": "alice"})
    );

    let echo = call(
        &mut alice,
        3,
        json!({"rpc": {"method": "echo", "data": {"x": 1}}}),
    );
    assert_eq!(echo["rpc"]["data"], json!({"x": 1}), "{echo}");
    let fail = call(&mut alice, 4, json!({"rpc": {"method": "fail"}}));
    assert_eq!(
        fail["error"],
        json!({"code": 1001, "message": "rpc failed"})
    );
    let unimplemented = call(&mut alice, 5, json!({"rpc": {"method": "nope"}}));
    assert_eq!(
        unimplemented["error"],
        json!({"code": 100, "message": "internal server error", "temporary": true}),
        "a GRPC error status is an internal error"
    );
    alice.send_text(&json!({"id": 6, "rpc": {"method": "bye"}}).to_string());
    let close = alice.expect_close(Duration::from_secs(5));
    assert_eq!((close.code, close.reason.as_str()), (4501, "go away"));

    let mut nobody = ws(&gyre, None);
    nobody.send_text(&json!({"id": 1, "connect": {}}).to_string());
    assert_eq!(nobody.expect_close(Duration::from_secs(5)).code, 4501);
}

#[test]
fn refresh_over_grpc_prolongs_until_expired() {
    let backend = GrpcBackend::start();
    let gyre = start(&backend, &backend.endpoint());
    let mut client = ws(&gyre, Some("session=s-carol"));
    let reply = call(
        &mut client,
        1,
        json!({"connect": {"data": {"expire_in": 1}}}),
    );
    assert!(reply.get("error").is_none(), "{reply}");
    client.stay_open(Duration::from_millis(3500));
    let refresh = backend.requests_to("Refresh");
    assert!(!refresh.is_empty(), "no refresh call");
    assert_eq!(refresh[0]["body"]["user"], "carol");
    backend.expire_user("carol");
    let close = client.expect_close(Duration::from_secs(8));
    assert_eq!(close.code, 3005);
}

#[test]
fn a_grpc_backend_that_is_down_is_a_temporary_error() {
    let backend = GrpcBackend::start();
    let down = format!("grpc://127.0.0.1:{}", gyre_tests::free_port());
    let gyre = start(&backend, &down);
    let mut client = ws(&gyre, Some("session=s-alice"));
    let started = std::time::Instant::now();
    let reply = call(&mut client, 1, json!({"connect": {}}));
    assert_eq!(
        reply["error"],
        json!({"code": 100, "message": "internal server error", "temporary": true}),
        "{reply}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}
