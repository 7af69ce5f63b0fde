//! Pings and pongs, stale connections, connection and subscription expiry, refresh, and the
//! checks that keep positions honest over time.

use serde_json::json;

use super::*;
use crate::engine::{HistoryOptions, PublishOptions};
use gyre_proto::codes;

/// Whether a ping (an empty message) is among `messages`.
fn has_ping(messages: &[Value]) -> bool {
    messages.iter().any(|m| m == &json!({}))
}

#[tokio::test]
async fn a_connection_that_never_connects_is_closed_as_stale_after_the_delay() {
    let mut sim = Sim::open(&node(""));
    sim.expect_close_at(10 * SECOND, codes::STALE.code).await;
}

#[tokio::test]
async fn the_first_ping_comes_in_the_second_half_of_the_interval() {
    let node = node("");
    let mut sim = Sim::open(&node);
    let result = sim.connect("alice", json!({})).await;
    assert_eq!(result["ping"], 25);
    assert_eq!(result["pong"], true);
    let first = sim.session.deadline() - sim.start.instant;
    assert!(
        (12500..=25000).contains(&first.as_millis()),
        "first ping after {first:?}"
    );
    sim.advance_to(first - Duration::from_millis(1))
        .await
        .unwrap();
    assert!(!has_ping(&sim.take()));
    sim.advance_to(first).await.unwrap();
    assert_eq!(sim.take(), [json!({})]);
}

#[tokio::test]
async fn clients_connected_together_ping_at_different_times() {
    let node = node("");
    let mut firsts = Vec::new();
    for user in ["a", "b", "c", "d"] {
        let mut sim = Sim::open(&node);
        sim.connect(user, json!({})).await;
        firsts.push(sim.session.deadline() - sim.start.instant);
    }
    firsts.dedup();
    assert!(firsts.len() > 1, "every first ping at {firsts:?}");
}

#[tokio::test]
async fn a_pong_in_time_keeps_the_connection_and_the_next_ping_follows_an_interval_later() {
    let mut sim = Sim::open(&node(""));
    sim.connect("alice", json!({})).await;
    let first = sim.session.deadline() - sim.start.instant;
    sim.advance_to(first).await.unwrap();
    assert!(has_ping(&sim.take()));
    sim.advance_to(first + 7 * SECOND).await.unwrap();
    sim.send(json!({})).await.expect("pong accepted");
    sim.advance_to(first + 25 * SECOND - Duration::from_millis(1))
        .await
        .unwrap();
    assert!(!has_ping(&sim.take()));
    sim.advance_to(first + 25 * SECOND).await.unwrap();
    assert!(has_ping(&sim.take()));
}

#[tokio::test]
async fn no_pong_within_the_timeout_closes_with_3012() {
    let mut sim = Sim::open(&node(""));
    sim.connect("alice", json!({})).await;
    let first = sim.session.deadline() - sim.start.instant;
    sim.expect_close_at(first + 8 * SECOND, codes::NO_PONG.code)
        .await;
}

#[tokio::test]
async fn a_pong_nobody_asked_for_is_a_protocol_error() {
    let mut sim = Sim::open(&node(""));
    sim.connect("alice", json!({})).await;
    assert_eq!(
        sim.send(json!({})).await,
        Err(codes::DISCONNECT_BAD_REQUEST)
    );
}

#[tokio::test]
async fn with_pongs_off_the_client_is_told_so_and_pings_never_close_it() {
    let mut sim = Sim::open(&node(NO_PONGS));
    let result = sim.connect("alice", json!({})).await;
    assert_ne!(result["pong"], true, "{result}");
    sim.advance_to(200 * SECOND).await.unwrap();
    let pings = sim.take().iter().filter(|m| *m == &json!({})).count();
    assert!(pings >= 7, "{pings} pings in 200 s");
    sim.send(json!({})).await.expect("a pong is harmless");
}

