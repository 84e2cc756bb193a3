//! The provider-facing Prometheus metrics (names, help texts, histogram buckets). The queue's,
//! the worker's and the producer's live in their own crates' `metrics` modules; `docs/metrics.md`
//! lists them all.
//!
//! Labels are bounded: `provider` (four), `outcome` (a handful of classes). Never a payment id
//! or a URL.

use std::time::Duration;

use metrics::{Unit, describe_counter, describe_histogram};

use crate::provider::Provider;

/// Histogram: seconds one status request to a provider took, by `provider` and `outcome`
/// (`2xx`, `4xx`, `429`, `5xx`, `timeout`, `error`); its `_count` counts the requests.
pub const PROVIDER_REQUEST_SECONDS: &str = "paywatch_provider_request_duration_seconds";
/// Counter: status strings paywatch does not recognise, by `provider`.
pub const PROVIDER_UNKNOWN_STATUS_TOTAL: &str = "paywatch_provider_unknown_status_total";

/// Provider latency: tens of ms normally, the client timeout at worst.
const REQUEST_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The explicit buckets of this crate's histograms.
pub const BUCKETS: &[(&str, &[f64])] = &[(PROVIDER_REQUEST_SECONDS, REQUEST_BUCKETS)];

/// Registers help texts and units with the installed recorder.
pub fn describe() {
    describe_histogram!(
        PROVIDER_REQUEST_SECONDS,
        Unit::Seconds,
        "Seconds one provider status request took, by provider and outcome (2xx, 4xx, 429, 5xx, timeout, error)"
    );
    describe_counter!(
        PROVIDER_UNKNOWN_STATUS_TOTAL,
        "Provider status strings paywatch does not recognise"
    );
}

/// The `outcome` label of a request that got an HTTP answer.
pub fn http_outcome(status: u16) -> &'static str {
    match status {
        429 => "429",
        200..=299 => "2xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        // 1xx and 3xx end a status request as much as an error does.
        _ => "error",
    }
}

/// The `outcome` label of a request that got no HTTP answer.
pub fn transport_outcome(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "timeout"
    } else {
        "error"
    }
}

/// Records one provider request.
pub fn provider_request(provider: Provider, outcome: &'static str, took: Duration) {
    metrics::histogram!(PROVIDER_REQUEST_SECONDS, "provider" => provider.as_str(), "outcome" => outcome)
        .record(took.as_secs_f64());
    crate::exemplars::observe(
        PROVIDER_REQUEST_SECONDS,
        &[("provider", provider.as_str()), ("outcome", outcome)],
        took.as_secs_f64(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_classes_not_codes() {
        assert_eq!(http_outcome(200), "2xx");
        assert_eq!(http_outcome(204), "2xx");
        assert_eq!(http_outcome(404), "4xx");
        assert_eq!(http_outcome(429), "429");
        assert_eq!(http_outcome(503), "5xx");
        assert_eq!(http_outcome(302), "error");
    }
}
