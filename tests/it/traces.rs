//! Traces as a real OTLP collector sees them: the real `paywatch-producer` and `paywatch-worker`
//! binaries export to an OTLP/HTTP receiver built on the protocol's own definitions
//! (`opentelemetry-proto`), which decodes every span. One order is submitted with a client's
//! `traceparent`, checked 50 times, woken by a provider webhook and notified on three channels;
//! the test reads the shape of its traces: one order trace (submit → first check), every later
//! run a short trace linked to it, no trace beyond 20 spans, no secret in any attribute, and the
//! workers' JSON log lines carrying the ids of the spans they were logged in.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use paywatch_sandbox::smtp::{SmtpSink, SmtpSinkConfig};
use paywatch_sandbox::{NewPayment, Provider, Sandbox, SandboxConfig};
use paywatch_tests::otlp::{receiver, snapshot};
use paywatch_tests::stack::{API_TOKEN, WEBHOOK_SECRET, WebhookReceiver};
use paywatch_tests::{bins, cleanup, free_port, redis_url, unique_prefix, wait_for};
use rustix::process::{Pid, Signal, kill_process};
use serde_json::{Value, json};

/// A binary of the product with the test's Redis, prefix and trace exporter.
fn command(name: &str, prefix: &str, otlp: &str, log: &Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(bins::dir().join(name));
    command
        .env("REDIS_URL", redis_url())
        .env("PAYWATCH_PREFIX", prefix)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", otlp)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("create the log"))
        .kill_on_drop(true);
    command
}

