//! Test harness: spawns real redis-server processes with the Gyre module loaded.
//!
//! Module map (everything is re-exported at the crate root, so tests `use gyre_tests::*`):
//!
//! - `module_build` — [`module_path()`] finds `libgyre.so` (env `GYRE_MODULE`, else
//!   `<workspace>/target/debug`) and builds it once per test process when it is missing or older
//!   than its sources, because `cargo test` does not build the cdylib.
//! - `server` — [`RedisServer`] owns one `redis-server` in its own temporary directory (unix
//!   socket, optional TCP port for replication), waits for readiness, restarts in place and
//!   kills + removes everything on drop; [`ServerBuilder`] configures it; [`free_port`].
//! - `pubsub` — [`Subscriber`] is a raw RESP PUB/SUB client (SUBSCRIBE or SSUBSCRIBE) with
//!   timeouts and a barrier, so tests can assert the exact set of messages a command published;
//!   [`decode_payload`].
//! - `replies` — reply helpers ([`cmd`], [`publish`], [`history`], [`expect_error`], `as_*` …)
//!   turn replies into plain values and panic with the command that failed; [`xrange`],
//!   [`hgetall`], [`info_section`], [`aof_commands`].
//! - `wait` — [`wait_until`] polling and [`now_ms`].
//! - `cluster` — [`RedisCluster`]: six nodes (three primaries, three replicas) with the module,
//!   shared per test binary ([`RedisCluster::shared`]) or owned; routing by slot, `kill -9` of a
//!   primary, the tail-loss failover, slot migration (at once, paced, or by `redis-cli --cluster
//!   reshard`), [`RedisCluster::heal`].
//! - `cluster_client` — [`ClusterClient`]: follows `MOVED`/`ASK` and retries `TRYAGAIN` like a
//!   cluster client, counting each; [`key_slot`], [`tag_for_slot`].
//! - `tail_loss` — [`crash_with_tail_loss`]: makes a primary acknowledge writes its replica never
//!   gets, then kills it.
//! - `tls_pki` — [`TestPki`]: a CA and server/client certificates made with `openssl`, and a
//!   TLS-only Redis presenting them.
//! - `sentinel_group` — [`SentinelGroup`]: primary + replica + three sentinels, and a failover.
//! - `tcp_forwarder` — [`TcpForwarder`]: a switchable TCP proxy standing in for HAProxy.
//! - `failover` — [`FailoverScenario`], [`run_failover_scenario`]: the SDK's view of a primary
//!   failover or a slot migration, and what it must show (no silent gap, no reused (epoch,
//!   offset) pair); [`window_writer`] publishes during a tail-loss window.
//! - `gyre` — [`GyreProcess`]: the `gyre` binary as a child process, configured by
//!   [`GyreBuilder`] or by a config text; [`GyreBuilder::start_failure`] and
//!   [`GyreBuilder::checkconfig`] where it must refuse to start.
//! - `http` — [`http_request`]: one request to a local server (ureq).
//! - `sdk` — the Centrifugo SDKs (Node and Python) and Chromium as test clients: [`SdkScript`],
//!   [`SdkEnv`], [`sdk_expect`].
//! - `chaos` — [`ChaosEnv`] (Redis + two gyre nodes) and [`ChaosScenario`], the `chaos.mjs`
//!   run of the chaos suite; `chaos_check` — [`ChaosRecord`]: what every fault must leave true
//!   (no silent gap, no reused position, no duplicate, offsets rising), checked from what every
//!   publisher and subscriber recorded.
//! - `hook_backend` — [`HttpBackend`]: the Python application backend of the proxy hook tests;
//!   `grpc_backend` — [`GrpcBackend`]: the same rules over GRPC (tonic, from `proxy.proto`).

mod chaos;
mod chaos_check;
mod cluster;
mod cluster_client;
mod failover;
mod grpc_backend;
mod gyre;
mod hook_backend;
mod http;
mod module_build;
mod pubsub;
mod replies;
mod sdk;
mod sentinel_group;
mod server;
mod tail_loss;
mod tcp_forwarder;
mod tls_pki;
mod wait;
pub mod ws_client;

pub use gyre_proto::redis_payload::{ChannelEvent, decode};
pub use gyre_proto::{ClientInfo, Publication};
pub use redis::{Connection, RedisError, RedisResult, Value};

pub use chaos::{
    CHAOS_HISTORY, CHAOS_NS, ChaosEnv, ChaosOutcome, ChaosScenario, metric, parse_record, rss_kib,
};
pub use chaos_check::{
    Acked, CLOCK_SLACK_MS, ChaosRecord, Position, Seen, SubscriberLog, Summary, Unacked, Violation,
};
pub use cluster::{
    Migration, NODE_TIMEOUT, NodeView, RedisCluster, Reshard, SETTLE_TIMEOUT, SharedCluster,
};
pub use cluster_client::{
    ClusterClient, RETRY_BUDGET, RETRY_PAUSE, Redirections, key_slot, tag_for_slot,
};
pub use failover::{
    Ack, FailoverOutcome, FailoverScenario, publish_acked, run_failover_scenario, window_writer,
};
pub use grpc_backend::{GrpcBackend, GrpcOptions};
pub use gyre::{GyreBuilder, GyreProcess, Namespace, checkconfig_toml, gyre_binary, gyre_command};
pub use hook_backend::HttpBackend;
pub use http::{http_request, http_request_with_timeout};
pub use module_build::{module_path, workspace_root};
pub use pubsub::{Subscriber, decode_payload};
pub use replies::{
    Entry, History, StreamEntry, aof_commands, as_array, as_bytes, as_int, as_string, as_strings,
    assert_ping, cmd, cmd_bytes, decode_client_info, decode_publication, error_text, exists,
    expect_error, hgetall, history, history_raw, info_section, publish, publish_hist, try_cmd, ttl,
    xrange,
};
pub use sdk::expect as sdk_expect;
pub use sdk::{
    CHROMIUM, SDK_HISTORY, SDK_LOCKED_NS, SDK_NS, SDK_SUBSCRIBER_NS, ScriptOutput, SdkEnv,
    SdkScript, json_array, json_data, json_offsets, json_str, node_sdk_status, python_sdk_status,
    python_venv, require_chromium, require_node_sdk, require_python_sdk, sdk_basic_scenarios,
    sdk_dir,
};
pub use sentinel_group::{SentinelGroup, SentinelSecurity, SentinelTls, wait_for_replica};
pub use server::{RedisServer, ServerBuilder, free_port};
pub use tail_loss::crash_with_tail_loss;
pub use tcp_forwarder::TcpForwarder;
pub use tls_pki::{CertFiles, TLS_SERVER_NAME, TestPki};
pub use wait::{now_ms, wait_until};
