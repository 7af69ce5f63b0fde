//! The server API's `info` and `channels` answer for the whole cluster: two `gyre` nodes on one
//! Redis with the module, clients on both, and each node's API counts the other's too
//! (announcements and surveys over the engine's control channel). `channels` filters with
//! Centrifugo's glob `pattern`.

use std::time::Duration;

use gyre_proto::Encoding;
use gyre_tests::ws_client::{WsClient, cmd, hs256_token, unix_now};
use gyre_tests::{GyreProcess, Namespace, RedisServer, http_request, wait_until};
use serde_json::{Value, json};

fn node(redis: &RedisServer, name: &str) -> GyreProcess {
    GyreProcess::builder()
        .namespace(Namespace::full("chat", 10, 300))
        .namespace(Namespace::new("news").allow_subscribe())
        .extra_toml(&format!("[node]\nname = \"{name}\""))
        .redis(redis)
        .start()
}

/// A client of `gyre` connected as `user` and subscribed to `channels`.
fn subscriber(gyre: &GyreProcess, user: &str, channels: &[&str]) -> WsClient {
    let token = hs256_token(
        gyre.hmac_secret(),
        &json!({"sub": user, "exp": unix_now() + 3600}),
    );
    let mut client = WsClient::connect(&gyre.ws_url(), Encoding::Json);
    let reply = client.call(cmd::connect(0, &token));
    assert!(reply.connect.is_some(), "connect: {reply:?}");
    for channel in channels {
        let id = client.next_id();
        let reply = client.call(cmd::subscribe(id, channel));
        assert!(reply.error.is_none(), "subscribe {channel}: {reply:?}");
    }
    client
}

fn api(gyre: &GyreProcess, method: &str, body: Value) -> Value {
    let reply: Value = serde_json::from_str(&gyre.api(method, &body.to_string())).unwrap();
    assert!(reply["error"].is_null(), "{method}: {reply}");
    reply["result"].clone()
}

fn counts(result: &Value) -> Vec<(String, u64)> {
    let mut counts: Vec<(String, u64)> = result["channels"]
        .as_object()
        .unwrap_or_else(|| panic!("no channels in {result}"))
        .iter()
        .map(|(channel, info)| (channel.clone(), info["num_clients"].as_u64().unwrap()))
        .collect();
    counts.sort();
    counts
}

#[test]
fn info_and_channels_count_every_node() {
    let redis = RedisServer::builder().tcp().start();
    let a = node(&redis, "node-a");
    let b = node(&redis, "node-b");
    let _on_a = [
        subscriber(&a, "alice", &["chat:lobby", "chat:a-only"]),
        subscriber(&a, "bob", &["chat:lobby", "news:today"]),
    ];
    let _on_b = [subscriber(&b, "carol", &["chat:lobby", "news:today"])];

    // Both nodes list both, each with its own figures (announced every 3 s).
    for gyre in [&a, &b] {
        wait_until(Duration::from_secs(10), "info lists both nodes", || {
            let nodes = api(gyre, "info", json!({}))["nodes"].clone();
            let by_name = |name: &str| {
                nodes
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|n| n["name"] == name)
                    .cloned()
            };
            match (by_name("node-a"), by_name("node-b")) {
                (Some(na), Some(nb)) => {
                    na["num_clients"] == 2
                        && na["num_subs"] == 4
                        && na["num_channels"] == 3
                        && nb["num_clients"] == 1
                        && nb["num_subs"] == 2
                        && nb["version"].is_string()
                }
                _ => false,
            }
        });
    }

    // channels: subscribers of both nodes, summed per channel, asked on either node.
    let everything = vec![
        ("chat:a-only".to_owned(), 1),
        ("chat:lobby".to_owned(), 3),
        ("news:today".to_owned(), 2),
    ];
    for gyre in [&a, &b] {
        assert_eq!(counts(&api(gyre, "channels", json!({}))), everything);
        assert_eq!(
            counts(&api(gyre, "channels", json!({"pattern": "chat:*"}))),
            everything[..2].to_vec()
        );
        assert_eq!(
            counts(&api(gyre, "channels", json!({"pattern": "{news,sport}:*"}))),
            everything[2..].to_vec()
        );
        assert_eq!(
            counts(&api(gyre, "channels", json!({"pattern": "chat:?-only"}))),
            everything[..1].to_vec()
        );
        assert!(counts(&api(gyre, "channels", json!({"pattern": "nothing*"}))).is_empty());
    }

    // A pattern that does not parse is a bad request, not an empty list.
    let (status, body) = http_request(
        a.internal_port(),
        "POST",
        "/api/channels",
        &[("X-API-Key", a.api_key())],
        br#"{"pattern":"chat:[a-"}"#,
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let reply: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["error"]["code"], 107, "{reply}");

    // A node that is gone no longer counts: B stops, A's answer shrinks to its own.
    drop(_on_b);
    drop(b);
    wait_until(
        Duration::from_secs(15),
        "B's subscribers leave the count",
        || {
            counts(&api(&a, "channels", json!({})))
                == vec![
                    ("chat:a-only".to_owned(), 1),
                    ("chat:lobby".to_owned(), 2),
                    ("news:today".to_owned(), 1),
                ]
        },
    );
}
