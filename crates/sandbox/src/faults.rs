//! Injected faults: error statuses, latency, malformed bodies and dropped connections.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::SandboxError;
use crate::providers::Provider;

/// A fault to inject, as given to the admin API: `{"kind": ..., ..., "times"?: n}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    /// What goes wrong.
    #[serde(flatten)]
    pub kind: FaultKind,
    /// How many requests it affects; `None` means every request until cleared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u32>,
}

/// The kinds of fault the sandbox can inject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum FaultKind {
    /// Answer with this HTTP status in the provider's error shape (429s carry `Retry-After`).
    Status {
        /// The HTTP status code, 400 to 599.
        code: u16,
        /// Seconds for the `Retry-After` header; 429s default to 1 when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_s: Option<u64>,
    },
    /// Delay the response, then carry on with the remaining faults and normal handling.
    Latency {
        /// The delay in milliseconds (not scaled by `time_scale`).
        ms: u64,
    },
    /// Answer 200 with a truncated JSON body.
    Malformed,
    /// Close the connection without sending any response.
    Drop,
}

impl Fault {
    /// An error status on every request.
    pub fn status(code: u16) -> Self {
        Self::forever(FaultKind::Status {
            code,
            retry_after_s: None,
        })
    }

    /// A 429 carrying `Retry-After: retry_after_s` on every request.
    pub fn rate_limited(retry_after_s: u64) -> Self {
        Self::forever(FaultKind::Status {
            code: 429,
            retry_after_s: Some(retry_after_s),
        })
    }

    /// A delay of `ms` milliseconds on every request.
    pub fn latency(ms: u64) -> Self {
        Self::forever(FaultKind::Latency { ms })
    }

    /// A truncated JSON body on every request.
    pub fn malformed() -> Self {
        Self::forever(FaultKind::Malformed)
    }

    /// A dropped connection on every request.
    pub fn drop_connection() -> Self {
        Self::forever(FaultKind::Drop)
    }

    /// The same fault, limited to the next `n` requests.
    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }

    fn forever(kind: FaultKind) -> Self {
        Self { kind, times: None }
    }

    /// Rejects status codes that are not errors, which would make a "fault" look like success.
    pub(crate) fn validate(&self) -> Result<(), SandboxError> {
        if let FaultKind::Status { code, .. } = self.kind
            && !(400..=599).contains(&code)
        {
            return Err(SandboxError::InvalidRequest(format!(
                "fault status code must be between 400 and 599, got {code}"
            )));
        }
        Ok(())
    }
}

/// Where a fault applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultScope {
    /// Status requests for one payment.
    Payment {
        /// The payment's provider.
        provider: Provider,
        /// The payment's id.
        id: String,
    },
    /// Every status request to one provider, known id or not, before authentication.
    Provider(Provider),
    /// Every `sendMessage` call to the fake Telegram bot (after the token check).
    Telegram,
}

#[derive(Debug, Clone)]
struct Armed {
    kind: FaultKind,
    remaining: Option<u32>,
}

/// The faults armed on one scope, consumed in order.
#[derive(Debug, Clone, Default)]
pub(crate) struct FaultList {
    armed: Vec<Armed>,
}

/// A fault that decides a request's response instead of normal handling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Terminal {
    Status {
        code: u16,
        retry_after_s: Option<u64>,
    },
    Malformed,
    Drop,
}

/// What the faults of one scope do to one request.
#[derive(Debug, Default)]
pub(crate) struct FaultOutcome {
    /// Total latency to add before answering.
    pub(crate) delay: Duration,
    /// The fault that decides the response instead of normal handling, if any.
    pub(crate) terminal: Option<Terminal>,
}

impl FaultList {
    pub(crate) fn add(&mut self, faults: impl IntoIterator<Item = Fault>) {
        self.armed.extend(faults.into_iter().map(|f| Armed {
            kind: f.kind,
            remaining: f.times,
        }));
        self.armed.retain(|a| a.remaining != Some(0));
    }

    pub(crate) fn clear(&mut self) {
        self.armed.clear();
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.armed.len()
    }

    /// Consumes the faults one request triggers.
    ///
    /// Latency faults stack and let the request continue, so a slow provider can still fail in
    /// other ways; the first non-latency fault decides the response and ends the scan, so
    /// `[500 x2, 429 x1]` answers 500, 500, 429, then normally.
    pub(crate) fn take(&mut self) -> FaultOutcome {
        let mut outcome = FaultOutcome::default();
        for armed in &mut self.armed {
            if let Some(n) = armed.remaining.as_mut() {
                *n = n.saturating_sub(1);
            }
            let terminal = match armed.kind {
                FaultKind::Latency { ms } => {
                    outcome.delay = outcome.delay.saturating_add(Duration::from_millis(ms));
                    continue;
                }
                FaultKind::Status {
                    code,
                    retry_after_s,
                } => Terminal::Status {
                    code,
                    retry_after_s,
                },
                FaultKind::Malformed => Terminal::Malformed,
                FaultKind::Drop => Terminal::Drop,
            };
            outcome.terminal = Some(terminal);
            break;
        }
        self.armed.retain(|a| a.remaining != Some(0));
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_deserialize_from_admin_json() {
        let f: Fault =
            serde_json::from_str(r#"{"kind":"status","code":429,"retry_after_s":3,"times":2}"#)
                .expect("valid fault");
        assert_eq!(f, Fault::rate_limited(3).times(2));
        let f: Fault = serde_json::from_str(r#"{"kind":"drop"}"#).expect("valid fault");
        assert_eq!(f, Fault::drop_connection());
        let f: Fault =
            serde_json::from_str(r#"{"kind":"latency","ms":5,"times":1}"#).expect("valid");
        assert_eq!(f, Fault::latency(5).times(1));
        assert!(serde_json::from_str::<Fault>(r#"{"kind":"explode"}"#).is_err());
    }

    #[test]
    fn terminal_faults_are_consumed_in_order() {
        let mut list = FaultList::default();
        list.add([Fault::status(500).times(2), Fault::status(429).times(1)]);
        let codes: Vec<_> = (0..4)
            .map(|_| match list.take().terminal {
                Some(Terminal::Status { code, .. }) => code,
                _ => 200,
            })
            .collect();
        assert_eq!(codes, vec![500, 500, 429, 200]);
        assert_eq!(list.len(), 0);
    }

    #[test]
    fn latency_stacks_with_a_terminal_fault() {
        let mut list = FaultList::default();
        list.add([Fault::latency(10).times(1), Fault::malformed().times(1)]);
        let first = list.take();
        assert_eq!(first.delay, Duration::from_millis(10));
        assert_eq!(first.terminal, Some(Terminal::Malformed));
        let second = list.take();
        assert_eq!(second.delay, Duration::ZERO);
        assert!(second.terminal.is_none());
    }

    #[test]
    fn unlimited_faults_stay() {
        let mut list = FaultList::default();
        list.add([Fault::status(503)]);
        for _ in 0..10 {
            assert!(list.take().terminal.is_some());
        }
    }

    #[test]
    fn zero_times_is_a_no_op() {
        let mut list = FaultList::default();
        list.add([Fault::status(503).times(0)]);
        assert!(list.take().terminal.is_none());
    }

    #[test]
    fn non_error_codes_are_rejected() {
        assert!(Fault::status(200).validate().is_err());
        assert!(Fault::status(503).validate().is_ok());
    }
}
