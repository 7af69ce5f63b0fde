//! Whole sessions on a simulated clock: a real node (the in-process memory engine, the hub, the
//! token verifier) and a session driven as a transport drives it, except that the test says
//! what time it is, and its script may answer the session's engine, verifier and hook calls in
//! their place (see [`super::effects`]). No socket, no Redis, no sleep: every rule about time is
//! checked at the instant it applies and the instant before.

mod connect;
mod engine_failures;
mod hooks;
mod subscribe;
mod timing;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

use super::effects::script::Script;
use super::effects::{Call, Effects};
use super::{Mode, Now, Session, TransportInfo};
use crate::auth::Verifier;
use crate::config::Config;
use crate::engine::Engine;
use crate::engine::memory::MemoryEngine;
use crate::hub::{Control, ControlReceiver, control_channel};
use crate::protocol::entropy::Entropy;
use crate::protocol::node::Node;
use crate::queue::Outbox;
use gyre_proto::Encoding;
use gyre_proto::codes::Disconnect;

const SECRET: &str = "simulated-clock-secret";
/// The simulated unix time at which every test starts.
const T0_UNIX: i64 = 1_800_000_000;
const SECOND: Duration = Duration::from_secs(1);

/// Pongs off, so that a test about expiry does not have to answer pings.
const NO_PONGS: &str = "[client]\npong_timeout = \"0s\"";

/// The error code of a reply, or 0 when it succeeded.
fn error_code(reply: &Value) -> u64 {
    reply["error"]["code"].as_u64().unwrap_or(0)
}

/// The node's config: HMAC tokens, the default timings, and `extra` (TOML) appended.
fn config(extra: &str) -> Arc<Config> {
    let text = format!(
        "[client.token]\nhmac_secret_key = \"{SECRET}\"\n\n{extra}\n\n\
         [[channel.namespaces]]\nname = \"chat\"\nhistory_size = 10\nhistory_ttl = \"300s\"\n\
         force_recovery = true\nallow_subscribe_for_client = true\nallow_publish_for_client = true\n\
         presence = true\n\n\
         [[channel.namespaces]]\nname = \"locked\"\n\n\
         [[channel.namespaces]]\nname = \"dialog\"\nallow_user_limited_channels = true\n"
    );
    Arc::new(Config::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}")))
}

/// A node of its own per test (seeded, so its draws repeat), with its dispatcher running so
/// that publications reach subscribers.
fn node(extra: &str) -> Arc<Node> {
    let (node, events) = node_without_dispatcher(extra);
    node.spawn_dispatcher(events);
    node
}

/// A node whose publications reach the streams but no subscriber: PUB/SUB lost every message.
fn node_losing_deliveries(extra: &str) -> Arc<Node> {
    node_without_dispatcher(extra).0
}

fn node_without_dispatcher(
    extra: &str,
) -> (
    Arc<Node>,
    tokio::sync::mpsc::UnboundedReceiver<crate::engine::EngineEvent>,
) {
    let config = config(extra);
    let verifier = Verifier::with_subscription(
        &config.client.token,
        &config.client.subscription_token_settings().clone(),
    )
    .expect("verifier");
    let (events, events_rx) = tokio::sync::mpsc::unbounded_channel();
    let engine = Engine::Memory(MemoryEngine::new(events));
    let hooks = hooks(extra, &config);
    let node = Node::new(config, engine, verifier, hooks).with_entropy(Entropy::seeded(1));
    (Arc::new(node), events_rx)
}

/// The backends of the config made of `extra`, built once per config for all tests: each
/// HTTP client loads the system's root certificates, which costs more than a whole test.
fn hooks(extra: &str, config: &Config) -> crate::hooks::Hooks {
    static BUILT: std::sync::Mutex<Vec<(String, crate::hooks::Hooks)>> =
        std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap();
    if let Some((_, hooks)) = built.iter().find(|(text, _)| text == extra) {
        return hooks.clone();
    }
    let hooks = crate::hooks::Hooks::new(config).expect("hooks");
    built.push((extra.to_owned(), hooks.clone()));
    hooks
}

/// An HS256 token with these claims.
fn token(claims: &Value) -> String {
    token_signed_with(SECRET, claims)
}

fn token_signed_with(secret: &str, claims: &Value) -> String {
    let key = EncodingKey::from_secret(secret.as_bytes()).expect("key");
    jsonwebtoken::encode(&Header::default(), claims, &key).expect("token")
}

/// One connection: the session, its outbox and signals, the simulated time, and the script of
/// its calls to the engine, the verifier and the backends (carried out unless planned).
struct Sim {
    node: Arc<Node>,
    session: Session,
    script: Arc<Script>,
    outbox: Arc<Outbox>,
    control: ControlReceiver,
    start: Now,
    now: Now,
}

