//! Where `gyre` serves what: `http_server.internal_port` takes the API, `/metrics`, `/health`
//! and the admin UI off the public port; `http_server.handler_prefix` mounts every endpoint
//! under a path; `http_server.tls` serves the public port over TLS, which centrifuge-js reaches
//! over wss:// and https:// with a certificate made for the test.

use std::process::{Command, Stdio};
use std::time::Duration;

use gyre_proto::Encoding;
use gyre_tests::ws_client::{WsClient, WsOptions, cmd, hs256_token, unix_now};
use gyre_tests::{
    GyreProcess, Namespace, SdkScript, TestPki, free_port, gyre_binary, http_request,
    require_node_sdk,
};
use serde_json::{Value, json};

fn status(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> u16 {
    http_request(port, method, path, headers, b"{}")
        .unwrap_or_else(|e| panic!("{method} {path} on {port}: {e}"))
        .0
}

fn token(gyre: &GyreProcess, user: &str) -> String {
    hs256_token(
        gyre.hmac_secret(),
        &json!({"sub": user, "exp": unix_now() + 3600}),
    )
}

/// A client connects and subscribes at `url`.
fn connects(gyre: &GyreProcess, url: &str) {
    let mut client = WsClient::connect(url, Encoding::Json);
    let reply = client.call(cmd::connect(0, &token(gyre, "alice")));
    assert!(reply.connect.is_some(), "connect at {url}: {reply:?}");
    let reply = client.call(cmd::subscribe(1, "chat:ports"));
    assert!(reply.error.is_none(), "subscribe at {url}: {reply:?}");
}

#[test]
fn the_internal_port_takes_the_api_metrics_and_health() {
    let gyre = GyreProcess::builder()
        .namespace(Namespace::full("chat", 10, 300))
        .internal_port()
        .start();
    let (public, internal) = (gyre.port(), gyre.internal_port());
    assert_ne!(public, internal);
    let key = [("X-API-Key", gyre.api_key())];
    for (method, path) in [
        ("POST", "/api/info"),
        ("GET", "/metrics"),
        ("GET", "/health"),
    ] {
        assert_eq!(
            status(public, method, path, &key),
            404,
            "{path} on the public port"
        );
        assert_eq!(
            status(internal, method, path, &key),
            200,
            "{path} on the internal one"
        );
    }
    // Client endpoints stay public only.
    connects(&gyre, &gyre.ws_url());
    let internal_ws = format!("ws://127.0.0.1:{internal}/connection/websocket");
    let refused = WsClient::connect_with(&internal_ws, WsOptions::for_encoding(Encoding::Json))
        .err()
        .expect("no WebSocket on the internal port");
    assert_eq!(refused.status, Some(404), "{refused:?}");
    assert_eq!(status(internal, "GET", "/", &[]), 404, "no demo page");
    assert_eq!(status(public, "GET", "/", &[]), 200, "the demo page");
}

#[test]
fn the_handler_prefix_mounts_every_endpoint() {
    let gyre = GyreProcess::builder()
        .namespace(Namespace::full("chat", 10, 300))
        .handler_prefix("/realtime")
        .start();
    let port = gyre.port();
    assert!(gyre.ws_url().contains("/realtime/connection/websocket"));
    connects(&gyre, &gyre.ws_url());
    let reply: Value = serde_json::from_str(&gyre.api("info", "{}")).unwrap();
    assert!(reply["result"]["nodes"].is_array(), "{reply}");
    assert_eq!(status(port, "GET", "/realtime/health", &[]), 200);
    assert_eq!(status(port, "GET", "/realtime", &[]), 200, "the demo page");
    for path in [
        "/health",
        "/connection/websocket",
        "/api/info",
        "/realtimex/health",
    ] {
        assert_eq!(
            status(port, "GET", path, &[]),
            404,
            "{path} outside the prefix"
        );
    }
}

#[test]
fn centrifugo_handler_prefixes_move_single_endpoints() {
    let gyre = GyreProcess::builder()
        .namespace(Namespace::full("chat", 10, 300))
        .handler_prefix("/realtime")
        .http_api_option("handler_prefix = \"/v1/api\"")
        .extra_toml("[websocket]\nhandler_prefix = \"/ws\"")
        .start();
    let port = gyre.port();
    connects(&gyre, &format!("ws://127.0.0.1:{port}/realtime/ws"));
    let key = [("X-API-Key", gyre.api_key())];
    assert_eq!(status(port, "POST", "/realtime/v1/api/info", &key), 200);
    // Their standard paths are no endpoints any more.
    assert_eq!(status(port, "POST", "/realtime/api/info", &key), 404);
    let old = format!("ws://127.0.0.1:{port}/realtime/connection/websocket");
    let refused = WsClient::connect_with(&old, WsOptions::for_encoding(Encoding::Json))
        .err()
        .expect("no WebSocket at the standard path");
    assert_eq!(refused.status, Some(404), "{refused:?}");
}

#[test]
fn clients_connect_over_tls_without_a_terminating_proxy() {
    let pki = TestPki::new();
    let server = pki.server();
    let gyre = GyreProcess::builder()
        .namespace(Namespace::full("chat", 10, 300))
        .internal_port()
        .extra_toml("[http_stream]\nenabled = true")
        // The internal port stays plain (Centrifugo's switch), so the API is plain HTTP.
        .http_server_option("tls_external = true")
        .http_server_option("[http_server.tls]")
        .http_server_option("enabled = true")
        .http_server_option(&format!(
            "cert_pem_file = {:?}",
            server.cert.display().to_string()
        ))
        .http_server_option(&format!("key_pem = {:?}", server.key.display().to_string()))
        .start();
    // Plain HTTP to the TLS port gets no HTTP answer.
    assert!(
        http_request(gyre.port(), "GET", "/connection/websocket", &[], b"").is_err(),
        "plain HTTP answered on the TLS port"
    );
    require_node_sdk();
    let url = format!("wss://localhost:{}/connection/websocket", gyre.port());
    let output = SdkScript::node("tls.mjs")
        .gyre(&gyre)
        .arg("url", &url)
        .arg("channel", "chat:tls")
        .env("NODE_EXTRA_CA_CERTS", pki.ca_cert().display())
        .run();
    let result: Value = serde_json::from_str(output.expect_success()).unwrap();
    for transport in ["websocket", "http_stream"] {
        let received = result[transport]
            .as_array()
            .unwrap_or_else(|| panic!("{result}"));
        assert_eq!(received.len(), 1, "{transport}: {result}");
        assert_eq!(received[0]["data"], json!({"over": "tls"}), "{transport}");
    }
}

/// `curl` over HTTPS trusting `ca`: the status, or `None` when no HTTPS answer came.
fn https_status(ca: &std::path::Path, url: &str) -> Option<u16> {
    let output = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
        ])
        .arg("--cacert")
        .arg(ca)
        .arg(url)
        .output()
        .expect("curl");
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .ok()
        .filter(|status| *status != 0)
}

