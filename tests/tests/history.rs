//! GYRE.HISTORY (SINCE / LIMIT / REVERSE / RAW) and GYRE.HISTORY.REMOVE.

use gyre_tests::*;

/// A server with `ch` holding publications `m1`..`m5` at offsets 1..5.
fn five() -> (RedisServer, Connection, String) {
    let server = RedisServer::start();
    let mut con = server.connection();
    let mut epoch = String::new();
    for i in 1..=5 {
        let (offset, e) = publish_hist(&mut con, "ch", &format!("m{i}"), 100, 300);
        assert_eq!(offset, i);
        epoch = e;
    }
    (server, con, epoch)
}

#[test]
fn history_returns_all_publications_oldest_first() {
    let (_server, mut con, epoch) = five();
    let before = now_ms();
    let h = history(&mut con, "ch", &[]);
    assert_eq!(h.top, 5);
    assert_eq!(h.epoch, epoch);
    assert_eq!(h.offsets(), [1, 2, 3, 4, 5]);
    assert_eq!(h.data(), ["m1", "m2", "m3", "m4", "m5"]);
    for e in &h.entries {
        assert!(
            e.time_ms > before - 60_000 && e.time_ms <= now_ms() + 1000,
            "time_ms {} is unix milliseconds",
            e.time_ms
        );
        assert!(e.info.is_empty() && e.tags.is_empty());
    }
    assert_eq!(
        history(&mut con, "ch", &["LIMIT", "-1"]),
        h,
        "LIMIT -1 = all"
    );
}

#[test]
fn history_limit() {
    let (_server, mut con, epoch) = five();
    let h = history(&mut con, "ch", &["LIMIT", "0"]);
    assert_eq!(
        (h.top, h.epoch.as_str()),
        (5, epoch.as_str()),
        "LIMIT 0: position only"
    );
    assert!(h.entries.is_empty());
    assert_eq!(history(&mut con, "ch", &["LIMIT", "2"]).offsets(), [1, 2]);
    assert_eq!(
        history(&mut con, "ch", &["LIMIT", "5"]).offsets(),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(
        history(&mut con, "ch", &["LIMIT", "50"]).offsets(),
        [1, 2, 3, 4, 5]
    );
}

#[test]
fn history_since() {
    let (_server, mut con, epoch) = five();
    let h = history(&mut con, "ch", &["SINCE", "2"]);
    assert_eq!((h.top, h.epoch.as_str()), (5, epoch.as_str()));
    assert_eq!(h.offsets(), [3, 4, 5], "SINCE x: offset > x, oldest first");
    assert_eq!(h.data(), ["m3", "m4", "m5"]);
    assert_eq!(
        history(&mut con, "ch", &["SINCE", "0"]).offsets(),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(
        history(&mut con, "ch", &["SINCE", "2", "LIMIT", "2"]).offsets(),
        [3, 4]
    );
    assert!(history(&mut con, "ch", &["SINCE", "5"]).entries.is_empty());
    assert!(history(&mut con, "ch", &["SINCE", "9"]).entries.is_empty());
    assert_eq!(history(&mut con, "ch", &["SINCE", "4"]).top, 5);
}

#[test]
fn history_reverse() {
    let (_server, mut con, epoch) = five();
    let h = history(&mut con, "ch", &["REVERSE"]);
    assert_eq!((h.top, h.epoch.as_str()), (5, epoch.as_str()));
    assert_eq!(
        h.offsets(),
        [5, 4, 3, 2, 1],
        "REVERSE: newest first from the top"
    );
    assert_eq!(h.data(), ["m5", "m4", "m3", "m2", "m1"]);
    assert_eq!(
        history(&mut con, "ch", &["REVERSE", "LIMIT", "2"]).offsets(),
        [5, 4]
    );
    assert_eq!(
        history(&mut con, "ch", &["SINCE", "4", "REVERSE"]).offsets(),
        [3, 2, 1],
        "SINCE x REVERSE: offset < x, newest first"
    );
    assert_eq!(
        history(&mut con, "ch", &["SINCE", "4", "REVERSE", "LIMIT", "2"]).offsets(),
        [3, 2]
    );
    assert!(
        history(&mut con, "ch", &["SINCE", "1", "REVERSE"])
            .entries
            .is_empty()
    );
    assert_eq!(
        history(&mut con, "ch", &["LIMIT", "1", "REVERSE", "SINCE", "3"]).offsets(),
        [2],
        "options in any order"
    );
}

#[test]
fn history_after_trimming_starts_at_the_oldest_kept() {
    let server = RedisServer::start();
    let mut con = server.connection();
    for i in 1..=5 {
        publish_hist(&mut con, "ch", &format!("m{i}"), 3, 300);
    }
    assert_eq!(
        history(&mut con, "ch", &["SINCE", "0"]).offsets(),
        [3, 4, 5]
    );
    assert_eq!(history(&mut con, "ch", &["SINCE", "3"]).offsets(), [4, 5]);
    assert_eq!(history(&mut con, "ch", &["REVERSE"]).offsets(), [5, 4, 3]);
}

#[test]
fn history_raw_returns_publication_protobuf() {
    let (_server, mut con, epoch) = five();
    let (top, e, entries) = history_raw(&mut con, "ch", &[]);
    assert_eq!((top, e.as_str()), (5, epoch.as_str()));
    let offsets: Vec<i64> = entries.iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets, [1, 2, 3, 4, 5]);
    let plain = history(&mut con, "ch", &[]);
    for ((offset, bytes), entry) in entries.iter().zip(&plain.entries) {
        let p = decode_publication(bytes);
        assert_eq!(p.data, format!("m{offset}").as_bytes());
        assert_eq!(p.time, entry.time_ms, "RAW and plain entries agree");
    }
    let (_, _, entries) = history_raw(&mut con, "ch", &["SINCE", "3", "REVERSE", "LIMIT", "1"]);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].0, 2);
    assert_eq!(decode_publication(&entries[0].1).data, b"m2".as_slice());
}

