//! The memory engine: history, presence and delivery inside one `gyre` process, for a single
//! node without Redis. Same contract as the Redis engine (see `engine/mod.rs`); state is lost on
//! restart, and a restart gives every channel a new epoch so clients learn that.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use gyre_proto::{ClientInfo, Publication};
use parking_lot::Mutex;
use rand::Rng;

use super::{
    ControlCommand, EngineError, EngineEvent, EventSender, HistoryQuery, HistoryResult,
    PresenceStats, PublishOptions, StreamPosition,
};

/// Idempotency results are swept when the table grows past this many entries.
const IDEMPOTENCY_SWEEP_THRESHOLD: usize = 10_000;

pub struct MemoryEngine {
    events: EventSender,
    /// One lock for all channels: every operation is a few map operations, and holding it while
    /// sending an event keeps each channel's events in offset order.
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    streams: HashMap<String, Stream>,
    /// Channels with local subscribers: only their events are delivered.
    subscribed: HashSet<String>,
    presence: HashMap<String, HashMap<String, PresenceEntry>>,
    idempotency: HashMap<(String, String), (StreamPosition, Instant)>,
}

struct Stream {
    epoch: String,
    top: u64,
    /// Publications with `offset` set, oldest first.
    publications: VecDeque<Publication>,
    /// When the publications expire (history TTL after the last publish).
    data_expires: Instant,
    /// When offset and epoch expire; `None` = never.
    meta_expires: Option<Instant>,
    /// The last accepted publication version and its version epoch (lives with the position).
    version: Option<(u64, String)>,
}

struct PresenceEntry {
    info: ClientInfo,
    expires: Instant,
}

impl MemoryEngine {
    pub fn new(events: EventSender) -> Self {
        Self {
            events,
            state: Mutex::new(State::default()),
        }
    }

    pub async fn publish(
        &self,
        channel: &str,
        data: Bytes,
        options: &PublishOptions,
    ) -> Result<StreamPosition, EngineError> {
        let now = Instant::now();
        let mut state = self.state.lock();
        let key = options
            .idempotency_key
            .as_ref()
            .map(|k| (channel.to_owned(), k.clone()));
        if let Some(key) = &key
            && let Some((position, expires)) = state.idempotency.get(key)
            && *expires > now
        {
            return Ok(position.clone());
        }

        let mut publication = Publication {
            data,
            info: options.info.clone(),
            tags: options.tags.clone(),
            time: unix_ms(),
            delta_allowed: options.delta,
            ..Default::default()
        };
        let position = match options.history {
            Some(history) => {
                state.drop_if_meta_expired(channel, now);
                let stream = state
                    .streams
                    .entry(channel.to_owned())
                    .or_insert_with(|| Stream::new(now));
                if options.version > 0 {
                    let stored = stream.version.as_ref().map(|(v, e)| (*v, e.as_str()));
                    if gyre_proto::version::is_stale(
                        stored,
                        options.version,
                        &options.version_epoch,
                    ) {
                        return Ok(StreamPosition::default());
                    }
                    stream.version = Some((options.version, options.version_epoch.clone()));
                }
                if stream.data_expires <= now {
                    stream.publications.clear();
                }
                stream.top += 1;
                publication.offset = stream.top;
                stream.publications.push_back(publication.clone());
                while stream.publications.len() as u64 > history.size {
                    stream.publications.pop_front();
                }
                stream.data_expires = now + history.ttl;
                stream.meta_expires = (!history.meta_ttl.is_zero()).then(|| now + history.meta_ttl);
                StreamPosition {
                    offset: stream.top,
                    epoch: stream.epoch.clone(),
                }
            }
            None => StreamPosition::default(),
        };

        if let Some(key) = key {
            if state.idempotency.len() >= IDEMPOTENCY_SWEEP_THRESHOLD {
                state.idempotency.retain(|_, (_, expires)| *expires > now);
            }
            let ttl = options.idempotency_ttl.unwrap_or(Duration::from_secs(300));
            state.idempotency.insert(key, (position.clone(), now + ttl));
        }
        if state.subscribed.contains(channel) {
            self.send(EngineEvent::Publication {
                channel: channel.to_owned(),
                publication: Box::new(publication),
                epoch: position.epoch.clone(),
            });
        }
        Ok(position)
    }

    pub async fn history(
        &self,
        channel: &str,
        query: HistoryQuery,
    ) -> Result<HistoryResult, EngineError> {
        let now = Instant::now();
        let mut state = self.state.lock();
        let Some(stream) = state.live_stream(channel, now) else {
            return Ok(HistoryResult::default());
        };
        let position = StreamPosition {
            offset: stream.top,
            epoch: stream.epoch.clone(),
        };
        let limit = query.limit.unwrap_or(u64::MAX) as usize;
        let publications = if stream.data_expires <= now || limit == 0 {
            Vec::new()
        } else if query.reverse {
            let before = query.since.unwrap_or(u64::MAX);
            stream
                .publications
                .iter()
                .rev()
                .filter(|p| p.offset < before)
                .take(limit)
                .cloned()
                .collect()
        } else {
            let after = query.since.unwrap_or(0);
            stream
                .publications
                .iter()
                .filter(|p| p.offset > after)
                .take(limit)
                .cloned()
                .collect()
        };
        Ok(HistoryResult {
            position,
            publications,
        })
    }

