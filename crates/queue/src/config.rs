//! Queue configuration: names, leases, batching and the retry policy.

use std::time::Duration;

use rand::Rng;

/// The largest fetch batch: scripts `unpack` a batch, and Lua's stack is bounded.
pub const MAX_BATCH: usize = 1000;

/// The longest holder name a lease token carries.
pub const MAX_HOLDER: usize = 64;

/// How one queue behaves for producers and workers.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// Key prefix shared by all queues of one deployment (default `paywatch`).
    pub prefix: String,
    /// Queue name; becomes the Redis Cluster hash tag.
    pub name: String,
    /// Visibility timeout: a leased job whose worker stops extending it is re-run after this.
    pub lease: Duration,
    /// How many jobs a worker leases per fetch (its local buffer).
    pub batch_size: usize,
    /// The longest an idle worker sleeps without asking Redis (bounds lease-reclaim latency).
    pub idle_poll: Duration,
    /// What happens to a job whose handler fails.
    pub retry: RetryPolicy,
    /// How many expired leases one fetch hands back at most (keeps every script bounded).
    pub reclaim_limit: usize,
    /// How many settles (acks) one Redis call carries at most.
    pub settle_batch: usize,
    /// How long completed job ids are remembered, so enqueueing a finished job again is a no-op
    /// (`None`: forgotten at once; the id can be reused).
    pub keep_completed: Option<Duration>,
    /// Who leases jobs through this handle (a worker's name): each lease token starts with it,
    /// so an operator can tell which worker holds a job, and a dead worker's jobs can be told
    /// from a live one's.
    pub holder: Option<String>,
    /// Settles wait for replicas (and disk) before a run counts as settled (`None`: the
    /// primary's acknowledgement is enough).
    pub durable_settles: Option<DurableSettles>,
}

impl QueueConfig {
    /// Defaults for queue `name` under the `paywatch` prefix.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            prefix: "paywatch".to_string(),
            name: name.into(),
            lease: Duration::from_secs(30),
            batch_size: 32,
            idle_poll: Duration::from_secs(1),
            retry: RetryPolicy::default(),
            reclaim_limit: 256,
            settle_batch: 512,
            keep_completed: None,
            holder: None,
            durable_settles: None,
        }
    }

    /// Sets the key prefix.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets the lease (visibility timeout).
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Sets how many jobs a worker leases per fetch (1 to 1000).
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.clamp(1, MAX_BATCH);
        self
    }

    /// Remembers completed job ids for `window`, so enqueueing them again is a no-op.
    pub fn with_keep_completed(mut self, window: Duration) -> Self {
        self.keep_completed = Some(window);
        self
    }

    /// Sets the retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Names the worker leasing through this handle; lease tokens become `<holder>/<random>`.
    /// Longer names are cut to [`MAX_HOLDER`] bytes (at a character boundary).
    pub fn with_holder(mut self, holder: &str) -> Self {
        let mut end = holder.len().min(MAX_HOLDER);
        while !holder.is_char_boundary(end) {
            end -= 1;
        }
        self.holder = Some(holder[..end].to_string());
        self
    }

    /// A fresh lease token: the holder's name, if any, and 64 random bits.
    pub(crate) fn lease_token(&self) -> String {
        let random: u64 = rand::rng().random();
        match &self.holder {
            Some(holder) => format!("{holder}/{random:016x}"),
            None => format!("{random:016x}"),
        }
    }

    /// Makes every settle durable (replicas, disk) before its handler returns and before the
    /// next fetch; a `durability` that asks for nothing turns it off.
    pub fn with_durable_settles(mut self, durability: DurableSettles) -> Self {
        self.durable_settles = durability.is_required().then_some(durability);
        self
    }

    /// Sets the longest idle sleep between fetches.
    pub fn with_idle_poll(mut self, idle_poll: Duration) -> Self {
        self.idle_poll = idle_poll;
        self
    }
}

