//! Cluster mode (one node owning every slot): keys and PUB/SUB channels carry the channel as a
//! hash tag, so every key of a channel lives in the channel's own slot.

use std::time::Duration;

use gyre_tests::*;

fn cluster_node() -> RedisServer {
    let cluster_port = free_port();
    let server = RedisServer::builder()
        .tcp()
        .args(&[
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-port",
            &cluster_port.to_string(),
        ])
        .start();
    let mut con = server.connection();
    cmd(&mut con, &["CLUSTER", "ADDSLOTSRANGE", "0", "16383"]);
    wait_until(Duration::from_secs(10), "cluster_state:ok", || {
        as_string(&cmd(&mut con, &["CLUSTER", "INFO"])).contains("cluster_state:ok")
    });
    server
}

fn slot(con: &mut Connection, key: &str) -> i64 {
    as_int(&cmd(con, &["CLUSTER", "KEYSLOT", key]))
}

fn keys(con: &mut Connection) -> Vec<String> {
    let mut k = as_strings(&cmd(con, &["KEYS", "*"]));
    k.sort();
    k
}

#[test]
fn cluster_keys_and_channel_use_the_channel_hash_tag() {
    let server = cluster_node();
    let mut con = server.connection();
    let mut sub = server.subscribe("gyre.client.{chat}");

    let (offset, epoch) = publish(
        &mut con,
        "chat",
        "x",
        &["HISTORY", "10", "60", "IDEMPOTENCY", "k"],
    );
    assert_eq!(offset, 1);
    cmd(
        &mut con,
        &["GYRE.PRESENCE.ADD", "chat", "c1", "u1", "JOINLEAVE"],
    );

    let ids: Vec<String> = xrange(&mut con, "gyre.stream.{chat}")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids, ["1-0"]);
    assert_eq!(
        hgetall(&mut con, "gyre.stream.meta.{chat}").get("e"),
        Some(&epoch)
    );
    assert!(exists(&mut con, "gyre.presence.data.{chat}"));
    assert!(exists(&mut con, "gyre.presence.expire.{chat}"));
    let chat_slot = slot(&mut con, "chat");
    let all = keys(&mut con);
    assert!(
        all.iter().any(|k| k.starts_with("gyre.result.")),
        "idempotency key written: {all:?}"
    );
    for key in &all {
        assert_eq!(
            slot(&mut con, key),
            chat_slot,
            "{key} is in the slot of 'chat'"
        );
    }
    assert_eq!(history(&mut con, "chat", &[]).data(), ["x"]);

    let events = sub.events_until_barrier(&mut con);
    assert_eq!(
        events.len(),
        2,
        "publication and join on gyre.client.{{chat}}: {events:?}"
    );
}

#[test]
fn cluster_channel_with_hash_tag_is_used_as_is() {
    let server = cluster_node();
    let mut con = server.connection();
    let mut sub = server.subscribe("gyre.client.a{b}c");
    publish_hist(&mut con, "a{b}c", "x", 10, 60);
    assert_eq!(xrange(&mut con, "gyre.stream.a{b}c").len(), 1);
    assert!(exists(&mut con, "gyre.stream.meta.a{b}c"));
    let b_slot = slot(&mut con, "b");
    for key in keys(&mut con) {
        assert_eq!(
            slot(&mut con, &key),
            b_slot,
            "{key} shares the slot of the tag"
        );
    }
    assert_eq!(sub.events_until_barrier(&mut con).len(), 1);
}

#[test]
fn cluster_rejects_closing_brace_without_hash_tag() {
    let mut server = cluster_node();
    let mut con = server.connection();
    expect_error(
        &mut con,
        &["GYRE.PUBLISH", "a}b", "x", "HISTORY", "10", "60"],
    );
    assert_ping(&mut con, "publish to a}b");
    assert!(server.is_alive());
    assert!(keys(&mut con).is_empty(), "nothing written");
}

fn slot_checks(con: &mut Connection) -> (i64, i64) {
    let info = info_section(con, "gyre");
    let n = |f: &str| info[f].parse::<i64>().unwrap();
    (n("gyre_slot_checks"), n("gyre_slot_retries"))
}

