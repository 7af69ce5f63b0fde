//! Persistence: the AOF holds concrete commands (XADD with explicit ids, absolute expiry), a
//! restart from the AOF keeps history and offsets (under a new epoch: see failover.rs), and DEBUG
//! RELOAD keeps the state, epochs included.

use gyre_tests::*;

fn name(cmd: &[Vec<u8>]) -> String {
    String::from_utf8_lossy(&cmd[0]).to_ascii_uppercase()
}

fn show(cmd: &[Vec<u8>]) -> String {
    cmd.iter()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn aof_restart_keeps_history_and_offsets() {
    let mut server = RedisServer::builder().appendonly().start();
    let mut con = server.connection();
    let mut epoch = String::new();
    for i in 1..=3 {
        epoch = publish_hist(&mut con, "chat", &format!("m{i}"), 10, 300).1;
    }
    publish(
        &mut con,
        "chat",
        "k",
        &["HISTORY", "10", "300", "IDEMPOTENCY", "key"],
    );
    cmd(&mut con, &["GYRE.PRESENCE.ADD", "chat", "c1", "u1"]);
    cmd(
        &mut con,
        &["GYRE.NAMESPACE", "SET", "ns", "HISTORY", "5", "60"],
    );
    let before = history(&mut con, "chat", &[]);
    let meta_before = hgetall(&mut con, "gyre.stream.meta.chat");
    drop(con);

    server.restart();
    let mut con = server.connection();
    let after = history(&mut con, "chat", &[]);
    assert_eq!(
        (after.top, &after.entries),
        (before.top, &before.entries),
        "history survives the AOF reload"
    );
    assert_eq!(after.offsets(), [1, 2, 3, 4]);
    assert_eq!(
        hgetall(&mut con, "gyre.stream.meta.chat"),
        meta_before,
        "the meta hash is loaded as it was (reading it changes nothing)"
    );
    let t = ttl(&mut con, "gyre.stream.chat");
    assert!((250..=300).contains(&t), "stream TTL survives: {t}");

    // A restart may have lost the last second of writes (appendfsync everysec), so the channel
    // continues its offsets under a new epoch (docs/module.md, "When an epoch changes").
    let (offset, new_epoch) = publish_hist(&mut con, "chat", "m5", 10, 300);
    assert_eq!(offset, 5, "the next publish continues the offset");
    assert_ne!(new_epoch, epoch, "under a new epoch");
    assert_eq!(
        after.epoch, new_epoch,
        "which GYRE.HISTORY already reported"
    );
    assert_eq!(
        publish(
            &mut con,
            "chat",
            "again",
            &["HISTORY", "10", "300", "IDEMPOTENCY", "key"]
        ),
        (4, epoch),
        "idempotency results survive"
    );
    let stats = cmd(&mut con, &["GYRE.PRESENCE.STATS", "chat"]);
    assert_eq!(as_int(&as_array(&stats)[0]), 1, "presence survives");
    assert_eq!(
        as_strings(&cmd(&mut con, &["GYRE.NAMESPACE", "LIST"])),
        ["ns"],
        "namespaces survive"
    );
}

#[test]
fn aof_has_concrete_commands_and_no_module_commands() {
    let mut server = RedisServer::builder().appendonly().start();
    let mut con = server.connection();
    for i in 1..=3 {
        publish_hist(&mut con, "chat", &format!("m{i}"), 2, 300);
    }
    publish(&mut con, "plain", "x", &[]);
    cmd(
        &mut con,
        &["GYRE.PRESENCE.ADD", "chat", "c1", "u1", "JOINLEAVE"],
    );
    cmd(&mut con, &["GYRE.PRESENCE.REM", "chat", "c1", "JOINLEAVE"]);
    cmd(
        &mut con,
        &["GYRE.NAMESPACE", "SET", "ns", "HISTORY", "5", "60"],
    );
    cmd(&mut con, &["GYRE.HISTORY.REMOVE", "chat"]);
    drop(con);
    server.stop(); // flushes and fsyncs the AOF

    let commands = aof_commands(server.dir());
    let xadds: Vec<&Vec<Vec<u8>>> = commands.iter().filter(|c| name(c) == "XADD").collect();
    assert_eq!(xadds.len(), 3, "one XADD per publish with history");
    for (i, xadd) in xadds.iter().enumerate() {
        assert_eq!(xadd[1], b"gyre.stream.chat", "{}", show(xadd));
        let id = format!("{}-0", i + 1);
        assert!(
            xadd.iter().any(|a| a == id.as_bytes()),
            "XADD with the explicit id {id}: {}",
            show(xadd)
        );
        assert!(
            !xadd.iter().any(|a| a == b"*"),
            "no auto-generated id: {}",
            show(xadd)
        );
    }
    let module_cmds: Vec<String> = commands
        .iter()
        .filter(|c| name(c).starts_with("GYRE."))
        .map(|c| show(c))
        .collect();
    assert!(
        !module_cmds
            .iter()
            .any(|c| c.to_ascii_uppercase().starts_with("GYRE.PUBLISH")),
        "GYRE.PUBLISH must not reach the AOF: {module_cmds:?}"
    );
    assert!(
        module_cmds.is_empty(),
        "no module command is replayed from the AOF: {module_cmds:?}"
    );
    let relative: Vec<String> = commands
        .iter()
        .filter(|c| matches!(name(c).as_str(), "EXPIRE" | "PEXPIRE"))
        .map(|c| show(c))
        .collect();
    assert!(
        relative.is_empty(),
        "expiry must be absolute in the AOF: {relative:?}"
    );
    assert!(
        commands
            .iter()
            .any(|c| name(c) == "PEXPIREAT" || name(c) == "EXPIREAT"),
        "absolute expiry times are written"
    );

    // And the AOF loads back into the same state.
    server.restart();
    let mut con = server.connection();
    let h = history(&mut con, "chat", &[]);
    assert_eq!(h.top, 3);
    assert!(h.entries.is_empty(), "HISTORY.REMOVE replayed");
    assert_eq!(publish_hist(&mut con, "chat", "m4", 2, 300).0, 4);
}

#[test]
fn debug_reload_keeps_state() {
    let server = RedisServer::builder().debug_command().start();
    let mut con = server.connection();
    let mut epoch = String::new();
    for i in 1..=3 {
        epoch = publish_hist(&mut con, "chat", &format!("m{i}"), 10, 300).1;
    }
    cmd(&mut con, &["GYRE.PRESENCE.ADD", "chat", "c1", "u1"]);
    let before = history(&mut con, "chat", &[]);
    cmd(&mut con, &["DEBUG", "RELOAD"]);
    assert_eq!(history(&mut con, "chat", &[]), before);
    assert_eq!(publish_hist(&mut con, "chat", "m4", 10, 300), (4, epoch));
    let stats = cmd(&mut con, &["GYRE.PRESENCE.STATS", "chat"]);
    assert_eq!(as_int(&as_array(&stats)[0]), 1);
}
