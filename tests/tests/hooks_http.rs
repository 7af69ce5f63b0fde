//! Backend hooks over HTTP at the wire level: a real `gyre` (memory engine) and the Python
//! application backend of `tests/backend/http_backend.py`, driven by a raw WebSocket client
//! and raw HTTP requests. Each test checks what the client gets and what the backend received.
//! The SDK scenarios of the same hooks are in `hooks_sdk.rs`.

use std::time::Duration;

use gyre_tests::ws_client::{WsClient, WsOptions, hs256_token};
use gyre_tests::{GyreProcess, HttpBackend, http_request_with_timeout, wait_until};
use serde_json::{Value, json};

/// The hooks of every test (see [`HttpBackend::config`]); `extra` is more TOML (new tables).
fn start(backend: &HttpBackend, extra: &str) -> GyreProcess {
    GyreProcess::builder()
        .client_option("presence_update_interval = \"1s\"")
        .client_option("expired_sub_close_delay = \"1s\"")
        .extra_toml(&backend.config(extra))
        .start()
}

fn ws(gyre: &GyreProcess, headers: &[(&str, &str)]) -> WsClient {
    let options = WsOptions {
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    };
    WsClient::connect_with(&gyre.ws_url(), options).expect("handshake")
}

/// Sends a JSON command with `id` and returns the reply's JSON.
fn call(client: &mut WsClient, id: u32, command: Value) -> Value {
    let mut command = command;
    command["id"] = json!(id);
    client.send_text(&command.to_string());
    client.reply(id).json().clone()
}

/// A client connected as the cookie's user; returns it and its connect result.
fn connected(gyre: &GyreProcess, cookie: &str) -> (WsClient, Value) {
    let mut client = ws(gyre, &[("Cookie", cookie)]);
    let reply = call(&mut client, 1, json!({"connect": {"name": "raw"}}));
    assert!(reply.get("error").is_none(), "{reply}");
    (client, reply["connect"].clone())
}

