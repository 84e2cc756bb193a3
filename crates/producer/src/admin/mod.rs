//! The operator's view of a deployment: every queue's counts per state, the dead letters (list,
//! show, retry, purge) and one order's record and timeline.
//!
//! One service, [`Admin`], behind two faces: the `paywatch-producer admin …` command line
//! ([`cli`]) and the `/v1/admin/*` HTTP API ([`http`]) that the web board (`/board`) uses. Both
//! speak the same answer types ([`model`]), so the CLI's `--json` and the API agree. Queue names
//! come from [`paywatch_core::queues`] and the shard count ([`paywatch_core::store::check_queue`]);
//! payloads are shown with their secrets redacted ([`redact`]). [`health`] makes the health
//! verdict (`admin health`, `GET /v1/admin/health`).

pub mod cli;
pub mod health;
pub mod http;
pub mod kind;
pub mod model;
pub mod redact;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use paywatch_core::notification::identity;
use paywatch_core::store::{OrderView, Phase, check_queue, shard_of};
use paywatch_core::{Channel, OrderId, queues};
use paywatch_queue::{JobId, QueueError, RedisQueue};
use serde_json::Value;

use self::model::{
    ActionReport, DeadLetterDetail, DeadLetterPage, DeadLetterView, NotificationState,
    NotificationView, OrderReport, QueueKind, QueueReport, TimelineEntry, rfc3339_ms,
};
use crate::{Producer, ProducerError};

/// The most dead letters one listing returns.
pub const MAX_LIMIT: usize = 1000;
/// Dead letters listed when no limit is given.
pub const DEFAULT_LIMIT: usize = 100;
/// The most ids one retry or purge names.
pub const MAX_IDS: usize = 1000;
/// Dead letters moved per Redis call by "all" (each call is one bounded script).
const BATCH: usize = 500;

/// What an operator asked for that cannot be done.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No queue has this name.
    #[error("no queue {name:?}; the queues are: {known}")]
    UnknownQueue {
        /// The name given.
        name: String,
        /// The deployment's queues, comma-separated.
        known: String,
    },
    /// A parameter is invalid; `field` names it.
    #[error("{field}: {message}")]
    Invalid {
        /// The parameter.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// None of the ids is in the queue's dead letters.
    #[error("no dead letter {ids} in {queue}")]
    NoDeadLetter {
        /// The queue.
        queue: String,
        /// The ids asked for, comma-separated.
        ids: String,
    },
    /// No order has this id.
    #[error("no order {0}")]
    NoOrder(String),
    /// A queue call failed (Redis).
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// An order read failed (Redis, or a corrupt record).
    #[error(transparent)]
    Store(#[from] ProducerError),
}

impl AdminError {
    /// Whether the failure is Redis being unreachable (worth a 503 and a retry).
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Queue(QueueError::Redis(e)) => {
                e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_timeout()
            }
            Self::Store(e) => e.is_unavailable(),
            _ => false,
        }
    }

    /// Whether it is about something the operator named that does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Self::UnknownQueue { .. } | Self::NoDeadLetter { .. } | Self::NoOrder(_)
        )
    }

    fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

/// What to do to dead letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Move them back to their queue, due now, with fresh attempts.
    Retry,
    /// Delete them for good.
    Purge,
}

impl Action {
    /// Its name, as the API and the CLI spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retry => "retry",
            Self::Purge => "purge",
        }
    }
}

/// Which dead letters an action applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// These ids (at most [`MAX_IDS`]).
    Ids(Vec<JobId>),
    /// Every dead letter of the queue.
    All,
}

impl Selection {
    /// Validated ids: 1 to [`MAX_IDS`] job ids; `field` names the parameter in errors.
    pub fn ids<S: AsRef<str>>(ids: &[S], field: &str) -> Result<Self, AdminError> {
        if ids.is_empty() {
            return Err(AdminError::invalid(field, "name at least one id"));
        }
        if ids.len() > MAX_IDS {
            return Err(AdminError::invalid(
                field,
                format!("at most {MAX_IDS} ids at once (use \"all\" for every dead letter)"),
            ));
        }
        ids.iter()
            .enumerate()
            .map(|(i, id)| job_id(id.as_ref(), &format!("{field}[{i}]")))
            .collect::<Result<_, _>>()
            .map(Self::Ids)
    }
}

/// A job id given by an operator, validated; `field` names it in the error.
pub fn job_id(id: &str, field: &str) -> Result<JobId, AdminError> {
    JobId::new(id).map_err(|e| match e {
        QueueError::InvalidJobId(why) => AdminError::invalid(field, format!("not a job id: {why}")),
        other => AdminError::Queue(other),
    })
}

