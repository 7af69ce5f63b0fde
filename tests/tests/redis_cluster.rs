//! `gyre` on a Redis Cluster (`engine.redis.cluster_address`): six real nodes with the module
//! and sharded PUB/SUB (the shared [`RedisCluster`] fixture), two gyre nodes, and the unmodified
//! centrifuge-js SDK (`tests/sdk/node`).
//!
//! - publications from the API, from `redis-cli -c GYRE.PUBLISH` against any cluster node and
//!   from clients reach subscribers, on both gyre nodes; presence, history and recovery work,
//!   in JSON and Protobuf;
//! - the API's cross-node commands (disconnect) travel through the cluster;
//! - a primary killed with SIGKILL, and a primary killed after acknowledging writes its replica
//!   never got (tail loss): the subscriber stays connected and either has every acknowledged
//!   publication exactly once or is told it could not recover (`recovered: false`); no
//!   (epoch, offset) is seen for two different publications.
//!
//! One test runs the scenarios in turn on the cluster: starting it takes seconds.

use std::time::{Duration, Instant};

use gyre_tests::*;
use serde_json::json;

fn node_ready() -> bool {
    sdk_available("Node", node_sdk_status())
}

fn channel(name: &str) -> String {
    format!("{SDK_NS}:cluster-{name}")
}

/// The SDK environment's gyre, pointed at the cluster's nodes (one cluster, every node a seed).
fn builder(cluster: &RedisCluster) -> GyreBuilder {
    SdkEnv::gyre_builder()
        .redis_urls(&[])
        .redis_option(&format!(
            "cluster_address = [{:?}]",
            cluster.seeds().join(",")
        ))
}

#[test]
fn cluster_sdk_scenarios_and_failovers() {
    if !node_ready() {
        return;
    }
    let started = Instant::now();
    let mut cluster = RedisCluster::shared();
    let a = builder(&cluster).start();
    let b = builder(&cluster).start();
    let any_node = cluster.port(cluster.primaries()[0]);

    for (gyre, protocol) in [(&a, "json"), (&b, "protobuf")] {
        sdk_basic_scenarios(
            gyre,
            protocol,
            &channel("sdk"),
            &[("redis-port", any_node.to_string())],
        );
    }

    // A publication through node B's API reaches a subscriber of node A: both subscribe in the
    // channel's shard. (receive.mjs publishes through the gyre it is connected to.)
    let cross = channel("cross");
    let r = SdkScript::node("receive.mjs")
        .gyre(&a)
        .arg("protocol", "json")
        .arg("channel", &cross)
        .arg("api", b.api_url())
        .run()
        .json();
    sdk_expect::receive(&r, false);

    // The nodes know each other through the cluster (the control channel).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let info: serde_json::Value =
            serde_json::from_str(&a.api("info", "{}")).expect("info JSON");
        if info["result"]["nodes"].as_array().map_or(0, Vec::len) == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node A never heard of node B: {info}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // A primary killed: its replica is promoted by the cluster.
    let killed = channel("failover");
    run_failover_scenario(&a, &killed, || {
        let owner = cluster.owner_of(&killed);
        let promoted = cluster.kill_primary(owner);
        cluster.connection(promoted)
    });
    cluster.heal();

    // Tail loss: the primary acknowledges publications its replica never gets, then dies.
    let lossy = channel("tail-loss");
    let mut window = Vec::new();
    let r = run_failover_scenario(&b, &lossy, || {
        let owner = cluster.owner_of(&lossy);
        let (size, ttl) = SDK_HISTORY;
        let promoted = cluster.tail_loss_failover(owner, Duration::from_millis(500), |con| {
            let n = window.len() + 1;
            let data = json!({"source": "window", "n": n}).to_string();
            let reply = cmd(
                con,
                &[
                    "GYRE.PUBLISH",
                    &lossy,
                    &data,
                    "HISTORY",
                    &size.to_string(),
                    &ttl.to_string(),
                ],
            );
            let reply = as_array(&reply);
            window.push((as_int(&reply[0]), as_string(&reply[1])));
            std::thread::sleep(Duration::from_millis(20));
        });
        cluster.connection(promoted)
    });
    assert!(!window.is_empty(), "publications in the lost window");
    assert_eq!(
        r["lostContinuity"], true,
        "publications were lost: the subscriber must be told: {r}"
    );
    // No (epoch, offset) acknowledged for two different publications: the window's pairs are
    // never reused after the failover.
    let after: Vec<(u64, String)> = json_array(&r["published"])
        .iter()
        .map(|p| {
            (
                p["offset"].as_u64().expect("offset"),
                json_str(p, "epoch").to_owned(),
            )
        })
        .collect();
    for (offset, epoch) in &window {
        assert!(
            !after
                .iter()
                .any(|(o, e)| *o == *offset as u64 && e == epoch),
            "({epoch}, {offset}) acknowledged twice: window {window:?}, after {after:?}"
        );
    }
    cluster.heal();
    eprintln!("cluster scenarios took {:?}", started.elapsed());
}
