//! FoxReload orders: `GET {base}/api/orders/{id}` with `X-API-Key`.
//!
//! FoxReload has no webhooks; polling is the only way to learn the outcome and to receive the
//! delivered codes (`items[].externalData[]` once `completed`).

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderName};
use serde::Deserialize;
use serde_json::Value;

use super::{BodyError, ClientBuildError, Parsed, bounded_raw, nonempty, sensitive_header};
use crate::observation::Observation;
use crate::provider::Provider;
use crate::secret::Secret;
use crate::status::PaymentStatus;

/// Path segments between the base URL and the order id.
pub(crate) const PATH: &[&str] = &["api", "orders"];

/// Base URL and credentials for FoxReload.
#[derive(Debug, Clone, Deserialize)]
pub struct FoxReloadConfig {
    /// API root, e.g. `https://public-api.foxreload.com`; `/api/orders/{id}` is appended.
    pub base_url: url::Url,
    /// Sent as `X-API-Key`.
    pub api_key: Secret,
}

pub(crate) fn auth_headers(config: &FoxReloadConfig) -> Result<HeaderMap, ClientBuildError> {
    let key = nonempty(Provider::FoxReload, "api_key", &config.api_key)?;
    let mut headers = HeaderMap::new();
    headers.insert(
        HeaderName::from_static("x-api-key"),
        sensitive_header(Provider::FoxReload, "api_key", key)?,
    );
    Ok(headers)
}

/// The `cancelReason` FoxReload uses when the payment window ran out.
const PAYMENT_EXPIRATION: &str = "payment_expiration";

