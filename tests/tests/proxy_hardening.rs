//! What a hostile client's connections may cost `gyre`: request heads, idle keep-alive
//! connections and request bodies that never complete are closed in the configured time; sockets
//! that never authenticate are capped, so they cannot take every descriptor; the process raises
//! its open-file limit and keeps serving after running out of descriptors; WebSocket handshakes
//! follow RFC 6455. Real sockets against the real binary.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use gyre_tests::ws_client::{EngineKind, ProxyEnv, WsClient, WsOptions, cmd};
use gyre_tests::{GyreBuilder, GyreProcess, Namespace, RedisServer, http_request};

fn builder() -> GyreBuilder {
    GyreProcess::builder().namespace(Namespace::full("chat", 100, 300).allow_publish())
}

fn open(port: u16) -> TcpStream {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream.set_nodelay(true).ok();
    stream
}

/// Reads until the server closes `stream` (end of file or reset) or `deadline` passes; returns
/// everything read, and whether it closed.
fn read_until_closed(stream: &mut TcpStream, deadline: Instant) -> (Vec<u8>, bool) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (seen, false);
        }
        stream.set_read_timeout(Some(left)).ok();
        match stream.read(&mut buf) {
            Ok(0) => return (seen, true),
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return (seen, false);
            }
            Err(_) => return (seen, true),
        }
    }
}

/// Whether the server still holds `stream` open: nothing to read and no end of file for `quiet`.
fn still_open(stream: &mut TcpStream, quiet: Duration) -> bool {
    !read_until_closed(stream, Instant::now() + quiet).1
}

