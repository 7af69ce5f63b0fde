//! Backend hooks over TLS: `http.tls` against the Python backend serving HTTPS with a
//! certificate of the test PKI and requiring a client certificate, and `grpc.tls` (with
//! `grpc.compression`) against the tonic backend serving GRPC over rustls. Each case checks what
//! the client gets, what the backend saw (the client certificate, the gzip encoding), and what
//! gyre logs when the handshake fails: a failed TLS call is a backend that is down (error 100 at
//! once, no hang), with a hint naming the key to change.

use std::time::{Duration, Instant};

use base64::Engine as _;
use gyre_tests::ws_client::{WsClient, WsOptions, hs256_token};
use gyre_tests::{GrpcBackend, GrpcOptions, GyreProcess, HttpBackend, TLS_SERVER_NAME, TestPki};
use serde_json::{Value, json};

fn call(client: &mut WsClient, id: u32, mut command: Value) -> Value {
    command["id"] = json!(id);
    client.send_text(&command.to_string());
    client.reply(id).json().clone()
}

fn ws(gyre: &GyreProcess, cookie: &str) -> WsClient {
    let options = WsOptions {
        headers: vec![("Cookie".to_owned(), cookie.to_owned())],
        ..Default::default()
    };
    WsClient::connect_with(&gyre.ws_url(), options).expect("handshake")
}

/// A client connected with a token (no connect proxy involved).
fn token_client(gyre: &GyreProcess, user: &str) -> WsClient {
    let mut client = WsClient::connect_with(&gyre.ws_url(), WsOptions::default()).unwrap();
    let token = hs256_token(gyre.hmac_secret(), &json!({"sub": user}));
    let reply = call(&mut client, 1, json!({"connect": {"token": token}}));
    assert!(reply.get("error").is_none(), "{reply}");
    client
}

const INTERNAL: &str = r#"{"code":100,"message":"internal server error","temporary":true}"#;

/// An RPC call that must fail like a backend that is down: error 100, well within the timeout.
fn fails_fast(client: &mut WsClient, id: u32, method: &str) {
    let started = Instant::now();
    let reply = call(client, id, json!({"rpc": {"method": method}}));
    assert_eq!(
        reply["error"],
        serde_json::from_str::<Value>(INTERNAL).unwrap(),
        "{method}: {reply}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{method}: {:?}",
        started.elapsed()
    );
}

