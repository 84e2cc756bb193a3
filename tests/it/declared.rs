//! Providers declared in files (deploy/providers/): the submit door accepts one once a check
//! worker serving it has published it, and refuses it before, naming the field.

use std::time::{Duration, Instant};

use paywatch_core::store::{FieldError, ShardKeys};
use paywatch_tests::stack::Stack;
use serde_json::json;

/// Upper bound for anything these tests wait on.
const WAIT_LIMIT: Duration = Duration::from_secs(20);

/// The example definitions shipped with paywatch.
fn providers_dir() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/providers").to_owned()
}

async fn fcall(
    conn: &mut redis::aio::MultiplexedConnection,
    key: &str,
    body: &str,
) -> Result<Vec<String>, redis::RedisError> {
    redis::cmd("FCALL")
        .arg("paywatch_submit")
        .arg(1)
        .arg(key)
        .arg(body)
        .query_async(conn)
        .await
}

#[tokio::test]
async fn the_door_accepts_a_declared_provider_once_a_checker_serves_it() {
    let stack = Stack::start("declared-door").await;
    let keys = ShardKeys::new(&stack.prefix, 0);
    let mut conn = redis::Client::open(stack.redis.as_str())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let order = |id: &str, provider: &str| {
        json!({"order_id": id, "provider": provider, "payment_id": "ch-1"}).to_string()
    };

    // No worker serves paylink yet: refused, naming the field, listing the built-ins.
    let err = fcall(&mut conn, &keys.base, &order("d-0", "paylink"))
        .await
        .expect_err("no worker serves paylink");
    let verdict = FieldError::from_reply(&err).expect("verdict");
    assert_eq!(verdict.field, "provider");
    assert_eq!(
        verdict.message,
        "must be one of cashless, handcash, miraclecash, foxreload"
    );

    // A check worker with the definitions publishes the ones it serves at start-up.
    let mut args = stack.worker_args(0.01);
    args.extend(["--providers-dir".to_owned(), providers_dir()]);
    let worker = stack.worker(&args).await;
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        let published: bool = redis::cmd("HEXISTS")
            .arg(&keys.meta)
            .arg("provider:paylink")
            .query_async(&mut conn)
            .await
            .expect("HEXISTS");
        if published {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the worker never published paylink"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Both doors take it now.
    let reply = fcall(&mut conn, &keys.base, &order("d-1", "paylink"))
        .await
        .expect("FCALL accepts paylink");
    assert_eq!(reply[0], "created");
    let (status, body) = stack
        .submit(&json!({"order_id": "d-2", "provider": "paylink", "payment_id": "ch-2"}))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["provider"], "paylink", "{body}");

    // An unknown provider's refusal lists the declared ones too.
    let err = fcall(&mut conn, &keys.base, &order("d-3", "paypal"))
        .await
        .expect_err("paypal is nobody's");
    let verdict = FieldError::from_reply(&err).expect("verdict");
    assert_eq!(
        verdict.message,
        "must be one of cashless, handcash, miraclecash, foxreload, cashless-file, miraclecash-file, paylink"
    );
    worker.stop().await;
    stack.finish().await;
}

