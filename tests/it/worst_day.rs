//! The worst day: a provider's rate limit shared by the whole fleet, a provider that falls over,
//! and a Redis replica that goes away. Real sandbox providers over sockets, real Redis servers.

use std::time::Duration;

use clap::Parser;
use paywatch_core::store::{Durability, check_queue};
use paywatch_core::{PaymentId, PaymentStatus, Provider, queues};
use paywatch_producer::Producer;
use paywatch_queue::{QueueConfig, RedisQueue};
use paywatch_sandbox::{Fault, FaultScope, NewPayment, Provider as SandboxProvider, SandboxConfig};
use paywatch_tests::stack::Stack;
use paywatch_tests::{RedisServer, cleanup, free_port, redis_url, unique_prefix, wait_for};
use paywatch_worker::config::WorkerConfig;
use paywatch_worker::gate::breaker::BreakerConfig;
use paywatch_worker::gate::budget::RateLimits;
use paywatch_worker::gate::{Admission, Gate, Hold, fingerprint};
use serde_json::{Value, json};

fn order(id: &str, provider: &str, payment_id: &str) -> Value {
    json!({"order_id": id, "provider": provider, "payment_id": payment_id})
}

fn with(mut args: Vec<String>, more: &[&str]) -> Vec<String> {
    args.extend(more.iter().map(|s| s.to_string()));
    args
}

