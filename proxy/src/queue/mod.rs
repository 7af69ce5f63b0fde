//! The per-connection write queue (the "outbox") between the hub (and the session) and a transport's writer.
//!
//! Messages arrive already encoded for the connection's encoding — a broadcast publication is the
//! same `Bytes` for every subscriber — and wait here until the writer takes them all at once and
//! writes them as one frame (one syscall for many messages under load). The queue is bounded in
//! bytes (`client.queue_max_size`): a client that does not keep up is disconnected with 3008
//! "slow" instead of delaying anyone else or growing without limit. Pushing never blocks or
//! awaits, so the broadcast path stays synchronous.
//!
//! A transport that can write without waiting (WebSocket) installs a [`DirectWrite`]: while
//! nothing is queued or being written, a pushed message goes straight into the socket from
//! whichever thread pushes it (the hub's broadcast, the session's reply), so a delivery costs one
//! non-blocking write and no task wake-up. Only what the socket does not take at once is queued,
//! and from then on everything queues behind it until the writer has caught up, so order holds.
//!
//! The socket is never written under the outbox's lock (nor, through [`Offer`], under the
//! caller's): a direct write borrows the writer out of the locked state, writes, and gives it
//! back. Whatever is pushed meanwhile, from another thread (another channel's fan-out, the
//! session), queues behind the write in progress and goes to the connection's task, which does
//! not start writing until the borrowed writer is back.

use std::collections::VecDeque;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

use gyre_proto::codes::{self, Disconnect};

/// Writes into a connection's socket without waiting (see the module docs).
pub trait DirectWrite: Send + Sync {
    /// Writes `message` as the transport frames it, or as it is when `framed`, without waiting.
    fn try_write(&self, message: &Bytes, framed: bool) -> Direct;
}

/// How far a [`DirectWrite`] got.
pub enum Direct {
    /// All of it went out.
    Written,
    /// Nothing went out (the socket is full, or failed: the writer finds out): queue it.
    Blocked,
    /// Part of the frame went out; these framed bytes must follow before anything else.
    Partial(Bytes),
}

pub struct Outbox {
    state: Mutex<State>,
    /// Wakes the writer; `notify_one` stores a permit, so a push between two waits is not lost.
    wake: Notify,
    /// Wakes whoever waits in [`Outbox::closed`] (the connection's reader), so that a client
    /// closed for being slow leaves its channels at once, not at its next message or ping.
    closing_signal: Notify,
    max_bytes: usize,
}

#[derive(Default)]
struct State {
    /// Framed bytes that go out before `messages`: the rest of a frame a direct write left half
    /// written, and the transport's own control frames.
    framed: Vec<Bytes>,
    messages: VecDeque<Bytes>,
    bytes: usize,
    /// Set once: the writer sends what is queued (unless the client is too slow to be worth
    /// it), then closes with this code.
    closing: Option<Disconnect>,
    /// The writer took a batch and has not come back for more: nothing may overtake it.
    writing: bool,
    /// A direct write is in progress outside the lock, with the writer taken out of `direct`:
    /// pushes queue behind it, and the connection's task waits for it.
    lent: bool,
    /// [`Outbox::detach_direct`] came while the writer was lent: it is dropped when it returns.
    detached_while_lent: bool,
    direct: Option<Box<dyn DirectWrite>>,
}

impl State {
    /// Lends the direct writer out if a message may be written now: nothing queued ahead of it
    /// and no write in progress.
    fn lend(&mut self) -> Option<Box<dyn DirectWrite>> {
        let idle =
            self.framed.is_empty() && self.messages.is_empty() && !self.writing && !self.lent;
        if !idle {
            return None;
        }
        let writer = self.direct.take();
        self.lent = writer.is_some();
        writer
    }

    /// Something for the connection's task to do (write, or close).
    fn has_work(&self) -> bool {
        !self.framed.is_empty() || !self.messages.is_empty() || self.closing.is_some()
    }