#[tokio::test]
async fn a_unidirectional_client_gets_pings_but_is_never_asked_for_pongs() {
    let node = node("[client]\nallow_anonymous_connect_without_token = true");
    let mut sim = Sim::open_with(&node, Mode::Unidirectional);
    sim.send(json!({"id": 1, "connect": {}})).await.unwrap();
    let pushes = sim.pushes();
    assert_eq!(pushes.len(), 1, "{pushes:?}");
    assert_eq!(pushes[0]["connect"]["pong"], Value::Null, "{pushes:?}");
    sim.advance_to(120 * SECOND).await.expect("still open");
    assert!(has_ping(&sim.take()));
}

#[tokio::test]
async fn an_expiring_token_gives_a_ttl_and_the_connection_closes_after_the_grace_period() {
    let mut sim = Sim::open(&node(NO_PONGS));
    let result = sim.connect("alice", json!({"exp": T0_UNIX + 60})).await;
    assert_eq!(result["expires"], true);
    assert_eq!(result["ttl"], 60);
    sim.expect_close_at(85 * SECOND, codes::CONNECTION_EXPIRED.code)
        .await;
}

#[tokio::test]
async fn a_refresh_with_a_new_token_moves_the_expiry() {
    let mut sim = Sim::open(&node(NO_PONGS));
    sim.connect("alice", json!({"exp": T0_UNIX + 60})).await;
    sim.advance_to(50 * SECOND).await.unwrap();
    sim.take();
    let fresh = token(&json!({"sub": "alice", "exp": T0_UNIX + 600}));
    let reply = sim
        .call(json!({"id": 2, "refresh": {"token": fresh}}))
        .await;
    assert_eq!(reply["refresh"]["expires"], true);
    assert_eq!(reply["refresh"]["ttl"], 550);
    sim.expect_close_at(625 * SECOND, codes::CONNECTION_EXPIRED.code)
        .await;
}

#[tokio::test]
async fn a_refresh_for_another_user_ends_the_connection() {
    let mut sim = Sim::open(&node(NO_PONGS));
    sim.connect("alice", json!({"exp": T0_UNIX + 60})).await;
    let other = token(&json!({"sub": "mallory", "exp": T0_UNIX + 600}));
    let end = sim
        .send(json!({"id": 2, "refresh": {"token": other}}))
        .await;
    assert_eq!(end, Err(codes::INVALID_TOKEN));
}

#[tokio::test]
async fn a_refresh_with_an_expired_token_ends_the_connection_as_expired() {
    let mut sim = Sim::open(&node(NO_PONGS));
    sim.connect("alice", json!({"exp": T0_UNIX + 60})).await;
    sim.advance_to(70 * SECOND).await.unwrap();
    let stale = token(&json!({"sub": "alice", "exp": T0_UNIX + 65}));
    let end = sim
        .send(json!({"id": 2, "refresh": {"token": stale}}))
        .await;
    assert_eq!(end.map_err(|d| d.code), Err(codes::CONNECTION_EXPIRED.code));
}

#[tokio::test]
async fn a_refresh_without_a_token_is_a_protocol_error() {
    let mut sim = Sim::open(&node(NO_PONGS));
    sim.connect("alice", json!({})).await;
    let end = sim.send(json!({"id": 2, "refresh": {}})).await;
    assert_eq!(end, Err(codes::DISCONNECT_BAD_REQUEST));
}

#[tokio::test]
async fn the_server_api_can_expire_a_connection_or_move_its_expiry() {
    let node = node(NO_PONGS);
    let mut moved = Sim::open(&node);
    moved.connect("alice", json!({})).await;
    let refresh = Control::Refresh {
        expired: false,
        expires_at: Some(T0_UNIX + 30),
    };
    moved.signal(refresh).await.unwrap();
    moved
        .expect_close_at(55 * SECOND, codes::CONNECTION_EXPIRED.code)
        .await;

    let mut expired = Sim::open(&node);
    expired.connect("bob", json!({})).await;
    let refresh = Control::Refresh {
        expired: true,
        expires_at: None,
    };
    assert_eq!(
        expired.signal(refresh).await,
        Err(codes::CONNECTION_EXPIRED)
    );
}

