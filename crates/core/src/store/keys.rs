//! Every Redis key of paywatch's orders, derived in one place.
//!
//! Orders are spread over `N` shards. Shard `s` is the hash tag `{check-payment.s}`: its check
//! queue (crates/queue names a queue's keys `<prefix>:{<queue>}:<part>`), its order records, its
//! payment index and its metadata share that tag, so the submit function touches one Cluster slot.

use crate::queues::CHECK_PAYMENT;

/// The shard count of a deployment that does not set one: a single Redis.
pub const DEFAULT_SHARDS: u32 = 1;

/// The most shards a deployment may have (each is a queue every check worker listens on).
pub const MAX_SHARDS: u32 = 1024;

/// The shard of an order: IEEE CRC-32 of its id (as zlib computes it) modulo the shard count.
pub fn shard_of(order_id: &str, shards: u32) -> u32 {
    crc32fast::hash(order_id.as_bytes()) % shards.max(1)
}

/// The check queue of shard `shard`: `check-payment.<shard>`.
pub fn check_queue(shard: u32) -> String {
    format!("{CHECK_PAYMENT}.{shard}")
}

/// The meta hash's field holding the shard count.
pub const META_SHARDS: &str = "shards";

/// The meta hash's field holding the address ranges the webhook notifiers allow-list
/// ([`crate::ip_ranges::publish_text`]): the submit function refuses IP-literal webhook URLs in a
/// blocked range unless they fall in one.
pub const META_WEBHOOK_ALLOW: &str = "webhook_allow";

/// The prefix of the meta hash's fields naming declared providers (`provider:<name>` → `1`):
/// written by every check worker that serves the provider, read by the submit function, which
/// accepts an order for a built-in provider or for one of these.
pub const META_PROVIDER_PREFIX: &str = "provider:";

/// The keys of one shard under a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardKeys {
    /// `<prefix>:{check-payment.<shard>}`: the one key callers pass to the library's functions.
    pub base: String,
    /// HASH order id → record of final orders.
    pub orders: String,
    /// HASH `<provider>:<payment id>` → order id, for provider webhooks.
    pub payments: String,
    /// HASH [`META_SHARDS`] → the shard count, written at start-up and checked by every submit;
    /// [`META_WEBHOOK_ALLOW`] → the webhook notifiers' allow-list.
    pub meta: String,
    /// A counter durable acknowledgements bump, so `WAIT` covers writes made by another
    /// connection (a re-submitted order, a webhook promotion).
    pub sync: String,
}

impl ShardKeys {
    /// The keys of `shard` under `prefix`.
    pub fn new(prefix: &str, shard: u32) -> Self {
        let base = format!("{prefix}:{{{}}}", check_queue(shard));
        Self {
            orders: format!("{base}:orders"),
            payments: format!("{base}:payments"),
            meta: format!("{base}:meta"),
            sync: format!("{base}:sync"),
            base,
        }
    }
}

/// ZSET `<queues> <worker name>` → Unix ms of the worker's last health report: which workers are
/// alive and what they serve (written every few seconds by each worker, old members trimmed).
pub fn health_workers(prefix: &str) -> String {
    format!("{prefix}:health:workers")
}

/// HASH of one minute's counters (`provider:<name>:calls`, `…:failures`,
/// `notify:<channel>:attempts`, `…:failures`), added to by every worker's health report; it
/// expires a few minutes after its minute (`minute` is Unix ms / 60 000).
pub fn health_minute(prefix: &str, minute: u64) -> String {
    format!("{prefix}:health:minute:{minute}")
}

/// HASH provider → the key of its credential's circuit breaker, written by the workers that
/// have the provider configured (the key's name holds a fingerprint only they can compute).
pub fn health_providers(prefix: &str) -> String {
    format!("{prefix}:health:providers")
}

/// ZSET `<provider>` (webhook accepted) or `<provider>:refused` → Unix ms it was last seen.
pub fn health_webhooks(prefix: &str) -> String {
    format!("{prefix}:health:webhooks")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_keys_share_the_check_queues_hash_tag() {
        let keys = ShardKeys::new("pw", 3);
        assert_eq!(keys.base, "pw:{check-payment.3}");
        for key in [&keys.orders, &keys.payments, &keys.meta] {
            assert!(key.starts_with("pw:{check-payment.3}:"), "{key}");
        }
        let queue = paywatch_queue_keys_base("pw", &check_queue(3));
        assert_eq!(queue, keys.base);
    }

    /// How crates/queue names a queue's keys (`<prefix>:{<queue>}:<part>`), restated here so a
    /// change there fails this test instead of splitting a shard over two slots.
    fn paywatch_queue_keys_base(prefix: &str, queue: &str) -> String {
        format!("{prefix}:{{{queue}}}")
    }

    #[test]
    fn shards_match_zlib_crc32() {
        // Python: zlib.crc32(b"shop-1042") == 0x7ca552eb, and 0x7ca552eb % 4 == 3.
        assert_eq!(shard_of("shop-1042", 4), 3);
        assert_eq!(shard_of("anything", 1), 0);
    }
}
