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

use super::filter::TagsFilter;
use crate::queue::{Offer, Outbox};

/// Something the hub tells a connection's session outside of the message stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// A positioned subscription saw a gap or an epoch change: the session must unsubscribe the
    /// client with 2500 so that it resubscribes and recovers.
    InsufficientState { channel: String },
    /// Live messages may have been lost: the session compares its positions with the streams.
    Resync,
    /// End the connection with this code (shutdown, server API disconnect).
    Disconnect(gyre_proto::codes::Disconnect),
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

/// What a subscriber asked for beyond the channel's publications, as its grant allows.
#[derive(Debug, Clone, Default)]
pub struct Interest {
    /// The client receives join and leave pushes.
    pub join_leave: bool,
    /// Only publications whose tags match are delivered.
    pub filter: Option<Arc<TagsFilter>>,
    /// Fossil delta compression was negotiated: publication data travels as a JSON string (JSON
    /// clients) and, once the client holds a base, as a patch when one is available.
    pub delta: bool,
    /// The namespace's `delta_publish`: publications are patched against their predecessor.
    pub delta_publish: bool,
}

pub struct Subscription {
    pub connection: ConnectionId,
    pub channel: String,
    /// How this connection's outbox holds messages (broadcasts are encoded once per wire).
    pub wire: Wire,
    /// The client receives join and leave pushes.
    pub join_leave: bool,
    pub filter: Option<Arc<TagsFilter>>,
    pub delta: bool,
    pub delta_publish: bool,
    outbox: Arc<Outbox>,
    control: ControlSender,
    state: Mutex<State>,
}

/// A publication waiting for the subscribe reply to be written.
struct Buffered {
    offset: u64,
    epoch: String,
    message: Option<Bytes>,
    patch: Option<Bytes>,
}

