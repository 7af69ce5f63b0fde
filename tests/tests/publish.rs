//! GYRE.PUBLISH: offsets, epoch, stream layout, trimming, expiry, PUB/SUB payloads, INFO/TAGS,
//! idempotency, epoch renewal.

use std::collections::BTreeMap;
use std::time::Duration;

use gyre_tests::*;

fn assert_epoch(epoch: &str) {
    assert_eq!(epoch.len(), 8, "epoch {epoch:?} must be 8 letters");
    assert!(
        epoch.chars().all(|c| c.is_ascii_alphabetic()),
        "epoch {epoch:?} must be letters"
    );
}

fn tag_map(pairs: &[String]) -> BTreeMap<String, String> {
    assert_eq!(
        pairs.len() % 2,
        0,
        "tags must be flat key/value pairs: {pairs:?}"
    );
    pairs
        .chunks(2)
        .map(|kv| (kv[0].clone(), kv[1].clone()))
        .collect()
}

#[test]
fn publish_with_history_assigns_offsets_epoch_and_stream_entries() {
    let server = RedisServer::start();
    let mut con = server.connection();
    let before = now_ms();
    let r1 = publish_hist(&mut con, "chat", r#"{"text":"hi"}"#, 100, 300);
    let r2 = publish_hist(&mut con, "chat", "two", 100, 300);
    let r3 = publish_hist(&mut con, "chat", "three", 100, 300);
    let after = now_ms();

    assert_eq!((r1.0, r2.0, r3.0), (1, 2, 3), "offsets");
    assert_epoch(&r1.1);
    assert_eq!(r1.1, r2.1, "same epoch");
    assert_eq!(r2.1, r3.1, "same epoch");

    let entries = xrange(&mut con, "gyre.stream.chat");
    let ids: Vec<&str> = entries.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["1-0", "2-0", "3-0"], "stream entry ids");
    let expected = [r#"{"text":"hi"}"#, "two", "three"];
    for ((id, fields), data) in entries.iter().zip(expected) {
        assert_eq!(fields.len(), 1, "entry {id} has exactly one field");
        assert_eq!(fields[0].0, "d", "entry {id} field name");
        let p = decode_publication(&fields[0].1);
        assert_eq!(p.data, data.as_bytes(), "entry {id} data");
        assert_eq!(
            p.offset, 0,
            "entry {id}: the stored Publication has no offset"
        );
        assert!(
            p.time >= before - 1000 && p.time <= after + 1000,
            "entry {id}: time {} is not the server time in ms ({before}..{after})",
            p.time
        );
        assert!(p.info.is_none(), "entry {id}: no INFO given");
        assert!(p.tags.is_empty(), "entry {id}: no TAGS given");
    }

    let meta = hgetall(&mut con, "gyre.stream.meta.chat");
    assert_eq!(meta.get("e"), Some(&r1.1), "meta e = epoch: {meta:?}");
    assert_eq!(
        meta.get("s").map(String::as_str),
        Some("3"),
        "meta s = top offset: {meta:?}"
    );

    // Another channel has its own offsets.
    let other = publish_hist(&mut con, "other", "x", 100, 300);
    assert_eq!(other.0, 1, "a new channel starts at offset 1");
    assert_epoch(&other.1);
    assert_eq!(
        hgetall(&mut con, "gyre.stream.meta.chat")
            .get("s")
            .map(String::as_str),
        Some("3"),
        "publishing to another channel leaves this one alone"
    );
}

#[test]
fn stream_is_trimmed_to_exact_maxlen() {
    let server = RedisServer::start();
    let mut con = server.connection();
    for i in 1..=10 {
        let (offset, _) = publish_hist(&mut con, "trim", &format!("m{i}"), 3, 300);
        assert_eq!(offset, i);
    }
    assert_eq!(
        as_int(&cmd(&mut con, &["XLEN", "gyre.stream.trim"])),
        3,
        "exact MAXLEN 3"
    );
    let ids: Vec<String> = xrange(&mut con, "gyre.stream.trim")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids, ["8-0", "9-0", "10-0"]);
    let h = history(&mut con, "trim", &[]);
    assert_eq!(h.top, 10);
    assert_eq!(h.offsets(), [8, 9, 10]);
    assert_eq!(h.data(), ["m8", "m9", "m10"]);

    // A smaller size on a later publish trims to the new size exactly.
    publish_hist(&mut con, "trim", "m11", 1, 300);
    assert_eq!(xrange(&mut con, "gyre.stream.trim").len(), 1);
    assert_eq!(history(&mut con, "trim", &[]).offsets(), [11]);
}

