//! The ops channel: operators hear about unresolved orders and dead-lettered jobs, as a digest
//! sent at most once per interval so an outage (a thousand dead letters) is one message, not a
//! thousand.
//!
//! - The check handler records each order that turns `unresolved` in a bounded Redis list.
//! - One [`OpsWatcher`] per fleet (a Redis lease, taken and renewed by one script, [`lead`],
//!   elects it among the processes serving `notify-ops`) wakes every interval, collects those
//!   events and every queue's dead letters since its last look, and enqueues one [`OpsDigest`]
//!   per configured ops destination.
//! - The `notify-ops` handler delivers digests through the email, Telegram or webhook sender.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use apalis::prelude::{AbortError, BoxDynError, Data};
use chrono::{DateTime, Utc};
use paywatch_core::store::OrderSpec;
use paywatch_core::{Channel, queues};
use paywatch_queue::{
    DeadCursor, JobId, JobInfo, NewJob, Next, QueueConfig, RedisQueue, RetryPolicy,
};
use redis::Script;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::notify::deliver::{Message, NotifyContext};

/// Takes or renews the watcher's lease (see [`lead`]).
static LEAD: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("ops/lead.lua")));

/// Items listed in one digest; the rest are counted.
const MAX_ITEMS: usize = 20;
/// Unresolved-order events kept waiting for the watcher.
const MAX_EVENTS: isize = 1000;

/// Where operators are told, and how often at most.
#[derive(Debug, Clone, Default)]
pub struct OpsTargets {
    /// Ops email address.
    pub email: Option<String>,
    /// Ops Telegram chat.
    pub telegram_chat_id: Option<i64>,
    /// Ops webhook URL.
    pub webhook_url: Option<String>,
    /// Shortest time between two digests.
    pub interval: Duration,
}

impl OpsTargets {
    /// Whether any destination is configured.
    pub fn any(&self) -> bool {
        self.email.is_some() || self.telegram_chat_id.is_some() || self.webhook_url.is_some()
    }

    fn destinations(&self) -> Vec<(Channel, String)> {
        let mut out = Vec::new();
        if let Some(email) = &self.email {
            out.push((Channel::Email, email.clone()));
        }
        if let Some(chat) = self.telegram_chat_id {
            out.push((Channel::Telegram, chat.to_string()));
        }
        if let Some(url) = &self.webhook_url {
            out.push((Channel::Webhook, url.clone()));
        }
        out
    }
}

/// Something operators should look at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OpsItem {
    /// paywatch stopped watching an order without a final answer.
    Unresolved {
        /// The order.
        order_id: String,
        /// Its provider.
        provider: String,
        /// The provider's payment id.
        payment_id: String,
        /// When it was given up.
        at: DateTime<Utc>,
    },
    /// A job went to the dead letters.
    DeadLetter {
        /// The queue.
        queue: String,
        /// The job id.
        job: String,
        /// Why.
        error: String,
        /// When, Unix ms.
        at: u64,
    },
}

impl OpsItem {
    /// One line of text describing the item.
    pub fn line(&self) -> String {
        match self {
            Self::Unresolved {
                order_id,
                provider,
                payment_id,
                at,
            } => format!(
                "unresolved: order {order_id} ({provider} payment {payment_id}) had no final answer by {}; it may still settle, check it by hand",
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            Self::DeadLetter {
                queue, job, error, ..
            } => {
                let error: String = error.chars().take(240).collect();
                format!("dead letter: {queue} job {job}: {error}")
            }
        }
    }
}

/// One digest for one ops destination: a job on the `notify-ops` queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpsDigest {
    /// The channel to send it on.
    pub channel: Channel,
    /// The destination on that channel.
    pub target: String,
    /// End of the window it covers.
    pub window_end: DateTime<Utc>,
    /// The first items.
    pub items: Vec<OpsItem>,
    /// How many more there were.
    pub more: usize,
}

