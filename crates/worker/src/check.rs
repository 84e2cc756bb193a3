//! The check-payment handler.
//!
//! One job per order, id = order id, payload = the order's [`StoredOrder`] record (the submit
//! function wrote it; each check rewrites it). Each run asks the provider once and then either
//! reschedules the same job with the updated record (still open: no new job, no worker slot held
//! while waiting, no extra Redis call: the record rides on the settle), records the first final
//! answer and fans out, or gives up: `unresolved` at the deadline, dead letters for permanent
//! errors (bad credentials, unknown payment, unreadable answers).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apalis::prelude::{AbortError, BoxDynError, Data};
use chrono::{DateTime, Utc};
use paywatch_core::store::{CheckState, OrderStore, StoreError, StoredOrder};
use paywatch_core::traces;
use paywatch_core::{
    CheckError, GiveUpReason, HistoryEntry, Observation, OrderId, PaymentStatus, PollDecision,
    PollPolicies, PollPolicy, PollState, Provider, ProviderClient,
};
use paywatch_queue::{JobInfo, Next};
use tracing::Instrument as _;

use crate::fanout::Fanout;
use crate::gate::{Admission, Gate, Ticket};
use crate::schedules::Schedules;

/// What the check handler needs, shared by all its runs.
#[derive(Debug, Clone)]
pub struct CheckContext {
    /// Provider adapters.
    pub providers: ProviderClient,
    /// The fleet-wide budgets and circuit breakers every provider call passes.
    pub gate: Gate,
    /// Poll policies per provider.
    pub policies: PollPolicies,
    /// Adaptive plans per provider, and the history they learn from.
    pub schedules: Schedules,
    /// Orders (final records, through the function library).
    pub store: OrderStore,
    /// Notifier queues.
    pub fanout: Fanout,
    /// Providers whose credentials were already reported as rejected (log once, not per job).
    pub rejected: Arc<Mutex<HashSet<Provider>>>,
    /// Redis, for the ops channel's events.
    pub conn: paywatch_queue::RedisConn,
    /// Key prefix.
    pub prefix: String,
}

/// Checks one order's payment once and decides what comes next: [`Run::admit`] (the gate),
/// [`Run::ask`] (the provider, and the schedule's decision), then [`Run::reschedule`],
/// [`Run::settle`] or [`Run::unresolved`] (both end in [`Run::finish`]), or [`Run::give_up`].
///
/// Each run is a span: the order's first check continues the order's trace (its submit);
/// every later run starts a short trace linked to it ([`paywatch_core::traces`]).
pub async fn check_payment(
    record: StoredOrder,
    job: JobInfo,
    ctx: Data<Arc<CheckContext>>,
) -> Result<Next<StoredOrder>, BoxDynError> {
    let span = check_span(&record, &job);
    run_check(record, job, ctx).instrument(span).await
}

/// The span of one check run, as the messaging conventions name a consumer's processing.
fn check_span(record: &StoredOrder, job: &JobInfo) -> tracing::Span {
    let span = tracing::info_span!("check", otel.name = "process check-payment", otel.kind = "consumer", order = %job.id, provider = %record.provider, attempt = job.attempt);
    let order_trace = record.traceparent.as_deref();
    if record.state.is_none() {
        traces::continue_order(&span, order_trace);
    } else {
        traces::link_order(&span, order_trace);
    }
    traces::set_attributes(
        &span,
        [
            ("messaging.system", "redis".into()),
            ("messaging.operation.type", "process".into()),
            ("messaging.operation.name", "process".into()),
            ("messaging.destination.name", "check-payment".into()),
            ("messaging.message.id", job.id.to_string().into()),
        ],
    );
    span
}

/// A client span around one Redis call of a check (the gate's scripts).
fn redis_span(operation: &'static str) -> tracing::Span {
    let span = tracing::info_span!("redis", otel.name = operation, otel.kind = "client");
    traces::set_attributes(
        &span,
        [
            ("db.system.name", "redis".into()),
            ("db.operation.name", operation.into()),
        ],
    );
    span
}

