//! Notification delivery: one module per channel, one error type for all of them.
//!
//! Each channel's sender delivers one [`Notification`](paywatch_core::Notification) per call and
//! classifies failures as a [`DeliveryError`]; the notifier handlers turn those into queue
//! outcomes (retry with backoff, retry after a delay, dead-letter). Senders never sleep to wait
//! out a rate limit: they return [`DeliveryError::RetryAfter`] and the job is rescheduled.

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
    /// `retry_after`, our own fleet-wide pacing).
    #[error("asked to retry after {after:?}: {reason}")]
    RetryAfter {
        /// How long to wait.
        after: Duration,
        /// Why.
        reason: String,
    },
    /// Retrying cannot help (SMTP 5xx, Telegram chat not found / bot blocked, webhook 410,
    /// a target the SSRF guard refuses): dead-letter with this reason.
    #[error("permanent delivery failure: {0}")]
    Permanent(String),
}
