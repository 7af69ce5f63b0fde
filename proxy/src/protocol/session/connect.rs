//! `connect` and `refresh`: who the client is and how long it may stay.

use std::collections::HashMap;
use std::time::Instant;

use bytes::Bytes;
use gyre_proto::protocol::{ConnectRequest, ConnectResult, RefreshRequest, RefreshResult, Reply};
use rand::Rng;

use super::{CommandResult, Connected, Session, State, token_rejected, unix_now};
use crate::auth::{ConnectToken, TokenUse};
use crate::protocol::codes;

/// Who a connect command proved to be.
struct Credentials {
    user: String,
    conn_info: Bytes,
    expires_at: Option<i64>,
}

impl Session {
    pub(super) async fn connect(&mut self, request: &ConnectRequest) -> CommandResult<Reply> {
        let credentials = self.credentials(&request.token).await?;
        let now_unix = unix_now();
        if credentials.expires_at.is_some_and(|at| at <= now_unix) {
            return Err(codes::EXPIRED.into());
        }
        let config = &self.node.config.client;
        let now = Instant::now();
        let ping = config.ping_interval;
        // The first ping comes at a random point of the second half of the interval, so that
        // clients connected together do not ping together.
        let first_ping = rand::rng().random_range(ping / 2..=ping);
        let result = ConnectResult {
            client: self.client.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            expires: credentials.expires_at.is_some(),
            ttl: credentials
                .expires_at
                .map_or(0, |at| (at - now_unix).clamp(0, i64::from(u32::MAX)) as u32),
            ping: ping.as_secs() as u32,
            pong: true,
            ..Default::default()
        };
        self.state = State::Connected(Box::new(Connected {
            user: credentials.user,
            conn_info: credentials.conn_info,
            expires_at: credentials.expires_at,
            subscriptions: HashMap::new(),
            next_ping: now + first_ping,
            pong_deadline: None,
            next_presence_update: now + config.presence_update_interval,
        }));
        Ok(Reply {
            connect: Some(result),
            ..Default::default()
        })
    }

    async fn credentials(&self, token: &str) -> CommandResult<Credentials> {
        let config = &self.node.config.client;
        if token.is_empty() {
            if config.allow_anonymous_connect_without_token || config.insecure {
                return Ok(Credentials {
                    user: String::new(),
                    conn_info: Bytes::new(),
                    expires_at: None,
                });
            }
            return Err(codes::DISCONNECT_BAD_REQUEST.into());
        }
        let claims = self
            .node
            .verifier
            .verify_connect(token, unix_now())
            .await
            .map_err(|error| token_rejected(&error, TokenUse::Connect))?;
        Ok(credentials_from(claims))
    }

    pub(super) async fn refresh(&mut self, request: &RefreshRequest) -> CommandResult<Reply> {
        if request.token.is_empty() {
            return Err(codes::DISCONNECT_BAD_REQUEST.into());
        }
        let claims = self
            .node
            .verifier
            .verify_connect(&request.token, unix_now())
            .await
            .map_err(|error| token_rejected(&error, TokenUse::Refresh))?;
        let credentials = credentials_from(claims);
        let now_unix = unix_now();
        let connected = self.connected_mut()?;
        if credentials.user != connected.user {
            return Err(codes::INVALID_TOKEN.into());
        }
        if credentials.expires_at.is_some_and(|at| at <= now_unix) {
            return Err(codes::EXPIRED.into());
        }
        connected.expires_at = credentials.expires_at;
        if !credentials.conn_info.is_empty() {
            connected.conn_info = credentials.conn_info;
        }
        Ok(Reply {
            refresh: Some(RefreshResult {
                client: self.client.clone(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                expires: credentials.expires_at.is_some(),
                ttl: credentials
                    .expires_at
                    .map_or(0, |at| (at - now_unix).clamp(0, i64::from(u32::MAX)) as u32),
            }),
            ..Default::default()
        })
    }
}

fn credentials_from(claims: ConnectToken) -> Credentials {
    Credentials {
        expires_at: claims.expires_at(),
        user: claims.user,
        conn_info: claims.info,
    }
}
