//! Live slot migration (docs/module.md, "Slot migration"): a channel that is published to while
//! its slot moves keeps every acknowledged publication, never has one (epoch, offset) pair
//! acknowledged twice, and the resharding completes (no `BUSYKEY`), whether it is paced by hand
//! (every intermediate state) or run by `redis-cli --cluster reshard`.
//!
//! Every GYRE command declares the channel name as its key, and that name is never a real key:
//! during a migration the source answers `-ASK` for all of them and the target runs them
//! (`ASKING`). The target must not create a channel's state while the channel's keys may still be
//! on the source; it answers `-TRYAGAIN` instead, which cluster clients retry.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use gyre_tests::*;

/// One acknowledged publication.
#[derive(Debug, Clone)]
struct Ack {
    channel: String,
    epoch: String,
    offset: i64,
    data: String,
}

/// What the publishing thread did.
#[derive(Debug, Default)]
struct Load {
    /// Acknowledged publications, in the order of their acknowledgements (one thread).
    acks: Vec<Ack>,
    /// Acknowledged while the migration ran.
    during: usize,
    /// Clients whose GYRE.PRESENCE.ADD was acknowledged.
    present: Vec<String>,
    /// Problems: an error other than a redirection, an idempotent retry with another answer.
    problems: Vec<String>,
    seen: Redirections,
}

fn publish_args<'a>(channel: &'a str, data: &'a str, idempotency: Option<&'a str>) -> Vec<&'a str> {
    let mut args = vec!["GYRE.PUBLISH", channel, data, "HISTORY", "1000", "300"];
    if let Some(key) = idempotency {
        args.extend(["IDEMPOTENCY", key]);
    }
    args
}

fn pair(v: &Value) -> (i64, String) {
    let items = as_array(v);
    (as_int(&items[0]), as_string(&items[1]))
}

