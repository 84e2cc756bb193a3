//! The queue's Prometheus metrics: every name in one place, described once, with the buckets of
//! its histograms. `docs/metrics.md` is the catalogue; dashboards and alerts in `deploy/` use
//! these names, and a test runs each of their queries against a real Prometheus.
//!
//! Labels are bounded: `queue` (paywatch has five), `state`, `outcome`, `reason`, `op`. Never a
//! job id.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Counter: jobs created by an enqueue (duplicates of an existing id are not counted).
pub const JOBS_ENQUEUED_TOTAL: &str = "paywatch_queue_jobs_enqueued_total";
/// Counter: jobs leased by a worker of this process.
pub const JOBS_FETCHED_TOTAL: &str = "paywatch_queue_jobs_fetched_total";
/// Counter: runs that completed their job.
pub const JOBS_COMPLETED_TOTAL: &str = "paywatch_queue_jobs_completed_total";
/// Counter: runs that rescheduled their job (e.g. a payment still pending).
pub const JOBS_RESCHEDULED_TOTAL: &str = "paywatch_queue_jobs_rescheduled_total";
/// Counter: failed runs scheduled to retry with backoff.
pub const JOBS_RETRIED_TOTAL: &str = "paywatch_queue_jobs_retried_total";
/// Counter: leases handed back unfinished at shutdown.
pub const JOBS_RELEASED_TOTAL: &str = "paywatch_queue_jobs_released_total";
/// Counter: jobs sent to the dead letters, by `reason` (`failed`, `crashed`, `poison`).
pub const JOBS_DEAD_LETTERED_TOTAL: &str = "paywatch_queue_jobs_dead_lettered_total";
/// Counter: settles ignored because the lease had been lost.
pub const STALE_SETTLES_TOTAL: &str = "paywatch_queue_stale_settles_total";
/// Counter: expired leases handed back to the queue by a fetch.
pub const LEASES_RECLAIMED_TOTAL: &str = "paywatch_queue_leases_reclaimed_total";
/// Counter: leases found lost while extending them.
pub const LEASES_LOST_TOTAL: &str = "paywatch_queue_leases_lost_total";
/// Counter: failed Redis calls, by `op`.
pub const REDIS_ERRORS_TOTAL: &str = "paywatch_queue_redis_errors_total";
/// Counter: Redis connections restored after a failure.
pub const REDIS_RECONNECTS_TOTAL: &str = "paywatch_queue_redis_reconnects_total";
/// Gauge: 1 while the last Redis call succeeded, 0 after a failure.
pub const REDIS_UP: &str = "paywatch_queue_redis_up";
/// Gauge: jobs per `state` (`due`, `scheduled`, `leased`, `dead`), read from Redis.
pub const JOBS: &str = "paywatch_queue_jobs";
/// Gauge: seconds until the earliest pending job falls due; negative while jobs wait.
pub const NEXT_DUE_SECONDS: &str = "paywatch_queue_next_due_seconds";
/// Histogram: seconds between a job's due time and its lease.
pub const LATENESS_SECONDS: &str = "paywatch_queue_lateness_seconds";
/// Histogram: seconds a handler ran.
pub const RUN_SECONDS: &str = "paywatch_queue_run_seconds";

/// `state` label values of [`JOBS`].
pub mod state {
    /// Due now, waiting for a worker.
    pub const DUE: &str = "due";
    /// Due later (delayed, rescheduled or waiting to retry).
    pub const SCHEDULED: &str = "scheduled";
    /// Leased by a worker.
    pub const LEASED: &str = "leased";
    /// In the dead letters.
    pub const DEAD: &str = "dead";
}

/// Lateness: a few ms is normal, seconds mean too few workers.
const LATENESS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];
/// Handler run time: provider calls and deliveries take milliseconds to tens of seconds.
const RUN_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The explicit buckets of this crate's histograms, for the exporter
/// (`PrometheusBuilder::set_buckets_for_metric`).
pub const BUCKETS: &[(&str, &[f64])] = &[
    (LATENESS_SECONDS, LATENESS_BUCKETS),
    (RUN_SECONDS, RUN_BUCKETS),
];

