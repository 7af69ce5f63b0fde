//! What the Redis engine adds, seen from a WebSocket client: publications made straight into
//! Redis (`GYRE.PUBLISH`, e.g. from redis-cli) reach subscribers with the right offset, gyre
//! registers its namespaces in Redis, several gyre nodes share one Redis, and a Redis restart
//! never makes a positioned subscriber silently miss a publication.

use std::time::{Duration, Instant};

use gyre_tests::ws_client::{EngineKind, Incoming, ProxyEnv, WAIT, WsClient, cmd};
use gyre_tests::{
    GyreBuilder, GyreProcess, Namespace, RedisServer, Value as RedisValue, as_array, as_int,
    as_string, cmd as redis_cmd,
};
use serde_json::json;

fn builder() -> GyreBuilder {
    GyreProcess::builder()
        .namespace(Namespace::full("chat", 100, 300))
        .namespace(Namespace::new("plain").allow_subscribe().allow_publish())
}

fn redis_env() -> ProxyEnv {
    ProxyEnv::start(EngineKind::Redis, builder())
}

/// `GYRE.PUBLISH <channel> <data>` without options, as from redis-cli.
fn redis_publish(con: &mut gyre_tests::Connection, channel: &str, data: &str) -> (i64, String) {
    let reply = redis_cmd(con, &["GYRE.PUBLISH", channel, data]);
    let parts = as_array(&reply);
    (as_int(&parts[0]), as_string(&parts[1]))
}

