//! One answer from a provider about one payment.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::secret::REDACTED;
use crate::status::PaymentStatus;

/// What a status check saw: the normalized status plus what the provider actually said.
///
/// `Debug` never prints `delivered_codes` (they are money); `Serialize` does, because the
/// worker must store and deliver them. Use [`Observation::redacted`] before logging or
/// persisting it anywhere that is not the delivery path.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    /// The normalized status.
    pub status: PaymentStatus,
    /// The provider's own status string, verbatim (bounded in length).
    pub raw_status: String,
    /// When the answer was received.
    pub observed_at: DateTime<Utc>,
    /// Extra context from the provider, e.g. a cancel reason or item errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Codes the provider delivered (FoxReload vouchers). Secret: see the type docs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delivered_codes: Vec<String>,
}

impl Observation {
    /// An observation without detail or codes.
    pub fn new(
        status: PaymentStatus,
        raw_status: impl Into<String>,
        observed_at: DateTime<Utc>,
    ) -> Self {
        Self {
            status,
            raw_status: raw_status.into(),
            observed_at,
            detail: None,
            delivered_codes: Vec::new(),
        }
    }

    /// Sets the detail.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Sets the delivered codes.
    pub fn with_codes(mut self, codes: Vec<String>) -> Self {
        self.delivered_codes = codes;
        self
    }

    /// A copy whose codes are each replaced by `[redacted]` (the count is kept).
    pub fn redacted(&self) -> Self {
        Self {
            delivered_codes: vec![REDACTED.to_owned(); self.delivered_codes.len()],
            ..self.clone()
        }
    }
}

impl fmt::Debug for Observation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Observation")
            .field("status", &self.status)
            .field("raw_status", &self.raw_status)
            .field("observed_at", &self.observed_at)
            .field("detail", &self.detail)
            .field(
                "delivered_codes",
                &format_args!("[{REDACTED}; {}]", self.delivered_codes.len()),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_codes() -> Observation {
        Observation::new(PaymentStatus::Paid, "completed", Utc::now())
            .with_detail("cancelReason=none")
            .with_codes(vec!["GIFT-AAAA-1111".into(), "GIFT-BBBB-2222".into()])
    }

    #[test]
    fn debug_never_prints_codes() {
        let observation = with_codes();
        let debug = format!("{observation:?}");
        assert!(!debug.contains("GIFT-"), "{debug}");
        assert!(debug.contains("[[redacted]; 2]"), "{debug}");
        let pretty = format!("{observation:#?}");
        assert!(!pretty.contains("GIFT-"), "{pretty}");
    }

    #[test]
    fn redacted_replaces_every_code_and_keeps_the_rest() {
        let observation = with_codes();
        let redacted = observation.redacted();
        assert_eq!(redacted.delivered_codes, ["[redacted]", "[redacted]"]);
        assert_eq!(redacted.status, observation.status);
        assert_eq!(redacted.detail, observation.detail);
        let json = serde_json::to_string(&redacted).unwrap();
        assert!(!json.contains("GIFT-"), "{json}");
    }

    #[test]
    fn serde_round_trips_and_omits_empty_fields() {
        let observation = with_codes();
        let json = serde_json::to_string(&observation).unwrap();
        assert_eq!(
            serde_json::from_str::<Observation>(&json).unwrap(),
            observation
        );
        let bare = Observation::new(PaymentStatus::Pending, "NOT_PAID", Utc::now());
        let json = serde_json::to_value(&bare).unwrap();
        assert!(json.get("delivered_codes").is_none());
        assert!(json.get("detail").is_none());
        assert_eq!(json["status"], "pending");
    }
}