/// As in Centrifugo, `http_server.tls` covers the internal port too unless `tls_external`.
#[test]
fn the_internal_port_speaks_tls_too_by_default() {
    let pki = TestPki::new();
    let server = pki.server();
    let dir = tempfile::tempdir().unwrap();
    let (public, internal) = (free_port(), free_port());
    let config = dir.path().join("gyre.toml");
    std::fs::write(
        &config,
        format!(
            "[http_server]\naddress = \"127.0.0.1\"\nport = {public}\n\
             internal_address = \"127.0.0.1\"\ninternal_port = \"{internal}\"\n\
             [http_server.tls]\nenabled = true\ncert_pem = {:?}\nkey_pem_file = {:?}\n",
            server.cert_pem(),
            server.key.display().to_string(),
        ),
    )
    .unwrap();
    let mut child = Command::new(gyre_binary())
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn gyre");
    let ca = pki.ca_cert();
    let health = format!("https://localhost:{internal}/health");
    let started = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        https_status(&ca, &health) == Some(200)
    });
    let public_health = https_status(&ca, &format!("https://localhost:{public}/health"));
    let plain_internal = http_request(internal, "GET", "/health", &[], b"");
    let _ = child.kill();
    let _ = child.wait();
    assert!(started, "no HTTPS /health on the internal port");
    assert_eq!(public_health, Some(404), "/health is internal");
    assert!(
        plain_internal.is_err(),
        "plain HTTP on the internal TLS port"
    );
}

/// `gyre checkconfig --config <file with toml>`: success and stderr.
fn checkconfig(toml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gyre.toml");
    std::fs::write(&config, toml).unwrap();
    let output = Command::new(gyre_binary())
        .arg("checkconfig")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_tls_server_without_its_key_is_refused_naming_the_key_and_client_cas_are_ignored_aloud() {
    let (ok, stderr) =
        checkconfig("[http_server.tls]\nenabled = true\ncert_pem_file = \"/nonexistent.pem\"\n");
    assert!(!ok, "{stderr}");
    assert!(stderr.contains("http_server.tls.key_pem"), "{stderr}");

    let (ok, stderr) = checkconfig("[http_server.tls]\nenabled = true\n");
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("http_server.tls.cert_pem and key_pem"),
        "{stderr}"
    );

    let pki = TestPki::new();
    let server = pki.server();
    let (ok, stderr) = checkconfig(&format!(
        "[http_server.tls]\nenabled = true\ncert_pem_file = {:?}\nkey_pem_file = {:?}\n\
         client_ca_pem_file = {:?}\n",
        server.cert.display().to_string(),
        server.key.display().to_string(),
        pki.ca_cert().display().to_string(),
    ));
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("warning: http_server.tls.client_ca_pem is ignored"),
        "{stderr}"
    );
}
