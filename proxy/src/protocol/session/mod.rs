//! THE client session: one per connection, whatever the transport.
//!
//! A transport feeds it what the client sent ([`Session::handle_frame`]), what the node signals
//! ([`Session::handle_control`]) and the passing of time ([`Session::handle_timeout`] at
//! [`Session::deadline`]); the session answers by queueing encoded messages in the connection's
//! [`Outbox`] and, when the connection must end, by returning a [`Disconnect`]. It never touches
//! a socket, so every transport behaves the same.
//!
//! Commands: [`connect`], [`subscribe`] (subscribe, unsubscribe, recovery), [`channel`] (publish,
//! history, presence), refresh and the rest here; [`hooks`]: where the backend hooks are called
//! and their answers applied (connect, refresh, subscribe, publish, sub_refresh, RPC).

mod channel;
pub use channel::history_options;
mod connect;
mod hooks;
mod subscribe;

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
    /// Unix seconds after which the connection must be refreshed; `None` = never expires.
    expires_at: Option<i64>,
    subscriptions: ChannelMap,
    next_ping: Instant,
    /// Set while a ping waits for its pong: the deadline for it.
    pong_deadline: Option<Instant>,
    next_presence_update: Instant,
    /// When positioned subscriptions that went quiet are next compared with their streams.
    next_position_check: Instant,
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
    /// `context`: the connection request's headers that hooks forward (see
    /// [`crate::hooks::Hooks::capture`]).
    pub fn new(
        node: Arc<Node>,
        transport: TransportInfo,
        outbox: Arc<Outbox>,
        control: ControlSender,
        context: crate::hooks::headers::ClientContext,
    ) -> Self {
        let id = node.next_connection_id();
        node.hub.register_connection(id, control.clone());
        let deadline = Instant::now() + node.config.client.stale_close_delay;
        Self {
            node,
            id,
            client: uuid::Uuid::new_v4(),
            transport,
            outbox,
            control,
            state: State::Connecting { deadline },
            context,
            halted: false,
            connect_outcome: None,
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

    /// Handles one frame from the client: every command in it, in order.
    pub async fn handle_frame(&mut self, frame: Bytes) -> Result<(), Disconnect> {
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
        let State::Connected(connected) = &mut self.state else {
            return Err(codes::DISCONNECT_BAD_REQUEST);
        };
        if command.send.is_some() {
            // No backend message handler exists yet.
            return Err(codes::DISCONNECT_NOT_AVAILABLE);
        }
        let pongs_expected = !self.node.config.client.pong_timeout.is_zero();
        if connected.pong_deadline.take().is_none() && pongs_expected {
            return Err(codes::DISCONNECT_BAD_REQUEST);
        }
        Ok(())
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

    /// Handles a signal from the hub.
    pub async fn handle_control(&mut self, control: Control) -> Result<(), Disconnect> {
        match control {
            Control::Emulation(frame) => self.handle_frame(frame).await,
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
                    connected.expires_at = expires_at;
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
            State::Connected(c) => {
                let next = c
                    .pong_deadline
                    .unwrap_or(c.next_ping)
                    .min(c.next_presence_update)
                    .min(c.next_position_check);
                match self.server_refresh_at(c) {
                    Some(at) => next.min(at),
                    None => next,
                }
            }
        }
    }

    /// Pings, pong deadline, presence refresh, connection and subscription expiry.
    pub async fn handle_timeout(&mut self, now: Instant) -> Result<(), Disconnect> {
        let config = Arc::clone(&self.node.config);
        let ping = self.wire().empty_message();
        let connected = match &mut self.state {
            State::Connecting { deadline } if now >= *deadline => return Err(codes::STALE),
            State::Connecting { .. } => return Ok(()),
            State::Connected(c) => c,
        };
        if let Some(deadline) = connected.pong_deadline
            && now >= deadline
        {
            return Err(codes::NO_PONG);
        }
        if connected.pong_deadline.is_none() && now >= connected.next_ping {
            self.outbox.push(ping);
            if !config.client.pong_timeout.is_zero() && self.transport.mode != Mode::Unidirectional
            {
                connected.pong_deadline = Some(now + config.client.pong_timeout);
            }
            connected.next_ping = now + config.client.ping_interval;
        }
        let unix = unix_now();
        if self.node.hooks.refresh().is_some() {
            // The refresh proxy decides, at the expiry itself.
            if connected.expires_at.is_some_and(|at| unix >= at) {
                self.refresh_by_proxy(unix).await?;
            }
        } else {
            let grace = config.client.expired_close_delay.as_secs() as i64;
            if connected
                .expires_at
                .is_some_and(|at| unix >= at.saturating_add(grace))
            {
                return Err(codes::CONNECTION_EXPIRED);
            }
        }
        let State::Connected(connected) = &mut self.state else {
            return Ok(());
        };
        if now >= connected.next_position_check {
            connected.next_position_check = now + POSITION_CHECK_DELAY;
            self.verify_positions(Some(POSITION_CHECK_DELAY)).await?;
        }
        let State::Connected(connected) = &mut self.state else {
            return Ok(());
        };
        if now >= connected.next_presence_update {
            connected.next_presence_update = now + config.client.presence_update_interval;
            self.update_presence().await;
            self.expire_subscriptions(unix).await;
        }
        Ok(())
    }

    /// Ends the session: leaves every channel and the hub. Call once, when the transport closes.
    pub async fn close(&mut self) {
        if let State::Connected(connected) = &mut self.state {
            let channels: Vec<String> = connected.subscriptions.keys().cloned().collect();
            for channel in channels {
                self.leave_channel(&channel).await;
            }
        }
        self.node.hub.unregister_connection(self.id);
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

/// A positioned subscription that received nothing for this long is compared with its stream
/// (Centrifugo's `channel_position_check_delay` default): PUB/SUB is at-most-once, and a lost
/// last publication leaves no gap for the offset checks to see.
const POSITION_CHECK_DELAY: std::time::Duration = std::time::Duration::from_secs(40);

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

pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