/// A dead-letter listing limit given by an operator, validated.
pub fn limit(limit: Option<usize>) -> Result<usize, AdminError> {
    match limit.unwrap_or(DEFAULT_LIMIT) {
        n @ 1..=MAX_LIMIT => Ok(n),
        _ => Err(AdminError::invalid(
            "limit",
            format!("must be from 1 to {MAX_LIMIT}"),
        )),
    }
}

/// One queue the admin knows.
#[derive(Debug)]
struct Known {
    name: String,
    kind: QueueKind,
    queue: RedisQueue<Value>,
}

/// The operator's view of one deployment (one key prefix, one shard count).
#[derive(Debug, Clone)]
pub struct Admin {
    producer: Producer,
    queues: Arc<Vec<Known>>,
}

impl Admin {
    /// The admin of the deployment `producer` feeds: its check queue shards and every notifier
    /// queue, over the producer's connection.
    pub fn new(producer: Producer) -> Self {
        let checks = (0..producer.shards()).map(|s| (check_queue(s), QueueKind::Check));
        let others = queues::ALL
            .iter()
            .filter(|q| **q != queues::CHECK_PAYMENT)
            .map(|q| {
                let kind = if *q == queues::NOTIFY_OPS {
                    QueueKind::Ops
                } else {
                    QueueKind::Notify
                };
                (q.to_string(), kind)
            });
        let queues = checks
            .chain(others)
            .map(|(name, kind)| Known {
                queue: producer.queue(&name),
                name,
                kind,
            })
            .collect();
        Self {
            producer,
            queues: Arc::new(queues),
        }
    }

    /// The names of every queue, check shards first.
    pub fn queue_names(&self) -> Vec<&str> {
        self.queues.iter().map(|q| q.name.as_str()).collect()
    }

    /// The queues a name means: itself, or every check shard for `check-payment`.
    fn select(&self, name: &str) -> Result<Vec<&Known>, AdminError> {
        let found: Vec<&Known> = if name == queues::CHECK_PAYMENT {
            self.queues
                .iter()
                .filter(|q| q.kind == QueueKind::Check)
                .collect()
        } else {
            self.queues.iter().filter(|q| q.name == name).collect()
        };
        if found.is_empty() {
            return Err(AdminError::UnknownQueue {
                name: name.chars().take(200).collect(),
                known: self.queue_names().join(", "),
            });
        }
        Ok(found)
    }

    /// The one queue holding job `id` among those `name` means: a check job's shard follows
    /// from its id (the order id).
    fn holder(&self, name: &str, id: &JobId) -> Result<&Known, AdminError> {
        let selected = self.select(name)?;
        if selected.len() == 1 {
            return Ok(selected[0]);
        }
        let shard = check_queue(shard_of(id.as_str(), self.producer.shards()));
        self.select(&shard)?
            .pop()
            .ok_or_else(|| AdminError::UnknownQueue {
                name: shard,
                known: self.queue_names().join(", "),
            })
    }

    /// Every queue's counts per state and lifetime counters.
    pub async fn queues(&self) -> Result<Vec<QueueReport>, AdminError> {
        let reads = self.queues.iter().map(|q| async move {
            let (depth, stats) = futures::try_join!(q.queue.depth(), q.queue.stats())?;
            Ok::<_, AdminError>(QueueReport::new(&q.name, q.kind, depth, stats))
        });
        futures::future::try_join_all(reads).await
    }

    /// Up to `limit` dead letters, oldest first, of one queue (or of all when `queue` is none).
    pub async fn dead_letters(
        &self,
        queue: Option<&str>,
        limit: usize,
    ) -> Result<DeadLetterPage, AdminError> {
        let selected: Vec<&Known> = match queue {
            Some(name) => self.select(name)?,
            None => self.queues.iter().collect(),
        };
        let reads = selected.iter().map(|q| async move {
            let (letters, depth) =
                futures::try_join!(q.queue.dead_letters(limit), q.queue.depth())?;
            Ok::<_, AdminError>((q, letters, depth.dead))
        });
        let mut total = 0;
        let mut letters = Vec::new();
        for (q, page, dead) in futures::future::try_join_all(reads).await? {
            total += dead;
            letters.extend(page.iter().map(|d| DeadLetterView::new(&q.name, q.kind, d)));
        }
        letters.sort_by(|a, b| (a.at_ms, &a.queue, &a.id).cmp(&(b.at_ms, &b.queue, &b.id)));
        letters.truncate(limit);
        Ok(DeadLetterPage { total, letters })
    }

