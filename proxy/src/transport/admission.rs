//! Admission control at the edge: a token bucket of connection handshakes per second.
//!
//! When thousands of clients reconnect at once (a deploy, a network blip), each handshake costs
//! a token check, a session and a recovery read; taken all at once they would stall the delivery
//! of live publications. Handshakes beyond the rate are answered `503` with `Retry-After`
//! before any of that work: the SDKs treat it as a failed attempt and retry after their jittered
//! backoff, which spreads the storm out.

use std::time::Instant;

use parking_lot::Mutex;

pub struct HandshakeLimiter {
    /// Tokens added per second; 0 = no limit.
    rate: f64,
    burst: f64,
    bucket: Mutex<Bucket>,
}

struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl HandshakeLimiter {
    /// `rate` handshakes per second with bursts of `burst` (0 = one second's worth).
    pub fn new(rate: u32, burst: u32) -> Self {
        let rate = f64::from(rate);
        let burst = if burst == 0 { rate } else { f64::from(burst) };
        Self {
            rate,
            burst,
            bucket: Mutex::new(Bucket {
                tokens: burst,
                refilled: Instant::now(),
            }),
        }
    }

    /// Takes a token for one handshake; false when the node is over its rate.
    pub fn admit(&self) -> bool {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        let mut bucket = self.bucket.lock();
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bursts_then_the_rate() {
        let limiter = HandshakeLimiter::new(100, 10);
        let start = Instant::now();
        assert_eq!((0..20).filter(|_| limiter.admit_at(start)).count(), 10);
        // 50 ms later: 5 more.
        let later = start + Duration::from_millis(50);
        assert_eq!((0..20).filter(|_| limiter.admit_at(later)).count(), 5);
    }

    #[test]
    fn zero_means_no_limit() {
        let limiter = HandshakeLimiter::new(0, 0);
        assert!((0..10_000).all(|_| limiter.admit()));
    }
}