    /// Gives the queue's memory back once it is empty: most connections are idle, and a few
    /// slots kept from a past burst would cost every one of them.
    fn release_idle_queue(&mut self) {
        if self.messages.is_empty() && self.messages.capacity() > 0 {
            self.messages = VecDeque::new();
        }
    }

    /// Drops the backlog of a client that does not keep up and closes with 3008.
    fn overflow(&mut self) {
        self.messages.clear();
        self.bytes = self.framed.iter().map(Bytes::len).sum();
        self.closing = Some(codes::SLOW);
    }
}

/// What a duplex writer takes from [`Outbox::next_writes`]: framed bytes first, then messages.
/// Owned by the write in progress, so an idle connection keeps none of it.
#[derive(Debug, Default, PartialEq)]
pub struct Writes {
    pub framed: Vec<Bytes>,
    pub messages: Vec<Bytes>,
}

/// What the writer gets from [`Outbox::next_batch`].
#[derive(Debug, PartialEq)]
pub enum Batch {
    /// Write these messages, in order, as one frame.
    Messages(Vec<Bytes>),
    /// Close the connection with this code after writing nothing more.
    Close(Disconnect),
}

/// A message pushed with [`Outbox::offer`]. When it is to be written straight into the socket,
/// that write happens when the offer is dropped (or [`Offer::write`] is called): after the
/// caller released the locks it held while deciding what to push, so that no socket is written
/// under them. Until then, everything else pushed to the connection queues behind it.
#[must_use = "a direct write happens when the offer is dropped"]
pub struct Offer<'a> {
    outbox: &'a Outbox,
    /// The writer lent by the outbox and what to write with it.
    lent: Option<(Box<dyn DirectWrite>, Bytes)>,
    accepted: bool,
}

impl Offer<'_> {
    /// Writes the message if it is to be written directly; false when the outbox refused it
    /// (closing, or overflowed: see [`Outbox::push`]).
    pub fn write(mut self) -> bool {
        self.finish();
        self.accepted
    }

    fn finish(&mut self) {
        if let Some((writer, message)) = self.lent.take() {
            self.outbox.write_lent(writer, message, false);
        }
    }
}

