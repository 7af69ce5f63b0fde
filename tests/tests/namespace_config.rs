//! GYRE.NAMESPACE and the module configuration (loadmodule arguments, CONFIG SET/GET).

use gyre_tests::*;

fn config_get(con: &mut Connection, name: &str) -> String {
    let reply = cmd(con, &["CONFIG", "GET", name]);
    let items = match &reply {
        Value::Map(pairs) => {
            assert_eq!(pairs.len(), 1, "CONFIG GET {name}: {reply:?}");
            return as_string(&pairs[0].1);
        }
        other => as_array(other),
    };
    assert_eq!(items.len(), 2, "CONFIG GET {name}: {reply:?}");
    assert_eq!(as_string(&items[0]), name);
    as_string(&items[1])
}

/// `GYRE.NAMESPACE GET` → `[history_size, n, history_ttl, n, history_meta_ttl, n]` as pairs.
fn namespace_get(con: &mut Connection, name: &str) -> Option<Vec<(String, i64)>> {
    let reply = cmd(con, &["GYRE.NAMESPACE", "GET", name]);
    if reply == Value::Nil {
        return None;
    }
    let items = as_array(&reply);
    assert_eq!(items.len(), 6, "GYRE.NAMESPACE GET {name}: {reply:?}");
    Some(
        items
            .chunks(2)
            .map(|kv| (as_string(&kv[0]), as_int(&kv[1])))
            .collect(),
    )
}

fn stream_ids(con: &mut Connection, key: &str) -> Vec<String> {
    xrange(con, key).into_iter().map(|(id, _)| id).collect()
}

#[test]
fn namespace_set_get_list_del() {
    let server = RedisServer::start();
    let mut con = server.connection();
    assert!(as_array(&cmd(&mut con, &["GYRE.NAMESPACE", "LIST"])).is_empty());
    assert_eq!(
        namespace_get(&mut con, "chat"),
        None,
        "unknown namespace → nil"
    );

    cmd(
        &mut con,
        &["GYRE.NAMESPACE", "SET", "chat", "HISTORY", "5", "60"],
    );
    cmd(
        &mut con,
        &[
            "GYRE.NAMESPACE",
            "SET",
            "news",
            "HISTORY",
            "10",
            "300",
            "META-TTL",
            "3600",
        ],
    );
    let chat = namespace_get(&mut con, "chat").expect("chat registered");
    assert_eq!(chat[0], ("history_size".to_string(), 5));
    assert_eq!(chat[1], ("history_ttl".to_string(), 60));
    assert_eq!(chat[2].0, "history_meta_ttl");
    assert_eq!(
        namespace_get(&mut con, "news"),
        Some(vec![
            ("history_size".to_string(), 10),
            ("history_ttl".to_string(), 300),
            ("history_meta_ttl".to_string(), 3600),
        ])
    );

    let mut names = as_strings(&cmd(&mut con, &["GYRE.NAMESPACE", "LIST"]));
    names.sort();
    assert_eq!(names, ["chat", "news"]);

    // Stored in P.namespaces as "<size> <ttl> <meta-ttl>".
    let stored = hgetall(&mut con, "gyre.namespaces");
    assert_eq!(stored.get("news").map(String::as_str), Some("10 300 3600"));
    assert!(
        stored.get("chat").is_some_and(|v| v.starts_with("5 60 ")),
        "gyre.namespaces: {stored:?}"
    );

    // SET again overwrites.
    cmd(
        &mut con,
        &[
            "GYRE.NAMESPACE",
            "SET",
            "chat",
            "HISTORY",
            "7",
            "70",
            "META-TTL",
            "700",
        ],
    );
    assert_eq!(
        namespace_get(&mut con, "chat").unwrap(),
        [
            ("history_size".to_string(), 7),
            ("history_ttl".to_string(), 70),
            ("history_meta_ttl".to_string(), 700),
        ]
    );

    assert_eq!(
        as_int(&cmd(&mut con, &["GYRE.NAMESPACE", "DEL", "chat"])),
        1
    );
    assert_eq!(
        as_int(&cmd(&mut con, &["GYRE.NAMESPACE", "DEL", "chat"])),
        0
    );
    assert_eq!(namespace_get(&mut con, "chat"), None);
    assert_eq!(
        as_strings(&cmd(&mut con, &["GYRE.NAMESPACE", "LIST"])),
        ["news"]
    );
}

