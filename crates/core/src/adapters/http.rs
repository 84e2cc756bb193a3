//! Turning HTTP outcomes (status codes, headers, transport errors) into [`CheckError`]s, the same
//! way for every provider.

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use super::error::CheckError;
use crate::ids::PaymentId;
use crate::provider::Provider;
use crate::secret::{Secret, redacted_snippet};

/// Parses a `Retry-After` value: delay-seconds or an HTTP-date (IMF-fixdate, RFC 850 or
/// asctime, as RFC 9110 requires recipients to accept). Dates in the past mean "now".
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // An absurd number of digits is not a wait anyone meant; treat it as absent.
        return value.parse::<u64>().ok().map(Duration::from_secs);
    }
    let at = DateTime::parse_from_rfc2822(value)
        .map(|dt| dt.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            ["%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"]
                .iter()
                .find_map(|format| NaiveDateTime::parse_from_str(value, format).ok())
                .map(|naive| naive.and_utc())
        })?;
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

pub(crate) fn retry_after_header(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, now))
}

/// The provider's own error message, if the body is JSON with an `error`/`message` string,
/// otherwise the start of the body; redacted either way.
pub(crate) fn error_message(body: &[u8], secrets: &[&Secret]) -> String {
    let extracted = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|json| {
            ["error", "message", "detail", "title"]
                .iter()
                .find_map(|key| json.get(key)?.as_str().map(str::to_owned))
        });
    match extracted {
        Some(message) => redacted_snippet(message.as_bytes(), secrets),
        None => redacted_snippet(body, secrets),
    }
}

/// Classifies a non-success response. Returns `None` for 2xx (the body should be parsed).
pub(crate) fn classify_status(
    provider: Provider,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    payment_id: &PaymentId,
    secrets: &[&Secret],
    now: DateTime<Utc>,
) -> Option<CheckError> {
    if status.is_success() {
        return None;
    }
    let code = status.as_u16();
    let error = match status {
        StatusCode::TOO_MANY_REQUESTS => CheckError::RateLimited {
            retry_after: retry_after_header(headers, now),
        },
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => CheckError::Unauthorized(format!(
            "{provider} rejected the configured credentials (HTTP {code}); check the {provider} \
             credentials in the worker config"
        )),
        StatusCode::NOT_FOUND | StatusCode::GONE => CheckError::NotFound(format!(
            "{provider} has no payment {payment_id} (HTTP {code}): {}",
            error_message(body, secrets)
        )),
        // A 503 that says when to come back is the provider asking for a pause, not a fault.
        StatusCode::SERVICE_UNAVAILABLE if headers.contains_key(RETRY_AFTER) => {
            match retry_after_header(headers, now) {
                Some(after) => CheckError::RateLimited {
                    retry_after: Some(after),
                },
                None => CheckError::Transient(format!("{provider} answered HTTP {code}")),
            }
        }
        StatusCode::REQUEST_TIMEOUT => {
            CheckError::Transient(format!("{provider} answered HTTP {code}"))
        }
        s if s.is_server_error() => CheckError::Transient(format!(
            "{provider} answered HTTP {code}: {}",
            error_message(body, secrets)
        )),
        _ => CheckError::Rejected {
            status: code,
            message: format!("{provider}: {}", error_message(body, secrets)),
        },
    };
    Some(error)
}

/// A transport-level failure (no HTTP response, or the body broke off): always transient.
pub(crate) fn transport_error(provider: Provider, error: &reqwest::Error) -> CheckError {
    let what = if error.is_timeout() {
        "request timed out"
    } else if error.is_connect() {
        "connection failed"
    } else if error.is_body() || error.is_decode() {
        "response body broke off"
    } else {
        "request failed"
    };
    // The chain explains e.g. "connection refused"; URLs are stripped because they are ours
    // and add nothing, and nothing in the chain can hold credentials (those live in headers).
    let mut chain = String::new();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    CheckError::Transient(format!("{provider}: {what}{chain}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn classify(status: u16, headers: HeaderMap, body: &str) -> Option<CheckError> {
        classify_status(
            Provider::Cashless,
            StatusCode::from_u16(status).unwrap(),
            &headers,
            body.as_bytes(),
            &PaymentId::new("bill-1").unwrap(),
            &[],
            now(),
        )
    }

    fn retry_after(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn retry_after_seconds() {
        assert_eq!(parse_retry_after("2", now()), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after(" 120 ", now()),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after("0", now()), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("-1", now()), None);
        assert_eq!(parse_retry_after("soon", now()), None);
        assert_eq!(parse_retry_after("", now()), None);
    }

    #[test]
    fn retry_after_http_dates() {
        let in_30s = Some(Duration::from_secs(30));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now()),
            in_30s
        );
        assert_eq!(
            parse_retry_after("Wednesday, 21-Oct-15 07:28:30 GMT", now()),
            in_30s
        );
        assert_eq!(parse_retry_after("Wed Oct 21 07:28:30 2015", now()), in_30s);
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now()),
            Some(Duration::ZERO),
            "a date in the past means retry now"
        );
    }

    #[test]
    fn success_is_not_an_error() {
        assert_eq!(classify(200, HeaderMap::new(), "{}"), None);
        assert_eq!(classify(204, HeaderMap::new(), ""), None);
    }

    #[test]
    fn status_classes() {
        assert_eq!(
            classify(429, retry_after("2"), ""),
            Some(CheckError::RateLimited {
                retry_after: Some(Duration::from_secs(2))
            })
        );
        assert_eq!(
            classify(429, HeaderMap::new(), ""),
            Some(CheckError::RateLimited { retry_after: None })
        );
        assert_eq!(
            classify(503, retry_after("7"), ""),
            Some(CheckError::RateLimited {
                retry_after: Some(Duration::from_secs(7))
            })
        );
        for code in [500, 502, 503, 504, 408] {
            assert!(
                matches!(
                    classify(code, HeaderMap::new(), "oops"),
                    Some(CheckError::Transient(_))
                ),
                "{code}"
            );
        }
        for code in [401, 403] {
            let Some(CheckError::Unauthorized(message)) = classify(code, HeaderMap::new(), "")
            else {
                panic!("{code} should be Unauthorized");
            };
            assert!(message.contains("cashless"), "{message}");
            assert!(
                message.contains("rejected the configured credentials"),
                "{message}"
            );
        }
        assert!(matches!(
            classify(400, HeaderMap::new(), "bad"),
            Some(CheckError::Rejected { status: 400, .. })
        ));
        assert!(matches!(
            classify(302, HeaderMap::new(), ""),
            Some(CheckError::Rejected { status: 302, .. })
        ));
    }

    #[test]
    fn not_found_quotes_the_provider_message() {
        let Some(CheckError::NotFound(message)) = classify(
            404,
            HeaderMap::new(),
            r#"{"error": "Bill with id bill-1 not found"}"#,
        ) else {
            panic!("404 should be NotFound");
        };
        assert!(
            message.contains("Bill with id bill-1 not found"),
            "{message}"
        );
        assert!(message.contains("cashless"), "{message}");
    }

    #[test]
    fn error_bodies_are_redacted() {
        let secret = Secret::new("sandbox-cashless-secret");
        let error = classify_status(
            Provider::Cashless,
            StatusCode::BAD_REQUEST,
            &HeaderMap::new(),
            b"{\"message\": \"bad key sandbox-cashless-secret\"}",
            &PaymentId::new("b").unwrap(),
            &[&secret],
            now(),
        );
        let text = format!("{error:?} {}", error.as_ref().unwrap());
        assert!(!text.contains("sandbox-cashless-secret"), "{text}");
    }
}
