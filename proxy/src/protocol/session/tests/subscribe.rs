//! Who may subscribe, in docs/protocol.md#subscribe-permissions' order (token, user-limited
//! channel, namespace permissions, insecure mode), the limits, recovery, and the server's
//! signals about subscriptions.

use serde_json::json;

use super::*;
use gyre_proto::codes;

async fn subscribe(sim: &mut Sim, request: Value) -> Value {
    sim.call(json!({"id": 2, "subscribe": request})).await
}

#[tokio::test]
async fn a_channel_of_an_unknown_namespace_is_refused_with_102() {
    let mut sim = Sim::open(&node(""));
    sim.connect("alice", json!({})).await;
    let reply = subscribe(&mut sim, json!({"channel": "nowhere:x"})).await;
    assert_eq!(error_code(&reply), u64::from(codes::UNKNOWN_CHANNEL.code));
}

#[tokio::test]
async fn a_namespace_that_does_not_let_clients_subscribe_refuses_with_103() {
    let node = node("");
    let mut sim = Sim::open(&node);
    sim.connect("alice", json!({})).await;
    let reply = subscribe(&mut sim, json!({"channel": "locked:x"})).await;
    assert_eq!(error_code(&reply), u64::from(codes::PERMISSION_DENIED.code));
    assert_eq!(node.hub.num_channels(), 0);
}

#[tokio::test]
async fn a_subscription_token_comes_first_and_opens_a_locked_namespace() {
    let mut sim = Sim::open(&node(""));
    sim.connect("alice", json!({})).await;
    let sub = token(&json!({"sub": "alice", "channel": "locked:x"}));
    let reply = subscribe(&mut sim, json!({"channel": "locked:x", "token": sub})).await;
    assert_eq!(error_code(&reply), 0, "{reply}");
}

#[tokio::test]
async fn a_subscription_token_for_another_channel_or_user_ends_the_connection() {
    let node = node("");
    for claims in [
        json!({"sub": "alice", "channel": "locked:other"}),
        json!({"sub": "mallory", "channel": "locked:x"}),
    ] {
        let mut sim = Sim::open(&node);
        sim.connect("alice", json!({})).await;
        let end = sim
            .send(json!({"id": 2, "subscribe": {"channel": "locked:x", "token": token(&claims)}}))
            .await;
        assert_eq!(end, Err(codes::INVALID_TOKEN), "{claims}");
    }
    assert_eq!(node.hub.num_channels(), 0);
}

#[tokio::test]
async fn a_subscription_token_with_a_wrong_signature_is_refused_with_103() {
    let mut sim = Sim::open(&node(""));
    sim.connect("alice", json!({})).await;
    let forged = token_signed_with(
        "not the secret",
        &json!({"sub": "alice", "channel": "chat:a"}),
    );
    // Even where the namespace would have let the client in without it.
    let reply = subscribe(&mut sim, json!({"channel": "chat:a", "token": forged})).await;
    assert_eq!(error_code(&reply), u64::from(codes::PERMISSION_DENIED.code));
}

#[tokio::test]
async fn a_user_limited_channel_admits_only_the_users_it_lists() {
    let node = node("");
    let mut listed = Sim::open(&node);
    listed.connect("alice", json!({})).await;
    let reply = subscribe(&mut listed, json!({"channel": "dialog:x#alice,bob"})).await;
    assert_eq!(error_code(&reply), 0, "{reply}");

    let mut other = Sim::open(&node);
    other.connect("carol", json!({})).await;
    let reply = subscribe(&mut other, json!({"channel": "dialog:x#alice,bob"})).await;
    assert_eq!(error_code(&reply), u64::from(codes::PERMISSION_DENIED.code));
}

#[tokio::test]
async fn anonymous_clients_need_the_namespace_to_allow_anonymous_subscribers() {
    let node = node("[client]\nallow_anonymous_connect_without_token = true");
    let mut sim = Sim::open(&node);
    sim.call(json!({"id": 1, "connect": {}})).await;
    let reply = subscribe(&mut sim, json!({"channel": "chat:a"})).await;
    assert_eq!(error_code(&reply), u64::from(codes::PERMISSION_DENIED.code));
}

#[tokio::test]
async fn insecure_mode_lets_anyone_subscribe_anywhere_known() {
    let node = node("[client]\ninsecure = true");
    let mut sim = Sim::open(&node);
    sim.call(json!({"id": 1, "connect": {}})).await;
    let reply = subscribe(&mut sim, json!({"channel": "locked:x"})).await;
    assert_eq!(error_code(&reply), 0, "{reply}");
    let reply = sim
        .call(json!({"id": 3, "subscribe": {"channel": "nowhere:x"}}))
        .await;
    assert_eq!(error_code(&reply), u64::from(codes::UNKNOWN_CHANNEL.code));
}

#[tokio::test]
async fn subscribing_twice_is_refused_with_105() {
    let mut sim = Sim::open(&node(""));
    sim.connect("alice", json!({})).await;
    subscribe(&mut sim, json!({"channel": "chat:a"})).await;
    let reply = sim
        .call(json!({"id": 3, "subscribe": {"channel": "chat:a"}}))
        .await;
    assert_eq!(
        error_code(&reply),
        u64::from(codes::ALREADY_SUBSCRIBED.code)
    );
}

#[tokio::test]
async fn a_client_at_its_channel_limit_is_refused_with_106() {
    let mut sim = Sim::open(&node("[client]\nchannel_limit = 1"));
    sim.connect("alice", json!({})).await;
    subscribe(&mut sim, json!({"channel": "chat:a"})).await;
    let reply = sim
        .call(json!({"id": 3, "subscribe": {"channel": "chat:b"}}))
        .await;
    assert_eq!(error_code(&reply), u64::from(codes::LIMIT_EXCEEDED.code));
}

