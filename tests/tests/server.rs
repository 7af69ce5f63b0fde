//! Integration with the server: COMMAND GETKEYS, INFO gyre counters, module loading.

use std::collections::BTreeMap;

use gyre_tests::*;

fn counters(con: &mut Connection) -> BTreeMap<String, i64> {
    info_section(con, "gyre")
        .into_iter()
        .filter_map(|(k, v)| v.parse::<i64>().ok().map(|n| (k, n)))
        .collect()
}

/// The increase of every counter whose name contains `keyword` (case-insensitive).
fn increase(
    before: &BTreeMap<String, i64>,
    after: &BTreeMap<String, i64>,
    keyword: &str,
    exclude: &[&str],
) -> Vec<(String, i64)> {
    after
        .iter()
        .filter(|(k, _)| {
            let k = k.to_ascii_lowercase();
            k.contains(keyword) && !exclude.iter().any(|x| k.contains(x))
        })
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .collect()
}

fn assert_increased(
    before: &BTreeMap<String, i64>,
    after: &BTreeMap<String, i64>,
    keyword: &str,
    exclude: &[&str],
    by: i64,
) {
    let inc = increase(before, after, keyword, exclude);
    assert!(
        inc.iter().any(|(_, d)| *d == by),
        "a counter named *{keyword}* should have increased by {by}: {inc:?}\nall counters: {after:?}"
    );
}

#[test]
fn module_is_loaded_and_commands_are_registered() {
    let server = RedisServer::start();
    let mut con = server.connection();
    let modules = format!("{:?}", cmd(&mut con, &["MODULE", "LIST"]));
    assert!(modules.contains("gyre"), "MODULE LIST: {modules}");
    for name in [
        "gyre.publish",
        "gyre.history",
        "gyre.history.remove",
        "gyre.presence.add",
        "gyre.presence.rem",
        "gyre.presence",
        "gyre.presence.stats",
        "gyre.namespace",
    ] {
        let info = cmd(&mut con, &["COMMAND", "INFO", name]);
        let items = as_array(&info);
        assert_eq!(items.len(), 1);
        assert!(items[0] != Value::Nil, "{name} is not registered");
    }
}

#[test]
fn command_getkeys_returns_the_channel() {
    let server = RedisServer::start();
    let mut con = server.connection();
    for args in [
        &[
            "GYRE.PUBLISH",
            "chat:room",
            "data",
            "HISTORY",
            "10",
            "60",
            "IDEMPOTENCY",
            "k",
        ][..],
        &["GYRE.HISTORY", "chat:room", "SINCE", "3", "LIMIT", "5"],
        &["GYRE.HISTORY.REMOVE", "chat:room"],
        &["GYRE.PRESENCE.ADD", "chat:room", "c1", "u1", "TTL", "5"],
        &["GYRE.PRESENCE.REM", "chat:room", "c1"],
        &["GYRE.PRESENCE", "chat:room"],
        &["GYRE.PRESENCE.STATS", "chat:room"],
    ] {
        let mut full = vec!["COMMAND", "GETKEYS"];
        full.extend_from_slice(args);
        assert_eq!(
            as_strings(&cmd(&mut con, &full)),
            ["chat:room"],
            "COMMAND GETKEYS {args:?}"
        );
    }
}

#[test]
fn info_gyre_counters_increase() {
    let server = RedisServer::start();
    let mut con = server.connection();
    let c0 = counters(&mut con);
    assert!(!c0.is_empty(), "INFO gyre shows counters");

    publish_hist(&mut con, "ch", "a", 10, 60);
    publish(
        &mut con,
        "ch",
        "b",
        &["HISTORY", "10", "60", "IDEMPOTENCY", "k"],
    );
    publish(&mut con, "ch", "c", &[]);
    let c1 = counters(&mut con);
    assert_increased(&c0, &c1, "publ", &["dedup", "dup"], 3);

    publish(
        &mut con,
        "ch",
        "b",
        &["HISTORY", "10", "60", "IDEMPOTENCY", "k"],
    );
    let c2 = counters(&mut con);
    assert_increased(&c1, &c2, "dup", &[], 1);

    history(&mut con, "ch", &[]);
    history(&mut con, "ch", &["LIMIT", "0"]);
    let c3 = counters(&mut con);
    assert_increased(&c2, &c3, "history", &[], 2);

    cmd(
        &mut con,
        &["GYRE.PRESENCE.ADD", "ch", "c1", "u1", "JOINLEAVE"],
    );
    let c4 = counters(&mut con);
    assert_increased(&c3, &c4, "presence", &[], 1);
    assert_increased(&c3, &c4, "join", &[], 1);

    cmd(&mut con, &["GYRE.PRESENCE.REM", "ch", "c1", "JOINLEAVE"]);
    let c5 = counters(&mut con);
    assert_increased(&c4, &c5, "leave", &[], 1);

    expect_error(&mut con, &["GYRE.PUBLISH", "ch", "d", "BOGUS"]);
    let c6 = counters(&mut con);
    assert_increased(&c5, &c6, "error", &[], 1);
    let panics = increase(&c5, &c6, "panic", &[]);
    assert!(!panics.is_empty(), "a caught-panics counter exists: {c6:?}");
    assert!(panics.iter().all(|(_, d)| *d == 0), "no panics: {panics:?}");
}

/// `INFO gyre` tells a proxy that cannot run `CONFIG GET` (a renamed command) how the module
/// publishes (`SPUBLISH` or `PUBLISH`) and whether it names keys in cluster layout.
#[test]
fn info_gyre_shows_the_pubsub_mode_and_the_key_layout() {
    let config = |con: &mut Connection| {
        let info = info_section(con, "gyre_config");
        (
            info.get("gyre_sharded_pubsub").cloned(),
            info.get("gyre_cluster_layout").cloned(),
        )
    };
    let plain = RedisServer::start();
    let mut con = plain.connection();
    assert_eq!(config(&mut con), (Some("0".into()), Some("0".into())));
    cmd(&mut con, &["CONFIG", "SET", "gyre.sharded-pubsub", "yes"]);
    assert_eq!(
        config(&mut con).0.as_deref(),
        Some("1"),
        "follows CONFIG SET"
    );
    assert!(
        info_section(&mut con, "gyre").contains_key("gyre_sharded_pubsub"),
        "INFO gyre shows it too"
    );

    let sharded = RedisServer::with_module_args(&["sharded-pubsub", "yes"]);
    assert_eq!(
        config(&mut sharded.connection()),
        (Some("1".into()), Some("0".into()))
    );
}

/// Without cluster mode there are no slots: a command that misses keys never checks one.
#[test]
fn standalone_commands_never_check_a_slot() {
    let server = RedisServer::start();
    let mut con = server.connection();
    publish_hist(&mut con, "new", "a", 10, 60);
    publish(
        &mut con,
        "new",
        "b",
        &["HISTORY", "10", "60", "IDEMPOTENCY", "k"],
    );
    history(&mut con, "missing", &[]);
    cmd(&mut con, &["GYRE.PRESENCE.ADD", "new", "c1", "u1"]);
    cmd(&mut con, &["GYRE.POSITION", "other"]);
    assert_eq!(counters(&mut con)["gyre_slot_checks"], 0);
}
