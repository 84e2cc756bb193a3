//! The Lua scripts, one per atomic operation (their sources live in `lua/`).
//!
//! A script that writes a job, its due time, a promotion mark or a wake-up starts with
//! [`JOB_WRITES_LUA`], whose functions are the only Lua that writes those: paywatch's submit
//! library includes the same text, so the queue's keys have one writer.

use std::sync::LazyLock;

use redis::Script;

/// The queue's shared Lua writes (`lua/writes.lua`: add, move, promote a running job, wake idle
/// workers), for Lua outside this crate that writes a queue's keys.
pub const JOB_WRITES_LUA: &str = include_str!("lua/writes.lua");

/// A script that follows [`JOB_WRITES_LUA`].
macro_rules! with_writes {
    ($file:literal) => {
        concat!(include_str!("lua/writes.lua"), include_str!($file))
    };
}

/// Idempotent batch enqueue.
pub(crate) static ENQUEUE: LazyLock<Script> =
    LazyLock::new(|| Script::new(with_writes!("lua/enqueue.lua")));
/// Reclaim expired leases, then lease due jobs.
pub(crate) static FETCH: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/fetch.lua")));
/// Complete / reschedule / retry / dead-letter / release a batch of leased jobs.
pub(crate) static SETTLE: LazyLock<Script> =
    LazyLock::new(|| Script::new(with_writes!("lua/settle.lua")));
/// Extend held leases.
pub(crate) static EXTEND: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/extend.lua")));
/// Counts per state.
pub(crate) static STATS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/stats.lua")));
/// Dead-letter list / retry / purge.
pub(crate) static DEAD: LazyLock<Script> =
    LazyLock::new(|| Script::new(with_writes!("lua/dead.lua")));
/// Make a scheduled job due now.
pub(crate) static PROMOTE: LazyLock<Script> =
    LazyLock::new(|| Script::new(with_writes!("lua/promote.lua")));

/// The SHA1 of each of the queue's scripts with its name (`fetch`, `settle`, …), for tools that
/// watch Redis traffic and name what they see (the benchmark's latency proxy).
pub fn script_names() -> Vec<(String, &'static str)> {
    [
        (&*ENQUEUE, "enqueue"),
        (&*FETCH, "fetch"),
        (&*SETTLE, "settle"),
        (&*EXTEND, "extend"),
        (&*STATS, "stats"),
        (&*DEAD, "dead"),
        (&*PROMOTE, "promote"),
    ]
    .into_iter()
    .map(|(script, name)| (script.get_hash().to_owned(), name))
    .collect()
}
