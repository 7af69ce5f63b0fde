//! Gyre's chaos suite (tests/tests/chaos.rs): one `redis-server` with the module, two `gyre` nodes
//! on it, and the `chaos.mjs` scenario of the unmodified centrifuge-js SDK (subscribers on both
//! nodes, publishers through both APIs recording every acknowledgement), while the test injects a
//! fault. What gyre sent each subscriber, in the order it arrived, is checked by
//! [`crate::ChaosRecord`]; that the SDK emitted the same publications, by
//! [`ChaosOutcome::assert_sdk_saw_the_wire`].

use std::time::Duration;

use serde_json::Value as Json;

use crate::chaos_check::{Acked, ChaosRecord, Position, Seen, SubscriberLog, Summary, Unacked};
use crate::gyre::{GyreBuilder, GyreProcess, Namespace};
use crate::http::http_request;
use crate::replies::cmd;
use crate::sdk::{SdkScript, json_array, json_str};
use crate::server::RedisServer;

/// The namespace of every chaos channel: history with forced recovery, large enough that a
/// subscriber cut off during a fault can recover everything published meanwhile.
pub const CHAOS_NS: &str = "chaos";
/// `history_size` / `history_ttl` (seconds) of [`CHAOS_NS`].
pub const CHAOS_HISTORY: (u64, u64) = (5000, 300);

/// Redis and two gyre nodes on it.
pub struct ChaosEnv {
    // Declared first so the nodes are killed before Redis goes away.
    pub nodes: Vec<GyreProcess>,
    pub redis: RedisServer,
}

impl ChaosEnv {
    /// The nodes' configuration: [`CHAOS_NS`] on `redis`.
    pub fn gyre_builder(redis: &RedisServer) -> GyreBuilder {
        let (size, ttl) = CHAOS_HISTORY;
        GyreProcess::builder()
            .namespace(Namespace::full(CHAOS_NS, size, ttl))
            .redis(redis)
    }

    /// Two nodes on `redis` (started with [`crate::ServerBuilder::tcp`]), configured further by
    /// `configure`.
    pub fn start(redis: RedisServer, configure: impl Fn(GyreBuilder) -> GyreBuilder) -> Self {
        let nodes = (0..2)
            .map(|_| configure(Self::gyre_builder(&redis)).start())
            .collect();
        Self { nodes, redis }
    }

    /// Clients of Redis subscribed to at least one channel or pattern (gyre's PUB/SUB
    /// connections), per `CLIENT LIST`.
    pub fn pubsub_clients(&self) -> usize {
        let mut con = self.redis.connection();
        let list = cmd(&mut con, &["CLIENT", "LIST"]);
        let text = match list {
            redis::Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
            redis::Value::VerbatimString { text, .. } => text,
            other => panic!("CLIENT LIST answered {other:?}"),
        };
        text.lines()
            .filter(|line| {
                line.split(' ').any(|field| {
                    ["sub=", "psub=", "ssub="].iter().any(|key| {
                        field
                            .strip_prefix(key)
                            .is_some_and(|n| n.parse::<u64>().unwrap_or(0) > 0)
                    })
                })
            })
            .count()
    }
}

/// One run of `chaos.mjs` against a [`ChaosEnv`].
#[derive(Debug, Clone)]
pub struct ChaosScenario {
    channels: Vec<String>,
    clients_per_node: usize,
    subs_per_client: usize,
    pace_ms: u64,
    pad: usize,
    warmup: usize,
    after: usize,
}

impl ChaosScenario {
    /// Three clients per node, two subscriptions each over `channels` (names in [`CHAOS_NS`]
    /// without the namespace), a publication every 20 ms through each node's API, the fault
    /// after 30 acknowledged publications, 20 more through each API after it.
    pub fn new(channels: &[&str]) -> Self {
        Self {
            channels: channels.iter().map(|c| format!("{CHAOS_NS}:{c}")).collect(),
            clients_per_node: 3,
            subs_per_client: 2,
            pace_ms: 20,
            pad: 0,
            warmup: 30,
            after: 20,
        }
    }

    pub fn clients_per_node(mut self, n: usize) -> Self {
        self.clients_per_node = n;
        self
    }

    pub fn subs_per_client(mut self, n: usize) -> Self {
        self.subs_per_client = n;
        self
    }

    /// Bytes of padding in every publication of the script.
    pub fn pad(mut self, bytes: usize) -> Self {
        self.pad = bytes;
        self
    }

    /// The full channel names.
    pub fn channels(&self) -> &[String] {
        &self.channels
    }

