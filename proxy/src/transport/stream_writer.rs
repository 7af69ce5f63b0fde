//! The writer of every transport that streams a connection's outbox as a sequence of chunks:
//! the HTTP streams (`http_stream`, `sse`, `uni_http_stream`, `uni_sse`) and SockJS (its
//! streaming and polling receivers, and its `websocket` sub-transport). One loop
//! ([`Writer::run`]) takes what the outbox holds and writes it into a [`Sink`] (a response body,
//! a WebSocket's text messages); the transport's [`Framing`] says what the chunks look like:
//! what opens the stream, how a batch of queued messages reads, the heartbeat, and the last
//! chunk, which tells the client why the stream ends.
//!
//! Every write has `websocket.write_timeout` ([`within`]): a client that stops reading is closed
//! as slow (3008) instead of holding its queue, and the memory behind it, forever.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt;
use tokio::sync::mpsc;

use crate::queue::{Batch, Outbox};
use crate::transport::http::Body;
use gyre_proto::codes::{self, Disconnect};

/// Most queued messages written in one chunk.
const MAX_MESSAGES_PER_CHUNK: usize = 64;

/// What the chunks of a transport's stream look like.
pub trait Framing {
    /// The transport named in `MESSAGES_SENT`.
    const TRANSPORT: &'static str;
    /// Written before anything queued, each chunk on its own.
    fn opening(&self) -> Vec<Bytes>;
    /// A batch of queued messages as one chunk.
    fn messages(&mut self, messages: &[Bytes]) -> Bytes;
    /// The chunk written after this long without anything queued; `None` when the transport
    /// has no heartbeat of its own (the session's pings are then all the client sees).
    fn heartbeat(&self) -> Option<(Duration, Bytes)>;
    /// The last chunk: why the stream ends.
    fn close(&mut self, disconnect: &Disconnect) -> Bytes;
}

/// Where a stream's chunks go.
pub trait Sink {
    /// Writes one chunk, waiting as long as the client takes; the error is the disconnect the
    /// failure means.
    fn send(&mut self, chunk: Bytes) -> impl Future<Output = Result<(), Disconnect>> + Send;
    /// Resolves once the client is known to be gone without a write having to find out.
    fn client_gone(&self) -> impl Future<Output = ()> + Send;
}

/// A response body streaming what its [`BodySink`] sends; it ends when the sink is dropped.
pub fn response_body() -> (BodySink, Body) {
    let (chunks, rx) = mpsc::channel(1);
    let body = StreamBody { chunks: rx }
        .map_err(|never| match never {})
        .boxed();
    (BodySink(chunks), body)
}

/// What writes into a [`response_body`]: a one-chunk channel, so hyper takes the next chunk
/// only once the previous one is on its way; a client that stops reading holds the send up,
/// and one that goes away makes hyper drop the body, which closes the channel.
pub struct BodySink(mpsc::Sender<Bytes>);

impl Sink for BodySink {
    async fn send(&mut self, chunk: Bytes) -> Result<(), Disconnect> {
        self.0
            .send(chunk)
            .await
            .map_err(|_| codes::CONNECTION_CLOSED)
    }

    async fn client_gone(&self) {
        self.0.closed().await;
    }
}

struct StreamBody {
    chunks: mpsc::Receiver<Bytes>,
}

impl http_body::Body for StreamBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.chunks
            .poll_recv(cx)
            .map(|chunk| chunk.map(|chunk| Ok(Frame::data(chunk))))
    }
}

/// `write` within `timeout`: a client that takes longer is not reading and is closed as slow.
pub async fn within(
    timeout: Duration,
    write: impl Future<Output = Result<(), Disconnect>>,
) -> Result<(), Disconnect> {
    tokio::time::timeout(timeout, write)
        .await
        .unwrap_or(Err(codes::SLOW))
}

/// How [`Writer::run`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The outbox closed; `delivered` when its close chunk was written.
    Closed { delivered: bool },
    /// A write failed or timed out, or the client went away: the disconnect that means.
    Failed(Disconnect),
    /// The stream wrote its byte limit; the client goes on with another request.
    Limit,
}

