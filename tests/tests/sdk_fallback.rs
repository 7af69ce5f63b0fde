//! The unmodified npm `centrifuge` SDK (5.7.x, Node 20) over the WebSocket fallbacks of gyre:
//! `http_stream` (POST stream of JSON lines or varint-delimited Protobuf) and `sse` (EventSource
//! GET with `cf_connect`, JSON only; the `eventsource` package stands in for the browser's), both
//! sending their further commands to `/emulation`.
//!
//! The same scenario scripts as `sdk_node.rs` (with `--transport`), asserted with the same
//! [`sdk_expect`] helpers; plus routing without sticky sessions: two gyre nodes on one Redis, the
//! SDK streaming from node A and posting its commands to node B's `/emulation`, which forwards
//! them to A through Redis.

use gyre_tests::*;

/// The fallback transports are off by default.
const FALLBACKS_TOML: &str = "[http_stream]\nenabled = true\n[sse]\nenabled = true\n";

/// The SDK builder of [`SdkEnv`] with the fallback transports on.
fn builder() -> GyreBuilder {
    SdkEnv::gyre_builder().extra_toml(FALLBACKS_TOML)
}

/// Redis engine (Redis with the module), fallbacks on.
fn redis_env() -> SdkEnv {
    let redis = RedisServer::builder().tcp().start();
    SdkEnv {
        gyre: builder().redis(&redis).start(),
        redis: Some(redis),
    }
}

/// Memory engine, fallbacks on.
fn memory_env() -> SdkEnv {
    SdkEnv {
        gyre: builder().memory().start(),
        redis: None,
    }
}

/// One way of carrying the protocol: the SDK's `--transport` and `--protocol`.
#[derive(Debug, Clone, Copy)]
struct Carrier {
    transport: &'static str,
    protocol: &'static str,
}

const HTTP_STREAM_JSON: Carrier = Carrier {
    transport: "http_stream",
    protocol: "json",
};
const HTTP_STREAM_PROTOBUF: Carrier = Carrier {
    transport: "http_stream",
    protocol: "protobuf",
};
/// EventSource carries text only: centrifuge-js offers SSE with the JSON protocol only.
const SSE_JSON: Carrier = Carrier {
    transport: "sse",
    protocol: "json",
};

impl Carrier {
    /// A channel of [`SDK_NS`] unique to this scenario and carrier.
    fn channel(self, name: &str) -> String {
        format!("{SDK_NS}:{name}-{}-{}", self.transport, self.protocol)
    }

    /// The same in [`SDK_SUBSCRIBER_NS`] (history and presence for subscribers only).
    fn subscriber_channel(self, name: &str) -> String {
        format!(
            "{SDK_SUBSCRIBER_NS}:{name}-{}-{}",
            self.transport, self.protocol
        )
    }

    fn script(self, name: &str, gyre: &GyreProcess) -> SdkScript {
        SdkScript::node(name)
            .gyre(gyre)
            .arg("protocol", self.protocol)
            .arg("transport", self.transport)
    }
}

/// One `#[test]` per carrier for each scenario function (which takes the [`Carrier`]).
macro_rules! every_carrier {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                #[test]
                fn http_stream_json() {
                    gyre_tests::require_node_sdk();
                    super::$scenario(super::HTTP_STREAM_JSON);
                }
                #[test]
                fn http_stream_protobuf() {
                    gyre_tests::require_node_sdk();
                    super::$scenario(super::HTTP_STREAM_PROTOBUF);
                }
                #[test]
                fn sse_json() {
                    gyre_tests::require_node_sdk();
                    super::$scenario(super::SSE_JSON);
                }
            }
        )*
    };
}

every_carrier!(
    receive_from_api_redis_cli_and_client,
    receive_with_memory_engine,
    presence_stats_and_history,
    join_and_leave,
    join_and_leave_for_subscribers,
    recovery_after_offline_publications,
    recovery_for_subscribers,
    token_expiry_and_refresh,
    token_errors,
    channel_errors,
    commands_posted_to_another_node,
    presence_and_history_posted_to_another_node,
);