#[tokio::test]
async fn unsubscribing_leaves_the_hub_and_presence_and_frees_the_channel_for_a_new_subscribe() {
    let node = node("");
    let mut sim = Sim::open(&node);
    sim.connect("alice", json!({})).await;
    subscribe(&mut sim, json!({"channel": "chat:a"})).await;
    assert_eq!(node.engine.presence("chat:a").await.unwrap().len(), 1);
    let reply = sim
        .call(json!({"id": 3, "unsubscribe": {"channel": "chat:a"}}))
        .await;
    assert!(reply["unsubscribe"].is_object(), "{reply}");
    assert_eq!(node.hub.num_channels(), 0);
    assert!(node.engine.presence("chat:a").await.unwrap().is_empty());
    let reply = subscribe(&mut sim, json!({"channel": "chat:a"})).await;
    assert_eq!(error_code(&reply), 0, "{reply}");
}

#[tokio::test]
async fn recovery_returns_what_was_missed_since_the_position_the_client_sent() {
    let node = node("");
    let mut sim = Sim::open(&node);
    sim.connect("alice", json!({})).await;
    let first = subscribe(&mut sim, json!({"channel": "chat:r"})).await;
    let epoch = first["subscribe"]["epoch"].as_str().unwrap().to_owned();
    sim.call(json!({"id": 3, "unsubscribe": {"channel": "chat:r"}}))
        .await;
    for n in 1..=3 {
        let reply = sim
            .call(json!({"id": 10 + n, "publish": {"channel": "chat:r", "data": {"n": n}}}))
            .await;
        assert!(reply.get("error").is_none(), "{reply}");
    }
    let reply = subscribe(
        &mut sim,
        json!({"channel": "chat:r", "recover": true, "offset": 1, "epoch": epoch}),
    )
    .await;
    let result = &reply["subscribe"];
    assert_eq!(result["recovered"], true, "{reply}");
    let recovered: Vec<(Value, Value)> = result["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["offset"].clone(), p["data"].clone()))
        .collect();
    assert_eq!(
        recovered,
        [(json!(2), json!({"n": 2})), (json!(3), json!({"n": 3}))]
    );

    // From another epoch nothing can be recovered, and the client is told so.
    sim.call(json!({"id": 4, "unsubscribe": {"channel": "chat:r"}}))
        .await;
    let reply = subscribe(
        &mut sim,
        json!({"channel": "chat:r", "recover": true, "offset": 1, "epoch": "other"}),
    )
    .await;
    assert_eq!(reply["subscribe"]["recovered"], Value::Null, "{reply}");
    assert_eq!(reply["subscribe"]["was_recovering"], true, "{reply}");
}

#[tokio::test]
async fn a_publication_reaches_the_subscriber_after_its_subscribe_reply() {
    let node = node("");
    let mut sim = Sim::open(&node);
    sim.connect("alice", json!({})).await;
    subscribe(&mut sim, json!({"channel": "chat:live"})).await;
    let mut publisher = Sim::open(&node);
    publisher.connect("bob", json!({})).await;
    publisher
        .call(json!({"id": 2, "publish": {"channel": "chat:live", "data": {"hi": 1}}}))
        .await;
    // The node's fan-out runs in its own tasks.
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    let pushes = sim.pushes();
    assert_eq!(pushes.len(), 1, "{pushes:?}");
    assert_eq!(pushes[0]["pub"]["data"], json!({"hi": 1}));
    assert_eq!(pushes[0]["pub"]["offset"], 1);
}

#[tokio::test]
async fn the_server_api_subscribes_and_unsubscribes_a_client() {
    let node = node("");
    let mut sim = Sim::open(&node);
    sim.connect("alice", json!({})).await;
    let subscribe = Control::Subscribe {
        channel: "chat:pushed".into(),
        chan_info: Bytes::new(),
        data: Bytes::new(),
    };
    sim.signal(subscribe).await.unwrap();
    let pushes = sim.pushes();
    assert_eq!(pushes[0]["channel"], "chat:pushed", "{pushes:?}");
    assert!(pushes[0]["subscribe"].is_object(), "{pushes:?}");
    assert_eq!(node.hub.num_channels(), 1);

    let unsubscribe = Control::Unsubscribe {
        channel: "chat:pushed".into(),
    };
    sim.signal(unsubscribe).await.unwrap();
    let pushes = sim.pushes();
    let code = codes::UNSUBSCRIBE_SERVER.code;
    assert_eq!(pushes[0]["unsubscribe"]["code"], code, "{pushes:?}");
    assert_eq!(node.hub.num_channels(), 0);
}

#[tokio::test]
async fn the_server_api_disconnect_ends_the_connection_with_its_code() {
    let mut sim = Sim::open(&node(""));
    sim.connect("alice", json!({})).await;
    let end = sim
        .signal(Control::Disconnect(codes::FORCE_DISCONNECT))
        .await;
    assert_eq!(end, Err(codes::FORCE_DISCONNECT));
}

#[tokio::test]
async fn a_lost_continuity_unsubscribes_a_client_side_subscription_with_2500() {
    let mut sim = Sim::open(&node(""));
    sim.connect("alice", json!({})).await;
    subscribe(&mut sim, json!({"channel": "chat:a"})).await;
    let lost = Control::InsufficientState {
        channel: "chat:a".into(),
    };
    sim.signal(lost).await.unwrap();
    let pushes = sim.pushes();
    let code = codes::UNSUBSCRIBE_INSUFFICIENT_STATE.code;
    assert_eq!(pushes[0]["unsubscribe"]["code"], code, "{pushes:?}");
}
