//! The Telegram channel against the sandbox's fake Bot API, with pacing in the tests' real Redis
//! (`paywatch_tests::redis_url`; each test under its own key prefix).

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use paywatch_core::{Channel, Notification, OrderId, PaymentId, PaymentStatus, Provider, Secret};
use paywatch_sandbox::{
    CHAT_BLOCKED, CHAT_NOT_FOUND, ChatId, Fault, FaultScope, Sandbox, SandboxConfig, SandboxHandle,
};
use paywatch_tests::{cleanup, free_port, redis_url, unique_prefix};
use paywatch_worker::notify::DeliveryError;
use paywatch_worker::notify::telegram::{TelegramConfig, TelegramConfigError, TelegramSender};
use redis::aio::ConnectionManager;
use reqwest::Url;

const TOKEN: &str = "123456:sandbox-bot-token";

struct Harness {
    sandbox: SandboxHandle,
    prefix: String,
}

impl Harness {
    async fn start(test: &str) -> Self {
        let sandbox = Sandbox::start(
            SandboxConfig::default(),
            "127.0.0.1:0".parse().expect("addr"),
        )
        .await
        .expect("sandbox starts");
        Self {
            sandbox,
            prefix: unique_prefix(test),
        }
    }

    /// Defaults (1 message per chat per second, 30 per bot), pointed at the fake Bot API.
    fn config(&self) -> TelegramConfig {
        let mut config = TelegramConfig::new(Secret::new(TOKEN));
        config.api_base = api_base(&self.sandbox.base_url());
        config.timeout = Duration::from_secs(5);
        config
    }

    async fn sender(&self, config: TelegramConfig) -> TelegramSender {
        TelegramSender::new(config, connection().await, self.prefix.clone())
            .expect("valid telegram config")
    }

    fn messages(&self) -> Vec<paywatch_sandbox::TelegramMessage> {
        self.sandbox.state().telegram_messages()
    }

    fn requests(&self) -> u64 {
        self.sandbox.state().request_stats().telegram.requests
    }

    async fn finish(self) {
        cleanup(&redis_url(), &self.prefix).await;
        self.sandbox.shutdown().await.expect("sandbox stops");
    }
}

fn api_base(base_url: &str) -> Url {
    Url::parse(&format!("{base_url}/telegram")).expect("sandbox URL")
}

async fn connection() -> paywatch_queue::RedisConn {
    let client = redis::Client::open(redis_url()).expect("REDIS_URL parses");
    paywatch_queue::RedisConn::Single(
        ConnectionManager::new(client)
            .await
            .expect("the test Redis answers (paywatch_tests::redis_url)"),
    )
}

fn notification(status: PaymentStatus, chat: &str) -> Notification {
    Notification {
        order_id: OrderId::new("ORD<7>&").expect("valid order id"),
        status,
        channel: Channel::Telegram,
        target: chat.to_owned(),
        provider: Provider::FoxReload,
        payment_id: PaymentId::new("fox-77").expect("valid payment id"),
        raw_status: Some("completed".to_owned()),
        detail: None,
        metadata: None,
        delivered_codes: if status == PaymentStatus::Paid {
            vec!["FOX-AAAA-1111".to_owned(), "FOX-BBBB-2222".to_owned()]
        } else {
            Vec::new()
        },
        occurred_at: Utc.with_ymd_and_hms(2025, 3, 4, 5, 6, 7).unwrap(),
        traceparent: None,
    }
}

/// Sends like the queue would: a `paced` answer is waited out (the job is rescheduled for
/// exactly that long) and the send repeated, until a different answer or the deadline.
async fn send_as_queue(sender: &TelegramSender, n: &Notification) -> Result<(), DeliveryError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match sender.send(n).await {
            Err(DeliveryError::Paced { after }) => {
                assert!(Instant::now() + after < deadline, "paced past the deadline");
                tokio::time::sleep(after).await;
            }
            other => return other,
        }
    }
}

fn paced_wait(result: &Result<(), DeliveryError>) -> Duration {
    match result {
        Err(DeliveryError::Paced { after }) => *after,
        other => panic!("expected Paced, got {other:?}"),
    }
}

