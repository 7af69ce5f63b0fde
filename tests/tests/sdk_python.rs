//! The unmodified PyPI `centrifuge-python` SDK (0.7.x) and the `cent` server API client against a
//! real `gyre` with the Redis engine (Redis with libgyre.so).
//!
//! Each test starts its own Redis and gyre ([`SdkEnv`]), runs one scenario script of
//! `tests/sdk/python` with the venv's interpreter (`tests/sdk/python/.venv`, made by
//! scripts/test.sh) and asserts on the JSON line it prints ([`sdk_expect`], shared with the Node
//! tests). Without the venv the tests are skipped, except under CI where that is a failure.

use std::time::Duration;

use gyre_tests::*;
use serde_json::{Value as Json, json};

fn channel(name: &str, protocol: &str) -> String {
    format!("{SDK_NS}:py-{name}-{protocol}")
}

/// A channel of [`SDK_SUBSCRIBER_NS`] (history and presence for subscribers only).
fn subscriber_channel(name: &str, protocol: &str) -> String {
    format!("{SDK_SUBSCRIBER_NS}:py-{name}-{protocol}")
}

fn script(name: &str, env: &SdkEnv, protocol: &str) -> SdkScript {
    SdkScript::python(name)
        .gyre(&env.gyre)
        .arg("protocol", protocol)
}

/// One `#[test]` per listed protocol for a scenario function (which takes the protocol).
macro_rules! protocols {
    ($scenario:ident: $($protocol:ident),*) => {
        mod $scenario {
            $(
                #[test]
                fn $protocol() {
                    gyre_tests::require_python_sdk();
                    super::$scenario(stringify!($protocol));
                }
            )*
        }
    };
}

protocols!(receive_from_cent_redis_cli_and_client: json, protobuf);
protocols!(presence_stats_and_history: json, protobuf);
protocols!(join_and_leave: json, protobuf);
protocols!(join_and_leave_for_subscribers: json, protobuf);
protocols!(recovery_after_offline_publications: json, protobuf);
protocols!(recovery_for_subscribers: json, protobuf);
protocols!(token_expiry_and_refresh: json);
protocols!(token_errors: json, protobuf);
protocols!(channel_errors: json, protobuf);
protocols!(redis_restart_recovers_or_announces: json);

fn receive_from_cent_redis_cli_and_client(protocol: &str) {
    let env = SdkEnv::redis();
    let r = script("receive.py", &env, protocol)
        .arg("channel", channel("receive", protocol))
        .arg("redis-port", env.redis_port())
        .run()
        .json();
    sdk_expect::receive(&r, true);
}

fn presence_stats_and_history(protocol: &str) {
    let env = SdkEnv::redis();
    let r = script("presence.py", &env, protocol)
        .arg("channel", channel("presence", protocol))
        .run()
        .json();
    sdk_expect::presence(&r);
}

fn join_and_leave(protocol: &str) {
    let env = SdkEnv::redis();
    let r = script("join_leave.py", &env, protocol)
        .arg("channel", channel("joinleave", protocol))
        .run()
        .json();
    sdk_expect::join_leave(&r);
}

/// `join_leave=True` on a namespace that pushes join/leave to nobody by force: the subscriber
/// permission (`allow_presence_for_subscriber`) must count for the client while it subscribes.
fn join_and_leave_for_subscribers(protocol: &str) {
    let env = SdkEnv::redis();
    let r = script("join_leave.py", &env, protocol)
        .arg("channel", subscriber_channel("joinleave", protocol))
        .run()
        .json();
    sdk_expect::join_leave(&r);
}

fn recovery_after_offline_publications(protocol: &str) {
    let env = SdkEnv::redis();
    let r = script("recovery.py", &env, protocol)
        .arg("channel", channel("recovery", protocol))
        .arg("count", 5)
        .run()
        .json();
    sdk_expect::recovery(&r, 5);
}

/// `recoverable=True` on a namespace without `force_recovery`: `allow_history_for_subscriber`
/// must count for the client while it subscribes.
fn recovery_for_subscribers(protocol: &str) {
    let env = SdkEnv::redis();
    let r = script("recovery.py", &env, protocol)
        .arg("channel", subscriber_channel("recovery", protocol))
        .arg("recoverable", true)
        .arg("count", 5)
        .run()
        .json();
    sdk_expect::recovery(&r, 5);
}

