//! One door, one set of rules: every order goes through the `paywatch_submit` Redis Function,
//! whether it comes over HTTP or straight from a Redis client. One table of bad orders runs
//! through both: same field, same message, nothing written.

use std::time::Duration;

use paywatch_core::store::{FieldError, ShardKeys};
use paywatch_core::targets;
use paywatch_tests::stack::Stack;
use serde_json::{Value, json};

use paywatch_tests::door::bad_orders;

async fn fcall(
    conn: &mut redis::aio::MultiplexedConnection,
    key: &str,
    body: &[u8],
) -> Result<Vec<String>, redis::RedisError> {
    redis::cmd("FCALL")
        .arg("paywatch_submit")
        .arg(1)
        .arg(key)
        .arg(body)
        .query_async(conn)
        .await
}

async fn connect(stack: &Stack) -> redis::aio::MultiplexedConnection {
    redis::Client::open(stack.redis.as_str())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect")
}

async fn post(stack: &Stack, content_type: Option<&str>, body: Vec<u8>) -> (u16, Value) {
    let mut request = stack.http.post(format!("{}/v1/orders", stack.api));
    if let Some(ct) = content_type {
        request = request.header("content-type", ct);
    }
    let response = request.body(body).send().await.expect("post");
    let code = response.status().as_u16();
    (code, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn bad_orders_get_the_same_verdict_through_http_and_fcall() {
    let stack = Stack::start("door-bad").await;
    let keys = ShardKeys::new(&stack.prefix, 0);
    let mut conn = connect(&stack).await;
    let mut bodies: Vec<(Vec<u8>, &str)> = bad_orders()
        .into_iter()
        .map(|(b, f)| (b.into_bytes(), f))
        .collect();
    let mut raw =
        br#"{"order_id":"o","provider":"cashless","payment_id":"p","metadata":{"s":""#.to_vec();
    raw.extend_from_slice(b"\xff\xfe\"}}");
    bodies.push((raw, "body"));
    for (body, field) in bodies {
        let shown = String::from_utf8_lossy(&body)
            .chars()
            .take(80)
            .collect::<String>();
        let (code, reply) = post(&stack, Some("application/json"), body.clone()).await;
        let expected_code = if field == "body"
            && reply["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("body: not valid JSON"))
        {
            400
        } else {
            422
        };
        assert_eq!(code, expected_code, "HTTP {shown}: {reply}");
        assert_eq!(reply["field"], json!(field), "HTTP {shown}: {reply}");
        let err = fcall(&mut conn, &keys.base, &body)
            .await
            .expect_err("FCALL refuses it too");
        let verdict = FieldError::from_reply(&err).unwrap_or_else(|| panic!("{shown}: {err}"));
        assert_eq!(verdict.field, field, "FCALL {shown}: {err}");
        assert_eq!(
            reply["error"].as_str(),
            Some(verdict.to_string().as_str()),
            "the same words through both doors for {shown}"
        );
        assert!(
            err.to_string().contains(&format!("paywatch: {field}: ")),
            "{err}"
        );
    }
    // Nothing of any of them was written.
    let (jobs, payments, due): (i64, i64, i64) = redis::pipe()
        .cmd("HLEN")
        .arg(format!("{}:jobs", keys.base))
        .cmd("HLEN")
        .arg(&keys.payments)
        .cmd("ZCARD")
        .arg(format!("{}:due", keys.base))
        .query_async(&mut conn)
        .await
        .expect("counts");
    assert_eq!((jobs, payments, due), (0, 0, 0));
    stack.finish().await;
}

#[tokio::test]
async fn only_json_is_accepted_over_http() {
    let stack = Stack::start("door-ct").await;
    let body = br#"{"order_id":"ct","provider":"cashless","payment_id":"p"}"#.to_vec();
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let (code, reply) = post(&stack, ct, body.clone()).await;
        assert_eq!(code, 415, "{ct:?}: {reply}");
    }
    assert!(stack.order("ct").await.is_none(), "nothing stored");
    let (code, _) = post(&stack, Some("Application/JSON; charset=utf-8"), body).await;
    assert_eq!(code, 202);
    stack.finish().await;
}

#[tokio::test]
async fn every_accepted_id_round_trips_through_its_link() {
    let stack = Stack::start("door-ids").await;
    for id in [
        "a/b", "a?b=1", "a#b", "a%2Fb", "...", ".x", "~x.y_z-", "100%", "a\\b", "<x>",
    ] {
        let (code, reply) = stack
            .submit(
                &json!({"order_id": id, "provider": "cashless", "payment_id": format!("p-{id}")}),
            )
            .await;
        assert_eq!(code, 202, "{id}: {reply}");
        let link = reply["links"]["self"].as_str().expect("link");
        let got = stack
            .http
            .get(format!("{}{link}", stack.api))
            .send()
            .await
            .expect("get");
        assert_eq!(got.status().as_u16(), 200, "{id} via {link}");
        let view: Value = got.json().await.expect("view");
        assert_eq!(view["order_id"], json!(id), "{link}");
        assert_eq!(view["links"]["self"], json!(link));
    }
    stack.finish().await;
}

#[tokio::test]
async fn the_same_order_in_other_words_is_the_same_order() {
    let stack = Stack::start("door-same").await;
    let keys = ShardKeys::new(&stack.prefix, 0);
    let mut conn = connect(&stack).await;
    let first = r#"{"order_id":"same","provider":"foxreload","payment_id":"fr-1","notify":{"email":"a@b.co","telegram_chat_id":-100123},"metadata":{"z":1.50,"a":["x",{"k":null}]}}"#;
    let reordered = r#"{ "metadata" : {"a":["x",{"k":null}],"z":1.50}, "notify":{"telegram_chat_id":-100123,"email":"a@b.co","webhook_url":null},
        "payment_id":"fr-1","provider":"foxreload","order_id":"s\u0061me"}"#;
    let (code, _) = post(&stack, Some("application/json"), first.as_bytes().to_vec()).await;
    assert_eq!(code, 202);
    let (code, reply) = post(
        &stack,
        Some("application/json"),
        reordered.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(
        (code, reply["created"].clone()),
        (200, json!(false)),
        "{reply}"
    );
    let reply = fcall(&mut conn, &keys.base, reordered.as_bytes())
        .await
        .expect("FCALL");
    assert_eq!(reply, ["exists", "pending", "watching"]);
    // A different metadata value is a different order.
    let other = first.replace("1.50", "1.5");
    let err = fcall(&mut conn, &keys.base, other.as_bytes())
        .await
        .expect_err("conflict");
    let verdict = FieldError::from_reply(&err).expect("verdict");
    assert!(verdict.is_conflict(), "{verdict}");
    let (code, reply) = post(&stack, Some("application/json"), other.into_bytes()).await;
    assert_eq!((code, reply["field"].clone()), (409, json!("order_id")));
    stack.finish().await;
}

#[tokio::test]
async fn a_caller_cannot_write_outside_its_shard() {
    let stack = Stack::start("door-shard").await;
    let mut conn = connect(&stack).await;
    let body = br#"{"order_id":"o","provider":"cashless","payment_id":"p"}"#;
    for key in [
        ShardKeys::new(&stack.prefix, 1).base,
        ShardKeys::new("someone-else", 0).base,
        format!("{}:orders", stack.prefix),
        "x".to_string(),
    ] {
        let err = fcall(&mut conn, &key, body).await.expect_err("refused");
        let verdict = FieldError::from_reply(&err).expect("verdict");
        assert_eq!(verdict.field, "shard", "{key}: {err}");
    }
    let err = redis::cmd("FCALL")
        .arg("paywatch_submit")
        .arg(1)
        .arg(ShardKeys::new(&stack.prefix, 0).base)
        .arg(&body[..])
        .arg("extra")
        .arg("more")
        .query_async::<redis::Value>(&mut conn)
        .await
        .map(|_| ())
        .expect_err("the body and a traceparent at most");
    assert!(err.to_string().contains("paywatch: body:"), "{err}");
    // A second argument is the order's trace context, held to its rules.
    let err = redis::cmd("FCALL")
        .arg("paywatch_submit")
        .arg(1)
        .arg(ShardKeys::new(&stack.prefix, 0).base)
        .arg(&body[..])
        .arg("extra")
        .query_async::<redis::Value>(&mut conn)
        .await
        .map(|_| ())
        .expect_err("not a traceparent");
    assert!(err.to_string().contains("paywatch: traceparent:"), "{err}");
    stack.finish().await;
}

/// The notifiers re-check targets with `paywatch_core::targets`; the function must agree with
/// them on every one, or an order could be accepted and then silently not delivered.
#[tokio::test]
async fn the_function_and_the_notifiers_agree_on_every_target() {
    let stack = Stack::start("door-targets").await;
    // A webhook notifier with nothing allow-listed publishes that to the function.
    let mut args = stack.notifier_args_for("notify-webhook");
    let at = args
        .iter()
        .position(|a| a == "--webhook-allow-hosts")
        .expect("the stack's notifiers allow-list loopback");
    args.drain(at..at + 2);
    let notifier = stack.worker(&args).await;
    let keys = ShardKeys::new(&stack.prefix, 0);
    let mut conn = connect(&stack).await;
    let emails = [
        "buyer@example.com",
        "a.b+tag@sub.example.co",
        "o'neil@example.org",
        "x@xn--80ak6aa92e.com",
        "{weird}|~@example.com",
        "a@b.com,c@d.com",
        "a@b.com;c@d.com",
        "x@[127.0.0.1]",
        "x@1.2.3.4",
        "a@b",
        ".a@b.com",
        "a.@b.com",
        "a..b@c.com",
        "a@-b.com",
        "a@b-.com",
        "a@b..com",
        "\"q\"@b.com",
        "a@b.com ",
        "Ünï@b.com",
        "@b.com",
        "a@",
    ];
    let urls = [
        "https://shop.example/hooks/paywatch",
        "http://127.0.0.1:8080/hook?x=%20&y=1",
        "https://[::1]:8443/h",
        "http://localhost/h",
        "https://a-b.c/x/y/z?q",
        "http://user:pass@example.com/h",
        "http://user@example.com/h",
        "ftp://x/",
        "https://shop.example/h#frag",
        "https://shop.example/a b",
        "https:///nohost",
        "https://shop.example:0/",
        "https://shop.example:65536/",
        "https://shop.example:/",
        "https://shop.example/%zz",
        "https://shop.example/%4",
        "HTTPS://shop.example/",
        "https://-bad.example/",
        "https://[zz]/",
        "https://",
        // IP literals the SSRF guard blocks (nothing is allow-listed here), in the spellings
        // URL parsers read as them, and hosts they refuse.
        "http://169.254.169.254/latest/meta-data",
        "http://127.1/h",
        "http://0x7f.0.0.1/h",
        "http://[::ffff:10.0.0.1]/h",
        "http://8.8.8.8/h",
        "http://shop.123/h",
        "https://[1:2]/h",
    ];
    let mut n = 0;
    let mut check = |notify: Value, rust: Option<String>| {
        n += 1;
        let body = json!({"order_id": format!("t{n}"), "provider": "cashless", "payment_id": format!("p{n}"), "notify": notify});
        (body, rust)
    };
    let mut cases = Vec::new();
    for email in emails {
        cases.push(check(
            json!({"email": email}),
            targets::email_problem(email).map(str::to_owned),
        ));
    }
    for url in urls {
        cases.push(check(
            json!({"webhook_url": url}),
            targets::webhook_url_problem_unlisted(url),
        ));
    }
    for chat in [1_i64, -1_001_234_567_890, 0, targets::MAX_CHAT_ID, i64::MAX] {
        cases.push(check(
            json!({"telegram_chat_id": chat}),
            targets::telegram_chat_problem(chat).map(str::to_owned),
        ));
    }
    for (body, rust) in cases {
        let lua = fcall(&mut conn, &keys.base, body.to_string().as_bytes()).await;
        match (lua, rust) {
            (Ok(_), None) => {}
            (Err(e), Some(problem)) => {
                let verdict = FieldError::from_reply(&e).expect("verdict");
                assert_eq!(verdict.message, problem, "{body}");
            }
            (lua, rust) => panic!("disagree on {body}: function {lua:?}, notifiers {rust:?}"),
        }
    }
    notifier.stop().await;
    stack.finish().await;
}

#[tokio::test]
async fn an_order_submitted_through_fcall_is_checked_and_found_by_webhooks() {
    let stack = Stack::start("door-fcall").await;
    let keys = ShardKeys::new(&stack.prefix, 0);
    let mut conn = connect(&stack).await;
    // Polling would not look again for a minute: only the provider's webhook (which the sandbox
    // sends when the bill is paid) can make detection fast.
    let slow = json!({"first_delay": "60s", "multiplier": 1.5, "max_delay": "60s",
        "fast_window": "10m", "grace_interval": "5m", "deadline": "1h"});
    let mut args = stack.worker_args(1.0);
    args.extend([
        "--policies".to_string(),
        json!({"cashless": slow}).to_string(),
    ]);
    let worker = stack.worker(&args).await;
    let bill = stack.bill_paid_after(2000);
    let body = json!({"order_id": "via-redis", "provider": "cashless", "payment_id": bill});
    let reply = fcall(&mut conn, &keys.base, body.to_string().as_bytes())
        .await
        .expect("submit");
    assert_eq!(reply, ["created", "pending", "watching"]);
    paywatch_tests::wait_for("the first check", Duration::from_secs(2), || async {
        stack
            .order("via-redis")
            .await
            .filter(|v| v["checks"] == json!(1))
    })
    .await;
    let view = stack
        .wait_status(
            "via-redis",
            paywatch_core::PaymentStatus::Paid,
            Duration::from_secs(15),
        )
        .await;
    // The first check (unpaid) and the webhook's; never the 60 s poll.
    assert_eq!(view["checks"], json!(2), "{view}");
    worker.stop().await;
    let again = fcall(&mut conn, &keys.base, body.to_string().as_bytes())
        .await
        .expect("resubmit");
    assert_eq!(again, ["exists", "paid", "final"]);
    stack.finish().await;
}

/// 500 identical webhooks in 4 s for a bill the provider still calls unpaid: the order stays one
/// job and its checks keep the gap, so the storm costs a few provider calls, not hundreds.
#[tokio::test]
async fn a_webhook_storm_costs_a_few_provider_calls() {
    let stack = Stack::start("door-storm").await;
    let slow = json!({"first_delay": "60s", "multiplier": 1.5, "max_delay": "60s",
        "fast_window": "10m", "grace_interval": "5m", "deadline": "1h"});
    let mut args = stack.worker_args(1.0);
    args.extend([
        "--policies".to_string(),
        json!({"cashless": slow}).to_string(),
    ]);
    let worker = stack.worker(&args).await;
    let bill = stack.payment(
        paywatch_sandbox::NewPayment::new(paywatch_sandbox::Provider::Cashless).step(0, "NOT_PAID"),
    );
    let (code, _) = stack
        .submit(&json!({"order_id": "storm", "provider": "cashless", "payment_id": bill}))
        .await;
    assert_eq!(code, 202);
    let calls = || {
        stack
            .sandbox
            .state()
            .stats(paywatch_sandbox::Provider::Cashless, &bill)
            .map_or(0, |s| s.checks)
    };
    paywatch_tests::wait_for("the first check", Duration::from_secs(5), || async {
        (calls() == 1).then_some(())
    })
    .await;
    // The storm: 40 bursts of 12-13 webhooks, 100 ms apart.
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut sent = 0;
    for burst in 0..40 {
        tick.tick().await;
        let n = if burst % 2 == 0 { 13 } else { 12 };
        let posts = (0..n).map(|_| {
            stack
                .http
                .post(format!("{}/webhooks/cashless", stack.api))
                .json(&json!({"bill": {"id": bill, "status": "FULLY_PAID"}}))
                .send()
        });
        for response in futures::future::join_all(posts).await {
            assert_eq!(response.expect("webhook").status().as_u16(), 200);
            sent += 1;
        }
    }
    assert_eq!(sent, 500);
    // Let the check the last webhooks asked for happen (at most one gap later).
    paywatch_tests::wait_for("the storm's last check", Duration::from_secs(5), || async {
        let view = stack.order("storm").await?;
        (view["checking_now"] == json!(false)
            && view["next_check_at"]
                .as_str()
                .and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok())
                .is_some_and(|t| t > chrono::Utc::now() + chrono::Duration::seconds(30)))
        .then_some(())
    })
    .await;
    let storm_calls = calls() - 1;
    assert!(
        (1..=3).contains(&storm_calls),
        "500 webhooks in 4 s cost {storm_calls} provider calls"
    );
    worker.stop().await;
    stack.finish().await;
}

/// Orders spread over shards by crc32(order id): every door computes the same shard, workers
/// serve the shards they are given, and a process with another shard count refuses to start.
#[tokio::test]
async fn orders_spread_over_shards_and_every_shard_is_served() {
    let stack = Stack::start_sharded("door-shards", 3).await;
    let mut low = stack.worker_args(0.01);
    low.extend(["--check-shards".to_string(), "0,1".to_string()]);
    let mut high = stack.worker_args(0.01);
    high.extend(["--check-shards".to_string(), "2".to_string()]);
    let workers = [stack.worker(&low).await, stack.worker(&high).await];
    let mut conn = connect(&stack).await;
    let mut ids = Vec::new();
    for i in 0..30 {
        let id = format!("sharded-{i}");
        let bill = stack.bill_paid_after(100);
        let body = json!({"order_id": id, "provider": "cashless", "payment_id": bill});
        if i % 2 == 0 {
            let (code, reply) = stack.submit(&body).await;
            assert_eq!(code, 202, "{reply}");
        } else {
            let key = ShardKeys::new(&stack.prefix, paywatch_core::store::shard_of(&id, 3)).base;
            let reply = fcall(&mut conn, &key, body.to_string().as_bytes())
                .await
                .expect("submit");
            assert_eq!(reply[0], "created");
        }
        ids.push(id);
    }
    for id in &ids {
        stack
            .wait_status(
                id,
                paywatch_core::PaymentStatus::Paid,
                Duration::from_secs(20),
            )
            .await;
    }
    // Every shard got some of them, and holds only its own.
    for shard in 0..3 {
        let orders: Vec<String> = redis::cmd("HKEYS")
            .arg(ShardKeys::new(&stack.prefix, shard).orders)
            .query_async(&mut conn)
            .await
            .expect("hkeys");
        assert!(!orders.is_empty(), "shard {shard} got no orders");
        for id in &orders {
            assert_eq!(paywatch_core::store::shard_of(id, 3), shard, "{id}");
        }
    }
    for worker in workers {
        worker.stop().await;
    }
    let other = paywatch_producer::Producer::connect_sharded(&stack.redis, &stack.prefix, 2).await;
    let err = other
        .expect_err("another shard count is refused")
        .to_string();
    assert!(
        err.contains("PAYWATCH_SHARDS is 2") && err.contains("3 shards"),
        "{err}"
    );
    stack.finish().await;
}

/// Rolling upgrades: a process loads its library over an older one, keeps a newer one that
/// still serves it, and refuses to start under one that does not. On a private Redis, since it
/// replaces the library every test uses.
#[tokio::test]
async fn the_function_library_is_never_downgraded() {
    use paywatch_core::store::library;
    let redis = paywatch_tests::RedisServer::start().await;
    let mut conn = redis::Client::open(redis.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let load = |source: String| {
        let mut conn = conn.clone();
        async move {
            let _: String = redis::cmd("FUNCTION")
                .arg("LOAD")
                .arg("REPLACE")
                .arg(source)
                .query_async(&mut conn)
                .await
                .expect("load");
        }
    };
    let with_version = |contract: i64, oldest: i64, revision: i64| {
        library::SOURCE
            .replace(
                &format!("local CONTRACT = {} ", library::CONTRACT),
                &format!("local CONTRACT = {contract} "),
            )
            .replace(
                "local MIN_COMPATIBLE = 1 ",
                &format!("local MIN_COMPATIBLE = {oldest} "),
            )
            .replace(
                &format!("local REVISION = {} ", library::REVISION),
                &format!("local REVISION = {revision} "),
            )
    };
    let loaded = |conn: redis::aio::MultiplexedConnection| async move {
        let mut conn = conn;
        library::loaded_version(&mut conn)
            .await
            .expect("version")
            .map(|l| (l.contract, l.revision))
    };
    // None loaded: ours.
    let producer = paywatch_producer::Producer::connect(&redis.url(), "pw").await;
    assert!(producer.is_ok());
    assert_eq!(
        loaded(conn.clone()).await,
        Some((library::CONTRACT, library::REVISION))
    );
    // An older revision: replaced by ours.
    load(with_version(library::CONTRACT, 1, library::REVISION - 1)).await;
    paywatch_producer::Producer::connect(&redis.url(), "pw")
        .await
        .expect("starts");
    assert_eq!(
        loaded(conn.clone()).await,
        Some((library::CONTRACT, library::REVISION))
    );
    // A newer one that still serves us: kept.
    load(with_version(library::CONTRACT + 1, library::CONTRACT, 1)).await;
    paywatch_producer::Producer::connect(&redis.url(), "pw")
        .await
        .expect("starts");
    assert_eq!(loaded(conn.clone()).await, Some((library::CONTRACT + 1, 1)));
    // A newer one that no longer serves us: refuse to start, naming both.
    load(with_version(
        library::CONTRACT + 1,
        library::CONTRACT + 1,
        1,
    ))
    .await;
    let err = paywatch_producer::Producer::connect(&redis.url(), "pw")
        .await
        .expect_err("refuses")
        .to_string();
    assert!(
        err.contains("contract 2") && err.contains("speaks 1"),
        "{err}"
    );
    assert_eq!(loaded(conn.clone()).await, Some((library::CONTRACT + 1, 1)));
    // Gone (a restart without persistence): the next call loads it again.
    let _: String = redis::cmd("FUNCTION")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .expect("flush");
    let producer = paywatch_producer::Producer::connect(&redis.url(), "pw")
        .await
        .expect("starts");
    let _: String = redis::cmd("FUNCTION")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .expect("flush");
    let submitted = producer
        .submit_json(br#"{"order_id":"after-restart","provider":"cashless","payment_id":"p"}"#)
        .await
        .expect("submits after reloading the library");
    assert_eq!(submitted, paywatch_producer::Submitted::Created);
}

/// The API needs a token (any of several, for rotation); health, readiness and provider
/// webhooks do not, and tokens never show in answers.
#[tokio::test]
async fn the_api_needs_a_token() {
    let stack = Stack::start("door-auth").await;
    let plain = reqwest::Client::new();
    let order = json!({"order_id": "auth-1", "provider": "cashless", "payment_id": "p"});
    for token in [None, Some("wrong-token-0123456789abcdef"), Some("")] {
        let mut post = plain.post(format!("{}/v1/orders", stack.api)).json(&order);
        let mut get = plain.get(format!("{}/v1/orders/auth-1", stack.api));
        if let Some(token) = token {
            post = post.bearer_auth(token);
            get = get.bearer_auth(token);
        }
        let post = post.send().await.expect("post");
        assert_eq!(post.status().as_u16(), 401, "{token:?}");
        assert_eq!(
            post.headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer realm=\"paywatch\"")
        );
        assert_eq!(get.send().await.expect("get").status().as_u16(), 401);
    }
    assert!(stack.order("auth-1").await.is_none(), "nothing stored");
    for open in ["/healthz", "/readyz"] {
        let code = plain
            .get(format!("{}{open}", stack.api))
            .send()
            .await
            .expect("get")
            .status();
        assert_eq!(code.as_u16(), 200, "{open}");
    }
    let hook = plain
        .post(format!("{}/webhooks/cashless", stack.api))
        .json(&json!({"bill": {"id": "unknown"}}))
        .send()
        .await
        .expect("webhook");
    assert_eq!(
        hook.status().as_u16(),
        200,
        "provider webhooks keep their own checks"
    );
    let (code, reply) = stack.submit(&order).await;
    assert_eq!(code, 202);
    assert!(!reply.to_string().contains(paywatch_tests::stack::API_TOKEN));
    // Rotation: a second token works beside the first.
    let auth = paywatch_producer::auth::ApiAuth::new(
        [
            paywatch_tests::stack::API_TOKEN.to_string(),
            "next-token-abcdefghijklmnopqrstuv".to_string(),
        ],
        None,
    )
    .expect("auth");
    let mut headers = axum::http::HeaderMap::new();
    headers.insert(
        "authorization",
        "Bearer next-token-abcdefghijklmnopqrstuv"
            .parse()
            .expect("header"),
    );
    assert!(auth.allows(&headers));
    stack.finish().await;
}

/// A front end follows one order live: the current state first, then each change, and the
/// stream ends once paywatch stops watching. With the signed link, no API token is needed.
#[tokio::test]
async fn a_front_end_follows_an_order_over_server_sent_events() {
    use eventsource_stream::Eventsource;
    use futures::StreamExt;
    let stack = Stack::start("door-sse").await;
    let bill = stack.payment(
        paywatch_sandbox::NewPayment::new(paywatch_sandbox::Provider::Cashless)
            .step(0, "NOT_PAID")
            .step(1500, "PARTIALLY_PAID")
            .step(3000, "FULLY_PAID"),
    );
    let (code, reply) = stack
        .submit(&json!({"order_id": "live/1", "provider": "cashless", "payment_id": bill}))
        .await;
    assert_eq!(code, 202);
    let link = reply["links"]["events"]
        .as_str()
        .expect("events link")
        .to_string();
    assert!(
        link.starts_with("/v1/orders/live%2F1/events?exp="),
        "{link}"
    );
    // Without the signature (and without a token) the stream is refused.
    let plain = reqwest::Client::new();
    let unsigned = plain
        .get(format!("{}/v1/orders/live%2F1/events", stack.api))
        .send()
        .await
        .expect("get");
    assert_eq!(unsigned.status().as_u16(), 401);
    let forged = plain
        .get(format!("{}{}", stack.api, link.replace("sig=", "sig=x")))
        .send()
        .await
        .expect("get");
    assert_eq!(forged.status().as_u16(), 401);

    let response = plain
        .get(format!("{}{link}", stack.api))
        .send()
        .await
        .expect("events");
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"))
    );
    let worker = stack.worker(&stack.worker_args(0.1)).await;
    let events: Vec<Value> = tokio::time::timeout(
        Duration::from_secs(30),
        response
            .bytes_stream()
            .eventsource()
            .map(|e| {
                let e = e.expect("event");
                assert_eq!(e.event, "status");
                serde_json::from_str::<Value>(&e.data).expect("json")
            })
            .collect(),
    )
    .await
    .expect("the stream ends once the order is final");
    worker.stop().await;
    let statuses: Vec<&str> = events.iter().filter_map(|e| e["status"].as_str()).collect();
    assert_eq!(statuses.first(), Some(&"pending"), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&"paid"), "{statuses:?}");
    assert!(statuses.contains(&"partially_paid"), "{statuses:?}");
    let last = events.last().expect("events");
    assert_eq!(last["phase"], json!("final"));
    assert_eq!(last["order_id"], json!("live/1"));
    // The API token works on the stream too; a final order's stream is one event long.
    let again = stack
        .http
        .get(format!("{}/v1/orders/live%2F1/events", stack.api))
        .send()
        .await
        .expect("events");
    let events: Vec<_> = again.bytes_stream().eventsource().collect().await;
    assert_eq!(events.len(), 1);
    stack.finish().await;
}

