//! SockJS at `/connection/sockjs`, at the wire level (SockJS protocol 0.3.3): the info
//! endpoint, sessions of the `xhr` (polling), `xhr_streaming` and `eventsource` receivers with
//! `xhr_send`, the `websocket` sub-transport, heartbeats, the disconnect delay, the 2010 answer
//! to a second receiver, close frames with the session's disconnect, and refused payloads.
//! Each SockJS message carries Centrifuge JSON frames (commands in, newline-joined replies out).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use gyre_tests::ws_client::{hs256_token, unix_now};
use gyre_tests::{GyreProcess, Namespace};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(5);

/// gyre with SockJS on, 1 s heartbeats and a 1 s disconnect delay, and a `chat` namespace.
fn gyre() -> GyreProcess {
    GyreProcess::builder()
        .namespace(Namespace::full("chat", 100, 300))
        .extra_toml(
            "[sockjs]\nenabled = true\nheartbeat_delay = \"1s\"\ndisconnect_delay = \"1s\"\n",
        )
        .start()
}

/// A session id no other test uses.
fn new_session() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    format!(
        "s{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn session_path(session: &str, transport: &str) -> String {
    format!("/connection/sockjs/000/{session}/{transport}")
}

fn token(gyre: &GyreProcess, user: &str) -> String {
    hs256_token(
        gyre.hmac_secret(),
        &json!({"sub": user, "exp": unix_now() + 3600}),
    )
}

fn connect_command(id: u32, token: &str) -> String {
    json!({"id": id, "connect": {"token": token}}).to_string()
}

// ------------------------------------------------------------------------------------------------
// A raw HTTP/1.1 exchange whose body can be read as it arrives (streaming receivers).

struct Exchange {
    stream: TcpStream,
    status: u16,
    headers: Vec<(String, String)>,
    chunked: bool,
    /// Received and not yet decoded (chunked framing).
    raw: Vec<u8>,
    body: Vec<u8>,
    ended: bool,
}

