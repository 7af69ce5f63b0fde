//! The `failover` SDK scenario (`tests/sdk/node/failover.mjs`) and what its result must show,
//! shared by the Cluster, Sentinel and TCP-proxy deployments: the driver's part of the step
//! (kill the primary, get the replica promoted and reachable; or move the channel's slot) is the
//! caller's.
//!
//! What every run must show ([`FailoverOutcome::check`]):
//! - the client stays connected and nothing arrives twice;
//! - it holds every acknowledged publication in order, or was told it could not recover
//!   (`recovered: false`); and publications resume;
//! - **no silent gap**: every acknowledged publication (through the API, or by the driver
//!   straight into Redis) reached the subscriber, or the subscriber got `recovered: false` after
//!   the publication was sent;
//! - **no reused pair**: no (epoch, offset) was acknowledged for two different publications,
//!   and a publication the subscriber got carries the offset its publisher was told.
//!
//! A tail-loss failover ([`crate::crash_with_tail_loss`]) has the driver publish during the
//! window with [`window_writer`]; [`FailoverOutcome::expect_tail_loss`] then checks that the loss
//! happened and was announced.

use std::collections::HashMap;
use std::time::Duration;

use redis::Connection;
use serde_json::{Value as Json, json};

use crate::gyre::GyreProcess;
use crate::replies::{as_array, as_int, as_string, cmd};
use crate::sdk::{SDK_HISTORY, SdkScript, json_array, json_data, json_offsets};
use crate::wait::now_ms;

/// API publications before the failover and during it; publications straight into the new
/// primary. One more API publication follows at the end.
const BEFORE: u64 = 5;
const AFTER: u64 = 5;
const FROM_REDIS: u64 = 3;

/// How far the script's clock and the driver's may disagree (both read the system clock, in
/// whole milliseconds).
const CLOCK_SLACK_MS: i64 = 2;

/// A publication the driver made straight into Redis with `GYRE.PUBLISH`: its data, the pair
/// Redis acknowledged, and when it was sent (unix ms).
#[derive(Debug, Clone, PartialEq)]
pub struct Ack {
    pub data: Json,
    pub offset: u64,
    pub epoch: String,
    pub sent_ms: i64,
}

/// `GYRE.PUBLISH <channel> <data> HISTORY …` (the SDK namespace's history) on `con`.
pub fn publish_acked(con: &mut Connection, channel: &str, data: Json) -> Ack {
    let (size, ttl) = SDK_HISTORY;
    let sent_ms = now_ms();
    let reply = cmd(
        con,
        &[
            "GYRE.PUBLISH",
            channel,
            &data.to_string(),
            "HISTORY",
            &size.to_string(),
            &ttl.to_string(),
        ],
    );
    let reply = as_array(&reply);
    Ack {
        data,
        offset: as_int(&reply[0]) as u64,
        epoch: as_string(&reply[1]),
        sent_ms,
    }
}

/// The `write` of a tail-loss window ([`crate::crash_with_tail_loss`]): each call publishes
/// `{"source":"window","n":…}` to `channel` on the doomed primary, records the acknowledgement
/// in `acks`, and pauses 20 ms.
pub fn window_writer<'a>(
    channel: &'a str,
    acks: &'a mut Vec<Ack>,
) -> impl FnMut(&mut Connection) + 'a {
    move |con| {
        let n = acks.len() + 1;
        acks.push(publish_acked(
            con,
            channel,
            json!({"source": "window", "n": n}),
        ));
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One run of `failover.mjs`; see [`run_failover_scenario`] for the default one.
#[derive(Debug, Clone)]
pub struct FailoverScenario<'a> {
    gyre: &'a GyreProcess,
    channel: String,
    protocol: &'static str,
    step: &'static str,
    load: bool,
    idempotent: bool,
}

/// What a run produced: the script's result line and the driver's own publications.
#[derive(Debug, Clone)]
pub struct FailoverOutcome {
    pub result: Json,
    /// Publications the driver made during the step before the new primary was reachable (a
    /// tail-loss window), in order.
    pub window: Vec<Ack>,
    /// `{"source":"redis","n":1..=3}`, published into the new primary once the step was done.
    pub from_redis: Vec<Ack>,
}

impl<'a> FailoverScenario<'a> {
    /// JSON, step `failover`, five API publications with idempotency keys during the step.
    pub fn new(gyre: &'a GyreProcess, channel: &str) -> Self {
        Self {
            gyre,
            channel: channel.to_owned(),
            protocol: "json",
            step: "failover",
            load: false,
            idempotent: true,
        }
    }

