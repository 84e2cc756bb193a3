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
use paywatch_core::{
    CheckError, GiveUpReason, HistoryEntry, Observation, OrderId, PaymentStatus, PollDecision,
    PollPolicies, PollState, Provider, ProviderClient,
};
use paywatch_queue::{JobInfo, Next};

use crate::fanout::Fanout;
use crate::gate::{Admission, Gate};
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

/// Checks one order's payment once and decides what comes next.
#[tracing::instrument(name = "check", skip_all, fields(order = %job.id, provider = %record.provider, attempt = job.attempt))]
pub async fn check_payment(
    mut record: StoredOrder,
    job: JobInfo,
    ctx: Data<Arc<CheckContext>>,
) -> Result<Next<StoredOrder>, BoxDynError> {
    let ctx: &CheckContext = &ctx;
    let order_id: OrderId = job
        .id
        .as_str()
        .parse()
        .map_err(|e| AbortError::new(format!("job id is not an order id: {e}")))?;
    let provider = record.provider;
    let policy = ctx.policies.for_provider(provider);
    // Young orders (no check yet, or still in their fast phase) may use the budget's reserve, so
    // new payments are detected first when the budget is tight.
    let young = record.state.as_ref().is_none_or(|s| {
        Utc::now()
            < s.poll.fast_since
                + chrono::Duration::from_std(policy.fast_window).unwrap_or(chrono::TimeDelta::MAX)
    });
    let ticket = match ctx.gate.admit(provider, young).await? {
        Admission::Go(ticket) => ticket,
        Admission::Wait { after, hold } => {
            // Deferred, not failed: no provider call, no attempt, no change to the record.
            metrics::counter!("paywatch_checks_deferred_total", "provider" => provider.as_str(), "reason" => hold.as_str()).increment(1);
            tracing::debug!(order = %order_id, provider = %provider, ?after, reason = hold.as_str(), "check deferred");
            return Ok(Next::After(after));
        }
    };
    let mut state = record
        .state
        .take()
        .unwrap_or_else(|| CheckState::new(PollState::new(&policy, record.created_at())));
    // Boxed, like `finish` below: the provider call's future is the largest this one would
    // hold, and apalis moves a job's whole future several times while it wraps and runs it.
    let result = Box::pin(ctx.providers.check(provider, &record.payment_id)).await;
    ctx.gate
        .report(ticket, matches!(result, Err(CheckError::Transient(_))))
        .await?;
    let now = Utc::now();
    let previous_check_ms = std::mem::replace(&mut state.last_checked_ms, now.timestamp_millis());
    let decision = ctx
        .schedules
        .decide(provider, &policy, &mut state.poll, result.as_ref(), now);
    count_check(provider, &result);
    let mut entry = history_entry(&result, &decision, now);
    entry.check = state.poll.checks;
    tracing::debug!(order = %order_id, provider = %provider, attempt = job.attempt, decision = %entry.decision, "checked");

    match decision {
        PollDecision::CheckAgainIn(delay) => {
            let changed = match &result {
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
            // The history keeps changes, not every unchanged answer: a pending order polled a
            // hundred times stays a small record.
            if changed || state.history.is_empty() {
                state.remember(entry);
            }
            record.state = Some(state);
            Ok(Next::Reschedule {
                after: delay,
                args: record,
            })
        }
        PollDecision::Terminal(status) => {
            if let Ok(o) = &result {
                state.raw_status = Some(o.raw_status.clone());
                state.detail = o.detail.clone();
                state.delivered_codes = o.delivered_codes.clone();
            }
            crate::metrics::detection_lag(
                provider,
                status,
                previous_check_ms,
                record.created_at(),
                now,
            );
            let took = crate::schedules::settled_after(previous_check_ms, record.created_at(), now);
            Box::pin(finish(
                ctx, &order_id, record, state, status, entry, now, took,
            ))
            .await
        }
        PollDecision::GiveUp(GiveUpReason::Deadline) => {
            let took = (now - record.created_at()).to_std().unwrap_or_default();
            Box::pin(finish(
                ctx,
                &order_id,
                record,
                state,
                PaymentStatus::Unresolved,
                entry,
                now,
                took,
            ))
            .await
        }
        PollDecision::GiveUp(reason) => {
            let error = result
                .as_ref()
                .err()
                .map(ToString::to_string)
                .unwrap_or_else(|| format!("{reason:?}"));
            if let Err(CheckError::Unauthorized(_)) = &result {
                report_rejected_credentials(ctx, provider, &error);
            }
            let why = match reason {
                GiveUpReason::NotFound => format!(
                    "{} does not know payment {} (checked {} times): {error}",
                    provider, record.payment_id, state.poll.not_found_in_row
                ),
                _ => format!("{provider}: {error}"),
            };
            Err(Box::new(AbortError::new(why)))
        }
    }
}

/// Records the final status (unless another run recorded one first) and fans out the
/// notifications of whichever record holds, so every run announces the same thing. The run
/// that records it also adds it to the provider's history (`took`: its time to final).
#[allow(clippy::too_many_arguments)]
async fn finish(
    ctx: &CheckContext,
    order_id: &OrderId,
    mut record: StoredOrder,
    mut state: CheckState,
    status: PaymentStatus,
    entry: HistoryEntry,
    now: DateTime<Utc>,
    settled: Duration,
) -> Result<Next<StoredOrder>, BoxDynError> {
    state.status = status;
    state.final_at = Some(now);
    state.last_error = None;
    state.remember(entry);
    record.state = Some(state);
    let holds = ctx.store.finalize(order_id, &record).await?;
    // Durable mode: nothing announces the transition until the replicas have it, so a failover
    // cannot promote a replica that lacks a transition whose notifications went out.
    wait_durable(ctx, order_id).await?;
    let won = holds.state.as_ref().and_then(|s| s.final_at) == Some(now);
    let provider = record.provider;
    if won {
        let took = (now - record.created_at())
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
            crate::ops::record_unresolved(&ctx.conn, &ctx.prefix, &holds.spec(order_id.clone()))
                .await?;
        }
    } else {
        tracing::debug!(order = %order_id, holds = %holds.status(), "final status already recorded");
    }
    // The history entry and the notifications go out together (one write on the shared
    // connection). History only: its failure must not re-run a check whose status is recorded.
    let history = async {
        if won
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
    Ok(Next::Done)
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
