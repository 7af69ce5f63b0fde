//! `GYRE.NAMESPACE SET|GET|DEL|LIST`: history options per namespace in the `P.namespaces` hash,
//! or in a cluster in each node's memory (see `store::namespace_table`).

use redis_module::{Context, KeyType, RedisValue, ScanKeyCursor};

use crate::config::Settings;
use crate::core::GyreResult;
use crate::core::keys::namespaces_key;
use crate::core::namespace::{NamespaceCommand, NamespaceOptions};
use crate::store::key::Key;
use crate::store::{call_replicated, namespace_table, read_namespace, string};

pub fn namespace(ctx: &Context, args: &[&[u8]]) -> GyreResult<RedisValue> {
    let command = NamespaceCommand::parse(args)?;
    let settings = Settings::current();
    let key = namespaces_key(settings.prefix.as_str());
    match command {
        NamespaceCommand::Set {
            name,
            history_size,
            history_ttl,
            meta_ttl,
        } => {
            // Stored complete, so GET shows exactly what a publish in the namespace uses.
            let options = NamespaceOptions {
                history_size,
                history_ttl,
                meta_ttl: meta_ttl.unwrap_or(settings.defaults.meta_ttl),
            };
            if settings.cluster {
                namespace_table::set(name, options);
                ctx.replicate_verbatim();
            } else {
                call_replicated(ctx, "HSET", &[&key, name, options.encode().as_bytes()])?;
            }
            Ok(RedisValue::SimpleStringStatic("OK"))
        }
        NamespaceCommand::Get(name) => Ok(match read_namespace(ctx, &key, name)? {
            None => RedisValue::Null,
            Some(o) => RedisValue::Array(vec![
                RedisValue::BulkString("history_size".into()),
                RedisValue::Integer(o.history_size as i64),
                RedisValue::BulkString("history_ttl".into()),
                RedisValue::Integer(o.history_ttl as i64),
                RedisValue::BulkString("history_meta_ttl".into()),
                RedisValue::Integer(o.meta_ttl as i64),
            ]),
        }),
        NamespaceCommand::Del(name) if settings.cluster => {
            let existed = namespace_table::remove(name);
            if existed {
                ctx.replicate_verbatim();
            }
            Ok(RedisValue::Integer(i64::from(existed)))
        }
        NamespaceCommand::List if settings.cluster => Ok(RedisValue::Array(
            namespace_table::names()
                .into_iter()
                .map(RedisValue::StringBuffer)
                .collect(),
        )),
        NamespaceCommand::Del(name) => {
            let exists = {
                let hash = Key::read(ctx, &string(ctx, &key));
                hash.check(KeyType::Hash)? && hash.hash_get(&string(ctx, name)).is_some()
            };
            if exists {
                call_replicated(ctx, "HDEL", &[&key, name])?;
            }
            Ok(RedisValue::Integer(i64::from(exists)))
        }
        NamespaceCommand::List => {
            let hash = ctx.open_key(&string(ctx, &key));
            if hash.key_type() != KeyType::Hash {
                return Ok(RedisValue::Array(Vec::new()));
            }
            let mut names = Vec::new();
            ScanKeyCursor::new(hash).for_each(|_, field, _| names.push(field.as_slice().to_vec()));
            names.sort();
            Ok(RedisValue::Array(
                names.into_iter().map(RedisValue::StringBuffer).collect(),
            ))
        }
    }
}
