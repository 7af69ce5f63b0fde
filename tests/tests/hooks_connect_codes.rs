//! What a unidirectional client gets when the connect proxy refuses it or fails:
//! `client.connect_code_to_unidirectional_disconnect` (an error code becomes a chosen
//! disconnect, on uni_websocket, uni_http_stream and uni_sse) and `connect_code_to_http_response`
//! of uni_sse and uni_http_stream (the connect runs before the response, and a failed one is an
//! HTTP status). The Python backend answers `session=e-<code>` with error <code> and
//! `session=h-<status>` with that HTTP status; `http.status_to_code_transforms` turns 404 into
//! error 404.

use std::time::{Duration, Instant};

use gyre_tests::ws_client::{WsClient, WsOptions};
use gyre_tests::{GyreProcess, HttpBackend};
use serde_json::{Value, json};

const UNI_DISCONNECTS: &str = r#"
[client.connect_code_to_unidirectional_disconnect]
enabled = true
transforms = [
  { code = 403, to = { code = 4403, reason = "banned" } },
  { code = 404, to = { code = 4404, reason = "no such user" } },
  { code = 100, to = { code = 3100, reason = "backend trouble" } },
]
"#;

fn start(backend: &HttpBackend, extra: &str) -> GyreProcess {
    let connect = backend.url("/centrifugo/connect");
    GyreProcess::builder()
        .extra_toml(&format!(
            r#"
[client.proxy.connect]
enabled = true
endpoint = "{connect}"
http_headers = ["Cookie"]
[client.proxy.connect.http]
status_to_code_transforms = [{{ status_code = 404, to_error = {{ code = 404, message = "not found" }} }}]
[uni_websocket]
enabled = true
{extra}
"#
        ))
        .start()
}

/// `(status, body)` of a uni_http_stream POST or a uni_sse GET with `cookie`, read until the
/// server closes (a refused connect ends the response) or the connect push arrived, for at most
/// 5 s. A streamed body keeps its chunk framing lines.
fn uni_request(gyre: &GyreProcess, transport: &str, cookie: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let (head, body): (&str, &[u8]) = match transport {
        "uni_http_stream" => ("POST /connection/uni_http_stream", b"{}"),
        "uni_sse" => ("GET /connection/uni_sse?cf_connect=%7B%7D", b""),
        other => panic!("{other}"),
    };
    let mut socket = std::net::TcpStream::connect(("127.0.0.1", gyre.port())).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let request = format!(
        "{head} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nCookie: {cookie}\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    socket.write_all(request.as_bytes()).unwrap();
    socket.write_all(body).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut received = Vec::new();
    let mut buf = [0; 4096];
    while Instant::now() < deadline {
        match socket.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        if String::from_utf8_lossy(&received).contains("{\"connect\"") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&received).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("{transport} {cookie}: no response: {text:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{transport} {cookie}: {head:?}"));
    (status, body.to_owned())
}

/// The disconnect push a refused unidirectional HTTP client read.
fn disconnect_of(body: &str) -> Value {
    let line = body
        .lines()
        .map(|l| l.trim_start_matches("data: "))
        .find(|l| l.starts_with("{\"disconnect\""))
        .unwrap_or_else(|| panic!("no disconnect push in {body:?}"));
    serde_json::from_str::<Value>(line).unwrap()["disconnect"].clone()
}

/// The close a uni_websocket client gets for `cookie`.
fn uni_websocket_close(gyre: &GyreProcess, cookie: &str) -> (u16, String) {
    let url = format!("ws://127.0.0.1:{}/connection/uni_websocket", gyre.port());
    let options = WsOptions {
        headers: vec![("Cookie".into(), cookie.into())],
        ..Default::default()
    };
    let mut client = WsClient::connect_with(&url, options).expect("uni handshake");
    client.send_text("{}");
    let close = client.expect_close(Duration::from_secs(5));
    (close.code, close.reason)
}

