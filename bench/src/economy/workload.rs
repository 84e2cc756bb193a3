//! The benchmark's orders: a seeded, documented mix of payment timelines over the four providers
//! (docs/polling.md, "The workload").
//!
//! | share | kind | when it becomes final |
//! |---|---|---|
//! | 62 % | pays quickly | log-normal, median 20 s, σ 0.6 (95 % within a minute) |
//! | 10 % | partial first (Cashless `PARTIALLY_PAID`, FoxReload `paid` → `processing`; a plain quick payment elsewhere) | progress at median 15 s, final a log-normal median 90 s (σ 1) later |
//! | 15 % | pays late | log-uniform between 1 minute and 6 hours |
//! | 5 % | fails or is cancelled (MiracleCash `unsuccessful`, FoxReload `failed`, HandCash `expired`; Cashless has no such status and pays quickly instead) | log-normal, median 60 s, σ 1 |
//! | 8 % | never pays | MiracleCash: `expired` at its 24-hour window; HandCash: `expired` after an hour; Cashless and FoxReload: open past paywatch's 24-hour deadline |

use paywatch_core::{PaymentStatus, Provider};
use paywatch_sandbox::NewPayment;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// paywatch's deadline, and MiracleCash's payment window: 24 h.
pub const DAY_MS: u64 = 86_400_000;

/// One order of the workload: its provider and its scripted life.
#[derive(Debug, Clone)]
pub struct Order {
    /// The provider.
    pub provider: Provider,
    /// Raw provider statuses over time (unscaled ms since creation).
    pub timeline: Vec<(u64, &'static str)>,
    /// When the payment becomes final at the provider, and as what (`None`: not within 24 h).
    pub final_at: Option<(u64, PaymentStatus)>,
}

impl Order {
    /// The sandbox payment scripting this order (webhooks off: the virtual clock fires them).
    pub fn payment(&self, id: &str) -> NewPayment {
        let provider: paywatch_sandbox::Provider = self
            .provider
            .as_str()
            .parse()
            .unwrap_or(paywatch_sandbox::Provider::Cashless);
        let mut payment = NewPayment::new(provider).id(id).webhook(false);
        for (at, status) in &self.timeline {
            payment = payment.step(*at, *status);
        }
        payment
    }

    /// When a provider webhook would announce the payment (Cashless and HandCash send one when
    /// paid).
    pub fn webhook_at(&self) -> Option<u64> {
        match (self.provider, self.final_at) {
            (Provider::Cashless | Provider::HandCash, Some((at, PaymentStatus::Paid))) => Some(at),
            _ => None,
        }
    }
}

fn lognormal(rng: &mut StdRng, median_s: f64, sigma: f64) -> f64 {
    // Box–Muller: one standard normal from two uniforms.
    let (u1, u2): (f64, f64) = (rng.random_range(f64::EPSILON..1.0), rng.random());
    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    median_s * (sigma * z).exp()
}

fn ms(secs: f64) -> u64 {
    (secs * 1000.0).round().clamp(1.0, (DAY_MS - 1) as f64) as u64
}

/// `n` orders from `seed`.
pub fn generate(n: usize, seed: u64) -> Vec<Order> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| order(&mut rng)).collect()
}

fn order(rng: &mut StdRng) -> Order {
    let provider = Provider::ALL[rng.random_range(0..Provider::ALL.len())];
    let initial = match provider {
        Provider::Cashless => "NOT_PAID",
        // The workload draws built-ins only; a declared provider would be scripted like these.
        Provider::HandCash | Provider::MiracleCash | Provider::Declared(_) => "pending",
        Provider::FoxReload => "active",
    };
    let paid = match provider {
        Provider::Cashless => "FULLY_PAID",
        Provider::HandCash | Provider::Declared(_) => "paid",
        Provider::MiracleCash => "successful",
        Provider::FoxReload => "completed",
    };
    let roll: f64 = rng.random();
    let quick = |rng: &mut StdRng| ms(lognormal(rng, 20.0, 0.6).max(1.0));
    let mut timeline = vec![(0, initial)];
    let final_at = if roll < 0.62 {
        let at = quick(rng);
        timeline.push((at, paid));
        Some((at, PaymentStatus::Paid))
    } else if roll < 0.72 {
        let progress = ms(lognormal(rng, 15.0, 0.6).max(1.0));
        let at = progress + ms(lognormal(rng, 90.0, 1.0));
        match provider {
            Provider::Cashless => timeline.push((progress, "PARTIALLY_PAID")),
            Provider::FoxReload => {
                timeline.push((progress, "paid"));
                timeline.push((progress + (at - progress) / 2, "processing"));
            }
            Provider::HandCash | Provider::MiracleCash | Provider::Declared(_) => {}
        }
        timeline.push((at, paid));
        Some((at, PaymentStatus::Paid))
    } else if roll < 0.87 {
        let at = ms((60.0f64.ln() + rng.random::<f64>() * (21_600.0f64 / 60.0).ln()).exp());
        timeline.push((at, paid));
        Some((at, PaymentStatus::Paid))
    } else if roll < 0.92 {
        let at = ms(lognormal(rng, 60.0, 1.0));
        let end = match provider {
            Provider::MiracleCash => Some(("unsuccessful", PaymentStatus::Failed)),
            Provider::FoxReload => Some(("failed", PaymentStatus::Failed)),
            Provider::HandCash => Some(("expired", PaymentStatus::Expired)),
            Provider::Cashless | Provider::Declared(_) => None,
        };
        match end {
            Some((raw, status)) => {
                timeline.push((at, raw));
                Some((at, status))
            }
            None => {
                let at = quick(rng);
                timeline.push((at, paid));
                Some((at, PaymentStatus::Paid))
            }
        }
    } else {
        match provider {
            Provider::MiracleCash => {
                timeline.push((DAY_MS, "expired"));
                Some((DAY_MS, PaymentStatus::Expired))
            }
            Provider::HandCash => {
                timeline.push((3_600_000, "expired"));
                Some((3_600_000, PaymentStatus::Expired))
            }
            Provider::Cashless | Provider::FoxReload | Provider::Declared(_) => None,
        }
    };
    Order {
        provider,
        timeline,
        final_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_is_as_documented() {
        let orders = generate(20_000, 7);
        let share = |f: &dyn Fn(&Order) -> bool| {
            orders.iter().filter(|o| f(o)).count() as f64 / orders.len() as f64
        };
        let within_minute = share(&|o| o.final_at.is_some_and(|(at, _)| at <= 60_000));
        assert!((0.6..0.75).contains(&within_minute), "{within_minute}");
        let never = share(&|o| o.final_at.is_none());
        assert!((0.03..0.05).contains(&never), "{never}");
        assert_eq!(
            generate(50, 3)
                .iter()
                .map(|o| o.final_at)
                .collect::<Vec<_>>(),
            generate(50, 3)
                .iter()
                .map(|o| o.final_at)
                .collect::<Vec<_>>()
        );
    }
}
