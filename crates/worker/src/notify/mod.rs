//! Notification delivery: one module per channel, one error type for all of them.
//!
//! Each channel's sender delivers one [`Notification`](paywatch_core::Notification) per call and
//! classifies failures as a [`DeliveryError`]; [`deliver::NotifyContext`] is the one place that
//! picks the sender for a channel and turns those errors into queue outcomes (retry with backoff,
//! retry after a delay, wait without spending an attempt, dead-letter), for order notifications
//! and ops digests alike. Senders never sleep to wait out a rate limit: they return
//! [`DeliveryError::RetryAfter`] or [`DeliveryError::Paced`] and the job is rescheduled.

pub mod deliver;
pub mod email;
pub mod telegram;
pub mod webhook;

use std::time::Duration;

/// Why a delivery did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Worth retrying with the queue's backoff (connection refused, timeout, 5xx, SMTP 4xx).
    #[error("transient delivery failure: {0}")]
    Transient(String),
    /// The receiver asked us to wait this long (HTTP 429/503 Retry-After, Telegram
    /// `retry_after`).
    #[error("asked to retry after {after:?}: {reason}")]
    RetryAfter {
        /// How long to wait.
        after: Duration,
        /// Why.
        reason: String,
    },
    /// Our own fleet-wide pacing (Telegram's per-chat and per-bot budgets) held the send back:
    /// nothing was sent and nothing failed, so the job waits without spending an attempt.
    #[error("paced: the send budget has room again in {after:?}")]
    Paced {
        /// How long until the budget has room.
        after: Duration,
    },
    /// Retrying cannot help (SMTP 5xx, Telegram chat not found / bot blocked, webhook 410,
    /// a target the SSRF guard refuses): dead-letter with this reason.
    #[error("permanent delivery failure: {0}")]
    Permanent(String),
}
