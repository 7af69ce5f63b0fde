//! `GYRE.PRESENCE.ADD`, `GYRE.PRESENCE.REM`, `GYRE.PRESENCE` and `GYRE.PRESENCE.STATS`.

use bytes::Bytes;
use gyre_proto::ClientInfo;
use gyre_proto::redis_payload::{encode_join, encode_leave};
use prost::Message;
use redis_module::{Context, KeyType, RedisString, RedisValue};

use crate::commands::require_keys_or_stable_slot;
use crate::config::Settings;
use crate::core::GyreResult;
use crate::core::keys::ChannelKeys;
use crate::core::parse::Cursor;
use crate::core::presence::{AddArgs, GetArgs, RemArgs, decode_entry, is_alive, stats};
use crate::stats::{COUNTERS, bump};
use crate::store::key::Key;
use crate::store::{call_replicated, now_ms, publish_replicated, string};

/// The two keys of a channel's presence, checked for their types.
struct PresenceKeys {
    data: Key,
    expire: Key,
}

impl PresenceKeys {
    /// Opens both keys; in cluster mode, unless both are on this node, checks that the slot is
    /// not migrating (they could be on the other node).
    fn open(
        ctx: &Context,
        settings: &Settings,
        channel: &[u8],
        keys: &ChannelKeys,
    ) -> GyreResult<Self> {
        let data_key = keys.presence_data();
        let expire_key = keys.presence_expire();
        let data = Key::read(ctx, &string(ctx, &data_key));
        let expire = Key::read(ctx, &string(ctx, &expire_key));
        let here = [data.check(KeyType::Hash)?, expire.check(KeyType::ZSet)?];
        require_keys_or_stable_slot(ctx, settings, channel, &here, &[&data_key, &expire_key])?;
        Ok(Self { data, expire })
    }

    /// The stored ClientInfo of a client whose entry has not expired.
    fn live_entry(&self, client: &RedisString, now_s: i64) -> Option<RedisString> {
        let alive = self
            .expire
            .zset_score(client)
            .is_some_and(|score| is_alive(score, now_s));
        if alive {
            self.data.hash_get(client)
        } else {
            None
        }
    }

    /// Visits the live entries (client id, stored ClientInfo), soonest expiry first.
    fn for_each_live(&self, now_s: i64, mut visit: impl FnMut(&RedisString, &RedisString)) {
        self.expire
            .zset_scan_above(now_s as f64, f64::INFINITY, |client, _| {
                if let Some(info) = self.data.hash_get(&client) {
                    visit(&client, &info);
                }
            });
    }
}

fn now_seconds() -> i64 {
    now_ms() / 1000
}

/// Stores or refreshes an entry, drops the channel's expired ones, announces a join.
pub fn add(ctx: &Context, args: &[&[u8]]) -> GyreResult<RedisValue> {
    let args = AddArgs::parse(args)?;
    let settings = Settings::current();
    let keys = ChannelKeys::new(settings.prefix.as_str(), args.channel, settings.cluster)?;
    let now_s = now_seconds();
    let expire_at = now_s.saturating_add(args.ttl.unwrap_or(settings.presence_ttl) as i64);
    let client = string(ctx, args.info.client.as_bytes());
    let info = args.info.to_client_info();

    let (was_present, expired, key_deadlines) = {
        let presence = PresenceKeys::open(ctx, &settings, args.channel, &keys)?;
        let expired: Vec<RedisString> = presence.expire.zset_members_up_to(now_s as f64);
        (
            presence.live_entry(&client, now_s).is_some(),
            expired,
            [presence.data.expire_at(), presence.expire.expire_at()],
        )
    };

    let data_key = keys.presence_data();
    let expire_key = keys.presence_expire();
    if !expired.is_empty() {
        let mut hdel: Vec<&[u8]> = Vec::with_capacity(expired.len() + 1);
        hdel.push(&data_key);
        hdel.extend(expired.iter().map(RedisString::as_slice));
        call_replicated(ctx, "HDEL", &hdel)?;
        hdel[0] = &expire_key;
        call_replicated(ctx, "ZREM", &hdel)?;
    }
    call_replicated(
        ctx,
        "HSET",
        &[
            &data_key,
            args.info.client.as_bytes(),
            &info.encode_to_vec(),
        ],
    )?;
    let score = expire_at.to_string();
    call_replicated(
        ctx,
        "ZADD",
        &[&expire_key, score.as_bytes(), args.info.client.as_bytes()],
    )?;
    // Both keys live as long as their longest entry, so one client's short TTL never cuts off
    // another client's entry.
    let entry_deadline_ms = expire_at.saturating_mul(1000);
    for (key, current) in [
        (&data_key, key_deadlines[0]),
        (&expire_key, key_deadlines[1]),
    ] {
        let at = current.unwrap_or(0).max(entry_deadline_ms).to_string();
        call_replicated(ctx, "PEXPIREAT", &[key, at.as_bytes()])?;
    }
    bump(&COUNTERS.presence_updates);

    if args.join_leave && !was_present {
        publish_replicated(
            ctx,
            settings.sharded_pubsub,
            &keys.pubsub_channel(),
            &encode_join(&info),
        )?;
        bump(&COUNTERS.joins);
    }
    Ok(RedisValue::Integer(i64::from(!was_present)))
}

