//! The chaos run's workload: orders over the four providers, each with a scripted life in the
//! sandbox and the final status paywatch must arrive at.

use paywatch_core::PaymentStatus;
use paywatch_sandbox::{Fault, NewPayment, Provider};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};

/// One order of the run.
#[derive(Debug, Clone)]
pub struct PlannedOrder {
    /// The shop's order id.
    pub order_id: String,
    /// The payment as the sandbox will script it.
    pub payment: NewPayment,
    /// The provider name the API takes.
    pub provider: &'static str,
    /// Where its notifications go.
    pub email: String,
    /// Its Telegram chat (one per order, so the per-chat pace never holds the run back).
    pub chat_id: i64,
    /// The status paywatch must end at.
    pub expected: PaymentStatus,
    /// What the script does, for the report.
    pub story: &'static str,
    /// When, after its creation, the payment reaches its final status.
    pub final_after: std::time::Duration,
}

/// The first Telegram chat id; order `i` uses `CHAT_BASE + i`.
pub const CHAT_BASE: i64 = 700_000_000;

/// `n` orders from `seed`: the same seed gives the same run.
///
/// Every payment starts pending and reaches its final status 0–8 s after creation: most pay,
/// some pay in two parts, some fail, expire or are cancelled, HandCash payments often announce
/// themselves by webhook, and one in twenty meets a transient provider error (a 500 or a 429
/// with `Retry-After`) on its first look.
pub fn plan(n: usize, seed: u64) -> Vec<PlannedOrder> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let final_at = rng.random_range(0..8_000u64);
            let roll: f64 = rng.random();
            let (provider, payment, expected, story) = match i % 4 {
                0 => cashless(final_at, roll),
                1 => handcash(final_at, roll),
                2 => miraclecash(final_at, roll),
                _ => foxreload(final_at, roll),
            };
            let payment = match rng.random_range(0..40u32) {
                0 => payment.fault(Fault::status(500).times(2)),
                1 => payment.fault(Fault::rate_limited(1).times(1)),
                _ => payment,
            };
            let final_after = std::time::Duration::from_millis(
                payment
                    .timeline
                    .iter()
                    .map(|s| s.after_ms)
                    .max()
                    .unwrap_or(0),
            );
            PlannedOrder {
                final_after,
                order_id: format!("chaos-{i:06}"),
                payment,
                provider,
                email: format!("buyer{i}@shop.test"),
                chat_id: CHAT_BASE + i as i64,
                expected,
                story,
            }
        })
        .collect()
}

type Script = (&'static str, NewPayment, PaymentStatus, &'static str);

fn cashless(at: u64, roll: f64) -> Script {
    let p = NewPayment::new(Provider::Cashless).step(0, "NOT_PAID");
    if roll < 0.7 {
        let p = p.step(at, "FULLY_PAID");
        ("cashless", p, PaymentStatus::Paid, "paid")
    } else {
        let p = p
            .step(at / 2, "PARTIALLY_PAID")
            .step(at + 500, "FULLY_PAID");
        (
            "cashless",
            p,
            PaymentStatus::Paid,
            "partly, then fully paid",
        )
    }
}

fn handcash(at: u64, roll: f64) -> Script {
    let p = NewPayment::new(Provider::HandCash).step(0, "pending");
    if roll < 0.4 {
        let p = p.step(at, "paid").webhook(true);
        (
            "handcash",
            p,
            PaymentStatus::Paid,
            "paid, announced by webhook",
        )
    } else if roll < 0.8 {
        let p = p.step(at, "paid").webhook(false);
        ("handcash", p, PaymentStatus::Paid, "paid")
    } else {
        let p = p.step(at, "expired");
        ("handcash", p, PaymentStatus::Expired, "expired")
    }
}

fn miraclecash(at: u64, roll: f64) -> Script {
    let (raw, status, story) = if roll < 0.4 {
        ("successful", PaymentStatus::Paid, "paid")
    } else if roll < 0.6 {
        ("unsuccessful", PaymentStatus::Failed, "failed")
    } else if roll < 0.8 {
        ("expired", PaymentStatus::Expired, "expired")
    } else {
        ("cancelled", PaymentStatus::Cancelled, "cancelled")
    };
    let p = NewPayment::new(Provider::MiracleCash)
        .step(0, "pending")
        .step(at, raw);
    ("miraclecash", p, status, story)
}

fn foxreload(at: u64, roll: f64) -> Script {
    let p = NewPayment::new(Provider::FoxReload).step(0, "active");
    if roll < 0.5 {
        let p = p
            .step(at / 3, "paid")
            .step(at / 2, "processing")
            .step(at, "completed");
        (
            "foxreload",
            p,
            PaymentStatus::Paid,
            "completed, codes delivered",
        )
    } else {
        let (raw, reason, status, story) = if roll < 0.7 {
            (
                "cancelled",
                Some("payment_expiration"),
                PaymentStatus::Expired,
                "expired",
            )
        } else if roll < 0.85 {
            (
                "cancelled",
                Some("out_of_stock"),
                PaymentStatus::Cancelled,
                "cancelled",
            )
        } else {
            ("failed", None, PaymentStatus::Failed, "failed")
        };
        let p = match reason {
            Some(reason) => {
                let mut fields = Map::new();
                fields.insert("cancelReason".into(), json!(reason));
                p.step_with_fields(at, raw, fields)
            }
            None => p.step(at, raw),
        };
        ("foxreload", p, status, story)
    }
}

impl PlannedOrder {
    /// The order as the shop POSTs it, once the sandbox has given the payment its id.
    pub fn body(&self, payment_id: &str, webhook_url: &str) -> Value {
        json!({
            "order_id": self.order_id,
            "provider": self.provider,
            "payment_id": payment_id,
            "notify": {
                "email": self.email,
                "telegram_chat_id": self.chat_id,
                "webhook_url": webhook_url,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_plans_the_same_run_over_every_provider() {
        let a = plan(400, 7);
        let b = plan(400, 7);
        assert_eq!(
            a.iter()
                .map(|o| format!("{:?}", o.payment))
                .collect::<Vec<_>>(),
            b.iter()
                .map(|o| format!("{:?}", o.payment))
                .collect::<Vec<_>>()
        );
        for provider in ["cashless", "handcash", "miraclecash", "foxreload"] {
            assert_eq!(a.iter().filter(|o| o.provider == provider).count(), 100);
        }
        for status in [
            PaymentStatus::Paid,
            PaymentStatus::Failed,
            PaymentStatus::Expired,
            PaymentStatus::Cancelled,
        ] {
            assert!(a.iter().any(|o| o.expected == status), "{status}");
        }
    }
}
