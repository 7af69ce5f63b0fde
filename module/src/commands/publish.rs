//! `GYRE.PUBLISH <channel> <data> [HISTORY …] [META-TTL …] [IDEMPOTENCY …] [INFO …] [TAGS …]
//! [DELTA] [VERSION <n> [VERSION-EPOCH <e>]]`
//!
//! Replies `[offset, epoch]` (`[0, ""]` without history), or nil when `VERSION` skipped the
//! publication: nothing was written or published.
//!
//! The hot path, so it writes through the low-level key API instead of `RM_Call` (several times
//! faster) and owns the side effects itself: each write is replicated as the concrete command
//! (`HSET`, `PEXPIREAT` with absolute times, `XADD` with the explicit id and `MAXLEN`), fires the
//! keyspace event that command would, and the message goes out like a client's `PUBLISH`.

use redis_module::{Context, KeyType, NotifyEvent, RedisString, RedisValue};

use crate::commands::require_keys_or_stable_slot;
use crate::config::Settings;
use crate::core::epoch::new_epoch;
use crate::core::keys::{ChannelKeys, namespaces_key};
use crate::core::namespace::namespace_of;
use crate::core::publish::{
    History, PublishArgs, deadline_ms, parse_result, parse_version, plan_append,
};
use crate::core::{GyreError, GyreResult};
use crate::lineage;
use crate::stats::{COUNTERS, bump};
use crate::store::effects::{Target, notify, publish as deliver, replicate};
use crate::store::key::{Key, StreamAddError, stream_id};
use crate::store::{Words, now_ms, number, read_meta, read_namespace, string, words};
use gyre_proto::redis_payload::{encode_plain, encode_positioned};
use redis_module::raw::RedisModuleStreamID;

pub fn publish(ctx: &Context, args: &[&[u8]]) -> GyreResult<RedisValue> {
    let args = PublishArgs::parse(args)?;
    let settings = Settings::current();
    let keys = ChannelKeys::new(settings.prefix.as_str(), args.channel, settings.cluster)?;
    let now = now_ms();

    let result_key = args.idempotency_key.map(|k| string(ctx, &keys.result(k)));
    if let Some(result_key) = &result_key
        && let Some((offset, epoch)) = remembered(ctx, result_key)?
    {
        bump(&COUNTERS.deduplicated);
        return Ok(reply(offset, epoch));
    }

    let namespace = if args.needs_namespace() {
        read_namespace(
            ctx,
            &namespaces_key(settings.prefix.as_str()),
            namespace_of(args.channel),
        )?
    } else {
        None
    };
    let retention = args.retention(namespace, settings.defaults)?;
    let publication = args.encode_publication(now);

    // From here on a result key, if any, is missing on this node: a new idempotency key.
    let new_result = result_key.as_ref().map(RedisString::as_slice);
    let (offset, epoch, payload) = match retention.history {
        Some(history) => {
            let place = Placement {
                settings: &settings,
                channel: args.channel,
                new_result,
            };
            let version = args.version.map(|v| (v, args.version_epoch));
            let Some((offset, epoch)) = append(
                ctx,
                &keys,
                place,
                history,
                (retention.meta_ttl, version),
                &publication,
                now,
            )?
            else {
                return Ok(RedisValue::Null);
            };
            let payload = encode_positioned(offset, &epoch, &publication);
            (offset, epoch, payload)
        }
        None => {
            // Nothing of the channel is written but the result: a publish without idempotency
            // needs no key and runs wherever Redis sent it.
            if let Some(result) = new_result {
                require_keys_or_stable_slot(
                    ctx,
                    &settings,
                    args.channel,
                    &[false],
                    &[result, &keys.meta()],
                )?;
            }
            (0, String::new(), encode_plain(&publication))
        }
    };
    deliver(
        ctx,
        settings.cluster,
        settings.sharded_pubsub,
        &string(ctx, &keys.pubsub_channel()),
        &string(ctx, &payload),
    );

    if let Some(result_key) = &result_key {
        let ttl = args.idempotency_ttl.unwrap_or(settings.idempotency_ttl);
        remember(ctx, result_key, offset, &epoch, deadline_ms(now, ttl));
    }
    bump(&COUNTERS.publications);
    Ok(reply(offset, epoch))
}

