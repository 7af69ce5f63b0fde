//! The connect command: who may connect, the limits, the server-side subscriptions it joins
//! (and leaves again when one fails), and what a refused connection does afterwards.

use serde_json::json;

use super::*;
use gyre_proto::codes;

#[tokio::test]
async fn the_first_command_must_be_connect() {
    let mut sim = Sim::open(&node(""));
    let end = sim
        .send(json!({"id": 1, "subscribe": {"channel": "chat:a"}}))
        .await;
    assert_eq!(end, Err(codes::DISCONNECT_BAD_REQUEST));
}

#[tokio::test]
async fn a_frame_without_commands_is_a_protocol_error() {
    let mut sim = Sim::open(&node(""));
    let end = sim.session.handle_frame(Bytes::new(), sim.now).await;
    assert_eq!(end, Err(codes::DISCONNECT_BAD_REQUEST));
}

#[tokio::test]
async fn without_a_token_a_client_connects_only_where_anonymous_connections_are_allowed() {
    let mut refused = Sim::open(&node(""));
    let end = refused.send(json!({"id": 1, "connect": {}})).await;
    assert_eq!(end, Err(codes::DISCONNECT_BAD_REQUEST));

    let node = node("[client]\nallow_anonymous_connect_without_token = true");
    let mut anonymous = Sim::open(&node);
    let reply = anonymous.call(json!({"id": 1, "connect": {}})).await;
    assert!(reply["connect"]["client"].is_string(), "{reply}");
    assert!(anonymous.session.is_connected());
}

#[tokio::test]
async fn a_token_with_a_wrong_signature_ends_the_connection_with_3500() {
    let mut sim = Sim::open(&node(""));
    let forged = token_signed_with("not the secret", &json!({"sub": "alice"}));
    let end = sim
        .send(json!({"id": 1, "connect": {"token": forged}}))
        .await;
    assert_eq!(end, Err(codes::INVALID_TOKEN));
}

#[tokio::test]
async fn an_anonymous_token_is_refused_when_the_config_says_so() {
    let node = node("[client]\ndisallow_anonymous_connection_tokens = true");
    let mut sim = Sim::open(&node);
    let anonymous = token(&json!({"sub": ""}));
    let end = sim
        .send(json!({"id": 1, "connect": {"token": anonymous}}))
        .await;
    assert_eq!(end, Err(codes::DISCONNECT_PERMISSION_DENIED));
}

#[tokio::test]
async fn after_a_refused_connect_nothing_is_processed_until_the_connection_goes_stale() {
    let mut sim = Sim::open(&node(""));
    let expired = token(&json!({"sub": "alice", "exp": T0_UNIX - 10}));
    let reply = sim
        .call(json!({"id": 1, "connect": {"token": expired}}))
        .await;
    assert_eq!(reply["error"]["code"], codes::TOKEN_EXPIRED.code);
    // Halted: even a valid connect is ignored, no reply and no protocol error.
    sim.advance_to(5 * SECOND).await.unwrap();
    let valid = token(&json!({"sub": "alice"}));
    sim.send(json!({"id": 2, "connect": {"token": valid}}))
        .await
        .unwrap();
    assert!(sim.take().is_empty());
    assert!(!sim.session.is_connected());
    sim.expect_close_at(10 * SECOND, codes::STALE.code).await;
}

#[tokio::test]
async fn a_second_connect_is_a_protocol_error() {
    let mut sim = Sim::open(&node(""));
    sim.connect("alice", json!({})).await;
    let again = token(&json!({"sub": "alice"}));
    let end = sim
        .send(json!({"id": 2, "connect": {"token": again}}))
        .await;
    assert_eq!(end, Err(codes::DISCONNECT_BAD_REQUEST));
}

#[tokio::test]
async fn a_user_over_the_connection_limit_is_refused() {
    let node = node("[client]\nuser_connection_limit = 1");
    let mut first = Sim::open(&node);
    first.connect("alice", json!({})).await;
    let mut second = Sim::open(&node);
    let again = token(&json!({"sub": "alice"}));
    let end = second
        .send(json!({"id": 1, "connect": {"token": again}}))
        .await;
    assert_eq!(end, Err(codes::CONNECTION_LIMIT));
    let mut other = Sim::open(&node);
    other.connect("bob", json!({})).await;
    // Once the first leaves, alice may connect again.
    first.close().await;
    let mut third = Sim::open(&node);
    third.connect("alice", json!({})).await;
}

#[tokio::test]
async fn a_token_with_more_channels_than_the_limit_is_refused() {
    let node = node("[client]\nchannel_limit = 1");
    let mut sim = Sim::open(&node);
    let many = token(&json!({"sub": "alice", "channels": ["chat:a", "chat:b"]}));
    let end = sim.send(json!({"id": 1, "connect": {"token": many}})).await;
    assert_eq!(end, Err(codes::CHANNEL_LIMIT));
    assert_eq!(node.hub.num_channels(), 0);
}