const SANDBOX_TIME_SCALE: &str = "0.004";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_checked_fifty_times_has_one_short_trace_per_run_all_linked_to_its_own() {
    let prefix = unique_prefix("traces");
    let logs = tempfile::tempdir().expect("tempdir");
    let (otlp, spans) = receiver().await;
    let api_port = free_port();
    let api = format!("http://127.0.0.1:{api_port}");
    // The sandbox's own webhook would come at a time of its choosing: the test sends the
    // provider's webhook itself, once the order has been checked 50 times.
    let sandbox = Sandbox::start(
        SandboxConfig::default(),
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("start the sandbox");
    let smtp = SmtpSink::start(
        SmtpSinkConfig::default(),
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("start the SMTP sink");
    let hooks = WebhookReceiver::start().await;

    let mut producer = command(
        "paywatch-producer",
        &prefix,
        &otlp,
        &logs.path().join("producer.log"),
    )
    .arg("serve")
    .env("PAYWATCH_API_TOKENS", API_TOKEN)
    .env("PAYWATCH_PRODUCER_LISTEN", format!("127.0.0.1:{api_port}"))
    .env("PAYWATCH_WEBHOOK_MIN_GAP", "1ms")
    .spawn()
    .expect("start paywatch-producer");
    let checker = |log: &str| {
        let mut c = command("paywatch-worker", &prefix, &otlp, &logs.path().join(log));
        c.args([
            "--queues",
            "check-payment",
            "--sandbox-url",
            &sandbox.base_url(),
        ])
        .args(["--time-scale", SANDBOX_TIME_SCALE, "--grace-period", "5s"]);
        c
    };
    // Its spans are exported only at shutdown: the SIGTERM drain must flush them.
    let mut first = checker("checker-1.log")
        .env("OTEL_BSP_SCHEDULE_DELAY", "600000")
        .spawn()
        .expect("start the first checker");
    let mut notifier = command(
        "paywatch-worker",
        &prefix,
        &otlp,
        &logs.path().join("notifier.log"),
    )
    .args(["--queues", "notify-email,notify-telegram,notify-webhook"])
    .args(["--sandbox-url", &sandbox.base_url()])
    .args([
        "--smtp-url",
        &smtp.url(),
        "--email-from",
        "shop@example.com",
    ])
    .args([
        "--webhook-secret",
        WEBHOOK_SECRET,
        "--webhook-allow-hosts",
        "127.0.0.1",
    ])
    .spawn()
    .expect("start the notifier");

    // Paid only long after the test is over, unless the test moves the payment's clock.
    let bill = sandbox
        .state()
        .create_payment(
            NewPayment::new(Provider::Cashless)
                .step(0, "NOT_PAID")
                .step(3_600_000, "FULLY_PAID")
                .webhook(false),
        )
        .expect("sandbox payment")
        .id;
    let client = paywatch_tests::stack::authorized_client();
    let shop_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let order = json!({
        "order_id": format!("traced-{}", uuid::Uuid::new_v4()),
        "provider": "cashless",
        "payment_id": bill,
        "notify": {"email": "buyer@example.com", "telegram_chat_id": 424242,
                   "webhook_url": hooks.url},
    });
    let order_id = order["order_id"].as_str().expect("id").to_string();
    // A malformed context is refused naming the field, as the function refuses a body field.
    let refused = wait_for("the API answers", Duration::from_secs(60), || {
        let client = client.clone();
        let order = order.clone();
        let api = api.clone();
        async move {
            client
                .post(format!("{api}/v1/orders"))
                .header(
                    "traceparent",
                    "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                )
                .json(&order)
                .send()
                .await
                .ok()
        }
    })
    .await;
    assert_eq!(refused.status().as_u16(), 422);
    let body: Value = refused.json().await.unwrap_or(Value::Null);
    assert_eq!(body["field"], "traceparent", "{body}");
    let accepted = client
        .post(format!("{api}/v1/orders"))
        .header(
            "traceparent",
            format!("00-{shop_trace}-00f067aa0ba902b7-01"),
        )
        .json(&order)
        .send()
        .await
        .expect("submit");
    assert_eq!(accepted.status().as_u16(), 202);

    let checks = |client: reqwest::Client| {
        let url = format!("{api}/v1/orders/{order_id}");
        async move {
            let view: Value = client.get(url).send().await.ok()?.json().await.ok()?;
            view["checks"].as_u64()
        }
    };
    wait_for("50 checks", Duration::from_secs(120), || {
        let client = client.clone();
        async move { checks(client).await.filter(|n| *n >= 50) }
    })
    .await;
    stop(&mut first).await;

    // The payment settles; its provider says so by webhook, while no checker runs.
    sandbox
        .state()
        .set_payment_clock(Provider::Cashless, &bill, Some(3_600_000))
        .expect("pin the payment's clock");
    let woke = client
        .post(format!("{api}/webhooks/cashless"))
        .json(&json!({"bill": {"id": bill}}))
        .send()
        .await
        .expect("provider webhook");
    assert_eq!(woke.status().as_u16(), 200);
    let woke: Value = woke.json().await.unwrap_or(Value::Null);
    assert_eq!(woke["orders"][0]["order_id"], order_id.as_str(), "{woke}");
    let mut second = checker("checker-2.log")
        .spawn()
        .expect("start the second checker");
    wait_for("three notifications", Duration::from_secs(60), || {
        let delivered = !smtp.messages().is_empty()
            && !hooks.received().is_empty()
            && sandbox
                .state()
                .telegram_messages()
                .iter()
                .any(|m| m.chat_id == paywatch_sandbox::ChatId::Id(424242));
        async move { delivered.then_some(()) }
    })
    .await;
    for child in [&mut second, &mut notifier, &mut producer] {
        stop(child).await;
    }

    let all = snapshot(&spans);
    let named = |name: &str| {
        all.iter()
            .filter(|s| s.name == name)
            .cloned()
            .collect::<Vec<_>>()
    };
    // The order's trace continues the shop's: submit (HTTP, enqueue, Redis), then the first check.
    let submit = named("POST /v1/orders");
    let submit = submit
        .iter()
        .find(|s| s.trace_id == shop_trace)
        .unwrap_or_else(|| panic!("no submit span in the shop's trace: {submit:#?}"));
    assert_eq!(submit.parent, "00f067aa0ba902b7");
    assert_eq!(submit.service, "paywatch-producer");
    let send = named("send check-payment");
    let send = send
        .iter()
        .find(|s| s.trace_id == shop_trace && s.parent == submit.span_id)
        .unwrap_or_else(|| panic!("no enqueue span under the submit: {send:#?}"));
    let order_link = (shop_trace.to_string(), send.span_id.clone());
    let checks = named("process check-payment");
    let (in_order, later): (Vec<_>, Vec<_>) = checks.iter().partition(|s| s.trace_id == shop_trace);
    assert_eq!(
        in_order.len(),
        1,
        "one check in the order's trace: {in_order:#?}"
    );
    assert_eq!(in_order[0].parent, send.span_id);
    assert_eq!(in_order[0].service, "paywatch-worker");
    // 49 more before the webhook (the first checker's, flushed at its SIGTERM), one after.
    assert!(later.len() >= 50, "{} later checks", later.len());
    let mut later_traces = HashSet::new();
    for check in &later {
        assert!(
            check.parent.is_empty(),
            "a later check is a root: {check:#?}"
        );
        assert!(check.links.contains(&order_link), "not linked: {check:#?}");
        later_traces.insert(check.trace_id.clone());
    }
    assert_eq!(later_traces.len(), later.len(), "one trace per later check");
    // Each check calls the provider in a child span.
    let calls = named("GET payment status");
    assert!(calls.len() >= 51, "{} provider calls", calls.len());
    for call in &calls {
        assert!(
            all.iter()
                .any(|s| s.span_id == call.parent && s.name == "process check-payment"),
            "provider call outside a check: {call:#?}"
        );
        assert!(
            call.attributes
                .iter()
                .any(|(k, v)| k == "http.request.method" && v == "GET")
        );
    }
    // The wake and the three deliveries: short traces of their own, linked to the order's.
    let wake = named("provider webhook");
    assert!(
        wake.iter()
            .any(|w| w.links.contains(&order_link) && w.parent.is_empty()),
        "{wake:#?}"
    );
    for channel in ["email", "telegram", "webhook"] {
        let delivery = named(&format!("process notify-{channel}"));
        assert!(
            delivery
                .iter()
                .any(|d| d.links.contains(&order_link) && d.trace_id != shop_trace),
            "{channel}: {delivery:#?}"
        );
    }
    // However many checks, no trace grows: the order's holds its submit and first check.
    let mut per_trace: HashMap<&str, usize> = HashMap::new();
    for span in &all {
        *per_trace.entry(span.trace_id.as_str()).or_default() += 1;
    }
    for (trace, count) in &per_trace {
        assert!(*count <= 20, "trace {trace} holds {count} spans");
    }
    // No secret, code or notification target in any attribute.
    let credentials = &sandbox.state().config().credentials;
    let secrets = [
        API_TOKEN,
        WEBHOOK_SECRET,
        &credentials.cashless_api_key,
        &credentials.cashless_api_secret,
        &credentials.telegram_bot_token,
        "buyer@example.com",
        &hooks.url,
    ];
    for span in &all {
        for (key, value) in &span.attributes {
            for secret in secrets {
                assert!(!value.contains(secret), "{}: {key}={value}", span.name);
            }
        }
    }
    // The checker's JSON log lines name the trace and span they were logged in.
    let log = std::fs::read_to_string(logs.path().join("checker-2.log")).expect("read the log");
    let settled: Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["fields"]["message"] == "payment settled")
        .unwrap_or_else(|| panic!("no `payment settled` line:\n{log}"));
    let (trace, span) = (
        settled["trace_id"].as_str().unwrap_or_default(),
        settled["span_id"].as_str().unwrap_or_default(),
    );
    assert!(
        all.iter()
            .any(|s| s.trace_id == trace && s.span_id == span && s.name == "process check-payment"),
        "the log line's ids name no check span: {settled}"
    );
    sandbox.shutdown().await.expect("stop the sandbox");
    cleanup(&redis_url(), &prefix).await;
}

/// SIGTERM, then the exit of the drained process (within 30 s).
async fn stop(child: &mut tokio::process::Child) {
    let pid = child
        .id()
        .and_then(|id| Pid::from_raw(id as i32))
        .expect("a running child");
    kill_process(pid, Signal::TERM).expect("SIGTERM");
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("drained within 30 s")
        .expect("exit status");
    assert!(status.success(), "{status}");
}

/// The trace context through every door: the `FCALL` body field and the producer's second
/// argument are checked with the same rules and words as the HTTP header, and the order keeps it
/// in the ninth slot of its record (none at all without one).
#[tokio::test]
async fn every_door_checks_the_trace_context_alike_and_the_order_keeps_it() {
    let stack = paywatch_tests::stack::Stack::start("traces-door").await;
    let client = redis::Client::open(stack.redis.as_str()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let shard = format!("{}:{{check-payment.0}}", stack.prefix);
    let good = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let bad = [
        (
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            paywatch_core::traceparent::FORMAT_PROBLEM,
        ),
        (
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            paywatch_core::traceparent::FORMAT_PROBLEM,
        ),
        (
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            paywatch_core::traceparent::FORMAT_PROBLEM,
        ),
        (
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            paywatch_core::traceparent::ZERO_TRACE,
        ),
        (
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            paywatch_core::traceparent::ZERO_PARENT,
        ),
    ];
    for (i, (tp, words)) in bad.iter().enumerate() {
        let order = json!({"order_id": format!("tp-bad-{i}"), "provider": "cashless",
                           "payment_id": "bill-tp", "traceparent": tp});
        let err = redis::cmd("FCALL")
            .arg("paywatch_submit")
            .arg(1)
            .arg(&shard)
            .arg(order.to_string())
            .query_async::<redis::Value>(&mut conn)
            .await
            .expect_err("a bad body field is refused");
        let verdict = paywatch_core::store::FieldError::from_reply(&err).expect("a verdict");
        assert_eq!(
            (verdict.field.as_str(), verdict.message.as_str()),
            ("traceparent", *words)
        );
        // The second argument (the producer's) is held to the same rules.
        let plain = json!({"order_id": format!("tp-bad-arg-{i}"), "provider": "cashless",
                           "payment_id": "bill-tp"});
        let err = redis::cmd("FCALL")
            .arg("paywatch_submit")
            .arg(1)
            .arg(&shard)
            .arg(plain.to_string())
            .arg(tp)
            .query_async::<redis::Value>(&mut conn)
            .await
            .expect_err("a bad argument is refused");
        let verdict = paywatch_core::store::FieldError::from_reply(&err).expect("a verdict");
        assert_eq!(
            (verdict.field.as_str(), verdict.message.as_str()),
            ("traceparent", *words)
        );
        // And the HTTP header, in the same words.
        let response = stack
            .http
            .post(format!("{}/v1/orders", stack.api))
            .header("traceparent", *tp)
            .json(&plain)
            .send()
            .await
            .expect("POST");
        assert_eq!(response.status().as_u16(), 422);
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(body["field"], "traceparent", "{body}");
        assert_eq!(body["error"], format!("traceparent: {words}"), "{body}");
    }
    // Accepted: kept as the record's last slot, and a resubmission with another context is
    // the same order.
    let order = json!({"order_id": "tp-good", "provider": "cashless", "payment_id": "bill-tp",
                       "traceparent": good});
    let reply: Vec<String> = redis::cmd("FCALL")
        .arg("paywatch_submit")
        .arg(1)
        .arg(&shard)
        .arg(order.to_string())
        .query_async(&mut conn)
        .await
        .expect("accepted");
    assert_eq!(reply[0], "created");
    let record: String = redis::cmd("HGET")
        .arg(format!("{shard}:jobs"))
        .arg("tp-good")
        .query_async(&mut conn)
        .await
        .expect("the record");
    assert!(
        record.ends_with(&format!(",null,null,\"{good}\"]")),
        "{record}"
    );
    let other = json!({"order_id": "tp-good", "provider": "cashless", "payment_id": "bill-tp",
                       "traceparent": "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-00"});
    let reply: Vec<String> = redis::cmd("FCALL")
        .arg("paywatch_submit")
        .arg(1)
        .arg(&shard)
        .arg(other.to_string())
        .query_async(&mut conn)
        .await
        .expect("the same order");
    assert_eq!(reply[0], "exists");
    let plain = json!({"order_id": "tp-none", "provider": "cashless", "payment_id": "bill-tp2"});
    let _: Vec<String> = redis::cmd("FCALL")
        .arg("paywatch_submit")
        .arg(1)
        .arg(&shard)
        .arg(plain.to_string())
        .query_async(&mut conn)
        .await
        .expect("accepted");
    let record: String = redis::cmd("HGET")
        .arg(format!("{shard}:jobs"))
        .arg("tp-none")
        .query_async(&mut conn)
        .await
        .expect("the record");
    assert!(
        !record.contains("\"00-") && !record.ends_with("null]"),
        "no slot for an absent context: {record}"
    );
    stack.finish().await;
}