    /// `json` or `protobuf`.
    pub fn protocol(mut self, protocol: &'static str) -> Self {
        self.protocol = protocol;
        self
    }

    /// The step's name in the script's log (`failover`, `move-slot` …).
    pub fn step(mut self, step: &'static str) -> Self {
        self.step = step;
        self
    }

    /// API publications keep flowing (one every 50 ms) until the driver's step is done, without
    /// idempotency keys (a publish with a new key waits while its channel's slot migrates, see
    /// docs/module.md "Slot migration").
    pub fn under_load(mut self) -> Self {
        self.load = true;
        self.idempotent = false;
        self
    }

    /// Runs the scenario against `gyre` on `channel` (a namespace with history and forced
    /// recovery). `disrupt` does the step and returns a connection to the primary that now
    /// serves the channel, into which the driver then publishes `{"source":"redis","n":1..=3}`;
    /// what the driver publishes meanwhile (a tail-loss window) it records in the vector it is
    /// given. Asserts [`FailoverOutcome::check`].
    pub fn run(self, mut disrupt: impl FnMut(&mut Vec<Ack>) -> Connection) -> FailoverOutcome {
        let mut script = SdkScript::node("failover.mjs")
            .gyre(self.gyre)
            .arg("protocol", self.protocol)
            .arg("channel", &self.channel)
            .arg("before", BEFORE)
            .arg("from-redis", FROM_REDIS)
            .arg("after", AFTER)
            .arg("step", self.step)
            .timeout(Duration::from_secs(60));
        if self.load {
            script = script.arg("load", true);
        }
        if !self.idempotent {
            script = script.arg("idempotent", false);
        }
        let mut window = Vec::new();
        let mut from_redis = Vec::new();
        let out = script.run_with(|step| {
            if step != self.step {
                return Err(format!("unknown step {step}"));
            }
            let mut con = disrupt(&mut window);
            for n in 1..=FROM_REDIS {
                from_redis.push(publish_acked(
                    &mut con,
                    &self.channel,
                    json!({"source": "redis", "n": n}),
                ));
            }
            Ok(())
        });
        let result = out.json();
        assert_eq!(out.steps, [self.step], "{}", out.describe("ran"));
        let outcome = FailoverOutcome {
            result,
            window,
            from_redis,
        };
        outcome.check();
        outcome
    }
}

/// [`FailoverScenario::new`] run with `fail_over` (which kills the primary, gets the replica
/// promoted and returns a connection to it).
pub fn run_failover_scenario(
    gyre: &GyreProcess,
    channel: &str,
    mut fail_over: impl FnMut() -> Connection,
) -> FailoverOutcome {
    FailoverScenario::new(gyre, channel).run(|_| fail_over())
}

impl FailoverOutcome {
    /// The API publications as acknowledgements (`sentAt`: their first attempt).
    pub fn api_acks(&self) -> Vec<Ack> {
        json_array(&self.result["published"])
            .iter()
            .map(|p| Ack {
                data: json!({"source": p["source"], "n": p["n"]}),
                offset: p["offset"].as_u64().expect("offset"),
                epoch: p["epoch"].as_str().expect("epoch").to_owned(),
                sent_ms: p["sentAt"].as_i64().expect("sentAt"),
            })
            .collect()
    }

    /// Every acknowledged publication: API, the window, and the driver's after the step.
    pub fn all_acks(&self) -> Vec<Ack> {
        let mut acks = self.api_acks();
        acks.extend(self.window.iter().cloned());
        acks.extend(self.from_redis.iter().cloned());
        acks
    }

    /// Unix ms of the last `subscribed` event that was a failed recovery (`recovered: false`).
    pub fn last_told(&self) -> Option<i64> {
        let r = &self.result;
        let origin = r["clockOrigin"].as_i64().expect("clockOrigin");
        json_array(&r["events"])
            .iter()
            .filter(|e| e["ev"] == "subscribed" && e["wasRecovering"] == true)
            .filter(|e| e["recovered"] == false)
            .map(|e| origin + e["t"].as_i64().expect("event time"))
            .max()
    }

