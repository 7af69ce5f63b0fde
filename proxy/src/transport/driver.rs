//! The life of one client connection, whatever carries it. A transport opens a [`Connection`]
//! and either feeds it the client's frames as a stream ([`Connection::run`]) while its own
//! writer drains [`Connection::outbox`] (the HTTP streams), or hands it a [`Duplex`] that
//! reads and writes in the same task ([`Connection::run_duplex`], WebSocket). The driver brings
//! in the node's signals and the session's timers, and ends every connection the same way
//! ([`Connection::close`], [`Connection::close_duplex`]).

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use crate::hub::{ControlReceiver, control_channel};
use crate::protocol::node::Node;
use crate::protocol::session::{Now, Session, TransportInfo};
use crate::queue::{Outbox, Writes};
use crate::transport::admission::Unauthenticated;
use gyre_proto::codes::{self, Disconnect};

pub struct Connection {
    session: Session,
    outbox: Arc<Outbox>,
    control: ControlReceiver,
    /// `MESSAGES_RECEIVED` for this transport, looked up once.
    received: metrics::Counter,
    /// The connection's place among those not authenticated yet, until the session connects.
    unauthenticated: Option<Unauthenticated>,
}

/// Most queued messages a duplex transport writes at once.
const MAX_BATCH: usize = 64;

/// A transport that reads the client's frames and writes its messages in one task
/// ([`Connection::run_duplex`]).
pub trait Duplex {
    /// The client's next frame; `None` when the client is gone, an error to end the connection
    /// with that code.
    fn next_frame(&mut self) -> impl Future<Output = Option<Result<Bytes, Disconnect>>>;
    /// Writes what was queued (framed bytes, then messages), in order, in as few writes as the
    /// transport allows.
    fn write(&mut self, writes: &Writes) -> impl Future<Output = Result<(), Disconnect>>;
    /// Tells the client why the connection ends, and closes it.
    fn close(&mut self, disconnect: &Disconnect) -> impl Future<Output = ()>;
}

/// Why [`Connection::run`] (or [`Connection::run_duplex`]) returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The client's side ended: closed, stream finished, read failed, or the writer found the
    /// client gone.
    ClientGone,
    /// The session or the node ends the connection with this code.
    Disconnect(Disconnect),
}

impl Connection {
    /// `context`: what the backend hooks keep of the connection's request (its forwarded
    /// headers), from [`crate::hooks::Hooks::capture`].
    pub fn open(
        node: &Arc<Node>,
        transport: TransportInfo,
        context: crate::hooks::headers::ClientContext,
    ) -> Self {
        metrics::counter!(crate::metrics::CONNECTIONS_ACCEPTED, "transport" => transport.name)
            .increment(1);
        let outbox = Arc::new(Outbox::new(node.queue_max_size()));
        let (control_tx, control) = control_channel();
        let id = node.register_connection(control_tx.clone());
        let session = Session::new(
            Arc::clone(node),
            id,
            transport,
            Arc::clone(&outbox),
            control_tx,
            context,
            Now::system(),
        );
        Self {
            session,
            outbox,
            control,
            received: crate::metrics::transport_counter(
                crate::metrics::MESSAGES_RECEIVED,
                transport.name,
            ),
            unauthenticated: None,
        }
    }

    /// Holds `slot` (see [`crate::transport::admission`]) until the client connects.
    pub fn until_connected(&mut self, slot: Option<Unauthenticated>) {
        self.unauthenticated = slot;
        self.release_if_connected();
    }

    fn release_if_connected(&mut self) {
        if self.unauthenticated.is_some() && self.session.is_connected() {
            self.unauthenticated = None;
        }
    }

    /// How the connect command ends, for a transport that answers before it streams (see
    /// [`crate::protocol::session::ConnectOutcome`]).
    pub fn report_connect(
        &mut self,
    ) -> tokio::sync::oneshot::Receiver<crate::protocol::session::ConnectOutcome> {
        self.session.report_connect()
    }

