//! Deadlines for what a client owes an HTTP connection before it has a request in progress: its
//! request head (`http_server.read_header_timeout`) and, between kept-alive requests, its next
//! request (`http_server.idle_timeout`).
//!
//! hyper has one timer for both (and none for idle HTTP/2 connections), so the deadlines live in
//! the socket instead: [`TimedIo`] reads the TCP stream and fails a read that is still waiting
//! when its deadline passes, which ends the connection. Which deadline applies depends on
//! whether a request is in progress, which only the service knows: [`Activity`] counts requests
//! from the moment their head is parsed until their response body is dropped
//! ([`TrackedBody`]), and is told when the connection is upgraded (WebSocket), after which no
//! deadline applies (the transport's own pings take over).
//!
//! While a request is in progress nothing is timed here: reading its body has its own limit
//! (`http_server.read_body_timeout`, where the body is read), and a streaming response may last
//! as long as its client stays.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// The two deadlines; `None` = no limit.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    pub header: Option<Duration>,
    pub idle: Option<Duration>,
}

impl Deadlines {
    pub fn from_config(config: &crate::config::HttpServer) -> Self {
        let some = |d: Duration| (!d.is_zero()).then_some(d);
        Self {
            header: some(config.read_header_timeout),
            idle: some(config.idle_timeout),
        }
    }
}

/// What the service tells the socket about one connection: requests in progress, and whether
/// the connection left HTTP.
#[derive(Debug, Default)]
pub struct Activity {
    requests: AtomicU32,
    upgraded: AtomicBool,
    /// The connection's task, as of its last read while busy: when the last request ends it is
    /// woken so that the read arms the idle deadline (hyper does not read again on its own
    /// until the socket has data).
    reader: AtomicWaker,
}

impl Activity {
    /// A request's head was parsed: no deadline applies until its response body is dropped
    /// (the guard goes into [`TrackedBody`]).
    pub fn request(self: &Arc<Self>) -> RequestGuard {
        self.requests.fetch_add(1, Ordering::AcqRel);
        RequestGuard(Arc::clone(self))
    }

    /// The connection is now a WebSocket: its reads are untimed from here on.
    pub fn upgraded(&self) {
        self.upgraded.store(true, Ordering::Release);
    }
}

/// A request in progress on a connection; see [`Activity::request`].
#[derive(Debug)]
pub struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        if self.0.requests.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.reader.wake();
        }
    }
}

/// A response body that keeps its request in progress until hyper is done with it.
pub struct TrackedBody<B> {
    body: B,
    _request: RequestGuard,
}

impl<B> TrackedBody<B> {
    pub fn new(body: B, request: RequestGuard) -> Self {
        Self {
            body,
            _request: request,
        }
    }
}

impl<B: HttpBody<Data = Bytes> + Unpin> HttpBody for TrackedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Where a connection stands, as far as its deadlines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request head to complete: the header deadline runs.
    Head,
    /// Between requests, nothing received yet: the idle deadline runs.
    Idle,
    /// A request is in progress: nothing runs.
    Busy,
    /// Upgraded, or HTTP/2 between streams is idle only: see [`TimedIo::poll_read`].
    Untimed,
}

/// The start of the HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// A TCP stream whose reads fail with `TimedOut` once the deadline of the connection's phase
/// has passed. Writes pass through.
pub struct TimedIo {
    stream: TcpStream,
    activity: Arc<Activity>,
    deadlines: Deadlines,
    phase: Phase,
    /// HTTP/2: frames arrive between requests (pings, window updates), so received bytes do
    /// not start a request head; only the idle deadline applies.
    multiplexed: bool,
    /// Nothing read yet (the first read tells HTTP/2 from HTTP/1).
    fresh: bool,
    /// Armed for the current phase; `None` when its limit is off.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl TimedIo {
    /// A newly accepted connection: its first request head is due within the header deadline.
    pub fn new(stream: TcpStream, activity: Arc<Activity>, deadlines: Deadlines) -> Self {
        let mut io = Self {
            stream,
            activity,
            deadlines,
            phase: Phase::Busy,
            multiplexed: false,
            fresh: true,
            deadline: None,
        };
        io.enter(Phase::Head);
        io
    }

    /// The TCP stream, for a transport that takes the socket over after an upgrade.
    pub fn into_inner(self) -> TcpStream {
        self.stream
    }

    fn enter(&mut self, phase: Phase) {
        self.phase = phase;
        let limit = match phase {
            Phase::Head => self.deadlines.header,
            Phase::Idle => self.deadlines.idle,
            Phase::Busy | Phase::Untimed => return,
        };
        let Some(limit) = limit else {
            self.deadline = None;
            return;
        };
        let at = Instant::now() + limit;
        match &mut self.deadline {
            Some(sleep) => sleep.as_mut().reset(at),
            None => self.deadline = Some(Box::pin(tokio::time::sleep_until(at))),
        }
    }

    /// Whether the phase's deadline has passed; registers the task to be woken when it does.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let running = matches!(self.phase, Phase::Head | Phase::Idle);
        running
            && self
                .deadline
                .as_mut()
                .is_some_and(|sleep| sleep.as_mut().poll(cx).is_ready())
    }
}