    /// Runs the script; its `fault` step runs `fault` (publishing goes on meanwhile). Returns
    /// what was recorded, unchecked: see [`ChaosOutcome::check`].
    pub fn run(&self, env: &mut ChaosEnv, mut fault: impl FnMut(&mut ChaosEnv)) -> ChaosOutcome {
        let join = |f: &dyn Fn(&GyreProcess) -> String| -> String {
            env.nodes.iter().map(f).collect::<Vec<_>>().join(",")
        };
        let first = &env.nodes[0];
        let script = SdkScript::node("chaos.mjs")
            .arg("urls", join(&|g| g.ws_url()))
            .arg("apis", join(&|g| g.api_url()))
            .arg("api-key", first.api_key())
            .arg("secret", first.hmac_secret())
            .arg("channels", self.channels.join(","))
            .arg("clients-per-node", self.clients_per_node)
            .arg("subs-per-client", self.subs_per_client)
            .arg("pace", self.pace_ms)
            .arg("pad", self.pad)
            .arg("warmup", self.warmup)
            .arg("after", self.after)
            .timeout(Duration::from_secs(150));
        let out = script.run_with(|step| {
            if step != "fault" {
                return Err(format!("unknown step {step}"));
            }
            fault(env);
            Ok(())
        });
        let result = out.json();
        assert_eq!(out.steps, ["fault"], "{}", out.describe("ran"));
        ChaosOutcome {
            record: parse_record(&result),
            result,
        }
    }
}

/// What a chaos run recorded.
#[derive(Debug, Clone)]
pub struct ChaosOutcome {
    /// The script's result line.
    pub result: Json,
    /// Publications and subscriptions; the driver may add its own before checking.
    pub record: ChaosRecord,
}

impl ChaosOutcome {
    /// Every subscriber got the last publication of its channel (publications resume after the
    /// fault) and the record is consistent ([`ChaosRecord::assert_consistent`]).
    /// A run with violations leaves its result line and record in a temporary file, named in
    /// the panic message.
    pub fn check(&self) -> Summary {
        if !self.record.violations().1.is_empty() {
            let dump = std::env::temp_dir().join(format!(
                "gyre-chaos-{}-{}.json",
                std::process::id(),
                crate::wait::now_ms()
            ));
            let text = format!("{}\n{:#?}\n", self.result, self.record);
            match std::fs::write(&dump, text) {
                Ok(()) => eprintln!("chaos run recorded in {}", dump.display()),
                Err(e) => eprintln!("could not write {}: {e}", dump.display()),
            }
        }
        let summary = self.record.assert_consistent();
        self.assert_sdk_saw_the_wire();
        let unsettled = json_array(&self.result["unsettled"]);
        assert!(
            unsettled.is_empty(),
            "subscribers without the last publication of their channel: {unsettled:?}"
        );
        eprintln!("chaos run: {summary}");
        summary
    }

    /// The SDK emitted every publication that reached its client, and nothing else (in whatever
    /// order: see `chaos.mjs` on why order is judged on the wire).
    pub fn assert_sdk_saw_the_wire(&self) {
        let ids = |list: &Json| -> Vec<String> {
            let mut ids: Vec<String> = json_array(list)
                .iter()
                .filter(|e| e["ev"] == "pub")
                .map(|e| json_str(e, "id").to_owned())
                .collect();
            ids.sort();
            ids
        };
        for s in json_array(&self.result["subscriptions"]) {
            let (sdk, wire) = (ids(&s["seen"]), ids(&s["wire"]));
            assert!(
                sdk == wire,
                "{} {}: the SDK emitted {} publications, {} arrived; emitted only: {:?}; arrived \
                 only: {:?}",
                s["who"],
                s["channel"],
                sdk.len(),
                wire.len(),
                sdk.iter()
                    .filter(|id| !wire.contains(id))
                    .collect::<Vec<_>>(),
                wire.iter()
                    .filter(|id| !sdk.contains(id))
                    .collect::<Vec<_>>()
            );
        }
    }

    /// Connections each client made (its `connected` events), by client label.
    pub fn connects(&self) -> Vec<(String, usize)> {
        json_array(&self.result["clients"])
            .iter()
            .map(|c| {
                let n = json_array(&c["events"])
                    .iter()
                    .filter(|e| e["ev"] == "connected")
                    .count();
                (json_str(c, "who").to_owned(), n)
            })
            .collect()
    }

    /// Why clients lost their connection: the code of every `connecting` event after a
    /// connection (the SDK reconnects) and of every `disconnected` event but their own at the
    /// end (code 0).
    pub fn disconnect_codes(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for c in json_array(&self.result["clients"]) {
            let mut connected = false;
            for e in json_array(&c["events"]) {
                let lost = match e["ev"].as_str() {
                    Some("connected") => {
                        connected = true;
                        false
                    }
                    Some("connecting") => std::mem::take(&mut connected),
                    Some("disconnected") => e["code"] != 0,
                    _ => false,
                };
                if lost {
                    out.push((
                        json_str(c, "who").to_owned(),
                        e["code"].as_u64().unwrap_or(0),
                    ));
                }
            }
        }
        out
    }