    /// What the writer drains.
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// Drives the session until the client goes away or the connection must end. `inbound`
    /// yields the client's frames and ends when the client does (an error ends the connection
    /// with that code); a transport whose client sends nothing more passes a stream that never
    /// ends.
    pub async fn run(&mut self, inbound: impl Stream<Item = Result<Bytes, Disconnect>>) -> End {
        let inbound = std::pin::pin!(inbound);
        let mut inbound = inbound.fuse();
        loop {
            let deadline = tokio::time::Instant::from_std(self.session.deadline());
            let step = tokio::select! {
                frame = inbound.next() => match frame {
                    Some(Err(disconnect)) => return End::Disconnect(disconnect),
                    Some(Ok(frame)) => {
                        self.received.increment(1);
                        // Boxed, like the other handlers: their futures (engine calls included)
                        // are large, and inline they would make every idle connection's task
                        // that large too.
                        Box::pin(self.session.handle_frame(frame, Now::system())).await
                    }
                    None => return End::ClientGone,
                },
                control = self.control.recv() => {
                    Box::pin(self.session.handle_control(control, Now::system())).await
                }
                () = self.outbox.closed() => Ok(()),
                () = tokio::time::sleep_until(deadline) => {
                    Box::pin(self.session.handle_timeout(Now::system())).await
                }
            };
            if let Some(end) = self.ended(step) {
                return end;
            }
        }
    }

    /// [`Self::run`] for a transport that reads and writes in this one task: the loop also
    /// drains the outbox into `socket`, so a connection needs no writer task (and its memory)
    /// and no lock between a reading and a writing half. A write in progress holds the loop up
    /// for at most the transport's write timeout, after which it fails as slow.
    pub async fn run_duplex(&mut self, socket: &mut impl Duplex) -> End {
        loop {
            let deadline = tokio::time::Instant::from_std(self.session.deadline());
            let step = tokio::select! {
                // The client first: a close it already sent must end the connection before
                // this task writes anything more to it (a task that runs late finds both
                // ready); the transport stops direct writes when it reads the close.
                biased;
                frame = socket.next_frame() => match frame {
                    Some(Err(disconnect)) => return End::Disconnect(disconnect),
                    Some(Ok(frame)) => {
                        self.received.increment(1);
                        Box::pin(self.session.handle_frame(frame, Now::system())).await
                    }
                    None => return End::ClientGone,
                },
                writes = self.outbox.next_writes(MAX_BATCH) => match writes {
                    // Boxed: a write in progress is rare (most deliveries are written where
                    // they are pushed), and inline its future would be the largest state of
                    // every idle connection's task.
                    Ok(writes) => Box::pin(socket.write(&writes)).await,
                    Err(disconnect) => return End::Disconnect(disconnect),
                },
                control = self.control.recv() => {
                    Box::pin(self.session.handle_control(control, Now::system())).await
                }
                () = tokio::time::sleep_until(deadline) => {
                    Box::pin(self.session.handle_timeout(Now::system())).await
                }
            };
            if let Some(end) = self.ended(step) {
                return end;
            }
        }
    }

    /// Whether the loop ends after a step: the step failed, or the connection is closing.
    fn ended(&mut self, step: Result<(), Disconnect>) -> Option<End> {
        self.release_if_connected();
        let disconnect = step.err().or_else(|| self.outbox.closing_reason())?;
        Some(End::Disconnect(disconnect))
    }

    /// After [`Self::run_duplex`]: leaves every channel and the hub, writes what is still
    /// queued (unless the client is gone), then closes `socket` with the disconnect.
    pub async fn close_duplex(mut self, end: End, socket: &mut impl Duplex) {
        let client_gone = end == End::ClientGone;
        let disconnect = self.leave(end).await;
        self.outbox.close(disconnect.clone());
        if client_gone {
            // The client closed: what is still queued has no one to read it.
            socket.close(&disconnect).await;
            return;
        }
        let disconnect = loop {
            match self.outbox.next_writes(MAX_BATCH).await {
                Ok(writes) => {
                    if socket.write(&writes).await.is_err() {
                        return;
                    }
                }
                Err(disconnect) => break disconnect,
            }
        };
        socket.close(&disconnect).await;
    }

    /// Leaves every channel and the hub, and tells the writer to finish with the disconnect
    /// (after what is still queued). Returns the disconnect.
    pub async fn close(mut self, end: End) -> Disconnect {
        let disconnect = self.leave(end).await;
        self.outbox.close(disconnect.clone());
        disconnect
    }

    /// Ends the session, takes the connection out of the hub and counts the disconnect.
    async fn leave(&mut self, end: End) -> Disconnect {
        // Boxed: leaving channels awaits engine calls, whose futures are large (see run).
        Box::pin(self.session.close()).await;
        let id = self.session.id();
        self.session.node().hub.unregister_connection(id);
        let disconnect = match end {
            End::ClientGone => codes::CONNECTION_CLOSED,
            End::Disconnect(disconnect) => disconnect,
        };
        metrics::counter!(crate::metrics::DISCONNECTS, "code" => disconnect.code.to_string())
            .increment(1);
        disconnect
    }
}
