//! Fan-out lanes: engine events delivered in parallel across the runtime's worker threads, each
//! channel's in order.
//!
//! A channel belongs to one lane (the lane of its hub shard), and a lane is one task that
//! delivers its events one after the other: a channel's publications reach every subscriber in
//! the order the engine sent them, and the positions of positioned subscriptions advance one
//! offset at a time as before. Different lanes run on whichever worker threads are free, so the
//! broadcasts of different channels proceed in parallel.
//!
//! Events for the whole node (`Resync`, server API commands) are applied once every lane has
//! delivered what came before them: a session told to check its positions after a resync sees
//! every publication received before the resync already delivered, as it did with one
//! dispatcher.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::{Hub, SHARDS};
use crate::engine::EngineEvent;

/// Events waiting in a lane beyond which it stops writing into sockets itself and queues for
/// the connections' tasks instead (see [`Hub::dispatch`]): a lane that is behind lets each
/// connection's backlog go out in one write, from that connection's task.
const DIRECT_BACKLOG: usize = 16;

/// What owns the hub the lanes deliver into (the node, or the hub itself), kept alive by them.
pub trait HubOwner: Send + Sync + 'static {
    fn hub(&self) -> &Hub;
}

impl HubOwner for Hub {
    fn hub(&self) -> &Hub {
        self
    }
}

/// The lanes' inputs; dropping it ends the lanes once they have delivered what they hold.
pub struct Fanout {
    owner: Arc<dyn HubOwner>,
    lanes: Box<[mpsc::UnboundedSender<Work>]>,
}

enum Work {
    Event(EngineEvent),
    /// Every lane passes the barrier once it delivered what was queued before it.
    Barrier(Arc<Barrier>),
}

struct Barrier {
    /// Lanes that have not reached the barrier yet.
    remaining: AtomicUsize,
    then: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl Barrier {
    /// One lane reached the barrier; the last one runs what waited for all of them.
    fn reach(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1
            && let Some(then) = self.then.lock().take()
        {
            then();
        }
    }
}

impl Fanout {
    /// Starts one task per lane on the current tokio runtime.
    pub fn spawn(owner: Arc<dyn HubOwner>) -> Self {
        let lanes = (0..SHARDS)
            .map(|_| {
                let (sender, work) = mpsc::unbounded_channel();
                tokio::spawn(run_lane(Arc::clone(&owner), work));
                sender
            })
            .collect();
        Self { owner, lanes }
    }

    /// Delivers one engine event: in its channel's lane, or, for an event of the whole node,
    /// once every lane has delivered the events sent before it.
    pub fn dispatch(&self, event: EngineEvent) {
        let channel = match &event {
            EngineEvent::Publication { channel, .. }
            | EngineEvent::Join { channel, .. }
            | EngineEvent::Leave { channel, .. } => channel,
            EngineEvent::Resync | EngineEvent::Control(_) => {
                let owner = Arc::clone(&self.owner);
                self.after_all(move || owner.hub().dispatch(event, true));
                return;
            }
        };
        let lane = &self.lanes[Hub::index(channel)];
        // A lane ends only when this sender is dropped.
        let _ = lane.send(Work::Event(event));
    }

