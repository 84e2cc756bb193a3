//! The worker's part of the operator's health verdict ([`paywatch_core::health`]): which workers
//! are alive and what they serve, provider calls and their transient failures, delivery attempts
//! and their failures per channel, and where each configured provider's breaker lives.
//!
//! A check or a delivery only adds to an in-memory counter (no Redis call, no allocation); the
//! [`Reporter`] writes the sums every [`REPORT_INTERVAL`], so the per-order cost is unchanged.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, PoisonError};

use paywatch_core::health::{self, REPORT_INTERVAL, WORKER_FORGET};
use paywatch_core::store::keys;
use paywatch_core::{Channel, Provider};
use paywatch_queue::RedisConn;
use tokio::sync::watch;

/// Calls and transient failures per provider (declared providers included, hence a map; its
/// lock is held for an addition, against a provider call's milliseconds).
static PROVIDER_COUNTS: LazyLock<Mutex<HashMap<Provider, [u64; 2]>>> =
    LazyLock::new(Mutex::default);

/// Attempts and failures per channel, in [`CHANNELS`] order.
static NOTIFY_COUNTS: [[AtomicU64; 2]; 3] = [const { [const { AtomicU64::new(0) }; 2] }; 3];

const CHANNELS: [Channel; 3] = [Channel::Email, Channel::Telegram, Channel::Webhook];

fn add_provider(provider: Provider, calls: u64, failures: u64) {
    let mut counts = PROVIDER_COUNTS
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let slot = counts.entry(provider).or_default();
    slot[0] += calls;
    slot[1] += failures;
}

fn channel_slot(channel: Channel) -> &'static [AtomicU64; 2] {
    let i = CHANNELS.iter().position(|c| *c == channel).unwrap_or(0);
    &NOTIFY_COUNTS[i]
}

/// Counts one provider call; `failed` when it failed transiently.
pub fn provider_call(provider: Provider, failed: bool) {
    add_provider(provider, 1, u64::from(failed));
}

/// Counts one delivery attempt; `failed` unless it was delivered.
pub fn notification(channel: Channel, failed: bool) {
    let slot = channel_slot(channel);
    slot[0].fetch_add(1, Ordering::Relaxed);
    if failed {
        slot[1].fetch_add(1, Ordering::Relaxed);
    }
}

/// The counters taken since the last report: (field, count), non-zero ones only.
fn take() -> Vec<(String, u64)> {
    let mut fields = Vec::new();
    let providers = std::mem::take(
        &mut *PROVIDER_COUNTS
            .lock()
            .unwrap_or_else(PoisonError::into_inner),
    );
    for (provider, [calls, failures]) in providers {
        if calls > 0 {
            fields.push((health::provider_calls(provider), calls));
        }
        if failures > 0 {
            fields.push((health::provider_failures(provider), failures));
        }
    }
    for (channel, slot) in CHANNELS.iter().zip(&NOTIFY_COUNTS) {
        let [attempts, failures] = slot.each_ref().map(|c| c.swap(0, Ordering::Relaxed));
        if attempts > 0 {
            fields.push((health::notify_attempts(*channel), attempts));
        }
        if failures > 0 {
            fields.push((health::notify_failures(*channel), failures));
        }
    }
    fields
}

