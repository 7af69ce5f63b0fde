//! What arrives on a Redis PUB/SUB channel the proxy subscribes to: written by the module, but
//! anyone with access to Redis can PUBLISH there. Decoding must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = gyre_proto::redis_payload::decode(data);
});
