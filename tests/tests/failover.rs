//! Failovers and restarts never hand out an (epoch, offset) pair twice (docs/module.md, "When an
//! epoch changes"): a primary that may lack acknowledged writes continues every channel it did not
//! write itself under a new epoch, while replicas restarting or resyncing change nothing.
//!
//! Every test keeps a ledger of the (channel, epoch, offset) → data pairs that Redis acknowledged
//! and fails if one pair is acknowledged for two different publications.

use std::collections::BTreeMap;
use std::time::Duration;

use gyre_tests::*;

/// How long a tail-loss primary keeps acknowledging writes alone.
const WINDOW: Duration = Duration::from_millis(500);

/// Every acknowledged publication by (channel, epoch, offset).
#[derive(Default)]
struct Ledger {
    acks: BTreeMap<(String, String, i64), String>,
    reused: Vec<String>,
}

impl Ledger {
    /// Records an acknowledged publication and returns its `(offset, epoch)`.
    fn ack(&mut self, channel: &str, ack: (i64, String), data: &str) -> (i64, String) {
        let key = (channel.to_string(), ack.1.clone(), ack.0);
        match self.acks.get(&key) {
            Some(known) if known != data => self.reused.push(format!(
                "{channel} ({}, {}) acknowledged for {known:?} and for {data:?}",
                ack.1, ack.0
            )),
            Some(_) => {}
            None => {
                self.acks.insert(key, data.to_string());
            }
        }
        ack
    }

    /// `GYRE.PUBLISH <channel> <data> HISTORY 1000 300 <opts…>`, recorded.
    fn publish(
        &mut self,
        con: &mut Connection,
        channel: &str,
        data: &str,
        opts: &[&str],
    ) -> (i64, String) {
        let mut all = vec!["HISTORY", "1000", "300"];
        all.extend_from_slice(opts);
        let ack = publish(con, channel, data, &all);
        self.ack(channel, ack, data)
    }

    /// The highest offset acknowledged on `channel` under `epoch`.
    fn top(&self, channel: &str, epoch: &str) -> i64 {
        self.acks
            .keys()
            .filter(|(c, e, _)| c == channel && e == epoch)
            .map(|k| k.2)
            .max()
            .unwrap_or(0)
    }

    fn assert_no_reuse(&self) {
        assert!(
            self.reused.is_empty(),
            "{} (epoch, offset) pairs acknowledged for two different publications, e.g.:\n{}",
            self.reused.len(),
            self.reused[..self.reused.len().min(5)].join("\n")
        );
    }
}

/// Waits until the one replica has applied everything written so far.
fn wait_in_sync(primary: &mut Connection) {
    assert_eq!(
        as_int(&cmd(primary, &["WAIT", "1", "5000"])),
        1,
        "replica in sync"
    );
}

fn gyre_info(con: &mut Connection) -> BTreeMap<String, String> {
    info_section(con, "gyre")
}

fn rotations(con: &mut Connection) -> i64 {
    gyre_info(con)["gyre_epoch_rotations"].parse().unwrap()
}

/// A primary with a replica that has `DEBUG` enabled, in sync.
fn primary_and_replica() -> (RedisServer, RedisServer) {
    let primary = RedisServer::builder().tcp().start();
    let replica = RedisServer::builder()
        .tcp()
        .replica_of(&primary)
        .debug_command()
        .start();
    replica.wait_for_replication_link();
    (primary, replica)
}

