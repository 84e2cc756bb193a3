//! The notifier handler, and the one place that picks a channel's sender and turns its answer
//! into a queue outcome (for order notifications and ops digests alike).
//!
//! A notification's identity (order, terminal status, channel) is its job id, and the notifier
//! queues remember completed ids for a week, so a check that runs twice cannot enqueue a second
//! delivery. The delivery is recorded in the same Redis step that acks the job. See
//! docs/notifications.md for the exact guarantee per channel.

use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::{AbortError, BoxDynError, Data, RetryAfterError};
use paywatch_core::{Channel, Notification};
use paywatch_queue::{JobInfo, Next, QueueConfig, RetryPolicy};
use tracing::Instrument as _;

use super::DeliveryError;
use super::email::EmailSender;
use super::telegram::TelegramSender;
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

/// What one notifier job delivers.
#[derive(Debug)]
pub enum Message<'a> {
    /// The notification announcing an order's final status (its channel and target inside).
    Order(&'a Notification),
    /// An operators' digest (the ops channel), in every form a channel may need.
    Digest {
        /// The destination on the job's channel.
        target: &'a str,
        /// Email subject.
        title: String,
        /// Plain text (email body, Telegram message).
        text: String,
        /// The signed webhook event's JSON body.
        event: Vec<u8>,
        /// The webhook message id (stable across retries).
        webhook_id: String,
    },
}

impl NotifyContext {
    /// Delivers `message` on `channel` through that channel's sender; `attempt` (1-based) is
    /// for the webhook sender's logs.
    pub async fn dispatch(
        &self,
        channel: Channel,
        message: &Message<'_>,
        attempt: u32,
    ) -> Result<(), DeliveryError> {
        match channel {
            Channel::Email => {
                let sender = self.email.as_ref().ok_or_else(|| unconfigured(channel))?;
                match message {
                    Message::Order(n) => sender.send(n).await,
                    Message::Digest {
                        target,
                        title,
                        text,
                        ..
                    } => sender.send_text(target, title, text).await,
                }
            }
            Channel::Telegram => {
                let sender = self
                    .telegram
                    .as_ref()
                    .ok_or_else(|| unconfigured(channel))?;
                match message {
                    Message::Order(n) => sender.send(n).await,
                    Message::Digest { target, text, .. } => sender.send_text(target, text).await,
                }
            }
            Channel::Webhook => {
                let sender = self.webhook.as_ref().ok_or_else(|| unconfigured(channel))?;
                match message {
                    Message::Order(n) => sender.send(n, &webhook::webhook_id(n), attempt).await,
                    Message::Digest {
                        target,
                        event,
                        webhook_id,
                        ..
                    } => sender.send_event(target, webhook_id, event.clone()).await,
                }
            }
        }
    }

    /// What the queue does with a job whose delivery on `channel` (run `attempt`, 1-based)
    /// ended with `result`; `what` names the job in logs.
    pub fn outcome<T>(
        &self,
        channel: Channel,
        attempt: u32,
        what: &str,
        result: Result<(), DeliveryError>,
    ) -> Result<Next<T>, BoxDynError> {
        match result {
            Ok(()) => Ok(Next::Done),
            // Our own fleet-wide pacing is not a failure: wait without spending an attempt.
            Err(DeliveryError::Paced { after }) => Ok(Next::After(after)),
            Err(DeliveryError::RetryAfter { after, reason }) => {
                tracing::debug!(%channel, what, ?after, %reason, "delivery deferred");
                Err(Box::new(RetryAfterError::new(reason, after)))
            }
            Err(DeliveryError::Transient(reason)) => {
                tracing::warn!(%channel, what, attempt, %reason, "delivery failed; will retry");
                match (channel, &self.webhook) {
                    // Webhooks follow their own published schedule, not the queue's backoff.
                    (Channel::Webhook, Some(sender)) => match sender.retry_delay(attempt) {
                        Some(delay) => Err(Box::new(RetryAfterError::new(reason, delay))),
                        None => Err(Box::new(AbortError::new(format!(
                            "gave up after {attempt} attempts: {reason}"
                        )))),
                    },
                    _ => Err(reason.into()),
                }
            }
            Err(DeliveryError::Permanent(reason)) => {
                tracing::warn!(%channel, what, %reason, "delivery impossible; dead-lettered");
                Err(Box::new(AbortError::new(reason)))
            }
        }
    }
}

/// Delivers one notification. Each attempt is a short trace of its own, linked to the order's
/// ([`paywatch_core::traces`]): a consumer span, and a client span around the send.
pub async fn deliver(
    n: Notification,
    job: JobInfo,
    ctx: Data<Arc<NotifyContext>>,
) -> Result<Next<Notification>, BoxDynError> {
    let (process, send) = match n.channel {
        Channel::Email => ("process notify-email", "send email"),
        Channel::Telegram => ("process notify-telegram", "send telegram"),
        Channel::Webhook => ("process notify-webhook", "send webhook"),
    };
    let span = tracing::info_span!("deliver", otel.name = process, otel.kind = "consumer", order = %n.order_id, channel = %n.channel, attempt = job.attempt);
    paywatch_core::traces::link_order(&span, n.traceparent.as_deref());
    paywatch_core::traces::set_attributes(
        &span,
        [
            ("messaging.system", "redis".into()),
            ("messaging.operation.type", "process".into()),
            ("messaging.operation.name", "process".into()),
            ("messaging.destination.name", n.channel.queue().into()),
            ("messaging.message.id", n.identity().into()),
        ],
    );
    let send = tracing::info_span!(parent: &span, "send", otel.name = send, otel.kind = "client");
    paywatch_core::traces::set_attributes(&send, [("paywatch.channel", n.channel.as_str().into())]);
    deliver_in(n, job, ctx, send).instrument(span).await
}

