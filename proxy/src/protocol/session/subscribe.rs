//! `subscribe`, `unsubscribe` and `sub_refresh`, recovery, and what keeps subscriptions honest
//! over time (presence refresh, expiry, resync after lost messages).

use std::sync::Arc;

use bytes::Bytes;
use gyre_proto::protocol::{
    Push, Reply, SubRefreshRequest, SubRefreshResult, SubscribeRequest, SubscribeResult,
    Unsubscribe, UnsubscribeRequest, UnsubscribeResult,
};

use super::{ChannelState, CommandResult, Session, token_rejected};
use crate::auth::{Overrides, Reject, SubOptions, TokenUse};
use crate::config::ChannelOptions;
use crate::engine::{HistoryQuery, StreamPosition};
use crate::hub::{
    Interest, LivePosition, Subscription, TagsFilter, client_publication, delta_publication,
};
use crate::protocol::recovery::{self, Recovery};
use gyre_proto::codes::{self, Disconnect, UnsubscribeCode};

/// What a subscription was granted: the channel's options with the token's overrides applied,
/// and the request's wishes where the options allow them.
pub(super) struct Grant {
    pub positioned: bool,
    pub recoverable: bool,
    /// The client receives join/leave pushes.
    pub join_leave_pushes: bool,
    /// This client has a presence entry.
    pub presence: bool,
    /// This client's join/leave is announced.
    pub join_leave: bool,
    pub chan_info: Bytes,
    pub data: Bytes,
    pub expires_at: Option<i64>,
    /// The client refreshes the subscription itself when it expires (it is told `expires` and
    /// `ttl`); false when the namespace's sub_refresh proxy does it.
    pub client_refresh: bool,
    /// How long the channel's stream position lives (for an epoch created on subscribe).
    pub meta_ttl: std::time::Duration,
    /// The client's tags filter (`tf`), when the namespace allows one.
    pub filter: Option<Arc<TagsFilter>>,
    /// Fossil delta compression negotiated.
    pub delta: bool,
    /// The namespace's `delta_publish`.
    pub delta_publish: bool,
    /// Recovery gives only the latest publication (`force_recovery_mode = "cache"`).
    pub cache_recovery: bool,
}

impl Grant {
    /// A server-side subscription (token `channels`/`subs`): trusted, so only the namespace's
    /// (overridden) `force_*` options decide positioning and recovery. The client cannot
    /// refresh it: at its expiry the sub_refresh proxy decides, or it ends (2501).
    pub(super) fn server_side(options: &ChannelOptions, sub: &SubOptions) -> Self {
        let options = with_overrides(options, &sub.overrides);
        let history = options.has_history();
        Self {
            positioned: history && (options.force_positioning || options.force_recovery),
            recoverable: history && options.force_recovery,
            join_leave_pushes: options.force_push_join_leave,
            presence: options.presence,
            join_leave: options.join_leave,
            chan_info: sub.info.clone(),
            data: sub.data.clone(),
            expires_at: sub.expires_at,
            client_refresh: false,
            meta_ttl: options.history_meta_ttl,
            filter: None,
            delta: false,
            delta_publish: false,
            cache_recovery: sub.cache_recover || options.cache_recovery(),
        }
    }
}

/// A channel joined but not live yet: the caller queues the reply that carries `result`, then
/// calls `subscription.go_live`.
pub(super) struct Joined {
    pub subscription: Arc<Subscription>,
    pub result: SubscribeResult,
    pub live: LivePosition,
}

/// The channel's options as a token's `override` claim changes them.
fn with_overrides(options: &ChannelOptions, overrides: &Overrides) -> ChannelOptions {
    let mut options = options.clone();
    let set = |field: &mut bool, value: Option<bool>| {
        if let Some(value) = value {
            *field = value;
        }
    };
    set(&mut options.presence, overrides.presence);
    set(&mut options.join_leave, overrides.join_leave);
    set(
        &mut options.force_push_join_leave,
        overrides.force_push_join_leave,
    );
    set(&mut options.force_positioning, overrides.force_positioning);
    set(&mut options.force_recovery, overrides.force_recovery);
    options
}