fn reply(offset: u64, epoch: String) -> RedisValue {
    RedisValue::Array(vec![
        RedisValue::Integer(offset as i64),
        RedisValue::BulkString(epoch),
    ])
}

/// The `[offset, epoch]` an earlier publish with the same idempotency key answered. Also the
/// type check of the result key, before any write.
fn remembered(ctx: &Context, result_key: &RedisString) -> GyreResult<Option<(u64, String)>> {
    let key = Key::read(ctx, result_key);
    if !key.check(KeyType::Hash)? {
        return Ok(None);
    }
    let (e, s) = key.hash_get_pair(c"e", c"s");
    parse_result(
        e.as_ref().map(|v| v.as_slice()),
        s.as_ref().map(|v| v.as_slice()),
    )
}

/// `HSET result e <epoch> s <offset>` + `PEXPIREAT result <at>`.
fn remember(ctx: &Context, result_key: &RedisString, offset: u64, epoch: &str, at: i64) {
    let key = Key::write(ctx, result_key);
    let e = string(ctx, epoch.as_bytes());
    let s = number(ctx, offset as i64);
    let w = words();
    hash_set(ctx, &key, result_key, &[(&w.e, &e), (&w.s, &s)]);
    expire_at(ctx, &key, result_key, at);
}

/// What the slot-migration guard of [`append`] needs to know.
struct Placement<'a> {
    settings: &'a Settings,
    channel: &'a [u8],
    /// The result key of a new idempotency key (missing on this node).
    new_result: Option<&'a [u8]>,
}

/// Appends to the history stream and advances the meta hash; returns the new position, or `None`
/// when `version` (with its version epoch) is not newer than the meta's: then nothing is written.
/// The epoch follows the lineage rule (`core::lineage`): a meta written under another lineage
/// continues its offsets under a rotated epoch, stamped with the current lineage. In cluster
/// mode, a meta, a stream or a result that is not on this node makes it check the slot first
/// (slot migration).
fn append(
    ctx: &Context,
    keys: &ChannelKeys,
    place: Placement,
    history: History,
    (meta_ttl, version): (u64, Option<(u64, &str)>),
    publication: &[u8],
    now: i64,
) -> GyreResult<Option<(u64, String)>> {
    let meta_name = string(ctx, &keys.meta());
    let stream_name = string(ctx, &keys.stream());
    let meta = Key::write(ctx, &meta_name);
    let stream = Key::write(ctx, &stream_name);
    // Every check happens before the first write, so a refused publish changes nothing.
    let meta_exists = meta.check(KeyType::Hash)?;
    let stored = read_meta(&meta)?;
    let stream_exists = stream.check(KeyType::Stream)?;
    let meta_key = meta_name.as_slice();
    // The keys this publish needs, and whether each is here: meta, stream, and the result of a
    // new idempotency key (missing, or the publish would have been answered from it).
    let needed_keys = [
        meta_key,
        stream_name.as_slice(),
        place.new_result.unwrap_or_default(),
    ];
    let here = [meta_exists, stream_exists, false];
    let needed = if place.new_result.is_some() { 3 } else { 2 };
    require_keys_or_stable_slot(
        ctx,
        place.settings,
        place.channel,
        &here[..needed],
        &needed_keys[..needed],
    )?;
    if let Some((version, version_epoch)) = version {
        let (v, ve) = meta.hash_get_pair(c"v", c"ve");
        let stored = parse_version(
            v.as_ref().map(|v| v.as_slice()),
            ve.as_ref().map(|v| v.as_slice()),
        )?;
        let stored = stored.as_ref().map(|(v, e)| (*v, e.as_str()));
        if gyre_proto::version::is_stale(stored, version, version_epoch) {
            bump(&COUNTERS.version_skipped);
            return Ok(None);
        }
    }
    let lineage_here = lineage::current();
    let step = plan_append(
        stored.next_epoch(lineage_here, lineage::arrived(meta_key)),
        stored.top,
        new_epoch,
    )?;

    let w: &Words = words();
    let offset = number(ctx, step.offset as i64);
    if step.epoch_is_new {
        let epoch = string(ctx, step.epoch.as_bytes());
        let stamp = string(ctx, &lineage_here.text());
        hash_set(
            ctx,
            &meta,
            &meta_name,
            &[(&w.e, &epoch), (&w.s, &offset), (&w.l, &stamp)],
        );
        lineage::settled(meta_key);
        if step.rotated {
            bump(&COUNTERS.epoch_rotations);
        }
    } else {
        hash_set(ctx, &meta, &meta_name, &[(&w.s, &offset)]);
    }
    if let Some((version, version_epoch)) = version {
        let version = number(ctx, version.min(i64::MAX as u64) as i64);
        let version_epoch = string(ctx, version_epoch.as_bytes());
        hash_set(
            ctx,
            &meta,
            &meta_name,
            &[(&w.v, &version), (&w.ve, &version_epoch)],
        );
    }
    if meta_ttl > 0 {
        expire_at(ctx, &meta, &meta_name, deadline_ms(now, meta_ttl));
    } else if meta.expire_at().is_some() {
        // A meta TTL of 0 means "never expires", also for a hash written under an older setting.
        persist(ctx, &meta, &meta_name);
    }
    // A new sequence must not mix with entries of an earlier life of the channel.
    if step.restart && stream_exists {
        delete(ctx, &stream, &stream_name);
    }

    let id = RedisModuleStreamID {
        ms: step.offset,
        seq: 0,
    };
    let field: &RedisString = &w.d;
    let value = string(ctx, publication);
    let added = match stream.stream_add(id, &[(field, &value)]) {
        Err(StreamAddError::IdTooSmall) => {
            // The stream outlived its meta hash in a way the restart rule cannot see (the hash
            // was edited or replaced): the meta decides, so the stale entries go.
            delete(ctx, &stream, &stream_name);
            stream.stream_add(id, &[(field, &value)])
        }
        other => other,
    };
    if added.is_err() {
        // Nothing to replicate for the stream; the meta writes already replicated keep primary
        // and replicas identical.
        return Err(GyreError::StreamAppendFailed);
    }
    let trimmed = stream.stream_trim(history.size);
    let size = number(ctx, history.size.min(i64::MAX as u64) as i64);
    let id_text = stream_id(ctx, id);
    replicate(
        ctx,
        Target::Everywhere,
        c"XADD",
        &[&stream_name, &w.maxlen, &size, &id_text, field, &value],
    );
    notify(ctx, NotifyEvent::STREAM, c"xadd", &stream_name);
    if trimmed > 0 {
        notify(ctx, NotifyEvent::STREAM, c"xtrim", &stream_name);
    }
    expire_at(ctx, &stream, &stream_name, deadline_ms(now, history.ttl));
    Ok(Some((step.offset, step.epoch)))
}

