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
    direct: Option<Box<dyn DirectWrite>>,
}

impl State {
    /// The writer that may write `message` now, if nothing is queued ahead of it.
    fn idle_direct(&self) -> Option<&dyn DirectWrite> {
        let idle = self.framed.is_empty() && self.messages.is_empty() && !self.writing;
        self.direct.as_deref().filter(|_| idle)
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
        self.push_or_queue(message, true)
    }

    /// [`Self::push`]; with `direct` false the message is queued for the writer even when it
    /// could be written at once (a dispatcher that is behind hands the writes to the
    /// connections' tasks, which spread over all threads and coalesce).
    pub fn push_or_queue(&self, message: Bytes, direct: bool) -> bool {
        let mut state = self.state.lock();
        if state.closing.is_some() {
            return false;
        }
        if let Some(direct) = state.idle_direct().filter(|_| direct) {
            match direct.try_write(&message, false) {
                Direct::Written => return true,
                Direct::Blocked => {}
                Direct::Partial(rest) => {
                    state.bytes += rest.len();
                    state.framed.push(rest);
                    drop(state);
                    self.wake.notify_one();
                    return true;
                }
            }
        }
        if state.bytes + message.len() > self.max_bytes {
            // A slow client's backlog is dropped: it reconnects and recovers from history.
            state.overflow();
            drop(state);
            self.wake.notify_one();
            self.closing_signal.notify_waiters();
            return false;
        }
        state.bytes += message.len();
        state.messages.push_back(message);
        drop(state);
        self.wake.notify_one();
        true
    }

    /// Queues bytes the transport already framed (its control frames), written before the
    /// queued messages; accepted while closing too, since a close frame is the last thing a
    /// closing connection writes.
    pub fn push_framed(&self, mut frame: Bytes) {
        let mut state = self.state.lock();
        if let Some(direct) = state.idle_direct() {
            match direct.try_write(&frame, true) {
                Direct::Written => return,
                Direct::Blocked => {}
                Direct::Partial(rest) => frame = rest,
            }
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

    /// Lets `direct` write pushed messages straight into the socket from now on.
    pub fn set_direct(&self, direct: Box<dyn DirectWrite>) {
        self.state.lock().direct = Some(direct);
    }

    /// Stops direct writes (the client closed, or the connection ends) and drops the writer,
    /// so the socket it holds closes with the connection.
    pub fn detach_direct(&self) {
        self.state.lock().direct = None;
    }

    /// Takes the framed bytes still queued, without the messages: what a connection whose
    /// client is gone still owes it (the answer to its close frame).
    pub fn take_framed(&self) -> Vec<Bytes> {
        let mut state = self.state.lock();
        let framed = std::mem::take(&mut state.framed);
        state.bytes -= framed.iter().map(Bytes::len).sum::<usize>();
        framed
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
                if !state.messages.is_empty() {
                    let n = state.messages.len().min(max_messages);
                    batch.extend(state.messages.drain(..n));
                    state.bytes -= batch.iter().map(Bytes::len).sum::<usize>();
                    state.release_idle_queue();
                    return None;
                }
                if let Some(disconnect) = &state.closing {
                    return Some(disconnect.clone());
                }
            }
            self.wake.notified().await;
        }
    }

    /// [`Self::next_batch_into`] for a writer that also writes framed bytes (the duplex
    /// transports): waits for something to write (or a close) and takes the framed bytes and up
    /// to `max_messages` messages. Until the writer comes back for more, pushes queue behind
    /// what it took instead of being written directly.
    pub async fn next_writes(&self, max_messages: usize) -> Result<Writes, Disconnect> {
        loop {
            {
                let mut state = self.state.lock();
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
                state.writing = false;
                if let Some(disconnect) = &state.closing {
                    return Err(disconnect.clone());
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