#[test]
fn redis_cli_publications_reach_websocket_subscribers() {
    let env = redis_env();
    let mut client = env.client("alice");
    client.send(&[
        cmd::subscribe(1, "chat:cli"),
        cmd::subscribe(2, "plain:cli"),
    ]);
    client.reply(1);
    client.reply(2);
    let (offset, epoch) = env.publish("chat:cli", json!({"from": "api"}));
    assert_eq!(offset, 1);

    let mut con = env.redis_connection();
    // The chat namespace's history applies without any option: offset 2, same epoch.
    assert_eq!(
        redis_publish(&mut con, "chat:cli", r#"{"from":"redis"}"#),
        (2, epoch.clone())
    );
    let pubs = client.publications("chat:cli", 2, WAIT);
    assert_eq!(
        pubs[1].json(),
        &json!({"push": {"channel": "chat:cli", "pub": {"data": {"from": "redis"}, "offset": 2}}})
    );
    // No history in plain: no offset.
    assert_eq!(
        redis_publish(&mut con, "plain:cli", r#"{"n":1}"#),
        (0, String::new())
    );
    let push = client.publications("plain:cli", 1, WAIT).remove(0);
    assert_eq!(
        push.json(),
        &json!({"push": {"channel": "plain:cli", "pub": {"data": {"n": 1}}}})
    );

    // And history through the client protocol shows both.
    client.send(&[cmd::history(3, "chat:cli", -1, None)]);
    let history = client.reply(3).reply.history.expect("history");
    assert_eq!(history.offset, 2);
    assert_eq!(history.epoch, epoch);
    assert_eq!(&history.publications[1].data[..], br#"{"from":"redis"}"#);
}

#[test]
fn gyre_registers_its_namespaces_in_redis() {
    let env = redis_env();
    let mut con = env.redis_connection();
    let get = |con: &mut gyre_tests::Connection, name: &str| -> Vec<(String, i64)> {
        let reply = redis_cmd(con, &["GYRE.NAMESPACE", "GET", name]);
        as_array(&reply)
            .chunks(2)
            .map(|kv| (as_string(&kv[0]), as_int(&kv[1])))
            .collect()
    };
    let chat = get(&mut con, "chat");
    assert_eq!(chat[0], ("history_size".to_owned(), 100), "{chat:?}");
    assert_eq!(chat[1], ("history_ttl".to_owned(), 300), "{chat:?}");
    assert_eq!(chat[2].0, "history_meta_ttl");
    assert_eq!(chat[2].1, 720 * 3600, "channel.history_meta_ttl's default");
    let plain = get(&mut con, "plain");
    assert_eq!(plain[0], ("history_size".to_owned(), 0), "{plain:?}");
    let names = redis_cmd(&mut con, &["GYRE.NAMESPACE", "LIST"]);
    let names: Vec<String> = as_array(&names).iter().map(as_string).collect();
    for name in ["chat", "plain"] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }
    assert_eq!(
        redis_cmd(&mut con, &["GYRE.NAMESPACE", "GET", "unknown"]),
        RedisValue::Nil
    );
}

/// Two gyre nodes on one Redis: a publication through either reaches subscribers of both, with
/// one sequence of offsets; presence is shared.
#[test]
fn two_nodes_share_one_redis() {
    let redis = RedisServer::builder().tcp().start();
    let a = builder().redis(&redis).start();
    let b = builder().redis(&redis).start();
    let connect = |gyre: &GyreProcess, user: &str| {
        let env_token =
            gyre_tests::ws_client::hs256_token(gyre.hmac_secret(), &json!({"sub": user}));
        let mut client = WsClient::connect(&gyre.ws_url(), gyre_tests::ws_client::Encoding::Json);
        client.send(&[cmd::connect(1, &env_token), cmd::subscribe(2, "chat:both")]);
        client.reply(2);
        client
    };
    let mut on_a = connect(&a, "alice");
    let mut on_b = connect(&b, "bob");
    a.api("publish", r#"{"channel":"chat:both","data":{"via":"a"}}"#);
    b.api("publish", r#"{"channel":"chat:both","data":{"via":"b"}}"#);
    on_b.send_text(r#"{"id":3,"publish":{"channel":"chat:both","data":{"via":"bob"}}}"#);
    on_b.reply(3);
    for client in [&mut on_a, &mut on_b] {
        let pubs = client.publications("chat:both", 3, WAIT);
        let got: Vec<(u64, serde_json::Value)> = pubs
            .iter()
            .map(|p| {
                (
                    p.publication().offset,
                    p.json()["push"]["pub"]["data"].clone(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (1, json!({"via": "a"})),
                (2, json!({"via": "b"})),
                (3, json!({"via": "bob"}))
            ]
        );
    }
    let stats = a.api("presence_stats", r#"{"channel":"chat:both"}"#);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stats).unwrap(),
        json!({"result": {"num_clients": 2, "num_users": 2}})
    );
}

// ------------------------------------------------------------------------------------------------
// Redis restarts.

/// `/api/publish`, retried while gyre reconnects to Redis; `(offset, epoch)`.
fn publish_when_possible(env: &ProxyEnv, channel: &str, data: serde_json::Value) -> (u64, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = env.api("publish", json!({"channel": channel, "data": data}));
        if let Some(offset) = reply["result"]["offset"].as_u64() {
            return (
                offset,
                reply["result"]["epoch"].as_str().unwrap().to_owned(),
            );
        }
        assert!(
            Instant::now() < deadline,
            "publish failed for 10 s after the restart: {reply}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Collects publication and unsubscribe pushes of `channel` until `done` says so or `timeout`.
fn collect(
    client: &mut WsClient,
    channel: &str,
    timeout: Duration,
    done: impl Fn(&[Incoming]) -> bool,
) -> Vec<Incoming> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    while !done(&got) && Instant::now() < deadline {
        if let Some(push) = client.next_push(Duration::from_millis(50))
            && push.push().channel == channel
        {
            got.push(push);
        }
    }
    got
}

fn unsubscribed_2500(pushes: &[Incoming]) -> bool {
    pushes.iter().any(|p| {
        p.push()
            .unsubscribe
            .as_ref()
            .is_some_and(|u| u.code == 2500 && u.reason == "insufficient state")
    })
}

fn offsets(pushes: &[Incoming]) -> Vec<u64> {
    pushes
        .iter()
        .filter_map(|p| p.push().r#pub.as_ref().map(|p| p.offset))
        .collect()
}

/// Redis with AOF restarts (history survives); right after, one publication goes straight into
/// Redis (likely before gyre has resubscribed) and one through the API. A restart may have lost
/// the last second of writes, so they continue the offsets under a new epoch (docs/module.md,
/// "When an epoch changes"): the positioned client is unsubscribed with 2500 so that it recovers,
/// and receives nothing of the new epoch as if it continued the old one.
#[test]
fn redis_restart_with_persistence_never_loses_a_publication_silently() {
    let redis = RedisServer::builder().tcp().appendonly().start();
    let mut env = ProxyEnv {
        gyre: builder().redis(&redis).start(),
        redis: Some(redis),
        engine: EngineKind::Redis,
    };
    let mut client = env.client("alice");
    client.send(&[cmd::subscribe(1, "chat:rs")]);
    assert!(client.reply(1).reply.subscribe.unwrap().positioned);
    let mut epoch = String::new();
    for n in 1..=3 {
        epoch = env.publish("chat:rs", json!({"n": n})).1;
    }
    client.publications("chat:rs", 3, WAIT);

    env.redis.as_mut().unwrap().restart();
    let mut con = env.redis_connection();
    assert_eq!(redis_publish(&mut con, "chat:rs", r#"{"n":4}"#).0, 4);
    assert_eq!(publish_when_possible(&env, "chat:rs", json!({"n": 5})).0, 5);

    let pushes = collect(&mut client, "chat:rs", Duration::from_secs(8), |got| {
        unsubscribed_2500(got) || offsets(got) == [4, 5]
    });
    assert!(
        unsubscribed_2500(&pushes),
        "no 2500 after the epoch changed: {pushes:?}"
    );
    assert_eq!(offsets(&pushes), [0u64; 0], "{pushes:?}");
    assert!(client.closed().is_none());
    // Recovering from the old position is refused: same offsets, other epoch.
    client.send(&[cmd::recover(2, "chat:rs", 3, &epoch)]);
    let result = client.reply(2).reply.subscribe.expect("subscribe");
    assert!(!result.recovered && result.was_recovering, "{result:?}");
    assert_eq!(result.offset, 5);
    assert_ne!(result.epoch, epoch);
}

/// Redis without persistence restarts: its streams are gone, so the next publication starts a
/// new epoch. A positioned client must be unsubscribed with 2500 (it recovers and learns the
/// new epoch); continuing to deliver would mix two streams.
#[test]
fn redis_restart_without_persistence_unsubscribes_positioned_clients() {
    let mut env = redis_env();
    let mut client = env.client("alice");
    client.send(&[
        cmd::subscribe(1, "chat:lost"),
        cmd::subscribe(2, "plain:lost"),
    ]);
    client.reply(1);
    client.reply(2);
    let (_, epoch) = env.publish("chat:lost", json!({"n": 1}));
    client.publications("chat:lost", 1, WAIT);

    env.redis.as_mut().unwrap().restart();
    let (offset, new_epoch) = publish_when_possible(&env, "chat:lost", json!({"n": "new"}));
    assert_eq!(offset, 1, "Redis lost the stream");
    assert_ne!(new_epoch, epoch);

    let pushes = collect(
        &mut client,
        "chat:lost",
        Duration::from_secs(8),
        unsubscribed_2500,
    );
    assert!(unsubscribed_2500(&pushes), "{pushes:?}");
    assert_eq!(
        offsets(&pushes),
        [0u64; 0],
        "nothing of the new stream: {pushes:?}"
    );

    // Unpositioned subscriptions just keep receiving once gyre has resubscribed.
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let reply = env.api(
            "publish",
            json!({"channel": "plain:lost", "data": {"ping": 1}}),
        );
        assert_eq!(reply, json!({"result": {}}));
        if let Some(push) = client.next_push(Duration::from_millis(200))
            && push.push().channel == "plain:lost"
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "plain:lost never delivered again"
        );
    }
    // The client can subscribe again, recovering: not recovered (new epoch), position 1.
    client.send(&[cmd::recover(3, "chat:lost", 1, &epoch)]);
    let result = client.reply(3).reply.subscribe.expect("subscribe");
    assert!(!result.recovered && result.was_recovering, "{result:?}");
    assert_eq!((result.offset, result.epoch), (1, new_epoch));
}

/// gyre's namespace registration must survive a Redis that lost its data (restart without
/// persistence): otherwise a `redis-cli GYRE.PUBLISH chat:…` falls back to the module default
/// (no history), and positioned subscribers get a publication without offset that no history
/// or recovery will ever show (README: "redis-cli GYRE.PUBLISH chat:room … gets the chat
/// namespace's history without any option").
#[test]
fn namespaces_are_registered_again_after_redis_lost_them() {
    let mut env = redis_env();
    let mut client = env.client("alice");
    client.send(&[cmd::subscribe(1, "chat:reg")]);
    client.reply(1);
    env.redis.as_mut().unwrap().restart();
    // gyre is back on Redis once an API publication works.
    publish_when_possible(&env, "chat:other", json!({"n": 1}));
    let mut con = env.redis_connection();
    gyre_tests::wait_until(Duration::from_secs(5), "GYRE.NAMESPACE GET chat", || {
        redis_cmd(&mut con, &["GYRE.NAMESPACE", "GET", "chat"]) != RedisValue::Nil
    });
    let (offset, _) = redis_publish(&mut con, "chat:reg", r#"{"n":1}"#);
    assert_eq!(
        offset, 1,
        "redis-cli publication without the namespace's history"
    );
}

/// Server API `subscribe`, `unsubscribe`, `refresh` and `disconnect` called on node B reach a
/// client connected to node A (through the control channel in Redis).
#[test]
fn api_actions_reach_clients_on_another_node() {
    let redis = RedisServer::builder().tcp().start();
    let a = builder().redis(&redis).start();
    let b = builder().redis(&redis).start();
    let token = gyre_tests::ws_client::hs256_token(a.hmac_secret(), &json!({"sub": "carol"}));
    let mut carol = WsClient::connect(&a.ws_url(), gyre_tests::ws_client::Encoding::Json);
    carol.send(&[cmd::connect(1, &token), cmd::subscribe(2, "chat:mine")]);
    carol.reply(2);
    let next_push = |client: &mut WsClient, what: &str| {
        loop {
            let push = client
                .next_push(WAIT)
                .unwrap_or_else(|| panic!("no {what} push"));
            let json = push.json().clone();
            // Join/leave of carol herself may come first.
            if json["push"]["join"].is_null() && json["push"]["leave"].is_null() {
                return json;
            }
        }
    };

    b.api("subscribe", r#"{"user":"carol","channel":"chat:server"}"#);
    let subscribed = next_push(&mut carol, "subscribe");
    assert_eq!(subscribed["push"]["channel"], "chat:server", "{subscribed}");
    assert_eq!(
        subscribed["push"]["subscribe"]["positioned"], true,
        "{subscribed}"
    );
    b.api("publish", r#"{"channel":"chat:server","data":{"n":1}}"#);
    let publication = next_push(&mut carol, "publication");
    assert_eq!(
        publication["push"]["pub"]["data"],
        json!({"n": 1}),
        "{publication}"
    );

    b.api("unsubscribe", r#"{"user":"carol","channel":"chat:mine"}"#);
    let unsubscribed = next_push(&mut carol, "unsubscribe");
    assert_eq!(
        unsubscribed["push"],
        json!({"channel": "chat:mine", "unsubscribe": {"code": 2000, "reason": "server unsubscribe"}})
    );

    // Another user's disconnect leaves carol alone; hers closes with the given code.
    b.api("disconnect", r#"{"user":"dave"}"#);
    carol.stay_open(Duration::from_millis(300));
    b.api(
        "disconnect",
        r#"{"user":"carol","disconnect":{"code":4001,"reason":"moved"}}"#,
    );
    let close = carol.expect_close(WAIT);
    assert_eq!((close.code, close.reason.as_str()), (4001, "moved"));

    // refresh with expired: true ends the connection with 3005.
    let mut again = WsClient::connect(&a.ws_url(), gyre_tests::ws_client::Encoding::Json);
    again.send(&[cmd::connect(1, &token)]);
    again.reply(1);
    b.api("refresh", r#"{"user":"carol","expired":true}"#);
    assert_eq!(again.expect_close(WAIT).code, 3005);
}