#[tokio::test]
async fn paid_message_reaches_the_chat_with_escaped_values_and_no_codes() {
    let h = Harness::start("tg-success").await;
    let sender = h.sender(h.config()).await;

    sender
        .send(&notification(PaymentStatus::Paid, "4242"))
        .await
        .expect("sent");
    sender
        .send(&notification(PaymentStatus::Unresolved, "@paywatch_ops"))
        .await
        .expect("sent to a channel username");

    let messages = h.messages();
    assert_eq!(messages.len(), 2, "{messages:?}");
    let paid = &messages[0];
    assert_eq!(paid.chat_id, ChatId::Id(4242));
    assert_eq!(paid.parse_mode.as_deref(), Some("HTML"));
    let text = &paid.text;
    assert!(text.contains("<b>Payment received</b>"), "{text}");
    assert!(text.contains("<code>ORD&lt;7&gt;&amp;</code>"), "{text}");
    assert!(
        text.contains("foxreload") && text.contains("fox-77"),
        "{text}"
    );
    // Delivered codes are secret: email and signed webhook only, never a chat.
    assert!(
        !text.contains("FOX-AAAA-1111") && !text.contains("FOX-BBBB-2222"),
        "{text}"
    );
    assert!(text.contains("codes were sent by email"), "{text}");

    let unresolved = &messages[1];
    assert_eq!(unresolved.chat_id, ChatId::Username("@paywatch_ops".into()));
    assert!(
        unresolved.text.contains("may still settle"),
        "{}",
        unresolved.text
    );
    assert!(!unresolved.text.contains("FOX-"), "{}", unresolved.text);
    h.finish().await;
}

#[tokio::test]
async fn rate_limited_429_is_retry_after_with_telegrams_delay_then_success() {
    let h = Harness::start("tg-429").await;
    let sender = h.sender(h.config()).await;
    h.sandbox
        .state()
        .set_fault(FaultScope::Telegram, Fault::rate_limited(7).times(1))
        .expect("fault");
    let n = notification(PaymentStatus::Paid, "4242");

    match sender.send(&n).await {
        Err(DeliveryError::RetryAfter { after, reason }) => {
            assert_eq!(after, Duration::from_secs(7));
            assert!(reason.contains("Too Many Requests"), "{reason}");
        }
        other => panic!("expected RetryAfter, got {other:?}"),
    }
    assert!(h.messages().is_empty());

    send_as_queue(&sender, &n)
        .await
        .expect("second attempt sent");
    assert_eq!(h.messages().len(), 1);
    h.finish().await;
}

#[tokio::test]
async fn unknown_or_blocked_chat_is_permanent_with_telegrams_description() {
    let h = Harness::start("tg-permanent").await;
    let sender = h.sender(h.config()).await;

    let cases = [
        (CHAT_NOT_FOUND, "Bad Request: chat not found"),
        (CHAT_BLOCKED, "Forbidden: bot was blocked by the user"),
    ];
    for (chat, description) in cases {
        let result = sender
            .send(&notification(PaymentStatus::Failed, &chat.to_string()))
            .await;
        match &result {
            Err(DeliveryError::Permanent(reason)) => {
                assert!(reason.contains(description), "{reason}");
            }
            other => panic!("chat {chat}: expected Permanent, got {other:?}"),
        }
    }
    assert!(h.messages().is_empty());
    h.finish().await;
}

