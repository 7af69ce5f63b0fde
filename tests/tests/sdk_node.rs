//! The unmodified npm `centrifuge` SDK (5.7.x, Node 20 + `ws`), JSON and Protobuf builds, against
//! a real `gyre` with the Redis engine (Redis with libgyre.so) or the memory engine.
//!
//! Each test starts its own Redis and gyre ([`SdkEnv`]), runs one scenario script of
//! `tests/sdk/node` and asserts on the JSON line it prints ([`sdk_expect`]). Needs `npm ci` in
//! `tests/sdk/node` (scripts/test.sh does it); without it the tests are skipped, except under CI
//! where that is a failure.

use std::time::Duration;

use gyre_tests::*;

fn channel(name: &str, protocol: &str) -> String {
    format!("{SDK_NS}:{name}-{protocol}")
}

/// A channel of [`SDK_SUBSCRIBER_NS`] (history and presence for subscribers only).
fn subscriber_channel(name: &str, protocol: &str) -> String {
    format!("{SDK_SUBSCRIBER_NS}:{name}-{protocol}")
}

fn script(name: &str, env: &SdkEnv, protocol: &str) -> SdkScript {
    SdkScript::node(name)
        .gyre(&env.gyre)
        .arg("protocol", protocol)
}

/// One `#[test]` per protocol for each scenario function (which takes the protocol).
macro_rules! both_protocols {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                #[test]
                fn json() {
                    gyre_tests::require_node_sdk();
                    super::$scenario("json");
                }
                #[test]
                fn protobuf() {
                    gyre_tests::require_node_sdk();
                    super::$scenario("protobuf");
                }
            }
        )*
    };
}

both_protocols!(
    receive_from_api_redis_cli_and_client,
    receive_with_memory_engine,
    presence_stats_and_history,
    join_and_leave,
    join_and_leave_for_subscribers,
    recovery_after_offline_publications,
    recovery_for_subscribers,
    recovery_with_memory_engine,
    token_expiry_and_refresh,
    token_errors,
    channel_errors,
    redis_restart_recovers_or_announces,
);

fn receive_from_api_redis_cli_and_client(protocol: &str) {
    let env = SdkEnv::redis();
    let r = script("receive.mjs", &env, protocol)
        .arg("channel", channel("receive", protocol))
        .arg("redis-port", env.redis_port())
        .run()
        .json();
    sdk_expect::receive(&r, true);
}

fn receive_with_memory_engine(protocol: &str) {
    let env = SdkEnv::memory();
    let r = script("receive.mjs", &env, protocol)
        .arg("channel", channel("receive-mem", protocol))
        .run()
        .json();
    sdk_expect::receive(&r, false);
}

fn presence_stats_and_history(protocol: &str) {
    let env = SdkEnv::redis();
    let r = script("presence.mjs", &env, protocol)
        .arg("channel", channel("presence", protocol))
        .run()
        .json();
    sdk_expect::presence(&r);
}

fn join_and_leave(protocol: &str) {
    let env = SdkEnv::redis();
    let r = script("join_leave.mjs", &env, protocol)
        .arg("channel", channel("joinleave", protocol))
        .run()
        .json();
    sdk_expect::join_leave(&r);
}

/// `joinLeave: true` on a namespace that pushes join/leave to nobody by force: the subscriber
/// permission (`allow_presence_for_subscriber`) must count for the client while it subscribes.
fn join_and_leave_for_subscribers(protocol: &str) {
    let env = SdkEnv::redis();
    let r = script("join_leave.mjs", &env, protocol)
        .arg("channel", subscriber_channel("joinleave", protocol))
        .run()
        .json();
    sdk_expect::join_leave(&r);
}

fn recovery_after_offline_publications(protocol: &str) {
    let env = SdkEnv::redis();
    let r = script("recovery.mjs", &env, protocol)
        .arg("channel", channel("recovery", protocol))
        .arg("count", 5)
        .run()
        .json();
    sdk_expect::recovery(&r, 5);
}

/// `recoverable: true` on a namespace without `force_recovery`: `allow_history_for_subscriber`
/// must count for the client while it subscribes.
fn recovery_for_subscribers(protocol: &str) {
    let env = SdkEnv::redis();
    let r = script("recovery.mjs", &env, protocol)
        .arg("channel", subscriber_channel("recovery", protocol))
        .arg("recoverable", true)
        .arg("count", 5)
        .run()
        .json();
    sdk_expect::recovery(&r, 5);
}

fn recovery_with_memory_engine(protocol: &str) {
    let env = SdkEnv::memory();
    let r = script("recovery.mjs", &env, protocol)
        .arg("channel", channel("recovery-mem", protocol))
        .arg("count", 5)
        .run()
        .json();
    sdk_expect::recovery(&r, 5);
}

fn token_expiry_and_refresh(protocol: &str) {
    let env = SdkEnv::redis();
    let r = script("token_refresh.mjs", &env, protocol)
        .arg("channel", channel("refresh", protocol))
        .arg("ttl", 3)
        .run()
        .json();
    sdk_expect::token_refresh(&r);
}

fn token_errors(protocol: &str) {
    let env = SdkEnv::redis();
    let r = script("token_errors.mjs", &env, protocol).run().json();
    sdk_expect::token_errors(&r);
}

fn channel_errors(protocol: &str) {
    let env = SdkEnv::redis();
    let r = script("sub_errors.mjs", &env, protocol)
        .arg("unknown", format!("nosuchns:x-{protocol}"))
        .arg("denied", format!("{SDK_LOCKED_NS}:x-{protocol}"))
        .run()
        .json();
    sdk_expect::channel_errors(&r);
}

fn redis_restart_recovers_or_announces(protocol: &str) {
    let mut env = SdkEnv::redis_aof();
    let ch = channel("restart", protocol);
    // The failover scenario with the driver's step being a Redis restart from the AOF.
    let script = script("failover.mjs", &env, protocol)
        .arg("channel", &ch)
        .arg("step", "restart-redis")
        .timeout(Duration::from_secs(45));
    let out = script.run_with(|step| env.restart_redis_step(step, &ch));
    let r = out.json();
    assert_eq!(out.steps, ["restart-redis"]);
    sdk_expect::redis_restart(&r);
}
