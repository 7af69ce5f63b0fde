//! The sessions of the HTTP sub-transports (`xhr`, `xhr_streaming`, `eventsource`, and
//! `xhr_send` for the client's messages), kept in this node's [`Sessions`].
//!
//! A session outlives the requests that carry it: a receiving request attaches to it, takes
//! what waits in the connection's outbox, and detaches when its response ends (a poll after one
//! frame, a stream after [`STREAM_LIMIT`] bytes). Between requests, replies wait in the outbox
//! (bounded by `client.queue_max_size`), nowhere else. A session without a receiving request
//! for `sockjs.disconnect_delay` is over: its Centrifuge connection closes as if the client had
//! gone.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt as _;
use gyre_proto::Encoding;
use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc};

use super::frames;
use crate::protocol::node::Node;
use crate::protocol::session::{Mode, TransportInfo};
use crate::queue::Outbox;
use crate::transport::Transports;
use crate::transport::admission::Unauthenticated;
use crate::transport::driver::Connection;
use crate::transport::stream_writer::{BodySink, Chunk, Ended, Framing, Sink, Writer, within};
use gyre_proto::codes::{self, Disconnect};

/// Bytes after which a streaming response ends and the client opens the next one on the same
/// session (SockJS's `response_limit`): keeps browsers from holding an ever-growing response.
pub const STREAM_LIMIT: usize = 128 * 1024;
/// Client messages waiting for the session to take them; `xhr_send` waits beyond this.
const INBOUND_CAPACITY: usize = 16;

/// This node's sessions by SockJS session id. Sessions live only here: every request of a
/// session must reach this node (sticky routing, see the module documentation).
#[derive(Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, Arc<PollSession>>>,
}

pub struct PollSession {
    outbox: Arc<Outbox>,
    inbound: mpsc::Sender<Bytes>,
    receiver: Mutex<ReceiverSlot>,
    /// Signalled when a receiver attaches or detaches (wakes [`PollSession::abandoned`]).
    receiver_changed: Notify,
    /// Signalled once a receiver has written the close frame: the session can be forgotten.
    close_delivered: Notify,
}

struct ReceiverSlot {
    attached: bool,
    detached_at: Instant,
}

/// What a lookup found.
pub enum Lookup {
    /// The session existed.
    Existing(Arc<PollSession>),
    /// The session was created by this request, which must send the open frame.
    Created(Arc<PollSession>),
}

impl Sessions {
    pub fn get(&self, id: &str) -> Option<Arc<PollSession>> {
        self.by_id.lock().get(id).cloned()
    }

    /// The session `id`, created (and its Centrifuge connection started) if it does not exist
    /// and `may_create` allows it (the node's connection limit). A new session holds
    /// `unauthenticated` (the slot of the request's connection) until its client connects; a
    /// request for a session that exists carries that session, so its slot is let go. The hooks
    /// forward the `headers` of the request that creates the session.
    pub fn get_or_create(
        &self,
        node: &Arc<Node>,
        transports: &Arc<Transports>,
        id: &str,
        unauthenticated: Option<Unauthenticated>,
        headers: &http::HeaderMap,
        may_create: impl FnOnce() -> bool,
    ) -> Option<Lookup> {
        let mut by_id = self.by_id.lock();
        if let Some(session) = by_id.get(id) {
            return Some(Lookup::Existing(Arc::clone(session)));
        }
        if !may_create() {
            return None;
        }
        let context = node.hooks.capture(headers);
        let session = start(node, transports, id.to_owned(), unauthenticated, context);
        by_id.insert(id.to_owned(), Arc::clone(&session));
        Some(Lookup::Created(session))
    }

    fn forget(&self, id: &str, session: &Arc<PollSession>) {
        let mut by_id = self.by_id.lock();
        if by_id.get(id).is_some_and(|held| Arc::ptr_eq(held, session)) {
            by_id.remove(id);
        }
    }
}