async fn deliver_in(
    n: Notification,
    job: JobInfo,
    ctx: Data<Arc<NotifyContext>>,
    send: tracing::Span,
) -> Result<Next<Notification>, BoxDynError> {
    let ctx: &NotifyContext = &ctx;
    let channel = n.channel;
    // The crash tests stop the process here: leased, nothing sent yet.
    fail::fail_point!("notify-before-send", |_| Ok(Next::Done));
    let result = ctx
        .dispatch(channel, &Message::Order(&n), job.attempt)
        .instrument(send)
        .await;
    let outcome = match &result {
        Ok(()) => "delivered",
        Err(DeliveryError::Transient(_)) => "transient",
        // Pacing was counted as a Retry-After before it had its own variant; the label stays.
        Err(DeliveryError::RetryAfter { .. } | DeliveryError::Paced { .. }) => "retry_after",
        Err(DeliveryError::Permanent(_)) => "permanent",
    };
    crate::metrics::notification_attempt(channel, outcome);
    // Pacing is our own restraint, not the target failing.
    crate::health::notification(
        channel,
        result
            .as_ref()
            .is_err_and(|e| !matches!(e, DeliveryError::Paced { .. })),
    );
    // The crash tests stop the process here: delivered, not yet acknowledged.
    fail::fail_point!("notify-delivered", result.is_ok(), |_| Ok(Next::Done));
    if result.is_ok() {
        tracing::info!(order = %n.order_id, %channel, status = %n.status, "notification delivered");
    }
    ctx.outcome(
        channel,
        job.attempt,
        &format!("order {}", n.order_id),
        result,
    )
}

/// A job for a channel this worker has no sender for: transient, since another worker of the
/// fleet (or this one, reconfigured) may deliver it.
fn unconfigured(channel: Channel) -> DeliveryError {
    DeliveryError::Transient(format!(
        "{channel} delivery is not configured on this worker"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::webhook::WebhookConfig;

    fn with_webhook() -> NotifyContext {
        let mut config = WebhookConfig::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        config.schedule_scale = 0.0;
        NotifyContext {
            webhook: Some(WebhookSender::new(config).expect("webhook sender")),
            ..NotifyContext::default()
        }
    }

    fn retry_after(result: Result<Next<()>, BoxDynError>) -> Duration {
        let err = result.expect_err("an error");
        err.downcast_ref::<RetryAfterError>()
            .unwrap_or_else(|| panic!("not a RetryAfterError: {err}"))
            .get_duration()
    }

    #[test]
    fn pacing_waits_without_spending_an_attempt_on_every_channel() {
        let ctx = with_webhook();
        for channel in [Channel::Email, Channel::Telegram, Channel::Webhook] {
            let after = Duration::from_millis(700);
            let next: Next<()> = ctx
                .outcome(channel, 3, "t", Err(DeliveryError::Paced { after }))
                .expect("not an error");
            assert_eq!(next, Next::After(after));
        }
    }

    #[test]
    fn transient_webhook_failures_follow_the_webhook_schedule_then_give_up() {
        let ctx = with_webhook();
        let transient = || Err(DeliveryError::Transient("503".into()));
        // schedule_scale 0: every scheduled wait is zero, and it is a RetryAfter, not backoff.
        assert_eq!(
            retry_after(ctx.outcome(Channel::Webhook, 1, "t", transient())),
            Duration::ZERO
        );
        let last = ctx.outcome::<()>(Channel::Webhook, webhook::MAX_ATTEMPTS, "t", transient());
        assert!(last.expect_err("gives up").is::<AbortError>());
        // Other channels use the queue's own retry policy: a plain error.
        let email = ctx.outcome::<()>(Channel::Email, 1, "t", transient());
        let err = email.expect_err("retries");
        assert!(!err.is::<RetryAfterError>() && !err.is::<AbortError>());
    }

    #[test]
    fn retry_after_and_permanent_map_to_the_queue_errors() {
        let ctx = NotifyContext::default();
        let after = Duration::from_secs(7);
        let asked = Err(DeliveryError::RetryAfter {
            after,
            reason: "429".into(),
        });
        assert_eq!(
            retry_after(ctx.outcome(Channel::Telegram, 1, "t", asked)),
            after
        );
        let gone = Err(DeliveryError::Permanent("410".into()));
        let dead = ctx.outcome::<()>(Channel::Webhook, 1, "t", gone);
        assert!(dead.expect_err("dead").is::<AbortError>());
    }
}
