//! The producer's Prometheus metrics: names and help texts. `docs/metrics.md` lists every
//! metric paywatch exports.
//!
//! Labels are bounded: `provider`, `outcome`. Never an order id.

use metrics::describe_counter;

/// Counter: orders submitted, by `provider` and `outcome` (`created`, `existing`).
pub const ORDERS_SUBMITTED_TOTAL: &str = "paywatch_orders_submitted_total";
/// Counter: provider webhooks received, by `provider` and `outcome`.
pub const PROVIDER_WEBHOOKS_TOTAL: &str = "paywatch_provider_webhooks_total";

/// Counter: API requests whose handler panicked (each answered with a JSON 500).
pub const HANDLER_PANICS_TOTAL: &str = "paywatch_producer_handler_panics_total";

/// Every histogram bucket list a producer process uses (its queue handles').
pub fn all_buckets() -> Vec<(&'static str, &'static [f64])> {
    paywatch_queue::metrics::BUCKETS.to_vec()
}

/// Registers help texts of every metric a producer exports.
pub fn describe() {
    paywatch_queue::metrics::describe();
    describe_counter!(
        ORDERS_SUBMITTED_TOTAL,
        "Orders submitted, by provider and outcome (created, existing)"
    );
    describe_counter!(
        HANDLER_PANICS_TOTAL,
        "API requests whose handler panicked (each answered with a JSON 500)"
    );
    describe_counter!(
        PROVIDER_WEBHOOKS_TOTAL,
        "Provider webhooks received, by provider and outcome"
    );
}
