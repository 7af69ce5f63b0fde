//! GYRE.PRESENCE.ADD / REM / PRESENCE / STATS, expiry and JOINLEAVE.

use std::time::Duration;

use gyre_tests::*;

fn add(con: &mut Connection, channel: &str, client: &str, user: &str, opts: &[&str]) -> i64 {
    let mut args = vec!["GYRE.PRESENCE.ADD", channel, client, user];
    args.extend_from_slice(opts);
    as_int(&cmd(con, &args))
}

fn rem(con: &mut Connection, channel: &str, client: &str, opts: &[&str]) -> i64 {
    let mut args = vec!["GYRE.PRESENCE.REM", channel, client];
    args.extend_from_slice(opts);
    as_int(&cmd(con, &args))
}

fn stats(con: &mut Connection, channel: &str) -> (i64, i64) {
    let reply = cmd(con, &["GYRE.PRESENCE.STATS", channel]);
    let items = as_array(&reply);
    assert_eq!(items.len(), 2, "STATS reply {reply:?}");
    (as_int(&items[0]), as_int(&items[1]))
}

/// `GYRE.PRESENCE <channel>` sorted by client id.
fn presence(con: &mut Connection, channel: &str) -> Vec<Vec<String>> {
    let reply = cmd(con, &["GYRE.PRESENCE", channel]);
    let mut out: Vec<Vec<String>> = as_array(&reply)
        .iter()
        .map(|e| {
            let fields = as_strings(e);
            assert_eq!(fields.len(), 4, "presence entry {fields:?}");
            fields
        })
        .collect();
    out.sort();
    out
}