#[tokio::test]
async fn wrong_token_is_permanent_and_the_token_never_shows() {
    let h = Harness::start("tg-token").await;
    let secret = "wrong-secret-token";
    let mut config = h.config();
    config.bot_token = Secret::new(format!("123456:{secret}"));
    let sender = h.sender(config.clone()).await;

    let result = sender
        .send(&notification(PaymentStatus::Paid, "4242"))
        .await;
    match &result {
        Err(DeliveryError::Permanent(reason)) => {
            assert!(reason.contains("bot token"), "{reason}");
        }
        other => panic!("expected Permanent, got {other:?}"),
    }
    assert!(!format!("{result:?}").contains(secret), "{result:?}");
    assert_eq!(h.sandbox.state().request_stats().telegram.unauthorized, 1);
    assert!(!format!("{sender:?} {config:?}").contains(secret));

    // Transport errors carry the request URL inside reqwest: it must not come out.
    let mut unreachable = config.clone();
    unreachable.api_base = api_base(&format!("http://127.0.0.1:{}", free_port()));
    let result = h
        .sender(unreachable)
        .await
        .send(&notification(PaymentStatus::Paid, "4243"))
        .await;
    match &result {
        Err(DeliveryError::Transient(reason)) => {
            assert!(reason.contains("connection failed"), "{reason}");
            assert!(!reason.contains(secret), "{reason}");
        }
        other => panic!("expected Transient, got {other:?}"),
    }

    let mut slow = config;
    slow.bot_token = Secret::new(TOKEN);
    slow.timeout = Duration::from_millis(200);
    h.sandbox
        .state()
        .set_fault(FaultScope::Telegram, Fault::latency(3_000).times(1))
        .expect("fault");
    let result = h
        .sender(slow)
        .await
        .send(&notification(PaymentStatus::Paid, "4244"))
        .await;
    match &result {
        Err(DeliveryError::Transient(reason)) => {
            assert!(reason.contains("timed out"), "{reason}");
            assert!(!reason.contains("sandbox-bot-token"), "{reason}");
        }
        other => panic!("expected Transient, got {other:?}"),
    }
    h.finish().await;
}

#[tokio::test]
async fn server_errors_and_broken_answers_are_transient() {
    let h = Harness::start("tg-transient").await;
    let sender = h.sender(h.config()).await;
    let faults = [
        ("502", Fault::status(502).times(1)),
        ("dropped", Fault::drop_connection().times(1)),
        ("malformed", Fault::malformed().times(1)),
    ];
    // A different chat each time, so pacing stays out of the way.
    for (i, (what, fault)) in faults.into_iter().enumerate() {
        h.sandbox
            .state()
            .set_fault(FaultScope::Telegram, fault)
            .expect("fault");
        let result = sender
            .send(&notification(PaymentStatus::Paid, &format!("{}", 500 + i)))
            .await;
        assert!(
            matches!(&result, Err(DeliveryError::Transient(_))),
            "{what}: {result:?}"
        );
        assert!(
            !format!("{result:?}").contains("sandbox-bot-token"),
            "{result:?}"
        );
    }
    assert!(h.messages().is_empty());
    h.finish().await;
}

#[tokio::test]
async fn invalid_chat_id_is_permanent_without_a_request() {
    let h = Harness::start("tg-bad-chat").await;
    let sender = h.sender(h.config()).await;
    for target in ["", "not-a-chat", "@abc", "12 34"] {
        let result = sender
            .send(&notification(PaymentStatus::Paid, target))
            .await;
        assert!(
            matches!(&result, Err(DeliveryError::Permanent(r)) if r.contains("chat id")),
            "{target:?}: {result:?}"
        );
    }
    assert_eq!(h.requests(), 0);
    h.finish().await;
}

#[tokio::test]
async fn one_chat_is_paced_for_the_interval_while_other_chats_go_through() {
    let h = Harness::start("tg-pace-chat").await;
    let sender = h.sender(h.config()).await;
    let to_a = notification(PaymentStatus::Paid, "1001");
    let to_b = notification(PaymentStatus::Paid, "1002");

    let first = Instant::now();
    sender.send(&to_a).await.expect("first message to A");
    let wait = paced_wait(&sender.send(&to_a).await);
    // The rest of A's second: 1 s minus what has passed since the first send (1 ms rounding).
    let rest = Duration::from_secs(1).saturating_sub(first.elapsed());
    assert!(
        wait + Duration::from_millis(1) >= rest && wait <= Duration::from_secs(1),
        "{wait:?}, expected about {rest:?}"
    );
    sender.send(&to_b).await.expect("B is not held back by A");
    let chats: Vec<ChatId> = h.messages().into_iter().map(|m| m.chat_id).collect();
    assert_eq!(chats, [ChatId::Id(1001), ChatId::Id(1002)]);

    // Exactly the announced wait is enough.
    tokio::time::sleep(wait).await;
    sender.send(&to_a).await.expect("A after the wait");
    assert_eq!(h.messages().len(), 3);
    h.finish().await;
}