/// Exponential backoff with jitter and an attempt limit; lives in Rust, not in the scripts.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Runs of one step before the job is dead-lettered (a lease that expired counts as a run).
    pub max_attempts: u32,
    /// Delay before the first retry.
    pub base_delay: Duration,
    /// Growth per attempt.
    pub multiplier: f64,
    /// Longest delay between retries.
    pub max_delay: Duration,
    /// Random spread, as a fraction of the delay (0.2 = ±20%).
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base_delay: Duration::from_secs(1),
            multiplier: 2.0,
            max_delay: Duration::from_secs(300),
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// The delay before retrying after `attempt` runs (1-based), or `None` when attempts are spent.
    pub fn delay_after(&self, attempt: u32) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let exp = self
            .multiplier
            .powi(attempt.saturating_sub(1).min(64) as i32);
        let raw = (self.base_delay.as_secs_f64() * exp).min(self.max_delay.as_secs_f64());
        Some(Duration::from_secs_f64(jittered(raw, self.jitter)))
    }
}

/// `secs` spread uniformly by ±`jitter` (a fraction), never negative.
pub(crate) fn jittered(secs: f64, jitter: f64) -> f64 {
    if jitter <= 0.0 || secs <= 0.0 {
        return secs.max(0.0);
    }
    let spread = rand::rng().random_range(-jitter..=jitter);
    (secs * (1.0 + spread)).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_tokens_name_their_holder_and_stay_unique() {
        let plain = QueueConfig::new("q");
        assert_eq!(plain.lease_token().len(), 16);
        let named = QueueConfig::new("q").with_holder("checker-a");
        let (a, b) = (named.lease_token(), named.lease_token());
        assert!(a.starts_with("checker-a/"), "{a}");
        assert_ne!(a, b);
        // A long name is cut at a character boundary, never inside one.
        let long = "é".repeat(MAX_HOLDER);
        let cut = QueueConfig::new("q").with_holder(&long);
        let holder = cut.holder.unwrap_or_default();
        assert!(holder.len() <= MAX_HOLDER && holder.chars().all(|c| c == 'é'));
    }

    #[test]
    fn backoff_grows_caps_and_stops() {
        let policy = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_secs(1),
            multiplier: 2.0,
            max_delay: Duration::from_secs(5),
            jitter: 0.0,
        };
        let delays: Vec<_> = (1..=5).map(|a| policy.delay_after(a)).collect();
        assert_eq!(
            delays,
            vec![
                Some(Duration::from_secs(1)),
                Some(Duration::from_secs(2)),
                Some(Duration::from_secs(4)),
                Some(Duration::from_secs(5)),
                None
            ]
        );
    }

    #[test]
    fn jitter_stays_within_bounds() {
        for _ in 0..1000 {
            let v = jittered(10.0, 0.2);
            assert!((8.0..=12.0).contains(&v), "{v}");
        }
    }
}

/// How durable a queue's settles must be before a run counts as settled: before its handler's
/// future resolves and before the process fetches again (see [`QueueConfig::with_durable_settles`]).
///
/// A settle is what records a job as done; on a primary that dies before replicating it, the
/// promoted replica still holds the job and runs it again. Waiting for the replicas (`WAIT`) and
/// the primary's disk (`WAITAOF`) turns that into "only if the primary dies within this wait".
///
/// [`QueueConfig::with_durable_settles`]: QueueConfig::with_durable_settles
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurableSettles {
    /// Replicas that must acknowledge each batch of settles (`WAIT`); 0 waits for none.
    pub replicas: u32,
    /// Also wait until the primary's append-only file has them (`WAITAOF 1 0`), where the
    /// server has that command (Redis 7.2+); without it, once warned, replicas only.
    pub local_fsync: bool,
    /// How long one `WAIT` (or `WAITAOF`) may block before it is tried again.
    pub timeout: Duration,
}

impl DurableSettles {
    /// Whether this asks for anything beyond the primary's own acknowledgement.
    pub fn is_required(&self) -> bool {
        self.replicas > 0 || self.local_fsync
    }
}
