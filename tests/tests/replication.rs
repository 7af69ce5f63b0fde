//! Replication: a replica gets the same stream ids and meta, serves the read-only commands, and
//! PUB/SUB subscribers on the replica receive every publication.

use gyre_tests::*;

fn stream(con: &mut Connection, key: &str) -> Vec<StreamEntry> {
    xrange(con, key)
}

/// Waits until the replica has applied everything the primary has written so far.
fn wait_in_sync(primary: &mut Connection) {
    let acked = as_int(&cmd(primary, &["WAIT", "1", "5000"]));
    assert_eq!(acked, 1, "the replica acknowledged the writes");
}

#[test]
fn replica_gets_identical_state_and_publications() {
    let primary = RedisServer::builder().tcp().start();
    let mut pcon = primary.connection();
    // Written before the replica attaches: travels in the initial sync (RDB).
    let (o1, epoch) = publish_hist(&mut pcon, "chat", "before-sync", 10, 300);
    assert_eq!(o1, 1);
    cmd(
        &mut pcon,
        &["GYRE.NAMESPACE", "SET", "ns", "HISTORY", "3", "60"],
    );

    let replica = RedisServer::builder().replica_of(&primary).start();
    replica.wait_for_replication_link();
    let mut rcon = replica.connection();
    let mut sub = replica.subscribe("gyre.client.chat");

    // Written after: travels in the replication stream.
    for i in 2..=4 {
        let (offset, e) = publish_hist(&mut pcon, "chat", &format!("m{i}"), 10, 300);
        assert_eq!((offset, e.as_str()), (i, epoch.as_str()));
    }
    publish(&mut pcon, "chat", "no-history", &[]);
    for i in 1..=4 {
        publish(&mut pcon, "ns:room", &format!("n{i}"), &[]);
    }
    publish(
        &mut pcon,
        "chat",
        "dedup",
        &["HISTORY", "10", "300", "IDEMPOTENCY", "k"],
    );
    publish(
        &mut pcon,
        "chat",
        "dedup",
        &["HISTORY", "10", "300", "IDEMPOTENCY", "k"],
    );
    wait_in_sync(&mut pcon);

    for key in ["gyre.stream.chat", "gyre.stream.ns:room"] {
        let on_primary = stream(&mut pcon, key);
        assert!(!on_primary.is_empty(), "{key} on the primary");
        assert_eq!(
            stream(&mut rcon, key),
            on_primary,
            "{key}: same ids and data"
        );
    }
    let ids: Vec<String> = stream(&mut rcon, "gyre.stream.chat")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids, ["1-0", "2-0", "3-0", "4-0", "5-0"]);
    for key in [
        "gyre.stream.meta.chat",
        "gyre.stream.meta.ns:room",
        "gyre.namespaces",
        "gyre.result.chat.k",
    ] {
        let on_primary = hgetall(&mut pcon, key);
        assert!(!on_primary.is_empty(), "{key} on the primary");
        assert_eq!(hgetall(&mut rcon, key), on_primary, "{key} replicated");
    }
    for key in [
        "gyre.stream.chat",
        "gyre.stream.meta.chat",
        "gyre.result.chat.k",
    ] {
        let t = ttl(&mut rcon, key);
        assert!(t > 0, "{key} has its TTL on the replica too ({t})");
    }

    // Read-only commands run on the replica and agree with the primary.
    assert_eq!(
        history(&mut rcon, "chat", &[]),
        history(&mut pcon, "chat", &[])
    );
    assert_eq!(
        history(&mut rcon, "ns:room", &["REVERSE", "LIMIT", "2"]),
        history(&mut pcon, "ns:room", &["REVERSE", "LIMIT", "2"])
    );
    assert_eq!(history(&mut rcon, "nothing", &[]).top, 0);

    // The replica's subscriber got every publication published after it subscribed, in order.
    let events = sub.events_until_barrier(&mut pcon);
    let got: Vec<(u64, String, String)> = events
        .iter()
        .map(|e| match e {
            ChannelEvent::Publication { publication, epoch } => (
                publication.offset,
                epoch.clone(),
                String::from_utf8_lossy(&publication.data).into_owned(),
            ),
            other => panic!("unexpected event {other:?}"),
        })
        .collect();
    let want: Vec<(u64, String, String)> = vec![
        (2, epoch.clone(), "m2".into()),
        (3, epoch.clone(), "m3".into()),
        (4, epoch.clone(), "m4".into()),
        (0, String::new(), "no-history".into()),
        (5, epoch.clone(), "dedup".into()),
    ];
    assert_eq!(got, want, "publications received on the replica");
}

#[test]
fn presence_replicates_and_joins_reach_replica_subscribers() {
    let primary = RedisServer::builder().tcp().start();
    let replica = RedisServer::builder().replica_of(&primary).start();
    replica.wait_for_replication_link();
    let mut pcon = primary.connection();
    let mut rcon = replica.connection();
    let mut sub = replica.subscribe("gyre.client.room");

    cmd(
        &mut pcon,
        &["GYRE.PRESENCE.ADD", "room", "c1", "u1", "JOINLEAVE"],
    );
    cmd(&mut pcon, &["GYRE.PRESENCE.ADD", "room", "c2", "u1"]);
    cmd(&mut pcon, &["GYRE.PRESENCE.REM", "room", "c1", "JOINLEAVE"]);
    wait_in_sync(&mut pcon);

    let stats = cmd(&mut rcon, &["GYRE.PRESENCE.STATS", "room"]);
    assert_eq!(
        as_array(&stats).iter().map(as_int).collect::<Vec<_>>(),
        [1, 1],
        "presence on the replica"
    );
    let entries = cmd(&mut rcon, &["GYRE.PRESENCE", "room"]);
    assert_eq!(as_strings(&as_array(&entries)[0])[..2], ["c2", "u1"]);

    let events = sub.events_until_barrier(&mut pcon);
    assert_eq!(events.len(), 2, "join and leave on the replica: {events:?}");
    assert!(matches!(&events[0], ChannelEvent::Join(i) if i.client == "c1"));
    assert!(matches!(&events[1], ChannelEvent::Leave(i) if i.client == "c1"));

    // Writes are refused on the read-only replica and the replica keeps running.
    expect_error(
        &mut rcon,
        &["GYRE.PUBLISH", "room", "x", "HISTORY", "10", "60"],
    );
    assert_ping(&mut rcon, "GYRE.PUBLISH on a replica");
    assert!(!exists(&mut rcon, "gyre.stream.room"), "nothing written");
}
