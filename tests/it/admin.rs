//! The operator's tools on a real stack with two shards: `paywatch-producer admin …` (run through
//! the same code as the binary, writing to a buffer) and the `/v1/admin/*` API, over real dead
//! letters — checks refused by the provider in both shards, and a webhook notification whose
//! endpoint answered 410 Gone, with a token in its URL that must never be shown.

use std::time::Duration;

use clap::Parser;
use paywatch_core::PaymentStatus;
use paywatch_core::store::shard_of;
use paywatch_producer::Producer;
use paywatch_producer::admin::Admin;
use paywatch_producer::admin::cli::{AdminCliError, run};
use paywatch_producer::config::{Cli, Command};
use paywatch_sandbox::{Fault, NewPayment, Provider};
use paywatch_tests::stack::{Stack, WebhookReceiver};
use paywatch_tests::wait_for;
use serde_json::{Value, json};

const URL_TOKEN: &str = "tok-s3cret-8841";

/// Runs `paywatch-producer admin <args>` against `admin`; its output, or its error.
async fn admin_cli(admin: &Admin, args: &[&str]) -> Result<String, AdminCliError> {
    let cli = Cli::try_parse_from(["paywatch-producer", "admin"].iter().chain(args))
        .unwrap_or_else(|e| panic!("admin {args:?}: {e}"));
    let Command::Admin(args) = cli.command else {
        panic!("not an admin command")
    };
    let mut out = Vec::new();
    run(admin, &args, &mut out).await?;
    Ok(String::from_utf8(out).expect("utf-8"))
}

/// An order id (with `stem`) that lands in `shard` of 2.
fn id_in_shard(stem: &str, shard: u32) -> String {
    (0..)
        .map(|i| format!("{stem}-{i}"))
        .find(|id| shard_of(id, 2) == shard)
        .expect("some id lands in each shard")
}

