//! `connect` and `refresh`: who the client is and how long it may stay.

use bytes::Bytes;
use gyre_proto::protocol::{
    Connect, ConnectRequest, ConnectResult, Push, RefreshRequest, RefreshResult, Reply,
    SubscribeRequest,
};

use super::subscribe::{Grant, Joined};
use super::timers::Timers;
use super::{CommandResult, Connected, Mode, Session, State, token_rejected};
use crate::auth::{ConnectToken, SubOptions, TokenUse};
use crate::engine::StreamPosition;
use gyre_proto::codes;

/// Who a connect command proved to be.
struct Credentials {
    user: String,
    conn_info: Bytes,
    expires_at: Option<i64>,
    /// Server-side subscriptions from the token's `channels` and `subs` claims, or the connect
    /// proxy's `channels` and `subs`.
    subscriptions: Vec<(String, SubOptions)>,
    /// For the connect result (from the connect proxy).
    data: Bytes,
    /// Whether the channels a unidirectional client names itself are joined (with the
    /// permission checks of a subscribe). Not after the connect proxy: it answered for them.
    join_requested: bool,
}

impl Session {
    /// Authenticates, joins the server-side channels, and queues the connect reply (itself, so
    /// that no publication of those channels can precede it). A failure leaves the session
    /// unconnected.
    pub(super) async fn connect(&mut self, id: u32, request: &ConnectRequest) -> CommandResult<()> {
        // Headers emulation: what hooks forward of them is kept for every later call.
        self.context
            .add_emulated(self.node.hooks.emulated_names(), &request.headers);
        let mut credentials = self.credentials(request).await?;
        let requested = self.admit(&credentials, request)?;
        let granted = std::mem::take(&mut credentials.subscriptions);
        let mut result = self.enter_connected(credentials);
        let joined = match self.join_all(&granted, &requested, request).await {
            Ok(joined) => joined,
            Err(error) => {
                // The client learns about the failure and nothing stays behind.
                self.node.hub.forget_identity(self.id);
                self.state = State::Connecting {
                    deadline: self.now.instant + self.node.config.client.stale_close_delay,
                };
                return Err(error);
            }
        };
        result.subs = joined
            .iter()
            .map(|j| (j.subscription.channel.clone(), j.result.clone()))
            .collect();
        if self.transport.mode == Mode::Unidirectional {
            self.send_reply(Reply {
                push: Some(Push {
                    connect: Some(connect_push(result)),
                    ..Default::default()
                }),
                ..Default::default()
            });
        } else {
            self.send_reply(Reply {
                id,
                connect: Some(result),
                ..Default::default()
            });
        }
        for Joined {
            subscription, live, ..
        } in joined
        {
            subscription.go_live(None, live, self.now.instant);
        }
        Ok(())
    }

    /// The limits a connection must fit: connections per user, channels per connection, an
    /// unexpired token. Returns the channels a unidirectional client asked to join beyond the
    /// granted ones.
    fn admit(
        &self,
        credentials: &Credentials,
        request: &ConnectRequest,
    ) -> CommandResult<Vec<String>> {
        let config = &self.node.config.client;
        let per_user = config.user_connection_limit as usize;
        if per_user > 0
            && !credentials.user.is_empty()
            && self.node.hub.user_connections(&credentials.user) >= per_user
        {
            return Err(codes::CONNECTION_LIMIT.into());
        }
        let requested = if credentials.join_requested {
            self.requested_channels(request, &credentials.subscriptions)
        } else {
            Vec::new()
        };
        if credentials.subscriptions.len() + requested.len() > config.channel_limit as usize {
            return Err(codes::CHANNEL_LIMIT.into());
        }
        if credentials.expires_at.is_some_and(|at| at <= self.now.unix) {
            return Err(codes::EXPIRED.into());
        }
        Ok(requested)
    }