fn wait_for_log(gyre: &GyreProcess, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !gyre.log().contains(text) {
        assert!(
            Instant::now() < deadline,
            "no {text:?} in the log:\n{}",
            gyre.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn toml_path(path: &std::path::Path) -> String {
    format!("{:?}", path.to_str().unwrap())
}

#[test]
fn https_backend_with_a_client_certificate() {
    let pki = TestPki::new();
    let backend = HttpBackend::start_tls(&pki, &pki.server(), true);
    let client = pki.client();
    let ca = toml_path(&pki.ca_cert());
    let other_ca = toml_path(&pki.other_ca_cert());
    // Centrifugo v6's forms of the PEM keys: a path, PEM text, base64 of the PEM text.
    let cert_path = toml_path(&client.cert);
    let cert_text = format!("{:?}", client.cert_pem());
    let key_b64 = format!(
        "{:?}",
        base64::engine::general_purpose::STANDARD.encode(client.key_pem())
    );
    let connect = backend.url("/centrifugo/connect");
    let rpc = backend.url("/centrifugo/rpc");
    let gyre = GyreProcess::builder()
        .extra_toml(&format!(
            r#"
[client.proxy.connect]
enabled = true
endpoint = "{connect}"
http_headers = ["Cookie"]
[client.proxy.connect.http.tls]
enabled = true
server_ca_pem = {ca}
cert_pem = {cert_text}
key_pem = {key_b64}

[[proxies]]
name = "mtls"
endpoint = "{rpc}"
http = {{ tls = {{ enabled = true, server_ca_pem = {ca}, cert_pem = {cert_path}, key_pem_file = {key} }} }}
[[proxies]]
name = "no-cert"
endpoint = "{rpc}"
http = {{ tls = {{ enabled = true, server_ca_pem = {ca} }} }}
[[proxies]]
name = "wrong-ca"
endpoint = "{rpc}"
http = {{ tls = {{ enabled = true, server_ca_pem = {other_ca}, cert_pem = {cert_path}, key_pem = {key} }} }}
[[proxies]]
name = "insecure"
endpoint = "{rpc}"
http = {{ tls = {{ enabled = true, server_ca_pem = {other_ca}, insecure_skip_verify = true, cert_pem = {cert_path}, key_pem = {key} }} }}
[[proxies]]
name = "system-roots"
endpoint = "{rpc}"

[[rpc.namespaces]]
name = "mtls"
proxy_enabled = true
proxy_name = "mtls"
[[rpc.namespaces]]
name = "nocert"
proxy_enabled = true
proxy_name = "no-cert"
[[rpc.namespaces]]
name = "wrongca"
proxy_enabled = true
proxy_name = "wrong-ca"
[[rpc.namespaces]]
name = "insecure"
proxy_enabled = true
proxy_name = "insecure"
[[rpc.namespaces]]
name = "roots"
proxy_enabled = true
proxy_name = "system-roots"
"#,
            key = toml_path(&client.key),
        ))
        .start();
    wait_for_log(&gyre, "proxies[3].http.tls.insecure_skip_verify is on");

    // The connect proxy over HTTPS with the client certificate: the backend names the user.
    let mut alice = ws(&gyre, "session=s-alice");
    let reply = call(&mut alice, 1, json!({"connect": {}}));
    assert_eq!(
        reply["connect"]["data"]["greeting"], "hello alice",
        "{reply}"
    );
    let request = backend
        .requests_to("connect")
        .pop()
        .expect("connect request");
    assert_eq!(request["client_cert"], "gyre test client", "{request}");

    let echo = call(
        &mut alice,
        2,
        json!({"rpc": {"method": "mtls:echo", "data": {"n": 1}}}),
    );
    assert_eq!(echo["rpc"]["data"]["echo"], json!({"n": 1}), "{echo}");
    assert_eq!(echo["rpc"]["data"]["user"], "alice");
    let request = backend.requests_to("rpc").pop().expect("rpc request");
    assert_eq!(request["client_cert"], "gyre test client", "{request}");

    // No client certificate: the backend refuses the handshake.
    fails_fast(&mut alice, 3, "nocert:echo");
    wait_for_log(&gyre, "the server refused gyre's client certificate");
    // A CA that did not sign the backend's certificate.
    fails_fast(&mut alice, 4, "wrongca:echo");
    wait_for_log(
        &gyre,
        "the server's certificate is not trusted: give its CA in proxies[2].http.tls.server_ca_pem",
    );
    // The system's roots do not know the test CA either; the hint says where it goes.
    fails_fast(&mut alice, 5, "roots:echo");
    wait_for_log(
        &gyre,
        "give its CA in proxies[4].http.tls.server_ca_pem (with proxies[4].http.tls.enabled = true)",
    );
    // insecure_skip_verify: the same wrong CA, and the call goes through.
    let echo = call(&mut alice, 6, json!({"rpc": {"method": "insecure:echo"}}));
    assert!(echo.get("error").is_none(), "{echo}");
    assert_eq!(echo["rpc"]["data"]["user"], "alice", "{echo}");
    // Only the calls that passed the handshake reached the backend.
    assert_eq!(backend.requests_to("rpc").len(), 2);
}

#[test]
fn https_backend_certificate_for_another_name_needs_server_name() {
    let pki = TestPki::new();
    // Valid for TLS_SERVER_NAME only, while gyre calls https://127.0.0.1.
    let backend = HttpBackend::start_tls(&pki, &pki.named_server(), false);
    let ca = toml_path(&pki.ca_cert());
    let rpc = backend.url("/centrifugo/rpc");
    let gyre = GyreProcess::builder()
        .extra_toml(&format!(
            r#"
[[proxies]]
name = "named"
endpoint = "{rpc}"
http = {{ tls = {{ enabled = true, server_ca_pem_file = {ca}, server_name = "{TLS_SERVER_NAME}" }} }}
[[proxies]]
name = "unnamed"
endpoint = "{rpc}"
http = {{ tls = {{ enabled = true, server_ca_pem_file = {ca} }} }}
[[rpc.namespaces]]
name = "named"
proxy_enabled = true
proxy_name = "named"
[[rpc.namespaces]]
name = "unnamed"
proxy_enabled = true
proxy_name = "unnamed"
"#
        ))
        .start();
    let mut client = token_client(&gyre, "dave");
    let echo = call(&mut client, 2, json!({"rpc": {"method": "named:whoami"}}));
    assert_eq!(echo["rpc"]["data"]["user"], "dave", "{echo}");
    fails_fast(&mut client, 3, "unnamed:whoami");
    wait_for_log(&gyre, "set proxies[1].http.tls.server_name");
}

#[test]
fn grpc_backend_over_tls_with_gzip() {
    let pki = TestPki::new();
    let backend = GrpcBackend::start_with(GrpcOptions {
        tls: Some(pki.server()),
        client_ca: Some(pki.ca_cert()),
        gzip: true,
    });
    // Valid for TLS_SERVER_NAME only; no client certificate needed.
    let named = GrpcBackend::start_with(GrpcOptions {
        tls: Some(pki.named_server()),
        ..Default::default()
    });
    let client = pki.client();
    let ca = toml_path(&pki.ca_cert());
    let other_ca = toml_path(&pki.other_ca_cert());
    let (cert, key) = (toml_path(&client.cert), toml_path(&client.key));
    let endpoint = backend.endpoint();
    let named_endpoint = named.endpoint();
    let gyre = GyreProcess::builder()
        .extra_toml(&format!(
            r#"
[client.proxy.connect]
enabled = true
endpoint = "{endpoint}"
http_headers = ["Cookie"]
[client.proxy.connect.grpc]
compression = true
[client.proxy.connect.grpc.tls]
enabled = true
server_ca_pem_file = {ca}
cert_pem_file = {cert}
key_pem_file = {key}

[[proxies]]
name = "no-cert"
endpoint = "{endpoint}"
grpc = {{ compression = true, tls = {{ enabled = true, server_ca_pem = {ca} }} }}
[[proxies]]
name = "wrong-ca"
endpoint = "{endpoint}"
grpc = {{ compression = true, tls = {{ enabled = true, server_ca_pem = {other_ca}, cert_pem = {cert}, key_pem = {key} }} }}
[[proxies]]
name = "plaintext"
endpoint = "{endpoint}"
[[proxies]]
name = "named"
endpoint = "{named_endpoint}"
grpc = {{ tls = {{ enabled = true, server_ca_pem = {ca}, server_name = "{TLS_SERVER_NAME}" }} }}
[[proxies]]
name = "unnamed"
endpoint = "{named_endpoint}"
grpc = {{ tls = {{ enabled = true, server_ca_pem = {ca} }} }}
[[rpc.namespaces]]
name = "nocert"
proxy_enabled = true
proxy_name = "no-cert"
[[rpc.namespaces]]
name = "wrongca"
proxy_enabled = true
proxy_name = "wrong-ca"
[[rpc.namespaces]]
name = "plaintext"
proxy_enabled = true
proxy_name = "plaintext"
[[rpc.namespaces]]
name = "named"
proxy_enabled = true
proxy_name = "named"
[[rpc.namespaces]]
name = "unnamed"
proxy_enabled = true
proxy_name = "unnamed"
"#
        ))
        .start();

    let mut alice = ws(&gyre, "session=s-alice");
    let reply = call(&mut alice, 1, json!({"connect": {}}));
    assert_eq!(
        reply["connect"]["data"],
        json!({"greeting": "hello alice", "via": "grpc"}),
        "{reply}"
    );
    // The backend got the call over TLS from a client with a certificate, gzip-compressed, and
    // was told gzip answers are welcome.
    assert_eq!(backend.tls_connections(), [true]);
    let connect = backend.requests_to("Connect").pop().expect("Connect call");
    let metadata = &connect["metadata"];
    assert_eq!(metadata["grpc-encoding"], "gzip", "{metadata}");
    assert!(
        metadata["grpc-accept-encoding"]
            .as_str()
            .is_some_and(|v| v.contains("gzip")),
        "{metadata}"
    );
    assert_eq!(metadata["cookie"], "session=s-alice");

    // Without a client certificate the server ends the connection after the handshake (what
    // gyre sees is a closed connection, not the reason).
    fails_fast(&mut alice, 2, "nocert:echo");
    fails_fast(&mut alice, 3, "wrongca:echo");
    wait_for_log(&gyre, "give its CA in proxies[1].grpc.tls.server_ca_pem");
    // Plaintext GRPC to a TLS server fails the same way, without hanging.
    fails_fast(&mut alice, 4, "plaintext:echo");
    // Only the connect call got through the handshake with a certificate.
    assert_eq!(backend.requests_to("RPC").len(), 0);

    let echo = call(
        &mut alice,
        5,
        json!({"rpc": {"method": "named:echo", "data": {"x": 1}}}),
    );
    assert_eq!(echo["rpc"]["data"], json!({"x": 1}), "{echo}");
    let rpc = named.requests_to("RPC").pop().expect("RPC call");
    assert!(
        rpc["metadata"].get("grpc-encoding").is_none(),
        "no compression asked: {rpc}"
    );
    assert_eq!(named.tls_connections(), [false]);
    fails_fast(&mut alice, 6, "unnamed:echo");
    wait_for_log(&gyre, "set proxies[4].grpc.tls.server_name");
}