async fn post(stack: &Stack, path: &str, content_type: &str, body: &str) -> (u16, Value) {
    let response = stack
        .http
        .post(format!("{}{path}", stack.api))
        .header("content-type", content_type)
        .body(body.to_owned())
        .send()
        .await
        .expect("POST");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn get(stack: &Stack, path: &str) -> (u16, Value) {
    let response = stack
        .http
        .get(format!("{}{path}", stack.api))
        .send()
        .await
        .expect("GET");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn operators_see_retry_and_purge_dead_letters_across_shards() {
    let stack = Stack::start_sharded("admin", 2).await;
    let receiver = WebhookReceiver::start().await;
    let checker = stack.worker(&stack.worker_args(0.01)).await;
    let notifier = stack
        .worker(&stack.notifier_args_for("notify-webhook"))
        .await;
    let refused = [id_in_shard("adm-refused", 0), id_in_shard("adm-refused", 1)];
    for id in &refused {
        let bill = stack.payment(
            NewPayment::new(Provider::Cashless)
                .step(0, "NOT_PAID")
                .step(100, "FULLY_PAID")
                .fault(Fault::status(401).times(1)),
        );
        let (status, body) = stack
            .submit(&json!({"order_id": id, "provider": "cashless", "payment_id": bill}))
            .await;
        assert_eq!(status, 202, "{body}");
    }
    let bill = stack.bill_paid_after(50);
    let gone = format!("{}?token={URL_TOKEN}", receiver.path("gone"));
    let (status, body) = stack
        .submit(
            &json!({"order_id": "adm-paid", "provider": "cashless", "payment_id": bill,
            "notify": {"webhook_url": gone}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");

    let producer = Producer::connect_sharded(&stack.redis, &stack.prefix, 2)
        .await
        .expect("producer");
    let admin = Admin::new(producer);
    wait_for(
        "two dead checks and a dead webhook",
        Duration::from_secs(30),
        || async {
            let page = admin.dead_letters(None, 100).await.ok()?;
            (page.total == 3).then_some(())
        },
    )
    .await;
    checker.stop().await;
    notifier.stop().await;

    // stats: every shard and notifier queue, and the totals.
    let stats = admin_cli(&admin, &["stats"]).await.expect("stats");
    for queue in [
        "check-payment.0",
        "check-payment.1",
        "notify-webhook",
        "notify-ops",
    ] {
        assert!(stats.contains(queue), "{stats}");
    }
    let all = stats.lines().last().expect("totals");
    assert!(all.starts_with("all"), "{stats}");
    assert_eq!(
        all.split_whitespace().nth(4),
        Some("3"),
        "dead in all: {stats}"
    );
    let json_stats: Value =
        serde_json::from_str(&admin_cli(&admin, &["--json", "stats"]).await.expect("json"))
            .expect("--json is JSON");
    assert_eq!(json_stats["queues"].as_array().map(Vec::len), Some(6));

    // list and show; the webhook's token and path never appear.
    let list = admin_cli(&admin, &["dead", "list"]).await.expect("list");
    for id in &refused {
        assert!(list.contains(id.as_str()), "{list}");
    }
    assert!(
        list.contains("notify-webhook") && list.contains("410"),
        "{list}"
    );
    let hook_id = "adm-paid:paid:webhook";
    let shown = admin_cli(
        &admin,
        &["dead", "show", hook_id, "--queue", "notify-webhook"],
    )
    .await
    .expect("show");
    assert!(shown.contains("[redacted]"), "{shown}");
    for secret in [URL_TOKEN, "/gone"] {
        assert!(!shown.contains(secret), "{secret} shown:\n{shown}");
    }
    let (status, detail) = get(
        &stack,
        &format!("/v1/admin/queues/notify-webhook/dead-letters/{hook_id}"),
    )
    .await;
    assert_eq!(status, 200, "{detail}");
    assert!(!detail.to_string().contains(URL_TOKEN), "{detail}");
    // `check-payment` finds a check in whichever shard its order is.
    let shown = admin_cli(
        &admin,
        &["dead", "show", &refused[1], "--queue", "check-payment"],
    )
    .await
    .expect("show a check");
    assert!(
        shown.contains("check-payment.1") && shown.contains("credentials"),
        "{shown}"
    );

    // A final order's notifications, from the API.
    let (status, report) = get(&stack, "/v1/admin/orders/adm-paid").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["order"]["status"], json!("paid"), "{report}");
    assert_eq!(
        report["notifications"][0]["state"],
        json!("dead"),
        "{report}"
    );
    assert!(!report.to_string().contains(URL_TOKEN), "{report}");

    // Bad requests get a 4xx naming what is wrong.
    for (path, code, field) in [
        ("/v1/admin/dead-letters?limit=0", 400, "limit"),
        ("/v1/admin/dead-letters?limit=x", 400, "limit"),
        ("/v1/admin/dead-letters?bogus=1", 400, "bogus"),
        ("/v1/admin/dead-letters?queue=a&queue=b", 400, "queue"),
        ("/v1/admin/dead-letters?queue=nope", 404, "queue"),
        ("/v1/admin/queues/nope/dead-letters/x", 404, "queue"),
        ("/v1/admin/queues/notify-email/dead-letters/x", 404, "id"),
        ("/v1/admin/orders/nope", 404, "order_id"),
        ("/v1/admin/orders/a%20b", 400, "order_id"),
    ] {
        let (status, body) = get(&stack, path).await;
        assert_eq!(
            (status, body["field"].as_str()),
            (code, Some(field)),
            "{path}: {body}"
        );
    }
    let retry = "/v1/admin/queues/check-payment/retry";
    for (content_type, body, code, field) in [
        ("text/plain", r#"{"all":true}"#, 415, "content-type"),
        ("application/json", "{nope", 400, "body"),
        ("application/json", r#"[]"#, 422, "body"),
        ("application/json", r#"{}"#, 422, "ids"),
        ("application/json", r#"{"ids":[]}"#, 422, "ids"),
        ("application/json", r#"{"ids":[""]}"#, 422, "ids[0]"),
        ("application/json", r#"{"ids":[7]}"#, 422, "ids[0]"),
        ("application/json", r#"{"all":false}"#, 422, "all"),
        (
            "application/json",
            r#"{"ids":["a"],"all":true}"#,
            422,
            "all",
        ),
        ("application/json", r#"{"ids":["a"],"x":1}"#, 422, "x"),
        ("application/json", r#"{"ids":["nope"]}"#, 404, "id"),
    ] {
        let (status, answer) = post(&stack, retry, content_type, body).await;
        assert_eq!(
            (status, answer["field"].as_str()),
            (code, Some(field)),
            "{body}: {answer}"
        );
    }
    let (status, answer) = post(
        &stack,
        "/v1/admin/queues/nope/retry",
        "application/json",
        r#"{"all":true}"#,
    )
    .await;
    assert_eq!(status, 404, "{answer}");

    // Operators' mistakes are errors that say what exists; never a panic.
    let err = admin_cli(&admin, &["dead", "list", "--queue", "bogus"])
        .await
        .expect_err("unknown queue");
    assert!(err.to_string().contains("notify-email"), "{err}");
    let err = admin_cli(
        &admin,
        &["dead", "retry", "nope", "--queue", "notify-email"],
    )
    .await
    .expect_err("unknown id");
    assert_eq!(err.to_string(), "no dead letter nope in notify-email");
    let err = admin_cli(
        &admin,
        &["dead", "purge", "--all", "--queue", "notify-webhook"],
    )
    .await
    .expect_err("purge --all without --yes");
    assert!(err.to_string().contains("--yes"), "{err}");
    assert!(
        admin_cli(&admin, &["order", "no-such-order"])
            .await
            .is_err()
    );

    // Retry both checks through `check-payment` (each to its shard), naming one that is not there.
    let out = admin_cli(
        &admin,
        &[
            "dead",
            "retry",
            &refused[0],
            &refused[1],
            "not-there",
            "--queue",
            "check-payment",
        ],
    )
    .await
    .expect("retry");
    assert!(out.contains("2 dead letter(s) retried"), "{out}");
    assert!(out.contains("not in the dead letters: not-there"), "{out}");
    let order = admin_cli(&admin, &["order", &refused[0]])
        .await
        .expect("order");
    assert!(order.contains("pending (watching)"), "{order}");
    assert!(order.contains("timeline (oldest first):"), "{order}");

    // Purge the webhook's dead letter, confirmed.
    let out = admin_cli(
        &admin,
        &[
            "dead",
            "purge",
            "--all",
            "--queue",
            "notify-webhook",
            "--yes",
        ],
    )
    .await
    .expect("purge");
    assert!(out.contains("1 dead letter(s) purged"), "{out}");
    let page = admin.dead_letters(None, 100).await.expect("dead letters");
    assert_eq!(page.total, 0, "{page:?}");

    // The retried checks run again and find their payments paid.
    let checker = stack.worker(&stack.worker_args(0.01)).await;
    for id in &refused {
        stack
            .wait_status(id, PaymentStatus::Paid, Duration::from_secs(20))
            .await;
    }
    checker.stop().await;
    stack.finish().await;
}
