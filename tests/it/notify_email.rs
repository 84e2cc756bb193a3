//! The email channel against a real SMTP server over a real socket: the sandbox's SMTP sink
//! (`paywatch_sandbox::smtp`, the `mailin` protocol state machine, messages parsed with
//! `mail-parser`), run inside the test process on a free port.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use paywatch_core::{Channel, Notification, OrderId, PaymentId, PaymentStatus, Provider};
use paywatch_sandbox::smtp::{SmtpSink as Server, SmtpSinkConfig};
use paywatch_tests::{free_port, wait_for};
use paywatch_worker::notify::DeliveryError;
use paywatch_worker::notify::email::{EmailConfig, EmailSender};
use serde_json::{Value, json};

const FROM: &str = "noreply@paywatch.test";
const REPLY_TO: &str = "support@shop.test";
const BUYER: &str = "buyer@shop.test";

/// The SMTP server a test delivers to, with the accepted messages as JSON for easy assertions.
struct SmtpSink {
    server: Server,
    port: u16,
}

impl SmtpSink {
    /// Starts a sink on a free loopback port.
    async fn start(config: SmtpSinkConfig) -> Self {
        let server = Server::start(config, "127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("start the SMTP sink");
        let port = server.addr().port();
        Self { server, port }
    }

    fn url(&self) -> String {
        self.server.url()
    }

    /// The messages accepted so far, oldest first.
    fn messages(&self) -> Vec<Value> {
        self.server
            .messages()
            .iter()
            .map(|m| serde_json::to_value(m).expect("message as JSON"))
            .collect()
    }

    /// Waits until `n` messages were accepted (the server records before it answers 250, so
    /// this returns at once after a successful send; the deadline guards against a hang).
    async fn wait_messages(&self, n: usize) -> Vec<Value> {
        wait_for(
            &format!("{n} recorded messages"),
            Duration::from_secs(5),
            || async {
                let messages = self.messages();
                (messages.len() >= n).then_some(messages)
            },
        )
        .await
    }
}

fn sender(smtp_url: &str) -> EmailSender {
    EmailSender::new(EmailConfig {
        smtp_url: smtp_url.to_owned(),
        from: format!("Paywatch <{FROM}>"),
        reply_to: Some(REPLY_TO.to_owned()),
        timeout: Duration::from_secs(5),
    })
    .expect("valid email config")
}

fn notification(status: PaymentStatus, target: &str) -> Notification {
    Notification {
        order_id: OrderId::new("ORD-1001").expect("valid order id"),
        status,
        channel: Channel::Email,
        target: target.to_owned(),
        provider: Provider::FoxReload,
        payment_id: PaymentId::new("fox-77").expect("valid payment id"),
        raw_status: Some("completed".to_owned()),
        detail: None,
        metadata: Some(
            paywatch_core::Metadata::from_value(&json!({ "customer": "<b>Ann & Bob</b>" }))
                .expect("json"),
        ),
        delivered_codes: if status == PaymentStatus::Paid {
            vec!["FOX-AAAA-1111".to_owned(), "FOX-BBBB-2222".to_owned()]
        } else {
            Vec::new()
        },
        occurred_at: Utc.with_ymd_and_hms(2025, 3, 4, 5, 6, 7).unwrap(),
        traceparent: None,
    }
}

fn header<'a>(message: &'a Value, name: &str) -> &'a str {
    message["headers"][name]
        .as_str()
        .unwrap_or_else(|| panic!("no {name} header in {message}"))
}

fn part<'a>(message: &'a Value, content_type: &str) -> &'a str {
    message["parts"]
        .as_array()
        .expect("parts")
        .iter()
        .find(|p| p["content_type"] == content_type)
        .and_then(|p| p["body"].as_str())
        .unwrap_or_else(|| panic!("no {content_type} part in {message}"))
}