#[tokio::test]
async fn a_connect_token_that_already_expired_is_refused_and_the_connection_goes_stale() {
    let mut sim = Sim::open(&node(""));
    let expired = token(&json!({"sub": "alice", "exp": T0_UNIX - 1}));
    let reply = sim
        .call(json!({"id": 1, "connect": {"token": expired}}))
        .await;
    assert_eq!(reply["error"]["code"], codes::TOKEN_EXPIRED.code, "{reply}");
    assert!(!sim.session.is_connected());
    sim.expect_close_at(10 * SECOND, codes::STALE.code).await;
}

/// Subscribes with a subscription token for `channel` that expires `ttl` seconds after the
/// start.
async fn subscribe_until(sim: &mut Sim, channel: &str, ttl: i64) {
    let sub = token(&json!({"sub": "alice", "channel": channel, "exp": T0_UNIX + ttl}));
    let reply = sim
        .call(json!({"id": 2, "subscribe": {"channel": channel, "token": sub}}))
        .await;
    assert_eq!(reply["subscribe"]["expires"], true, "{reply}");
    assert_eq!(reply["subscribe"]["ttl"], ttl, "{reply}");
}

/// The unsubscribe pushes among `pushes`: (channel, code).
fn unsubscribes(pushes: &[Value]) -> Vec<(String, u64)> {
    pushes
        .iter()
        .filter(|p| p.get("unsubscribe").is_some())
        .map(|p| {
            let channel = p["channel"].as_str().unwrap_or_default().to_owned();
            (channel, p["unsubscribe"]["code"].as_u64().unwrap_or(0))
        })
        .collect()
}

#[tokio::test]
async fn an_expired_subscription_ends_with_2501_at_the_first_check_after_its_grace_period() {
    let mut sim = Sim::open(&node(NO_PONGS));
    sim.connect("alice", json!({})).await;
    subscribe_until(&mut sim, "locked:news", 30).await;
    // Expired at 30 s, grace 25 s; checked with presence, every 27 s: at 81 s.
    sim.advance_to(80 * SECOND).await.unwrap();
    assert!(unsubscribes(&sim.pushes()).is_empty());
    sim.advance_to(81 * SECOND).await.unwrap();
    let code = u64::from(codes::UNSUBSCRIBE_EXPIRED.code);
    assert_eq!(
        unsubscribes(&sim.pushes()),
        [("locked:news".to_owned(), code)]
    );
    assert_eq!(sim.node.hub.num_channels(), 0);
}

#[tokio::test]
async fn a_sub_refresh_with_a_new_token_keeps_the_subscription() {
    let mut sim = Sim::open(&node(NO_PONGS));
    sim.connect("alice", json!({})).await;
    subscribe_until(&mut sim, "locked:news", 30).await;
    sim.advance_to(20 * SECOND).await.unwrap();
    sim.take();
    let fresh = token(&json!({"sub": "alice", "channel": "locked:news", "exp": T0_UNIX + 300}));
    let reply = sim
        .call(json!({"id": 3, "sub_refresh": {"channel": "locked:news", "token": fresh}}))
        .await;
    assert_eq!(reply["sub_refresh"]["ttl"], 280, "{reply}");
    sim.advance_to(300 * SECOND).await.unwrap();
    assert!(unsubscribes(&sim.pushes()).is_empty());
    assert_eq!(sim.node.hub.num_channels(), 1);
}

#[tokio::test]
async fn a_sub_refresh_with_an_expired_token_changes_nothing() {
    let mut sim = Sim::open(&node(NO_PONGS));
    sim.connect("alice", json!({})).await;
    subscribe_until(&mut sim, "locked:news", 30).await;
    sim.advance_to(40 * SECOND).await.unwrap();
    sim.take();
    let stale = token(&json!({"sub": "alice", "channel": "locked:news", "exp": T0_UNIX + 35}));
    let reply = sim
        .call(json!({"id": 3, "sub_refresh": {"channel": "locked:news", "token": stale}}))
        .await;
    assert!(reply.get("error").is_none(), "{reply}");
    sim.advance_to(81 * SECOND).await.unwrap();
    assert_eq!(unsubscribes(&sim.pushes()).len(), 1);
}