fn clients(con: &mut Connection, channel: &str) -> Vec<String> {
    presence(con, channel)
        .into_iter()
        .map(|e| e[0].clone())
        .collect()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn add_refresh_remove_and_stats_with_unique_users() {
    let server = RedisServer::start();
    let mut con = server.connection();
    assert_eq!(stats(&mut con, "room"), (0, 0), "empty channel");
    assert!(presence(&mut con, "room").is_empty());

    assert_eq!(add(&mut con, "room", "c1", "u1", &[]), 1, "new client");
    assert_eq!(add(&mut con, "room", "c1", "u1", &[]), 0, "refresh");
    assert_eq!(
        add(&mut con, "room", "c2", "u1", &[]),
        1,
        "same user, second client"
    );
    assert_eq!(add(&mut con, "room", "c3", "u2", &[]), 1);
    assert_eq!(stats(&mut con, "room"), (3, 2), "3 clients, 2 unique users");
    assert_eq!(clients(&mut con, "room"), ["c1", "c2", "c3"]);

    assert_eq!(stats(&mut con, "other"), (0, 0), "channels are separate");

    assert_eq!(rem(&mut con, "room", "c1", &[]), 1, "live entry removed");
    assert_eq!(rem(&mut con, "room", "c1", &[]), 0, "already gone");
    assert_eq!(rem(&mut con, "room", "nobody", &[]), 0);
    assert_eq!(stats(&mut con, "room"), (2, 2));
    assert_eq!(rem(&mut con, "room", "c2", &[]), 1);
    assert_eq!(stats(&mut con, "room"), (1, 1));
    assert_eq!(clients(&mut con, "room"), ["c3"]);
}

#[test]
fn presence_entries_and_raw() {
    let server = RedisServer::start();
    let mut con = server.connection();
    add(
        &mut con,
        "room",
        "c1",
        "u1",
        &[
            "INFO",
            r#"{"name":"Ann"}"#,
            "CHANINFO",
            r#"{"role":"admin"}"#,
        ],
    );
    add(&mut con, "room", "c2", "u2", &[]);
    assert_eq!(
        presence(&mut con, "room"),
        [
            strings(&["c1", "u1", r#"{"name":"Ann"}"#, r#"{"role":"admin"}"#]),
            strings(&["c2", "u2", "", ""]),
        ],
        "[client, user, conn_info, chan_info]"
    );

    let reply = cmd(&mut con, &["GYRE.PRESENCE", "room", "RAW"]);
    let flat = as_array(&reply);
    assert_eq!(
        flat.len(),
        4,
        "RAW: flat [client, ClientInfo, …]: {reply:?}"
    );
    let mut seen = Vec::new();
    for pair in flat.chunks(2) {
        let client = as_string(&pair[0]);
        let info = decode_client_info(&as_bytes(&pair[1]));
        assert_eq!(info.client, client);
        if client == "c1" {
            assert_eq!(info.user, "u1");
            assert_eq!(info.conn_info, br#"{"name":"Ann"}"#.as_slice());
            assert_eq!(info.chan_info, br#"{"role":"admin"}"#.as_slice());
        } else {
            assert_eq!(info.user, "u2");
        }
        seen.push(client);
    }
    seen.sort();
    assert_eq!(seen, ["c1", "c2"]);
}

#[test]
fn presence_key_layout_and_ttl() {
    let server = RedisServer::start();
    let mut con = server.connection();
    let now = now_ms() / 1000;
    add(&mut con, "room", "c1", "u1", &[]);
    add(&mut con, "room", "c2", "u2", &["TTL", "30"]);

    let data = cmd(&mut con, &["HGETALL", "gyre.presence.data.room"]);
    let flat = as_array(&data);
    assert_eq!(flat.len(), 4, "hash client id → ClientInfo: {data:?}");
    for pair in flat.chunks(2) {
        let client = as_string(&pair[0]);
        assert_eq!(decode_client_info(&as_bytes(&pair[1])).client, client);
    }

    let score = |con: &mut Connection, client: &str| -> f64 {
        let v = cmd(con, &["ZSCORE", "gyre.presence.expire.room", client]);
        as_string(&v).parse().expect("numeric score")
    };
    let s1 = score(&mut con, "c1") as i64 - now;
    assert!(
        (58..=62).contains(&s1),
        "default gyre.presence-ttl 60: score - now = {s1}"
    );
    let s2 = score(&mut con, "c2") as i64 - now;
    assert!((28..=32).contains(&s2), "TTL 30: score - now = {s2}");
}

#[test]
fn expired_entries_are_not_returned_or_counted() {
    let server = RedisServer::start();
    let mut con = server.connection();
    assert_eq!(add(&mut con, "room", "short", "u1", &["TTL", "1"]), 1);
    // TTL 2 so that a second boundary between the two ADDs cannot expire it before the refresh.
    assert_eq!(add(&mut con, "room", "refreshed", "u2", &["TTL", "2"]), 1);
    assert_eq!(
        add(&mut con, "room", "refreshed", "u2", &["TTL", "60"]),
        0,
        "refresh with a longer TTL"
    );
    assert_eq!(add(&mut con, "room", "long", "u3", &[]), 1);

    std::thread::sleep(Duration::from_millis(1100));
    wait_until(Duration::from_secs(3), "short entry expired", || {
        stats(&mut con, "room") == (2, 2)
    });
    assert_eq!(clients(&mut con, "room"), ["long", "refreshed"]);
    let raw = cmd(&mut con, &["GYRE.PRESENCE", "room", "RAW"]);
    assert_eq!(as_array(&raw).len(), 4, "RAW skips expired entries too");

    assert_eq!(
        rem(&mut con, "room", "short", &[]),
        0,
        "no live entry to remove"
    );
    assert_eq!(
        add(&mut con, "room", "short", "u1", &[]),
        1,
        "expired → not present"
    );
    assert_eq!(stats(&mut con, "room"), (3, 3));
}

#[test]
fn add_removes_expired_entries_of_the_channel() {
    let server = RedisServer::start();
    let mut con = server.connection();
    add(&mut con, "room", "gone", "u1", &["TTL", "1"]);
    std::thread::sleep(Duration::from_millis(1100));
    wait_until(Duration::from_secs(3), "entry expired", || {
        stats(&mut con, "room") == (0, 0)
    });
    add(&mut con, "room", "fresh", "u2", &[]);
    assert_eq!(
        as_int(&cmd(
            &mut con,
            &["HEXISTS", "gyre.presence.data.room", "gone"]
        )),
        0,
        "expired entry removed from the data hash"
    );
    assert!(
        matches!(
            cmd(&mut con, &["ZSCORE", "gyre.presence.expire.room", "gone"]),
            Value::Nil
        ),
        "expired entry removed from the expiry zset"
    );
}

#[test]
fn joinleave_publishes_exactly_once() {
    let server = RedisServer::start();
    let mut con = server.connection();
    let mut sub = server.subscribe("gyre.client.room");

    let opts = ["INFO", "ci", "CHANINFO", "chi", "JOINLEAVE"];
    assert_eq!(add(&mut con, "room", "c1", "u1", &opts), 1);
    assert_eq!(add(&mut con, "room", "c1", "u1", &opts), 0);
    let events = sub.events_until_barrier(&mut con);
    assert_eq!(
        events,
        [ChannelEvent::Join(ClientInfo {
            user: "u1".into(),
            client: "c1".into(),
            conn_info: "ci".into(),
            chan_info: "chi".into(),
        })],
        "one join for two ADDs"
    );

    assert_eq!(rem(&mut con, "room", "c1", &["JOINLEAVE"]), 1);
    assert_eq!(rem(&mut con, "room", "c1", &["JOINLEAVE"]), 0);
    let events = sub.events_until_barrier(&mut con);
    assert_eq!(events.len(), 1, "one leave for two REMs: {events:?}");
    match &events[0] {
        ChannelEvent::Leave(info) => {
            assert_eq!((info.client.as_str(), info.user.as_str()), ("c1", "u1"));
        }
        other => panic!("expected a leave, got {other:?}"),
    }

    // Without JOINLEAVE nothing is published.
    add(&mut con, "room", "c2", "u2", &[]);
    rem(&mut con, "room", "c2", &[]);
    let events = sub.events_until_barrier(&mut con);
    assert!(events.is_empty(), "no JOINLEAVE, no messages: {events:?}");
}

#[test]
fn join_again_after_expiry() {
    let server = RedisServer::start();
    let mut con = server.connection();
    let mut sub = server.subscribe("gyre.client.room");

    assert_eq!(
        add(&mut con, "room", "c1", "u1", &["TTL", "1", "JOINLEAVE"]),
        1
    );
    std::thread::sleep(Duration::from_millis(1100));
    wait_until(Duration::from_secs(3), "entry expired", || {
        stats(&mut con, "room") == (0, 0)
    });
    assert_eq!(
        rem(&mut con, "room", "c1", &["JOINLEAVE"]),
        0,
        "nothing live"
    );
    assert_eq!(add(&mut con, "room", "c1", "u1", &["JOINLEAVE"]), 1);

    let events = sub.events_until_barrier(&mut con);
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| match e {
            ChannelEvent::Join(i) if i.client == "c1" && i.user == "u1" => "join",
            ChannelEvent::Leave(_) => "leave",
            other => panic!("unexpected event {other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        ["join", "join"],
        "join, no leave for an expired entry, join again"
    );
}

#[test]
fn presence_keywords_are_case_insensitive() {
    let server = RedisServer::start();
    let mut con = server.connection();
    let mut sub = server.subscribe("gyre.client.room");
    let now = now_ms() / 1000;
    assert_eq!(
        add(
            &mut con,
            "room",
            "c1",
            "u1",
            &["info", "ci", "chaninfo", "chi", "ttl", "30", "joinleave"]
        ),
        1
    );
    assert_eq!(
        presence(&mut con, "room"),
        [strings(&["c1", "u1", "ci", "chi"])]
    );
    let score: f64 = as_string(&cmd(
        &mut con,
        &["ZSCORE", "gyre.presence.expire.room", "c1"],
    ))
    .parse()
    .unwrap();
    assert!((28..=32).contains(&(score as i64 - now)), "ttl 30");
    let raw = cmd(&mut con, &["GYRE.PRESENCE", "room", "raw"]);
    assert_eq!(as_array(&raw).len(), 2);
    assert_eq!(rem(&mut con, "room", "c1", &["joinleave"]), 1);
    let events = sub.events_until_barrier(&mut con);
    assert_eq!(events.len(), 2, "join and leave: {events:?}");
    assert!(matches!(&events[0], ChannelEvent::Join(_)));
    assert!(matches!(&events[1], ChannelEvent::Leave(_)));
}