fn token_expiry_and_refresh(protocol: &str) {
    let env = SdkEnv::redis();
    let r = script("token_refresh.py", &env, protocol)
        .arg("channel", channel("refresh", protocol))
        .arg("ttl", 3)
        .run()
        .json();
    sdk_expect::token_refresh(&r);
}

fn token_errors(protocol: &str) {
    let env = SdkEnv::redis();
    let r = script("token_errors.py", &env, protocol).run().json();

    let bad = &r["badSignature"];
    assert_eq!(bad["disconnected"]["code"], 3500, "bad signature: {bad}");
    assert_eq!(bad["state"], "disconnected", "3500 is terminal: {bad}");
    assert_eq!(bad["connectedCount"], 0, "{bad}");
    assert_eq!(bad["connectingCount"], 1, "no reconnect after 3500: {bad}");

    // The SDK reports the server's error inside its own error event.
    let codes = |v: &Json| -> Vec<Json> {
        json_array(&v["errors"])
            .iter()
            .map(|e| e["error"]["code"].clone())
            .collect()
    };
    let expired = &r["expired"];
    assert_eq!(codes(expired), [json!(109)], "expired token: {expired}");
    assert_eq!(expired["getTokenCalls"], 1, "{expired}");
    assert_eq!(expired["state"], "connected", "{expired}");

    let gave_up = &r["expiredNoRefresh"];
    assert_eq!(codes(gave_up).first(), Some(&json!(109)), "{gave_up}");
    assert_eq!(
        gave_up["disconnected"]["code"], 1,
        "unauthorized: {gave_up}"
    );
    assert_eq!(gave_up["connectedCount"], 0, "{gave_up}");
    assert_eq!(gave_up["state"], "disconnected", "{gave_up}");
}

fn channel_errors(protocol: &str) {
    let env = SdkEnv::redis();
    let r = script("sub_errors.py", &env, protocol)
        .arg("unknown", format!("nosuchns:py-{protocol}"))
        .arg("denied", format!("{SDK_LOCKED_NS}:py-{protocol}"))
        .run()
        .json();
    sdk_expect::channel_errors(&r);
}

fn redis_restart_recovers_or_announces(protocol: &str) {
    let mut env = SdkEnv::redis_aof();
    let ch = channel("restart", protocol);
    let script = script("redis_restart.py", &env, protocol)
        .arg("channel", &ch)
        .timeout(Duration::from_secs(45));
    let out = script.run_with(|step| env.restart_redis_step(step, &ch));
    let r = out.json();
    assert_eq!(out.steps, ["restart-redis"]);
    sdk_expect::redis_restart(&r);
}

/// `cent` (PyPI) publishes through `/api` with the API key and reads history back; the stream
/// is the module's (GYRE.HISTORY agrees); a wrong key is refused with 401.
#[test]
fn cent_publishes_through_the_http_api() {
    require_python_sdk();
    let env = SdkEnv::redis();
    let ch = format!("{SDK_NS}:cent");
    let r = SdkScript::python("cent_publish.py")
        .arg("api", env.gyre.api_url())
        .arg("api-key", env.gyre.api_key())
        .arg("channel", &ch)
        .arg("count", 3)
        .arg("history", "yes")
        .run()
        .json();
    assert_eq!(json_offsets(&r["published"]), [1, 2, 3], "{r}");
    let epoch = json_str(&r["published"][0], "epoch");
    assert_eq!(epoch.len(), 8, "{r}");
    assert!(
        json_array(&r["published"])
            .iter()
            .all(|p| p["epoch"] == epoch)
    );
    assert_eq!(r["history"]["offset"], 3);
    assert_eq!(r["history"]["epoch"], epoch);
    assert_eq!(json_offsets(&r["history"]["publications"]), [1, 2, 3]);
    assert_eq!(
        json_data(&r["history"]["publications"]),
        [json!({"n": 1}), json!({"n": 2}), json!({"n": 3})]
    );

    let redis = env.redis.as_ref().expect("redis");
    let h = history(&mut redis.connection(), &ch, &[]);
    assert_eq!(h.top, 3);
    assert_eq!(h.epoch, epoch);

    let out = SdkScript::python("cent_publish.py")
        .arg("api", env.gyre.api_url())
        .arg("api-key", "wrong-key")
        .arg("channel", &ch)
        .run();
    assert_eq!(out.code, Some(1), "{}", out.describe("with a wrong key"));
    let r: Json = serde_json::from_str(&out.line).expect("JSON line");
    assert_eq!(r["errorType"], "CentUnauthorizedError", "{r}");
}
