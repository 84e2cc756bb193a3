//! The shop's metadata comes back exactly as submitted, through every reader: the POST answer,
//! `GET /v1/orders/{id}`, its events stream, `GET /v1/admin/orders/{id}`, `paywatch-producer
//! admin order --json` (the real binary) and the signed webhook notification. Numbers no `f64`
//! holds (`1e400`, 25-digit integers) once crashed every reader or came back rounded; `1.50`,
//! `1E3` and `-0` came back rewritten. Bodies are compared as text: parsing them into a
//! `serde_json::Value` would do the very rounding under test.

use std::time::Duration;

use paywatch_tests::stack::{Stack, WebhookReceiver};
use paywatch_tests::{bins, wait_for};
use serde_json::{Value, json};

/// (name, a JSON number as written): each becomes one order with metadata `{"v":<number>}`.
const NUMBERS: [(&str, &str); 12] = [
    ("huge", "1e400"),
    ("huge-negative", "-1e400"),
    ("huge-upper", "1E+400"),
    ("tiny", "1e-400"),
    ("negative-exponent", "12.5e-3"),
    ("int25", "1234567890123456789012345"),
    ("int25-negative", "-1234567890123456789012345"),
    ("minus-zero", "-0"),
    ("minus-zero-float", "-0.0"),
    ("trailing-zero", "1.50"),
    ("upper-e", "1E3"),
    ("int64-plus-one", "9223372036854775808"),
];

fn metadata(number: &str) -> String {
    format!(r#"{{"v":{number},"w":[{number},{{"x":{number}}}]}}"#)
}

async fn get_text(stack: &Stack, path: &str) -> (u16, String) {
    let response = stack
        .http
        .get(format!("{}{path}", stack.api))
        .send()
        .await
        .expect("GET");
    let code = response.status().as_u16();
    (code, response.text().await.expect("body"))
}

#[tokio::test]
async fn metadata_numbers_come_back_as_written_through_every_reader() {
    // Built before the stack starts: the build may take a while.
    bins::dir();
    let stack = Stack::start("door-exact").await;
    let receiver = WebhookReceiver::start().await;
    let mut ids = Vec::new();
    for (name, number) in NUMBERS {
        let id = format!("exact-{name}");
        let bill = stack.bill_paid_after(50);
        let body = format!(
            r#"{{"order_id":"{id}","provider":"cashless","payment_id":"{bill}","notify":{{"webhook_url":"{}"}},"metadata":{}}}"#,
            receiver.url,
            metadata(number)
        );
        let response = stack
            .http
            .post(format!("{}/v1/orders", stack.api))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("POST");
        let code = response.status().as_u16();
        let reply: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(code, 202, "{name}: {reply}");
        // The answer names the order (it once said order_id:"" and provider:null).
        assert_eq!(reply["order_id"], json!(id), "{name}: {reply}");
        assert_eq!(reply["provider"], json!("cashless"), "{name}: {reply}");
        assert_eq!(reply["payment_id"], json!(bill), "{name}: {reply}");
        ids.push((id, metadata(number)));
    }
    for (id, expected) in &ids {
        let (code, text) = get_text(&stack, &format!("/v1/orders/{id}")).await;
        assert_eq!(code, 200, "GET {id}: {text}");
        assert!(
            text.contains(&format!(r#""metadata":{expected}"#)),
            "GET {id}: {text}"
        );
        let (code, text) = get_text(&stack, &format!("/v1/admin/orders/{id}")).await;
        assert_eq!(code, 200, "admin GET {id}: {text}");
        assert!(
            text.contains(&format!(r#""metadata":{expected}"#)),
            "admin GET {id}: {text}"
        );
        let (code, stdout, stderr) = bins::producer(
            &stack.redis,
            &stack.prefix,
            &["admin", "order", id, "--json"],
        )
        .await;
        assert_eq!(code, Some(0), "admin order {id}: {stderr}");
        assert!(
            stdout.contains(expected.as_str()),
            "admin order {id}: {stdout}"
        );
        // The token's events stream: its first event is the same view.
        let mut events = stack
            .http
            .get(format!("{}/v1/orders/{id}/events", stack.api))
            .send()
            .await
            .expect("events");
        assert_eq!(events.status().as_u16(), 200, "events {id}");
        let first = tokio::time::timeout(Duration::from_secs(10), events.chunk())
            .await
            .expect("a first event")
            .expect("read")
            .expect("a chunk");
        let first = String::from_utf8_lossy(&first);
        assert!(
            first.contains(&format!(r#""metadata":{expected}"#)),
            "events {id}: {first}"
        );
    }

    // The webhook notification echoes it too.
    let checker = stack.worker(&stack.worker_args(0.01)).await;
    let notifier = stack
        .worker(&stack.notifier_args_for("notify-webhook"))
        .await;
    let received = wait_for(
        "a webhook for every order",
        Duration::from_secs(60),
        || async {
            let received = receiver.received();
            ids.iter()
                .all(|(id, _)| {
                    received
                        .iter()
                        .any(|(_, body)| body.contains(&format!(r#""order_id":"{id}""#)))
                })
                .then_some(received)
        },
    )
    .await;
    checker.stop().await;
    notifier.stop().await;
    for (id, expected) in &ids {
        let body = received
            .iter()
            .map(|(_, body)| body)
            .find(|body| body.contains(&format!(r#""order_id":"{id}""#)))
            .expect("delivered");
        assert!(
            body.contains(&format!(r#""metadata":{expected}"#)),
            "webhook {id}: {body}"
        );
    }
    // A final order reads the same as a pending one did.
    let (id, expected) = &ids[0];
    let (_, text) = get_text(&stack, &format!("/v1/orders/{id}")).await;
    assert!(
        text.contains(r#""status":"paid""#) && text.contains(expected.as_str()),
        "{text}"
    );
    stack.finish().await;
}