/// One publication for one subscriber, encoded for its wire.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    pub offset: u64,
    pub epoch: &'a str,
    /// What to queue; `None` when the subscriber's tags filter rejects the publication (its
    /// offset still counts, so the position stays continuous).
    pub message: Option<&'a Bytes>,
    /// For a delta subscriber: the publication as a patch against the previous one, when the
    /// hub could make one. Sent instead of `message` once the client holds that base.
    pub patch: Option<&'a Bytes>,
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
    /// Removed from the hub (unsubscribed, replaced, or its connection closed): a fan-out
    /// that started before still holds it, and delivers nothing more to it.
    retired: bool,
    /// When the position last advanced (or the subscription went live): a positioned
    /// subscription idle for long is checked against the stream, since PUB/SUB may have lost
    /// its last publications without any gap to show it.
    advanced_at: Option<Instant>,
    /// A delta subscriber's client holds the data of the last publication it was sent, so the
    /// next one may come as a patch.
    delta_base: bool,
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
        interest: Interest,
        outbox: Arc<Outbox>,
        control: ControlSender,
    ) -> Self {
        Self {
            connection,
            channel,
            wire,
            join_leave: interest.join_leave,
            filter: interest.filter,
            delta: interest.delta,
            delta_publish: interest.delta_publish,
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
    /// the socket (see [`Outbox::push`]) rather than left to the connection's task. The write
    /// happens after this subscription's lock is released; its place in the connection's order
    /// is taken under the lock.
    pub fn deliver_publication(&self, delivery: Delivery<'_>, now: Instant, direct: bool) {
        let offer = {
            let mut state = self.state.lock();
            if state.broken || state.retired {
                return;
            }
            if let Some(buffer) = &mut state.buffer {
                buffer.push(Buffered {
                    offset: delivery.offset,
                    epoch: delivery.epoch.to_owned(),
                    message: delivery.message.cloned(),
                    patch: delivery.patch.cloned(),
                });
                return;
            }
            self.deliver_live(&mut state, delivery, now, direct)
        };
        drop(offer);
    }

    /// Stops deliveries: the hub no longer lists this subscription.
    pub(super) fn retire(&self) {
        self.state.lock().retired = true;
    }

    /// The client already holds the data of the publication at its position (it recovered
    /// publications in the subscribe reply): live publications may come as patches at once.
    /// Called before [`Self::go_live`].
    pub fn hold_delta_base(&self) {
        self.state.lock().delta_base = true;
    }

    /// Closes this subscriber's connection (e.g. a publication that cannot be encoded for it).
    pub fn close_connection(&self, disconnect: gyre_proto::codes::Disconnect) {
        self.outbox.close(disconnect);
    }

    /// Queues a join or leave push (`direct`: as in [`Self::deliver_publication`]).
    pub fn deliver_presence(&self, message: &Bytes, direct: bool) {
        let offer = {
            let state = self.state.lock();
            if state.broken || state.retired || state.buffer.is_some() {
                // Join/leave are not replayed: a client that is still subscribing misses them,
                // as with Centrifugo.
                return;
            }
            self.outbox.offer(message.clone(), direct)
        };
        drop(offer);
    }

    /// Ends buffering: `reply` (the encoded subscribe reply, if the session did not queue the
    /// reply itself) is queued first, then every buffered publication that comes after
    /// `position`, in order. From then on publications go straight to the queue. Returns false
    /// if the buffered publications showed a gap (the session was told through its control
    /// channel). `now`: when, for the quiet-position check (see `State::advanced_at`).
    pub fn go_live(&self, reply: Option<Bytes>, position: LivePosition, now: Instant) -> bool {
        // Written once the lock is released; only the first can be a direct write, the others
        // queue behind it.
        let mut offers = Vec::new();
        let mut state = self.state.lock();
        state.positioned = position.positioned;
        state.offset = position.offset;
        state.epoch = position.epoch;
        let buffered = state.buffer.take().unwrap_or_default();
        state.advanced_at = Some(now);
        if let Some(reply) = reply {
            offers.push(self.outbox.offer(reply, true));
        }
        for item in buffered {
            if state.positioned && item.epoch == state.epoch && item.offset <= state.offset {
                // Already part of the reply (recovered) or before the position the client has.
                continue;
            }
            let delivery = Delivery {
                offset: item.offset,
                epoch: &item.epoch,
                message: item.message.as_ref(),
                patch: item.patch.as_ref(),
            };
            offers.extend(self.deliver_live(&mut state, delivery, now, true));
        }
        let live = !state.broken;
        drop(state);
        drop(offers);
        live
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

    /// The position checks and the message to push; the offer writes it when dropped, which
    /// the caller does after releasing `state`'s lock.
    fn deliver_live(
        &self,
        state: &mut State,
        delivery: Delivery<'_>,
        now: Instant,
        direct: bool,
    ) -> Option<Offer<'_>> {
        let Delivery { offset, epoch, .. } = delivery;
        if state.retired {
            return None;
        }
        if state.positioned && offset > 0 {
            if !state.epoch.is_empty() && state.epoch != epoch {
                self.break_locked(state);
                return None;
            }
            if offset <= state.offset {
                return None; // a duplicate of something already delivered
            }
            if offset > state.offset + 1 {
                self.break_locked(state);
                return None;
            }
            state.offset = offset;
            state.advanced_at = Some(now);
            if state.epoch.is_empty() {
                state.epoch = epoch.to_owned();
            }
        }
        let whole = delivery.message?;
        let message = match delivery.patch {
            Some(patch) if self.delta && state.delta_base => patch,
            _ => whole,
        };
        if self.delta {
            state.delta_base = true;
        }
        Some(self.outbox.offer(message.clone(), direct))
    }

    /// Whether this subscription's lock is held (the hub's tests: no socket write under it).
    #[cfg(test)]
    pub(super) fn is_locked(&self) -> bool {
        self.state.is_locked()
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
            Interest::default(),
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

    fn send(sub: &Subscription, offset: u64, epoch: &str, message: &str, now: Instant) {
        let message = Bytes::copy_from_slice(message.as_bytes());
        let delivery = Delivery {
            offset,
            epoch,
            message: Some(&message),
            patch: None,
        };
        sub.deliver_publication(delivery, now, true);
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
            send(&sub, offset, "e", &format!("p{offset}"), Instant::now());
        }
        assert!(sub.go_live(Some(Bytes::from_static(b"reply")), live(4), Instant::now()));
        send(&sub, 6, "e", "p6", Instant::now());
        assert_eq!(drain(&outbox).await, ["reply", "p5", "p6"].map(Bytes::from));
    }

    #[tokio::test]
    async fn a_gap_breaks_the_subscription_once() {
        let (sub, outbox, mut rx) = subscription();
        assert!(sub.go_live(Some(Bytes::from_static(b"reply")), live(1), Instant::now()));
        send(&sub, 3, "e", "p3", Instant::now());
        send(&sub, 4, "e", "p4", Instant::now());
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
        sub.go_live(Some(Bytes::from_static(b"reply")), live(1), Instant::now());
        send(&sub, 2, "other", "p", Instant::now());
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
        sub.go_live(Some(Bytes::from_static(b"reply")), live(1), Instant::now());
        let later = Instant::now() + Duration::from_secs(60);
        assert_eq!(
            sub.idle_position(Duration::from_secs(40), later),
            Some(live(1))
        );
        send(&sub, 2, "e", "p2", later);
        assert_eq!(
            sub.idle_position(Duration::from_secs(40), later),
            None,
            "a delivery resets the idle time"
        );
        let (plain, _o, _r) = subscription();
        plain.go_live(None, LivePosition::default(), Instant::now());
        assert_eq!(
            plain.idle_position(Duration::ZERO, later),
            None,
            "not positioned"
        );
    }

    #[tokio::test]
    async fn unpositioned_subscriptions_get_everything() {
        let (sub, outbox, _rx) = subscription();
        send(&sub, 0, "", "a", Instant::now());
        sub.go_live(
            Some(Bytes::from_static(b"reply")),
            LivePosition::default(),
            Instant::now(),
        );
        send(&sub, 0, "", "b", Instant::now());
        assert_eq!(drain(&outbox).await, ["reply", "a", "b"].map(Bytes::from));
    }

    #[tokio::test]
    async fn a_filtered_out_publication_moves_the_position_without_a_message() {
        let (sub, outbox, mut rx) = subscription();
        assert!(sub.go_live(Some(Bytes::from_static(b"reply")), live(1), Instant::now()));
        let filtered = Delivery {
            offset: 2,
            epoch: "e",
            message: None,
            patch: None,
        };
        sub.deliver_publication(filtered, Instant::now(), true);
        send(&sub, 3, "e", "p3", Instant::now());
        assert_eq!(drain(&outbox).await, ["reply", "p3"].map(Bytes::from));
        assert!(rx.try_recv().is_none(), "no gap");
        assert_eq!(sub.position().offset, 3);
    }

    #[tokio::test]
    async fn a_retired_subscription_delivers_nothing_more() {
        let (sub, outbox, mut rx) = subscription();
        assert!(sub.go_live(Some(Bytes::from_static(b"reply")), live(1), Instant::now()));
        sub.retire();
        send(&sub, 2, "e", "p2", Instant::now());
        sub.deliver_presence(&Bytes::from_static(b"join"), true);
        outbox.push(Bytes::from_static(b"unsubscribe reply"));
        assert_eq!(
            drain(&outbox).await,
            ["reply", "unsubscribe reply"].map(Bytes::from)
        );
        assert!(rx.try_recv().is_none(), "not a gap");
    }

    #[tokio::test]
    async fn a_delta_subscriber_gets_patches_once_it_holds_a_base() {
        let outbox = Arc::new(Outbox::new(1 << 20));
        let (tx, _rx) = control_channel();
        let interest = Interest {
            delta: true,
            delta_publish: true,
            ..Interest::default()
        };
        let sub = Subscription::new(
            1,
            "ch".into(),
            Wire::plain(gyre_proto::Encoding::Json),
            interest,
            outbox.clone(),
            tx,
        );
        let (whole, patch) = (Bytes::from_static(b"whole"), Bytes::from_static(b"patch"));
        let delivery = |offset| Delivery {
            offset,
            epoch: "e",
            message: Some(&whole),
            patch: Some(&patch),
        };
        // Buffered while subscribing: the first one after the reply is whole.
        sub.deliver_publication(delivery(2), Instant::now(), true);
        assert!(sub.go_live(Some(Bytes::from_static(b"reply")), live(1), Instant::now()));
        sub.deliver_publication(delivery(3), Instant::now(), true);
        let without_base = Delivery {
            patch: None,
            ..delivery(4)
        };
        sub.deliver_publication(without_base, Instant::now(), true);
        assert_eq!(
            drain(&outbox).await,
            ["reply", "whole", "patch", "whole"].map(Bytes::from)
        );
    }
}
