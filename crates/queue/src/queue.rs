//! The queue handle: producers enqueue through it, operators inspect it, and workers use it as
//! their apalis backend (see `backend.rs`).

use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::ConnectionManagerConfig;
use serde::{Deserialize, Serialize};

use crate::conn::{RedisConn, RedisEndpoint};
use crate::fetch::WorkerState;
use crate::job::{EnqueueOutcome, JobId, Schedule};
use crate::keys::Keys;
use crate::shared::Shared;
use crate::{QueueConfig, QueueError, lease, scripts};

/// Time allowed to open the shared connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for one reply: a script is bounded, so longer means the connection is dead.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Reconnect attempts the connection manager makes inside one call before the call fails (the
/// caller's own backoff takes over from there).
const CONNECT_RETRIES: usize = 2;
/// The longest pause between those reconnect attempts.
const MAX_CONNECT_RETRY_DELAY: Duration = Duration::from_millis(500);
/// Extra dead-letter index entries read past `limit`, to skip the ones sharing the cursor's
/// millisecond that were already reported.
const CURSOR_OVERLAP: usize = 64;

/// A typed handle on one queue whose jobs carry arguments `T` (JSON on the wire).
///
/// Cheap to clone. Each clone handed to `WorkerBuilder::backend` becomes an independent worker;
/// clones made in one process share one connection, one settle batcher and one wake-up listener.
pub struct RedisQueue<T> {
    pub(crate) shared: Arc<Shared>,
    /// Per-worker fetch state; a Mutex only so the handle is `Sync` (accessed through `&mut`).
    pub(crate) worker: Option<Mutex<WorkerState>>,
    _args: PhantomData<fn() -> T>,
}

impl<T> Clone for RedisQueue<T> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            worker: None,
            _args: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for RedisQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue")
            .field("queue", &self.shared.config.name)
            .field("prefix", &self.shared.config.prefix)
            .finish()
    }
}

/// Parses the dead-letter script's `{id, record, id, record, ...}` reply.
fn parse_dead_letters(reply: &[String]) -> Result<Vec<DeadLetter>, QueueError> {
    #[derive(Deserialize)]
    struct Record {
        payload: String,
        attempts: u64,
        error: String,
        at: u64,
    }
    reply
        .chunks_exact(2)
        .map(|pair| {
            let rec: Record = serde_json::from_str(&pair[1])
                .map_err(|e| QueueError::Protocol(format!("dead letter record: {e}")))?;
            Ok(DeadLetter {
                id: pair[0].clone(),
                payload: rec.payload,
                attempts: rec.attempts,
                error: rec.error,
                at: rec.at,
            })
        })
        .collect()
}

/// A job to enqueue: optional id (generated when absent), arguments and schedule.
#[derive(Debug, Clone)]
pub struct NewJob<T> {
    /// The job id; enqueue is idempotent on it. `None` generates a fresh id.
    pub id: Option<JobId>,
    /// The job's arguments.
    pub args: T,
    /// When it falls due.
    pub schedule: Schedule,
}

impl<T> NewJob<T> {
    /// A job due now with a generated id.
    pub fn new(args: T) -> Self {
        Self {
            id: None,
            args,
            schedule: Schedule::Now,
        }
    }

    /// Sets the job id.
    pub fn with_id(mut self, id: JobId) -> Self {
        self.id = Some(id);
        self
    }

    /// Sets the schedule.
    pub fn with_schedule(mut self, schedule: Schedule) -> Self {
        self.schedule = schedule;
        self
    }
}

/// What [`RedisQueue::promote`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Promoted {
    /// The job was scheduled for later and is due now.
    Now,
    /// The job was already due.
    AlreadyDue,
    /// The job is running; it will be due again as soon as this run reschedules it.
    AfterCurrentRun,
    /// No pending or running job has this id.
    NoSuchJob,
}

/// Counts per state of one queue, read atomically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStats {
    /// Jobs with a record (pending, leased or waiting to retry).
    pub total: u64,
    /// Due now, waiting for a worker.
    pub ready: u64,
    /// Due later (delayed, rescheduled or waiting to retry).
    pub scheduled: u64,
    /// Leased by a worker.
    pub active: u64,
    /// In the dead letters.
    pub dead: u64,
    /// Lifetime: runs that completed their job.
    pub completed: u64,
    /// Lifetime: failed runs scheduled to retry.
    pub retried: u64,
    /// Lifetime: runs that rescheduled their job.
    pub rescheduled: u64,
    /// Lifetime: jobs sent to the dead letters.
    pub dead_lettered: u64,
}

