//! Where the session asks the backend (see [`crate::hooks`]) and applies its answers: one
//! function per event, each called from one place of the command it belongs to.
//!
//! | event | called from | when |
//! |---|---|---|
//! | connect | [`Session::connect`] | the connect command has no token and `client.proxy.connect` is on |
//! | refresh | [`Session::handle_timeout`] | `client.proxy.refresh` is on and the connection reached `expire_at` |
//! | subscribe | [`Session::authorize_subscribe`] | no token, not a user-limited channel, namespace `subscribe_proxy_enabled` |
//! | publish | [`Session::publish`] | namespace `publish_proxy_enabled` |
//! | sub_refresh | [`Session::expire_subscriptions`], [`Session::sub_refresh`] | namespace `sub_refresh_proxy_enabled`: at expiry (+ `expired_sub_close_delay`), or a sub_refresh command without token |
//! | rpc | the rpc command | the method's RPC namespace has `proxy_enabled` |
//!
//! A hook that fails (down, timeout, garbage) never leaves anything half done: every call
//! happens before the session changes anything for the command.

use bytes::Bytes;
use gyre_proto::protocol::{ConnectRequest, Reply, RpcRequest, RpcResult};

use super::subscribe::Grant;
use super::{CommandError, CommandResult, Session, State};
use crate::auth::SubOptions;
use crate::config::ChannelOptions;
use crate::hooks::outcome::{self, Refusal};
use crate::hooks::{Backend, Caller};
use gyre_proto::codes::{self, Disconnect};

impl From<Refusal> for CommandError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Error {
                code,
                message,
                temporary,
            } => CommandError::App(codes::AppError {
                code,
                message,
                temporary,
            }),
            Refusal::Disconnect { code, reason } => Disconnect::custom(code, &reason).into(),
            Refusal::Internal => codes::INTERNAL.into(),
        }
    }
}

/// What the connect proxy said, as the connect command uses it.
pub(super) struct ProxyCredentials {
    pub user: String,
    pub conn_info: Bytes,
    pub expires_at: Option<i64>,
    pub subscriptions: Vec<(String, SubOptions)>,
    pub data: Bytes,
}

