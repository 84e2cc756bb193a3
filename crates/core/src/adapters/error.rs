//! Why a status check produced no observation, classified by how the worker should react.

use std::time::Duration;

use crate::provider::Provider;

/// A failed status check. Each variant is a class the poll policy treats differently.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// HTTP 429 (or 503 with `Retry-After`): wait at least `retry_after`, then try again.
    #[error("rate limited by the provider{}", match retry_after {
        Some(after) => format!(" (retry after {after:?})"),
        None => String::new(),
    })]
    RateLimited {
        /// The provider's `Retry-After`, if it sent a usable one.
        retry_after: Option<Duration>,
    },
    /// 5xx, timeout or connection failure: says nothing about the payment; retry with backoff.
    #[error("transient failure: {0}")]
    Transient(String),
    /// 404: the provider does not know the payment (yet); retried a few times, then given up.
    #[error("payment not found: {0}")]
    NotFound(String),
    /// 401/403: the configured credentials were rejected. Never contains the credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// A success response whose body could not be understood. `snippet` is redacted.
    #[error("provider response could not be parsed; body starts with: {snippet}")]
    Malformed {
        /// The first ~120 bytes of the body, with secret-looking parts replaced.
        snippet: String,
    },
    /// Any other HTTP status (400, 3xx, ...): the provider refuses this request as made.
    #[error("provider rejected the request with HTTP {status}: {message}")]
    Rejected {
        /// The HTTP status code.
        status: u16,
        /// What the provider said, redacted and truncated.
        message: String,
    },
    /// This worker has no configuration (base URL, credentials) for the provider.
    /// A declared provider answered a status its definition does not map (under
    /// `unknown = "error"`): permanent, so the check is dead-lettered naming the value.
    #[error(
        "{provider} answered status {raw:?}, which its definition does not map (add it to [answer.statuses])"
    )]
    UnknownStatus {
        /// Which provider.
        provider: Provider,
        /// The status, bounded and printable.
        raw: String,
    },
    #[error("provider {0} is not configured")]
    NotConfigured(Provider),
}

impl CheckError {
    /// Whether retrying the same check cannot help (credentials, protocol or config problems).
    ///
    /// `NotFound` is not permanent by itself: providers can lag behind the payment's creation,
    /// so the poll policy retries it a bounded number of times.
    pub fn is_permanent(&self) -> bool {
        match self {
            CheckError::RateLimited { .. } | CheckError::Transient(_) | CheckError::NotFound(_) => {
                false
            }
            CheckError::Unauthorized(_)
            | CheckError::Malformed { .. }
            | CheckError::Rejected { .. }
            | CheckError::UnknownStatus { .. }
            | CheckError::NotConfigured(_) => true,
        }
    }

    /// The provider's requested wait, for [`CheckError::RateLimited`].
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            CheckError::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }

    /// A short stable label for metrics and logs (`"rate_limited"`, `"transient"`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            CheckError::RateLimited { .. } => "rate_limited",
            CheckError::Transient(_) => "transient",
            CheckError::NotFound(_) => "not_found",
            CheckError::Unauthorized(_) => "unauthorized",
            CheckError::Malformed { .. } => "malformed",
            CheckError::Rejected { .. } => "rejected",
            CheckError::UnknownStatus { .. } => "unknown_status",
            CheckError::NotConfigured(_) => "not_configured",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let cases = [
            (CheckError::RateLimited { retry_after: None }, false),
            (CheckError::Transient("503".into()), false),
            (CheckError::NotFound("x".into()), false),
            (CheckError::Unauthorized("x".into()), true),
            (
                CheckError::Malformed {
                    snippet: "x".into(),
                },
                true,
            ),
            (
                CheckError::Rejected {
                    status: 400,
                    message: "x".into(),
                },
                true,
            ),
            (CheckError::NotConfigured(Provider::Cashless), true),
        ];
        for (error, permanent) in cases {
            assert_eq!(error.is_permanent(), permanent, "{error:?}");
        }
    }

    #[test]
    fn rate_limited_display_mentions_the_wait() {
        let error = CheckError::RateLimited {
            retry_after: Some(Duration::from_secs(2)),
        };
        assert_eq!(
            error.to_string(),
            "rate limited by the provider (retry after 2s)"
        );
        assert_eq!(error.retry_after(), Some(Duration::from_secs(2)));
        assert_eq!(
            CheckError::RateLimited { retry_after: None }.to_string(),
            "rate limited by the provider"
        );
    }
}
