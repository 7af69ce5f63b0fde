//! The backend hooks as the session uses them: when it asks (and when it decides without the
//! backend), and what it does with each kind of answer, on the simulated clock. The backends'
//! answers are planned by the test; the HTTP and GRPC calls themselves are tested against a
//! real backend in `tests/` (hooks_http, hooks_grpc).

use bytes::Bytes;
use serde_json::json;

use super::*;
use crate::hooks::outcome::Answer;
use crate::hooks::{CallError, Event};
use gyre_proto::codes;
use gyre_proto::proxy as wire;

/// Every hook on, pointing nowhere: a call the test did not answer fails.
const HOOKS: &str = r#"
[client]
pong_timeout = "0s"
[client.proxy.connect]
enabled = true
endpoint = "http://127.0.0.1:9/connect"
[client.proxy.refresh]
enabled = true
endpoint = "http://127.0.0.1:9/refresh"

[channel.proxy.subscribe]
endpoint = "http://127.0.0.1:9/subscribe"
[channel.proxy.publish]
endpoint = "http://127.0.0.1:9/publish"
[channel.proxy.sub_refresh]
endpoint = "http://127.0.0.1:9/sub_refresh"

[rpc.proxy]
endpoint = "http://127.0.0.1:9/rpc"
[rpc.without_namespace]
proxy_enabled = true

[[channel.namespaces]]
name = "hooks"
allow_user_limited_channels = true
subscribe_proxy_enabled = true
publish_proxy_enabled = true
sub_refresh_proxy_enabled = true
"#;

fn hook(event: Event, about: &str) -> Call {
    Call::Hook(event, about.to_owned())
}

fn hooks_asked(calls: &[Call]) -> Vec<Call> {
    calls
        .iter()
        .filter(|c| matches!(c, Call::Hook(..)))
        .cloned()
        .collect()
}

/// Connected through the connect hook as `user`, whose connection expires `ttl` seconds after
/// the start (0: never). The calls so far are forgotten.
async fn connected(node: &Arc<Node>, user: &str, ttl: i64) -> Sim {
    let mut sim = Sim::open(node);
    let result = wire::ConnectResult {
        user: user.to_owned(),
        expire_at: if ttl > 0 { T0_UNIX + ttl } else { 0 },
        ..Default::default()
    };
    let answer: Result<_, CallError> = Ok(Answer::Result(Some(result)));
    sim.script.plan(hook(Event::Connect, ""), answer);
    let reply = sim.call(json!({"id": 1, "connect": {}})).await;
    assert_eq!(error_code(&reply), 0, "{reply}");
    assert_eq!(sim.script.take_calls(), [hook(Event::Connect, "")]);
    sim
}

/// Plans the subscribe hook's answer for `channel`.
fn plan_subscribe(sim: &Sim, channel: &str, answer: Answer<wire::SubscribeResult>) {
    let answer: Result<_, CallError> = Ok(answer);
    sim.script.plan(hook(Event::Subscribe, channel), answer);
}

async fn subscribe(sim: &mut Sim, channel: &str) -> Result<Value, Disconnect> {
    sim.send(json!({"id": 2, "subscribe": {"channel": channel}}))
        .await?;
    let mut replies = sim.take();
    assert_eq!(replies.len(), 1, "{replies:?}");
    Ok(replies.remove(0))
}

#[tokio::test]
async fn a_subscription_token_is_checked_here_and_the_backend_is_not_asked() {
    let node = node(HOOKS);
    let mut sim = connected(&node, "alice", 0).await;
    let sub = token(&json!({"sub": "alice", "channel": "hooks:x"}));
    let reply = sim
        .call(json!({"id": 2, "subscribe": {"channel": "hooks:x", "token": sub}}))
        .await;
    assert_eq!(error_code(&reply), 0, "{reply}");
    let calls = sim.script.take_calls();
    assert_eq!(calls[0], Call::VerifySubscribe, "{calls:?}");
    assert_eq!(hooks_asked(&calls), []);
}

#[tokio::test]
async fn a_user_limited_channel_is_decided_here_and_the_backend_is_not_asked() {
    let node = node(HOOKS);
    let mut sim = connected(&node, "alice", 0).await;
    let reply = subscribe(&mut sim, "hooks:x#alice").await.unwrap();
    assert_eq!(error_code(&reply), 0, "{reply}");
    let reply = subscribe(&mut sim, "hooks:y#bob").await.unwrap();
    let denied = u64::from(codes::PERMISSION_DENIED.code);
    assert_eq!(error_code(&reply), denied, "{reply}");
    assert_eq!(hooks_asked(&sim.script.take_calls()), []);
}

