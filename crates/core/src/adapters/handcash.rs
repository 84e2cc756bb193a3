//! HandCash payment requests: `GET {base}/v3/paymentRequests/public/{id}`, sent with the app's
//! `App-Id` and `App-Secret` headers (HandCash's credentials for its API; a wrong pair is
//! reported as rejected credentials).
//!
//! HandCash does not publish its status values, so payment is inferred from evidence (a
//! `transactionId`, or `paymentsCount > 0`) and expiry from `expiresAt`, not from the string.

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderName};
use serde::Deserialize;
use serde_json::Value;

use super::{BodyError, ClientBuildError, Parsed, bounded_raw, nonempty, sensitive_header};
use crate::observation::Observation;
use crate::provider::Provider;
use crate::secret::Secret;
use crate::status::PaymentStatus;

/// Path segments between the base URL and the payment request id.
pub(crate) const PATH: &[&str] = &["v3", "paymentRequests", "public"];

/// Base URL and credentials for HandCash.
#[derive(Debug, Clone, Deserialize)]
pub struct HandCashConfig {
    /// API root, e.g. `https://cloud.handcash.io`; `/v3/paymentRequests/public/{id}` is appended.
    pub base_url: url::Url,
    /// Sent as `App-Id`.
    pub app_id: Secret,
    /// Sent as `App-Secret`.
    pub app_secret: Secret,
}

pub(crate) fn auth_headers(config: &HandCashConfig) -> Result<HeaderMap, ClientBuildError> {
    let app_id = nonempty(Provider::HandCash, "app_id", &config.app_id)?;
    let app_secret = nonempty(Provider::HandCash, "app_secret", &config.app_secret)?;
    let mut headers = HeaderMap::new();
    headers.insert(
        HeaderName::from_static("app-id"),
        sensitive_header(Provider::HandCash, "app_id", app_id)?,
    );
    headers.insert(
        HeaderName::from_static("app-secret"),
        sensitive_header(Provider::HandCash, "app_secret", app_secret)?,
    );
    Ok(headers)
}

/// Status strings that plainly mean "still waiting"; anything else unexplained is logged.
const WAITING: &[&str] = &["pending", "active", "open", "created", "new", "unpaid"];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PaymentRequest {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    transaction_id: Option<String>,
    #[serde(default)]
    payments_count: Option<Value>,
    #[serde(default)]
    expires_at: Option<Value>,
}

/// `expiresAt` as RFC 3339 text, or epoch seconds/milliseconds; `None` if unreadable.
fn parse_instant(value: &Value) -> Option<DateTime<Utc>> {
    match value {
        Value::String(text) => DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|dt| dt.with_timezone(&Utc)),
        Value::Number(number) => {
            let n = number.as_i64()?;
            // Seconds since 1970 stay below 1e11 for millennia; larger values are milliseconds.
            if n.abs() < 100_000_000_000 {
                DateTime::from_timestamp(n, 0)
            } else {
                DateTime::from_timestamp_millis(n)
            }
        }
        _ => None,
    }
}

fn payments_count(value: Option<&Value>) -> u64 {
    match value {
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| n.as_f64().map(|f| if f > 0.0 { 1 } else { 0 }))
            .unwrap_or(0),
        Some(Value::String(s)) => s.trim().parse().unwrap_or(0),
        _ => 0,
    }
}

