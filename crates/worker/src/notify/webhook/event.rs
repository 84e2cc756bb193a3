//! The event a webhook carries and its stable id.
//!
//! Both are pure functions of what identifies the transition (order, status, the provider's
//! answer, the shop's metadata), never of when it was recorded or sent: every retry of one event,
//! and every re-recording of the same transition (after a Redis failover lost the first record),
//! sends the same `webhook-id` and a byte-identical body (only `webhook-timestamp` and the
//! signature change), which is what lets receivers deduplicate.

use paywatch_core::{Notification, PaymentStatus, Provider};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Domain separation for the id hash, versioned so a future scheme cannot collide with this one.
const ID_CONTEXT: &[u8] = b"paywatch.webhook.v1\0";

/// A stable Standard Webhooks message id for `n`: `msg_` + 32 hex digits (128 bits) of
/// SHA-256 over its identity (order, status, channel).
///
/// Hashing rather than echoing the identity keeps order ids out of a header that proxies log,
/// and keeps the id short and free of characters a header may not carry.
pub fn webhook_id(n: &Notification) -> String {
    let digest = Sha256::new()
        .chain_update(ID_CONTEXT)
        .chain_update(n.identity().as_bytes())
        .finalize();
    let mut id = String::with_capacity(4 + 32);
    id.push_str("msg_");
    for byte in &digest[..16] {
        id.push_str(&format!("{byte:02x}"));
    }
    id
}

#[derive(Serialize)]
struct Event<'a> {
    #[serde(rename = "type")]
    kind: String,
    data: EventData<'a>,
}

/// Field order here is the order on the wire; every field is always present (null when
/// unknown) except `delivered_codes`, which only `payment.paid` events carry.
#[derive(Serialize)]
struct EventData<'a> {
    order_id: &'a str,
    status: PaymentStatus,
    provider: Provider,
    payment_id: &'a str,
    raw_status: Option<&'a str>,
    detail: Option<&'a str>,
    metadata: Option<&'a paywatch_core::Metadata>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delivered_codes: Option<&'a [String]>,
}

/// The JSON body for `n`:
///
/// ```json
/// {"type":"payment.paid",
///  "data":{"order_id":"…","status":"paid","provider":"foxreload","payment_id":"…",
///          "raw_status":"completed","detail":null,"metadata":{…},"delivered_codes":["…"]}}
/// ```
///
/// No time: when the status was recorded differs when a failover makes the fleet record it again,
/// and the body behind one `webhook-id` must not (the attempt's time is the `webhook-timestamp`
/// header). `metadata` is echoed as stored in the job, which is the same bytes on every retry.
///
/// `delivered_codes` (the FoxReload codes the customer bought) are included for `paid` only —
/// always, possibly empty, for a stable shape. That is deliberate: the webhook goes to the
/// shop's own endpoint, which needs the codes to hand them to its customer, and the signature
/// lets it trust them. They are kept out of everything else the sender produces (errors, logs).
pub fn event_body(n: &Notification) -> Result<Vec<u8>, serde_json::Error> {
    let event = Event {
        kind: format!("payment.{}", n.status),
        data: EventData {
            order_id: n.order_id.as_str(),
            status: n.status,
            provider: n.provider,
            payment_id: n.payment_id.as_str(),
            raw_status: n.raw_status.as_deref(),
            detail: n.detail.as_deref(),
            metadata: n.metadata.as_ref(),
            delivered_codes: (n.status == PaymentStatus::Paid)
                .then_some(n.delivered_codes.as_slice()),
        },
    };
    serde_json::to_vec(&event)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;
    use paywatch_core::{Channel, OrderId, PaymentId};

    use super::*;

    fn notification(status: PaymentStatus) -> Notification {
        Notification {
            order_id: OrderId::new("order-42").unwrap(),
            status,
            channel: Channel::Webhook,
            target: "https://shop.example/hooks/paywatch?token=abc".into(),
            provider: Provider::FoxReload,
            payment_id: PaymentId::new("fx-9").unwrap(),
            raw_status: Some("completed".into()),
            detail: None,
            metadata: Some(
                paywatch_core::Metadata::from_json(
                    r#"{"a":[1,2],"big":1234567890123456789012345,"cart":7,"x":1e400,"y":1.50}"#,
                )
                .unwrap(),
            ),
            delivered_codes: vec!["CODE-1".into(), "CODE-2".into()],
            occurred_at: chrono::Utc
                .with_ymd_and_hms(2024, 5, 1, 12, 0, 0)
                .single()
                .unwrap(),
            traceparent: None,
        }
    }

    #[test]
    fn id_is_stable_and_distinguishes_events() {
        let paid = notification(PaymentStatus::Paid);
        let id = webhook_id(&paid);
        assert_eq!(id, webhook_id(&paid.clone()));
        assert!(id.starts_with("msg_") && id.len() == 36, "{id}");
        assert!(id[4..].bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        // Same event whatever else changes; a different event for another status or order.
        let mut retargeted = paid.clone();
        retargeted.target = "https://elsewhere.example/".into();
        retargeted.raw_status = None;
        assert_eq!(webhook_id(&retargeted), id);
        assert_ne!(webhook_id(&notification(PaymentStatus::Failed)), id);
        let mut other = paid.clone();
        other.order_id = OrderId::new("order-43").unwrap();
        assert_ne!(webhook_id(&other), id);
        assert!(!id.contains("order-42"));
    }

    #[test]
    fn paid_body_has_the_documented_shape() {
        let body = event_body(&notification(PaymentStatus::Paid)).unwrap();
        let text = String::from_utf8(body.clone()).unwrap();
        assert_eq!(
            text,
            r#"{"type":"payment.paid","data":{"order_id":"order-42","status":"paid","provider":"foxreload","payment_id":"fx-9","raw_status":"completed","detail":null,"metadata":{"a":[1,2],"big":1234567890123456789012345,"cart":7,"x":1e400,"y":1.50},"delivered_codes":["CODE-1","CODE-2"]}}"#
        );
        assert_eq!(
            event_body(&notification(PaymentStatus::Paid)).unwrap(),
            body
        );
    }

    #[test]
    fn a_transition_recorded_again_later_has_the_same_id_and_body() {
        let first = notification(PaymentStatus::Paid);
        let mut again = first.clone();
        again.occurred_at += chrono::Duration::milliseconds(1234);
        assert_eq!(webhook_id(&again), webhook_id(&first));
        assert_eq!(event_body(&again).unwrap(), event_body(&first).unwrap());
    }

    #[test]
    fn codes_only_ride_on_paid_events() {
        for status in [
            PaymentStatus::Failed,
            PaymentStatus::Expired,
            PaymentStatus::Cancelled,
            PaymentStatus::Unresolved,
        ] {
            // Read as a Value below, which has no f64 for the fixture's 1e400.
            let mut n = notification(status);
            n.metadata = None;
            let body = event_body(&n).unwrap();
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(json["type"], format!("payment.{status}"));
            assert!(json["data"].get("delivered_codes").is_none(), "{json}");
            assert!(!String::from_utf8(body).unwrap().contains("CODE-1"));
        }
        let mut paid_without_codes = notification(PaymentStatus::Paid);
        paid_without_codes.delivered_codes.clear();
        paid_without_codes.metadata = None;
        let json: serde_json::Value =
            serde_json::from_slice(&event_body(&paid_without_codes).unwrap()).unwrap();
        assert_eq!(json["data"]["delivered_codes"], serde_json::json!([]));
    }
}
