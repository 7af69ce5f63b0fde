//! Redis-engine scenarios beyond the shared contract: a `redis-cli` publisher, namespaces,
//! reconnects and resync, and sharding across several servers (`engine.redis.address` with more
//! than one URL). Each test owns its `redis-server`s (the `gyre-tests` harness).

mod common;

use common::*;

// ---- Redis only ----

#[tokio::test]
async fn redis_cli_publish_reaches_subscribers() {
    let mut s = redis().await;
    s.engine.subscribe("ext").await.unwrap();
    let mut con = s.server().connection();
    let (offset, epoch) =
        gyre_tests::publish(&mut con, "ext", "from-cli", &["HISTORY", "10", "60"]);
    let event = s.next_event().await;
    assert_eq!(
        publication(&event),
        ("ext".into(), offset as u64, epoch, "from-cli".into())
    );
}

#[tokio::test]
async fn redis_register_namespace_gives_cli_publishes_history() {
    let s = redis().await;
    let history = HistoryOptions {
        size: 2,
        ttl: Duration::from_secs(60),
        meta_ttl: Duration::from_secs(3600),
    };
    s.redis()
        .register_namespace("ns", Some(history))
        .await
        .unwrap();
    s.redis().register_namespace("", None).await.unwrap();
    let mut con = s.server().connection();
    for (i, data) in ["a", "b", "c"].iter().enumerate() {
        let (offset, _) = gyre_tests::publish(&mut con, "ns:ch", data, &[]);
        assert_eq!(offset, i as i64 + 1);
    }
    let h = s.history("ns:ch", HistoryQuery::default()).await;
    assert_eq!(data(&h), ["b", "c"], "the namespace's size applies");
    assert_eq!(
        gyre_tests::publish(&mut con, "plain", "x", &[]),
        (0, String::new())
    );
    let ttl = gyre_tests::ttl(&mut con, "gyre.stream.meta.ns:ch");
    assert!((3500..=3600).contains(&ttl), "meta ttl {ttl}");
}

#[tokio::test]
async fn redis_connect_checks_the_module() {
    let (tx, _events) = unbounded_channel();
    let other_prefix = RedisServer::with_module_args(&["prefix", "other"]);
    let err = RedisEngine::connect(redis_settings(&other_prefix), tx.clone()).await;
    assert!(
        matches!(err, Err(EngineError::Protocol(_))),
        "prefix mismatch"
    );

    let bare = RedisServer::builder().without_module().start();
    let err = RedisEngine::connect(redis_settings(&bare), tx.clone()).await;
    assert!(matches!(err, Err(EngineError::Unavailable(_))), "no module");

    let nowhere = RedisSettings::standalone(vec!["redis+unix:///nonexistent/redis.sock".into()]);
    let err = RedisEngine::connect(nowhere, tx).await;
    assert!(matches!(err, Err(EngineError::Unavailable(_))), "no server");
}

