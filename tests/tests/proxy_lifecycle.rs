//! Connection life cycle of `gyre` (docs/protocol.md#ping-and-pong, #disconnect-codes,
//! #origins-and-cors): ping/pong, stale connections, slow clients, the Origin check and graceful
//! shutdown. Memory engine: none of it depends on the engine.

use std::time::{Duration, Instant};

use gyre_tests::ws_client::{Encoding, EngineKind, ProxyEnv, WAIT, WsClient, WsOptions, cmd};
use gyre_tests::{GyreBuilder, GyreProcess, Namespace};
use serde_json::json;

fn builder() -> GyreBuilder {
    GyreProcess::builder().namespace(Namespace::full("chat", 100, 300))
}

fn memory(builder: GyreBuilder) -> ProxyEnv {
    ProxyEnv::start(EngineKind::Memory, builder)
}

// ------------------------------------------------------------------------------------------------
// Ping / pong.

/// `ping_interval = 1s`, `pong_timeout = 500ms`: clients that answer `{}` (JSON) or `0x00`
/// (Protobuf) stay across several pings; one that does not is closed with 3012 after its first
/// ping.
#[test]
fn pings_must_be_answered_with_pongs() {
    let env = memory(
        builder()
            .client_option("ping_interval = \"1s\"")
            .client_option("pong_timeout = \"500ms\""),
    );
    let mut json_client = WsClient::connect(&env.ws_url(), Encoding::Json);
    let reply = json_client.call(cmd::connect(0, &env.token("a")));
    let connect = reply.connect.expect("connect");
    assert_eq!((connect.ping, connect.pong), (1, true));
    let mut pb_client = env.client_in(Encoding::Protobuf, "b");
    let mut silent = env.client_in(Encoding::Protobuf, "c");
    silent.set_auto_pong(false);

    let started = Instant::now();
    // Both answering clients read (and pong) for 3.2 s: at least 2 pings each, no close.
    while started.elapsed() < Duration::from_millis(3200) {
        json_client.stay_open(Duration::from_millis(100));
        pb_client.stay_open(Duration::from_millis(100));
    }
    assert!(
        json_client.pings() >= 2,
        "JSON pings: {}",
        json_client.pings()
    );
    assert!(
        pb_client.pings() >= 2,
        "Protobuf pings: {}",
        pb_client.pings()
    );

    let close = silent.expect_close(WAIT);
    assert_eq!((close.code, close.reason.as_str()), (3012, "no pong"));
    assert_eq!(silent.pings(), 1, "closed after the first unanswered ping");
}

/// `pong_timeout = 0` disables the pong check (documented in the config schema): a client that
/// never answers stays connected across pings.
#[test]
fn pong_timeout_zero_disables_the_pong_check() {
    let env = memory(
        builder()
            .client_option("ping_interval = \"1s\"")
            .client_option("pong_timeout = \"0s\""),
    );
    let mut silent = env.client("c");
    silent.set_auto_pong(false);
    silent.stay_open(Duration::from_millis(2300));
    assert!(silent.pings() >= 2, "pings: {}", silent.pings());
}

// ------------------------------------------------------------------------------------------------
// Stale connections.

/// A connection that sends no connect within `stale_close_delay` is closed with 3502; a
/// connected one is not.
#[test]
fn a_connection_without_connect_is_closed_as_stale() {
    let env = memory(builder().client_option("stale_close_delay = \"1s\""));
    let started = Instant::now();
    let mut idle = WsClient::connect(&env.ws_url(), Encoding::Json);
    let mut connected = env.client("a");
    connected.stay_open(Duration::from_millis(1500));
    let close = idle.expect_close(WAIT);
    assert_eq!((close.code, close.reason.as_str()), (3502, "stale"));
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900),
        "closed too early: {elapsed:?}"
    );
}

// ------------------------------------------------------------------------------------------------
// Slow clients.

