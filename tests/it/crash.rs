//! Crash safety: worker processes `kill -9`'d mid-job, and Redis restarted under a worker.

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apalis::prelude::*;
use paywatch_queue::{JobId, NewJob, QueueConfig, RedisQueue};
use paywatch_tests::{
    Marks, RedisServer, TestJob, cleanup, marks, redis_url, unique_prefix, wait_for,
};
use redis::AsyncCommands;
use tokio::sync::Semaphore;

/// Starts `pw-test-worker` as a child process.
fn spawn_worker(redis: &str, prefix: &str, mode: &str, lease_ms: u64, work_ms: u64) -> Child {
    Command::new(env!("CARGO_BIN_EXE_pw-test-worker"))
        .args(["--redis", redis, "--prefix", prefix, "--mode", mode])
        .args([
            "--lease-ms",
            &lease_ms.to_string(),
            "--work-ms",
            &work_ms.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn pw-test-worker")
}

fn kill9(child: &mut Child) {
    // Child::kill sends SIGKILL on Unix: no destructor, no graceful anything.
    child.kill().expect("kill -9");
    child.wait().expect("reap");
}

async fn conn(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect")
}

/// Waits until handlers have started at least `jobs` distinct jobs.
async fn wait_started(c: &redis::aio::MultiplexedConnection, marks: &Marks, jobs: u64) {
    wait_for(
        &format!("workers to start {jobs} job(s)"),
        Duration::from_secs(20),
        || {
            let mut c = c.clone();
            let key = marks.started.clone();
            async move { (c.scard::<_, u64>(&key).await.ok()? >= jobs).then_some(()) }
        },
    )
    .await;
}

/// Enqueues one plain job (no reschedule) under each of `ids`, due now.
async fn enqueue_plain(q: &RedisQueue<TestJob>, ids: impl Iterator<Item = String>) {
    for id in ids {
        q.enqueue(NewJob::new(TestJob { n: 0, max: 0 }).with_id(JobId::new(id).expect("id")))
            .await
            .expect("enqueue");
    }
}

async fn queue(url: &str, prefix: &str, lease: Duration) -> RedisQueue<TestJob> {
    let config = QueueConfig::new("jobs")
        .with_prefix(prefix)
        .with_lease(lease)
        .with_idle_poll(Duration::from_millis(500));
    RedisQueue::connect(url, config).await.expect("connect")
}

#[tokio::test]
async fn a_killed_workers_lease_expires_and_another_process_reruns_the_job() {
    let url = redis_url();
    let prefix = unique_prefix("kill9");
    let q = queue(&url, &prefix, Duration::from_secs(2)).await;
    let marks = marks(&prefix);
    let mut c = conn(&url).await;
    enqueue_plain(&q, (0..40).map(|i| format!("job-{i}"))).await;
    // The first process hangs inside its jobs; kill it once it holds some.
    let mut doomed = spawn_worker(&url, &prefix, "hang", 2000, 0);
    wait_started(&c, &marks, 4).await;
    kill9(&mut doomed);
    let killed_at = Instant::now();
    let _: () = c.del(&marks.started).await.expect("reset marks");

    let mut rescuer = spawn_worker(&url, &prefix, "slow", 2000, 10);
    // Handlers mark a job done just before their run is settled, so "done" is read only once
    // every job is settled: a job run twice would have marked itself twice by then.
    wait_for("every job to be settled", Duration::from_secs(40), || {
        let q = q.clone();
        async move { q.stats().await.ok().filter(|s| s.total == 0) }
    })
    .await;
    kill9(&mut rescuer);
    let done: Vec<String> = c.lrange(&marks.done, 0, -1).await.expect("done marks");
    let unique: HashSet<_> = done.iter().collect();
    assert_eq!(unique.len(), 40, "nothing lost");
    assert_eq!(done.len(), 40, "nothing completed twice");
    // The jobs the dead worker held came back once its 2 s lease ran out, not minutes later.
    assert!(
        killed_at.elapsed() < Duration::from_secs(2 + 1 + 5),
        "recovery took {:?}",
        killed_at.elapsed()
    );
    cleanup(&url, &prefix).await;
}

#[tokio::test]
async fn leases_are_reclaimed_within_lease_plus_one_second() {
    let url = redis_url();
    let prefix = unique_prefix("reclaim");
    let q = queue(&url, &prefix, Duration::from_secs(2)).await;
    let marks = marks(&prefix);
    let c = conn(&url).await;
    q.push(TestJob { n: 0, max: 0 }).await.expect("push");
    // An idle rescuer is already running in this process when the other one dies.
    async fn rescue(_: TestJob, seen: Data<tokio::sync::mpsc::UnboundedSender<Instant>>) {
        let _ = seen.send(Instant::now());
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let mut doomed = spawn_worker(&url, &prefix, "hang", 2000, 0);
    wait_started(&c, &marks, 1).await;
    let rescuer = WorkerBuilder::new("rescuer")
        .backend(q.clone())
        .data(tx)
        .build(rescue);
    let running = tokio::spawn(rescuer.run());
    kill9(&mut doomed);
    let killed_at = Instant::now();
    let rerun_at = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("the job is re-run")
        .expect("channel open");
    running.abort();
    let took = rerun_at - killed_at;
    assert!(
        took <= Duration::from_secs(3),
        "re-run {took:?} after the kill; lease is 2 s"
    );
    cleanup(&url, &prefix).await;
}

#[tokio::test]
async fn reschedule_is_atomic_when_workers_die_around_it() {
    let url = redis_url();
    let prefix = unique_prefix("atomic");
    let q = queue(&url, &prefix, Duration::from_millis(800)).await;
    let marks = marks(&prefix);
    let mut c = conn(&url).await;
    let id = JobId::new("poll").expect("id");
    q.enqueue(NewJob::new(TestJob { n: 0, max: 60 }).with_id(id.clone()))
        .await
        .expect("enqueue");
    let keys = q.keys().clone();

    // Kill and restart the worker at staggered moments while the job reschedules itself every
    // 15 ms, and check the invariant the whole time: the job is in exactly one of due/leased.
    let mut child = spawn_worker(&url, &prefix, "reschedule", 800, 15);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut kills = 0;
    let mut next_kill = Instant::now() + Duration::from_millis(120);
    loop {
        let (in_due, in_leases, records, done): (Option<f64>, Option<f64>, u64, u64) =
            redis::pipe()
                .atomic()
                .zscore(&keys.due, id.as_str())
                .zscore(&keys.leases, id.as_str())
                .hlen(&keys.jobs)
                .llen(&marks.done)
                .query_async(&mut c)
                .await
                .expect("sample");
        // The handler marks the last step done just before returning, so from then on the job
        // may still be leased for a moment (its completion is being settled).
        if done > 0 {
            break;
        }
        assert_eq!(records, 1, "exactly one job record");
        assert!(
            in_due.is_some() != in_leases.is_some(),
            "the job must be either due or leased, never both or neither (due={in_due:?}, leased={in_leases:?})"
        );
        if Instant::now() >= next_kill && kills < 6 {
            kill9(&mut child);
            kills += 1;
            child = spawn_worker(&url, &prefix, "reschedule", 800, 15);
            next_kill = Instant::now() + Duration::from_millis(150 + 70 * kills);
        }
        assert!(Instant::now() < deadline, "the job never finished");
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    wait_for(
        "the finished job to be fully gone",
        Duration::from_secs(20),
        || {
            let mut c = c.clone();
            let keys = keys.clone();
            let id = id.clone();
            async move {
                let gone: (Option<f64>, Option<f64>, u64) = redis::pipe()
                    .atomic()
                    .zscore(&keys.due, id.as_str())
                    .zscore(&keys.leases, id.as_str())
                    .hlen(&keys.jobs)
                    .query_async(&mut c)
                    .await
                    .ok()?;
                (gone == (None, None, 0)).then_some(())
            }
        },
    )
    .await;
    kill9(&mut child);
    let runs: Vec<String> = c.lrange(&marks.runs, 0, -1).await.expect("runs");
    let steps: Vec<u32> = runs
        .iter()
        .filter_map(|r| r.rsplit(':').next()?.parse().ok())
        .collect();
    // No step lost: every step 0..=60 ran, in order (a killed step may run again, never skip).
    for w in steps.windows(2) {
        assert!(
            w[1] == w[0] + 1 || w[1] == w[0],
            "steps went {} -> {}",
            w[0],
            w[1]
        );
    }
    assert_eq!((steps.first(), steps.last()), (Some(&0), Some(&60)));
    // At least once: a kill between the last step's mark and its settle runs that step again.
    assert!(
        c.llen::<_, u64>(&marks.done).await.expect("done") >= 1,
        "finished"
    );
    assert!(kills >= 3, "the test killed workers {kills} times");
    cleanup(&url, &prefix).await;
}

#[tokio::test]
async fn the_worker_resumes_after_redis_restarts() {
    let mut server = RedisServer::start().await;
    let url = server.url();
    let prefix = unique_prefix("restart");
    let q = queue(&url, &prefix, Duration::from_secs(5)).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u32>();
    async fn handle(job: TestJob, seen: Data<tokio::sync::mpsc::UnboundedSender<u32>>) {
        let _ = seen.send(job.n);
    }
    let worker = WorkerBuilder::new("survivor")
        .backend(q.clone())
        .data(tx)
        .build(handle);
    let running = tokio::spawn(worker.run());
    q.push(TestJob { n: 1, max: 0 }).await.expect("push before");
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("first job"),
        Some(1)
    );

    server.restart().await;
    // The restarted server is empty (no persistence); the worker must reconnect by itself.
    let pushed = wait_for("enqueue to work again", Duration::from_secs(20), || {
        let q = q.clone();
        async move { q.push(TestJob { n: 2, max: 0 }).await.ok() }
    })
    .await;
    let got = tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .unwrap_or_else(|_| panic!("job {pushed} was not run after the restart"));
    assert_eq!(got, Some(2));
    assert!(
        !running.is_finished(),
        "the worker kept running through the outage"
    );
    running.abort();
}

#[tokio::test]
async fn an_idle_worker_costs_at_most_two_commands_a_second() {
    let server = RedisServer::start().await;
    let url = server.url();
    let prefix = unique_prefix("idle");
    let config = QueueConfig::new("jobs").with_prefix(&prefix); // default idle_poll: 1 s
    let q: RedisQueue<TestJob> = RedisQueue::connect(&url, config).await.expect("connect");
    async fn handle(_: TestJob) {}
    let worker = WorkerBuilder::new("idle").backend(q.clone()).build(handle);
    let running = tokio::spawn(worker.run());
    let mut c = conn(&url).await;
    // Commands the worker sends (a script is one command; what it runs inside is not a round
    // trip). Our own INFO calls are not counted.
    let sent = |info: String| -> u64 {
        info.lines()
            .filter(|l| !l.starts_with("cmdstat_info:"))
            .filter_map(|l| {
                l.split_once("calls=")?
                    .1
                    .split(',')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    };
    let stats = |c: &mut redis::aio::MultiplexedConnection| {
        let mut c = c.clone();
        async move {
            let _: () = redis::cmd("CONFIG")
                .arg("RESETSTAT")
                .query_async(&mut c)
                .await
                .expect("resetstat");
            tokio::time::sleep(Duration::from_secs(4)).await;
            redis::cmd("INFO")
                .arg("commandstats")
                .query_async::<String>(&mut c)
                .await
                .expect("info")
        }
    };
    // The worker's first fetch finds nothing; from then on it is idle. Count over 4 s.
    wait_for("the worker's first fetch", Duration::from_secs(10), || {
        let mut c = c.clone();
        async move {
            let info: String = redis::cmd("INFO")
                .arg("commandstats")
                .query_async(&mut c)
                .await
                .ok()?;
            info.contains("cmdstat_evalsha:").then_some(())
        }
    })
    .await;
    let scripts_and_pops = |info: &str| -> u64 {
        info.lines()
            .filter(|l| {
                l.starts_with("cmdstat_evalsha:")
                    || l.starts_with("cmdstat_eval:")
                    || l.starts_with("cmdstat_blpop:")
            })
            .filter_map(|l| {
                l.split_once("calls=")?
                    .1
                    .split(',')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    };
    let info = stats(&mut c).await;
    running.abort();
    let per_second = scripts_and_pops(&info) as f64 / 4.0;
    let all_including_script_internals = sent(info.clone());
    assert!(
        per_second <= 2.0,
        "an idle worker sent {per_second} commands/s:\n{info}"
    );
    assert!(
        per_second >= 0.5,
        "the idle worker still checks in ({per_second}/s)"
    );
    assert!(all_including_script_internals < 40, "{info}");
}

/// Issue 10: a worker finished a job ("sent" its notification) just before Redis went away; the
/// outage outlasted the job's lease. When Redis is back, the worker must write its pending settle
/// (and re-extend the lease of a job it is still running) before it fetches again: otherwise its
/// own fetch reclaims those jobs and runs them a second time.
#[tokio::test]
async fn an_outage_longer_than_the_lease_runs_nothing_twice() {
    let mut server = RedisServer::start().await;
    let url = server.url();
    let prefix = unique_prefix("outage");
    let lease = Duration::from_secs(1);
    let q = queue(&url, &prefix, lease).await;

    /// Runs per job (by `n`), and the gates jobs 1 and 2 wait at before they return.
    #[derive(Clone)]
    struct Outage {
        runs: Arc<Mutex<Vec<u32>>>,
        sent: Arc<Semaphore>,
        running: Arc<Semaphore>,
    }
    impl Outage {
        fn runs(&self) -> Vec<u32> {
            let mut runs = self.runs.lock().expect("runs").clone();
            runs.sort_unstable();
            runs
        }
    }
    async fn handle(job: TestJob, outage: Data<Outage>) {
        outage.runs.lock().expect("runs").push(job.n);
        let gate = match job.n {
            1 => &outage.sent,
            2 => &outage.running,
            _ => return,
        };
        // The permit goes back when dropped, so a second run (the bug) would pass too.
        let _permit = gate.acquire().await;
    }
    let outage = Outage {
        runs: Arc::default(),
        sent: Arc::new(Semaphore::new(0)),
        running: Arc::new(Semaphore::new(0)),
    };
    let worker = WorkerBuilder::new("outage")
        .backend(q.clone())
        .data(outage.clone())
        .concurrency(4)
        .build(handle);
    let running = tokio::spawn(worker.run());
    for n in [1, 2] {
        q.push(TestJob { n, max: 0 }).await.expect("push");
    }
    wait_for("jobs 1 and 2 to start", Duration::from_secs(10), || {
        let runs = outage.runs();
        async move { (runs == [1, 2]).then_some(()) }
    })
    .await;

    // Both jobs are leased and unsettled. Snapshot that state so the restarted server comes
    // back with it (the private server loads its dump at start-up), then take Redis away.
    let mut c = conn(&url).await;
    let _: () = redis::cmd("SAVE").query_async(&mut c).await.expect("save");
    server.kill();
    // Job 1 has "sent": it returns, and its settle waits for Redis.
    outage.sent.add_permits(1);
    // The outage outlasts the lease, so both leases have expired by the Redis clock when it is
    // back. (The length of the outage is the scenario, not a wait for something to happen.)
    tokio::time::sleep(lease * 3).await;
    server.restart().await;

    // A job pushed after the restart runs: the worker has fetched since Redis came back.
    wait_for("enqueue to work again", Duration::from_secs(20), || {
        let q = q.clone();
        async move { q.push(TestJob { n: 3, max: 0 }).await.ok() }
    })
    .await;
    wait_for("job 3 to run", Duration::from_secs(20), || {
        let runs = outage.runs();
        async move { runs.contains(&3).then_some(()) }
    })
    .await;
    outage.running.add_permits(1);
    let stats = wait_for("every job to settle", Duration::from_secs(20), || {
        let q = q.clone();
        async move {
            q.stats()
                .await
                .ok()
                .filter(|s| s.total == 0 && s.active == 0)
        }
    })
    .await;
    assert_eq!(outage.runs(), [1, 2, 3], "each job ran exactly once");
    assert_eq!(stats.completed, 3, "{stats:?}");
    running.abort();
}

#[tokio::test]
async fn a_killed_workers_jobs_go_back_in_line_where_they_stood() {
    let url = redis_url();
    let prefix = unique_prefix("inline");
    let q = queue(&url, &prefix, Duration::from_secs(2)).await;
    let marks = marks(&prefix);
    let mut c = conn(&url).await;
    enqueue_plain(&q, (0..4).map(|i| format!("held-{i}"))).await;
    let mut doomed = spawn_worker(&url, &prefix, "hang", 2000, 0);
    wait_started(&c, &marks, 4).await;
    kill9(&mut doomed);
    // A backlog falls due after the dead worker leased its jobs.
    enqueue_plain(&q, (0..100).map(|i| format!("backlog-{i:03}"))).await;
    let leases = q.keys().leases.clone();
    wait_for(
        "the dead worker's leases to lapse",
        Duration::from_secs(10),
        || {
            let mut c = c.clone();
            let leases = leases.clone();
            async move {
                let (secs, micros): (u64, u64) =
                    redis::cmd("TIME").query_async(&mut c).await.ok()?;
                let now = secs * 1000 + micros / 1000;
                let lapsed: u64 = c.zcount(&leases, "-inf", now).await.ok()?;
                (lapsed == 4).then_some(())
            }
        },
    )
    .await;
    let mut rescuer = spawn_worker(&url, &prefix, "slow", 2000, 1);
    wait_for("every job to be settled", Duration::from_secs(40), || {
        let q = q.clone();
        async move { q.stats().await.ok().filter(|s| s.total == 0) }
    })
    .await;
    kill9(&mut rescuer);
    let done: Vec<String> = c.lrange(&marks.done, 0, -1).await.expect("done marks");
    assert_eq!(done.len(), 104, "{done:?}");
    // Reclaimed at the dead worker's place in line, not behind the 100 that fell due later.
    let first: Vec<&String> = done.iter().take(8).collect();
    for i in 0..4 {
        let id = format!("held-{i}");
        assert!(first.contains(&&id), "{id} ran late: {done:?}");
    }
    let _: () = c.del(&marks.done).await.expect("clean marks");
    cleanup(&url, &prefix).await;
}
