//! Gyre's chaos suite: one `redis-server` with the module, two `gyre` nodes on it, centrifuge-js
//! subscribers on both (several per node, over three channels), publishers through both nodes'
//! APIs recording every acknowledgement, and one fault per test while publications flow:
//!
//! 1. Redis's PUB/SUB connections killed again and again (`CLIENT KILL TYPE pubsub`);
//! 2. a gyre node killed -9 and started again (its clients reconnect to the other node);
//! 3. `CLIENT PAUSE` of every Redis client for 2 s;
//! 4. Redis killed -9 and started again from its AOF;
//! 5. Redis without persistence started again (every channel gets a new epoch);
//! 6. a subscriber that stops reading among many: cut off with 3008 with its queue bounded, it
//!    recovers everything from history when it comes back, and the others get everything.
//!
//! Each run is checked by [`ChaosRecord`]: no silent gap (every acknowledged publication reached
//! every subscriber of its channel, or a `recovered: false` after it announced the loss), no
//! (epoch, offset) for two publications, no duplicate, offsets rising within an epoch, and the
//! last publication of every channel reached every subscriber. Each test also checks that its
//! fault happened.

use std::time::Duration;

use gyre_tests::ws_client::{
    ABNORMAL_CLOSE, Encoding, WsClient, WsOptions, cmd as ws_cmd, hs256_token, unix_now,
};
use gyre_tests::*;
use serde_json::{Value as Json, json};

fn redis_server() -> RedisServer {
    RedisServer::builder().tcp().start()
}

fn redis_with_aof() -> RedisServer {
    RedisServer::builder().tcp().appendonly().start()
}

/// Lines of `gyre`'s log that contain `needle`.
fn log_count(gyre: &GyreProcess, needle: &str) -> usize {
    gyre.log().matches(needle).count()
}

const RESUBSCRIBED: &str = "resubscribed, resyncing subscriptions";

/// Every subscription was told `recovered: false` at least once after its first subscribe.
fn assert_every_subscription_told(outcome: &ChaosOutcome) {
    let told = outcome.told();
    assert_eq!(
        told.len(),
        outcome.record.subscribers.len(),
        "every subscription must learn of the new epoch; told: {told:?}"
    );
}

