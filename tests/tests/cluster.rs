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
