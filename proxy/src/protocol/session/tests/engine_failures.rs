//! What the session does when the engine fails a call (Redis down, a reply lost): the command
//! is refused with 100 and everything it had done is undone, the connection stays, and a read
//! that fails never passes for "nothing was missed". Also the order of the engine calls the
//! rules depend on.

use serde_json::json;

use super::*;
use crate::engine::EngineError;
use gyre_proto::codes;

/// What an engine that is down answers, as call `T`'s result.
fn down<T>() -> Result<T, EngineError> {
    Err(EngineError::Unavailable("planned by the test".into()))
}

fn call_on(kind: fn(String) -> Call, channel: &str) -> Call {
    kind(channel.to_owned())
}

const INTERNAL: u64 = codes::INTERNAL.code as u64;

async fn subscribe(sim: &mut Sim, channel: &str) -> Value {
    sim.call(json!({"id": 2, "subscribe": {"channel": channel}}))
        .await
}

/// A connected session whose calls so far are forgotten.
async fn connected(node: &Arc<Node>) -> Sim {
    let mut sim = Sim::open(node);
    sim.connect("alice", json!({})).await;
    sim.script.take_calls();
    sim
}

#[tokio::test]
async fn the_engine_delivers_a_channel_before_its_position_is_read() {
    let mut sim = connected(&node("")).await;
    let reply = subscribe(&mut sim, "chat:a").await;
    assert_eq!(error_code(&reply), 0, "{reply}");
    // A publication between the read and the engine subscription would be lost unseen.
    assert_eq!(
        sim.script.take_calls(),
        [
            call_on(Call::Subscribe, "chat:a"),
            call_on(Call::AddPresence, "chat:a"),
            call_on(Call::Position, "chat:a"),
        ]
    );
}

#[tokio::test]
async fn a_channel_the_engine_cannot_subscribe_is_refused_with_100_and_can_be_tried_again() {
    let node = node("");
    let mut sim = connected(&node).await;
    sim.script
        .plan(call_on(Call::Subscribe, "chat:a"), down::<()>());
    let reply = subscribe(&mut sim, "chat:a").await;
    assert_eq!(error_code(&reply), INTERNAL, "{reply}");
    assert_eq!(
        sim.script.take_calls(),
        [call_on(Call::Subscribe, "chat:a")]
    );
    assert_eq!(node.hub.num_channels(), 0);

    let reply = subscribe(&mut sim, "chat:a").await;
    assert_eq!(error_code(&reply), 0, "{reply}");
    assert_eq!(node.hub.num_channels(), 1);
}

#[tokio::test]
async fn a_presence_the_engine_cannot_add_undoes_the_subscription() {
    let node = node("");
    let mut sim = connected(&node).await;
    sim.script
        .plan(call_on(Call::AddPresence, "chat:a"), down::<()>());
    let reply = subscribe(&mut sim, "chat:a").await;
    assert_eq!(error_code(&reply), INTERNAL, "{reply}");
    // The entry is removed too: the add may have reached Redis and only its reply got lost.
    assert_eq!(
        sim.script.take_calls(),
        [
            call_on(Call::Subscribe, "chat:a"),
            call_on(Call::AddPresence, "chat:a"),
            call_on(Call::Unsubscribe, "chat:a"),
            call_on(Call::RemovePresence, "chat:a"),
        ]
    );
    assert_eq!(node.hub.num_channels(), 0);
    assert!(!sim.session.connected().unwrap().is_subscribed("chat:a"));
}

#[tokio::test]
async fn a_recovery_whose_history_cannot_be_read_is_refused_and_undone() {
    let node = node("");
    let mut sim = connected(&node).await;
    let first = subscribe(&mut sim, "chat:r").await;
    let epoch = first["subscribe"]["epoch"].as_str().unwrap().to_owned();
    sim.call(json!({"id": 3, "unsubscribe": {"channel": "chat:r"}}))
        .await;
    sim.script.take_calls();

    sim.script.plan(
        call_on(Call::History, "chat:r"),
        down::<crate::engine::HistoryResult>(),
    );
    let reply = sim
        .call(json!({"id": 4, "subscribe": {
            "channel": "chat:r", "recover": true, "epoch": epoch, "offset": 0
        }}))
        .await;
    assert_eq!(error_code(&reply), INTERNAL, "{reply}");
    assert!(
        sim.script
            .take_calls()
            .contains(&call_on(Call::Unsubscribe, "chat:r"))
    );
    assert_eq!(node.hub.num_channels(), 0);
    assert!(node.engine.presence("chat:r").await.unwrap().is_empty());
}