#[test]
fn connect_errors_become_the_configured_disconnects_on_unidirectional_transports() {
    let backend = HttpBackend::start();
    let gyre = start(
        &backend,
        &format!("[uni_http_stream]\nenabled = true\n[uni_sse]\nenabled = true\n{UNI_DISCONNECTS}"),
    );
    // The backend's error.
    assert_eq!(
        uni_websocket_close(&gyre, "session=e-403"),
        (4403, "banned".to_owned())
    );
    let (status, body) = uni_request(&gyre, "uni_http_stream", "session=e-403");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        disconnect_of(&body),
        json!({"code": 4403, "reason": "banned"})
    );
    // An HTTP status that status_to_code_transforms makes error 404.
    let (status, body) = uni_request(&gyre, "uni_sse", "session=h-404");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        disconnect_of(&body),
        json!({"code": 4404, "reason": "no such user"})
    );
    // A backend failure is error 100, listed too.
    assert_eq!(
        uni_websocket_close(&gyre, "session=h-500"),
        (3100, "backend trouble".to_owned())
    );
    // An error code that is not listed keeps the built-in disconnect.
    let (_, body) = uni_request(&gyre, "uni_http_stream", "session=e-409");
    assert_eq!(
        disconnect_of(&body),
        json!({"code": 3004, "reason": "internal server error"})
    );
    // The backend's own disconnect is not an error code: unchanged.
    assert_eq!(
        uni_websocket_close(&gyre, "session=none"),
        (4501, "unauthorized".to_owned())
    );
    // Bidirectional clients still get the error reply.
    let mut client = WsClient::connect_with(
        &gyre.ws_url(),
        WsOptions {
            headers: vec![("Cookie".into(), "session=e-403".into())],
            ..Default::default()
        },
    )
    .unwrap();
    client.send_text(&json!({"id": 1, "connect": {}}).to_string());
    let reply = client.reply(1).json().clone();
    assert_eq!(
        reply["error"],
        json!({"code": 403, "message": "error 403"}),
        "{reply}"
    );
    // A good session still connects.
    let url = format!("ws://127.0.0.1:{}/connection/uni_websocket", gyre.port());
    let mut uni = WsClient::connect_with(
        &url,
        WsOptions {
            headers: vec![("Cookie".into(), "session=s-alice".into())],
            ..Default::default()
        },
    )
    .unwrap();
    uni.send_text("{}");
    let push = uni
        .next_message(Duration::from_secs(5))
        .expect("connect push");
    assert!(push.json().to_string().contains("hello alice"));
}

#[test]
fn connect_codes_become_http_responses_on_uni_sse_and_uni_http_stream() {
    let backend = HttpBackend::start();
    let responses = r#"
enabled = true
[TRANSPORT.connect_code_to_http_response]
enabled = true
transforms = [
  { code = 403, to = { status_code = 403 } },
  { code = 4501, to = { status_code = 401, body = "log in first" } },
  { code = 404, to = { status_code = 404, body = "no such user" } },
]
"#;
    let gyre = start(
        &backend,
        &format!(
            "[uni_http_stream]{}\n[uni_sse]{}\n{UNI_DISCONNECTS}",
            responses.replace("TRANSPORT", "uni_http_stream"),
            responses.replace("TRANSPORT", "uni_sse"),
        ),
    );
    for transport in ["uni_http_stream", "uni_sse"] {
        // The error's own code (not the unidirectional disconnect it would become), and its
        // message as the body.
        assert_eq!(
            uni_request(&gyre, transport, "session=e-403"),
            (403, "error 403".to_owned()),
            "{transport}"
        );
        // The backend's disconnect (no cookie).
        assert_eq!(
            uni_request(&gyre, transport, "session=none"),
            (401, "log in first".to_owned()),
            "{transport}"
        );
        assert_eq!(
            uni_request(&gyre, transport, "session=h-404"),
            (404, "no such user".to_owned()),
            "{transport}"
        );
        // Unlisted failures: 500.
        assert_eq!(
            uni_request(&gyre, transport, "session=h-500"),
            (500, "Internal Server Error".to_owned()),
            "{transport}"
        );
        // A good session gets its stream, the connect push first.
        let (status, body) = uni_request(&gyre, transport, "session=s-bob");
        assert_eq!(status, 200, "{transport}: {body}");
        assert!(body.contains("hello bob"), "{transport}: {body}");
    }
    // uni_websocket has no HTTP response to change: the unidirectional disconnect.
    assert_eq!(
        uni_websocket_close(&gyre, "session=e-403"),
        (4403, "banned".to_owned())
    );
}