    /// One dead letter with its payload (secrets redacted).
    pub async fn dead_letter(&self, queue: &str, id: &str) -> Result<DeadLetterDetail, AdminError> {
        let id = job_id(id, "id")?;
        let q = self.holder(queue, &id)?;
        let letter = q
            .queue
            .dead_letters_with_ids(std::slice::from_ref(&id))
            .await?
            .pop()
            .ok_or_else(|| AdminError::NoDeadLetter {
                queue: q.name.clone(),
                ids: id.to_string(),
            })?;
        Ok(DeadLetterDetail::new(&q.name, q.kind, &letter))
    }

    /// Retries or purges dead letters of `queue` (every check shard for `check-payment`).
    /// Naming ids none of which is there is an error; naming some that are not is reported.
    pub async fn act(
        &self,
        action: Action,
        queue: &str,
        selection: &Selection,
    ) -> Result<ActionReport, AdminError> {
        let mut report = ActionReport {
            action: action.as_str().to_owned(),
            queue: queue.to_owned(),
            done: 0,
            missing: Vec::new(),
        };
        match selection {
            Selection::All => {
                for q in self.select(queue)? {
                    report.done += all(action, q).await?;
                }
            }
            Selection::Ids(ids) => {
                let mut by_queue: Vec<(&Known, Vec<JobId>)> = Vec::new();
                for id in ids {
                    let q = self.holder(queue, id)?;
                    match by_queue.iter_mut().find(|(k, _)| k.name == q.name) {
                        Some((_, list)) => list.push(id.clone()),
                        None => by_queue.push((q, vec![id.clone()])),
                    }
                }
                for (q, ids) in by_queue {
                    // Only the ids that are there, so the ones that are not can be named.
                    let present: Vec<JobId> = q
                        .queue
                        .dead_letters_with_ids(&ids)
                        .await?
                        .into_iter()
                        .filter_map(|d| JobId::new(d.id).ok())
                        .collect();
                    report.missing.extend(
                        ids.iter()
                            .filter(|id| !present.contains(id))
                            .map(|id| id.to_string()),
                    );
                    if !present.is_empty() {
                        report.done += match action {
                            Action::Retry => q.queue.retry_dead(&present, present.len()).await?,
                            Action::Purge => q.queue.purge_dead(&present, present.len()).await?,
                        };
                    }
                }
                if report.done == 0 && !report.missing.is_empty() {
                    return Err(AdminError::NoDeadLetter {
                        queue: queue.to_owned(),
                        ids: report.missing.join(", "),
                    });
                }
            }
        }
        if report.done > 0 {
            tracing::info!(
                action = action.as_str(),
                queue,
                count = report.done,
                "dead letters handled by an operator"
            );
        }
        Ok(report)
    }

    /// An order's record, phase, check queue, notifications and timeline.
    pub async fn order(&self, order_id: &str) -> Result<OrderReport, AdminError> {
        let id: OrderId = order_id.parse().map_err(|_| {
            AdminError::invalid(
                "order_id",
                "not an order id (1 to 128 printable ASCII characters without spaces)",
            )
        })?;
        let view = self
            .producer
            .order(&id)
            .await?
            .ok_or_else(|| AdminError::NoOrder(id.to_string()))?;
        let check = check_queue(shard_of(id.as_str(), self.producer.shards()));
        let check_dead = if view.phase == Phase::Stopped {
            let q = self.holder(&check, &job_id(id.as_str(), "order_id")?)?;
            q.queue
                .dead_letters_with_ids(&[job_id(id.as_str(), "order_id")?])
                .await?
                .pop()
                .map(|d| DeadLetterView::new(&q.name, q.kind, &d))
        } else {
            None
        };
        let notifications = self.notifications(&view).await?;
        let timeline = timeline(&view, &notifications);
        Ok(OrderReport {
            order: crate::views::order_view(&view),
            check_queue: check,
            dead_letter: check_dead,
            notifications,
            timeline,
        })
    }

