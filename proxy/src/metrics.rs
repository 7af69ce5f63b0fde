//! Prometheus metrics at `/metrics`.
//!
//! Counters are bumped where things happen (connections, commands, disconnects, recovery,
//! engine errors); gauges that describe the node (clients, users, channels) are read from the hub
//! when Prometheus scrapes, so the broadcast path pays nothing for them.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub const CONNECTIONS_ACCEPTED: &str = "gyre_client_connections_accepted_total";
pub const COMMANDS: &str = "gyre_client_commands_total";
pub const COMMAND_DURATION: &str = "gyre_client_command_duration_seconds";
pub const COMMAND_ERRORS: &str = "gyre_client_command_errors_total";
pub const DISCONNECTS: &str = "gyre_client_disconnects_total";
pub const RECOVERIES: &str = "gyre_client_recoveries_total";
pub const ENGINE_ERRORS: &str = "gyre_engine_errors_total";
pub const ENGINE_RESYNCS: &str = "gyre_engine_resyncs_total";
pub const MESSAGES_SENT: &str = "gyre_transport_messages_sent_total";
pub const MESSAGES_RECEIVED: &str = "gyre_transport_messages_received_total";
/// Handshakes answered 503 by `client.handshake_rate_limit`.
pub const HANDSHAKES_REFUSED: &str = "gyre_handshakes_refused_total";
/// HTTP connections closed because a request head or the next request did not arrive in time
/// (`phase`: `header`, `idle`), and request bodies that did not (`phase`: `body`).
pub const HTTP_TIMEOUTS: &str = "gyre_http_timeouts_total";
/// TCP connections refused at accept: `http_server.max_unauthenticated_connections` reached.
pub const HTTP_CONNECTIONS_REFUSED: &str = "gyre_http_connections_refused_total";
/// Backend hook calls by `protocol` (http, grpc), `event` and proxy `name`: latency
/// (histogram), calls in flight, and failures by `reason` (timeout, unavailable, http_status,
/// grpc_status, bad_answer, encode).
pub const PROXY_DURATION: &str = "gyre_proxy_call_duration_seconds";
pub const PROXY_IN_FLIGHT: &str = "gyre_proxy_calls_in_flight";
pub const PROXY_ERRORS: &str = "gyre_proxy_call_errors_total";
/// `/emulation` requests accepted (handled here or forwarded to the node holding the session).
pub const EMULATION_REQUESTS: &str = "gyre_emulation_requests_total";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// `counter!(name, "transport" => transport)`, registered once per name and transport: the
/// recorder allocates for every handle it hands out (32 bytes), which a connection keeping its
/// handles would hold for its whole life; a clone of a cached handle allocates nothing.
pub fn transport_counter(name: &'static str, transport: &'static str) -> metrics::Counter {
    type Cache = parking_lot::Mutex<Vec<(&'static str, &'static str, metrics::Counter)>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let mut cache = CACHE.get_or_init(Default::default).lock();
    if let Some((_, _, counter)) = cache.iter().find(|(n, t, _)| *n == name && *t == transport) {
        return counter.clone();
    }
    let counter = metrics::counter!(name, "transport" => transport);
    cache.push((name, transport, counter.clone()));
    counter
}

/// Installs the process-wide recorder (once; later calls are no-ops, e.g. in tests).
pub fn install() {
    // Command latencies as histograms (the default would be summaries, which cannot be
    // aggregated across nodes).
    let builder = || {
        PrometheusBuilder::new()
            .set_buckets(&[
                0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            ])
            .unwrap_or_else(|_| PrometheusBuilder::new())
    };
    HANDLE.get_or_init(|| match builder().install_recorder() {
        Ok(handle) => handle,
        // Another recorder was installed first (a test harness): keep an unattached one so
        // rendering still works.
        Err(_) => builder().build_recorder().handle(),
    });
}

/// What the node gauges say at a scrape, counted by whoever owns the things counted.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeGauges {
    pub unauthenticated_connections: usize,
    pub clients: usize,
    pub users: usize,
    pub channels: usize,
    pub subscriptions: usize,
}

/// Sets the node gauges, read from their owners when Prometheus scrapes.
pub fn set_node_gauges(gauges: NodeGauges) {
    metrics::gauge!("gyre_http_unauthenticated_connections")
        .set(gauges.unauthenticated_connections as f64);
    metrics::gauge!("gyre_node_num_clients").set(gauges.clients as f64);
    metrics::gauge!("gyre_node_num_users").set(gauges.users as f64);
    metrics::gauge!("gyre_node_num_channels").set(gauges.channels as f64);
    metrics::gauge!("gyre_node_num_subscriptions").set(gauges.subscriptions as f64);
    // A task that outlives its connection is a leak no other gauge shows (the soak watches it).
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        metrics::gauge!("gyre_runtime_alive_tasks").set(runtime.metrics().num_alive_tasks() as f64);
    }
}

/// The text exposition of every metric as it stands.
pub fn render() -> String {
    HANDLE
        .get()
        .map(PrometheusHandle::render)
        .unwrap_or_default()
}