/// Publishes once Redis accepts commands again (the command connection reconnects on its own).
async fn publish_when_back(s: &Subject, channel: &str, data: &str) -> StreamPosition {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match s
            .engine
            .publish(channel, Bytes::from(data.to_owned()), &with_history())
            .await
        {
            Ok(pos) => return pos,
            Err(e) if Instant::now() < deadline => {
                eprintln!("publish not accepted yet: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("redis did not come back: {e}"),
        }
    }
}

/// The next event that is not a Resync: one outage may be noticed more than once.
async fn next_non_resync(s: &mut Subject) -> EngineEvent {
    loop {
        match s.next_event().await {
            EngineEvent::Resync => {}
            event => return event,
        }
    }
}

#[tokio::test]
async fn redis_resync_after_client_kill() {
    let mut s = redis().await;
    s.engine.subscribe("rs").await.unwrap();
    let mut con = s.server().connection();
    let killed = gyre_tests::cmd(&mut con, &["CLIENT", "KILL", "TYPE", "pubsub"]);
    assert_eq!(
        killed,
        gyre_tests::Value::Int(1),
        "one subscription connection"
    );
    s.wait_for_resync(Duration::from_secs(10)).await;
    let pos = publish_when_back(&s, "rs", "after").await;
    let event = s.next_event().await;
    assert_eq!(
        publication(&event),
        ("rs".into(), pos.offset, pos.epoch, "after".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_resync_after_server_restart() {
    let mut s = redis().await;
    s.engine.subscribe("rs").await.unwrap();
    s.publish("rs", "before", &with_history()).await;
    assert_eq!(publication(&s.next_event().await).3, "before");
    let mut server = s.server.take().unwrap();
    tokio::task::block_in_place(|| server.restart());
    s.server = Some(server);
    s.wait_for_resync(Duration::from_secs(20)).await;
    let pos = publish_when_back(&s, "rs", "after").await;
    // The server kept nothing (no persistence): the stream starts again.
    assert_eq!(pos.offset, 1);
    let event = next_non_resync(&mut s).await;
    assert_eq!(
        publication(&event),
        ("rs".into(), pos.offset, pos.epoch, "after".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_longer_than_reconnect_retries() {
    let mut s = redis().await;
    s.engine.subscribe("out").await.unwrap();
    let mut server = s.server.take().unwrap();
    tokio::task::block_in_place(|| server.stop());
    let down = s
        .engine
        .publish("out", Bytes::from_static(b"lost"), &with_history())
        .await;
    assert!(matches!(down, Err(EngineError::Unavailable(_))), "{down:?}");
    // Longer than the connection manager's own retries: the engine must keep reconnecting.
    tokio::time::sleep(Duration::from_secs(3)).await;
    tokio::task::block_in_place(|| server.restart());
    s.server = Some(server);
    s.wait_for_resync(Duration::from_secs(20)).await;
    let pos = publish_when_back(&s, "out", "after").await;
    let event = next_non_resync(&mut s).await;
    assert_eq!(
        publication(&event),
        ("out".into(), pos.offset, pos.epoch, "after".into())
    );
}

// ---- Redis sharded across two servers ----

use gyre_proxy::engine::ControlCommand;

/// Two servers and an engine sharding across them (server order = address order).
async fn sharded() -> (Subject, [RedisServer; 2]) {
    let servers = [RedisServer::start(), RedisServer::start()];
    let s = sharded_on(&servers).await;
    (s, servers)
}

async fn sharded_on(servers: &[RedisServer; 2]) -> Subject {
    let settings = RedisSettings::standalone(servers.iter().map(redis_address).collect());
    let (tx, events) = unbounded_channel();
    let engine = RedisEngine::connect(settings, tx)
        .await
        .expect("connect the sharded redis engine");
    Subject {
        engine: Engine::Redis(engine),
        events,
        server: None,
        cluster: None,
    }
}

/// The channels (after `prefix`) of the keys matching `<prefix>*` on `server`.
fn channels_with(server: &RedisServer, prefix: &str) -> HashSet<String> {
    let mut con = server.connection();
    let keys = gyre_tests::cmd(&mut con, &["KEYS", &format!("{prefix}*")]);
    gyre_tests::as_strings(&keys)
        .into_iter()
        .map(|key| key[prefix.len()..].to_owned())
        .collect()
}

/// Channels `ch0` and `ch1` hash to shards 0 and 1 of two (Centrifugo's jump hash of FNV-1a).
const ON_FIRST: &str = "ch0";
const ON_SECOND: &str = "ch1";

#[tokio::test]
async fn redis_sharded_channels_spread_with_history_and_delivery() {
    let (mut s, servers) = sharded().await;
    let channels: Vec<String> = (0..40).map(|i| format!("ch{i}")).collect();
    for channel in &channels {
        s.engine.subscribe(channel).await.unwrap();
    }
    for round in 1..=2u64 {
        for channel in &channels {
            let pos = s
                .publish(channel, &format!("{channel}-{round}"), &with_history())
                .await;
            assert_eq!(pos.offset, round, "{channel}");
        }
    }
    let on: Vec<HashSet<String>> = servers
        .iter()
        .map(|server| channels_with(server, "gyre.stream.meta."))
        .collect();
    assert!(
        on[0].contains(ON_FIRST) && on[1].contains(ON_SECOND),
        "{on:?}"
    );
    assert!(!on[0].is_empty() && !on[1].is_empty(), "{on:?}");
    assert!(on[0].is_disjoint(&on[1]), "{on:?}");
    let all: HashSet<String> = on[0].union(&on[1]).cloned().collect();
    assert_eq!(all, channels.iter().cloned().collect::<HashSet<_>>());

    let mut delivered: HashMap<String, Vec<(u64, String)>> = HashMap::new();
    for _ in 0..channels.len() * 2 {
        let (channel, offset, _, data) = publication(&s.next_event().await);
        delivered.entry(channel).or_default().push((offset, data));
    }
    for channel in &channels {
        let expected = vec![(1, format!("{channel}-1")), (2, format!("{channel}-2"))];
        assert_eq!(delivered.get(channel), Some(&expected), "{channel}");
        let h = s.history(channel, HistoryQuery::default()).await;
        assert_eq!(offsets(&h), [1, 2], "{channel}");
        assert_eq!(data(&h), [format!("{channel}-1"), format!("{channel}-2")]);
        let pos = s.engine.position(channel, Duration::ZERO).await.unwrap();
        assert_eq!(pos, h.position);
        s.engine.remove_history(channel).await.unwrap();
        assert!(
            s.history(channel, HistoryQuery::default())
                .await
                .publications
                .is_empty()
        );
    }
    // Unsubscribing goes to the channel's shard too.
    s.engine.unsubscribe(ON_SECOND).await.unwrap();
    s.publish(ON_SECOND, "gone", &PublishOptions::default())
        .await;
    let after = s.events_until_marker(ON_FIRST).await;
    assert!(after.is_empty(), "delivered after unsubscribe: {after:?}");
}

#[tokio::test]
async fn redis_sharded_presence() {
    let (mut s, servers) = sharded().await;
    let ttl = Duration::from_secs(60);
    let channels: Vec<String> = (0..20).map(|i| format!("room{i}")).collect();
    for channel in &channels {
        s.engine.subscribe(channel).await.unwrap();
        let user = format!("u-{channel}");
        for id in ["a", "b"] {
            let info = client(&format!("{channel}-{id}"), &user);
            s.engine
                .add_presence(channel, &info, ttl, true)
                .await
                .unwrap();
        }
    }
    let on: Vec<HashSet<String>> = servers
        .iter()
        .map(|server| channels_with(server, "gyre.presence.data."))
        .collect();
    assert!(!on[0].is_empty() && !on[1].is_empty(), "{on:?}");
    assert!(on[0].is_disjoint(&on[1]), "{on:?}");
    for channel in &channels {
        let presence = s.engine.presence(channel).await.unwrap();
        let ids: HashSet<String> = presence.into_keys().collect();
        let expected = HashSet::from([format!("{channel}-a"), format!("{channel}-b")]);
        assert_eq!(ids, expected);
        let stats = s.engine.presence_stats(channel).await.unwrap();
        assert_eq!(
            stats,
            PresenceStats {
                num_clients: 2,
                num_users: 1
            }
        );
        let b = client(&format!("{channel}-b"), &format!("u-{channel}"));
        s.engine.remove_presence(channel, &b, true).await.unwrap();
        assert_eq!(
            s.engine.presence_stats(channel).await.unwrap().num_clients,
            1
        );
    }
    // Two joins and one leave per channel, each delivered once.
    let mut joins = 0;
    let mut leaves = 0;
    while joins + leaves < channels.len() * 3 {
        match s.next_event().await {
            EngineEvent::Join { .. } => joins += 1,
            EngineEvent::Leave { .. } => leaves += 1,
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert_eq!((joins, leaves), (channels.len() * 2, channels.len()));
}

fn disconnect(user: &str) -> ControlCommand {
    ControlCommand::Disconnect {
        user: user.into(),
        client: String::new(),
        code: 3000,
        reason: "test".into(),
        whitelist: Vec::new(),
    }
}

/// The control commands `s` receives before the markers published on both shards' channels
/// (subscribed): a shard's messages arrive in the order they were published.
async fn controls_until_markers(s: &mut Subject) -> Vec<ControlCommand> {
    for channel in [ON_FIRST, ON_SECOND] {
        s.publish(channel, MARKER, &PublishOptions::default()).await;
    }
    let (mut controls, mut markers) = (Vec::new(), 0);
    while markers < 2 {
        match s.next_event().await {
            EngineEvent::Control(command) => controls.push(command),
            event if publication(&event).3 == MARKER => markers += 1,
            other => panic!("unexpected event {other:?}"),
        }
    }
    controls
}

#[tokio::test]
async fn redis_sharded_control_reaches_every_node_once() {
    let (mut a, servers) = sharded().await;
    let mut b = sharded_on(&servers).await;
    for s in [&a, &b] {
        for channel in [ON_FIRST, ON_SECOND] {
            s.engine.subscribe(channel).await.unwrap();
        }
    }
    let sent: Vec<ControlCommand> = (0..6).map(|i| disconnect(&format!("u{i}"))).collect();
    for command in &sent {
        a.engine.publish_control(command).await.unwrap();
    }
    // Published on one shard only, round-robin: both servers saw some.
    for server in &servers {
        let mut con = server.connection();
        let stats = gyre_tests::info_section(&mut con, "commandstats");
        let publishes = stats.get("cmdstat_publish").cloned().unwrap_or_default();
        assert!(publishes.starts_with("calls=3,"), "{publishes}");
    }
    // The markers go to both shards, so the controls published before them are all in.
    for s in [&mut a, &mut b] {
        let mut received = controls_until_markers(s).await;
        received.sort_by_key(|c| format!("{c:?}"));
        assert_eq!(received, sent, "each command exactly once");
    }
}

#[tokio::test]
async fn redis_sharded_register_namespace_on_every_shard() {
    let (s, servers) = sharded().await;
    let history = HistoryOptions {
        size: 2,
        ttl: Duration::from_secs(60),
        meta_ttl: Duration::from_secs(3600),
    };
    s.redis()
        .register_namespace("ns", Some(history))
        .await
        .unwrap();
    for server in &servers {
        let mut con = server.connection();
        let stored = gyre_tests::cmd(&mut con, &["GYRE.NAMESPACE", "GET", "ns"]);
        let stored: Vec<String> = gyre_tests::as_array(&stored)
            .iter()
            .map(|v| match v {
                gyre_tests::Value::Int(n) => n.to_string(),
                other => gyre_tests::as_string(other),
            })
            .collect();
        assert_eq!(
            stored,
            [
                "history_size",
                "2",
                "history_ttl",
                "60",
                "history_meta_ttl",
                "3600"
            ]
        );
        // A publish without HISTORY (e.g. redis-cli) on that shard uses the namespace.
        for data in ["a", "b", "c"] {
            gyre_tests::publish(&mut con, "ns:cli", data, &[]);
        }
        let h = gyre_tests::history(&mut con, "ns:cli", &[]);
        assert_eq!(h.data(), ["b", "c"]);
    }
}

#[tokio::test]
async fn redis_sharded_connect_names_the_failing_address() {
    let good = RedisServer::start();
    let missing = "redis+unix:///nonexistent/redis.sock";
    let settings = RedisSettings::standalone(vec![redis_address(&good), missing.into()]);
    let (tx, _events) = unbounded_channel();
    match RedisEngine::connect(settings, tx).await {
        Err(EngineError::Unavailable(e)) => assert!(e.contains(missing), "{e}"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("connected without the second shard"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sharded_one_shard_restart_resyncs_and_reregisters() {
    let (mut s, mut servers) = sharded().await;
    s.redis().register_namespace("", None).await.unwrap();
    for channel in [ON_FIRST, ON_SECOND] {
        s.engine.subscribe(channel).await.unwrap();
    }
    tokio::task::block_in_place(|| servers[1].restart());
    s.wait_for_resync(Duration::from_secs(20)).await;
    // The restarted shard got the namespaces again (it kept nothing).
    let mut con = servers[1].connection();
    let names = gyre_tests::cmd(&mut con, &["GYRE.NAMESPACE", "LIST"]);
    assert_eq!(gyre_tests::as_strings(&names), [""]);
    // Both shards deliver; the untouched one kept its stream.
    let first = s.publish(ON_FIRST, "first", &with_history()).await;
    let second = publish_when_back(&s, ON_SECOND, "second").await;
    assert_eq!((first.offset, second.offset), (1, 1));
    let mut seen = HashSet::new();
    while seen.len() < 2 {
        let event = next_non_resync(&mut s).await;
        seen.insert(publication(&event).3);
    }
    assert_eq!(seen, HashSet::from(["first".into(), "second".into()]));
}

/// Sentinel: after the primary dies and the replica is promoted, the engine subscribes every
/// channel on the new primary *before* it sends Resync, so a publication made on the new
/// primary right after the Resync is delivered; commands go to the new primary too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sentinel_failover_resubscribes_then_resyncs() {
    let mut group = tokio::task::block_in_place(|| gyre_tests::SentinelGroup::start("engine"));
    let settings = RedisSettings {
        topology: RedisTopology::Sentinel(SentinelSettings {
            addresses: group.sentinel_addresses(),
            master_name: "engine".into(),
            user: None,
            password: None,
            tls: TlsOptions::default(),
        }),
        ..RedisSettings::default()
    };
    let (tx, events) = unbounded_channel();
    let engine = RedisEngine::connect(settings, tx)
        .await
        .expect("connect through the sentinels");
    let mut s = Subject {
        engine: Engine::Redis(engine),
        events,
        server: None,
        cluster: None,
    };
    s.engine.subscribe("fo").await.unwrap();
    s.publish("fo", "before", &with_history()).await;
    assert_eq!(publication(&s.next_event().await).3, "before");

    let (new_primary, _) =
        tokio::task::block_in_place(|| group.kill_primary_and_wait_for_promotion());
    s.wait_for_resync(Duration::from_secs(20)).await;
    // Straight into the new primary, right after the Resync: the subscription is active.
    let mut con = group.server_on(new_primary).connection();
    let reply = gyre_tests::cmd(
        &mut con,
        &["GYRE.PUBLISH", "fo", "direct", "HISTORY", "10", "60"],
    );
    let offset = gyre_tests::as_int(&gyre_tests::as_array(&reply)[0]) as u64;
    assert_eq!(offset, 2, "the replica had the first publication");
    assert_eq!(publication(&next_non_resync(&mut s).await).3, "direct");
    let pos = publish_when_back(&s, "fo", "through the engine").await;
    assert_eq!(pos.offset, 3);
    assert_eq!(
        publication(&next_non_resync(&mut s).await).3,
        "through the engine"
    );
}