/// Publishes to `channel` (and now and then to a brand-new channel of the same slot, `tag`) until
/// `stop`, through a client that follows redirections: every fifth publication is idempotent and
/// retried at once (the retry must get the same pair), every seventh round adds a presence
/// entry. Counts acknowledgements made while `moving` is set.
fn spawn_load(
    mut client: ClusterClient,
    channel: String,
    tag: String,
    moving: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<Load> {
    std::thread::spawn(move || {
        let mut load = Load::default();
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            i += 1;
            let data = format!("p{i}");
            let idempotency = i.is_multiple_of(5).then(|| format!("k{i}"));
            let target = if i % 10 == 3 {
                format!("n{i}{{{tag}}}")
            } else {
                channel.clone()
            };
            let args = publish_args(&target, &data, idempotency.as_deref());
            match client.query(&args) {
                Ok(v) => {
                    let (offset, epoch) = pair(&v);
                    if moving.load(Ordering::Relaxed) {
                        load.during += 1;
                    }
                    load.acks.push(Ack {
                        channel: target.clone(),
                        epoch: epoch.clone(),
                        offset,
                        data: data.clone(),
                    });
                    if idempotency.is_some() {
                        match client.query(&args) {
                            Ok(again) if pair(&again) == (offset, epoch.clone()) => {}
                            other => load.problems.push(format!(
                                "retry of {args:?} answered {other:?}, first ({offset}, {epoch})"
                            )),
                        }
                    }
                }
                Err(e) => load.problems.push(format!("{args:?}: {}", error_text(&e))),
            }
            if i.is_multiple_of(7) {
                let client_id = format!("c{i}");
                let add = [
                    "GYRE.PRESENCE.ADD",
                    channel.as_str(),
                    &client_id,
                    "u",
                    "TTL",
                    "600",
                ];
                match client.query(&add) {
                    Ok(_) => load.present.push(client_id),
                    Err(e) => load.problems.push(format!("{add:?}: {}", error_text(&e))),
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        load.seen = client.seen;
        load
    })
}

/// Every acknowledged publication is in its channel's history on the node that now serves it,
/// at its offset and with its data (or older than the oldest entry kept); no (epoch, offset) pair
/// was acknowledged for two publications; a channel's offsets only go forward, also across the
/// new epoch the migration gives it; the history's epoch is the last one acknowledged.
fn check_acks(client: &mut ClusterClient, acks: &[Ack]) {
    let mut pairs: BTreeMap<(String, String, i64), String> = BTreeMap::new();
    let mut last: BTreeMap<String, &Ack> = BTreeMap::new();
    let mut problems = Vec::new();
    for ack in acks {
        let key = (ack.channel.clone(), ack.epoch.clone(), ack.offset);
        if let Some(known) = pairs.insert(key, ack.data.clone())
            && known != ack.data
        {
            problems.push(format!(
                "({}, {}) of {} acknowledged for {known:?} and {:?}",
                ack.epoch, ack.offset, ack.channel, ack.data
            ));
        }
        if let Some(before) = last.get(&ack.channel)
            && ack.offset <= before.offset
        {
            problems.push(format!(
                "{} went back from ({}, {}) to ({}, {})",
                ack.channel, before.epoch, before.offset, ack.epoch, ack.offset
            ));
        }
        last.insert(ack.channel.clone(), ack);
    }
    for (channel, newest) in &last {
        let v = client.cmd(&["GYRE.HISTORY", channel]);
        let items = as_array(&v);
        let epoch = as_string(&items[1]);
        let entries: BTreeMap<i64, String> = as_array(&items[2])
            .iter()
            .map(|e| {
                let f = as_array(e);
                (as_int(&f[0]), as_string(&f[1]))
            })
            .collect();
        // A channel written after the move reports the epoch of its last publication; one that
        // was not reports the epoch its next publication will carry.
        if epoch.is_empty() || (epoch != newest.epoch && newest.offset != as_int(&items[0])) {
            problems.push(format!(
                "{channel}: history at ({epoch}, {}), last acknowledged ({}, {})",
                as_int(&items[0]),
                newest.epoch,
                newest.offset
            ));
        }
        let oldest = entries.keys().next().copied().unwrap_or(i64::MAX);
        for ack in acks.iter().filter(|a| &a.channel == channel) {
            match entries.get(&ack.offset) {
                Some(data) if *data == ack.data => {}
                None if ack.offset < oldest => {} // trimmed
                other => problems.push(format!(
                    "{channel}: acknowledged {:?} at ({}, {}), history has {other:?}",
                    ack.data, ack.epoch, ack.offset
                )),
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems, e.g.:\n{}",
        problems.len(),
        problems[..problems.len().min(8)].join("\n")
    );
}

/// Every client in `ids` is present on `channel`.
fn check_present(client: &mut ClusterClient, channel: &str, ids: &[String]) {
    let v = client.cmd(&["GYRE.PRESENCE", channel]);
    let present: Vec<String> = as_array(&v)
        .iter()
        .map(|e| as_string(&as_array(e)[0]))
        .collect();
    let missing: Vec<&String> = ids.iter().filter(|id| !present.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "presence entries lost: {missing:?} (present: {present:?})"
    );
}

/// Publishes `n` publications (some idempotent) and adds two presence entries, before the move.
fn seed(client: &mut ClusterClient, channel: &str, n: u64) -> (Vec<Ack>, Vec<String>) {
    let mut acks = Vec::new();
    for i in 1..=n {
        let data = format!("seed{i}");
        let key = format!("seed-k{i}");
        let idempotency = i.is_multiple_of(3).then_some(key.as_str());
        let (offset, epoch) = pair(&client.cmd(&publish_args(channel, &data, idempotency)));
        acks.push(Ack {
            channel: channel.to_string(),
            epoch,
            offset,
            data,
        });
    }
    let ids = vec!["early-1".to_string(), "early-2".to_string()];
    for id in &ids {
        client.cmd(&["GYRE.PRESENCE.ADD", channel, id, "u", "TTL", "600"]);
    }
    (acks, ids)
}

/// The slot moves one key per MIGRATE with pauses in between (every intermediate state: a meta
/// without its stream, a stream without its idempotency results, one presence key without the
/// other …) while a client publishes and adds presence entries. Before the fix the target
/// started a fresh stream (offset 1, another epoch) and the MIGRATE of the source's stream failed
/// with BUSYKEY.
#[test]
fn paced_migration_under_publishing_keeps_every_publication() {
    let mut cluster = RedisCluster::shared();
    let tag = "paced";
    let channel = format!("chat{{{tag}}}");
    let slot = cluster.slot(&channel);
    let source = cluster.owner(slot);
    let target = *cluster.primaries().iter().find(|&&p| p != source).unwrap();

    let mut client = cluster.client();
    let (mut acks, mut ids) = seed(&mut client, &channel, 12);
    let epoch_before = acks.last().unwrap().epoch.clone();

    let moving = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let load = spawn_load(
        cluster.client(),
        channel.clone(),
        tag.to_string(),
        moving.clone(),
        stop.clone(),
    );
    std::thread::sleep(Duration::from_millis(100));
    moving.store(true, Ordering::Relaxed);
    let migration = cluster.move_slot_paced(slot, target, 1, Duration::from_millis(40));
    moving.store(false, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    let load = load.join().expect("the publishing thread");
    eprintln!(
        "{} publications acknowledged ({} while the slot moved), {} presence entries; {:?}",
        load.acks.len(),
        load.during,
        load.present.len(),
        load.seen
    );

    assert!(
        migration.refused.is_empty(),
        "the target refused keys of the source (the resharding would abort): {:?}",
        migration.refused
    );
    assert!(
        cluster.keys_in_slot(source, slot).is_empty(),
        "nothing stays on the source"
    );
    assert!(load.problems.is_empty(), "{:#?}", load.problems);
    assert!(
        load.seen.ask > 0 && load.during > 0,
        "precondition: publications were acknowledged while the slot migrated ({load:?})"
    );
    acks.extend(load.acks);
    ids.extend(load.present);
    client.forget_slots();
    check_acks(&mut client, &acks);
    check_present(&mut client, &channel, &ids);
    let after = acks.iter().rev().find(|a| a.channel == channel).unwrap();
    assert_ne!(
        after.epoch, epoch_before,
        "the migrated channel continues under a new epoch"
    );
    assert_eq!(cluster.owner(slot), target);
}

/// `redis-cli --cluster reshard` (pipeline of 10 keys per MIGRATE, as by default) of two slots,
/// the first of which holds a channel being published to and enough other keys that the
/// migration of that slot takes a while. The resharding must succeed.
#[test]
fn redis_cli_reshard_under_publishing_succeeds_and_keeps_every_publication() {
    let mut cluster = RedisCluster::shared();
    let primaries = cluster.primaries();
    let (from, to) = (primaries[0], primaries[1]);
    let slot = cluster.lowest_slot(from);
    let tag = tag_for_slot(slot);
    let channel = format!("live{{{tag}}}");

    let mut client = cluster.client();
    let (mut acks, mut ids) = seed(&mut client, &channel, 30);
    let epoch_before = acks.last().unwrap().epoch.clone();
    // Other keys of the slot, so that the slot's migration spans many MIGRATE batches.
    let mut fill = redis::pipe();
    for i in 0..3000 {
        fill.cmd("SET")
            .arg(format!("fill{{{tag}}}{i}"))
            .arg("x")
            .ignore();
    }
    fill.query::<()>(&mut cluster.connection(from))
        .expect("fill the slot");

    let moving = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let load = spawn_load(
        cluster.client(),
        channel.clone(),
        tag.clone(),
        moving.clone(),
        stop.clone(),
    );
    std::thread::sleep(Duration::from_millis(100));
    moving.store(true, Ordering::Relaxed);
    let reshard = cluster.reshard(from, to, 2, 10);
    moving.store(false, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    let load = load.join().expect("the publishing thread");
    eprintln!(
        "{} publications acknowledged ({} while the slot moved), {} presence entries; {:?}",
        load.acks.len(),
        load.during,
        load.present.len(),
        load.seen
    );

    assert!(
        reshard.success && !reshard.output.contains("BUSYKEY"),
        "redis-cli --cluster reshard failed:\n{}",
        reshard.output
    );
    assert_eq!(cluster.owner(slot), to);
    assert!(cluster.keys_in_slot(from, slot).is_empty());
    assert!(cluster.keys_in_slot(to, slot).len() >= 3000);
    assert!(load.problems.is_empty(), "{:#?}", load.problems);
    assert!(
        load.seen.ask > 0,
        "precondition: the client met the migration ({load:?})"
    );
    acks.extend(load.acks);
    ids.extend(load.present);
    client.forget_slots();
    check_acks(&mut client, &acks);
    check_present(&mut client, &channel, &ids);
    let after = acks.iter().rev().find(|a| a.channel == channel).unwrap();
    assert_ne!(after.epoch, epoch_before);
}

/// `ASKING` + the command on one connection, as a client follows `-ASK`.
fn asking(con: &mut Connection, args: &[&str]) -> RedisResult<Value> {
    redis::cmd("ASKING").query::<()>(con)?;
    try_cmd(con, args)
}

/// The error code of a reply (`"TRYAGAIN"`, `"ASK"` …), or `"ok"`.
fn code(reply: &RedisResult<Value>) -> String {
    match reply {
        Ok(_) => "ok".into(),
        Err(e) => e.code().unwrap_or("io").to_string(),
    }
}

/// Each GYRE command, step by step through a migration whose keys move one at a time: the target
/// serves a command only when every key the command needs is there, and answers TRYAGAIN while
/// one may still be on the source (including for a brand-new channel, and for a channel whose
/// stream expired, since neither can be told apart from one whose keys have not arrived). No key
/// ever exists on both nodes, and every MIGRATE succeeds.
#[test]
fn each_command_waits_until_the_keys_it_needs_have_moved() {
    let mut cluster = RedisCluster::shared();
    let (moved, stay, expired, new) = ("m{split}", "s{split}", "x{split}", "n{split}");
    let slot = cluster.slot(moved);
    let source = cluster.owner(slot);
    let target = *cluster.primaries().iter().find(|&&p| p != source).unwrap();
    let mut scon = cluster.connection(source);
    let mut tcon = cluster.connection(target);

    let mut old = BTreeMap::new();
    for ch in [moved, stay, expired] {
        for i in 1..=3 {
            let data = format!("{}-{i}", &ch[..1]);
            let (_, e) = publish(&mut scon, ch, &data, &["HISTORY", "100", "300"]);
            old.insert(ch, e);
        }
    }
    let k1 = publish(
        &mut scon,
        moved,
        "m-4",
        &["HISTORY", "100", "300", "IDEMPOTENCY", "k1"],
    );
    cmd(&mut scon, &["GYRE.PRESENCE.ADD", moved, "c1", "u1"]);
    // A stream that expired while its meta lives (history TTL shorter than the meta TTL).
    cmd(&mut scon, &["DEL", "gyre.stream.x{split}"]);
    // A plain key named like a channel: Redis lets GYRE commands of `stay` run on the source.
    cmd(&mut scon, &["SET", stay, "user data"]);

    let (src_id, dst_id) = (cluster.node_id(source), cluster.node_id(target));
    let slot_text = slot.to_string();
    cmd(
        &mut tcon,
        &["CLUSTER", "SETSLOT", &slot_text, "IMPORTING", &src_id],
    );
    cmd(
        &mut scon,
        &["CLUSTER", "SETSLOT", &slot_text, "MIGRATING", &dst_id],
    );
    let port = cluster.port(target).to_string();
    let migrate = |scon: &mut Connection, keys: &[&str]| {
        let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
        args.extend(keys);
        cmd(scon, &args);
    };
    let no_key_on_both = |cluster: &RedisCluster, step: &str| {
        let on_source = cluster.keys_in_slot(source, slot);
        let on_both: Vec<_> = cluster
            .keys_in_slot(target, slot)
            .into_iter()
            .filter(|k| on_source.contains(k))
            .collect();
        assert!(on_both.is_empty(), "{step}: keys on both nodes {on_both:?}");
    };

    // Nothing moved yet: the source sends every GYRE command of the slot to the target (its
    // channel-name key does not exist there), which holds nothing and must not answer as if the
    // channel were empty or new.
    assert_eq!(
        code(&try_cmd(&mut scon, &publish_args(moved, "x", None))),
        "ASK"
    );
    let every_command: [&[&str]; 11] = [
        &publish_args(moved, "lost?", None),
        &publish_args(new, "lost?", None),
        &["GYRE.PUBLISH", moved, "x", "IDEMPOTENCY", "k9"],
        &["GYRE.POSITION", moved],
        &["GYRE.HISTORY", moved],
        &["GYRE.HISTORY", new, "LIMIT", "0"],
        &["GYRE.HISTORY.REMOVE", moved],
        &["GYRE.PRESENCE.ADD", moved, "c2", "u2"],
        &["GYRE.PRESENCE.REM", moved, "c1"],
        &["GYRE.PRESENCE", moved],
        &["GYRE.PRESENCE.STATS", moved],
    ];
    for args in every_command {
        assert_eq!(
            code(&asking(&mut tcon, args)),
            "TRYAGAIN",
            "{args:?} on the target before any key moved"
        );
    }
    // Without history and idempotency a publish touches no key: it runs.
    assert_eq!(
        pair(&asking(&mut tcon, &["GYRE.PUBLISH", moved, "plain"]).unwrap()),
        (0, String::new())
    );
    assert!(cluster.keys_in_slot(target, slot).is_empty());

    // The meta moved, the stream not yet.
    migrate(&mut scon, &["gyre.stream.meta.m{split}"]);
    for args in [
        publish_args(moved, "lost?", None),
        vec!["GYRE.HISTORY", moved],
        vec!["GYRE.HISTORY.REMOVE", moved],
    ] {
        assert_eq!(
            code(&asking(&mut tcon, &args)),
            "TRYAGAIN",
            "{args:?} with the meta alone"
        );
    }
    // What needs only the meta runs: the position, under the epoch the next publish stores.
    let position = pair(&asking(&mut tcon, &["GYRE.POSITION", moved]).unwrap());
    assert_eq!(position.0, 4);
    assert_ne!(position.1, old[moved]);
    let top =
        as_array(&asking(&mut tcon, &["GYRE.HISTORY", moved, "LIMIT", "0"]).unwrap()).to_vec();
    assert_eq!((as_int(&top[0]), as_string(&top[1])), position);
    no_key_on_both(&cluster, "meta moved");

    // The stream followed: publishes run on the target and continue the offsets.
    migrate(&mut scon, &["gyre.stream.m{split}"]);
    assert_eq!(
        pair(&asking(&mut tcon, &publish_args(moved, "m-5", None)).unwrap()),
        (5, position.1.clone())
    );
    // The idempotency result of k1 is still on the source: a retry must not publish again.
    assert_eq!(
        code(&asking(&mut tcon, &publish_args(moved, "m-4", Some("k1")))),
        "TRYAGAIN"
    );
    migrate(&mut scon, &["gyre.result.m{split}.k1"]);
    assert_eq!(
        pair(&asking(&mut tcon, &publish_args(moved, "m-4", Some("k1"))).unwrap()),
        k1,
        "the moved result names the original publication"
    );
    // A new idempotency key may still have a result on the source: it waits.
    assert_eq!(
        code(&asking(&mut tcon, &publish_args(moved, "m-6", Some("k2")))),
        "TRYAGAIN"
    );
    no_key_on_both(&cluster, "stream and result moved");

    // Presence moves as two keys.
    migrate(&mut scon, &["gyre.presence.data.m{split}"]);
    assert_eq!(
        code(&asking(
            &mut tcon,
            &["GYRE.PRESENCE.ADD", moved, "c2", "u2"]
        )),
        "TRYAGAIN"
    );
    migrate(&mut scon, &["gyre.presence.expire.m{split}"]);
    assert_eq!(
        as_int(&asking(&mut tcon, &["GYRE.PRESENCE.ADD", moved, "c2", "u2"]).unwrap()),
        1
    );
    let stats = asking(&mut tcon, &["GYRE.PRESENCE.STATS", moved]).unwrap();
    assert_eq!(as_int(&as_array(&stats)[0]), 2, "c1 (moved) and c2");

    // `stay` has a plain key of its name on the source, so Redis runs its GYRE commands there:
    // with its keys on the source they run as usual …
    assert_eq!(
        publish(&mut scon, stay, "s-4", &["HISTORY", "100", "300"]),
        (4, old[stay].clone())
    );
    // … and once one of them moved, the source must not write the channel again: not with the
    // stream still there …
    migrate(&mut scon, &["gyre.stream.meta.s{split}"]);
    assert_eq!(
        code(&try_cmd(&mut scon, &publish_args(stay, "lost?", None))),
        "TRYAGAIN"
    );
    // … nor with nothing left.
    migrate(&mut scon, &["gyre.stream.s{split}"]);
    assert_eq!(
        code(&try_cmd(&mut scon, &publish_args(stay, "lost?", None))),
        "TRYAGAIN"
    );
    // A channel whose stream expired: its meta alone moves, and nothing tells the target that no
    // stream follows, so its publishes wait for the end of the migration.
    migrate(&mut scon, &["gyre.stream.meta.x{split}"]);
    assert_eq!(
        code(&asking(&mut tcon, &publish_args(expired, "x-4", None))),
        "TRYAGAIN"
    );
    no_key_on_both(&cluster, "before the last keys");

    // The rest moves and the slot is assigned to the target, which now serves everything.
    loop {
        let keys = cluster.keys_in_slot(source, slot);
        if keys.is_empty() {
            break;
        }
        migrate(
            &mut scon,
            &keys.iter().map(String::as_str).collect::<Vec<_>>(),
        );
    }
    for node in [target, source] {
        cmd(
            &mut cluster.connection(node),
            &["CLUSTER", "SETSLOT", &slot_text, "NODE", &dst_id],
        );
    }
    let mut client = cluster.client();
    let (offset, epoch) = pair(&client.cmd(&publish_args(expired, "x-4", None)));
    assert_eq!(offset, 4, "the offsets go on after the expired stream");
    assert_ne!(epoch, old[expired]);
    assert_eq!(pair(&client.cmd(&publish_args(new, "n-1", None))).0, 1);
    assert_eq!(
        pair(&client.cmd(&publish_args(moved, "m-6", Some("k2")))).0,
        6
    );
    let h = history(&mut cluster.connection(target), moved, &[]);
    assert_eq!(h.data(), ["m-1", "m-2", "m-3", "m-4", "m-5", "m-6"]);
    let h = history(&mut cluster.connection(target), stay, &[]);
    assert_eq!(h.data(), ["s-1", "s-2", "s-3", "s-4"]);
    assert_eq!(client.seen.tryagain, 0, "after the migration nothing waits");
    drop((scon, tcon));
    cluster.heal();
}