impl Drop for Offer<'_> {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Outbox {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            closing_signal: Notify::new(),
            max_bytes,
        }
    }

    /// Queues one encoded message. Returns false when the connection is closing or this message
    /// overflowed the queue (the connection is then closed with 3008).
    pub fn push(&self, message: Bytes) -> bool {
        self.offer(message, true).write()
    }

    /// [`Self::push`]; with `direct` false the message is queued for the writer even when it
    /// could be written at once (a dispatcher that is behind hands the writes to the
    /// connections' tasks, which spread over all threads and coalesce).
    pub fn push_or_queue(&self, message: Bytes, direct: bool) -> bool {
        self.offer(message, direct).write()
    }

    /// [`Self::push_or_queue`] in two steps: the message takes its place in the connection's
    /// order now, and a direct write of it happens when the returned offer is dropped.
    pub fn offer(&self, message: Bytes, direct: bool) -> Offer<'_> {
        let mut state = self.state.lock();
        let accepted = if state.closing.is_some() {
            false
        } else if direct && let Some(writer) = state.lend() {
            return Offer {
                outbox: self,
                lent: Some((writer, message)),
                accepted: true,
            };
        } else if state.bytes + message.len() > self.max_bytes {
            // A slow client's backlog is dropped: it reconnects and recovers from history.
            state.overflow();
            drop(state);
            self.wake.notify_one();
            self.closing_signal.notify_waiters();
            false
        } else {
            state.bytes += message.len();
            state.messages.push_back(message);
            drop(state);
            self.wake.notify_one();
            true
        };
        Offer {
            outbox: self,
            lent: None,
            accepted,
        }
    }

    /// Queues bytes the transport already framed (its control frames), written before the
    /// queued messages; accepted while closing too, since a close frame is the last thing a
    /// closing connection writes.
    pub fn push_framed(&self, frame: Bytes) {
        let mut state = self.state.lock();
        if let Some(writer) = state.lend() {
            drop(state);
            self.write_lent(writer, frame, true);
            return;
        }
        if state.bytes + frame.len() > self.max_bytes {
            // Control frames for a client that reads nothing (pongs to a ping flood, say).
            state.overflow();
            drop(state);
            self.wake.notify_one();
            self.closing_signal.notify_waiters();
            return;
        }
        state.bytes += frame.len();
        state.framed.push(frame);
        drop(state);
        self.wake.notify_one();
    }

    /// The direct write of a lent writer, outside the lock; then the writer goes back, and
    /// what the socket did not take goes ahead of anything queued meanwhile (it came first).
    fn write_lent(&self, writer: Box<dyn DirectWrite>, message: Bytes, framed: bool) {
        let outcome = writer.try_write(&message, framed);
        let mut state = self.state.lock();
        state.lent = false;
        let retired = if std::mem::take(&mut state.detached_while_lent) {
            Some(writer)
        } else {
            state.direct = Some(writer);
            None
        };
        let mut overflowed = false;
        match outcome {
            Direct::Written => {}
            Direct::Partial(rest) => {
                state.bytes += rest.len();
                state.framed.insert(0, rest);
            }
            Direct::Blocked if state.bytes + message.len() > self.max_bytes => {
                state.overflow();
                overflowed = true;
            }
            Direct::Blocked => {
                state.bytes += message.len();
                if framed {
                    state.framed.insert(0, message);
                } else {
                    state.messages.push_front(message);
                }
            }
        }
        let wake = state.has_work();
        drop(state);
        drop(retired);
        if wake {
            self.wake.notify_one();
        }
        if overflowed {
            self.closing_signal.notify_waiters();
        }
    }

    /// Lets `direct` write pushed messages straight into the socket from now on.
    pub fn set_direct(&self, direct: Box<dyn DirectWrite>) {
        let mut state = self.state.lock();
        state.direct = Some(direct);
        state.detached_while_lent = false;
    }

    /// Stops direct writes (the client closed, or the connection ends) and drops the writer,
    /// so the socket it holds closes with the connection; a writer lent to a write in progress
    /// is dropped when that write ends.
    pub fn detach_direct(&self) {
        let mut state = self.state.lock();
        state.direct = None;
        if state.lent {
            state.detached_while_lent = true;
        }
    }

    /// Takes the framed bytes still queued, without the messages: what a connection whose
    /// client is gone still owes it (the answer to its close frame). Waits for a direct write
    /// in progress on another thread (one non-blocking send), which comes first.
    pub fn take_framed(&self) -> Vec<Bytes> {
        loop {
            let mut state = self.state.lock();
            if !state.lent {
                let framed = std::mem::take(&mut state.framed);
                state.bytes -= framed.iter().map(Bytes::len).sum::<usize>();
                return framed;
            }
            drop(state);
            std::thread::yield_now();
        }
    }

    /// Whether the outbox's lock is held (the hub's tests: no socket write under it).
    #[cfg(test)]
    pub(crate) fn is_locked(&self) -> bool {
        self.state.is_locked()
    }

    /// Asks the writer to close the connection once the queued messages are written.
    pub fn close(&self, disconnect: Disconnect) {
        let mut state = self.state.lock();
        if state.closing.is_none() {
            state.closing = Some(disconnect);
        }
        drop(state);
        self.wake.notify_one();
        self.closing_signal.notify_waiters();
    }

    /// Resolves once the connection is closing (slow client, session decision, shutdown).
    pub async fn closed(&self) {
        loop {
            let notified = self.closing_signal.notified();
            tokio::pin!(notified);
            // Registered before the check, so a close between the check and the wait still
            // wakes this future.
            notified.as_mut().enable();
            if self.is_closing() {
                return;
            }
            notified.await;
        }
    }

    pub fn is_closing(&self) -> bool {
        self.state.lock().closing.is_some()
    }

    /// Why the connection is closing, once it is.
    pub fn closing_reason(&self) -> Option<Disconnect> {
        self.state.lock().closing.clone()
    }

    /// Waits for messages (or a close) and takes up to `max_messages` of them.
    pub async fn next_batch(&self, max_messages: usize) -> Batch {
        let mut batch = Vec::new();
        match self.next_batch_into(max_messages, &mut batch).await {
            None => Batch::Messages(batch),
            Some(disconnect) => Batch::Close(disconnect),
        }
    }

    /// [`Self::next_batch`] into a caller's vector (cleared first), so a writer reuses one
    /// allocation for every batch: `None` when messages were taken, the disconnect when the
    /// connection is closing.
    pub async fn next_batch_into(
        &self,
        max_messages: usize,
        batch: &mut Vec<Bytes>,
    ) -> Option<Disconnect> {
        batch.clear();
        loop {
            {
                let mut state = self.state.lock();
                if !state.lent && !state.messages.is_empty() {
                    let n = state.messages.len().min(max_messages);
                    batch.extend(state.messages.drain(..n));
                    state.bytes -= batch.iter().map(Bytes::len).sum::<usize>();
                    state.release_idle_queue();
                    return None;
                }
                if let Some(disconnect) = state.closing.as_ref().filter(|_| !state.lent) {
                    return Some(disconnect.clone());
                }
            }
            self.wake.notified().await;
        }
    }

    /// [`Self::next_batch_into`] for a writer that also writes framed bytes (the duplex
    /// transports): waits for something to write (or a close) and takes the framed bytes and up
    /// to `max_messages` messages. Until the writer comes back for more, pushes queue behind
    /// what it took instead of being written directly; while a direct write is in progress,
    /// it waits for that to end.
    pub async fn next_writes(&self, max_messages: usize) -> Result<Writes, Disconnect> {
        loop {
            {
                let mut state = self.state.lock();
                state.writing = false;
                if !state.lent {
                    if !state.framed.is_empty() || !state.messages.is_empty() {
                        let n = state.messages.len().min(max_messages);
                        let writes = Writes {
                            framed: std::mem::take(&mut state.framed),
                            messages: state.messages.drain(..n).collect(),
                        };
                        state.bytes -= writes.framed.iter().map(Bytes::len).sum::<usize>()
                            + writes.messages.iter().map(Bytes::len).sum::<usize>();
                        state.release_idle_queue();
                        state.writing = true;
                        return Ok(writes);
                    }
                    if let Some(disconnect) = &state.closing {
                        return Err(disconnect.clone());
                    }
                }
            }
            self.wake.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn batches_keep_order_and_respect_the_limit() {
        let outbox = Outbox::new(1024);
        for i in 0..5u8 {
            assert!(outbox.push(Bytes::from(vec![i])));
        }
        assert_eq!(
            outbox.next_batch(3).await,
            Batch::Messages(vec![
                Bytes::from_static(&[0]),
                Bytes::from_static(&[1]),
                Bytes::from_static(&[2])
            ])
        );
        assert_eq!(
            outbox.next_batch(16).await,
            Batch::Messages(vec![Bytes::from_static(&[3]), Bytes::from_static(&[4])])
        );
    }

    #[tokio::test]
    async fn overflow_closes_with_slow_and_drops_the_backlog() {
        let outbox = Outbox::new(10);
        assert!(outbox.push(Bytes::from_static(b"12345678")));
        assert!(!outbox.push(Bytes::from_static(b"abc")));
        assert!(!outbox.push(Bytes::from_static(b"x")), "closed for good");
        assert_eq!(outbox.next_batch(16).await, Batch::Close(codes::SLOW));
    }

    #[tokio::test]
    async fn close_comes_after_queued_messages() {
        let outbox = Outbox::new(100);
        outbox.push(Bytes::from_static(b"last words"));
        outbox.close(codes::SHUTDOWN);
        assert_eq!(
            outbox.next_batch(16).await,
            Batch::Messages(vec![Bytes::from_static(b"last words")])
        );
        assert_eq!(outbox.next_batch(16).await, Batch::Close(codes::SHUTDOWN));
    }

    /// A socket that takes `room` bytes and then blocks, recording what it took.
    #[derive(Default)]
    struct FakeSocket {
        room: Mutex<usize>,
        taken: Mutex<Vec<u8>>,
    }

    impl DirectWrite for std::sync::Arc<FakeSocket> {
        fn try_write(&self, message: &Bytes, framed: bool) -> Direct {
            let mut room = self.room.lock();
            // Unframed messages get a one-byte "header", to tell the two apart.
            let frame = if framed {
                message.clone()
            } else {
                [&b"|"[..], message].concat().into()
            };
            let n = frame.len().min(*room);
            *room -= n;
            self.taken.lock().extend_from_slice(&frame[..n]);
            match n {
                0 => Direct::Blocked,
                n if n == frame.len() => Direct::Written,
                n => Direct::Partial(frame.slice(n..)),
            }
        }
    }

    fn direct_outbox(room: usize) -> (Outbox, std::sync::Arc<FakeSocket>) {
        let socket = std::sync::Arc::new(FakeSocket {
            room: Mutex::new(room),
            ..Default::default()
        });
        let outbox = Outbox::new(1024);
        outbox.set_direct(Box::new(socket.clone()));
        (outbox, socket)
    }

    #[tokio::test]
    async fn an_idle_outbox_writes_directly_and_queues_only_what_the_socket_refused() {
        let (outbox, socket) = direct_outbox(6);
        assert!(outbox.push(Bytes::from_static(b"ab")));
        assert!(outbox.push(Bytes::from_static(b"cdef")), "written in part");
        assert!(
            outbox.push(Bytes::from_static(b"gh")),
            "queued behind the rest"
        );
        assert_eq!(&socket.taken.lock()[..], b"|ab|cd");
        let writes = outbox.next_writes(16).await.unwrap();
        assert_eq!(writes.framed, [Bytes::from_static(b"ef")]);
        assert_eq!(writes.messages, [Bytes::from_static(b"gh")]);

        // While the writer holds a batch nothing overtakes it, even with room in the socket.
        *socket.room.lock() = 100;
        assert!(outbox.push(Bytes::from_static(b"ij")));
        outbox.push_framed(Bytes::from_static(b"PONG"));
        assert_eq!(&socket.taken.lock()[..], b"|ab|cd");
        let writes = outbox.next_writes(16).await.unwrap();
        assert_eq!(writes.framed, [Bytes::from_static(b"PONG")]);
        assert_eq!(writes.messages, [Bytes::from_static(b"ij")]);

        // Once the writer comes back with nothing left, pushes go straight out again.
        outbox.close(codes::SHUTDOWN);
        assert_eq!(outbox.next_writes(16).await, Err(codes::SHUTDOWN));
        outbox.push_framed(Bytes::from_static(b"CLOSE"));
        assert!(!outbox.push(Bytes::from_static(b"late")), "closing");
        assert_eq!(&socket.taken.lock()[..], b"|ab|cdCLOSE");
    }

    #[tokio::test]
    async fn a_detached_outbox_only_queues() {
        let (outbox, socket) = direct_outbox(100);
        outbox.detach_direct();
        assert!(outbox.push(Bytes::from_static(b"ab")));
        outbox.push_framed(Bytes::from_static(b"PONG"));
        assert!(socket.taken.lock().is_empty());
        assert_eq!(outbox.take_framed(), [Bytes::from_static(b"PONG")]);
        assert_eq!(
            outbox.next_batch(16).await,
            Batch::Messages(vec![Bytes::from_static(b"ab")])
        );
    }

    /// A socket whose write waits inside `try_write` until the test says how it went.
    struct HeldSocket {
        entered: std::sync::mpsc::SyncSender<Bytes>,
        outcome: Mutex<std::sync::mpsc::Receiver<Direct>>,
    }

    impl DirectWrite for HeldSocket {
        fn try_write(&self, message: &Bytes, _framed: bool) -> Direct {
            self.entered.send(message.clone()).unwrap();
            self.outcome.lock().recv().unwrap()
        }
    }

    /// An outbox whose direct writes wait for `outcome`, and the messages they are given.
    fn held_outbox() -> (
        std::sync::Arc<Outbox>,
        std::sync::mpsc::Receiver<Bytes>,
        std::sync::mpsc::Sender<Direct>,
    ) {
        let (entered, writes) = std::sync::mpsc::sync_channel(0);
        let (outcome, outcomes) = std::sync::mpsc::channel();
        let outbox = std::sync::Arc::new(Outbox::new(1024));
        outbox.set_direct(Box::new(HeldSocket {
            entered,
            outcome: Mutex::new(outcomes),
        }));
        (outbox, writes, outcome)
    }

    /// Starts a direct write of `first` on another thread and returns once it is in the socket's
    /// `try_write` (outside the outbox's lock); the thread ends with what `push` returned.
    fn write_first_on_another_thread(
        outbox: &std::sync::Arc<Outbox>,
        writes: &std::sync::mpsc::Receiver<Bytes>,
    ) -> std::thread::JoinHandle<bool> {
        let pusher = {
            let outbox = std::sync::Arc::clone(outbox);
            std::thread::spawn(move || outbox.push(Bytes::from_static(b"first")))
        };
        assert_eq!(writes.recv().unwrap(), "first");
        pusher
    }

    #[test]
    fn pushes_during_a_direct_write_queue_behind_it_and_the_task_waits_for_it() {
        use futures_util::FutureExt;
        let (outbox, writes, outcome) = held_outbox();
        let pusher = write_first_on_another_thread(&outbox, &writes);
        assert!(outbox.push(Bytes::from_static(b"second")), "queued at once");
        outbox.push_framed(Bytes::from_static(b"PONG"));
        assert!(
            outbox.next_writes(16).now_or_never().is_none(),
            "the connection's task does not write alongside a direct write"
        );
        // The socket refused `first`: it goes back ahead of the message pushed after it.
        outcome.send(Direct::Blocked).unwrap();
        assert!(pusher.join().unwrap());
        let taken = outbox.next_writes(16).now_or_never().unwrap().unwrap();
        assert_eq!(taken.framed, [Bytes::from_static(b"PONG")]);
        assert_eq!(taken.messages, ["first", "second"].map(Bytes::from));
    }

    #[test]
    fn the_rest_of_a_partly_written_frame_goes_before_everything_queued_meanwhile() {
        use futures_util::FutureExt;
        let (outbox, writes, outcome) = held_outbox();
        let pusher = write_first_on_another_thread(&outbox, &writes);
        assert!(outbox.push(Bytes::from_static(b"second")));
        outbox.push_framed(Bytes::from_static(b"PONG"));
        outcome
            .send(Direct::Partial(Bytes::from_static(b"rst")))
            .unwrap();
        assert!(pusher.join().unwrap());
        let taken = outbox.next_writes(16).now_or_never().unwrap().unwrap();
        assert_eq!(taken.framed, ["rst", "PONG"].map(Bytes::from));
        assert_eq!(taken.messages, [Bytes::from_static(b"second")]);
    }

    #[test]
    fn a_writer_detached_during_its_write_is_not_used_again() {
        let (outbox, writes, outcome) = held_outbox();
        let pusher = write_first_on_another_thread(&outbox, &writes);
        outbox.detach_direct();
        outcome.send(Direct::Written).unwrap();
        assert!(pusher.join().unwrap());
        // A direct write now would panic in `HeldSocket` (nobody listens any more).
        drop((writes, outcome));
        assert!(outbox.push(Bytes::from_static(b"second")));
        outbox.push_framed(Bytes::from_static(b"CLOSE"));
        assert_eq!(outbox.take_framed(), [Bytes::from_static(b"CLOSE")]);
    }

    #[tokio::test]
    async fn a_waiting_writer_wakes_on_push() {
        let outbox = std::sync::Arc::new(Outbox::new(100));
        let writer = {
            let outbox = outbox.clone();
            tokio::spawn(async move { outbox.next_batch(16).await })
        };
        tokio::task::yield_now().await;
        outbox.push(Bytes::from_static(b"m"));
        assert_eq!(
            writer.await.unwrap(),
            Batch::Messages(vec![Bytes::from_static(b"m")])
        );
    }
}
