//! `gyre` pointed at a TCP proxy in front of the Redis primary (the deployment without Sentinel
//! support in the client: HAProxy with a role check). [`TcpForwarder`] stands in for HAProxy:
//! it forwards new connections to a switchable port and keeps existing ones on their old node.
//!
//! - the primary dies, the replica is promoted and the proxy switches to it: gyre's connections
//!   drop, come back through the proxy to the new primary, the subscriptions are subscribed again
//!   and resynced; the SDK subscriber holds every acknowledged publication or is told it could
//!   not recover ([`run_failover_scenario`]);
//! - the same after a tail-loss crash (the primary acknowledged publications its replica never
//!   got, [`crash_with_tail_loss`]): the subscriber is told `recovered: false`, nothing
//!   acknowledged is missed silently and no (epoch, offset) pair is acknowledged twice;
//! - the proxy switches to a server with none of the data: the subscriber is told it could not
//!   recover (`recovered: false`), and publications resume;
//! - the primary is demoted but stays up, and the proxy keeps gyre's connections to it: writes
//!   answered `READONLY` make gyre reconnect both connections through the proxy.

use std::time::{Duration, Instant};

use gyre_tests::ws_client::{EngineKind, ProxyEnv, WAIT, cmd as ws_cmd};
use gyre_tests::*;
use serde_json::json;

/// How long the doomed primary acknowledges publications alone.
const TAIL_LOSS_WINDOW: Duration = Duration::from_millis(500);

/// A primary and its replica (with `DEBUG`, for the tail-loss failover), both with the module,
/// and a forwarder in front of the primary.
fn replicated_behind_a_proxy() -> ([RedisServer; 2], TcpForwarder) {
    let primary = RedisServer::builder().tcp().start();
    let replica = RedisServer::builder()
        .tcp()
        .debug_command()
        .replica_of(&primary)
        .start();
    replica.wait_for_replication_link();
    let forwarder = TcpForwarder::start(primary.port().expect("tcp"));
    ([primary, replica], forwarder)
}

fn proxy_url(forwarder: &TcpForwarder) -> String {
    format!("redis://127.0.0.1:{}", forwarder.port())
}

#[test]
fn proxy_switches_to_the_promoted_replica_after_a_crash() {
    require_node_sdk();
    let started = Instant::now();
    let ([mut primary, replica], forwarder) = replicated_behind_a_proxy();
    let gyre = SdkEnv::gyre_builder()
        .redis_urls(&[proxy_url(&forwarder)])
        .start();
    let channel = format!("{SDK_NS}:proxy-failover");
    run_failover_scenario(&gyre, &channel, || {
        // Once the replica has everything: a write lost in the failover is the module's concern.
        wait_for_replica(&primary, &replica);
        primary.crash();
        let mut con = replica.connection();
        cmd(&mut con, &["REPLICAOF", "NO", "ONE"]);
        forwarder.switch_to(replica.port().expect("tcp"));
        con
    });
    let log = gyre.log();
    assert!(
        log.contains("redis subscription connection lost; resubscribing"),
        "{log}"
    );
    assert!(
        log.contains("resubscribed, resyncing subscriptions"),
        "{log}"
    );
    let reply = gyre.api(
        "publish",
        &json!({"channel": format!("{SDK_NS}:proxy-after"), "data": {"n": 1}}).to_string(),
    );
    assert!(reply.contains("\"offset\":1"), "{reply}");
    let mut con = replica.connection();
    let history = cmd(
        &mut con,
        &["GYRE.HISTORY", &format!("{SDK_NS}:proxy-after")],
    );
    assert_eq!(
        as_int(&as_array(&history)[0]),
        1,
        "written to the new primary"
    );
    eprintln!("proxy failover test took {:?}", started.elapsed());
}

/// The tail-loss crash behind the proxy: the primary acknowledges publications its replica never
/// gets and dies; the replica is promoted (`REPLICAOF NO ONE`) and the proxy switched to it.
/// The subscriber stays connected and is told `recovered: false`; every acknowledged
/// publication reached it or was sent before it was told; the window's (epoch, offset) pairs are
/// never acknowledged again.
#[test]
fn proxy_tail_loss_failover_is_announced_and_reuses_no_pair() {
    require_node_sdk();
    let started = Instant::now();
    let ([mut primary, replica], forwarder) = replicated_behind_a_proxy();
    let gyre = SdkEnv::gyre_builder()
        .redis_urls(&[proxy_url(&forwarder)])
        .start();
    let lossy = format!("{SDK_NS}:proxy-tail-loss");
    let outcome = FailoverScenario::new(&gyre, &lossy).run(|window| {
        crash_with_tail_loss(
            &mut primary,
            replica.connection(),
            TAIL_LOSS_WINDOW,
            window_writer(&lossy, window),
        );
        let mut con = replica.connection();
        cmd(&mut con, &["REPLICAOF", "NO", "ONE"]);
        forwarder.switch_to(replica.port().expect("tcp"));
        con
    });
    outcome.expect_tail_loss();
    eprintln!(
        "proxy tail-loss failover: {} publications in the window; whole test {:?}",
        outcome.window.len(),
        started.elapsed()
    );
}

