//! Adaptive polling: schedules learned from when a provider's payments actually settle.
//!
//! - [`histogram`]: [`FinalTimes`], the bounded, mergeable record of time to final per outcome
//!   that the worker keeps per provider in Redis.
//! - [`plan`]: [`Plan`], the check ages that minimise expected detection lag for a budget of
//!   calls per order (or the fewest calls for a p90 lag), by dynamic programming over the
//!   history's distribution.
//! - [`adaptive`]: [`AdaptivePolicy`], the fixed [`PollPolicy`](crate::PollPolicy) whose regular
//!   waits a plan replaces, and [`provider_expiry`].
//!
//! docs/polling.md explains the method and its limits.

pub mod adaptive;
pub mod histogram;
pub mod plan;
#[cfg(test)]
mod proptests;

pub use adaptive::{AdaptivePolicy, provider_expiry};
pub use histogram::FinalTimes;
pub use plan::{Budget, Distribution, Plan, PlanConfig, Prediction, fixed_ages};
