//! The client protocol of `gyre` over WebSocket, at the wire level (what
//! docs/protocol.md describes): connect and tokens, framing, publications, errors and
//! recovery. A raw client (`gyre_tests::ws_client`) sends exact JSON or Protobuf frames and checks
//! exact codes and fields. Tests that depend on the engine run on both (`memory::*`, `redis::*`).

use std::time::Duration;

use gyre_tests::ws_client::{
    Encoding, EngineKind, ProxyEnv, WAIT, WsClient, WsOptions, cmd, hs256_token, unix_now,
};
use gyre_tests::{GyreBuilder, GyreProcess, Namespace};
use serde_json::{Value, json};

/// Namespaces: `chat` (history 100, recovery, presence, everything allowed), `small` (the same
/// with history 3), `plain` (allowed, but no history and no presence), `members` (history,
/// presence and join/leave for subscribers only, nothing forced), `locked` (history and
/// presence, no permission at all). At most 4 subscriptions per connection.
fn builder() -> GyreBuilder {
    GyreProcess::builder()
        .namespace(Namespace::full("chat", 100, 300))
        .namespace(Namespace::full("small", 3, 300))
        .namespace(
            Namespace::new("plain")
                .allow_subscribe()
                .allow_publish()
                .allow_history()
                .allow_presence(),
        )
        .namespace(Namespace::subscribers_only("members", 100, 300))
        .namespace(Namespace::new("locked").history(10, 300).presence())
        .client_option("channel_limit = 4")
}

fn env(engine: EngineKind) -> ProxyEnv {
    ProxyEnv::start(engine, builder())
}

fn memory_env() -> ProxyEnv {
    env(EngineKind::Memory)
}

/// The keys of a JSON object, sorted.
fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36 && s.chars().filter(|&c| c == '-').count() == 4
}

fn is_epoch(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric())
}

/// Connects `client` with `token` in raw JSON and returns the connect result JSON.
fn json_connect(client: &mut WsClient, token: &str) -> Value {
    client.send_text(&json!({"id": 1, "connect": {"token": token, "name": "js"}}).to_string());
    let reply = client.reply(1);
    assert!(reply.reply.error.is_none(), "{:?}", reply.json);
    reply.json()["connect"].clone()
}

// ------------------------------------------------------------------------------------------------
// Connect and tokens.

#[test]
fn connect_with_a_token_returns_client_ping_and_pong() {
    let env = memory_env();
    let secret = env.gyre.hmac_secret();

    // No exp: the connection never expires, so neither `expires` nor `ttl` is sent.
    let mut client = WsClient::connect(&env.ws_url(), Encoding::Json);
    let token = hs256_token(secret, &json!({"sub": "alice"}));
    client.send_text(&json!({"id": 1, "connect": {"token": token, "name": "js"}}).to_string());
    let reply = client.reply(1);
    let json = reply.json();
    assert_eq!(keys(json), ["connect", "id"], "{json}");
    let result = &json["connect"];
    assert_eq!(
        keys(result),
        ["client", "ping", "pong", "version"],
        "{json}"
    );
    assert!(is_uuid(result["client"].as_str().unwrap()), "{json}");
    assert_eq!(result["ping"], 25);
    assert_eq!(result["pong"], true);

    // With exp: expires + ttl (seconds left).
    let mut client = WsClient::connect(&env.ws_url(), Encoding::Json);
    let token = hs256_token(secret, &json!({"sub": "alice", "exp": unix_now() + 600}));
    let result = json_connect(&mut client, &token);
    assert_eq!(result["expires"], true, "{result}");
    let ttl = result["ttl"].as_u64().expect("ttl");
    assert!((595..=600).contains(&ttl), "ttl {ttl}");
    client.stay_open(Duration::from_millis(100));
}

