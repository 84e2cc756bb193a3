//! Reading a declared provider's answer: the status behind a JSON pointer, mapped by the file's
//! table; amounts and carried fields; and what each HTTP error status means.

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde_json::Value;

use crate::adapters::CheckError;
use crate::ids::PaymentId;
use crate::observation::Observation;
use crate::provider::Provider;
use crate::secret::Secret;
use crate::status::PaymentStatus;

/// What an unmapped status means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unknown {
    /// A permanent error naming the value: the check is dead-lettered (the default).
    Error,
    /// Pending, logged once per value (what the built-in adapters do).
    Pending,
}

/// A value carried from the answer into the notifications.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Its name.
    pub name: String,
    /// Where it is in the answer.
    pub pointer: String,
    /// Whether Telegram may show it: `true` puts it in the detail every channel shows; `false`
    /// makes it a delivered code — a secret for the buyer, sent by email and the signed webhook
    /// only, never logged.
    pub telegram: bool,
}

/// How a success body is read.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Pointers to the status string, tried in order.
    pub status: Vec<String>,
    /// Pointer to the amount asked.
    pub amount: Option<String>,
    /// Pointer to the amount paid.
    pub paid: Option<String>,
    /// Provider status → paywatch status.
    pub statuses: Vec<(String, PaymentStatus)>,
    /// Whether statuses are compared with their case.
    pub case_sensitive: bool,
    /// What an unmapped status means.
    pub unknown: Unknown,
    /// Values carried into notifications.
    pub fields: Vec<Field>,
}

/// A success body, read.
#[derive(Debug)]
pub enum Reading {
    /// A status the table maps (or an unknown one read as pending, `recognised` false).
    Observed {
        /// The observation.
        observation: Observation,
        /// Whether the table maps the status.
        recognised: bool,
    },
    /// A status the table does not map, under `unknown = "error"` (bounded, printable).
    Unmapped(String),
}

/// A scalar (or a list of them) as text; objects and nulls are not.
fn texts(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Number(n) => vec![n.to_string()],
        Value::Bool(b) => vec![b.to_string()],
        Value::Array(items) => items.iter().flat_map(texts).collect(),
        Value::Null | Value::Object(_) => Vec::new(),
    }
}

impl Answer {
    /// The paywatch status of provider status `raw`.
    pub fn map(&self, raw: &str) -> Option<PaymentStatus> {
        let raw = raw.trim();
        self.statuses
            .iter()
            .find(|(name, _)| {
                if self.case_sensitive {
                    name == raw
                } else {
                    name.eq_ignore_ascii_case(raw)
                }
            })
            .map(|(_, status)| *status)
    }

    /// Reads a success body; the error says why it is not a status document.
    pub fn read(&self, body: &[u8], now: DateTime<Utc>) -> Result<Reading, String> {
        let json: Value = serde_json::from_slice(body).map_err(|e| {
            format!(
                "{:?} error at line {} column {}",
                e.classify(),
                e.line(),
                e.column()
            )
        })?;
        let raw = self
            .status
            .iter()
            .find_map(|p| json.pointer(p).and_then(Value::as_str))
            .ok_or_else(|| format!("no string at {}", self.status.join(" or ")))?;
        let bounded = crate::adapters::bounded_raw(raw);
        let mapped = self.map(raw);
        let status = match (mapped, self.unknown) {
            (Some(status), _) => status,
            (None, Unknown::Pending) => PaymentStatus::Pending,
            (None, Unknown::Error) => return Ok(Reading::Unmapped(bounded)),
        };
        let mut detail = Vec::new();
        for (label, pointer) in [("amount", &self.amount), ("paid", &self.paid)] {
            if let Some(value) = pointer.as_deref().and_then(|p| json.pointer(p)) {
                let text = texts(value).join(",");
                if !text.is_empty() {
                    detail.push(format!("{label}={}", crate::adapters::bounded_raw(&text)));
                }
            }
        }
        let mut codes = Vec::new();
        for field in &self.fields {
            let values = json.pointer(&field.pointer).map(texts).unwrap_or_default();
            let values: Vec<String> = values.into_iter().filter(|v| !v.is_empty()).collect();
            if values.is_empty() {
                continue;
            }
            if field.telegram {
                detail.push(format!(
                    "{}={}",
                    field.name,
                    crate::adapters::bounded_raw(&values.join(","))
                ));
            } else {
                codes.extend(values);
            }
        }
        let mut observation = Observation::new(status, bounded, now).with_codes(codes);
        if !detail.is_empty() {
            observation.detail = Some(detail.join(", "));
        }
        Ok(Reading::Observed {
            observation,
            recognised: mapped.is_some(),
        })
    }
}

/// Which HTTP error statuses mean what; the rest of 4xx are rejections (permanent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpClasses {
    /// Retried with backoff (default: 408 and every 5xx).
    pub transient: Vec<u16>,
    /// Retried after `Retry-After` (default: 429; a 503 with `Retry-After` too).
    pub rate_limited: Vec<u16>,
    /// The payment is unknown (default: 404, 410); retried `not_found_retries` times.
    pub not_found: Vec<u16>,
    /// Bad credentials (default: 401, 403): dead-lettered, logged naming the provider.
    pub bad_credentials: Vec<u16>,
}

impl Default for HttpClasses {
    fn default() -> Self {
        let mut transient = vec![408];
        transient.extend(500..=599);
        Self {
            transient,
            rate_limited: vec![429],
            not_found: vec![404, 410],
            bad_credentials: vec![401, 403],
        }
    }
}

impl HttpClasses {
    /// The error an HTTP error answer means, as the built-in adapters classify them.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn classify(
        &self,
        provider: Provider,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
        payment_id: &PaymentId,
        secrets: &[&Secret],
        now: DateTime<Utc>,
    ) -> CheckError {
        use crate::adapters::http::{error_message, retry_after_header};
        let code = status.as_u16();
        if self.rate_limited.contains(&code) {
            return CheckError::RateLimited {
                retry_after: retry_after_header(headers, now),
            };
        }
        if self.bad_credentials.contains(&code) {
            return CheckError::Unauthorized(format!(
                "{provider} rejected the configured credentials (HTTP {code}); check the {provider} \
                 credentials in the worker config"
            ));
        }
        if self.not_found.contains(&code) {
            return CheckError::NotFound(format!(
                "{provider} has no payment {payment_id} (HTTP {code}): {}",
                error_message(body, secrets)
            ));
        }
        if code == 503
            && headers.contains_key(RETRY_AFTER)
            && let Some(after) = retry_after_header(headers, now)
        {
            return CheckError::RateLimited {
                retry_after: Some(after),
            };
        }
        if self.transient.contains(&code) {
            return if status.is_server_error() {
                CheckError::Transient(format!(
                    "{provider} answered HTTP {code}: {}",
                    error_message(body, secrets)
                ))
            } else {
                CheckError::Transient(format!("{provider} answered HTTP {code}"))
            };
        }
        CheckError::Rejected {
            status: code,
            message: format!("{provider}: {}", error_message(body, secrets)),
        }
    }
}
