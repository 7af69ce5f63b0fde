//! The deployment every SDK scenario runs against, and readers of its results.

use std::time::Duration;

use crate::gyre::{GyreBuilder, GyreProcess, Namespace};
use crate::server::RedisServer;

use super::SdkScript;
use super::expect as sdk_expect;

/// Namespace with everything on (history 100 / 300 s, forced recovery, presence, join/leave
/// pushed to all, clients may subscribe, publish, read history and presence).
pub const SDK_NS: &str = "chat";
/// Namespace with history and presence but no client permission at all (→ 103).
pub const SDK_LOCKED_NS: &str = "locked";
/// Namespace with history, presence and join/leave that only subscribers may read, nothing
/// forced ([`Namespace::subscribers_only`]): the SDK's `recoverable` and `joinLeave` options must
/// get recovery and join/leave pushes there.
pub const SDK_SUBSCRIBER_NS: &str = "members";
/// `history_size` / `history_ttl` (seconds) of [`SDK_NS`] and [`SDK_SUBSCRIBER_NS`].
pub const SDK_HISTORY: (u64, u64) = (100, 300);

/// Redis (with the module, on TCP) and `gyre` configured for the SDK scenarios; or `gyre` alone
/// with the memory engine.
pub struct SdkEnv {
    // Declared first so gyre is killed before Redis goes away.
    pub gyre: GyreProcess,
    pub redis: Option<RedisServer>,
}

impl SdkEnv {
    /// The builder every SDK environment uses: [`SDK_NS`], [`SDK_LOCKED_NS`],
    /// [`SDK_SUBSCRIBER_NS`], and `client.expired_close_delay = "2s"` so a connection whose token
    /// is not refreshed is closed within the scenario (Centrifugo's default is 25 s).
    pub fn gyre_builder() -> GyreBuilder {
        let (size, ttl) = SDK_HISTORY;
        GyreProcess::builder()
            .namespace(Namespace::full(SDK_NS, size, ttl))
            .namespace(Namespace::new(SDK_LOCKED_NS).history(10, 300).presence())
            .namespace(Namespace::subscribers_only(SDK_SUBSCRIBER_NS, size, ttl))
            .client_option("expired_close_delay = \"2s\"")
    }

    /// Redis engine, Redis without persistence.
    pub fn redis() -> Self {
        Self::with_redis(RedisServer::builder().tcp().start())
    }

    /// Redis engine, Redis with `appendonly yes`, so [`RedisServer::restart`] keeps history.
    pub fn redis_aof() -> Self {
        Self::with_redis(RedisServer::builder().tcp().appendonly().start())
    }

    pub fn with_redis(redis: RedisServer) -> Self {
        let gyre = Self::gyre_builder().redis(&redis).start();
        Self {
            gyre,
            redis: Some(redis),
        }
    }

    /// Redis engine, Redis without persistence, and gyre configured further by `configure`
    /// (e.g. a transport's table through [`GyreBuilder::extra_toml`]).
    pub fn redis_configured(configure: impl FnOnce(GyreBuilder) -> GyreBuilder) -> Self {
        let redis = RedisServer::builder().tcp().start();
        let gyre = configure(Self::gyre_builder()).redis(&redis).start();
        Self {
            gyre,
            redis: Some(redis),
        }
    }

    /// Memory engine, no Redis.
    pub fn memory() -> Self {
        Self {
            gyre: Self::gyre_builder().memory().start(),
            redis: None,
        }
    }

    pub fn redis_server(&mut self) -> &mut RedisServer {
        self.redis.as_mut().expect("this environment has no Redis")
    }

    /// The Redis TCP port (for `--redis-port`).
    pub fn redis_port(&self) -> u16 {
        self.redis
            .as_ref()
            .and_then(|r| r.port())
            .expect("this environment has no Redis")
    }
}

/// The SDK's basic scenarios on one deployment, in `protocol`: `receive.mjs` (publications from
/// the API, `redis-cli GYRE.PUBLISH` and a client; `redis_cli` are its `--redis-*` arguments, e.g.
/// `("redis-port", …)`, and empty leaves the redis-cli publication out), `presence.mjs`
/// (presence, stats, history) and `recovery.mjs` (five publications missed while offline), each
/// on its own channel `<prefix>-<scenario>-<protocol>`, with their [`sdk_expect`] assertions.
pub fn sdk_basic_scenarios(
    gyre: &GyreProcess,
    protocol: &str,
    prefix: &str,
    redis_cli: &[(&str, String)],
) {
    let channel = |scenario: &str| format!("{prefix}-{scenario}-{protocol}");
    let mut receive = SdkScript::node("receive.mjs")
        .gyre(gyre)
        .arg("protocol", protocol)
        .arg("channel", channel("receive"));
    for (key, value) in redis_cli {
        receive = receive.arg(key, value);
    }
    sdk_expect::receive(&receive.run().json(), !redis_cli.is_empty());
    let r = SdkScript::node("presence.mjs")
        .gyre(gyre)
        .arg("protocol", protocol)
        .arg("channel", channel("presence"))
        .run()
        .json();
    sdk_expect::presence(&r);
    let r = SdkScript::node("recovery.mjs")
        .gyre(gyre)
        .arg("protocol", protocol)
        .arg("channel", channel("recovery"))
        .arg("count", 5)
        .run()
        .json();
    sdk_expect::recovery(&r, 5);
}

// ------------------------------------------------------------------------------------------------
// Reading scenario results.

/// The `offset` of every publication in a JSON array of publications.
pub fn json_offsets(pubs: &serde_json::Value) -> Vec<u64> {
    json_array(pubs)
        .iter()
        .map(|p| {
            p["offset"]
                .as_u64()
                .unwrap_or_else(|| panic!("publication without an offset: {p}"))
        })
        .collect()
}

/// The `data` of every publication in a JSON array of publications.
pub fn json_data(pubs: &serde_json::Value) -> Vec<serde_json::Value> {
    json_array(pubs).iter().map(|p| p["data"].clone()).collect()
}

/// `value` as an array; panics with the value otherwise.
pub fn json_array(value: &serde_json::Value) -> &Vec<serde_json::Value> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("expected a JSON array, got {value}"))
}

/// `value[key]` as a string; panics otherwise.
pub fn json_str<'a>(value: &'a serde_json::Value, key: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("expected a string at {key:?} in {value}"))
}

impl SdkEnv {
    /// The driver's side of the `restart-redis` step of the Redis restart scenarios: stop Redis,
    /// keep it down for 1.5 s (gyre notices, API publishes fail meanwhile), start it again (its AOF
    /// keeps history), then publish `{"source":"redis","n":1..=3}` to `channel` straight into
    /// Redis with GYRE.PUBLISH, most likely before gyre has resubscribed.
    pub fn restart_redis_step(&mut self, step: &str, channel: &str) -> Result<(), String> {
        if step != "restart-redis" {
            return Err(format!("unknown step {step}"));
        }
        let (size, ttl) = SDK_HISTORY;
        let redis = self.redis_server();
        redis.stop();
        std::thread::sleep(Duration::from_millis(1500));
        redis.restart();
        let mut con = redis.connection();
        for n in 1..=3 {
            let data = serde_json::json!({"source": "redis", "n": n}).to_string();
            crate::replies::cmd(
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
        }
        Ok(())
    }
}