#[test]
fn stream_and_meta_get_ttls() {
    let server = RedisServer::start();
    let mut con = server.connection();

    publish_hist(&mut con, "a", "x", 10, 300);
    let stream_ttl = ttl(&mut con, "gyre.stream.a");
    assert!(
        (290..=300).contains(&stream_ttl),
        "stream TTL {stream_ttl}, want ≈300"
    );
    let meta_ttl = ttl(&mut con, "gyre.stream.meta.a");
    assert!(
        (2_592_000 - 10..=2_592_000).contains(&meta_ttl),
        "meta TTL {meta_ttl}, want gyre.history-meta-ttl default 2592000"
    );

    publish(
        &mut con,
        "b",
        "x",
        &["HISTORY", "10", "300", "META-TTL", "100"],
    );
    let meta_ttl = ttl(&mut con, "gyre.stream.meta.b");
    assert!(
        (90..=100).contains(&meta_ttl),
        "META-TTL 100 gave {meta_ttl}"
    );

    publish(
        &mut con,
        "c",
        "x",
        &["HISTORY", "10", "300", "META-TTL", "0"],
    );
    assert_eq!(
        ttl(&mut con, "gyre.stream.meta.c"),
        -1,
        "META-TTL 0 = no expiry"
    );
    assert!(
        ttl(&mut con, "gyre.stream.c") > 0,
        "the stream still expires"
    );

    // Every publish refreshes the stream TTL.
    publish_hist(&mut con, "a", "y", 10, 50);
    let stream_ttl = ttl(&mut con, "gyre.stream.a");
    assert!(
        (40..=50).contains(&stream_ttl),
        "stream TTL after ttl 50: {stream_ttl}"
    );
}

#[test]
fn history_expires_but_meta_remains_and_offset_continues() {
    let server = RedisServer::start();
    let mut con = server.connection();
    let (o1, epoch) = publish_hist(&mut con, "short", "a", 10, 1);
    let (o2, e2) = publish_hist(&mut con, "short", "b", 10, 1);
    assert_eq!((o1, o2), (1, 2));
    assert_eq!(epoch, e2);
    assert!(exists(&mut con, "gyre.stream.short"));

    std::thread::sleep(Duration::from_millis(1100));
    wait_until(Duration::from_secs(3), "stream expired", || {
        !exists(&mut con, "gyre.stream.short")
    });
    assert!(
        exists(&mut con, "gyre.stream.meta.short"),
        "the meta outlives the stream"
    );
    let h = history(&mut con, "short", &[]);
    assert_eq!((h.top, h.epoch.as_str()), (2, epoch.as_str()));
    assert!(
        h.entries.is_empty(),
        "expired publications: {:?}",
        h.entries
    );

    let (o3, e3) = publish_hist(&mut con, "short", "c", 10, 1);
    assert_eq!(
        (o3, e3.as_str()),
        (3, epoch.as_str()),
        "offset continues after expiry"
    );
    let ids: Vec<String> = xrange(&mut con, "gyre.stream.short")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids, ["3-0"]);
}

