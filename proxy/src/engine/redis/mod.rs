//! The Redis engine: publications, history and presence through `libgyre.so` (GYRE.* commands),
//! delivery through Redis PUB/SUB. (Being written.)

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use gyre_proto::ClientInfo;

use super::{
    EngineError, HistoryQuery, HistoryResult, PresenceStats, PublishOptions, StreamPosition,
};

pub struct RedisEngine {}

fn not_ready<T>() -> Result<T, EngineError> {
    Err(EngineError::Unavailable("the redis engine is not built yet".into()))
}

impl RedisEngine {
    pub async fn publish(
        &self,
        _channel: &str,
        _data: Bytes,
        _options: &PublishOptions,
    ) -> Result<StreamPosition, EngineError> {
        not_ready()
    }

    pub async fn history(
        &self,
        _channel: &str,
        _query: HistoryQuery,
    ) -> Result<HistoryResult, EngineError> {
        not_ready()
    }

    pub async fn remove_history(&self, _channel: &str) -> Result<(), EngineError> {
        not_ready()
    }

    pub async fn add_presence(
        &self,
        _channel: &str,
        _info: &ClientInfo,
        _ttl: Duration,
        _join_leave: bool,
    ) -> Result<(), EngineError> {
        not_ready()
    }

    pub async fn remove_presence(
        &self,
        _channel: &str,
        _info: &ClientInfo,
        _join_leave: bool,
    ) -> Result<(), EngineError> {
        not_ready()
    }

    pub async fn presence(
        &self,
        _channel: &str,
    ) -> Result<HashMap<String, ClientInfo>, EngineError> {
        not_ready()
    }

    pub async fn presence_stats(&self, _channel: &str) -> Result<PresenceStats, EngineError> {
        not_ready()
    }

    pub async fn subscribe(&self, _channel: &str) -> Result<(), EngineError> {
        not_ready()
    }

    pub async fn unsubscribe(&self, _channel: &str) -> Result<(), EngineError> {
        not_ready()
    }
}