/// The slot-migration check (docs/module.md, "Slot migration") is paid only by commands that miss
/// a key they need and cannot tell locally that no migration is involved: a publish to a channel
/// whose meta and stream exist never asks about its slot, nor does an idempotent publish with a
/// new key or the first publish after the stream expired, unless the slot received keys by RESTORE
/// or a key named like the channel exists. On a node that owns every slot the check always lets
/// the command run.
#[test]
fn only_a_command_missing_a_key_checks_its_slot() {
    let server = cluster_node();
    let mut con = server.connection();
    assert_eq!(slot_checks(&mut con), (0, 0));

    publish_hist(&mut con, "chat", "first", 10, 60);
    assert_eq!(slot_checks(&mut con), (1, 0), "a new channel: nothing here");
    for i in 0..100 {
        publish_hist(&mut con, "chat", &format!("m{i}"), 10, 60);
    }
    history(&mut con, "chat", &[]);
    cmd(&mut con, &["GYRE.POSITION", "chat"]);
    publish(&mut con, "chat", "no history", &[]);
    assert_eq!(
        slot_checks(&mut con),
        (1, 0),
        "meta and stream here: no check"
    );

    let idempotent = ["HISTORY", "10", "60", "IDEMPOTENCY", "k1"];
    publish(&mut con, "chat", "once", &idempotent);
    publish(&mut con, "chat", "once", &idempotent);
    cmd(&mut con, &["DEL", "gyre.stream.{chat}"]);
    history(&mut con, "chat", &[]);
    publish_hist(&mut con, "chat", "after expiry", 10, 60);
    assert_eq!(
        slot_checks(&mut con),
        (1, 0),
        "a new idempotency key, an expired stream: the slot was seen stable"
    );

    history(&mut con, "nobody", &[]);
    cmd(&mut con, &["GYRE.PRESENCE.ADD", "chat", "c1", "u1"]);
    assert_eq!(slot_checks(&mut con), (3, 0), "nothing of theirs here");
    cmd(&mut con, &["GYRE.PRESENCE.ADD", "chat", "c2", "u2"]);
    cmd(&mut con, &["GYRE.PRESENCE", "chat"]);
    assert_eq!(slot_checks(&mut con), (3, 0));

    // A key of the slot arrives by RESTORE (as MIGRATE brings it to a target): the next command
    // that misses a key asks once, and the answer clears the mark.
    let dump: Vec<u8> = redis::cmd("DUMP")
        .arg("gyre.stream.meta.{chat}")
        .query(&mut con)
        .unwrap();
    redis::cmd("RESTORE")
        .arg("{chat}copy")
        .arg(0)
        .arg(dump)
        .exec(&mut con)
        .unwrap();
    publish(
        &mut con,
        "chat",
        "k2",
        &["HISTORY", "10", "60", "IDEMPOTENCY", "k2"],
    );
    publish(
        &mut con,
        "chat",
        "k3",
        &["HISTORY", "10", "60", "IDEMPOTENCY", "k3"],
    );
    assert_eq!(slot_checks(&mut con), (4, 0), "one check after the RESTORE");

    // A plain key named like the channel: Redis would run the channel's commands on a node that
    // migrates the slot away, so every missing key asks.
    cmd(&mut con, &["SET", "chat", "a plain key"]);
    publish(
        &mut con,
        "chat",
        "k4",
        &["HISTORY", "10", "60", "IDEMPOTENCY", "k4"],
    );
    publish(
        &mut con,
        "chat",
        "k5",
        &["HISTORY", "10", "60", "IDEMPOTENCY", "k5"],
    );
    assert_eq!(slot_checks(&mut con), (6, 0));
}

#[test]
fn info_gyre_shows_the_cluster_layout() {
    let server = cluster_node();
    let info = info_section(&mut server.connection(), "gyre");
    assert_eq!(info["gyre_cluster_layout"], "1");
    assert_eq!(info["gyre_sharded_pubsub"], "0");
}