#[test]
fn publish_without_history_replies_zero_and_publishes_bare_publication() {
    let server = RedisServer::start();
    let mut con = server.connection();
    let mut sub = server.subscribe("gyre.client.news");

    let before = now_ms();
    assert_eq!(publish(&mut con, "news", "hello", &[]), (0, String::new()));
    assert_eq!(
        publish(&mut con, "news", "again", &["HISTORY", "0", "0"]),
        (0, String::new()),
        "HISTORY 0 0 = no history"
    );
    let after = now_ms();

    assert!(
        !exists(&mut con, "gyre.stream.news"),
        "no stream without history"
    );
    assert!(
        !exists(&mut con, "gyre.stream.meta.news"),
        "no meta without history"
    );
    assert_eq!(as_int(&cmd(&mut con, &["DBSIZE"])), 0, "nothing written");

    let payloads = sub.payloads_until_barrier(&mut con);
    assert_eq!(payloads.len(), 2, "one message per publish");
    for (payload, data) in payloads.iter().zip(["hello", "again"]) {
        assert!(
            !payload.starts_with(b"__"),
            "a publication without history is the bare Publication"
        );
        let p = decode_publication(payload);
        assert_eq!(p.data, data.as_bytes());
        assert_eq!(p.offset, 0);
        assert!(
            p.time >= before - 1000 && p.time <= after + 1000,
            "time {}",
            p.time
        );
        match decode_payload(payload) {
            ChannelEvent::Publication { epoch, .. } => assert_eq!(epoch, ""),
            other => panic!("expected a publication, got {other:?}"),
        }
    }
}

#[test]
fn publish_with_history_publishes_positioned_payload() {
    let server = RedisServer::start();
    let mut con = server.connection();
    let mut sub = server.subscribe("gyre.client.chat");

    let (o1, epoch) = publish_hist(&mut con, "chat", "first", 10, 60);
    let (o2, _) = publish_hist(&mut con, "chat", "second", 10, 60);
    let payloads = sub.payloads_until_barrier(&mut con);
    assert_eq!(payloads.len(), 2, "one message per publish");

    let stored = xrange(&mut con, "gyre.stream.chat");
    for (i, (payload, (offset, data))) in payloads
        .iter()
        .zip([(o1, "first"), (o2, "second")])
        .enumerate()
    {
        let header = format!("__p1:{offset}:{epoch}__");
        assert!(
            payload.starts_with(header.as_bytes()),
            "payload {:?} must start with {header}",
            String::from_utf8_lossy(payload)
        );
        match decode_payload(payload) {
            ChannelEvent::Publication {
                publication,
                epoch: got_epoch,
            } => {
                assert_eq!(got_epoch, epoch);
                assert_eq!(publication.offset, offset as u64);
                assert_eq!(publication.data, data.as_bytes());
                let in_stream = decode_publication(&stored[i].1[0].1);
                assert_eq!(
                    publication.time, in_stream.time,
                    "same Publication as stored"
                );
            }
            other => panic!("expected a publication, got {other:?}"),
        }
    }
}

