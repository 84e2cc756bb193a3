//! A Redis failover must not change or repeat notifications (issue 22, "a failover does not
//! re-send").
//!
//! - A promoted replica may lack a final transition and the notifiers' acks: the order is checked
//!   again and announced again. What it announces must be byte-identical (same `webhook-id`, same
//!   body, same email and Telegram text), so a receiver can deduplicate.
//! - In durable mode (`PAYWATCH_DURABLE_REPLICAS`) the gap closes: a final transition is on the
//!   replicas before its notifications are enqueued, and a notifier's ack is on the replicas
//!   before it fetches the next job. Tested with a real primary and a real replica, stopped with
//!   `SIGSTOP` and resumed with `SIGCONT`.

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

/// A `redis-server` replicating `primary_port` on a free port; killed when dropped.
struct Replica {
    port: u16,
    dir: std::path::PathBuf,
    child: std::process::Child,
}

impl Replica {
    fn start(primary_port: u16) -> Self {
        let port = paywatch_tests::free_port();
        let dir = std::env::temp_dir().join(format!("paywatch-failover-replica-{port}"));
        std::fs::create_dir_all(&dir).expect("replica dir");
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--replicaof", "127.0.0.1", &primary_port.to_string()])
            .arg("--dir")
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start redis-server replica");
        Self { port, dir, child }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Sends the replica process `signal` (`STOP`: it stops acknowledging anything, its
    /// connection to the primary stays open; `CONT`: it catches up).
    fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} the replica");
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        // A stopped process must be resumed to die cleanly on every platform.
        let _ = std::process::Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// How many `WAIT` commands the server at `url` has answered so far.
async fn waits_answered(url: &str) -> u64 {
    let mut conn = connect(url).await;
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .expect("INFO commandstats");
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_wait:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Waits until the primary has answered `n` more `WAIT`s than `since` (each one a full timeout
/// while the replica is stopped), unless `gave_up` turns up something first.
async fn wait_more_waits<F, Fut>(url: &str, since: u64, n: u64, what: &str, mut gave_up: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<String>>,
{
    let outcome = wait_for(what, Duration::from_secs(30), || {
        let check = gave_up();
        async move {
            if let Some(problem) = check.await {
                return Some(Err(problem));
            }
            (waits_answered(url).await >= since + n).then_some(Ok(()))
        }
    })
    .await;
    if let Err(problem) = outcome {
        panic!("{what}: {problem}");
    }
}

async fn online_replicas(url: &str) -> usize {
    let mut conn = connect(url).await;
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query_async(&mut conn)
        .await
        .expect("INFO replication");
    info.lines()
        .filter(|l| l.starts_with("slave") && l.contains("state=online"))
        .count()
}

fn with(mut args: Vec<String>, more: &[&str]) -> Vec<String> {
    args.extend(more.iter().map(|s| s.to_string()));
    args
}

/// Whether the Redis at `url` holds `order_id`'s final record.
async fn has_final_record(url: &str, keys: &ShardKeys, order_id: &str) -> bool {
    let mut conn = connect(url).await;
    redis::cmd("HEXISTS")
        .arg(&keys.orders)
        .arg(order_id)
        .query_async(&mut conn)
        .await
        .expect("HEXISTS")
}

/// Durable mode with a real primary and replica: while the replica is stopped (`SIGSTOP`), a
/// final transition is recorded on the primary but nothing announces it, and a notifier runs
/// no job it leased until the replica has the lease (and, as before, takes no further job until
/// the replica has its last acknowledgement). Resumed (`SIGCONT`), both proceed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_mode_waits_for_the_replica_before_announcing_and_before_the_next_job() {
    let primary = paywatch_tests::RedisServer::start().await;
    let replica = Replica::start(primary.port());
    let url = primary.url();
    wait_for("the replica to sync", Duration::from_secs(30), || async {
        (online_replicas(&url).await == 1).then_some(())
    })
    .await;
    let stack = Stack::start_on("failover-durable", url.clone(), 1).await;
    let hooks = WebhookReceiver::start().await;
    let durable = ["--durable-replicas", "1", "--durable-timeout", "200ms"];
    let checker = stack.worker(&with(stack.worker_args(0.01), &durable)).await;
    let notifier = stack
        .worker(&with(stack.notifier_args_for("notify-webhook"), &durable))
        .await;
    let keys = ShardKeys::new(&stack.prefix, 0);
    let hook_order = |id: &str, bill: &str| {
        json!({"order_id": id, "provider": "cashless", "payment_id": bill,
               "notify": {"webhook_url": hooks.url}})
    };

    // A live replica: the order flows as usual.
    let bill = stack.bill_paid_after(50);
    let (status, body) = stack.submit(&hook_order("dur-1", &bill)).await;
    assert_eq!(status, 202, "{body}");
    wait_for("the first webhook", Duration::from_secs(30), || async {
        (hooks.received().len() == 1).then_some(())
    })
    .await;

    // The replica stops: the checker records the final status on the primary, then waits.
    replica.signal("STOP");
    let bill = stack.bill_paid_after(50);
    let (status, body) = stack.submit(&hook_order("dur-2", &bill)).await;
    assert_eq!(status, 202, "{body}");
    wait_for(
        "dur-2's final record on the primary",
        Duration::from_secs(30),
        || async { has_final_record(&url, &keys, "dur-2").await.then_some(()) },
    )
    .await;
    let since = waits_answered(&url).await;
    let webhooks = stack.queue(queues::NOTIFY_WEBHOOK).await;
    wait_more_waits(
        &url,
        since,
        2,
        "the checker to wait for the replica twice",
        || async {
            let queued = webhooks.stats().await.ok()?.total;
            let sent = hooks.received().len();
            (queued > 0 || sent > 1).then(|| {
                format!("dur-2 was announced without the replica ({queued} queued, {sent} sent)")
            })
        },
    )
    .await;
    assert_eq!(webhooks.stats().await.expect("stats").total, 0);
    assert_eq!(stack.order("dur-2").await.expect("view")["notified"], false);

    // Resumed: the replica catches up and dur-2 is announced.
    replica.signal("CONT");
    wait_for("dur-2's webhook", Duration::from_secs(30), || async {
        (hooks.received().len() == 2).then_some(())
    })
    .await;
    assert!(has_final_record(&replica.url(), &keys, "dur-2").await);
    wait_for(
        "the notifier queue to drain",
        Duration::from_secs(30),
        || async { (webhooks.stats().await.ok()?.total == 0).then_some(()) },
    )
    .await;

    // The notifier: with the replica stopped, it leases the next job but runs nothing until the
    // replica has the lease (after a failover, the new primary must know the job is this
    // process's, or its settle would not apply there and another notifier would send it again).
    replica.signal("STOP");
    let notification = |id: &str| {
        let n = paywatch_core::Notification {
            order_id: paywatch_core::OrderId::new(id).expect("order id"),
            status: PaymentStatus::Paid,
            channel: Channel::Webhook,
            target: hooks.url.clone(),
            provider: paywatch_core::Provider::Cashless,
            payment_id: paywatch_core::PaymentId::new(format!("bill-{id}")).expect("id"),
            raw_status: Some("FULLY_PAID".into()),
            detail: None,
            metadata: None,
            delivered_codes: Vec::new(),
            occurred_at: Utc::now(),
            traceparent: None,
        };
        NewJob::new(serde_json::to_value(&n).expect("notification JSON"))
            .with_id(JobId::new(n.identity()).expect("job id"))
    };
    let since = waits_answered(&url).await;
    webhooks
        .enqueue(notification("dur-3"))
        .await
        .expect("enqueue dur-3");
    wait_more_waits(
        &url,
        since,
        2,
        "the notifier to wait for the replica to have dur-3's lease",
        || async {
            (hooks.received().len() > 2)
                .then(|| "dur-3 was sent before its lease was on the replica".to_string())
        },
    )
    .await;
    let stats = webhooks.stats().await.expect("stats");
    assert_eq!(
        (stats.ready, stats.active),
        (0, 1),
        "dur-3 leased, not run: {stats:?}"
    );

    // Resumed: the notifier goes on.
    replica.signal("CONT");
    wait_for("dur-3's webhook", Duration::from_secs(30), || async {
        (hooks.received().len() == 3).then_some(())
    })
    .await;
    wait_for(
        "the notifier queue to drain",
        Duration::from_secs(30),
        || async { (webhooks.stats().await.ok()?.total == 0).then_some(()) },
    )
    .await;
    checker.stop().await;
    notifier.stop().await;
    stack.finish().await;
}
