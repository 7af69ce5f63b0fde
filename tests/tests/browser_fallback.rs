//! The HTTP-streaming transports in a real headless Chromium (Debian `chromium` driven by npm
//! `playwright-core`), on gyre's own page at `/`:
//!
//! - centrifuge-js (its browser bundle) with the transports `[websocket, http_stream, sse]` uses
//!   WebSocket when the browser has it, `http_stream` when `window.WebSocket` is gone, and `sse`
//!   when fetch streaming (`window.ReadableStream`) is gone too; over each it subscribes,
//!   receives an API publication and publishes (`tests/sdk/node/browser_fallback.mjs`);
//! - the browser's own EventSource on `/connection/uni_sse` with two channels reconnects by
//!   itself after the server ended its stream, and its `Last-Event-ID` recovers every missed
//!   publication of both channels, once each, in order (`tests/sdk/node/browser_uni_sse.mjs`).
//!
//! Skipped with a message when Chromium or the npm packages are missing, except under CI. The
//! tests of this file run one at a time: each starts a Chromium, and the machine may be small.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use gyre_tests::*;
use serde_json::Value;

/// The HTTP transports of the tests (off by default).
const TRANSPORTS: &str =
    "[http_stream]\nenabled = true\n[sse]\nenabled = true\n[uni_sse]\nenabled = true\n";

/// One Chromium at a time.
static BROWSER: Mutex<()> = Mutex::new(());

/// The browser, for one test at a time; the test fails when Chromium is not installed.
fn browser() -> MutexGuard<'static, ()> {
    require_chromium();
    BROWSER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Memory engine, namespace `chat` with history (recovery) and every client permission. The test
/// clients connect with tokens; anonymous connects are only for the demo page's own WebSocket
/// client, which then fails to subscribe to `chat:demo` (anonymous clients may not) and stays
/// quiet instead of reconnecting every second.
fn gyre() -> GyreProcess {
    GyreProcess::builder()
        .memory()
        .client_option("allow_anonymous_connect_without_token = true")
        .namespace(Namespace::full("chat", 100, 300))
        .extra_toml(TRANSPORTS)
        .start()
}

