//! Each notification once: a check that runs twice does not notify twice, and a notifier killed
//! with `kill -9` at the worst moment behaves exactly as docs/notifications.md says.

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use paywatch_core::{PaymentStatus, queues};
use paywatch_queue::{JobId, NewJob};
use paywatch_sandbox::{NewPayment, Provider};
use paywatch_tests::stack::{Stack, WebhookReceiver};
use paywatch_tests::wait_for;
use serde_json::{Value, json};

fn order(id: &str, payment_id: &str, chat: i64, hook: &str) -> Value {
    json!({
        "order_id": id, "provider": "cashless", "payment_id": payment_id,
        "notify": {"telegram_chat_id": chat, "webhook_url": hook},
    })
}

async fn paid_bill(stack: &Stack) -> String {
    stack.bill_paid_after(100)
}

async fn settled(stack: &Stack) {
    wait_for(
        "the notifier queues to drain",
        Duration::from_secs(30),
        || async {
            let t = stack.stats(queues::NOTIFY_TELEGRAM).await;
            let w = stack.stats(queues::NOTIFY_WEBHOOK).await;
            (t.total == 0 && w.total == 0).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_check_that_runs_twice_notifies_once() {
    let stack = Stack::start("once-rerun").await;
    let receiver = WebhookReceiver::start().await;
    let checker = stack.worker(&stack.worker_args(0.01)).await;
    let notifier = stack.worker(&stack.notifier_args()).await;
    let bill = paid_bill(&stack).await;
    let body = order("twice", &bill, 777, &receiver.url);
    stack.submit(&body).await;
    stack
        .wait_status("twice", PaymentStatus::Paid, Duration::from_secs(20))
        .await;
    wait_for(
        "one message and one webhook",
        Duration::from_secs(20),
        || async {
            (stack.telegram_texts(777).len() == 1 && receiver.received().len() == 1).then_some(())
        },
    )
    .await;
    settled(&stack).await;

    // Run the check again, twice: once as after a crash between recording the final status and
    // acking the check, once as if the final record itself were lost. The notifier queues
    // remember what they delivered, so neither run sends anything again.
    let checks = stack.queue(queues::CHECK_PAYMENT).await;
    let keys = paywatch_core::store::ShardKeys::new(&stack.prefix, 0);
    let mut conn = redis::Client::open(stack.redis.as_str())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let final_record: String = redis::cmd("HGET")
        .arg(&keys.orders)
        .arg("twice")
        .query_async(&mut conn)
        .await
        .expect("final record");
    let mut pending: Vec<Value> = serde_json::from_str(&final_record).expect("record");
    pending.truncate(6);
    for forget in [false, true] {
        if forget {
            let _: i64 = redis::cmd("HDEL")
                .arg(&keys.orders)
                .arg("twice")
                .query_async(&mut conn)
                .await
                .expect("hdel");
        }
        checks
            .enqueue(
                NewJob::new(Value::Array(pending.clone()))
                    .with_id(JobId::new("twice").expect("id")),
            )
            .await
            .expect("re-enqueue the check");
        wait_for(
            "the extra check to finish",
            Duration::from_secs(10),
            || async {
                let done = checks.stats().await.ok()?.total == 0;
                let notified = stack.order("twice").await?["notified"] == json!(true);
                (done && notified).then_some(())
            },
        )
        .await;
    }
    settled(&stack).await;
    checker.stop().await;
    notifier.stop().await;
    assert_eq!(stack.telegram_texts(777).len(), 1, "one Telegram message");
    assert_eq!(receiver.received().len(), 1, "one webhook");
    stack.finish().await;
}

/// A `pw-worker` process serving one notifier queue, with a fail point armed. One queue per
/// process, so a worker parked at the fail point (which blocks its thread) cannot starve another
/// queue's worker of the runtime.
fn spawn_notifier(stack: &Stack, queue: &str, failpoint: &str) -> Child {
    let mut args = stack.notifier_args_for(queue);
    args.remove(0);
    Command::new(env!("CARGO_BIN_EXE_pw-worker"))
        .args(args)
        .env("FAILPOINTS", failpoint)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn pw-worker")
}

fn kill9(mut child: Child) {
    child.kill().expect("kill -9");
    child.wait().expect("reap");
}

/// Runs one paid order through a checker and notifier processes parked at `failpoint`, waits
/// for `parked` to hold, kills the notifiers with `kill -9`, lets a healthy notifier finish, and
/// returns what the receivers got: Telegram messages to `chat` and webhooks.
async fn kill_notifiers_at(
    test: &str,
    failpoint: &str,
    chat: i64,
    parked: impl AsyncFn(&Stack, &WebhookReceiver) -> bool,
) -> (Vec<String>, Vec<(String, String)>) {
    let stack = Stack::start(test).await;
    let receiver = WebhookReceiver::start().await;
    let checker = stack.worker(&stack.worker_args(0.01)).await;
    let doomed = [queues::NOTIFY_TELEGRAM, queues::NOTIFY_WEBHOOK]
        .map(|q| spawn_notifier(&stack, q, failpoint));
    let bill = paid_bill(&stack).await;
    stack.submit(&order(test, &bill, chat, &receiver.url)).await;
    wait_for(
        "the notifiers to reach the fail point",
        Duration::from_secs(30),
        || async { parked(&stack, &receiver).await.then_some(()) },
    )
    .await;
    doomed.into_iter().for_each(kill9);
    let rescuer = stack.worker(&stack.notifier_args()).await;
    settled(&stack).await;
    rescuer.stop().await;
    checker.stop().await;
    let got = (stack.telegram_texts(chat), receiver.received());
    stack.finish().await;
    got
}

#[tokio::test]
async fn a_notifier_killed_between_delivery_and_ack() {
    // Parked right after the channel accepted the message, before the job is acknowledged.
    let (telegram, hooks) = kill_notifiers_at(
        "window",
        "notify-delivered=pause",
        888,
        async |stack, receiver| {
            stack.telegram_texts(888).len() == 1 && receiver.received().len() == 1
        },
    )
    .await;
    // Exactly the documented window: the re-run delivers again.
    assert_eq!(
        telegram.len(),
        2,
        "Telegram: one duplicate inside the window"
    );
    assert_eq!(hooks.len(), 2, "webhook: delivered again (at least once)");
    assert_eq!(
        hooks[0], hooks[1],
        "same webhook-id and body, so the receiver can dedupe"
    );
}

#[tokio::test]
async fn a_notifier_killed_before_delivering_delivers_once() {
    // Parked with the jobs leased and nothing sent.
    let (telegram, hooks) = kill_notifiers_at(
        "before",
        "notify-before-send=pause",
        999,
        async |stack, receiver| {
            let t = stack.stats(queues::NOTIFY_TELEGRAM).await;
            let w = stack.stats(queues::NOTIFY_WEBHOOK).await;
            let nothing_sent =
                stack.telegram_texts(999).is_empty() && receiver.received().is_empty();
            t.active == 1 && w.active == 1 && nothing_sent
        },
    )
    .await;
    assert_eq!(telegram.len(), 1, "Telegram: once");
    assert_eq!(hooks.len(), 1, "webhook: once");
}

#[tokio::test]
async fn operators_get_one_digest_for_many_problems() {
    let stack = Stack::start("ops-digest").await;
    let mut args = stack.worker_args(0.01);
    args.extend(
        [
            "--queues",
            "check-payment,notify-ops",
            "--ops-telegram-chat-id",
            "4040",
            "--ops-interval",
            "2s",
            "--policies",
            r#"{"handcash": {"first_delay": "20ms", "multiplier": 1.5, "max_delay": "50ms", "fast_window": "100ms", "grace_interval": "50ms", "deadline": "400ms"}}"#,
        ]
        .map(String::from),
    );
    let worker = stack.worker(&args).await;
    // The watcher's first look starts its cursors (older dead letters are not news).
    let conn = redis::Client::open(stack.redis.as_str())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let cursors = format!("{}:ops:cursor", stack.prefix);
    wait_for(
        "the ops watcher's first look",
        Duration::from_secs(10),
        || {
            let mut conn = conn.clone();
            let cursors = cursors.clone();
            async move {
                let n: u64 = redis::cmd("HLEN")
                    .arg(&cursors)
                    .query_async(&mut conn)
                    .await
                    .ok()?;
                (n >= 4).then_some(())
            }
        },
    )
    .await;
    let unknown: Vec<String> = (0..5).map(|i| format!("ghost-{i}")).collect();
    for (i, id) in unknown.iter().enumerate() {
        let payment = format!("00000000-0000-0000-0000-00000000000{i}");
        stack
            .submit(&json!({"order_id": id, "provider": "miraclecash", "payment_id": payment}))
            .await;
    }
    let stuck = stack.payment(NewPayment::new(Provider::HandCash).step(0, "pending"));
    stack
        .submit(&json!({"order_id": "stuck", "provider": "handcash", "payment_id": stuck}))
        .await;
    stack
        .wait_status("stuck", PaymentStatus::Unresolved, Duration::from_secs(10))
        .await;
    let texts = wait_for(
        "a digest naming all six problems",
        Duration::from_secs(20),
        || async {
            let texts = stack.telegram_texts(4040);
            let all = texts.join("\n");
            let named: HashSet<&str> = unknown
                .iter()
                .map(String::as_str)
                .chain(["stuck"])
                .filter(|id| all.contains(id))
                .collect();
            (named.len() == 6).then_some(texts)
        },
    )
    .await;
    worker.stop().await;
    // Six problems within a couple of 2 s intervals: a digest per interval, not a message per
    // problem.
    assert!(
        texts.len() <= 3,
        "one digest per interval, not one message per problem: {texts:?}"
    );
    assert!(
        texts.iter().any(|t| t.matches("ghost-").count() >= 2),
        "a digest lists several problems: {texts:?}"
    );
    let all = texts.join("\n");
    assert!(
        all.contains("unresolved") && all.contains("dead letter"),
        "{all}"
    );
    stack.finish().await;
}

#[tokio::test]
async fn transient_failures_retry_and_permanent_ones_are_dead_lettered() {
    let stack = Stack::start("notify-outcomes").await;
    let receiver = WebhookReceiver::start().await;
    let checker = stack.worker(&stack.worker_args(0.01)).await;
    let notifier = stack.worker(&stack.notifier_args()).await;
    // Telegram answers 429 once (retry_after 1 s) to the first order's chat, then delivers; the
    // webhook answers 500 once, then 200. The second order's chat does not exist and its
    // endpoint is gone.
    stack
        .sandbox
        .state()
        .set_fault(
            paywatch_sandbox::FaultScope::Telegram,
            paywatch_sandbox::Fault::rate_limited(1).times(1),
        )
        .expect("telegram fault");
    let retried = paid_bill(&stack).await;
    stack
        .submit(&order("retried", &retried, 5151, &receiver.path("flaky")))
        .await;
    // The injected 429 is for the first message; the doomed order comes once it was used.
    wait_for(
        "the 429 to be answered",
        Duration::from_secs(20),
        || async { (stack.sandbox.state().request_stats().telegram.faulted >= 1).then_some(()) },
    )
    .await;
    let doomed = paid_bill(&stack).await;
    stack
        .submit(&order(
            "doomed",
            &doomed,
            paywatch_sandbox::CHAT_NOT_FOUND,
            &receiver.path("gone"),
        ))
        .await;
    let dead = wait_for(
        "both of the second order's notifications in the dead letters",
        Duration::from_secs(30),
        || async {
            let t = stack
                .queue(queues::NOTIFY_TELEGRAM)
                .await
                .dead_letters(10)
                .await
                .ok()?;
            let w = stack
                .queue(queues::NOTIFY_WEBHOOK)
                .await
                .dead_letters(10)
                .await
                .ok()?;
            (t.len() == 1 && w.len() == 1).then_some((t, w))
        },
    )
    .await;
    settled(&stack).await;
    notifier.stop().await;
    checker.stop().await;
    assert_eq!(
        stack.telegram_texts(5151).len(),
        1,
        "delivered after the 429"
    );
    let flaky: Vec<_> = receiver
        .received()
        .into_iter()
        .filter(|(_, b)| b.contains("\"retried\""))
        .collect();
    assert_eq!(flaky.len(), 2, "500, then delivered");
    assert_eq!(
        flaky[0].0, flaky[1].0,
        "the retry carries the same webhook-id"
    );
    let (telegram, webhook) = dead;
    assert_eq!(telegram[0].id, "doomed:paid:telegram");
    assert!(
        telegram[0].error.contains("chat not found"),
        "{}",
        telegram[0].error
    );
    assert_eq!(
        telegram[0].attempts, 1,
        "no retries for a permanent failure"
    );
    assert_eq!(webhook[0].id, "doomed:paid:webhook");
    assert!(webhook[0].error.contains("410"), "{}", webhook[0].error);
    stack.finish().await;
}
