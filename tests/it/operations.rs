//! What operators see: health and readiness, clear errors when Redis is away, and the
//! Prometheus endpoint of a worker process.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use paywatch_core::PaymentStatus;
use paywatch_producer::Producer;
use paywatch_tests::stack::Stack;
use paywatch_tests::{RedisServer, free_port, redis_url, unique_prefix, wait_for};
use serde_json::json;

#[tokio::test]
async fn health_readiness_and_errors_while_redis_is_away() {
    let mut redis = RedisServer::start().await;
    let producer = Producer::connect(&redis.url(), &unique_prefix("ops-api"))
        .await
        .expect("producer");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let api = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            paywatch_producer::http::router(producer, None, paywatch_tests::stack::test_auth()),
        )
        .await;
    });
    let http = paywatch_tests::stack::authorized_client();
    let status = |path: &'static str| {
        let (http, api) = (http.clone(), api.clone());
        async move {
            http.get(format!("{api}{path}"))
                .send()
                .await
                .expect("get")
                .status()
                .as_u16()
        }
    };
    assert_eq!(status("/healthz").await, 200);
    assert_eq!(status("/readyz").await, 200);
    assert_eq!(status("/v1/orders/nope").await, 404);
    assert_eq!(status("/v1/orders/has%20space").await, 400);

    redis.kill();
    assert_eq!(status("/healthz").await, 200, "the process is still up");
    wait_for(
        "readyz to report Redis gone",
        Duration::from_secs(10),
        || async { (status("/readyz").await == 503).then_some(()) },
    )
    .await;
    let order = json!({"order_id": "o-1", "provider": "cashless", "payment_id": "b-1"});
    let response = http
        .post(format!("{api}/v1/orders"))
        .json(&order)
        .send()
        .await
        .expect("post");
    assert_eq!(
        response.status().as_u16(),
        503,
        "unavailable, not lost: the shop retries"
    );
    let body: serde_json::Value = response.json().await.expect("json");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("retry")),
        "{body}"
    );

    redis.restart().await;
    wait_for(
        "the producer to recover",
        Duration::from_secs(20),
        || async {
            let r = http
                .post(format!("{api}/v1/orders"))
                .json(&order)
                .send()
                .await
                .ok()?;
            (r.status().as_u16() == 202).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_worker_exposes_prometheus_metrics() {
    let stack = Stack::start("ops-metrics").await;
    let port = free_port();
    let mut args = stack.worker_args(0.01);
    args.remove(0);
    args.extend(["--metrics-listen".to_string(), format!("127.0.0.1:{port}")]);
    let mut worker = Command::new(env!("CARGO_BIN_EXE_pw-worker"))
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn pw-worker");
    let bill = stack.bill_paid_after(100);
    stack
        .submit(&json!({"order_id": "m-1", "provider": "cashless", "payment_id": bill, "notify": {"telegram_chat_id": 1}}))
        .await;
    stack
        .wait_status("m-1", PaymentStatus::Paid, Duration::from_secs(20))
        .await;
    let metrics = wait_for("the order's metrics", Duration::from_secs(20), || async {
        let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        (text.contains("paywatch_orders_final_total") && text.contains("paywatch_queue_jobs{"))
            .then_some(text)
    })
    .await;
    for (path, want) in [("/healthz", 200), ("/readyz", 200), ("/nope", 404)] {
        let status = reqwest::get(format!("http://127.0.0.1:{port}{path}"))
            .await
            .expect("GET the worker's listener")
            .status()
            .as_u16();
        assert_eq!(status, want, "{path}");
    }
    let _ = worker.kill();
    let _ = worker.wait();
    for name in [
        "paywatch_checks_total",
        "paywatch_order_time_to_final_seconds",
        "paywatch_order_detection_lag_seconds",
        "paywatch_order_provider_calls",
        "paywatch_provider_request_duration_seconds",
        "paywatch_queue_jobs_fetched_total",
        "paywatch_queue_jobs_completed_total",
        "paywatch_queue_next_due_seconds",
        "paywatch_queue_lateness_seconds",
        "paywatch_notifications_enqueued_total",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    assert!(
        !metrics.contains("sandbox-cashless"),
        "no credentials in metrics"
    );
    stack.finish().await;
}

/// One candidate for the ops watcher's lease: asks for it over and over for `rounds` answers,
/// pausing about one lease after each `true` (so its renewal lands near the lease's end, where
/// another candidate may take a lapsed lease), and returns the times it was sure to lead: from
/// each `true` answer until one lease after its question (the lease was set in between, so it
/// covers at least that long).
async fn candidate(
    name: String,
    prefix: String,
    lease: Duration,
    rounds: usize,
) -> Vec<(Instant, Instant, String)> {
    let client = redis::Client::open(redis_url()).expect("REDIS_URL parses");
    let conn = paywatch_queue::RedisConn::Single(
        redis::aio::ConnectionManager::new(client)
            .await
            .expect("the test Redis answers"),
    );
    let mut terms = Vec::new();
    for round in 0..rounds {
        let asked = Instant::now();
        let leads = paywatch_worker::ops::lead(&conn, &prefix, &name, lease)
            .await
            .expect("the lease script answers");
        let answered = Instant::now();
        if leads {
            if answered < asked + lease {
                terms.push((answered, asked + lease, name.clone()));
            }
            // Renew close to the lease's end, a little before or after it.
            let jitter = Duration::from_micros((round as u64 * 379) % 2000);
            tokio::time::sleep(lease - Duration::from_millis(1) + jitter).await;
        }
    }
    terms
}

/// Several processes serving `notify-ops` compete for one lease: at no moment may two of them
/// believe they are the watcher (two digests of the same dead letters). A lease short enough to
/// lapse between renewals makes them meet at its end, over and over.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_candidates_never_both_lead_the_ops_watcher() {
    let prefix = unique_prefix("ops-lead");
    let lease = Duration::from_millis(5);
    let candidates: Vec<_> = (0..4)
        .map(|i| {
            tokio::spawn(candidate(
                format!("worker-{i}"),
                prefix.clone(),
                lease,
                1500,
            ))
        })
        .collect();
    let mut terms = Vec::new();
    for candidate in candidates {
        terms.extend(candidate.await.expect("a candidate ran"));
    }
    let leaders: std::collections::BTreeSet<_> = terms.iter().map(|t| t.2.clone()).collect();
    assert!(leaders.len() > 1, "the lease changed hands: {leaders:?}");
    terms.sort();
    for (i, (from, until, who)) in terms.iter().enumerate() {
        for (other_from, other_until, other) in &terms[i + 1..] {
            if other_from >= until {
                break;
            }
            assert!(
                other == who,
                "{who} and {other} both led at once: {:?} overlaps {:?}",
                (*from - terms[0].0, *until - terms[0].0),
                (*other_from - terms[0].0, *other_until - terms[0].0)
            );
        }
    }
}
