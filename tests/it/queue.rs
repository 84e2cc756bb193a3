//! paywatch-queue against a real Redis: scheduling, bursts, idempotency, poison jobs, shutdown.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use apalis::prelude::*;
use paywatch_queue::{
    DeadCursor, EnqueueOutcome, JobId, JobInfo, NewJob, Next, Promoted, QueueConfig, QueueError,
    RedisQueue, RetryPolicy, Schedule,
};
use paywatch_tests::{RedisServer, TestJob, cleanup, redis_url, unique_prefix, wait_for};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn queue<T>(prefix: &str, tune: impl FnOnce(QueueConfig) -> QueueConfig) -> RedisQueue<T> {
    let config = tune(QueueConfig::new("jobs").with_prefix(prefix));
    RedisQueue::connect(&redis_url(), config)
        .await
        .expect("connect to redis")
}

/// One handler observation: (job id, a number, local time, Redis due time).
type Sighting = (String, u64, u64, u64);

/// What handlers saw.
#[derive(Debug, Clone, Default)]
struct Seen(Arc<Mutex<Vec<Sighting>>>);

impl Seen {
    fn record(&self, id: String, a: u64, b: u64, c: u64) {
        self.0.lock().expect("lock").push((id, a, b, c));
    }
    fn len(&self) -> usize {
        self.0.lock().expect("lock").len()
    }
    fn snapshot(&self) -> Vec<Sighting> {
        self.0.lock().expect("lock").clone()
    }
}

#[tokio::test]
async fn delayed_jobs_never_run_early() {
    let prefix = unique_prefix("never-early");
    let q: RedisQueue<u64> = queue(&prefix, |c| c.with_batch_size(16)).await;
    // Each job carries the earliest local wall-clock time it may run at.
    let mut jobs = Vec::new();
    for i in 0..300u64 {
        let delay = (i * 7) % 900;
        jobs.push(
            NewJob::new(now_ms() + delay)
                .with_schedule(Schedule::After(Duration::from_millis(delay))),
        );
    }
    q.enqueue_many(jobs).await.expect("enqueue");

    async fn handle(earliest: u64, info: JobInfo, seen: Data<Seen>) {
        let ran = now_ms();
        seen.record(info.id.to_string(), earliest, ran, info.due_ms);
    }
    let seen = Seen::default();
    let worker = WorkerBuilder::new("never-early")
        .backend(q.clone())
        .data(seen.clone())
        .concurrency(16)
        .build(handle);
    let running = tokio::spawn(worker.run());
    wait_for(
        "all 300 delayed jobs to run",
        Duration::from_secs(20),
        || {
            let n = seen.len();
            async move { (n >= 300).then_some(()) }
        },
    )
    .await;
    running.abort();
    let seen = seen.snapshot();
    for (id, earliest, ran, due) in &seen {
        assert!(ran >= earliest, "job {id} ran {} ms early", earliest - ran);
        assert!(*ran + 5 >= *due, "job {id} ran before its Redis due time");
    }
    let ids: HashSet<_> = seen.iter().map(|s| s.0.clone()).collect();
    assert_eq!(ids.len(), 300, "every job ran exactly once");
    cleanup(&redis_url(), &prefix).await;
}