/// The measurement, reproduced: a promoted replica that lacks the last acknowledged
/// publications must not hand their offsets out again under the same epoch.
#[test]
fn tail_loss_promotion_starts_a_new_epoch_and_reuses_no_offset() {
    let (mut primary, replica) = primary_and_replica();
    let mut ledger = Ledger::default();
    let mut pcon = primary.connection();
    let mut epoch = String::new();
    for i in 1..=20 {
        epoch = ledger
            .publish(&mut pcon, "chat", &format!("before-{i}"), &[])
            .1;
    }
    wait_in_sync(&mut pcon);
    drop(pcon);

    let mut n = 0;
    crash_with_tail_loss(&mut primary, replica.connection(), WINDOW, |con| {
        n += 1;
        ledger.publish(con, "chat", &format!("window-{n}"), &[]);
    });
    let acknowledged = ledger.top("chat", &epoch);
    let mut rcon = replica.connection();
    cmd(&mut rcon, &["REPLICAOF", "NO", "ONE"]);

    let survived = history(&mut rcon, "chat", &["LIMIT", "0"]);
    assert!(
        (20..acknowledged).contains(&survived.top),
        "precondition: the promoted replica lacks acknowledged publications \
         (it has {}, the old primary acknowledged {acknowledged})",
        survived.top
    );
    let after: Vec<(i64, String)> = (1..=10)
        .map(|i| ledger.publish(&mut rcon, "chat", &format!("after-{i}"), &[]))
        .collect();
    ledger.assert_no_reuse();
    assert_ne!(
        survived.epoch, epoch,
        "GYRE.HISTORY on the promoted primary reports the epoch its next publish stores"
    );
    for (i, ack) in (1..).zip(after) {
        assert_eq!(
            ack,
            (survived.top + i, survived.epoch.clone()),
            "the next publications continue the offsets under the new epoch"
        );
    }
    assert_eq!(rotations(&mut rcon), 1);
    // The history holds what survived followed by the new publications, under the new epoch.
    let h = history(&mut rcon, "chat", &[]);
    assert_eq!(h.epoch, survived.epoch);
    assert_eq!(h.top, survived.top + 10);
    assert_eq!(h.data()[0], "before-1");
    assert_eq!(h.data().last().map(String::as_str), Some("after-10"));
}

/// Idempotency results travel with their publication: a retried publish either gets the pair of a
/// publication that survived or becomes a new publication under the new epoch, never the pair of a
/// lost one.
#[test]
fn idempotency_results_after_a_tail_loss_promotion() {
    let (mut primary, replica) = primary_and_replica();
    let mut ledger = Ledger::default();
    let mut pcon = primary.connection();
    let mut kept = Vec::new();
    for i in 1..=5 {
        let key = format!("pre-{i}");
        kept.push(ledger.publish(&mut pcon, "pay", &key, &["IDEMPOTENCY", &key]));
    }
    let epoch = kept[0].1.clone();
    wait_in_sync(&mut pcon);
    drop(pcon);

    let mut window = Vec::new();
    crash_with_tail_loss(&mut primary, replica.connection(), WINDOW, |con| {
        let key = format!("win-{}", window.len() + 1);
        let ack = ledger.publish(con, "pay", &key, &["IDEMPOTENCY", &key]);
        window.push((key, ack));
    });
    let mut rcon = replica.connection();
    cmd(&mut rcon, &["REPLICAOF", "NO", "ONE"]);
    let survived = history(&mut rcon, "pay", &["LIMIT", "0"]);
    assert!(
        survived.top < ledger.top("pay", &epoch),
        "precondition: publications were lost"
    );

    for (i, original) in kept.iter().enumerate() {
        let key = format!("pre-{}", i + 1);
        let retry = ledger.publish(&mut rcon, "pay", &key, &["IDEMPOTENCY", &key]);
        assert_eq!(
            &retry, original,
            "{key} survived: its result is the original pair"
        );
    }
    // Newest first, so that reusing the old epoch would put other data under known pairs.
    for (key, original) in window.iter().rev() {
        let retry = ledger.publish(&mut rcon, "pay", key, &["IDEMPOTENCY", key]);
        if original.0 > survived.top {
            assert_ne!(
                &retry, original,
                "{key} was lost: its old pair is not returned"
            );
            assert_eq!(
                retry.1, survived.epoch,
                "{key} is published again, new epoch"
            );
        } else {
            assert_eq!(&retry, original, "{key} survived");
        }
    }
    ledger.assert_no_reuse();
}

