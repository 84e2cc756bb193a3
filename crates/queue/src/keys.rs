//! Every Redis key a queue uses, derived in one place.
//!
//! All keys of one queue share the hash tag `{queue}`, so a queue lives in one Redis Cluster slot
//! and every script can touch all of its keys atomically.

/// The names of one queue's keys: `<prefix>:{<queue>}:<part>`.
#[derive(Debug, Clone)]
pub struct Keys {
    /// HASH job id → payload: the one record per job, present while the job is pending, leased or
    /// waiting to retry.
    pub jobs: String,
    /// ZSET job id → due time in Unix milliseconds (Redis clock): ready and delayed jobs alike.
    pub due: String,
    /// ZSET job id → lease expiry in Unix milliseconds: jobs a worker is running.
    pub leases: String,
    /// HASH job id → lease token of the fetch that holds it; settles must present it.
    pub tokens: String,
    /// HASH job id → attempts of the current step (absent until the first fetch).
    pub attempts: String,
    /// HASH job id → last error, while the job waits to retry.
    pub errors: String,
    /// HASH job id → dead-letter record (JSON: payload, attempts, error, at).
    pub dead: String,
    /// ZSET job id → dead-letter time, so dead letters can be listed oldest first, bounded.
    pub dead_index: String,
    /// HASH of lifetime counters (complete, retry, reschedule, dead, release).
    pub stats: String,
    /// LIST of wake-up signals for idle workers (bounded to 64 entries).
    pub signal: String,
    /// Counter for generated job ids.
    pub seq: String,
    /// ZSET job id → completion time: ids remembered after completion (when configured), so a
    /// late duplicate enqueue is recognised.
    pub done: String,
    /// HASH job id → not-before time in Unix milliseconds: jobs asked to run again right after
    /// their current run (written by `lua/writes.lua` alone).
    pub promoted: String,
    /// A counter bumped before `WAIT` when settles are durable, so the wait covers the settles
    /// written on the shared connection.
    pub sync: String,
}

impl Keys {
    /// Keys for `queue` under `prefix` (for example `paywatch` and `check-payment`).
    pub fn new(prefix: &str, queue: &str) -> Self {
        let base = format!("{prefix}:{{{queue}}}");
        let key = |part: &str| format!("{base}:{part}");
        Self {
            jobs: key("jobs"),
            due: key("due"),
            leases: key("leases"),
            tokens: key("tokens"),
            attempts: key("attempts"),
            errors: key("errors"),
            dead: key("dead"),
            dead_index: key("dead_index"),
            stats: key("stats"),
            signal: key("signal"),
            seq: key("seq"),
            done: key("done"),
            promoted: key("promoted"),
            sync: key("sync"),
        }
    }

    /// Every key, for cleanup and inspection tools.
    pub fn all(&self) -> [&str; 14] {
        [
            &self.jobs,
            &self.due,
            &self.leases,
            &self.tokens,
            &self.attempts,
            &self.errors,
            &self.dead,
            &self.dead_index,
            &self.stats,
            &self.signal,
            &self.seq,
            &self.done,
            &self.promoted,
            &self.sync,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_one_hash_tag() {
        let keys = Keys::new("pw", "check-payment");
        for key in keys.all() {
            assert!(key.starts_with("pw:{check-payment}:"), "{key}");
        }
        assert_eq!(keys.due, "pw:{check-payment}:due");
    }
}