#[test]
fn namespace_subcommands_are_case_insensitive() {
    let server = RedisServer::start();
    let mut con = server.connection();
    cmd(
        &mut con,
        &[
            "gyre.namespace",
            "set",
            "chat",
            "history",
            "5",
            "60",
            "meta-ttl",
            "90",
        ],
    );
    assert_eq!(
        namespace_get(&mut con, "chat"),
        Some(vec![
            ("history_size".to_string(), 5),
            ("history_ttl".to_string(), 60),
            ("history_meta_ttl".to_string(), 90),
        ])
    );
    let reply = cmd(&mut con, &["GYRE.NAMESPACE", "get", "chat"]);
    assert_eq!(as_array(&reply).len(), 6);
    assert_eq!(
        as_strings(&cmd(&mut con, &["GYRE.NAMESPACE", "list"])),
        ["chat"]
    );
    assert_eq!(
        as_int(&cmd(&mut con, &["GYRE.NAMESPACE", "del", "chat"])),
        1
    );
}

#[test]
fn namespace_history_applies_to_its_channels() {
    let server = RedisServer::start();
    let mut con = server.connection();
    cmd(
        &mut con,
        &[
            "GYRE.NAMESPACE",
            "SET",
            "chat",
            "HISTORY",
            "5",
            "60",
            "META-TTL",
            "120",
        ],
    );

    let mut epoch = String::new();
    for i in 1..=7 {
        let (offset, e) = publish(&mut con, "chat:room", &format!("m{i}"), &[]);
        assert_eq!(offset, i, "namespace history gives offsets");
        epoch = e;
    }
    assert_eq!(epoch.len(), 8);
    assert_eq!(
        stream_ids(&mut con, "gyre.stream.chat:room"),
        ["3-0", "4-0", "5-0", "6-0", "7-0"],
        "trimmed at the namespace size 5"
    );
    let t = ttl(&mut con, "gyre.stream.chat:room");
    assert!((50..=60).contains(&t), "namespace history ttl 60, got {t}");
    let t = ttl(&mut con, "gyre.stream.meta.chat:room");
    assert!((110..=120).contains(&t), "namespace META-TTL 120, got {t}");

    // The namespace is the part before the first ':'.
    assert_eq!(publish(&mut con, "chat:a:b", "x", &[]).0, 1);
    // Explicit HISTORY wins over the namespace.
    assert_eq!(
        publish(&mut con, "chat:room", "x", &["HISTORY", "0", "0"]),
        (0, String::new())
    );
    // Other namespaces and names without ':' fall back to gyre.history-size (0).
    assert_eq!(publish(&mut con, "news:x", "x", &[]), (0, String::new()));
    assert_eq!(publish(&mut con, "room", "x", &[]), (0, String::new()));
    assert_eq!(publish(&mut con, "chatroom", "x", &[]), (0, String::new()));

    // Deleting the namespace restores the defaults.
    cmd(&mut con, &["GYRE.NAMESPACE", "DEL", "chat"]);
    assert_eq!(publish(&mut con, "chat:room", "x", &[]), (0, String::new()));
}

#[test]
fn empty_namespace_covers_names_without_colon() {
    let server = RedisServer::start();
    let mut con = server.connection();
    cmd(
        &mut con,
        &["GYRE.NAMESPACE", "SET", "", "HISTORY", "3", "60"],
    );
    for i in 1..=4 {
        assert_eq!(publish(&mut con, "room", &format!("m{i}"), &[]).0, i);
    }
    assert_eq!(
        stream_ids(&mut con, "gyre.stream.room"),
        ["2-0", "3-0", "4-0"]
    );
    assert_eq!(
        publish(&mut con, "chat:room", "x", &[]),
        (0, String::new()),
        "chat:room is in namespace chat, not \"\""
    );
    let names = as_strings(&cmd(&mut con, &["GYRE.NAMESPACE", "LIST"]));
    assert_eq!(names, [""]);
}

#[test]
fn config_defaults() {
    let server = RedisServer::start();
    let mut con = server.connection();
    for (name, value) in [
        ("gyre.prefix", "gyre"),
        ("gyre.history-size", "0"),
        ("gyre.history-ttl", "0"),
        ("gyre.history-meta-ttl", "2592000"),
        ("gyre.presence-ttl", "60"),
        ("gyre.idempotency-ttl", "300"),
        ("gyre.sharded-pubsub", "no"),
    ] {
        assert_eq!(config_get(&mut con, name), value, "default of {name}");
    }
}

