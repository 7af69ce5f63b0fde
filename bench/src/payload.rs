//! The published payload: `{"t":<unix ns>,"p":"xxxx…"}` padded to the requested size, and the
//! cheap scan that finds every send timestamp in a received frame.
//!
//! The payload is valid JSON, so gyre embeds it verbatim in a JSON push (`"data":{"t":…}`), in a
//! Protobuf push (raw bytes inside the binary frame) and in SSE / HTTP-stream lines, and Nchan
//! forwards it untouched. A receiver therefore never parses the envelope: it looks for the
//! marker `{"t":` and reads the digits after it, once per delivery, whatever the transport.
//! The padding is `x` only, so it can never contain the marker.

use std::time::{SystemTime, UNIX_EPOCH};

/// What precedes the timestamp digits in every payload.
pub const MARKER: &[u8] = b"{\"t\":";

/// Smallest payload that holds a 19-digit timestamp and an empty pad.
pub const MIN_SIZE: usize = MARKER.len() + 19 + b",\"p\":\"\"}".len();

/// Wall-clock now in nanoseconds since the Unix epoch (the clock both ends of a loopback run
/// share).
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// A payload of exactly `size` bytes (or [`MIN_SIZE`] when `size` is smaller) carrying `t_ns`.
pub fn make(size: usize, t_ns: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(size.max(MIN_SIZE));
    out.extend_from_slice(MARKER);
    out.extend_from_slice(t_ns.to_string().as_bytes());
    out.extend_from_slice(b",\"p\":\"");
    let fixed = out.len() + 2;
    out.resize(out.len() + size.saturating_sub(fixed), b'x');
    out.extend_from_slice(b"\"}");
    out
}

/// Calls `f` with every timestamp found in `frame` (one per delivered payload) and returns how
/// many were found.
pub fn scan(frame: &[u8], mut f: impl FnMut(u64)) -> usize {
    let mut found = 0;
    for start in memchr::memmem::find_iter(frame, MARKER) {
        let digits = &frame[start + MARKER.len()..];
        let mut value: u64 = 0;
        let mut len = 0;
        for &b in digits.iter().take(20) {
            if !b.is_ascii_digit() {
                break;
            }
            value = value.wrapping_mul(10).wrapping_add(u64::from(b - b'0'));
            len += 1;
        }
        if len > 0 {
            found += 1;
            f(value);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_has_the_requested_size_and_is_json() {
        for size in [MIN_SIZE, 64, 128, 1000] {
            let p = make(size, 1_795_963_083_919_000_123);
            assert_eq!(p.len(), size);
            let v: serde_json::Value = serde_json::from_slice(&p).unwrap();
            assert_eq!(v["t"].as_u64(), Some(1_795_963_083_919_000_123));
        }
        assert_eq!(make(1, 5).len(), MARKER.len() + 1 + 8);
    }

    #[test]
    fn timestamps_round_trip_through_every_envelope() {
        let a = make(128, 1_700_000_000_000_000_001);
        let b = make(128, 1_700_000_000_000_000_002);
        let (a, b) = (String::from_utf8(a).unwrap(), String::from_utf8(b).unwrap());
        // A gyre JSON frame with two pushes and a ping, an SSE event, and the raw Nchan message.
        let frames = [
            format!(
                "{{\"push\":{{\"channel\":\"bench:c0\",\"pub\":{{\"data\":{a},\"offset\":1}}}}}}\n{{}}\n{{\"push\":{{\"channel\":\"bench:c0\",\"pub\":{{\"data\":{b}}}}}}}"
            ),
            format!("data: {{\"channel\":\"bench:c0\",\"pub\":{{\"data\":{a}}}}}\n\ndata: {b}\n\n"),
        ];
        for frame in &frames {
            let mut seen = Vec::new();
            assert_eq!(scan(frame.as_bytes(), |t| seen.push(t)), 2);
            assert_eq!(seen, [1_700_000_000_000_000_001, 1_700_000_000_000_000_002]);
        }
        let mut seen = Vec::new();
        assert_eq!(scan(a.as_bytes(), |t| seen.push(t)), 1);
        assert_eq!(scan(b"{}", |_| ()), 0);
        assert!(now_ns() > 1_600_000_000_000_000_000);
    }
}
