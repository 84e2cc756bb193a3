//! An order's record as Redis holds it: one compact JSON array, written by the submit function
//! and rewritten by each check.
//!
//! `[provider, payment_id, email, telegram_chat_id, webhook_url, created_ms, metadata, state,
//! traceparent]`, trailing nulls optional (a record without a trace context has no ninth slot). Positional because a pending order's Redis cost is mostly this
//! string (the field names alone would add ~70 bytes to every order); the layout is versioned by
//! the library's contract (store/lua/prelude.lua documents it too).

use std::fmt;

use crate::order::{Metadata, NotifyTargets, OrderSpec};
use crate::{OrderId, PaymentId, PaymentStatus, PollState, Provider};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Status changes and errors kept per order (newest last).
pub const HISTORY_LEN: usize = 20;

/// One entry of an order's history: a change worth showing, not every check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// When it was observed.
    pub at: DateTime<Utc>,
    /// The normalized status, when the check got an answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<PaymentStatus>,
    /// The provider's raw status, when the check got an answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_status: Option<String>,
    /// Provider context (cancel reason, item errors); never delivered codes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The error class and message when the check failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What paywatch decided: "check again in 4.5s", "terminal", "gave up: deadline", ...
    pub decision: String,
    /// How many checks had been answered by then (this one included).
    #[serde(default)]
    pub check: u32,
}

/// What the checks have learnt so far; absent until the first check.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckState {
    /// The normalized status.
    #[serde(rename = "s")]
    pub status: PaymentStatus,
    /// The provider's last raw status.
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    pub raw_status: Option<String>,
    /// Where polling stands.
    #[serde(rename = "p")]
    pub poll: PollState,
    /// The last error, while polling goes on.
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the provider was last asked (Unix ms): provider webhooks keep a gap after it.
    #[serde(rename = "l", default)]
    pub last_checked_ms: i64,
    /// When the order reached its final status.
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    pub final_at: Option<DateTime<Utc>>,
    /// Provider context of the final answer (cancel reason, ...).
    #[serde(rename = "d", default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Codes delivered with a paid FoxReload order; for the notifiers only.
    #[serde(rename = "c", default, skip_serializing_if = "Vec::is_empty")]
    pub delivered_codes: Vec<String>,
    /// Status changes and errors, oldest first, at most [`HISTORY_LEN`].
    #[serde(rename = "h", default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,
}

impl fmt::Debug for CheckState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckState")
            .field("status", &self.status)
            .field("raw_status", &self.raw_status)
            .field("checks", &self.poll.checks)
            .field("last_error", &self.last_error)
            .field("final_at", &self.final_at)
            .field(
                "delivered_codes",
                &crate::secret::redact_all(&self.delivered_codes),
            )
            .finish_non_exhaustive()
    }
}

impl CheckState {
    /// The state of an order before its first answer: pending, polling as `poll` says.
    pub fn new(poll: PollState) -> Self {
        Self {
            status: PaymentStatus::Pending,
            raw_status: None,
            poll,
            last_error: None,
            last_checked_ms: 0,
            final_at: None,
            detail: None,
            delivered_codes: Vec::new(),
            history: Vec::new(),
        }
    }

    /// Appends a history entry, dropping the oldest beyond [`HISTORY_LEN`].
    pub fn remember(&mut self, entry: HistoryEntry) {
        self.history.push(entry);
        let excess = self.history.len().saturating_sub(HISTORY_LEN);
        self.history.drain(..excess);
    }
}

/// The wire form read back: a tuple struct deserializes from a JSON array.
#[derive(Deserialize)]
struct Wire(
    Provider,
    PaymentId,
    Option<String>,
    Option<i64>,
    Option<String>,
    i64,
    #[serde(default)] Option<Metadata>,
    #[serde(default)] Option<CheckState>,
    #[serde(default)] Option<String>,
);

/// An order as stored: what was submitted, when, and what the checks found.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(from = "Wire")]
pub struct StoredOrder {
    /// Which provider holds the payment.
    pub provider: Provider,
    /// The provider's id of the payment.
    pub payment_id: PaymentId,
    /// Where to send notifications.
    pub notify: NotifyTargets,
    /// When paywatch accepted it (Unix ms, Redis clock).
    pub created_ms: i64,
    /// The shop's metadata, exactly as canonicalised on submission (numbers as written).
    pub metadata: Option<Metadata>,
    /// What the checks found (absent before the first).
    pub state: Option<CheckState>,
    /// The order's W3C trace context (`00-<trace id>-<span id>-<flags>`), when it came with
    /// one: the submit's span, which the first check continues and every later run links to.
    pub traceparent: Option<String>,
}

