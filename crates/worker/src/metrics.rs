//! The worker's own Prometheus metrics (checks, settled orders, notifications): names, help
//! texts and histogram buckets. The queue's metrics are in `paywatch_queue::metrics`, the
//! provider requests' in `paywatch_core::metrics`; `docs/metrics.md` lists them all.
//!
//! Labels are bounded: `provider`, `status` (a final payment status), `outcome`, `channel`.
//! Never an order id, an address or a URL.

use std::time::Duration;

use chrono::{DateTime, Utc};
use metrics::{Unit, describe_counter, describe_histogram};
use paywatch_core::{Channel, PaymentStatus, Provider};

/// Counter: status checks, by `provider` and `outcome` (the status seen or the error kind).
pub const CHECKS_TOTAL: &str = "paywatch_checks_total";
/// Counter: orders that reached a final status, by `provider` and `status`.
pub const ORDERS_FINAL_TOTAL: &str = "paywatch_orders_final_total";
/// Histogram: seconds from accepting an order to recording its final status.
pub const ORDER_TIME_TO_FINAL_SECONDS: &str = "paywatch_order_time_to_final_seconds";
/// Histogram: seconds between the last check that saw the payment open and the check that saw
/// it final: at most this long went by between the payment settling and paywatch noticing.
pub const ORDER_DETECTION_LAG_SECONDS: &str = "paywatch_order_detection_lag_seconds";
/// Histogram: provider checks it took to settle one order.
pub const ORDER_PROVIDER_CALLS: &str = "paywatch_order_provider_calls";
/// Counter: notification jobs created by the fan-out, by `channel`.
pub const NOTIFICATIONS_ENQUEUED_TOTAL: &str = "paywatch_notifications_enqueued_total";
/// Counter: delivery attempts, by `channel` and `outcome` (`delivered`, `transient`,
/// `retry_after`, `permanent`).
pub const NOTIFICATIONS_TOTAL: &str = "paywatch_notifications_total";

const TIME_TO_FINAL_BUCKETS: &[f64] = &[
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0,
];
const DETECTION_LAG_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0,
];
const PROVIDER_CALLS_BUCKETS: &[f64] =
    &[1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 34.0, 55.0, 89.0, 144.0];

/// The explicit buckets of this crate's histograms.
pub const BUCKETS: &[(&str, &[f64])] = &[
    (ORDER_TIME_TO_FINAL_SECONDS, TIME_TO_FINAL_BUCKETS),
    (ORDER_DETECTION_LAG_SECONDS, DETECTION_LAG_BUCKETS),
    (ORDER_PROVIDER_CALLS, PROVIDER_CALLS_BUCKETS),
];

/// Every histogram bucket list a worker process uses (queue, provider and its own).
pub fn all_buckets() -> Vec<(&'static str, &'static [f64])> {
    [
        paywatch_queue::metrics::BUCKETS,
        paywatch_core::metrics::BUCKETS,
        BUCKETS,
    ]
    .concat()
}

/// Registers help texts and units of every metric a worker exports.
pub fn describe() {
    paywatch_queue::metrics::describe();
    paywatch_core::metrics::describe();
    describe_counter!(CHECKS_TOTAL, "Status checks, by provider and outcome");
    describe_counter!(
        ORDERS_FINAL_TOTAL,
        "Orders that reached a final status, by provider and status"
    );
    describe_histogram!(
        ORDER_TIME_TO_FINAL_SECONDS,
        Unit::Seconds,
        "Seconds from accepting an order to its final status"
    );
    describe_histogram!(
        ORDER_DETECTION_LAG_SECONDS,
        Unit::Seconds,
        "Seconds between the last check that saw the payment open and the one that saw it final"
    );
    describe_histogram!(
        ORDER_PROVIDER_CALLS,
        Unit::Count,
        "Provider checks it took to settle one order"
    );
    describe_counter!(
        NOTIFICATIONS_ENQUEUED_TOTAL,
        "Notification jobs created, by channel"
    );
    describe_counter!(
        NOTIFICATIONS_TOTAL,
        "Notification delivery attempts, by channel and outcome"
    );
}

/// Counts a notification job created for `channel`.
pub fn notification_enqueued(channel: Channel) {
    metrics::counter!(NOTIFICATIONS_ENQUEUED_TOTAL, "channel" => channel.as_str()).increment(1);
}

/// Counts a delivery attempt.
pub fn notification_attempt(channel: Channel, outcome: &'static str) {
    metrics::counter!(NOTIFICATIONS_TOTAL, "channel" => channel.as_str(), "outcome" => outcome)
        .increment(1);
}

/// Records an order that just reached its final `status` (called once, by the run that won the
/// transition): the count, the time since it was accepted, and the checks it took.
pub fn order_final(provider: Provider, status: PaymentStatus, took: Duration, checks: u32) {
    let (provider, status) = (provider.as_str(), status.as_str());
    metrics::counter!(ORDERS_FINAL_TOTAL, "provider" => provider, "status" => status).increment(1);
    metrics::histogram!(ORDER_TIME_TO_FINAL_SECONDS, "provider" => provider, "status" => status)
        .record(took.as_secs_f64());
    metrics::histogram!(ORDER_PROVIDER_CALLS, "provider" => provider, "status" => status)
        .record(f64::from(checks.max(1)));
}

/// Records how long a final status may have gone unnoticed: from the check before (Unix ms,
/// 0 when this was the first, then from `created_at`) to `now`, when a check saw it.
pub fn detection_lag(
    provider: Provider,
    status: PaymentStatus,
    previous_check_ms: i64,
    created_at: DateTime<Utc>,
    now: DateTime<Utc>,
) {
    let since = if previous_check_ms > 0 {
        DateTime::from_timestamp_millis(previous_check_ms).unwrap_or(created_at)
    } else {
        created_at
    };
    let lag = (now - since).to_std().unwrap_or_default();
    metrics::histogram!(ORDER_DETECTION_LAG_SECONDS, "provider" => provider.as_str(), "status" => status.as_str())
        .record(lag.as_secs_f64());
    paywatch_core::exemplars::observe(
        ORDER_DETECTION_LAG_SECONDS,
        &[("provider", provider.as_str()), ("status", status.as_str())],
        lag.as_secs_f64(),
    );
}
