//! One connection's subscription to one channel, as the hub sees it: where to queue messages,
//! whether join/leave is wanted, and the position checks of a positioned subscription.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gyre_proto::codec::Wire;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

use crate::queue::Outbox;

/// Something the hub tells a connection's session outside of the message stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// A positioned subscription saw a gap or an epoch change: the session must unsubscribe the
    /// client with 2500 so that it resubscribes and recovers.
    InsufficientState { channel: String },
    /// Live messages may have been lost: the session compares its positions with the streams.
    Resync,
    /// End the connection with this code (shutdown, server API disconnect).
    Disconnect(crate::protocol::codes::Disconnect),
    /// Server API: end this subscription (unsubscribe push 2000).
    Unsubscribe { channel: String },
    /// Server API: add a server-side subscription (subscribe push).
    Subscribe {
        channel: String,
        chan_info: Bytes,
        data: Bytes,
    },
    /// Server API: the connection now expires at this unix time (`None`: never), or now.
    Refresh {
        expired: bool,
        expires_at: Option<i64>,
    },
    /// A frame of commands the client of an emulated transport POSTed to `/emulation`, on this
    /// node or another.
    Emulation(Bytes),
}

/// A connection's inbox for hub signals. They are rare, so unlike a channel (which allocates a
/// block of slots up front) it holds no memory until one arrives: idle connections stay small.
struct ControlQueue {
    signals: Mutex<VecDeque<Control>>,
    arrived: Notify,
    /// The receiving session is gone: sending fails.
    closed: AtomicBool,
}

/// Sends signals to one connection's session; cloned into its subscriptions and the hub.
#[derive(Clone)]
pub struct ControlSender(Arc<ControlQueue>);

/// The session's end of its [`ControlSender`]s.
pub struct ControlReceiver(Arc<ControlQueue>);

/// A connected sender and receiver.
pub fn control_channel() -> (ControlSender, ControlReceiver) {
    let queue = Arc::new(ControlQueue {
        signals: Mutex::new(VecDeque::new()),
        arrived: Notify::new(),
        closed: AtomicBool::new(false),
    });
    (ControlSender(Arc::clone(&queue)), ControlReceiver(queue))
}

impl ControlSender {
    /// Queues a signal; gives it back when the session is gone.
    pub fn send(&self, control: Control) -> Result<(), Control> {
        if self.0.closed.load(Ordering::Acquire) {
            return Err(control);
        }
        self.0.signals.lock().push_back(control);
        self.0.arrived.notify_one();
        Ok(())
    }
}

impl ControlReceiver {
    /// The next signal, in the order they were sent.
    pub async fn recv(&mut self) -> Control {
        loop {
            // Taken in a plain function: a `next` local here would stay in this future (88
            // bytes, inside every idle connection's task) while it waits.
            if let Some(control) = self.try_take() {
                return control;
            }
            // `notify_one` keeps a permit, so a signal sent since the check is not missed.
            self.0.arrived.notified().await;
        }
    }

    fn try_take(&self) -> Option<Control> {
        let mut signals = self.0.signals.lock();
        let next = signals.pop_front();
        if signals.is_empty() && signals.capacity() > 0 {
            // Give the memory back: most connections see a signal or two in their life.
            *signals = VecDeque::new();
        }
        next
    }
}

#[cfg(test)]
impl ControlReceiver {
    /// The next signal if one is waiting.
    pub fn try_recv(&mut self) -> Option<Control> {
        self.0.signals.lock().pop_front()
    }
}

impl Drop for ControlReceiver {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Release);
        self.0.signals.lock().clear();
    }
}

/// Identifies a connection on this node.
pub type ConnectionId = u64;

pub struct Subscription {
    pub connection: ConnectionId,
    pub channel: String,
    /// How this connection's outbox holds messages (broadcasts are encoded once per wire).
    pub wire: Wire,
    /// The client receives join and leave pushes.
    pub join_leave: bool,
    outbox: Arc<Outbox>,
    control: ControlSender,
    state: Mutex<State>,
}

/// A publication waiting for the subscribe reply to be written.
struct Buffered {
    offset: u64,
    epoch: String,
    message: Bytes,
}

#[derive(Default)]
struct State {
    /// `Some` until the subscribe reply is queued: publications wait here so that none reaches
    /// the client before the reply that tells it where the stream stands.
    buffer: Option<Vec<Buffered>>,
    /// Check offsets and epochs of publications.
    positioned: bool,
    offset: u64,
    epoch: String,
    /// Set after a gap: nothing more is delivered until the session replaces the subscription.
    broken: bool,
    /// When the position last advanced (or the subscription went live): a positioned
    /// subscription idle for long is checked against the stream, since PUB/SUB may have lost
    /// its last publications without any gap to show it.
    advanced_at: Option<Instant>,
}