/// A promotion that lost nothing cannot be told apart from one that did, so every channel written
/// before it rotates once, lazily: GYRE.HISTORY on the new primary reports the epoch the next
/// write stores, GYRE.POSITION writes it, and a replica reports what it has stored.
#[test]
fn clean_promotion_rotates_each_channel_once_and_reads_agree() {
    let (primary, replica) = primary_and_replica();
    let mut pcon = primary.connection();
    let mut ledger = Ledger::default();
    let mut epochs = BTreeMap::new();
    for ch in ["a", "b", "c"] {
        for i in 1..=3 {
            let e = ledger.publish(&mut pcon, ch, &format!("{ch}{i}"), &[]).1;
            epochs.insert(ch, e);
        }
    }
    let positioned = as_array(&cmd(&mut pcon, &["GYRE.POSITION", "d"]))[1].clone();
    let d_epoch = as_string(&positioned);
    wait_in_sync(&mut pcon);
    let mut rcon = replica.connection();
    let lineage_before = gyre_info(&mut rcon).get("gyre_lineage").cloned();
    drop(primary);
    cmd(&mut rcon, &["REPLICAOF", "NO", "ONE"]);

    // HISTORY predicts, PUBLISH stores the same epoch and continues the offsets.
    let a = history(&mut rcon, "a", &[]);
    assert_ne!(a.epoch, epochs["a"]);
    assert_ne!(
        gyre_info(&mut rcon).get("gyre_lineage"),
        lineage_before.as_ref(),
        "a promotion starts a new lineage"
    );
    assert_eq!(
        (a.top, a.data()),
        (3, vec!["a1".into(), "a2".into(), "a3".into()])
    );
    assert_eq!(
        ledger.publish(&mut rcon, "a", "a4", &[]),
        (4, a.epoch.clone())
    );
    assert_eq!(
        ledger.publish(&mut rcon, "a", "a5", &[]),
        (5, a.epoch.clone())
    );

    // POSITION rotates (and writes) too.
    let b = as_array(&cmd(&mut rcon, &["GYRE.POSITION", "b"])).to_vec();
    let b_epoch = as_string(&b[1]);
    assert_eq!(as_int(&b[0]), 3);
    assert_ne!(b_epoch, epochs["b"]);
    assert_eq!(hgetall(&mut rcon, "gyre.stream.meta.b")["e"], b_epoch);
    assert_eq!(history(&mut rcon, "b", &["LIMIT", "0"]).epoch, b_epoch);
    assert_eq!(ledger.publish(&mut rcon, "b", "b4", &[]), (4, b_epoch));
    let d = as_array(&cmd(&mut rcon, &["GYRE.POSITION", "d"])).to_vec();
    assert_eq!(as_int(&d[0]), 0);
    assert_ne!(as_string(&d[1]), d_epoch);
    assert_eq!(
        ledger.publish(&mut rcon, "d", "d1", &[]).1,
        as_string(&d[1])
    );
    assert_eq!(rotations(&mut rcon), 3, "a, b and d rotated; c not yet");

    // A replica of the new primary reports the stored epoch of c (not rotated yet), the primary
    // the one its next write stores.
    let promoted = replica;
    let second = RedisServer::builder().replica_of(&promoted).start();
    second.wait_for_replication_link();
    wait_in_sync(&mut rcon);
    let mut scon = second.connection();
    assert_eq!(history(&mut scon, "c", &["LIMIT", "0"]).epoch, epochs["c"]);
    let c_next = history(&mut rcon, "c", &["LIMIT", "0"]).epoch;
    assert_ne!(c_next, epochs["c"]);
    assert_eq!(history(&mut scon, "a", &[]), history(&mut rcon, "a", &[]));
    assert_eq!(ledger.publish(&mut rcon, "c", "c4", &[]), (4, c_next));
    ledger.assert_no_reuse();
}