/// What comes next from an outbox.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk {
    /// Queued messages, or a heartbeat.
    Data(Bytes),
    /// The close chunk: nothing follows it.
    Close(Bytes),
}

/// Writes one connection's outbox, laid out by `F`.
pub struct Writer<'a, F> {
    outbox: &'a Outbox,
    framing: F,
    sent: metrics::Counter,
}

impl<'a, F: Framing> Writer<'a, F> {
    pub fn new(outbox: &'a Outbox, framing: F) -> Self {
        Self {
            outbox,
            framing,
            sent: crate::metrics::transport_counter(crate::metrics::MESSAGES_SENT, F::TRANSPORT),
        }
    }

    /// The next chunk: what is queued, the close chunk once the outbox is closing and empty,
    /// or the heartbeat after the framing's delay without either.
    pub async fn next_chunk(&mut self) -> Chunk {
        let batch = self.outbox.next_batch(MAX_MESSAGES_PER_CHUNK);
        let batch = match self.framing.heartbeat() {
            None => batch.await,
            Some((delay, heartbeat)) => tokio::select! {
                batch = batch => batch,
                () = tokio::time::sleep(delay) => return Chunk::Data(heartbeat),
            },
        };
        match batch {
            Batch::Messages(messages) => {
                self.sent.increment(messages.len() as u64);
                Chunk::Data(self.framing.messages(&messages))
            }
            Batch::Close(disconnect) => Chunk::Close(self.framing.close(&disconnect)),
        }
    }