/// Opens a streaming request (`uni_http_stream`, `uni_sse`, `http_stream`) and returns what
/// arrived once `until` is in it (or after 5 s): the stream never ends by itself.
fn stream(gyre: &GyreProcess, head: &str, body: &[u8], until: &str) -> String {
    use std::io::{Read, Write};
    let mut socket = std::net::TcpStream::connect(("127.0.0.1", gyre.port())).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let request = format!(
        "{head}\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    socket.write_all(request.as_bytes()).unwrap();
    socket.write_all(body).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut received = Vec::new();
    let mut buf = [0; 4096];
    while std::time::Instant::now() < deadline {
        match socket.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        if String::from_utf8_lossy(&received).contains(until) {
            break;
        }
    }
    String::from_utf8_lossy(&received).into_owned()
}

/// The next push that has `kind` (`"unsubscribe"`, `"pub"`, ...), skipping others, within
/// `within`.
fn next_push_of(client: &mut WsClient, kind: &str, within: Duration) -> Value {
    let deadline = std::time::Instant::now() + within;
    loop {
        let message = client
            .next_push(Duration::from_millis(500))
            .map(|m| m.json().clone());
        if let Some(message) = message
            && message["push"].get(kind).is_some()
        {
            return message;
        }
        assert!(std::time::Instant::now() < deadline, "no {kind} push");
    }
}

fn api(gyre: &GyreProcess, method: &str, body: Value) -> Value {
    serde_json::from_str(&gyre.api(method, &body.to_string())).expect("API JSON")
}

#[test]
fn connect_proxy_takes_the_user_from_the_cookie_and_forwards_only_listed_headers() {
    let backend = HttpBackend::start();
    let gyre = start(&backend, "");
    let mut client = ws(
        &gyre,
        &[
            ("Cookie", "theme=dark; session=s-alice"),
            ("User-Agent", "raw-test"),
        ],
    );
    let reply = call(
        &mut client,
        1,
        json!({"connect": {"name": "raw", "version": "1.2", "data": {"hello": 1},
                "headers": {"X-Device": "phone", "Authorization": "Bearer t-mallory", "X-Other": "o"}}}),
    );
    let result = &reply["connect"];
    assert_eq!(
        result["data"],
        json!({"greeting": "hello alice", "client_data": {"hello": 1}}),
        "{reply}"
    );
    assert!(result.get("expires").is_none(), "{result}");

    let requests = backend.requests_to("connect");
    assert_eq!(requests.len(), 1, "{requests:?}");
    let request = &requests[0];
    assert_eq!(request["problems"], json!([]), "{request}");
    let body = &request["body"];
    assert_eq!(body["client"], result["client"]);
    assert_eq!(body["transport"], "websocket");
    assert_eq!(body["protocol"], "json");
    assert_eq!(body["encoding"], "json");
    assert_eq!(body["name"], "raw");
    assert_eq!(body["version"], "1.2");
    assert_eq!(body["data"], json!({"hello": 1}));
    let headers = request["headers"].as_object().unwrap();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str().unwrap().to_owned())
    };
    assert_eq!(
        header("Cookie").as_deref(),
        Some("theme=dark; session=s-alice")
    );
    assert!(
        header("User-Agent").is_none_or(|ua| !ua.contains("raw-test")),
        "an unlisted request header travelled: {headers:?}"
    );
    assert_eq!(header("X-Gyre-Test").as_deref(), Some("static"));
    assert_eq!(
        header("X-Device").as_deref(),
        Some("phone"),
        "emulated beats static"
    );
    assert_eq!(
        header("Authorization").as_deref(),
        Some("Bearer t-mallory"),
        "no real Authorization header: the emulated one is forwarded"
    );
    assert_eq!(header("X-Other"), None, "not in emulated_headers");
    assert_eq!(header("Content-Type").as_deref(), Some("application/json"));

    // The client's user is the backend's: the presence of a proxied subscription shows it.
    let reply = call(
        &mut client,
        2,
        json!({"subscribe": {"channel": "hooks:room"}}),
    );
    assert!(reply.get("error").is_none(), "{reply}");
    let presence = api(&gyre, "presence", json!({"channel": "hooks:room"}));
    let entry = presence["result"]["presence"][result["client"].as_str().unwrap()].clone();
    assert_eq!(entry["user"], "alice", "{presence}");
    assert_eq!(entry["conn_info"], json!({"name": "Alice"}));
    assert_eq!(entry["chan_info"], json!({"role": "reader"}));
}

#[test]
fn a_real_header_wins_over_a_forged_emulated_one_and_no_credentials_is_the_backends_disconnect() {
    let backend = HttpBackend::start();
    let gyre = start(&backend, "");
    let mut client = ws(&gyre, &[("Authorization", "Bearer t-dave")]);
    let reply = call(
        &mut client,
        1,
        json!({"connect": {"headers": {"Authorization": "Bearer t-mallory"}}}),
    );
    assert!(reply.get("error").is_none(), "{reply}");
    let whoami = call(&mut client, 2, json!({"rpc": {"method": "whoami"}}));
    assert_eq!(whoami["rpc"]["data"]["user"], "dave", "{whoami}");

    let mut anonymous = ws(&gyre, &[]);
    anonymous.send_text(&json!({"id": 1, "connect": {}}).to_string());
    let close = anonymous.expect_close(Duration::from_secs(5));
    assert_eq!((close.code, close.reason.as_str()), (4501, "unauthorized"));

    // A token skips the connect proxy.
    let before = backend.requests_to("connect").len();
    let mut with_token = ws(&gyre, &[]);
    let token = hs256_token(gyre.hmac_secret(), &json!({"sub": "tokenuser"}));
    let reply = call(&mut with_token, 1, json!({"connect": {"token": token}}));
    assert!(reply.get("error").is_none(), "{reply}");
    assert_eq!(backend.requests_to("connect").len(), before);
}