impl From<Wire> for StoredOrder {
    fn from(w: Wire) -> Self {
        Self {
            provider: w.0,
            payment_id: w.1,
            notify: NotifyTargets {
                email: w.2,
                telegram_chat_id: w.3,
                webhook_url: w.4,
            },
            created_ms: w.5,
            metadata: w.6,
            state: w.7,
            traceparent: w.8,
        }
    }
}

impl Serialize for StoredOrder {
    /// Eight slots, or nine with a trace context: an order without one pays no byte for it.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let len = if self.traceparent.is_some() { 9 } else { 8 };
        let mut t = serializer.serialize_tuple(len)?;
        t.serialize_element(&self.provider)?;
        t.serialize_element(&self.payment_id)?;
        t.serialize_element(&self.notify.email)?;
        t.serialize_element(&self.notify.telegram_chat_id)?;
        t.serialize_element(&self.notify.webhook_url)?;
        t.serialize_element(&self.created_ms)?;
        t.serialize_element(&self.metadata)?;
        t.serialize_element(&self.state)?;
        if let Some(tp) = &self.traceparent {
            t.serialize_element(tp)?;
        }
        t.end()
    }
}

impl fmt::Debug for StoredOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredOrder")
            .field("provider", &self.provider)
            .field("payment_id", &self.payment_id)
            .field("notify", &self.notify)
            .field("created_ms", &self.created_ms)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl StoredOrder {
    /// When paywatch accepted it.
    pub fn created_at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.created_ms).unwrap_or_default()
    }

    /// The normalized status (pending before the first check).
    pub fn status(&self) -> PaymentStatus {
        self.state
            .as_ref()
            .map_or(PaymentStatus::Pending, |s| s.status)
    }

    /// The order as the shop submitted it.
    pub fn spec(&self, order_id: OrderId) -> OrderSpec {
        OrderSpec {
            order_id,
            provider: self.provider,
            payment_id: self.payment_id.clone(),
            notify: self.notify.clone(),
            metadata: self.metadata.clone(),
        }
    }

    /// The record's JSON.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    /// Reads a record.
    pub fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUBMITTED: &str = r#"["cashless","bill-8f2a","buyer@example.com",123456789,"https://shop.example/hooks/paywatch",1796068478882]"#;

    #[test]
    fn reads_what_the_submit_function_writes() {
        let order = StoredOrder::from_json(SUBMITTED).expect("decodes");
        assert_eq!(order.provider, Provider::Cashless);
        assert_eq!(order.notify.telegram_chat_id, Some(123456789));
        assert!(order.metadata.is_none() && order.state.is_none());
        assert_eq!(order.status(), PaymentStatus::Pending);
    }

    #[test]
    fn metadata_survives_byte_for_byte() {
        let json = r#"["cashless","x",null,null,null,1,{"a":"é\n","k":[1,{"b":true}],"z":1.50}]"#;
        let order = StoredOrder::from_json(json).expect("decodes");
        let again = order.to_json().expect("encodes");
        assert!(
            again.contains(r#"{"a":"é\n","k":[1,{"b":true}],"z":1.50}"#),
            "{again}"
        );
        assert_eq!(StoredOrder::from_json(&again).expect("round trip"), order);
    }

    #[test]
    fn debug_hides_codes_and_webhook_paths() {
        let mut order = StoredOrder::from_json(SUBMITTED).expect("decodes");
        order.state = Some(CheckState {
            status: PaymentStatus::Paid,
            raw_status: Some("paid".into()),
            delivered_codes: vec!["SECRET-CODE".into()],
            ..CheckState::new(PollState::new(&crate::PollPolicy::cashless(), Utc::now()))
        });
        let debug = format!("{order:?}");
        assert!(
            !debug.contains("SECRET-CODE") && !debug.contains("hooks/paywatch"),
            "{debug}"
        );
    }

    #[test]
    fn the_trace_context_is_a_ninth_slot_only_when_there() {
        let order = StoredOrder::from_json(SUBMITTED).expect("decodes");
        assert_eq!(order.traceparent, None);
        let again = order.to_json().expect("encodes");
        assert!(again.ends_with(",null,null]"), "{again}");
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let json = format!(r#"["cashless","x",null,null,null,1,null,null,"{tp}"]"#);
        let traced = StoredOrder::from_json(&json).expect("decodes");
        assert_eq!(traced.traceparent.as_deref(), Some(tp));
        assert_eq!(traced.to_json().expect("encodes"), json);
    }

    #[test]
    fn history_is_bounded() {
        let mut state = CheckState::new(PollState::new(&crate::PollPolicy::cashless(), Utc::now()));
        for i in 0..(HISTORY_LEN + 5) {
            state.remember(HistoryEntry {
                at: Utc::now(),
                status: None,
                raw_status: None,
                detail: None,
                error: None,
                decision: i.to_string(),
                check: 0,
            });
        }
        assert_eq!(state.history.len(), HISTORY_LEN);
        assert_eq!(state.history[0].decision, "5");
    }
}
