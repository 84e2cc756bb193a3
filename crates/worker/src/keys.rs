//! Every Redis key the worker itself uses (besides its queues' and orders'), derived in one place.
//!
//! Keys a script touches together share one hash tag, so each script stays in one Redis Cluster
//! slot: a Telegram bot's pacing keys share `{tg:<bot id>}`, a provider credential's breaker and
//! budget share `{provider:<name>:<fingerprint>}`. The ops keys are each used alone.

use paywatch_core::Provider;

/// LIST of ops events (orders that became unresolved), newest first, bounded.
pub fn ops_events(prefix: &str) -> String {
    format!("{prefix}:ops:events")
}

/// HASH queue → the ops watcher's dead-letter cursor.
pub fn ops_cursors(prefix: &str) -> String {
    format!("{prefix}:ops:cursor")
}

/// STRING with a TTL: which worker holds the ops watcher's lease.
pub fn ops_leader(prefix: &str) -> String {
    format!("{prefix}:ops:leader")
}

/// HASH `<outcome>:<bin>` → orders of `provider` that reached that outcome after a time in that
/// bin (docs/polling.md); bounded by the bin count, used alone.
pub fn final_times(prefix: &str, provider: Provider) -> String {
    format!("{prefix}:final-times:{provider}")
}

/// The keys pacing one Telegram bot's messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacingKeys {
    base: String,
}

impl PacingKeys {
    /// The pacing keys of the bot `bot_id` (the public numeric part of its token).
    pub fn new(prefix: &str, bot_id: &str) -> Self {
        Self {
            base: format!("{prefix}:{{tg:{bot_id}}}"),
        }
    }

    /// STRING: when the next message to `chat` may go.
    pub fn chat(&self, chat: &str) -> String {
        format!("{}:chat:{chat}", self.base)
    }

    /// ZSET: the bot's messages in its rolling window.
    pub fn bot(&self) -> String {
        format!("{}:bot", self.base)
    }
}

/// The keys of one provider credential's rate budget and circuit breaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneKeys {
    base: String,
}

impl LaneKeys {
    /// The keys of `provider`'s credential with this (non-secret) fingerprint.
    pub fn new(prefix: &str, provider: Provider, fingerprint: &str) -> Self {
        Self {
            base: format!("{prefix}:{{provider:{provider}:{fingerprint}}}"),
        }
    }

    /// HASH: the breaker's state.
    pub fn breaker(&self) -> String {
        format!("{}:breaker", self.base)
    }

    /// ZSET: the calls in the budget's window.
    pub fn budget(&self) -> String {
        format!("{}:budget", self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(key: &str) -> &str {
        let open = key.find('{').expect("a hash tag");
        let close = key[open..].find('}').expect("closed") + open;
        &key[open..=close]
    }

    #[test]
    fn keys_a_script_uses_together_share_one_slot() {
        let pacing = PacingKeys::new("pw", "123");
        assert_eq!(tag(&pacing.chat("42")), tag(&pacing.bot()));
        assert_eq!(pacing.chat("42"), "pw:{tg:123}:chat:42");
        let lane = LaneKeys::new("pw", Provider::FoxReload, "abc");
        assert_eq!(tag(&lane.breaker()), tag(&lane.budget()));
        assert_eq!(lane.budget(), "pw:{provider:foxreload:abc}:budget");
    }

    #[test]
    fn every_key_is_under_the_prefix() {
        for key in [
            ops_events("pw"),
            ops_cursors("pw"),
            ops_leader("pw"),
            final_times("pw", Provider::Cashless),
        ] {
            assert!(key.starts_with("pw:"), "{key}");
        }
    }
}
