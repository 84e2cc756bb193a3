//! The API's wire types: what the handlers write (and the admin CLI reads back), each also its
//! OpenAPI schema (utoipa), so one definition serves the answer and the document; the document
//! itself is assembled in [`crate::http::doc`].
//!
//! The request type mirrors the rules of the `paywatch_submit` function (which stays the judge);
//! the enums below name the core's values on the wire, converted by exhaustive matches so a new
//! status or provider cannot reach the answers without reaching the document.
//! `tests/it/schemathesis.rs` checks the answers against the document.

use chrono::{DateTime, Utc};
use paywatch_core::store::{HistoryEntry, Phase, Receipt};
use paywatch_core::{Metadata, PaymentStatus, Provider};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A payment provider paywatch polls.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProviderName {
    /// Cashless bills.
    Cashless,
    /// HandCash payment requests.
    Handcash,
    /// MiracleCash payment prompts.
    Miraclecash,
    /// FoxReload orders.
    Foxreload,
    /// A provider declared in a definition file (`PAYWATCH_PROVIDERS_DIR`), by its name.
    #[serde(untagged)]
    Declared(String),
}

/// A normalized payment status.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting for the payer.
    Pending,
    /// Part of the amount arrived.
    PartiallyPaid,
    /// The provider is working on it.
    Processing,
    /// Settled. Final.
    Paid,
    /// Failed. Final.
    Failed,
    /// The payment window closed. Final.
    Expired,
    /// Cancelled. Final.
    Cancelled,
    /// paywatch stopped at its deadline without a final answer; the payment may still settle.
    Unresolved,
}

/// Whether paywatch is still watching an order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PhaseName {
    /// A check is scheduled or running.
    Watching,
    /// paywatch gave up; see `stopped.reason`.
    Stopped,
    /// A final status was recorded.
    Final,
}

impl From<Provider> for ProviderName {
    fn from(provider: Provider) -> Self {
        match provider {
            Provider::Cashless => Self::Cashless,
            Provider::HandCash => Self::Handcash,
            Provider::MiracleCash => Self::Miraclecash,
            Provider::FoxReload => Self::Foxreload,
            Provider::Declared(name) => Self::Declared(name.as_str().to_owned()),
        }
    }
}

impl From<PaymentStatus> for Status {
    fn from(status: PaymentStatus) -> Self {
        match status {
            PaymentStatus::Pending => Self::Pending,
            PaymentStatus::PartiallyPaid => Self::PartiallyPaid,
            PaymentStatus::Processing => Self::Processing,
            PaymentStatus::Paid => Self::Paid,
            PaymentStatus::Failed => Self::Failed,
            PaymentStatus::Expired => Self::Expired,
            PaymentStatus::Cancelled => Self::Cancelled,
            PaymentStatus::Unresolved => Self::Unresolved,
        }
    }
}

impl From<Phase> for PhaseName {
    fn from(phase: Phase) -> Self {
        match phase {
            Phase::Watching => Self::Watching,
            Phase::Stopped => Self::Stopped,
            Phase::Final => Self::Final,
        }
    }
}

/// Where to send notifications; each optional.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifyRequest {
    /// `local@domain.tld` (see docs/enqueue-from-any-language.md for the exact rule).
    #[schema(
        max_length = 254,
        pattern = r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$"
    )]
    pub email: Option<String>,
    /// A Telegram chat id: an integer, not 0.
    #[schema(minimum = -9007199254740991_i64, maximum = 9007199254740991_i64)]
    pub telegram_chat_id: Option<i64>,
    /// An http(s) URL without credentials or fragment. An IP-literal host in a range the webhook
    /// notifiers do not reach (loopback, private, link-local, …) is refused unless allow-listed.
    #[schema(max_length = 2048, pattern = r"^https?://[^@#/?\s]+([/?][^#\s]*)?$")]
    pub webhook_url: Option<String>,
}

/// An order to watch: the body of `POST /v1/orders`, and the argument of `paywatch_submit`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderRequest {
    /// Your id of the order: 1-128 printable ASCII characters without spaces, not `.` or `..`.
    #[schema(min_length = 1, max_length = 128, pattern = r"^[!-~]+$")]
    pub order_id: String,
    /// Which provider holds the payment.
    pub provider: ProviderName,
    /// The provider's id of the payment: 1-128 printable ASCII characters without spaces.
    #[schema(min_length = 1, max_length = 128, pattern = r"^[!-~]+$")]
    pub payment_id: String,
    /// Who to notify.
    pub notify: Option<NotifyRequest>,
    /// Any JSON object up to 16 KiB, echoed in notifications.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

/// An order's links.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Links {
    /// The order (`GET`), its id percent-encoded.
    #[serde(rename = "self")]
    pub self_: String,
    /// Its live status as Server-Sent Events: with a secret set, a link signed for browsers that
    /// works until its `exp` (`?exp=…&sig=…`).
    pub events: String,
}

/// The answer to a submission.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SubmitReply {
    /// The order.
    pub order_id: String,
    /// Its provider.
    pub provider: ProviderName,
    /// Its payment id.
    pub payment_id: String,
    /// Its status.
    pub status: Status,
    /// Whether paywatch is watching it.
    pub phase: PhaseName,
    /// True for a new order, false when it existed.
    pub created: bool,
    /// Where to find it.
    pub links: Links,
    /// What Redis confirmed before this answer.
    pub receipt: ReceiptView,
}

