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
//! - `hook_backend` — [`HttpBackend`]: the Python application backend of the proxy hook tests;
//!   `grpc_backend` — [`GrpcBackend`]: the same rules over GRPC (tonic, from `proxy.proto`).

mod grpc_backend;
mod gyre_process;
mod hook_backend;
mod module_build;
mod pubsub;
mod replies;
mod server;
mod wait;
pub mod ws_client;

pub use gyre_proto::redis_payload::{ChannelEvent, decode};
pub use gyre_proto::{ClientInfo, Publication};
pub use redis::{Connection, RedisError, RedisResult, Value};

pub use grpc_backend::GrpcBackend;
pub use gyre_process::{
    CHROMIUM, GyreBuilder, GyreProcess, Namespace, SDK_HISTORY, SDK_LOCKED_NS, SDK_NS,
    SDK_SUBSCRIBER_NS, ScriptOutput, SdkEnv, SdkScript, chromium_ready, gyre_binary, http_request,
    http_request_with_timeout, json_array, json_data, json_offsets, json_str, node_sdk_status,
    python_sdk_status, python_venv, sdk_available, sdk_dir, sdk_expect,
};
pub use hook_backend::HttpBackend;
pub use module_build::{module_path, workspace_root};
pub use pubsub::{Subscriber, decode_payload};
pub use replies::{
    Entry, History, StreamEntry, aof_commands, as_array, as_bytes, as_int, as_string, as_strings,
    assert_ping, cmd, cmd_bytes, decode_client_info, decode_publication, error_text, exists,
    expect_error, hgetall, history, history_raw, info_section, publish, publish_hist, try_cmd, ttl,
    xrange,
};
pub use server::{RedisServer, ServerBuilder, free_port};
pub use wait::{now_ms, wait_until};