#[tokio::test]
async fn when_the_engine_cannot_subscribe_a_token_channel_the_joined_ones_are_left() {
    let node = node("");
    let mut sim = Sim::open(&node);
    sim.script
        .plan(call_on(Call::Subscribe, "chat:b"), down::<()>());
    let claims = json!({"sub": "alice", "channels": ["chat:a", "chat:b"]});
    let reply = sim
        .call(json!({"id": 1, "connect": {"token": token(&claims)}}))
        .await;
    assert_eq!(error_code(&reply), INTERNAL, "{reply}");
    let calls = sim.script.take_calls();
    assert!(
        calls.contains(&call_on(Call::Unsubscribe, "chat:a")),
        "{calls:?}"
    );
    assert!(
        calls.contains(&call_on(Call::RemovePresence, "chat:a")),
        "{calls:?}"
    );
    assert_eq!(node.hub.num_channels(), 0);
    assert_eq!(node.hub.user_connections("alice"), 0);
}

#[tokio::test]
async fn a_publication_the_engine_did_not_take_is_refused_with_100_and_the_connection_stays() {
    let mut sim = connected(&node("")).await;
    let publish = json!({"id": 2, "publish": {"channel": "chat:a", "data": {"n": 1}}});
    sim.script.plan(
        call_on(Call::Publish, "chat:a"),
        down::<crate::engine::StreamPosition>(),
    );
    let reply = sim.call(publish.clone()).await;
    assert_eq!(error_code(&reply), INTERNAL, "{reply}");
    let reply = sim.call(publish).await;
    assert_eq!(error_code(&reply), 0, "{reply}");
}

#[tokio::test]
async fn presence_and_history_reads_that_fail_are_refused_with_100() {
    let node = node("[client]\ninsecure = true");
    let mut sim = Sim::open(&node);
    sim.call(json!({"id": 1, "connect": {}})).await;
    sim.script.plan(
        call_on(Call::Presence, "chat:a"),
        down::<std::collections::HashMap<String, gyre_proto::ClientInfo>>(),
    );
    sim.script.plan(
        call_on(Call::PresenceStats, "chat:a"),
        down::<crate::engine::PresenceStats>(),
    );
    sim.script.plan(
        call_on(Call::History, "chat:a"),
        down::<crate::engine::HistoryResult>(),
    );
    for (id, command) in [
        (2, json!({"presence": {"channel": "chat:a"}})),
        (3, json!({"presence_stats": {"channel": "chat:a"}})),
        (4, json!({"history": {"channel": "chat:a", "limit": -1}})),
    ] {
        let mut command = command;
        command["id"] = json!(id);
        let reply = sim.call(command.clone()).await;
        assert_eq!(error_code(&reply), INTERNAL, "{command}: {reply}");
    }
}

#[tokio::test]
async fn an_unsubscribe_the_engine_refuses_still_leaves_the_channel_here() {
    let node = node("");
    let mut sim = connected(&node).await;
    subscribe(&mut sim, "chat:a").await;
    sim.script.take_calls();
    sim.script
        .plan(call_on(Call::Unsubscribe, "chat:a"), down::<()>());
    let reply = sim
        .call(json!({"id": 3, "unsubscribe": {"channel": "chat:a"}}))
        .await;
    assert!(reply["unsubscribe"].is_object(), "{reply}");
    assert_eq!(
        sim.script.take_calls(),
        [
            call_on(Call::Unsubscribe, "chat:a"),
            call_on(Call::RemovePresence, "chat:a"),
        ]
    );
    assert_eq!(node.hub.num_channels(), 0);
    assert!(node.engine.presence("chat:a").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_stream_the_position_check_cannot_read_counts_as_moved() {
    let mut sim = connected(&node(NO_PONGS)).await;
    subscribe(&mut sim, "chat:room").await;
    sim.script.plan(
        call_on(Call::History, "chat:room"),
        down::<crate::engine::HistoryResult>(),
    );
    sim.advance_to(39 * SECOND).await.unwrap();
    assert!(sim.pushes().is_empty());
    sim.advance_to(40 * SECOND).await.unwrap();
    let pushes = sim.pushes();
    assert_eq!(pushes.len(), 1, "{pushes:?}");
    assert_eq!(pushes[0]["channel"], "chat:room");
    assert_eq!(
        pushes[0]["unsubscribe"]["code"],
        codes::UNSUBSCRIBE_INSUFFICIENT_STATE.code,
        "{pushes:?}"
    );
}

#[tokio::test]
async fn a_presence_refresh_that_fails_keeps_the_connection_and_is_tried_again() {
    let node = node(NO_PONGS);
    let mut sim = connected(&node).await;
    subscribe(&mut sim, "chat:a").await;
    sim.script.take_calls();
    sim.script
        .plan(call_on(Call::AddPresence, "chat:a"), down::<()>());
    let interval = node.config.client.presence_update_interval;
    let presence_adds = |sim: &Sim| {
        let calls = sim.script.take_calls();
        calls
            .iter()
            .filter(|c| matches!(c, Call::AddPresence(_)))
            .count()
    };
    sim.advance_to(interval).await.unwrap();
    assert_eq!(presence_adds(&sim), 1);
    sim.advance_to(2 * interval).await.unwrap();
    assert_eq!(presence_adds(&sim), 1);
    assert_eq!(node.engine.presence("chat:a").await.unwrap().len(), 1);
    assert!(sim.session.connected().unwrap().is_subscribed("chat:a"));
}
