//! paywatch's core: what a watched payment is, how to ask each provider about it, and when to
//! ask again.
//!
//! - [`ids`]: validated [`OrderId`] and [`PaymentId`].
//! - [`provider`]: the [`Provider`] enum (`cashless`, `handcash`, `miraclecash`, `foxreload`).
//! - [`status`]: the normalized [`PaymentStatus`], including `Unresolved` ("stopped looking",
//!   never "failed").
//! - [`observation`]: an [`Observation`], one answer from a provider (codes redacted in `Debug`).
//! - [`order`]: the [`OrderSpec`] the producer accepts and enqueues, with its [`NotifyTargets`].
//! - [`secret`]: the [`Secret`] credential wrapper and body-snippet redaction.
//! - [`adapters`]: the [`ProviderClient`] adapters over HTTP, configured by
//!   [`ProvidersConfig`], failing with a classified [`CheckError`].
//! - [`declared`]: providers declared in TOML files, polled by the generic adapter.
//! - [`policy`]: the [`PollPolicy`] state machine deciding the next check ([`PollDecision`]).
//! - [`schedule`]: adaptive polling, a [`schedule::Plan`] learned from when payments settle.
//! - [`cli`]: reading a binary's flags and environment; errors name the variable.
//! - [`durations`]: human-friendly durations (`"3s"`, `"5m"`) for config.
//! - [`health`]: the signals processes leave in Redis for the operator's health verdict.
//! - [`store`]: the [`OrderStore`]: orders in Redis through the `paywatch` function library,
//!   the one door every language submits through.
//! - [`targets`]: the rules for notification targets, shared with the function library.
//! - [`ip_ranges`]: the address ranges webhooks may not reach by default, and allow-list ranges.
//! - [`notification`]: a [`Notification`] job, identified by (order, status, [`Channel`]).
//! - [`queues`]: the names of paywatch's queues.
//! - [`shutdown`]: the shutdown signal every binary waits for.
//! - [`exemplars`]: trace ids on histogram buckets, in the OpenMetrics exposition.
//! - [`traces`]: OpenTelemetry traces (OTLP) and the shape of an order's traces; [`traceparent`]:
//!   the W3C trace context an order may carry.
//! - [`metrics`]: provider metric names; [`telemetry`]: logs (`LOG_FORMAT`), the Prometheus
//!   exporter and the `/metrics`, `/healthz`, `/readyz` listener every binary serves.

pub mod adapters;
pub mod cli;
pub mod declared;
pub mod durations;
pub mod exemplars;
pub mod health;
pub mod ids;
pub mod ip_ranges;
pub mod metrics;
pub mod notification;
pub mod observation;
pub mod order;
pub mod policy;
pub mod provider;
pub mod queues;
pub mod schedule;
pub mod secret;
pub mod shutdown;
pub mod status;
pub mod store;
pub mod targets;
pub mod telemetry;
pub mod traceparent;
pub mod traces;

pub use adapters::{
    CashlessConfig, CheckError, ClientBuildError, FoxReloadConfig, HandCashConfig,
    MiracleCashConfig, ProviderClient, ProvidersConfig,
};
pub use ids::{IdError, OrderId, PaymentId};
pub use notification::{Channel, Notification};
pub use observation::Observation;
pub use order::{Metadata, NotifyTargets, OrderSpec};
pub use policy::{GiveUpReason, PolicyError, PollDecision, PollPolicies, PollPolicy, PollState};
pub use provider::{DeclareError, DeclaredName, Provider, UnknownProvider};
pub use secret::{Secret, SecretUrl};
pub use status::{PaymentStatus, UnknownPaymentStatus};
pub use store::{
    FieldError, HistoryEntry, OrderStore, OrderView, Phase, StoreError, StoredOrder, SubmitError,
    Submitted,
};
