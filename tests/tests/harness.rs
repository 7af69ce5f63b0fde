//! Self-test of the harness with plain redis-server (no module): subscriber and barrier,
//! restart with AOF, AOF parsing, replication link. Keeps harness bugs apart from module bugs.

use gyre_tests::*;

#[test]
fn subscriber_barrier_collects_exactly_what_was_published() {
    let server = RedisServer::builder().without_module().start();
    let mut con = server.connection();
    let mut sub = server.subscribe("chan");
    assert!(sub.payloads_until_barrier(&mut con).is_empty());
    cmd(&mut con, &["PUBLISH", "chan", "one"]);
    cmd(&mut con, &["PUBLISH", "other", "ignored"]);
    cmd(&mut con, &["PUBLISH", "chan", "two"]);
    assert_eq!(
        sub.payloads_until_barrier(&mut con),
        [b"one".to_vec(), b"two".to_vec()]
    );
    assert!(
        sub.next_payload(std::time::Duration::from_millis(50))
            .is_none()
    );

    let mut shard = server.ssubscribe("chan");
    cmd(&mut con, &["SPUBLISH", "chan", "s"]);
    assert_eq!(shard.payloads_until_barrier(&mut con), [b"s".to_vec()]);
    assert!(sub.payloads_until_barrier(&mut con).is_empty());
}

#[test]
fn restart_keeps_aof_data_and_aof_is_parsed() {
    let mut server = RedisServer::builder().without_module().appendonly().start();
    let mut con = server.connection();
    cmd(&mut con, &["XADD", "s", "1-0", "d", "x"]);
    cmd(&mut con, &["EXPIRE", "s", "100"]);
    drop(con);
    server.restart();
    let mut con = server.connection();
    assert_eq!(xrange(&mut con, "s").len(), 1);
    let commands = aof_commands(server.dir());
    assert!(
        commands
            .iter()
            .any(|c| c[0].eq_ignore_ascii_case(b"XADD") && c[2] == b"1-0")
    );
    assert!(
        commands
            .iter()
            .any(|c| c[0].eq_ignore_ascii_case(b"PEXPIREAT"))
    );
}

#[test]
fn replica_links_and_receives_publish() {
    let primary = RedisServer::builder().without_module().tcp().start();
    let replica = RedisServer::builder()
        .without_module()
        .replica_of(&primary)
        .start();
    replica.wait_for_replication_link();
    let mut pcon = primary.connection();
    let mut sub = replica.subscribe("c");
    cmd(&mut pcon, &["PUBLISH", "c", "hello"]);
    assert_eq!(sub.payloads_until_barrier(&mut pcon), [b"hello".to_vec()]);
}

#[test]
fn single_node_cluster_starts() {
    let server = RedisServer::builder()
        .without_module()
        .tcp()
        .args(&[
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-port",
            &free_port().to_string(),
        ])
        .start();
    let mut con = server.connection();
    cmd(&mut con, &["CLUSTER", "ADDSLOTSRANGE", "0", "16383"]);
    wait_until(std::time::Duration::from_secs(10), "cluster ok", || {
        as_string(&cmd(&mut con, &["CLUSTER", "INFO"])).contains("cluster_state:ok")
    });
    cmd(&mut con, &["SET", "x{a}", "1"]);
    assert_eq!(as_string(&cmd(&mut con, &["GET", "x{a}"])), "1");
}
