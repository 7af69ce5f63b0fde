//! A Centrifugo v6 configuration that uses every proxy option (`tests/fixtures/
//! centrifugo_v6_proxies.json`: TLS of HTTP and GRPC proxies in each of Centrifugo's PEM forms,
//! gzip, the connect code transforms, named proxies, RPC namespaces, subscription streams left
//! off, Centrifugo PRO's cache_empty and state proxies) passes `gyre checkconfig` unchanged,
//! with warnings for what Gyre accepts without effect, and starts `gyre`. The PEM files are the
//! test PKI's (placeholders in the fixture).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use gyre_tests::{TestPki, free_port, gyre_binary, http_request, workspace_root};

/// The fixture with the test PKI's files and contents in place of its placeholders.
fn fixture(pki: &TestPki) -> String {
    let text = std::fs::read_to_string(
        workspace_root()
            .join("tests")
            .join("fixtures")
            .join("centrifugo_v6_proxies.json"),
    )
    .expect("read the fixture");
    let b64 = |path: &Path| {
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(path).expect("read PEM"))
    };
    let ca_text = std::fs::read_to_string(pki.ca_cert()).expect("read CA");
    let ca_json = serde_json::to_string(&ca_text).unwrap();
    let client = pki.client();
    text.replace("@PKI@", pki.dir().to_str().unwrap())
        .replace("@CA_B64@", &b64(&pki.ca_cert()))
        .replace("@CA_TEXT@", ca_json.trim_matches('"'))
        .replace("@CLIENT_CERT_B64@", &b64(&client.cert))
        .replace("@CLIENT_KEY_B64@", &b64(&client.key))
}

/// Runs `gyre <args> --config <file>` to its end (at most 20 s): success and what it printed.
fn gyre(args: &[&str], config: &Path) -> (bool, String) {
    let mut child = Command::new(gyre_binary())
        .args(args)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("GYRE_CONFIG")
        .spawn()
        .expect("spawn gyre");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "gyre {args:?} still runs");
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn a_centrifugo_v6_proxy_config_passes_checkconfig_and_starts() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(&config, fixture(&pki)).unwrap();

    let (ok, output) = gyre(&["checkconfig"], &config);
    assert!(ok, "checkconfig refused the config:\n{output}");
    assert!(output.contains("configuration is valid"), "{output}");
    for warning in [
        "warning: rpc.proxy.http.tls.insecure_skip_verify is on",
        "warning: channel.proxy.cache_empty is ignored",
        "warning: channel.proxy.state is ignored",
        "warning: channel.namespaces[0].cache_empty_proxy_enabled is ignored",
        "warning: channel.namespaces[0].state_proxy_enabled is ignored",
    ] {
        assert!(output.contains(warning), "no {warning:?} in:\n{output}");
    }

    // And it runs: the backends are not reached before a client needs them.
    let port = free_port();
    let mut child = Command::new(gyre_binary())
        .arg("--config")
        .arg(&config)
        .args(["--port", &port.to_string(), "--address", "127.0.0.1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .env_remove("GYRE_CONFIG")
        .spawn()
        .expect("spawn gyre");
    let deadline = Instant::now() + Duration::from_secs(20);
    let healthy = loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("gyre exited with {status}");
        }
        if let Ok((200, _)) = http_request(port, "GET", "/health", &[], b"") {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(healthy, "gyre did not answer /health");
}

#[test]
fn checkconfig_still_names_a_misspelt_or_unreadable_proxy_tls_key() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    let text = fixture(&pki);

    let misspelt = text.replacen(
        "\"server_name\": \"backend.example.com\"",
        "\"server_nam\": \"x\"",
        1,
    );
    std::fs::write(&config, misspelt).unwrap();
    let (ok, output) = gyre(&["checkconfig"], &config);
    assert!(!ok, "{output}");
    assert!(
        output.contains("client.proxy.connect.http.tls.server_nam"),
        "{output}"
    );

    let unreadable = text.replacen(
        &format!("{}/client.key\"", pki.dir().display()),
        "/nonexistent/client.key\"",
        1,
    );
    std::fs::write(&config, unreadable).unwrap();
    let (ok, output) = gyre(&["checkconfig"], &config);
    assert!(!ok, "{output}");
    assert!(
        output.contains("`client.proxy.connect.http.tls.key_pem`")
            && output.contains("/nonexistent/client.key"),
        "{output}"
    );
}
