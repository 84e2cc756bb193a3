//! Fan-out of a terminal order to the notifier queues.

use paywatch_core::store::StoredOrder;
use paywatch_core::{Channel, Notification, OrderId};
use paywatch_queue::{EnqueueOutcome, JobId, NewJob, QueueError, RedisQueue};

use crate::notify::deliver;

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
        // The notifiers' own queue settings: one definition per channel, wherever it is built.
        let queue = |channel: Channel| checks.sibling(deliver::queue_config(channel, &prefix));
        Self {
            email: queue(Channel::Email),
            telegram: queue(Channel::Telegram),
            webhook: queue(Channel::Webhook),
        }
    }

    /// The notifications a terminal order calls for: one per configured channel. An
    /// `unresolved` order has none for the shop's customers (it goes to the ops channel).
    /// Everything in them comes from the final record, which never changes once written, so a
    /// re-run builds byte-identical notifications. A record written again after a failover lost
    /// the first has another `final_at` (`occurred_at` here), which no message shows: what the
    /// channels send stays byte-identical.
    pub fn notifications(order_id: &OrderId, record: &StoredOrder) -> Vec<Notification> {
        let Some(state) = record.state.as_ref().filter(|s| s.status.is_terminal()) else {
            return Vec::new();
        };
        let targets = [
            (Channel::Email, record.notify.email.clone()),
            (
                Channel::Telegram,
                record.notify.telegram_chat_id.map(|c| c.to_string()),
            ),
            (Channel::Webhook, record.notify.webhook_url.clone()),
        ];
        let metadata = record.metadata.clone();
        targets
            .into_iter()
            .filter_map(|(channel, target)| {
                Some(Notification {
                    order_id: order_id.clone(),
                    status: state.status,
                    channel,
                    target: target?,
                    provider: record.provider,
                    payment_id: record.payment_id.clone(),
                    raw_status: state.raw_status.clone(),
                    detail: state.detail.clone(),
                    metadata: metadata.clone(),
                    delivered_codes: state.delivered_codes.clone(),
                    occurred_at: state.final_at.unwrap_or_else(|| record.created_at()),
                    traceparent: record.traceparent.clone(),
                })
            })
            .collect()
    }

    /// Enqueues the order's notifications; each job id is the notification's identity, so a
    /// second run of the same check enqueues nothing new.
    ///
    /// Each channel is its own queue; on one Redis the enqueues are one script call, on a
    /// Cluster one call per channel's slot, sent together.
    pub async fn send(
        &self,
        order_id: &OrderId,
        record: &StoredOrder,
    ) -> Result<usize, QueueError> {
        let mut jobs = Vec::with_capacity(3);
        let mut channels = Vec::with_capacity(3);
        for notification in Self::notifications(order_id, record) {
            let queue = match notification.channel {
                Channel::Email => &self.email,
                Channel::Telegram => &self.telegram,
                Channel::Webhook => &self.webhook,
            };
            let id = JobId::new(notification.identity())?;
            channels.push(notification.channel);
            jobs.push((queue, NewJob::new(notification).with_id(id)));
        }
        let outcomes = RedisQueue::enqueue_across(jobs).await?;
        let mut created = 0;
        for ((id, outcome), channel) in outcomes.into_iter().zip(channels) {
            match outcome {
                EnqueueOutcome::Created => {
                    created += 1;
                    crate::metrics::notification_enqueued(channel);
                }
                // Already waiting, or already delivered (the notifier queues remember): once.
                EnqueueOutcome::Duplicate | EnqueueOutcome::Completed => {}
                other => {
                    tracing::warn!(job = %id, outcome = ?other, "notification already exists in another form; left as is")
                }
            }
        }
        Ok(created)
    }
}