/// A position in a queue's dead letters (time, then id), for reading each new one once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadCursor {
    /// Dead-letter time, Unix ms.
    pub at: u64,
    /// The last id read at that time.
    pub id: String,
}

/// A job in the dead letters, with the reason it is there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The job id.
    pub id: String,
    /// The payload as stored (JSON text, or whatever undecodable bytes it was).
    pub payload: String,
    /// Runs of the last step.
    pub attempts: u64,
    /// Why it was dead-lettered.
    pub error: String,
    /// When, Unix ms by the Redis clock.
    pub at: u64,
}

impl<T> RedisQueue<T> {
    /// Connects to Redis at `url`: a `redis://` URL, or several comma-separated for a Redis
    /// Cluster's seed nodes. The connection reconnects by itself.
    pub async fn connect(url: &str, config: QueueConfig) -> Result<Self, QueueError> {
        let client = RedisEndpoint::open(url)?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(CONNECT_RETRIES)
            .set_max_delay(MAX_CONNECT_RETRY_DELAY);
        // Lazy on one server: a worker may start before Redis does and must come up when it does.
        let conn = client.managed(manager_config)?;
        Ok(Self::from_shared(Shared::new(client, conn, config)))
    }

    /// A handle on `config`'s queue over an existing connection (`endpoint` is where it leads):
    /// for processes that inspect many queues, which then share one socket.
    pub fn with_connection(endpoint: RedisEndpoint, conn: RedisConn, config: QueueConfig) -> Self {
        Self::from_shared(Shared::new(endpoint, conn, config))
    }

    /// The connection this queue uses, to share with other parts of the process.
    pub fn connection(&self) -> RedisConn {
        self.shared.conn.clone()
    }

    fn from_shared(shared: Shared) -> Self {
        Self {
            shared: Arc::new(shared),
            worker: None,
            _args: PhantomData,
        }
    }

    /// The queue's configuration.
    pub fn config(&self) -> &QueueConfig {
        &self.shared.config
    }

    /// The queue's key names.
    pub fn keys(&self) -> &Keys {
        &self.shared.keys
    }

    /// A handle on another queue that shares this one's Redis client (for fan-out).
    pub fn sibling<U>(&self, config: QueueConfig) -> RedisQueue<U> {
        let mut shared = Shared::new(self.shared.client.clone(), self.shared.conn.clone(), config);
        shared.origin = self.shared.origin;
        RedisQueue::from_shared(shared)
    }

    /// Enqueues raw JSON payloads (already encoded), idempotently on each id; one Redis call.
    pub async fn enqueue_raw(
        &self,
        jobs: &[(JobId, String, Schedule)],
    ) -> Result<Vec<EnqueueOutcome>, QueueError> {
        let batch: Vec<_> = jobs
            .iter()
            .map(|(id, payload, schedule)| (&*self.shared, id, payload.as_str(), *schedule))
            .collect();
        enqueue_encoded(&self.shared.conn, &batch).await
    }

    /// Generates `n` fresh job ids (one Redis call).
    pub async fn generate_ids(&self, n: usize) -> Result<Vec<JobId>, QueueError> {
        let mut conn = self.shared.conn.clone();
        let last: u64 = redis::cmd("INCRBY")
            .arg(&self.shared.keys.seq)
            .arg(n)
            .query_async(&mut conn)
            .await?;
        let first = last + 1 - n as u64;
        (first..=last).map(|i| JobId::new(i.to_string())).collect()
    }

    /// Counts per state.
    pub async fn stats(&self) -> Result<QueueStats, QueueError> {
        let keys = &self.shared.keys;
        let mut conn = self.shared.conn.clone();
        let v: Vec<u64> = scripts::STATS
            .key(&keys.jobs)
            .key(&keys.due)
            .key(&keys.leases)
            .key(&keys.dead)
            .key(&keys.stats)
            .invoke_async(&mut conn)
            .await?;
        let [
            _,
            total,
            ready,
            scheduled,
            active,
            dead,
            completed,
            retried,
            rescheduled,
            dl,
        ] = v[..]
        else {
            return Err(QueueError::Protocol(format!(
                "stats reply of {} values",
                v.len()
            )));
        };
        Ok(QueueStats {
            total,
            ready,
            scheduled,
            active,
            dead,
            completed,
            retried,
            rescheduled,
            dead_lettered: dl,
        })
    }

