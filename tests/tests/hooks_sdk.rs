//! Backend hooks through the unmodified SDKs (npm `centrifuge`, PyPI `centrifuge-python`): no
//! token anywhere, users known to the backend (`tests/backend/http_backend.py`) by their session
//! cookie. Scripts: `tests/sdk/node/hooks.mjs`, `hooks_refresh.mjs`, `tests/sdk/python/hooks.py`.
//! Skipped (with a message) when the SDKs are not installed, except under CI.

use gyre_tests::*;
use serde_json::{Value, json};

fn start(backend: &HttpBackend) -> GyreProcess {
    GyreProcess::builder()
        .client_option("presence_update_interval = \"1s\"")
        .client_option("expired_sub_close_delay = \"1s\"")
        .extra_toml(&backend.config("[http_stream]\nenabled = true\n[sse]\nenabled = true\n"))
        .start()
}

/// What `hooks.mjs` and `hooks.py` must have seen.
fn expect_hooks(r: &Value, user: &str) {
    assert_eq!(
        r["connected"]["data"]["greeting"],
        format!("hello {user}"),
        "the connect proxy's data: {r}"
    );
    assert_eq!(
        r["room"]["welcome"], "hooks:room",
        "the subscribe proxy's data: {r}"
    );
    assert_eq!(
        r["room"]["meta"],
        json!({"plan": "gold", "user": user}),
        "the connection meta reached the subscribe proxy"
    );
    assert_eq!(r["denied"]["code"], 403, "{r}");
    assert_eq!(r["denied"]["state"], "unsubscribed", "{r}");
    assert_eq!(
        r["received"],
        json!([{"data": {"text": "hi", "by": user, "checked": true}, "user": user}]),
        "the publish proxy rewrote the data"
    );
    assert_eq!(r["echo"], json!({"echo": {"n": 1}, "user": user}), "{r}");
    assert_eq!(r["fail"]["code"], 1001, "{r}");
    assert_eq!(r["fail"]["message"], "rpc failed", "{r}");
    assert_eq!(r["anonymous"]["code"], 4501, "{r}");
    assert_eq!(
        r["anonymous"]["state"], "disconnected",
        "4501 is terminal: {r}"
    );
}

fn node(script: &str, gyre: &GyreProcess, protocol: &str, transport: &str) -> SdkScript {
    SdkScript::node(script)
        .gyre(gyre)
        .arg("protocol", protocol)
        .arg("transport", transport)
}

macro_rules! node_hooks {
    ($($name:ident: $protocol:literal, $transport:literal;)*) => {$(
        #[test]
        fn $name() {
            gyre_tests::require_node_sdk();
            let backend = HttpBackend::start();
            let gyre = start(&backend);
            let r = node("hooks.mjs", &gyre, $protocol, $transport).run().json();
            expect_hooks(&r, "alice");
            assert_eq!(r["connected"]["transport"], $transport);
            let connects = backend.requests_to("connect");
            assert!(
                connects.iter().any(|c| c["body"]["transport"] == $transport
                    && c["body"]["protocol"] == $protocol
                    && c["body"]["data"] == json!({"from": "sdk"})),
                "{connects:?}"
            );
            let problems: Vec<Value> = backend
                .requests()
                .into_iter()
                .map(|r| r["problems"].clone())
                .filter(|p| *p != json!([]))
                .collect();
            assert!(problems.is_empty(), "{problems:?}");
        }
    )*};
}

node_hooks! {
    node_websocket_json: "json", "websocket";
    node_websocket_protobuf: "protobuf", "websocket";
    node_http_stream_json: "json", "http_stream";
    node_http_stream_protobuf: "protobuf", "http_stream";
    node_sse_json: "json", "sse";
}

#[test]
fn node_refresh_and_sub_refresh_prolong_until_the_backend_expires() {
    require_node_sdk();
    let backend = HttpBackend::start();
    let gyre = start(&backend);
    let r = node("hooks_refresh.mjs", &gyre, "json", "websocket")
        .arg("backend", backend.url(""))
        .arg("hold", 5000)
        .run()
        .json();
    let hold = &r["afterHold"];
    assert_eq!(hold["connected"], 1, "one connection while prolonged: {r}");
    assert_eq!(hold["disconnected"], 0, "{r}");
    assert_eq!(hold["unsubscribed"], 0, "{r}");
    assert_eq!(hold["subState"], "subscribed", "{r}");
    assert_eq!(r["subExpired"]["code"], 2501, "{r}");
    assert_eq!(r["expired"]["code"], 3005, "{r}");
    assert_eq!(
        r["connectedCount"], 2,
        "reconnected through the connect proxy: {r}"
    );
    assert!(backend.requests_to("refresh").len() >= 2, "refresh calls");
    assert!(
        backend.requests_to("sub_refresh").len() >= 2,
        "sub_refresh calls"
    );
}

#[test]
fn python_json() {
    python("json");
}

#[test]
fn python_protobuf() {
    python("protobuf");
}

fn python(protocol: &str) {
    require_python_sdk();
    let backend = HttpBackend::start();
    let gyre = start(&backend);
    let r = SdkScript::python("hooks.py")
        .gyre(&gyre)
        .arg("protocol", protocol)
        .run()
        .json();
    expect_hooks(&r, "alice");
    let connects = backend.requests_to("connect");
    assert!(
        connects
            .iter()
            .any(|c| c["body"]["protocol"] == protocol
                && c["headers"]["cookie"] == "session=s-alice"),
        "{connects:?}"
    );
}