#[test]
fn subscribe_proxy_allows_denies_and_leaves_nothing_behind_when_it_fails() {
    let backend = HttpBackend::start();
    let gyre = start(&backend, "");
    let (mut client, _) = connected(&gyre, "session=s-alice");

    let reply = call(
        &mut client,
        2,
        json!({"subscribe": {"channel": "hooks:room", "data": {"want": "in"}}}),
    );
    let data = &reply["subscribe"]["data"];
    assert_eq!(data["welcome"], "hooks:room", "{reply}");
    assert_eq!(data["user"], "alice");
    assert_eq!(
        data["meta"],
        json!({"plan": "gold", "user": "alice"}),
        "include_connection_meta sends the connect proxy's meta"
    );
    let request = backend.requests_to("subscribe").pop().unwrap();
    assert_eq!(request["body"]["data"], json!({"want": "in"}));
    assert_eq!(request["body"]["channel"], "hooks:room");

    let denied = call(
        &mut client,
        3,
        json!({"subscribe": {"channel": "hooks:denied-1"}}),
    );
    assert_eq!(
        denied["error"],
        json!({"code": 403, "message": "permission denied"}),
        "{denied}"
    );

    // A backend slower than the timeout: a temporary internal error, within the timeout, and
    // no presence entry or channel left.
    backend.control(json!({"delay_ms": 1500}));
    let started = std::time::Instant::now();
    let slow = call(
        &mut client,
        4,
        json!({"subscribe": {"channel": "hooks:slow"}}),
    );
    assert_eq!(
        slow["error"],
        json!({"code": 100, "message": "internal server error", "temporary": true}),
        "{slow}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(1400),
        "{:?}",
        started.elapsed()
    );
    for channel in ["hooks:denied-1", "hooks:slow"] {
        let presence = api(&gyre, "presence", json!({"channel": channel}));
        assert_eq!(
            presence["result"],
            json!({"presence": {}}),
            "{channel}: {presence}"
        );
    }
    let channels = api(&gyre, "channels", json!({}));
    let names: Vec<&String> = channels["result"]["channels"]
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    assert_eq!(names, [&"hooks:room".to_owned()], "{channels}");
    // The connection stays usable.
    backend.control(json!({"delay_ms": 0}));
    let again = call(
        &mut client,
        5,
        json!({"subscribe": {"channel": "hooks:slow"}}),
    );
    assert!(again.get("error").is_none(), "{again}");
}

#[test]
fn publish_proxy_rewrites_the_data_or_refuses() {
    let backend = HttpBackend::start();
    let gyre = start(&backend, "");
    let (mut alice, alice_result) = connected(&gyre, "session=s-alice");
    let (mut bob, _) = connected(&gyre, "session=s-bob");
    let reply = call(&mut bob, 2, json!({"subscribe": {"channel": "hooks:room"}}));
    assert!(reply.get("error").is_none(), "{reply}");

    let reply = call(
        &mut alice,
        2,
        json!({"publish": {"channel": "hooks:room", "data": {"text": "hi"}}}),
    );
    assert_eq!(reply["publish"], json!({}), "{reply}");
    let publication = bob.publications("hooks:room", 1, Duration::from_secs(5));
    let json = publication[0].json();
    assert_eq!(
        json["push"]["pub"]["data"],
        json!({"text": "hi", "by": "alice", "checked": true}),
        "{json}"
    );
    assert_eq!(
        json["push"]["pub"]["info"]["client"],
        alice_result["client"]
    );
    let request = backend.requests_to("publish").pop().unwrap();
    assert_eq!(request["body"]["data"], json!({"text": "hi"}));
    assert_eq!(request["body"]["user"], "alice");

    let readonly = call(
        &mut alice,
        3,
        json!({"publish": {"channel": "hooks:readonly-1", "data": {"text": "x"}}}),
    );
    assert_eq!(
        readonly["error"],
        json!({"code": 403, "message": "read only"})
    );
}