    /// The raw payload of a job that has a record (pending, leased or retrying).
    pub async fn payload(&self, id: &JobId) -> Result<Option<String>, QueueError> {
        let mut conn = self.shared.conn.clone();
        Ok(redis::cmd("HGET")
            .arg(&self.shared.keys.jobs)
            .arg(id.as_str())
            .query_async(&mut conn)
            .await?)
    }

    /// When a job falls due next (Unix ms, Redis clock), if it is scheduled.
    pub async fn due_at(&self, id: &JobId) -> Result<Option<u64>, QueueError> {
        let mut conn = self.shared.conn.clone();
        let score: Option<f64> = redis::cmd("ZSCORE")
            .arg(&self.shared.keys.due)
            .arg(id.as_str())
            .query_async(&mut conn)
            .await?;
        Ok(score.map(|s| s as u64))
    }

    /// Makes a scheduled job due now, or, if it is running, due again right after its run
    /// (instead of after whatever delay the run asks for).
    pub async fn promote(&self, id: &JobId) -> Result<Promoted, QueueError> {
        let keys = &self.shared.keys;
        let mut conn = self.shared.conn.clone();
        let code: i64 = scripts::PROMOTE
            .key(&keys.due)
            .key(&keys.leases)
            .key(&keys.promoted)
            .key(&keys.signal)
            .arg(id.as_str())
            .invoke_async(&mut conn)
            .await?;
        Ok(match code {
            1 => Promoted::Now,
            0 => Promoted::AlreadyDue,
            2 => Promoted::AfterCurrentRun,
            _ => Promoted::NoSuchJob,
        })
    }

    /// Up to `limit` dead letters, oldest first.
    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let reply: Vec<String> = self.dead_op("list", limit, &[]).await?;
        parse_dead_letters(&reply)
    }

    /// The dead letters among `ids` (in the order given; ids not in the dead letters are left
    /// out).
    pub async fn dead_letters_with_ids(
        &self,
        ids: &[JobId],
    ) -> Result<Vec<DeadLetter>, QueueError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let reply: Vec<String> = self.dead_op("list", ids.len(), ids).await?;
        parse_dead_letters(&reply)
    }

    /// Dead letters that arrived after `cursor` (oldest first, at most `limit`), and the cursor
    /// to pass next time: for watchers that report each new dead letter once.
    pub async fn dead_letters_after(
        &self,
        cursor: &DeadCursor,
        limit: usize,
    ) -> Result<(Vec<DeadLetter>, DeadCursor), QueueError> {
        let keys = &self.shared.keys;
        let mut conn = self.shared.conn.clone();
        // Inclusive of the cursor's millisecond: letters sharing it sort by id, so the ones up
        // to the cursor's id are skipped and a later letter in the same millisecond is not lost.
        let page: Vec<(String, f64)> = redis::cmd("ZRANGEBYSCORE")
            .arg(&keys.dead_index)
            .arg(cursor.at)
            .arg("+inf")
            .arg("WITHSCORES")
            .arg("LIMIT")
            .arg(0)
            .arg(limit.max(1) + CURSOR_OVERLAP)
            .query_async(&mut conn)
            .await?;
        let ids: Vec<JobId> = page
            .into_iter()
            .filter(|(id, at)| *at as u64 > cursor.at || id.as_str() > cursor.id.as_str())
            .take(limit.max(1))
            .filter_map(|(id, _)| JobId::new(id).ok())
            .collect();
        if ids.is_empty() {
            return Ok((Vec::new(), cursor.clone()));
        }
        let reply: Vec<String> = self.dead_op("list", ids.len(), &ids).await?;
        let letters = parse_dead_letters(&reply)?;
        let next = letters
            .iter()
            .map(|d| DeadCursor {
                at: d.at,
                id: d.id.clone(),
            })
            .max_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)))
            .unwrap_or_else(|| cursor.clone());
        Ok((letters, next))
    }

    /// Moves dead letters back to the queue, due now with fresh attempts: the given ids, or the
    /// oldest `limit` when `ids` is empty. Returns how many moved.
    pub async fn retry_dead(&self, ids: &[JobId], limit: usize) -> Result<u64, QueueError> {
        self.dead_op("retry", limit, ids).await
    }

    /// Deletes dead letters: the given ids, or the oldest `limit` when `ids` is empty.
    pub async fn purge_dead(&self, ids: &[JobId], limit: usize) -> Result<u64, QueueError> {
        self.dead_op("purge", limit, ids).await
    }

    async fn dead_op<R: redis::FromRedisValue>(
        &self,
        op: &str,
        limit: usize,
        ids: &[JobId],
    ) -> Result<R, QueueError> {
        let keys = &self.shared.keys;
        let mut inv = scripts::DEAD.prepare_invoke();
        inv.key(&keys.jobs)
            .key(&keys.due)
            .key(&keys.dead)
            .key(&keys.dead_index)
            .key(&keys.signal)
            .arg(op)
            .arg(limit.max(1));
        for id in ids {
            inv.arg(id.as_str());
        }
        let mut conn = self.shared.conn.clone();
        Ok(inv.invoke_async(&mut conn).await?)
    }

    /// Releases every lease this process still holds (jobs whose run was abandoned, for example
    /// at the end of a shutdown grace period), so other workers take them at once.
    pub async fn release_held(&self) -> Result<usize, QueueError> {
        lease::release_held(&self.shared).await
    }
}

