//! THE client session: one per connection, whatever the transport.
//!
//! A transport feeds it what the client sent ([`Session::handle_frame`]), what the node signals
//! ([`Session::handle_control`]) and the passing of time ([`Session::handle_timeout`] at
//! [`Session::deadline`]); the session answers by queueing encoded messages in the connection's
//! [`Outbox`] and, when the connection must end, by returning a [`Disconnect`]. It never touches
//! a socket, so every transport behaves the same.
//!
//! It reads no clock and draws no random number itself: every input comes with its time
//! ([`Now`]), its timing rules are plain data ([`timers`]), and randomness comes from the node's
//! [`crate::protocol::entropy::Entropy`]. It calls the engine, the token verifier and the
//! backend hooks only through its `effects::Effects`, which the tests script. The tests in
//! `tests/` drive whole sessions on a simulated clock, with the in-process engine, in a few
//! milliseconds.
//!
//! Commands: [`connect`], [`subscribe`] (subscribe, unsubscribe, recovery), [`channel`] (publish,
//! history, presence), refresh and the rest here; [`hooks`]: where the backend hooks are called
//! and their answers applied (connect, refresh, subscribe, publish, sub_refresh, RPC).

mod channel;
pub use channel::history_options;
mod connect;
mod effects;
mod hooks;
mod subscribe;
#[cfg(test)]
mod tests;
mod timers;
pub use timers::Now;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use gyre_proto::codec::deflate::Deflate;
use gyre_proto::codec::{FrameDecoder, Wire};
use gyre_proto::protocol::{Command, Reply};
use gyre_proto::{ClientInfo, Encoding};

use super::node::Node;
use crate::hub::{ConnectionId, Control, ControlSender, Subscription};
use crate::queue::Outbox;
use gyre_proto::codes::{self, Disconnect, ErrorCode};
use timers::{Due, Rules, Timers};

/// Why a command failed: an error reply to it (ours, or the backend's), or the end of the
/// connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    Reply(ErrorCode),
    App(codes::AppError),
    Disconnect(Disconnect),
}

impl From<ErrorCode> for CommandError {
    fn from(code: ErrorCode) -> Self {
        Self::Reply(code)
    }
}

impl From<Disconnect> for CommandError {
    fn from(disconnect: Disconnect) -> Self {
        Self::Disconnect(disconnect)
    }
}

impl From<crate::engine::EngineError> for CommandError {
    fn from(error: crate::engine::EngineError) -> Self {
        tracing::warn!(%error, "engine call failed");
        metrics::counter!(crate::metrics::ENGINE_ERRORS).increment(1);
        Self::Reply(codes::INTERNAL)
    }
}

pub type CommandResult<T> = Result<T, CommandError>;

/// The answer to a refused token, for the command it came with (docs/protocol.md#token-failures).
fn token_rejected(error: &crate::auth::TokenError, usage: crate::auth::TokenUse) -> CommandError {
    use crate::auth::Reject;
    tracing::debug!(%error, ?usage, "token rejected");
    match error.outcome(usage) {
        Reject::Error(code) => codes::error_code(code).into(),
        Reject::Disconnect(code, reason) => Disconnect::custom(code, reason).into(),
        // Only sub_refresh gets this, and handles it before asking.
        Reject::Expired => codes::TOKEN_EXPIRED.into(),
    }
}

/// How a transport describes itself to the session.
#[derive(Debug, Clone, Copy)]
pub struct TransportInfo {
    pub name: &'static str,
    pub encoding: Encoding,
    pub mode: Mode,
    /// WebSocket permessage-deflate, when the client negotiated it.
    pub deflate: Option<Deflate>,
}

/// How the client talks to the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Commands and replies on one connection (WebSocket).
    Bidirectional,
    /// Replies on a long-lived HTTP response; commands arrive through `/emulation` POSTs that
    /// name the session returned in the connect result, on this node or routed from another.
    Emulated,
    /// No commands after the connect request: the client only receives pushes, the connect
    /// result among them, and sends no pongs.
    Unidirectional,
}

