//! `GYRE.HISTORY <channel> [SINCE <offset>] [LIMIT <n>] [REVERSE] [RAW]` and
//! `GYRE.HISTORY.REMOVE <channel>`.

use redis_module::{Context, ContextFlags, KeyType, RedisValue};

use crate::commands::require_keys_or_stable_slot;
use crate::config::Settings;
use crate::core::epoch::new_epoch;
use crate::core::history::{Entry, HistoryArgs};
use crate::core::keys::ChannelKeys;
use crate::core::lineage::EpochStep;
use crate::core::parse::Cursor;
use crate::core::parse::is_keyword;
use crate::core::{GyreError, GyreResult};
use crate::lineage;
use crate::stats::{COUNTERS, bump};
use crate::store::key::Key;
use crate::store::{call_replicated, read_meta, string};

/// Read-only: never creates or rotates an epoch, so it also runs on replicas. On a primary it
/// reports the epoch the next write will store (a meta written under another lineage shows its
/// rotated epoch already); a replica reports the stored epoch, since it cannot know the lineage
/// of its primary.
pub fn history(ctx: &Context, args: &[&[u8]]) -> GyreResult<RedisValue> {
    let args = HistoryArgs::parse(args)?;
    let settings = Settings::current();
    let keys = ChannelKeys::new(settings.prefix.as_str(), args.channel, settings.cluster)?;
    bump(&COUNTERS.history_reads);

    let meta_key = keys.meta();
    let meta = Key::read(ctx, &string(ctx, &meta_key));
    if !meta.check(KeyType::Hash)? {
        // "No such channel" only from the node that would hold it: during a migration the
        // channel may be on the other node.
        let probe: [&[u8]; 2] = [&meta_key, &keys.stream()];
        require_keys_or_stable_slot(ctx, &settings, args.channel, &[false], &probe)?;
        return Ok(reply(0, String::new(), Vec::new()));
    }
    let stored = read_meta(&meta)?;
    let top = stored.top;
    let epoch = if ctx.get_flags().contains(ContextFlags::MASTER) {
        let step = stored.next_epoch(lineage::current(), lineage::arrived(&meta_key));
        step.reported().to_owned()
    } else {
        stored.epoch.unwrap_or_default()
    };

    let mut entries = Vec::new();
    if let Some(range) = args.range() {
        let stream_key = keys.stream();
        let stream = Key::read(ctx, &string(ctx, &stream_key));
        let stream_exists = stream.check(KeyType::Stream)?;
        // A meta without its stream: expired publications, or a stream still on the other node
        // of a migration.
        let probe: [&[u8]; 2] = [&meta_key, &stream_key];
        let here = [true, stream_exists];
        require_keys_or_stable_slot(ctx, &settings, args.channel, &here, &probe)?;
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
/// channel has no epoch yet or its epoch was written under another lineage: like Centrifuge's
/// history script it creates one (or, here, rotates it), so that a client positioned on the
/// channel learns the epoch the next publication will carry (and an empty epoch never stands for
/// "any stream").
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
    let here = lineage::current();
    let (step, top, meta_exists) = {
        let meta = Key::read(ctx, &string(ctx, &meta_key));
        let meta_exists = meta.check(KeyType::Hash)?;
        let stored = read_meta(&meta)?;
        (
            stored.next_epoch(here, lineage::arrived(&meta_key)),
            stored.top,
            meta_exists,
        )
    };
    if !meta_exists {
        // A new epoch only where the channel's meta cannot be on another node.
        let probe: [&[u8]; 2] = [&meta_key, &keys.stream()];
        require_keys_or_stable_slot(ctx, &settings, channel, &[false], &probe)?;
    }
    let stamp = here.text();
    let epoch = match step {
        EpochStep::Keep(epoch) => epoch,
        EpochStep::Rotate(epoch) => {
            // The offsets continue; the meta keeps its TTL.
            call_replicated(
                ctx,
                "HSET",
                &[&meta_key, b"e", epoch.as_bytes(), b"l", &stamp],
            )?;
            lineage::settled(&meta_key);
            bump(&COUNTERS.epoch_rotations);
            epoch
        }
        EpochStep::Create => {
            let epoch = new_epoch();
            call_replicated(
                ctx,
                "HSET",
                &[&meta_key, b"e", epoch.as_bytes(), b"l", &stamp],
            )?;
            lineage::settled(&meta_key);
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
            require_keys_or_stable_slot(
                ctx,
                &settings,
                channel,
                &[false],
                &[&stream_key, &keys.meta()],
            )?;
            return Ok(RedisValue::Integer(0));
        }
        stream.len()
    };
    call_replicated(ctx, "DEL", &[&stream_key])?;
    Ok(RedisValue::Integer(removed as i64))
}