#[tokio::test]
async fn a_hundred_thousand_jobs_due_at_once() {
    let prefix = unique_prefix("burst");
    let q: RedisQueue<u32> = queue(&prefix, |c| c.with_batch_size(500)).await;
    let at = SystemTime::now() + Duration::from_millis(1500);
    for chunk in (0..100_000u32).collect::<Vec<_>>().chunks(2000) {
        let jobs = chunk
            .iter()
            .map(|i| NewJob::new(*i).with_schedule(Schedule::At(at)))
            .collect();
        q.enqueue_many(jobs).await.expect("enqueue");
    }
    assert_eq!(q.stats().await.expect("stats").total, 100_000);

    #[derive(Clone, Default)]
    struct Count(Arc<std::sync::atomic::AtomicUsize>);
    async fn handle(_: u32, count: Data<Count>) {
        let count: &Count = &count;
        count.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    let count = Count::default();
    let worker = WorkerBuilder::new("burst")
        .backend(q.clone())
        .data(count.clone())
        .concurrency(500)
        .build(handle);
    let running = tokio::spawn(worker.run());
    let stats = wait_for("100k jobs to complete", Duration::from_secs(120), || {
        let q = q.clone();
        async move {
            let s = q.stats().await.ok()?;
            (s.completed == 100_000 && s.total == 0).then_some(s)
        }
    })
    .await;
    running.abort();
    assert_eq!(count.0.load(std::sync::atomic::Ordering::Relaxed), 100_000);
    assert_eq!((stats.dead, stats.retried), (0, 0));
    cleanup(&redis_url(), &prefix).await;
}

#[tokio::test]
async fn enqueue_is_idempotent_on_the_job_id() {
    let prefix = unique_prefix("idempotent");
    let q: RedisQueue<TestJob> = queue(&prefix, |c| c).await;
    let id = JobId::new("order-42").expect("id");
    let job = TestJob { n: 1, max: 1 };
    let first = q
        .enqueue(NewJob::new(job.clone()).with_id(id.clone()))
        .await
        .expect("first");
    assert_eq!(first.1, EnqueueOutcome::Created);
    let again = q
        .enqueue(NewJob::new(job.clone()).with_id(id.clone()))
        .await
        .expect("again");
    assert_eq!(again.1, EnqueueOutcome::Duplicate);
    let other = q
        .enqueue(NewJob::new(TestJob { n: 2, max: 1 }).with_id(id.clone()))
        .await;
    assert!(
        matches!(other, Err(QueueError::Conflict { .. })),
        "{other:?}"
    );
    let stats = q.stats().await.expect("stats");
    assert_eq!((stats.total, stats.ready), (1, 1));
    assert!(JobId::new("").is_err());
    assert!(JobId::new("x".repeat(300)).is_err());
    cleanup(&redis_url(), &prefix).await;
}

#[tokio::test]
async fn poison_payloads_are_dead_lettered_and_the_worker_goes_on() {
    let prefix = unique_prefix("poison");
    let q: RedisQueue<TestJob> = queue(&prefix, |c| c.with_batch_size(8)).await;
    let good = |i: u32| {
        (
            JobId::new(format!("good-{i}")).expect("id"),
            r#"{"n":0,"max":0}"#.to_string(),
            Schedule::Now,
        )
    };
    let poison = (
        JobId::new("poison").expect("id"),
        "{not json".to_string(),
        Schedule::Now,
    );
    let wrong_shape = (
        JobId::new("wrong-shape").expect("id"),
        r#"{"n":"x"}"#.to_string(),
        Schedule::Now,
    );
    q.enqueue_raw(&[good(1), poison, good(2), wrong_shape, good(3)])
        .await
        .expect("enqueue");

    async fn handle(_: TestJob, info: JobInfo, seen: Data<Seen>) {
        seen.record(info.id.to_string(), 0, 0, 0);
    }
    let seen = Seen::default();
    let worker = WorkerBuilder::new("poison")
        .backend(q.clone())
        .data(seen.clone())
        .build(handle);
    let running = tokio::spawn(worker.run());
    wait_for("good jobs to run", Duration::from_secs(10), || {
        let n = seen.len();
        async move { (n == 3).then_some(()) }
    })
    .await;
    // The worker is still alive after the poison: a later job runs too.
    q.enqueue_raw(&[good(4)]).await.expect("enqueue later");
    wait_for(
        "a job after the poison to run",
        Duration::from_secs(10),
        || {
            let n = seen.len();
            async move { (n == 4).then_some(()) }
        },
    )
    .await;
    let dead = wait_for("two dead letters", Duration::from_secs(10), || {
        let q = q.clone();
        async move { q.dead_letters(10).await.ok().filter(|d| d.len() == 2) }
    })
    .await;
    assert!(!running.is_finished(), "the worker must keep running");
    running.abort();
    let poison = dead
        .iter()
        .find(|d| d.id == "poison")
        .expect("poison dead letter");
    assert!(
        poison.error.contains("payload does not decode"),
        "{}",
        poison.error
    );
    assert_eq!(poison.payload, "{not json");
    assert!(dead.iter().any(|d| d.id == "wrong-shape"));

    // Dead letters can be retried (back to the queue) and purged.
    assert_eq!(
        q.retry_dead(&[JobId::new("poison").expect("id")], 10)
            .await
            .expect("retry"),
        1
    );
    assert_eq!(
        q.payload(&JobId::new("poison").expect("id"))
            .await
            .expect("payload")
            .as_deref(),
        Some("{not json")
    );
    assert_eq!(q.purge_dead(&[], 10).await.expect("purge"), 1);
    assert!(q.dead_letters(10).await.expect("list").is_empty());
    cleanup(&redis_url(), &prefix).await;
}

#[tokio::test]
async fn failures_retry_with_backoff_then_dead_letter() {
    let prefix = unique_prefix("retry");
    let policy = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(50),
        multiplier: 2.0,
        max_delay: Duration::from_secs(1),
        jitter: 0.0,
    };
    let q: RedisQueue<TestJob> = queue(&prefix, |c| c.with_retry(policy)).await;
    q.push(TestJob { n: 0, max: 0 }).await.expect("push");
    async fn handle(_: TestJob, info: JobInfo, seen: Data<Seen>) -> Result<(), BoxDynError> {
        seen.record(info.id.to_string(), info.attempt as u64, now_ms(), 0);
        Err(format!("provider said no (attempt {})", info.attempt).into())
    }
    let seen = Seen::default();
    let worker = WorkerBuilder::new("retry")
        .backend(q.clone())
        .data(seen.clone())
        .build(handle);
    let running = tokio::spawn(worker.run());
    let dead = wait_for(
        "the job to be dead-lettered",
        Duration::from_secs(10),
        || {
            let q = q.clone();
            async move { q.dead_letters(10).await.ok().filter(|d| d.len() == 1) }
        },
    )
    .await;
    running.abort();
    let runs = seen.snapshot();
    assert_eq!(runs.iter().map(|r| r.1).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert!(
        runs[1].2 >= runs[0].2 + 50 && runs[2].2 >= runs[1].2 + 100,
        "backoff respected: {runs:?}"
    );
    assert_eq!(dead[0].attempts, 3);
    assert!(dead[0].error.contains("attempt 3"), "{}", dead[0].error);
    cleanup(&redis_url(), &prefix).await;
}

#[tokio::test]
async fn abort_and_retry_after_errors_are_honoured() {
    let prefix = unique_prefix("abort");
    let q: RedisQueue<TestJob> = queue(&prefix, |c| c).await;
    let abort = JobId::new("abort").expect("id");
    let later = JobId::new("later").expect("id");
    q.enqueue(NewJob::new(TestJob { n: 0, max: 0 }).with_id(abort.clone()))
        .await
        .expect("enqueue");
    q.enqueue(NewJob::new(TestJob { n: 1, max: 0 }).with_id(later.clone()))
        .await
        .expect("enqueue");
    async fn handle(job: TestJob) -> Result<(), BoxDynError> {
        if job.n == 0 {
            Err(Box::new(AbortError::new("credentials rejected")))
        } else {
            Err(Box::new(RetryAfterError::new(
                "rate limited",
                Duration::from_secs(30),
            )))
        }
    }
    let worker = WorkerBuilder::new("abort").backend(q.clone()).build(handle);
    let running = tokio::spawn(worker.run());
    let due = wait_for(
        "the rate-limited job to be rescheduled",
        Duration::from_secs(10),
        || {
            let q = q.clone();
            let later = later.clone();
            // Before its first run the job is due now; after it, 30 s out.
            async move {
                q.due_at(&later)
                    .await
                    .ok()
                    .flatten()
                    .filter(|due| *due > now_ms() + 10_000)
            }
        },
    )
    .await;
    assert!(due >= now_ms() + 25_000, "Retry-After of 30 s honoured");
    let dead = wait_for(
        "the aborted job to be dead",
        Duration::from_secs(10),
        || {
            let q = q.clone();
            async move { q.dead_letters(10).await.ok().filter(|d| d.len() == 1) }
        },
    )
    .await;
    running.abort();
    assert_eq!(dead[0].id, "abort");
    assert_eq!(dead[0].error, "credentials rejected");
    assert_eq!(dead[0].attempts, 1, "no retries after an abort");
    cleanup(&redis_url(), &prefix).await;
}

#[tokio::test]
async fn graceful_shutdown_hands_unstarted_leases_back() {
    let prefix = unique_prefix("shutdown");
    let q: RedisQueue<TestJob> = queue(&prefix, |c| c.with_batch_size(10)).await;
    for _ in 0..10 {
        q.push(TestJob { n: 0, max: 0 }).await.expect("push");
    }
    #[derive(Clone)]
    struct Gate(Arc<tokio::sync::Notify>, Arc<tokio::sync::Notify>);
    async fn handle(_: TestJob, gate: Data<Gate>) {
        let gate: &Gate = &gate;
        gate.0.notify_one();
        gate.1.notified().await;
    }
    let gate = Gate(
        Arc::new(tokio::sync::Notify::new()),
        Arc::new(tokio::sync::Notify::new()),
    );
    let worker = WorkerBuilder::new("shutdown")
        .backend(q.clone())
        .data(gate.clone())
        .concurrency(1)
        .build(handle);
    let release = gate.1.clone();
    let running = tokio::spawn(worker.run_with_ctx(move |ctx| {
        let started = gate.0.clone();
        let release = release.clone();
        async move {
            started.notified().await;
            ctx.stop()?;
            // The job in flight finishes during the grace period.
            release.notify_one();
            Ok(())
        }
    }));
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("worker stops within the grace period")
        .expect("join")
        .expect("worker result");
    let stats = q.stats().await.expect("stats");
    assert_eq!(stats.completed, 1, "the in-flight job finished");
    assert_eq!(stats.active, 0, "no leases left behind");
    assert_eq!(stats.ready, 9, "the unstarted jobs are due again at once");
    cleanup(&redis_url(), &prefix).await;
}

#[tokio::test]
async fn abandoned_runs_are_released_after_the_grace_period() {
    let prefix = unique_prefix("abandon");
    let q: RedisQueue<TestJob> = queue(&prefix, |c| c.with_lease(Duration::from_secs(60))).await;
    q.push(TestJob { n: 0, max: 0 }).await.expect("push");
    async fn handle(_: TestJob) {
        STARTED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::future::pending::<()>().await;
    }
    // Leased in Redis is not yet held by this process (the fetch's reply may be in flight, and
    // an abort then drops it): wait until the handler runs, so the lease is this process's.
    static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let worker = WorkerBuilder::new("abandon")
        .backend(q.clone())
        .build(handle);
    let running = tokio::spawn(worker.run());
    wait_for("the job to be leased", Duration::from_secs(10), || {
        let q = q.clone();
        async move {
            let started = STARTED.load(std::sync::atomic::Ordering::SeqCst) >= 1;
            q.stats().await.ok().filter(|s| started && s.active == 1)
        }
    })
    .await;
    // The grace period ran out: the run is dropped, its lease handed back explicitly.
    running.abort();
    assert_eq!(q.release_held().await.expect("release"), 1);
    let stats = q.stats().await.expect("stats");
    assert_eq!((stats.active, stats.ready), (0, 1));
    cleanup(&redis_url(), &prefix).await;
}

#[tokio::test]
async fn reschedule_keeps_one_job_and_updates_its_payload() {
    let prefix = unique_prefix("reschedule");
    let q: RedisQueue<TestJob> = queue(&prefix, |c| c).await;
    let id = JobId::new("poll-me").expect("id");
    q.enqueue(NewJob::new(TestJob { n: 0, max: 5 }).with_id(id.clone()))
        .await
        .expect("enqueue");
    async fn handle(job: TestJob, seen: Data<Seen>) -> Next<TestJob> {
        seen.record(String::new(), job.n as u64, now_ms(), 0);
        if job.n >= job.max {
            Next::Done
        } else {
            Next::Reschedule {
                after: Duration::from_millis(20),
                args: TestJob {
                    n: job.n + 1,
                    max: job.max,
                },
            }
        }
    }
    let seen = Seen::default();
    let worker = WorkerBuilder::new("reschedule")
        .backend(q.clone())
        .data(seen.clone())
        .build(handle);
    let running = tokio::spawn(worker.run());
    let stats = wait_for("the job to finish", Duration::from_secs(10), || {
        let q = q.clone();
        async move { q.stats().await.ok().filter(|s| s.completed == 1) }
    })
    .await;
    running.abort();
    let steps: Vec<u64> = seen.snapshot().iter().map(|s| s.1).collect();
    assert_eq!(steps, vec![0, 1, 2, 3, 4, 5]);
    assert_eq!((stats.rescheduled, stats.total, stats.retried), (5, 0, 0));
    cleanup(&redis_url(), &prefix).await;
}

#[tokio::test]
async fn one_call_enqueues_across_sibling_queues() {
    let prefix = unique_prefix("across");
    let a: RedisQueue<TestJob> = queue(&prefix, |c| c).await;
    let b: RedisQueue<TestJob> = a.sibling(QueueConfig::new("jobs-b").with_prefix(&prefix));
    let c: RedisQueue<TestJob> = a.sibling(QueueConfig::new("jobs-c").with_prefix(&prefix));
    // A handle on another Redis: its job must go there, in a call of its own.
    let other = RedisServer::start().await;
    let d: RedisQueue<TestJob> = RedisQueue::connect(
        &other.url(),
        QueueConfig::new("jobs-d").with_prefix(&prefix),
    )
    .await
    .expect("connect to the other redis");
    let id = |s: &str| JobId::new(s).expect("id");
    let job = |n| NewJob::new(TestJob { n, max: 0 });
    assert!(
        RedisQueue::<TestJob>::enqueue_across(Vec::new())
            .await
            .expect("nothing")
            .is_empty()
    );

    let first = RedisQueue::enqueue_across(vec![
        (&a, job(1).with_id(id("same"))),
        (&b, job(2).with_id(id("same"))),
        (
            &c,
            job(3)
                .with_id(id("later"))
                .with_schedule(Schedule::After(Duration::from_secs(60))),
        ),
        (&a, job(4)),
        (&d, job(5).with_id(id("same"))),
    ])
    .await
    .expect("enqueue across");
    let outcomes: Vec<_> = first.iter().map(|(_, o)| *o).collect();
    assert_eq!(outcomes, [EnqueueOutcome::Created; 5]);
    assert_eq!(first[0].0, id("same"));
    assert_eq!(first[2].0, id("later"));
    assert_ne!(first[3].0, id("same"), "a generated id");

    // Each job went to its own queue, with its own schedule.
    let stats = |q: RedisQueue<TestJob>| async move {
        let s = q.stats().await.expect("stats");
        (s.total, s.ready, s.scheduled)
    };
    assert_eq!(stats(a.clone()).await, (2, 2, 0));
    assert_eq!(stats(b.clone()).await, (1, 1, 0));
    assert_eq!(stats(c.clone()).await, (1, 0, 1));
    assert_eq!(stats(d).await, (1, 1, 0));

    // Idempotent per queue: the same ids again change nothing, another payload is refused.
    let again = RedisQueue::enqueue_across(vec![
        (&b, job(2).with_id(id("same"))),
        (&a, job(1).with_id(id("same"))),
        (&c, job(9).with_id(id("later"))),
    ])
    .await
    .expect("enqueue again");
    let outcomes: Vec<_> = again.iter().map(|(_, o)| *o).collect();
    assert_eq!(
        outcomes,
        [
            EnqueueOutcome::Duplicate,
            EnqueueOutcome::Duplicate,
            EnqueueOutcome::Conflict
        ]
    );
    assert_eq!(stats(c.clone()).await, (1, 0, 1));

    // The job due now wakes the queue's idle workers: a worker on `b` runs it.
    async fn handle(_: TestJob) {}
    let worker = WorkerBuilder::new("across")
        .backend(b.clone())
        .build(handle);
    let running = tokio::spawn(worker.run());
    wait_for("b's job to complete", Duration::from_secs(10), || {
        let b = b.clone();
        async move { b.stats().await.ok().filter(|s| s.completed == 1) }
    })
    .await;
    running.abort();
    assert_eq!(stats(a).await, (2, 2, 0), "a's jobs stay where they are");
    cleanup(&redis_url(), &prefix).await;
}

#[tokio::test]
async fn completed_ids_are_remembered_for_the_configured_window() {
    let prefix = unique_prefix("keep-done");
    let q: RedisQueue<TestJob> =
        queue(&prefix, |c| c.with_keep_completed(Duration::from_secs(60))).await;
    let id = JobId::new("notify-once").expect("id");
    let job = || NewJob::new(TestJob { n: 0, max: 0 }).with_id(id.clone());
    q.enqueue(job()).await.expect("enqueue");
    async fn handle(_: TestJob) {}
    let worker = WorkerBuilder::new("keep-done")
        .backend(q.clone())
        .build(handle);
    let running = tokio::spawn(worker.run());
    wait_for("the job to complete", Duration::from_secs(10), || {
        let q = q.clone();
        async move { q.stats().await.ok().filter(|s| s.completed == 1) }
    })
    .await;
    running.abort();
    let again = q.enqueue(job()).await.expect("enqueue again");
    assert_eq!(
        again.1,
        EnqueueOutcome::Completed,
        "a finished job is not run twice"
    );
    assert_eq!(q.stats().await.expect("stats").total, 0);
    cleanup(&redis_url(), &prefix).await;
}

#[tokio::test]
async fn promote_moves_a_scheduled_job_to_now_or_right_after_its_run() {
    let prefix = unique_prefix("promote");
    let q: RedisQueue<TestJob> = queue(&prefix, |c| c).await;
    let id = JobId::new("order-7").expect("id");
    q.enqueue(
        NewJob::new(TestJob { n: 0, max: 3 })
            .with_id(id.clone())
            .with_schedule(Schedule::After(Duration::from_secs(3600))),
    )
    .await
    .expect("enqueue");
    assert_eq!(
        q.promote(&JobId::new("nope").expect("id"))
            .await
            .expect("promote"),
        Promoted::NoSuchJob
    );
    assert_eq!(q.promote(&id).await.expect("promote"), Promoted::Now);
    assert_eq!(q.promote(&id).await.expect("promote"), Promoted::AlreadyDue);

    // While it runs, a promote makes its reschedule land now instead of in an hour.
    #[derive(Clone)]
    struct Hook(Arc<tokio::sync::Notify>, Arc<tokio::sync::Notify>, Seen);
    async fn handle(job: TestJob, hook: Data<Hook>) -> Next<TestJob> {
        let hook: &Hook = &hook;
        hook.2.record(String::new(), job.n as u64, now_ms(), 0);
        if job.n == 0 {
            hook.0.notify_one();
            hook.1.notified().await;
        }
        if job.n >= 1 {
            return Next::Done;
        }
        Next::Reschedule {
            after: Duration::from_secs(3600),
            args: TestJob {
                n: job.n + 1,
                max: job.max,
            },
        }
    }
    let hook = Hook(
        Arc::new(tokio::sync::Notify::new()),
        Arc::new(tokio::sync::Notify::new()),
        Seen::default(),
    );
    let worker = WorkerBuilder::new("promote")
        .backend(q.clone())
        .data(hook.clone())
        .build(handle);
    let running = tokio::spawn(worker.run());
    hook.0.notified().await;
    assert_eq!(
        q.promote(&id).await.expect("promote"),
        Promoted::AfterCurrentRun
    );
    hook.1.notify_one();
    wait_for(
        "the promoted job to run again at once",
        Duration::from_secs(10),
        || {
            let n = hook.2.len();
            async move { (n == 2).then_some(()) }
        },
    )
    .await;
    running.abort();
    cleanup(&redis_url(), &prefix).await;
}

#[tokio::test]
async fn dead_letters_can_be_followed_with_a_cursor() {
    let prefix = unique_prefix("dead-cursor");
    let q: RedisQueue<TestJob> = queue(&prefix, |c| c).await;
    async fn handle(_: TestJob) -> Result<(), BoxDynError> {
        Err(Box::new(AbortError::new("no")))
    }
    let worker = WorkerBuilder::new("dead-cursor")
        .backend(q.clone())
        .build(handle);
    let running = tokio::spawn(worker.run());
    let dead_count = |n: u64| {
        let q = q.clone();
        async move {
            wait_for("dead letters", Duration::from_secs(10), || {
                let q = q.clone();
                async move { q.stats().await.ok().filter(|s| s.dead == n) }
            })
            .await
        }
    };
    for _ in 0..3 {
        q.push(TestJob { n: 0, max: 0 }).await.expect("push");
    }
    dead_count(3).await;
    let (first, cursor) = q
        .dead_letters_after(&DeadCursor::default(), 10)
        .await
        .expect("read");
    assert_eq!(first.len(), 3);
    let (again, same) = q.dead_letters_after(&cursor, 10).await.expect("read again");
    assert!(again.is_empty(), "each dead letter is read once");
    assert_eq!(same, cursor);
    q.push(TestJob { n: 0, max: 0 }).await.expect("push");
    dead_count(4).await;
    let (later, _) = q.dead_letters_after(&cursor, 10).await.expect("read later");
    assert_eq!(later.len(), 1, "only the new one");
    running.abort();
    cleanup(&redis_url(), &prefix).await;
}

#[tokio::test]
async fn enqueues_wake_idle_workers_only_when_they_must_look_again() {
    // Idle workers sleep until the queue's earliest due job; an enqueue signals them (one entry
    // on the signal list) when its job is due now or earlier than that, and not otherwise.
    let prefix = unique_prefix("wake");
    let q: RedisQueue<TestJob> = queue(&prefix, |c| c).await;
    let signal = q.keys().signal.clone();
    let client = redis::Client::open(redis_url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let mut signals = async || -> usize {
        redis::cmd("LLEN")
            .arg(&signal)
            .query_async(&mut conn)
            .await
            .expect("LLEN")
    };
    let job = |id: &str, n: u32, schedule: Schedule| {
        NewJob::new(TestJob { n, max: 1 })
            .with_id(JobId::new(id).expect("id"))
            .with_schedule(schedule)
    };
    let later = |s: u64| Schedule::After(Duration::from_secs(s));
    q.enqueue(job("a", 1, later(600))).await.expect("a");
    assert_eq!(signals().await, 1, "the first job of an empty queue wakes");
    q.enqueue(job("b", 2, later(1200))).await.expect("b");
    assert_eq!(signals().await, 1, "a job after the head does not");
    q.enqueue(job("c", 3, later(300))).await.expect("c");
    assert_eq!(signals().await, 2, "a job before the head does");
    q.enqueue(job("d", 4, Schedule::Now)).await.expect("d");
    assert_eq!(signals().await, 3, "a job due now does");
    // In one call: a due-now job, then a later one that is still before the old head (but after
    // the due-now job, which is the head by then), then one before everything.
    let batch = vec![
        job("e", 5, Schedule::Now),
        job("f", 6, later(100)),
        job(
            "g",
            7,
            Schedule::At(SystemTime::now() - Duration::from_secs(5)),
        ),
    ];
    q.enqueue_many(batch).await.expect("batch");
    assert_eq!(
        signals().await,
        5,
        "the due-now jobs wake, the later one does not"
    );
    // The list stays bounded however many wake-ups are owed.
    let many = (0..100).map(|i| job(&format!("n{i}"), i, Schedule::Now));
    for chunk in many.collect::<Vec<_>>().chunks(10) {
        q.enqueue_many(chunk.to_vec()).await.expect("many");
    }
    assert_eq!(signals().await, 64, "the signal list is bounded");
    cleanup(&redis_url(), &prefix).await;
}

/// Every key under `prefix`, named by what follows the prefix: its type, its contents in a
/// readable form (for the failure message) and its `DUMP` bytes (what is compared).
async fn snapshot(
    conn: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
) -> std::collections::BTreeMap<String, (String, Vec<String>, Vec<u8>)> {
    use redis::AsyncCommands;
    let keys: Vec<String> = conn.keys(format!("{prefix}:*")).await.expect("KEYS");
    let mut out = std::collections::BTreeMap::new();
    for key in keys {
        let kind: String = conn.key_type(&key).await.expect("TYPE");
        let readable: Vec<String> = match kind.as_str() {
            "hash" => conn.hgetall(&key).await,
            "zset" => conn.zrange_withscores(&key, 0, -1).await,
            "list" => conn.lrange(&key, 0, -1).await,
            _ => conn.get(&key).await.map(|v: String| vec![v]),
        }
        .expect("read the key");
        let mut dump = redis::cmd("DUMP");
        let dump: Vec<u8> = dump.arg(&key).query_async(conn).await.expect("DUMP");
        let name = key.strip_prefix(prefix).unwrap_or(&key).to_string();
        out.insert(name, (kind, readable, dump));
    }
    out
}

#[tokio::test]
async fn a_submit_leaves_the_queues_keys_as_the_queues_own_enqueue_does() {
    // One writer per key: paywatch_submit adds an order's check job with the queue's own Lua
    // (crates/queue/src/lua/writes.lua), so for the same job (its record and due time) the
    // queue's keys hold the same bytes as after the queue's enqueue; the library adds only keys
    // of its own (the shard's meta and the payment index).
    use paywatch_core::store::keys::META_SHARDS;
    use paywatch_core::store::{ShardKeys, check_queue, library};
    use redis::AsyncCommands;
    let submitted = unique_prefix("one-writer-submit");
    let enqueued = unique_prefix("one-writer-enqueue");
    let client = redis::Client::open(redis_url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    library::ensure(&mut conn).await.expect("load the library");
    let shard = ShardKeys::new(&submitted, 0);
    let () = conn
        .hset(&shard.meta, META_SHARDS, 1)
        .await
        .expect("HSET meta");
    let body = r#"{"order_id":"ord-1","provider":"cashless","payment_id":"pay-1",
        "notify":{"email":"a@example.com","telegram_chat_id":42},"metadata":{"ref":7}}"#;
    let reply: Vec<String> = redis::cmd("FCALL")
        .arg("paywatch_submit")
        .arg(1)
        .arg(&shard.base)
        .arg(body)
        .query_async(&mut conn)
        .await
        .expect("submit");
    assert_eq!(reply, ["created", "pending", "watching"]);
    let keys = paywatch_queue::Keys::new(&submitted, &check_queue(0));
    let record: String = conn
        .hget(&keys.jobs, "ord-1")
        .await
        .expect("the job's record");
    let due: u64 = conn
        .zscore(&keys.due, "ord-1")
        .await
        .expect("the job's due time");

    let queue: RedisQueue<serde_json::Value> = RedisQueue::connect(
        &redis_url(),
        QueueConfig::new(check_queue(0)).with_prefix(&enqueued),
    )
    .await
    .expect("connect the queue");
    let at = Schedule::At(UNIX_EPOCH + Duration::from_millis(due));
    let outcome = queue
        .enqueue_raw(&[(JobId::new("ord-1").expect("id"), record, at)])
        .await
        .expect("enqueue");
    assert_eq!(outcome, [EnqueueOutcome::Created]);

    let mut by_submit = snapshot(&mut conn, &submitted).await;
    let by_enqueue = snapshot(&mut conn, &enqueued).await;
    let own = |key: &str| key.strip_prefix(&submitted).unwrap_or(key).to_string();
    for key in [own(&shard.meta), own(&shard.payments)] {
        assert!(
            by_submit.remove(&key).is_some(),
            "the library writes its own {key}"
        );
    }
    let readable = |s: &std::collections::BTreeMap<String, (String, Vec<String>, Vec<u8>)>| {
        s.iter()
            .map(|(k, (kind, v, _))| (k.clone(), kind.clone(), v.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        readable(&by_submit),
        readable(&by_enqueue),
        "the queue's keys after a submit, then after the queue's enqueue of the same job"
    );
    assert_eq!(
        by_submit, by_enqueue,
        "same contents, and byte-identical DUMPs"
    );
    assert!(
        by_submit.keys().any(|k| k.ends_with(":signal")),
        "both woke idle workers: {:?}",
        by_submit.keys()
    );
    cleanup(&redis_url(), &submitted).await;
    cleanup(&redis_url(), &enqueued).await;
}

#[tokio::test]
async fn a_promotion_mark_is_a_time_in_ms_whichever_door_writes_it() {
    // A running job asked to run again carries one mark in `promoted`, a not-before time in Unix
    // ms, whether the queue's promote or paywatch's check-now wrote it (with a gap of 0, "now").
    use paywatch_core::store::keys::META_SHARDS;
    use paywatch_core::store::{ShardKeys, check_queue, library};
    use redis::AsyncCommands;
    let prefix = unique_prefix("promotion-mark");
    let client = redis::Client::open(redis_url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    library::ensure(&mut conn).await.expect("load the library");
    let shard = ShardKeys::new(&prefix, 0);
    let () = conn
        .hset(&shard.meta, META_SHARDS, 1)
        .await
        .expect("HSET meta");
    for (order, payment) in [("ord-a", "pay-a"), ("ord-b", "pay-b")] {
        let body =
            format!(r#"{{"order_id":"{order}","provider":"cashless","payment_id":"{payment}"}}"#);
        let reply: Vec<String> = redis::cmd("FCALL")
            .arg("paywatch_submit")
            .arg(1)
            .arg(&shard.base)
            .arg(body)
            .query_async(&mut conn)
            .await
            .expect("submit");
        assert_eq!(reply[0], "created");
    }

    // Both check jobs run, and stay running until released.
    #[derive(Clone)]
    struct Hook(
        Arc<std::sync::atomic::AtomicUsize>,
        Arc<tokio::sync::Semaphore>,
    );
    async fn handle(_: serde_json::Value, hook: Data<Hook>) -> Result<(), BoxDynError> {
        let hook: &Hook = &hook;
        hook.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let _released = hook.1.acquire().await?;
        Ok(())
    }
    let hook = Hook(Default::default(), Arc::new(tokio::sync::Semaphore::new(0)));
    let q: RedisQueue<serde_json::Value> = RedisQueue::connect(
        &redis_url(),
        QueueConfig::new(check_queue(0)).with_prefix(&prefix),
    )
    .await
    .expect("connect the queue");
    let worker = WorkerBuilder::new("promotion-mark")
        .backend(q.clone())
        .data(hook.clone())
        .concurrency(2)
        .build(handle);
    let running = tokio::spawn(worker.run());
    wait_for("both checks to run", Duration::from_secs(10), || {
        let started = hook.0.load(std::sync::atomic::Ordering::SeqCst);
        async move { (started == 2).then_some(()) }
    })
    .await;

    let clock = conn.clone();
    let redis_ms = async || -> u64 {
        let (s, us): (u64, u64) = redis::cmd("TIME")
            .query_async(&mut clock.clone())
            .await
            .expect("TIME");
        s * 1000 + us / 1000
    };
    let before = redis_ms().await;
    let promoted = q.promote(&JobId::new("ord-a").expect("id")).await;
    assert_eq!(promoted.expect("promote"), Promoted::AfterCurrentRun);
    let reply: Vec<String> = redis::cmd("FCALL")
        .arg("paywatch_check_now")
        .arg(1)
        .arg(&shard.base)
        .arg("cashless")
        .arg("pay-b")
        .arg(0)
        .query_async(&mut conn)
        .await
        .expect("check now");
    assert_eq!(reply, ["ord-b", "running"]);
    let after = redis_ms().await;
    let marks: Vec<Option<String>> = redis::cmd("HMGET")
        .arg(&q.keys().promoted)
        .arg("ord-a")
        .arg("ord-b")
        .query_async(&mut conn)
        .await
        .expect("HMGET promoted");
    for (order, mark) in ["by the queue's promote", "by paywatch_check_now"]
        .iter()
        .zip(&marks)
    {
        let at = mark.as_deref().and_then(|m| m.parse::<u64>().ok());
        assert!(
            at.is_some_and(|at| (before..=after).contains(&at)),
            "the mark written {order} is {mark:?}, not a time in [{before}, {after}]"
        );
    }
    hook.1.add_permits(2);
    running.abort();
    cleanup(&redis_url(), &prefix).await;
}