pub struct Session {
    node: Arc<Node>,
    /// Engine, token verifier and backend calls go through here, never to `node` directly.
    effects: effects::Effects,
    id: ConnectionId,
    /// The client id announced in the connect reply (as its hyphenated lower-case string): kept
    /// as 16 bytes, formatted when needed, instead of a 36-byte string here and in the hub.
    client: uuid::Uuid,
    transport: TransportInfo,
    outbox: Arc<Outbox>,
    control: ControlSender,
    state: State,
    /// Forwarded request headers, emulated headers and meta, for the backend hooks; empty (a
    /// null pointer) unless some proxy wants them.
    context: crate::hooks::headers::ClientContext,
    /// A connect was refused: nothing more from this connection is processed; the SDK opens a
    /// new one (after fetching a token, for 109), and this one is closed as stale.
    halted: bool,
    /// Told how the connect command ended, for a transport that answers a failed connect with
    /// an HTTP status (`connect_code_to_http_response`); `None` otherwise.
    connect_outcome: Option<tokio::sync::oneshot::Sender<ConnectOutcome>>,
    /// The time of the input being handled (the last one between inputs).
    now: Now,
}

/// How a connect command ended, for [`Session::report_connect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectOutcome {
    Connected,
    /// An error (its code and message) or a disconnect (its code and reason), before any
    /// unidirectional transform.
    Refused {
        code: u32,
        text: String,
    },
}

enum State {
    /// Waiting for the connect command; closed as stale at `deadline`.
    Connecting {
        deadline: Instant,
    },
    Connected(Box<Connected>),
}

struct Connected {
    user: String,
    conn_info: Bytes,
    subscriptions: ChannelMap,
    /// Pings, pongs, expiry, presence and position checks.
    timers: Timers,
}

/// The client's subscriptions by channel: a vector searched linearly, grown one slot at a time
/// and keyed by the subscription's own channel name. Clients hold a few channels (at most
/// `client.channel_limit`), and a `HashMap<String, ChannelState>` costs 4 buckets (~370 bytes)
/// plus a copy of the name for the first one: the largest part of an idle session after its
/// task.
#[derive(Default)]
struct ChannelMap(Vec<ChannelState>);

impl ChannelMap {
    fn position(&self, channel: &str) -> Option<usize> {
        self.0
            .iter()
            .position(|s| s.subscription.channel == channel)
    }

    fn get(&self, channel: &str) -> Option<&ChannelState> {
        self.position(channel).map(|i| &self.0[i])
    }

    fn get_mut(&mut self, channel: &str) -> Option<&mut ChannelState> {
        self.position(channel).map(|i| &mut self.0[i])
    }

    fn contains_key(&self, channel: &str) -> bool {
        self.position(channel).is_some()
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    /// Adds (or replaces) the subscription to its channel.
    fn insert(&mut self, state: ChannelState) {
        if let Some(i) = self.position(&state.subscription.channel) {
            self.0[i] = state;
            return;
        }
        if self.0.len() == self.0.capacity() {
            // 1, 2, 4, ... slots instead of Vec's first 4.
            self.0.reserve_exact(self.0.len().max(1));
        }
        self.0.push(state);
    }

    fn remove(&mut self, channel: &str) -> Option<ChannelState> {
        let state = self.0.swap_remove(self.position(channel)?);
        if self.0.len() <= self.0.capacity() / 4 {
            self.0.shrink_to(self.0.len() * 2);
        }
        Some(state)
    }

    fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|s| &s.subscription.channel)
    }

    fn iter(&self) -> impl Iterator<Item = (&String, &ChannelState)> {
        self.0.iter().map(|s| (&s.subscription.channel, s))
    }
}

/// One live subscription of this client.
struct ChannelState {
    subscription: Arc<Subscription>,
    /// Keep a presence entry (namespace `presence`).
    presence: bool,
    /// Announce join/leave of this client (namespace `join_leave`).
    join_leave: bool,
    chan_info: Bytes,
    /// Unix seconds when a subscription token expires; `None` = never.
    expires_at: Option<i64>,
    /// From the connection token: the client did not ask for it and cannot resubscribe, so
    /// losing its continuity ends the connection (3010) instead of the subscription (2500).
    server_side: bool,
}

