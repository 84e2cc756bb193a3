//! The names of paywatch's queues, shared by producer and worker.

/// Checks one order's payment; one job per order, id = order id.
pub const CHECK_PAYMENT: &str = "check-payment";
/// Email notifications.
pub const NOTIFY_EMAIL: &str = "notify-email";
/// Telegram notifications.
pub const NOTIFY_TELEGRAM: &str = "notify-telegram";
/// Signed outbound webhooks.
pub const NOTIFY_WEBHOOK: &str = "notify-webhook";

/// Digests for the operators: unresolved orders and dead-lettered jobs.
pub const NOTIFY_OPS: &str = "notify-ops";

/// Every queue a worker can serve.
pub const ALL: [&str; 5] = [
    CHECK_PAYMENT,
    NOTIFY_EMAIL,
    NOTIFY_TELEGRAM,
    NOTIFY_WEBHOOK,
    NOTIFY_OPS,
];

/// The default key prefix of a deployment.
pub const DEFAULT_PREFIX: &str = "paywatch";
