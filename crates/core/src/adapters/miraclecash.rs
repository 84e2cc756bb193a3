//! MiracleCash payment prompts: `GET {base}/external/payments/prompt/{id}` with
//! `Authorization: Basic base64(clientId:apiKey)`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use reqwest::header::{AUTHORIZATION, HeaderMap};
use serde::Deserialize;

use super::{BodyError, ClientBuildError, Parsed, bounded_raw, nonempty, sensitive_header};
use crate::observation::Observation;
use crate::provider::Provider;
use crate::secret::Secret;
use crate::status::PaymentStatus;

/// Path segments between the base URL and the prompt id.
pub(crate) const PATH: &[&str] = &["external", "payments", "prompt"];

/// Base URL and credentials for MiracleCash.
#[derive(Debug, Clone, Deserialize)]
pub struct MiracleCashConfig {
    /// API root, e.g. `https://api.miraclecash.info`; `/external/payments/prompt/{id}` is appended.
    pub base_url: url::Url,
    /// The user half of the Basic credentials.
    pub client_id: Secret,
    /// The password half of the Basic credentials.
    pub api_key: Secret,
}

pub(crate) fn auth_headers(config: &MiracleCashConfig) -> Result<HeaderMap, ClientBuildError> {
    let client_id = nonempty(Provider::MiracleCash, "client_id", &config.client_id)?;
    let api_key = nonempty(Provider::MiracleCash, "api_key", &config.api_key)?;
    let encoded = STANDARD.encode(format!("{client_id}:{api_key}"));
    let mut headers = HeaderMap::new();
    headers.insert(
        AUTHORIZATION,
        sensitive_header(
            Provider::MiracleCash,
            "client_id/api_key",
            &format!("Basic {encoded}"),
        )?,
    );
    Ok(headers)
}

/// Maps a MiracleCash prompt status; `None` for statuses paywatch does not know.
pub fn map_status(raw: &str) -> Option<PaymentStatus> {
    let status = match raw.trim().to_ascii_lowercase().as_str() {
        "pending" => PaymentStatus::Pending,
        "successful" => PaymentStatus::Paid,
        "unsuccessful" => PaymentStatus::Failed,
        "expired" => PaymentStatus::Expired,
        "cancelled" | "canceled" => PaymentStatus::Cancelled,
        _ => return None,
    };
    Some(status)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Prompt {
    status: String,
    #[serde(default)]
    blockchain_id: Option<String>,
}

pub(crate) fn parse(body: &[u8], now: DateTime<Utc>) -> Result<Parsed, BodyError> {
    let prompt: Prompt = serde_json::from_slice(body).map_err(BodyError::json)?;
    let mapped = map_status(&prompt.status);
    let mut observation = Observation::new(
        mapped.unwrap_or(PaymentStatus::Pending),
        bounded_raw(&prompt.status),
        now,
    );
    observation.detail = prompt
        .blockchain_id
        .filter(|chain| !chain.is_empty())
        .map(|chain| format!("blockchainId={}", bounded_raw(&chain)));
    Ok(Parsed {
        observation,
        recognised: mapped.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_every_documented_status() {
        for (raw, expected) in [
            ("pending", PaymentStatus::Pending),
            ("successful", PaymentStatus::Paid),
            ("unsuccessful", PaymentStatus::Failed),
            ("expired", PaymentStatus::Expired),
            ("cancelled", PaymentStatus::Cancelled),
        ] {
            let body = format!(
                r#"{{"id":"550e8400-e29b-41d4-a716-446655440000","blockchainId":"eth","status":"{raw}","createdAt":"2025-01-28T14:30:00.000Z"}}"#
            );
            let parsed = parse(body.as_bytes(), Utc::now()).unwrap();
            assert_eq!(parsed.observation.status, expected, "{raw}");
            assert_eq!(parsed.observation.raw_status, raw);
            assert_eq!(
                parsed.observation.detail.as_deref(),
                Some("blockchainId=eth")
            );
            assert!(parsed.recognised);
        }
    }

    #[test]
    fn null_blockchain_is_fine() {
        let parsed = parse(
            br#"{"id":"x","blockchainId":null,"status":"pending"}"#,
            Utc::now(),
        )
        .unwrap();
        assert_eq!(parsed.observation.detail, None);
    }

    #[test]
    fn unknown_status_is_pending_and_flagged() {
        let parsed = parse(br#"{"id":"x","status":"confirming"}"#, Utc::now()).unwrap();
        assert_eq!(parsed.observation.status, PaymentStatus::Pending);
        assert_eq!(parsed.observation.raw_status, "confirming");
        assert!(!parsed.recognised);
    }

    #[test]
    fn missing_status_is_malformed() {
        assert!(parse(br#"{"id":"x"}"#, Utc::now()).is_err());
        assert!(parse(b"not json", Utc::now()).is_err());
    }

    #[test]
    fn auth_header_is_basic() {
        let config = MiracleCashConfig {
            base_url: "http://localhost".parse().unwrap(),
            client_id: "your_client_id".into(),
            api_key: "your_api_key".into(),
        };
        let headers = auth_headers(&config).unwrap();
        assert_eq!(
            headers[AUTHORIZATION].to_str().unwrap(),
            format!("Basic {}", STANDARD.encode("your_client_id:your_api_key"))
        );
        assert!(headers[AUTHORIZATION].is_sensitive());
    }
}