pub(crate) fn parse(body: &[u8], now: DateTime<Utc>) -> Result<Parsed, BodyError> {
    let request: PaymentRequest = serde_json::from_slice(body).map_err(BodyError::json)?;
    if request.id.is_none() && request.status.is_none() {
        return Err(BodyError::new("neither id nor status present"));
    }
    let raw = request.status.clone().unwrap_or_default();
    let transaction_id = request
        .transaction_id
        .as_deref()
        .map(str::trim)
        .filter(|tx| !tx.is_empty());
    let payments = payments_count(request.payments_count.as_ref());
    let expires_at = request.expires_at.as_ref().and_then(parse_instant);
    let lowered = raw.trim().to_ascii_lowercase();

    let (status, recognised, detail) = if transaction_id.is_some() || payments > 0 {
        let detail = match transaction_id {
            Some(tx) => format!("transactionId={}", bounded_raw(tx)),
            None => format!("paymentsCount={payments}"),
        };
        (PaymentStatus::Paid, true, Some(detail))
    } else if lowered == "expired" {
        (PaymentStatus::Expired, true, None)
    } else if expires_at.is_some_and(|at| at <= now) {
        let detail = expires_at.map(|at| format!("expiresAt={}", at.to_rfc3339()));
        (PaymentStatus::Expired, true, detail)
    } else {
        (
            PaymentStatus::Pending,
            WAITING.contains(&lowered.as_str()),
            None,
        )
    };
    let mut observation = Observation::new(status, bounded_raw(&raw), now);
    observation.detail = detail;
    Ok(Parsed {
        observation,
        recognised,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2025-01-28T14:30:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn parse_str(body: &str) -> Parsed {
        parse(body.as_bytes(), now()).unwrap()
    }

    #[test]
    fn transaction_id_means_paid() {
        let parsed = parse_str(
            r#"{"id":"9ac9182acae19902","status":"active","transactionId":"cc066a86e4","expiresAt":"2025-01-28T15:00:00Z"}"#,
        );
        assert_eq!(parsed.observation.status, PaymentStatus::Paid);
        assert_eq!(parsed.observation.raw_status, "active");
        assert_eq!(
            parsed.observation.detail.as_deref(),
            Some("transactionId=cc066a86e4")
        );
        assert!(parsed.recognised);
    }

    #[test]
    fn payments_count_means_paid_even_after_expiry() {
        let parsed = parse_str(
            r#"{"id":"x","status":"active","paymentsCount":1,"expiresAt":"2025-01-01T00:00:00Z"}"#,
        );
        assert_eq!(parsed.observation.status, PaymentStatus::Paid);
    }

    #[test]
    fn empty_evidence_is_not_payment() {
        let parsed = parse_str(
            r#"{"id":"x","status":"active","transactionId":"","paymentsCount":0,"expiresAt":"2025-01-28T15:00:00Z"}"#,
        );
        assert_eq!(parsed.observation.status, PaymentStatus::Pending);
        assert!(parsed.recognised);
        let parsed = parse_str(r#"{"id":"x","status":"active","transactionId":null}"#);
        assert_eq!(parsed.observation.status, PaymentStatus::Pending);
    }

    #[test]
    fn past_expiry_unpaid_means_expired() {
        let parsed =
            parse_str(r#"{"id":"x","status":"active","expiresAt":"2025-01-28T14:29:59Z"}"#);
        assert_eq!(parsed.observation.status, PaymentStatus::Expired);
        // Epoch seconds and milliseconds too.
        let secs = now().timestamp() - 1;
        let parsed = parse_str(&format!(
            r#"{{"id":"x","status":"active","expiresAt":{secs}}}"#
        ));
        assert_eq!(parsed.observation.status, PaymentStatus::Expired);
        let millis = (now().timestamp() + 60) * 1000;
        let parsed = parse_str(&format!(
            r#"{{"id":"x","status":"active","expiresAt":{millis}}}"#
        ));
        assert_eq!(parsed.observation.status, PaymentStatus::Pending);
    }

    #[test]
    fn expired_status_string_means_expired() {
        let parsed = parse_str(r#"{"id":"x","status":"EXPIRED"}"#);
        assert_eq!(parsed.observation.status, PaymentStatus::Expired);
        assert!(parsed.recognised);
    }

    #[test]
    fn unknown_status_is_pending_and_flagged() {
        let parsed =
            parse_str(r#"{"id":"x","status":"fizzing","expiresAt":"2030-01-01T00:00:00Z"}"#);
        assert_eq!(parsed.observation.status, PaymentStatus::Pending);
        assert_eq!(parsed.observation.raw_status, "fizzing");
        assert!(!parsed.recognised);
        // A "paid" string without evidence is suspicious, not payment.
        let parsed = parse_str(r#"{"id":"x","status":"paid"}"#);
        assert_eq!(parsed.observation.status, PaymentStatus::Pending);
        assert!(!parsed.recognised);
    }

    #[test]
    fn unreadable_expiry_is_ignored() {
        let parsed = parse_str(r#"{"id":"x","status":"active","expiresAt":"tomorrow-ish"}"#);
        assert_eq!(parsed.observation.status, PaymentStatus::Pending);
    }

    #[test]
    fn unrelated_json_is_malformed() {
        assert!(parse(br#"{"foo": 1}"#, now()).is_err());
        assert!(parse(b"[]", now()).is_err());
        assert!(parse(br#"{"id":"x","status":7}"#, now()).is_err());
    }

    #[test]
    fn auth_headers_are_sensitive() {
        let config = HandCashConfig {
            base_url: "http://localhost".parse().unwrap(),
            app_id: "APP".into(),
            app_secret: "SHH".into(),
        };
        let headers = auth_headers(&config).unwrap();
        assert_eq!(headers["app-id"].to_str().unwrap(), "APP");
        assert_eq!(headers["app-secret"].to_str().unwrap(), "SHH");
        assert!(headers["app-secret"].is_sensitive());
        assert!(!format!("{headers:?}").contains("SHH"));
    }
}