/// Opens the Centrifuge connection of a new session and spawns its task: it runs the connection
/// on the client's messages until the session ends, then waits for a receiver to collect the
/// close frame (or for none to come) and forgets the session.
fn start(
    node: &Arc<Node>,
    transports: &Arc<Transports>,
    id: String,
    unauthenticated: Option<Unauthenticated>,
    context: crate::hooks::headers::ClientContext,
) -> Arc<PollSession> {
    let mut connection = Connection::open(node, transport_info(), context);
    connection.until_connected(unauthenticated);
    let (inbound, mut messages) = mpsc::channel(INBOUND_CAPACITY);
    let session = Arc::new(PollSession {
        outbox: Arc::clone(connection.outbox()),
        inbound,
        receiver: Mutex::new(ReceiverSlot {
            attached: false,
            detached_at: Instant::now(),
        }),
        receiver_changed: Notify::new(),
        close_delivered: Notify::new(),
    });
    let disconnect_delay = node.config.sockjs.disconnect_delay;
    let task_transports = Arc::clone(transports);
    let task_session = Arc::clone(&session);
    transports.tasks.spawn(async move {
        let session = task_session;
        let watched = Arc::clone(&session);
        // The client's messages, ending (client gone) once no request came for the delay.
        let inbound = futures_util::stream::poll_fn(move |cx| messages.poll_recv(cx))
            .map(Ok)
            .take_until(async move { watched.abandoned(disconnect_delay).await });
        let end = connection.run(inbound).await;
        connection.close(end).await;
        tokio::select! {
            () = session.close_delivered.notified() => {}
            () = session.abandoned(disconnect_delay) => {}
        }
        task_transports.sockjs.forget(&id, &session);
    });
    session
}

pub fn transport_info() -> TransportInfo {
    TransportInfo {
        name: "sockjs",
        encoding: Encoding::Json,
        mode: Mode::Bidirectional,
        deflate: None,
    }
}

impl PollSession {
    /// Hands the client's messages to the session, in order. False when the session is over.
    pub async fn deliver(&self, messages: Vec<Bytes>) -> bool {
        for message in messages {
            if self.inbound.send(message).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Makes this request the session's receiver, unless another one is.
    pub fn attach(self: &Arc<Self>) -> Option<Attached> {
        let mut slot = self.receiver.lock();
        if slot.attached {
            return None;
        }
        slot.attached = true;
        drop(slot);
        self.receiver_changed.notify_waiters();
        Some(Attached(Arc::clone(self)))
    }

    /// Resolves once the session has had no receiver for `delay`.
    async fn abandoned(&self, delay: Duration) {
        loop {
            let changed = self.receiver_changed.notified();
            tokio::pin!(changed);
            // Registered before reading the slot, so a change in between still wakes us.
            changed.as_mut().enable();
            let deadline = {
                let slot = self.receiver.lock();
                (!slot.attached).then(|| slot.detached_at + delay)
            };
            match deadline {
                None => changed.await,
                Some(deadline) => tokio::select! {
                    () = changed => {}
                    () = tokio::time::sleep_until(deadline.into()) => return,
                },
            }
        }
    }
}

/// The receiving request's hold on its session; dropping it (the response ended, or the client
/// went away mid-request) starts the session's disconnect delay.
pub struct Attached(Arc<PollSession>);

impl Drop for Attached {
    fn drop(&mut self) {
        let mut slot = self.0.receiver.lock();
        slot.attached = false;
        slot.detached_at = Instant::now();
        drop(slot);
        self.0.receiver_changed.notify_waiters();
    }
}

/// How a receiver lays SockJS frames out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receiver {
    /// `xhr`: one frame, then the response ends.
    Polling,
    /// `xhr_streaming`: a 2 KiB prelude (so browsers start handing out the response), then
    /// newline-terminated frames.
    XhrStreaming,
    /// `eventsource`: one `data:` event per frame.
    EventSource,
    /// `websocket`: each frame as it is, in a text message of its own.
    WebSocket,
}

impl Receiver {
    pub fn prelude(self) -> Option<Bytes> {
        match self {
            Self::Polling | Self::WebSocket => None,
            Self::XhrStreaming => {
                let mut prelude = BytesMut::with_capacity(2049);
                prelude.put_bytes(b'h', 2048);
                prelude.put_u8(b'\n');
                Some(prelude.freeze())
            }
            Self::EventSource => Some(Bytes::from_static(b"\r\n")),
        }
    }

