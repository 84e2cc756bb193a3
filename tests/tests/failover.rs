//! A Redis failover must not change or repeat notifications (issue 22, "a failover does not
//! re-send").
//!
//! - A promoted replica may lack a final transition and the notifiers' acks: the order is checked
//!   again and announced again. What it announces must be byte-identical (same `webhook-id`, same
//!   body, same email and Telegram text), so a receiver can deduplicate.

use std::time::Duration;

use chrono::{DateTime, Utc};
use paywatch_core::queues;
use paywatch_core::store::ShardKeys;
use paywatch_core::{Channel, PaymentStatus};
use paywatch_queue::{JobId, Keys, NewJob};
use paywatch_sandbox::smtp::{SmtpSink, SmtpSinkConfig};
use paywatch_tests::stack::{Stack, WebhookReceiver};
use paywatch_tests::wait_for;
use serde_json::{Value, json};

const CHAT: i64 = 4242;
const BUYER: &str = "buyer@shop.test";

fn order(id: &str, payment_id: &str, hook: &str) -> Value {
    json!({
        "order_id": id, "provider": "cashless", "payment_id": payment_id,
        "notify": {"email": BUYER, "telegram_chat_id": CHAT, "webhook_url": hook},
        "metadata": {"cart": 7, "note": "<b>gift</b>"},
    })
}

/// Notifier arguments for all three channels: Telegram to the sandbox, webhooks to loopback,
/// email to `smtp`.
fn notifier_args(stack: &Stack, smtp: &SmtpSink) -> Vec<String> {
    let mut args = stack.notifier_args_for("notify-email,notify-telegram,notify-webhook");
    args.extend(
        [
            "--smtp-url",
            &smtp.url(),
            "--email-from",
            "Paywatch <noreply@paywatch.test>",
        ]
        .map(String::from),
    );
    args
}

/// What the three receivers got so far: (subject, text part, html part) per email, Telegram
/// texts, (webhook-id, body) per webhook.
type Received = (
    Vec<(String, String, String)>,
    Vec<String>,
    Vec<(String, String)>,
);

fn received(stack: &Stack, smtp: &SmtpSink, hooks: &WebhookReceiver) -> Received {
    let mails = smtp
        .messages()
        .into_iter()
        .map(|m| {
            let part = |kind: &str| {
                m.parts
                    .iter()
                    .find(|p| p.content_type == kind)
                    .map(|p| p.body.clone())
                    .unwrap_or_default()
            };
            (
                m.headers.get("subject").cloned().unwrap_or_default(),
                part("text/plain"),
                part("text/html"),
            )
        })
        .collect();
    (mails, stack.telegram_texts(CHAT), hooks.received())
}

async fn wait_received(
    stack: &Stack,
    smtp: &SmtpSink,
    hooks: &WebhookReceiver,
    n: usize,
) -> Received {
    wait_for(
        &format!("{n} of each notification"),
        Duration::from_secs(30),
        || async {
            let got = received(stack, smtp, hooks);
            (got.0.len() >= n && got.1.len() >= n && got.2.len() >= n).then_some(got)
        },
    )
    .await
}

async fn connect(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to redis")
}

/// When the order's final status was recorded, from its final record.
async fn terminal_at(stack: &Stack, order_id: &str) -> DateTime<Utc> {
    let view = stack.order(order_id).await.expect("order view");
    serde_json::from_value(view["terminal_at"].clone()).expect("terminal_at is a time")
}

/// The failover as the fleet sees it: the promoted replica had the order's check job but not
/// its final record nor the notifiers' acks (their settles, which remember what was delivered).
/// Recreates exactly that state on the same Redis, so the fleet records the transition again,
/// later, and sends its notifications again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transition_recorded_again_announces_byte_identical_notifications() {
    let stack = Stack::start("failover-same-bodies").await;
    let hooks = WebhookReceiver::start().await;
    let smtp = SmtpSink::start(
        SmtpSinkConfig::default(),
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("SMTP sink");
    let checker = stack.worker(&stack.worker_args(0.01)).await;
    let notifier = stack.worker(&notifier_args(&stack, &smtp)).await;
    let bill = stack.bill_paid_after(100);
    let (status, body) = stack.submit(&order("refo-1", &bill, &hooks.url)).await;
    assert_eq!(status, 202, "{body}");
    stack
        .wait_status("refo-1", PaymentStatus::Paid, Duration::from_secs(20))
        .await;
    let first = wait_received(&stack, &smtp, &hooks, 1).await;
    let first_at = terminal_at(&stack, "refo-1").await;

    // What the replica had: the pending check job (the order as submitted), no final record,
    // no memory of the three deliveries.
    let mut conn = connect(&stack.redis).await;
    let keys = ShardKeys::new(&stack.prefix, 0);
    let final_record: String = redis::cmd("HGET")
        .arg(&keys.orders)
        .arg("refo-1")
        .query_async(&mut conn)
        .await
        .expect("final record");
    let mut pending: Vec<Value> = serde_json::from_str(&final_record).expect("record");
    pending.truncate(7);
    let _: i64 = redis::cmd("HDEL")
        .arg(&keys.orders)
        .arg("refo-1")
        .query_async(&mut conn)
        .await
        .expect("forget the final record");
    for channel in [Channel::Email, Channel::Telegram, Channel::Webhook] {
        let done = Keys::new(&stack.prefix, channel.queue()).done;
        let _: i64 = redis::cmd("DEL")
            .arg(&done)
            .query_async(&mut conn)
            .await
            .expect("forget the deliveries");
    }
    // The second recording must fall in a later second than the first (email and Telegram
    // show times to the second), or a time in the content could go unnoticed.
    wait_for("the next second", Duration::from_secs(2), || async {
        (Utc::now().timestamp() > first_at.timestamp()).then_some(())
    })
    .await;
    stack
        .queue(queues::CHECK_PAYMENT)
        .await
        .enqueue(NewJob::new(Value::Array(pending)).with_id(JobId::new("refo-1").expect("id")))
        .await
        .expect("the check job the replica had");

    let (mails, texts, webhooks) = wait_received(&stack, &smtp, &hooks, 2).await;
    let second_at = terminal_at(&stack, "refo-1").await;
    assert!(
        second_at > first_at,
        "recorded again, later: {first_at} then {second_at}"
    );
    checker.stop().await;
    notifier.stop().await;
    assert_eq!(mails.len(), 2, "sent again: the acks were lost");
    assert_eq!(mails[0], first.0[0]);
    assert_eq!(mails[1], mails[0], "the same email, subject and both parts");
    assert_eq!(texts[1], texts[0], "the same Telegram text");
    assert_eq!(webhooks[1].0, webhooks[0].0, "the same webhook-id");
    assert_eq!(
        webhooks[1].1, webhooks[0].1,
        "the same body behind one webhook-id, byte for byte"
    );
    stack.finish().await;
}
