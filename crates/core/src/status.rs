//! The provider-independent payment status.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A payment's status, normalized across providers. Serialized in snake_case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// Waiting for the payer (also used for statuses paywatch does not recognise).
    Pending,
    /// Some but not all of the amount has arrived.
    PartiallyPaid,
    /// The payer has acted and the provider is working on it.
    Processing,
    /// Settled successfully. Terminal.
    Paid,
    /// The provider says the payment failed. Terminal.
    Failed,
    /// The payment window closed without payment. Terminal.
    Expired,
    /// The payment was cancelled. Terminal.
    Cancelled,
    /// paywatch stopped polling at its deadline without a terminal answer.
    ///
    /// Not terminal: the payment may still complete, so this must not be reported as a failure.
    Unresolved,
}

impl PaymentStatus {
    /// Every status, in a stable order.
    pub const ALL: [PaymentStatus; 8] = [
        PaymentStatus::Pending,
        PaymentStatus::PartiallyPaid,
        PaymentStatus::Processing,
        PaymentStatus::Paid,
        PaymentStatus::Failed,
        PaymentStatus::Expired,
        PaymentStatus::Cancelled,
        PaymentStatus::Unresolved,
    ];

    /// Whether the provider's answer is final (`Paid`, `Failed`, `Expired`, `Cancelled`).
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            PaymentStatus::Paid
                | PaymentStatus::Failed
                | PaymentStatus::Expired
                | PaymentStatus::Cancelled
        )
    }

    /// Whether paywatch stops watching: terminal, or given up on (`Unresolved`).
    pub const fn is_final(self) -> bool {
        self.is_terminal() || matches!(self, PaymentStatus::Unresolved)
    }

    /// The snake_case name used in serde, metrics labels and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Pending => "pending",
            PaymentStatus::PartiallyPaid => "partially_paid",
            PaymentStatus::Processing => "processing",
            PaymentStatus::Paid => "paid",
            PaymentStatus::Failed => "failed",
            PaymentStatus::Expired => "expired",
            PaymentStatus::Cancelled => "cancelled",
            PaymentStatus::Unresolved => "unresolved",
        }
    }
}

impl fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The string named no [`PaymentStatus`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown payment status {0:?}")]
pub struct UnknownPaymentStatus(pub String);

impl FromStr for PaymentStatus {
    type Err = UnknownPaymentStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PaymentStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownPaymentStatus(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_statuses() {
        let terminal: Vec<_> = PaymentStatus::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect();
        assert_eq!(
            terminal,
            [
                PaymentStatus::Paid,
                PaymentStatus::Failed,
                PaymentStatus::Expired,
                PaymentStatus::Cancelled
            ]
        );
        assert!(!PaymentStatus::Unresolved.is_terminal());
        assert!(PaymentStatus::Unresolved.is_final());
        assert!(!PaymentStatus::Pending.is_final());
    }

    #[test]
    fn serde_is_snake_case_and_matches_display() {
        for status in PaymentStatus::ALL {
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{status}\""));
            assert_eq!(status.to_string().parse::<PaymentStatus>().unwrap(), status);
        }
        assert_eq!(
            serde_json::to_string(&PaymentStatus::PartiallyPaid).unwrap(),
            "\"partially_paid\""
        );
    }
}