#[tokio::test]
async fn paid_email_is_multipart_with_codes() {
    let sink = SmtpSink::start(SmtpSinkConfig::default()).await;
    let sender = sender(&sink.url());

    sender
        .send(&notification(PaymentStatus::Paid, BUYER))
        .await
        .expect("delivered");

    let messages = sink.wait_messages(1).await;
    assert_eq!(messages.len(), 1);
    let message = &messages[0];
    assert_eq!(message["mail_from"], FROM);
    assert_eq!(message["rcpt_tos"], json!([BUYER]));
    assert_eq!(message["content_type"], "multipart/alternative");
    assert_eq!(
        header(message, "subject"),
        "Payment received for order ORD-1001"
    );
    assert_eq!(header(message, "from"), format!("Paywatch <{FROM}>"));
    assert_eq!(header(message, "reply-to"), REPLY_TO);
    assert_eq!(header(message, "to"), BUYER);
    assert_eq!(header(message, "auto-submitted"), "auto-generated");
    assert!(header(message, "message-id").ends_with("@paywatch.test>"));

    let text = part(message, "text/plain");
    let html = part(message, "text/html");
    for body in [text, html] {
        for expected in ["ORD-1001", "foxreload", "fox-77", "completed"] {
            assert!(body.contains(expected), "{expected} missing from {body}");
        }
        // No time in the content: a transition recorded again after a failover renders the same.
        assert!(!body.contains("2025-03-04"), "{body}");
    }
    assert!(
        text.contains("FOX-AAAA-1111") && text.contains("FOX-BBBB-2222"),
        "{text}"
    );
    assert!(html.contains("<code>FOX-AAAA-1111</code>"), "{html}");
    assert!(html.contains("<code>FOX-BBBB-2222</code>"), "{html}");
    // Metadata came from outside: escaped in HTML, verbatim in text.
    assert!(text.contains("<b>Ann & Bob</b>"), "{text}");
    assert!(html.contains("&lt;b&gt;Ann &amp; Bob&lt;/b&gt;"), "{html}");
    assert!(!html.contains("<b>Ann"), "{html}");
}

#[tokio::test]
async fn every_outcome_has_its_own_subject_and_the_same_message_id_on_retry() {
    let sink = SmtpSink::start(SmtpSinkConfig::default()).await;
    let sender = sender(&sink.url());
    let outcomes = [
        (PaymentStatus::Failed, "Payment failed for order ORD-1001"),
        (PaymentStatus::Expired, "Payment expired for order ORD-1001"),
        (
            PaymentStatus::Cancelled,
            "Payment cancelled for order ORD-1001",
        ),
        (
            PaymentStatus::Unresolved,
            "Payment unresolved for order ORD-1001: check manually",
        ),
    ];
    for (status, _) in &outcomes {
        sender
            .send(&notification(*status, BUYER))
            .await
            .unwrap_or_else(|e| panic!("{status}: {e}"));
    }
    // The same notification again, as a retry would send it.
    sender
        .send(&notification(PaymentStatus::Failed, BUYER))
        .await
        .expect("resent");

    let messages = sink.wait_messages(outcomes.len() + 1).await;
    for (message, (status, subject)) in messages.iter().zip(&outcomes) {
        assert_eq!(header(message, "subject"), *subject, "{status}");
        assert!(!part(message, "text/plain").contains("FOX-"), "{status}");
    }
    let unresolved = part(&messages[3], "text/plain");
    assert!(unresolved.contains("may still settle"), "{unresolved}");
    let ids: Vec<&str> = messages.iter().map(|m| header(m, "message-id")).collect();
    assert_eq!(ids[0], ids[4], "a resend keeps its Message-ID");
    assert_ne!(ids[0], ids[1], "other outcomes get other Message-IDs");
}

#[tokio::test]
async fn greylisting_451_is_transient_then_the_retry_succeeds() {
    let sink = SmtpSink::start(SmtpSinkConfig {
        tempfail: [(BUYER.to_owned(), 1)].into(),
        ..SmtpSinkConfig::default()
    })
    .await;
    let sender = sender(&sink.url());
    let n = notification(PaymentStatus::Paid, BUYER);

    let first = sender.send(&n).await;
    match &first {
        Err(DeliveryError::Transient(reason)) => {
            assert!(reason.contains("451"), "{reason}");
            assert!(reason.contains("try again later"), "{reason}");
            assert!(!reason.contains("FOX-"), "codes leaked into {reason}");
        }
        other => panic!("expected a transient failure, got {other:?}"),
    }
    assert!(sink.messages().is_empty());

    sender.send(&n).await.expect("second attempt delivered");
    assert_eq!(sink.wait_messages(1).await.len(), 1);
}

#[tokio::test]
async fn rejected_mailbox_550_is_permanent_with_the_servers_reply() {
    let gone = "gone@shop.test";
    let sink = SmtpSink::start(SmtpSinkConfig {
        reject: [gone.to_owned()].into(),
        ..SmtpSinkConfig::default()
    })
    .await;
    let sender = sender(&sink.url());

    let result = sender.send(&notification(PaymentStatus::Paid, gone)).await;
    match &result {
        Err(DeliveryError::Permanent(reason)) => {
            assert!(reason.contains("550 5.1.1"), "{reason}");
            assert!(reason.contains("mailbox unavailable"), "{reason}");
            assert!(!reason.contains("FOX-"), "codes leaked into {reason}");
        }
        other => panic!("expected a permanent failure, got {other:?}"),
    }
    // Other recipients still get theirs: the rejection was about that mailbox only.
    sender
        .send(&notification(PaymentStatus::Paid, BUYER))
        .await
        .expect("delivered");
    let messages = sink.wait_messages(1).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["rcpt_tos"], json!([BUYER]));
}

