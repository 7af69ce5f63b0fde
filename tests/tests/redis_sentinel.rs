//! `gyre` with Redis Sentinel (`engine.redis.sentinel_address` + `sentinel_master_name`): a
//! primary and a replica with the module, three sentinels ([`SentinelGroup`]), and the
//! unmodified centrifuge-js SDK (`tests/sdk/node`). gyre finds the primary through the
//! sentinels; publications from the API, `redis-cli GYRE.PUBLISH` and clients, presence,
//! history and recovery work, in JSON and Protobuf; then the primary is killed with SIGKILL and,
//! after the sentinels promoted the replica (about 4 s), publications resume and the subscriber
//! either has every acknowledged publication or was told it could not recover.
//!
//! In another group the primary dies after acknowledging publications its replica never got
//! (tail loss, [`SentinelGroup::tail_loss_failover`]): the subscriber is told `recovered: false`,
//! no acknowledged publication is missed silently, and no (epoch, offset) pair is acknowledged
//! twice ([`FailoverOutcome::check`]).
//!
//! Another group's sentinels require a password and serve TLS: `sentinel_password` and
//! `sentinel_tls` reach them, and a missing password or a wrong CA is a clear start error.
//!
//! One test runs the SDK scenarios in turn on one group: a group takes seconds to agree.

use std::time::{Duration, Instant};

use gyre_tests::*;

const MASTER: &str = "gyre-main";
/// How long the doomed primary acknowledges publications alone.
const TAIL_LOSS_WINDOW: Duration = Duration::from_millis(500);

fn channel(name: &str) -> String {
    format!("{SDK_NS}:sentinel-{name}")
}

/// The SDK environment's gyre, pointed at the group's sentinels.
fn builder(group: &SentinelGroup, master_name: &str) -> GyreBuilder {
    let sentinels: Vec<String> = group
        .sentinel_addresses()
        .iter()
        .map(|a| format!("{a:?}"))
        .collect();
    SdkEnv::gyre_builder()
        .redis_urls(&[])
        .redis_option(&format!("sentinel_address = [{}]", sentinels.join(", ")))
        .redis_option(&format!("sentinel_master_name = {master_name:?}"))
}

#[test]
fn sentinel_discovery_sdk_scenarios_and_failover() {
    require_node_sdk();
    let started = Instant::now();
    let mut group = SentinelGroup::start(MASTER);
    let group_ready = started.elapsed();

    // A master name the sentinels do not monitor: a clear start error.
    let output = builder(&group, "nobody").start_failure(Duration::from_secs(15));
    assert!(
        output.contains("does not monitor a master named \"nobody\""),
        "{output}"
    );

    let gyre = builder(&group, MASTER).start();
    let primary = group.primary_port();
    assert!(
        gyre.log()
            .contains(&format!("redis primary found through sentinel master={MASTER} primary=redis://127.0.0.1:{primary}")),
        "{}",
        gyre.log()
    );

    for protocol in ["json", "protobuf"] {
        sdk_basic_scenarios(
            &gyre,
            protocol,
            &channel("sdk"),
            &[("redis-port", primary.to_string())],
        );
    }

    let failover_started = Instant::now();
    let mut promotion = Duration::ZERO;
    let mut new_primary = 0;
    run_failover_scenario(&gyre, &channel("failover"), || {
        let (port, took) = group.kill_primary_and_wait_for_promotion();
        (new_primary, promotion) = (port, took);
        group.server_on(port).connection()
    });
    let failover = failover_started.elapsed();
    assert_ne!(new_primary, primary);

    let log = gyre.log();
    assert!(
        log.contains("redis primary moved (sentinel +switch-master)")
            || log.contains("redis primary moved (found by asking the sentinels)"),
        "a clear line about the switch:\n{log}"
    );
    assert!(
        log.contains(&format!("to=redis://127.0.0.1:{new_primary}")),
        "{log}"
    );
    assert!(
        log.contains("redis subscription connection moved to the new primary"),
        "{log}"
    );
    // Still serving, on the new primary.
    let mut gyre = gyre;
    assert!(gyre.is_alive(), "gyre survived the failover");
    let reply = gyre.api(
        "publish",
        &serde_json::json!({"channel": channel("after"), "data": {"n": 1}}).to_string(),
    );
    assert!(reply.contains("\"offset\":1"), "{reply}");
    let mut con = group.server_on(new_primary).connection();
    let history = cmd(&mut con, &["GYRE.HISTORY", &channel("after")]);
    assert_eq!(as_int(&as_array(&history)[0]), 1);
    eprintln!(
        "sentinel group ready in {group_ready:?}; promotion took {promotion:?}, the failover \
         scenario {failover:?}; whole test {:?}",
        started.elapsed()
    );
}