impl Sim {
    /// A bidirectional JSON connection opened at the start of the simulated time.
    fn open(node: &Arc<Node>) -> Self {
        Self::open_with(node, Mode::Bidirectional)
    }

    fn open_with(node: &Arc<Node>, mode: Mode) -> Self {
        let start = Now {
            instant: std::time::Instant::now(),
            unix: T0_UNIX,
        };
        let outbox = Arc::new(Outbox::new(node.queue_max_size()));
        let (control_tx, control) = control_channel();
        let id = node.register_connection(control_tx.clone());
        let transport = TransportInfo {
            name: "simulated",
            encoding: Encoding::Json,
            mode,
            deflate: None,
        };
        let mut session = Session::new(
            Arc::clone(node),
            id,
            transport,
            Arc::clone(&outbox),
            control_tx,
            Default::default(),
            start,
        );
        let script = Arc::new(Script::default());
        session.effects = Effects::scripted(Arc::clone(node), Arc::clone(&script));
        Self {
            node: Arc::clone(node),
            session,
            script,
            outbox,
            control,
            start,
            now: start,
        }
    }

    /// The time since the start.
    fn elapsed(&self) -> Duration {
        self.now.instant - self.start.instant
    }

    /// Sends one command frame (JSON) at the current time, then handles the signals it raised.
    async fn send(&mut self, command: Value) -> Result<(), Disconnect> {
        let frame = Bytes::from(command.to_string());
        self.session.handle_frame(frame, self.now).await?;
        self.signals().await
    }

    /// Sends a command and returns its reply, which must be the only message queued.
    async fn call(&mut self, command: Value) -> Value {
        self.send(command.clone())
            .await
            .unwrap_or_else(|d| panic!("{command} disconnected: {d:?}"));
        let mut replies = self.take();
        assert_eq!(replies.len(), 1, "one reply to {command}: {replies:?}");
        replies.remove(0)
    }

    /// Connects with a token for `user` with extra `claims`; returns the connect result.
    async fn connect(&mut self, user: &str, claims: Value) -> Value {
        let mut all = json!({"sub": user});
        all.as_object_mut()
            .unwrap()
            .extend(claims.as_object().cloned().unwrap_or_default());
        let reply = self
            .call(json!({"id": 1, "connect": {"token": token(&all)}}))
            .await;
        assert!(reply.get("error").is_none(), "connect refused: {reply}");
        reply["connect"].clone()
    }

    /// Handles the hub's signals that are waiting, as the driver would.
    async fn signals(&mut self) -> Result<(), Disconnect> {
        while let Some(control) = self.control.try_recv() {
            self.session.handle_control(control, self.now).await?;
        }
        Ok(())
    }

    /// Delivers a hub signal now.
    async fn signal(&mut self, control: Control) -> Result<(), Disconnect> {
        self.session.handle_control(control, self.now).await
    }

    /// Moves the clock to `elapsed` after the start, firing every timer due on the way at its
    /// own instant, as the driver's sleep would. Stops at the first disconnect.
    async fn advance_to(&mut self, elapsed: Duration) -> Result<(), Disconnect> {
        let target = self.start.after(elapsed);
        for _ in 0..10_000 {
            self.signals().await?;
            let deadline = self.session.deadline();
            if deadline > target.instant {
                self.now = target;
                return Ok(());
            }
            let at = deadline.max(self.now.instant);
            self.now = self.start.after(at - self.start.instant);
            self.session.handle_timeout(self.now).await?;
        }
        panic!(
            "the session's deadline does not move past {:?}",
            self.elapsed()
        );
    }

    /// [`Self::advance_to`], expecting the connection to end with `code` exactly at `at`.
    async fn expect_close_at(&mut self, at: Duration, code: u16) {
        let just_before = at - Duration::from_millis(1);
        if let Err(d) = self.advance_to(just_before).await {
            panic!("closed early at {:?} with {d:?}", self.elapsed());
        }
        let end = self.advance_to(at).await;
        assert_eq!(
            end.map_err(|d| d.code),
            Err(code),
            "at {:?}",
            self.elapsed()
        );
        assert_eq!(self.elapsed(), at);
    }

    /// Everything queued for the client since the last call, decoded.
    fn take(&self) -> Vec<Value> {
        let mut messages = Vec::new();
        while let Some(Ok(writes)) = self.outbox.next_writes(usize::MAX).now_or_never() {
            messages.extend(writes.messages);
        }
        messages
            .iter()
            .map(|m| serde_json::from_slice(m).expect("JSON message"))
            .collect()
    }

    /// Pushes queued for the client (replies with an id are left out).
    fn pushes(&self) -> Vec<Value> {
        self.take()
            .into_iter()
            .filter(|m| m.get("push").is_some())
            .map(|m| m["push"].clone())
            .collect()
    }

    /// Leaves everything, as the driver does when the connection ends.
    async fn close(mut self) {
        self.session.close().await;
        self.node.hub.unregister_connection(self.session.id());
    }
}
