//! WebSocket permessage-deflate at the byte level, against a real `gyre` with
//! `websocket.compression = true`: what is negotiated, that a publication reaches every
//! compressing subscriber as the very same compressed frame (compressed once), that compressed
//! client messages are understood, and that clients that do not offer it get plain frames.
//! Last, the `ws` npm client and Chromium negotiate it and decode what gyre sends.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use gyre_proto::Encoding;
use gyre_proto::codec::deflate::{self, Deflate};
use gyre_tests::ws_client::{EngineKind, ProxyEnv};
use gyre_tests::{GyreProcess, Namespace};
use serde_json::{Value, json};

/// A WebSocket client written out by hand, to see RSV1 and the raw payloads.
struct RawClient {
    stream: BufReader<TcpStream>,
    /// The handshake's `Sec-WebSocket-Extensions`, lower-cased; empty if none.
    extensions: String,
}

struct RawFrame {
    rsv1: bool,
    opcode: u8,
    payload: Vec<u8>,
}

impl RawClient {
    fn connect(port: u16, offer: Option<&str>) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut request = format!(
            "GET /connection/websocket HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        );
        if let Some(offer) = offer {
            request.push_str(&format!("Sec-WebSocket-Extensions: {offer}\r\n"));
        }
        request.push_str("\r\n");
        (&stream).write_all(request.as_bytes()).unwrap();
        let mut stream = BufReader::new(stream);
        let mut status = String::new();
        stream.read_line(&mut status).unwrap();
        assert!(status.starts_with("HTTP/1.1 101"), "{status}");
        let mut extensions = String::new();
        loop {
            let mut line = String::new();
            stream.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("sec-websocket-extensions")
            {
                extensions = value.trim().to_ascii_lowercase();
            }
        }
        Self { stream, extensions }
    }

    /// Sends one text message, compressed (RSV1) or not, masked as a client must.
    fn send(&mut self, text: &str, compressed: bool) {
        let payload = if compressed {
            let piece = Deflate {
                level: 6,
                min_size: 0,
            }
            .compress(text.as_bytes());
            deflate::message_payload(Encoding::Json, &[piece]).to_vec()
        } else {
            text.as_bytes().to_vec()
        };
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let mut frame = vec![0x81 | if compressed { 0x40 } else { 0 }];
        match payload.len() {
            len @ 0..=125 => frame.push(0x80 | len as u8),
            len => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(len as u16).to_be_bytes());
            }
        }
        frame.extend_from_slice(&key);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        self.stream.get_mut().write_all(&frame).unwrap();
    }

    fn frame(&mut self) -> RawFrame {
        let mut head = [0u8; 2];
        self.stream.read_exact(&mut head).unwrap();
        let len = match head[1] & 0x7f {
            126 => {
                let mut ext = [0u8; 2];
                self.stream.read_exact(&mut ext).unwrap();
                usize::from(u16::from_be_bytes(ext))
            }
            127 => {
                let mut ext = [0u8; 8];
                self.stream.read_exact(&mut ext).unwrap();
                u64::from_be_bytes(ext) as usize
            }
            len => usize::from(len),
        };
        assert_eq!(head[1] & 0x80, 0, "server frames are not masked");
        let mut payload = vec![0u8; len];
        self.stream.read_exact(&mut payload).unwrap();
        RawFrame {
            rsv1: head[0] & 0x40 != 0,
            opcode: head[0] & 0x0f,
            payload,
        }
    }

    /// The JSON messages of the next data frame (inflated when compressed), and the frame.
    fn messages(&mut self) -> (Vec<Value>, RawFrame) {
        loop {
            let frame = self.frame();
            if frame.opcode != 0x1 {
                continue;
            }
            let text = if frame.rsv1 {
                deflate::inflate(&frame.payload, 1 << 20).expect("inflates")
            } else {
                frame.payload.clone()
            };
            let messages = text
                .split(|b| *b == b'\n')
                .map(|line| serde_json::from_slice(line).expect("JSON"))
                .collect();
            return (messages, frame);
        }
    }

    /// Reads until a message with `id` and returns it.
    fn reply(&mut self, id: u64) -> Value {
        loop {
            let (messages, _) = self.messages();
            if let Some(reply) = messages.into_iter().find(|m| m["id"] == id) {
                return reply;
            }
        }
    }
}

const OFFER: &str = "permessage-deflate; client_max_window_bits";

