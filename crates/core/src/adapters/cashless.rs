//! Cashless bills: `GET {base}/api/v3/bills/{id}` with `Authorization: ApiKey KEY:SECRET`.

use chrono::{DateTime, Utc};
use reqwest::header::{AUTHORIZATION, HeaderMap};
use serde::Deserialize;

use super::{BodyError, ClientBuildError, Parsed, bounded_raw, nonempty, sensitive_header};
use crate::observation::Observation;
use crate::provider::Provider;
use crate::secret::Secret;
use crate::status::PaymentStatus;

/// Path segments between the base URL and the bill id.
pub(crate) const PATH: &[&str] = &["api", "v3", "bills"];

/// Base URL and credentials for Cashless.
#[derive(Debug, Clone, Deserialize)]
pub struct CashlessConfig {
    /// API root, e.g. `https://api.cashless.example`; `/api/v3/bills/{id}` is appended.
    pub base_url: url::Url,
    /// The `KEY` half of `ApiKey KEY:SECRET`.
    pub api_key: Secret,
    /// The `SECRET` half of `ApiKey KEY:SECRET`.
    pub api_secret: Secret,
}

pub(crate) fn auth_headers(config: &CashlessConfig) -> Result<HeaderMap, ClientBuildError> {
    let key = nonempty(Provider::Cashless, "api_key", &config.api_key)?;
    let secret = nonempty(Provider::Cashless, "api_secret", &config.api_secret)?;
    let mut headers = HeaderMap::new();
    headers.insert(
        AUTHORIZATION,
        sensitive_header(
            Provider::Cashless,
            "api_key/api_secret",
            &format!("ApiKey {key}:{secret}"),
        )?,
    );
    Ok(headers)
}

/// Maps a Cashless bill status; `None` for statuses paywatch does not know.
pub fn map_status(raw: &str) -> Option<PaymentStatus> {
    let known = [
        ("NOT_PAID", PaymentStatus::Pending),
        ("PARTIALLY_PAID", PaymentStatus::PartiallyPaid),
        ("FULLY_PAID", PaymentStatus::Paid),
    ];
    known
        .into_iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(raw.trim()))
        .map(|(_, status)| status)
}

#[derive(Deserialize)]
struct Bill {
    status: BillStatus,
}

/// The API sends a string; Cashless's own polling guide reads `status.name`, so both are taken.
#[derive(Deserialize)]
#[serde(untagged)]
enum BillStatus {
    Plain(String),
    Named { name: String },
}

pub(crate) fn parse(body: &[u8], now: DateTime<Utc>) -> Result<Parsed, BodyError> {
    let bill: Bill = serde_json::from_slice(body).map_err(BodyError::json)?;
    let raw = match bill.status {
        BillStatus::Plain(raw) | BillStatus::Named { name: raw } => raw,
    };
    let mapped = map_status(&raw);
    Ok(Parsed {
        observation: Observation::new(
            mapped.unwrap_or(PaymentStatus::Pending),
            bounded_raw(&raw),
            now,
        ),
        recognised: mapped.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_of(body: &str) -> (PaymentStatus, String, bool) {
        let parsed = parse(body.as_bytes(), Utc::now()).unwrap();
        (
            parsed.observation.status,
            parsed.observation.raw_status,
            parsed.recognised,
        )
    }

    #[test]
    fn maps_every_documented_status() {
        for (raw, expected) in [
            ("NOT_PAID", PaymentStatus::Pending),
            ("PARTIALLY_PAID", PaymentStatus::PartiallyPaid),
            ("FULLY_PAID", PaymentStatus::Paid),
        ] {
            let body = format!(
                r#"{{"id":"b1","mobile":"+99890","amount":1000,"status":"{raw}","reference":"r","webPayUrl":"https://pay","date":"2025-01-01"}}"#
            );
            assert_eq!(status_of(&body), (expected, raw.to_owned(), true));
        }
    }

    #[test]
    fn accepts_the_object_form() {
        assert_eq!(
            status_of(r#"{"id":"b1","status":{"name":"FULLY_PAID","value":2}}"#),
            (PaymentStatus::Paid, "FULLY_PAID".to_owned(), true)
        );
        assert_eq!(
            status_of(r#"{"status":{"name":"PARTIALLY_PAID"}}"#).0,
            PaymentStatus::PartiallyPaid
        );
    }

    #[test]
    fn unknown_status_is_pending_and_kept() {
        assert_eq!(
            status_of(r#"{"status":"REFUNDED"}"#),
            (PaymentStatus::Pending, "REFUNDED".to_owned(), false)
        );
    }

    #[test]
    fn bodies_without_a_status_are_malformed() {
        for body in [
            r#"{"error": "Bill with id b1 not found"}"#,
            r#"{"status": 3}"#,
            r#"{"status": {"value": 3}}"#,
            "<html>",
            "",
        ] {
            assert!(parse(body.as_bytes(), Utc::now()).is_err(), "{body}");
        }
    }

    #[test]
    fn auth_header_is_apikey_and_sensitive() {
        let config = CashlessConfig {
            base_url: "http://localhost".parse().unwrap(),
            api_key: "KEY".into(),
            api_secret: "SECRET".into(),
        };
        let headers = auth_headers(&config).unwrap();
        let value = &headers[AUTHORIZATION];
        assert_eq!(value.to_str().unwrap(), "ApiKey KEY:SECRET");
        assert!(value.is_sensitive());
        assert!(!format!("{headers:?}").contains("SECRET"));
    }
}