/// Puts counters that could not be written back, for the next report.
fn give_back(fields: &[(String, u64)]) {
    for (field, n) in fields {
        let mut parts = field.split(':');
        let (Some(kind), Some(name), Some(what)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let failures = what == "failures";
        if kind == "provider" {
            if let Ok(provider) = name.parse::<Provider>() {
                let (calls, failed) = if failures { (0, *n) } else { (*n, 0) };
                add_provider(provider, calls, failed);
            }
        } else if let Some(channel) = CHANNELS.iter().find(|c| c.as_str() == name) {
            channel_slot(*channel)[usize::from(failures)].fetch_add(*n, Ordering::Relaxed);
        }
    }
}

/// Writes this process's health report every [`REPORT_INTERVAL`].
#[derive(Debug, Clone)]
pub struct Reporter {
    /// The shared connection.
    pub conn: RedisConn,
    /// The deployment's key prefix.
    pub prefix: String,
    /// The worker's name.
    pub name: String,
    /// The queues it serves.
    pub queues: Vec<String>,
    /// The configured providers this process checks, with their breaker keys.
    pub breakers: Vec<(Provider, String)>,
}

impl Reporter {
    /// Reports until `stop` turns true (and once more then, so the last counts are not lost).
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(REPORT_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let stopping = tokio::select! {
                _ = tick.tick() => false,
                stopped = stop.wait_for(|s| *s) => stopped.is_ok(),
            };
            if stopping {
                let _ = self.report().await;
                self.leave().await;
                return;
            }
            if let Err(e) = self.report().await {
                tracing::debug!(error = %e, "health report not written; retrying next time");
            }
        }
    }

    /// Takes this worker out of the workers set on a graceful stop, so the verdict says at
    /// once that it is gone (a crashed worker drops out after its silence instead).
    async fn leave(&self) {
        let left: Result<i64, _> = redis::cmd("ZREM")
            .arg(keys::health_workers(&self.prefix))
            .arg(health::worker_member(&self.name, &self.queues))
            .query_async(&mut self.conn.clone())
            .await;
        if let Err(e) = left {
            tracing::debug!(error = %e, "could not leave the workers set");
        }
    }

    /// One report: the worker's presence, the counters, the breakers' keys.
    pub async fn report(&self) -> Result<(), redis::RedisError> {
        let now = chrono::Utc::now().timestamp_millis().max(0) as u64;
        let mut conn = self.conn.clone();
        let workers = keys::health_workers(&self.prefix);
        // One key per call (a pipeline only for commands on one key): on a Cluster the health
        // keys live in different slots.
        let _: () = redis::pipe()
            .cmd("ZADD")
            .arg(&workers)
            .arg(now)
            .arg(health::worker_member(&self.name, &self.queues))
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&workers)
            .arg("-inf")
            .arg(now.saturating_sub(WORKER_FORGET.as_millis() as u64))
            .ignore()
            .query_async(&mut conn)
            .await?;
        if !self.breakers.is_empty() {
            let mut cmd = redis::cmd("HSET");
            cmd.arg(keys::health_providers(&self.prefix));
            for (provider, key) in &self.breakers {
                cmd.arg(provider.as_str()).arg(key);
            }
            let _: () = cmd.query_async(&mut conn).await?;
        }
        let fields = take();
        if fields.is_empty() {
            return Ok(());
        }
        let minute = keys::health_minute(&self.prefix, health::minute_of(now));
        let mut pipe = redis::pipe();
        for (field, n) in &fields {
            pipe.cmd("HINCRBY").arg(&minute).arg(field).arg(*n).ignore();
        }
        pipe.cmd("PEXPIRE")
            .arg(&minute)
            .arg(60_000 + health::MINUTE_TTL.as_millis() as u64)
            .ignore();
        let written: Result<(), _> = pipe.query_async(&mut conn).await;
        if written.is_err() {
            give_back(&fields);
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(fields: &[(String, u64)], field: &str) -> u64 {
        fields
            .iter()
            .find(|(f, _)| f == field)
            .map_or(0, |(_, n)| *n)
    }

    #[test]
    fn counters_are_taken_and_given_back() {
        // Other tests of this binary may count too: at least what this one added is there.
        provider_call(Provider::FoxReload, true);
        provider_call(Provider::FoxReload, false);
        notification(Channel::Telegram, true);
        let taken = take();
        assert!(count(&taken, "provider:foxreload:calls") >= 2);
        assert!(count(&taken, "provider:foxreload:failures") >= 1);
        assert!(count(&taken, "notify:telegram:failures") >= 1);
        give_back(&taken);
        let again = take();
        assert!(count(&again, "provider:foxreload:calls") >= 2);
    }
}