fn env(engine: EngineKind) -> ProxyEnv {
    let builder = GyreProcess::builder()
        .namespace(Namespace::new("news").history(10, 60).allow_subscribe())
        .extra_toml("[websocket]\ncompression = true\ncompression_min_size = 64\n");
    ProxyEnv::start(engine, builder)
}

fn subscriber(env: &ProxyEnv, offer: Option<&str>, compressed_commands: bool) -> RawClient {
    let mut client = RawClient::connect(env.gyre.port(), offer);
    let connect = json!({"id": 1, "connect": {"token": env.token("reader")}});
    client.send(&connect.to_string(), compressed_commands);
    assert!(client.reply(1)["connect"]["client"].is_string());
    let subscribe = json!({"id": 2, "subscribe": {"channel": "news:1"}});
    client.send(&subscribe.to_string(), compressed_commands);
    assert!(client.reply(2)["subscribe"].is_object());
    client
}

gyre_tests::on_both_engines! {
    publications_are_compressed_once_for_every_compressing_subscriber,
}

fn publications_are_compressed_once_for_every_compressing_subscriber(engine: EngineKind) {
    let env = env(engine);
    // Commands sent compressed and plain: gyre understands both.
    let mut first = subscriber(&env, Some(OFFER), true);
    let mut second = subscriber(&env, Some(OFFER), false);
    let mut plain = subscriber(&env, None, false);
    assert_eq!(
        first.extensions,
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    );
    assert_eq!(plain.extensions, "", "nothing offered, nothing negotiated");

    let text = "all the news that fits, ".repeat(20);
    env.publish("news:1", json!({"text": text}));
    let expected =
        json!({"push": {"channel": "news:1", "pub": {"data": {"text": text}, "offset": 0}}});
    let without_offset = |mut message: Value| {
        message["push"]["pub"]["offset"] = json!(0);
        message
    };
    let (messages_1, frame_1) = first.messages();
    let (messages_2, frame_2) = second.messages();
    let (messages_3, frame_3) = plain.messages();
    for messages in [messages_1, messages_2, messages_3] {
        assert_eq!(messages.len(), 1);
        assert_eq!(without_offset(messages[0].clone()), expected);
    }
    assert!(frame_1.rsv1 && frame_2.rsv1, "compressed frames");
    assert!(
        frame_1.payload.len() < frame_3.payload.len() / 4,
        "{} compressed bytes for {} plain",
        frame_1.payload.len(),
        frame_3.payload.len()
    );
    assert_eq!(
        frame_1.payload, frame_2.payload,
        "the same compressed bytes"
    );
    assert!(!frame_3.rsv1, "plain for the client that did not offer it");

    // Short messages stay under compression_min_size: stored, still RSV1 and still decoded.
    env.publish("news:1", json!({"n": 1}));
    let (messages, frame) = first.messages();
    assert!(frame.rsv1);
    assert_eq!(messages[0]["push"]["pub"]["data"], json!({"n": 1}));
}

#[test]
fn offers_that_cannot_be_honoured_go_uncompressed() {
    let env = env(EngineKind::Memory);
    let client = RawClient::connect(
        env.gyre.port(),
        Some("permessage-deflate; server_max_window_bits=10"),
    );
    assert_eq!(client.extensions, "");
    let off = GyreProcess::builder().memory().start();
    let client = RawClient::connect(off.port(), Some(OFFER));
    assert_eq!(client.extensions, "", "compression is off by default");
}

/// The `ws` npm package (compressing its own messages too) and Chromium's own WebSocket
/// negotiate permessage-deflate with gyre and decode a compressed publication.
#[test]
fn ws_and_chromium_negotiate_and_decode() {
    gyre_tests::require_chromium();
    let env = env(EngineKind::Memory);
    let output = gyre_tests::SdkScript::node("deflate.mjs")
        .gyre(&env.gyre)
        .arg("channel", "news:clients")
        .arg("chromium", gyre_tests::CHROMIUM)
        .run();
    let result: Value = serde_json::from_str(output.expect_success()).unwrap();
    for client in ["ws", "chromium"] {
        let extensions = result[client]["extensions"].as_str().unwrap_or_default();
        assert!(
            extensions.contains("permessage-deflate"),
            "{client} negotiated {extensions:?}: {result}"
        );
        assert_eq!(result[client]["text"], result["expected"], "{client}");
    }
}
