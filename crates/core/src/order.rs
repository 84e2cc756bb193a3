//! An order to watch, as the producer accepts and enqueues it.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::{OrderId, PaymentId};
use crate::provider::Provider;
use crate::secret::redact_url;

/// An order as submitted: the payment to watch and who to tell when it settles.
///
/// Immutable once accepted: it is also the check-payment job's arguments, so submitting the same
/// order again compares equal (idempotency) for as long as the order exists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderSpec {
    /// The merchant's order id; unique per order.
    pub order_id: OrderId,
    /// Which provider holds the payment.
    pub provider: Provider,
    /// The provider's id of the payment.
    pub payment_id: PaymentId,
    /// Where to send notifications.
    #[serde(default)]
    pub notify: NotifyTargets,
    /// Opaque data the merchant attached; echoed back in notifications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
}

impl OrderSpec {
    /// An order without metadata.
    pub fn new(
        order_id: OrderId,
        provider: Provider,
        payment_id: PaymentId,
        notify: NotifyTargets,
    ) -> Self {
        Self {
            order_id,
            provider,
            payment_id,
            notify,
            metadata: None,
        }
    }

    /// The canonical JSON used for idempotency comparisons and as the job payload.
    pub fn canonical_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }
}

/// Notification destinations; any may be absent.
///
/// `Debug` shows only the scheme and host of `webhook_url`, because webhook URLs routinely
/// carry tokens in their path or query.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyTargets {
    /// Email address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Telegram chat id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telegram_chat_id: Option<i64>,
    /// URL to POST the outcome to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
}

impl NotifyTargets {
    /// Whether there is nobody to notify.
    pub fn is_empty(&self) -> bool {
        self.email.is_none() && self.telegram_chat_id.is_none() && self.webhook_url.is_none()
    }
}

impl fmt::Debug for NotifyTargets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotifyTargets")
            .field("email", &self.email)
            .field("telegram_chat_id", &self.telegram_chat_id)
            .field("webhook_url", &self.webhook_url.as_deref().map(redact_url))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> OrderSpec {
        OrderSpec {
            order_id: OrderId::new("order-1").unwrap(),
            provider: Provider::FoxReload,
            payment_id: PaymentId::new("fr_123").unwrap(),
            notify: NotifyTargets {
                email: Some("buyer@example.com".into()),
                telegram_chat_id: Some(-100123),
                webhook_url: Some(
                    "https://hooks.example.com:8443/T00/B00/s3cr3tT0ken?sig=abc".into(),
                ),
            },
            metadata: Some(serde_json::json!({"sku": "gift-10"})),
        }
    }

    #[test]
    fn serde_uses_the_documented_field_names() {
        let json = serde_json::to_value(order()).unwrap();
        for field in ["order_id", "provider", "payment_id", "notify", "metadata"] {
            assert!(json.get(field).is_some(), "missing {field}: {json}");
        }
        assert_eq!(json["provider"], "foxreload");
        assert_eq!(json["notify"]["telegram_chat_id"], -100123);
        let back: OrderSpec = serde_json::from_value(json).unwrap();
        assert_eq!(back, order());
    }

    #[test]
    fn minimal_order_deserializes() {
        let order: OrderSpec =
            serde_json::from_str(r#"{"order_id":"o1","provider":"cashless","payment_id":"b1"}"#)
                .unwrap();
        assert!(order.notify.is_empty());
        assert!(order.metadata.is_none());
    }

    #[test]
    fn invalid_ids_are_rejected_on_deserialize() {
        let err = serde_json::from_str::<OrderSpec>(
            r#"{"order_id":"o 1","provider":"cashless","payment_id":"b1"}"#,
        );
        assert!(err.is_err());
        let unknown = serde_json::from_str::<OrderSpec>(
            r#"{"order_id":"o1","provider":"cashless","payment_id":"b1","amount":3}"#,
        );
        assert!(unknown.is_err(), "unknown fields are refused");
    }

    #[test]
    fn debug_hides_webhook_tokens() {
        let debug = format!("{:?}", order());
        assert!(!debug.contains("s3cr3tT0ken"), "{debug}");
        assert!(!debug.contains("sig=abc"), "{debug}");
        assert!(
            debug.contains("https://hooks.example.com:8443/[redacted]"),
            "{debug}"
        );
    }
}