#[tokio::test]
async fn the_backend_decides_the_other_channels_before_anything_is_joined() {
    let node = node(HOOKS);
    let mut sim = connected(&node, "alice", 0).await;

    plan_subscribe(&sim, "hooks:yes", Answer::Result(Some(Default::default())));
    let reply = subscribe(&mut sim, "hooks:yes").await.unwrap();
    assert_eq!(error_code(&reply), 0, "{reply}");
    let calls = sim.script.take_calls();
    assert_eq!(calls[0], hook(Event::Subscribe, "hooks:yes"), "{calls:?}");
    assert_eq!(calls[1], Call::Subscribe("hooks:yes".into()), "{calls:?}");

    let refusal = wire::Error {
        code: 4000,
        message: "not for you".into(),
        temporary: false,
    };
    plan_subscribe(&sim, "hooks:no", Answer::Error(refusal));
    let reply = subscribe(&mut sim, "hooks:no").await.unwrap();
    assert_eq!(reply["error"]["code"], 4000, "{reply}");
    assert_eq!(reply["error"]["message"], "not for you", "{reply}");
    assert_eq!(
        sim.script.take_calls(),
        [hook(Event::Subscribe, "hooks:no")]
    );
    assert_eq!(node.hub.num_channels(), 1);
}

#[tokio::test]
async fn a_backend_that_fails_is_an_internal_error_and_its_disconnect_ends_the_connection() {
    let node = node(HOOKS);
    let mut sim = connected(&node, "alice", 0).await;
    let failed: Result<Answer<wire::SubscribeResult>, _> = Err(CallError::Timeout);
    sim.script
        .plan(hook(Event::Subscribe, "hooks:slow"), failed);
    let reply = subscribe(&mut sim, "hooks:slow").await.unwrap();
    assert_eq!(
        error_code(&reply),
        u64::from(codes::INTERNAL.code),
        "{reply}"
    );

    let bye = wire::Disconnect {
        code: 4501,
        reason: "go away".into(),
    };
    plan_subscribe(&sim, "hooks:bye", Answer::Disconnect(bye));
    let end = subscribe(&mut sim, "hooks:bye").await;
    assert_eq!(end.map_err(|d| d.code), Err(4501));
    assert_eq!(node.hub.num_channels(), 0);
}

#[tokio::test]
async fn the_connect_hook_names_the_user_instead_of_a_token() {
    let node = node(HOOKS);
    let sim = connected(&node, "bob", 0).await;
    assert!(sim.session.is_connected());
    assert_eq!(node.hub.user_connections("bob"), 1);
}

#[tokio::test]
async fn the_refresh_hook_is_asked_when_the_connection_expires_and_can_prolong_it() {
    let node = node(HOOKS);
    let mut sim = connected(&node, "bob", 60).await;
    let prolonged = wire::RefreshResult {
        expire_at: T0_UNIX + 120,
        ..Default::default()
    };
    let answer: Result<_, CallError> = Ok(Some(prolonged));
    sim.script.plan(hook(Event::Refresh, ""), answer);
    sim.advance_to(60 * SECOND - Duration::from_millis(1))
        .await
        .unwrap();
    assert_eq!(sim.script.take_calls(), []);
    sim.advance_to(60 * SECOND).await.unwrap();
    assert_eq!(sim.script.take_calls(), [hook(Event::Refresh, "")]);

    let expired = wire::RefreshResult {
        expired: true,
        ..Default::default()
    };
    let answer: Result<_, CallError> = Ok(Some(expired));
    sim.script.plan(hook(Event::Refresh, ""), answer);
    sim.expect_close_at(120 * SECOND, codes::CONNECTION_EXPIRED.code)
        .await;
}

#[tokio::test]
async fn a_refresh_hook_that_fails_is_asked_again_a_minute_later() {
    let node = node(HOOKS);
    let mut sim = connected(&node, "bob", 60).await;
    let failed: Result<Option<wire::RefreshResult>, _> = Err(CallError::Unavailable("down".into()));
    sim.script.plan(hook(Event::Refresh, ""), failed);
    sim.advance_to(60 * SECOND).await.unwrap();
    assert_eq!(sim.script.take_calls(), [hook(Event::Refresh, "")]);
    let answer: Result<Option<wire::RefreshResult>, CallError> = Ok(None);
    sim.script.plan(hook(Event::Refresh, ""), answer);
    sim.expect_close_at(120 * SECOND, codes::CONNECTION_EXPIRED.code)
        .await;
    assert_eq!(sim.script.take_calls(), [hook(Event::Refresh, "")]);
}

