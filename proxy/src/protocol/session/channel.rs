//! `publish`, `history`, `presence` and `presence_stats`, with their permission rules
//! (docs/protocol.md#channel-command-permissions):
//! the namespace's `allow_*_for_client`, or `allow_*_for_subscriber` when subscribed (or while
//! subscribing, for what the subscribe command grants); anonymous users also need
//! `allow_*_for_anonymous`; `client.insecure` allows everything.

use gyre_proto::protocol::{
    HistoryRequest, HistoryResult as HistoryReply, PresenceRequest, PresenceResult,
    PresenceStatsRequest, PresenceStatsResult, PublishRequest, PublishResult, Reply,
};

use super::{CommandResult, Connected, Session};
use crate::config::ChannelOptions;
use crate::engine::{HistoryOptions, HistoryQuery, PublishOptions};
use crate::hub::client_publication;
use gyre_proto::codes;

/// One permission family of a namespace: `allow_<what>_for_client|subscriber|anonymous`.
struct Permission {
    for_client: bool,
    for_subscriber: bool,
    for_anonymous: bool,
}

impl Connected {
    /// Whether the client has a live subscription to `channel` (a broken one, waiting to be
    /// replaced, does not count).
    pub(super) fn is_subscribed(&self, channel: &str) -> bool {
        self.subscriptions
            .get(channel)
            .is_some_and(|s| !s.subscription.is_broken())
    }
}

impl Session {
    /// `subscribed`: whether `allow_*_for_subscriber` applies, i.e. the client is subscribed to
    /// the channel, or is subscribing to it (see [`Session::authorize_subscribe`]).
    fn allowed(&self, connected: &Connected, subscribed: bool, permission: Permission) -> bool {
        if self.node.config.client.insecure {
            return true;
        }
        if connected.user.is_empty() && !permission.for_anonymous {
            return false;
        }
        permission.for_client || (permission.for_subscriber && subscribed)
    }

    pub(super) fn may_read_history(
        &self,
        connected: &Connected,
        options: &ChannelOptions,
        subscribed: bool,
    ) -> bool {
        self.allowed(
            connected,
            subscribed,
            Permission {
                for_client: options.allow_history_for_client,
                for_subscriber: options.allow_history_for_subscriber,
                for_anonymous: options.allow_history_for_anonymous,
            },
        )
    }

    pub(super) fn may_read_presence(
        &self,
        connected: &Connected,
        options: &ChannelOptions,
        subscribed: bool,
    ) -> bool {
        self.allowed(
            connected,
            subscribed,
            Permission {
                for_client: options.allow_presence_for_client,
                for_subscriber: options.allow_presence_for_subscriber,
                for_anonymous: options.allow_presence_for_anonymous,
            },
        )
    }

    fn options(&self, channel: &str) -> CommandResult<&ChannelOptions> {
        self.node
            .config
            .channel_options(channel)
            .map_err(|_| codes::UNKNOWN_CHANNEL.into())
    }

    pub(super) async fn publish(&mut self, request: PublishRequest) -> CommandResult<Reply> {
        let node = std::sync::Arc::clone(&self.node);
        let options = node
            .config
            .channel_options(&request.channel)
            .map_err(|_| codes::UNKNOWN_CHANNEL)?;
        let mut data = request.data;
        let mut publish_options = PublishOptions {
            history: history_options(options),
            ..Default::default()
        };
        if options.publish_proxy_enabled {
            // The backend decides instead of the namespace's permissions.
            let change = self
                .publish_by_proxy(options, &request.channel, &data)
                .await?;
            if let Some(replaced) = change.data {
                data = replaced;
            }
            if change.skip_history {
                publish_options.history = None;
            }
            publish_options.tags = change.tags;
            publish_options.idempotency_key = change.idempotency_key;
            publish_options.delta = change.delta;
            publish_options.version = change.version;
            publish_options.version_epoch = change.version_epoch;
        } else {
            let connected = self.connected()?;
            let permitted = self.allowed(
                connected,
                connected.is_subscribed(&request.channel),
                Permission {
                    for_client: options.allow_publish_for_client,
                    for_subscriber: options.allow_publish_for_subscriber,
                    for_anonymous: options.allow_publish_for_anonymous,
                },
            );
            if !permitted {
                return Err(codes::PERMISSION_DENIED.into());
            }
        }
        let connected = self.connected()?;
        let chan_info = connected
            .subscriptions
            .get(&request.channel)
            .map(|s| s.chan_info.clone())
            .unwrap_or_default();
        publish_options.info = Some(self.client_info(connected, chan_info));
        self.effects
            .publish(&request.channel, data, &publish_options)
            .await?;
        Ok(Reply {
            publish: Some(PublishResult {}),
            ..Default::default()
        })
    }