/// The function's list of providers is `Provider::ALL`: each is accepted, and the refusal of an
/// unknown one lists exactly them.
#[tokio::test]
async fn the_function_knows_exactly_the_providers_the_workers_poll() {
    let stack = Stack::start("door-providers").await;
    let keys = ShardKeys::new(&stack.prefix, 0);
    let mut conn = connect(&stack).await;
    for provider in paywatch_core::Provider::ALL {
        let body = json!({"order_id": format!("p-{provider}"), "provider": provider.as_str(), "payment_id": "x"});
        let reply = fcall(&mut conn, &keys.base, body.to_string().as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{provider}: {e}"));
        assert_eq!(reply[0], "created");
    }
    let body = json!({"order_id": "p-x", "provider": "paypal", "payment_id": "x"});
    let err = fcall(&mut conn, &keys.base, body.to_string().as_bytes())
        .await
        .expect_err("unknown");
    let verdict = FieldError::from_reply(&err).expect("verdict");
    assert_eq!(
        verdict.message,
        format!("must be one of {}", paywatch_core::Provider::names())
    );
    stack.finish().await;
}

/// One CLI refusal case: the flags after the order's three, and the body HTTP would get for the
/// same order, written out here in the CLI's layout (metadata first) so the byte offsets of a
/// syntax verdict agree too.
struct CliCase {
    flags: Vec<String>,
    field: &'static str,
}

fn cli_case(flags: &[&str], field: &'static str) -> CliCase {
    CliCase {
        flags: flags.iter().map(|s| s.to_string()).collect(),
        field,
    }
}

/// The body of `enqueue` with `flags`, built by hand: strings JSON-quoted, the chat id as written
/// when it is a number, metadata as written.
fn cli_body(flags: &[String]) -> String {
    let value = |name: &str| {
        flags
            .iter()
            .position(|f| f == name)
            .map(|i| flags[i + 1].clone())
    };
    let quoted = |s: String| Value::String(s).to_string();
    let mut body = String::from("{");
    if let Some(metadata) = value("--metadata") {
        body.push_str(&format!(r#""metadata":{metadata},"#));
    }
    body.push_str(&format!(
        r#""order_id":{},"provider":{},"payment_id":{}"#,
        quoted(value("--order-id").expect("order id")),
        quoted(value("--provider").expect("provider")),
        quoted(value("--payment-id").expect("payment id")),
    ));
    let mut notify = Vec::new();
    if let Some(email) = value("--email") {
        notify.push(format!(r#""email":{}"#, quoted(email)));
    }
    if let Some(chat) = value("--telegram-chat-id") {
        let number = serde_json::from_str::<Value>(&chat).is_ok_and(|v| v.is_number())
            && !chat.starts_with(['0', '+'])
            || chat == "0";
        notify.push(format!(
            r#""telegram_chat_id":{}"#,
            if number { chat } else { quoted(chat) }
        ));
    }
    if let Some(url) = value("--webhook-url") {
        notify.push(format!(r#""webhook_url":{}"#, quoted(url)));
    }
    if !notify.is_empty() {
        body.push_str(&format!(r#","notify":{{{}}}"#, notify.join(",")));
    }
    body.push('}');
    body
}

/// `paywatch-producer enqueue` (the real binary) judges like HTTP and FCALL: the same field and
/// words for every refusal, nothing written, and an order it stores is the order HTTP stores
/// (`1.50` stays `1.50`, so the same order sent over HTTP is "already accepted", not a conflict).
#[tokio::test]
async fn the_cli_judges_like_http_and_fcall() {
    paywatch_tests::bins::dir();
    let stack = Stack::start("door-cli").await;
    let keys = ShardKeys::new(&stack.prefix, 0);
    let mut conn = connect(&stack).await;
    let deep = format!("{}1{}", r#"{"a":"#.repeat(40), "}".repeat(40));
    let blob = format!(r#"{{"blob":"{}"}}"#, "x".repeat(17_000));
    let cases = [
        cli_case(&["--provider", "CASHLESS"], "provider"),
        cli_case(&["--provider", "paypal"], "provider"),
        cli_case(&["--provider", " cashless"], "provider"),
        cli_case(&["--provider", ""], "provider"),
        cli_case(&["--order-id", ""], "order_id"),
        cli_case(&["--order-id", "a b"], "order_id"),
        cli_case(&["--order-id", ".."], "order_id"),
        cli_case(&["--payment-id", ""], "payment_id"),
        cli_case(&["--email", "a@b.com,c@d.com"], "notify.email"),
        cli_case(&["--email", "nope"], "notify.email"),
        cli_case(&["--telegram-chat-id", "0"], "notify.telegram_chat_id"),
        cli_case(
            &["--telegram-chat-id", "9007199254740992"],
            "notify.telegram_chat_id",
        ),
        cli_case(
            &["--telegram-chat-id", "-99999999999999999999999"],
            "notify.telegram_chat_id",
        ),
        cli_case(&["--telegram-chat-id", "1.5"], "notify.telegram_chat_id"),
        cli_case(&["--telegram-chat-id", "1e3"], "notify.telegram_chat_id"),
        cli_case(&["--telegram-chat-id", "abc"], "notify.telegram_chat_id"),
        cli_case(
            &["--webhook-url", "ftp://example.com/h"],
            "notify.webhook_url",
        ),
        cli_case(
            &["--webhook-url", "http://user:pass@example.com/h"],
            "notify.webhook_url",
        ),
        cli_case(&["--metadata", r#"{"a":1,"a":2}"#], "metadata.a"),
        cli_case(&["--metadata", "[1]"], "metadata"),
        cli_case(&["--metadata", r#""x""#], "metadata"),
        cli_case(&["--metadata", &blob], "metadata"),
        cli_case(&["--metadata", r#"{"n":01}"#], "body"),
        cli_case(&["--metadata", r#"{"s":"\ud800"}"#], "body"),
        cli_case(&["--metadata", "{nope"], "body"),
        cli_case(&["--metadata", r#"{"a":1"#], "body"),
        cli_case(&["--metadata", &deep], "body"),
    ];
    for case in cases {
        let mut flags: Vec<String> = ["--order-id", "cli-1", "--provider", "cashless"]
            .iter()
            .chain(&["--payment-id", "bill-1"])
            .map(|s| s.to_string())
            .collect();
        // A case's flag replaces the default of the same name.
        for pair in case.flags.chunks(2) {
            match flags.iter().position(|f| *f == pair[0]) {
                Some(i) => flags[i + 1] = pair[1].clone(),
                None => flags.extend(pair.iter().cloned()),
            }
        }
        let shown: String = flags.join(" ").chars().take(100).collect();
        let body = cli_body(&flags);
        let (code, reply) = post(&stack, Some("application/json"), body.clone().into_bytes()).await;
        assert!(code == 400 || code == 422, "HTTP {shown}: {code} {reply}");
        assert_eq!(reply["field"], json!(case.field), "HTTP {shown}: {reply}");
        let words = reply["error"].as_str().expect("error").to_owned();
        let err = fcall(&mut conn, &keys.base, body.as_bytes())
            .await
            .expect_err("FCALL refuses it too");
        let verdict = FieldError::from_reply(&err).unwrap_or_else(|| panic!("{shown}: {err}"));
        assert_eq!(verdict.to_string(), words, "FCALL {shown}");
        let args: Vec<&str> = std::iter::once("enqueue")
            .chain(flags.iter().map(String::as_str))
            .collect();
        let (exit, stdout, stderr) =
            paywatch_tests::bins::producer(&stack.redis, &stack.prefix, &args).await;
        assert_eq!(exit, Some(1), "CLI {shown}: {stdout}{stderr}");
        assert_eq!(stderr.trim_end(), format!("error: {words}"), "CLI {shown}");
    }
    let (jobs, due): (i64, i64) = redis::pipe()
        .cmd("HLEN")
        .arg(format!("{}:jobs", keys.base))
        .cmd("ZCARD")
        .arg(format!("{}:due", keys.base))
        .query_async(&mut conn)
        .await
        .expect("counts");
    assert_eq!((jobs, due), (0, 0), "nothing written");

    // Accepted: the metadata as written, so HTTP sees the same order.
    let enqueue = |metadata: &'static str| {
        let redis = stack.redis.clone();
        let prefix = stack.prefix.clone();
        async move {
            paywatch_tests::bins::producer(
                &redis,
                &prefix,
                &[
                    "enqueue",
                    "--order-id",
                    "cli-ok",
                    "--provider",
                    "cashless",
                    "--payment-id",
                    "bill-ok",
                    "--telegram-chat-id",
                    "-100123",
                    "--metadata",
                    metadata,
                ],
            )
            .await
        }
    };
    let (exit, stdout, stderr) = enqueue(r#"{"z":1.50,"big":1234567890123456789012345}"#).await;
    assert_eq!(exit, Some(0), "{stdout}{stderr}");
    // The same order in HTTP's usual layout, keys in another order.
    let same = r#"{"order_id":"cli-ok","provider":"cashless","payment_id":"bill-ok","notify":{"telegram_chat_id":-100123},"metadata":{"z":1.50,"big":1234567890123456789012345}}"#;
    let (code, reply) = post(&stack, Some("application/json"), same.into()).await;
    assert_eq!(
        (code, reply["created"].clone()),
        (200, json!(false)),
        "{reply}"
    );
    // Another body under that id: a conflict, in the same words through every door.
    let (exit, _, stderr) = enqueue(r#"{"z":1.5,"big":1234567890123456789012345}"#).await;
    let other = r#"{"order_id":"cli-ok","provider":"cashless","payment_id":"bill-ok","metadata":{"z":1.5}}"#;
    let (code, reply) = post(&stack, Some("application/json"), other.into()).await;
    assert_eq!(code, 409, "{reply}");
    let words = "order_id: an order with this id already exists with a different body";
    assert_eq!(reply, json!({"error": words, "field": "order_id"}));
    assert_eq!(exit, Some(1), "{stderr}");
    assert_eq!(stderr.trim_end(), format!("error: {words}"));
    let err = fcall(&mut conn, &keys.base, other.as_bytes())
        .await
        .expect_err("conflict");
    let verdict = FieldError::from_reply(&err).expect("verdict");
    assert_eq!(verdict.to_string(), words);
    // The Rust API says the same.
    let producer = paywatch_producer::Producer::connect(&stack.redis, &stack.prefix)
        .await
        .expect("producer");
    let mut spec = paywatch_core::OrderSpec::new(
        "cli-ok".parse().expect("id"),
        paywatch_core::Provider::Cashless,
        "bill-ok".parse().expect("id"),
        paywatch_core::NotifyTargets::default(),
    );
    spec.metadata = Some(paywatch_core::Metadata::from_json(r#"{"z":1.5}"#).expect("json"));
    let err = producer.enqueue_order(&spec).await.expect_err("conflict");
    assert_eq!(err.to_string(), words);
    spec.order_id = "cli-rust".parse().expect("id");
    spec.notify.email = Some("a@b.com,c@d.com".into());
    let err = producer.enqueue_order(&spec).await.expect_err("invalid");
    let body = r#"{"order_id":"cli-rust","provider":"cashless","payment_id":"bill-ok","notify":{"email":"a@b.com,c@d.com"}}"#;
    let (code, reply) = post(&stack, Some("application/json"), body.into()).await;
    assert_eq!(code, 422, "{reply}");
    assert_eq!(reply["error"].as_str(), Some(err.to_string().as_str()));
    stack.finish().await;
}

/// The submit function takes exactly one key, the shard's; a second (or none) is refused in the
/// door's words, and nothing is written.
#[tokio::test]
async fn the_submit_function_takes_exactly_one_key() {
    let stack = Stack::start("door-keys").await;
    let keys = ShardKeys::new(&stack.prefix, 0);
    let mut conn = connect(&stack).await;
    let body = r#"{"order_id":"k-1","provider":"cashless","payment_id":"p"}"#;
    for extra in [vec![keys.base.clone(), "other".into()], vec![]] {
        let mut cmd = redis::cmd("FCALL");
        cmd.arg("paywatch_submit")
            .arg(extra.len())
            .arg(&extra)
            .arg(body);
        let err = cmd
            .query_async::<Vec<String>>(&mut conn)
            .await
            .expect_err("refused");
        let verdict = FieldError::from_reply(&err).unwrap_or_else(|| panic!("{err}"));
        assert_eq!(verdict.field, "shard", "{err}");
        assert!(
            verdict.message.starts_with("takes exactly one key"),
            "{err}"
        );
    }
    assert!(stack.order("k-1").await.is_none(), "nothing written");
    fcall(&mut conn, &keys.base, body.as_bytes())
        .await
        .expect("one key is the contract");
    stack.finish().await;
}

/// `Bearer` in any case gets in (RFC 9110 §11.1); two `Authorization` headers never do (which
/// one would a proxy have checked?); unknown paths answer JSON like every other refusal.
#[tokio::test]
async fn bearer_is_case_insensitive_one_header_only_and_unknown_paths_answer_json() {
    let stack = Stack::start("door-bearer").await;
    let plain = reqwest::Client::new();
    let token = paywatch_tests::stack::API_TOKEN;
    for (i, scheme) in ["bearer", "BEARER", "Bearer", "bEaReR"].iter().enumerate() {
        let response = plain
            .post(format!("{}/v1/orders", stack.api))
            .header("authorization", format!("{scheme} {token}"))
            .json(&json!({"order_id": format!("b-{i}"), "provider": "cashless", "payment_id": "p"}))
            .send()
            .await
            .expect("post");
        assert_eq!(response.status().as_u16(), 202, "{scheme}");
    }
    for second in [token, "wrong-token-0123456789abcdef"] {
        let response = plain
            .get(format!("{}/v1/orders/b-0", stack.api))
            .header("authorization", format!("Bearer {token}"))
            .header("authorization", format!("Bearer {second}"))
            .send()
            .await
            .expect("get");
        assert_eq!(response.status().as_u16(), 401, "two headers");
    }
    for path in ["/v1", "/v1/", "/nope", "/v1/order"] {
        let response = stack
            .http
            .get(format!("{}{path}", stack.api))
            .send()
            .await
            .expect("get");
        assert_eq!(response.status().as_u16(), 404, "{path}");
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    stack.finish().await;
}