    /// Where each of a final order's notifications stands.
    async fn notifications(&self, view: &OrderView) -> Result<Vec<NotificationView>, AdminError> {
        if view.phase != Phase::Final {
            return Ok(Vec::new());
        }
        let notify = &view.record.notify;
        let channels = [
            (Channel::Email, notify.email.is_some()),
            (Channel::Telegram, notify.telegram_chat_id.is_some()),
            (Channel::Webhook, notify.webhook_url.is_some()),
        ];
        let status = view.record.status();
        let mut out = Vec::new();
        for (channel, wanted) in channels {
            if !wanted {
                continue;
            }
            let q = self.select(channel.queue())?[0];
            let job = job_id(&identity(&view.order_id, status, channel), "order_id")?;
            let dead = q
                .queue
                .dead_letters_with_ids(std::slice::from_ref(&job))
                .await?
                .pop();
            let state = if dead.is_some() {
                NotificationState::Dead
            } else if q.queue.payload(&job).await?.is_some() {
                NotificationState::Pending
            } else if view.notified {
                NotificationState::Done
            } else {
                NotificationState::NotYetEnqueued
            };
            out.push(NotificationView {
                channel: channel.as_str().to_owned(),
                queue: q.name.clone(),
                job_id: job.to_string(),
                state,
                reason: dead.as_ref().map(|d| d.error.clone()),
                dead_at: dead.as_ref().map(|d| rfc3339_ms(d.at)),
            });
        }
        Ok(out)
    }
}

/// Retries or purges every dead letter of one queue, a bounded batch per call.
async fn all(action: Action, q: &Known) -> Result<u64, AdminError> {
    // Letters that die while we work could keep this going; the count at the start bounds it.
    let rounds = q.queue.depth().await?.dead / BATCH as u64 + 2;
    let mut done = 0;
    for _ in 0..rounds {
        let n = match action {
            Action::Retry => q.queue.retry_dead(&[], BATCH).await?,
            Action::Purge => q.queue.purge_dead(&[], BATCH).await?,
        };
        done += n;
        if n < BATCH as u64 {
            break;
        }
    }
    Ok(done)
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// An order's story, oldest first: accepted, each change its checks saw, why paywatch stopped,
/// and notifications that went to the dead letters.
fn timeline(view: &OrderView, notifications: &[NotificationView]) -> Vec<TimelineEntry> {
    let record = &view.record;
    let mut out = vec![TimelineEntry {
        at: rfc3339(record.created_at()),
        event: "accepted".into(),
        status: None,
        text: format!(
            "order accepted: {} payment {}",
            record.provider, record.payment_id
        ),
    }];
    if let Some(state) = &record.state {
        for h in &state.history {
            let mut text = h.decision.clone();
            if let Some(raw) = &h.raw_status {
                text = format!("provider says {raw}; {text}");
            }
            if let Some(error) = &h.error {
                text = format!("{error}; {text}");
            }
            if let Some(detail) = &h.detail {
                text = format!("{text} ({detail})");
            }
            out.push(TimelineEntry {
                at: rfc3339(h.at),
                event: if h.error.is_some() { "error" } else { "check" }.into(),
                status: h.status.map(|s| s.to_string()),
                text: format!("check {}: {text}", h.check),
            });
        }
    }
    if let Some(stopped) = &view.stopped {
        out.push(TimelineEntry {
            at: stopped
                .at
                .map(rfc3339)
                .unwrap_or_else(|| rfc3339(record.created_at())),
            event: "stopped".into(),
            status: Some(record.status().to_string()),
            text: format!(
                "paywatch stopped watching; its check is in the dead letters: {}",
                stopped.reason
            ),
        });
    }
    for n in notifications {
        if let (NotificationState::Dead, Some(at)) = (n.state, &n.dead_at) {
            out.push(TimelineEntry {
                at: at.clone(),
                event: "notification_dead".into(),
                status: None,
                text: format!(
                    "{} notification dead-lettered: {}",
                    n.channel,
                    n.reason.as_deref().unwrap_or("")
                ),
            });
        }
    }
    // RFC 3339 in UTC with a fixed precision sorts as text.
    out.sort_by(|a, b| a.at.cmp(&b.at));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selections_name_the_bad_id() {
        let err = Selection::ids(&["ok", ""], "ids").expect_err("empty id");
        assert!(err.to_string().starts_with("ids[1]: "), "{err}");
        let none: [&str; 0] = [];
        assert!(Selection::ids(&none, "ids").is_err());
        let many: Vec<String> = (0..=MAX_IDS).map(|i| i.to_string()).collect();
        assert!(Selection::ids(&many, "ids").is_err());
        assert_eq!(
            Selection::ids(&["a"], "ids").expect("one"),
            Selection::Ids(vec![JobId::new("a").expect("id")])
        );
    }

    #[test]
    fn limits_are_bounded() {
        assert_eq!(limit(None).expect("default"), DEFAULT_LIMIT);
        assert!(limit(Some(0)).is_err());
        assert!(limit(Some(MAX_LIMIT + 1)).is_err());
        assert_eq!(limit(Some(7)).expect("7"), 7);
    }
}
