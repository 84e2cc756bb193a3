//! Fan-out of a terminal order to the notifier queues.

use paywatch_core::store::{FinalJob, Finalized, OrderStore, StoreError, StoredOrder};
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
            let queue = self.queue(notification.channel);
            let id = JobId::new(notification.identity())?;
            channels.push(notification.channel);
            jobs.push((queue, NewJob::new(notification).with_id(id)));
        }
        let outcomes = RedisQueue::enqueue_across(jobs).await?;
        Ok(count_written(
            Written::ByQueue,
            outcomes
                .into_iter()
                .zip(channels)
                .map(|((id, outcome), channel)| (id.to_string(), outcome, channel)),
        ))
    }

    /// The queue of `channel`.
    fn queue(&self, channel: Channel) -> &RedisQueue<Notification> {
        match channel {
            Channel::Email => &self.email,
            Channel::Telegram => &self.telegram,
            Channel::Webhook => &self.webhook,
        }
    }

    /// Records the order's final record and, when it is written now, its poll-history count
    /// (`history`: hash and field) and its notifications, all in one call
    /// ([`OrderStore::finalize_notify`]): one round trip for a final answer. Returns the record
    /// that holds and whether its notifications and history went with it; when they did not
    /// (another record was there first) the caller fans out the record that holds, as after
    /// [`OrderStore::finalize`]. Only where [`OrderStore::finalizes_in_one_call`] says so.
    pub async fn finalize(
        &self,
        store: &OrderStore,
        order_id: &OrderId,
        record: StoredOrder,
        history: (&str, &str),
    ) -> Result<(StoredOrder, bool), FinalizeError> {
        let notifications = Self::notifications(order_id, &record);
        let mut encoded = Vec::with_capacity(notifications.len());
        for n in &notifications {
            let id = JobId::new(n.identity())?;
            let payload = serde_json::to_string(n).map_err(QueueError::Encode)?;
            encoded.push((n.channel, id, payload));
        }
        let jobs: Vec<FinalJob<'_>> = encoded
            .iter()
            .map(|(channel, id, payload)| FinalJob {
                queue: self.queue(*channel).keys(),
                id: id.as_str(),
                payload,
            })
            .collect();
        match store
            .finalize_notify(order_id, &record, history, &jobs)
            .await?
        {
            Finalized::Written(outcomes) => {
                // The script wrote the jobs, not the queue crate: count them as its enqueue would.
                count_written(
                    Written::ByScript,
                    encoded
                        .into_iter()
                        .zip(outcomes)
                        .map(|((channel, id, _), outcome)| (id.to_string(), outcome, channel)),
                );
                Ok((record, true))
            }
            Finalized::Held(holds) => Ok((*holds, false)),
        }
    }
}

/// Why [`Fanout::finalize`] failed.
#[derive(Debug, thiserror::Error)]
pub enum FinalizeError {
    /// Writing the record failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A notification could not become a job.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// Who wrote a batch of notification jobs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Written {
    /// The queue crate's enqueue, which counts its own jobs.
    ByQueue,
    /// The one-call finalize script, whose jobs the queue crate never saw.
    ByScript,
}

/// Counts the notifications created (in the queue's enqueue counter too when a script wrote
/// them) and warns about ids taken by something else; returns how many were created.
fn count_written(
    writer: Written,
    outcomes: impl Iterator<Item = (String, EnqueueOutcome, Channel)>,
) -> usize {
    let mut created = 0;
    for (id, outcome, channel) in outcomes {
        match outcome {
            EnqueueOutcome::Created => {
                created += 1;
                crate::metrics::notification_enqueued(channel);
                if writer == Written::ByScript {
                    paywatch_queue::metrics::enqueued_elsewhere(channel.queue(), 1);
                }
            }
            // Already waiting, or already delivered (the notifier queues remember): once.
            EnqueueOutcome::Duplicate | EnqueueOutcome::Completed => {}
            other => {
                tracing::warn!(job = %id, outcome = ?other, "notification already exists in another form; left as is")
            }
        }
    }
    created
}