/// Maps a FoxReload order status (and cancel reason); `None` for statuses paywatch does not
/// know.
pub fn map_status(raw: &str, cancel_reason: Option<&str>) -> Option<PaymentStatus> {
    let status = match raw.trim().to_ascii_lowercase().as_str() {
        "active" => PaymentStatus::Pending,
        // Paid means FoxReload has the money but has not delivered yet.
        "paid" | "processing" => PaymentStatus::Processing,
        "completed" => PaymentStatus::Paid,
        "cancelled" | "canceled" => {
            if cancel_reason.is_some_and(|r| r.trim().eq_ignore_ascii_case(PAYMENT_EXPIRATION)) {
                PaymentStatus::Expired
            } else {
                PaymentStatus::Cancelled
            }
        }
        "failed" => PaymentStatus::Failed,
        _ => return None,
    };
    Some(status)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Order {
    status: String,
    #[serde(default)]
    items: Option<Vec<Item>>,
    #[serde(default)]
    cancel_reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Item {
    #[serde(default)]
    external_data: Option<Vec<Value>>,
    #[serde(default)]
    error: Option<Value>,
}

/// Codes are usually strings; anything else is kept as its JSON text rather than dropped.
fn value_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

pub(crate) fn parse(body: &[u8], now: DateTime<Utc>) -> Result<Parsed, BodyError> {
    let order: Order = serde_json::from_slice(body).map_err(BodyError::json)?;
    let cancel_reason = order.cancel_reason.as_deref().filter(|r| !r.is_empty());
    let mapped = map_status(&order.status, cancel_reason);
    let items = order.items.unwrap_or_default();

    let errors: Vec<String> = items
        .iter()
        .filter_map(|item| item.error.as_ref())
        .filter(|error| !error.is_null())
        .map(|error| bounded_raw(&value_text(error)))
        .filter(|error| !error.is_empty())
        .collect();
    let mut detail = Vec::new();
    if let Some(reason) = cancel_reason {
        detail.push(format!("cancelReason={}", bounded_raw(reason)));
    }
    if !errors.is_empty() {
        detail.push(format!("errors={}", errors.join("; ")));
    }

    let mut observation = Observation::new(
        mapped.unwrap_or(PaymentStatus::Pending),
        bounded_raw(&order.status),
        now,
    );
    if !detail.is_empty() {
        observation.detail = Some(detail.join(", "));
    }
    if mapped == Some(PaymentStatus::Paid) {
        observation.delivered_codes = items
            .iter()
            .flat_map(|item| item.external_data.iter().flatten())
            .filter(|code| !code.is_null())
            .map(value_text)
            .collect();
    }
    Ok(Parsed {
        observation,
        recognised: mapped.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(body: &str) -> Parsed {
        parse(body.as_bytes(), Utc::now()).unwrap()
    }

    #[test]
    fn maps_every_documented_status() {
        for (raw, expected) in [
            ("active", PaymentStatus::Pending),
            ("paid", PaymentStatus::Processing),
            ("processing", PaymentStatus::Processing),
            ("completed", PaymentStatus::Paid),
            ("cancelled", PaymentStatus::Cancelled),
            ("failed", PaymentStatus::Failed),
        ] {
            let parsed = parse_str(&format!(r#"{{"id":"o1","status":"{raw}","items":[]}}"#));
            assert_eq!(parsed.observation.status, expected, "{raw}");
            assert_eq!(parsed.observation.raw_status, raw);
            assert!(parsed.recognised);
        }
    }

    #[test]
    fn completed_collects_codes_from_every_item() {
        let parsed = parse_str(
            r#"{"id":"o1","status":"completed","items":[
                {"externalData":["AAAA-1111","BBBB-2222"],"error":null},
                {"externalData":null},
                {"externalData":[{"pin":"9999"}]}
            ],"cancelReason":null}"#,
        );
        assert_eq!(parsed.observation.status, PaymentStatus::Paid);
        assert_eq!(
            parsed.observation.delivered_codes,
            ["AAAA-1111", "BBBB-2222", r#"{"pin":"9999"}"#]
        );
        assert_eq!(parsed.observation.detail, None);
        assert!(!format!("{:?}", parsed.observation).contains("AAAA"));
    }

    #[test]
    fn codes_are_only_taken_when_completed() {
        let parsed = parse_str(r#"{"status":"processing","items":[{"externalData":["EARLY"]}]}"#);
        assert!(parsed.observation.delivered_codes.is_empty());
    }

    #[test]
    fn cancel_reason_decides_expired_or_cancelled() {
        let parsed =
            parse_str(r#"{"status":"cancelled","cancelReason":"payment_expiration","items":[]}"#);
        assert_eq!(parsed.observation.status, PaymentStatus::Expired);
        assert_eq!(
            parsed.observation.detail.as_deref(),
            Some("cancelReason=payment_expiration")
        );
        let parsed = parse_str(r#"{"status":"cancelled","cancelReason":"by_user"}"#);
        assert_eq!(parsed.observation.status, PaymentStatus::Cancelled);
        let parsed = parse_str(r#"{"status":"cancelled"}"#);
        assert_eq!(parsed.observation.status, PaymentStatus::Cancelled);
    }

    #[test]
    fn failed_reports_item_errors() {
        let parsed = parse_str(
            r#"{"status":"failed","items":[{"error":"OutOfStock"},{"error":null},{"error":{"code":"BalanceNotEnough"}}]}"#,
        );
        assert_eq!(parsed.observation.status, PaymentStatus::Failed);
        assert_eq!(
            parsed.observation.detail.as_deref(),
            Some(r#"errors=OutOfStock; {"code":"BalanceNotEnough"}"#)
        );
    }

    #[test]
    fn unknown_status_is_pending_and_flagged() {
        let parsed = parse_str(r#"{"status":"refunding","items":[]}"#);
        assert_eq!(parsed.observation.status, PaymentStatus::Pending);
        assert_eq!(parsed.observation.raw_status, "refunding");
        assert!(!parsed.recognised);
    }

    #[test]
    fn missing_status_is_malformed() {
        assert!(parse(br#"{"id":"o1","items":[]}"#, Utc::now()).is_err());
        assert!(parse(br#"{"status":"completed","items":"nope"}"#, Utc::now()).is_err());
    }
}