/// Runs `browser_fallback.mjs --case <transport>` and checks what the page and the Node client saw:
/// the page connected once, over `transport`, and got the API publication and its own, once
/// each; the Node client got the page's publication.
fn fallback(transport: &str) {
    let _one = browser();
    let gyre = gyre();
    let channel = format!("chat:fallback-{transport}");
    let output = SdkScript::node("browser_fallback.mjs")
        .gyre(&gyre)
        .arg("chromium", CHROMIUM)
        .arg("case", transport)
        .arg("channel", &channel)
        .run();
    let result: Value = serde_json::from_str(output.expect_success()).unwrap();
    let page = result["page"].as_array().expect("page events");
    let of = |ev: &str| -> Vec<&Value> { page.iter().filter(|e| e["ev"] == ev).collect() };

    let connected = of("connected");
    assert_eq!(
        connected.len(),
        1,
        "the page should connect exactly once: {page:#?}"
    );
    assert_eq!(
        connected[0]["transport"], transport,
        "the page connected over the wrong transport: {page:#?}"
    );
    assert!(
        of("disconnected").is_empty(),
        "the page lost its connection: {page:#?}"
    );

    let texts: Vec<&str> = of("publication")
        .iter()
        .map(|p| p["data"]["text"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        texts,
        ["from the API", "from the page"],
        "publications the page received over {transport}: {page:#?}"
    );
    let api_offset = result["apiPublished"]["offset"].as_u64().unwrap();
    assert_eq!(
        of("publication")[0]["offset"].as_u64(),
        Some(api_offset),
        "the API publication's offset: {page:#?}"
    );

    let node: Vec<&str> = json_array(&result["node"])
        .iter()
        .map(|p| p["data"]["text"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        node,
        ["from the API", "from the page"],
        "publications the Node client received"
    );

    // The transport really was used, and only it: the page's requests to gyre. (The demo page
    // itself opens a WebSocket when it has one, so WebSockets are only counted without.)
    let requests: Vec<&str> = json_array(&result["requests"])
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    let count = |request: &str| requests.iter().filter(|r| **r == request).count();
    let (http_stream, sse, emulation) = (
        count("POST /connection/http_stream"),
        count("GET /connection/sse"),
        count("POST /emulation"),
    );
    match transport {
        "websocket" => assert_eq!(
            (http_stream, sse, emulation),
            (0, 0, 0),
            "the SDK fell back though it had WebSocket: {requests:?}"
        ),
        "http_stream" => assert_eq!(
            (http_stream, sse),
            (1, 0),
            "the SDK's streams: {requests:?}"
        ),
        _ => assert_eq!(
            (http_stream, sse),
            (0, 1),
            "the SDK's streams: {requests:?}"
        ),
    }
    if transport != "websocket" {
        // subscribe and publish go through /emulation.
        assert!(
            emulation >= 2,
            "the commands did not go through /emulation: {requests:?}"
        );
        let websockets = json_array(&result["websockets"]);
        assert!(
            websockets.is_empty(),
            "a WebSocket was opened without window.WebSocket: {websockets:?}"
        );
    }
}

#[test]
fn centrifuge_js_uses_websocket_when_the_browser_has_it() {
    fallback("websocket");
}

#[test]
fn centrifuge_js_falls_back_to_http_stream_without_websocket() {
    fallback("http_stream");
}

#[test]
fn centrifuge_js_falls_back_to_sse_without_websocket_and_fetch_streaming() {
    fallback("sse");
}

/// A browser EventSource on uni_sse with two channels: after the API disconnected its user,
/// it reconnects with `Last-Event-ID`, and every publication of both channels arrives exactly
/// once and in order, those published meanwhile inside the new connect push.
#[test]
fn eventsource_on_uni_sse_recovers_both_channels_after_the_server_ended_the_stream() {
    let _one = browser();
    let gyre = gyre();
    let channels = ["chat:uni-a", "chat:uni-b"];
    let output = SdkScript::node("browser_uni_sse.mjs")
        .gyre(&gyre)
        .arg("chromium", CHROMIUM)
        .arg("channels", channels.join(","))
        .arg("user", "uni-user")
        .run();
    let result: Value = serde_json::from_str(output.expect_success()).unwrap();
    let events = json_array(&result["events"]);
    let pushes: Vec<Value> = events
        .iter()
        .filter_map(|e| e["data"].as_str())
        .map(|data| serde_json::from_str::<Value>(data).expect("every event is a JSON push"))
        .filter(|push| push.as_object().is_some_and(|o| !o.is_empty()))
        .collect();
    let summary = || {
        format!(
            "incomplete: {}\nrequests: {:#}\npushes:\n{}",
            result["incomplete"],
            result["requests"],
            pushes
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    };

    // Two connections: the first, and the EventSource's own reconnect, which sent the cursor.
    let connects: Vec<&Value> = pushes
        .iter()
        .filter(|p| p.get("connect").is_some())
        .collect();
    assert_eq!(connects.len(), 2, "connect pushes\n{}", summary());
    let requests = json_array(&result["requests"]);
    assert!(requests.len() >= 2, "uni_sse requests\n{}", summary());
    assert!(
        requests[0]["lastEventId"].is_null(),
        "the first request has no Last-Event-ID\n{}",
        summary()
    );
    let cursor = requests[1]["lastEventId"].as_str().unwrap_or_else(|| {
        panic!("the reconnect sent no Last-Event-ID\n{}", summary());
    });
    // It is the id of the last event before the stream ended.
    let reopened = events
        .iter()
        .enumerate()
        .filter(|(_, e)| e["open"] == true)
        .nth(1)
        .map(|(i, _)| i)
        .unwrap_or_else(|| panic!("the EventSource did not open twice\n{}", summary()));
    let last_id = events[..reopened]
        .iter()
        .rev()
        .find_map(|e| e["lastEventId"].as_str().filter(|id| !id.is_empty()));
    assert_eq!(
        Some(cursor),
        last_id,
        "Last-Event-ID vs the last id received\n{}",
        summary()
    );
    for channel in channels {
        assert!(
            cursor
                .split(',')
                .any(|entry| entry.ends_with(&format!(":{channel}"))),
            "Last-Event-ID {cursor:?} lacks {channel}\n{}",
            summary()
        );
        let first = &connects[0]["connect"]["subs"][channel];
        assert_eq!(
            first["recoverable"],
            true,
            "{channel} in the first connect push\n{}",
            summary()
        );
        let again = &connects[1]["connect"]["subs"][channel];
        assert_eq!(
            again["was_recovering"],
            true,
            "{channel} in the second connect push: {again}\n{}",
            summary()
        );
        assert_eq!(
            again["recovered"],
            true,
            "{channel} in the second connect push: {again}\n{}",
            summary()
        );
        assert_eq!(
            again["epoch"],
            first["epoch"],
            "{channel}: the epoch changed\n{}",
            summary()
        );
        let recovered = list(&again["publications"]);
        assert!(
            !recovered.is_empty(),
            "{channel}: nothing recovered, though publications went on during the reconnect\n{}",
            summary()
        );
    }

    // Per channel: what arrived (recovered ones in place) is exactly what was published.
    let mut received: BTreeMap<&str, Vec<(u64, u64)>> = BTreeMap::new();
    for push in &pushes {
        if let Some(subs) = push["connect"]["subs"].as_object() {
            for (channel, sub) in subs {
                let got = received
                    .entry(
                        channels
                            .iter()
                            .find(|c| **c == channel)
                            .expect("known channel"),
                    )
                    .or_default();
                for publication in list(&sub["publications"]) {
                    got.push(offset_and_n(publication));
                }
            }
        } else if push.get("pub").is_some() {
            let channel = push["channel"].as_str().unwrap();
            let channel = channels
                .iter()
                .find(|c| **c == channel)
                .expect("known channel");
            received
                .entry(channel)
                .or_default()
                .push(offset_and_n(&push["pub"]));
        } else {
            // The namespace has join/leave: the client's own join arrives when it reaches the
            // subscription after the connect push (before, it is dropped, as with Centrifugo).
            assert!(
                ["disconnect", "join", "leave"]
                    .iter()
                    .any(|kind| push.get(kind).is_some()),
                "unexpected push {push}\n{}",
                summary()
            );
        }
    }
    for channel in channels {
        let published: Vec<(u64, u64)> = json_array(&result["published"][channel])
            .iter()
            .map(|p| (p["offset"].as_u64().unwrap(), p["n"].as_u64().unwrap()))
            .collect();
        let missed = json_array(&result["published"][channel])
            .iter()
            .filter(|p| p["phase"] == "missed")
            .count();
        assert!(
            missed > 0,
            "{channel}: nothing was published while the EventSource was away"
        );
        assert_eq!(
            received.get(channel).cloned().unwrap_or_default(),
            published,
            "{channel}: (offset, n) received vs published\n{}",
            summary()
        );
    }
    assert_eq!(
        pushes
            .iter()
            .filter(|p| p.get("disconnect").is_some())
            .count(),
        1,
        "the disconnect push\n{}",
        summary()
    );
}

/// An array; absent (omitted when empty) is empty.
fn list(value: &Value) -> &[Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}

/// `(offset, data.n)` of a publication.
fn offset_and_n(publication: &Value) -> (u64, u64) {
    (
        publication["offset"].as_u64().unwrap_or(0),
        publication["data"]["n"].as_u64().unwrap_or(0),
    )
}
