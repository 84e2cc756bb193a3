//! What operators see: health and readiness, clear errors when Redis is away, and the
//! Prometheus endpoint of a worker process.

use std::process::{Command, Stdio};
use std::time::Duration;

use paywatch_core::PaymentStatus;
use paywatch_producer::Producer;
use paywatch_tests::stack::Stack;
use paywatch_tests::{RedisServer, free_port, unique_prefix, wait_for};
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