impl<T: Serialize> RedisQueue<T> {
    /// Enqueues one job; `Conflict` and `DeadLettered` come back as errors.
    pub async fn enqueue(&self, job: NewJob<T>) -> Result<(JobId, EnqueueOutcome), QueueError> {
        let mut out = self.enqueue_many(vec![job]).await?;
        let (id, outcome) = out
            .pop()
            .ok_or_else(|| QueueError::Protocol("no enqueue outcome".into()))?;
        match outcome {
            EnqueueOutcome::Conflict => Err(QueueError::Conflict { id: id.to_string() }),
            EnqueueOutcome::DeadLettered => Err(QueueError::DeadLettered { id: id.to_string() }),
            // Completed within the remembered window: like a duplicate, nothing to do.
            _ => Ok((id, outcome)),
        }
    }

    /// Enqueues a job due now with a generated id.
    pub async fn push(&self, args: T) -> Result<JobId, QueueError> {
        Ok(self.enqueue(NewJob::new(args)).await?.0)
    }

    /// Enqueues many jobs in one Redis call, reporting each outcome.
    pub async fn enqueue_many(
        &self,
        jobs: Vec<NewJob<T>>,
    ) -> Result<Vec<(JobId, EnqueueOutcome)>, QueueError> {
        let encoded = self.encode(jobs).await?;
        let outcomes = self.enqueue_raw(&encoded).await?;
        Ok(encoded
            .into_iter()
            .map(|(id, _, _)| id)
            .zip(outcomes)
            .collect())
    }

    /// Enqueues jobs into several queues and reports each outcome, in order.
    ///
    /// Queues on one Redis through one connection (handles made with [`RedisQueue::sibling`])
    /// share one script call, so an order's notifications cost one round trip and one script
    /// run. On a Cluster each queue is its own hash tag and gets its own call; so does each
    /// unrelated handle. The calls go out together, and each queue's jobs go in atomically.
    pub async fn enqueue_across(
        jobs: Vec<(&RedisQueue<T>, NewJob<T>)>,
    ) -> Result<Vec<(JobId, EnqueueOutcome)>, QueueError> {
        let mut encoded = Vec::with_capacity(jobs.len());
        for (queue, job) in jobs {
            let [(id, payload, schedule)] = <[_; 1]>::try_from(queue.encode(vec![job]).await?)
                .map_err(|_| QueueError::Protocol("one job encoded as several".into()))?;
            encoded.push((&*queue.shared, id, payload, schedule));
        }
        let batch: Vec<_> = encoded
            .iter()
            .map(|(shared, id, payload, schedule)| (*shared, id, payload.as_str(), *schedule))
            .collect();
        // Which jobs may share a call: one connection to one Redis, or one queue on a Cluster.
        let together = |a: &Shared, b: &Shared| match a.conn {
            RedisConn::Single(_) | RedisConn::Sentinel(_) => a.origin == b.origin,
            RedisConn::Cluster(_) => std::ptr::eq(a, b),
        };
        let mut groups: Vec<(&Shared, Vec<usize>)> = Vec::new();
        for (i, (shared, ..)) in batch.iter().enumerate() {
            match groups.iter_mut().find(|(s, _)| together(s, shared)) {
                Some((_, positions)) => positions.push(i),
                None => groups.push((shared, vec![i])),
            }
        }
        let calls = groups.iter().map(|(shared, positions)| {
            let part: Vec<_> = positions.iter().map(|&i| batch[i]).collect();
            async move { enqueue_encoded(&shared.conn, &part).await }
        });
        let answers = futures::future::try_join_all(calls).await?;
        let mut outcomes = vec![None; batch.len()];
        for ((_, positions), answer) in groups.iter().zip(answers) {
            for (&i, outcome) in positions.iter().zip(answer) {
                outcomes[i] = Some(outcome);
            }
        }
        encoded
            .into_iter()
            .zip(outcomes)
            .map(|((_, id, _, _), outcome)| {
                outcome
                    .map(|o| (id, o))
                    .ok_or_else(|| QueueError::Protocol("a job without an outcome".into()))
            })
            .collect()
    }