    pub async fn position(
        &self,
        channel: &str,
        meta_ttl: Duration,
    ) -> Result<StreamPosition, EngineError> {
        let now = Instant::now();
        let mut state = self.state.lock();
        state.drop_if_meta_expired(channel, now);
        let stream = state.streams.entry(channel.to_owned()).or_insert_with(|| {
            let mut stream = Stream::new(now);
            stream.meta_expires = (!meta_ttl.is_zero()).then(|| now + meta_ttl);
            stream
        });
        Ok(StreamPosition {
            offset: stream.top,
            epoch: stream.epoch.clone(),
        })
    }

    pub async fn remove_history(&self, channel: &str) -> Result<(), EngineError> {
        let mut state = self.state.lock();
        if let Some(stream) = state.streams.get_mut(channel) {
            stream.publications.clear();
        }
        Ok(())
    }

    pub async fn add_presence(
        &self,
        channel: &str,
        info: &ClientInfo,
        ttl: Duration,
        join_leave: bool,
    ) -> Result<(), EngineError> {
        let now = Instant::now();
        let mut state = self.state.lock();
        let subscribed = state.subscribed.contains(channel);
        let entries = state.presence.entry(channel.to_owned()).or_default();
        entries.retain(|_, entry| entry.expires > now);
        let previous = entries.insert(
            info.client.clone(),
            PresenceEntry {
                info: info.clone(),
                expires: now + ttl,
            },
        );
        if join_leave && previous.is_none() && subscribed {
            self.send(EngineEvent::Join {
                channel: channel.to_owned(),
                info: info.clone(),
            });
        }
        Ok(())
    }

    pub async fn remove_presence(
        &self,
        channel: &str,
        info: &ClientInfo,
        join_leave: bool,
    ) -> Result<(), EngineError> {
        let now = Instant::now();
        let mut state = self.state.lock();
        let subscribed = state.subscribed.contains(channel);
        let Some(entries) = state.presence.get_mut(channel) else {
            return Ok(());
        };
        let removed = entries.remove(&info.client);
        if entries.is_empty() {
            state.presence.remove(channel);
        }
        let was_live = removed.is_some_and(|entry| entry.expires > now);
        if join_leave && was_live && subscribed {
            self.send(EngineEvent::Leave {
                channel: channel.to_owned(),
                info: info.clone(),
            });
        }
        Ok(())
    }

    pub async fn presence(
        &self,
        channel: &str,
    ) -> Result<HashMap<String, ClientInfo>, EngineError> {
        let now = Instant::now();
        let state = self.state.lock();
        Ok(state
            .presence
            .get(channel)
            .into_iter()
            .flatten()
            .filter(|(_, entry)| entry.expires > now)
            .map(|(client, entry)| (client.clone(), entry.info.clone()))
            .collect())
    }

    pub async fn presence_stats(&self, channel: &str) -> Result<PresenceStats, EngineError> {
        let now = Instant::now();
        let state = self.state.lock();
        let live: Vec<&PresenceEntry> = state
            .presence
            .get(channel)
            .into_iter()
            .flat_map(|entries| entries.values())
            .filter(|entry| entry.expires > now)
            .collect();
        let users: HashSet<&str> = live.iter().map(|entry| entry.info.user.as_str()).collect();
        Ok(PresenceStats {
            num_clients: live.len() as u32,
            num_users: users.len() as u32,
        })
    }

    pub async fn subscribe(&self, channel: &str) -> Result<(), EngineError> {
        self.state.lock().subscribed.insert(channel.to_owned());
        Ok(())
    }

    pub async fn unsubscribe(&self, channel: &str) -> Result<(), EngineError> {
        self.state.lock().subscribed.remove(channel);
        Ok(())
    }

    pub async fn publish_control(&self, command: &ControlCommand) -> Result<(), EngineError> {
        self.send(EngineEvent::Control(command.clone()));
        Ok(())
    }

    fn send(&self, event: EngineEvent) {
        // The receiver lives as long as the node; after shutdown there is nobody to deliver to.
        let _ = self.events.send(event);
    }
}

impl State {
    /// Forgets a channel's stream whose meta expired, so that it starts again with a new epoch.
    fn drop_if_meta_expired(&mut self, channel: &str, now: Instant) {
        let expired = self
            .streams
            .get(channel)
            .is_some_and(|s| s.meta_expires.is_some_and(|at| at <= now));
        if expired {
            self.streams.remove(channel);
        }
    }

    /// The channel's stream, if it has a live one.
    fn live_stream(&mut self, channel: &str, now: Instant) -> Option<&mut Stream> {
        self.drop_if_meta_expired(channel, now);
        self.streams.get_mut(channel)
    }
}

impl Stream {
    fn new(now: Instant) -> Self {
        Self {
            epoch: new_epoch(),
            top: 0,
            publications: VecDeque::new(),
            data_expires: now,
            meta_expires: None,
            version: None,
        }
    }
}

fn new_epoch() -> String {
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut rng = rand::rng();
    (0..8)
        .map(|_| LETTERS[rng.random_range(0..LETTERS.len())] as char)
        .collect()
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