impl Session {
    /// A session opened at `now` for connection `id`, which the caller registered in the hub
    /// with `control`'s receiving end. `context`: the connection request's headers that hooks
    /// forward (see [`crate::hooks::Hooks::capture`]).
    pub fn new(
        node: Arc<Node>,
        id: ConnectionId,
        transport: TransportInfo,
        outbox: Arc<Outbox>,
        control: ControlSender,
        context: crate::hooks::headers::ClientContext,
        now: Now,
    ) -> Self {
        let deadline = now.instant + node.config.client.stale_close_delay;
        Self {
            client: node.entropy.uuid(),
            effects: effects::Effects::live(Arc::clone(&node)),
            node,
            id,
            transport,
            outbox,
            control,
            state: State::Connecting { deadline },
            context,
            halted: false,
            connect_outcome: None,
            now,
        }
    }

    /// The timing rules of this connection.
    fn rules(&self) -> Rules {
        let client = &self.node.config.client;
        let pongs = !client.pong_timeout.is_zero() && self.transport.mode != Mode::Unidirectional;
        Rules {
            ping_interval: client.ping_interval,
            pong_timeout: pongs.then_some(client.pong_timeout),
            presence_update_interval: client.presence_update_interval,
            expired_close_delay: client.expired_close_delay,
            refresh_by_proxy: self.node.hooks.refresh().is_some(),
        }
    }

