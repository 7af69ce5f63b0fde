//! Bad input: every command answers with an error reply, writes nothing and the server stays up.

use gyre_tests::*;

/// Runs every command, asserting an error reply (containing `phrase` when given) and a live
/// server after each.
fn assert_all_rejected(server: &mut RedisServer, cases: &[(&[&str], Option<&str>)]) {
    let mut con = server.connection();
    let mut failures = Vec::new();
    for (args, phrase) in cases {
        match try_cmd(&mut con, args) {
            Ok(v) => failures.push(format!("{args:?} succeeded with {v:?}")),
            Err(e) if e.code().is_none() => {
                panic!("{args:?}: no error reply but {e} (server died?)")
            }
            Err(e) => {
                let text = error_text(&e);
                if !text.starts_with("ERR") {
                    failures.push(format!("{args:?}: error {text:?} is not an ERR reply"));
                }
                if let Some(p) = phrase
                    && !text.contains(p)
                {
                    failures.push(format!("{args:?}: error {text:?} does not contain {p:?}"));
                }
            }
        }
        assert_ping(&mut con, &format!("{args:?}"));
    }
    assert!(server.is_alive(), "server died");
    assert!(
        failures.is_empty(),
        "{} bad inputs not rejected as documented:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn publish_rejects_bad_input_and_writes_nothing() {
    let mut server = RedisServer::start();
    let mut sub = server.subscribe("gyre.client.ch");
    let cases: &[(&[&str], Option<&str>)] = &[
        (&["GYRE.PUBLISH"], None),
        (&["GYRE.PUBLISH", "ch"], None),
        (&["GYRE.PUBLISH", "ch", "d", "HISTORY"], None),
        (
            &["GYRE.PUBLISH", "ch", "d", "HISTORY", "10"],
            Some("HISTORY needs more arguments"),
        ),
        (
            &["GYRE.PUBLISH", "ch", "d", "HISTORY", "10", "0"],
            Some("HISTORY needs a ttl > 0 when size > 0"),
        ),
        (&["GYRE.PUBLISH", "ch", "d", "HISTORY", "abc", "10"], None),
        (&["GYRE.PUBLISH", "ch", "d", "HISTORY", "-1", "10"], None),
        (&["GYRE.PUBLISH", "ch", "d", "HISTORY", "10", "-5"], None),
        (&["GYRE.PUBLISH", "ch", "d", "HISTORY", "1.5", "10"], None),
        (&["GYRE.PUBLISH", "ch", "d", "HISTORY", "10", "1e3"], None),
        (
            &[
                "GYRE.PUBLISH",
                "ch",
                "d",
                "HISTORY",
                "99999999999999999999999",
                "10",
            ],
            None,
        ),
        (&["GYRE.PUBLISH", "ch", "d", "HISTORY", "", "10"], None),
        (&["GYRE.PUBLISH", "ch", "d", "HISTORY", "0x10", "10"], None),
        (
            &["GYRE.PUBLISH", "ch", "d", "HISTORY", "10", "60", "META-TTL"],
            None,
        ),
        (
            &[
                "GYRE.PUBLISH",
                "ch",
                "d",
                "HISTORY",
                "10",
                "60",
                "META-TTL",
                "x",
            ],
            None,
        ),
        (
            &[
                "GYRE.PUBLISH",
                "ch",
                "d",
                "HISTORY",
                "10",
                "60",
                "META-TTL",
                "-1",
            ],
            None,
        ),
        (&["GYRE.PUBLISH", "ch", "d", "IDEMPOTENCY"], None),
        (
            &[
                "GYRE.PUBLISH",
                "ch",
                "d",
                "IDEMPOTENCY",
                "k",
                "IDEMPOTENCY-TTL",
            ],
            None,
        ),
        (
            &[
                "GYRE.PUBLISH",
                "ch",
                "d",
                "IDEMPOTENCY",
                "k",
                "IDEMPOTENCY-TTL",
                "x",
            ],
            None,
        ),
        (
            &[
                "GYRE.PUBLISH",
                "ch",
                "d",
                "IDEMPOTENCY",
                "k",
                "IDEMPOTENCY-TTL",
                "-3",
            ],
            None,
        ),
        (&["GYRE.PUBLISH", "ch", "d", "INFO", "c", "u", "ci"], None),
        (&["GYRE.PUBLISH", "ch", "d", "TAGS"], None),
        (&["GYRE.PUBLISH", "ch", "d", "TAGS", "x", "k", "v"], None),
        (&["GYRE.PUBLISH", "ch", "d", "TAGS", "-1"], None),
        (&["GYRE.PUBLISH", "ch", "d", "TAGS", "2", "k1", "v1"], None),
        (&["GYRE.PUBLISH", "ch", "d", "TAGS", "1", "k1"], None),
        (
            &[
                "GYRE.PUBLISH",
                "ch",
                "d",
                "TAGS",
                "1",
                "k1",
                "v1",
                "k2",
                "v2",
            ],
            None,
        ),
        (
            &["GYRE.PUBLISH", "ch", "d", "BOGUS"],
            Some("syntax error near 'BOGUS'"),
        ),
        (
            &[
                "GYRE.PUBLISH",
                "ch",
                "d",
                "HISTORY",
                "10",
                "60",
                "NOPE",
                "1",
            ],
            Some("syntax error near 'NOPE'"),
        ),
    ];
    assert_all_rejected(&mut server, cases);

    let mut con = server.connection();
    assert_eq!(
        as_int(&cmd(&mut con, &["DBSIZE"])),
        0,
        "rejected publishes write nothing"
    );
    assert!(
        sub.payloads_until_barrier(&mut con).is_empty(),
        "rejected publishes publish nothing"
    );
    // And the command still works afterwards.
    assert_eq!(publish_hist(&mut con, "ch", "ok", 10, 60).0, 1);
}

#[test]
fn history_rejects_bad_input() {
    let mut server = RedisServer::start();
    {
        let mut con = server.connection();
        publish_hist(&mut con, "ch", "x", 10, 60);
    }
    let cases: &[(&[&str], Option<&str>)] = &[
        (&["GYRE.HISTORY"], None),
        (&["GYRE.HISTORY", "ch", "SINCE"], None),
        (&["GYRE.HISTORY", "ch", "SINCE", "abc"], None),
        (&["GYRE.HISTORY", "ch", "SINCE", "1.5"], None),
        (&["GYRE.HISTORY", "ch", "LIMIT"], None),
        (&["GYRE.HISTORY", "ch", "LIMIT", "x"], None),
        (
            &["GYRE.HISTORY", "ch", "BOGUS"],
            Some("syntax error near 'BOGUS'"),
        ),
        (&["GYRE.HISTORY", "ch", "LIMIT", "1", "EXTRA"], None),
        (&["GYRE.HISTORY.REMOVE"], None),
        (&["GYRE.HISTORY.REMOVE", "ch", "extra"], None),
    ];
    assert_all_rejected(&mut server, cases);
    let mut con = server.connection();
    assert_eq!(
        history(&mut con, "ch", &[]).offsets(),
        [1],
        "state unchanged"
    );
}

#[test]
fn presence_rejects_bad_input() {
    let mut server = RedisServer::start();
    let cases: &[(&[&str], Option<&str>)] = &[
        (&["GYRE.PRESENCE.ADD"], None),
        (&["GYRE.PRESENCE.ADD", "ch"], None),
        (&["GYRE.PRESENCE.ADD", "ch", "c1"], None),
        (&["GYRE.PRESENCE.ADD", "ch", "c1", "u1", "TTL"], None),
        (&["GYRE.PRESENCE.ADD", "ch", "c1", "u1", "TTL", "abc"], None),
        (&["GYRE.PRESENCE.ADD", "ch", "c1", "u1", "TTL", "-1"], None),
        (&["GYRE.PRESENCE.ADD", "ch", "c1", "u1", "INFO"], None),
        (&["GYRE.PRESENCE.ADD", "ch", "c1", "u1", "CHANINFO"], None),
        (
            &["GYRE.PRESENCE.ADD", "ch", "c1", "u1", "BOGUS"],
            Some("syntax error near 'BOGUS'"),
        ),
        (&["GYRE.PRESENCE.REM"], None),
        (&["GYRE.PRESENCE.REM", "ch"], None),
        (&["GYRE.PRESENCE.REM", "ch", "c1", "BOGUS"], None),
        (&["GYRE.PRESENCE"], None),
        (&["GYRE.PRESENCE", "ch", "BOGUS"], None),
        (&["GYRE.PRESENCE.STATS"], None),
        (&["GYRE.PRESENCE.STATS", "ch", "extra"], None),
    ];
    assert_all_rejected(&mut server, cases);
    let mut con = server.connection();
    assert_eq!(as_int(&cmd(&mut con, &["DBSIZE"])), 0, "nothing written");
}

#[test]
fn namespace_rejects_bad_input() {
    let mut server = RedisServer::start();
    let cases: &[(&[&str], Option<&str>)] = &[
        (&["GYRE.NAMESPACE"], None),
        (&["GYRE.NAMESPACE", "BOGUS"], None),
        (&["GYRE.NAMESPACE", "SET"], None),
        (&["GYRE.NAMESPACE", "SET", "chat"], None),
        (&["GYRE.NAMESPACE", "SET", "chat", "HISTORY"], None),
        (&["GYRE.NAMESPACE", "SET", "chat", "HISTORY", "5"], None),
        (
            &["GYRE.NAMESPACE", "SET", "chat", "HISTORY", "x", "60"],
            None,
        ),
        (
            &["GYRE.NAMESPACE", "SET", "chat", "HISTORY", "-5", "60"],
            None,
        ),
        (
            &["GYRE.NAMESPACE", "SET", "chat", "HISTORY", "5", "-60"],
            None,
        ),
        (
            &[
                "GYRE.NAMESPACE",
                "SET",
                "chat",
                "HISTORY",
                "5",
                "60",
                "META-TTL",
            ],
            None,
        ),
        (
            &[
                "GYRE.NAMESPACE",
                "SET",
                "chat",
                "HISTORY",
                "5",
                "60",
                "META-TTL",
                "x",
            ],
            None,
        ),
        (
            &[
                "GYRE.NAMESPACE",
                "SET",
                "chat",
                "HISTORY",
                "5",
                "60",
                "BOGUS",
            ],
            None,
        ),
        (&["GYRE.NAMESPACE", "GET"], None),
        (&["GYRE.NAMESPACE", "GET", "a", "b"], None),
        (&["GYRE.NAMESPACE", "DEL"], None),
        (&["GYRE.NAMESPACE", "LIST", "extra"], None),
    ];
    assert_all_rejected(&mut server, cases);
    let mut con = server.connection();
    assert_eq!(as_int(&cmd(&mut con, &["DBSIZE"])), 0, "nothing written");
}

#[test]
fn wrong_key_types_are_errors_not_crashes() {
    let mut server = RedisServer::start();
    let mut con = server.connection();
    cmd(&mut con, &["SET", "gyre.stream.s", "not a stream"]);
    cmd(
        &mut con,
        &["HSET", "gyre.stream.meta.s", "e", "AbCdEfGh", "s", "1"],
    );
    cmd(&mut con, &["SET", "gyre.stream.meta.m", "not a hash"]);
    cmd(&mut con, &["SET", "gyre.presence.data.p", "not a hash"]);
    cmd(&mut con, &["SET", "gyre.presence.expire.p", "not a zset"]);
    cmd(&mut con, &["SET", "gyre.namespaces", "not a hash"]);
    drop(con);
    let cases: &[(&[&str], Option<&str>)] = &[
        (&["GYRE.PUBLISH", "s", "d", "HISTORY", "10", "60"], None),
        (&["GYRE.HISTORY", "s"], None),
        (&["GYRE.PUBLISH", "m", "d", "HISTORY", "10", "60"], None),
        (&["GYRE.HISTORY", "m"], None),
        (&["GYRE.PRESENCE.ADD", "p", "c", "u"], None),
        (&["GYRE.PRESENCE", "p"], None),
        (&["GYRE.PRESENCE.STATS", "p"], None),
        (&["GYRE.PRESENCE.REM", "p", "c"], None),
        (
            &["GYRE.NAMESPACE", "SET", "chat", "HISTORY", "5", "60"],
            None,
        ),
    ];
    assert_wrong_type(&mut server, cases);
    let mut con = server.connection();
    assert_eq!(
        as_string(&cmd(&mut con, &["GET", "gyre.stream.s"])),
        "not a stream",
        "foreign values are left alone"
    );
}

/// Like [`assert_all_rejected`] but any error code is fine (WRONGTYPE is Redis's own).
fn assert_wrong_type(server: &mut RedisServer, cases: &[(&[&str], Option<&str>)]) {
    let mut con = server.connection();
    let mut failures = Vec::new();
    for (args, _) in cases {
        match try_cmd(&mut con, args) {
            Ok(v) => failures.push(format!("{args:?} succeeded with {v:?}")),
            Err(e) if e.code().is_none() => {
                panic!("{args:?}: no error reply but {e} (server died?)")
            }
            Err(_) => {}
        }
        assert_ping(&mut con, &format!("{args:?}"));
    }
    assert!(server.is_alive(), "server died");
    assert!(
        failures.is_empty(),
        "wrong key types accepted:\n{}",
        failures.join("\n")
    );
}

#[test]
fn binary_and_large_arguments_are_handled() {
    let server = RedisServer::start();
    let mut con = server.connection();
    let data: Vec<u8> = (0..=255u8).cycle().take(1 << 20).collect();
    let reply = cmd_bytes(
        &mut con,
        &[
            b"GYRE.PUBLISH",
            b"bin\x00ch",
            &data,
            b"HISTORY",
            b"10",
            b"60",
        ],
    );
    assert_eq!(as_int(&as_array(&reply)[0]), 1);
    let reply = cmd_bytes(&mut con, &[b"GYRE.HISTORY", b"bin\x00ch"]);
    let entries = as_array(&as_array(&reply)[2]);
    assert_eq!(
        as_bytes(&as_array(&entries[0])[1]),
        data,
        "binary data round-trips"
    );
    assert_ping(&mut con, "binary publish");
}