#[tokio::test]
async fn the_token_channels_are_joined_and_named_in_the_connect_result() {
    let node = node("");
    let mut sim = Sim::open(&node);
    let result = sim
        .connect("alice", json!({"channels": ["chat:a", "news"]}))
        .await;
    let subs = result["subs"].as_object().expect("subs");
    assert_eq!(subs.len(), 2, "{result}");
    // chat forces recovery: the client learns the stream's position.
    assert_eq!(subs["chat:a"]["recoverable"], true, "{result}");
    assert!(!subs["chat:a"]["epoch"].as_str().unwrap_or("").is_empty());
    assert_eq!(node.hub.num_channels(), 2);
    assert_eq!(node.engine.presence("chat:a").await.unwrap().len(), 1);
}

#[tokio::test]
async fn when_one_token_channel_cannot_be_joined_none_stays_joined() {
    let node = node("");
    let mut sim = Sim::open(&node);
    let claims = json!({"sub": "alice", "channels": ["chat:a", "news", "nowhere:b"]});
    let reply = sim
        .call(json!({"id": 1, "connect": {"token": token(&claims)}}))
        .await;
    assert_eq!(
        reply["error"]["code"],
        codes::UNKNOWN_CHANNEL.code,
        "{reply}"
    );
    assert!(!sim.session.is_connected());
    assert_eq!(node.hub.num_channels(), 0);
    assert!(node.engine.presence("chat:a").await.unwrap().is_empty());
    // Not counted for its user: alice may connect again at once, even limited to one.
    assert_eq!(node.hub.user_connections("alice"), 0);
    // Refused: the connection goes stale as if it never connected.
    sim.expect_close_at(10 * SECOND, codes::STALE.code).await;
}

#[tokio::test]
async fn a_seeded_node_gives_the_same_client_ids_and_different_connections_different_ones() {
    let ids = || async {
        let node = node("");
        let mut ids = Vec::new();
        for user in ["a", "b"] {
            let mut sim = Sim::open(&node);
            ids.push(sim.connect(user, json!({})).await["client"].clone());
        }
        ids
    };
    let first = ids().await;
    assert_eq!(first, ids().await);
    assert_ne!(first[0], first[1]);
}

#[tokio::test]
async fn an_emulated_client_gets_a_session_id_that_routes_its_commands() {
    let node = node("");
    let mut sim = Sim::open_with(&node, Mode::Emulated);
    let result = sim.connect("alice", json!({})).await;
    let session = result["session"].as_str().expect("session id");
    assert_ne!(session, result["client"].as_str().unwrap());
    assert_eq!(result["node"], node.id.as_str());
    let command = json!({"id": 2, "subscribe": {"channel": "chat:a"}}).to_string();
    assert!(node.hub.emulate(session, Bytes::from(command)));
    assert!(!node.hub.emulate("guessed", Bytes::from_static(b"{}")));
    sim.signals().await.unwrap();
    let replies = sim.take();
    assert_eq!(replies.len(), 1);
    assert!(replies[0]["subscribe"].is_object(), "{replies:?}");
}

#[tokio::test]
async fn a_unidirectional_client_learns_why_its_connect_failed_from_the_disconnect() {
    let node = node("");
    let mut sim = Sim::open_with(&node, Mode::Unidirectional);
    let expired = token(&json!({"sub": "alice", "exp": T0_UNIX - 1}));
    let end = sim
        .send(json!({"id": 1, "connect": {"token": expired}}))
        .await;
    assert_eq!(end, Err(codes::CONNECTION_EXPIRED));
    assert!(sim.take().is_empty());
}

#[tokio::test]
async fn a_unidirectional_client_joins_the_channels_it_names_with_the_subscribe_checks() {
    let node = node("[client]\nallow_anonymous_connect_without_token = true");
    let mut sim = Sim::open_with(&node, Mode::Unidirectional);
    let valid = token(&json!({"sub": "alice"}));
    sim.send(json!({"id": 1, "connect": {"token": valid, "subs": {"chat:a": {}}}}))
        .await
        .unwrap();
    let pushes = sim.pushes();
    assert!(
        pushes[0]["connect"]["subs"]["chat:a"].is_object(),
        "{pushes:?}"
    );

    // `locked` does not let clients subscribe: the connect fails as a subscribe would.
    let mut refused = Sim::open_with(&node, Mode::Unidirectional);
    let end = refused
        .send(json!({"id": 1, "connect": {"token": valid, "subs": {"locked:x": {}}}}))
        .await;
    assert_eq!(end, Err(codes::DISCONNECT_PERMISSION_DENIED));
    assert_eq!(node.hub.num_channels(), 1);
}