impl OpsDigest {
    /// The one-line summary (email subject, first line of the message).
    pub fn title(&self) -> String {
        let unresolved = self
            .items
            .iter()
            .filter(|i| matches!(i, OpsItem::Unresolved { .. }))
            .count();
        let dead = self.items.len() - unresolved;
        let more = if self.more > 0 {
            format!(" (+{} more)", self.more)
        } else {
            String::new()
        };
        format!("paywatch ops: {unresolved} unresolved order(s), {dead} dead-lettered job(s){more}")
    }

    /// The plain-text body.
    pub fn text(&self) -> String {
        let mut text = format!("{}\n\n", self.title());
        for item in &self.items {
            text.push_str("- ");
            text.push_str(&item.line());
            text.push('\n');
        }
        if self.more > 0 {
            text.push_str(&format!(
                "… and {} more; see the dead letters of each queue.\n",
                self.more
            ));
        }
        text
    }

    /// The signed webhook event body.
    pub fn event(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&serde_json::json!({
            "type": "ops.digest",
            "timestamp": self.window_end.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "data": {"items": self.items, "more": self.more},
        }))
    }
}

/// Records that an order was given up, for the next digest.
pub async fn record_unresolved(
    conn: &paywatch_queue::RedisConn,
    prefix: &str,
    spec: &OrderSpec,
) -> Result<(), redis::RedisError> {
    let item = OpsItem::Unresolved {
        order_id: spec.order_id.to_string(),
        provider: spec.provider.to_string(),
        payment_id: spec.payment_id.to_string(),
        at: Utc::now(),
    };
    let json = serde_json::to_string(&item).unwrap_or_default();
    let mut conn = conn.clone();
    redis::pipe()
        .lpush(crate::keys::ops_events(prefix), json)
        .ltrim(crate::keys::ops_events(prefix), 0, MAX_EVENTS - 1)
        .query_async::<()>(&mut conn)
        .await
}

/// The queue of ops digests.
pub fn queue_config(prefix: &str) -> QueueConfig {
    QueueConfig::new(queues::NOTIFY_OPS)
        .with_prefix(prefix)
        .with_retry(RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_secs(10),
            multiplier: 2.0,
            max_delay: Duration::from_secs(30 * 60),
            jitter: 0.2,
        })
        .with_keep_completed(Duration::from_secs(24 * 3600))
}

/// Collects ops items and enqueues digests; one active per fleet.
#[derive(Debug)]
pub struct OpsWatcher {
    /// Redis connection.
    pub conn: paywatch_queue::RedisConn,
    /// Key prefix.
    pub prefix: String,
    /// This process's name, for the leader lease.
    pub name: String,
    /// Where digests go.
    pub targets: OpsTargets,
    /// The ops queue.
    pub ops: RedisQueue<OpsDigest>,
    /// Every queue whose dead letters are reported.
    pub watched: Vec<RedisQueue<serde_json::Value>>,
}

