//! The `failover` SDK scenario (`tests/sdk/node/failover.mjs`) and what its result must show,
//! shared by the Sentinel and the TCP-proxy deployments: the driver's part of the step (kill
//! the primary, get the replica promoted and reachable) is the caller's.

use std::time::Duration;

use serde_json::{Value as Json, json};

use crate::gyre_process::{
    GyreProcess, SDK_HISTORY, SdkScript, json_array, json_data, json_offsets,
};
use crate::replies::{as_array, as_int, cmd};

/// API publications before the failover and during it; publications straight into the new
/// primary. One more API publication follows at the end.
const BEFORE: u64 = 5;
const AFTER: u64 = 5;
const FROM_REDIS: u64 = 3;
/// The `n` of the API publication made once everything else arrived (or was declared lost).
const LAST: u64 = BEFORE + AFTER + 1;

/// Runs the scenario against `gyre` on `channel` (a namespace with history and forced
/// recovery). `fail_over` does the failover and returns a connection to the new primary, into
/// which the driver then publishes `{"source":"redis","n":1..=3}`. Asserts the outcome (see
/// [`check`]) and returns the result line.
pub fn run_failover_scenario(
    gyre: &GyreProcess,
    channel: &str,
    mut fail_over: impl FnMut() -> redis::Connection,
) -> Json {
    let script = SdkScript::node("failover.mjs")
        .gyre(gyre)
        .arg("protocol", "json")
        .arg("channel", channel)
        .arg("before", BEFORE)
        .arg("from-redis", FROM_REDIS)
        .arg("after", AFTER)
        .timeout(Duration::from_secs(60));
    let (size, ttl) = SDK_HISTORY;
    let mut from_redis = Vec::new();
    let out = script.run_with(|step| {
        if step != "failover" {
            return Err(format!("unknown step {step}"));
        }
        let mut con = fail_over();
        for n in 1..=FROM_REDIS {
            let data = json!({"source": "redis", "n": n}).to_string();
            let reply = cmd(
                &mut con,
                &[
                    "GYRE.PUBLISH",
                    channel,
                    &data,
                    "HISTORY",
                    &size.to_string(),
                    &ttl.to_string(),
                ],
            );
            from_redis.push(as_int(&as_array(&reply)[0]));
        }
        Ok(())
    });
    let r = out.json();
    assert_eq!(out.steps, ["failover"], "{}", out.describe("ran"));
    check(&r, &from_redis);
    r
}

/// The promise of a failover to a subscriber with recovery: it stays connected and either
/// holds every acknowledged publication exactly once, in offset order, or was told that
/// continuity was lost (`recovered: false`); either way, a publication made afterwards reaches
/// it.
pub fn check(r: &Json, redis_offsets: &[i64]) {
    assert_eq!(r["connectedCount"], 1, "the client stays connected: {r}");
    // Code 0 is the script's own disconnect() at the end.
    let disconnects: Vec<&Json> = json_array(&r["events"])
        .iter()
        .filter(|e| e["ev"] == "disconnected" && e["code"] != 0)
        .collect();
    assert!(disconnects.is_empty(), "{disconnects:?}");

    let received = &r["received"];
    let data = json_data(received);
    let mut unique = data.clone();
    unique.sort_by_key(|d| d.to_string());
    unique.dedup();
    assert_eq!(
        unique.len(),
        data.len(),
        "a publication arrived twice: {received}"
    );
    let of = |source: &str| -> Vec<u64> {
        data.iter()
            .filter(|d| d["source"] == source)
            .map(|d| d["n"].as_u64().expect("n"))
            .collect()
    };
    let api = of("api");
    let redis = of("redis");

    assert_eq!(api.last(), Some(&LAST), "publications resume: {received}");
    if r["lostContinuity"] == false {
        let total = BEFORE + FROM_REDIS + AFTER + 1;
        assert_eq!(
            json_offsets(received),
            (1..=total).collect::<Vec<_>>(),
            "every acknowledged publication exactly once, in order: {received}"
        );
        assert_eq!(api, (1..=LAST).collect::<Vec<_>>(), "{received}");
        assert_eq!(redis, (1..=FROM_REDIS).collect::<Vec<_>>(), "{received}");
        let published: Vec<u64> = json_array(&r["published"])
            .iter()
            .map(|p| p["offset"].as_u64().expect("offset"))
            .collect();
        let mut acknowledged: Vec<u64> = published;
        acknowledged.extend(redis_offsets.iter().map(|&o| o as u64));
        acknowledged.sort_unstable();
        assert_eq!(
            acknowledged,
            (1..=total).collect::<Vec<_>>(),
            "acknowledged offsets"
        );
    } else {
        // Told so: a resubscription that could not recover (the client reloads its state).
        let events = json_array(&r["events"]);
        assert!(
            events.iter().any(|e| e["ev"] == "subscribed"
                && e["wasRecovering"] == true
                && e["recovered"] == false),
            "{r}"
        );
        // Live publications before the failover arrived in order.
        assert_eq!(api[..BEFORE as usize], (1..=BEFORE).collect::<Vec<_>>()[..]);
    }
}
