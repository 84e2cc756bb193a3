//! A notification job: one per (order, terminal status, channel).

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{OrderId, PaymentId, PaymentStatus, Provider, queues};

/// Where a notification goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// Email over SMTP.
    Email,
    /// A Telegram chat, through the Bot API.
    Telegram,
    /// A signed outbound webhook.
    Webhook,
}

impl Channel {
    /// The queue this channel's jobs go to.
    pub fn queue(self) -> &'static str {
        match self {
            Self::Email => queues::NOTIFY_EMAIL,
            Self::Telegram => queues::NOTIFY_TELEGRAM,
            Self::Webhook => queues::NOTIFY_WEBHOOK,
        }
    }

    /// The channel's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Telegram => "telegram",
            Self::Webhook => "webhook",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to tell whom about one order's terminal status.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// The order.
    pub order_id: OrderId,
    /// The terminal status being announced.
    pub status: PaymentStatus,
    /// The channel.
    pub channel: Channel,
    /// The destination: an email address, a Telegram chat id, or a webhook URL.
    pub target: String,
    /// The provider.
    pub provider: Provider,
    /// The provider's payment id.
    pub payment_id: PaymentId,
    /// The provider's raw status.
    pub raw_status: Option<String>,
    /// Provider context (cancel reason, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The shop's metadata, echoed exactly as stored (numbers as written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<crate::order::Metadata>,
    /// Codes delivered with the order (FoxReload); secret, never logged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delivered_codes: Vec<String>,
    /// When the terminal status was observed.
    pub occurred_at: DateTime<Utc>,
    /// The order's W3C trace context, which the delivery's own trace links to; never sent.
    #[serde(default, rename = "tp", skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl Notification {
    /// The identity that makes a notification "the same" across duplicate runs; also its job id.
    pub fn identity(&self) -> String {
        identity(&self.order_id, self.status, self.channel)
    }
}

/// The identity (and job id) of the notification of `order_id`'s `status` on `channel`.
pub fn identity(order_id: &OrderId, status: PaymentStatus, channel: Channel) -> String {
    format!("{order_id}:{status}:{channel}")
}

impl fmt::Debug for Notification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notification")
            .field("order_id", &self.order_id)
            .field("status", &self.status)
            .field("channel", &self.channel)
            .field("provider", &self.provider)
            .field("raw_status", &self.raw_status)
            .field(
                "delivered_codes",
                &crate::secret::redact_all(&self.delivered_codes),
            )
            .finish_non_exhaustive()
    }
}