#[tokio::test]
async fn the_publish_hook_decides_and_may_replace_what_is_published() {
    let node = node(HOOKS);
    let mut sim = connected(&node, "alice", 0).await;
    plan_subscribe(&sim, "hooks:p", Answer::Result(Some(Default::default())));
    subscribe(&mut sim, "hooks:p").await.unwrap();
    sim.script.take_calls();

    let replaced = wire::PublishResult {
        data: Bytes::from_static(br#"{"said":"hello"}"#),
        ..Default::default()
    };
    let answer: Result<_, CallError> = Ok(Answer::Result(Some(replaced)));
    sim.script.plan(hook(Event::Publish, "hooks:p"), answer);
    let reply = sim
        .call(json!({"id": 3, "publish": {"channel": "hooks:p", "data": {"said": "hi"}}}))
        .await;
    assert_eq!(error_code(&reply), 0, "{reply}");
    assert_eq!(
        sim.script.take_calls(),
        [
            hook(Event::Publish, "hooks:p"),
            Call::Publish("hooks:p".into())
        ]
    );
    // The node's fan-out runs in its own tasks.
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    let pushes = sim.pushes();
    assert_eq!(pushes.len(), 1, "{pushes:?}");
    assert_eq!(pushes[0]["pub"]["data"], json!({"said": "hello"}));

    let refusal = wire::Error {
        code: 4003,
        message: "muted".into(),
        temporary: false,
    };
    let answer: Result<Answer<wire::PublishResult>, CallError> = Ok(Answer::Error(refusal));
    sim.script.plan(hook(Event::Publish, "hooks:p"), answer);
    let reply = sim
        .call(json!({"id": 4, "publish": {"channel": "hooks:p", "data": {}}}))
        .await;
    assert_eq!(reply["error"]["code"], 4003, "{reply}");
    assert_eq!(sim.script.take_calls(), [hook(Event::Publish, "hooks:p")]);
}

#[tokio::test]
async fn the_rpc_hook_answers_the_rpc_command() {
    let node = node(HOOKS);
    let mut sim = connected(&node, "alice", 0).await;
    let result = wire::RpcResult {
        data: Bytes::from_static(br#"{"total":3}"#),
        ..Default::default()
    };
    let answer: Result<_, CallError> = Ok(Answer::Result(Some(result)));
    sim.script.plan(hook(Event::Rpc, "count"), answer);
    let reply = sim
        .call(json!({"id": 2, "rpc": {"method": "count", "data": {}}}))
        .await;
    assert_eq!(reply["rpc"]["data"], json!({"total": 3}), "{reply}");
}

#[tokio::test]
async fn the_sub_refresh_hook_is_asked_at_expiry_and_its_answer_keeps_or_ends_the_subscription() {
    let node = node(HOOKS);
    let mut sim = connected(&node, "alice", 0).await;
    let until_30 = wire::SubscribeResult {
        expire_at: T0_UNIX + 30,
        ..Default::default()
    };
    plan_subscribe(&sim, "hooks:s", Answer::Result(Some(until_30)));
    let reply = subscribe(&mut sim, "hooks:s").await.unwrap();
    // The proxy refreshes it: the client is not told it expires.
    assert_eq!(reply["subscribe"].get("expires"), None, "{reply}");
    sim.script.take_calls();

    let prolonged = wire::SubRefreshResult {
        expire_at: T0_UNIX + 100,
        ..Default::default()
    };
    let answer: Result<_, CallError> = Ok(Some(prolonged));
    sim.script.plan(hook(Event::SubRefresh, "hooks:s"), answer);
    // Expired at 30 s, grace 25 s; checked with presence, every 27 s: at 81 s.
    sim.advance_to(80 * SECOND).await.unwrap();
    assert_eq!(hooks_asked(&sim.script.take_calls()), []);
    sim.advance_to(81 * SECOND).await.unwrap();
    assert_eq!(
        hooks_asked(&sim.script.take_calls()),
        [hook(Event::SubRefresh, "hooks:s")]
    );
    assert!(sim.pushes().is_empty());

    let expired = wire::SubRefreshResult {
        expired: true,
        ..Default::default()
    };
    let answer: Result<_, CallError> = Ok(Some(expired));
    sim.script.plan(hook(Event::SubRefresh, "hooks:s"), answer);
    // Expires at 100 s, plus the grace: the first check after 125 s is at 135 s.
    sim.advance_to(134 * SECOND).await.unwrap();
    assert!(sim.pushes().is_empty());
    sim.advance_to(135 * SECOND).await.unwrap();
    let pushes = sim.pushes();
    assert_eq!(pushes.len(), 1, "{pushes:?}");
    let code = codes::UNSUBSCRIBE_EXPIRED.code;
    assert_eq!(pushes[0]["unsubscribe"]["code"], code, "{pushes:?}");
    assert_eq!(node.hub.num_channels(), 0);
}
