//! Jobs as producers and handlers see them: ids, schedules, enqueue outcomes, job info.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use apalis_core::task::{Task, from_request::FromRequest};
use serde::{Deserialize, Serialize};

use crate::QueueError;

/// The longest job id accepted, in bytes.
pub const MAX_JOB_ID_LEN: usize = 256;

/// A job's identity inside one queue; enqueueing twice with the same id is idempotent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct JobId(String);

impl JobId {
    /// Validates a job id: non-empty, at most [`MAX_JOB_ID_LEN`] bytes, no control characters.
    pub fn new(id: impl Into<String>) -> Result<Self, QueueError> {
        let id = id.into();
        if id.is_empty() {
            return Err(QueueError::InvalidJobId("empty".into()));
        }
        if id.len() > MAX_JOB_ID_LEN {
            return Err(QueueError::InvalidJobId(format!(
                "{} bytes, more than {MAX_JOB_ID_LEN}",
                id.len()
            )));
        }
        if id.chars().any(char::is_control) {
            return Err(QueueError::InvalidJobId(
                "contains control characters".into(),
            ));
        }
        Ok(Self(id))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for JobId {
    type Error = QueueError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<JobId> for String {
    fn from(id: JobId) -> Self {
        id.0
    }
}

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// When a job falls due; times are judged by the Redis clock, never the caller's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Schedule {
    /// Due immediately.
    #[default]
    Now,
    /// Due this long after Redis receives the enqueue.
    After(Duration),
    /// Due at this wall-clock instant.
    At(SystemTime),
}

impl Schedule {
    /// The script's (kind, milliseconds) encoding.
    pub(crate) fn encode(self) -> (&'static str, u64) {
        match self {
            Self::Now => ("now", 0),
            Self::After(d) => ("after", d.as_millis().min(u64::MAX as u128) as u64),
            Self::At(t) => (
                "at",
                t.duration_since(UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0),
            ),
        }
    }
}

/// What an idempotent enqueue did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EnqueueOutcome {
    /// A new job was created.
    Created,
    /// A job with this id and the same payload already exists; nothing changed.
    Duplicate,
    /// A job with this id exists with another payload; nothing changed.
    Conflict,
    /// A job with this id is in the dead letters; nothing changed.
    DeadLettered,
    /// A job with this id completed within the queue's `keep_completed` window; nothing changed.
    Completed,
}

impl EnqueueOutcome {
    /// The outcome an enqueue script (or a library function adding jobs by the same rule,
    /// `queue_enqueue` in `lua/writes.lua`) replied with its code.
    pub fn from_code(code: i64) -> Result<Self, QueueError> {
        Ok(match code {
            1 => Self::Created,
            0 => Self::Duplicate,
            -1 => Self::Conflict,
            -2 => Self::DeadLettered,
            -3 => Self::Completed,
            other => return Err(QueueError::Protocol(format!("enqueue code {other}"))),
        })
    }
}

/// What a handler can learn about the job it runs (extract it as a handler argument).
#[derive(Debug, Clone)]
pub struct JobInfo {
    /// The job id.
    pub id: JobId,
    /// The queue the job came from.
    pub queue: String,
    /// Runs of the current step so far, this one included (1 on the first run).
    pub attempt: u32,
    /// When the job fell due, Unix ms by the Redis clock.
    pub due_ms: u64,
    /// When the job was leased, Unix ms by the Redis clock.
    pub leased_ms: u64,
    pub(crate) token: String,
}

impl<Args: Sync> FromRequest<Task<Args>> for JobInfo {
    type Error = MissingJobInfo;
    async fn from_request(task: &Task<Args>) -> Result<Self, Self::Error> {
        task.ctx()
            .data()
            .get::<JobInfo>()
            .cloned()
            .ok_or(MissingJobInfo)
    }
}

/// A task did not come from a paywatch queue, so it carries no [`JobInfo`].
#[derive(Debug, thiserror::Error)]
#[error("the task carries no JobInfo: it did not come from a paywatch queue")]
pub struct MissingJobInfo;