    pub(super) async fn history(&mut self, request: &HistoryRequest) -> CommandResult<Reply> {
        let options = self.options(&request.channel)?;
        let connected = self.connected()?;
        if !self.may_read_history(
            connected,
            options,
            connected.is_subscribed(&request.channel),
        ) {
            return Err(codes::PERMISSION_DENIED.into());
        }
        if history_options(options).is_none() {
            return Err(codes::NOT_AVAILABLE.into());
        }
        let cap = self.node.config.client.history_max_publication_limit as u64;
        let limit = match request.limit {
            0 => 0,
            n if n < 0 => cap,
            n => (n as u64).min(cap),
        };
        if request.reverse && request.since.as_ref().is_some_and(|s| s.offset == 0) {
            return Err(codes::BAD_REQUEST.into());
        }
        let query = HistoryQuery {
            since: request.since.as_ref().map(|s| s.offset),
            limit: Some(limit),
            reverse: request.reverse,
        };
        let history = self.effects.history(&request.channel, query).await?;
        if let Some(since) = &request.since
            && !since.epoch.is_empty()
            && since.epoch != history.position.epoch
        {
            return Err(codes::UNRECOVERABLE_POSITION.into());
        }
        Ok(Reply {
            history: Some(HistoryReply {
                publications: history
                    .publications
                    .iter()
                    .map(client_publication)
                    .collect(),
                epoch: history.position.epoch,
                offset: history.position.offset,
            }),
            ..Default::default()
        })
    }

    pub(super) async fn presence(&mut self, request: &PresenceRequest) -> CommandResult<Reply> {
        self.check_presence_access(&request.channel)?;
        let presence = self.effects.presence(&request.channel).await?;
        Ok(Reply {
            presence: Some(PresenceResult { presence }),
            ..Default::default()
        })
    }

    pub(super) async fn presence_stats(
        &mut self,
        request: &PresenceStatsRequest,
    ) -> CommandResult<Reply> {
        self.check_presence_access(&request.channel)?;
        let stats = self.effects.presence_stats(&request.channel).await?;
        Ok(Reply {
            presence_stats: Some(PresenceStatsResult {
                num_clients: stats.num_clients,
                num_users: stats.num_users,
            }),
            ..Default::default()
        })
    }

    fn check_presence_access(&self, channel: &str) -> CommandResult<()> {
        let options = self.options(channel)?;
        let connected = self.connected()?;
        if !self.may_read_presence(connected, options, connected.is_subscribed(channel)) {
            return Err(codes::PERMISSION_DENIED.into());
        }
        if !options.presence {
            return Err(codes::NOT_AVAILABLE.into());
        }
        Ok(())
    }
}

/// The history a namespace keeps, if any (both size and TTL must be set).
pub fn history_options(options: &ChannelOptions) -> Option<HistoryOptions> {
    options.has_history().then_some(HistoryOptions {
        size: options.history_size,
        ttl: options.history_ttl,
        meta_ttl: options.history_meta_ttl,
    })
}
