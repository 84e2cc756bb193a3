//! What a queue carries, which decides how the admin shows its jobs ([`super::redact`]).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What a queue carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QueueKind {
    /// Payment checks, one job per order (job id = order id); one queue per shard.
    Check,
    /// Customer notifications (email, Telegram, webhook).
    Notify,
    /// Digests for the operators.
    Ops,
}
