//! `INFO gyre`: counters and the node's current lineage (section `gyre_stats`), and how the module
//! talks to Redis (section `gyre_config`), for proxies that cannot run `CONFIG GET` (a renamed or
//! forbidden command).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use redis_module::{InfoContext, RedisError, RedisResult};

use crate::config::CONFIG;

/// Monotonic counters since the module was loaded.
pub struct Counters {
    pub publications: AtomicU64,
    pub deduplicated: AtomicU64,
    /// Publications `VERSION` skipped (not newer than the channel's stored version).
    pub version_skipped: AtomicU64,
    /// Channels whose epoch was replaced because their meta was written under another lineage.
    pub epoch_rotations: AtomicU64,
    pub history_reads: AtomicU64,
    pub presence_updates: AtomicU64,
    pub joins: AtomicU64,
    pub leaves: AtomicU64,
    pub errors: AtomicU64,
    pub panics: AtomicU64,
    /// Commands that missed one of their keys in cluster mode and asked Redis whether their slot
    /// is stable on this node (slot migration).
    pub slot_checks: AtomicU64,
    /// Of those, the ones refused with `TRYAGAIN` because the slot was migrating.
    pub slot_retries: AtomicU64,
}

pub static COUNTERS: Counters = Counters {
    publications: AtomicU64::new(0),
    deduplicated: AtomicU64::new(0),
    version_skipped: AtomicU64::new(0),
    epoch_rotations: AtomicU64::new(0),
    history_reads: AtomicU64::new(0),
    presence_updates: AtomicU64::new(0),
    joins: AtomicU64::new(0),
    leaves: AtomicU64::new(0),
    errors: AtomicU64::new(0),
    panics: AtomicU64::new(0),
    slot_checks: AtomicU64::new(0),
    slot_retries: AtomicU64::new(0),
};

pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Registered in redis-module's list of INFO handlers. Redis prefixes the sections and the
/// field names with the module name: sections `gyre_stats` and `gyre_config`, fields
/// `gyre_publications` …; `INFO gyre` shows both, `INFO gyre_stats` one of them.
#[linkme::distributed_slice(redis_module::server_events::INFO_COMMAND_HANDLER_LIST)]
fn info(ctx: &InfoContext, _for_crash_report: bool) -> RedisResult<()> {
    crate::edge::shield(|| Err(RedisError::Str("internal error")), || fill_info(ctx))
}

fn fill_info(ctx: &InfoContext) -> RedisResult<()> {
    let c = &COUNTERS;
    let v = |a: &AtomicU64| a.load(Ordering::Relaxed);
    ctx.builder()
        .add_section("stats")
        .field("publications", v(&c.publications))?
        .field("publications_deduplicated", v(&c.deduplicated))?
        .field("publications_version_skipped", v(&c.version_skipped))?
        .field("epoch_rotations", v(&c.epoch_rotations))?
        .field("history_reads", v(&c.history_reads))?
        .field("presence_updates", v(&c.presence_updates))?
        .field("joins", v(&c.joins))?
        .field("leaves", v(&c.leaves))?
        .field("errors", v(&c.errors))?
        .field("panics", v(&c.panics))?
        .field("slot_checks", v(&c.slot_checks))?
        .field("slot_retries", v(&c.slot_retries))?
        .field("lineage", crate::lineage::current().to_string())?
        .build_section()?
        // `gyre.sharded-pubsub`: publications go out with SPUBLISH (1) or PUBLISH (0).
        .add_section("config")
        .field("sharded_pubsub", flag(&CONFIG.sharded_pubsub))?
        // Keys carry the channel as a hash tag (`P.stream.{ch}`): the server runs in cluster mode.
        .field("cluster_layout", flag(&CONFIG.cluster))?
        .build_section()?
        .build_info()?;
    Ok(())
}

/// `1` or `0`, as Redis's own INFO shows flags.
fn flag(value: &AtomicBool) -> u64 {
    u64::from(value.load(Ordering::Relaxed))
}