#[test]
fn rpc_proxy_answers_results_errors_and_failures() {
    let backend = HttpBackend::start();
    let gyre = start(&backend, "");
    let (mut client, _) = connected(&gyre, "session=s-carol");
    let echo = call(
        &mut client,
        2,
        json!({"rpc": {"method": "echo", "data": {"x": [1, 2]}}}),
    );
    assert_eq!(
        echo["rpc"]["data"],
        json!({"echo": {"x": [1, 2]}, "user": "carol"}),
        "{echo}"
    );
    let whoami = call(&mut client, 3, json!({"rpc": {"method": "whoami"}}));
    assert_eq!(
        whoami["rpc"]["data"]["meta"],
        json!({"plan": "gold", "user": "carol"})
    );
    let fail = call(&mut client, 4, json!({"rpc": {"method": "fail"}}));
    assert_eq!(
        fail["error"],
        json!({"code": 1001, "message": "rpc failed"})
    );
    let garbage = call(&mut client, 5, json!({"rpc": {"method": "garbage"}}));
    assert_eq!(garbage["error"]["code"], 100, "{garbage}");
    assert_eq!(garbage["error"]["temporary"], true);
    let boom = call(&mut client, 6, json!({"rpc": {"method": "boom"}}));
    assert_eq!(
        boom["error"],
        json!({"code": 1500, "message": "backend broke"}),
        "status_to_code_transforms"
    );
    let started = std::time::Instant::now();
    let slow = call(&mut client, 7, json!({"rpc": {"method": "slow"}}));
    assert_eq!(slow["error"]["code"], 100, "{slow}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let not_proxied = call(&mut client, 8, json!({"rpc": {"method": "plain:x"}}));
    assert_eq!(not_proxied["error"]["code"], 108, "{not_proxied}");
    let unknown = call(&mut client, 9, json!({"rpc": {"method": "nope:x"}}));
    assert_eq!(unknown["error"]["code"], 104, "{unknown}");
    let request = backend
        .requests_to("rpc")
        .into_iter()
        .find(|r| r["body"]["method"] == "echo")
        .unwrap();
    assert_eq!(request["body"]["data"], json!({"x": [1, 2]}));

    client.send_text(&json!({"id": 10, "rpc": {"method": "bye"}}).to_string());
    let close = client.expect_close(Duration::from_secs(5));
    assert_eq!((close.code, close.reason.as_str()), (4501, "go away"));
}

#[test]
fn refresh_proxy_prolongs_connections_until_the_backend_expires_them() {
    let backend = HttpBackend::start();
    let gyre = start(&backend, "");
    let mut client = ws(&gyre, &[("Cookie", "session=s-alice")]);
    let reply = call(
        &mut client,
        1,
        json!({"connect": {"data": {"expire_in": 1}}}),
    );
    let result = &reply["connect"];
    assert!(
        result.get("expires").is_none() && result.get("ttl").is_none(),
        "the server refreshes itself: the client is not told: {result}"
    );
    // Refreshed every few seconds, the connection outlives its first expiry.
    client.stay_open(Duration::from_millis(4500));
    let refreshes = backend.requests_to("refresh");
    assert!(!refreshes.is_empty(), "no refresh call");
    assert_eq!(refreshes[0]["body"]["user"], "alice");
    assert_eq!(refreshes[0]["body"]["client"], result["client"]);
    // A refresh command is not for such connections.
    let mut other = ws(&gyre, &[("Cookie", "session=s-bob")]);
    call(&mut other, 1, json!({"connect": {}}));
    other.send_text(&json!({"id": 2, "refresh": {"token": "x"}}).to_string());
    assert_eq!(other.expect_close(Duration::from_secs(5)).code, 3501);

    backend.control(json!({"expire_users": ["alice"]}));
    let close = client.expect_close(Duration::from_secs(8));
    assert_eq!(
        (close.code, close.reason.as_str()),
        (3005, "connection expired")
    );
}

#[test]
fn sub_refresh_proxy_prolongs_subscriptions_until_the_backend_expires_them() {
    let backend = HttpBackend::start();
    let gyre = start(&backend, "");
    let (mut client, _) = connected(&gyre, "session=s-alice");
    let reply = call(
        &mut client,
        2,
        json!({"subscribe": {"channel": "hooks:expiring-1"}}),
    );
    assert!(
        reply["subscribe"].get("expires").is_none(),
        "refreshed by the server: {reply}"
    );
    client.stay_open(Duration::from_millis(5000));
    assert!(
        client
            .drain()
            .iter()
            .all(|m| m.json()["push"].get("unsubscribe").is_none()),
        "unsubscribed although the backend prolonged"
    );
    let refreshes = backend.requests_to("sub_refresh");
    assert!(!refreshes.is_empty(), "no sub_refresh call");
    assert_eq!(refreshes[0]["body"]["channel"], "hooks:expiring-1");

    backend.control(json!({"expire_subscriptions": true}));
    let unsubscribe = next_push_of(&mut client, "unsubscribe", Duration::from_secs(8));
    assert_eq!(
        unsubscribe["push"],
        json!({"channel": "hooks:expiring-1", "unsubscribe": {"code": 2501, "reason": "subscription expired"}})
    );
}

/// The connect proxy's `subs` may give a server-side subscription an `expire_at`: the server
/// (not the client, which cannot refresh server-side subscriptions) asks the sub_refresh proxy
/// at its expiry, and ends it with 2501 once the backend says so.
#[test]
fn server_side_subscriptions_from_the_connect_proxy_expire_through_sub_refresh() {
    let backend = HttpBackend::start();
    let gyre = start(&backend, "");
    let mut client = ws(&gyre, &[("Cookie", "session=s-alice")]);
    let reply = call(
        &mut client,
        1,
        json!({"connect": {"subs": {"hooks:expiring-srv": {}, "hooks:plain-srv": {}}}}),
    );
    let subs = &reply["connect"]["subs"];
    assert!(subs.get("hooks:expiring-srv").is_some(), "{reply}");
    assert!(subs.get("hooks:plain-srv").is_some(), "{reply}");
    assert!(
        subs["hooks:expiring-srv"].get("expires").is_none(),
        "the client cannot refresh a server-side subscription: {reply}"
    );
    client.stay_open(Duration::from_millis(5000));
    assert!(
        client
            .drain()
            .iter()
            .all(|m| m.json()["push"].get("unsubscribe").is_none()),
        "unsubscribed although the backend prolonged"
    );
    let refreshed: Vec<Value> = backend
        .requests_to("sub_refresh")
        .into_iter()
        .map(|r| r["body"]["channel"].clone())
        .collect();
    assert!(
        refreshed.contains(&json!("hooks:expiring-srv")),
        "no sub_refresh call for the server-side subscription: {refreshed:?}"
    );
    assert!(
        !refreshed.contains(&json!("hooks:plain-srv")),
        "{refreshed:?}"
    );

    backend.control(json!({"expire_subscriptions": true}));
    let unsubscribe = next_push_of(&mut client, "unsubscribe", Duration::from_secs(8));
    assert_eq!(
        unsubscribe["push"],
        json!({"channel": "hooks:expiring-srv", "unsubscribe": {"code": 2501, "reason": "subscription expired"}})
    );
    // The other server-side subscription lives on: a publication still reaches the client.
    api(
        &gyre,
        "publish",
        json!({"channel": "hooks:plain-srv", "data": {"n": 1}}),
    );
    let publication = next_push_of(&mut client, "pub", Duration::from_secs(5));
    assert_eq!(
        publication["push"],
        json!({"channel": "hooks:plain-srv", "pub": {"data": {"n": 1}}})
    );
}

#[test]
fn a_backend_that_is_down_gives_temporary_errors_and_never_hangs() {
    let closed_port = gyre_tests::free_port();
    let url = format!("http://127.0.0.1:{closed_port}/centrifugo/connect");
    let gyre = GyreProcess::builder()
        .extra_toml(&format!(
            "[client.proxy.connect]\nenabled = true\nendpoint = \"{url}\"\n[uni_http_stream]\nenabled = true\n"
        ))
        .start();
    let mut client = ws(&gyre, &[("Cookie", "session=s-alice")]);
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
    // A unidirectional client learns it from a reconnectable disconnect.
    let (status, body) = http_request_with_timeout(
        gyre.port(),
        "POST",
        "/connection/uni_http_stream",
        &[("Cookie", "session=s-alice")],
        b"{}",
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        body.trim(),
        r#"{"disconnect":{"code":3004,"reason":"internal server error"}}"#
    );
    let metrics = gyre.http("GET", "/metrics", &[], b"").unwrap().1;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("gyre_proxy_call_errors_total")
                && l.contains("event=\"connect\"")
                && l.contains("reason=\"unavailable\"")
                && !l.ends_with(" 0")),
        "{metrics}"
    );
}