/// No failover, no epoch change: a replica attaching (which gives the primary a new replication
/// ID), reconnecting (partial resync), restarting on its files, restarting empty (full resync),
/// and many publications.
#[test]
fn no_failover_keeps_every_epoch() {
    let primary = RedisServer::builder().tcp().start();
    let mut pcon = primary.connection();
    let lineage = gyre_info(&mut pcon).get("gyre_lineage").cloned();
    let channels = ["x", "y", "z"];
    let mut ledger = Ledger::default();
    let mut epochs = BTreeMap::new();
    for ch in channels {
        epochs.insert(ch, ledger.publish(&mut pcon, ch, "first", &[]).1);
    }
    let replid = |con: &mut Connection| info_section(con, "replication")["master_replid"].clone();
    let replid_alone = replid(&mut pcon);

    let mut replica = RedisServer::builder().replica_of(&primary).start();
    replica.wait_for_replication_link();
    assert_ne!(
        replid(&mut pcon),
        replid_alone,
        "the first replica gives the primary a new replication ID (so it cannot mark a history)"
    );
    let publish_all = |pcon: &mut Connection, round: &str, ledger: &mut Ledger| {
        for i in 0..100 {
            for ch in channels {
                let (_, e) = ledger.publish(pcon, ch, &format!("{round}-{i}"), &[]);
                assert_eq!(e, epochs[ch], "{ch} keeps its epoch ({round})");
            }
        }
    };
    publish_all(&mut pcon, "attached", &mut ledger);

    let stats = |con: &mut Connection, field: &str| -> i64 {
        info_section(con, "stats")[field].parse().unwrap()
    };
    let partial = stats(&mut pcon, "sync_partial_ok");
    cmd(&mut pcon, &["CLIENT", "KILL", "TYPE", "replica"]);
    wait_until(Duration::from_secs(15), "partial resync", || {
        stats(&mut pcon, "sync_partial_ok") > partial
    });
    replica.wait_for_replication_link();
    publish_all(&mut pcon, "reconnected", &mut ledger);

    // A restart on its own files (the RDB it received when it synced) resumes from there.
    replica.restart();
    replica.wait_for_replication_link();
    publish_all(&mut pcon, "restarted", &mut ledger);

    let full = stats(&mut pcon, "sync_full");
    replica.stop();
    std::fs::remove_file(replica.dir().join("dump.rdb")).expect("the replica's RDB");
    replica.respawn();
    replica.wait_for_replication_link();
    assert!(
        stats(&mut pcon, "sync_full") > full,
        "the emptied replica synced in full"
    );
    publish_all(&mut pcon, "resynced", &mut ledger);

    wait_in_sync(&mut pcon);
    let mut rcon = replica.connection();
    for ch in channels {
        let on_primary = history(&mut pcon, ch, &["LIMIT", "0"]);
        assert_eq!((on_primary.top, &on_primary.epoch), (401, &epochs[ch]));
        assert_eq!(history(&mut rcon, ch, &["LIMIT", "0"]), on_primary);
    }
    let info = gyre_info(&mut pcon);
    ledger.assert_no_reuse();
    assert_eq!(
        info.get("gyre_epoch_rotations").map(String::as_str),
        Some("0")
    );
    assert_eq!(
        info.get("gyre_lineage"),
        lineage.as_ref(),
        "the primary kept its lineage"
    );
    assert_eq!(
        hgetall(&mut rcon, "gyre.stream.meta.x").get("l"),
        lineage.as_ref(),
        "the stamp replicates"
    );
}