    /// Everything a disruption must leave true; see the module's documentation.
    pub fn check(&self) {
        let r = &self.result;
        check(r, &self.window, &self.from_redis);

        let acks = self.all_acks();
        // No (epoch, offset) acknowledged for two publications.
        let mut by_pair: HashMap<(&str, u64), &Json> = HashMap::new();
        for ack in &acks {
            if let Some(other) = by_pair.insert((&ack.epoch, ack.offset), &ack.data) {
                panic!(
                    "({}, {}) acknowledged for {other} and for {}; every acknowledgement: {acks:#?}",
                    ack.epoch, ack.offset, ack.data
                );
            }
        }
        // A publication received carries the offset its publisher was told.
        let by_data: HashMap<String, &Ack> = acks.iter().map(|a| (a.data.to_string(), a)).collect();
        let received = json_array(&r["received"]);
        for p in received {
            if let Some(ack) = by_data.get(&p["data"].to_string()) {
                assert_eq!(
                    p["offset"].as_u64(),
                    Some(ack.offset),
                    "received {p} but its publisher was told {ack:?}"
                );
            }
        }
        // No silent gap: a publication the subscriber never got was sent before it was told.
        let got: Vec<String> = received.iter().map(|p| p["data"].to_string()).collect();
        let told = self.last_told();
        let missing: Vec<&Ack> = acks
            .iter()
            .filter(|a| !got.contains(&a.data.to_string()))
            .collect();
        for ack in &missing {
            assert!(
                told.is_some_and(|t| ack.sent_ms <= t + CLOCK_SLACK_MS),
                "silent gap: {ack:?} was acknowledged and never reached the subscriber, which was \
                 not told recovered: false after it was sent (last told at {told:?});\n\
                 missing: {missing:?}\nresult: {r}"
            );
        }
        eprintln!(
            "failover scenario: {} acknowledged ({} API, {} window, {} into the new primary), {} \
             received, {} missed and announced, lostContinuity {}",
            acks.len(),
            acks.len() - self.window.len() - self.from_redis.len(),
            self.window.len(),
            self.from_redis.len(),
            received.len(),
            missing.len(),
            r["lostContinuity"]
        );
    }

    /// A tail-loss failover: the driver published in the window, the promoted node lacked those
    /// publications (it handed their offsets out again, under another epoch, which
    /// [`FailoverOutcome::check`] allows only because the epoch differs), and the subscriber was
    /// told.
    pub fn expect_tail_loss(&self) {
        let top = self
            .window
            .iter()
            .map(|a| a.offset)
            .max()
            .expect("publications in the lost window");
        assert!(
            self.from_redis.iter().any(|a| a.offset <= top),
            "the promoted node held the window (its offsets went on after {top}): nothing was \
             lost; window {:?}, after {:?}",
            self.window,
            self.from_redis
        );
        assert_eq!(
            self.result["lostContinuity"], true,
            "publications were lost: the subscriber must be told: {}",
            self.result
        );
    }
}

