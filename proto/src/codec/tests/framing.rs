//! Frame-level behaviour of both encodings: batching, encode-once fan-out, ping/pong, limits,
//! truncation and malformed input.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};

use super::raw;
use crate::codec::*;
use crate::protocol::*;

const LIMIT: usize = DEFAULT_MAX_MESSAGE_SIZE;
const BOTH: [Encoding; 2] = [Encoding::Json, Encoding::Protobuf];

fn publication_push(channel: &str, data: Bytes, offset: u64) -> Push {
    Push {
        channel: channel.into(),
        r#pub: Some(Publication {
            data,
            offset,
            info: Some(ClientInfo {
                user: "42".into(),
                client: "c1".into(),
                conn_info: raw(r#"{"name":"Ann"}"#),
                ..Default::default()
            }),
            tags: HashMap::from([
                ("a".to_owned(), "1".to_owned()),
                ("b".to_owned(), "2".to_owned()),
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn sample_replies() -> Vec<Reply> {
    vec![
        Reply {
            id: 1,
            connect: Some(ConnectResult {
                client: "c1".into(),
                version: "0.1.0".into(),
                data: raw(r#"{"hello":[1,2,3]}"#),
                subs: HashMap::from([(
                    "#42".to_owned(),
                    SubscribeResult {
                        recoverable: true,
                        offset: 3,
                        epoch: "AbCdEfGh".into(),
                        ..Default::default()
                    },
                )]),
                ping: 25,
                pong: true,
                ..Default::default()
            }),
            ..Default::default()
        },
        Reply {
            id: 2,
            subscribe: Some(SubscribeResult::default()),
            ..Default::default()
        },
        Reply {
            push: Some(publication_push("chat:1", raw(r#"{"text":"hi"}"#), 8)),
            ..Default::default()
        },
        Reply::default(),
        Reply {
            id: 3,
            error: Some(Error {
                code: 103,
                message: "permission denied".into(),
                temporary: false,
            }),
            ..Default::default()
        },
    ]
}

fn sample_commands() -> Vec<Command> {
    vec![
        Command {
            id: 1,
            connect: Some(ConnectRequest {
                token: "T".into(),
                name: "js".into(),
                ..Default::default()
            }),
            ..Default::default()
        },
        Command {
            id: 2,
            subscribe: Some(SubscribeRequest {
                channel: "chat:1".into(),
                flag: 1,
                ..Default::default()
            }),
            ..Default::default()
        },
        Command {
            id: 3,
            publish: Some(PublishRequest {
                channel: "chat:1".into(),
                data: raw(r#"{"text":"hi"}"#),
                ..Default::default()
            }),
            ..Default::default()
        },
        Command::default(),
    ]
}

fn build_frame<T: WireMessage>(encoding: Encoding, messages: &[T]) -> Bytes {
    let mut builder = FrameBuilder::new(encoding);
    for message in messages {
        builder.encode(message).unwrap();
    }
    assert_eq!(builder.message_count(), messages.len());
    builder.take()
}

fn decode_all<T: WireMessage>(encoding: Encoding, frame: Bytes) -> Result<Vec<T>, DecodeError> {
    FrameDecoder::new(encoding, frame, LIMIT).collect()
}

#[test]
fn ping_and_pong_are_the_empty_message() {
    assert_eq!(
        encode_reply(Encoding::Json, &Reply::default()).unwrap(),
        "{}"
    );
    assert_eq!(
        encode_command(Encoding::Json, &Command::default()).unwrap(),
        "{}"
    );
    assert_eq!(encode_push(Encoding::Json, &Push::default()).unwrap(), "{}");
    assert_eq!(
        encode_reply(Encoding::Protobuf, &Reply::default()).unwrap(),
        &[0x00][..]
    );
    assert_eq!(
        encode_command(Encoding::Protobuf, &Command::default()).unwrap(),
        &[0x00][..]
    );
    assert_eq!(
        encode_push(Encoding::Protobuf, &Push::default()).unwrap(),
        &[0x00][..]
    );
    for encoding in BOTH {
        assert_eq!(
            encoding.empty_message(),
            encode(encoding, &Reply::default()).unwrap()
        );
    }

    // A pong frame decodes to exactly one empty Command.
    let pongs: Vec<_> = decode_commands(Encoding::Json, Bytes::from_static(b"{}"), LIMIT)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(pongs, vec![Command::default()]);
    let pongs: Vec<_> = decode_commands(Encoding::Protobuf, Bytes::from_static(&[0x00]), LIMIT)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(pongs, vec![Command::default()]);
}

#[test]
fn json_frames_join_with_single_newlines() {
    let replies = sample_replies();
    let frame = build_frame(Encoding::Json, &replies);
    let text = std::str::from_utf8(&frame).unwrap();
    assert_eq!(text.matches('\n').count(), replies.len() - 1);
    assert!(!text.ends_with('\n') && !text.starts_with('\n'));
    assert!(
        text.contains("\n{}\n"),
        "the ping sits alone on its line: {text}"
    );
    for (line, reply) in text.split('\n').zip(&replies) {
        assert_eq!(
            line.as_bytes(),
            &encode_reply(Encoding::Json, reply).unwrap()[..]
        );
    }
}

#[test]
fn protobuf_frames_are_concatenated_delimited_messages() {
    let replies = sample_replies();
    let frame = build_frame(Encoding::Protobuf, &replies);
    let expected: Vec<u8> = replies
        .iter()
        .flat_map(prost::Message::encode_length_delimited_to_vec)
        .collect();
    assert_eq!(&frame[..], &expected[..]);
}

#[test]
fn replies_round_trip_in_both_encodings() {
    for encoding in BOTH {
        let replies = sample_replies();
        let frame = build_frame(encoding, &replies);
        assert_eq!(
            decode_all::<Reply>(encoding, frame).unwrap(),
            replies,
            "{encoding:?}"
        );
    }
}

#[test]
fn commands_round_trip_in_both_encodings() {
    for encoding in BOTH {
        let commands = sample_commands();
        let frame = build_frame(encoding, &commands);
        let decoded: Vec<Command> = decode_commands(encoding, frame, LIMIT)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(decoded, commands, "{encoding:?}");
    }
}

#[test]
fn bare_pushes_round_trip_in_both_encodings() {
    let pushes = vec![
        Push {
            connect: Some(Connect {
                client: "c1".into(),
                ping: 25,
                session: "s1".into(),
                ..Default::default()
            }),
            ..Default::default()
        },
        publication_push("c", raw("[1,2]"), u64::MAX),
        Push::default(),
        Push {
            disconnect: Some(Disconnect {
                code: 3001,
                reason: "shutdown".into(),
                reconnect: false,
            }),
            ..Default::default()
        },
    ];
    for encoding in BOTH {
        let frame = build_frame(encoding, &pushes);
        let decoded: Vec<Push> = decode_pushes(encoding, frame, LIMIT)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(decoded, pushes, "{encoding:?}");
    }
}

#[test]
fn protobuf_carries_binary_payloads_zero_copy() {
    let binary = Bytes::from_static(&[0x00, 0xff, b'\n', 0x80, b'{', 0x01]);
    let replies = vec![
        Reply {
            push: Some(publication_push("bin", binary.clone(), 1)),
            ..Default::default()
        },
        Reply {
            id: 9,
            rpc: Some(RpcResult {
                data: binary.clone(),
            }),
            ..Default::default()
        },
    ];
    let frame = build_frame(Encoding::Protobuf, &replies);
    let decoded = decode_all::<Reply>(Encoding::Protobuf, frame.clone()).unwrap();
    assert_eq!(decoded, replies);

    // The decoded payload points into the received frame instead of a copy.
    let data = &decoded[1].rpc.as_ref().unwrap().data;
    let frame_range = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
    assert!(frame_range.contains(&(data.as_ptr() as usize)));

    // The same payload cannot go to a JSON connection.
    assert!(matches!(
        encode_reply(Encoding::Json, &replies[0]),
        Err(EncodeError::InvalidRawJson(_))
    ));
}

#[test]
fn encode_once_append_to_many_frames() {
    let push = Reply {
        push: Some(publication_push(
            "chat:1",
            raw(r#"{"text":"broadcast"}"#),
            11,
        )),
        ..Default::default()
    };
    for encoding in BOTH {
        let shared = encode(encoding, &push).unwrap();

        // Connection A: the push alone. Connection B: its own reply, then the push.
        let mut frame_a = BytesMut::new();
        append_to_frame(encoding, &mut frame_a, &shared);
        let own_reply = Reply {
            id: 5,
            publish: Some(PublishResult {}),
            ..Default::default()
        };
        let mut builder_b = FrameBuilder::new(encoding);
        builder_b.encode(&own_reply).unwrap();
        builder_b.push(&shared);
        let mut frame_c = BytesMut::new();
        append_to_frame(encoding, &mut frame_c, &encoding.empty_message());
        append_to_frame(encoding, &mut frame_c, &shared);
        append_to_frame(encoding, &mut frame_c, &shared);

        assert_eq!(
            &frame_a[..],
            &shared[..],
            "a single message is the frame itself"
        );
        assert_eq!(
            decode_all::<Reply>(encoding, builder_b.take()).unwrap(),
            vec![own_reply, push.clone()]
        );
        assert_eq!(
            decode_all::<Reply>(encoding, frame_c.freeze()).unwrap(),
            vec![Reply::default(), push.clone(), push.clone()]
        );
    }
}

#[test]
fn frame_builder_is_reusable_and_rolls_back_failed_encodes() {
    for encoding in BOTH {
        let mut builder = FrameBuilder::with_capacity(encoding, 256);
        assert!(builder.is_empty());
        builder.encode(&Reply::default()).unwrap();
        let bad = Reply {
            push: Some(publication_push("c", raw("{oops"), 1)),
            ..Default::default()
        };
        let before = builder.len();
        let result = builder.encode(&bad);
        match encoding {
            Encoding::Json => {
                assert!(matches!(result, Err(EncodeError::InvalidRawJson(_))));
                assert_eq!((builder.len(), builder.message_count()), (before, 1));
            }
            // Protobuf does not interpret payloads.
            Encoding::Protobuf => assert_eq!(builder.message_count(), 2),
        }
        let first = builder.take();
        assert!(builder.is_empty() && builder.message_count() == 0);
        assert_eq!(
            decode_all::<Reply>(encoding, first).unwrap()[0],
            Reply::default()
        );

        // After take() the next frame starts without a separator.
        builder.encode(&Reply::default()).unwrap();
        assert_eq!(builder.take(), encoding.empty_message());
    }
}

#[test]
fn invalid_raw_json_is_an_error_not_broken_output() {
    let cases = [
        &b"{\"unterminated\":"[..],
        b"not json",
        b"\xff\xfe\xfd",
        b"{}{}",
    ];
    for bad in cases {
        let push = Push {
            channel: "c".into(),
            message: Some(Message {
                data: Bytes::copy_from_slice(bad),
            }),
            ..Default::default()
        };
        assert!(matches!(
            encode_push(Encoding::Json, &push),
            Err(EncodeError::InvalidRawJson(_))
        ));
        assert!(encode_push(Encoding::Protobuf, &push).is_ok());
    }
    // Also in nested raw fields.
    let reply = Reply {
        id: 5,
        presence: Some(PresenceResult {
            presence: HashMap::from([(
                "c1".to_owned(),
                ClientInfo {
                    client: "c1".into(),
                    chan_info: raw("{bad"),
                    ..Default::default()
                },
            )]),
        }),
        ..Default::default()
    };
    assert!(encode_reply(Encoding::Json, &reply).is_err());
}

#[test]
fn json_payload_newlines_do_not_split_the_frame() {
    let pushes: Vec<Reply> = (0..3)
        .map(|n| Reply {
            push: Some(publication_push("c", raw("{\n\"pretty\":\n true\n}"), n)),
            ..Default::default()
        })
        .collect();
    let frame = build_frame(Encoding::Json, &pushes);
    assert_eq!(frame.iter().filter(|&&b| b == b'\n').count(), 2);
    let decoded = decode_all::<Reply>(Encoding::Json, frame).unwrap();
    assert_eq!(decoded.len(), 3);
    assert_eq!(
        decoded[2]
            .push
            .as_ref()
            .unwrap()
            .r#pub
            .as_ref()
            .unwrap()
            .data,
        "{\"pretty\": true}"
    );
}

#[test]
fn empty_frames_are_errors() {
    for encoding in BOTH {
        let mut decoder = decode_commands(encoding, Bytes::new(), LIMIT);
        assert!(matches!(decoder.next(), Some(Err(DecodeError::EmptyFrame))));
        assert!(decoder.next().is_none());
    }
}

#[test]
fn json_line_rules() {
    // The last line may or may not end with `\n`; `\r\n` works too.
    for frame in [
        &b"{}\n{\"id\":1}"[..],
        b"{}\n{\"id\":1}\n",
        b"{}\r\n{\"id\":1}\r\n",
    ] {
        let commands: Vec<Command> =
            decode_commands(Encoding::Json, Bytes::copy_from_slice(frame), LIMIT)
                .collect::<Result<_, _>>()
                .unwrap();
        assert_eq!(commands.len(), 2);
        assert_eq!(commands[1].id, 1);
    }
    // Any other empty line is malformed, as in Centrifuge.
    for frame in [&b"\n"[..], b"{}\n\n{}", b"{}\n\n", b"\n{}"] {
        let result: Result<Vec<Command>, _> =
            decode_commands(Encoding::Json, Bytes::copy_from_slice(frame), LIMIT).collect();
        assert!(matches!(result, Err(DecodeError::Json(_))), "{frame:?}");
    }
}

#[test]
fn malformed_messages_stop_the_frame_after_the_good_ones() {
    let frame =
        Bytes::from_static(b"{\"id\":1,\"connect\":{}}\n{\"id\":2,\"subscribe\":\n{\"id\":3}");
    let mut decoder = decode_commands(Encoding::Json, frame, LIMIT);
    assert_eq!(decoder.next().unwrap().unwrap().id, 1);
    assert!(matches!(decoder.next(), Some(Err(DecodeError::Json(_)))));
    assert!(decoder.next().is_none(), "fused after the first error");
    assert_eq!(decoder.decoded(), 1);

    // Wrong JSON types for known fields are malformed too.
    // Only objects are messages: serde's positional array form of a struct is refused.
    let not_commands: [&[u8]; 9] = [
        b"{\"id\":\"1\"}",
        b"{\"id\":-1}",
        b"{\"subscribe\":{\"offset\":\"5\"}}",
        b"[]",
        b" [1]",
        b"null",
        b"1",
        b"\"{}\"",
        b"{}}",
    ];
    for line in not_commands {
        let result: Result<Vec<Command>, _> =
            decode_commands(Encoding::Json, Bytes::copy_from_slice(line), LIMIT).collect();
        assert!(matches!(result, Err(DecodeError::Json(_))), "{line:?}");
    }

    // A protobuf body that is not a Command: field 1 with wire type 7 (invalid).
    let result: Result<Vec<Command>, _> =
        decode_commands(Encoding::Protobuf, Bytes::from_static(&[0x01, 0x0f]), LIMIT).collect();
    assert!(matches!(result, Err(DecodeError::Protobuf(_))));
}

#[test]
fn oversized_messages_are_rejected() {
    let big = Command {
        id: 1,
        publish: Some(PublishRequest {
            channel: "c".into(),
            data: Bytes::from(format!("\"{}\"", "x".repeat(200))),
            ..Default::default()
        }),
        ..Default::default()
    };
    for encoding in BOTH {
        let small = encode_command(encoding, &Command::default()).unwrap();
        let encoded_big = encode_command(encoding, &big).unwrap();
        let frame = build_frame(encoding, &[Command::default(), big.clone()]);

        // The limit is on one message, not on the frame; exactly at the limit passes.
        let body_len = match encoding {
            Encoding::Json => encoded_big.len(),
            Encoding::Protobuf => prost::Message::encoded_len(&big),
        };
        assert!(
            FrameDecoder::<Command>::new(encoding, frame.clone(), body_len)
                .all(|result| result.is_ok())
        );

        let mut decoder = decode_commands(encoding, frame, body_len - 1);
        assert_eq!(decoder.next().unwrap().unwrap(), Command::default());
        match decoder.next() {
            Some(Err(DecodeError::MessageTooLarge { size, limit })) => {
                assert_eq!((size, limit), (body_len as u64, body_len - 1));
            }
            other => panic!("{encoding:?}: {other:?}"),
        }
        assert!(decoder.next().is_none());
        assert!(small.len() < body_len);
    }
}

#[test]
fn truncated_protobuf_frames_are_rejected() {
    let commands = sample_commands();
    let frame = build_frame(Encoding::Protobuf, &commands);
    let first_len = prost::Message::encoded_len(&commands[0]) + 1;

    // Cut inside the second message's body.
    let cut = frame.slice(..first_len + 3);
    let mut decoder = decode_commands(Encoding::Protobuf, cut, LIMIT);
    assert_eq!(decoder.next().unwrap().unwrap(), commands[0]);
    assert!(matches!(
        decoder.next(),
        Some(Err(DecodeError::TruncatedMessage { available: 2, .. }))
    ));

    // Cut inside a multi-byte length prefix (300 = 0xac 0x02).
    let result: Result<Vec<Command>, _> =
        decode_commands(Encoding::Protobuf, Bytes::from_static(&[0xac]), LIMIT).collect();
    assert!(matches!(result, Err(DecodeError::TruncatedVarint)));

    // A prefix no u64 can hold.
    let result: Result<Vec<Command>, _> =
        decode_commands(Encoding::Protobuf, Bytes::from_static(&[0xff; 11]), LIMIT).collect();
    assert!(matches!(result, Err(DecodeError::InvalidVarint)));
}

#[test]
fn single_unframed_messages() {
    // Unidirectional connect body: a bare ConnectRequest, not a Command.
    let body = Bytes::from_static(
        br#"{"token":"T","name":"curl","subs":{"news":{"recover":true,"offset":3,"epoch":"E"}}}"#,
    );
    let request: ConnectRequest = decode_message(Encoding::Json, body).unwrap();
    assert_eq!(request.token, "T");
    assert_eq!(request.subs["news"].offset, 3);

    let protobuf = Bytes::from(prost::Message::encode_to_vec(&request));
    assert_eq!(
        decode_message::<ConnectRequest>(Encoding::Protobuf, protobuf).unwrap(),
        request
    );

    let two_objects = Bytes::from_static(b"{}\n{}");
    assert!(decode_message::<ConnectRequest>(Encoding::Json, two_objects).is_err());
}

#[test]
fn emulation_requests() {
    // As centrifuge-js sends it: the command frame is a JSON string.
    let body = Bytes::from_static(
        br#"{"session":"s1","node":"n1","data":"{\"id\":2,\"subscribe\":{\"channel\":\"c\"}}\n{}"}"#,
    );
    let request = decode_emulation_request(Encoding::Json, body).unwrap();
    assert_eq!(
        (request.session.as_str(), request.node.as_str()),
        ("s1", "n1")
    );
    assert_eq!(
        request.data,
        "{\"id\":2,\"subscribe\":{\"channel\":\"c\"}}\n{}"
    );
    let commands: Vec<Command> = decode_commands(Encoding::Json, request.data, LIMIT)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(commands.len(), 2);
    assert_eq!(commands[0].subscribe.as_ref().unwrap().channel, "c");

    // A `data` that is not a JSON string is malformed.
    let body = Bytes::from_static(br#"{"session":"s1","node":"n1","data":{"id":2}}"#);
    assert!(matches!(
        decode_emulation_request(Encoding::Json, body),
        Err(DecodeError::Json(_))
    ));

    // Round trips through our own encoder, in both encodings.
    for encoding in BOTH {
        let frame = build_frame(encoding, &sample_commands());
        let body = encode_emulation_request(encoding, "n1", "s1", &frame).unwrap();
        let request = decode_emulation_request(encoding, body).unwrap();
        assert_eq!(request.data, frame);
        let decoded: Vec<Command> = decode_commands(encoding, request.data, LIMIT)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(decoded, sample_commands());
    }
}

#[test]
fn websocket_subprotocols() {
    assert_eq!(
        Encoding::from_ws_subprotocol("centrifuge-protobuf"),
        Some(Encoding::Protobuf)
    );
    assert_eq!(
        Encoding::from_ws_subprotocol("centrifuge-json"),
        Some(Encoding::Json)
    );
    assert_eq!(Encoding::from_ws_subprotocol("graphql-ws"), None);
    for encoding in BOTH {
        assert_eq!(
            Encoding::from_ws_subprotocol(encoding.ws_subprotocol()),
            Some(encoding)
        );
    }
    assert!(Encoding::Protobuf.is_binary() && !Encoding::Json.is_binary());
    assert_eq!(Encoding::default(), Encoding::Json);
}
