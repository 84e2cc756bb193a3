//! An order to watch, as the producer accepts and enqueues it.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

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
    pub metadata: Option<Metadata>,
}

/// The shop's metadata: one JSON object, kept as the text the submit function stored, so every
/// number comes back exactly as written (`1.50`, `1E3`, `-0`, 25-digit integers, `1e400`), which a
/// `serde_json::Value` (an `f64` or a 64-bit integer per number) cannot promise.
///
/// It only holds what serde_json reads as one JSON value; the function judges the rest (an object,
/// no duplicate keys, bounded size and depth). Equal when the text is equal, as the function
/// compares it. `Debug` shows only its length: metadata is the shop's, and may hold anything.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Metadata(Box<RawValue>);

impl Metadata {
    /// Metadata from its JSON text (one JSON value, kept byte for byte).
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        RawValue::from_string(text.to_owned()).map(Self)
    }

    /// Metadata from a value (its numbers as serde_json writes them).
    pub fn from_value(value: &serde_json::Value) -> Result<Self, serde_json::Error> {
        serde_json::value::to_raw_value(value).map(Self)
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// The JSON text, indented two spaces per level for people to read. Only white space is
    /// added, outside strings: every number and string stays as written.
    pub fn pretty(&self) -> String {
        let text = self.get().trim();
        let mut out = String::with_capacity(text.len() * 2);
        let mut depth = 0usize;
        let (mut in_string, mut escaped) = (false, false);
        let mut chars = text.chars().peekable();
        let newline = |out: &mut String, depth: usize| {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', depth * 2));
        };
        while let Some(c) = chars.next() {
            if in_string {
                out.push(c);
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => in_string = false,
                    _ => {}
                }
                continue;
            }
            match c {
                '"' => {
                    in_string = true;
                    out.push(c);
                }
                '{' | '[' => {
                    out.push(c);
                    // Skip white space to see whether the container is empty.
                    while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
                        chars.next();
                    }
                    if matches!(chars.peek(), Some('}' | ']')) {
                        if let Some(close) = chars.next() {
                            out.push(close);
                        }
                    } else {
                        depth += 1;
                        newline(&mut out, depth);
                    }
                }
                '}' | ']' => {
                    depth = depth.saturating_sub(1);
                    newline(&mut out, depth);
                    out.push(c);
                }
                ',' => {
                    out.push(c);
                    newline(&mut out, depth);
                }
                ':' => out.push_str(": "),
                c if c.is_ascii_whitespace() => {}
                c => out.push(c),
            }
        }
        out
    }
}

impl PartialEq for Metadata {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Eq for Metadata {}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Metadata({} bytes)", self.get().len())
    }
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
            metadata: Some(Metadata::from_json(r#"{"sku":"gift-10"}"#).unwrap()),
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
    fn metadata_keeps_its_numbers_as_written() {
        let text = r#"{"a":1e400,"b":-1e400,"c":1234567890123456789012345,"d":-0,"e":1.50,"f":1E3,"g":1e-400}"#;
        let body = format!(
            r#"{{"order_id":"o","provider":"cashless","payment_id":"p","metadata":{text}}}"#
        );
        let order: OrderSpec = serde_json::from_str(&body).expect("reads");
        assert_eq!(order.metadata.as_ref().map(Metadata::get), Some(text));
        assert!(order.canonical_json().expect("writes").contains(text));
    }

    #[test]
    fn pretty_metadata_only_adds_white_space() {
        let m = Metadata::from_json(r#"{"a":[1.50,{}],"b":"x, {y}: \"z\"","c":[],"d":-0}"#)
            .expect("json");
        assert_eq!(
            m.pretty(),
            "{\n  \"a\": [\n    1.50,\n    {}\n  ],\n  \"b\": \"x, {y}: \\\"z\\\"\",\n  \"c\": [],\n  \"d\": -0\n}"
        );
        assert!(!format!("{m:?}").contains("1.50"));
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