fn metric(gyre: &GyreProcess, name: &str) -> f64 {
    // The asking connection is unauthenticated too: while the test's sockets fill the cap, or
    // closed ones have not yet left it (a moment, longer on a loaded machine), it gets a 503.
    let deadline = Instant::now() + Duration::from_secs(5);
    let (status, text) = loop {
        let (status, text) = gyre
            .http("GET", "/metrics", &[], b"")
            .expect("GET /metrics");
        if status != 503 || Instant::now() > deadline {
            break (status, text);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status, 200, "{text}");
    text.lines()
        .filter(|line| line.starts_with(name) && !line.starts_with('#'))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits (up to 3 s) for the count of unauthenticated connections to be `expected`, the
/// connection asking included: connections that just closed or connected leave it a moment
/// after their client saw the end.
fn wait_unauthenticated(gyre: &GyreProcess, expected: f64) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let now = metric(gyre, "gyre_http_unauthenticated_connections");
        if now == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{now} unauthenticated connections, expected {expected}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A connected, authenticated client keeps working; a new one can connect and authenticate.
fn assert_clients_served(env: &ProxyEnv, connected: &mut WsClient) {
    let reply = connected.call(cmd::publish(0, "chat:room", br#"{"still":"here"}"#));
    assert!(reply.error.is_none(), "{reply:?}");
    let mut fresh = env.client("fresh");
    let reply = fresh.call(cmd::subscribe(0, "chat:room"));
    assert!(reply.error.is_none(), "{reply:?}");
}

// ------------------------------------------------------------------------------------------------
// Timeouts.

/// Idle sockets and half-sent request heads are closed after `read_header_timeout`, stalled
/// request bodies get 408 after `read_body_timeout`, a kept-alive connection is closed after
/// `idle_timeout` (not the shorter header timeout); and while they are all held, real clients
/// connect and work.
#[test]
fn unfinished_requests_and_idle_connections_are_closed_in_time() {
    let env = ProxyEnv::start(
        EngineKind::Memory,
        builder()
            .http_server_option("read_header_timeout = \"1s\"")
            .http_server_option("idle_timeout = \"3s\"")
            .http_server_option("read_body_timeout = \"1s\""),
    );
    let port = env.gyre.port();
    let mut connected = env.client("a");
    let opened = Instant::now();

    let mut idle: Vec<TcpStream> = (0..100).map(|_| open(port)).collect();
    let mut half_sent: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut stream = open(port);
            stream
                .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .expect("write");
            stream
        })
        .collect();
    let body_head = format!(
        "POST /api/publish HTTP/1.1\r\nHost: x\r\nX-API-Key: {}\r\nContent-Length: 1000\r\n\r\n",
        env.gyre.api_key()
    );
    let mut stalled_bodies: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut stream = open(port);
            stream.write_all(body_head.as_bytes()).expect("write");
            stream.write_all(br#"{"channel":"#).expect("write");
            stream
        })
        .collect();
    // One byte of header every 300 ms: the deadline does not move with each byte.
    let mut trickle = open(port);
    let trickle_writer = {
        let mut stream = trickle.try_clone().expect("clone");
        std::thread::spawn(move || {
            for byte in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaa\r\n\r\n" {
                if stream.write_all(&[*byte]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };
    let mut kept_alive = open(port);
    kept_alive
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let mut response = [0u8; 256];
    let n = kept_alive.read(&mut response).expect("response");
    assert!(
        response[..n].starts_with(b"HTTP/1.1 200"),
        "keep-alive answer"
    );
    let answered = Instant::now();

    // While all of that is held open, the server serves real clients.
    assert_clients_served(&env, &mut connected);

    let deadline = opened + Duration::from_millis(2500);
    for (i, stream) in idle.iter_mut().chain(half_sent.iter_mut()).enumerate() {
        let (_, closed) = read_until_closed(stream, deadline);
        assert!(
            closed,
            "socket {i} (idle or half-sent) still open after 2.5 s"
        );
    }
    for (i, stream) in stalled_bodies.iter_mut().enumerate() {
        let (seen, closed) = read_until_closed(stream, deadline);
        let text = String::from_utf8_lossy(&seen);
        assert!(
            text.starts_with("HTTP/1.1 408"),
            "stalled body {i}: {text:?}"
        );
        assert!(text.contains("read_body_timeout"), "{text}");
        assert!(closed, "stalled body {i} still open");
    }
    let (_, closed) = read_until_closed(&mut trickle, deadline);
    assert!(
        closed,
        "a head sent a byte at a time is still open after 2.5 s"
    );
    trickle_writer.join().expect("trickle writer");

    // The kept-alive connection outlives the header timeout (it owes no head while idle) and is
    // closed by the idle timeout.
    let until = answered + Duration::from_millis(2000);
    assert!(
        still_open(
            &mut kept_alive,
            until.saturating_duration_since(Instant::now())
        ),
        "kept-alive connection closed before idle_timeout"
    );
    let (_, closed) = read_until_closed(&mut kept_alive, answered + Duration::from_millis(4500));
    assert!(
        closed,
        "kept-alive connection still open after idle_timeout"
    );

    assert!(metric(&env.gyre, "gyre_http_timeouts_total{phase=\"header\"}") >= 200.0);
    assert!(metric(&env.gyre, "gyre_http_timeouts_total{phase=\"body\"}") >= 20.0);
    assert!(metric(&env.gyre, "gyre_http_timeouts_total{phase=\"idle\"}") >= 1.0);
    assert_clients_served(&env, &mut connected);
}

/// An upgraded WebSocket owes no request head: a connected client that stays quiet longer than
/// every HTTP timeout is not closed by them (its pings keep it).
#[test]
fn websocket_connections_are_not_held_to_http_timeouts() {
    let env = ProxyEnv::start(
        EngineKind::Memory,
        builder()
            .http_server_option("read_header_timeout = \"500ms\"")
            .http_server_option("idle_timeout = \"500ms\""),
    );
    let mut client = env.client("a");
    client.stay_open(Duration::from_millis(1500));
    let reply = client.call(cmd::subscribe(0, "chat:room"));
    assert!(reply.error.is_none(), "{reply:?}");
}

// ------------------------------------------------------------------------------------------------
// Connections that never authenticate.

/// `max_unauthenticated_connections = 20`: idle sockets fill it, the next connection gets 503
/// and is closed at once; authenticated clients are not counted and keep working; once sockets
/// go away, new clients get in again.
#[test]
fn unauthenticated_connections_are_capped() {
    let env = ProxyEnv::start(
        EngineKind::Memory,
        builder()
            .http_server_option("max_unauthenticated_connections = 20")
            .http_server_option("read_header_timeout = \"60s\""),
    );
    let port = env.gyre.port();
    let mut authenticated: Vec<WsClient> = (0..5).map(|i| env.client(&format!("u{i}"))).collect();
    // The 5 connected clients do not count; the request asking does.
    wait_unauthenticated(&env.gyre, 1.0);
    let mut idle: Vec<TcpStream> = (0..19).map(|_| open(port)).collect();
    wait_unauthenticated(&env.gyre, 20.0);
    // The asking connection's slot comes free a moment after it closed: of five more sockets
    // one may still get in; the others are refused, with a 503, at once.
    let mut refused = 0;
    for _ in 0..5 {
        let mut extra = open(port);
        let (seen, closed) = read_until_closed(&mut extra, Instant::now() + Duration::from_secs(1));
        if seen.is_empty() && !closed {
            idle.push(extra);
            continue;
        }
        let text = String::from_utf8_lossy(&seen);
        assert!(text.starts_with("HTTP/1.1 503"), "{text:?}");
        assert!(text.contains("max_unauthenticated_connections"), "{text}");
        assert!(closed, "the refused connection is closed at once");
        refused += 1;
    }
    assert!(refused >= 4, "{refused} of 5 refused over the cap");
    assert!(
        (19..=20).contains(&idle.len()),
        "{} held under a cap of 20",
        idle.len()
    );
    // On a loaded machine the asking connection's slot may come free only now: fill it, so
    // that the cap is reached by idle sockets alone.
    let deadline = Instant::now() + Duration::from_secs(10);
    while idle.len() < 20 {
        assert!(
            Instant::now() < deadline,
            "the asking connection's slot never came free"
        );
        let mut extra = open(port);
        let (seen, closed) =
            read_until_closed(&mut extra, Instant::now() + Duration::from_millis(500));
        if seen.is_empty() && !closed {
            idle.push(extra);
        } else {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let attempt = WsClient::connect_with(&env.ws_url(), WsOptions::default());
    assert!(attempt.is_err(), "a WebSocket over the cap is refused too");

    for client in &mut authenticated {
        let reply = client.call(cmd::subscribe(0, "chat:room"));
        assert!(
            reply.error.is_none(),
            "authenticated clients keep working: {reply:?}"
        );
    }

    idle.truncate(10);
    std::thread::sleep(Duration::from_millis(200));
    let mut connected = env.client("late");
    assert_clients_served(&env, &mut connected);
    assert!(metric(&env.gyre, "gyre_http_connections_refused_total") >= 1.0);

    // A backend's kept-alive connection stops counting once it sent the API key.
    wait_unauthenticated(&env.gyre, 11.0);
    let mut backend = open(port);
    let call = format!(
        "POST /api/info HTTP/1.1\r\nHost: x\r\nX-API-Key: {}\r\nContent-Length: 2\r\n\r\n{{}}",
        env.gyre.api_key()
    );
    backend.write_all(call.as_bytes()).expect("write");
    let mut answer = [0u8; 64];
    let n = backend.read(&mut answer).expect("answer");
    assert!(
        answer[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        &answer[..n]
    );
    wait_unauthenticated(&env.gyre, 11.0);
    drop(backend);
}

/// A WebSocket that connects gives its slot back: many clients connecting one after another
/// never fill a small cap.
#[test]
fn connected_clients_leave_the_unauthenticated_count() {
    let env = ProxyEnv::start(
        EngineKind::Memory,
        builder().http_server_option("max_unauthenticated_connections = 3"),
    );
    let clients: Vec<WsClient> = (0..30).map(|i| env.client(&format!("u{i}"))).collect();
    assert_eq!(clients.len(), 30);
    // This request's own connection is the only one counted.
    wait_unauthenticated(&env.gyre, 1.0);
}

// ------------------------------------------------------------------------------------------------
// Descriptors.

fn open_files_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files");
    let mut fields = line.split_whitespace().skip(3);
    (
        fields.next().expect("soft").to_owned(),
        fields.next().expect("hard").to_owned(),
    )
}

/// gyre raises its soft open-file limit to the hard one at start, and says how many it has.
#[test]
fn the_open_file_limit_is_raised_to_the_hard_limit() {
    let gyre = builder().memory().start();
    let (soft, hard) = open_files_limits(gyre.pid().expect("pid"));
    assert_eq!(soft, hard, "soft limit raised to the hard one");
    let log = gyre.log();
    assert!(
        log.contains(&format!("open-file limit {soft}")),
        "the log says it: {log}"
    );
}

/// With 64 descriptors and more sockets than that, `accept` fails: gyre backs off with one
/// warning (not a line per attempt), stays up, and serves again once the sockets close.
#[test]
fn running_out_of_descriptors_backs_off_and_recovers() {
    let mut gyre = builder()
        .open_files_limit(64)
        .http_server_option("max_unauthenticated_connections = 10000")
        .http_server_option("read_header_timeout = \"60s\"")
        .memory()
        .start();
    let port = gyre.port();
    let held: Vec<TcpStream> = (0..100).map(|_| open(port)).collect();
    std::thread::sleep(Duration::from_secs(2));
    let warnings = gyre.log().matches("accept failed").count();
    assert!(
        (1..=2).contains(&warnings),
        "{warnings} accept warnings in 2 s: {}",
        gyre.log_tail(20)
    );
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gyre.is_alive() {
        assert!(
            Instant::now() < deadline,
            "gyre does not serve again after the sockets closed: {}",
            gyre.log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ------------------------------------------------------------------------------------------------
// WebSocket handshakes (RFC 6455 §4.2).

fn handshake(port: u16, method: &str, path: &str, version: &str, key: &str) -> (u16, String) {
    http_request(
        port,
        method,
        path,
        &[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Version", version),
            ("Sec-WebSocket-Key", key),
        ],
        b"",
    )
    .expect("HTTP")
}

/// Another version than 13 gets 426 naming 13; a key that is not 16 bytes of base64 gets 400;
/// another method than GET gets 405 (on every WebSocket endpoint); nothing of it suggests a
/// setting that does not exist.
#[test]
fn websocket_handshakes_follow_rfc_6455() {
    let env = ProxyEnv::start(
        EngineKind::Memory,
        builder()
            .extra_toml("[uni_websocket]\nenabled = true\n")
            .extra_toml("[sockjs]\nenabled = true\n"),
    );
    let port = env.gyre.port();
    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    for path in [
        "/connection/websocket",
        "/connection/uni_websocket",
        "/connection/sockjs/websocket",
    ] {
        let (status, text) = handshake(port, "GET", path, "8", KEY);
        assert_eq!(status, 426, "{path}: version 8: {text}");
        assert!(text.contains("13"), "{text}");
        for key in [
            "",
            "abc",
            "dGhpcyBpcyBub3QgMTYgYnl0ZXM=",
            "!!!!!!!!!!!!!!!!!!!!!!==",
        ] {
            let (status, text) = handshake(port, "GET", path, "13", key);
            assert_eq!(status, 400, "{path}: key {key:?}: {text}");
        }
        let (status, text) = handshake(port, "POST", path, "13", KEY);
        assert_eq!(status, 405, "{path}: POST: {text}");
        assert!(!text.contains("enabled"), "{path}: {text}");
    }
    // The raw response of a version mismatch names the version the server speaks.
    let mut stream = open(port);
    stream
        .write_all(
            format!(
                "GET /connection/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Version: 7\r\nSec-WebSocket-Key: {KEY}\r\n\r\n"
            )
            .as_bytes(),
        )
        .expect("write");
    let (seen, _) = read_until_closed(&mut stream, Instant::now() + Duration::from_millis(500));
    let text = String::from_utf8_lossy(&seen).to_ascii_lowercase();
    assert!(text.contains("sec-websocket-version: 13"), "{text}");
    // A valid handshake still works.
    let mut client = env.client("a");
    let reply = client.call(cmd::subscribe(0, "chat:room"));
    assert!(reply.error.is_none(), "{reply:?}");
}

/// `message_size_limit = 0` means no limit (as documented): a 200 KB message passes on
/// WebSocket, uni_websocket and SockJS's raw WebSocket.
#[test]
fn message_size_limit_zero_means_no_limit() {
    let env = ProxyEnv::start(
        EngineKind::Memory,
        builder()
            .extra_toml("[websocket]\nmessage_size_limit = 0\n")
            .extra_toml("[uni_websocket]\nenabled = true\nmessage_size_limit = 0\n")
            .extra_toml("[sockjs]\nenabled = true\n"),
    );
    let big = format!("{{\"text\":\"{}\"}}", "x".repeat(200_000));
    let mut client = env.client("a");
    let reply = client.call(cmd::publish(0, "chat:room", big.as_bytes()));
    assert!(reply.error.is_none(), "websocket: {reply:?}");

    let port = env.gyre.port();
    let mut raw = WsClient::connect(
        &format!("ws://127.0.0.1:{port}/connection/sockjs/websocket"),
        gyre_tests::ws_client::Encoding::Json,
    );
    let reply = raw.call(cmd::connect(0, &env.token("b")));
    assert!(reply.connect.is_some(), "{reply:?}");
    let reply = raw.call(cmd::publish(0, "chat:room", big.as_bytes()));
    assert!(reply.error.is_none(), "sockjs websocket: {reply:?}");

    let mut uni = WsClient::connect(
        &format!("ws://127.0.0.1:{port}/connection/uni_websocket"),
        gyre_tests::ws_client::Encoding::Json,
    );
    let connect =
        serde_json::json!({ "token": env.token("c"), "data": { "pad": "y".repeat(200_000) } });
    uni.send_text(&connect.to_string());
    let push = uni
        .next_message(Duration::from_secs(5))
        .expect("a push after a 200 KB connect request");
    assert!(
        push.json().get("connect").is_some(),
        "uni_websocket: {:?}",
        push.json()
    );
}

// ------------------------------------------------------------------------------------------------
// Nodes and /emulation.

fn emulation(gyre: &GyreProcess, node: &str) -> (u16, String) {
    let body = serde_json::json!({"session": "no-such-session", "node": node, "data": "{}"});
    http_request(
        gyre.port(),
        "POST",
        "/emulation",
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
    .expect("emulation request")
}

fn node_uids(gyre: &GyreProcess) -> Vec<String> {
    let info: serde_json::Value = serde_json::from_str(&gyre.api("info", "{}")).expect("info JSON");
    info["result"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|n| n["uid"].as_str().map(str::to_owned))
        .collect()
}

/// Nodes learn of each other through the control channel (the `info` API lists both), and an
/// `/emulation` request is forwarded only to a node that exists: a made-up node id is 404, not
/// a message to every node.
#[test]
fn emulation_is_forwarded_only_to_nodes_that_exist() {
    let redis = RedisServer::builder().tcp().start();
    let with_emulation = || {
        builder()
            .redis(&redis)
            .extra_toml("[http_stream]\nenabled = true\n")
            .start()
    };
    let a = with_emulation();
    let b = with_emulation();
    let a_uid = node_uids(&a)[0].clone();
    let b_uid = node_uids(&b)[0].clone();
    // B learns of A at once (a new node makes the others announce themselves), and A of B.
    let deadline = Instant::now() + Duration::from_secs(2);
    while !(node_uids(&b).contains(&a_uid) && node_uids(&a).contains(&b_uid)) {
        assert!(
            Instant::now() < deadline,
            "the nodes do not know each other"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, text) = emulation(&b, "made-up-node");
    assert_eq!(status, 404, "{text}");
    assert!(text.contains("unknown node"), "{text}");
    let (status, text) = emulation(&b, &a_uid);
    assert_eq!(status, 204, "forwarded to A: {text}");
    let (status, _) = emulation(&b, &b_uid);
    assert_eq!(status, 204, "its own node: handled there");
}