/// A client connected as "slow" and subscribed to `channel`, with small socket buffers on both
/// sides (small receive buffer, small MSS), so the server's writes to it block after ~100 KiB
/// once it stops reading.
fn slow_subscriber(env: &ProxyEnv, channel: &str) -> WsClient {
    let mut slow = WsClient::connect_with(
        &env.ws_url(),
        WsOptions {
            receive_buffer: Some(4096),
            max_segment: Some(536),
            ..WsOptions::default()
        },
    )
    .expect("handshake");
    slow.send(&[
        cmd::connect(1, &env.token("slow")),
        cmd::subscribe(2, channel),
    ]);
    slow.reply(2);
    slow
}

/// Publishes `n` publications of ~1 KiB to `channel` through the API, 16 per batch request.
fn publish_kib(env: &ProxyEnv, channel: &str, n: u64) {
    let payload = "x".repeat(1000);
    let mut left = n;
    while left > 0 {
        let batch = left.min(16);
        let commands: Vec<_> = (0..batch)
            .map(|_| json!({"publish": {"channel": channel, "data": {"p": payload}}}))
            .collect();
        let reply = env.api("batch", json!({"commands": commands}));
        assert!(reply.get("error").is_none(), "{reply}");
        left -= batch;
    }
}

/// A subscriber that stops reading is closed with 3008 "slow" once its queue
/// (`queue_max_size`) overflows; when it reads again it gets a contiguous prefix of the
/// publications, then the close frame. Another subscriber of the same channel, reading
/// normally, receives every publication.
#[test]
fn a_slow_client_is_closed_with_3008_and_others_get_everything() {
    const FLOOD: u64 = 1024; // publications of ~1 KiB: 1 MiB in bursts of 16
    let env = memory(builder().client_option("queue_max_size = 65536"));
    // The server's writes to it block after ~100 KiB; its queue overflows soon after.
    let mut slow = slow_subscriber(&env, "chat:flood");
    let mut fast = env.client("fast");
    fast.send(&[cmd::subscribe(1, "chat:flood")]);
    fast.reply(1);

    std::thread::scope(|scope| {
        let reader = scope.spawn(move || {
            let pubs = fast.publications("chat:flood", FLOOD as usize, Duration::from_secs(20));
            let offsets: Vec<u64> = pubs.iter().map(|p| p.publication().offset).collect();
            fast.assert_no_publication("chat:flood", Duration::from_millis(100));
            assert!(fast.closed().is_none(), "the fast client was closed");
            offsets
        });
        publish_kib(&env, "chat:flood", FLOOD);
        // The slow client reads again: what was in flight, then the close frame.
        let close = slow.expect_close(WAIT);
        assert_eq!((close.code, close.reason.as_str()), (3008, "slow"));
        let offsets: Vec<u64> = slow
            .drain()
            .iter()
            .filter(|m| m.reply.push.as_ref().is_some_and(|p| p.r#pub.is_some()))
            .map(|m| m.publication().offset)
            .collect();
        assert!(
            (offsets.len() as u64) < FLOOD / 2,
            "the slow client got {} of {FLOOD}",
            offsets.len()
        );
        let prefix: Vec<u64> = (1..=offsets.len() as u64).collect();
        assert_eq!(offsets, prefix, "a contiguous prefix, then the close");

        let fast_offsets = reader.join().expect("fast reader");
        assert_eq!(
            fast_offsets,
            (1..=FLOOD).collect::<Vec<_>>(),
            "the fast subscriber misses nothing"
        );
    });
}

/// Once a slow client's queue overflowed, its session ends at once: it leaves its channels
/// (presence, `channels`), also when the client never reads again — not only at its next ping.
#[test]
fn a_slow_client_leaves_its_channels_at_once() {
    let env = memory(builder().client_option("queue_max_size = 65536"));
    let slow = slow_subscriber(&env, "chat:gone");
    let stats = || env.api("presence_stats", json!({"channel": "chat:gone"}))["result"].clone();
    assert_eq!(stats(), json!({"num_clients": 1, "num_users": 1}));
    publish_kib(&env, "chat:gone", 1024);
    gyre_tests::wait_until(
        Duration::from_secs(3),
        "the slow client left chat:gone",
        || stats() == json!({"num_clients": 0, "num_users": 0}),
    );
    drop(slow);
}

/// A client that stops reading for a while, but not long enough to overflow its queue, gets
/// every publication in order once it reads again, and the ones after: the writes that its full
/// socket refused queue behind each other, and direct writes resume only after the queue is
/// written.
#[test]
fn a_client_that_pauses_reading_gets_everything_in_order() {
    const BURST: u64 = 256; // publications of ~1 KiB: more than the socket buffers take
    let env = memory(builder());
    let mut paused = slow_subscriber(&env, "chat:pause");
    publish_kib(&env, "chat:pause", BURST);
    let offsets: Vec<u64> = paused
        .publications("chat:pause", BURST as usize, WAIT)
        .iter()
        .map(|p| p.publication().offset)
        .collect();
    assert_eq!(offsets, (1..=BURST).collect::<Vec<_>>());
    publish_kib(&env, "chat:pause", 16);
    let offsets: Vec<u64> = paused
        .publications("chat:pause", 16, WAIT)
        .iter()
        .map(|p| p.publication().offset)
        .collect();
    assert_eq!(offsets, (BURST + 1..=BURST + 16).collect::<Vec<_>>());
    assert!(paused.closed().is_none(), "closed: {:?}", paused.closed());
}

// ------------------------------------------------------------------------------------------------
// Origin.

/// `allowed_origins`: a listed Origin (or a glob match) passes, another gets HTTP 403, and a
/// request without Origin (not a browser) passes.
#[test]
fn origins_outside_allowed_origins_get_403() {
    let config = builder();
    let gyre = GyreProcess::start_text(|port| {
        let toml = config.config_toml(port);
        let patched = toml.replace(
            "allowed_origins = [\"*\"]",
            "allowed_origins = [\"https://ok.example\", \"https://*.apps.example\"]",
        );
        assert_ne!(toml, patched, "allowed_origins line not found in {toml}");
        patched
    });
    let url = gyre.ws_url();
    let with_origin = |origin: Option<&str>| {
        WsClient::connect_with(
            &url,
            WsOptions {
                origin: origin.map(str::to_owned),
                ..WsOptions::default()
            },
        )
    };
    for bad in [
        "https://bad.example",
        "http://ok.example",
        "https://ok.example.evil",
    ] {
        match with_origin(Some(bad)) {
            Ok(_) => panic!("Origin {bad} was accepted"),
            Err(e) => assert_eq!(e.status, Some(403), "Origin {bad}: {e:?}"),
        }
    }
    for good in [
        Some("https://ok.example"),
        Some("https://one.apps.example"),
        None,
    ] {
        let mut client =
            with_origin(good).unwrap_or_else(|e| panic!("Origin {good:?} refused: {e:?}"));
        client.send_text(r#"{"id":1,"connect":{}}"#);
        // No token and anonymous not allowed: the protocol, not the handshake, refuses it.
        assert_eq!(client.expect_close(WAIT).code, 3501, "Origin {good:?}");
    }
}

/// An empty `allowed_origins` admits pages of the host gyre is reached at (same origin) and
/// clients without Origin; any other Origin gets HTTP 403.
#[test]
fn an_empty_allowed_origins_admits_only_the_same_host() {
    let config = builder();
    let gyre = GyreProcess::start_text(|port| {
        let toml = config.config_toml(port);
        let patched = toml.replace("allowed_origins = [\"*\"]", "allowed_origins = []");
        assert_ne!(toml, patched, "allowed_origins line not found in {toml}");
        patched
    });
    let url = gyre.ws_url();
    let port = gyre.port();
    let with_origin = |origin: Option<String>| {
        WsClient::connect_with(
            &url,
            WsOptions {
                origin,
                ..WsOptions::default()
            },
        )
    };
    for bad in [
        "http://evil.example".to_owned(),
        format!("http://127.0.0.1:{}", port + 1),
        format!("http://127.0.0.1.evil:{port}"),
    ] {
        match with_origin(Some(bad.clone())) {
            Ok(_) => panic!("Origin {bad} was accepted"),
            Err(e) => assert_eq!(e.status, Some(403), "Origin {bad}: {e:?}"),
        }
    }
    for good in [
        Some(format!("http://127.0.0.1:{port}")),
        Some(format!("https://127.0.0.1:{port}/page")),
        None,
    ] {
        let mut client =
            with_origin(good.clone()).unwrap_or_else(|e| panic!("Origin {good:?} refused: {e:?}"));
        client.send_text(r#"{"id":1,"connect":{}}"#);
        assert_eq!(client.expect_close(WAIT).code, 3501, "Origin {good:?}");
    }
}

/// `client.handshake_rate_limit`: handshakes beyond the rate (after the burst) get 503 with
/// `Retry-After`, before any session exists; the bucket refills with time.
#[test]
fn handshakes_beyond_the_rate_get_503_and_retry_later() {
    let env = memory(
        builder()
            .client_option("handshake_rate_limit = 2")
            .client_option("handshake_burst = 5"),
    );
    let url = env.ws_url();
    let attempts: Vec<_> = (0..8)
        .map(|_| WsClient::connect_with(&url, WsOptions::default()))
        .collect();
    let admitted = attempts.iter().filter(|a| a.is_ok()).count();
    assert_eq!(admitted, 5, "the burst");
    for refused in attempts.iter().filter_map(|a| a.as_ref().err()) {
        assert_eq!(refused.status, Some(503), "{refused:?}");
    }
    let (status, text) = gyre_tests::http_request(
        env.gyre.port(),
        "GET",
        "/connection/websocket",
        &[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
        b"",
    )
    .expect("HTTP");
    assert_eq!(status, 503);
    assert!(text.contains("handshake_rate_limit"), "{text}");
    std::thread::sleep(Duration::from_millis(600));
    let mut client = WsClient::connect_with(&url, WsOptions::default())
        .unwrap_or_else(|e| panic!("the bucket refilled: {e:?}"));
    let reply = client.call(cmd::connect(0, &env.token("late")));
    assert!(reply.connect.is_some(), "{reply:?}");
}

// ------------------------------------------------------------------------------------------------
// Graceful shutdown.

/// Three clients (JSON, Protobuf, JSON) connected and subscribed, then SIGTERM: what each
/// client saw, gyre's exit status, and how long it took.
fn sigterm_with_clients() -> (
    Vec<gyre_tests::ws_client::Close>,
    std::process::ExitStatus,
    Duration,
) {
    let secret = "shutdown-test-secret";
    let config = builder()
        .hmac_secret(secret)
        .extra_toml("[shutdown]\ntimeout = \"5s\"");
    let mut gyre = GyreProcess::start_text(|port| config.config_toml(port));
    let url = gyre.ws_url();
    let token = gyre_tests::ws_client::hs256_token(secret, &json!({"sub": "alice"}));
    let mut clients: Vec<WsClient> = [Encoding::Json, Encoding::Protobuf, Encoding::Json]
        .into_iter()
        .map(|encoding| {
            let mut client = WsClient::connect(&url, encoding);
            client.send(&[cmd::connect(1, &token), cmd::subscribe(2, "chat:bye")]);
            assert!(client.reply(2).reply.subscribe.is_some());
            client
        })
        .collect();

    let started = Instant::now();
    gyre.terminate();
    let closes = clients
        .iter_mut()
        .map(|client| client.expect_close(Duration::from_secs(6)))
        .collect();
    let status = gyre
        .wait_exit(Duration::from_secs(6))
        .expect("gyre still running after the shutdown timeout");
    (closes, status, started.elapsed())
}

/// SIGTERM: gyre ends every client connection and exits 0 within `shutdown.timeout` (5 s).
#[test]
fn sigterm_exits_0_within_the_shutdown_timeout() {
    let (closes, status, elapsed) = sigterm_with_clients();
    assert!(status.success(), "exit status {status}");
    assert!(elapsed < Duration::from_secs(6), "took {elapsed:?}");
    assert_eq!(closes.len(), 3);
}

/// SIGTERM: every connected client gets close 3001 "shutdown" (the SDKs reconnect, to another
/// node if there is one) before gyre exits.
#[test]
fn sigterm_closes_clients_with_3001() {
    let (closes, status, _) = sigterm_with_clients();
    assert!(status.success(), "exit status {status}");
    for (i, close) in closes.iter().enumerate() {
        assert_eq!(
            (close.code, close.reason.as_str()),
            (3001, "shutdown"),
            "client {i}"
        );
    }
}