    /// Makes the session connected as `credentials` say (its timers start now, the hub learns
    /// its user, an emulated client gets its session id) and returns the connect result
    /// without its subscriptions.
    fn enter_connected(&mut self, credentials: Credentials) -> ConnectResult {
        let rules = self.rules();
        let ping = rules.ping_interval;
        let first_ping = self.node.entropy.between(ping / 2, ping);
        // With the refresh proxy the server refreshes the connection itself: the client is not
        // told about the expiry.
        let client_refresh = !rules.refresh_by_proxy;
        let mut result = ConnectResult {
            client: self.client.to_string(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            expires: credentials.expires_at.is_some() && client_refresh,
            ttl: if client_refresh {
                seconds_left(credentials.expires_at, self.now.unix)
            } else {
                0
            },
            data: credentials.data,
            ping: ping.as_secs() as u32,
            // `client.pong_timeout = 0` turns pongs off, and a unidirectional client cannot
            // send them: the client is told not to.
            pong: rules.pong_timeout.is_some(),
            ..Default::default()
        };
        if self.transport.mode == Mode::Emulated {
            // The session id is what lets `/emulation` POSTs act for this client: unguessable,
            // and not the client id, which other clients see in presence.
            let session = self.node.entropy.uuid().to_string();
            self.node.hub.register_session(self.id, &session);
            result.session = session;
            result.node = self.node.id.clone();
        }
        self.node
            .hub
            .identify(self.id, &credentials.user, self.client);
        self.state = State::Connected(Box::new(Connected {
            user: credentials.user,
            conn_info: credentials.conn_info,
            subscriptions: super::ChannelMap::default(),
            timers: Timers::start(self.now, &rules, first_ping, credentials.expires_at),
        }));
        result
    }

    /// Joins the granted channels, then the requested ones; when one fails, leaves those
    /// joined before it.
    async fn join_all(
        &mut self,
        granted: &[(String, SubOptions)],
        requested: &[String],
        request: &ConnectRequest,
    ) -> CommandResult<Vec<Joined>> {
        let mut joined = Vec::with_capacity(granted.len() + requested.len());
        let joins = granted
            .iter()
            .map(|(channel, sub)| (channel, Some(sub)))
            .chain(requested.iter().map(|channel| (channel, None)));
        for (channel, sub) in joins {
            let outcome = match sub {
                Some(sub) => self.join_server_side(channel, sub, request).await,
                None => self.join_requested(channel, request).await,
            };
            match outcome {
                Ok(subscription) => joined.push(subscription),
                Err(error) => {
                    for Joined { subscription, .. } in joined {
                        self.leave_channel(&subscription.channel).await;
                    }
                    return Err(error);
                }
            }
        }
        Ok(joined)
    }

    /// Joins one channel of the token's `channels`/`subs`, recovering it when the SDK sent its
    /// last position in `ConnectRequest.subs`.
    async fn join_server_side(
        &mut self,
        channel: &str,
        sub: &SubOptions,
        request: &ConnectRequest,
    ) -> CommandResult<Joined> {
        let options = self
            .node
            .config
            .channel_options(channel)
            .map_err(|_| codes::UNKNOWN_CHANNEL)?;
        let grant = Grant::server_side(options, sub);
        let recover = request
            .subs
            .get(channel)
            .filter(|position| position.recover)
            .map(|position| StreamPosition {
                offset: position.offset,
                epoch: position.epoch.clone(),
            });
        self.join_channel(channel, &grant, recover, true).await
    }

    /// Channels a unidirectional client names in `ConnectRequest.subs` beyond the token's: it
    /// has no other way to subscribe. The channel limit counts them too.
    fn requested_channels(
        &self,
        request: &ConnectRequest,
        granted: &[(String, SubOptions)],
    ) -> Vec<String> {
        if self.transport.mode != Mode::Unidirectional {
            return Vec::new();
        }
        let mut channels: Vec<String> = request
            .subs
            .keys()
            .filter(|channel| !granted.iter().any(|(granted, _)| granted == *channel))
            .cloned()
            .collect();
        channels.sort();
        channels
    }

    /// Subscribes a unidirectional client to a channel it asked for in its connect request, with
    /// the permission checks of a subscribe command (and recovery from the position it sent).
    async fn join_requested(
        &mut self,
        channel: &str,
        request: &ConnectRequest,
    ) -> CommandResult<Joined> {
        let position = request.subs.get(channel).cloned().unwrap_or_default();
        let subscribe = SubscribeRequest {
            channel: channel.to_owned(),
            recover: position.recover,
            offset: position.offset,
            epoch: position.epoch,
            positioned: true,
            recoverable: true,
            ..Default::default()
        };
        let node = std::sync::Arc::clone(&self.node);
        let options = node
            .config
            .channel_options(channel)
            .map_err(|_| codes::UNKNOWN_CHANNEL)?;
        let grant = self.authorize_subscribe(&subscribe, options).await?;
        let recover = subscribe.recover.then(|| StreamPosition {
            offset: subscribe.offset,
            epoch: subscribe.epoch.clone(),
        });
        self.join_channel(channel, &grant, recover, true).await
    }

    /// The token's claims; without a token, the connect proxy's answer; else anonymous when
    /// allowed (docs/protocol.md#connecting).
    async fn credentials(&mut self, request: &ConnectRequest) -> CommandResult<Credentials> {
        let node = std::sync::Arc::clone(&self.node);
        let config = &node.config.client;
        if request.token.is_empty() {
            if let Some(backend) = node.hooks.connect()
                && let Some(proxied) = self.connect_by_proxy(backend, request).await?
            {
                return Ok(Credentials {
                    user: proxied.user,
                    conn_info: proxied.conn_info,
                    expires_at: proxied.expires_at,
                    subscriptions: proxied.subscriptions,
                    data: proxied.data,
                    join_requested: false,
                });
            }
            if config.allow_anonymous_connect_without_token || config.insecure {
                return Ok(Credentials {
                    user: String::new(),
                    conn_info: Bytes::new(),
                    expires_at: None,
                    subscriptions: Vec::new(),
                    data: Bytes::new(),
                    join_requested: true,
                });
            }
            return Err(codes::DISCONNECT_BAD_REQUEST.into());
        }
        let mut claims = self
            .effects
            .verify_connect(&request.token, self.now.unix)
            .await
            .map_err(|error| token_rejected(&error, TokenUse::Connect))?;
        if claims.user.is_empty() && config.disallow_anonymous_connection_tokens {
            // As Centrifugo: a disconnect that tells the SDK not to try again with that token.
            return Err(codes::DISCONNECT_PERMISSION_DENIED.into());
        }
        if node.hooks.keeps_meta() {
            self.context.set_meta(std::mem::take(&mut claims.meta));
        }
        Ok(credentials_from(claims))
    }

    pub(super) async fn refresh(&mut self, request: &RefreshRequest) -> CommandResult<Reply> {
        // With the refresh proxy the server refreshes connections; a client must not.
        if request.token.is_empty() || self.node.hooks.refresh().is_some() {
            return Err(codes::DISCONNECT_BAD_REQUEST.into());
        }
        let mut claims = self
            .effects
            .verify_connect(&request.token, self.now.unix)
            .await
            .map_err(|error| token_rejected(&error, TokenUse::Refresh))?;
        if self.node.hooks.keeps_meta() && !claims.meta.is_empty() {
            self.context.set_meta(std::mem::take(&mut claims.meta));
        }
        let credentials = credentials_from(claims);
        let now_unix = self.now.unix;
        let connected = self.connected_mut()?;
        if credentials.user != connected.user {
            return Err(codes::INVALID_TOKEN.into());
        }
        if credentials.expires_at.is_some_and(|at| at <= now_unix) {
            return Err(codes::EXPIRED.into());
        }
        connected.timers.expires_at = credentials.expires_at;
        if !credentials.conn_info.is_empty() {
            connected.conn_info = credentials.conn_info;
        }
        Ok(Reply {
            refresh: Some(RefreshResult {
                client: self.client.to_string(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                expires: credentials.expires_at.is_some(),
                ttl: seconds_left(credentials.expires_at, now_unix),
            }),
            ..Default::default()
        })
    }
}

/// Seconds until `expires_at` (unix seconds) for the `ttl` of connect and refresh results; 0
/// when the connection does not expire.
fn seconds_left(expires_at: Option<i64>, now_unix: i64) -> u32 {
    expires_at.map_or(0, |at| (at - now_unix).clamp(0, i64::from(u32::MAX)) as u32)
}

/// The connect result as the push that carries it to a unidirectional client.
fn connect_push(result: ConnectResult) -> Connect {
    Connect {
        client: result.client,
        version: result.version,
        data: result.data,
        subs: result.subs,
        expires: result.expires,
        ttl: result.ttl,
        ping: result.ping,
        pong: result.pong,
        session: result.session,
        node: result.node,
        time: result.time,
    }
}

fn credentials_from(claims: ConnectToken) -> Credentials {
    let expires_at = claims.expires_at();
    let mut subscriptions: Vec<(String, SubOptions)> = claims
        .channels
        .into_iter()
        .filter(|channel| !claims.subs.contains_key(channel))
        .map(|channel| (channel, SubOptions::default()))
        .collect();
    subscriptions.extend(claims.subs);
    Credentials {
        expires_at,
        user: claims.user,
        conn_info: claims.info,
        subscriptions,
        data: Bytes::new(),
        join_requested: true,
    }
}
