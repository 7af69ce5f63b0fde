//! Redis Sentinel: finding the primary and following it across failovers.
//!
//! redis-rs's own `sentinel` support resolves the primary when it connects but does not follow a
//! failover for live connections (redis-rs issue 1438), so gyre does it here:
//! - **discovery**: ask each sentinel in turn (`SENTINEL get-master-addr-by-name`), starting
//!   with the one that answered last, and check with `ROLE` that the node it names is a primary
//!   (a sentinel may lag behind a failover);
//! - **watching**: a watcher task holds a PUB/SUB connection to one sentinel, subscribed to
//!   `+switch-master`. An announcement for our master name (checked with `ROLE` again) switches
//!   the shard's [`Endpoint`] to the new primary: the command connection moves on its next
//!   command, the subscription connection resubscribes every channel there and then resyncs.
//!   When the sentinel connection drops, the watcher moves to the next sentinel (backoff 50 ms
//!   doubling to 2 s) and runs a discovery first, since a switch may have happened meanwhile.
//!   Connections that fail or answer `READONLY` ask for a discovery too (at most one a second).
//!
//! The sentinels get `sentinel_user`/`sentinel_password`/`sentinel_tls`, the primaries they name
//! `user`/`password`/`db`/`tls`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use redis::{PushInfo, PushKind, Value};
use tokio::sync::{Notify, mpsc};

use super::connect::{Role, Target};
use super::endpoint::Endpoint;
use super::pubsub::AbortOnDrop;
use super::settings::{NodeOptions, SentinelSettings};
use crate::engine::EngineError;

/// The Sentinel channel announcing a new primary: `<name> <old ip> <old port> <new ip> <new port>`.
const SWITCH_MASTER: &str = "+switch-master";
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// Least time between two discoveries asked for by failing connections.
const REDISCOVER_EVERY: Duration = Duration::from_secs(1);
/// How long an announced primary may take to report `ROLE master`.
const PROMOTION_CHECKS: u32 = 10;
const PROMOTION_CHECK_PAUSE: Duration = Duration::from_millis(100);

/// Finds the primary of the settings' master, connects the shard to it and starts following
/// failovers.
pub(super) async fn connect(
    settings: &SentinelSettings,
    nodes: &NodeOptions,
) -> Result<Arc<Endpoint>, EngineError> {
    let sentinel_options = NodeOptions {
        user: settings.user.clone(),
        password: settings.password.clone(),
        db: 0,
        tls: settings.tls.clone(),
        connect_timeout: nodes.connect_timeout,
        io_timeout: nodes.io_timeout,
    };
    let sentinels = settings
        .addresses
        .iter()
        .map(|address| Target::from_address(address, &sentinel_options, Role::Sentinel))
        .collect::<Result<Vec<_>, _>>()?;
    if sentinels.is_empty() {
        return Err(EngineError::Unavailable(
            "no sentinel address configured".into(),
        ));
    }
    let discovery = Discovery {
        sentinels,
        master_name: settings.master_name.clone(),
        nodes: nodes.clone(),
        last_good: AtomicUsize::new(0),
        failing: AtomicBool::new(false),
    };
    let (target, sentinel) = discovery
        .discover()
        .await
        .map_err(EngineError::Unavailable)?;
    tracing::info!(
        master = %discovery.master_name,
        primary = %target.name(),
        %sentinel,
        "redis primary found through sentinel"
    );
    let rediscover = Arc::new(Notify::new());
    let endpoint = Endpoint::discovered(target, Arc::clone(&rediscover));
    let watcher = tokio::spawn(watch(discovery, Arc::downgrade(&endpoint), rediscover));
    endpoint.attach_watcher(AbortOnDrop(watcher));
    Ok(endpoint)
}

/// The sentinels of one master and how to reach the primaries they name.
struct Discovery {
    sentinels: Vec<Target>,
    master_name: String,
    /// Options of the data nodes.
    nodes: NodeOptions,
    /// The sentinel that answered last: asked first next time.
    last_good: AtomicUsize,
    /// The last discovery failed (and said so): the next failures are not news.
    failing: AtomicBool,
}

impl Discovery {
    /// The current primary (checked with `ROLE`) and the sentinel that named it.
    async fn discover(&self) -> Result<(Target, String), String> {
        let count = self.sentinels.len();
        let start = self.last_good.load(Ordering::Relaxed);
        let mut errors = Vec::new();
        for i in 0..count {
            let index = (start + i) % count;
            let sentinel = &self.sentinels[index];
            match self.ask(sentinel).await {
                Ok(target) => {
                    self.last_good.store(index, Ordering::Relaxed);
                    return Ok((target, sentinel.name().to_owned()));
                }
                Err(e) => errors.push(e),
            }
        }
        Err(format!(
            "no sentinel named a reachable primary for master {:?}: {}",
            self.master_name,
            errors.join("; ")
        ))
    }