    /// Runs `then` (on a worker thread) once every lane has delivered the events sent before.
    pub fn after_all(&self, then: impl FnOnce() + Send + 'static) {
        let barrier = Arc::new(Barrier {
            remaining: AtomicUsize::new(self.lanes.len()),
            then: Mutex::new(Some(Box::new(then))),
        });
        for lane in &self.lanes {
            let _ = lane.send(Work::Barrier(Arc::clone(&barrier)));
        }
    }
}

async fn run_lane(owner: Arc<dyn HubOwner>, mut work: mpsc::UnboundedReceiver<Work>) {
    while let Some(next) = work.recv().await {
        match next {
            Work::Event(event) => {
                // Direct writes while the lane keeps up; queued once its events pile up. A few
                // waiting events are normal (one read from Redis can bring several).
                let direct = work.len() < DIRECT_BACKLOG;
                // A panic must not end the lane: its channels would get nothing more and every
                // later barrier (Resync, server API commands) would wait forever.
                let delivered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    owner.hub().dispatch(event, direct)
                }));
                if delivered.is_err() {
                    tracing::error!("fan-out of an engine event panicked; the lane goes on");
                }
            }
            Work::Barrier(barrier) => barrier.reach(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::AtomicBool;

    use bytes::Bytes;
    use gyre_proto::codec::Wire;
    use gyre_proto::{Encoding, Publication};

    use super::*;
    use crate::hub::{ControlReceiver, Interest, LivePosition, Subscription, control_channel};
    use crate::queue::{Direct, DirectWrite, Outbox};

    /// A connection's socket in memory: what it took, as length-prefixed messages and framed
    /// bytes as they are. Some writes are refused or taken in part, so that messages also go
    /// through the outbox's queue and the connection's task.
    #[derive(Default)]
    struct Socket {
        taken: Mutex<Vec<u8>>,
        writes: AtomicUsize,
        busy: AtomicBool,
        /// Two writes were in progress at once (two threads writing one socket).
        overlapped: AtomicBool,
    }

    impl Socket {
        fn write(&self, bytes: &[u8]) {
            if self.busy.swap(true, Ordering::AcqRel) {
                self.overlapped.store(true, Ordering::Release);
            }
            self.taken.lock().extend_from_slice(bytes);
            // Gives another thread the chance to write alongside, if it could.
            std::thread::yield_now();
            self.busy.store(false, Ordering::Release);
        }

        /// The messages, in the order the socket took them.
        fn messages(&self) -> Vec<Bytes> {
            let taken = self.taken.lock();
            let mut rest = &taken[..];
            let mut messages = Vec::new();
            while !rest.is_empty() {
                let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
                messages.push(Bytes::copy_from_slice(&rest[4..4 + len]));
                rest = &rest[4 + len..];
            }
            messages
        }
    }

    fn frame(message: &[u8]) -> Vec<u8> {
        let mut frame = (message.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(message);
        frame
    }

    struct SocketWriter(Arc<Socket>);

    impl DirectWrite for SocketWriter {
        fn try_write(&self, message: &Bytes, framed: bool) -> Direct {
            let frame = if framed {
                message.clone()
            } else {
                Bytes::from(frame(message))
            };
            match self.0.writes.fetch_add(1, Ordering::Relaxed) % 7 {
                3 => Direct::Blocked,
                5 => {
                    let half = frame.len() / 2;
                    self.0.write(&frame[..half]);
                    Direct::Partial(frame.slice(half..))
                }
                _ => {
                    self.0.write(&frame);
                    Direct::Written
                }
            }
        }
    }

    /// The connection's task: writes what the outbox queued until it closes.
    async fn drain(outbox: Arc<Outbox>, socket: Arc<Socket>) {
        while let Ok(writes) = outbox.next_writes(64).await {
            let mut bytes = Vec::new();
            for framed in &writes.framed {
                bytes.extend_from_slice(framed);
            }
            for message in &writes.messages {
                bytes.extend_from_slice(&frame(message));
            }
            socket.write(&bytes);
        }
    }

    struct Client {
        socket: Arc<Socket>,
        outbox: Arc<Outbox>,
        control: ControlReceiver,
        task: tokio::task::JoinHandle<()>,
    }

    /// A connection subscribed (positioned at offset 0) to `channels` of `hub`.
    fn client(hub: &Hub, id: u64, channels: &[String]) -> Client {
        let socket = Arc::new(Socket::default());
        let outbox = Arc::new(Outbox::new(1 << 24));
        outbox.set_direct(Box::new(SocketWriter(Arc::clone(&socket))));
        let (sender, control) = control_channel();
        hub.register_connection(id, sender.clone());
        for channel in channels {
            let subscription = Arc::new(Subscription::new(
                id,
                channel.clone(),
                Wire::plain(Encoding::Json),
                Interest::default(),
                Arc::clone(&outbox),
                sender.clone(),
            ));
            subscription.go_live(
                None,
                LivePosition {
                    positioned: true,
                    offset: 0,
                    epoch: "e".into(),
                },
                std::time::Instant::now(),
            );
            hub.add(subscription);
        }
        let task = tokio::spawn(drain(Arc::clone(&outbox), Arc::clone(&socket)));
        Client {
            socket,
            outbox,
            control,
            task,
        }
    }

    fn publication(channel: &str, offset: u64) -> EngineEvent {
        EngineEvent::Publication {
            channel: channel.to_owned(),
            publication: Box::new(Publication {
                data: Bytes::from(format!(r#"{{"n":{offset}}}"#)),
                offset,
                ..Default::default()
            }),
            epoch: "e".into(),
        }
    }

    /// (channel, offset) of each delivered push.
    fn pushes(messages: &[Bytes]) -> Vec<(String, u64)> {
        messages
            .iter()
            .map(|message| {
                let reply: gyre_proto::protocol::Reply =
                    gyre_proto::codec::json::decode_message(message).unwrap();
                let push = reply.push.unwrap();
                (push.channel, push.r#pub.unwrap().offset)
            })
            .collect()
    }

    async fn all_lanes_done(fanout: &Fanout) {
        let (done, delivered) = tokio::sync::oneshot::channel();
        fanout.after_all(move || {
            let _ = done.send(());
        });
        delivered.await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn channels_fan_out_in_parallel_and_each_keeps_its_order_for_every_subscriber() {
        const CHANNELS: usize = 24;
        const PUBLICATIONS: u64 = 60;
        let hub = Arc::new(Hub::new());
        let names: Vec<String> = (0..CHANNELS).map(|c| format!("ch{c}")).collect();
        // Every connection on 5 channels, which mostly live in different lanes: its outbox
        // is pushed to from several threads at once.
        let clients: Vec<Client> = (0..40)
            .map(|id| {
                let channels: Vec<String> = (0..5)
                    .map(|k| names[(id * 7 + k * 5) % CHANNELS].clone())
                    .collect();
                client(&hub, id as u64 + 1, &channels)
            })
            .collect();
        let fanout = Fanout::spawn(Arc::clone(&hub) as Arc<dyn HubOwner>);
        for offset in 1..=PUBLICATIONS {
            for name in &names {
                fanout.dispatch(publication(name, offset));
            }
        }
        all_lanes_done(&fanout).await;
        for (index, mut client) in clients.into_iter().enumerate() {
            client.outbox.close(gyre_proto::codes::SHUTDOWN);
            client.task.await.unwrap();
            assert!(
                !client.socket.overlapped.load(Ordering::Acquire),
                "two writes at once into client {index}'s socket"
            );
            assert_eq!(client.control.try_recv(), None, "no gap for client {index}");
            let mut by_channel: HashMap<String, Vec<u64>> = HashMap::new();
            for (channel, offset) in pushes(&client.socket.messages()) {
                by_channel.entry(channel).or_default().push(offset);
            }
            assert_eq!(by_channel.len(), 5, "client {index}");
            for (channel, offsets) in by_channel {
                assert_eq!(
                    offsets,
                    (1..=PUBLICATIONS).collect::<Vec<_>>(),
                    "client {index}, {channel}: every publication, in order"
                );
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_resync_reaches_the_sessions_after_everything_published_before_it() {
        let hub = Arc::new(Hub::new());
        let names: Vec<String> = (0..8).map(|c| format!("ch{c}")).collect();
        let mut clients: Vec<Client> = (0..8).map(|id| client(&hub, id + 1, &names)).collect();
        let fanout = Fanout::spawn(Arc::clone(&hub) as Arc<dyn HubOwner>);
        for offset in 1..=30 {
            for name in &names {
                fanout.dispatch(publication(name, offset));
            }
        }
        fanout.dispatch(EngineEvent::Resync);
        for client in &mut clients {
            assert_eq!(client.control.recv().await, crate::hub::Control::Resync);
            // Everything before the resync has been pushed: written, or queued for the task.
            client.outbox.close(gyre_proto::codes::SHUTDOWN);
        }
        for client in clients {
            client.task.await.unwrap();
            assert_eq!(pushes(&client.socket.messages()).len(), 8 * 30);
        }
    }
}
