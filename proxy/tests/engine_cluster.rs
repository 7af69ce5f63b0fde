//! The Redis engine on a Redis Cluster (six real nodes with the module, sharded PUB/SUB; the
//! `gyre-tests` fixture shared by this binary): subscriptions live on the primary owning each
//! channel's slot, namespaces on every primary, control commands reach every node, and after a
//! primary failover or a slot migration the engine subscribes again where the slot lives and
//! sends `Resync`. The shared contract runs on the cluster in `engine_conformance.rs`.

mod common;

use common::*;
use gyre_proxy::engine::ControlCommand;
use gyre_tests::{RedisCluster, as_int, cmd};

/// Channels whose slots are on three different primaries.
fn channels_on_every_primary(cluster: &RedisCluster) -> Vec<String> {
    let mut found: HashMap<usize, String> = HashMap::new();
    for i in 0.. {
        let channel = format!("spread:{i}");
        found.entry(cluster.owner_of(&channel)).or_insert(channel);
        if found.len() == cluster.primaries().len() {
            break;
        }
    }
    found.into_values().collect()
}

/// How many subscribers node `index` has for `channel`'s sharded PUB/SUB channel.
fn shard_subscribers(cluster: &RedisCluster, index: usize, channel: &str) -> i64 {
    let name = format!("gyre.client.{{{channel}}}");
    let reply = cmd(
        &mut cluster.connection(index),
        &["PUBSUB", "SHARDNUMSUB", &name],
    );
    match reply {
        redis::Value::Array(items) => items.get(1).map(as_int).unwrap_or(0),
        other => panic!("PUBSUB SHARDNUMSUB: {other:?}"),
    }
}

/// Waits for a publication of `data` on `channel`, skipping other events.
async fn wait_for_publication(s: &mut Subject, channel: &str, data: &str, within: Duration) {
    let what = format!("publication {data:?} on {channel}");
    s.wait_for(within, &what, |event| {
        matches!(event, EngineEvent::Publication { channel: c, publication, .. }
            if c == channel && &publication.data[..] == data.as_bytes())
    })
    .await;
}

/// A publication straight to the owning primary, as `redis-cli -c GYRE.PUBLISH` does.
fn publish_on_owner(s: &Subject, channel: &str, data: &str) {
    let cluster = s.cluster.as_ref().expect("a cluster subject");
    let mut con = cluster.connection_for(channel);
    gyre_tests::publish(&mut con, channel, data, &["HISTORY", "10", "60"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_live_on_the_primary_owning_the_slot() {
    let mut s = cluster().await;
    let cluster = s.cluster.as_ref().expect("cluster");
    let channels = channels_on_every_primary(cluster);
    for channel in &channels {
        s.engine.subscribe(channel).await.expect("subscribe");
    }
    let cluster = s.cluster.as_ref().expect("cluster");
    for channel in &channels {
        let owner = cluster.owner_of(channel);
        for primary in cluster.primaries() {
            let expected = i64::from(primary == owner);
            assert_eq!(
                shard_subscribers(cluster, primary, channel),
                expected,
                "{channel} (owner {owner}) on node {primary}"
            );
        }
    }
    for channel in &channels {
        publish_on_owner(&s, channel, "from-cli");
        wait_for_publication(&mut s, channel, "from-cli", WAIT).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_are_stored_on_every_primary() {
    let s = cluster().await;
    let history = HistoryOptions {
        size: 3,
        ttl: Duration::from_secs(60),
        meta_ttl: Duration::from_secs(600),
    };
    s.redis()
        .register_namespace("clusterns", Some(history))
        .await
        .expect("register");
    let cluster = s.cluster.as_ref().expect("cluster");
    let channels = channels_on_every_primary(cluster);
    for channel in channels {
        let channel = format!("clusterns:{channel}");
        let mut con = cluster.connection_for(&channel);
        for data in ["a", "b", "c", "d"] {
            gyre_tests::publish(&mut con, &channel, data, &[]);
        }
        let h = s.history(&channel, HistoryQuery::default()).await;
        assert_eq!(h.publications.len(), 3, "{channel}: the namespace's size");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_commands_reach_every_node() {
    let mut a = cluster().await;
    let (tx, mut b_events) = unbounded_channel();
    let settings = cluster_settings(a.cluster.as_ref().expect("cluster"));
    let b = RedisEngine::connect(settings, tx)
        .await
        .expect("second node");
    let command = ControlCommand::Disconnect {
        user: "u".into(),
        client: String::new(),
        code: 3000,
        reason: "r".into(),
        whitelist: Vec::new(),
    };
    b.publish_control(&command).await.expect("control");
    for events in [&mut a.events, &mut b_events] {
        let event = tokio::time::timeout(WAIT, events.recv())
            .await
            .expect("in time")
            .expect("open");
        match event {
            EngineEvent::Control(got) => assert_eq!(got, command),
            other => panic!("expected the control command, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_failover_moves_the_subscription_and_resyncs() {
    let mut s = cluster().await;
    let channel = "failover:room";
    s.engine.subscribe(channel).await.expect("subscribe");
    publish_on_owner(&s, channel, "before");
    wait_for_publication(&mut s, channel, "before", WAIT).await;

    let owner = s.cluster.as_ref().expect("cluster").owner_of(channel);
    let promoted =
        tokio::task::block_in_place(|| s.cluster.as_mut().expect("cluster").kill_primary(owner));
    s.wait_for_resync(Duration::from_secs(30)).await;
    let cluster = s.cluster.as_ref().expect("cluster");
    assert_eq!(shard_subscribers(cluster, promoted, channel), 1);
    publish_on_owner(&s, channel, "after");
    wait_for_publication(&mut s, channel, "after", WAIT).await;
    // The engine's own commands reach the promoted primary too.
    let position = s
        .publish(channel, "through-the-engine", &with_history())
        .await;
    assert!(position.offset > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_migration_moves_the_subscription_and_resyncs() {
    let mut s = cluster().await;
    let channel = "migrating:room";
    s.engine.subscribe(channel).await.expect("subscribe");
    publish_on_owner(&s, channel, "before");
    wait_for_publication(&mut s, channel, "before", WAIT).await;

    let (slot, from, to) = {
        let cluster = s.cluster.as_ref().expect("cluster");
        let slot = cluster.slot(channel);
        let from = cluster.owner(slot);
        let to = cluster
            .primaries()
            .into_iter()
            .find(|&p| p != from)
            .expect("another primary");
        (slot, from, to)
    };
    tokio::task::block_in_place(|| s.cluster.as_mut().expect("cluster").move_slot(slot, to));
    s.wait_for_resync(Duration::from_secs(30)).await;
    let cluster = s.cluster.as_ref().expect("cluster");
    assert_eq!(
        shard_subscribers(cluster, to, channel),
        1,
        "on the new owner"
    );
    assert_eq!(
        shard_subscribers(cluster, from, channel),
        0,
        "not on the old one"
    );
    publish_on_owner(&s, channel, "after");
    wait_for_publication(&mut s, channel, "after", WAIT).await;
}