#[test]
fn connect_without_token_is_refused_unless_anonymous_is_allowed() {
    let env = memory_env();
    let mut client = WsClient::connect(&env.ws_url(), Encoding::Json);
    client.send_text(r#"{"id":1,"connect":{"name":"js"}}"#);
    let close = client.expect_close(WAIT);
    assert_eq!((close.code, close.reason.as_str()), (3501, "bad request"));
    assert!(client.drain().is_empty(), "no reply before the close");

    // Allowed: user "" may connect; namespaces still need allow_*_for_anonymous.
    let anon = ProxyEnv::start(
        EngineKind::Memory,
        builder()
            .client_option("allow_anonymous_connect_without_token = true")
            .extra_toml(
                "[[channel.namespaces]]\nname = \"open\"\nallow_subscribe_for_client = true\n\
                 allow_subscribe_for_anonymous = true",
            ),
    );
    let mut client = WsClient::connect(&anon.ws_url(), Encoding::Json);
    client.send_text(
        "{\"id\":1,\"connect\":{}}\n\
         {\"id\":2,\"subscribe\":{\"channel\":\"open:x\"}}\n\
         {\"id\":3,\"subscribe\":{\"channel\":\"chat:x\"}}",
    );
    let connect = client.reply(1);
    assert!(is_uuid(
        connect.json()["connect"]["client"].as_str().unwrap()
    ));
    assert_eq!(client.reply(2).json(), &json!({"id": 2, "subscribe": {}}));
    assert_eq!(
        client.reply(3).json(),
        &json!({"id": 3, "error": {"code": 103, "message": "permission denied"}}),
        "chat allows clients, not anonymous ones"
    );
}

#[test]
fn a_token_with_a_bad_signature_closes_with_3500() {
    let env = memory_env();
    let mut client = WsClient::connect(&env.ws_url(), Encoding::Json);
    let token = hs256_token("another-secret", &json!({"sub": "alice"}));
    client.send_text(&json!({"id": 1, "connect": {"token": token}}).to_string());
    let close = client.expect_close(WAIT);
    assert_eq!((close.code, close.reason.as_str()), (3500, "invalid token"));
    assert!(client.drain().is_empty(), "no reply before the close");

    // A token that is not a JWT at all is invalid the same way.
    let mut client = WsClient::connect(&env.ws_url(), Encoding::Json);
    client.send_text(r#"{"id":1,"connect":{"token":"not-a-jwt"}}"#);
    assert_eq!(client.expect_close(WAIT).code, 3500);
}

/// `disallow_anonymous_connection_tokens`: a valid token with an empty `sub` closes with 3507;
/// without the option it connects as the anonymous user.
#[test]
fn anonymous_connection_tokens_are_refused_when_disallowed() {
    let anonymous = |secret: &str| hs256_token(secret, &json!({"sub": ""}));
    let env = memory_env();
    let mut client = WsClient::connect(&env.ws_url(), Encoding::Json);
    let connected = json_connect(&mut client, &anonymous(env.gyre.hmac_secret()));
    assert!(connected["client"].is_string(), "{connected}");

    let env = ProxyEnv::start(
        EngineKind::Memory,
        builder().client_option("disallow_anonymous_connection_tokens = true"),
    );
    let mut client = WsClient::connect(&env.ws_url(), Encoding::Json);
    let token = anonymous(env.gyre.hmac_secret());
    client.send_text(&json!({"id": 1, "connect": {"token": token}}).to_string());
    let close = client.expect_close(WAIT);
    assert_eq!(
        (close.code, close.reason.as_str()),
        (3507, "permission denied")
    );
    // A user's token still connects.
    let mut client = WsClient::connect(&env.ws_url(), Encoding::Json);
    let token = hs256_token(env.gyre.hmac_secret(), &json!({"sub": "alice"}));
    let connected = json_connect(&mut client, &token);
    assert!(connected["client"].is_string(), "{connected}");
}

#[test]
fn an_expired_token_gets_error_109_and_the_rest_of_the_frame_is_dropped() {
    let env = memory_env();
    let mut client = WsClient::connect(&env.ws_url(), Encoding::Json);
    let token = hs256_token(
        env.gyre.hmac_secret(),
        &json!({"sub": "alice", "exp": unix_now() - 60}),
    );
    let frame = format!(
        "{}\n{}",
        json!({"id": 1, "connect": {"token": token}}),
        json!({"id": 2, "subscribe": {"channel": "chat:x"}})
    );
    client.send_text(&frame);
    assert_eq!(
        client.reply(1).json(),
        &json!({"id": 1, "error": {"code": 109, "message": "token expired"}})
    );
    // The connection is unusable: the subscribe after the failed connect is not processed.
    assert!(
        client.next_message(Duration::from_millis(300)).is_none(),
        "{:?}",
        client.drain()
    );
}

// ------------------------------------------------------------------------------------------------
// Protocol violations: disconnect 3501 "bad request".

fn expect_bad_request(client: &mut WsClient, what: &str) {
    let close = client.expect_close(WAIT);
    assert_eq!(
        (close.code, close.reason.as_str()),
        (3501, "bad request"),
        "{what}"
    );
}

#[test]
fn protocol_violations_close_with_3501() {
    let env = memory_env();
    let url = env.ws_url();

    let mut client = WsClient::connect(&url, Encoding::Json);
    client.send_text(r#"{"id":1,"subscribe":{"channel":"chat:x"}}"#);
    expect_bad_request(&mut client, "first command is not connect");
    assert!(client.drain().is_empty(), "no reply to the subscribe");

    let mut client = WsClient::connect(&url, Encoding::Json);
    client.send_text("");
    expect_bad_request(&mut client, "empty frame");

    let mut client = WsClient::connect(&url, Encoding::Json);
    client.send_text("garbage, not JSON");
    expect_bad_request(&mut client, "garbage");

    let mut client = WsClient::connect(&url, Encoding::Protobuf);
    client.send_binary(&[0x05, 0xff, 0xff]);
    expect_bad_request(&mut client, "truncated protobuf");

    // After connect: a command without a request, a second connect, a pong without a ping.
    let token = env.token("alice");
    for (frame, what) in [
        (
            r#"{"id":2}"#.to_owned(),
            "command with an id and no request",
        ),
        (
            json!({"id": 2, "connect": {"token": token}}).to_string(),
            "second connect",
        ),
        ("{}".to_owned(), "pong without a ping"),
    ] {
        let mut client = WsClient::connect(&url, Encoding::Json);
        json_connect(&mut client, &token);
        client.send_text(&frame);
        expect_bad_request(&mut client, what);
    }
}

// ------------------------------------------------------------------------------------------------
// Subscribe, publish, receive.

/// connect + subscribe in ONE frame (as centrifuge-js does), API and client publications, exact
/// reply and push shapes.
fn subscribe_publish_receive(engine: EngineKind) {
    let env = env(engine);
    let mut alice = WsClient::connect(&env.ws_url(), Encoding::Json);
    let frame = format!(
        "{}\n{}",
        json!({"id": 1, "connect": {"token": env.token("alice"), "name": "js"}}),
        json!({"id": 2, "subscribe": {"channel": "chat:room", "flag": 1}})
    );
    alice.send_text(&frame);
    let connect = alice.reply(1);
    let alice_id = connect.json()["connect"]["client"]
        .as_str()
        .unwrap()
        .to_owned();
    let subscribe = alice.reply(2);
    let result = &subscribe.json()["subscribe"];
    // A fresh channel of a recoverable namespace: positioned at offset 0.
    assert_eq!(result["recoverable"], true, "{result}");
    assert_eq!(result["positioned"], true, "{result}");
    assert!(
        result.get("offset").is_none(),
        "offset 0 is omitted: {result}"
    );
    for absent in ["recovered", "was_recovering", "publications", "expires"] {
        assert!(result.get(absent).is_none(), "{absent} in {result}");
    }

    // From the server API: data embedded verbatim, offset, no info.
    let (offset, epoch) = env.publish("chat:room", json!({"text": "hi"}));
    assert_eq!(offset, 1);
    assert!(is_epoch(&epoch), "{epoch:?}");
    let push = alice.publications("chat:room", 1, WAIT).remove(0);
    assert_eq!(
        push.json(),
        &json!({"push": {"channel": "chat:room", "pub": {"data": {"text": "hi"}, "offset": 1}}})
    );

    // From a client: reply `publish:{}`, and the publication carries the publisher's info.
    let mut bob = env.client("bob");
    bob.send_text(
        &json!({"id": 5, "publish": {"channel": "chat:room", "data": {"n": 2}}}).to_string(),
    );
    assert_eq!(bob.reply(5).json(), &json!({"id": 5, "publish": {}}));
    let push = alice.publications("chat:room", 1, WAIT).remove(0);
    let publication = &push.json()["push"]["pub"];
    assert_eq!(publication["data"], json!({"n": 2}));
    assert_eq!(publication["offset"], 2);
    assert_eq!(publication["info"]["user"], "bob", "{publication}");
    assert!(is_uuid(publication["info"]["client"].as_str().unwrap()));
    assert_ne!(publication["info"]["client"], alice_id.as_str());

    // Unsubscribe: reply `unsubscribe:{}`, and nothing more arrives.
    alice.send_text(r#"{"id":3,"unsubscribe":{"channel":"chat:room"}}"#);
    assert_eq!(alice.reply(3).json(), &json!({"id": 3, "unsubscribe": {}}));
    env.publish("chat:room", json!({"text": "after"}));
    alice.assert_no_publication("chat:room", Duration::from_millis(300));
}

/// Several commands in one frame all get their replies, in order of processing; every server
/// frame is `\n`-joined JSON without a trailing newline.
fn coalesced_commands(engine: EngineKind) {
    let env = env(engine);
    let mut client = env.client("alice");
    client.record_frames();
    client.send_text(
        "{\"id\":10,\"subscribe\":{\"channel\":\"chat:c\"}}\n\
         {\"id\":11,\"publish\":{\"channel\":\"chat:c\",\"data\":{\"n\":1}}}\n\
         {\"id\":12,\"publish\":{\"channel\":\"chat:c\",\"data\":{\"n\":2}}}\n\
         {\"id\":13,\"history\":{\"channel\":\"chat:c\",\"limit\":-1}}\n\
         {\"id\":14,\"presence_stats\":{\"channel\":\"chat:c\"}}\n",
    );
    assert_eq!(client.reply(10).json()["subscribe"]["recoverable"], true);
    assert_eq!(client.reply(11).json(), &json!({"id": 11, "publish": {}}));
    assert_eq!(client.reply(12).json(), &json!({"id": 12, "publish": {}}));
    let history = client.reply(13);
    let history = &history.json()["history"];
    assert_eq!(history["offset"], 2, "{history}");
    let offsets: Vec<u64> = history["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, [1, 2]);
    assert_eq!(
        client.reply(14).json(),
        &json!({"id": 14, "presence_stats": {"num_clients": 1, "num_users": 1}})
    );
    let pubs = client.publications("chat:c", 2, WAIT);
    assert_eq!(
        pubs.iter()
            .map(|p| p.publication().offset)
            .collect::<Vec<_>>(),
        [1, 2]
    );

    // A burst of publications: whatever the batching, each frame is well-formed.
    for n in 0..30 {
        env.publish("chat:c", json!({"burst": n}));
    }
    client.publications("chat:c", 30, WAIT);
    for frame in client.raw_frames() {
        let text = std::str::from_utf8(frame).unwrap();
        assert!(!text.ends_with('\n'), "trailing newline in {text:?}");
        assert!(!text.contains("\n\n"), "empty line in {text:?}");
    }
}

/// Protobuf: the subprotocol is echoed, every frame is binary and varint-delimited (also a
/// single message), payload bytes pass through.
fn protobuf_subprotocol(engine: EngineKind) {
    let env = env(engine);
    let mut client = WsClient::connect(&env.ws_url(), Encoding::Protobuf);
    assert_eq!(client.subprotocol.as_deref(), Some("centrifuge-protobuf"));
    assert_eq!(client.encoding(), Encoding::Protobuf);
    client.record_frames();
    client.send(&[
        cmd::connect(1, &env.token("alice")),
        cmd::subscribe(2, "chat:pb"),
    ]);
    let connect = client.reply(1).reply.connect.expect("connect result");
    assert!(is_uuid(&connect.client));
    assert_eq!((connect.ping, connect.pong), (25, true));
    let subscribe = client.reply(2).reply.subscribe.expect("subscribe result");
    assert!(subscribe.recoverable && subscribe.positioned);

    env.publish("chat:pb", json!({"n": 1}));
    let push = client.publications("chat:pb", 1, WAIT).remove(0);
    let publication = push.publication();
    assert_eq!(publication.offset, 1);
    assert_eq!(&publication.data[..], br#"{"n":1}"#);

    let publish = client.call(cmd::publish(0, "chat:pb", b"\"from protobuf\""));
    assert!(
        publish.error.is_none() && publish.publish.is_some(),
        "{publish:?}"
    );
    let push = client.publications("chat:pb", 1, WAIT).remove(0);
    assert_eq!(&push.publication().data[..], b"\"from protobuf\"");
    assert_eq!(push.publication().info.as_ref().unwrap().user, "alice");

    // The first frame held the connect reply: a varint length prefix, then exactly that many
    // bytes (or more messages after them).
    let first = &client.raw_frames()[0];
    let (len, prefix) = read_varint(first);
    assert!(prefix + len as usize <= first.len(), "{first:?}");

    // ?format=protobuf without a subprotocol selects Protobuf too.
    let url = format!("{}?format=protobuf", env.ws_url());
    let mut client = WsClient::connect_with(&url, WsOptions::default()).expect("handshake");
    assert_eq!(client.encoding(), Encoding::Protobuf);
    let reply = client.call(cmd::connect(1, &env.token("bob")));
    assert!(reply.connect.is_some(), "{reply:?}");
}

fn read_varint(bytes: &[u8]) -> (u64, usize) {
    let mut value = 0u64;
    for (i, b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return (value, i + 1);
        }
    }
    panic!("no varint at the start of {bytes:?}");
}

/// A payload that is not JSON cannot reach a JSON client: Centrifugo closes such a client with
/// 3506 "inappropriate protocol" (docs/protocol.md#json-encoding) rather than skip the publication
/// silently. Protobuf subscribers get the bytes.
#[test]
fn binary_data_closes_json_subscribers_with_3506() {
    let env = memory_env();
    let mut json_sub = env.client("alice");
    json_sub.send(&[cmd::subscribe(1, "plain:bin")]);
    json_sub.reply(1);
    let mut pb_sub = env.client_in(Encoding::Protobuf, "bob");
    pb_sub.send(&[cmd::subscribe(1, "plain:bin")]);
    pb_sub.reply(1);

    let binary = [0xffu8, 0x00, 0x01, b'x'];
    let reply = pb_sub.call(cmd::publish(0, "plain:bin", &binary));
    assert!(reply.error.is_none(), "{reply:?}");
    assert_eq!(
        &pb_sub.publications("plain:bin", 1, WAIT)[0]
            .publication()
            .data[..],
        &binary
    );
    // A JSON publication after it: a client that skipped the binary one would get this.
    env.api(
        "publish",
        json!({"channel": "plain:bin", "data": {"after": true}}),
    );
    let close = json_sub.expect_close(WAIT);
    assert_eq!(
        (close.code, close.reason.as_str()),
        (3506, "inappropriate protocol"),
        "{:?}",
        json_sub.drain()
    );
}

// ------------------------------------------------------------------------------------------------
// Error replies.

fn error_of(client: &mut WsClient, id: u32) -> Value {
    let reply = client.reply(id);
    let json = reply.json().clone();
    assert_eq!(keys(&json), ["error", "id"], "{json}");
    json["error"].clone()
}

fn error_replies(engine: EngineKind) {
    let env = env(engine);
    let mut c = env.client("alice");
    let error = |code: u64, message: &str| json!({"code": code, "message": message});

    c.send_text(r#"{"id":1,"subscribe":{"channel":"nope:x"}}"#);
    assert_eq!(error_of(&mut c, 1), error(102, "unknown channel"));
    c.send_text(r#"{"id":2,"subscribe":{"channel":"locked:x"}}"#);
    assert_eq!(error_of(&mut c, 2), error(103, "permission denied"));
    for (id, method) in [(3, "history"), (4, "presence"), (5, "presence_stats")] {
        c.send_text(&json!({"id": id, method: {"channel": "locked:x"}}).to_string());
        assert_eq!(
            error_of(&mut c, id),
            error(103, "permission denied"),
            "{method}"
        );
    }
    c.send_text(r#"{"id":6,"publish":{"channel":"locked:x","data":{}}}"#);
    assert_eq!(error_of(&mut c, 6), error(103, "permission denied"));
    c.send_text(r#"{"id":7,"publish":{"channel":"nope:x","data":{}}}"#);
    assert_eq!(error_of(&mut c, 7), error(102, "unknown channel"));

    c.send_text(r#"{"id":10,"subscribe":{"channel":"chat:a"}}"#);
    c.reply(10);
    c.send_text(r#"{"id":11,"subscribe":{"channel":"chat:a"}}"#);
    assert_eq!(error_of(&mut c, 11), error(105, "already subscribed"));

    // plain: allowed for subscribers, but no history and no presence there.
    c.send_text(r#"{"id":12,"subscribe":{"channel":"plain:x"}}"#);
    assert_eq!(c.reply(12).json(), &json!({"id": 12, "subscribe": {}}));
    for (id, method) in [(13, "history"), (14, "presence"), (15, "presence_stats")] {
        c.send_text(&json!({"id": id, method: {"channel": "plain:x"}}).to_string());
        assert_eq!(
            error_of(&mut c, id),
            error(108, "not available"),
            "{method}"
        );
    }

    // channel_limit = 4: chat:a, plain:x, then two more; the fifth is refused.
    for (id, channel) in [(16, "chat:b"), (17, "chat:c")] {
        c.send_text(&json!({"id": id, "subscribe": {"channel": channel}}).to_string());
        assert!(c.reply(id).reply.error.is_none());
    }
    c.send_text(r#"{"id":18,"subscribe":{"channel":"chat:d"}}"#);
    assert_eq!(error_of(&mut c, 18), error(106, "limit exceeded"));

    c.send_text(r#"{"id":19,"rpc":{"method":"getX","data":{}}}"#);
    assert_eq!(error_of(&mut c, 19), error(104, "method not found"));

    // history since a position of another epoch → 112.
    let (_, epoch) = env.publish("chat:a", json!({"n": 1}));
    c.send_text(
        r#"{"id":20,"history":{"channel":"chat:a","limit":10,"since":{"offset":0,"epoch":"wrongepo"}}}"#,
    );
    assert_eq!(error_of(&mut c, 20), error(112, "unrecoverable position"));
    c.send_text(
        &json!({"id": 21, "history": {"channel": "chat:a", "limit": 10, "since": {"offset": 0, "epoch": epoch}}})
            .to_string(),
    );
    let history = c.reply(21);
    assert_eq!(history.json()["history"]["epoch"], epoch.as_str());
    assert_eq!(
        history.json()["history"]["publications"][0]["data"],
        json!({"n": 1})
    );

    // None of this cost the connection.
    c.send_text(r#"{"id":22,"publish":{"channel":"chat:a","data":{"still":"here"}}}"#);
    assert_eq!(c.reply(22).json(), &json!({"id": 22, "publish": {}}));
    assert!(c.closed().is_none());
}

/// `allow_history_for_subscriber` and `allow_presence_for_subscriber`
/// (docs/protocol.md#subscribe-permissions): the subscribe command counts the client as a
/// subscriber of that channel, so `positioned`, `recoverable` and `join_leave` are granted when
/// asked for; the history and presence commands still need a subscription to the channel they name.
fn subscriber_permissions_count_while_subscribing(engine: EngineKind) {
    let env = env(engine);
    let mut alice = env.client("alice");
    let denied = json!({"code": 103, "message": "permission denied"});
    for (id, method) in [(1, "history"), (2, "presence"), (3, "presence_stats")] {
        alice.send_text(&json!({"id": id, method: {"channel": "members:a"}}).to_string());
        assert_eq!(
            error_of(&mut alice, id),
            denied,
            "{method} before subscribing"
        );
    }

    alice.send_text(r#"{"id":4,"subscribe":{"channel":"members:a","positioned":true}}"#);
    let result = alice.reply(4).json()["subscribe"].clone();
    assert_eq!(result["positioned"], true, "{result}");
    assert!(
        result.get("recoverable").is_none(),
        "not asked for: {result}"
    );
    assert!(is_epoch(result["epoch"].as_str().unwrap_or("")), "{result}");

    alice.send_text(
        r#"{"id":5,"subscribe":{"channel":"members:b","recoverable":true,"join_leave":true}}"#,
    );
    let result = alice.reply(5).json()["subscribe"].clone();
    assert_eq!(result["recoverable"], true, "{result}");
    assert_eq!(result["positioned"], true, "{result}");

    // Subscribed now: members:a's history and presence are readable, members:c's are not.
    alice.send_text(r#"{"id":6,"history":{"channel":"members:a","limit":-1}}"#);
    assert!(alice.reply(6).json().get("history").is_some());
    alice.send_text(r#"{"id":7,"presence":{"channel":"members:a"}}"#);
    assert!(alice.reply(7).json()["presence"]["presence"].is_object());
    alice.send_text(r#"{"id":8,"history":{"channel":"members:c","limit":-1}}"#);
    assert_eq!(
        error_of(&mut alice, 8),
        denied,
        "history of another channel"
    );

    // bob joins both channels: alice asked for join/leave on members:b only.
    let mut bob = env.client("bob");
    bob.send(&[
        cmd::subscribe(1, "members:a"),
        cmd::subscribe(2, "members:b"),
    ]);
    bob.reply(1);
    bob.reply(2);
    let joins: Vec<Value> = std::iter::from_fn(|| alice.next_push(Duration::from_millis(500)))
        .map(|m| m.json()["push"].clone())
        .filter(|push| push.get("join").is_some())
        .collect();
    let of_bob: Vec<&Value> = joins
        .iter()
        .filter(|push| push["join"]["info"]["user"] == "bob")
        .collect();
    assert_eq!(of_bob.len(), 1, "bob's joins seen by alice: {joins:?}");
    assert_eq!(of_bob[0]["channel"], "members:b", "{joins:?}");
}

// ------------------------------------------------------------------------------------------------
// Recovery.

/// Subscribe recoverable, go away, miss publications, come back with recover + offset + epoch:
/// exactly the missed publications, in order; then live ones continue from there.
fn recovery_returns_exactly_the_missed_publications(engine: EngineKind) {
    let env = env(engine);
    let (_, epoch) = env.publish("chat:rec", json!({"n": 1}));
    let mut client = env.client("alice");
    client.send_text(r#"{"id":1,"subscribe":{"channel":"chat:rec"}}"#);
    let subscribed = client.reply(1);
    let result = &subscribed.json()["subscribe"];
    assert_eq!(result["offset"], 1, "{result}");
    assert_eq!(result["epoch"], epoch.as_str(), "{result}");
    drop(client);

    for n in 2..=6 {
        assert_eq!(env.publish("chat:rec", json!({"n": n})).0, n);
    }
    let mut client = env.client("alice");
    client.send_text(
        &json!({"id": 1, "subscribe": {"channel": "chat:rec", "recover": true, "offset": 1, "epoch": epoch}})
            .to_string(),
    );
    let reply = client.reply(1);
    let result = &reply.json()["subscribe"];
    assert_eq!(result["recovered"], true, "{result}");
    assert_eq!(result["was_recovering"], true, "{result}");
    assert_eq!(result["epoch"], epoch.as_str());
    let publications = result["publications"].as_array().expect("publications");
    let got: Vec<(u64, Value)> = publications
        .iter()
        .map(|p| (p["offset"].as_u64().unwrap(), p["data"].clone()))
        .collect();
    let want: Vec<(u64, Value)> = (2..=6).map(|n| (n, json!({"n": n}))).collect();
    assert_eq!(got, want);
    client.assert_no_publication("chat:rec", Duration::from_millis(200));

    env.publish("chat:rec", json!({"n": 7}));
    let live = client.publications("chat:rec", 1, WAIT);
    assert_eq!(live[0].publication().offset, 7);

    // Nothing missed: recovered, no publications.
    let mut client = env.client("alice");
    client.send(&[cmd::recover(1, "chat:rec", 7, &epoch)]);
    let result = client.reply(1).reply.subscribe.expect("subscribe");
    assert!(result.recovered && result.was_recovering, "{result:?}");
    assert!(result.publications.is_empty());
    assert_eq!(result.offset, 7);
}

/// The publications after the client's offset were trimmed (history 3), or the epoch is not the
/// stream's: not recovered, nothing replayed, the position is the stream top.
fn recovery_fails_when_history_is_gone(engine: EngineKind) {
    let env = env(engine);
    let (_, epoch) = env.publish("small:rec", json!({"n": 1}));
    for n in 2..=6 {
        env.publish("small:rec", json!({"n": n}));
    }
    let mut client = env.client("alice");
    client.send(&[cmd::recover(1, "small:rec", 1, &epoch)]);
    let result = client.reply(1).reply.subscribe.expect("subscribe");
    assert!(!result.recovered, "{result:?}");
    assert!(result.was_recovering);
    assert!(result.publications.is_empty(), "{result:?}");
    assert_eq!((result.offset, result.epoch.as_str()), (6, epoch.as_str()));
    client.assert_no_publication("small:rec", Duration::from_millis(200));
    env.publish("small:rec", json!({"n": 7}));
    assert_eq!(
        client.publications("small:rec", 1, WAIT)[0]
            .publication()
            .offset,
        7
    );

    // Another epoch: not recovered either, even though offset 5 is still in history.
    let mut client = env.client("alice");
    client.send(&[cmd::recover(1, "small:rec", 5, "otherEpc")]);
    let result = client.reply(1).reply.subscribe.expect("subscribe");
    assert!(!result.recovered && result.was_recovering, "{result:?}");
    assert!(result.publications.is_empty());
    assert_eq!((result.offset, result.epoch.as_str()), (7, epoch.as_str()));
}

/// Centrifuge answers a successful recovery with the REQUEST's offset
/// (docs/protocol.md#recovery-on-subscribe): the client reaches the top by processing the recovered
/// publications.
fn recovered_reply_carries_the_request_offset(engine: EngineKind) {
    let env = env(engine);
    let (_, epoch) = env.publish("chat:off", json!({"n": 1}));
    env.publish("chat:off", json!({"n": 2}));
    env.publish("chat:off", json!({"n": 3}));
    let mut client = env.client("alice");
    client.send(&[cmd::recover(1, "chat:off", 1, &epoch)]);
    let result = client.reply(1).reply.subscribe.expect("subscribe");
    assert!(result.recovered);
    assert_eq!(result.publications.len(), 2);
    assert_eq!(result.offset, 1, "offset of the request, not the top");
}

/// A positioned subscription always learns the stream's epoch, also on a channel nobody has
/// published to yet (Centrifuge creates the epoch on that read): with an empty epoch, a client
/// cannot tell a restarted stream from its own, and a later recovery replays the wrong stream.
fn positioned_subscribe_on_a_fresh_channel_gets_an_epoch(engine: EngineKind) {
    let env = env(engine);
    let mut client = env.client("alice");
    client.send(&[cmd::subscribe(1, "chat:fresh")]);
    let result = client.reply(1).reply.subscribe.expect("subscribe");
    assert!(result.positioned);
    assert!(
        is_epoch(&result.epoch),
        "epoch {:?} in a positioned subscribe reply",
        result.epoch
    );
    // And it is the epoch publications will have.
    let (_, epoch) = env.publish("chat:fresh", json!({"n": 1}));
    assert_eq!(result.epoch, epoch);
}

/// Subscribing while publications flow (docs/protocol.md#recovery-on-subscribe): the subscribe
/// reply comes before any publication of the channel, and reply + live publications continue the
/// stream without gap or duplicate — recovering or not.
fn subscribe_under_load_is_seamless(engine: EngineKind) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let env = env(engine);
    let (_, epoch) = env.publish("chat:load", json!({"n": 1}));
    let stop = AtomicBool::new(false);
    let last = std::thread::scope(|scope| {
        let publisher = scope.spawn(|| {
            let mut last = 1;
            while !stop.load(Ordering::Relaxed) {
                last = env.publish("chat:load", json!({"n": last + 1})).0;
            }
            last
        });
        let mut clients = Vec::new();
        for i in 0..6 {
            let mut client = WsClient::connect(&env.ws_url(), Encoding::Json);
            let subscribe = if i % 2 == 0 {
                cmd::subscribe(2, "chat:load")
            } else {
                cmd::recover(2, "chat:load", 1, &epoch)
            };
            client.send(&[cmd::connect(1, &env.token("alice")), subscribe]);
            clients.push(client);
            std::thread::sleep(Duration::from_millis(30));
        }
        std::thread::sleep(Duration::from_millis(50));
        stop.store(true, Ordering::Relaxed);
        let last = publisher.join().expect("publisher");
        for (i, client) in clients.iter_mut().enumerate() {
            let first = client.next_message(WAIT).expect("connect reply");
            assert_eq!(first.reply.id, 1, "client {i}: {:?}", first.reply);
            let second = client.next_message(WAIT).expect("subscribe reply");
            assert_eq!(
                second.reply.id, 2,
                "client {i}: a publication before the subscribe reply: {:?}",
                second.reply
            );
            let result = second.reply.subscribe.expect("subscribe result");
            let mut offsets: Vec<u64> = result.publications.iter().map(|p| p.offset).collect();
            let start = if result.recovered {
                assert_eq!(i % 2, 1, "client {i} did not ask to recover");
                1
            } else {
                result.offset
            };
            let live = (last - start) as usize - offsets.len();
            let pubs = client.publications("chat:load", live, WAIT);
            offsets.extend(pubs.iter().map(|p| p.publication().offset));
            assert_eq!(
                offsets,
                (start + 1..=last).collect::<Vec<_>>(),
                "client {i} (recovered: {})",
                result.recovered
            );
            client.assert_no_publication("chat:load", Duration::from_millis(50));
        }
        last
    });
    assert!(last > 10, "only {last} publications");
}

gyre_tests::on_both_engines! {
    subscribe_publish_receive,
    subscribe_under_load_is_seamless,
    coalesced_commands,
    protobuf_subprotocol,
    error_replies,
    subscriber_permissions_count_while_subscribing,
    recovery_returns_exactly_the_missed_publications,
    recovery_fails_when_history_is_gone,
    recovered_reply_carries_the_request_offset,
    positioned_subscribe_on_a_fresh_channel_gets_an_epoch,
}

/// The consequence of an empty epoch (see above), with the memory engine: the client subscribed
/// before the first publication and never learned the epoch; gyre restarts (memory engine: new
/// streams, new epochs), three publications get offsets 1..3 of the NEW stream; the client comes
/// back recovering from offset 2 of the OLD stream and must not be told it recovered.
#[test]
fn recovery_across_a_memory_engine_restart_is_not_claimed() {
    let mut env = memory_env();
    let mut client = env.client("alice");
    client.send(&[cmd::subscribe(1, "chat:restart")]);
    let subscribed = client.reply(1).reply.subscribe.expect("subscribe");
    env.publish("chat:restart", json!({"n": 1}));
    env.publish("chat:restart", json!({"n": 2}));
    client.publications("chat:restart", 2, WAIT);
    // What the SDK would send back: the epoch of the subscribe reply, offset of the last pub.
    let known_epoch = subscribed.epoch.clone();
    drop(client);

    env.gyre.restart();
    for n in 1..=3 {
        env.publish("chat:restart", json!({"after_restart": n}));
    }
    let mut client = env.client("alice");
    client.send(&[cmd::recover(1, "chat:restart", 2, &known_epoch)]);
    let result = client.reply(1).reply.subscribe.expect("subscribe");
    assert!(
        !result.recovered,
        "claimed recovery from the old stream (epoch {known_epoch:?}) into the new one: {result:?}"
    );
}
