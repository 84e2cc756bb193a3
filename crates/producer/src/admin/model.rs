//! What the admin answers: the `/v1/admin/*` bodies, the CLI's `--json`, and their OpenAPI
//! schemas (these types are what the handlers serialize, so the document cannot drift).

use chrono::{DateTime, Utc};
use paywatch_queue::{DeadLetter, QueueDepth, QueueStats};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

pub use super::kind::QueueKind;
use super::redact;

/// One queue's counts per state, read by the Redis clock, and its lifetime counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QueueReport {
    /// The queue's name.
    pub name: String,
    /// What it carries.
    pub kind: QueueKind,
    /// Due now, waiting for a worker.
    pub due: u64,
    /// Due later (delayed, rescheduled or waiting to retry).
    pub scheduled: u64,
    /// Leased by a worker right now.
    pub leased: u64,
    /// In the dead letters.
    pub dead: u64,
    /// Seconds until the earliest pending job falls due (negative: it is late by that much);
    /// null when nothing is pending.
    pub next_due_in_seconds: Option<f64>,
    /// Lifetime: runs that completed their job.
    pub completed: u64,
    /// Lifetime: failed runs scheduled to retry.
    pub retried: u64,
    /// Lifetime: runs that rescheduled their job (a check finding the payment still pending).
    pub rescheduled: u64,
    /// Lifetime: jobs sent to the dead letters.
    pub dead_lettered: u64,
}

impl QueueReport {
    /// The report of one queue from its depth and counters.
    pub fn new(name: &str, kind: QueueKind, depth: QueueDepth, stats: QueueStats) -> Self {
        Self {
            name: name.to_owned(),
            kind,
            due: depth.due,
            scheduled: depth.scheduled,
            leased: depth.leased,
            dead: depth.dead,
            next_due_in_seconds: depth.next_due_in_ms.map(|ms| ms as f64 / 1000.0),
            completed: stats.completed,
            retried: stats.retried,
            rescheduled: stats.rescheduled,
            dead_lettered: stats.dead_lettered,
        }
    }
}

/// Every queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QueuesReply {
    /// Check shards first, then the notifier queues.
    pub queues: Vec<QueueReport>,
}

/// A dead letter, without its payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeadLetterView {
    /// The queue it belongs to.
    pub queue: String,
    /// What that queue carries.
    pub kind: QueueKind,
    /// The job id (for a check: the order id).
    pub id: String,
    /// The order it is about, when the payload says.
    pub order_id: Option<String>,
    /// Why it was dead-lettered (secrets redacted at the source).
    pub reason: String,
    /// When (RFC 3339, Redis clock).
    pub at: String,
    /// When, Unix milliseconds.
    pub at_ms: u64,
    /// Runs of its last step.
    pub attempts: u64,
}

impl DeadLetterView {
    /// The view of a dead letter of `queue`.
    pub fn new(queue: &str, kind: QueueKind, letter: &DeadLetter) -> Self {
        Self {
            queue: queue.to_owned(),
            kind,
            id: letter.id.clone(),
            order_id: redact::order_id(kind, &letter.id, &letter.payload),
            reason: letter.error.clone(),
            at: rfc3339_ms(letter.at),
            at_ms: letter.at,
            attempts: letter.attempts,
        }
    }
}

/// Dead letters, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeadLetterPage {
    /// Dead letters in the queues asked about (the list may hold fewer: see `limit`).
    pub total: u64,
    /// The oldest ones, at most `limit`.
    pub letters: Vec<DeadLetterView>,
}

/// A dead letter with its payload, secrets redacted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeadLetterDetail {
    /// The dead letter.
    #[serde(flatten)]
    pub letter: DeadLetterView,
    /// `json` (decoded, secrets redacted) or `text` (not JSON: shown as stored).
    pub payload_format: String,
    /// The payload: a check's order record or a notification, with delivered codes and
    /// webhook URL paths redacted; the stored text when it is not JSON.
    #[schema(value_type = Object)]
    pub payload: Value,
}

impl DeadLetterDetail {
    /// The detail of a dead letter of `queue`.
    pub fn new(queue: &str, kind: QueueKind, letter: &DeadLetter) -> Self {
        let (payload_format, payload) = redact::payload(kind, &letter.id, &letter.payload);
        Self {
            letter: DeadLetterView::new(queue, kind, letter),
            payload_format: payload_format.to_owned(),
            payload,
        }
    }
}

/// Which dead letters to retry or purge: `{"ids": [...]}` or `{"all": true}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    /// These job ids (1 to 1000).
    #[schema(min_items = 1, max_items = 1000)]
    pub ids: Option<Vec<String>>,
    /// Every dead letter of the queue; must be `true` when given.
    pub all: Option<bool>,
}

/// What a retry or purge did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ActionReport {
    /// `retry` or `purge`.
    pub action: String,
    /// The queue as named in the request.
    pub queue: String,
    /// Dead letters retried (now due) or purged.
    pub done: u64,
    /// Ids named that were not in the dead letters.
    pub missing: Vec<String>,
}

/// Where a final order's notification on one channel stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotificationState {
    /// Its job waits to be delivered (or to retry).
    Pending,
    /// Its job is in the dead letters.
    Dead,
    /// No job left and none in the dead letters: delivered (or purged by an operator).
    Done,
    /// The order is final but its notifications are not enqueued yet.
    NotYetEnqueued,
}

/// One notification of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NotificationView {
    /// `email`, `telegram` or `webhook`.
    pub channel: String,
    /// Its queue.
    pub queue: String,
    /// Its job id.
    pub job_id: String,
    /// Where it stands.
    pub state: NotificationState,
    /// Why it was dead-lettered.
    pub reason: Option<String>,
    /// When it was dead-lettered (RFC 3339).
    pub dead_at: Option<String>,
}

/// One event in an order's story.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TimelineEntry {
    /// When (RFC 3339).
    pub at: String,
    /// `accepted`, `check`, `error`, `stopped` or `notification_dead`.
    pub event: String,
    /// The normalized status then, when known.
    pub status: Option<String>,
    /// What happened.
    pub text: String,
}

/// An order as an operator sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OrderReport {
    /// The order as `GET /v1/orders/{order_id}` shows it.
    #[schema(value_type = crate::openapi::OrderView)]
    pub order: crate::views::OrderJson,
    /// The check queue (shard) its check job lives in.
    pub check_queue: String,
    /// Its check's dead letter, when paywatch stopped watching it.
    pub dead_letter: Option<DeadLetterView>,
    /// Its notifications, once final.
    pub notifications: Vec<NotificationView>,
    /// Its story, oldest first.
    pub timeline: Vec<TimelineEntry>,
}

/// Unix milliseconds as RFC 3339 (UTC, milliseconds); a value no date holds (it came from Redis)
/// is shown as the number it is rather than as 1970.
pub fn rfc3339_ms(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(DateTime::<Utc>::from_timestamp_millis)
        .map_or_else(
            || format!("{ms} ms after 1970 (out of range)"),
            |at| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        )
}
