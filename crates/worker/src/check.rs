//! The check-payment handler.
//!
//! One job per order, id = order id, arguments = the immutable [`OrderSpec`]. Each run asks the
//! provider once and then either reschedules the same job (still open: no new job, no worker slot
//! held while waiting), records the first terminal transition and fans out, or gives up:
//! `unresolved` at the deadline, dead letters for permanent errors (bad credentials, unknown
//! payment, unreadable answers).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apalis::prelude::{AbortError, BoxDynError, Data};
use chrono::{DateTime, Utc};
use paywatch_core::store::{OrderRecord, OrderSpec, OrderStore};
use paywatch_core::{
    CheckError, GiveUpReason, HistoryEntry, Observation, PaymentStatus, PollDecision, PollPolicies,
    PollState, Provider, ProviderClient,
};
use paywatch_queue::{JobInfo, Next};

use crate::fanout::Fanout;

/// What the check handler needs, shared by all its runs.
#[derive(Debug, Clone)]
pub struct CheckContext {
    /// Provider adapters.
    pub providers: ProviderClient,
    /// Poll policies per provider.
    pub policies: PollPolicies,
    /// Order records.
    pub store: OrderStore,
    /// Notifier queues.
    pub fanout: Fanout,
    /// Providers whose credentials were already reported as rejected (log once, not per job).
    pub rejected: Arc<Mutex<HashSet<Provider>>>,
    /// Redis, for the ops channel's events.
    pub conn: redis::aio::ConnectionManager,
    /// Key prefix.
    pub prefix: String,
}

/// Checks one order's payment once and decides what comes next.
#[tracing::instrument(name = "check", skip_all, fields(order = %spec.order_id, provider = %spec.provider, attempt = job.attempt))]
pub async fn check_payment(
    spec: OrderSpec,
    job: JobInfo,
    ctx: Data<CheckContext>,
) -> Result<Next<OrderSpec>, BoxDynError> {
    let ctx: &CheckContext = &ctx;
    let order_id = &spec.order_id;
    let record = load_or_create(ctx, &spec).await?;
    if record.status.is_final() {
        // Another run (or a webhook-triggered check) got here first; finish its fan-out if it
        // died before doing so.
        finish(ctx, &spec).await?;
        return Ok(Next::Done);
    }
    let policy = ctx.policies.for_provider(spec.provider);
    let mut state = record
        .poll
        .clone()
        .unwrap_or_else(|| PollState::new(&policy, record.created_at));
    let result = ctx.providers.check(spec.provider, &spec.payment_id).await;
    let now = Utc::now();
    let decision = policy.next(&mut state, result.as_ref(), now);
    count_check(spec.provider, &result);
    let entry = history_entry(&result, &decision, now);
    tracing::debug!(order = %order_id, provider = %spec.provider, attempt = job.attempt, decision = %entry.decision, "checked");

    match decision {
        PollDecision::CheckAgainIn(delay) => {
            let last_error = result.as_ref().err().map(ToString::to_string);
            let next_at = now + chrono::Duration::from_std(delay).unwrap_or_default();
            let open = ctx
                .store
                .observe(
                    order_id,
                    &state,
                    Some(next_at),
                    &entry,
                    last_error.as_deref(),
                )
                .await?;
            if !open {
                finish(ctx, &spec).await?;
                return Ok(Next::Done);
            }
            // The arguments never change: the poll state lives in the order record.
            Ok(Next::After(delay))
        }
        PollDecision::Terminal(status) => {
            let codes = result
                .as_ref()
                .map(|o| o.delivered_codes.clone())
                .unwrap_or_default();
            terminate(ctx, &spec, status, &entry, &codes, &record.created_at).await?;
            Ok(Next::Done)
        }
        PollDecision::GiveUp(GiveUpReason::Deadline) => {
            terminate(
                ctx,
                &spec,
                PaymentStatus::Unresolved,
                &entry,
                &[],
                &record.created_at,
            )
            .await?;
            Ok(Next::Done)
        }
        PollDecision::GiveUp(reason) => {
            let error = result
                .as_ref()
                .err()
                .map(ToString::to_string)
                .unwrap_or_else(|| format!("{reason:?}"));
            ctx.store
                .observe(order_id, &state, None, &entry, Some(&error))
                .await?;
            if let Err(CheckError::Unauthorized(_)) = &result {
                report_rejected_credentials(ctx, spec.provider, &error);
            }
            let why = match reason {
                GiveUpReason::NotFound => format!(
                    "{} does not know payment {} (checked {} times): {error}",
                    spec.provider, spec.payment_id, state.not_found_in_row
                ),
                _ => format!("{}: {error}", spec.provider),
            };
            Err(Box::new(AbortError::new(why)))
        }
    }
}

async fn load_or_create(ctx: &CheckContext, spec: &OrderSpec) -> Result<OrderRecord, BoxDynError> {
    if let Some(record) = ctx.store.get(&spec.order_id).await? {
        return Ok(record);
    }
    // A job enqueued straight into Redis (any language, one command) has no record yet.
    ctx.store.create(spec, Utc::now()).await?;
    ctx.store
        .get(&spec.order_id)
        .await?
        .ok_or_else(|| format!("order {} vanished while being created", spec.order_id).into())
}

async fn terminate(
    ctx: &CheckContext,
    spec: &OrderSpec,
    status: PaymentStatus,
    entry: &HistoryEntry,
    codes: &[String],
    created_at: &DateTime<Utc>,
) -> Result<(), BoxDynError> {
    let (won, holds) = ctx
        .store
        .transition(&spec.order_id, status, entry, codes)
        .await?;
    if won {
        let took = (Utc::now() - *created_at)
            .to_std()
            .unwrap_or(Duration::ZERO);
        crate::metrics::order_final(&ctx.store, spec, status, *created_at).await;
        tracing::info!(order = %spec.order_id, provider = %spec.provider, status = %status, after = ?took, "payment settled");
        if status == PaymentStatus::Unresolved {
            crate::ops::record_unresolved(&ctx.conn, &ctx.prefix, spec).await?;
        }
    } else {
        tracing::debug!(order = %spec.order_id, holds = %holds, "terminal status already recorded");
    }
    finish(ctx, spec).await
}

/// Enqueues the terminal status's notifications unless that was done already.
async fn finish(ctx: &CheckContext, spec: &OrderSpec) -> Result<(), BoxDynError> {
    let Some(record) = ctx.store.get(&spec.order_id).await? else {
        return Ok(());
    };
    if record.notified || !record.status.is_final() {
        return Ok(());
    }
    ctx.fanout.send(&record).await?;
    ctx.store.mark_notified(&spec.order_id).await?;
    Ok(())
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
    let outcome = match result {
        Ok(o) => o.status.to_string(),
        Err(e) => e.kind().to_string(),
    };
    metrics::counter!(crate::metrics::CHECKS_TOTAL, "provider" => provider.to_string(), "outcome" => outcome).increment(1);
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
        },
        Err(e) => HistoryEntry {
            at: now,
            status: None,
            raw_status: None,
            detail: None,
            error: Some(format!("{}: {e}", e.kind())),
            decision,
        },
    }
}
