//! A client's frame, as every transport hands it to the session: commands in JSON lines or
//! varint-delimited Protobuf, and the body of an `/emulation` POST. Decoding must end in a value
//! or an error, never a panic, whatever the bytes; a decoded command must encode again.
#![no_main]

use bytes::Bytes;
use gyre_proto::codec::{self, Encoding, FrameDecoder};
use gyre_proto::protocol::Command;
use libfuzzer_sys::fuzz_target;

/// The session's default `websocket.message_size_limit` order of magnitude.
const LIMIT: usize = 65_536;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, frame)) = data.split_first() else {
        return;
    };
    let encoding = if selector & 1 == 0 {
        Encoding::Json
    } else {
        Encoding::Protobuf
    };
    let frame = Bytes::copy_from_slice(frame);
    for command in FrameDecoder::<Command>::new(encoding, frame.clone(), LIMIT).flatten() {
        codec::encode_command(encoding, &command).expect("a decoded command encodes");
    }
    if let Ok(request) = codec::decode_emulation_request(encoding, frame) {
        for _ in FrameDecoder::<Command>::new(encoding, request.data, LIMIT) {}
    }
});