/// Registers help texts and units with the installed recorder.
pub fn describe() {
    describe_counter!(JOBS_ENQUEUED_TOTAL, "Jobs created by an enqueue");
    describe_counter!(JOBS_FETCHED_TOTAL, "Jobs leased by this process");
    describe_counter!(JOBS_COMPLETED_TOTAL, "Runs that completed their job");
    describe_counter!(JOBS_RESCHEDULED_TOTAL, "Runs that rescheduled their job");
    describe_counter!(JOBS_RETRIED_TOTAL, "Failed runs scheduled to retry");
    describe_counter!(
        JOBS_RELEASED_TOTAL,
        "Leases handed back unfinished at shutdown"
    );
    describe_counter!(
        JOBS_DEAD_LETTERED_TOTAL,
        "Jobs sent to the dead letters, by reason"
    );
    describe_counter!(
        STALE_SETTLES_TOTAL,
        "Settles ignored because the lease was lost"
    );
    describe_counter!(LEASES_RECLAIMED_TOTAL, "Expired leases handed back");
    describe_counter!(LEASES_LOST_TOTAL, "Leases found lost while extending");
    describe_counter!(REDIS_ERRORS_TOTAL, "Failed Redis calls, by operation");
    describe_counter!(
        REDIS_RECONNECTS_TOTAL,
        "Redis connections restored after a failure"
    );
    describe_gauge!(REDIS_UP, "1 while the last Redis call succeeded");
    describe_gauge!(JOBS, "Jobs per state (due, scheduled, leased, dead)");
    describe_gauge!(
        NEXT_DUE_SECONDS,
        Unit::Seconds,
        "Seconds until the earliest pending job falls due; negative while jobs wait, +Inf when none is pending"
    );
    describe_histogram!(
        LATENESS_SECONDS,
        Unit::Seconds,
        "Seconds between a job's due time and its lease"
    );
    describe_histogram!(RUN_SECONDS, Unit::Seconds, "Seconds a handler ran");
}

/// Creates a worker's counters of `queue` at zero, so that rates and alerts see 0 instead of
/// no data before the first event (a dead letter, a Redis error) ever happens.
pub(crate) fn register_worker(queue: &str) {
    let q = || queue.to_string();
    for name in [
        JOBS_FETCHED_TOTAL,
        JOBS_COMPLETED_TOTAL,
        JOBS_RESCHEDULED_TOTAL,
        JOBS_RETRIED_TOTAL,
        JOBS_RELEASED_TOTAL,
        STALE_SETTLES_TOTAL,
        LEASES_RECLAIMED_TOTAL,
        LEASES_LOST_TOTAL,
        REDIS_RECONNECTS_TOTAL,
    ] {
        metrics::counter!(name, "queue" => q()).increment(0);
    }
    for reason in ["failed", "crashed", "poison"] {
        metrics::counter!(JOBS_DEAD_LETTERED_TOTAL, "queue" => q(), "reason" => reason)
            .increment(0);
    }
    for op in ["fetch", "settle", "extend"] {
        metrics::counter!(REDIS_ERRORS_TOTAL, "queue" => q(), "op" => op).increment(0);
    }
}

/// Counts an applied settle under its outcome's counter.
pub(crate) fn settled(queue: &str, op: &'static str) {
    let name = match op {
        "complete" => JOBS_COMPLETED_TOTAL,
        "reschedule" => JOBS_RESCHEDULED_TOTAL,
        "retry" => JOBS_RETRIED_TOTAL,
        "release" => JOBS_RELEASED_TOTAL,
        // Dead letters are counted where their reason is known.
        _ => return,
    };
    metrics::counter!(name, "queue" => queue.to_string()).increment(1);
}

/// Counts `created` jobs that a script outside this crate put on `queue` (the submit door, the
/// one-call finalize), so the enqueue counter means the same whoever wrote the jobs.
pub fn enqueued_elsewhere(queue: &str, created: u64) {
    metrics::counter!(JOBS_ENQUEUED_TOTAL, "queue" => queue.to_string()).increment(created);
}

/// Counts a job sent to the dead letters.
pub(crate) fn dead_lettered(queue: &str, reason: &'static str) {
    metrics::counter!(JOBS_DEAD_LETTERED_TOTAL, "queue" => queue.to_string(), "reason" => reason)
        .increment(1);
}