#[test]
fn config_from_loadmodule_arguments() {
    let server = RedisServer::with_module_args(&[
        "history-size",
        "3",
        "history-ttl",
        "60",
        "history-meta-ttl",
        "100",
        "presence-ttl",
        "30",
        "idempotency-ttl",
        "20",
    ]);
    let mut con = server.connection();
    assert_eq!(config_get(&mut con, "gyre.history-size"), "3");
    assert_eq!(config_get(&mut con, "gyre.history-ttl"), "60");
    assert_eq!(config_get(&mut con, "gyre.history-meta-ttl"), "100");
    assert_eq!(config_get(&mut con, "gyre.presence-ttl"), "30");
    assert_eq!(config_get(&mut con, "gyre.idempotency-ttl"), "20");

    for i in 1..=4 {
        let (offset, _) = publish(
            &mut con,
            "room",
            &format!("m{i}"),
            &["IDEMPOTENCY", &format!("k{i}")],
        );
        assert_eq!(offset, i, "gyre.history-size gives history by default");
    }
    assert_eq!(
        stream_ids(&mut con, "gyre.stream.room"),
        ["2-0", "3-0", "4-0"]
    );
    let t = ttl(&mut con, "gyre.stream.room");
    assert!((50..=60).contains(&t), "gyre.history-ttl 60, got {t}");
    let t = ttl(&mut con, "gyre.stream.meta.room");
    assert!(
        (90..=100).contains(&t),
        "gyre.history-meta-ttl 100, got {t}"
    );
    let t = ttl(&mut con, "gyre.result.room.k1");
    assert!((10..=20).contains(&t), "gyre.idempotency-ttl 20, got {t}");

    let now = now_ms() / 1000;
    cmd(&mut con, &["GYRE.PRESENCE.ADD", "room", "c1", "u1"]);
    let score: f64 = as_string(&cmd(
        &mut con,
        &["ZSCORE", "gyre.presence.expire.room", "c1"],
    ))
    .parse()
    .unwrap();
    let delta = score as i64 - now;
    assert!((28..=32).contains(&delta), "gyre.presence-ttl 30: {delta}");

    // A registered namespace still wins over the defaults.
    cmd(
        &mut con,
        &["GYRE.NAMESPACE", "SET", "", "HISTORY", "1", "60"],
    );
    publish(&mut con, "room", "m5", &[]);
    assert_eq!(stream_ids(&mut con, "gyre.stream.room"), ["5-0"]);
}

#[test]
fn config_set_at_run_time() {
    let server = RedisServer::start();
    let mut con = server.connection();
    assert_eq!(publish(&mut con, "room", "a", &[]), (0, String::new()));
    cmd(&mut con, &["CONFIG", "SET", "gyre.history-size", "2"]);
    cmd(&mut con, &["CONFIG", "SET", "gyre.history-ttl", "60"]);
    cmd(&mut con, &["CONFIG", "SET", "gyre.history-meta-ttl", "0"]);
    assert_eq!(config_get(&mut con, "gyre.history-size"), "2");
    assert_eq!(config_get(&mut con, "gyre.history-ttl"), "60");
    for i in 1..=3 {
        assert_eq!(publish(&mut con, "room", "x", &[]).0, i);
    }
    assert_eq!(stream_ids(&mut con, "gyre.stream.room"), ["2-0", "3-0"]);
    assert_eq!(
        ttl(&mut con, "gyre.stream.meta.room"),
        -1,
        "history-meta-ttl 0 = no expiry"
    );

    cmd(&mut con, &["CONFIG", "SET", "gyre.presence-ttl", "10"]);
    cmd(&mut con, &["CONFIG", "SET", "gyre.idempotency-ttl", "5"]);
    assert_eq!(config_get(&mut con, "gyre.presence-ttl"), "10");
    publish(&mut con, "room", "x", &["IDEMPOTENCY", "k"]);
    let t = ttl(&mut con, "gyre.result.room.k");
    assert!((1..=5).contains(&t), "idempotency-ttl 5, got {t}");
}

#[test]
fn bad_config_values_are_rejected() {
    let server = RedisServer::start();
    let mut con = server.connection();
    let long = "p".repeat(65);
    for (name, value) in [
        ("gyre.history-size", "-1"),
        ("gyre.history-size", "abc"),
        ("gyre.history-ttl", "-5"),
        ("gyre.history-meta-ttl", "x"),
        ("gyre.presence-ttl", "1.5"),
        ("gyre.idempotency-ttl", "-1"),
        ("gyre.prefix", "bad prefix"),
        ("gyre.prefix", "a/b"),
        ("gyre.prefix", "a{b}"),
        ("gyre.prefix", long.as_str()),
        ("gyre.sharded-pubsub", "maybe"),
    ] {
        expect_error(&mut con, &["CONFIG", "SET", name, value]);
        assert_ping(&mut con, &format!("CONFIG SET {name} {value}"));
    }
    assert_eq!(config_get(&mut con, "gyre.history-size"), "0", "unchanged");
    assert_eq!(config_get(&mut con, "gyre.prefix"), "gyre", "unchanged");
    assert_eq!(
        config_get(&mut con, "gyre.sharded-pubsub"),
        "no",
        "unchanged"
    );

    // The limits themselves are accepted.
    let max = "p".repeat(64);
    cmd(&mut con, &["CONFIG", "SET", "gyre.prefix", &max]);
    assert_eq!(config_get(&mut con, "gyre.prefix"), max);
    cmd(&mut con, &["CONFIG", "SET", "gyre.prefix", "My_app-1.x:y"]);
    assert_eq!(config_get(&mut con, "gyre.prefix"), "My_app-1.x:y");
}

