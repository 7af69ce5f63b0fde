//! The body of a SockJS send (`/xhr_send`, WebSocket message): a JSON array of strings that the
//! proxy unpacks into client frames. Never a panic, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = gyre_proxy::transport::sockjs::frames::client_messages(data);
});