/// Where a subscription's stream stands once it goes live.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LivePosition {
    pub positioned: bool,
    pub offset: u64,
    pub epoch: String,
}

impl Subscription {
    pub fn new(
        connection: ConnectionId,
        channel: String,
        wire: Wire,
        join_leave: bool,
        outbox: Arc<Outbox>,
        control: ControlSender,
    ) -> Self {
        Self {
            connection,
            channel,
            wire,
            join_leave,
            outbox,
            control,
            state: Mutex::new(State {
                buffer: Some(Vec::new()),
                ..State::default()
            }),
        }
    }

    /// Queues a publication (already encoded for this subscription's encoding), after the
    /// position checks of a positioned subscription; `direct`: it may be written straight into
    /// the socket (see [`Outbox::push`]) rather than left to the connection's task.
    pub fn deliver_publication(
        &self,
        offset: u64,
        epoch: &str,
        message: &Bytes,
        now: Instant,
        direct: bool,
    ) {
        let mut state = self.state.lock();
        if state.broken {
            return;
        }
        if let Some(buffer) = &mut state.buffer {
            buffer.push(Buffered {
                offset,
                epoch: epoch.to_owned(),
                message: message.clone(),
            });
            return;
        }
        self.deliver_live(&mut state, offset, epoch, message, now, direct);
    }

    /// Closes this subscriber's connection (e.g. a publication that cannot be encoded for it).
    pub fn close_connection(&self, disconnect: crate::protocol::codes::Disconnect) {
        self.outbox.close(disconnect);
    }

    /// Queues a join or leave push (`direct`: as in [`Self::deliver_publication`]).
    pub fn deliver_presence(&self, message: &Bytes, direct: bool) {
        let state = self.state.lock();
        if state.broken || state.buffer.is_some() {
            // Join/leave are not replayed: a client that is still subscribing misses them, as
            // with Centrifugo.
            return;
        }
        self.outbox.push_or_queue(message.clone(), direct);
    }

    /// Ends buffering: `reply` (the encoded subscribe reply, if the session did not queue the
    /// reply itself) is queued first, then every buffered publication that comes after
    /// `position`, in order. From then on publications go straight to the queue. Returns false
    /// if the buffered publications showed a gap (the session was told through its control
    /// channel).
    pub fn go_live(&self, reply: Option<Bytes>, position: LivePosition) -> bool {
        let mut state = self.state.lock();
        state.positioned = position.positioned;
        state.offset = position.offset;
        state.epoch = position.epoch;
        let buffered = state.buffer.take().unwrap_or_default();
        let now = Instant::now();
        state.advanced_at = Some(now);
        if let Some(reply) = reply {
            self.outbox.push(reply);
        }
        for item in buffered {
            if state.positioned && item.epoch == state.epoch && item.offset <= state.offset {
                // Already part of the reply (recovered) or before the position the client has.
                continue;
            }
            self.deliver_live(
                &mut state,
                item.offset,
                &item.epoch,
                &item.message,
                now,
                true,
            );
        }
        !state.broken
    }

    /// The position a positioned subscription has reached.
    pub fn position(&self) -> LivePosition {
        let state = self.state.lock();
        LivePosition {
            positioned: state.positioned,
            offset: state.offset,
            epoch: state.epoch.clone(),
        }
    }

    /// The position of a positioned, live subscription whose position has not advanced for
    /// `idle` (see `State::advanced_at`).
    pub fn idle_position(&self, idle: Duration, now: Instant) -> Option<LivePosition> {
        let state = self.state.lock();
        let idle_since = state.advanced_at?;
        let idle_long = now.saturating_duration_since(idle_since) >= idle;
        (state.positioned && !state.broken && idle_long).then(|| LivePosition {
            positioned: true,
            offset: state.offset,
            epoch: state.epoch.clone(),
        })
    }

    pub fn is_broken(&self) -> bool {
        self.state.lock().broken
    }

    /// Marks the subscription broken and tells the session (see [`Control::InsufficientState`]).
    pub fn break_off(&self) {
        let mut state = self.state.lock();
        self.break_locked(&mut state);
    }

    fn deliver_live(
        &self,
        state: &mut State,
        offset: u64,
        epoch: &str,
        message: &Bytes,
        now: Instant,
        direct: bool,
    ) {
        if state.positioned && offset > 0 {
            if !state.epoch.is_empty() && state.epoch != epoch {
                self.break_locked(state);
                return;
            }
            if offset <= state.offset {
                return; // a duplicate of something already delivered
            }
            if offset > state.offset + 1 {
                self.break_locked(state);
                return;
            }
            state.offset = offset;
            state.advanced_at = Some(now);
            if state.epoch.is_empty() {
                state.epoch = epoch.to_owned();
            }
        }
        self.outbox.push_or_queue(message.clone(), direct);
    }