#[test]
fn history_of_unknown_channel_is_empty_and_creates_nothing() {
    let server = RedisServer::start();
    let mut con = server.connection();
    let h = history(&mut con, "nothing", &[]);
    assert_eq!(
        h,
        History {
            top: 0,
            epoch: String::new(),
            entries: vec![]
        }
    );
    let h = history(
        &mut con,
        "nothing",
        &["SINCE", "3", "LIMIT", "10", "REVERSE"],
    );
    assert_eq!((h.top, h.epoch.as_str(), h.entries.len()), (0, "", 0));
    let (top, epoch, entries) = history_raw(&mut con, "nothing", &[]);
    assert_eq!((top, epoch.as_str(), entries.len()), (0, "", 0));
    assert_eq!(
        as_int(&cmd(&mut con, &["DBSIZE"])),
        0,
        "GYRE.HISTORY never creates an epoch"
    );

    // A channel published to without history has no position either.
    publish(&mut con, "nohist", "x", &[]);
    let h = history(&mut con, "nohist", &[]);
    assert_eq!((h.top, h.epoch.as_str(), h.entries.len()), (0, "", 0));
}

#[test]
fn history_remove_keeps_offset_and_epoch() {
    let server = RedisServer::start();
    let mut con = server.connection();
    let mut epoch = String::new();
    for i in 1..=3 {
        epoch = publish_hist(&mut con, "ch", &format!("m{i}"), 10, 300).1;
    }
    assert_eq!(as_int(&cmd(&mut con, &["GYRE.HISTORY.REMOVE", "ch"])), 3);
    let h = history(&mut con, "ch", &[]);
    assert_eq!(
        (h.top, h.epoch.as_str()),
        (3, epoch.as_str()),
        "position kept"
    );
    assert!(
        h.entries.is_empty(),
        "publications dropped: {:?}",
        h.entries
    );
    assert_eq!(
        hgetall(&mut con, "gyre.stream.meta.ch").get("e"),
        Some(&epoch),
        "meta kept"
    );
    assert_eq!(
        as_int(&cmd(&mut con, &["GYRE.HISTORY.REMOVE", "ch"])),
        0,
        "nothing left to remove"
    );

    let (offset, e) = publish_hist(&mut con, "ch", "m4", 10, 300);
    assert_eq!(
        (offset, e.as_str()),
        (4, epoch.as_str()),
        "the offset continues"
    );
    assert_eq!(history(&mut con, "ch", &[]).offsets(), [4]);

    assert_eq!(
        as_int(&cmd(&mut con, &["GYRE.HISTORY.REMOVE", "unknown"])),
        0
    );
    assert!(!exists(&mut con, "gyre.stream.meta.unknown"));
}

#[test]
fn position_creates_the_epoch_the_next_publication_carries() {
    let server = RedisServer::start();
    let mut con = server.connection();
    let first = as_array(&cmd(
        &mut con,
        &["GYRE.POSITION", "chat:p", "META-TTL", "100"],
    ))
    .to_vec();
    let epoch = as_string(&first[1]);
    assert_eq!((as_int(&first[0]), epoch.len()), (0, 8));
    let ttl = ttl(&mut con, "gyre.stream.meta.chat:p");
    assert!((1..=100).contains(&ttl), "meta ttl {ttl}");
    let again = as_array(&cmd(&mut con, &["GYRE.POSITION", "chat:p"])).to_vec();
    assert_eq!(as_string(&again[1]), epoch, "an existing epoch is kept");
    let (offset, published_epoch) = publish_hist(&mut con, "chat:p", "{}", 10, 60);
    assert_eq!((offset, published_epoch), (1, epoch.clone()));
    let after = as_array(&cmd(&mut con, &["GYRE.POSITION", "chat:p"])).to_vec();
    assert_eq!((as_int(&after[0]), as_string(&after[1])), (1, epoch));
    assert!(expect_error(&mut con, &["GYRE.POSITION", "chat:p", "FOO"]).contains("syntax"));
    assert_ping(&mut con, "after GYRE.POSITION");
}