    /// Gives every job its id (generating the missing ones) and its JSON payload.
    async fn encode(
        &self,
        jobs: Vec<NewJob<T>>,
    ) -> Result<Vec<(JobId, String, Schedule)>, QueueError> {
        let missing = jobs.iter().filter(|j| j.id.is_none()).count();
        let mut fresh = if missing > 0 {
            self.generate_ids(missing).await?.into_iter()
        } else {
            Vec::new().into_iter()
        };
        let mut encoded = Vec::with_capacity(jobs.len());
        for job in jobs {
            let id = match job.id {
                Some(id) => id,
                None => fresh
                    .next()
                    .ok_or_else(|| QueueError::Protocol("too few generated ids".into()))?,
            };
            let payload = serde_json::to_string(&job.args).map_err(QueueError::Encode)?;
            encoded.push((id, payload, job.schedule));
        }
        Ok(encoded)
    }
}

/// One enqueue script call for jobs of one or more queues (each job names its queue's hub):
/// each queue's five keys once, each job pointing at its queue's. The caller makes sure one
/// script may touch all of them (one Redis, or one queue on a Cluster).
async fn enqueue_encoded(
    conn: &RedisConn,
    jobs: &[(&Shared, &JobId, &str, Schedule)],
) -> Result<Vec<EnqueueOutcome>, QueueError> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let mut queues: Vec<&Shared> = Vec::new();
    let mut inv = scripts::ENQUEUE.prepare_invoke();
    let mut index = Vec::with_capacity(jobs.len());
    for (shared, ..) in jobs {
        let q = match queues.iter().position(|s| std::ptr::eq(*s, *shared)) {
            Some(q) => q,
            None => {
                let keys = &shared.keys;
                inv.key(&keys.jobs)
                    .key(&keys.due)
                    .key(&keys.dead)
                    .key(&keys.signal)
                    .key(&keys.done);
                queues.push(shared);
                queues.len() - 1
            }
        };
        index.push(q);
    }
    inv.arg(jobs.len());
    for ((_, id, payload, schedule), q) in jobs.iter().zip(&index) {
        let (kind, ms) = schedule.encode();
        inv.arg(q + 1)
            .arg(id.as_str())
            .arg(*payload)
            .arg(kind)
            .arg(ms);
    }
    let mut conn = conn.clone();
    let codes: Vec<i64> = inv.invoke_async(&mut conn).await?;
    if codes.len() != jobs.len() {
        return Err(QueueError::Protocol(format!(
            "enqueue returned {} codes for {} jobs",
            codes.len(),
            jobs.len()
        )));
    }
    let mut created = vec![0u64; queues.len()];
    for (code, q) in codes.iter().zip(&index) {
        if *code == 1 {
            created[*q] += 1;
        }
    }
    for (shared, created) in queues.iter().zip(created) {
        metrics::counter!(crate::metrics::JOBS_ENQUEUED_TOTAL, "queue" => shared.config.name.clone())
            .increment(created);
    }
    codes.into_iter().map(EnqueueOutcome::from_code).collect()
}