/// Removes an entry; announces a leave when the entry was live.
pub fn rem(ctx: &Context, args: &[&[u8]]) -> GyreResult<RedisValue> {
    let args = RemArgs::parse(args)?;
    let settings = Settings::current();
    let keys = ChannelKeys::new(settings.prefix.as_str(), args.channel, settings.cluster)?;
    let now_s = now_seconds();
    let client = string(ctx, args.client);

    let (live, in_data, in_expire) = {
        let presence = PresenceKeys::open(ctx, &settings, args.channel, &keys)?;
        (
            presence.live_entry(&client, now_s),
            presence.data.hash_get(&client).is_some(),
            presence.expire.zset_score(&client).is_some(),
        )
    };
    if in_data {
        call_replicated(ctx, "HDEL", &[&keys.presence_data(), args.client])?;
    }
    if in_expire {
        call_replicated(ctx, "ZREM", &[&keys.presence_expire(), args.client])?;
    }
    if in_data || in_expire {
        bump(&COUNTERS.presence_updates);
    }
    let Some(stored) = live else {
        return Ok(RedisValue::Integer(0));
    };
    if args.join_leave {
        // Announce what was stored; an entry written by something else still names the client.
        let info = ClientInfo::decode(stored.as_slice()).unwrap_or_else(|_| ClientInfo {
            client: String::from_utf8_lossy(args.client).into_owned(),
            conn_info: Bytes::new(),
            ..Default::default()
        });
        publish_replicated(
            ctx,
            settings.sharded_pubsub,
            &keys.pubsub_channel(),
            &encode_leave(&info),
        )?;
        bump(&COUNTERS.leaves);
    }
    Ok(RedisValue::Integer(1))
}

/// Read-only list of live entries.
pub fn get(ctx: &Context, args: &[&[u8]]) -> GyreResult<RedisValue> {
    let args = GetArgs::parse(args)?;
    let settings = Settings::current();
    let keys = ChannelKeys::new(settings.prefix.as_str(), args.channel, settings.cluster)?;
    let presence = PresenceKeys::open(ctx, &settings, args.channel, &keys)?;
    let mut reply = Vec::new();
    let mut failure = None;
    presence.for_each_live(now_seconds(), |client, info| {
        if args.raw {
            reply.push(RedisValue::StringBuffer(client.as_slice().to_vec()));
            reply.push(RedisValue::StringBuffer(info.as_slice().to_vec()));
            return;
        }
        match decode_entry(info.as_slice()) {
            Ok(fields) => reply.push(RedisValue::Array(
                fields.into_iter().map(RedisValue::StringBuffer).collect(),
            )),
            Err(e) => failure = Some(e),
        }
    });
    match failure {
        Some(e) => Err(e),
        None => Ok(RedisValue::Array(reply)),
    }
}

/// Read-only `[num_clients, num_unique_users]` of live entries.
pub fn get_stats(ctx: &Context, args: &[&[u8]]) -> GyreResult<RedisValue> {
    let mut c = Cursor::new(args);
    let channel = c.next()?;
    c.finish()?;
    let settings = Settings::current();
    let keys = ChannelKeys::new(settings.prefix.as_str(), channel, settings.cluster)?;
    let presence = PresenceKeys::open(ctx, &settings, channel, &keys)?;
    let mut stored = Vec::new();
    presence.for_each_live(now_seconds(), |_, info| {
        stored.push(info.as_slice().to_vec())
    });
    let (clients, users) = stats(stored.iter().map(Vec::as_slice))?;
    Ok(RedisValue::Array(vec![
        RedisValue::Integer(clients as i64),
        RedisValue::Integer(users as i64),
    ]))
}