impl Session {
    pub(super) async fn subscribe(
        &mut self,
        id: u32,
        request: SubscribeRequest,
    ) -> CommandResult<()> {
        let node = Arc::clone(&self.node);
        let channel = request.channel.clone();
        let options = node.config.channel_options(&channel).map_err(|error| {
            tracing::debug!(%channel, %error, "subscribe refused");
            codes::UNKNOWN_CHANNEL
        })?;
        let connected = self.connected()?;
        if connected.is_subscribed(&channel) {
            return Err(codes::ALREADY_SUBSCRIBED.into());
        }
        if connected.subscriptions.len() >= node.config.client.channel_limit as usize {
            return Err(codes::LIMIT_EXCEEDED.into());
        }
        let mut grant = self.authorize_subscribe(&request, options).await?;
        tags_filter_and_delta(&request, options, &mut grant)?;
        // A broken subscription (after a gap) is replaced by this one.
        if self.connected()?.subscriptions.contains_key(&channel) {
            self.leave_channel(&channel).await;
        }
        let recover = request.recover.then(|| StreamPosition {
            offset: request.offset,
            epoch: request.epoch.clone(),
        });
        let joined = self.join_channel(&channel, &grant, recover, false).await?;
        let reply = Reply {
            id,
            subscribe: Some(joined.result),
            ..Default::default()
        };
        match self.wire().encode_reply(&reply) {
            Ok(bytes) => {
                joined
                    .subscription
                    .go_live(Some(bytes), joined.live, self.now.instant);
                Ok(())
            }
            Err(error) => {
                tracing::warn!(%channel, %error, "subscribe reply not encodable");
                self.leave_channel(&channel).await;
                Err(codes::INAPPROPRIATE_PROTOCOL.into())
            }
        }
    }