/// `HSET key f v [f v [f v]]` through an open key.
fn hash_set(ctx: &Context, key: &Key, name: &RedisString, fields: &[(&RedisString, &RedisString)]) {
    debug_assert!(fields.len() <= 3, "HSET replication holds at most 3 fields");
    key.hash_set(fields);
    let mut argv: [&RedisString; 7] = [name; 7];
    let mut len = 1;
    for (field, value) in fields.iter().take(3) {
        argv[len] = field;
        argv[len + 1] = value;
        len += 2;
    }
    replicate(ctx, Target::Everywhere, c"HSET", &argv[..len]);
    notify(ctx, NotifyEvent::HASH, c"hset", name);
}

/// `PEXPIREAT key <at>` through an open key; Redis's EXPIRE family fires `expire`.
fn expire_at(ctx: &Context, key: &Key, name: &RedisString, at: i64) {
    key.set_expire_at(at);
    replicate(
        ctx,
        Target::Everywhere,
        c"PEXPIREAT",
        &[name, &number(ctx, at)],
    );
    notify(ctx, NotifyEvent::GENERIC, c"expire", name);
}

/// `PERSIST key` through an open key.
fn persist(ctx: &Context, key: &Key, name: &RedisString) {
    key.remove_expire();
    replicate(ctx, Target::Everywhere, c"PERSIST", &[name]);
    notify(ctx, NotifyEvent::GENERIC, c"persist", name);
}

/// `DEL key` through an open key.
fn delete(ctx: &Context, key: &Key, name: &RedisString) {
    key.delete();
    replicate(ctx, Target::Everywhere, c"DEL", &[name]);
    notify(ctx, NotifyEvent::GENERIC, c"del", name);
}