impl OpsWatcher {
    /// Runs until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.targets.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            if let Err(e) = self.once().await {
                tracing::warn!(error = %e, "ops digest round failed; trying again next interval");
            }
        }
    }

    /// One round: if this process leads, collect and enqueue a digest. Returns the items sent.
    pub async fn once(&self) -> Result<usize, BoxDynError> {
        if !self.lead().await? {
            return Ok(0);
        }
        let mut conn = self.conn.clone();
        let mut items = Vec::new();
        let events: Vec<String> = redis::cmd("LPOP")
            .arg(crate::keys::ops_events(&self.prefix))
            .arg(MAX_EVENTS)
            .query_async::<Option<Vec<String>>>(&mut conn)
            .await?
            .unwrap_or_default();
        items.extend(
            events
                .iter()
                .rev()
                .filter_map(|e| serde_json::from_str::<OpsItem>(e).ok()),
        );
        let cursors = crate::keys::ops_cursors(&self.prefix);
        for queue in &self.watched {
            let name = &queue.config().name;
            let stored: Option<String> = redis::cmd("HGET")
                .arg(&cursors)
                .arg(name)
                .query_async(&mut conn)
                .await?;
            let Some(cursor) = stored.and_then(|c| serde_json::from_str::<DeadCursor>(&c).ok())
            else {
                // The first look only starts the cursor: older dead letters are not news.
                let start = DeadCursor {
                    at: Utc::now().timestamp_millis().max(0) as u64,
                    id: String::new(),
                };
                let _: () = redis::cmd("HSETNX")
                    .arg(&cursors)
                    .arg(name)
                    .arg(serde_json::to_string(&start)?)
                    .query_async(&mut conn)
                    .await?;
                continue;
            };
            let (dead, next) = queue.dead_letters_after(&cursor, 200).await?;
            if next != cursor {
                let _: () = redis::cmd("HSET")
                    .arg(&cursors)
                    .arg(name)
                    .arg(serde_json::to_string(&next)?)
                    .query_async(&mut conn)
                    .await?;
            }
            items.extend(dead.into_iter().map(|d| OpsItem::DeadLetter {
                queue: name.clone(),
                job: d.id,
                error: d.error,
                at: d.at,
            }));
        }
        if items.is_empty() {
            return Ok(0);
        }
        let total = items.len();
        let more = total.saturating_sub(MAX_ITEMS);
        items.truncate(MAX_ITEMS);
        let window_end = Utc::now();
        let jobs = self
            .targets
            .destinations()
            .into_iter()
            .filter_map(|(channel, target)| {
                let id = JobId::new(format!(
                    "digest:{}:{channel}",
                    window_end.timestamp_millis()
                ))
                .ok()?;
                Some(
                    NewJob::new(OpsDigest {
                        channel,
                        target,
                        window_end,
                        items: items.clone(),
                        more,
                    })
                    .with_id(id),
                )
            })
            .collect();
        self.ops.enqueue_many(jobs).await?;
        tracing::info!(items = total, "ops digest enqueued");
        Ok(total)
    }

    /// Takes or renews the fleet-wide lease; true when this process is the watcher.
    async fn lead(&self) -> Result<bool, redis::RedisError> {
        lead(
            &self.conn,
            &self.prefix,
            &self.name,
            self.targets.interval * 3,
        )
        .await
    }
}

/// Takes the ops watcher's lease for `name` when nobody holds it, or renews it when `name` does;
/// true when `name` holds it now, for `lease`. One script (`ops/lead.lua`): a lease that lapsed
/// between reading its holder and renewing it could otherwise be renewed for another holder.
pub async fn lead(
    conn: &paywatch_queue::RedisConn,
    prefix: &str,
    name: &str,
    lease: Duration,
) -> Result<bool, redis::RedisError> {
    let mut conn = conn.clone();
    let leads: u8 = LEAD
        .key(crate::keys::ops_leader(prefix))
        .arg(name)
        .arg(u64::try_from(lease.as_millis()).unwrap_or(u64::MAX).max(1))
        .invoke_async(&mut conn)
        .await?;
    Ok(leads == 1)
}

/// Delivers one digest on its channel.
pub async fn deliver_digest(
    digest: OpsDigest,
    job: JobInfo,
    ctx: Data<Arc<NotifyContext>>,
) -> Result<Next<OpsDigest>, BoxDynError> {
    let ctx: &NotifyContext = &ctx;
    let event = digest.event().map_err(|e| AbortError::new(e.to_string()))?;
    let message = Message::Digest {
        target: &digest.target,
        title: digest.title(),
        text: digest.text(),
        event,
        webhook_id: format!("msg_ops_{}", digest.window_end.timestamp_millis()),
    };
    let result = ctx.dispatch(digest.channel, &message, job.attempt).await;
    ctx.outcome(digest.channel, job.attempt, "ops digest", result)
}