/// The tail-loss failover under the SDK (Protobuf): the primary acknowledges publications its
/// replica never gets, dies, and the sentinels promote the replica. The subscriber stays
/// connected and is told `recovered: false`; every acknowledged publication reached it or was
/// sent before it was told; the pairs the window was acknowledged with are never acknowledged
/// again (the promoted node hands out the same offsets under a new epoch).
#[test]
fn sentinel_tail_loss_failover_is_announced_and_reuses_no_pair() {
    require_node_sdk();
    let started = Instant::now();
    let mut group = SentinelGroup::start("gyre-lossy");
    let gyre = builder(&group, "gyre-lossy").start();
    let old = group.primary_port();
    let lossy = channel("tail-loss");
    let mut promotion = Duration::ZERO;
    let outcome = FailoverScenario::new(&gyre, &lossy)
        .protocol("protobuf")
        .run(|window| {
            let (port, took) =
                group.tail_loss_failover(TAIL_LOSS_WINDOW, window_writer(&lossy, window));
            promotion = took;
            group.server_on(port).connection()
        });
    outcome.expect_tail_loss();
    assert_ne!(group.primary_port(), old);
    eprintln!(
        "sentinel tail-loss failover: {} publications in the window, promotion {promotion:?}, \
         whole test {:?}",
        outcome.window.len(),
        started.elapsed()
    );
}

/// Sentinels that require a password and serve TLS (`rediss://` sentinel addresses):
/// `sentinel_password` and `sentinel_tls` reach the sentinels; without the password, or with the
/// wrong CA, the start fails naming the key to fix.
#[test]
fn sentinels_with_a_password_over_tls() {
    let password = "sentinel-secret";
    let pki = TestPki::new();
    let group = SentinelGroup::start_with(
        "gyre-secured",
        SentinelSecurity {
            password: Some(password.into()),
            tls: Some(SentinelTls {
                cert: pki.server(),
                ca: pki.ca_cert(),
            }),
        },
    );
    let builder = |ca: &std::path::Path| {
        let sentinels: Vec<String> = group
            .sentinel_tls_addresses()
            .iter()
            .map(|a| format!("{a:?}"))
            .collect();
        GyreProcess::builder()
            .namespace(Namespace::full("chat", 100, 300))
            .redis_urls(&[])
            .redis_option(&format!("sentinel_address = [{}]", sentinels.join(", ")))
            .redis_option("sentinel_master_name = \"gyre-secured\"")
            .extra_toml(&format!(
                "[engine.redis.sentinel_tls]\nserver_ca_pem_file = {:?}",
                ca.to_str().expect("utf-8 path")
            ))
    };
    let output = builder(&pki.ca_cert()).start_failure(Duration::from_secs(15));
    assert!(
        output.contains("the server requires a password: set engine.redis.sentinel_password"),
        "{output}"
    );
    let output = builder(&pki.other_ca_cert())
        .redis_option(&format!("sentinel_password = {password:?}"))
        .start_failure(Duration::from_secs(15));
    assert!(
        output.contains("give its CA in engine.redis.sentinel_tls.server_ca_pem"),
        "{output}"
    );
    assert!(!output.contains(password), "{output}");

    let gyre = builder(&pki.ca_cert())
        .redis_option(&format!("sentinel_password = {password:?}"))
        .start();
    let reply = gyre.api(
        "publish",
        &serde_json::json!({"channel": "chat:secured", "data": {"n": 1}}).to_string(),
    );
    assert!(reply.contains("\"offset\":1"), "{reply}");
    let history = cmd(
        &mut group.servers[0].connection(),
        &["GYRE.HISTORY", "chat:secured"],
    );
    assert_eq!(as_int(&as_array(&history)[0]), 1, "written to the primary");
    assert!(!gyre.log().contains(password), "{}", gyre.log());
}
