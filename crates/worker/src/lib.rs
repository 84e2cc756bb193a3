//! paywatch-worker: serves paywatch's queues.
//!
//! - [`check`]: the check-payment handler — ask the provider, reschedule the same job while the
//!   payment is open, record the first terminal transition and fan out.
//! - [`gate`]: the fleet-wide gate of provider calls — [`gate::budget`] (request budgets per
//!   provider credential) and [`gate::breaker`] (circuit breakers), one Redis script per call.
//! - [`fanout`]: one notification job per configured channel, idempotent on
//!   (order, status, channel).
//! - [`config`]: the worker's command line and environment.
//! - [`notify`]: delivery per channel (email, Telegram, signed webhooks) and the notifier handler.
//! - [`schedules`]: adaptive polling — the fleet's history of when orders settle, and the plans
//!   learned from it.
//! - [`health`]: the worker's health report (presence, provider and delivery failure counts,
//!   breaker keys) for the operator's health verdict.
//! - [`ops`]: digests of unresolved orders and dead letters for operators.
//! - [`app`]: builds the workers for the selected queues and drains them on shutdown.
//! - [`metrics`]: the names of the worker's metrics; [`telemetry`]: logs and the
//!   `/metrics`, `/healthz`, `/readyz` listener.

pub mod app;
pub mod check;
pub mod config;
pub mod fanout;
pub mod gate;
pub mod health;
pub mod keys;
pub mod metrics;
pub mod notify;
pub mod ops;
pub mod provider_cmd;
pub mod schedules;
pub mod telemetry;