    pub fn wrap(self, frame: Bytes) -> Bytes {
        let (before, after): (&[u8], &[u8]) = match self {
            Self::WebSocket => return frame,
            Self::Polling | Self::XhrStreaming => (b"", b"\n"),
            Self::EventSource => (b"data: ", b"\r\n\r\n"),
        };
        let mut out = BytesMut::with_capacity(before.len() + frame.len() + after.len());
        out.put_slice(before);
        out.put_slice(&frame);
        out.put_slice(after);
        out.freeze()
    }
}

/// What a receiver writes of a session: `o` first when it is the request that opened the
/// session, then `a[...]` for queued replies, `h` after the heartbeat delay without any, and
/// `c[code,"reason"]` when the session ends.
pub struct Frames {
    receiver: Receiver,
    opens_session: bool,
    heartbeat: (Duration, Bytes),
}

impl Frames {
    pub fn new(receiver: Receiver, opens_session: bool, heartbeat_delay: Duration) -> Self {
        let heartbeat = receiver.wrap(Bytes::from_static(frames::HEARTBEAT));
        Self {
            receiver,
            opens_session,
            heartbeat: (heartbeat_delay, heartbeat),
        }
    }
}

impl Framing for Frames {
    const TRANSPORT: &'static str = "sockjs";

    fn opening(&self) -> Vec<Bytes> {
        let open = self
            .opens_session
            .then(|| self.receiver.wrap(Bytes::from_static(frames::OPEN)));
        self.receiver.prelude().into_iter().chain(open).collect()
    }

    fn messages(&mut self, messages: &[Bytes]) -> Bytes {
        self.receiver.wrap(frames::messages(messages))
    }

    fn heartbeat(&self) -> Option<(Duration, Bytes)> {
        Some(self.heartbeat.clone())
    }

    fn close(&mut self, disconnect: &Disconnect) -> Bytes {
        self.receiver.wrap(frames::close(disconnect))
    }
}

/// Everything a refused receiver gets: the prelude and `c[2010,...]`.
pub fn another_connection(receiver: Receiver) -> Bytes {
    let (code, reason) = frames::ANOTHER_CONNECTION;
    let close = receiver.wrap(frames::close_with(code, reason));
    match receiver.prelude() {
        Some(prelude) => [prelude, close].concat().into(),
        None => close,
    }
}

/// A polling receiver: the open frame for a new session, else the next frame.
pub async fn poll(lookup: Lookup, heartbeat_delay: Duration) -> Bytes {
    let (session, created) = match lookup {
        Lookup::Existing(session) => (session, false),
        Lookup::Created(session) => (session, true),
    };
    let Some(_attached) = session.attach() else {
        return another_connection(Receiver::Polling);
    };
    if created {
        return Receiver::Polling.wrap(Bytes::from_static(frames::OPEN));
    }
    let frames = Frames::new(Receiver::Polling, false, heartbeat_delay);
    match Writer::new(&session.outbox, frames).next_chunk().await {
        Chunk::Data(frame) => frame,
        Chunk::Close(frame) => {
            session.close_delivered.notify_one();
            frame
        }
    }
}

/// A streaming receiver: writes frames into `sink` (the response body) until the byte limit,
/// the session's close, or the client going away.
pub async fn stream(
    lookup: Lookup,
    receiver: Receiver,
    mut sink: BodySink,
    heartbeat_delay: Duration,
    write_timeout: Duration,
) {
    let (session, created) = match lookup {
        Lookup::Existing(session) => (session, false),
        Lookup::Created(session) => (session, true),
    };
    let Some(_attached) = session.attach() else {
        let _ = within(write_timeout, sink.send(another_connection(receiver))).await;
        return;
    };
    let frames = Frames::new(receiver, created, heartbeat_delay);
    let ended = Writer::new(&session.outbox, frames)
        .run(&mut sink, write_timeout, Some(STREAM_LIMIT))
        .await;
    match ended {
        Ended::Closed { delivered: true } => session.close_delivered.notify_one(),
        // A client that is not reading is closed as slow; one that went away gets the
        // disconnect delay to come back with another request.
        Ended::Failed(disconnect) if disconnect == codes::SLOW => session.outbox.close(disconnect),
        Ended::Closed { delivered: false } | Ended::Failed(_) | Ended::Limit => {}
    }
}