#[tokio::test]
async fn per_bot_budget_is_shared_by_every_sender_of_the_fleet() {
    let h = Harness::start("tg-pace-bot").await;
    let mut config = h.config();
    config.per_bot_per_second = 3;
    // Two workers: separate senders and Redis connections, one prefix.
    let one = h.sender(config.clone()).await;
    let two = h.sender(config).await;

    for (i, sender) in [&one, &two, &one].into_iter().enumerate() {
        sender
            .send(&notification(PaymentStatus::Paid, &format!("{}", 2001 + i)))
            .await
            .unwrap_or_else(|e| panic!("message {i}: {e}"));
    }
    let fourth = notification(PaymentStatus::Paid, "2004");
    let wait = paced_wait(&two.send(&fourth).await);
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_secs(1),
        "{wait:?}"
    );
    assert!(matches!(
        one.send(&notification(PaymentStatus::Paid, "2005")).await,
        Err(DeliveryError::Paced { .. })
    ));
    assert_eq!(h.messages().len(), 3);

    // Pacing state is bounded: every key it wrote expires by itself.
    let mut conn = connection().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", h.prefix))
        .query_async(&mut conn)
        .await
        .expect("KEYS");
    assert!(!keys.is_empty());
    for key in &keys {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .expect("PTTL");
        assert!(ttl > 0 && ttl <= 1_000, "{key}: {ttl}");
    }

    tokio::time::sleep(wait).await;
    two.send(&fourth).await.expect("room again after the wait");
    assert_eq!(h.messages().len(), 4);
    h.finish().await;
}

#[tokio::test]
async fn concurrent_sends_never_exceed_the_bot_budget() {
    let h = Harness::start("tg-pace-race").await;
    let mut config = h.config();
    config.per_bot_per_second = 5;
    let sender = h.sender(config).await;

    let notifications: Vec<Notification> = (0..20)
        .map(|i| notification(PaymentStatus::Paid, &format!("{}", 3000 + i)))
        .collect();
    let results = futures::future::join_all(notifications.iter().map(|n| sender.send(n))).await;
    let sent = results.iter().filter(|r| r.is_ok()).count();
    let paced = results
        .iter()
        .filter(|r| matches!(r, Err(DeliveryError::Paced { .. })))
        .count();
    assert_eq!((sent, paced), (5, 15), "{results:?}");
    assert_eq!(h.messages().len(), 5);
    h.finish().await;
}

#[tokio::test]
async fn send_text_escapes_plain_text_for_the_ops_digest() {
    let h = Harness::start("tg-text").await;
    let sender = h.sender(h.config()).await;

    sender
        .send_text("777", "paywatch ops: 1 unresolved <order> & co")
        .await
        .expect("sent");
    let messages = h.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(
        messages[0].text,
        "paywatch ops: 1 unresolved &lt;order&gt; &amp; co"
    );
    // Paced like any other message to that chat.
    paced_wait(&sender.send_text("777", "again").await);
    h.finish().await;
}

#[tokio::test]
async fn construction_rejects_bad_config_without_showing_the_token() {
    let h = Harness::start("tg-config").await;
    let redis = connection().await;
    let build = |config: TelegramConfig| TelegramSender::new(config, redis.clone(), "pwtest:tg");

    let mut bad_token = h.config();
    bad_token.bot_token = Secret::new("no-colon-secret-value");
    let err = build(bad_token).expect_err("malformed token");
    assert_eq!(err, TelegramConfigError::MalformedToken);
    assert!(!err.to_string().contains("no-colon-secret-value"));

    let mut no_rate = h.config();
    no_rate.per_bot_per_second = 0;
    assert_eq!(
        build(no_rate).expect_err("zero rate"),
        TelegramConfigError::InvalidBotRate(0)
    );

    let mut no_interval = h.config();
    no_interval.per_chat_interval = Duration::ZERO;
    assert!(matches!(
        build(no_interval),
        Err(TelegramConfigError::InvalidChatInterval(_))
    ));

    let mut ftp = h.config();
    ftp.api_base = Url::parse("ftp://user:pw@example.com/x").expect("url");
    let err = build(ftp).expect_err("ftp base");
    assert!(matches!(err, TelegramConfigError::InvalidApiBase(_)));
    assert!(!err.to_string().contains("pw@"), "{err}");

    assert_eq!(
        TelegramSender::new(h.config(), redis.clone(), "").expect_err("empty prefix"),
        TelegramConfigError::EmptyKeyPrefix
    );
    h.finish().await;
}
