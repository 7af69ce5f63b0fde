//! The transports beside the bidirectional WebSocket, at the wire level, against a real `gyre`:
//! `uni_http_stream` and `uni_sse` read with plain `curl -N` (publications from `redis-cli`,
//! `Last-Event-ID` resuming every channel), `uni_websocket`, `http_stream` with its commands
//! POSTed to `/emulation` (on the node holding the session, and on another node through
//! Redis), and the 4xx answers to bad requests. The SDK over these transports is in
//! `sdk_fallback.rs`, the browser in `browser_fallback.rs`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use gyre_tests::ws_client::{EngineKind, ProxyEnv, WAIT, hs256_token, unix_now};
use gyre_tests::{GyreBuilder, GyreProcess, Namespace, RedisServer, http_request, on_both_engines};
use serde_json::{Value, json};

/// Every fallback transport on, `chat` with history and recovery (no join/leave pushes to get
/// in the way), one allowed browser origin.
fn builder() -> GyreBuilder {
    GyreProcess::builder()
        .namespace(
            Namespace::new("chat")
                .history(100, 300)
                .force_recovery()
                .allow_subscribe()
                .allow_publish(),
        )
        .namespace(Namespace::new("room").presence().allow_subscribe())
        .client_option(r#"allowed_origins = ["http://allowed.example"]"#)
        .extra_toml(ALL_TRANSPORTS)
}

const ALL_TRANSPORTS: &str = "
[http_stream]
enabled = true
[sse]
enabled = true
[uni_sse]
enabled = true
[uni_http_stream]
enabled = true
max_request_body_size = 1000
[uni_websocket]
enabled = true
";

fn token(env: &ProxyEnv, user: &str) -> String {
    hs256_token(
        env.gyre.hmac_secret(),
        &json!({"sub": user, "exp": unix_now() + 3600}),
    )
}

fn base(gyre: &GyreProcess) -> String {
    format!("http://127.0.0.1:{}", gyre.port())
}

// ------------------------------------------------------------------------------------------------
// A streaming response read by `curl -N`, line by line.

struct CurlStream {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl CurlStream {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new("curl")
            .args(["-sS", "-N"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("curl is installed (scripts/test.sh)");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// `GET /connection/uni_sse` with `cf_connect` (and a `Last-Event-ID`).
    fn uni_sse(gyre: &GyreProcess, connect: &Value, last_event_id: Option<&str>) -> Self {
        let url = format!("{}/connection/uni_sse", base(gyre));
        let param = format!("cf_connect={connect}");
        let mut args = vec!["-G", url.as_str(), "--data-urlencode", param.as_str()];
        let header;
        if let Some(id) = last_event_id {
            header = format!("Last-Event-ID: {id}");
            args.extend(["-H", header.as_str()]);
        }
        Self::start(&args)
    }

    /// `POST` of `body` to `path`, reading the response stream.
    fn post(gyre: &GyreProcess, path: &str, body: &str) -> Self {
        let url = format!("{}{path}", base(gyre));
        Self::start(&["-X", "POST", "--data-binary", body, url.as_str()])
    }

    /// The next line (panics after `timeout`); `None` when the stream ended.
    fn line(&self, timeout: Duration) -> Option<String> {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => Some(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => None,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("no line within {timeout:?}"),
        }
    }

    /// The next JSON line of an HTTP stream.
    fn json(&self) -> Value {
        let line = self.line(WAIT).expect("stream still open");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}"))
    }

    /// The next SSE event: its data as JSON and its id, if it has one.
    fn event(&self) -> (Value, Option<String>) {
        let mut data = None;
        let mut id = None;
        loop {
            let line = self.line(WAIT).expect("stream still open");
            let line = line.trim_end_matches('\r');
            if let Some(text) = line.strip_prefix("data: ") {
                data = Some(serde_json::from_str(text).expect("event data is JSON"));
            } else if let Some(text) = line.strip_prefix("id: ") {
                id = Some(text.to_owned());
            } else if line.is_empty()
                && let Some(data) = data.take()
            {
                return (data, id);
            }
        }
    }

    /// Reads until the stream ends; panics if it does not within `timeout`.
    fn expect_end(&self, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut rest = Vec::new();
        while let Some(line) = self.line(deadline.saturating_duration_since(Instant::now())) {
            rest.push(line);
        }
        rest
    }
}

impl Drop for CurlStream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn redis_cli(redis: &RedisServer, args: &[&str]) -> String {
    let port = redis.port().expect("Redis on TCP").to_string();
    let output = Command::new("redis-cli")
        .args(["-p", port.as_str()])
        .args(args)
        .output()
        .expect("redis-cli runs");
    assert!(output.status.success(), "redis-cli {args:?}: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

// ------------------------------------------------------------------------------------------------
// Unidirectional transports.

#[test]
fn uni_streams_read_by_curl_receive_a_redis_cli_publication() {
    let env = ProxyEnv::start(EngineKind::Redis, builder());
    let connect = json!({"token": token(&env, "alice"), "subs": {"chat:cli": {}}});
    let sse = CurlStream::uni_sse(&env.gyre, &connect, None);
    let lines = CurlStream::post(
        &env.gyre,
        "/connection/uni_http_stream",
        &connect.to_string(),
    );
    let (first, id) = sse.event();
    assert!(
        first["connect"]["subs"]["chat:cli"]["recoverable"] == true,
        "{first}"
    );
    assert!(id.is_some(), "the connect event carries a cursor");
    let connected = lines.json();
    assert!(connected["connect"]["client"].is_string(), "{connected}");
    assert!(connected.get("id").is_none(), "pushes only: {connected}");

    let reply = redis_cli(
        env.redis.as_ref().expect("redis"),
        &["GYRE.PUBLISH", "chat:cli", r#"{"from":"redis-cli"}"#],
    );
    assert!(reply.starts_with('1'), "offset 1: {reply:?}");
    let expected =
        json!({"channel": "chat:cli", "pub": {"data": {"from": "redis-cli"}, "offset": 1}});
    assert_eq!(lines.json(), expected);
    let (publication, id) = sse.event();
    assert_eq!(publication, expected);
    let id = id.expect("a cursor on the publication's event");
    assert!(id.starts_with("1:") && id.ends_with(":chat:cli"), "{id}");
}

on_both_engines! {
    a_client_that_goes_away_leaves_at_once,
    last_event_id_resumes_every_channel,
    uni_connect_failures_end_with_a_disconnect_push,
    uni_websocket_sends_bare_pushes,
    emulated_http_stream_session,
}

/// An idle stream whose client hangs up ends its session right away (presence shows it), not
/// at the next message or ping.
fn a_client_that_goes_away_leaves_at_once(engine: EngineKind) {
    let env = ProxyEnv::start(engine, builder());
    let connect = json!({"token": token(&env, "alice"), "subs": {"room:1": {}}});
    let clients =
        || env.api("presence_stats", json!({"channel": "room:1"}))["result"]["num_clients"].clone();
    for path in ["/connection/uni_http_stream", "/connection/uni_sse"] {
        let stream = CurlStream::post(&env.gyre, path, &connect.to_string());
        while stream
            .line(WAIT)
            .is_some_and(|line| !line.contains("connect"))
        {}
        assert_eq!(clients(), 1, "{path}");
        drop(stream);
        let deadline = Instant::now() + Duration::from_secs(3);
        while clients() != 0 {
            assert!(
                Instant::now() < deadline,
                "{path}: still present after the client left"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A browser EventSource reconnects with the last event id it saw: every channel in it is
/// recovered, and one that cannot be is reported as not recovered.
fn last_event_id_resumes_every_channel(engine: EngineKind) {
    let env = ProxyEnv::start(engine, builder());
    let connect = json!({"token": token(&env, "alice"), "subs": {"chat:a": {}, "chat:b": {}}});
    let first = CurlStream::uni_sse(&env.gyre, &connect, None);
    first.event();
    env.publish("chat:a", json!({"a": 1}));
    env.publish("chat:b", json!({"b": 1}));
    let mut last_id = None;
    for _ in 0..2 {
        let (event, id) = first.event();
        assert!(event["pub"].is_object(), "{event}");
        last_id = id.or(last_id);
    }
    let last_id = last_id.expect("events carry ids");
    drop(first);

    // Missed while away.
    for n in 2..=3 {
        env.publish("chat:a", json!({"a": n}));
    }
    let (_, epoch_b) = env.publish("chat:b", json!({"b": 2}));
    let resumed = CurlStream::uni_sse(&env.gyre, &connect, Some(&last_id));
    let (event, _) = resumed.event();
    let subs = &event["connect"]["subs"];
    for (channel, data) in [
        ("chat:a", vec![json!({"a": 2}), json!({"a": 3})]),
        ("chat:b", vec![json!({"b": 2})]),
    ] {
        let sub = &subs[channel];
        assert_eq!(sub["recovered"], true, "{channel}: {event}");
        let recovered: Vec<Value> = sub["publications"]
            .as_array()
            .unwrap_or_else(|| panic!("{channel}: {event}"))
            .iter()
            .map(|p| p["data"].clone())
            .collect();
        assert_eq!(recovered, data, "{channel}");
    }

    // A position from another epoch (the stream was reset) cannot be recovered: said so.
    let stale = format!("1:not-{epoch_b}:chat:b");
    let reset = CurlStream::uni_sse(&env.gyre, &connect, Some(&stale));
    let (event, _) = reset.event();
    let sub = &event["connect"]["subs"]["chat:b"];
    assert_eq!(sub["was_recovering"], true, "{event}");
    assert!(sub.get("recovered").is_none(), "not recovered: {event}");
}

fn uni_connect_failures_end_with_a_disconnect_push(engine: EngineKind) {
    let env = ProxyEnv::start(engine, builder());
    let stream = CurlStream::post(
        &env.gyre,
        "/connection/uni_http_stream",
        r#"{"token":"not-a-token"}"#,
    );
    assert_eq!(
        stream.json(),
        json!({"disconnect": {"code": 3500, "reason": "invalid token"}})
    );
    assert_eq!(stream.expect_end(WAIT), Vec::<String>::new());

    // A channel the client may not subscribe to: permission denied, as a disconnect.
    let connect = json!({"token": token(&env, "alice"), "subs": {"secret:x": {}}});
    let stream = CurlStream::post(
        &env.gyre,
        "/connection/uni_http_stream",
        &connect.to_string(),
    );
    let disconnect = stream.json();
    assert_eq!(disconnect["disconnect"]["code"], 3004, "{disconnect}");
}

fn uni_websocket_sends_bare_pushes(engine: EngineKind) {
    let env = ProxyEnv::start(engine, builder());
    let url = format!(
        "ws://127.0.0.1:{}/connection/uni_websocket",
        env.gyre.port()
    );
    let (mut socket, _) = tungstenite::connect(url.as_str()).expect("uni_websocket handshake");
    let connect = json!({"token": token(&env, "alice"), "subs": {"chat:ws": {}}});
    socket
        .send(tungstenite::Message::text(connect.to_string()))
        .expect("send connect");
    let mut next = || loop {
        match socket.read().expect("read") {
            tungstenite::Message::Text(text) => {
                return serde_json::from_str::<Value>(text.as_str()).expect("JSON");
            }
            _ => continue,
        }
    };
    let connected = next();
    assert!(
        connected["connect"]["subs"]["chat:ws"].is_object(),
        "{connected}"
    );
    env.publish("chat:ws", json!({"n": 1}));
    assert_eq!(
        next(),
        json!({"channel": "chat:ws", "pub": {"data": {"n": 1}, "offset": 1}})
    );

    // Not a ConnectRequest: closed with 3501.
    let (mut socket, _) = tungstenite::connect(url.as_str()).expect("uni_websocket handshake");
    socket
        .send(tungstenite::Message::text("{not json"))
        .expect("send");
    let code = loop {
        match socket.read() {
            Ok(tungstenite::Message::Close(Some(frame))) => break u16::from(frame.code),
            Ok(_) => continue,
            Err(error) => panic!("no close frame: {error}"),
        }
    };
    assert_eq!(code, 3501);
}

// ------------------------------------------------------------------------------------------------
// Bidirectional emulation at the wire level.

/// POSTs one JSON emulation request to `gyre`; returns the status.
fn emulate(gyre: &GyreProcess, node: &str, session: &str, commands: &[Value]) -> u16 {
    let data: Vec<String> = commands.iter().map(Value::to_string).collect();
    let body = json!({"session": session, "node": node, "data": data.join("\n")});
    let (status, text) = http_request(
        gyre.port(),
        "POST",
        "/emulation",
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
    .expect("emulation request");
    assert!(
        status != 204 || text.is_empty(),
        "204 has no body: {text:?}"
    );
    status
}

/// The reply with `id` from a JSON-lines stream (pushes and pings before it are skipped).
fn reply_on(stream: &CurlStream, id: u64) -> Value {
    loop {
        let message = stream.json();
        if message["id"] == id {
            return message;
        }
    }
}

fn emulated_http_stream_session(engine: EngineKind) {
    let env = ProxyEnv::start(engine, builder());
    let connect = json!({"id": 1, "connect": {"token": token(&env, "alice")}});
    let stream = CurlStream::post(&env.gyre, "/connection/http_stream", &connect.to_string());
    let connected = reply_on(&stream, 1);
    let session = connected["connect"]["session"].as_str().expect("session");
    let node = connected["connect"]["node"].as_str().expect("node");
    assert_ne!(
        session, connected["connect"]["client"],
        "the session id is not the client id"
    );

    let commands = [
        json!({"id": 2, "subscribe": {"channel": "chat:em"}}),
        json!({"id": 3, "publish": {"channel": "chat:em", "data": {"n": 1}}}),
    ];
    assert_eq!(emulate(&env.gyre, node, session, &commands), 204);
    assert_eq!(reply_on(&stream, 2)["subscribe"]["recoverable"], true);
    let publication = stream.json();
    let published = stream.json();
    // The publish reply and the publication may come in either order.
    let (publication, published) = if publication.get("push").is_some() {
        (publication, published)
    } else {
        (published, publication)
    };
    assert_eq!(published, json!({"id": 3, "publish": {}}));
    assert_eq!(publication["push"]["pub"]["data"], json!({"n": 1}));

    // A session that is gone is not an error (its client reconnects anyway); a node that
    // does not exist is, on every engine: nothing is forwarded to a node nobody heard of.
    assert_eq!(emulate(&env.gyre, node, "no-such-session", &commands), 204);
    let foreign = emulate(&env.gyre, "no-such-node", session, &commands);
    assert_eq!(foreign, 404, "{engine:?}: an unknown node");

    // SIGTERM: the stream ends with the shutdown code as a push.
    let mut env = env;
    env.gyre.stop(Duration::from_secs(10));
    let rest = stream.expect_end(WAIT);
    assert!(
        rest.iter()
            .any(|line| line.contains(r#"{"push":{"disconnect":{"code":3001"#)),
        "{rest:?}"
    );
}

/// No sticky sessions: the stream is held by node A, the commands are POSTed to node B, which
/// forwards them through Redis.
#[test]
fn emulation_reaches_the_session_on_another_node() {
    let redis = RedisServer::builder().tcp().start();
    let node_a = builder().redis(&redis).start();
    let node_b = builder().redis(&redis).start();
    let secret = node_a.hmac_secret().to_owned();
    let token = hs256_token(&secret, &json!({"sub": "alice", "exp": unix_now() + 3600}));
    let connect = json!({"id": 1, "connect": {"token": token}});
    let stream = CurlStream::post(&node_a, "/connection/http_stream", &connect.to_string());
    let connected = reply_on(&stream, 1);
    let session = connected["connect"]["session"].as_str().expect("session");
    let node = connected["connect"]["node"].as_str().expect("node");

    let subscribe = [json!({"id": 2, "subscribe": {"channel": "chat:routed"}})];
    assert_eq!(emulate(&node_b, node, session, &subscribe), 204);
    assert!(reply_on(&stream, 2)["subscribe"].is_object());
    let publish = [json!({"id": 3, "publish": {"channel": "chat:routed", "data": {"via": "B"}}})];
    assert_eq!(emulate(&node_b, node, session, &publish), 204);
    let mut seen = Vec::new();
    while seen.len() < 2 {
        seen.push(stream.json());
    }
    assert!(seen.contains(&json!({"id": 3, "publish": {}})), "{seen:?}");
    assert!(
        seen.iter()
            .any(|m| m["push"]["pub"]["data"] == json!({"via": "B"})),
        "{seen:?}"
    );
}

// ------------------------------------------------------------------------------------------------
// Bad requests.

fn request(
    gyre: &GyreProcess,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    http_request(gyre.port(), method, path, headers, body).expect("HTTP request")
}

/// Method, path, headers, body; the status and a part of the message expected.
type BadRequest<'a> = (
    &'a str,
    &'a str,
    &'a [(&'a str, &'a str)],
    Vec<u8>,
    u16,
    &'a str,
);

#[test]
fn bad_requests_get_clear_4xx_answers() {
    let gyre = builder().memory().start();
    let json_type = [("Content-Type", "application/json")];
    let cases: Vec<BadRequest> = vec![
        (
            "GET",
            "/connection/http_stream",
            &[],
            vec![],
            405,
            "use POST",
        ),
        (
            "GET",
            "/connection/uni_http_stream",
            &[],
            vec![],
            405,
            "use POST",
        ),
        (
            "POST",
            "/connection/uni_http_stream",
            &[],
            b"{oops".to_vec(),
            400,
            "not a JSON ConnectRequest",
        ),
        (
            "POST",
            "/connection/uni_http_stream",
            &[],
            vec![b' '; 2000],
            413,
            "larger than 1000 bytes",
        ),
        ("GET", "/connection/sse", &[], vec![], 400, "cf_connect"),
        ("GET", "/connection/uni_sse", &[], vec![], 400, "cf_connect"),
        ("GET", "/emulation", &[], vec![], 405, "use POST"),
        (
            "POST",
            "/emulation",
            &json_type,
            b"[1,2]".to_vec(),
            400,
            "not an emulation request",
        ),
        (
            "POST",
            "/emulation",
            &json_type,
            br#"{"node":"n"}"#.to_vec(),
            400,
            "session and data",
        ),
        (
            "POST",
            "/connection/http_stream",
            &[("Origin", "http://evil.example")],
            b"{}".to_vec(),
            403,
            "origin not allowed",
        ),
        (
            "GET",
            "/connection/sockjs/info",
            &[],
            vec![],
            404,
            "set sockjs.enabled",
        ),
    ];
    for (method, path, headers, body, status, message) in cases {
        let (got, text) = request(&gyre, method, path, headers, &body);
        assert_eq!(got, status, "{method} {path}: {text}");
        assert!(
            text.contains(message),
            "{method} {path}: {text:?} lacks {message:?}"
        );
    }

    // Off by default, with the setting that turns it on named.
    let plain = GyreProcess::builder().memory().start();
    let (status, text) = request(&plain, "POST", "/connection/http_stream", &[], b"{}");
    assert_eq!(status, 404);
    assert!(text.contains("http_stream.enabled"), "{text}");
}

/// Idle streams carry pings (`{}`, as a line or an SSE event) every `client.ping_interval`, so
/// proxies that cut idle connections keep them, and their headers stop proxy buffering.
#[test]
fn idle_streams_get_pings_and_no_buffering_headers() {
    let gyre = builder()
        .memory()
        .client_option(r#"ping_interval = "1s""#)
        .client_option(r#"pong_timeout = "500ms""#)
        .start();
    let token = hs256_token(
        gyre.hmac_secret(),
        &json!({"sub": "idle", "exp": unix_now() + 3600}),
    );
    let connect = json!({"token": token, "subs": {"chat:idle": {}}}).to_string();
    let lines = CurlStream::post(&gyre, "/connection/uni_http_stream", &connect);
    assert!(lines.json()["connect"].is_object());
    assert_eq!(lines.json(), json!({}), "a ping within the interval");
    let events = CurlStream::start(&[
        "-G",
        &format!("{}/connection/uni_sse", base(&gyre)),
        "--data-urlencode",
        &format!("cf_connect={connect}"),
    ]);
    assert!(events.event().0["connect"].is_object());
    assert_eq!(events.event().0, json!({}));

    let headers = CurlStream::start(&[
        "-i",
        "-X",
        "POST",
        "--data-binary",
        &connect,
        &format!("{}/connection/uni_http_stream", base(&gyre)),
    ]);
    let mut seen = Vec::new();
    while let Some(line) = headers.line(WAIT) {
        if line.trim().is_empty() {
            break;
        }
        seen.push(line.trim().to_ascii_lowercase());
    }
    for header in [
        "x-accel-buffering: no",
        "cache-control: private, no-cache, no-store, must-revalidate, max-age=0",
        "content-type: application/json",
    ] {
        assert!(seen.iter().any(|h| h == header), "{header} in {seen:?}");
    }
}

#[test]
fn cors_preflights_and_headers_follow_allowed_origins() {
    let gyre = builder().memory().start();
    let (status, text) = request(
        &gyre,
        "OPTIONS",
        "/emulation",
        &[
            ("Origin", "http://allowed.example"),
            ("Access-Control-Request-Headers", "content-type"),
        ],
        b"",
    );
    assert_eq!(status, 204, "{text}");
    let preflight = raw_response(&gyre, "OPTIONS", "/emulation", "http://allowed.example");
    for header in [
        "access-control-allow-origin: http://allowed.example",
        "access-control-allow-credentials: true",
        "access-control-allow-methods: post, options",
        "access-control-max-age: 300",
    ] {
        assert!(preflight.contains(header), "{header} in {preflight}");
    }
    let refused = raw_response(&gyre, "OPTIONS", "/emulation", "http://evil.example");
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
}

/// The status line and headers of a response, lower-cased.
fn raw_response(gyre: &GyreProcess, method: &str, path: &str, origin: &str) -> String {
    let output = Command::new("curl")
        .args(["-sS", "-i", "-X", method, "-H"])
        .arg(format!("Origin: {origin}"))
        .arg(format!("{}{path}", base(gyre)))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&output.stdout)
        .to_ascii_lowercase()
        .replace("http/1.1", "HTTP/1.1")
}
