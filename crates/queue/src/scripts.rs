//! The Lua scripts, one per atomic operation (their sources live in `lua/`).

use std::sync::LazyLock;

use redis::Script;

/// Idempotent batch enqueue.
pub(crate) static ENQUEUE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/enqueue.lua")));
/// Reclaim expired leases, then lease due jobs.
pub(crate) static FETCH: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/fetch.lua")));
/// Complete / reschedule / retry / dead-letter / release a batch of leased jobs.
pub(crate) static SETTLE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/settle.lua")));
/// Extend held leases.
pub(crate) static EXTEND: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/extend.lua")));
/// Counts per state.
pub(crate) static STATS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/stats.lua")));
/// Dead-letter list / retry / purge.
pub(crate) static DEAD: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/dead.lua")));
/// Make a scheduled job due now.
pub(crate) static PROMOTE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/promote.lua")));