/// The connected events of a result's `events` carry the SDK's transport name.
fn assert_transport(r: &serde_json::Value, carrier: Carrier) {
    let connected: Vec<&serde_json::Value> = json_array(&r["events"])
        .iter()
        .filter(|e| e["ev"] == "connected")
        .collect();
    assert!(!connected.is_empty(), "no connected event: {r}");
    for e in connected {
        assert_eq!(e["transport"], carrier.transport, "{e}");
    }
}

fn receive_from_api_redis_cli_and_client(carrier: Carrier) {
    let env = redis_env();
    let r = carrier
        .script("receive.mjs", &env.gyre)
        .arg("channel", carrier.channel("receive"))
        .arg("redis-port", env.redis_port())
        .run()
        .json();
    assert_transport(&r, carrier);
    sdk_expect::receive(&r, true);
}

fn receive_with_memory_engine(carrier: Carrier) {
    let env = memory_env();
    let r = carrier
        .script("receive.mjs", &env.gyre)
        .arg("channel", carrier.channel("receive-mem"))
        .run()
        .json();
    assert_transport(&r, carrier);
    sdk_expect::receive(&r, false);
}

fn presence_stats_and_history(carrier: Carrier) {
    let env = redis_env();
    let r = carrier
        .script("presence.mjs", &env.gyre)
        .arg("channel", carrier.channel("presence"))
        .run()
        .json();
    assert_transport(&r, carrier);
    sdk_expect::presence(&r);
}

fn join_and_leave(carrier: Carrier) {
    let env = redis_env();
    let r = carrier
        .script("join_leave.mjs", &env.gyre)
        .arg("channel", carrier.channel("joinleave"))
        .run()
        .json();
    assert_transport(&r, carrier);
    sdk_expect::join_leave(&r);
}

/// `joinLeave: true` where only `allow_presence_for_subscriber` grants join/leave pushes.
fn join_and_leave_for_subscribers(carrier: Carrier) {
    let env = redis_env();
    let r = carrier
        .script("join_leave.mjs", &env.gyre)
        .arg("channel", carrier.subscriber_channel("joinleave"))
        .run()
        .json();
    assert_transport(&r, carrier);
    sdk_expect::join_leave(&r);
}

fn recovery_after_offline_publications(carrier: Carrier) {
    let env = redis_env();
    let r = carrier
        .script("recovery.mjs", &env.gyre)
        .arg("channel", carrier.channel("recovery"))
        .arg("count", 5)
        .run()
        .json();
    assert_transport(&r, carrier);
    sdk_expect::recovery(&r, 5);
}

/// `recoverable: true` where only `allow_history_for_subscriber` grants recovery.
fn recovery_for_subscribers(carrier: Carrier) {
    let env = redis_env();
    let r = carrier
        .script("recovery.mjs", &env.gyre)
        .arg("channel", carrier.subscriber_channel("recovery"))
        .arg("recoverable", true)
        .arg("count", 5)
        .run()
        .json();
    assert_transport(&r, carrier);
    sdk_expect::recovery(&r, 5);
}

/// The refresh command goes through `/emulation` like any other; the stream stays the same.
fn token_expiry_and_refresh(carrier: Carrier) {
    let env = redis_env();
    let r = carrier
        .script("token_refresh.mjs", &env.gyre)
        .arg("channel", carrier.channel("refresh"))
        .arg("ttl", 3)
        .run()
        .json();
    assert_transport(&r, carrier);
    sdk_expect::token_refresh(&r);
}

/// Bad signature → 3500 (terminal), expired token → 109 then a refreshed token connects,
/// expired without `getToken` → the SDK gives up (unauthorized). The disconnect code travels as
/// a disconnect push in the stream (no close frame exists on HTTP).
fn token_errors(carrier: Carrier) {
    let env = redis_env();
    let r = carrier.script("token_errors.mjs", &env.gyre).run().json();
    sdk_expect::token_errors(&r);
}