    /// Tells the receiver how the connect command ends (see [`ConnectOutcome`]); dropped
    /// without a word when the session ends before one.
    pub fn report_connect(&mut self) -> tokio::sync::oneshot::Receiver<ConnectOutcome> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.connect_outcome = Some(tx);
        rx
    }

    fn connect_ended(&mut self, outcome: ConnectOutcome) {
        if let Some(tx) = self.connect_outcome.take() {
            let _ = tx.send(outcome);
        }
    }

    /// The disconnect that tells a unidirectional client why its connect failed with error
    /// `code`: `client.connect_code_to_unidirectional_disconnect`'s, else the built-in one.
    fn unidirectional_disconnect(&self, code: u32) -> Disconnect {
        let transforms = &self
            .node
            .config
            .client
            .connect_code_to_unidirectional_disconnect;
        match transforms.disconnect_for(code) {
            // Validated to 3000-4999.
            Some(to) => Disconnect::custom(u16::try_from(to.code).unwrap_or(3004), &to.reason),
            None => codes::unidirectional_disconnect(code),
        }
    }

    pub fn encoding(&self) -> Encoding {
        self.transport.encoding
    }

    /// How this connection's outbox holds messages.
    pub fn wire(&self) -> Wire {
        Wire {
            encoding: self.transport.encoding,
            deflate: self.transport.deflate,
        }
    }

    /// Whether the client has connected (authenticated) successfully.
    pub fn is_connected(&self) -> bool {
        matches!(self.state, State::Connected(_))
    }

    /// Handles one frame from the client, received at `now`: every command in it, in order.
    pub async fn handle_frame(&mut self, frame: Bytes, now: Now) -> Result<(), Disconnect> {
        self.now = now;
        if self.halted {
            return Ok(());
        }
        let limit = self.node.config.websocket.max_message_size();
        let mut any = false;
        for command in FrameDecoder::<Command>::new(self.encoding(), frame, limit) {
            any = true;
            let command = command.map_err(|error| {
                tracing::debug!(client = %self.client, %error, "undecodable frame");
                codes::DISCONNECT_BAD_REQUEST
            })?;
            self.handle_command(command).await?;
            if self.halted {
                break;
            }
        }
        if any {
            Ok(())
        } else {
            Err(codes::DISCONNECT_BAD_REQUEST)
        }
    }

    async fn handle_command(&mut self, command: Command) -> Result<(), Disconnect> {
        if command.id == 0 {
            return self.handle_async_message(&command);
        }
        let id = command.id;
        let method = method_name(&command);
        metrics::counter!(crate::metrics::COMMANDS, "method" => method).increment(1);
        let started = Instant::now();
        let connecting =
            matches!(self.state, State::Connecting { .. }) && command.connect.is_some();
        let outcome = match &self.state {
            State::Connecting { .. } => match &command.connect {
                Some(request) => self.connect(id, request).await.map(|()| None),
                None => Err(codes::DISCONNECT_BAD_REQUEST.into()),
            },
            State::Connected(_) => self.dispatch(command).await,
        };
        metrics::histogram!(crate::metrics::COMMAND_DURATION, "method" => method)
            .record(started.elapsed().as_secs_f64());
        if connecting && self.connect_outcome.is_some() {
            self.connect_ended(match &outcome {
                Ok(_) => ConnectOutcome::Connected,
                Err(CommandError::Reply(code)) => ConnectOutcome::Refused {
                    code: code.code,
                    text: code.message.to_string(),
                },
                Err(CommandError::App(app)) => ConnectOutcome::Refused {
                    code: app.code,
                    text: app.message.clone(),
                },
                Err(CommandError::Disconnect(disconnect)) => ConnectOutcome::Refused {
                    code: u32::from(disconnect.code),
                    text: disconnect.reason.to_string(),
                },
            });
        }
        match outcome {
            Ok(Some(reply)) => {
                self.send_reply(Reply { id, ..reply });
                Ok(())
            }
            // The handler queued its reply itself (subscribe orders it with publications).
            Ok(None) => Ok(()),
            Err(error @ (CommandError::Reply(_) | CommandError::App(_))) => {
                let error = match error {
                    CommandError::Reply(code) => code.to_proto(),
                    CommandError::App(app) => app.to_proto(),
                    CommandError::Disconnect(_) => unreachable!("matched above"),
                };
                metrics::counter!(crate::metrics::COMMAND_ERRORS, "code" => error.code.to_string())
                    .increment(1);
                if self.transport.mode == Mode::Unidirectional {
                    // No reply can reach a unidirectional client: it learns why from the
                    // disconnect.
                    return Err(self.unidirectional_disconnect(error.code));
                }
                self.send_reply(Reply {
                    id,
                    error: Some(error),
                    ..Default::default()
                });
                if matches!(self.state, State::Connecting { .. }) {
                    // Closing here with a terminal code would override the SDK's reaction to the
                    // error (e.g. reconnect with a new token after 109), so the connection just
                    // stops listening and is closed as stale later, as with Centrifugo.
                    self.halted = true;
                }
                Ok(())
            }
            Err(CommandError::Disconnect(disconnect)) => Err(disconnect),
        }
    }

    /// A command without id: a pong, or a fire-and-forget `send`.
    fn handle_async_message(&mut self, command: &Command) -> Result<(), Disconnect> {
        let rules = self.rules();
        let State::Connected(connected) = &mut self.state else {
            return Err(codes::DISCONNECT_BAD_REQUEST);
        };
        if command.send.is_some() {
            // No backend message handler exists yet.
            return Err(codes::DISCONNECT_NOT_AVAILABLE);
        }
        connected.timers.pong(&rules)
    }

    async fn dispatch(&mut self, command: Command) -> CommandResult<Option<Reply>> {
        if command.connect.is_some() {
            return Err(codes::DISCONNECT_BAD_REQUEST.into());
        }
        if let Some(request) = command.subscribe {
            self.subscribe(command.id, request).await?;
            return Ok(None);
        }
        let reply = if let Some(request) = command.unsubscribe {
            self.unsubscribe_command(&request).await?
        } else if let Some(request) = command.publish {
            self.publish(request).await?
        } else if let Some(request) = command.presence {
            self.presence(&request).await?
        } else if let Some(request) = command.presence_stats {
            self.presence_stats(&request).await?
        } else if let Some(request) = command.history {
            self.history(&request).await?
        } else if let Some(request) = command.refresh {
            self.refresh(&request).await?
        } else if let Some(request) = command.sub_refresh {
            self.sub_refresh(&request).await?
        } else if let Some(request) = command.rpc {
            self.rpc(&request).await?
        } else if command.ping.is_some() {
            return Err(codes::NOT_AVAILABLE.into());
        } else {
            return Err(codes::DISCONNECT_BAD_REQUEST.into());
        };
        Ok(Some(reply))
    }

    /// Handles a signal from the hub, received at `now`.
    pub async fn handle_control(&mut self, control: Control, now: Now) -> Result<(), Disconnect> {
        self.now = now;
        match control {
            Control::Emulation(frame) => self.handle_frame(frame, now).await,
            Control::InsufficientState { channel } => self.lose_continuity(&channel).await,
            Control::Resync => self.resync().await,
            Control::Unsubscribe { channel } => {
                self.unsubscribe_client(&channel, codes::UNSUBSCRIBE_SERVER)
                    .await;
                Ok(())
            }
            Control::Subscribe {
                channel,
                chan_info,
                data,
            } => {
                self.subscribe_server_side(&channel, chan_info, data).await;
                Ok(())
            }
            Control::Refresh {
                expired,
                expires_at,
            } => {
                if expired {
                    return Err(codes::CONNECTION_EXPIRED);
                }
                if let State::Connected(connected) = &mut self.state {
                    connected.timers.expires_at = expires_at;
                }
                Ok(())
            }
            Control::Disconnect(disconnect) => Err(disconnect),
        }
    }

    /// When [`Self::handle_timeout`] must run next.
    pub fn deadline(&self) -> Instant {
        match &self.state {
            State::Connecting { deadline } => *deadline,
            State::Connected(c) => c.timers.deadline(self.now, &self.rules()),
        }
    }

    /// Does what the timers say is due at `now`: pings, the pong deadline, connection expiry
    /// (or the refresh proxy), presence refresh and subscription expiry, quiet positions.
    pub async fn handle_timeout(&mut self, now: Now) -> Result<(), Disconnect> {
        self.now = now;
        let rules = self.rules();
        let connected = match &mut self.state {
            State::Connecting { deadline } if now.instant >= *deadline => return Err(codes::STALE),
            State::Connecting { .. } => return Ok(()),
            State::Connected(c) => c,
        };
        for due in connected.timers.due(now, &rules) {
            match due {
                Due::Close(disconnect) => return Err(disconnect),
                Due::Ping => {
                    self.outbox.push(self.wire().empty_message());
                }
                Due::RefreshByProxy => self.refresh_by_proxy().await?,
                Due::CheckQuietPositions => {
                    self.verify_positions(Some(timers::POSITION_CHECK_DELAY))
                        .await?;
                }
                Due::RefreshPresence => {
                    self.update_presence().await;
                    self.expire_subscriptions().await;
                }
            }
        }
        Ok(())
    }

    /// Ends the session: leaves every channel. Call once, when the transport closes; the caller
    /// then unregisters the connection from the hub.
    pub async fn close(&mut self) {
        if let State::Connected(connected) = &mut self.state {
            let channels: Vec<String> = connected.subscriptions.keys().cloned().collect();
            for channel in channels {
                self.leave_channel(&channel).await;
            }
        }
    }

    /// The connection's id in the hub.
    pub fn id(&self) -> ConnectionId {
        self.id
    }

    /// The node this session belongs to (its driver unregisters the connection there).
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    fn send_reply(&self, reply: Reply) {
        self.queue(&reply);
    }

    /// Encodes and queues one message for this client.
    fn queue(&self, reply: &Reply) -> bool {
        match self.wire().encode_reply(reply) {
            Ok(bytes) => self.outbox.push(bytes),
            Err(error) => {
                tracing::warn!(client = %self.client, %error, "reply not encodable");
                self.outbox.close(codes::INAPPROPRIATE_PROTOCOL);
                false
            }
        }
    }

    fn connected(&self) -> CommandResult<&Connected> {
        match &self.state {
            State::Connected(c) => Ok(c),
            State::Connecting { .. } => Err(codes::DISCONNECT_BAD_REQUEST.into()),
        }
    }

    fn connected_mut(&mut self) -> CommandResult<&mut Connected> {
        match &mut self.state {
            State::Connected(c) => Ok(c),
            State::Connecting { .. } => Err(codes::DISCONNECT_BAD_REQUEST.into()),
        }
    }

    fn client_info(&self, connected: &Connected, chan_info: Bytes) -> ClientInfo {
        ClientInfo {
            user: connected.user.clone(),
            client: self.client.to_string(),
            conn_info: connected.conn_info.clone(),
            chan_info,
        }
    }
}

/// The command's method, for metrics.
fn method_name(command: &Command) -> &'static str {
    match command {
        c if c.connect.is_some() => "connect",
        c if c.subscribe.is_some() => "subscribe",
        c if c.unsubscribe.is_some() => "unsubscribe",
        c if c.publish.is_some() => "publish",
        c if c.presence.is_some() => "presence",
        c if c.presence_stats.is_some() => "presence_stats",
        c if c.history.is_some() => "history",
        c if c.refresh.is_some() => "refresh",
        c if c.sub_refresh.is_some() => "sub_refresh",
        c if c.rpc.is_some() => "rpc",
        c if c.send.is_some() => "send",
        c if c.ping.is_some() => "ping",
        _ => "unknown",
    }
}
