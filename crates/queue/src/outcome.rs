//! How a handler tells the queue what to do with its job.
//!
//! Success values implement [`JobOutcome`]: `()` completes the job, [`Next`] can also reschedule
//! it. Failures use apalis' own error types: [`AbortError`](apalis_core::error::AbortError) sends
//! the job to the dead letters at once, [`RetryAfterError`](apalis_core::error::RetryAfterError)
//! retries after the given delay, and any other error retries per the queue's
//! [`RetryPolicy`](crate::RetryPolicy) until its attempts are spent.

use std::time::Duration;

use serde::Serialize;

use crate::QueueError;

/// A handler's verdict on its job.
#[derive(Debug, Clone, PartialEq)]
pub enum Next<T> {
    /// The job is finished; its record is deleted.
    Done,
    /// Run this same job again after the delay, with the same arguments (same id, no new job, no
    /// worker slot held while it waits).
    After(Duration),
    /// Run this same job again after `after`, with `args` replacing its arguments (same id, no new
    /// job, no worker slot held while it waits).
    Reschedule {
        /// Delay before the next run, measured by the Redis clock.
        after: Duration,
        /// The arguments of the next run.
        args: T,
    },
}

/// What the queue does with a job once its handler succeeded.
#[derive(Debug, Clone, PartialEq)]
pub enum Settlement {
    /// Delete the job.
    Complete,
    /// Ack the run and schedule the same job again, in one atomic step.
    Reschedule {
        /// Delay in milliseconds.
        after_ms: u64,
        /// The new payload (JSON); `None` keeps the stored one.
        payload: Option<String>,
    },
}

/// A handler's success value that the queue can settle a job with.
pub trait JobOutcome {
    /// The settlement this value asks for.
    fn settlement(&self) -> Result<Settlement, QueueError>;
}

impl JobOutcome for () {
    fn settlement(&self) -> Result<Settlement, QueueError> {
        Ok(Settlement::Complete)
    }
}

/// Lets handlers return `Next<T>` directly, not only inside a `Result`.
impl<T> apalis_core::task::into_response::IntoResponse for Next<T> {
    type Output = Self;
    fn into_response(self) -> Result<Self, apalis_core::error::BoxDynError> {
        Ok(self)
    }
}

impl<T: Serialize> JobOutcome for Next<T> {
    fn settlement(&self) -> Result<Settlement, QueueError> {
        match self {
            Next::Done => Ok(Settlement::Complete),
            Next::After(after) => Ok(Settlement::Reschedule {
                after_ms: millis(*after),
                payload: None,
            }),
            Next::Reschedule { after, args } => Ok(Settlement::Reschedule {
                after_ms: millis(*after),
                payload: Some(serde_json::to_string(args).map_err(QueueError::Encode)?),
            }),
        }
    }
}

fn millis(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}