/// Issue 25's "done when": Paylink, a provider that exists only as a file (HMAC-signed
/// requests and webhooks, 100 requests per minute, vouchers), submitted through HTTP and FCALL,
/// polled, woken by a verified webhook, rate-budgeted, and notified by email, Telegram and
/// webhook. The sandbox serves it from the same file; its webhooks reach the producer's
/// declared-webhook routes over a real socket.
#[tokio::test]
async fn a_provider_that_is_only_a_file_runs_end_to_end() {
    use std::sync::Arc;

    use paywatch_core::declared::{Resolved, load_dir, sandbox_credential};
    use paywatch_core::{PaymentStatus, ProvidersConfig};
    use paywatch_producer::declared_webhooks::{DeclaredWebhook, router};
    use paywatch_sandbox::declared::DeclaredStep;
    use paywatch_sandbox::smtp::{SmtpSink, SmtpSinkConfig};
    use paywatch_sandbox::{Sandbox, SandboxConfig};
    use paywatch_tests::stack::WebhookReceiver;

    let stack = Stack::start("declared-e2e").await;
    let definitions = load_dir(std::path::Path::new(&providers_dir())).expect("definitions");
    let paylink = definitions
        .iter()
        .find(|d| d.provider.as_str() == "paylink")
        .cloned()
        .expect("paylink.toml");

    // The producer's declared webhooks, with the secret the sandbox signs with.
    let producer = paywatch_producer::Producer::open(&stack.redis, &stack.prefix, stack.shards)
        .expect("producer");
    let secret = sandbox_credential(paylink.provider, "webhook_secret");
    let hooks = DeclaredWebhook::from_definitions(&definitions, |var| {
        (var == "PAYLINK_WEBHOOK_SECRET").then(|| secret.clone())
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hook_base = format!("http://{}", listener.local_addr().expect("addr"));
    let app = router(producer, hooks);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    // A sandbox serving Paylink from its file, sending its webhooks to that producer.
    let sandbox = Sandbox::start_with(
        SandboxConfig {
            webhook_target: Some(hook_base),
            ..SandboxConfig::default()
        },
        "127.0.0.1:0".parse().expect("addr"),
        &definitions,
    )
    .await
    .expect("sandbox");
    let sandbox_url = sandbox.base_url();
    let smtp = SmtpSink::start(
        SmtpSinkConfig::default(),
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("smtp");
    let shop = WebhookReceiver::start().await;

    // Workers on that sandbox: polls slowed tenfold (Paylink's first delay becomes 30 s), so
    // an order settles within the wait below only if the webhook wakes its check.
    let on_sandbox = |mut args: Vec<String>| {
        let at = args
            .iter()
            .position(|a| a == "--sandbox-url")
            .expect("flag")
            + 1;
        args[at] = sandbox_url.clone();
        args.extend(["--providers-dir".to_owned(), providers_dir()]);
        args
    };
    let checker = stack.worker(&on_sandbox(stack.worker_args(10.0))).await;
    let mut notifier_args =
        on_sandbox(stack.notifier_args_for("notify-email,notify-telegram,notify-webhook"));
    notifier_args.extend(
        [
            "--smtp-url",
            &smtp.url(),
            "--email-from",
            "shop@example.com",
        ]
        .map(String::from),
    );
    let notifier = stack.worker(&notifier_args).await;

    // Two payments: pending, then paid with a receipt and vouchers 1.5 s later.
    for id in ["ch-http", "ch-fcall"] {
        sandbox
            .declared()
            .create(
                "paylink",
                id,
                vec![
                    DeclaredStep {
                        after_ms: 0,
                        status: "awaiting_payment".into(),
                        fields: json!({"charge": {"amount": 500}})
                            .as_object()
                            .cloned()
                            .unwrap_or_default(),
                    },
                    DeclaredStep {
                        after_ms: 1500,
                        status: "succeeded".into(),
                        fields: json!({"charge": {"amount": 500, "amount_received": 500,
                            "receipt_no": format!("R-{id}"), "vouchers": [format!("V-{id}")]}})
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                    },
                ],
            )
            .expect("scripted payment");
    }
    let notify = |chat: i64| json!({"email": "buyer@example.com", "telegram_chat_id": chat, "webhook_url": shop.url});
    let (status, body) = stack
        .submit(&json!({"order_id": "pl-http", "provider": "paylink", "payment_id": "ch-http", "notify": notify(501)}))
        .await;
    assert_eq!(status, 202, "{body}");
    let mut conn = redis::Client::open(stack.redis.as_str())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let keys = ShardKeys::new(&stack.prefix, 0);
    let body = json!({"order_id": "pl-fcall", "provider": "paylink", "payment_id": "ch-fcall", "notify": notify(502)});
    let reply = fcall(&mut conn, &keys.base, &body.to_string())
        .await
        .expect("FCALL");
    assert_eq!(reply[0], "created");

    // Paid, within far less than the 30 s its next poll would take: the webhook woke it.
    for order in ["pl-http", "pl-fcall"] {
        let view = stack
            .wait_status(order, PaymentStatus::Paid, Duration::from_secs(20))
            .await;
        assert_eq!(view["provider"], "paylink", "{view}");
    }

    // Every call went through the fleet's budget for this credential (100 per minute).
    let config = ProvidersConfig {
        declared: vec![Resolved::sandbox(
            Arc::clone(&paylink),
            &url::Url::parse(&sandbox_url).expect("url"),
        )],
        ..ProvidersConfig::default()
    };
    let lane = paywatch_worker::keys::LaneKeys::new(
        &stack.prefix,
        paylink.provider,
        &paywatch_worker::gate::fingerprint(paylink.provider, &config),
    );
    let granted: u64 = redis::cmd("ZCARD")
        .arg(lane.budget())
        .query_async(&mut conn)
        .await
        .expect("ZCARD");
    assert!((2..=100).contains(&granted), "budget grants: {granted}");

    // Email (with the vouchers), Telegram (receipt, never the vouchers), signed webhook.
    let mails = wait_for_n("emails", 2, || smtp.messages().len()).await;
    let _ = mails;
    let all_mail = format!("{:?}", smtp.messages());
    assert!(
        all_mail.contains("V-ch-http") && all_mail.contains("V-ch-fcall"),
        "{all_mail}"
    );
    for (chat, id) in [(501, "ch-http"), (502, "ch-fcall")] {
        let texts = paywatch_tests::wait_for("a Telegram message", WAIT_LIMIT, || async {
            let texts = sandbox.state().telegram_messages();
            let mine: Vec<String> = texts
                .into_iter()
                .filter(|m| m.chat_id == paywatch_sandbox::ChatId::Id(chat))
                .map(|m| m.text)
                .collect();
            (!mine.is_empty()).then_some(mine)
        })
        .await;
        let text = texts.join("\n");
        assert!(text.contains(&format!("receipt=R-{id}")), "{text}");
        assert!(
            !text.contains(&format!("V-{id}")),
            "vouchers never reach Telegram: {text}"
        );
    }
    wait_for_n("shop webhooks", 2, || shop.received().len()).await;
    let hooks = format!("{:?}", shop.received());
    assert!(
        hooks.contains("payment.paid") && hooks.contains("V-ch-http"),
        "{hooks}"
    );

    checker.stop().await;
    notifier.stop().await;
    stack.finish().await;
}

/// Waits until `count()` reaches `n`.
async fn wait_for_n(what: &str, n: usize, count: impl Fn() -> usize) -> usize {
    paywatch_tests::wait_for(what, WAIT_LIMIT, || {
        let seen = count();
        async move { (seen >= n).then_some(seen) }
    })
    .await
}