fn channel_errors(carrier: Carrier) {
    let env = redis_env();
    let tag = format!("{}-{}", carrier.transport, carrier.protocol);
    let r = carrier
        .script("sub_errors.mjs", &env.gyre)
        .arg("unknown", format!("nosuchns:x-{tag}"))
        .arg("denied", format!("{SDK_LOCKED_NS}:x-{tag}"))
        .run()
        .json();
    sdk_expect::channel_errors(&r);
}

/// `gyre_emulation_requests_total` of a node's `/metrics` (0 before the first request).
fn emulation_requests(gyre: &GyreProcess) -> u64 {
    let (status, text) = gyre
        .http("GET", "/metrics", &[], b"")
        .unwrap_or_else(|e| panic!("GET /metrics: {e}"));
    assert_eq!(status, 200, "GET /metrics: {text}");
    text.lines()
        .filter(|l| l.starts_with("gyre_emulation_requests_total"))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// A gauge of a node's `/metrics`.
fn gauge(gyre: &GyreProcess, name: &str) -> Option<f64> {
    let (_, text) = gyre.http("GET", "/metrics", &[], b"").ok()?;
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().last()?.parse().ok())
}

/// Two gyre nodes on one Redis (with the module); dropped in field order, nodes before Redis.
struct TwoNodes {
    node_a: GyreProcess,
    node_b: GyreProcess,
    redis: RedisServer,
}

impl TwoNodes {
    fn start() -> Self {
        let redis = RedisServer::builder().tcp().start();
        Self {
            node_a: builder().redis(&redis).start(),
            node_b: builder().redis(&redis).start(),
            redis,
        }
    }

    /// `script` streaming from node A and posting its commands to node B's `/emulation`.
    fn script(&self, carrier: Carrier, name: &str) -> SdkScript {
        carrier.script(name, &self.node_a).arg(
            "emulation-endpoint",
            format!("http://127.0.0.1:{}/emulation", self.node_b.port()),
        )
    }

    /// Runs `script` and checks that node B received (at least `min`) emulation requests, that
    /// node A received none itself, and that node B holds no session.
    fn run_through_b(&self, script: SdkScript, min: u64) -> serde_json::Value {
        let before_b = emulation_requests(&self.node_b);
        let r = script.run().json();
        let via_b = emulation_requests(&self.node_b) - before_b;
        eprintln!("node B forwarded {via_b} emulation requests to node A");
        assert!(
            via_b >= min,
            "node B counted {via_b} emulation requests, expected at least {min}:\n{}",
            self.node_b.log_tail(40)
        );
        assert_eq!(
            emulation_requests(&self.node_a),
            0,
            "node A got emulation requests itself"
        );
        assert_eq!(
            gauge(&self.node_b, "gyre_node_num_clients").unwrap_or(0.0),
            0.0,
            "the sessions live on node A only"
        );
        r
    }
}

/// No sticky sessions: nodes A and B share one Redis; both SDK clients stream from A (`--url`)
/// and post every further command to B's `/emulation`, which forwards them to A through Redis.
/// The receive scenario (alice's subscribe and bob's publish go through B) must pass as on one
/// node.
fn commands_posted_to_another_node(carrier: Carrier) {
    let nodes = TwoNodes::start();
    let script = nodes
        .script(carrier, "receive.mjs")
        .arg("channel", carrier.channel("cross-node"))
        .arg("redis-port", nodes.redis.port().expect("tcp"));
    let r = nodes.run_through_b(script, 2);
    assert_transport(&r, carrier);
    sdk_expect::receive(&r, true);
}

/// The same for presence, presence stats and history (commands whose replies carry data back
/// on node A's stream): at least 12 requests through B (2 subscribes, 3 presence, 2 presence
/// stats, 5 history; the SDK sends one command per request here, each awaited in turn).
fn presence_and_history_posted_to_another_node(carrier: Carrier) {
    let nodes = TwoNodes::start();
    let script = nodes
        .script(carrier, "presence.mjs")
        .arg("channel", carrier.channel("cross-node-presence"));
    let r = nodes.run_through_b(script, 12);
    assert_transport(&r, carrier);
    sdk_expect::presence(&r);
}