impl Session {
    /// What every hook request says about this client.
    fn caller<'a>(&'a self, user: &'a str, client: &'a str) -> Caller<'a> {
        Caller {
            client,
            transport: self.transport.name,
            protobuf: self.encoding() == gyre_proto::Encoding::Protobuf,
            user,
            context: &self.context,
        }
    }

    /// `connect`: the client brought no token. `Ok(None)`: the backend gave no result (the
    /// connection is then anonymous if that is allowed, else refused).
    pub(super) async fn connect_by_proxy(
        &mut self,
        backend: &Backend,
        request: &ConnectRequest,
    ) -> CommandResult<Option<ProxyCredentials>> {
        let client = self.client.to_string();
        let mut channels: Vec<String> = request.subs.keys().cloned().collect();
        channels.sort();
        let answer = self
            .effects
            .connect_hook(backend, &self.caller("", &client), request, channels)
            .await;
        let Some(result) = outcome::interactive(answer.map_err(drop))? else {
            return Ok(None);
        };
        let connected = outcome::connected(result)?;
        if self.node.hooks.keeps_meta() {
            self.context.set_meta(connected.meta);
        }
        Ok(Some(ProxyCredentials {
            user: connected.user,
            conn_info: connected.info,
            expires_at: connected.expires_at,
            subscriptions: connected.subscriptions,
            data: connected.data,
        }))
    }

    /// `refresh`: the connection reached its expiry; the backend prolongs it or it ends.
    pub(super) async fn refresh_by_proxy(&mut self) -> Result<(), Disconnect> {
        let now_unix = self.now.unix;
        let node = std::sync::Arc::clone(&self.node);
        let Some(backend) = node.hooks.refresh() else {
            return Ok(());
        };
        let State::Connected(connected) = &self.state else {
            return Ok(());
        };
        let Some(current) = connected.timers.expires_at else {
            return Ok(());
        };
        let client = self.client.to_string();
        let answer = self
            .effects
            .refresh_hook(backend, &self.caller(&connected.user, &client))
            .await;
        match outcome::refresh(answer.map_err(drop), current, now_unix) {
            outcome::Refresh::Expired => Err(codes::CONNECTION_EXPIRED),
            outcome::Refresh::Internal => Err(codes::DISCONNECT_INTERNAL),
            outcome::Refresh::Prolonged {
                expires_at,
                info,
                meta,
            } => {
                if let State::Connected(connected) = &mut self.state {
                    connected.timers.expires_at = Some(expires_at);
                    if let Some(info) = info {
                        connected.conn_info = info;
                    }
                }
                if let Some(meta) = meta.filter(|_| node.hooks.keeps_meta()) {
                    self.context.set_meta(meta);
                }
                Ok(())
            }
        }
    }

    /// `subscribe`: the backend decides; a grant follows the namespace's `force_*` options
    /// changed by the answer's `override` (the client's own wishes do not count, as in
    /// Centrifugo).
    pub(super) async fn subscribe_by_proxy(
        &self,
        options: &ChannelOptions,
        channel: &str,
        token: &str,
        data: &Bytes,
    ) -> CommandResult<Grant> {
        let node = &self.node;
        let backend = node
            .hooks
            .subscribe(&options.subscribe_proxy_name)
            .ok_or(codes::NOT_AVAILABLE)?;
        let connected = self.connected()?;
        let client = self.client.to_string();
        let caller = self.caller(&connected.user, &client);
        let answer = self
            .effects
            .subscribe_hook(backend, &caller, channel, token, data)
            .await;
        let result = outcome::interactive(answer.map_err(drop))?;
        let subscribed = outcome::subscribed(result)?;
        let sub = SubOptions {
            info: subscribed.info,
            data: subscribed.data,
            overrides: subscribed.overrides,
            expires_at: subscribed.expires_at,
            cache_recover: false,
        };
        // A client-side subscription: the client refreshes it unless the proxy does.
        let mut grant = Grant::server_side(options, &sub);
        grant.client_refresh = !options.sub_refresh_proxy_enabled;
        Ok(grant)
    }

    /// `publish`: the backend decides, and may change what is published.
    pub(super) async fn publish_by_proxy(
        &self,
        options: &ChannelOptions,
        channel: &str,
        data: &Bytes,
    ) -> CommandResult<outcome::Publish> {
        let backend = self
            .node
            .hooks
            .publish(&options.publish_proxy_name)
            .ok_or(codes::NOT_AVAILABLE)?;
        let connected = self.connected()?;
        let client = self.client.to_string();
        let caller = self.caller(&connected.user, &client);
        let answer = self
            .effects
            .publish_hook(backend, &caller, channel, data)
            .await;
        let result = outcome::interactive(answer.map_err(drop))?;
        Ok(outcome::publish(result)?)
    }

    /// `sub_refresh` of an expired subscription whose namespace refreshes by proxy: whether it
    /// lives on (its expiry and channel info updated).
    pub(super) async fn sub_refresh_by_proxy(
        &mut self,
        options: &ChannelOptions,
        channel: &str,
        now_unix: i64,
    ) -> outcome::SubRefresh {
        let Some(backend) = self.node.hooks.sub_refresh(&options.sub_refresh_proxy_name) else {
            return outcome::SubRefresh::Expired;
        };
        let State::Connected(connected) = &self.state else {
            return outcome::SubRefresh::Expired;
        };
        let client = self.client.to_string();
        let caller = self.caller(&connected.user, &client);
        let answer = self
            .effects
            .sub_refresh_hook(backend, &caller, channel)
            .await;
        let decision = outcome::sub_refresh(answer.map_err(drop), now_unix);
        if let outcome::SubRefresh::Prolonged { expires_at, info } = &decision
            && let State::Connected(connected) = &mut self.state
            && let Some(state) = connected.subscriptions.get_mut(channel)
        {
            state.expires_at = *expires_at;
            if let Some(info) = info {
                state.chan_info = info.clone();
            }
        }
        decision
    }

    /// The rpc command: `rpc.ping`, else the proxy of the method's RPC namespace.
    pub(super) async fn rpc(&mut self, request: &RpcRequest) -> CommandResult<Reply> {
        let node = std::sync::Arc::clone(&self.node);
        let rpc = &node.config.rpc;
        let reply = |data: Bytes| Reply {
            rpc: Some(RpcResult { data }),
            ..Default::default()
        };
        if rpc.ping.enabled && request.method == rpc.ping.method {
            return Ok(reply(Bytes::new()));
        }
        if !node.hooks.rpc_enabled() {
            return Err(codes::METHOD_NOT_FOUND.into());
        }
        let options = rpc
            .options(&request.method)
            .ok_or(codes::METHOD_NOT_FOUND)?;
        if !options.proxy_enabled {
            return Err(codes::NOT_AVAILABLE.into());
        }
        let backend = node
            .hooks
            .rpc(&options.proxy_name)
            .ok_or(codes::NOT_AVAILABLE)?;
        let connected = self.connected()?;
        let client = self.client.to_string();
        let caller = self.caller(&connected.user, &client);
        let answer = self
            .effects
            .rpc_hook(backend, &caller, &request.method, &request.data)
            .await;
        let result = outcome::interactive(answer.map_err(drop))?;
        Ok(reply(outcome::rpc(result)?))
    }
}