#[tokio::test]
async fn invalid_recipient_address_is_permanent_and_nothing_is_sent() {
    let sink = SmtpSink::start(SmtpSinkConfig::default()).await;
    let sender = sender(&sink.url());

    for target in ["not an address", "buyer@", "", "a@b@c"] {
        let result = sender
            .send(&notification(PaymentStatus::Paid, target))
            .await;
        assert!(
            matches!(&result, Err(DeliveryError::Permanent(r)) if r.contains("invalid recipient")),
            "{target:?}: {result:?}"
        );
    }
    // A valid send afterwards is the first and only message the server saw.
    sender
        .send(&notification(PaymentStatus::Expired, BUYER))
        .await
        .expect("delivered");
    assert_eq!(sink.wait_messages(1).await.len(), 1);
}

#[tokio::test]
async fn smtp_credentials_are_used_but_never_shown() {
    let password = "s3cret p@ss:w0rd";
    let sink = SmtpSink::start(SmtpSinkConfig {
        auth: Some(("mailer".to_owned(), password.to_owned())),
        ..SmtpSinkConfig::default()
    })
    .await;
    let port = sink.port;

    // Percent-encoded in the URL, decoded before AUTH: the server accepts it.
    let good = sender(&format!(
        "smtp://mailer:s3cret%20p%40ss%3Aw0rd@127.0.0.1:{port}"
    ));
    good.send(&notification(PaymentStatus::Paid, BUYER))
        .await
        .expect("authenticated delivery");
    assert_eq!(sink.wait_messages(1).await.len(), 1);
    assert!(!format!("{good:?}").contains("s3cret"), "{good:?}");

    // A wrong password: the server's 535 comes back, the password and URL do not.
    let wrong_password = "wr0ng-passw0rd-123";
    let wrong_url = format!("smtp://mailer:{wrong_password}@127.0.0.1:{port}");
    let result = sender(&wrong_url)
        .send(&notification(PaymentStatus::Paid, BUYER))
        .await;
    let reason = match &result {
        Err(DeliveryError::Permanent(reason)) => reason.clone(),
        other => panic!("expected a permanent failure, got {other:?}"),
    };
    assert!(reason.contains("535"), "{reason}");
    assert!(reason.contains(&format!("127.0.0.1:{port}")), "{reason}");
    assert!(!reason.contains(wrong_password), "{reason}");
    assert!(!reason.contains("mailer:"), "{reason}");

    // Nothing listening: a transient connection failure, still without the credentials.
    let closed = free_port();
    let result = sender(&format!(
        "smtp://mailer:{wrong_password}@127.0.0.1:{closed}"
    ))
    .send(&notification(PaymentStatus::Paid, BUYER))
    .await;
    let reason = match &result {
        Err(DeliveryError::Transient(reason)) => reason.clone(),
        other => panic!("expected a transient failure, got {other:?}"),
    };
    assert!(reason.contains(&format!("127.0.0.1:{closed}")), "{reason}");
    assert!(!reason.contains(wrong_password), "{reason}");
    assert_eq!(sink.messages().len(), 1);

    // A construction error names the field, not the URL.
    let err = EmailSender::new(EmailConfig {
        smtp_url: format!("smtp://mailer:{wrong_password}@127.0.0.1:{port}?tls=sometimes"),
        from: FROM.to_owned(),
        reply_to: None,
        timeout: Duration::from_secs(1),
    })
    .expect_err("bad tls parameter");
    assert!(
        !format!("{err} {err:?}").contains(wrong_password),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_as_transient() {
    // Accepts connections and says nothing, like a wedged relay.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let sender = EmailSender::new(EmailConfig {
        smtp_url: format!("smtp://127.0.0.1:{port}"),
        from: FROM.to_owned(),
        reply_to: None,
        timeout: Duration::from_millis(300),
    })
    .expect("valid config");

    let started = std::time::Instant::now();
    let result = sender.send(&notification(PaymentStatus::Paid, BUYER)).await;
    assert!(
        matches!(&result, Err(DeliveryError::Transient(r)) if r.contains("timed out")),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    holder.abort();
}