    fn break_locked(&self, state: &mut State) {
        if !state.broken {
            state.broken = true;
            let _ = self.control.send(Control::InsufficientState {
                channel: self.channel.clone(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::Batch;

    fn subscription() -> (Subscription, Arc<Outbox>, ControlReceiver) {
        let outbox = Arc::new(Outbox::new(1 << 20));
        let (tx, rx) = control_channel();
        let sub = Subscription::new(
            1,
            "ch".into(),
            Wire::plain(gyre_proto::Encoding::Json),
            false,
            outbox.clone(),
            tx,
        );
        (sub, outbox, rx)
    }

    fn live(offset: u64) -> LivePosition {
        LivePosition {
            positioned: true,
            offset,
            epoch: "e".into(),
        }
    }

    async fn drain(outbox: &Outbox) -> Vec<Bytes> {
        match outbox.next_batch(100).await {
            Batch::Messages(m) => m,
            Batch::Close(d) => panic!("closed: {d:?}"),
        }
    }

    #[tokio::test]
    async fn publications_wait_for_the_reply_and_skip_what_it_covered() {
        let (sub, outbox, _rx) = subscription();
        for offset in [3, 4, 5] {
            sub.deliver_publication(
                offset,
                "e",
                &Bytes::from(format!("p{offset}")),
                Instant::now(),
                true,
            );
        }
        assert!(sub.go_live(Some(Bytes::from_static(b"reply")), live(4)));
        sub.deliver_publication(6, "e", &Bytes::from_static(b"p6"), Instant::now(), true);
        assert_eq!(drain(&outbox).await, ["reply", "p5", "p6"].map(Bytes::from));
    }

    #[tokio::test]
    async fn a_gap_breaks_the_subscription_once() {
        let (sub, outbox, mut rx) = subscription();
        assert!(sub.go_live(Some(Bytes::from_static(b"reply")), live(1)));
        sub.deliver_publication(3, "e", &Bytes::from_static(b"p3"), Instant::now(), true);
        sub.deliver_publication(4, "e", &Bytes::from_static(b"p4"), Instant::now(), true);
        assert_eq!(drain(&outbox).await, [Bytes::from_static(b"reply")]);
        assert_eq!(
            rx.try_recv(),
            Some(Control::InsufficientState {
                channel: "ch".into()
            })
        );
        assert!(rx.try_recv().is_none(), "told once");
        assert!(sub.is_broken());
    }

    #[tokio::test]
    async fn an_epoch_change_breaks_the_subscription() {
        let (sub, _outbox, mut rx) = subscription();
        sub.go_live(Some(Bytes::from_static(b"reply")), live(1));
        sub.deliver_publication(2, "other", &Bytes::from_static(b"p"), Instant::now(), true);
        assert!(rx.try_recv().is_some());
    }

    #[tokio::test]
    async fn only_a_quiet_positioned_subscription_is_idle() {
        let (sub, _outbox, _rx) = subscription();
        let start = Instant::now();
        assert_eq!(
            sub.idle_position(Duration::ZERO, start),
            None,
            "not live yet"
        );
        sub.go_live(Some(Bytes::from_static(b"reply")), live(1));
        let later = Instant::now() + Duration::from_secs(60);
        assert_eq!(
            sub.idle_position(Duration::from_secs(40), later),
            Some(live(1))
        );
        sub.deliver_publication(2, "e", &Bytes::from_static(b"p2"), later, true);
        assert_eq!(
            sub.idle_position(Duration::from_secs(40), later),
            None,
            "a delivery resets the idle time"
        );
        let (plain, _o, _r) = subscription();
        plain.go_live(None, LivePosition::default());
        assert_eq!(
            plain.idle_position(Duration::ZERO, later),
            None,
            "not positioned"
        );
    }

    #[tokio::test]
    async fn unpositioned_subscriptions_get_everything() {
        let (sub, outbox, _rx) = subscription();
        sub.deliver_publication(0, "", &Bytes::from_static(b"a"), Instant::now(), true);
        sub.go_live(Some(Bytes::from_static(b"reply")), LivePosition::default());
        sub.deliver_publication(0, "", &Bytes::from_static(b"b"), Instant::now(), true);
        assert_eq!(drain(&outbox).await, ["reply", "a", "b"].map(Bytes::from));
    }
}
