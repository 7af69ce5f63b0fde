//! The per-connection write queue (the "outbox") between the hub (and the session) and a transport's writer.
//!
//! Messages arrive already encoded for the connection's encoding — a broadcast publication is the
//! same `Bytes` for every subscriber — and wait here until the writer takes them all at once and
//! writes them as one frame (one syscall for many messages under load). The queue is bounded in
//! bytes (`client.queue_max_size`): a client that does not keep up is disconnected with 3008
//! "slow" instead of delaying anyone else or growing without limit. Pushing never blocks or
//! awaits, so the broadcast path stays synchronous.

use std::collections::VecDeque;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::protocol::codes::{self, Disconnect};

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
    messages: VecDeque<Bytes>,
    bytes: usize,
    /// Set once: the writer sends what is queued (unless the client is too slow to be worth
    /// it), then closes with this code.
    closing: Option<Disconnect>,
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
        let mut state = self.state.lock();
        if state.closing.is_some() {
            return false;
        }
        if state.bytes + message.len() > self.max_bytes {
            // A slow client's backlog is dropped: it reconnects and recovers from history.
            state.messages.clear();
            state.bytes = 0;
            state.closing = Some(codes::SLOW);
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
                    return None;
                }
                if let Some(disconnect) = &state.closing {
                    return Some(disconnect.clone());
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