    /// The primary `sentinel` names, once `ROLE` confirms it.
    async fn ask(&self, sentinel: &Target) -> Result<Target, String> {
        let mut connection = sentinel.open().await?;
        let reply = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(&self.master_name)
            .query_async::<Value>(&mut connection)
            .await
            .map_err(|e| sentinel.describe(&e))?;
        let (host, port) = master_address(&reply).ok_or_else(|| match reply {
            Value::Nil => format!(
                "sentinel {} does not monitor a master named {:?} (engine.redis.sentinel_master_name)",
                sentinel.name(),
                self.master_name
            ),
            other => format!(
                "sentinel {}: unexpected SENTINEL get-master-addr-by-name reply {other:?}",
                sentinel.name()
            ),
        })?;
        let target = self.primary_at(&host, port)?;
        check_primary(&target).await?;
        Ok(target)
    }

    fn primary_at(&self, host: &str, port: u16) -> Result<Target, String> {
        Target::from_host_port(host, port, &self.nodes, Role::DataNode).map_err(|e| e.to_string())
    }
}

/// `[host, port]` of a `SENTINEL get-master-addr-by-name` reply.
fn master_address(reply: &Value) -> Option<(String, u16)> {
    let Value::Array(items) = reply else {
        return None;
    };
    let [host, port] = items.as_slice() else {
        return None;
    };
    let text = |value: &Value| match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    Some((text(host)?, text(port)?.parse().ok()?))
}

/// Fails unless `target` answers `ROLE` with `master`. A user without the permission for
/// `ROLE` is trusted to have been given the primary.
async fn check_primary(target: &Target) -> Result<(), String> {
    let mut connection = target.open().await?;
    let reply = redis::cmd("ROLE")
        .query_async::<Value>(&mut connection)
        .await;
    let role = match reply {
        Ok(Value::Array(items)) => match items.first() {
            Some(Value::BulkString(role)) => String::from_utf8_lossy(role).into_owned(),
            Some(Value::SimpleString(role)) => role.clone(),
            other => format!("{other:?}"),
        },
        Ok(other) => format!("{other:?}"),
        Err(e) if e.code() == Some("NOPERM") => {
            tracing::debug!(redis = %target.name(), "cannot check the role (NOPERM): {e}");
            return Ok(());
        }
        Err(e) => return Err(target.describe(&e)),
    };
    if role == "master" {
        Ok(())
    } else {
        Err(format!(
            "redis {} is a {role}, not a primary (a failover in progress?)",
            target.name()
        ))
    }
}

/// `(new host, new port)` of a `+switch-master` message for `master_name`.
fn switch_announcement(push: &PushInfo, master_name: &str) -> Option<(String, u16)> {
    let [Value::BulkString(channel), Value::BulkString(payload)] = push.data.as_slice() else {
        return None;
    };
    if channel.as_slice() != SWITCH_MASTER.as_bytes() {
        return None;
    }
    let text = std::str::from_utf8(payload).ok()?;
    let fields: Vec<&str> = text.split_whitespace().collect();
    let [name, _old_host, _old_port, new_host, new_port] = fields.as_slice() else {
        return None;
    };
    if *name != master_name {
        return None;
    }
    Some(((*new_host).to_owned(), new_port.parse().ok()?))
}

/// Follows failovers of `discovery`'s master until the endpoint is gone; see the module docs.
async fn watch(discovery: Discovery, endpoint: Weak<Endpoint>, rediscover: Arc<Notify>) {
    let count = discovery.sentinels.len();
    let mut next = discovery.last_good.load(Ordering::Relaxed);
    let mut pause = RETRY_MIN;
    let mut failed_in_a_row = 0usize;
    loop {
        let sentinel = &discovery.sentinels[next % count];
        next = next.wrapping_add(1);
        // A channel per connection: the disconnection of an old one must not end a new one.
        let (pushes, mut push_rx) = mpsc::unbounded_channel();
        let subscribed = match sentinel.open_with_push(pushes).await {
            Ok(connection) => {
                let mut subscriber = connection.clone();
                subscriber
                    .subscribe(SWITCH_MASTER)
                    .await
                    .map(|()| connection)
                    .map_err(|e| sentinel.describe(&e))
            }
            Err(e) => Err(e),
        };
        let _connection = match subscribed {
            Ok(connection) => connection,
            Err(e) => {
                if failed_in_a_row == 0 {
                    tracing::warn!(
                        "cannot watch sentinel for failovers: {e}; trying the next sentinel"
                    );
                }
                failed_in_a_row += 1;
                // After a whole round of failures, wait before the next one.
                if failed_in_a_row.is_multiple_of(count) {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(RETRY_MAX);
                }
                continue;
            }
        };
        if failed_in_a_row > 0 {
            tracing::info!(sentinel = %sentinel.name(), "watching sentinel for failovers again");
        }
        failed_in_a_row = 0;
        pause = RETRY_MIN;
        // A switch may have happened while nobody listened.
        let Some(live) = endpoint.upgrade() else {
            return;
        };
        rediscover_now(&discovery, &live).await;
        drop(live);
        let mut last_discovery = Instant::now();
        // A discovery was asked for and waits for its turn (at most one per REDISCOVER_EVERY),
        // without holding up the announcements meanwhile.
        let mut discovery_due = false;
        loop {
            let next_discovery = tokio::time::Instant::from_std(last_discovery + REDISCOVER_EVERY);
            tokio::select! {
                push = push_rx.recv() => {
                    let Some(push) = push else { break };
                    if push.kind == PushKind::Disconnection {
                        tracing::warn!(
                            sentinel = %sentinel.name(),
                            "lost the sentinel connection; watching another sentinel"
                        );
                        break;
                    }
                    let Some((host, port)) = switch_announcement(&push, &discovery.master_name)
                    else {
                        continue;
                    };
                    let Some(live) = endpoint.upgrade() else { return };
                    follow(&discovery, &live, &host, port).await;
                }
                () = rediscover.notified(), if !discovery_due => discovery_due = true,
                () = tokio::time::sleep_until(next_discovery), if discovery_due => {
                    discovery_due = false;
                    let Some(live) = endpoint.upgrade() else { return };
                    rediscover_now(&discovery, &live).await;
                    last_discovery = Instant::now();
                }
            }
        }
    }
}

