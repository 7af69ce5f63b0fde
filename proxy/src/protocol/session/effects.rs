//! The session's one door to the world outside the process: the engine (Redis, or the memory
//! engine), the token verifier (which may fetch a JWKS over HTTP) and the backend hooks. The
//! session never calls them itself; it names each call ([`Call`]) to its [`Effects`] and gets
//! the answer back.
//!
//! A session made by `Session::new` carries its calls out at once, with no cost over a direct
//! call (the [`Call`] is never built). The session tests give it a `script::Script` instead: it records every call in order and answers those it was told to answer
//! (an engine that is down, a backend's reply) instead of carrying them out, so a test can
//! check what the session does with any answer, and in which order it asked.
//!
//! The continuations between a call and its answer are the compiler's (`async`), not a
//! hand-written state machine per command: subscribe alone waits on up to five calls, with a
//! rollback after each.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gyre_proto::ClientInfo;

use crate::auth::{ConnectToken, SubscribeToken, TokenError};
use crate::engine::{
    EngineError, HistoryQuery, HistoryResult, PresenceStats, PublishOptions, StreamPosition,
};
use crate::hooks::outcome::Answer;
use crate::hooks::{Backend, CallError, Caller, Event};
use crate::protocol::node::Node;
use gyre_proto::proxy as wire;

/// A call the session makes, as the script sees it: what is asked and of which channel (the
/// backend calls: of which channel or RPC method, or nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// The engine starts delivering the channel to this node.
    Subscribe(String),
    Unsubscribe(String),
    Publish(String),
    History(String),
    Position(String),
    AddPresence(String),
    RemovePresence(String),
    Presence(String),
    PresenceStats(String),
    VerifyConnect,
    VerifySubscribe,
    Hook(Event, String),
}

/// Carries out the session's calls (see the module's documentation).
pub(crate) struct Effects {
    node: Arc<Node>,
    #[cfg(test)]
    script: Option<Arc<script::Script>>,
}

impl Effects {
    /// Calls carried out at once, on `node`'s engine, verifier and backends.
    pub fn live(node: Arc<Node>) -> Self {
        Self {
            node,
            #[cfg(test)]
            script: None,
        }
    }

    #[cfg(test)]
    pub fn scripted(node: Arc<Node>, script: Arc<script::Script>) -> Self {
        Self {
            node,
            script: Some(script),
        }
    }

