//! The WebSocket byte stream of a client that negotiated permessage-deflate, read through the
//! proxy's frame parser and inflater (and the inflate function alone): each message stops at the
//! size limit, and every input ends in data or an error, never a panic.
#![no_main]

use gyre_proxy::transport::permessage_deflate::InflatingIo;
use libfuzzer_sys::fuzz_target;
use tokio::io::AsyncReadExt;

const LIMIT: usize = 65_536;

fuzz_target!(|data: &[u8]| {
    let mut io = InflatingIo::new(data, true, LIMIT);
    let mut out = Vec::new();
    // An in-memory reader never waits, so no runtime is needed to drive it.
    let _ = futures_executor::block_on(io.read_to_end(&mut out));
    if let Ok(message) = gyre_proto::codec::deflate::inflate(data, LIMIT) {
        assert!(
            message.len() <= LIMIT,
            "{} bytes over a limit of {LIMIT}",
            message.len()
        );
    }
});