impl Exchange {
    fn open(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Self {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to gyre");
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).expect("write request");
        stream.write_all(body).expect("write body");
        stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("read timeout");
        let mut exchange = Self {
            stream,
            status: 0,
            headers: Vec::new(),
            chunked: false,
            raw: Vec::new(),
            body: Vec::new(),
            ended: false,
        };
        let deadline = Instant::now() + WAIT;
        let head_end = loop {
            if let Some(at) = exchange.raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            assert!(
                exchange.read_some() && Instant::now() < deadline,
                "no response head for {method} {path}"
            );
        };
        let head = String::from_utf8_lossy(&exchange.raw[..head_end]).into_owned();
        exchange.raw.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        exchange.status = lines
            .next()
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|code| code.parse().ok())
            .expect("status line");
        for line in lines {
            if let Some((name, value)) = line.split_once(':') {
                exchange
                    .headers
                    .push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        exchange.chunked = exchange
            .header("transfer-encoding")
            .is_some_and(|v| v.contains("chunked"));
        exchange.decode();
        exchange
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Asserts a 200 answer whose Content-Type starts with `content_type`.
    fn assert_ok_with_type(&self, content_type: &str) {
        assert_eq!(self.status, 200);
        assert!(
            self.header("content-type")
                .is_some_and(|v| v.starts_with(content_type)),
            "{:?}",
            self.headers
        );
    }

    /// Reads what is there (waiting up to 50 ms); false once the connection is closed.
    fn read_some(&mut self) -> bool {
        let mut buf = [0; 16 * 1024];
        match self.stream.read(&mut buf) {
            Ok(0) => false,
            Ok(n) => {
                self.raw.extend_from_slice(&buf[..n]);
                true
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                true
            }
            Err(_) => false,
        }
    }

    fn decode(&mut self) {
        if !self.chunked {
            self.body.append(&mut self.raw);
            return;
        }
        while let Some(line_end) = self.raw.windows(2).position(|w| w == b"\r\n") {
            let size_text = String::from_utf8_lossy(&self.raw[..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .unwrap_or_else(|_| panic!("bad chunk size {size_text:?}"));
            if self.raw.len() < line_end + 2 + size + 2 {
                return;
            }
            self.body
                .extend_from_slice(&self.raw[line_end + 2..line_end + 2 + size]);
            self.raw.drain(..line_end + 2 + size + 2);
            if size == 0 {
                self.ended = true;
                return;
            }
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Reads until the body so far satisfies `done`; returns the body so far.
    fn read_until(&mut self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let text = self.text();
            if done(&text) {
                return text;
            }
            assert!(
                !self.ended && Instant::now() < deadline,
                "waited for {what}; body so far: {text:?}"
            );
            if !self.read_some() {
                self.decode();
                self.ended = true;
                continue;
            }
            self.decode();
        }
    }

    /// Reads the body to its end.
    fn finish(mut self) -> String {
        let deadline = Instant::now() + WAIT;
        while !self.ended {
            assert!(
                Instant::now() < deadline,
                "body did not end: {:?}",
                self.text()
            );
            if !self.read_some() {
                self.ended = true;
            }
            self.decode();
        }
        self.text()
    }

    /// Takes the body read so far (the next `read_until` sees only what follows).
    fn take(&mut self) -> String {
        let text = self.text();
        self.body.clear();
        text
    }
}

fn request(port: u16, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let exchange = Exchange::open(port, method, path, &[], body);
    let status = exchange.status;
    (status, exchange.finish())
}

fn poll(port: u16, session: &str) -> String {
    let (status, body) = request(port, "POST", &session_path(session, "xhr"), b"");
    assert_eq!(status, 200, "xhr poll: {body:?}");
    body
}

fn send(port: u16, session: &str, messages: &[&str]) -> (u16, String) {
    let payload = serde_json::to_vec(messages).expect("JSON");
    request(port, "POST", &session_path(session, "xhr_send"), &payload)
}

fn send_ok(port: u16, session: &str, messages: &[&str]) {
    let (status, body) = send(port, session, messages);
    assert_eq!(status, 204, "xhr_send: {body:?}");
}

/// The Centrifuge replies of an `a[...]` frame (each message string holds newline-joined
/// replies).
fn replies(frame: &str) -> Vec<Value> {
    let payload = frame
        .strip_prefix('a')
        .unwrap_or_else(|| panic!("not a message frame: {frame:?}"));
    let messages: Vec<String> = serde_json::from_str(payload).expect("a JSON array of strings");
    messages
        .iter()
        .flat_map(|message| message.split('\n'))
        .map(|reply| serde_json::from_str(reply).expect("a JSON reply"))
        .collect()
}

/// Polls until `want` replies arrived (heartbeats skipped); panics on a close frame.
fn poll_replies(port: u16, session: &str, want: usize) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    while got.len() < want {
        assert!(Instant::now() < deadline, "only {got:?}");
        let body = poll(port, session);
        let frame = body.strip_suffix('\n').expect("frames end with a newline");
        match frame {
            "h" => {}
            // A subscriber may or may not see its own join, depending on timing: skipped.
            f if f.starts_with('a') => got.extend(
                replies(f)
                    .into_iter()
                    .filter(|r| r["push"]["join"].is_null() && r["push"]["leave"].is_null()),
            ),
            other => panic!("unexpected frame {other:?} after {got:?}"),
        }
    }
    got
}

/// Opens a polling session and connects it as `user`; returns the connect result.
fn connect_polling(gyre: &GyreProcess, session: &str, user: &str) -> Value {
    let port = gyre.port();
    assert_eq!(poll(port, session), "o\n", "a new session opens");
    send_ok(port, session, &[&connect_command(1, &token(gyre, user))]);
    let connected = poll_replies(port, session, 1);
    assert_eq!(connected[0]["id"], 1, "{connected:?}");
    connected[0]["connect"].clone()
}

// ------------------------------------------------------------------------------------------------

#[test]
fn info_has_the_sockjs_fields_and_no_cache() {
    let gyre = gyre();
    let exchange = Exchange::open(
        gyre.port(),
        "GET",
        "/connection/sockjs/info",
        &[("Origin", "http://example.test")],
        b"",
    );
    exchange.assert_ok_with_type("application/json");
    assert!(
        exchange
            .header("cache-control")
            .is_some_and(|v| v.contains("no-store") && v.contains("no-cache")),
        "{:?}",
        exchange.headers
    );
    assert_eq!(
        exchange.header("access-control-allow-origin"),
        Some("http://example.test")
    );
    assert_eq!(
        exchange.header("access-control-allow-credentials"),
        Some("true")
    );
    let info: Value = serde_json::from_str(&exchange.finish()).expect("JSON");
    assert_eq!(info["websocket"], true);
    assert_eq!(info["cookie_needed"], false);
    assert_eq!(info["origins"], json!(["*:*"]));
    assert!(
        info["entropy"]
            .as_u64()
            .is_some_and(|e| e <= u64::from(u32::MAX)),
        "{info}"
    );

    let (status, greeting) = request(gyre.port(), "GET", "/connection/sockjs", b"");
    assert_eq!((status, greeting.as_str()), (200, "Welcome to SockJS!\n"));
    let (status, _) = request(gyre.port(), "OPTIONS", "/connection/sockjs/info", b"");
    assert_eq!(status, 204, "info preflight");
}

#[test]
fn xhr_polling_connects_subscribes_and_publishes() {
    let gyre = gyre();
    let port = gyre.port();
    let session = new_session();
    let connect = connect_polling(&gyre, &session, "alice");
    assert!(connect["client"].is_string(), "{connect}");

    // Two commands in one SockJS message, one in another: all reach the session in order.
    let subscribe = json!({"id": 2, "subscribe": {"channel": "chat:poll"}}).to_string();
    let publish =
        json!({"id": 3, "publish": {"channel": "chat:poll", "data": {"n": 1}}}).to_string();
    send_ok(port, &session, &[&subscribe, &publish]);
    let got = poll_replies(port, &session, 3);
    assert_eq!(got[0]["id"], 2, "{got:?}");
    assert!(got[0]["subscribe"].is_object(), "{got:?}");
    let publication = got
        .iter()
        .find(|r| r["push"]["pub"].is_object())
        .unwrap_or_else(|| panic!("no publication in {got:?}"));
    assert_eq!(publication["push"]["channel"], "chat:poll");
    assert_eq!(publication["push"]["pub"]["data"], json!({"n": 1}));
    assert!(got.iter().any(|r| r["id"] == 3), "publish reply: {got:?}");

    // A publication from the server API arrives on the next poll.
    gyre.api("publish", r#"{"channel":"chat:poll","data":{"n":2}}"#);
    let got = poll_replies(port, &session, 1);
    assert_eq!(got[0]["push"]["pub"]["data"], json!({"n": 2}), "{got:?}");
}

#[test]
fn a_waiting_poll_gets_a_heartbeat() {
    let gyre = gyre();
    let port = gyre.port();
    let session = new_session();
    connect_polling(&gyre, &session, "alice");
    let started = Instant::now();
    assert_eq!(poll(port, &session), "h\n");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(3),
        "heartbeat after {waited:?} (heartbeat_delay 1s)"
    );
}

#[test]
fn xhr_streaming_starts_with_the_prelude_and_streams_frames() {
    let gyre = gyre();
    let port = gyre.port();
    let session = new_session();
    let mut stream = Exchange::open(
        port,
        "POST",
        &session_path(&session, "xhr_streaming"),
        &[],
        b"",
    );
    stream.assert_ok_with_type("application/javascript");
    let prelude = format!("{}\n", "h".repeat(2048));
    let start = stream.read_until("prelude and open frame", |t| t.len() >= 2051);
    assert_eq!(start, format!("{prelude}o\n"));
    stream.take();

    send_ok(port, &session, &[&connect_command(1, &token(&gyre, "bob"))]);
    let frame = stream.read_until("connect reply", |t| t.ends_with('\n'));
    let got = replies(frame.trim_end());
    assert_eq!(got[0]["id"], 1, "{got:?}");
    stream.take();

    // Idle: heartbeats every second on the open stream.
    let heartbeats = stream.read_until("two heartbeats", |t| t == "h\nh\n");
    assert_eq!(heartbeats, "h\nh\n");
}

#[test]
fn xhr_streaming_ends_after_the_byte_limit_and_the_session_goes_on() {
    let gyre = gyre();
    let port = gyre.port();
    let session = new_session();
    connect_polling(&gyre, &session, "carol");
    let subscribe = json!({"id": 2, "subscribe": {"channel": "chat:big"}}).to_string();
    send_ok(port, &session, &[&subscribe]);
    poll_replies(port, &session, 1);

    // 160 publications of ~1 KiB: more than the 128 KiB a stream carries.
    let filler = "x".repeat(1000);
    for n in 0..160 {
        gyre.api(
            "publish",
            &json!({"channel": "chat:big", "data": {"n": n, "filler": filler}}).to_string(),
        );
    }
    let first = Exchange::open(
        port,
        "POST",
        &session_path(&session, "xhr_streaming"),
        &[],
        b"",
    );
    let body = first.finish();
    let mut offsets: Vec<u64> = body
        .lines()
        .skip(1) // the prelude
        .filter(|frame| frame.starts_with('a'))
        .flat_map(replies)
        .filter_map(|r| r["push"]["pub"]["offset"].as_u64())
        .collect();
    assert!(
        body.len() >= 128 * 1024,
        "the stream ended early: {} bytes",
        body.len()
    );
    assert!(
        offsets.len() < 160,
        "the limit ended the stream before the backlog was written"
    );
    // The next stream of the same session continues where the first one stopped.
    let mut second = Exchange::open(
        port,
        "POST",
        &session_path(&session, "xhr_streaming"),
        &[],
        b"",
    );
    // In the frame, the publication's JSON is a string: its quotes are escaped.
    second.read_until("the rest of the publications", |t| {
        t.contains(r#"offset\":160"#)
    });
    let rest = second.take();
    offsets.extend(
        rest.lines()
            .filter(|frame| frame.starts_with('a'))
            .flat_map(replies)
            .filter_map(|r| r["push"]["pub"]["offset"].as_u64()),
    );
    assert_eq!(offsets, (1..=160).collect::<Vec<_>>());
}

#[test]
fn eventsource_frames_are_events() {
    let gyre = gyre();
    let port = gyre.port();
    let session = new_session();
    let mut events = Exchange::open(
        port,
        "GET",
        &session_path(&session, "eventsource"),
        &[],
        b"",
    );
    events.assert_ok_with_type("text/event-stream");
    let start = events.read_until("open event", |t| t.len() >= 13);
    assert_eq!(start, "\r\ndata: o\r\n\r\n");
    events.take();
    send_ok(
        port,
        &session,
        &[&connect_command(1, &token(&gyre, "dave"))],
    );
    let event = events.read_until("connect reply event", |t| t.ends_with("\r\n\r\n"));
    let frame = event
        .strip_prefix("data: ")
        .and_then(|e| e.strip_suffix("\r\n\r\n"))
        .unwrap_or_else(|| panic!("not an event: {event:?}"));
    assert_eq!(replies(frame)[0]["id"], 1);
}

#[test]
fn a_second_receiver_gets_2010_and_the_first_keeps_the_session() {
    let gyre = gyre();
    let port = gyre.port();
    let session = new_session();
    let mut stream = Exchange::open(
        port,
        "POST",
        &session_path(&session, "xhr_streaming"),
        &[],
        b"",
    );
    stream.read_until("open frame", |t| t.ends_with("o\n"));
    stream.take();

    assert_eq!(
        poll(port, &session),
        "c[2010,\"Another connection still open\"]\n"
    );
    let second = Exchange::open(
        port,
        "POST",
        &session_path(&session, "xhr_streaming"),
        &[],
        b"",
    );
    let refused = second.finish();
    assert_eq!(
        refused,
        format!(
            "{}\nc[2010,\"Another connection still open\"]\n",
            "h".repeat(2048)
        )
    );

    send_ok(
        port,
        &session,
        &[&connect_command(1, &token(&gyre, "erin"))],
    );
    let frame = stream.read_until("connect reply", |t| t.starts_with('a') && t.ends_with('\n'));
    assert_eq!(replies(frame.trim_end())[0]["id"], 1);
}

#[test]
fn a_session_without_requests_is_closed_after_the_disconnect_delay() {
    let gyre = gyre();
    let port = gyre.port();
    let session = new_session();
    connect_polling(&gyre, &session, "frank");
    std::thread::sleep(Duration::from_millis(2500));
    let (status, _) = send(
        port,
        &session,
        &["{\"id\":2,\"presence\":{\"channel\":\"chat:x\"}}"],
    );
    assert_eq!(status, 404, "the abandoned session is gone");
    // Its connection left the hub.
    let info: Value = serde_json::from_str(&gyre.api("info", "{}")).expect("JSON");
    let clients = info["result"]["nodes"][0]["num_clients"].as_u64();
    assert_eq!(clients, Some(0), "{info}");
}

#[test]
fn a_stream_whose_client_went_away_leaves_the_session_to_expire() {
    let gyre = gyre();
    let port = gyre.port();
    let session = new_session();
    connect_polling(&gyre, &session, "hank");
    let mut stream = Exchange::open(
        port,
        "POST",
        &session_path(&session, "xhr_streaming"),
        &[],
        b"",
    );
    stream.read_until("the prelude", |t| t.len() >= 2049);
    drop(stream);
    std::thread::sleep(Duration::from_millis(3000));
    let (status, _) = send(
        port,
        &session,
        &["{\"id\":2,\"presence\":{\"channel\":\"chat:x\"}}"],
    );
    assert_eq!(status, 404, "the session of the vanished stream is gone");
}

#[test]
fn the_close_frame_carries_the_disconnect() {
    let gyre = gyre();
    let port = gyre.port();
    let session = new_session();
    assert_eq!(poll(port, &session), "o\n");
    let forged = hs256_token("wrong-secret", &json!({"sub": "mallory"}));
    send_ok(port, &session, &[&connect_command(1, &forged)]);
    let deadline = Instant::now() + WAIT;
    let close = loop {
        assert!(Instant::now() < deadline, "no close frame");
        let body = poll(port, &session);
        if body.starts_with('c') {
            break body;
        }
    };
    assert_eq!(close, "c[3500,\"invalid token\"]\n");
}

#[test]
fn refused_payloads_and_unknown_sessions() {
    let gyre = gyre();
    let port = gyre.port();
    let session = new_session();
    assert_eq!(poll(port, &session), "o\n");
    let path = session_path(&session, "xhr_send");

    let (status, body) = request(port, "POST", &path, b"");
    assert_eq!((status, body.as_str()), (500, "Payload expected.\n"));
    let (status, body) = request(port, "POST", &path, b"[\"a\",");
    assert_eq!((status, body.as_str()), (500, "Broken JSON encoding.\n"));
    let (status, body) = request(port, "POST", &path, b"{\"not\":\"an array\"}");
    assert_eq!((status, body.as_str()), (500, "Broken JSON encoding.\n"));

    let (status, _) = send(port, "no-such-session", &["{}"]);
    assert_eq!(status, 404, "xhr_send to an unknown session");
    let (status, _) = request(port, "GET", &session_path(&session, "htmlfile"), b"");
    assert_eq!(status, 404, "iframe-based sub-transports are not served");
    let (status, _) = request(port, "GET", "/connection/sockjs/a.b/c/xhr", b"");
    assert_eq!(status, 404, "ids without dots");
    let (status, _) = request(port, "GET", &session_path(&session, "xhr"), b"");
    assert_eq!(status, 405, "xhr is POST");
}

#[test]
fn websocket_sub_transport_frames() {
    let gyre = gyre();
    let url = format!(
        "ws://127.0.0.1:{}/connection/sockjs/000/{}/websocket",
        gyre.port(),
        new_session()
    );
    let (mut socket, _) = tungstenite::connect(url).expect("websocket handshake");
    if let tungstenite::stream::MaybeTlsStream::Plain(tcp) = socket.get_ref() {
        tcp.set_read_timeout(Some(WAIT)).expect("read timeout");
    }
    let open = socket.read().expect("open frame");
    assert_eq!(open.to_text().ok(), Some("o"));
    let connect = json!([connect_command(1, &token(&gyre, "gina"))]).to_string();
    socket
        .send(tungstenite::Message::text(connect))
        .expect("send");
    let frame = match socket.read().expect("reply") {
        tungstenite::Message::Text(text) => text.to_string(),
        other => panic!("{other:?}"),
    };
    assert_eq!(replies(&frame)[0]["id"], 1, "{frame}");
    let heartbeat = socket.read().expect("heartbeat");
    assert_eq!(heartbeat.to_text().ok(), Some("h"));

    // Broken JSON ends the session as a bad request.
    socket
        .send(tungstenite::Message::text("[\"unterminated"))
        .expect("send");
    let close = loop {
        match socket.read().expect("close frame") {
            tungstenite::Message::Text(text) if text.starts_with('c') => break text.to_string(),
            _ => {}
        }
    };
    assert_eq!(close, "c[3501,\"bad request\"]");
}

#[test]
fn disabled_sockjs_is_404() {
    let gyre = GyreProcess::builder().start();
    let (status, body) = request(gyre.port(), "GET", "/connection/sockjs/info", b"");
    assert_eq!(status, 404);
    assert!(body.contains("sockjs.enabled"), "{body}");
}
