//! The life of one client connection, whatever carries it. A transport opens a [`Connection`],
//! feeds it the client's frames as a stream ([`Connection::run`]), and runs a writer that drains
//! [`Connection::outbox`]; the driver brings in the node's signals and the session's timers, and
//! [`Connection::close`] ends it the same way for every transport.

use std::sync::Arc;

use crate::hub::{ControlReceiver, control_channel};
use crate::protocol::codes::{self, Disconnect};
use crate::protocol::node::Node;
use crate::protocol::session::{Session, TransportInfo};
use crate::queue::Outbox;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

pub struct Connection {
    session: Session,
    outbox: Arc<Outbox>,
    control: ControlReceiver,
    transport: &'static str,
}

/// Why [`Connection::run`] returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The client's side ended: closed, stream finished, read failed, or the writer found the
    /// client gone.
    ClientGone,
    /// The session or the node ends the connection with this code.
    Disconnect(Disconnect),
}

impl Connection {
    pub fn open(node: &Arc<Node>, transport: TransportInfo) -> Self {
        metrics::counter!(crate::metrics::CONNECTIONS_ACCEPTED, "transport" => transport.name)
            .increment(1);
        let outbox = Arc::new(Outbox::new(node.queue_max_size()));
        let (control_tx, control) = control_channel();
        let session = Session::new(Arc::clone(node), transport, Arc::clone(&outbox), control_tx);
        Self {
            session,
            outbox,
            control,
            transport: transport.name,
        }
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
                        metrics::counter!(
                            crate::metrics::MESSAGES_RECEIVED, "transport" => self.transport
                        )
                        .increment(1);
                        // Boxed, like the other handlers: their futures (engine calls included)
                        // are large, and inline they would make every idle connection's task
                        // that large too.
                        Box::pin(self.session.handle_frame(frame)).await
                    }
                    None => return End::ClientGone,
                },
                control = self.control.recv() => {
                    Box::pin(self.session.handle_control(control)).await
                }
                () = self.outbox.closed() => Ok(()),
                () = tokio::time::sleep_until(deadline) => {
                    Box::pin(self.session.handle_timeout(std::time::Instant::now())).await
                }
            };
            if let Err(disconnect) = step {
                return End::Disconnect(disconnect);
            }
            if let Some(disconnect) = self.outbox.closing_reason() {
                return End::Disconnect(disconnect);
            }
        }
    }

    /// Leaves every channel and the hub, and tells the writer to finish with the disconnect
    /// (after what is still queued). Returns the disconnect.
    pub async fn close(mut self, end: End) -> Disconnect {
        // Boxed: leaving channels awaits engine calls, whose futures are large (see run).
        Box::pin(self.session.close()).await;
        let disconnect = match end {
            End::ClientGone => codes::CONNECTION_CLOSED,
            End::Disconnect(disconnect) => disconnect,
        };
        metrics::counter!(crate::metrics::DISCONNECTS, "code" => disconnect.code.to_string())
            .increment(1);
        self.outbox.close(disconnect.clone());
        disconnect
    }
}