async fn run_check(
    record: StoredOrder,
    job: JobInfo,
    ctx: Data<Arc<CheckContext>>,
) -> Result<Next<StoredOrder>, BoxDynError> {
    // The lateness the queue recorded when it leased this job, remembered with this trace.
    paywatch_core::exemplars::observe(
        paywatch_queue::metrics::LATENESS_SECONDS,
        &[("queue", &job.queue)],
        job.leased_ms.saturating_sub(job.due_ms) as f64 / 1000.0,
    );
    let mut run = Run::new(&ctx, record, &job)?;
    let ticket = match run.admit().await? {
        Admission::Go(ticket) => ticket,
        Admission::Wait { after, .. } => return Ok(Next::After(after)),
    };
    // Boxed, like `finish` below: the provider call's future is the largest this one would
    // hold, and apalis moves a job's whole future several times while it wraps and runs it.
    let checked = Box::pin(run.ask(ticket)).await?;
    match checked.decision {
        PollDecision::CheckAgainIn(delay) => Ok(run.reschedule(checked, delay)),
        PollDecision::Terminal(status) => Box::pin(run.settle(checked, status)).await,
        PollDecision::GiveUp(GiveUpReason::Deadline) => Box::pin(run.unresolved(checked)).await,
        PollDecision::GiveUp(reason) => Err(run.give_up(&checked, reason)),
    }
}

/// One run of the handler: the order, its poll state and what the run shares with all others.
struct Run<'a> {
    ctx: &'a CheckContext,
    order_id: OrderId,
    attempt: u32,
    provider: Provider,
    policy: PollPolicy,
    /// The order's record, without its state (taken out into `state` while the run works).
    record: StoredOrder,
    state: CheckState,
    /// Whether the order had no state yet: its first check.
    first: bool,
}

/// What one provider call answered, and what the schedule made of it.
struct Checked {
    result: Result<Observation, CheckError>,
    decision: PollDecision,
    /// The history entry of this check.
    entry: HistoryEntry,
    now: DateTime<Utc>,
    /// When the order was checked before this run (Unix ms, 0 for never).
    previous_check_ms: i64,
}

impl<'a> Run<'a> {
    fn new(
        ctx: &'a CheckContext,
        mut record: StoredOrder,
        job: &JobInfo,
    ) -> Result<Self, AbortError> {
        let order_id: OrderId = job
            .id
            .as_str()
            .parse()
            .map_err(|e| AbortError::new(format!("job id is not an order id: {e}")))?;
        let provider = record.provider;
        let policy = ctx.policies.for_provider(provider);
        let first = record.state.is_none();
        let state = record
            .state
            .take()
            .unwrap_or_else(|| CheckState::new(PollState::new(&policy, record.created_at())));
        Ok(Self {
            ctx,
            order_id,
            attempt: job.attempt,
            provider,
            policy,
            record,
            state,
            first,
        })
    }

    /// Asks the gate for a provider call. A wait defers the check, it does not fail it: no
    /// provider call, no attempt, no change to the record.
    async fn admit(&self) -> Result<Admission, BoxDynError> {
        // Young orders (no check yet, or still in their fast phase) may use the budget's
        // reserve, so new payments are detected first when the budget is tight.
        let young = self.first
            || Utc::now()
                < self.state.poll.fast_since
                    + chrono::Duration::from_std(self.policy.fast_window)
                        .unwrap_or(chrono::TimeDelta::MAX);
        let admission = self
            .ctx
            .gate
            .admit(self.provider, young)
            .instrument(redis_span("EVALSHA gate admit"))
            .await?;
        if let Admission::Wait { after, hold } = admission {
            let provider = self.provider;
            metrics::counter!("paywatch_checks_deferred_total", "provider" => provider.as_str(), "reason" => hold.as_str()).increment(1);
            tracing::debug!(order = %self.order_id, provider = %provider, ?after, reason = hold.as_str(), "check deferred");
        }
        Ok(admission)
    }