#[test]
fn prefix_change_moves_keys_and_channels() {
    let server = RedisServer::start();
    let mut con = server.connection();
    publish_hist(&mut con, "room", "old", 10, 60);
    cmd(&mut con, &["CONFIG", "SET", "gyre.prefix", "app"]);
    assert_eq!(config_get(&mut con, "gyre.prefix"), "app");
    let mut sub = server.subscribe("app.client.room");
    let mut old_sub = server.subscribe("gyre.client.room");

    let (offset, epoch) = publish_hist(&mut con, "room", "new", 10, 60);
    assert_eq!(offset, 1, "a new prefix is a new key space");
    assert_eq!(stream_ids(&mut con, "app.stream.room"), ["1-0"]);
    assert_eq!(
        hgetall(&mut con, "app.stream.meta.room").get("e"),
        Some(&epoch)
    );
    assert_eq!(
        stream_ids(&mut con, "gyre.stream.room"),
        ["1-0"],
        "the old prefix's keys are untouched"
    );
    assert_eq!(
        history(&mut con, "room", &[]).data(),
        ["new"],
        "reads use the new prefix"
    );

    let events = sub.events_until_barrier(&mut con);
    assert_eq!(events.len(), 1, "published on app.client.room: {events:?}");
    assert!(
        old_sub.payloads_until_barrier(&mut con).is_empty(),
        "nothing on the old channel"
    );

    cmd(&mut con, &["GYRE.PRESENCE.ADD", "room", "c1", "u1"]);
    assert!(exists(&mut con, "app.presence.data.room"));
    assert!(exists(&mut con, "app.presence.expire.room"));
    cmd(
        &mut con,
        &["GYRE.NAMESPACE", "SET", "chat", "HISTORY", "5", "60"],
    );
    assert!(exists(&mut con, "app.namespaces"));
    assert!(!exists(&mut con, "gyre.namespaces"));
    publish(
        &mut con,
        "x",
        "d",
        &["HISTORY", "5", "60", "IDEMPOTENCY", "k"],
    );
    assert!(exists(&mut con, "app.result.x.k"));
}

#[test]
fn prefix_from_loadmodule_argument() {
    let server = RedisServer::with_module_args(&["prefix", "myapp"]);
    let mut con = server.connection();
    assert_eq!(config_get(&mut con, "gyre.prefix"), "myapp");
    let mut sub = server.subscribe("myapp.client.room");
    publish_hist(&mut con, "room", "x", 10, 60);
    assert_eq!(stream_ids(&mut con, "myapp.stream.room"), ["1-0"]);
    assert!(exists(&mut con, "myapp.stream.meta.room"));
    assert!(!exists(&mut con, "gyre.stream.room"));
    assert_eq!(sub.events_until_barrier(&mut con).len(), 1);
}

#[test]
fn sharded_pubsub_publishes_with_spublish() {
    let server = RedisServer::with_module_args(&["sharded-pubsub", "yes"]);
    let mut con = server.connection();
    assert_eq!(config_get(&mut con, "gyre.sharded-pubsub"), "yes");
    let mut shard_sub = server.ssubscribe("gyre.client.room");
    let mut plain_sub = server.subscribe("gyre.client.room");

    let (offset, epoch) = publish_hist(&mut con, "room", "x", 10, 60);
    cmd(
        &mut con,
        &["GYRE.PRESENCE.ADD", "room", "c1", "u1", "JOINLEAVE"],
    );
    let events = shard_sub.events_until_barrier(&mut con);
    assert_eq!(
        events.len(),
        2,
        "SSUBSCRIBE receives publication and join: {events:?}"
    );
    match &events[0] {
        ChannelEvent::Publication {
            publication,
            epoch: e,
        } => {
            assert_eq!(
                (publication.offset, e.as_str()),
                (offset as u64, epoch.as_str())
            );
        }
        other => panic!("expected a publication, got {other:?}"),
    }
    assert!(matches!(&events[1], ChannelEvent::Join(i) if i.client == "c1"));
    assert!(
        plain_sub.payloads_until_barrier(&mut con).is_empty(),
        "nothing through plain PUBLISH"
    );

    cmd(&mut con, &["CONFIG", "SET", "gyre.sharded-pubsub", "no"]);
    publish(&mut con, "room", "y", &[]);
    assert_eq!(
        plain_sub.events_until_barrier(&mut con).len(),
        1,
        "back to PUBLISH"
    );
}
