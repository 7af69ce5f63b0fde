//! Admission control at the edge.
//!
//! - A token bucket of connection handshakes per second ([`HandshakeLimiter`]). When thousands
//!   of clients reconnect at once (a deploy, a network blip), each handshake costs a token
//!   check, a session and a recovery read; taken all at once they would stall the delivery of
//!   live publications. Handshakes beyond the rate are answered `503` with `Retry-After` before
//!   any of that work: the SDKs treat it as a failed attempt and retry after their jittered
//!   backoff, which spreads the storm out.
//! - A cap on TCP connections that have not authenticated yet ([`UnauthenticatedLimit`]).
//!   Opening a socket costs an attacker nothing and the server a file descriptor; without a cap,
//!   idle or half-sent connections (each closed only by a timeout) could hold every descriptor
//!   and lock real clients out. Every accepted connection holds an [`Unauthenticated`] slot
//!   until it proves itself (a successful connect, an API call with the key) or closes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use http::Request;
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

/// How many accepted connections may be unauthenticated at once
/// (`http_server.max_unauthenticated_connections`).
#[derive(Debug)]
pub struct UnauthenticatedLimit {
    held: AtomicUsize,
    max: usize,
}

impl UnauthenticatedLimit {
    /// A limit of `max` connections; `max == 0` takes half of `open_files`, the process's
    /// descriptor limit, which leaves the other half to authenticated clients, Redis and files.
    pub fn new(max: u32, open_files: u64) -> Arc<Self> {
        let max = match max {
            0 => usize::try_from(open_files / 2).unwrap_or(usize::MAX).max(1),
            n => n as usize,
        };
        Arc::new(Self {
            held: AtomicUsize::new(0),
            max,
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Connections holding a slot now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// A slot for a newly accepted connection; `None` when all are taken.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Unauthenticated> {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |held| {
                (held < self.max).then_some(held + 1)
            })
            .ok()
            .map(|_| Unauthenticated(Arc::clone(self)))
    }
}

/// One connection's place under the [`UnauthenticatedLimit`]; dropping it frees the place.
#[derive(Debug)]
pub struct Unauthenticated(Arc<UnauthenticatedLimit>);

impl Drop for Unauthenticated {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The slot of the TCP connection a request arrived on, shared by all its requests (a request
/// extension): whoever authenticates the connection takes the slot out and drops it, or hands
/// it to the session that will.
#[derive(Debug, Clone, Default)]
pub struct ConnectionSlot(Arc<Mutex<Option<Unauthenticated>>>);

impl ConnectionSlot {
    pub fn new(slot: Unauthenticated) -> Self {
        Self(Arc::new(Mutex::new(Some(slot))))
    }

    /// The slot of `request`'s connection, if it still holds one.
    pub fn take<B>(request: &Request<B>) -> Option<Unauthenticated> {
        request
            .extensions()
            .get::<ConnectionSlot>()
            .and_then(|slot| slot.0.lock().take())
    }

    /// `request`'s connection proved itself: it no longer counts as unauthenticated.
    pub fn authenticated<B>(request: &Request<B>) {
        drop(Self::take(request));
    }

    /// The slot holder of `request`'s connection, to release it later (after the request is
    /// consumed).
    pub fn of<B>(request: &Request<B>) -> Option<ConnectionSlot> {
        request.extensions().get::<ConnectionSlot>().cloned()
    }

    /// The connection proved itself (see [`Self::authenticated`]).
    pub fn release(&self) {
        drop(self.0.lock().take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn unauthenticated_slots_are_capped_and_given_back() {
        let limit = UnauthenticatedLimit::new(2, 1024);
        let first = limit.try_acquire().expect("first");
        let second = limit.try_acquire().expect("second");
        assert!(limit.try_acquire().is_none(), "a third is over the cap");
        drop(first);
        assert_eq!(limit.held(), 1);
        let third = limit.try_acquire().expect("a freed slot is reused");
        drop((second, third));
        assert_eq!(limit.held(), 0);
    }

    #[test]
    fn unauthenticated_default_is_half_the_descriptors() {
        assert_eq!(UnauthenticatedLimit::new(0, 1024).max(), 512);
        assert_eq!(UnauthenticatedLimit::new(0, 1).max(), 1);
        assert_eq!(UnauthenticatedLimit::new(10, 1024).max(), 10);
    }

    #[test]
    fn a_connection_slot_is_released_once() {
        let limit = UnauthenticatedLimit::new(1, 0);
        let slot = ConnectionSlot::new(limit.try_acquire().expect("slot"));
        let mut request = Request::new(());
        request.extensions_mut().insert(slot.clone());
        let mut second = Request::new(());
        second.extensions_mut().insert(slot);
        assert_eq!(limit.held(), 1);
        ConnectionSlot::authenticated(&request);
        assert_eq!(limit.held(), 0);
        assert!(
            ConnectionSlot::take(&second).is_none(),
            "shared by the connection's requests"
        );
    }

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
