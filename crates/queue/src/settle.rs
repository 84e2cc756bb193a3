//! Settling jobs: what a handler's result turns into (complete / reschedule / retry /
//! dead-letter / release) and the requests that carry it to the settler (`settler.rs`).
//!
//! Deciding is pure and lives here; writing to Redis is the settler's job, and wrapping a
//! handler is the middleware's (`middleware.rs`).

use apalis_core::error::{AbortError, BoxDynError, RetryAfterError};
use tokio::sync::oneshot;

use crate::RetryPolicy;
use crate::outcome::{JobOutcome, Settlement};

/// Longest error text kept with a retrying or dead job.
const MAX_ERROR_LEN: usize = 2000;

/// One way to settle a leased job.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SettleOp {
    /// Finished: the record is deleted.
    Complete,
    /// Due again after `after_ms`; `payload: None` keeps the stored payload.
    Reschedule {
        after_ms: u64,
        payload: Option<String>,
    },
    /// Failed, retried after `after_ms`.
    Retry { after_ms: u64, error: String },
    /// Sent to the dead letters.
    Dead { reason: String },
    /// Handed back unrun, due at once.
    Release,
}

impl SettleOp {
    /// The op as the settle script names it.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Complete => "complete",
            Self::Reschedule { .. } => "reschedule",
            Self::Retry { .. } => "retry",
            Self::Dead { .. } => "dead",
            Self::Release => "release",
        }
    }
}

/// A message to the background settler.
#[derive(Debug)]
pub(crate) enum SettleRequest {
    /// Settle one job; `reply` learns whether it applied (false: the lease was lost).
    Settle {
        id: String,
        token: String,
        op: SettleOp,
        reply: Option<oneshot::Sender<bool>>,
    },
    /// Answered once everything sent before it is written; with `extend_leases`, once every
    /// held lease is extended too. `reply` learns whether all of that reached Redis.
    Flush {
        reply: oneshot::Sender<bool>,
        extend_leases: bool,
    },
}

/// Decides how to settle a run from the handler's result.
pub(crate) fn decide<R: JobOutcome>(
    result: &Result<R, BoxDynError>,
    attempt: u32,
    policy: &RetryPolicy,
) -> SettleOp {
    match result {
        Ok(outcome) => match outcome.settlement() {
            Ok(Settlement::Complete) => SettleOp::Complete,
            Ok(Settlement::Reschedule { after_ms, payload }) => {
                SettleOp::Reschedule { after_ms, payload }
            }
            Err(e) => SettleOp::Dead {
                reason: truncate(format!("could not encode the rescheduled arguments: {e}")),
            },
        },
        Err(e) => {
            if let Some(abort) = e.downcast_ref::<AbortError>() {
                let reason = std::error::Error::source(abort)
                    .map(ToString::to_string)
                    .unwrap_or_else(|| abort.to_string());
                return SettleOp::Dead {
                    reason: truncate(reason),
                };
            }
            let explicit = e
                .downcast_ref::<RetryAfterError>()
                .map(RetryAfterError::get_duration);
            let delay = match (explicit, policy.delay_after(attempt)) {
                (_, None) => None,
                (Some(d), Some(_)) => Some(d),
                (None, Some(d)) => Some(d),
            };
            match delay {
                Some(d) => SettleOp::Retry {
                    after_ms: d.as_millis() as u64,
                    error: truncate(e.to_string()),
                },
                None => SettleOp::Dead {
                    reason: truncate(format!("failed {attempt} times; last error: {e}")),
                },
            }
        }
    }
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_ERROR_LEN {
        let mut cut = MAX_ERROR_LEN;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::Next;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_secs(2),
            multiplier: 2.0,
            max_delay: Duration::from_secs(60),
            jitter: 0.0,
        }
    }

    #[test]
    fn success_completes_or_reschedules() {
        let ok: Result<(), BoxDynError> = Ok(());
        assert_eq!(decide(&ok, 1, &policy()), SettleOp::Complete);
        let again: Result<Next<u32>, BoxDynError> = Ok(Next::Reschedule {
            after: Duration::from_millis(1500),
            args: 7,
        });
        assert_eq!(
            decide(&again, 1, &policy()),
            SettleOp::Reschedule {
                after_ms: 1500,
                payload: Some("7".into())
            }
        );
    }

    #[test]
    fn after_keeps_the_stored_arguments() {
        let again: Result<Next<u32>, BoxDynError> = Ok(Next::After(Duration::from_secs(2)));
        assert_eq!(
            decide(&again, 1, &policy()),
            SettleOp::Reschedule {
                after_ms: 2000,
                payload: None
            }
        );
    }

    #[test]
    fn errors_retry_then_die() {
        let err: Result<(), BoxDynError> = Err("boom".into());
        assert_eq!(
            decide(&err, 1, &policy()),
            SettleOp::Retry {
                after_ms: 2000,
                error: "boom".into()
            }
        );
        assert!(
            matches!(decide(&err, 3, &policy()), SettleOp::Dead { reason } if reason.contains("boom"))
        );
    }

    #[test]
    fn abort_dies_at_once_and_retry_after_is_honoured() {
        let abort: Result<(), BoxDynError> = Err(Box::new(AbortError::new("bad credentials")));
        assert_eq!(
            decide(&abort, 1, &policy()),
            SettleOp::Dead {
                reason: "bad credentials".into()
            }
        );
        let later: Result<(), BoxDynError> = Err(Box::new(RetryAfterError::new(
            "429",
            Duration::from_secs(9),
        )));
        assert!(matches!(
            decide(&later, 1, &policy()),
            SettleOp::Retry { after_ms: 9000, .. }
        ));
    }
}
