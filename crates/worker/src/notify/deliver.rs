//! The notifier handler: delivers one notification job and tells the queue what happened.
//!
//! A notification's identity (order, terminal status, channel) is its job id, and the notifier
//! queues remember completed ids for a week, so a check that runs twice cannot enqueue a second
//! delivery. The delivery is recorded in the same Redis step that acks the job. See
//! docs/notifications.md for the exact guarantee per channel.

use std::time::Duration;

use apalis::prelude::{AbortError, BoxDynError, Data, RetryAfterError};
use paywatch_core::{Channel, Notification};
use paywatch_queue::{JobInfo, Next, QueueConfig, RetryPolicy};

use super::DeliveryError;
use super::email::EmailSender;
use super::telegram::{self, TelegramSender};
use super::webhook::{self, WebhookSender};

/// How long delivered notification ids are remembered (duplicates within it are no-ops).
pub const REMEMBER_DELIVERED: Duration = Duration::from_secs(7 * 24 * 3600);

/// The senders of the channels this process delivers.
#[derive(Debug, Clone, Default)]
pub struct NotifyContext {
    /// Email, when `notify-email` is served.
    pub email: Option<EmailSender>,
    /// Telegram, when `notify-telegram` is served.
    pub telegram: Option<TelegramSender>,
    /// Webhooks, when `notify-webhook` is served.
    pub webhook: Option<WebhookSender>,
}

/// The queue settings of a channel: retries fit the channel, delivered ids are remembered.
pub fn queue_config(channel: Channel, prefix: &str) -> QueueConfig {
    let retry = match channel {
        // The webhook sender owns its schedule (immediately, 5 s, 5 min, … 24 h); the queue only
        // has to allow that many attempts.
        Channel::Webhook => RetryPolicy {
            max_attempts: webhook::MAX_ATTEMPTS,
            ..RetryPolicy::default()
        },
        // Mail servers can be down for a while: up to ~6 h of retries.
        Channel::Email => RetryPolicy {
            max_attempts: 16,
            base_delay: Duration::from_secs(5),
            multiplier: 2.0,
            max_delay: Duration::from_secs(30 * 60),
            jitter: 0.2,
        },
        Channel::Telegram => RetryPolicy {
            max_attempts: 12,
            base_delay: Duration::from_secs(2),
            multiplier: 2.0,
            max_delay: Duration::from_secs(10 * 60),
            jitter: 0.2,
        },
    };
    QueueConfig::new(channel.queue())
        .with_prefix(prefix)
        .with_retry(retry)
        .with_keep_completed(REMEMBER_DELIVERED)
}

/// Delivers one notification.
#[tracing::instrument(name = "deliver", skip_all, fields(order = %n.order_id, channel = %n.channel, attempt = job.attempt))]
pub async fn deliver(
    n: Notification,
    job: JobInfo,
    ctx: Data<NotifyContext>,
) -> Result<Next<Notification>, BoxDynError> {
    let ctx: &NotifyContext = &ctx;
    let channel = n.channel;
    // The crash tests stop the process here: leased, nothing sent yet.
    fail::fail_point!("notify-before-send", |_| Ok(Next::Done));
    let result = match channel {
        Channel::Email => match &ctx.email {
            Some(sender) => sender.send(&n).await,
            None => Err(unconfigured(channel)),
        },
        Channel::Telegram => match &ctx.telegram {
            Some(sender) => sender.send(&n).await,
            None => Err(unconfigured(channel)),
        },
        Channel::Webhook => match &ctx.webhook {
            Some(sender) => sender.send(&n, &webhook::webhook_id(&n), job.attempt).await,
            None => Err(unconfigured(channel)),
        },
    };
    let outcome = match &result {
        Ok(()) => "delivered",
        Err(DeliveryError::Transient(_)) => "transient",
        Err(DeliveryError::RetryAfter { .. }) => "retry_after",
        Err(DeliveryError::Permanent(_)) => "permanent",
    };
    crate::metrics::notification_attempt(channel, outcome);
    // The crash tests stop the process here: delivered, not yet acknowledged.
    fail::fail_point!("notify-delivered", result.is_ok(), |_| Ok(Next::Done));
    match result {
        Ok(()) => {
            tracing::info!(order = %n.order_id, %channel, status = %n.status, "notification delivered");
            Ok(Next::Done)
        }
        // Our own fleet-wide pacing is not a failure: wait without spending an attempt.
        Err(DeliveryError::RetryAfter { after, reason }) if reason == telegram::PACED => {
            Ok(Next::After(after))
        }
        Err(DeliveryError::RetryAfter { after, reason }) => {
            tracing::debug!(order = %n.order_id, %channel, ?after, %reason, "delivery deferred");
            Err(Box::new(RetryAfterError::new(reason, after)))
        }
        Err(DeliveryError::Transient(reason)) => {
            tracing::warn!(order = %n.order_id, %channel, attempt = job.attempt, %reason, "delivery failed; will retry");
            match (channel, &ctx.webhook) {
                (Channel::Webhook, Some(sender)) => match sender.retry_delay(job.attempt) {
                    Some(delay) => Err(Box::new(RetryAfterError::new(reason, delay))),
                    None => Err(Box::new(AbortError::new(format!(
                        "gave up after {} attempts: {reason}",
                        job.attempt
                    )))),
                },
                _ => Err(reason.into()),
            }
        }
        Err(DeliveryError::Permanent(reason)) => {
            tracing::warn!(order = %n.order_id, %channel, %reason, "delivery impossible; dead-lettered");
            Err(Box::new(AbortError::new(reason)))
        }
    }
}

fn unconfigured(channel: Channel) -> DeliveryError {
    DeliveryError::Transient(format!(
        "this worker serves {} but {channel} delivery is not configured",
        channel.queue()
    ))
}