/// The worst case: the proxy switches to a server that has none of the data (a replica that
/// never synced, a restore from nothing). The module starts a new epoch there, and the resync
/// after the reconnect tells the subscriber it could not recover; publications then resume.
#[test]
fn proxy_switches_to_an_empty_server_and_the_subscriber_is_told() {
    require_node_sdk();
    let mut primary = RedisServer::builder().tcp().start();
    let empty = RedisServer::builder().tcp().start();
    let forwarder = TcpForwarder::start(primary.port().expect("tcp"));
    let gyre = SdkEnv::gyre_builder()
        .redis_urls(&[proxy_url(&forwarder)])
        .start();
    let channel = format!("{SDK_NS}:proxy-empty");
    let r = run_failover_scenario(&gyre, &channel, || {
        primary.crash();
        forwarder.switch_to(empty.port().expect("tcp"));
        empty.connection()
    });
    assert_eq!(r.result["lostContinuity"], true, "{}", r.result);
}

/// Clients of `server` subscribed to at least one channel, per `CLIENT LIST`.
fn subscribers(server: &RedisServer) -> usize {
    let mut con = server.connection();
    let list = cmd(&mut con, &["CLIENT", "LIST"]);
    let text = match list {
        Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
        Value::VerbatimString { text, .. } => text,
        other => panic!("CLIENT LIST answered {other:?}"),
    };
    text.lines()
        .filter(|line| {
            line.split(' ')
                .any(|f| f.strip_prefix("sub=").is_some_and(|n| n != "0"))
        })
        .count()
}

#[test]
fn readonly_through_a_proxy_reconnects_to_the_new_primary() {
    let ([old, new], forwarder) = replicated_behind_a_proxy();
    let env = ProxyEnv {
        gyre: GyreProcess::builder()
            .namespace(Namespace::full("chat", 100, 300))
            .redis_urls(&[proxy_url(&forwarder)])
            .start(),
        redis: None,
        engine: EngineKind::Redis,
    };
    let mut client = env.client("alice");
    client.call(ws_cmd::subscribe(1, "chat:ro"));
    assert_eq!(env.publish("chat:ro", json!({"n": 1})).0, 1);
    client.publications("chat:ro", 1, WAIT);
    assert_eq!(subscribers(&old), 1, "gyre subscribes on the primary");

    // Swap the roles without killing anything (once the replica has everything); the proxy
    // keeps gyre's connections to `old`.
    wait_for_replica(&old, &new);
    let new_port = new.port().expect("tcp");
    cmd(&mut new.connection(), &["REPLICAOF", "NO", "ONE"]);
    cmd(
        &mut old.connection(),
        &["REPLICAOF", "127.0.0.1", &new_port.to_string()],
    );
    forwarder.switch_to(new_port);
    old.wait_for_replication_link();

    // Writes fail while gyre still talks to the demoted node; then they reach the new primary.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut failures = 0;
    let offset = loop {
        let reply = env.api("publish", json!({"channel": "chat:ro", "data": {"n": 2}}));
        if let Some(offset) = reply["result"]["offset"].as_u64() {
            break offset;
        }
        failures += 1;
        assert!(Instant::now() < deadline, "publishes keep failing: {reply}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(offset, 2);
    assert!(failures >= 1, "the first write met the demoted node");
    let history = cmd(&mut new.connection(), &["GYRE.HISTORY", "chat:ro"]);
    assert_eq!(
        as_int(&as_array(&history)[0]),
        2,
        "written on the new primary"
    );
    // The promotion started a new lineage, so the publication carries a new epoch (the module's
    // "When an epoch changes"): the subscriber is not given offset 2 as if nothing happened but
    // told to recover (2500), which the SDKs do by subscribing again.
    let deadline = Instant::now() + WAIT;
    let told = loop {
        match client.next_push(Duration::from_millis(100)) {
            Some(push) if push.push().channel == "chat:ro" => {
                let push = push.push();
                assert!(
                    push.r#pub.is_none(),
                    "a publication under the new epoch was delivered as a continuation: {push:?}"
                );
                if let Some(unsubscribe) = &push.unsubscribe {
                    break unsubscribe.code;
                }
            }
            _ => assert!(Instant::now() < deadline, "the subscriber was never told"),
        }
    };
    assert_eq!(told, 2500, "insufficient state");

    // The subscription connection moved too, and the old one is gone.
    wait_until(
        Duration::from_secs(10),
        "gyre subscribes on the new primary only",
        || subscribers(&new) == 1 && subscribers(&old) == 0,
    );
    let log = env.gyre.log();
    assert!(log.contains("redis answered READONLY"), "{log}");
    assert!(
        log.contains("redis subscription connection moved to the new primary"),
        "{log}"
    );
    drop(env);
}