/// A restart from the AOF (even a graceful one: the module cannot tell it from a crash whose
/// `appendfsync everysec` lost the last second) continues every channel under a new epoch with
/// its history; idempotency results keep naming their surviving publications.
#[test]
fn restart_from_aof_starts_a_new_epoch_and_keeps_the_history() {
    let mut server = RedisServer::builder().appendonly().start();
    let mut con = server.connection();
    let mut ledger = Ledger::default();
    for i in 1..=2 {
        ledger.publish(&mut con, "chat", &format!("m{i}"), &[]);
    }
    let idempotent = ledger.publish(&mut con, "chat", "m3", &["IDEMPOTENCY", "k"]);
    let first = history(&mut con, "chat", &[]);
    let lineage = gyre_info(&mut con).get("gyre_lineage").cloned();
    drop(con);

    server.restart();
    let mut con = server.connection();
    let after = history(&mut con, "chat", &[]);
    assert_ne!(after.epoch, first.epoch, "a restart starts a new epoch");
    let stamped = aof_commands(server.dir()).iter().any(|c| {
        c[0].eq_ignore_ascii_case(b"HSET")
            && c[1] == b"gyre.stream.meta.chat"
            && c.windows(2).any(|w| {
                w[0] == b"l" && Some(w[1].as_slice()) == lineage.as_deref().map(str::as_bytes)
            })
    });
    assert!(
        stamped,
        "the AOF has the HSET that stamped the first lineage"
    );
    assert_eq!(
        (after.top, after.entries.clone()),
        (3, first.entries.clone())
    );
    assert_eq!(
        ledger.publish(&mut con, "chat", "m4", &[]),
        (4, after.epoch.clone()),
        "offsets continue under the new epoch"
    );
    assert_eq!(
        ledger.publish(&mut con, "chat", "m3", &["IDEMPOTENCY", "k"]),
        idempotent,
        "the remembered result names the surviving publication"
    );
    drop(con);

    server.restart();
    let mut con = server.connection();
    let again = ledger.publish(&mut con, "chat", "m5", &[]);
    assert_eq!(again.0, 5);
    assert!(
        again.1 != after.epoch && again.1 != first.epoch,
        "{again:?}"
    );
    ledger.assert_no_reuse();
}

/// A crash that restarts from an older RDB snapshot really loses acknowledged publications: the
/// restarted primary must not assign their offsets again under the old epoch.
#[test]
fn crash_restart_from_an_older_snapshot_never_reuses_an_offset() {
    let mut server = RedisServer::start();
    let mut con = server.connection();
    let mut ledger = Ledger::default();
    let mut epoch = String::new();
    for i in 1..=3 {
        epoch = ledger
            .publish(&mut con, "chat", &format!("saved-{i}"), &[])
            .1;
    }
    cmd(&mut con, &["SAVE"]);
    for i in 1..=3 {
        ledger.publish(&mut con, "chat", &format!("lost-{i}"), &[]);
    }
    drop(con);
    server.crash();
    server.respawn();

    let mut con = server.connection();
    let h = history(&mut con, "chat", &[]);
    assert_eq!(
        h.top, 3,
        "precondition: the snapshot lacks the last publications"
    );
    assert_ne!(h.epoch, epoch);
    for i in 1..=3 {
        let ack = ledger.publish(&mut con, "chat", &format!("new-{i}"), &[]);
        assert_eq!(ack, (3 + i, h.epoch.clone()));
    }
    ledger.assert_no_reuse();
}