impl AsyncRead for TimedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.stream).poll_read(cx, buf);
        if this.phase == Phase::Untimed {
            return poll;
        }
        if this.activity.upgraded.load(Ordering::Acquire) {
            this.phase = Phase::Untimed;
            this.deadline = None;
            return poll;
        }
        if this.activity.requests.load(Ordering::Acquire) > 0 {
            this.phase = Phase::Busy;
            this.activity.reader.register(cx.waker());
            return poll;
        }
        match poll {
            Poll::Ready(Ok(())) => {
                let read = &buf.filled()[before..];
                if this.fresh && !read.is_empty() {
                    this.fresh = false;
                    this.multiplexed = read.starts_with(H2_PREFACE);
                }
                // A new request's first bytes: its head is due within the header deadline (not
                // moved by later bytes, so a head sent a byte at a time still ends in time).
                if !read.is_empty() && !this.multiplexed && this.phase != Phase::Head {
                    this.enter(Phase::Head);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => {
                if this.phase == Phase::Busy {
                    this.enter(Phase::Idle);
                }
                if this.expired(cx) {
                    let (what, metric) = match this.phase {
                        Phase::Head => ("request head not received in time", "header"),
                        _ => ("connection idle too long", "idle"),
                    };
                    metrics::counter!(crate::metrics::HTTP_TIMEOUTS, "phase" => metric)
                        .increment(1);
                    this.phase = Phase::Untimed;
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)));
                }
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for TimedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// `request`'s connection is being upgraded: from now on the WebSocket's own pings watch it,
/// not the HTTP deadlines.
pub fn upgrading<B>(request: &http::Request<B>) {
    if let Some(activity) = request.extensions().get::<Arc<Activity>>() {
        activity.upgraded();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn pair(deadlines: Deadlines) -> (TimedIo, TcpStream, Arc<Activity>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        let activity = Arc::new(Activity::default());
        (
            TimedIo::new(server, Arc::clone(&activity), deadlines),
            client,
            activity,
        )
    }

    const SHORT: Deadlines = Deadlines {
        header: Some(Duration::from_secs(5)),
        idle: Some(Duration::from_secs(30)),
    };

    async fn read_error(io: &mut TimedIo) -> io::ErrorKind {
        let mut buf = [0u8; 64];
        loop {
            match io.read(&mut buf).await {
                Ok(0) => panic!("eof instead of a timeout"),
                Ok(_) => continue,
                Err(error) => return error.kind(),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_new_connection_times_out_on_the_header_deadline() {
        let (mut io, _client, _) = pair(SHORT).await;
        let started = Instant::now();
        assert_eq!(read_error(&mut io).await, io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickled_head_does_not_move_the_deadline() {
        let (mut io, mut client, _) = pair(SHORT).await;
        let started = Instant::now();
        tokio::spawn(async move {
            for byte in b"GET / HTTP/1.1\r\nHost: x\r\n" {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if client.write_all(&[*byte]).await.is_err() {
                    return;
                }
            }
        });
        assert_eq!(read_error(&mut io).await, io::ErrorKind::TimedOut);
        assert!(
            started.elapsed() <= Duration::from_secs(6),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_is_timed_while_a_request_is_in_progress_then_idle_runs() {
        let (mut io, mut client, activity) = pair(SHORT).await;
        client
            .write_all(b"GET / HTTP/1.1\r\n\r\n")
            .await
            .expect("write");
        let mut buf = [0u8; 64];
        assert!(io.read(&mut buf).await.expect("head") > 0);
        let request = activity.request();
        // A long request: the reads wait well past both deadlines without failing.
        let waited = tokio::time::timeout(Duration::from_secs(120), io.read(&mut buf)).await;
        assert!(waited.is_err(), "no deadline while busy");
        drop(request);
        let idle_from = Instant::now();
        assert_eq!(read_error(&mut io).await, io::ErrorKind::TimedOut);
        assert_eq!(
            idle_from.elapsed(),
            Duration::from_secs(30),
            "the idle deadline"
        );
    }

    /// The last request's end wakes a read that waits since the request began, so the idle
    /// deadline starts then (hyper does not read again by itself while the socket is quiet).
    #[tokio::test(start_paused = true)]
    async fn a_read_waiting_since_the_request_arms_the_idle_deadline_when_it_ends() {
        let (mut io, _client, activity) = pair(SHORT).await;
        let request = activity.request();
        let ended = Instant::now() + Duration::from_secs(1);
        tokio::spawn(async move {
            tokio::time::sleep_until(ended).await;
            drop(request);
        });
        assert_eq!(read_error(&mut io).await, io::ErrorKind::TimedOut);
        assert_eq!(Instant::now() - ended, Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn an_upgraded_connection_is_never_timed() {
        let (mut io, _client, activity) = pair(SHORT).await;
        activity.upgraded();
        let mut buf = [0u8; 8];
        let waited = tokio::time::timeout(Duration::from_secs(600), io.read(&mut buf)).await;
        assert!(waited.is_err(), "still waiting after 10 minutes");
    }

    #[tokio::test(start_paused = true)]
    async fn zero_means_no_deadline() {
        let none = Deadlines {
            header: None,
            idle: None,
        };
        let (mut io, _client, _) = pair(none).await;
        let mut buf = [0u8; 8];
        let waited = tokio::time::timeout(Duration::from_secs(600), io.read(&mut buf)).await;
        assert!(waited.is_err());
    }
}