/// `kill` times: `CLIENT KILL TYPE pubsub` (both nodes' subscription connections), then wait until
/// both subscribed again, while publications go on.
#[test]
fn redis_pubsub_connections_killed_repeatedly() {
    const KILLS: usize = 4;
    require_node_sdk();
    let mut env = ChaosEnv::start(redis_server(), |b| b);
    let scenario = ChaosScenario::new(&["pubsub-a", "pubsub-b", "pubsub-c"]);
    let outcome = scenario.run(&mut env, |env| {
        let subscribed = env.pubsub_clients();
        assert!(subscribed >= 2, "both nodes subscribe: {subscribed}");
        let mut con = env.redis.connection();
        for _ in 0..KILLS {
            let killed = as_int(&cmd(&mut con, &["CLIENT", "KILL", "TYPE", "pubsub"]));
            assert!(killed >= 2, "killed {killed} PUB/SUB connections");
            wait_until(
                Duration::from_secs(15),
                "both nodes subscribed again",
                || env.pubsub_clients() >= subscribed,
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    outcome.check();
    for (i, node) in env.nodes.iter().enumerate() {
        let n = log_count(node, RESUBSCRIBED);
        assert!(n >= KILLS, "node {i} resubscribed {n} times, not {KILLS}");
    }
}

/// Node 0 dies (`kill -9`); its clients reconnect to node 1 and recover there; node 0 starts
/// again on its port and publishing through it resumes.
#[test]
fn gyre_node_killed_and_restarted() {
    require_node_sdk();
    let mut env = ChaosEnv::start(redis_server(), |b| b);
    let scenario = ChaosScenario::new(&["node-a", "node-b", "node-c"]);
    let outcome = scenario.run(&mut env, |env| {
        env.nodes[0].kill();
        // All six clients end up on node 1 before node 0 comes back.
        wait_until(
            Duration::from_secs(20),
            "node 0's clients reconnected to node 1",
            || metric(&env.nodes[1], "gyre_node_num_clients") >= 6.0,
        );
        env.nodes[0].respawn();
    });
    let summary = outcome.check();
    for (who, connects) in outcome.connects() {
        if who.starts_with("n0") {
            assert!(connects >= 2, "{who} connected {connects} times");
        }
    }
    assert!(
        summary.unacked > 0,
        "publishing through the dead node failed"
    );
}

/// `CLIENT PAUSE 2000 ALL`: publications made meanwhile wait (or fail); nothing is lost silently.
#[test]
fn redis_client_pause() {
    require_node_sdk();
    let mut env = ChaosEnv::start(redis_server(), |b| b);
    let scenario = ChaosScenario::new(&["pause-a", "pause-b", "pause-c"]);
    let mut paused_at = 0;
    let outcome = scenario.run(&mut env, |env| {
        let mut con = env.redis.connection();
        paused_at = now_ms();
        cmd(&mut con, &["CLIENT", "PAUSE", "2000", "ALL"]);
        std::thread::sleep(Duration::from_millis(2500));
    });
    outcome.check();
    // The pause met publishing: a publication was sent while every client was paused.
    let during = |sent: i64| sent > paused_at && sent < paused_at + 1500;
    let sent_during = outcome
        .record
        .acked
        .iter()
        .map(|a| a.sent_ms)
        .chain(outcome.record.unacked.iter().map(|u| u.sent_ms))
        .filter(|t| during(*t))
        .count();
    assert!(sent_during > 0, "nothing was published during the pause");
}

/// `kill -9` of Redis, down for a second, then started again on its port (with its AOF, if any).
fn kill_and_restart_redis(env: &mut ChaosEnv) {
    env.redis.crash();
    std::thread::sleep(Duration::from_millis(1000));
    env.redis.respawn();
}

/// Redis with `appendonly yes` is killed -9 and started again on its AOF: the history survives
/// (offsets go on), every channel continues under a new epoch (the module's "When an epoch
/// changes"), and every subscriber is told.
#[test]
fn redis_killed_and_restarted_from_aof() {
    require_node_sdk();
    let mut env = ChaosEnv::start(redis_with_aof(), |b| b);
    let scenario = ChaosScenario::new(&["aof-a", "aof-b", "aof-c"]);
    let outcome = scenario.run(&mut env, kill_and_restart_redis);
    outcome.check();
    for channel in scenario.channels() {
        let epochs = outcome.epochs(channel);
        assert_eq!(epochs.len(), 2, "{channel}: a new epoch after the restart");
        let before = outcome
            .acked_offsets(channel, &epochs[0])
            .into_iter()
            .max()
            .unwrap();
        let after = outcome
            .acked_offsets(channel, &epochs[1])
            .into_iter()
            .min()
            .unwrap();
        assert!(
            after > before / 2,
            "{channel}: the AOF kept the history, offsets go on (up to {before} before, from \
             {after} after)"
        );
    }
    assert_every_subscription_told(&outcome);
}

/// Redis without persistence is killed and started again: every channel's history is gone, its
/// next publication starts a new epoch at offset 1, and every subscriber is told
/// `recovered: false`; nothing published after that is lost.
#[test]
fn redis_without_persistence_restarted() {
    require_node_sdk();
    let mut env = ChaosEnv::start(redis_server(), |b| b);
    let scenario = ChaosScenario::new(&["fresh-a", "fresh-b", "fresh-c"]);
    let outcome = scenario.run(&mut env, kill_and_restart_redis);
    outcome.check();
    for channel in scenario.channels() {
        let epochs = outcome.epochs(channel);
        assert_eq!(epochs.len(), 2, "{channel}: a new epoch after the restart");
        let old_top = outcome
            .acked_offsets(channel, &epochs[0])
            .into_iter()
            .max()
            .unwrap();
        let new_first = outcome
            .acked_offsets(channel, &epochs[1])
            .into_iter()
            .min()
            .unwrap();
        assert!(
            new_first < old_top,
            "{channel}: offsets start over in the new epoch (old top {old_top}, new from {new_first})"
        );
    }
    assert_every_subscription_told(&outcome);
}

// ------------------------------------------------------------------------------------------------
// The slow subscriber.

/// Bytes a connection may have queued (`client.queue_max_size`) in the slow-subscriber test.
const QUEUE_MAX: usize = 64 * 1024;
/// The flood the slow subscriber's channel gets: publications of about `FLOOD_PAD` bytes.
const FLOOD: usize = 200;
const FLOOD_PAD: usize = 24_000;

/// The `id` of a publication's JSON data (the whole data as text when it has none).
fn data_id(data: &[u8]) -> String {
    match serde_json::from_slice::<Json>(data) {
        Ok(v) => v["id"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| v.to_string()),
        Err(_) => String::from_utf8_lossy(data).into_owned(),
    }
}

/// Publication pushes of `channel` among `messages`, as [`Seen::Publication`]s.
fn seen_publications(messages: &[ws_client::Incoming], channel: &str) -> Vec<Seen> {
    messages
        .iter()
        .filter_map(|m| m.reply.push.as_ref())
        .filter(|p| p.channel == channel)
        .filter_map(|p| p.r#pub.as_ref())
        .map(|p| Seen::Publication {
            t_ms: now_ms(),
            offset: p.offset,
            id: data_id(&p.data),
        })
        .collect()
}

/// What the slow subscriber saw after it came back, and the close codes of the connections
/// that ended before it got the last publication.
struct Comeback {
    seen: Vec<Seen>,
    closes: Vec<u16>,
}

/// The slow subscriber coming back as an SDK does: it connects to `url`, recovers `channel` from
/// `from`, and reads until the channel's last publication (`final-<channel>`, from the script)
/// arrives. A connection that ends meanwhile is opened again from the last publication received:
/// a recovery reply bigger than `queue_max_size` that the socket does not take at once counts
/// against the queue, so the next publication can close the connection as slow after the reply
/// arrived.
fn come_back(url: &str, token: &str, channel: &str, mut from: Position) -> Comeback {
    let final_id = format!("final-{channel}");
    let mut out = Comeback {
        seen: Vec::new(),
        closes: Vec::new(),
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while std::time::Instant::now() < deadline && out.closes.len() < 20 {
        let mut back = WsClient::connect(url, Encoding::Json);
        back.call(ws_cmd::connect(1, token));
        let reply = back.call(ws_cmd::recover(2, channel, from.offset, &from.epoch));
        let result = reply.subscribe.expect("subscribe result");
        out.seen.push(Seen::Subscribed {
            t_ms: now_ms(),
            was_recovering: true,
            recovered: result.recovered,
            position: Position::new(&result.epoch, result.offset),
        });
        from = Position::new(&result.epoch, result.offset);
        let mut take = |offset: u64, data: &[u8], out: &mut Comeback| {
            let id = data_id(data);
            let done = id == final_id;
            out.seen.push(Seen::Publication {
                t_ms: now_ms(),
                offset,
                id,
            });
            from.offset = offset;
            done
        };
        let mut done = false;
        for p in &result.publications {
            done |= take(p.offset, &p.data, &mut out);
        }
        while !done && std::time::Instant::now() < deadline {
            if let Some(message) = back.next_push(Duration::from_millis(200)) {
                let push = message.push();
                if let (true, Some(p)) = (push.channel == channel, push.r#pub.as_ref()) {
                    done = take(p.offset, &p.data, &mut out);
                }
            } else if let Some(close) = back.closed() {
                out.closes.push(close.code);
                break;
            }
        }
        if done {
            return out;
        }
    }
    out
}

/// Client ids in the presence of `channel`, through `gyre`'s API.
fn presence(gyre: &GyreProcess, channel: &str) -> Vec<String> {
    let reply: Json =
        serde_json::from_str(&gyre.api("presence", &json!({"channel": channel}).to_string()))
            .expect("presence reply");
    reply["result"]["presence"]
        .as_object()
        .unwrap_or_else(|| panic!("presence of {channel}: {reply}"))
        .keys()
        .cloned()
        .collect()
}

/// `FLOOD` publications to `channel` through `gyre`'s batch API, 16 per request; their
/// acknowledgements.
fn flood(gyre: &GyreProcess, channel: &str) -> Vec<Acked> {
    let pad = "x".repeat(FLOOD_PAD);
    let mut acks = Vec::new();
    for start in (0..FLOOD).step_by(16) {
        let ids: Vec<String> = (start..FLOOD.min(start + 16))
            .map(|n| format!("flood-{n}"))
            .collect();
        let commands: Vec<Json> = ids
            .iter()
            .map(|id| json!({"publish": {"channel": channel, "data": {"id": id, "pad": pad}}}))
            .collect();
        let sent_ms = now_ms();
        let reply: Json =
            serde_json::from_str(&gyre.api("batch", &json!({"commands": commands}).to_string()))
                .expect("batch reply");
        for (id, r) in ids.iter().zip(json_array(&reply["replies"])) {
            let p = &r["publish"];
            acks.push(Acked {
                channel: channel.to_owned(),
                id: id.clone(),
                position: Position::new(
                    p["epoch"].as_str().unwrap_or_else(|| panic!("{r}")),
                    p["offset"].as_u64().unwrap_or_else(|| panic!("{r}")),
                ),
                sent_ms,
            });
        }
    }
    acks
}

/// Among twelve centrifuge-js subscriptions, a raw client on node 0 subscribes and stops reading
/// (small socket buffers, `queue_max_size` 64 KiB) while its channel gets ~5 MB. Node 0 cuts it
/// off as slow (its 3008 counter says so); reading again, the client finds a contiguous prefix of
/// the publications, then the end of the connection. Node 0's memory grows by far less than the
/// flood; every other subscriber gets everything (a centrifuge-js client the busy machine kept
/// from reading may be cut off too, and must then recover); and the slow one, coming back on node
/// 1, recovers every publication it missed from history (`recovered: true`), then gets the live
/// ones.
#[test]
fn slow_subscriber_is_cut_off_and_catches_up_from_history() {
    require_node_sdk();
    let mut env = ChaosEnv::start(redis_server(), |b| {
        b.client_option(&format!("queue_max_size = {QUEUE_MAX}"))
            // Everything the slow subscriber missed, the script's publications included.
            .client_option("recovery_max_publication_limit = 1000")
    });
    let scenario = ChaosScenario::new(&["slow-a", "slow-b", "slow-c"]);
    let channel = scenario.channels()[0].clone();
    let slow_token = hs256_token(
        env.nodes[0].hmac_secret(),
        &json!({"sub": "slow", "exp": unix_now() + 3600}),
    );

    // The slow subscriber: it reads its subscribe reply, then nothing until node 0 cut it off.
    let mut slow = WsClient::connect_with(
        &env.nodes[0].ws_url(),
        WsOptions {
            receive_buffer: Some(4096),
            max_segment: Some(536),
            ..WsOptions::default()
        },
    )
    .expect("handshake");
    slow.send(&[
        ws_cmd::connect(1, &slow_token),
        ws_cmd::subscribe(2, &channel),
    ]);
    let slow_client = slow.reply(1).reply.connect.expect("connect result").client;
    let subscribe = slow.reply(2).reply.subscribe.expect("subscribe result");
    assert!(subscribe.recoverable, "{subscribe:?}");
    let mut seen = vec![Seen::Subscribed {
        t_ms: now_ms(),
        was_recovering: false,
        recovered: false,
        position: Position::new(&subscribe.epoch, subscribe.offset),
    }];

    let mut flood_acks = Vec::new();
    let mut cut_off_with = None;
    let mut rss_growth_kib = 0;
    let mut reader = None;
    let mut outcome = scenario.run(&mut env, |env| {
        let pid = env.nodes[0].pid().expect("node 0 runs");
        let rss_before = rss_kib(pid);
        let (env_ref, slow_ref, channel, slow_client) = (&*env, &mut slow, &channel, &slow_client);
        let close = std::thread::scope(|scope| {
            // Reads again once node 0 cut it off (it left the channel's presence): what was in
            // flight, then the end of the connection.
            let watcher = scope.spawn(move || {
                wait_until(
                    Duration::from_secs(60),
                    "node 0 cut the slow subscriber off",
                    || !presence(&env_ref.nodes[0], channel).contains(slow_client),
                );
                slow_ref.expect_close(Duration::from_secs(10))
            });
            flood_acks = flood(&env_ref.nodes[1], channel);
            watcher.join().expect("slow subscriber watcher")
        });
        cut_off_with = Some((close.code, close.reason));
        let got = seen_publications(&slow.drain(), channel);
        rss_growth_kib = rss_kib(pid).saturating_sub(rss_before);
        seen.extend(got);

        // Back, on the other node, from the last publication it got.
        let last = seen
            .iter()
            .rev()
            .find_map(|s| match s {
                Seen::Publication { offset, .. } => Some(*offset),
                Seen::Subscribed { .. } => None,
            })
            .unwrap_or(subscribe.offset);
        let (url, token) = (env.nodes[1].ws_url(), slow_token.clone());
        let from = Position::new(&subscribe.epoch, last);
        let channel = channel.clone();
        reader = Some(std::thread::spawn(move || {
            come_back(&url, &token, &channel, from)
        }));
    });
    let Comeback {
        seen: again,
        closes,
    } = reader.expect("the fault ran").join().expect("slow reader");
    let recovered = again.iter().all(|s| match s {
        Seen::Subscribed { recovered, .. } => *recovered,
        Seen::Publication { .. } => true,
    });
    let before_cut = seen
        .iter()
        .filter(|s| matches!(s, Seen::Publication { .. }))
        .count();
    let recovered_count = again
        .iter()
        .filter(|s| matches!(s, Seen::Publication { .. }))
        .count();
    seen.extend(again);

    outcome.record.acked.extend(flood_acks);
    outcome.record.subscribers.push(SubscriberLog {
        who: "slow".into(),
        channel: channel.clone(),
        seen,
    });
    let summary = outcome.check();

    // Node 0 cut it off as slow: when the overflow met a write in progress, that write times out
    // (`websocket.write_timeout`) half done and no close frame can follow it (1006); otherwise
    // the client reads 3008 "slow" after what was in flight.
    // Node 0 cut it off as slow. When the overflow met a write in progress, that write times out
    // (`websocket.write_timeout`) half done and no close frame can follow it (1006); otherwise
    // the client reads 3008 "slow" after what was in flight.
    let slow_cuts = metric(
        &env.nodes[0],
        "gyre_client_disconnects_total{code=\"3008\"}",
    );
    assert!(
        slow_cuts >= 1.0,
        "node 0 counted {slow_cuts} slow disconnects"
    );
    let (code, reason) = cut_off_with.expect("the slow subscriber's connection ended");
    assert!(
        (code, reason.as_str()) == (3008, "slow") || code == ABNORMAL_CLOSE,
        "the slow subscriber's connection ended with {code} {reason:?}"
    );
    assert!(
        before_cut < FLOOD / 2,
        "the slow subscriber got {before_cut} of {FLOOD} before it was cut off"
    );
    assert!(recovered, "the slow subscriber recovers from history");
    // Queued for the slow client, the flood would stay in memory until it read again.
    let flood_kib = (FLOOD * FLOOD_PAD / 1024) as u64;
    assert!(
        rss_growth_kib < flood_kib / 2,
        "node 0 grew by {rss_growth_kib} KiB during a flood of {flood_kib} KiB"
    );
    eprintln!(
        "slow subscriber: {before_cut} publications before the cut, {recovered_count} after \
         reconnecting (connections closed meanwhile: {closes:?}; cut off with {code}); node 0 \
         RSS +{rss_growth_kib} KiB during a {flood_kib} KiB flood; other clients disconnected: \
         {:?}; {summary}",
        outcome.disconnect_codes()
    );
}