/// Asks the sentinels where the primary is and switches when it moved.
async fn rediscover_now(discovery: &Discovery, endpoint: &Endpoint) {
    match discovery.discover().await {
        Ok((target, sentinel)) => {
            discovery.failing.store(false, Ordering::Relaxed);
            let current = endpoint.current().target;
            if target.node() != current.node() {
                tracing::warn!(
                    master = %discovery.master_name,
                    from = %current.name(),
                    to = %target.name(),
                    %sentinel,
                    "redis primary moved (found by asking the sentinels): moving the \
                     connections to the new primary and resyncing"
                );
                endpoint.switch(target);
            }
        }
        Err(e) if !discovery.failing.swap(true, Ordering::Relaxed) => {
            tracing::warn!("redis primary unknown for now: {e}");
        }
        Err(e) => tracing::debug!("redis primary still unknown: {e}"),
    }
}

/// Switches to the primary a `+switch-master` announced, once it reports `ROLE master`.
async fn follow(discovery: &Discovery, endpoint: &Endpoint, host: &str, port: u16) {
    let target = match discovery.primary_at(host, port) {
        Ok(target) => target,
        Err(e) => {
            tracing::warn!("sentinel announced an unusable primary: {e}");
            return rediscover_now(discovery, endpoint).await;
        }
    };
    let current = endpoint.current().target;
    if target.node() == current.node() {
        return;
    }
    for _ in 0..PROMOTION_CHECKS {
        match check_primary(&target).await {
            Ok(()) => {
                tracing::warn!(
                    master = %discovery.master_name,
                    from = %current.name(),
                    to = %target.name(),
                    "redis primary moved (sentinel +switch-master): moving the connections to \
                     the new primary and resyncing"
                );
                endpoint.switch(target);
                return;
            }
            Err(e) => {
                tracing::debug!("announced primary not ready yet: {e}");
                tokio::time::sleep(PROMOTION_CHECK_PAUSE).await;
            }
        }
    }
    tracing::warn!(
        primary = %target.name(),
        "the primary sentinel announced does not report ROLE master; asking the sentinels"
    );
    rediscover_now(discovery, endpoint).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn parses_master_addresses() {
        let reply = Value::Array(vec![bulk("10.0.0.7"), bulk("6380")]);
        assert_eq!(master_address(&reply), Some(("10.0.0.7".into(), 6380)));
        assert_eq!(master_address(&Value::Nil), None);
        let bad_port = Value::Array(vec![bulk("h"), bulk("port")]);
        assert_eq!(master_address(&bad_port), None);
    }

    #[test]
    fn parses_switch_announcements_of_our_master_only() {
        let push = |payload: &str| PushInfo {
            kind: PushKind::Message,
            data: vec![bulk(SWITCH_MASTER), bulk(payload)],
        };
        assert_eq!(
            switch_announcement(&push("gyre 127.0.0.1 7001 127.0.0.1 7002"), "gyre"),
            Some(("127.0.0.1".into(), 7002))
        );
        assert_eq!(
            switch_announcement(&push("other 127.0.0.1 7001 127.0.0.1 7002"), "gyre"),
            None
        );
        assert_eq!(switch_announcement(&push("gyre garbled"), "gyre"), None);
        let elsewhere = PushInfo {
            kind: PushKind::Message,
            data: vec![bulk("+sdown"), bulk("gyre 127.0.0.1 7001 127.0.0.1 7002")],
        };
        assert_eq!(switch_announcement(&elsewhere, "gyre"), None);
    }
}