/// The promise of a failover to a subscriber with recovery: it stays connected and either
/// holds every acknowledged publication exactly once, in offset order, or was told that
/// continuity was lost (`recovered: false`); either way, a publication made afterwards reaches
/// it.
fn check(r: &Json, window: &[Ack], from_redis: &[Ack]) {
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

    // The API publications are numbered 1.. in the order they were made; the last one was made
    // once everything else arrived (or was declared lost).
    let last = json_array(&r["published"]).len() as u64;
    assert!(last > BEFORE + AFTER, "{r}");
    assert_eq!(api.last(), Some(&last), "publications resume: {received}");
    if r["lostContinuity"] == false {
        let total = last + (window.len() + from_redis.len()) as u64;
        assert_eq!(
            json_offsets(received),
            (1..=total).collect::<Vec<_>>(),
            "every acknowledged publication exactly once, in order: {received}"
        );
        assert_eq!(api, (1..=last).collect::<Vec<_>>(), "{received}");
        assert_eq!(redis, (1..=FROM_REDIS).collect::<Vec<_>>(), "{received}");
        let mut acknowledged: Vec<u64> = json_array(&r["published"])
            .iter()
            .map(|p| p["offset"].as_u64().expect("offset"))
            .collect();
        acknowledged.extend(window.iter().chain(from_redis).map(|a| a.offset));
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

#[cfg(test)]
mod tests {
    //! The checks on synthetic results: each promise, broken on purpose, fails.
    use super::*;

    const ORIGIN: i64 = 1_000_000;

    /// A run without loss: API 1..=10 at offsets 1..=10, the driver's three at 11..=13, the
    /// last API publication at 14, every one received; all sent at script time `10 * offset`.
    fn clean() -> FailoverOutcome {
        let api = |n: u64, offset: u64| {
            json!({"source": "api", "n": n, "offset": offset, "epoch": "AAAAAAAA",
                   "sentAt": ORIGIN + 10 * offset as i64})
        };
        let mut published: Vec<Json> = (1..=10).map(|n| api(n, n)).collect();
        published.push(api(11, 14));
        let from_redis: Vec<Ack> = (1..=3)
            .map(|n| Ack {
                data: json!({"source": "redis", "n": n}),
                offset: 10 + n,
                epoch: "AAAAAAAA".into(),
                sent_ms: ORIGIN + 10 * (10 + n) as i64,
            })
            .collect();
        let mut received: Vec<Json> = (1..=10)
            .map(|n| json!({"offset": n, "data": {"source": "api", "n": n}}))
            .collect();
        received.extend(
            from_redis
                .iter()
                .map(|a| json!({"offset": a.offset, "data": a.data})),
        );
        received.push(json!({"offset": 14, "data": {"source": "api", "n": 11}}));
        FailoverOutcome {
            result: json!({
                "clockOrigin": ORIGIN,
                "connectedCount": 1,
                "events": [{"who": "alice", "ev": "subscribed", "wasRecovering": false,
                            "recovered": false, "t": 5}],
                "published": published,
                "received": received,
                "lostContinuity": false,
            }),
            window: Vec::new(),
            from_redis,
        }
    }

    /// `clean`, except that the driver's three never arrived and the subscriber was told
    /// `recovered: false` at script time `told`.
    fn lossy(told: i64) -> FailoverOutcome {
        let mut o = clean();
        let r = &mut o.result;
        r["received"]
            .as_array_mut()
            .unwrap()
            .retain(|p| p["data"]["source"] != "redis");
        r["events"].as_array_mut().unwrap().push(
            json!({"who": "alice", "ev": "subscribed", "wasRecovering": true,
                   "recovered": false, "t": told}),
        );
        r["lostContinuity"] = json!(true);
        o
    }

    #[test]
    fn a_complete_run_and_an_announced_loss_pass() {
        clean().check();
        // The driver's publications were sent at 110..=130, before she was told.
        lossy(135).check();
    }

    #[test]
    #[should_panic(expected = "silent gap")]
    fn a_publication_missed_without_being_told_fails() {
        let mut o = clean();
        o.result["received"]
            .as_array_mut()
            .unwrap()
            .retain(|p| p["data"] != json!({"source": "redis", "n": 2}));
        o.result["lostContinuity"] = json!(true);
        // Told, but before the missing publication was sent.
        o.result["events"].as_array_mut().unwrap().push(
            json!({"who": "alice", "ev": "subscribed", "wasRecovering": true,
                   "recovered": false, "t": 100}),
        );
        o.check();
    }

    #[test]
    #[should_panic(expected = "silent gap")]
    fn a_publication_sent_after_the_announcement_must_arrive() {
        lossy(115).check();
    }

    #[test]
    #[should_panic(expected = "acknowledged for")]
    fn a_pair_acknowledged_twice_fails() {
        let mut o = lossy(135);
        o.from_redis[0].offset = 3;
        o.check();
    }

    #[test]
    fn the_same_offset_under_another_epoch_passes() {
        let mut o = lossy(135);
        o.from_redis[0].offset = 3;
        o.from_redis[0].epoch = "BBBBBBBB".into();
        o.check();
    }

    #[test]
    #[should_panic(expected = "its publisher was told")]
    fn a_publication_received_at_another_offset_fails() {
        let mut o = lossy(135);
        o.result["received"][2]["offset"] = json!(12);
        o.check();
    }

    #[test]
    #[should_panic(expected = "arrived twice")]
    fn a_duplicate_fails() {
        let mut o = lossy(135);
        let first = o.result["received"][0].clone();
        o.result["received"]
            .as_array_mut()
            .unwrap()
            .insert(1, first);
        o.check();
    }

    #[test]
    #[should_panic(expected = "nothing was lost")]
    fn a_tail_loss_that_lost_nothing_fails() {
        let mut o = lossy(135);
        o.window = vec![Ack {
            data: json!({"source": "window", "n": 1}),
            offset: 6,
            epoch: "AAAAAAAA".into(),
            sent_ms: ORIGIN,
        }];
        o.expect_tail_loss();
    }
}
