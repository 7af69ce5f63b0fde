//! libgyre.so: the Redis module behind Gyre (see `docs/module.md` for the command contract).
//!
//! - `lib.rs`: this registration table (commands, flags, key positions, configs) and the
//!   allocator, nothing else.
//! - [`edge`]: panic guard, panic hook, and the only place errors become reply text.
//! - [`commands`]: one file per command family.
//! - [`core`]: pure logic (arguments, key names, retention, ranges, expiry, epochs).
//! - [`store`]: Redis-side plumbing (low-level keys, replicated writes, publishing).
//! - [`config`]: the `gyre.*` configuration values; [`stats`]: `INFO gyre` counters.
//! - [`lineage`]: this node's current lineage and the server events that renew it.
//! - [`slots`]: the slots that may be migrating into this node (keys arrived by `RESTORE`).

mod commands;
mod config;
mod core;
mod edge;
mod lineage;
mod slots;
mod stats;
mod store;

use std::sync::atomic::Ordering;

use redis_module::configuration::ConfigurationFlags;
use redis_module::{Context, ContextFlags, RedisString, Status, redis_module};

use crate::config::CONFIG;
use crate::core::parse::{MAX_HISTORY_SIZE, MAX_TTL_SECONDS};
use crate::edge::guard;

// Redis must account for the module's memory, but unit tests run without a server and would
// abort on the first allocation through RedisAlloc.
#[cfg(not(test))]
type Allocator = redis_module::alloc::RedisAlloc;
#[cfg(not(test))]
const ALLOCATOR: Allocator = redis_module::alloc::RedisAlloc;
#[cfg(test)]
type Allocator = std::alloc::System;
#[cfg(test)]
const ALLOCATOR: Allocator = std::alloc::System;

const MAX_TTL: i64 = MAX_TTL_SECONDS as i64;

fn init(ctx: &Context, _args: &[RedisString]) -> Status {
    edge::install_panic_hook();
    // A panic here fails the MODULE LOAD (or the server start) instead of aborting Redis.
    edge::shield(
        || Status::Err,
        || {
            lineage::renew(ctx, "module loaded");
            slots::mark_all();
            let cluster = ctx.get_flags().contains(ContextFlags::CLUSTER);
            CONFIG.cluster.store(cluster, Ordering::Relaxed);
            // RESTORE (slot migration): of a meta hash for the lineage, of any key for the slot
            // marks.
            lineage::subscribe(ctx)
        },
    )
}

// Legacy command table: Redis 7.0 lacks RM_SetCommandACLCategories, so the ACL category string
// stays empty, and key positions are first/last/step (Redis derives key specs from them).
redis_module! {
    name: "gyre",
    version: 1,
    allocator: (Allocator, ALLOCATOR),
    data_types: [],
    init: init,
    commands: [
        ["gyre.publish", guard(commands::publish::publish), "write deny-oom", 1, 1, 1, ""],
        ["gyre.history", guard(commands::history::history), "readonly", 1, 1, 1, ""],
        ["gyre.history.remove", guard(commands::history::remove), "write", 1, 1, 1, ""],
        ["gyre.position", guard(commands::history::position), "write deny-oom", 1, 1, 1, ""],
        ["gyre.presence.add", guard(commands::presence::add), "write deny-oom", 1, 1, 1, ""],
        ["gyre.presence.rem", guard(commands::presence::rem), "write", 1, 1, 1, ""],
        ["gyre.presence", guard(commands::presence::get), "readonly", 1, 1, 1, ""],
        ["gyre.presence.stats", guard(commands::presence::get_stats), "readonly", 1, 1, 1, ""],
        ["gyre.namespace", guard(commands::namespace::namespace), "write deny-oom", 0, 0, 0, ""],
    ],
    configurations: [
        i64: [
            ["history-size", &CONFIG.history_size, 0, 0, MAX_HISTORY_SIZE as i64, ConfigurationFlags::DEFAULT, None],
            ["history-ttl", &CONFIG.history_ttl, 0, 0, MAX_TTL, ConfigurationFlags::DEFAULT, None],
            ["history-meta-ttl", &CONFIG.history_meta_ttl, 2_592_000, 0, MAX_TTL, ConfigurationFlags::DEFAULT, None],
            ["presence-ttl", &CONFIG.presence_ttl, 60, 1, MAX_TTL, ConfigurationFlags::DEFAULT, None],
            ["idempotency-ttl", &CONFIG.idempotency_ttl, 300, 1, MAX_TTL, ConfigurationFlags::DEFAULT, None],
        ],
        string: [
            ["prefix", &CONFIG.prefix, "gyre", ConfigurationFlags::DEFAULT, None],
        ],
        bool: [
            ["sharded-pubsub", &CONFIG.sharded_pubsub, false, ConfigurationFlags::DEFAULT, None],
        ],
        enum: [],
        module_args_as_configuration: true,
    ]
}