/// Redis Cluster: the cluster itself promotes the replica after a tail-loss failover; the new
/// primary continues under a new epoch.
#[test]
fn cluster_tail_loss_failover_starts_a_new_epoch() {
    let mut cluster = RedisCluster::shared();
    let channel = "failover-chat";
    let primary = cluster.owner_of(channel);
    let mut ledger = Ledger::default();
    let mut con = cluster.connection(primary);
    let mut epoch = String::new();
    for i in 1..=10 {
        epoch = ledger
            .publish(&mut con, channel, &format!("before-{i}"), &[])
            .1;
    }
    wait_in_sync(&mut con);
    drop(con);

    let mut n = 0;
    let promoted = cluster.tail_loss_failover(primary, WINDOW, |con| {
        n += 1;
        ledger.publish(con, channel, &format!("window-{n}"), &[]);
    });
    assert_eq!(cluster.owner_of(channel), promoted);
    let mut con = cluster.connection(promoted);
    let survived = history(&mut con, channel, &["LIMIT", "0"]);
    assert!(
        (10..ledger.top(channel, &epoch)).contains(&survived.top),
        "precondition: the promoted replica lacks acknowledged publications ({} of {})",
        survived.top,
        ledger.top(channel, &epoch)
    );
    assert_ne!(survived.epoch, epoch);
    for i in 1..=5 {
        let ack = ledger.publish(&mut con, channel, &format!("after-{i}"), &[]);
        assert_eq!(ack, (survived.top + i, survived.epoch.clone()));
    }
    ledger.assert_no_reuse();
    drop(con);
    cluster.heal();
}

/// Redis Cluster slot migration: a migrated channel keeps its offsets and history and continues
/// under a new epoch on its new node (the new node cannot prove the copy complete); channels that
/// did not move keep their epoch. A round trip without writes rotates as well.
#[test]
fn cluster_slot_migration_rotates_the_epoch_and_keeps_the_history() {
    let mut cluster = RedisCluster::shared();
    // Two channels in one slot (hash tag), one channel elsewhere on the same node.
    let (moving, riding) = ("a{migrating}", "b{migrating}");
    let source = cluster.owner_of(moving);
    let slot = cluster.slot(moving);
    let staying = (0..)
        .map(|i| format!("staying-{i}"))
        .find(|c| cluster.owner_of(c) == source && cluster.slot(c) != slot)
        .unwrap();
    let target = *cluster.primaries().iter().find(|&&p| p != source).unwrap();

    let mut ledger = Ledger::default();
    let mut con = cluster.connection(source);
    let mut epochs = BTreeMap::new();
    for ch in [moving, riding, staying.as_str()] {
        for i in 1..=3 {
            epochs.insert(
                ch.to_string(),
                ledger.publish(&mut con, ch, &format!("{ch}-{i}"), &[]).1,
            );
        }
    }
    let before = history(&mut con, moving, &[]);
    drop(con);

    let moved = cluster.move_slot(slot, target);
    assert_eq!(moved, 4, "stream and meta of both channels");
    let mut tcon = cluster.connection(target);
    let there = history(&mut tcon, moving, &[]);
    assert_eq!(
        (there.top, &there.entries),
        (3, &before.entries),
        "history moved whole"
    );
    assert_ne!(
        there.epoch, before.epoch,
        "a migrated channel continues under a new epoch"
    );
    assert_eq!(
        ledger.publish(&mut tcon, moving, "moved-4", &[]),
        (4, there.epoch.clone())
    );
    let mut scon = cluster.connection(source);
    assert_eq!(
        ledger.publish(&mut scon, &staying, "stayed-4", &[]),
        (4, epochs[&staying].clone()),
        "a channel that did not move keeps its epoch"
    );
    drop((tcon, scon));

    // Back to the source: `riding` was not written on the target, so its meta still carries
    // the source's own lineage; it rotates all the same.
    cluster.move_slot(slot, source);
    let mut con = cluster.connection(source);
    let riding_back = history(&mut con, riding, &["LIMIT", "0"]);
    assert_ne!(riding_back.epoch, epochs[riding]);
    assert_eq!(
        ledger.publish(&mut con, riding, "back-4", &[]),
        (4, riding_back.epoch.clone())
    );
    let moving_back = ledger.publish(&mut con, moving, "back-5", &[]);
    assert_eq!(moving_back.0, 5);
    assert!(moving_back.1 != there.epoch && moving_back.1 != before.epoch);
    ledger.assert_no_reuse();
}