#[test]
fn unidirectional_and_emulated_transports_run_the_connect_proxy() {
    let backend = HttpBackend::start();
    let gyre = start(
        &backend,
        "[uni_http_stream]\nenabled = true\n[uni_sse]\nenabled = true\n[uni_websocket]\nenabled = true\n[http_stream]\nenabled = true\n",
    );
    // uni_http_stream: the connect push, with the server-side channel the backend allowed.
    let body = stream(
        &gyre,
        "POST /connection/uni_http_stream HTTP/1.1\r\nCookie: session=s-bob",
        br#"{"subs": {"hooks:news": {}, "other:x": {}}}"#,
        "}}\n",
    );
    let line = body
        .lines()
        .find(|l| l.starts_with("{\"connect\""))
        .unwrap_or_else(|| panic!("no connect push: {body}"));
    let first: Value = serde_json::from_str(line).unwrap();
    let connect = &first["connect"];
    assert_eq!(connect["data"]["greeting"], "hello bob", "{body}");
    assert!(connect["subs"].get("hooks:news").is_some(), "{connect}");
    assert!(connect["subs"].get("other:x").is_none(), "{connect}");
    let request = backend.requests_to("connect").pop().unwrap();
    assert_eq!(request["body"]["transport"], "uni_http_stream");
    assert_eq!(
        request["body"]["channels"],
        json!(["hooks:news", "other:x"])
    );

    // Without the cookie: the backend's disconnect.
    let (_, body) = http_request_with_timeout(
        gyre.port(),
        "POST",
        "/connection/uni_http_stream",
        &[],
        b"{}",
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(
        body.trim(),
        r#"{"disconnect":{"code":4501,"reason":"unauthorized"}}"#
    );

    // uni_sse (GET) and uni_websocket.
    let body = stream(
        &gyre,
        "GET /connection/uni_sse?cf_connect=%7B%7D HTTP/1.1\r\nCookie: session=s-carol",
        b"",
        "hello carol",
    );
    assert!(body.contains("hello carol"), "{body}");
    let url = format!("ws://127.0.0.1:{}/connection/uni_websocket", gyre.port());
    let options = WsOptions {
        headers: vec![("Cookie".into(), "session=s-alice".into())],
        ..Default::default()
    };
    let mut uni = WsClient::connect_with(&url, options).expect("uni handshake");
    uni.send_text("{}");
    let push = uni
        .next_message(Duration::from_secs(5))
        .expect("connect push");
    let text = push.json().to_string();
    assert!(text.contains("hello alice"), "{text}");
    let transports: Vec<Value> = backend
        .requests_to("connect")
        .iter()
        .map(|r| r["body"]["transport"].clone())
        .collect();
    for transport in ["uni_sse", "uni_websocket"] {
        assert!(transports.contains(&json!(transport)), "{transports:?}");
    }

    // http_stream (bidirectional emulation).
    let body = stream(
        &gyre,
        "POST /connection/http_stream HTTP/1.1\r\nCookie: session=s-bob\r\nContent-Type: application/json",
        br#"{"id":1,"connect":{}}"#,
        "hello bob",
    );
    assert!(body.contains("hello bob"), "{body}");
    wait_until(
        Duration::from_secs(2),
        "an http_stream connect call",
        || {
            backend
                .requests_to("connect")
                .iter()
                .any(|r| r["body"]["transport"] == "http_stream")
        },
    );
}

/// Namespaces for the publish proxy's `delta`/`version` and the connect proxy's
/// `cache_recover`: both keep history and recover (in stream mode: `cache_recover` is what
/// switches the server-side subscription to cache mode).
const DELTA_AND_CACHE: &str = r#"
[[channel.namespaces]]
name = "hookdelta"
history_size = 10
history_ttl = "300s"
force_recovery = true
allow_subscribe_for_client = true
allowed_delta_types = ["fossil"]
publish_proxy_enabled = true

[[channel.namespaces]]
name = "cached"
history_size = 10
history_ttl = "300s"
force_recovery = true
"#;

/// A document that changes a little from version to version.
fn document(version: u64) -> Value {
    let cells: Vec<Value> = (0..40)
        .map(
            |i| json!({"cell": i, "mark": if (i + version).is_multiple_of(9) { "X" } else { "." }}),
        )
        .collect();
    json!({"version": version, "cells": cells})
}

#[test]
fn publish_proxy_delta_and_version_take_effect() {
    let backend = HttpBackend::start();
    let gyre = start(&backend, DELTA_AND_CACHE);
    let (mut alice, _) = connected(&gyre, "session=s-alice");
    let (mut bob, _) = connected(&gyre, "session=s-bob");
    let reply = call(
        &mut bob,
        2,
        json!({"subscribe": {"channel": "hookdelta:doc", "delta": "fossil"}}),
    );
    assert_eq!(reply["subscribe"]["delta"], true, "{reply}");
    // The backend answers `delta: true` and the document's version; version 2 comes twice.
    for (id, version) in (2..).zip([1, 2, 2, 3]) {
        let reply = call(
            &mut alice,
            id,
            json!({"publish": {"channel": "hookdelta:doc", "data": document(version)}}),
        );
        assert_eq!(reply["publish"], json!({}), "{reply}");
    }
    let got = bob.publications("hookdelta:doc", 3, Duration::from_secs(5));
    let mut base: Option<Vec<u8>> = None;
    for (message, version) in got.iter().zip([1, 2, 3]) {
        let publication = &message.json()["push"]["pub"];
        assert_eq!(publication["offset"], version, "{publication}");
        let data = publication["data"]
            .as_str()
            .expect("a delta subscriber's data");
        let whole = match &base {
            None => {
                assert!(publication.get("delta").is_none(), "the first is whole");
                data.as_bytes().to_vec()
            }
            Some(base) => {
                assert_eq!(publication["delta"], true, "{publication}");
                gyre_proto::fossil::apply(base, data.as_bytes(), 1 << 20).expect("applies")
            }
        };
        assert_eq!(
            serde_json::from_slice::<Value>(&whole).unwrap(),
            document(version)
        );
        base = Some(whole);
    }
    let asked = backend.requests_to("publish");
    assert_eq!(asked.len(), 4, "the skipped one was asked for too");
}

#[test]
fn connect_proxy_cache_recover_gives_a_server_side_subscription_only_the_latest() {
    let backend = HttpBackend::start();
    let gyre = start(&backend, DELTA_AND_CACHE);
    let first = api(
        &gyre,
        "publish",
        json!({"channel": "cached:now", "data": {"song": 1}}),
    );
    let epoch = first["result"]["epoch"].as_str().unwrap().to_owned();
    for song in 2..=5 {
        api(
            &gyre,
            "publish",
            json!({"channel": "cached:now", "data": {"song": song}}),
        );
    }
    // The SDK comes back from offset 1: in stream mode it would get 2..5, in cache mode only 5.
    let mut client = ws(&gyre, &[("Cookie", "session=s-alice")]);
    let reply = call(
        &mut client,
        1,
        json!({"connect": {"subs": {"cached:now": {"recover": true, "offset": 1, "epoch": epoch}}}}),
    );
    let sub = &reply["connect"]["subs"]["cached:now"];
    assert_eq!(sub["recovered"], true, "{reply}");
    let publications = sub["publications"].as_array().expect("publications");
    assert_eq!(publications.len(), 1, "{reply}");
    assert_eq!(publications[0]["data"], json!({"song": 5}));
    assert_eq!(publications[0]["offset"], 5);
    let connect = backend.requests_to("connect").pop().unwrap();
    assert_eq!(connect["body"]["channels"], json!(["cached:now"]));
}