    /// Calls the provider once, reports the outcome to the gate and lets the schedule decide.
    async fn ask(&mut self, ticket: Ticket) -> Result<Checked, BoxDynError> {
        let ctx = self.ctx;
        let provider = self.provider;
        // The provider call: a client span (its request duration's exemplar points here).
        let call = tracing::info_span!("provider", otel.name = "GET payment status", otel.kind = "client", provider = %provider);
        traces::set_attributes(
            &call,
            [
                ("http.request.method", "GET".into()),
                ("paywatch.provider", provider.as_str().into()),
            ],
        );
        let result = ctx
            .providers
            .check(provider, &self.record.payment_id)
            .instrument(call.clone())
            .await;
        let outcome: &'static str = match &result {
            Ok(o) => o.status.as_str(),
            Err(e) => e.kind(),
        };
        traces::set_attributes(&call, [("paywatch.outcome", outcome.into())]);
        if result.is_err() {
            traces::set_attributes(&call, [("error.type", outcome.into())]);
        }
        drop(call);
        ctx.gate
            .report(ticket, matches!(result, Err(CheckError::Transient(_))))
            .instrument(redis_span("EVALSHA gate report"))
            .await?;
        let now = Utc::now();
        let previous_check_ms =
            std::mem::replace(&mut self.state.last_checked_ms, now.timestamp_millis());
        let decision = ctx.schedules.decide(
            provider,
            &self.policy,
            &mut self.state.poll,
            result.as_ref(),
            now,
        );
        count_check(provider, &result);
        let mut entry = history_entry(&result, &decision, now);
        entry.check = self.state.poll.checks;
        tracing::debug!(order = %self.order_id, provider = %provider, attempt = self.attempt, decision = %entry.decision, "checked");
        Ok(Checked {
            result,
            decision,
            entry,
            now,
            previous_check_ms,
        })
    }

    /// Still open: the same job again after `delay`, its record updated (the history keeps
    /// changes, not every unchanged answer, so a pending order polled a hundred times stays a
    /// small record).
    fn reschedule(mut self, checked: Checked, delay: Duration) -> Next<StoredOrder> {
        let state = &mut self.state;
        let changed = match &checked.result {
            Ok(o) => {
                let changed = state.status != o.status
                    || state.raw_status.as_deref() != Some(o.raw_status.as_str())
                    || state.last_error.is_some();
                state.status = o.status;
                state.raw_status = Some(o.raw_status.clone());
                state.last_error = None;
                changed
            }
            Err(e) => {
                let error = e.to_string();
                let changed = state.last_error.as_deref() != Some(error.as_str());
                state.last_error = Some(error);
                changed
            }
        };
        if changed || state.history.is_empty() {
            state.remember(checked.entry);
        }
        self.record.state = Some(self.state);
        Next::Reschedule {
            after: delay,
            args: self.record,
        }
    }

    /// A final answer from the provider: its details join the state, the detection lag and the
    /// time to final are measured, and [`Run::finish`] records it.
    async fn settle(
        mut self,
        checked: Checked,
        status: PaymentStatus,
    ) -> Result<Next<StoredOrder>, BoxDynError> {
        if let Ok(o) = &checked.result {
            self.state.raw_status = Some(o.raw_status.clone());
            self.state.detail = o.detail.clone();
            self.state.delivered_codes = o.delivered_codes.clone();
        }
        let created = self.record.created_at();
        crate::metrics::detection_lag(
            self.provider,
            status,
            checked.previous_check_ms,
            created,
            checked.now,
        );
        let took = crate::schedules::settled_after(checked.previous_check_ms, created, checked.now);
        self.finish(checked, status, took).await
    }

    /// The deadline passed without a final answer: recorded as `unresolved`.
    async fn unresolved(self, checked: Checked) -> Result<Next<StoredOrder>, BoxDynError> {
        let took = (checked.now - self.record.created_at())
            .to_std()
            .unwrap_or_default();
        self.finish(checked, PaymentStatus::Unresolved, took).await
    }

    /// A permanent error: the job goes to the dead letters, saying why.
    fn give_up(&self, checked: &Checked, reason: GiveUpReason) -> BoxDynError {
        let provider = self.provider;
        let error = checked
            .result
            .as_ref()
            .err()
            .map(ToString::to_string)
            .unwrap_or_else(|| format!("{reason:?}"));
        if let Err(CheckError::Unauthorized(_)) = &checked.result {
            report_rejected_credentials(self.ctx, provider, &error);
        }
        let why = match reason {
            GiveUpReason::NotFound => format!(
                "{} does not know payment {} (checked {} times): {error}",
                provider, self.record.payment_id, self.state.poll.not_found_in_row
            ),
            _ => format!("{provider}: {error}"),
        };
        Box::new(AbortError::new(why))
    }

    /// Records the final status (unless another run recorded one first) and fans out the
    /// notifications of whichever record holds, so every run announces the same thing. The run
    /// that records it also adds it to the provider's history (`settled`: its time to final).
    async fn finish(
        mut self,
        checked: Checked,
        status: PaymentStatus,
        settled: Duration,
    ) -> Result<Next<StoredOrder>, BoxDynError> {
        let ctx = self.ctx;
        let order_id = &self.order_id;
        let now = checked.now;
        self.state.status = status;
        self.state.final_at = Some(now);
        self.state.last_error = None;
        self.state.remember(checked.entry);
        let mut record = self.record;
        record.state = Some(self.state);
        let provider = record.provider;
        // On one Redis without durable mode the record, its history count and its notifications
        // are one call (one round trip); `announced` says they went out with it.
        let one_call = ctx.store.finalizes_in_one_call();
        let (holds, announced) = if one_call {
            let (key, field) = ctx.schedules.history_count(provider, status, settled);
            ctx.fanout
                .finalize(&ctx.store, order_id, record, (&key, &field))
                .await?
        } else {
            (ctx.store.finalize(order_id, &record).await?, false)
        };
        // Durable mode: nothing announces the transition until the replicas have it, so a
        // failover cannot promote a replica that lacks a transition whose notifications went out.
        if !announced {
            wait_durable(ctx, order_id).await?;
        }
        let won = holds.state.as_ref().and_then(|s| s.final_at) == Some(now);
        if won {
            let took = (now - holds.created_at())
                .to_std()
                .unwrap_or(Duration::ZERO);
            crate::metrics::order_final(
                provider,
                status,
                took,
                holds.state.as_ref().map_or(0, |s| s.poll.checks),
            );
            tracing::info!(order = %order_id, provider = %provider, status = %status, after = ?took, "payment settled");
            if status == PaymentStatus::Unresolved {
                crate::ops::record_unresolved(
                    &ctx.conn,
                    &ctx.prefix,
                    &holds.spec(order_id.clone()),
                )
                .await?;
            }
        } else {
            tracing::debug!(order = %order_id, holds = %holds.status(), "final status already recorded");
        }
        if announced {
            return Ok(Next::Done);
        }
        // The history entry and the notifications go out together (one write on the shared
        // connection). History only: its failure must not re-run a check whose status is
        // recorded. Where the one call is used, the run that wrote the record counted it there
        // (a record of ours that holds here is from an earlier try whose reply was lost).
        let history = async {
            if won
                && !one_call
                && let Err(e) = ctx
                    .schedules
                    .record(&ctx.conn, provider, status, settled)
                    .await
            {
                tracing::warn!(provider = %provider, error = %e, "could not add the order to the poll history");
            }
        };
        let ((), sent) = tokio::join!(history, ctx.fanout.send(order_id, &holds));
        sent?;
        // Durable mode: the notifications must be on the replicas before this check job is
        // completed. Otherwise a failover could keep the completion (retried on the new primary)
        // and lose the enqueue before it: a final order with no notification left to send.
        wait_durable(ctx, order_id).await?;
        Ok(Next::Done)
    }
}