    /// Runs `live`, unless the script answers `call`.
    async fn perform<T: 'static>(
        &self,
        call: impl FnOnce() -> Call,
        live: impl Future<Output = T>,
    ) -> T {
        #[cfg(test)]
        if let Some(script) = &self.script
            && let Some(answer) = script.answer(call())
        {
            return answer;
        }
        #[cfg(not(test))]
        drop(call);
        live.await
    }

    pub async fn subscribe(&self, channel: &str) -> Result<(), EngineError> {
        let call = || Call::Subscribe(channel.to_owned());
        self.perform(call, self.node.engine.subscribe(channel))
            .await
    }

    pub async fn unsubscribe(&self, channel: &str) -> Result<(), EngineError> {
        let call = || Call::Unsubscribe(channel.to_owned());
        self.perform(call, self.node.engine.unsubscribe(channel))
            .await
    }

    pub async fn publish(
        &self,
        channel: &str,
        data: Bytes,
        options: &PublishOptions,
    ) -> Result<StreamPosition, EngineError> {
        let call = || Call::Publish(channel.to_owned());
        let live = self.node.engine.publish(channel, data, options);
        self.perform(call, live).await
    }

    pub async fn history(
        &self,
        channel: &str,
        query: HistoryQuery,
    ) -> Result<HistoryResult, EngineError> {
        let call = || Call::History(channel.to_owned());
        self.perform(call, self.node.engine.history(channel, query))
            .await
    }

    pub async fn position(
        &self,
        channel: &str,
        meta_ttl: Duration,
    ) -> Result<StreamPosition, EngineError> {
        let call = || Call::Position(channel.to_owned());
        self.perform(call, self.node.engine.position(channel, meta_ttl))
            .await
    }

    pub async fn add_presence(
        &self,
        channel: &str,
        info: &ClientInfo,
        ttl: Duration,
        join_leave: bool,
    ) -> Result<(), EngineError> {
        let call = || Call::AddPresence(channel.to_owned());
        let live = self
            .node
            .engine
            .add_presence(channel, info, ttl, join_leave);
        self.perform(call, live).await
    }

    pub async fn remove_presence(
        &self,
        channel: &str,
        info: &ClientInfo,
        join_leave: bool,
    ) -> Result<(), EngineError> {
        let call = || Call::RemovePresence(channel.to_owned());
        let live = self.node.engine.remove_presence(channel, info, join_leave);
        self.perform(call, live).await
    }

    pub async fn presence(
        &self,
        channel: &str,
    ) -> Result<HashMap<String, ClientInfo>, EngineError> {
        let call = || Call::Presence(channel.to_owned());
        self.perform(call, self.node.engine.presence(channel)).await
    }

    pub async fn presence_stats(&self, channel: &str) -> Result<PresenceStats, EngineError> {
        let call = || Call::PresenceStats(channel.to_owned());
        self.perform(call, self.node.engine.presence_stats(channel))
            .await
    }

    pub async fn verify_connect(
        &self,
        token: &str,
        now_unix: i64,
    ) -> Result<ConnectToken, TokenError> {
        let live = self.node.verifier.verify_connect(token, now_unix);
        self.perform(|| Call::VerifyConnect, live).await
    }

    pub async fn verify_subscribe(
        &self,
        token: &str,
        now_unix: i64,
    ) -> Result<SubscribeToken, TokenError> {
        let live = self.node.verifier.verify_subscribe(token, now_unix);
        self.perform(|| Call::VerifySubscribe, live).await
    }

    /// The connect hook. `channels`: the server-side channels the client asks for.
    pub async fn connect_hook(
        &self,
        backend: &Backend,
        caller: &Caller<'_>,
        request: &gyre_proto::protocol::ConnectRequest,
        channels: Vec<String>,
    ) -> Result<Answer<wire::ConnectResult>, CallError> {
        let call = || Call::Hook(Event::Connect, String::new());
        let live = backend.connect(
            caller,
            &request.data,
            &request.name,
            &request.version,
            channels,
        );
        self.perform(call, live).await
    }

    pub async fn refresh_hook(
        &self,
        backend: &Backend,
        caller: &Caller<'_>,
    ) -> Result<Option<wire::RefreshResult>, CallError> {
        let call = || Call::Hook(Event::Refresh, String::new());
        self.perform(call, backend.refresh(caller)).await
    }

    pub async fn subscribe_hook(
        &self,
        backend: &Backend,
        caller: &Caller<'_>,
        channel: &str,
        token: &str,
        data: &Bytes,
    ) -> Result<Answer<wire::SubscribeResult>, CallError> {
        let call = || Call::Hook(Event::Subscribe, channel.to_owned());
        let live = backend.subscribe(caller, channel, token, data);
        self.perform(call, live).await
    }

    pub async fn publish_hook(
        &self,
        backend: &Backend,
        caller: &Caller<'_>,
        channel: &str,
        data: &Bytes,
    ) -> Result<Answer<wire::PublishResult>, CallError> {
        let call = || Call::Hook(Event::Publish, channel.to_owned());
        self.perform(call, backend.publish(caller, channel, data))
            .await
    }

    pub async fn sub_refresh_hook(
        &self,
        backend: &Backend,
        caller: &Caller<'_>,
        channel: &str,
    ) -> Result<Option<wire::SubRefreshResult>, CallError> {
        let call = || Call::Hook(Event::SubRefresh, channel.to_owned());
        self.perform(call, backend.sub_refresh(caller, channel))
            .await
    }

    pub async fn rpc_hook(
        &self,
        backend: &Backend,
        caller: &Caller<'_>,
        method: &str,
        data: &Bytes,
    ) -> Result<Answer<wire::RpcResult>, CallError> {
        let call = || Call::Hook(Event::Rpc, method.to_owned());
        self.perform(call, backend.rpc(caller, method, data)).await
    }
}

#[cfg(test)]
pub mod script {
    //! What the session tests put in place of the world outside.

    use std::any::Any;
    use std::sync::Mutex;

    use super::Call;

    /// The calls a session made, and the answers planned for some of them.
    #[derive(Default)]
    pub struct Script {
        calls: Mutex<Vec<Call>>,
        planned: Mutex<Vec<(Call, Box<dyn Any + Send>)>>,
    }

    impl Script {
        /// The next `call` gets `answer` instead of being carried out. `answer` is the call's
        /// own result type (e.g. `Result<(), EngineError>` for [`Call::AddPresence`]).
        pub fn plan<T: Send + 'static>(&self, call: Call, answer: T) {
            self.planned.lock().unwrap().push((call, Box::new(answer)));
        }

        /// Every call made since the last `take_calls`, in order.
        pub fn take_calls(&self) -> Vec<Call> {
            std::mem::take(&mut *self.calls.lock().unwrap())
        }

        /// Records `call`; its planned answer, if there is one.
        pub(super) fn answer<T: 'static>(&self, call: Call) -> Option<T> {
            self.calls.lock().unwrap().push(call.clone());
            let mut planned = self.planned.lock().unwrap();
            let index = planned.iter().position(|(c, _)| *c == call)?;
            let (_, answer) = planned.remove(index);
            match answer.downcast::<T>() {
                Ok(answer) => Some(*answer),
                Err(_) => panic!(
                    "the answer planned for {call:?} is not a {}",
                    std::any::type_name::<T>()
                ),
            }
        }
    }
}