#[test]
fn info_and_tags_round_trip() {
    let server = RedisServer::start();
    let mut con = server.connection();
    let mut sub = server.subscribe("gyre.client.chat");

    let (offset, _) = publish(
        &mut con,
        "chat",
        "payload",
        &[
            "HISTORY",
            "10",
            "60",
            "INFO",
            "client-1",
            "user-1",
            r#"{"conn":1}"#,
            r#"{"chan":2}"#,
            "TAGS",
            "2",
            "k1",
            "v1",
            "k2",
            "v2",
        ],
    );
    assert_eq!(offset, 1);
    publish_hist(&mut con, "chat", "plain", 10, 60);

    let h = history(&mut con, "chat", &[]);
    assert_eq!(h.entries.len(), 2);
    let e = &h.entries[0];
    assert_eq!(e.data, b"payload");
    assert_eq!(
        e.info,
        ["client-1", "user-1", r#"{"conn":1}"#, r#"{"chan":2}"#],
        "info = [client, user, conn_info, chan_info]"
    );
    assert_eq!(
        tag_map(&e.tags),
        BTreeMap::from([("k1".into(), "v1".into()), ("k2".into(), "v2".into())])
    );
    assert!(h.entries[1].info.is_empty(), "no INFO → []");
    assert!(h.entries[1].tags.is_empty(), "no TAGS → []");

    let (_, _, raw) = history_raw(&mut con, "chat", &[]);
    let p = decode_publication(&raw[0].1);
    let info = p.info.expect("RAW Publication carries the ClientInfo");
    assert_eq!(
        (info.client.as_str(), info.user.as_str()),
        ("client-1", "user-1")
    );
    assert_eq!(info.conn_info, br#"{"conn":1}"#.as_slice());
    assert_eq!(info.chan_info, br#"{"chan":2}"#.as_slice());
    assert_eq!(p.tags.get("k1").map(String::as_str), Some("v1"));
    assert_eq!(p.tags.get("k2").map(String::as_str), Some("v2"));

    // The PUB/SUB copy carries them too, also without history.
    publish(
        &mut con,
        "chat",
        "nohist",
        &["INFO", "c2", "u2", "", "", "TAGS", "1", "only", "tag"],
    );
    let events = sub.events_until_barrier(&mut con);
    assert_eq!(events.len(), 3);
    let ChannelEvent::Publication { publication, .. } = &events[0] else {
        panic!("expected a publication, got {:?}", events[0]);
    };
    let info = publication.info.as_ref().expect("info on PUB/SUB");
    assert_eq!(
        (info.client.as_str(), info.user.as_str()),
        ("client-1", "user-1")
    );
    assert_eq!(publication.tags.len(), 2);
    let ChannelEvent::Publication { publication, epoch } = &events[2] else {
        panic!("expected a publication, got {:?}", events[2]);
    };
    assert_eq!(epoch, "");
    assert_eq!(publication.data, b"nohist".as_slice());
    let info = publication.info.as_ref().expect("info on PUB/SUB");
    assert_eq!((info.client.as_str(), info.user.as_str()), ("c2", "u2"));
    assert_eq!(
        publication.tags.get("only").map(String::as_str),
        Some("tag")
    );
}

#[test]
fn idempotent_publish_with_history() {
    let server = RedisServer::start();
    let mut con = server.connection();
    let mut sub = server.subscribe("gyre.client.orders");

    let first = publish(
        &mut con,
        "orders",
        "a",
        &["HISTORY", "10", "60", "IDEMPOTENCY", "k1"],
    );
    assert_eq!(first.0, 1);
    let again = publish(
        &mut con,
        "orders",
        "b",
        &["HISTORY", "10", "60", "IDEMPOTENCY", "k1"],
    );
    assert_eq!(again, first, "same key → same [offset, epoch]");
    assert_eq!(as_int(&cmd(&mut con, &["XLEN", "gyre.stream.orders"])), 1);
    assert_eq!(history(&mut con, "orders", &[]).data(), ["a"]);
    assert_eq!(
        hgetall(&mut con, "gyre.stream.meta.orders")
            .get("s")
            .map(String::as_str),
        Some("1"),
        "the duplicate does not advance the offset"
    );

    let result = hgetall(&mut con, "gyre.result.orders.k1");
    assert_eq!(result.get("e"), Some(&first.1), "result hash: {result:?}");
    assert_eq!(
        result.get("s").map(String::as_str),
        Some("1"),
        "result hash: {result:?}"
    );
    let t = ttl(&mut con, "gyre.result.orders.k1");
    assert!(
        (290..=300).contains(&t),
        "default gyre.idempotency-ttl 300, got {t}"
    );

    let second = publish(
        &mut con,
        "orders",
        "c",
        &[
            "HISTORY",
            "10",
            "60",
            "IDEMPOTENCY",
            "k2",
            "IDEMPOTENCY-TTL",
            "10",
        ],
    );
    assert_eq!(second, (2, first.1.clone()));
    let t = ttl(&mut con, "gyre.result.orders.k2");
    assert!((1..=10).contains(&t), "IDEMPOTENCY-TTL 10, got {t}");

    let events = sub.events_until_barrier(&mut con);
    let offsets: Vec<u64> = events
        .iter()
        .map(|e| match e {
            ChannelEvent::Publication { publication, .. } => publication.offset,
            other => panic!("expected a publication, got {other:?}"),
        })
        .collect();
    assert_eq!(offsets, [1, 2], "the duplicate publishes nothing");
}

#[test]
fn idempotent_publish_without_history() {
    let server = RedisServer::start();
    let mut con = server.connection();
    let mut sub = server.subscribe("gyre.client.plain");
    assert_eq!(
        publish(&mut con, "plain", "a", &["IDEMPOTENCY", "once"]),
        (0, String::new())
    );
    assert_eq!(
        publish(&mut con, "plain", "b", &["IDEMPOTENCY", "once"]),
        (0, String::new())
    );
    let events = sub.events_until_barrier(&mut con);
    assert_eq!(
        events.len(),
        1,
        "the duplicate publishes nothing: {events:?}"
    );
    assert!(exists(&mut con, "gyre.result.plain.once"));
}

#[test]
fn idempotency_key_is_forgotten_after_its_ttl() {
    let server = RedisServer::start();
    let mut con = server.connection();
    let opts = [
        "HISTORY",
        "10",
        "60",
        "IDEMPOTENCY",
        "k",
        "IDEMPOTENCY-TTL",
        "1",
    ];
    let (o1, epoch) = publish(&mut con, "ch", "a", &opts);
    assert_eq!(o1, 1);
    std::thread::sleep(Duration::from_millis(1100));
    wait_until(Duration::from_secs(3), "idempotency key expired", || {
        !exists(&mut con, "gyre.result.ch.k")
    });
    assert_eq!(publish(&mut con, "ch", "b", &opts), (2, epoch));
}

#[test]
fn deleting_the_meta_starts_a_new_epoch_and_drops_orphans() {
    let server = RedisServer::start();
    let mut con = server.connection();
    for i in 1..=3 {
        publish_hist(&mut con, "ch", &format!("old{i}"), 10, 300);
    }
    let old_epoch = history(&mut con, "ch", &[]).epoch;
    cmd(&mut con, &["DEL", "gyre.stream.meta.ch"]);
    assert!(
        exists(&mut con, "gyre.stream.ch"),
        "the stream is still there"
    );

    let (offset, epoch) = publish_hist(&mut con, "ch", "new", 10, 300);
    assert_eq!(offset, 1, "the offset restarts");
    assert_epoch(&epoch);
    assert_ne!(epoch, old_epoch, "a new epoch");
    let ids: Vec<String> = xrange(&mut con, "gyre.stream.ch")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids, ["1-0"], "orphan stream entries are deleted");
    let h = history(&mut con, "ch", &[]);
    assert_eq!((h.top, h.epoch.as_str()), (1, epoch.as_str()));
    assert_eq!(h.data(), ["new"]);
}

#[test]
fn keywords_are_case_insensitive() {
    let server = RedisServer::start();
    let mut con = server.connection();
    let (o, e) = publish(
        &mut con,
        "ch",
        "x",
        &[
            "history",
            "10",
            "60",
            "meta-ttl",
            "100",
            "idempotency",
            "k",
            "idempotency-ttl",
            "50",
            "info",
            "c",
            "u",
            "",
            "",
            "tags",
            "1",
            "a",
            "b",
        ],
    );
    assert_eq!(o, 1);
    assert_epoch(&e);
    let h = history(&mut con, "ch", &["limit", "1", "reverse"]);
    assert_eq!(h.offsets(), [1]);
    assert_eq!(h.entries[0].tags, ["a", "b"]);
    let t = ttl(&mut con, "gyre.result.ch.k");
    assert!((1..=50).contains(&t), "idempotency-ttl 50, got {t}");
}

#[test]
fn a_skipped_version_takes_no_offset_and_reaches_nobody() {
    let server = RedisServer::start();
    let mut con = server.connection();
    let mut sub = server.subscribe("gyre.client.doc");
    let mut send = |version: &str, epoch: Option<&str>, data: &str| {
        let mut args = vec!["GYRE.PUBLISH", "doc", data, "HISTORY", "10", "60"];
        args.extend(["VERSION", version]);
        if let Some(epoch) = epoch {
            args.extend(["VERSION-EPOCH", epoch]);
        }
        cmd(&mut con, &args)
    };
    let first = send("5", None, "v5");
    assert_eq!(as_int(&as_array(&first)[0]), 1, "{first:?}");
    // Not newer in the same (empty) version epoch: skipped, answered with nil.
    assert_eq!(send("5", None, "v5 again"), Value::Nil);
    assert_eq!(send("4", None, "v4"), Value::Nil);
    let newer = send("6", None, "v6");
    assert_eq!(
        as_int(&as_array(&newer)[0]),
        2,
        "the skipped ones took no offset"
    );
    // A new version epoch starts over; in it, versions compare again.
    let reset = send("1", Some("b"), "b1");
    assert_eq!(as_int(&as_array(&reset)[0]), 3, "{reset:?}");
    assert_eq!(send("1", Some("b"), "b1 again"), Value::Nil);
    // Without VERSION-EPOCH a version compares with whatever epoch is stored.
    assert_eq!(send("1", None, "b1 without epoch"), Value::Nil);

    let meta = hgetall(&mut con, "gyre.stream.meta.doc");
    assert_eq!(meta.get("s").map(String::as_str), Some("3"), "{meta:?}");
    assert_eq!(meta.get("v").map(String::as_str), Some("1"), "{meta:?}");
    assert_eq!(meta.get("ve").map(String::as_str), Some("b"), "{meta:?}");
    let stored: Vec<Vec<u8>> = xrange(&mut con, "gyre.stream.doc")
        .into_iter()
        .map(|(_, fields)| decode_publication(&fields[0].1).data.to_vec())
        .collect();
    assert_eq!(stored, [b"v5".to_vec(), b"v6".to_vec(), b"b1".to_vec()]);
    let delivered: Vec<u64> = sub
        .payloads_until_barrier(&mut con)
        .iter()
        .map(|payload| match decode_payload(payload) {
            ChannelEvent::Publication { publication, .. } => publication.offset,
            other => panic!("expected a publication, got {other:?}"),
        })
        .collect();
    assert_eq!(
        delivered,
        [1, 2, 3],
        "skipped publications are not published"
    );

    // Without history there is no stored version: VERSION changes nothing.
    let plain = publish(
        &mut con,
        "plain",
        "x",
        &["HISTORY", "0", "0", "VERSION", "1"],
    );
    assert_eq!(plain, (0, String::new()));
    let again = publish(
        &mut con,
        "plain",
        "x",
        &["HISTORY", "0", "0", "VERSION", "1"],
    );
    assert_eq!(again, (0, String::new()));
}

#[test]
fn delta_marks_the_stored_and_published_publication() {
    let server = RedisServer::start();
    let mut con = server.connection();
    let mut sub = server.subscribe("gyre.client.doc");
    publish(&mut con, "doc", "whole", &["HISTORY", "10", "60"]);
    publish(
        &mut con,
        "doc",
        "patchable",
        &["HISTORY", "10", "60", "DELTA"],
    );
    let published: Vec<bool> = sub
        .payloads_until_barrier(&mut con)
        .iter()
        .map(|payload| match decode_payload(payload) {
            ChannelEvent::Publication { publication, .. } => publication.delta_allowed,
            other => panic!("expected a publication, got {other:?}"),
        })
        .collect();
    assert_eq!(published, [false, true]);
    let stored: Vec<bool> = xrange(&mut con, "gyre.stream.doc")
        .iter()
        .map(|(_, fields)| decode_publication(&fields[0].1).delta_allowed)
        .collect();
    assert_eq!(stored, [false, true]);
    let refused = try_cmd(
        &mut con,
        &["GYRE.PUBLISH", "doc", "x", "VERSION-EPOCH", "e"],
    );
    assert_eq!(
        error_text(&refused.unwrap_err()),
        "ERR VERSION-EPOCH needs VERSION"
    );
}
