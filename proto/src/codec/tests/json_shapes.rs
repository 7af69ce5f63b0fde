//! The exact JSON shape of every message type Gyre sends or reads (examples in
//! docs/protocol.md#json-examples).
//!
//! Replies and pushes are encoded from Rust values and compared with the expected text: as an exact
//! string when the reference's key order is proto declaration order (the order serde writes), as
//! parsed JSON otherwise. Commands are decoded into Rust values and checked field by field.

use std::collections::HashMap;

use bytes::Bytes;

use super::{assert_same_json, raw, to_json};
use crate::codec::{Encoding, decode_message};
use crate::protocol::*;

fn decode_command(line: &'static str) -> Command {
    decode_message(Encoding::Json, Bytes::from_static(line.as_bytes())).expect("command decodes")
}

fn info(user: &str, client: &str) -> ClientInfo {
    ClientInfo {
        user: user.into(),
        client: client.into(),
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Commands (client -> server): decoding.

#[test]
fn connect_command() {
    let command = decode_command(
        r##"{"id":1,"connect":{"token":"T0K","data":{"app": "x"},"name":"js","version":"1.0","subs":{"#42":{"recover":true,"offset":5,"epoch":"AbCdEfGh"}},"headers":{"X-Foo":"bar"}}}"##,
    );
    assert_eq!(command.id, 1);
    let connect = command.connect.expect("connect");
    assert_eq!(connect.token, "T0K");
    assert_eq!(
        connect.data, r#"{"app": "x"}"#,
        "raw data kept byte for byte"
    );
    assert_eq!(connect.name, "js");
    assert_eq!(connect.version, "1.0");
    let sub = &connect.subs["#42"];
    assert!(sub.recover);
    assert_eq!((sub.offset, sub.epoch.as_str()), (5, "AbCdEfGh"));
    assert_eq!(connect.headers["X-Foo"], "bar");
    assert_eq!(command.subscribe, None);

    // And back: our own test clients encode the same shape.
    assert_same_json(
        &to_json(&Command {
            id: 1,
            connect: Some(connect),
            ..Default::default()
        }),
        r##"{"id":1,"connect":{"token":"T0K","data":{"app": "x"},"name":"js","version":"1.0","subs":{"#42":{"recover":true,"offset":5,"epoch":"AbCdEfGh"}},"headers":{"X-Foo":"bar"}}}"##,
    );
}

#[test]
fn subscribe_command_with_flag_and_unknown_keys() {
    let command = decode_command(
        r#"{"id":2,"subscribe":{"channel":"chat:1","token":"SUB","recover":true,"offset":5,"epoch":"AbCdEfGh","positioned":true,"recoverable":true,"join_leave":true,"delta":"fossil","data":{"k":[1,2]},"flag":1,"from_the_future":{"x":[null]}},"also_unknown":7}"#,
    );
    assert_eq!(command.id, 2);
    let sub = command.subscribe.expect("subscribe");
    assert_eq!(sub.channel, "chat:1");
    assert_eq!(sub.token, "SUB");
    assert!(sub.recover && sub.positioned && sub.recoverable && sub.join_leave);
    assert_eq!(sub.offset, 5);
    assert_eq!(sub.epoch, "AbCdEfGh");
    assert_eq!(sub.delta, "fossil");
    assert_eq!(sub.data, r#"{"k":[1,2]}"#);
    assert_eq!(sub.flag, 1);
    assert_eq!(sub.r#type, 0);
}

#[test]
fn simple_commands() {
    let command = decode_command(r#"{"id":3,"unsubscribe":{"channel":"chat:1"}}"#);
    assert_eq!(command.id, 3);
    assert_eq!(command.unsubscribe.unwrap().channel, "chat:1");

    let command = decode_command(r#"{"id":4,"publish":{"channel":"chat:1","data":{"text":"hi"}}}"#);
    let publish = command.publish.unwrap();
    assert_eq!((command.id, publish.channel.as_str()), (4, "chat:1"));
    assert_eq!(publish.data, r#"{"text":"hi"}"#);

    let command = decode_command(r#"{"id":5,"presence":{"channel":"chat:1"}}"#);
    assert_eq!(
        (command.id, command.presence.unwrap().channel.as_str()),
        (5, "chat:1")
    );

    let command = decode_command(r#"{"id":6,"presence_stats":{"channel":"chat:1"}}"#);
    assert_eq!(command.id, 6);
    assert_eq!(command.presence_stats.unwrap().channel, "chat:1");

    let command = decode_command(
        r#"{"id":7,"history":{"channel":"chat:1","limit":10,"since":{"offset":5,"epoch":"AbCdEfGh"},"reverse":true}}"#,
    );
    let history = command.history.unwrap();
    assert_eq!(
        (command.id, history.channel.as_str(), history.limit),
        (7, "chat:1", 10)
    );
    assert_eq!(
        history.since,
        Some(StreamPosition {
            offset: 5,
            epoch: "AbCdEfGh".into()
        })
    );
    assert!(history.reverse);

    let command = decode_command(r#"{"id":8,"rpc":{"method":"getX","data":"just a string"}}"#);
    let rpc = command.rpc.unwrap();
    assert_eq!((command.id, rpc.method.as_str()), (8, "getX"));
    assert_eq!(
        rpc.data, r#""just a string""#,
        "any JSON value is captured raw"
    );

    let command = decode_command(r#"{"send":{"data":{"fire":"forget"}}}"#);
    assert_eq!(command.id, 0, "send has no id");
    assert_eq!(command.send.unwrap().data, r#"{"fire":"forget"}"#);

    let command = decode_command(r#"{"id":9,"refresh":{"token":"NEW"}}"#);
    assert_eq!(
        (command.id, command.refresh.unwrap().token.as_str()),
        (9, "NEW")
    );

    let command = decode_command(r#"{"id":10,"sub_refresh":{"channel":"chat:1","token":"S2"}}"#);
    let sub_refresh = command.sub_refresh.unwrap();
    assert_eq!(command.id, 10);
    assert_eq!(
        (sub_refresh.channel.as_str(), sub_refresh.token.as_str()),
        ("chat:1", "S2")
    );

    assert_eq!(decode_command("{}"), Command::default(), "pong");
}

#[test]
fn simple_commands_encode_in_reference_order() {
    let cases = [
        (
            Command {
                id: 3,
                unsubscribe: Some(UnsubscribeRequest {
                    channel: "chat:1".into(),
                }),
                ..Default::default()
            },
            r#"{"id":3,"unsubscribe":{"channel":"chat:1"}}"#,
        ),
        (
            Command {
                id: 4,
                publish: Some(PublishRequest {
                    channel: "chat:1".into(),
                    data: raw(r#"{"text":"hi"}"#),
                    ..Default::default()
                }),
                ..Default::default()
            },
            r#"{"id":4,"publish":{"channel":"chat:1","data":{"text":"hi"}}}"#,
        ),
        (
            Command {
                id: 7,
                history: Some(HistoryRequest {
                    channel: "chat:1".into(),
                    limit: 10,
                    since: Some(StreamPosition {
                        offset: 5,
                        epoch: "AbCdEfGh".into(),
                    }),
                    reverse: true,
                }),
                ..Default::default()
            },
            r#"{"id":7,"history":{"channel":"chat:1","limit":10,"since":{"offset":5,"epoch":"AbCdEfGh"},"reverse":true}}"#,
        ),
        (
            Command {
                send: Some(SendRequest {
                    data: raw(r#"{"a":1}"#),
                }),
                ..Default::default()
            },
            r#"{"send":{"data":{"a":1}}}"#,
        ),
        (Command::default(), "{}"),
    ];
    for (command, expected) in cases {
        assert_eq!(to_json(&command), expected);
    }
}

#[test]
fn raw_identifier_fields_use_proto_names() {
    let command = decode_command(
        r#"{"id":11,"publish":{"channel":"m","data":1,"type":1,"key":"k","removed":true}}"#,
    );
    let publish = command.publish.clone().unwrap();
    assert_eq!((publish.r#type, publish.key.as_str()), (1, "k"));
    assert!(publish.removed);
    assert_eq!(publish.data, "1");
    assert_eq!(
        to_json(&command),
        r#"{"id":11,"publish":{"channel":"m","data":1,"type":1,"key":"k","removed":true}}"#
    );

    let push = Push {
        channel: "c".into(),
        r#pub: Some(Publication {
            data: raw("{}"),
            offset: 1,
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        to_json(&push),
        r#"{"channel":"c","pub":{"data":{},"offset":1}}"#
    );
}

// ---------------------------------------------------------------------------------------------
// Replies (server -> client): encoding.

#[test]
fn connect_reply() {
    let reply = Reply {
        id: 1,
        connect: Some(ConnectResult {
            client: "c1".into(),
            version: "0.1.0".into(),
            expires: true,
            ttl: 600,
            data: raw(r#"{"welcome":true}"#),
            subs: HashMap::from([(
                "#42".to_owned(),
                SubscribeResult {
                    recoverable: true,
                    positioned: true,
                    epoch: "AbCdEfGh".into(),
                    offset: 9,
                    recovered: true,
                    was_recovering: true,
                    publications: vec![Publication {
                        data: raw(r#"{"n":9}"#),
                        offset: 9,
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            )]),
            ping: 25,
            pong: true,
            session: "s1".into(),
            node: "n1".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_same_json(
        &to_json(&reply),
        r##"{"id":1,"connect":{"client":"c1","version":"0.1.0","expires":true,"ttl":600,"data":{"welcome":true},"subs":{"#42":{"recoverable":true,"positioned":true,"epoch":"AbCdEfGh","offset":9,"recovered":true,"was_recovering":true,"publications":[{"data":{"n":9},"offset":9}]}},"ping":25,"pong":true,"session":"s1","node":"n1"}}"##,
    );

    // The usual minimal one, exactly (id first, then proto order).
    let reply = Reply {
        id: 1,
        connect: Some(ConnectResult {
            client: "c1".into(),
            version: "0.1.0".into(),
            ping: 25,
            pong: true,
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        to_json(&reply),
        r#"{"id":1,"connect":{"client":"c1","version":"0.1.0","ping":25,"pong":true}}"#
    );
}

#[test]
fn subscribe_reply() {
    let reply = Reply {
        id: 2,
        subscribe: Some(SubscribeResult {
            expires: true,
            ttl: 300,
            recoverable: true,
            positioned: true,
            epoch: "AbCdEfGh".into(),
            offset: 5,
            recovered: true,
            was_recovering: true,
            publications: vec![Publication {
                data: raw(r#"{"n":6}"#),
                offset: 6,
                ..Default::default()
            }],
            data: raw(r#"{"sub":"data"}"#),
            delta: true,
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_same_json(
        &to_json(&reply),
        r#"{"id":2,"subscribe":{"expires":true,"ttl":300,"recoverable":true,"positioned":true,"epoch":"AbCdEfGh","offset":5,"recovered":true,"was_recovering":true,"publications":[{"data":{"n":6},"offset":6}],"data":{"sub":"data"},"delta":true}}"#,
    );

    let empty = Reply {
        id: 2,
        subscribe: Some(SubscribeResult::default()),
        ..Default::default()
    };
    assert_eq!(to_json(&empty), r#"{"id":2,"subscribe":{}}"#);

    let positioned = Reply {
        id: 2,
        subscribe: Some(SubscribeResult {
            recoverable: true,
            epoch: "xYzAbCdE".into(),
            offset: 7,
            positioned: true,
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        to_json(&positioned),
        r#"{"id":2,"subscribe":{"recoverable":true,"epoch":"xYzAbCdE","offset":7,"positioned":true}}"#
    );
}

#[test]
fn empty_results_are_empty_objects() {
    let unsubscribe = Reply {
        id: 3,
        unsubscribe: Some(UnsubscribeResult {}),
        ..Default::default()
    };
    assert_eq!(to_json(&unsubscribe), r#"{"id":3,"unsubscribe":{}}"#);
    let publish = Reply {
        id: 4,
        publish: Some(PublishResult {}),
        ..Default::default()
    };
    assert_eq!(to_json(&publish), r#"{"id":4,"publish":{}}"#);
}

#[test]
fn presence_replies() {
    let single = Reply {
        id: 5,
        presence: Some(PresenceResult {
            presence: HashMap::from([(
                "c1".to_owned(),
                ClientInfo {
                    user: "42".into(),
                    client: "c1".into(),
                    conn_info: raw(r#"{"name":"Ann"}"#),
                    chan_info: raw(r#"{"role":"mod"}"#),
                },
            )]),
        }),
        ..Default::default()
    };
    assert_eq!(
        to_json(&single),
        r#"{"id":5,"presence":{"presence":{"c1":{"user":"42","client":"c1","conn_info":{"name":"Ann"},"chan_info":{"role":"mod"}}}}}"#
    );

    let two = Reply {
        id: 5,
        presence: Some(PresenceResult {
            presence: HashMap::from([
                ("c1".to_owned(), info("42", "c1")),
                ("c2".to_owned(), info("", "c2")),
            ]),
        }),
        ..Default::default()
    };
    assert_same_json(
        &to_json(&two),
        r#"{"id":5,"presence":{"presence":{"c1":{"user":"42","client":"c1"},"c2":{"client":"c2"}}}}"#,
    );

    let stats = Reply {
        id: 6,
        presence_stats: Some(PresenceStatsResult {
            num_clients: 3,
            num_users: 2,
        }),
        ..Default::default()
    };
    assert_eq!(
        to_json(&stats),
        r#"{"id":6,"presence_stats":{"num_clients":3,"num_users":2}}"#
    );
}

#[test]
fn history_reply() {
    let reply = Reply {
        id: 7,
        history: Some(HistoryResult {
            publications: vec![Publication {
                data: raw(r#"{"n":4}"#),
                offset: 4,
                info: Some(info("42", "c1")),
                tags: HashMap::from([("k".to_owned(), "v".to_owned())]),
                ..Default::default()
            }],
            epoch: "AbCdEfGh".into(),
            offset: 9,
        }),
        ..Default::default()
    };
    let expected = r#"{"id":7,"history":{"publications":[{"data":{"n":4},"offset":4,"info":{"user":"42","client":"c1"},"tags":{"k":"v"}}],"epoch":"AbCdEfGh","offset":9}}"#;
    assert_same_json(&to_json(&reply), expected);
    // Proto order puts `info` before `offset`.
    assert_eq!(
        to_json(&reply),
        r#"{"id":7,"history":{"publications":[{"data":{"n":4},"info":{"user":"42","client":"c1"},"offset":4,"tags":{"k":"v"}}],"epoch":"AbCdEfGh","offset":9}}"#
    );
}

#[test]
fn rpc_refresh_sub_refresh_replies() {
    let rpc = Reply {
        id: 8,
        rpc: Some(RpcResult {
            data: raw(r#"{"x":1}"#),
        }),
        ..Default::default()
    };
    assert_eq!(to_json(&rpc), r#"{"id":8,"rpc":{"data":{"x":1}}}"#);

    let refresh = Reply {
        id: 9,
        refresh: Some(RefreshResult {
            expires: true,
            ttl: 600,
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        to_json(&refresh),
        r#"{"id":9,"refresh":{"expires":true,"ttl":600}}"#
    );

    let sub_refresh = Reply {
        id: 10,
        sub_refresh: Some(SubRefreshResult {
            expires: true,
            ttl: 300,
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        to_json(&sub_refresh),
        r#"{"id":10,"sub_refresh":{"expires":true,"ttl":300}}"#
    );
}

#[test]
fn error_replies() {
    let expired = Reply {
        id: 3,
        error: Some(Error {
            code: 109,
            message: "token expired".into(),
            temporary: false,
        }),
        ..Default::default()
    };
    assert_eq!(
        to_json(&expired),
        r#"{"id":3,"error":{"code":109,"message":"token expired"}}"#
    );

    let temporary = Reply {
        id: 4,
        error: Some(Error {
            code: 100,
            message: "internal server error".into(),
            temporary: true,
        }),
        ..Default::default()
    };
    assert_eq!(
        to_json(&temporary),
        r#"{"id":4,"error":{"code":100,"message":"internal server error","temporary":true}}"#
    );
}

// ---------------------------------------------------------------------------------------------
// Pushes: inside a Reply (bidirectional) and bare (unidirectional).

fn in_reply(push: Push) -> Reply {
    Reply {
        push: Some(push),
        ..Default::default()
    }
}

#[test]
fn publication_push() {
    let push = Push {
        channel: "c".into(),
        r#pub: Some(Publication {
            data: raw(r#"{"text":"hi"}"#),
            offset: 7,
            info: Some(info("42", "c1")),
            tags: HashMap::from([("k".to_owned(), "v".to_owned())]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let bidi = to_json(&in_reply(push.clone()));
    assert_same_json(
        &bidi,
        r#"{"push":{"channel":"c","pub":{"data":{"text":"hi"},"offset":7,"info":{"user":"42","client":"c1"},"tags":{"k":"v"}}}}"#,
    );
    assert_eq!(
        bidi,
        r#"{"push":{"channel":"c","pub":{"data":{"text":"hi"},"info":{"user":"42","client":"c1"},"offset":7,"tags":{"k":"v"}}}}"#
    );
    assert_eq!(
        to_json(&push),
        r#"{"channel":"c","pub":{"data":{"text":"hi"},"info":{"user":"42","client":"c1"},"offset":7,"tags":{"k":"v"}}}"#,
        "unidirectional transports send the bare Push"
    );
}

#[test]
fn join_leave_unsubscribe_subscribe_pushes() {
    let join = Push {
        channel: "c".into(),
        join: Some(Join {
            info: Some(info("42", "c1")),
        }),
        ..Default::default()
    };
    assert_eq!(
        to_json(&in_reply(join)),
        r#"{"push":{"channel":"c","join":{"info":{"user":"42","client":"c1"}}}}"#
    );
    let leave = Push {
        channel: "c".into(),
        leave: Some(Leave {
            info: Some(info("42", "c1")),
        }),
        ..Default::default()
    };
    assert_eq!(
        to_json(&in_reply(leave)),
        r#"{"push":{"channel":"c","leave":{"info":{"user":"42","client":"c1"}}}}"#
    );

    let unsubscribe = Push {
        channel: "c".into(),
        unsubscribe: Some(Unsubscribe {
            code: 2000,
            reason: "server unsubscribe".into(),
        }),
        ..Default::default()
    };
    assert_eq!(
        to_json(&in_reply(unsubscribe)),
        r#"{"push":{"channel":"c","unsubscribe":{"code":2000,"reason":"server unsubscribe"}}}"#
    );

    let subscribe = Push {
        channel: "c".into(),
        subscribe: Some(Subscribe {
            recoverable: true,
            epoch: "AbCdEfGh".into(),
            offset: 3,
            positioned: true,
            data: raw(r#"{"s":1}"#),
        }),
        ..Default::default()
    };
    assert_eq!(
        to_json(&in_reply(subscribe)),
        r#"{"push":{"channel":"c","subscribe":{"recoverable":true,"epoch":"AbCdEfGh","offset":3,"positioned":true,"data":{"s":1}}}}"#
    );
}

#[test]
fn message_disconnect_refresh_pushes_and_ping() {
    let message = Push {
        message: Some(Message {
            data: raw(r#"{"m":1}"#),
        }),
        ..Default::default()
    };
    assert_eq!(
        to_json(&in_reply(message)),
        r#"{"push":{"message":{"data":{"m":1}}}}"#
    );

    let disconnect = Push {
        disconnect: Some(Disconnect {
            code: 3001,
            reason: "shutdown".into(),
            reconnect: false,
        }),
        ..Default::default()
    };
    assert_eq!(
        to_json(&in_reply(disconnect.clone())),
        r#"{"push":{"disconnect":{"code":3001,"reason":"shutdown"}}}"#
    );
    assert_eq!(
        to_json(&disconnect),
        r#"{"disconnect":{"code":3001,"reason":"shutdown"}}"#
    );

    let refresh = Push {
        refresh: Some(Refresh {
            expires: true,
            ttl: 600,
        }),
        ..Default::default()
    };
    assert_eq!(
        to_json(&in_reply(refresh)),
        r#"{"push":{"refresh":{"expires":true,"ttl":600}}}"#
    );

    assert_eq!(to_json(&Reply::default()), "{}", "server ping");
    assert_eq!(to_json(&Push::default()), "{}", "unidirectional ping");
}

#[test]
fn unidirectional_connect_push() {
    let push = Push {
        connect: Some(Connect {
            client: "c1".into(),
            version: "0.1.0".into(),
            data: raw(r#"{"hello":1}"#),
            expires: true,
            ttl: 60,
            ping: 25,
            session: "s1".into(),
            time: 1_760_000_000_000,
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        to_json(&push),
        r#"{"connect":{"client":"c1","version":"0.1.0","data":{"hello":1},"expires":true,"ttl":60,"ping":25,"session":"s1","time":1760000000000}}"#
    );
}

// ---------------------------------------------------------------------------------------------
// Numbers and raw payloads.

#[test]
fn sixty_four_bit_integers_are_json_numbers() {
    let push = Push {
        id: i64::MAX,
        channel: "c".into(),
        r#pub: Some(Publication {
            data: raw("null"),
            offset: u64::MAX,
            time: -1,
            score: i64::MIN,
            version: u64::MAX - 1,
            ..Default::default()
        }),
        ..Default::default()
    };
    let text = to_json(&push);
    assert_eq!(
        text,
        r#"{"id":9223372036854775807,"channel":"c","pub":{"data":null,"offset":18446744073709551615,"time":-1,"score":-9223372036854775808,"version":18446744073709551614}}"#
    );
    let back: Push = decode_message(Encoding::Json, Bytes::from(text)).unwrap();
    assert_eq!(back, push);
}

#[test]
fn newlines_in_raw_payloads_are_stripped() {
    let push = Push {
        channel: "c".into(),
        r#pub: Some(Publication {
            // Pretty-printed JSON with an escaped `\n` inside a string, which is not a newline byte.
            data: raw("{\n  \"text\": \"line1\\nline2\",\r\n  \"list\": [1,\n2]\n}\n"),
            offset: 1,
            ..Default::default()
        }),
        ..Default::default()
    };
    let text = to_json(&in_reply(push));
    assert!(!text.contains('\n'), "{text}");
    // Surrounding whitespace goes, inner `\n` bytes go, `\r` and spaces stay.
    assert_eq!(
        text,
        "{\"push\":{\"channel\":\"c\",\"pub\":{\"data\":{  \"text\": \"line1\\nline2\",\r  \"list\": [1,2]},\"offset\":1}}}"
    );
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["push"]["pub"]["data"]["text"], "line1\nline2");
}

#[test]
fn strings_are_escaped() {
    let reply = Reply {
        id: 1,
        error: Some(Error {
            code: 400,
            message: "quote \" backslash \\ newline \n tab \t unicode é".into(),
            temporary: false,
        }),
        ..Default::default()
    };
    let text = to_json(&reply);
    assert!(!text.contains('\n'));
    let back: Reply = decode_message(Encoding::Json, Bytes::from(text)).unwrap();
    assert_eq!(back, reply);
}