    /// Writes the opening chunks, then the outbox until it closes (its close chunk last), a
    /// write fails or times out after `write_timeout`, the client goes away, or, with `limit`,
    /// that many bytes are written.
    pub async fn run(
        mut self,
        sink: &mut impl Sink,
        write_timeout: Duration,
        limit: Option<usize>,
    ) -> Ended {
        for chunk in self.framing.opening() {
            if let Err(disconnect) = within(write_timeout, sink.send(chunk)).await {
                return Ended::Failed(disconnect);
            }
        }
        let mut written = 0;
        while limit.is_none_or(|limit| written < limit) {
            let chunk = tokio::select! {
                chunk = self.next_chunk() => chunk,
                // Noticed now rather than at the next write, so that the session ends (or
                // SockJS's disconnect delay starts) when the client leaves.
                () = sink.client_gone() => return Ended::Failed(codes::CONNECTION_CLOSED),
            };
            match chunk {
                Chunk::Data(chunk) => {
                    written += chunk.len();
                    if let Err(disconnect) = within(write_timeout, sink.send(chunk)).await {
                        return Ended::Failed(disconnect);
                    }
                }
                Chunk::Close(chunk) => {
                    let delivered = within(write_timeout, sink.send(chunk)).await.is_ok();
                    return Ended::Closed { delivered };
                }
            }
        }
        Ended::Limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Messages in brackets, one chunk per batch; `h` heartbeats when asked for.
    struct Brackets {
        heartbeat: Option<Duration>,
    }

    impl Framing for Brackets {
        const TRANSPORT: &'static str = "test";

        fn opening(&self) -> Vec<Bytes> {
            vec![Bytes::from_static(b"open;")]
        }

        fn messages(&mut self, messages: &[Bytes]) -> Bytes {
            let inner: Vec<&[u8]> = messages.iter().map(|m| &m[..]).collect();
            Bytes::from([&b"["[..], &inner.concat(), b"]"].concat())
        }

        fn heartbeat(&self) -> Option<(Duration, Bytes)> {
            self.heartbeat
                .map(|delay| (delay, Bytes::from_static(b"h")))
        }

        fn close(&mut self, disconnect: &Disconnect) -> Bytes {
            Bytes::from(format!("close {}", disconnect.code))
        }
    }

    const NO_HEARTBEAT: Brackets = Brackets { heartbeat: None };
    const TIMEOUT: Duration = Duration::from_secs(1);

    fn outbox_with(messages: &[&'static str]) -> Outbox {
        let outbox = Outbox::new(1 << 20);
        for message in messages {
            assert!(outbox.push(Bytes::from_static(message.as_bytes())));
        }
        outbox
    }

    /// `future`'s output, or a failed test where a broken writer would wait forever (the
    /// tests' clock is paused, so the hour passes as soon as nothing else can happen).
    async fn bounded<T>(future: impl Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(3600), future)
            .await
            .expect("the writer never ended")
    }

    /// Runs `writer` to its end into a fresh response body, read as a client would.
    async fn run_and_read(
        writer: Writer<'_, Brackets>,
        limit: Option<usize>,
    ) -> (Ended, Vec<Bytes>) {
        let (mut sink, body) = response_body();
        let write = async move { writer.run(&mut sink, TIMEOUT, limit).await };
        bounded(async { tokio::join!(write, read_all(body)) }).await
    }

    /// Every chunk of `body`, to its end.
    async fn read_all(mut body: Body) -> Vec<Bytes> {
        let mut chunks = Vec::new();
        while let Some(frame) = body.frame().await {
            chunks.push(frame.unwrap().into_data().unwrap());
        }
        chunks
    }

    #[tokio::test(start_paused = true)]
    async fn the_close_chunk_follows_everything_queued() {
        let outbox = outbox_with(&["a", "b"]);
        outbox.close(codes::SHUTDOWN);
        let (ended, chunks) = run_and_read(Writer::new(&outbox, NO_HEARTBEAT), None).await;
        assert_eq!(ended, Ended::Closed { delivered: true });
        assert_eq!(chunks, ["open;", "[ab]", "close 3001"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_reading_is_cut_off_as_slow_after_the_write_timeout() {
        let outbox = outbox_with(&["a", "b"]);
        let (mut sink, body) = response_body();
        let started = tokio::time::Instant::now();
        // Nobody reads: the channel takes the opening chunk and no more.
        let ended = bounded(Writer::new(&outbox, NO_HEARTBEAT).run(&mut sink, TIMEOUT, None)).await;
        assert_eq!(ended, Ended::Failed(codes::SLOW));
        assert_eq!(started.elapsed(), TIMEOUT);
        drop(sink);
        assert_eq!(read_all(body).await, ["open;"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_body_ends_the_stream_without_waiting_for_a_write() {
        let outbox = outbox_with(&[]);
        let (mut sink, body) = response_body();
        let writer = Writer::new(&outbox, NO_HEARTBEAT).run(&mut sink, TIMEOUT, None);
        // Dropped while the writer waits for the outbox, which stays empty.
        let ended = bounded(async { tokio::join!(writer, async { drop(body) }).0 }).await;
        assert_eq!(ended, Ended::Failed(codes::CONNECTION_CLOSED));
    }

    #[tokio::test(start_paused = true)]
    async fn silence_gets_the_heartbeat_after_its_delay() {
        let outbox = outbox_with(&[]);
        let delay = Duration::from_secs(25);
        let mut writer = Writer::new(
            &outbox,
            Brackets {
                heartbeat: Some(delay),
            },
        );
        let started = tokio::time::Instant::now();
        assert_eq!(writer.next_chunk().await, Chunk::Data(Bytes::from("h")));
        assert_eq!(started.elapsed(), delay);
        outbox.push(Bytes::from_static(b"x"));
        assert_eq!(writer.next_chunk().await, Chunk::Data(Bytes::from("[x]")));
        outbox.close(codes::SLOW);
        assert_eq!(
            writer.next_chunk().await,
            Chunk::Close(Bytes::from("close 3008"))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_stream_ends_once_it_wrote_its_limit() {
        let heartbeats = Brackets {
            heartbeat: Some(Duration::from_secs(1)),
        };
        let outbox = outbox_with(&[]);
        let (ended, chunks) = run_and_read(Writer::new(&outbox, heartbeats), Some(3)).await;
        assert_eq!(ended, Ended::Limit);
        // The opening does not count towards the limit.
        assert_eq!(chunks, ["open;", "h", "h", "h"]);
    }
}