    /// Server API `subscribe`: joins `channel` as a server-side subscription and tells the client
    /// with a subscribe push. Nothing happens for an unknown namespace or a channel the client
    /// already has.
    pub(super) async fn subscribe_server_side(
        &mut self,
        channel: &str,
        chan_info: Bytes,
        data: Bytes,
    ) {
        let Ok(connected) = self.connected() else {
            return;
        };
        if connected.subscriptions.contains_key(channel) {
            return;
        }
        let node = Arc::clone(&self.node);
        let Ok(options) = node.config.channel_options(channel) else {
            tracing::warn!(%channel, "server API subscribe to an unknown namespace ignored");
            return;
        };
        let sub = SubOptions {
            info: chan_info,
            data,
            overrides: Overrides::default(),
            expires_at: None,
            cache_recover: false,
        };
        let grant = Grant::server_side(options, &sub);
        let joined = match self.join_channel(channel, &grant, None, true).await {
            Ok(joined) => joined,
            Err(error) => {
                tracing::warn!(%channel, ?error, "server API subscribe failed");
                return;
            }
        };
        let result = joined.result;
        let push = Reply {
            push: Some(Push {
                channel: channel.to_owned(),
                subscribe: Some(gyre_proto::protocol::Subscribe {
                    recoverable: result.recoverable,
                    epoch: result.epoch,
                    offset: result.offset,
                    positioned: result.positioned,
                    data: result.data,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        match self.wire().encode_reply(&push) {
            Ok(bytes) => {
                joined
                    .subscription
                    .go_live(Some(bytes), joined.live, self.now.instant);
            }
            Err(error) => {
                tracing::warn!(%channel, %error, "subscribe push not encodable");
                self.leave_channel(channel).await;
            }
        }
    }

    /// Joins a channel: hub and engine subscription, presence, then the stream position (and
    /// recovery from `recover` when the grant allows it). Publications arriving meanwhile wait
    /// in the subscription. On failure nothing of the subscription is left behind.
    pub(super) async fn join_channel(
        &mut self,
        channel: &str,
        grant: &Grant,
        recover: Option<StreamPosition>,
        server_side: bool,
    ) -> CommandResult<Joined> {
        let node = Arc::clone(&self.node);
        let interest = Interest {
            join_leave: grant.join_leave_pushes,
            filter: grant.filter.clone(),
            delta: grant.delta,
            delta_publish: grant.delta_publish,
        };
        let subscription = Arc::new(Subscription::new(
            self.id,
            channel.to_owned(),
            self.wire(),
            interest,
            Arc::clone(&self.outbox),
            self.control.clone(),
        ));
        {
            let _gate = node.hub.channel_gate(channel).lock().await;
            if node.hub.add(Arc::clone(&subscription))
                && let Err(error) = self.effects.subscribe(channel).await
            {
                node.hub.remove(channel, self.id);
                return Err(error.into());
            }
        }
        let state = ChannelState {
            subscription: Arc::clone(&subscription),
            presence: grant.presence,
            join_leave: grant.join_leave,
            chan_info: grant.chan_info.clone(),
            expires_at: grant.expires_at,
            server_side,
        };
        self.connected_mut()?.subscriptions.insert(state);
        match self.position_channel(channel, grant, recover).await {
            Ok((result, live)) => {
                if grant.delta && !result.publications.is_empty() {
                    // The last recovered publication is the client's base for the next patch.
                    subscription.hold_delta_base();
                }
                Ok(Joined {
                    subscription,
                    result,
                    live,
                })
            }
            Err(error) => {
                self.leave_channel(channel).await;
                Err(error)
            }
        }
    }

    async fn position_channel(
        &self,
        channel: &str,
        grant: &Grant,
        recover: Option<StreamPosition>,
    ) -> CommandResult<(SubscribeResult, LivePosition)> {
        if grant.presence {
            let info = self.client_info(self.connected()?, grant.chan_info.clone());
            let ttl = self.node.presence_ttl();
            self.effects
                .add_presence(channel, &info, ttl, grant.join_leave)
                .await?;
        }
        let told = grant.expires_at.filter(|_| grant.client_refresh);
        let mut result = SubscribeResult {
            expires: told.is_some(),
            ttl: told.map_or(0, |at| {
                (at - self.now.unix).clamp(0, i64::from(u32::MAX)) as u32
            }),
            data: grant.data.clone(),
            delta: grant.delta,
            ..Default::default()
        };
        let mut live = LivePosition::default();
        if grant.positioned {
            let recover = recover.filter(|_| grant.recoverable);
            let outcome = self
                .read_position(channel, recover, grant.meta_ttl, grant.cache_recovery)
                .await?;
            result.positioned = true;
            result.recoverable = grant.recoverable;
            result.epoch = outcome.top.epoch.clone();
            result.offset = outcome.reply_offset;
            result.was_recovering = outcome.was_recovering;
            if outcome.was_recovering {
                let label = if outcome.recovered {
                    "recovered"
                } else {
                    "not_recovered"
                };
                metrics::counter!(crate::metrics::RECOVERIES, "outcome" => label).increment(1);
            }
            result.recovered = outcome.recovered;
            // Centrifugo filters recovered publications too; their offsets still move the
            // position the reply announces.
            let recovered = outcome
                .publications
                .iter()
                .filter(|p| grant.filter.as_ref().is_none_or(|f| f.matches(&p.tags)));
            if grant.delta
                && let Some(last) = outcome.publications.last()
            {
                self.node
                    .hub
                    .seed_delta_base(channel, last, &outcome.top.epoch);
            }
            result.publications = if grant.delta {
                delta_chain(recovered, self.wire().encoding)
            } else {
                recovered.map(client_publication).collect()
            };
            live = LivePosition {
                positioned: true,
                offset: outcome.top.offset,
                epoch: outcome.top.epoch,
            };
        }
        Ok((result, live))
    }

    /// docs/protocol.md#subscribe-permissions: token, user-limited channel, subscribe proxy,
    /// namespace permissions, insecure mode — in that order.
    pub(super) async fn authorize_subscribe(
        &self,
        request: &SubscribeRequest,
        options: &ChannelOptions,
    ) -> CommandResult<Grant> {
        let node = &self.node;
        let connected = self.connected()?;
        let channel = request.channel.as_str();
        let mut effective = options.clone();
        let mut grant = Grant {
            positioned: false,
            recoverable: false,
            join_leave_pushes: false,
            presence: false,
            join_leave: false,
            chan_info: Bytes::new(),
            data: Bytes::new(),
            expires_at: None,
            client_refresh: !options.sub_refresh_proxy_enabled,
            meta_ttl: options.history_meta_ttl,
            filter: None,
            delta: false,
            delta_publish: false,
            cache_recovery: options.cache_recovery(),
        };
        let user_limited = options.allow_user_limited_channels && channel.contains('#');
        if !request.token.is_empty() {
            let claims = self
                .effects
                .verify_subscribe(&request.token, self.now.unix)
                .await
                .map_err(|error| token_rejected(&error, TokenUse::Subscribe))?;
            if claims.channel != channel
                || claims.user != connected.user
                || claims
                    .client
                    .as_ref()
                    .is_some_and(|c| *c != self.client.to_string())
            {
                return Err(codes::INVALID_TOKEN.into());
            }
            grant.expires_at = claims.expires_at();
            effective = with_overrides(options, &claims.overrides);
            grant.chan_info = claims.info;
            grant.data = claims.data;
        } else if channel.starts_with('$') {
            return Err(codes::PERMISSION_DENIED.into());
        } else if user_limited && user_limited_allows(channel, &connected.user) {
            // Allowed: the channel names this user.
        } else if options.subscribe_proxy_enabled && !user_limited {
            return self
                .subscribe_by_proxy(options, channel, &request.token, &request.data)
                .await;
        } else if !(options.allow_subscribe_for_client
            && (!connected.user.is_empty() || options.allow_subscribe_for_anonymous))
            && !node.config.client.insecure
        {
            return Err(codes::PERMISSION_DENIED.into());
        }
        let options = &effective;
        // The client is not subscribed yet, but it counts as a subscriber of this channel (as in
        // Centrifugo): `allow_*_for_subscriber` is enough to ask for recovery, positioning and
        // join/leave pushes.
        let subscribed = true;
        let history_access = self.may_read_history(connected, options, subscribed);
        if options.has_history() {
            grant.recoverable = options.force_recovery
                || (request.recoverable && (options.allow_recovery || history_access));
            grant.positioned = grant.recoverable
                || options.force_positioning
                || (request.positioned && (options.allow_positioning || history_access));
        }
        grant.presence = options.presence;
        grant.join_leave = options.join_leave;
        grant.join_leave_pushes = options.force_push_join_leave
            || (request.join_leave && self.may_read_presence(connected, options, subscribed));
        Ok(grant)
    }

    /// Reads the stream for a positioned subscription and decides about recovery
    /// (docs/protocol.md#recovery-on-subscribe).
    /// The stream position always comes with a real epoch (created if the channel has none
    /// yet), so an empty epoch never reaches a client as "any stream". In cache mode only the
    /// latest publication is read.
    async fn read_position(
        &self,
        channel: &str,
        recover: Option<StreamPosition>,
        meta_ttl: std::time::Duration,
        cache: bool,
    ) -> CommandResult<Recovery> {
        let effects = &self.effects;
        let limit = self.node.config.client.recovery_max_publication_limit as usize;
        match recover {
            Some(since) if cache => {
                let latest = HistoryQuery {
                    since: None,
                    limit: Some(1),
                    reverse: true,
                };
                let mut history = effects.history(channel, latest).await?;
                if history.position.epoch.is_empty() {
                    history.position = effects.position(channel, meta_ttl).await?;
                }
                Ok(recovery::recover_cache(&since, history))
            }
            Some(since) => {
                let query = HistoryQuery {
                    since: Some(since.offset),
                    limit: (limit > 0).then_some(limit as u64 + 1),
                    reverse: false,
                };
                let mut history = effects.history(channel, query).await?;
                if history.position.epoch.is_empty() {
                    history.position = effects.position(channel, meta_ttl).await?;
                }
                Ok(recovery::recover(&since, history, limit))
            }
            None => {
                let position = effects.position(channel, meta_ttl).await?;
                Ok(recovery::position_only(position))
            }
        }
    }

    pub(super) async fn unsubscribe_command(
        &mut self,
        request: &UnsubscribeRequest,
    ) -> CommandResult<Reply> {
        self.connected()?;
        self.leave_channel(&request.channel).await;
        Ok(Reply {
            unsubscribe: Some(UnsubscribeResult {}),
            ..Default::default()
        })
    }

    /// Ends a subscription from the server side and tells the client why.
    pub(super) async fn unsubscribe_client(&mut self, channel: &str, code: UnsubscribeCode) {
        let subscribed = matches!(&self.state, super::State::Connected(c) if c.subscriptions.contains_key(channel));
        if !subscribed {
            return;
        }
        self.leave_channel(channel).await;
        self.queue(&Reply {
            push: Some(Push {
                channel: channel.to_owned(),
                unsubscribe: Some(Unsubscribe {
                    code: code.code,
                    reason: code.reason.to_owned(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
    }

    /// Removes this client from a channel: hub, engine subscription if it was the last local
    /// subscriber, presence (with a leave when the namespace announces them).
    pub(super) async fn leave_channel(&mut self, channel: &str) {
        let super::State::Connected(connected) = &mut self.state else {
            return;
        };
        let Some(state) = connected.subscriptions.remove(channel) else {
            return;
        };
        let info = self.client_info_for(channel, state.chan_info.clone());
        let node = Arc::clone(&self.node);
        {
            let _gate = node.hub.channel_gate(channel).lock().await;
            if node.hub.remove(channel, self.id)
                && let Err(error) = self.effects.unsubscribe(channel).await
            {
                tracing::warn!(%channel, %error, "engine unsubscribe failed");
            }
        }
        if state.presence
            && let Some(info) = info
            && let Err(error) = self
                .effects
                .remove_presence(channel, &info, state.join_leave)
                .await
        {
            tracing::warn!(%channel, %error, "presence removal failed");
        }
    }

    fn client_info_for(&self, _channel: &str, chan_info: Bytes) -> Option<gyre_proto::ClientInfo> {
        match &self.state {
            super::State::Connected(c) => Some(self.client_info(c, chan_info)),
            super::State::Connecting { .. } => None,
        }
    }

    pub(super) async fn sub_refresh(
        &mut self,
        request: &SubRefreshRequest,
    ) -> CommandResult<Reply> {
        let node = Arc::clone(&self.node);
        if request.token.is_empty()
            && let Ok(options) = node.config.channel_options(&request.channel)
            && options.sub_refresh_proxy_enabled
        {
            // No token to check: the namespace's sub_refresh proxy decides.
            if !self
                .connected()?
                .subscriptions
                .contains_key(&request.channel)
            {
                return Err(codes::PERMISSION_DENIED.into());
            }
            let now = self.now.unix;
            return match self
                .sub_refresh_by_proxy(options, &request.channel, now)
                .await
            {
                crate::hooks::outcome::SubRefresh::Expired => Err(codes::EXPIRED.into()),
                crate::hooks::outcome::SubRefresh::Prolonged { .. } => Ok(Reply {
                    sub_refresh: Some(SubRefreshResult::default()),
                    ..Default::default()
                }),
            };
        }
        let claims = match self
            .effects
            .verify_subscribe(&request.token, self.now.unix)
            .await
        {
            Ok(claims) => claims,
            Err(error) if error.outcome(TokenUse::SubRefresh) == Reject::Expired => {
                // Nothing changes: the subscription ends when its current token runs out.
                return Ok(Reply {
                    sub_refresh: Some(SubRefreshResult::default()),
                    ..Default::default()
                });
            }
            Err(error) => return Err(token_rejected(&error, TokenUse::SubRefresh)),
        };
        let client = self.client.to_string();
        let now = self.now.unix;
        let connected = self.connected_mut()?;
        if claims.channel != request.channel
            || claims.user != connected.user
            || claims.client.as_ref().is_some_and(|c| *c != client)
        {
            return Err(codes::INVALID_TOKEN.into());
        }
        let Some(state) = connected.subscriptions.get_mut(&request.channel) else {
            return Err(codes::PERMISSION_DENIED.into());
        };
        state.expires_at = claims.expires_at();
        Ok(Reply {
            sub_refresh: Some(SubRefreshResult {
                expires: state.expires_at.is_some(),
                ttl: state
                    .expires_at
                    .map_or(0, |at| (at - now).clamp(0, i64::from(u32::MAX)) as u32),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    /// Keeps this client's presence entries alive.
    pub(super) async fn update_presence(&self) {
        let super::State::Connected(connected) = &self.state else {
            return;
        };
        let ttl = self.node.presence_ttl();
        for (channel, state) in connected.subscriptions.iter().filter(|(_, s)| s.presence) {
            let info = self.client_info(connected, state.chan_info.clone());
            if let Err(error) = self
                .effects
                .add_presence(channel, &info, ttl, state.join_leave)
                .await
            {
                tracing::warn!(%channel, %error, "presence refresh failed");
            }
        }
    }

    /// Subscriptions past their expiry (plus `expired_sub_close_delay`): the namespace's
    /// sub_refresh proxy may prolong them; the others are unsubscribed (2501), their token not
    /// refreshed in time.
    pub(super) async fn expire_subscriptions(&mut self) {
        let now_unix = self.now.unix;
        let grace = self.node.config.client.expired_sub_close_delay.as_secs() as i64;
        let expired: Vec<String> = match &self.state {
            super::State::Connected(c) => c
                .subscriptions
                .iter()
                .filter(|(_, s)| s.expires_at.is_some_and(|at| now_unix >= at + grace))
                .map(|(channel, _)| channel.clone())
                .collect(),
            super::State::Connecting { .. } => return,
        };
        let node = Arc::clone(&self.node);
        for channel in expired {
            if let Ok(options) = node.config.channel_options(&channel)
                && options.sub_refresh_proxy_enabled
                && let crate::hooks::outcome::SubRefresh::Prolonged { .. } =
                    self.sub_refresh_by_proxy(options, &channel, now_unix).await
            {
                continue;
            }
            self.unsubscribe_client(&channel, codes::UNSUBSCRIBE_EXPIRED)
                .await;
        }
    }

    /// A subscription can no longer guarantee continuity: a client-side one is unsubscribed with
    /// 2500 (the SDK resubscribes and recovers), a server-side one ends the connection with 3010
    /// (the SDK reconnects and recovers it through the connect command).
    pub(super) async fn lose_continuity(&mut self, channel: &str) -> Result<(), Disconnect> {
        let server_side = match &self.state {
            super::State::Connected(c) => c.subscriptions.get(channel).map(|s| s.server_side),
            super::State::Connecting { .. } => None,
        };
        match server_side {
            Some(true) => Err(codes::INSUFFICIENT_STATE),
            Some(false) => {
                self.unsubscribe_client(channel, codes::UNSUBSCRIBE_INSUFFICIENT_STATE)
                    .await;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// After the engine may have lost messages: every positioned subscription whose stream moved
    /// past what this client received loses continuity (see [`Self::lose_continuity`]).
    pub(super) async fn resync(&mut self) -> Result<(), Disconnect> {
        self.verify_positions(None).await
    }

    /// Compares positioned subscriptions (with `idle`: only those whose position has not
    /// advanced for that long) with their streams; one that moved on loses continuity. A stream
    /// that cannot be read counts as moved: nothing may be missed silently.
    pub(super) async fn verify_positions(
        &mut self,
        idle: Option<std::time::Duration>,
    ) -> Result<(), Disconnect> {
        let now = self.now.instant;
        let positioned: Vec<(String, LivePosition)> = match &self.state {
            super::State::Connected(c) => c
                .subscriptions
                .iter()
                .filter_map(|(channel, s)| {
                    let position = match idle {
                        Some(idle) => s.subscription.idle_position(idle, now)?,
                        None => s.subscription.position(),
                    };
                    position.positioned.then(|| (channel.clone(), position))
                })
                .collect(),
            super::State::Connecting { .. } => return Ok(()),
        };
        for (channel, position) in positioned {
            let query = HistoryQuery {
                limit: Some(0),
                ..Default::default()
            };
            let moved = match self.effects.history(&channel, query).await {
                Ok(history) => {
                    let top = history.position;
                    top.offset != position.offset
                        || (!position.epoch.is_empty() && top.epoch != position.epoch)
                }
                Err(error) => {
                    tracing::warn!(%channel, %error, "resync read failed");
                    true
                }
            };
            if moved {
                self.lose_continuity(&channel).await?;
            }
        }
        Ok(())
    }
}

/// The request's tags filter and delta wish, checked once the client may subscribe (as in
/// Centrifugo): a `tf` needs the namespace's `allow_tags_filter` and must be valid (else 107);
/// delta compression is negotiated when the namespace allows fossil, the subscription is
/// positioned (deltas chain through offsets) and no tags filter thins the stream.
fn tags_filter_and_delta(
    request: &SubscribeRequest,
    options: &ChannelOptions,
    grant: &mut Grant,
) -> CommandResult<()> {
    let channel = &request.channel;
    if let Some(node) = &request.tf {
        if !options.allow_tags_filter {
            tracing::debug!(%channel, "tags filter refused: allow_tags_filter is off");
            return Err(codes::BAD_REQUEST.into());
        }
        let filter = TagsFilter::compile(node).map_err(|error| {
            tracing::debug!(%channel, %error, "invalid tags filter");
            codes::BAD_REQUEST
        })?;
        grant.filter = Some(Arc::new(filter));
    }
    grant.delta = request.delta == "fossil"
        && options.allowed_delta_types.iter().any(|t| t == "fossil")
        && grant.positioned
        && grant.filter.is_none();
    grant.delta_publish = options.delta_publish;
    Ok(())
}

/// Recovered publications for a delta subscriber: the first whole, each next one as a patch
/// against its predecessor when that is smaller (JSON clients get the data as JSON strings).
fn delta_chain<'a>(
    publications: impl Iterator<Item = &'a gyre_proto::Publication>,
    encoding: gyre_proto::Encoding,
) -> Vec<gyre_proto::Publication> {
    let mut previous: Option<&Bytes> = None;
    let mut out = Vec::new();
    for publication in publications {
        let data = &publication.data;
        let patched = previous.and_then(|base| {
            let patch = gyre_proto::fossil::create(base, data);
            (patch.len() < data.len())
                .then(|| delta_publication(publication, &Bytes::from(patch), true, encoding))
                .flatten()
        });
        out.push(
            patched
                .or_else(|| delta_publication(publication, data, false, encoding))
                // Data a JSON client cannot take: the reply fails to encode, as without delta.
                .unwrap_or_else(|| client_publication(publication)),
        );
        previous = Some(data);
    }
    out
}

/// `news#42,43`: only the users listed after `#` may subscribe.
fn user_limited_allows(channel: &str, user: &str) -> bool {
    match channel.split_once('#') {
        Some((_, users)) => !user.is_empty() && users.split(',').any(|u| u == user),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::user_limited_allows;

    #[test]
    fn user_limited_channels_list_their_users() {
        assert!(user_limited_allows("dialog#42,43", "43"));
        assert!(!user_limited_allows("dialog#42,43", "4"));
        assert!(!user_limited_allows("news", "42"));
        assert!(!user_limited_allows("news#", ""));
    }
}
