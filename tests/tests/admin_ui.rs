//! The admin web UI (`admin.enabled`) on the internal port of one of two `gyre` nodes sharing a
//! Redis with the module, in a real headless Chromium (Debian `chromium` driven by npm
//! `playwright-core`): login, the nodes, a channel across nodes, publishing from the UI to
//! centrifuge-js subscribers, the API form, the live chart. Then, over plain HTTP: the session
//! token is what opens the admin API, and failed logins are throttled.
//! Skipped with a message when Chromium or the npm packages are missing, except under CI.

use gyre_tests::*;
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery staple";

fn node(redis: &RedisServer, name: &str, admin: bool) -> GyreProcess {
    let mut builder = GyreProcess::builder()
        .namespace(Namespace::full("chat", 100, 300))
        .internal_port()
        .extra_toml(&format!("[node]\nname = \"{name}\""))
        .redis(redis);
    if admin {
        builder = builder.extra_toml(&format!(
            "[admin]\nenabled = true\npassword = \"{PASSWORD}\"\nsecret = \"admin-session-secret\""
        ));
    }
    builder.start()
}

fn login(port: u16, password: &str) -> (u16, String) {
    let body = json!({ "password": password }).to_string();
    http_request(port, "POST", "/admin/auth", &[], body.as_bytes()).unwrap()
}

#[test]
fn an_operator_runs_the_cluster_from_the_admin_ui() {
    require_chromium();
    let redis = RedisServer::builder().tcp().start();
    let a = node(&redis, "node-a", true);
    let mut b = node(&redis, "node-b", false);
    let admin_port = a.internal_port();
    // Not on the public port: the internal port has it.
    assert_eq!(
        http_request(a.port(), "POST", "/admin/auth", &[], b"{}")
            .unwrap()
            .0,
        404
    );
    let screenshot = a.dir().join("admin.png");
    let output = SdkScript::node("admin_ui.mjs")
        .gyre(&a)
        .arg("url-b", b.ws_url())
        .arg("admin", format!("http://127.0.0.1:{admin_port}/"))
        .arg("password", PASSWORD)
        .arg("channel", "chat:admin")
        .arg("screenshot", screenshot.display())
        .arg("chromium", CHROMIUM)
        .run_with(|step| match step {
            "stop-b" => {
                b.kill();
                Ok(())
            }
            other => Err(format!("unknown step {other}")),
        });
    let result: Value = serde_json::from_str(output.expect_success()).unwrap();

    assert_eq!(result["unauthenticatedApi"], 401, "{result}");
    assert_eq!(result["wrongPassword"]["message"], "Wrong password.");
    assert_eq!(result["wrongPassword"]["dashboardHidden"], true);
    let nodes = result["nodes"].as_array().expect("nodes");
    for name in ["node-a", "node-b"] {
        let row = nodes
            .iter()
            .find(|row| row[0] == name)
            .unwrap_or_else(|| panic!("{name} not listed: {nodes:?}"));
        assert_eq!(row[8], "up", "{row}");
        assert_eq!(row[4], "1", "one client on {name}: {row}");
    }
    assert_eq!(result["channelRow"], json!(["chat:admin", "2"]));
    for who in ["a", "b"] {
        let received = result["received"][who].as_array().expect("received");
        assert_eq!(
            received[0]["data"],
            json!({"text": "from the admin UI"}),
            "subscriber on node {who}"
        );
    }
    assert_eq!(
        result["history"][0]["data"],
        json!({"text": "from the admin UI"})
    );
    assert_eq!(
        result["apiOutput"]["result"]["nodes"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let chart = &result["chart"];
    assert!(
        chart["deliveryPixelsAboveBaseline"].as_u64().unwrap() > 20,
        "the deliveries line never left zero: {chart}"
    );
    assert!(chart["nonWhitePixels"].as_u64().unwrap() > 1000, "{chart}");
    let after_stop = result["nodesAfterStop"]
        .as_array()
        .expect("nodes after the stop");
    let state = |name: &str| {
        after_stop
            .iter()
            .find(|row| row[0] == name)
            .map(|row| row[8].clone())
    };
    assert_eq!(state("node-a"), Some(json!("up")), "{after_stop:?}");
    assert_eq!(state("node-b"), Some(json!("down")), "{after_stop:?}");
    if let Ok(keep) = std::env::var("GYRE_ADMIN_SCREENSHOT") {
        std::fs::copy(&screenshot, keep).expect("copy the screenshot");
    }

    // The session token opens the admin API; the API key does not.
    let (status, body) = login(admin_port, PASSWORD);
    assert_eq!(status, 200, "{body}");
    let token = serde_json::from_str::<Value>(&body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let info = |authorization: &str| {
        http_request(
            admin_port,
            "POST",
            "/admin/api/info",
            &[("Authorization", authorization)],
            b"{}",
        )
        .unwrap()
        .0
    };
    assert_eq!(info(&format!("token {token}")), 200);
    assert_eq!(info(&format!("token {token}x")), 401, "a tampered token");
    assert_eq!(info(&format!("apikey {}", a.api_key())), 401);

    // Failed logins from one address are bounded: after a few, even the right password waits.
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(login(admin_port, "guess").0);
    }
    assert!(statuses.starts_with(&[401]), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    assert_eq!(login(admin_port, PASSWORD).0, 429);
}

#[test]
fn an_insecure_admin_ui_at_its_own_path_asks_for_no_login() {
    let gyre = GyreProcess::builder()
        .extra_toml("[admin]\nenabled = true\ninsecure = true\nhandler_prefix = \"/ops\"")
        .start();
    let port = gyre.port();
    let (status, page) = http_request(port, "GET", "/ops", &[], b"").unwrap();
    assert_eq!(status, 200);
    assert!(page.contains("<title>Gyre admin</title>"), "{page}");
    assert!(
        page.contains(r#"const BASE = "/ops";"#),
        "the page knows its path"
    );
    assert!(page.contains("const INSECURE = true;"));
    let (status, body) = http_request(port, "POST", "/ops/admin/api/info", &[], b"{}").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""nodes""#), "{body}");
    // The demo page keeps `/`; the UI is not served at its default path.
    let (status, demo) = http_request(port, "GET", "/", &[], b"").unwrap();
    assert_eq!(status, 200);
    assert!(!demo.contains("Gyre admin"), "the demo page");
    assert_eq!(
        http_request(port, "POST", "/admin/auth", &[], b"{}")
            .unwrap()
            .0,
        404
    );
}

#[test]
fn the_admin_ui_needs_a_password_and_secret_unless_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gyre.toml");
    std::fs::write(&config, "[admin]\nenabled = true\npassword = \"p\"\n").unwrap();
    let output = std::process::Command::new(gyre_binary())
        .arg("checkconfig")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("admin.secret"), "{stderr}");
    assert!(!stderr.contains("admin.password"), "{stderr}");
}
