//! Leasing jobs: a worker's fetch loop and the per-worker state the backend keeps between polls.
//!
//! A fetch never fails: Redis errors back off and try again. After an outage, a fetch first
//! brings this process's settles and leases up to date (see [`Shared::resync`]): otherwise it
//! could reclaim a job whose lease expired during the outage while the job's own settle was
//! still waiting to be written, and run it a second time.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;

use crate::backoff::Backoff;
use crate::shared::Shared;
use crate::{scripts, wake};

/// The first wait before fetching again after Redis failed a fetch.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);

/// A job leased by one fetch, not yet handed to apalis.
#[derive(Debug)]
pub(crate) struct Leased {
    /// The job id.
    pub(crate) id: String,
    /// The payload as stored (decoded by the backend).
    pub(crate) payload: String,
    /// Runs of the current step, this one included.
    pub(crate) attempts: u32,
    /// When it fell due, Unix ms by the Redis clock.
    pub(crate) due_ms: u64,
    /// When it was leased, Unix ms by the Redis clock.
    pub(crate) leased_ms: u64,
    /// The lease token its settle must present.
    pub(crate) token: String,
}

/// Per-worker state of a queue handle used as a backend.
pub(crate) struct WorkerState {
    /// Leased jobs not yet handed to apalis.
    pub(crate) buffer: VecDeque<Leased>,
    /// The fetch under way, if any (it may be sleeping until something is due).
    pub(crate) fetch: Option<BoxFuture<'static, Vec<Leased>>>,
    /// Set while the fetch future has a request in flight (dropping it then would strand leases).
    pub(crate) requesting: Arc<AtomicBool>,
    /// Handing back unstarted leases and flushing settles at shutdown.
    pub(crate) closing: Option<BoxFuture<'static, ()>>,
}

impl WorkerState {
    /// A worker that has fetched nothing yet.
    pub(crate) fn new() -> Self {
        Self {
            buffer: VecDeque::new(),
            fetch: None,
            requesting: Arc::new(AtomicBool::new(false)),
            closing: None,
        }
    }
}

/// Leases the next batch, waiting as long as nothing is due. Never fails: errors back off.
pub(crate) async fn next_batch(shared: Arc<Shared>, requesting: Arc<AtomicBool>) -> Vec<Leased> {
    let config = &shared.config;
    let mut wait: Option<Duration> = None;
    let mut error_backoff = Backoff::new(FIRST_RETRY_DELAY);
    loop {
        if let Some(d) = wait {
            wake::idle_wait(&shared.wakeup, d).await;
        }
        // Redis was away: settles this process still owes and leases it still holds go first,
        // or this fetch could reclaim (and re-run) our own jobs whose leases lapsed meanwhile.
        if let Some(outages) = shared.needs_resync()
            && !shared.resync(outages).await
        {
            wait = Some(error_backoff.next_delay());
            continue;
        }
        // Durable settles: what this process finished must be on the replicas before it takes
        // more work (the flush answers once the settler's wait for them is over).
        if config.durable_settles.is_some() {
            shared.flush().await;
        }
        let token = config.lease_token();
        requesting.store(true, Ordering::SeqCst);
        let result = fetch(&shared, &token).await;
        shared.observe("fetch", &result);
        match result {
            Ok(batch) => {
                requesting.store(false, Ordering::SeqCst);
                error_backoff.reset();
                if batch.reclaimed > 0 {
                    metrics::counter!(crate::metrics::LEASES_RECLAIMED_TOTAL, "queue" => config.name.clone()).increment(batch.reclaimed);
                    tracing::info!(queue = %config.name, jobs = batch.reclaimed, "reclaimed jobs whose lease expired");
                }
                if !batch.jobs.is_empty() {
                    return batch.jobs;
                }
                // Sleep until the earliest due job or lease expiry, judged by the Redis clock.
                let mut ms = config.idle_poll.as_millis() as i64;
                for at in [batch.next_due, batch.lease_head] {
                    if at >= 0 {
                        ms = ms.min((at - batch.now).max(1));
                    }
                }
                wait = Some(Duration::from_millis(ms.max(1) as u64));
            }
            Err(_) => {
                // The script may have run before the connection broke; those leases expire.
                requesting.store(false, Ordering::SeqCst);
                wait = Some(error_backoff.next_delay());
            }
        }
    }
}

/// One fetch script's reply.
struct Fetched {
    now: i64,
    next_due: i64,
    lease_head: i64,
    reclaimed: u64,
    jobs: Vec<Leased>,
}