/// Waits until the order's final record is as durable as configured (at once without durable
/// mode), asking again after each timeout. The job keeps its lease meanwhile (the queue extends
/// it), and the run that recorded the status stays the one that announces it.
async fn wait_durable(ctx: &CheckContext, order_id: &OrderId) -> Result<(), StoreError> {
    let mut warned = false;
    loop {
        match ctx.store.wait_final_durable(order_id).await {
            Ok(()) => return Ok(()),
            // WAIT already waited its timeout: ask again at once.
            Err(e) if e.is_not_durable() => {
                if !std::mem::replace(&mut warned, true) {
                    tracing::warn!(order = %order_id, error = %e, "final status recorded but not yet on the replicas; its notifications wait until it is");
                }
            }
            Err(e) => return Err(e),
        }
    }
}

fn report_rejected_credentials(ctx: &CheckContext, provider: Provider, error: &str) {
    let first = ctx
        .rejected
        .lock()
        .map(|mut seen| seen.insert(provider))
        .unwrap_or(true);
    if first {
        tracing::error!(provider = %provider, error = %error, "provider rejected our credentials; its checks are dead-lettered until the credentials are fixed");
    }
}

fn count_check(provider: Provider, result: &Result<Observation, CheckError>) {
    // Static labels: no allocation per check.
    let outcome = match result {
        Ok(o) => o.status.as_str(),
        Err(e) => e.kind(),
    };
    metrics::counter!(crate::metrics::CHECKS_TOTAL, "provider" => provider.as_str(), "outcome" => outcome).increment(1);
    crate::health::provider_call(provider, matches!(result, Err(CheckError::Transient(_))));
}

fn history_entry(
    result: &Result<Observation, CheckError>,
    decision: &PollDecision,
    now: DateTime<Utc>,
) -> HistoryEntry {
    let decision = match decision {
        PollDecision::CheckAgainIn(d) => format!("check again in {}ms", d.as_millis()),
        PollDecision::Terminal(s) => format!("terminal: {s}"),
        PollDecision::GiveUp(GiveUpReason::Deadline) => {
            "gave up at the deadline: unresolved".into()
        }
        PollDecision::GiveUp(r) => format!("gave up: {r:?}"),
    };
    match result {
        Ok(o) => HistoryEntry {
            at: now,
            status: Some(o.status),
            raw_status: Some(o.raw_status.clone()),
            detail: o.detail.clone(),
            error: None,
            decision,
            check: 0,
        },
        Err(e) => HistoryEntry {
            at: now,
            status: None,
            raw_status: None,
            detail: None,
            error: Some(format!("{}: {e}", e.kind())),
            decision,
            check: 0,
        },
    }
}