#[tokio::test]
async fn a_sub_refresh_for_a_channel_not_subscribed_is_refused() {
    let mut sim = Sim::open(&node(NO_PONGS));
    sim.connect("alice", json!({})).await;
    let sub = token(&json!({"sub": "alice", "channel": "locked:news", "exp": T0_UNIX + 300}));
    let reply = sim
        .call(json!({"id": 3, "sub_refresh": {"channel": "locked:news", "token": sub}}))
        .await;
    assert_eq!(
        reply["error"]["code"],
        codes::PERMISSION_DENIED.code,
        "{reply}"
    );
}

/// Publishes `n` publications to `channel` with history, straight to the engine.
async fn publish(node: &Node, channel: &str, n: usize) {
    let options = PublishOptions {
        history: Some(HistoryOptions {
            size: 10,
            ttl: 300 * SECOND,
            meta_ttl: Duration::ZERO,
        }),
        ..Default::default()
    };
    for i in 0..n {
        let data = Bytes::from(format!("{{\"n\":{i}}}"));
        node.engine
            .publish(channel, data, &options)
            .await
            .expect("publish");
    }
}

#[tokio::test]
async fn a_quiet_subscription_whose_stream_moved_is_told_to_recover_at_the_position_check() {
    let node = node_losing_deliveries(NO_PONGS);
    let mut sim = Sim::open(&node);
    sim.connect("alice", json!({})).await;
    let reply = sim
        .call(json!({"id": 2, "subscribe": {"channel": "chat:room"}}))
        .await;
    assert_eq!(reply["subscribe"]["positioned"], true, "{reply}");
    publish(&node, "chat:room", 1).await;
    sim.advance_to(39 * SECOND).await.unwrap();
    assert!(unsubscribes(&sim.pushes()).is_empty());
    sim.advance_to(40 * SECOND).await.unwrap();
    let code = u64::from(codes::UNSUBSCRIBE_INSUFFICIENT_STATE.code);
    assert_eq!(
        unsubscribes(&sim.pushes()),
        [("chat:room".to_owned(), code)]
    );
}

#[tokio::test]
async fn a_resync_tells_only_the_subscriptions_whose_streams_moved() {
    let node = node_losing_deliveries(NO_PONGS);
    let mut sim = Sim::open(&node);
    sim.connect("alice", json!({})).await;
    for channel in ["chat:moved", "chat:still"] {
        sim.call(json!({"id": 2, "subscribe": {"channel": channel}}))
            .await;
    }
    sim.signal(Control::Resync).await.unwrap();
    assert!(sim.pushes().is_empty());
    publish(&node, "chat:moved", 2).await;
    sim.signal(Control::Resync).await.unwrap();
    let code = u64::from(codes::UNSUBSCRIBE_INSUFFICIENT_STATE.code);
    assert_eq!(
        unsubscribes(&sim.pushes()),
        [("chat:moved".to_owned(), code)]
    );
}

#[tokio::test]
async fn a_server_side_subscription_that_lost_continuity_ends_the_connection_with_3010() {
    let node = node_losing_deliveries(NO_PONGS);
    let mut sim = Sim::open(&node);
    let result = sim
        .connect("alice", json!({"channels": ["chat:feed"]}))
        .await;
    assert_eq!(result["subs"]["chat:feed"]["positioned"], true, "{result}");
    publish(&node, "chat:feed", 1).await;
    assert_eq!(
        sim.signal(Control::Resync).await,
        Err(codes::INSUFFICIENT_STATE)
    );
}

#[tokio::test]
async fn presence_is_kept_while_subscribed_and_removed_on_close() {
    let node = node(NO_PONGS);
    let mut sim = Sim::open(&node);
    sim.connect("alice", json!({})).await;
    sim.call(json!({"id": 2, "subscribe": {"channel": "chat:room"}}))
        .await;
    sim.advance_to(100 * SECOND).await.unwrap();
    let present = node.engine.presence("chat:room").await.unwrap();
    assert_eq!(present.len(), 1);
    assert_eq!(present.values().next().unwrap().user, "alice");
    sim.close().await;
    assert!(node.engine.presence("chat:room").await.unwrap().is_empty());
    assert_eq!(node.hub.num_connections(), 0);
}