/// Reclaims expired leases, then leases up to a batch of due jobs under `token`.
///
/// Durable mode: the fetch runs on a connection of its own, followed on that same connection by
/// `WAIT` (and `WAITAOF`) until the replicas have the leases, before any job runs. So after a
/// failover the new primary knows the jobs are this process's and its settles apply there
/// (nothing is sent twice). A `WAIT` proves something only about writes to the server it runs
/// on: when the connection breaks the jobs are not run (their leases, if they survived, lapse
/// and the jobs are fetched again).
async fn fetch(shared: &Shared, token: &str) -> Result<Fetched, redis::RedisError> {
    let Some(durable) = shared.config.durable_settles else {
        let mut conn = shared.conn.clone();
        return fetch_on(shared, &mut conn, token).await;
    };
    let mut slot = shared.durable_fetch.lock().await;
    let conn = match &mut *slot {
        Some(conn) => conn,
        None => {
            let opened = shared
                .client
                .exclusive(durable.timeout + Duration::from_secs(5))
                .await
                .ok_or_else(|| {
                    redis::RedisError::from((
                        redis::ErrorKind::InvalidClientConfig,
                        "durable fetches need one primary (a single server or Sentinel), not a Cluster",
                    ))
                })??;
            slot.insert(opened)
        }
    };
    let result = async {
        let fetched = fetch_on(shared, conn, token).await?;
        if !fetched.jobs.is_empty()
            && let Err(e) = wait_replicas(shared, conn, durable).await
        {
            // Not run, so not held: nothing extends or settles these leases.
            let mut held = shared.held();
            for job in &fetched.jobs {
                if held.get(&job.id) == Some(&job.token) {
                    held.remove(&job.id);
                }
            }
            drop(held);
            tracing::warn!(queue = %shared.config.name, jobs = fetched.jobs.len(), error = %e, "fetched jobs are not known to be on the replicas (the connection broke): running none of them");
            return Err(e);
        }
        Ok(fetched)
    }
    .await;
    if result.is_err() {
        // Broken or refused: a fresh connection (to whichever primary there is) next time.
        *slot = None;
    }
    result
}

/// `WAIT` (and `WAITAOF` where asked and supported) on `conn` until `durable` is met; a shortfall
/// is asked again on the same connection, an error ends it (the caller runs nothing).
async fn wait_replicas(
    shared: &Shared,
    conn: &mut redis::aio::MultiplexedConnection,
    durable: crate::DurableSettles,
) -> Result<(), redis::RedisError> {
    let timeout_ms = u64::try_from(durable.timeout.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    let mut warned = false;
    loop {
        let acked: u32 = redis::cmd("WAIT")
            .arg(durable.replicas)
            .arg(timeout_ms)
            .query_async(conn)
            .await?;
        let fsynced = if durable.local_fsync {
            let reply: redis::RedisResult<(u32, u32)> = redis::cmd("WAITAOF")
                .arg(1)
                .arg(0)
                .arg(timeout_ms)
                .query_async(conn)
                .await;
            match reply {
                Ok((local, _)) => local >= 1,
                // No WAITAOF before Redis 7.2: replicas only, as the settles do.
                Err(e)
                    if e.to_string()
                        .to_ascii_lowercase()
                        .contains("unknown command") =>
                {
                    true
                }
                Err(e) => return Err(e),
            }
        } else {
            true
        };
        if acked >= durable.replicas && fsynced {
            return Ok(());
        }
        if !std::mem::replace(&mut warned, true) {
            tracing::warn!(queue = %shared.config.name, acked, wanted = durable.replicas, "fetched jobs are not on the replicas yet; running none of them until they are");
        }
    }
}

/// The fetch script on `conn`; records the leases it took as held.
async fn fetch_on<C: redis::aio::ConnectionLike>(
    shared: &Shared,
    conn: &mut C,
    token: &str,
) -> Result<Fetched, redis::RedisError> {
    let keys = &shared.keys;
    let config = &shared.config;
    let (now, next_due, lease_head, reclaimed, flat): (i64, i64, i64, u64, Vec<redis::Value>) =
        scripts::FETCH
            .key(&keys.jobs)
            .key(&keys.due)
            .key(&keys.leases)
            .key(&keys.tokens)
            .key(&keys.attempts)
            .arg(config.batch_size)
            .arg(config.lease.as_millis() as u64)
            .arg(token)
            .arg(config.reclaim_limit)
            .invoke_async(conn)
            .await?;
    let mut jobs = Vec::with_capacity(flat.len() / 4);
    let mut held = shared.held();
    for quad in flat.chunks_exact(4) {
        let id: String = redis::from_redis_value_ref(&quad[0])?;
        // Bytes, not String: a payload that is not UTF-8 must reach the dead letters, not fail
        // the whole fetch.
        let payload: Vec<u8> = redis::from_redis_value_ref(&quad[1])?;
        let attempts: u32 = redis::from_redis_value_ref(&quad[2])?;
        let due_ms: u64 = redis::from_redis_value_ref(&quad[3])?;
        held.insert(id.clone(), token.to_string());
        jobs.push(Leased {
            id,
            payload: String::from_utf8_lossy(&payload).into_owned(),
            attempts,
            due_ms,
            leased_ms: now.max(0) as u64,
            token: token.to_string(),
        });
    }
    drop(held);
    if !jobs.is_empty() {
        let queue = config.name.clone();
        metrics::counter!(crate::metrics::JOBS_FETCHED_TOTAL, "queue" => queue.clone())
            .increment(jobs.len() as u64);
        let lateness = metrics::histogram!(crate::metrics::LATENESS_SECONDS, "queue" => queue);
        for job in &jobs {
            lateness.record((now as f64 - job.due_ms as f64).max(0.0) / 1000.0);
        }
    }
    Ok(Fetched {
        now,
        next_due,
        lease_head,
        reclaimed,
        jobs,
    })
}