/// Waits until the check queue has nothing left to run (every order reached a final state).
async fn wait_checks_drained(stack: &Stack, within: Duration) {
    wait_for("every check to finish", within, || async {
        let s = stack.stats(queues::CHECK_PAYMENT).await;
        (s.ready + s.scheduled + s.active == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_workers_share_one_provider_budget() {
    // FoxReload's 100 requests per minute, time-scaled to 100 per 6 s.
    let stack = Stack::start_with(
        "budget",
        SandboxConfig {
            rate_limit: Some("100/6s".parse().expect("limit")),
            ..SandboxConfig::default()
        },
    )
    .await;
    let limits = r#"{"foxreload":"100/6s"}"#;
    let mut workers = Vec::new();
    for _ in 0..3 {
        let args = with(stack.worker_args(0.01), &["--rate-limits", limits]);
        workers.push(stack.worker(&args).await);
    }
    let started = std::time::Instant::now();
    let mut ids = Vec::new();
    for i in 0..300 {
        // A third are paid at once, the rest a little later, so some orders need a second look.
        let paid_at = if i % 3 == 0 { 0 } else { 1_500 };
        let payment = stack.payment(
            NewPayment::new(SandboxProvider::FoxReload)
                .step(0, "active")
                .step(paid_at, "completed"),
        );
        let id = format!("fox-{i}");
        let (status, body) = stack.submit(&order(&id, "foxreload", &payment)).await;
        assert!(status == 202 || status == 201, "{status} {body}");
        ids.push(id);
    }
    wait_checks_drained(&stack, Duration::from_secs(120)).await;
    let calls = stack.sandbox.state().request_stats().foxreload;
    eprintln!("300 orders detected in {:?}: {calls:?}", started.elapsed());
    assert_eq!(
        calls.rate_limited, 0,
        "the provider refused calls: {calls:?}"
    );
    assert!(
        calls.max_in_window <= 100,
        "the provider saw more than its budget in one window: {calls:?}"
    );
    assert!(calls.requests >= 300, "{calls:?}");
    for id in &ids {
        let view = stack.order(id).await.expect("order view");
        assert_eq!(view["status"], "paid", "{id}: {view}");
    }
    assert!(stack.dead_checks().await.is_empty());
    for worker in workers {
        worker.stop().await;
    }
    stack.finish().await;
}

/// Asserts the gate told the caller to wait because the provider's circuit is open.
fn assert_held_by_circuit(admission: &Admission) {
    assert!(
        matches!(
            admission,
            Admission::Wait {
                hold: Hold::Circuit,
                ..
            }
        ),
        "{admission:?}"
    );
}

async fn test_gate(prefix: &str, limits: &str, breaker: BreakerConfig) -> Gate {
    let client = redis::Client::open(redis_url()).expect("redis url");
    let conn = redis::aio::ConnectionManager::new(client)
        .await
        .expect("redis");
    let providers = paywatch_core::ProvidersConfig::default();
    let limits = RateLimits::parse_overrides(limits).expect("limits");
    Gate::new(
        paywatch_queue::RedisConn::Single(conn),
        prefix,
        &providers,
        &limits,
        0.3,
        breaker,
    )
}

#[tokio::test]
async fn young_orders_keep_a_reserve_of_the_budget() {
    let prefix = unique_prefix("reserve");
    let off = BreakerConfig {
        failures: 0,
        ..BreakerConfig::default()
    };
    let gate = test_gate(&prefix, r#"{"cashless":"10/1m"}"#, off).await;
    // Old orders (past their fast phase) get 7 of 10: 3 are kept for young ones.
    for i in 0..7 {
        let admitted = gate.admit(Provider::Cashless, false).await.expect("admit");
        assert!(
            matches!(admitted, Admission::Go(_)),
            "old call {i}: {admitted:?}"
        );
    }
    let old = gate.admit(Provider::Cashless, false).await.expect("admit");
    assert!(
        matches!(old, Admission::Wait { hold: Hold::Budget, after } if after > Duration::from_secs(50)),
        "{old:?}"
    );
    for i in 0..3 {
        let admitted = gate.admit(Provider::Cashless, true).await.expect("admit");
        assert!(
            matches!(admitted, Admission::Go(_)),
            "young call {i}: {admitted:?}"
        );
    }
    let young = gate.admit(Provider::Cashless, true).await.expect("admit");
    assert!(
        matches!(
            young,
            Admission::Wait {
                hold: Hold::Budget,
                ..
            }
        ),
        "{young:?}"
    );
    // Other providers are not touched by this one's budget.
    let other = gate.admit(Provider::HandCash, false).await.expect("admit");
    assert!(matches!(other, Admission::Go(_)), "{other:?}");
    cleanup(&redis_url(), &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_provider_is_paused_probed_and_resumed() {
    let stack = Stack::start("breaker").await;
    let sandbox = stack.sandbox.state();
    sandbox
        .set_fault(
            FaultScope::Provider(SandboxProvider::Cashless),
            Fault::status(503),
        )
        .expect("fault");
    let args = with(
        stack.worker_args(0.01),
        &[
            "--breaker-failures",
            "3",
            "--breaker-pause",
            "300ms",
            "--breaker-max-pause",
            "1s",
        ],
    );
    let config = WorkerConfig::try_parse_from(&args).expect("args");
    let fp = fingerprint(
        Provider::Cashless,
        &config.providers_config().expect("providers"),
    );
    let breaker_key = format!("{}:{{provider:cashless:{fp}}}:breaker", stack.prefix);
    let worker = stack.worker(&args).await;
    let mut down = Vec::new();
    for i in 0..20 {
        let payment = stack.payment(
            NewPayment::new(SandboxProvider::Cashless)
                .step(0, "NOT_PAID")
                .step(100, "FULLY_PAID"),
        );
        let id = format!("down-{i}");
        stack.submit(&order(&id, "cashless", &payment)).await;
        down.push(id);
    }
    let client = redis::Client::open(stack.redis.as_str()).expect("url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    // Two failed probes: the breaker has opened and doubled its pause since.
    wait_for("two failed probes", Duration::from_secs(30), || {
        let mut conn = conn.clone();
        let key = breaker_key.clone();
        async move {
            let level: Option<u32> = redis::cmd("HGET")
                .arg(&key)
                .arg("level")
                .query_async(&mut conn)
                .await
                .ok()?;
            (level? >= 2).then_some(())
        }
    })
    .await;
    // A healthy provider is unaffected meanwhile.
    let handcash = stack.payment(
        NewPayment::new(SandboxProvider::HandCash)
            .step(0, "pending")
            .step(50, "paid"),
    );
    stack.submit(&order("up-1", "handcash", &handcash)).await;
    stack
        .wait_status("up-1", PaymentStatus::Paid, Duration::from_secs(30))
        .await;
    // While paused, the failing provider saw only the calls that opened the breaker, the calls
    // already in flight then (at most the worker's concurrency) and one call per probe.
    // Calls first, probes after: a probe in between only loosens the bound.
    let calls = sandbox.request_stats().cashless.requests;
    let level: u32 = redis::cmd("HGET")
        .arg(&breaker_key)
        .arg("level")
        .query_async(&mut conn)
        .await
        .expect("level");
    assert!(
        calls <= 3 + 16 + u64::from(level) + 1,
        "{calls} calls to a provider that is down (probes: {level})"
    );
    // The provider recovers: the next probe closes the breaker and every order is detected,
    // none failed or dead-lettered on the way.
    sandbox
        .clear_faults(FaultScope::Provider(SandboxProvider::Cashless))
        .expect("clear");
    for id in &down {
        stack
            .wait_status(id, PaymentStatus::Paid, Duration::from_secs(30))
            .await;
    }
    let state: Option<String> = redis::cmd("HGET")
        .arg(&breaker_key)
        .arg("state")
        .query_async(&mut conn)
        .await
        .expect("state");
    assert_eq!(state, None, "a closed breaker keeps no state");
    assert!(stack.dead_checks().await.is_empty());
    worker.stop().await;
    stack.finish().await;
}

/// A `redis-server` replicating `primary_port`, on its own free port; killed when dropped.
struct Replica {
    port: u16,
    dir: std::path::PathBuf,
    child: Option<std::process::Child>,
}

impl Replica {
    fn start(primary_port: u16) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("paywatch-replica-{port}"));
        std::fs::create_dir_all(&dir).expect("replica dir");
        let mut replica = Self {
            port,
            dir,
            child: None,
        };
        replica.spawn(primary_port);
        replica
    }

    fn spawn(&mut self, primary_port: u16) {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--replicaof", "127.0.0.1", &primary_port.to_string()])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start redis-server replica");
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The primary's count of replicas that are online and caught up.
async fn online_replicas(url: &str) -> Option<u32> {
    let client = redis::Client::open(url).ok()?;
    let mut conn = client.get_multiplexed_async_connection().await.ok()?;
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query_async(&mut conn)
        .await
        .ok()?;
    Some(
        info.lines()
            .filter(|l| l.starts_with("slave") && l.contains("state=online"))
            .count() as u32,
    )
}

async fn wait_replicas(url: &str, n: u32) {
    wait_for(
        &format!("{n} online replicas"),
        Duration::from_secs(20),
        || async { (online_replicas(url).await == Some(n)).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_are_acknowledged_only_once_a_replica_has_them() {
    let primary = RedisServer::start().await;
    let mut replica = Replica::start(primary.port());
    wait_replicas(&primary.url(), 1).await;
    let prefix = unique_prefix("durable");
    // Generous: a loaded machine must not turn a live replica's acknowledgement into a 503.
    let timeout = Duration::from_secs(2);
    let producer = Producer::connect_sharded(&primary.url(), &prefix, 1)
        .await
        .expect("producer")
        .with_durability(Durability {
            replicas: 1,
            local_fsync: false,
            timeout,
        })
        .expect("durability");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let api = format!("http://{}", listener.local_addr().expect("addr"));
    let router =
        paywatch_producer::http::router(producer.clone(), None, paywatch_tests::stack::test_auth());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let http = paywatch_tests::stack::authorized_client();
    let submit = |id: &'static str| {
        let http = http.clone();
        let api = api.clone();
        async move {
            let response = http
                .post(format!("{api}/v1/orders"))
                .json(&order(id, "cashless", &format!("bill-{id}")))
                .send()
                .await
                .expect("POST");
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let replica_url = replica.url();
    let on_replica = |id: &'static str| {
        let url = replica_url.clone();
        let base = format!("{prefix}:{{{}}}", check_queue(0));
        async move {
            let client = redis::Client::open(url).ok()?;
            let mut conn = client.get_multiplexed_async_connection().await.ok()?;
            let view: Option<Vec<String>> = redis::cmd("FCALL_RO")
                .arg("paywatch_get")
                .arg(1)
                .arg(base)
                .arg(id)
                .query_async(&mut conn)
                .await
                .ok()?;
            view.map(|_| ())
        }
    };

    // A live replica: 202, and the replica has the order by the time the client hears so.
    let (status, body) = submit("d-1").await;
    assert_eq!(status, 202, "{body}");
    // The answer says what was confirmed: one replica, no fsync asked for.
    assert_eq!(
        body["receipt"],
        json!({"replicas_acknowledged": 1, "primary_fsynced": null}),
        "{body}"
    );
    assert!(
        on_replica("d-1").await.is_some(),
        "acknowledged but not on the replica"
    );

    // The replica is gone: the write happens on the primary but is not acknowledged.
    replica.kill();
    wait_replicas(&primary.url(), 0).await;
    let started = std::time::Instant::now();
    let (status, body) = submit("d-2").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "not durable yet, retry");
    assert!(
        started.elapsed() >= timeout,
        "answered before WAIT timed out"
    );
    // A provider webhook's promotion is held to the same rule (the webhook is retried).
    let promoted = producer
        .check_now(
            Provider::Cashless,
            &PaymentId::new("bill-d-1").expect("payment id"),
        )
        .await;
    assert!(
        promoted.as_ref().is_err_and(|e| e.is_not_durable()),
        "{promoted:?}"
    );
    // A webhook for a payment nobody watches wrote nothing and waits for nothing.
    let unknown = producer
        .check_now(
            Provider::Cashless,
            &PaymentId::new("bill-nobody").expect("id"),
        )
        .await
        .expect("nothing to make durable");
    assert!(unknown.is_empty());

    // The replica is back: the client's retry is acknowledged, and nothing is duplicated.
    replica.spawn(primary.port());
    wait_replicas(&primary.url(), 1).await;
    let (status, body) = submit("d-2").await;
    assert!(status == 200 || status == 202, "{status} {body}");
    assert!(
        on_replica("d-2").await.is_some(),
        "acknowledged but not on the replica"
    );
    let queue: RedisQueue<Value> = RedisQueue::connect(
        &primary.url(),
        QueueConfig::new(check_queue(0)).with_prefix(&prefix),
    )
    .await
    .expect("queue");
    let stats = queue.stats().await.expect("stats");
    assert_eq!(
        stats.ready + stats.scheduled + stats.active,
        2,
        "one check job per order: {stats:?}"
    );
    let promoted = producer
        .check_now(
            Provider::Cashless,
            &PaymentId::new("bill-d-1").expect("payment id"),
        )
        .await
        .expect("promotion acknowledged");
    assert_eq!(promoted.len(), 1);
    server.abort();
}

#[tokio::test]
async fn one_probe_speaks_for_the_fleet() {
    let prefix = unique_prefix("probe");
    let breaker = BreakerConfig {
        failures: 2,
        first_pause: Duration::from_millis(200),
        max_pause: Duration::from_secs(1),
        probe_lease: Duration::from_secs(30),
    };
    // Two gates: two worker processes of one fleet.
    let a = test_gate(&prefix, "{}", breaker).await;
    let b = test_gate(&prefix, "{}", breaker).await;
    for gate in [&a, &b] {
        let Admission::Go(ticket) = gate
            .admit(Provider::MiracleCash, true)
            .await
            .expect("admit")
        else {
            panic!("a closed breaker admits");
        };
        gate.report(ticket, true).await.expect("report");
    }
    // Open: both processes are told to wait, and other providers still flow.
    for gate in [&a, &b] {
        let held = gate
            .admit(Provider::MiracleCash, true)
            .await
            .expect("admit");
        assert_held_by_circuit(&held);
    }
    let other = a.admit(Provider::FoxReload, true).await.expect("admit");
    assert!(matches!(other, Admission::Go(_)), "{other:?}");
    // After the pause exactly one probe goes out; the other process keeps waiting for it.
    let probe = wait_for("the probe", Duration::from_secs(10), || async {
        match a.admit(Provider::MiracleCash, true).await {
            Ok(Admission::Go(ticket)) => Some(ticket),
            _ => None,
        }
    })
    .await;
    let held = b.admit(Provider::MiracleCash, true).await.expect("admit");
    assert_held_by_circuit(&held);
    // The probe's success closes the breaker for everyone.
    a.report(probe, false).await.expect("report");
    let resumed = b.admit(Provider::MiracleCash, true).await.expect("admit");
    assert!(matches!(resumed, Admission::Go(_)), "{resumed:?}");
    cleanup(&redis_url(), &prefix).await;
}

#[tokio::test]
async fn a_healthy_provider_costs_no_redis_call_per_check_and_a_failure_ends_the_trust() {
    let prefix = unique_prefix("trust");
    let breaker = BreakerConfig {
        failures: 3,
        first_pause: Duration::from_secs(60),
        max_pause: Duration::from_secs(60),
        probe_lease: Duration::from_secs(30),
    };
    let providers = paywatch_core::ProvidersConfig::default();
    let breaker_key = format!(
        "{prefix}:{{provider:miraclecash:{}}}:breaker",
        fingerprint(Provider::MiracleCash, &providers)
    );
    let client = redis::Client::open(redis_url()).expect("url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    // Another process of the fleet opened the breaker behind this one's back.
    let open_elsewhere = |mut conn: redis::aio::MultiplexedConnection| {
        let key = breaker_key.clone();
        async move {
            let _: () = redis::cmd("HSET")
                .arg(&key)
                .arg("state")
                .arg("open")
                .arg("failures")
                .arg(3)
                .arg("open_until")
                .arg(4_102_444_800_000_i64) // 2100
                .query_async(&mut conn)
                .await
                .expect("open the breaker");
        }
    };

    // Trusting (a long window, so the test does not race it): once Redis said "closed, no
    // failures", calls go without asking again...
    let gate = test_gate(&prefix, "{}", breaker)
        .await
        .with_closed_trust(Duration::from_secs(600));
    let Admission::Go(first) = gate
        .admit(Provider::MiracleCash, true)
        .await
        .expect("admit")
    else {
        panic!("a closed breaker admits");
    };
    gate.report(first, false).await.expect("report");
    open_elsewhere(conn.clone()).await;
    let trusted = gate
        .admit(Provider::MiracleCash, true)
        .await
        .expect("admit");
    let Admission::Go(ticket) = trusted else {
        panic!("within the trust window the gate does not ask Redis: {trusted:?}");
    };
    // ...until this process sees a failure itself: then it asks, and learns the breaker is open.
    gate.report(ticket, true).await.expect("report");
    let held = gate
        .admit(Provider::MiracleCash, true)
        .await
        .expect("admit");
    assert_held_by_circuit(&held);

    // Without trust every call asks Redis, and sees the open breaker at once.
    let _: () = redis::cmd("DEL")
        .arg(&breaker_key)
        .query_async(&mut conn)
        .await
        .expect("close");
    let strict = test_gate(&prefix, "{}", breaker)
        .await
        .with_closed_trust(Duration::ZERO);
    let admitted = strict
        .admit(Provider::MiracleCash, true)
        .await
        .expect("admit");
    assert!(matches!(admitted, Admission::Go(_)), "{admitted:?}");
    open_elsewhere(conn.clone()).await;
    let held = strict
        .admit(Provider::MiracleCash, true)
        .await
        .expect("admit");
    assert_held_by_circuit(&held);
    cleanup(&redis_url(), &prefix).await;
}