    /// The distinct epochs acknowledged on `channel`, in the order they first appeared.
    pub fn epochs(&self, channel: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for a in self.record.acked.iter().filter(|a| a.channel == channel) {
            if !out.contains(&a.position.epoch) {
                out.push(a.position.epoch.clone());
            }
        }
        out
    }

    /// The offsets acknowledged on `channel` under `epoch`, in acknowledgement order.
    pub fn acked_offsets(&self, channel: &str, epoch: &str) -> Vec<u64> {
        self.record
            .acked
            .iter()
            .filter(|a| a.channel == channel && a.position.epoch == epoch)
            .map(|a| a.position.offset)
            .collect()
    }

    /// Subscriptions that were reset after their first subscribe (told `recovered: false`).
    pub fn told(&self) -> Vec<(&str, &str)> {
        self.record
            .subscribers
            .iter()
            .filter(|s| {
                s.seen
                    .iter()
                    .filter(|e| matches!(e, Seen::Subscribed { .. }))
                    .skip(1)
                    .any(|e| {
                        matches!(e, Seen::Subscribed { was_recovering, recovered, .. }
                            if !(*was_recovering && *recovered))
                    })
            })
            .map(|s| (s.who.as_str(), s.channel.as_str()))
            .collect()
    }

    /// Unix ms when the fault step was asked for, and when the driver had done it.
    pub fn fault_window(&self) -> (i64, i64) {
        let at = |key: &str| {
            self.result[key]
                .as_i64()
                .unwrap_or_else(|| panic!("no {key} in the result"))
        };
        (at("faultAt"), at("faultDoneAt"))
    }
}

fn ms(v: &Json, key: &str) -> i64 {
    v[key]
        .as_i64()
        .unwrap_or_else(|| panic!("expected a number at {key:?} in {v}"))
}

fn offset(v: &Json) -> u64 {
    v["offset"]
        .as_u64()
        .unwrap_or_else(|| panic!("expected an offset in {v}"))
}

/// The script's result as a [`ChaosRecord`]: each subscription as gyre sent it (`wire`).
pub fn parse_record(result: &Json) -> ChaosRecord {
    let acked = json_array(&result["acked"])
        .iter()
        .map(|a| Acked {
            channel: json_str(a, "channel").to_owned(),
            id: json_str(a, "id").to_owned(),
            position: Position::new(json_str(a, "epoch"), offset(a)),
            sent_ms: ms(a, "sentAt"),
        })
        .collect();
    let unacked = json_array(&result["failed"])
        .iter()
        .map(|f| Unacked {
            channel: json_str(f, "channel").to_owned(),
            id: json_str(f, "id").to_owned(),
            sent_ms: ms(f, "sentAt"),
            error: json_str(f, "error").to_owned(),
        })
        .collect();
    let subscribers = json_array(&result["subscriptions"])
        .iter()
        .map(|s| SubscriberLog {
            who: json_str(s, "who").to_owned(),
            channel: json_str(s, "channel").to_owned(),
            seen: json_array(&s["wire"])
                .iter()
                .map(|e| match e["ev"].as_str() {
                    Some("subscribed") => Seen::Subscribed {
                        t_ms: ms(e, "t"),
                        was_recovering: e["wasRecovering"] == true,
                        recovered: e["recovered"] == true,
                        position: Position::new(json_str(e, "epoch"), offset(e)),
                    },
                    Some("pub") => Seen::Publication {
                        t_ms: ms(e, "t"),
                        offset: offset(e),
                        id: json_str(e, "id").to_owned(),
                    },
                    _ => panic!("unknown event {e}"),
                })
                .collect(),
        })
        .collect();
    ChaosRecord {
        acked,
        unacked,
        subscribers,
    }
}

/// `GET /metrics` of `gyre`: the value of the sample `name` (with its labels, e.g.
/// `gyre_client_disconnects_total{code="3008"}`), 0 when absent.
pub fn metric(gyre: &GyreProcess, sample: &str) -> f64 {
    let path = format!("{}/metrics", gyre.handler_prefix());
    let (status, body) = http_request(gyre.internal_port(), "GET", &path, &[], b"")
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    assert_eq!(status, 200, "GET {path}: {body}");
    body.lines()
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == sample).then(|| value.parse().expect("a metric value"))
        })
        .unwrap_or(0.0)
}

/// Resident memory of process `pid` in KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}