/// What Redis confirmed about an accepted order before the answer was sent (see
/// docs/durability.md): log it to know the guarantee each order got.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReceiptView {
    /// Replicas that acknowledged the write (`WAIT`); null when the producer asks none
    /// (`PAYWATCH_DURABLE_REPLICAS=0`): only the primary had it.
    pub replicas_acknowledged: Option<u32>,
    /// Whether the primary's append-only file had it on disk (`WAITAOF`); null when not asked
    /// (`PAYWATCH_DURABLE_FSYNC` off) or the server has no `WAITAOF`.
    pub primary_fsynced: Option<bool>,
}

impl From<Receipt> for ReceiptView {
    fn from(receipt: Receipt) -> Self {
        Self {
            replicas_acknowledged: receipt.replicas_acknowledged,
            primary_fsynced: receipt.primary_fsynced,
        }
    }
}

/// Why paywatch stopped watching an order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StoppedView {
    /// The reason recorded with the dead letter.
    pub reason: String,
    /// When (RFC 3339).
    #[schema(value_type = Option<String>)]
    pub at: Option<DateTime<Utc>>,
}

/// Notification targets as shown (webhook URL reduced to scheme and host).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NotifyView {
    /// Email address.
    pub email: Option<String>,
    /// Telegram chat id.
    pub telegram_chat_id: Option<i64>,
    /// `scheme://host[:port]/[redacted]`.
    pub webhook_url: Option<String>,
}

/// One change in an order's history (the core's `HistoryEntry`, as the answers write it).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HistoryView {
    /// When (RFC 3339).
    pub at: String,
    /// The normalized status, when the check got an answer.
    pub status: Option<Status>,
    /// The provider's raw status.
    pub raw_status: Option<String>,
    /// Provider context.
    pub detail: Option<String>,
    /// The error class and message when the check failed.
    pub error: Option<String>,
    /// What paywatch decided.
    pub decision: String,
    /// Checks answered by then.
    pub check: i64,
}

/// An order as it stands: the answer of `GET /v1/orders/{order_id}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OrderView {
    /// The order.
    pub order_id: String,
    /// Its provider.
    pub provider: ProviderName,
    /// Its payment id.
    pub payment_id: String,
    /// Last known status.
    pub status: Status,
    /// Whether paywatch is still watching it.
    pub phase: PhaseName,
    /// `phase == "watching"`.
    pub watching: bool,
    /// Why paywatch stopped (phase `stopped` only).
    pub stopped: Option<StoppedView>,
    /// The provider's raw status.
    pub raw_status: Option<String>,
    /// Checks answered.
    pub checks: i64,
    /// Whether a check is running now.
    pub checking_now: bool,
    /// When the next check is due (RFC 3339).
    #[schema(value_type = Option<String>)]
    pub next_check_at: Option<DateTime<Utc>>,
    /// When paywatch accepted it (RFC 3339).
    #[schema(value_type = String)]
    pub created_at: DateTime<Utc>,
    /// When it reached its final status (RFC 3339).
    #[schema(value_type = Option<String>)]
    pub terminal_at: Option<DateTime<Utc>>,
    /// The last error while polling goes on.
    pub last_error: Option<String>,
    /// Whether its final notifications are enqueued.
    pub notified: bool,
    /// Where notifications go.
    pub notify: NotifyView,
    /// The shop's metadata, exactly as submitted (every number as written).
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Metadata>,
    /// Changes, newest first.
    #[schema(value_type = Vec<HistoryView>)]
    pub history: Vec<HistoryEntry>,
    /// Where to find it.
    pub links: Links,
}

/// An error: `error` reads `<field>: <message>` for invalid orders.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What is wrong.
    pub error: String,
    /// The field at fault (dotted path), when one is; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Health and readiness.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HealthBody {
    /// `ok` or `ready`.
    pub status: String,
}

/// What a provider webhook did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookReply {
    /// The orders watching the payment and what happened to their checks.
    #[schema(value_type = Option<Vec<Object>>)]
    pub orders: Option<serde_json::Value>,
    /// Set when no order watches the payment.
    pub ignored: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_names_are_the_cores() {
        let same = |core: serde_json::Value, wire: serde_json::Value| assert_eq!(core, wire);
        for provider in Provider::ALL {
            same(
                serde_json::json!(provider),
                serde_json::json!(ProviderName::from(provider)),
            );
        }
        for status in PaymentStatus::ALL {
            same(
                serde_json::json!(status),
                serde_json::json!(Status::from(status)),
            );
        }
        for phase in [Phase::Watching, Phase::Stopped, Phase::Final] {
            same(
                serde_json::json!(phase),
                serde_json::json!(PhaseName::from(phase)),
            );
        }
        let receipt = Receipt {
            replicas_acknowledged: Some(2),
            primary_fsynced: None,
        };
        same(
            serde_json::json!(receipt),
            serde_json::json!(ReceiptView::from(receipt)),
        );
    }
}
