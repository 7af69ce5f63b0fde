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
//!   (epoch, offset) is acknowledged for two different publications, and no acknowledged
//!   publication is missed without `recovered: false` after it;
//! - a slot migration under load (API publications flowing while the subscribed channel's slot
//!   moves key by key): the same promises.
//!
//! The tests share one cluster ([`RedisCluster::shared`]): starting it takes seconds.

use std::time::{Duration, Instant};

use gyre_tests::*;

/// How long the doomed primary acknowledges publications alone.
const TAIL_LOSS_WINDOW: Duration = Duration::from_millis(500);
/// The pause after opening the slot and after each key the migration moves.
const MIGRATION_PAUSE: Duration = Duration::from_millis(250);

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
    require_node_sdk();
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
    // No (epoch, offset) acknowledged for two different publications, nothing missed silently.
    let lossy = channel("tail-loss");
    let outcome = FailoverScenario::new(&b, &lossy).run(|window| {
        let owner = cluster.owner_of(&lossy);
        let promoted =
            cluster.tail_loss_failover(owner, TAIL_LOSS_WINDOW, window_writer(&lossy, window));
        cluster.connection(promoted)
    });
    outcome.expect_tail_loss();
    cluster.heal();
    eprintln!("cluster scenarios took {:?}", started.elapsed());
}

/// Slot migration under load, seen through the SDK (Protobuf): a subscriber on a channel while
/// API publications flow (one every 50 ms, without idempotency keys, so that they run at every
/// intermediate state), and the channel's slot moved to another primary key by key, the way
/// `redis-cli --cluster reshard` does, pausing between the steps. No `MIGRATE` is refused; no
/// acknowledged publication is missed silently (it reached the subscriber, or the subscriber got
/// `recovered: false` after it was sent); no (epoch, offset) pair is acknowledged twice; and
/// publications resume on the new owner.
#[test]
fn cluster_slot_migration_under_sdk_load() {
    require_node_sdk();
    let started = Instant::now();
    let mut cluster = RedisCluster::shared();
    let gyre = builder(&cluster).start();
    let moving = channel("migration");
    let slot = cluster.slot(&moving);
    let from = cluster.owner(slot);
    let to = *cluster
        .primaries()
        .iter()
        .find(|&&p| p != from)
        .expect("another primary");
    let mut moved = (0, 0);
    let mut migration = Migration::default();
    let outcome = FailoverScenario::new(&gyre, &moving)
        .protocol("protobuf")
        .step("move-slot")
        .under_load()
        .run(|_| {
            let begun = now_ms();
            migration = cluster.move_slot_paced(slot, to, 1, MIGRATION_PAUSE);
            moved = (begun, now_ms());
            cluster.connection(to)
        });
    assert!(
        migration.refused.is_empty(),
        "MIGRATE refused: {:?}",
        migration.refused
    );
    assert!(
        migration.keys_moved >= 2,
        "the channel's meta and stream moved: {migration:?}"
    );
    assert_eq!(cluster.owner(slot), to);
    // The load met the migration.
    let during = outcome
        .api_acks()
        .iter()
        .filter(|a| (moved.0..=moved.1).contains(&a.sent_ms))
        .count();
    assert!(
        during >= 5,
        "only {during} API publications were sent while the slot moved"
    );
    eprintln!(
        "slot migration under load: {} keys moved in {} ms, {during} API publications sent \
         meanwhile; whole test {:?}",
        migration.keys_moved,
        moved.1 - moved.0,
        started.elapsed()
    );
}
