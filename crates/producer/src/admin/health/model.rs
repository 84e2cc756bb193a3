//! The health verdict's answer: the body of `GET /v1/admin/health`, the CLI's `admin health
//! --json`, and their OpenAPI schemas (one definition for all three).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How a part of paywatch is doing.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Working as it should.
    #[default]
    Ok,
    /// Working, but worse than it should (late, failing often, a signal missing).
    Degraded,
    /// Not doing its job: orders go unchecked, unnotified, or are at risk.
    Failing,
}

impl Verdict {
    /// Its name, as the wire spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Degraded => "degraded",
            Self::Failing => "failing",
        }
    }
}

/// The whole verdict: the worst subsystem's, each subsystem's, and the likely causes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HealthReport {
    /// The worst of the subsystems' verdicts.
    pub verdict: Verdict,
    /// What is wrong, worst first: `<subsystem>: <likely cause>` for each subsystem not ok.
    pub causes: Vec<String>,
    /// When the verdict was made (RFC 3339).
    pub checked_at: String,
    /// Are checks running on time?
    pub checks: ChecksHealth,
    /// Are the providers answering?
    pub providers: ProvidersHealth,
    /// Are provider webhooks arriving?
    pub webhooks: WebhooksHealth,
    /// Are notifications flowing?
    pub notifications: NotificationsHealth,
    /// Is any pending order without a check job?
    pub orphans: OrphanAudit,
    /// Is Redis healthy?
    pub redis: RedisHealth,
}

/// Are checks running on time: the check queues' backlog and lateness, and the workers serving
/// them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChecksHealth {
    /// The verdict.
    pub verdict: Verdict,
    /// The likely cause, when not ok.
    pub cause: Option<String>,
    /// Checks due now, waiting for a worker (all shards).
    pub due: u64,
    /// Checks running now.
    pub leased: u64,
    /// Checks scheduled for later.
    pub scheduled: u64,
    /// How late the most overdue check is, in seconds (0 when none is due).
    pub late_seconds: f64,
    /// Workers serving `check-payment` that reported in the last 30 s.
    pub workers: u64,
    /// Each check shard.
    pub shards: Vec<ShardTiming>,
}

/// One check shard's backlog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ShardTiming {
    /// The shard's queue.
    pub queue: String,
    /// Due now.
    pub due: u64,
    /// Running now.
    pub leased: u64,
    /// How late its most overdue check is, in seconds.
    pub late_seconds: f64,
}

/// Are the providers answering: each provider's circuit breaker and its calls' transient
/// failures over the last minutes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProvidersHealth {
    /// The worst provider's verdict.
    pub verdict: Verdict,
    /// The likely cause, when not ok.
    pub cause: Option<String>,
    /// The minutes the call counts cover.
    pub window_minutes: u64,
    /// Each provider a worker has credentials for, or called.
    pub providers: Vec<ProviderHealth>,
}

/// One provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProviderHealth {
    /// The provider.
    pub provider: String,
    /// The verdict.
    pub verdict: Verdict,
    /// The likely cause, when not ok.
    pub cause: Option<String>,
    /// `closed` (calls flow), `open` (checks paused) or `half_open` (one probe out).
    pub breaker: String,
    /// Transient failures in a row, fleet-wide (the breaker opens at its threshold).
    pub consecutive_failures: u64,
    /// Seconds until an open breaker lets a probe through.
    pub reopens_in_seconds: Option<f64>,
    /// Calls in the window.
    pub calls: u64,
    /// Calls in the window that failed transiently (5xx, timeouts, connection errors).
    pub failures: u64,
    /// `failures / calls`; null without calls.
    pub error_rate: Option<f64>,
}

/// Are provider webhooks arriving.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WebhooksHealth {
    /// The worst provider's verdict (never `failing`: polling finds every payment anyway).
    pub verdict: Verdict,
    /// The likely cause, when not ok.
    pub cause: Option<String>,
    /// Each provider that sends webhooks.
    pub providers: Vec<WebhookHealth>,
}

/// Whether a provider's webhooks arrive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WebhookHealth {
    /// The provider.
    pub provider: String,
    /// The verdict.
    pub verdict: Verdict,
    /// The likely cause, when not ok.
    pub cause: Option<String>,
    /// `seen` (in the last hour), `stale` (not in the last hour) or `not_seen` (never, as far
    /// as Redis remembers).
    pub state: String,
    /// When a webhook of it was last accepted (RFC 3339).
    pub last_seen: Option<String>,
    /// Seconds since then.
    pub last_seen_seconds_ago: Option<f64>,
    /// When one was last refused (wrong secret, unreadable body) (RFC 3339).
    pub last_refused: Option<String>,
}

/// Are notifications flowing, per channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NotificationsHealth {
    /// The worst channel's verdict.
    pub verdict: Verdict,
    /// The likely cause, when not ok.
    pub cause: Option<String>,
    /// The minutes the attempt counts cover.
    pub window_minutes: u64,
    /// Email, Telegram, webhook.
    pub channels: Vec<ChannelHealth>,
}

/// One notification channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChannelHealth {
    /// `email`, `telegram` or `webhook`.
    pub channel: String,
    /// Its queue.
    pub queue: String,
    /// The verdict.
    pub verdict: Verdict,
    /// The likely cause, when not ok.
    pub cause: Option<String>,
    /// Deliveries due now.
    pub due: u64,
    /// Deliveries running now.
    pub leased: u64,
    /// How late the most overdue delivery is, in seconds.
    pub late_seconds: f64,
    /// Deliveries in the dead letters.
    pub dead: u64,
    /// Delivery attempts in the window.
    pub attempts: u64,
    /// Attempts in the window that failed (to be retried, or for good).
    pub failures: u64,
    /// Workers serving the queue that reported in the last 30 s.
    pub workers: u64,
}

/// The orphan audit: pending orders whose check job is not scheduled nor running (nothing
/// would ever check them again). Must be 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OrphanAudit {
    /// `failing` when any orphan is found.
    pub verdict: Verdict,
    /// The likely cause, when not ok.
    pub cause: Option<String>,
    /// Orphans found.
    pub orphans: u64,
    /// Up to 20 of their order ids.
    pub examples: Vec<String>,
    /// Pending orders looked at.
    pub scanned: u64,
    /// Whether every pending order was looked at (the audit stops at its budget).
    pub complete: bool,
    /// The most pending orders one audit looks at.
    pub budget: u64,
}

/// Is Redis healthy: each primary (one, or each Cluster shard).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RedisHealth {
    /// The worst node's verdict.
    pub verdict: Verdict,
    /// The likely cause, when not ok.
    pub cause: Option<String>,
    /// Each primary.
    pub nodes: Vec<RedisNodeHealth>,
}

/// One Redis primary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RedisNodeHealth {
    /// `primary`, or the Cluster node's address.
    pub node: String,
    /// The verdict.
    pub verdict: Verdict,
    /// The likely cause, when not ok.
    pub cause: Option<String>,
    /// `master` or `slave`, as INFO says.
    pub role: String,
    /// Bytes used.
    pub used_memory: u64,
    /// The limit in bytes; 0 when none.
    pub maxmemory: u64,
    /// `used_memory / maxmemory`; null without a limit.
    pub memory_ratio: Option<f64>,
    /// What Redis does at the limit; paywatch needs `noeviction`.
    pub maxmemory_policy: String,
    /// Replicas connected to it.
    pub connected_replicas: u64,
    /// Whether the append-only file is on.
    pub aof_enabled: bool,
    /// Whether the last write to disk (AOF write, RDB save) succeeded.
    pub persistence_ok: bool,
}
