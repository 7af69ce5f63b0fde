//! `GYRE.HISTORY <channel> [SINCE <offset>] [LIMIT <n>] [REVERSE] [RAW]` and
//! `GYRE.HISTORY.REMOVE <channel>`.

use redis_module::{Context, KeyType, RedisValue};

use crate::config::Settings;
use crate::core::epoch::new_epoch;
use crate::core::history::{Entry, HistoryArgs};
use crate::core::keys::ChannelKeys;
use crate::core::parse::Cursor;
use crate::core::parse::is_keyword;
use crate::core::publish::{parse_epoch, parse_top};
use crate::core::{GyreError, GyreResult};
use crate::stats::{COUNTERS, bump};
use crate::store::key::Key;
use crate::store::{call_replicated, string};

/// Read-only: never creates an epoch (unlike Centrifuge's script), so it also runs on replicas.
pub fn history(ctx: &Context, args: &[&[u8]]) -> GyreResult<RedisValue> {
    let args = HistoryArgs::parse(args)?;
    let settings = Settings::current();
    let keys = ChannelKeys::new(settings.prefix.as_str(), args.channel, settings.cluster)?;
    bump(&COUNTERS.history_reads);

    let meta = Key::read(ctx, &string(ctx, &keys.meta()));
    if !meta.check(KeyType::Hash)? {
        return Ok(reply(0, String::new(), Vec::new()));
    }
    let (e, s) = meta.hash_get_pair(c"e", c"s");
    let epoch = parse_epoch(e.as_ref().map(|v| v.as_slice()))?.unwrap_or_default();
    let top = parse_top(s.as_ref().map(|v| v.as_slice()))?;

    let mut entries = Vec::new();
    if let Some(range) = args.range() {
        let stream = Key::read(ctx, &string(ctx, &keys.stream()));
        stream.check(KeyType::Stream)?;
        let mut failure = None;
        stream.stream_scan(range.first, range.last, range.reverse, |offset, data| {
            let data = data.as_ref().map_or(&[][..], |d| d.as_slice());
            let entry = if args.raw {
                Ok(RedisValue::Array(vec![
                    RedisValue::Integer(offset as i64),
                    RedisValue::StringBuffer(data.to_vec()),
                ]))
            } else {
                Entry::decode(offset, data).map(entry_value)
            };
            match entry {
                Ok(value) => entries.push(value),
                Err(e) => failure = Some(e),
            }
            failure.is_none() && !range.is_full(entries.len() as u64)
        });
        if let Some(e) = failure {
            return Err(e);
        }
    }
    Ok(reply(top, epoch, entries))
}

fn reply(top: u64, epoch: String, entries: Vec<RedisValue>) -> RedisValue {
    RedisValue::Array(vec![
        RedisValue::Integer(top as i64),
        RedisValue::BulkString(epoch),
        RedisValue::Array(entries),
    ])
}

fn entry_value(e: Entry) -> RedisValue {
    let info = e.info.map_or_else(Vec::new, |fields| {
        fields.into_iter().map(RedisValue::StringBuffer).collect()
    });
    RedisValue::Array(vec![
        RedisValue::Integer(e.offset as i64),
        RedisValue::StringBuffer(e.data),
        RedisValue::Integer(e.time_ms),
        RedisValue::Array(info),
        RedisValue::Array(e.tags.into_iter().map(RedisValue::BulkString).collect()),
    ])
}

/// `GYRE.POSITION <channel> [META-TTL <seconds>]` → `[top_offset, epoch]`. Writes only when the
/// channel has no epoch yet: like Centrifuge's history script it creates one, so that a client
/// positioned on a channel nobody has published to yet learns the epoch the next publication
/// will carry (and an empty epoch never stands for "any stream").
pub fn position(ctx: &Context, args: &[&[u8]]) -> GyreResult<RedisValue> {
    let mut c = Cursor::new(args);
    let channel = c.next()?;
    let mut meta_ttl = None;
    while let Some(option) = c.next_opt() {
        if is_keyword(option, "META-TTL") {
            meta_ttl = Some(c.next_ttl("META-TTL")?);
        } else {
            return Err(GyreError::Syntax(option.to_vec()));
        }
    }
    let settings = Settings::current();
    let keys = ChannelKeys::new(settings.prefix.as_str(), channel, settings.cluster)?;
    let meta_key = keys.meta();
    let (epoch, top) = {
        let meta = Key::read(ctx, &string(ctx, &meta_key));
        meta.check(KeyType::Hash)?;
        let (e, s) = meta.hash_get_pair(c"e", c"s");
        (
            parse_epoch(e.as_ref().map(|v| v.as_slice()))?,
            parse_top(s.as_ref().map(|v| v.as_slice()))?,
        )
    };
    let epoch = match epoch {
        Some(epoch) => epoch,
        None => {
            let epoch = new_epoch();
            call_replicated(ctx, "HSET", &[&meta_key, b"e", epoch.as_bytes()])?;
            let ttl = meta_ttl.unwrap_or(settings.defaults.meta_ttl);
            if ttl > 0 {
                call_replicated(ctx, "EXPIRE", &[&meta_key, ttl.to_string().as_bytes()])?;
            }
            epoch
        }
    };
    Ok(RedisValue::Array(vec![
        RedisValue::Integer(top as i64),
        RedisValue::BulkString(epoch),
    ]))
}

/// Drops the publications, keeps the meta hash so offsets and epoch stay valid.
pub fn remove(ctx: &Context, args: &[&[u8]]) -> GyreResult<RedisValue> {
    let mut c = Cursor::new(args);
    let channel = c.next()?;
    c.finish()?;
    let settings = Settings::current();
    let keys = ChannelKeys::new(settings.prefix.as_str(), channel, settings.cluster)?;
    let stream_key = keys.stream();
    let removed = {
        let stream = Key::read(ctx, &string(ctx, &stream_key));
        if !stream.check(KeyType::Stream)? {
            return Ok(RedisValue::Integer(0));
        }
        stream.len()
    };
    call_replicated(ctx, "DEL", &[&stream_key])?;
    Ok(RedisValue::Integer(removed as i64))
}
