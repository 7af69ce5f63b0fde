//! The unmodified npm `centrifuge` SDK (5.7.x, JSON) over its `sockjs` transport with the npm
//! `sockjs-client` (1.6.1), against a real `gyre` (Redis engine) with `[sockjs] enabled`: every
//! scenario once per SockJS sub-transport (`--sockjs-transport`), so that each of `websocket`,
//! `xhr-streaming`, `xhr-polling` and `eventsource` carries the whole session. SockJS carries
//! JSON only. Needs `npm ci` in `tests/sdk/node` (skipped without it, except under CI).

use gyre_tests::*;

/// Short heartbeats and disconnect delay, so that idle polls and dropped sessions show up
/// within a scenario.
const SOCKJS: &str =
    "[sockjs]\nenabled = true\nheartbeat_delay = \"2s\"\ndisconnect_delay = \"2s\"\n";

fn env() -> SdkEnv {
    SdkEnv::redis_configured(|builder| builder.extra_toml(SOCKJS))
}

fn script(name: &str, env: &SdkEnv, sub_transport: &str) -> SdkScript {
    SdkScript::node(name)
        .gyre(&env.gyre)
        .arg("protocol", "json")
        .arg("transport", "sockjs")
        .arg("sockjs-transport", sub_transport)
}

fn channel(name: &str, sub_transport: &str) -> String {
    format!("{SDK_NS}:{name}-sockjs-{sub_transport}")
}

/// A channel of [`SDK_SUBSCRIBER_NS`] (history and presence for subscribers only).
fn subscriber_channel(name: &str, sub_transport: &str) -> String {
    format!("{SDK_SUBSCRIBER_NS}:{name}-sockjs-{sub_transport}")
}

/// Every `connected` event names the SockJS sub-transport (centrifuge-js reports
/// `sockjs-<sub-transport>`), so a silent fallback to another one fails the test.
fn assert_transport(r: &serde_json::Value, sub_transport: &str) {
    let connected: Vec<&serde_json::Value> = json_array(&r["events"])
        .iter()
        .filter(|e| e["ev"] == "connected")
        .collect();
    assert!(!connected.is_empty(), "no connected event: {r}");
    for event in connected {
        assert_eq!(
            event["transport"],
            format!("sockjs-{sub_transport}"),
            "connected over another transport: {event}"
        );
    }
}

/// One module per sub-transport, one `#[test]` per scenario.
macro_rules! per_sub_transport {
    ($($module:ident => $sub_transport:literal),* $(,)?) => {
        $(
            mod $module {
                #[test]
                fn receive() {
                    gyre_tests::require_node_sdk();
                    super::receive($sub_transport);
                }
                #[test]
                fn presence_and_history() {
                    gyre_tests::require_node_sdk();
                    super::presence_and_history($sub_transport);
                }
                #[test]
                fn recovery() {
                    gyre_tests::require_node_sdk();
                    super::recovery($sub_transport);
                }
                #[test]
                fn join_and_leave_for_subscribers() {
                    gyre_tests::require_node_sdk();
                    super::join_and_leave_for_subscribers($sub_transport);
                }
                #[test]
                fn recovery_for_subscribers() {
                    gyre_tests::require_node_sdk();
                    super::recovery_for_subscribers($sub_transport);
                }
                #[test]
                fn token_errors() {
                    gyre_tests::require_node_sdk();
                    super::token_errors($sub_transport);
                }
            }
        )*
    };
}

per_sub_transport!(
    websocket => "websocket",
    xhr_streaming => "xhr-streaming",
    xhr_polling => "xhr-polling",
    eventsource => "eventsource",
);

fn receive(sub_transport: &str) {
    let env = env();
    let r = script("receive.mjs", &env, sub_transport)
        .arg("channel", channel("receive", sub_transport))
        .arg("redis-port", env.redis_port())
        .run()
        .json();
    assert_transport(&r, sub_transport);
    sdk_expect::receive(&r, true);
}

fn presence_and_history(sub_transport: &str) {
    let env = env();
    let r = script("presence.mjs", &env, sub_transport)
        .arg("channel", channel("presence", sub_transport))
        .run()
        .json();
    assert_transport(&r, sub_transport);
    sdk_expect::presence(&r);
}

fn recovery(sub_transport: &str) {
    let env = env();
    let r = script("recovery.mjs", &env, sub_transport)
        .arg("channel", channel("recovery", sub_transport))
        .arg("count", 5)
        .run()
        .json();
    assert_transport(&r, sub_transport);
    sdk_expect::recovery(&r, 5);
}

/// `joinLeave: true` where only `allow_presence_for_subscriber` grants join/leave pushes.
fn join_and_leave_for_subscribers(sub_transport: &str) {
    let env = env();
    let r = script("join_leave.mjs", &env, sub_transport)
        .arg("channel", subscriber_channel("joinleave", sub_transport))
        .run()
        .json();
    assert_transport(&r, sub_transport);
    sdk_expect::join_leave(&r);
}

/// `recoverable: true` where only `allow_history_for_subscriber` grants recovery.
fn recovery_for_subscribers(sub_transport: &str) {
    let env = env();
    let r = script("recovery.mjs", &env, sub_transport)
        .arg("channel", subscriber_channel("recovery", sub_transport))
        .arg("recoverable", true)
        .arg("count", 5)
        .run()
        .json();
    assert_transport(&r, sub_transport);
    sdk_expect::recovery(&r, 5);
}

fn token_errors(sub_transport: &str) {
    let env = env();
    let r = script("token_errors.mjs", &env, sub_transport).run().json();
    sdk_expect::token_errors(&r);
}
