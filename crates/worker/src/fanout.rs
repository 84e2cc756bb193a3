//! Fan-out of a terminal order to the notifier queues.

use paywatch_core::store::OrderRecord;
use paywatch_core::{Channel, Notification};
use paywatch_queue::{EnqueueOutcome, JobId, NewJob, QueueConfig, QueueError, RedisQueue};

/// Handles on the three notifier queues.
#[derive(Debug, Clone)]
pub struct Fanout {
    email: RedisQueue<Notification>,
    telegram: RedisQueue<Notification>,
    webhook: RedisQueue<Notification>,
}

impl Fanout {
    /// Notifier queues next to `checks` (same Redis, same prefix).
    pub fn new<T>(checks: &RedisQueue<T>) -> Self {
        let prefix = checks.config().prefix.clone();
        let queue = |channel: Channel| {
            checks.sibling(QueueConfig::new(channel.queue()).with_prefix(prefix.clone()))
        };
        Self {
            email: queue(Channel::Email),
            telegram: queue(Channel::Telegram),
            webhook: queue(Channel::Webhook),
        }
    }

    /// The notifications a terminal order calls for: one per configured channel. An
    /// `unresolved` order has none for the shop's customers (it goes to the ops channel).
    pub fn notifications(record: &OrderRecord) -> Vec<Notification> {
        if !record.status.is_terminal() {
            return Vec::new();
        }
        let spec = &record.spec;
        let targets = [
            (Channel::Email, spec.notify.email.clone()),
            (
                Channel::Telegram,
                spec.notify.telegram_chat_id.map(|c| c.to_string()),
            ),
            (Channel::Webhook, spec.notify.webhook_url.clone()),
        ];
        targets
            .into_iter()
            .filter_map(|(channel, target)| {
                Some(Notification {
                    order_id: spec.order_id.clone(),
                    status: record.status,
                    channel,
                    target: target?,
                    provider: spec.provider,
                    payment_id: spec.payment_id.clone(),
                    raw_status: record.raw_status.clone(),
                    detail: None,
                    metadata: spec.metadata.clone(),
                    delivered_codes: record.delivered_codes.clone(),
                    // The stored transition time keeps the payload identical across re-runs.
                    occurred_at: record.terminal_at.unwrap_or(record.created_at),
                })
            })
            .collect()
    }

    /// Enqueues the order's notifications; each job id is the notification's identity, so a
    /// second run of the same check enqueues nothing new.
    pub async fn send(&self, record: &OrderRecord) -> Result<usize, QueueError> {
        let mut created = 0;
        for notification in Self::notifications(record) {
            let queue = match notification.channel {
                Channel::Email => &self.email,
                Channel::Telegram => &self.telegram,
                Channel::Webhook => &self.webhook,
            };
            let id = JobId::new(notification.identity())?;
            let channel = notification.channel;
            let outcome = queue
                .enqueue_many(vec![NewJob::new(notification).with_id(id.clone())])
                .await?;
            match outcome.first().map(|o| o.1) {
                Some(EnqueueOutcome::Created) => {
                    created += 1;
                    crate::metrics::notification_enqueued(channel);
                }
                // Already waiting, or already delivered (the notifier queues remember): once.
                Some(EnqueueOutcome::Duplicate | EnqueueOutcome::Completed) => {}
                other => {
                    tracing::warn!(job = %id, outcome = ?other, "notification already exists in another form; left as is")
                }
            }
        }
        Ok(created)
    }
}
