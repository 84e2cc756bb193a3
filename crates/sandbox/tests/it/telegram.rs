//! The fake Telegram Bot API over real sockets.

use crate::common::{client, start};
use paywatch_sandbox::{ChatId, SandboxHandle};
use serde_json::{Value, json};

const TOKEN: &str = "123456:sandbox-bot-token";

fn send_url(sandbox: &SandboxHandle, token: &str) -> String {
    format!("{}/telegram/bot{token}/sendMessage", sandbox.base_url())
}

async fn send_json(sandbox: &SandboxHandle, body: Value) -> (u16, Value) {
    let response = client()
        .post(send_url(sandbox, TOKEN))
        .json(&body)
        .send()
        .await
        .expect("bot reachable");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json answer"))
}

#[tokio::test]
async fn messages_are_delivered_from_json_and_forms_and_recorded() {
    let sandbox = start(1.0).await;
    let before = chrono::Utc::now().timestamp();
    let (status, body) = send_json(
        &sandbox,
        json!({"chat_id": 42, "text": "<b>Paid</b>", "parse_mode": "HTML"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["ok"], true);
    let result = &body["result"];
    assert_eq!(result["message_id"], 1);
    assert_eq!(result["chat"]["id"], 42);
    assert_eq!(result["text"], "<b>Paid</b>");
    assert!(result["date"].as_i64().is_some_and(|d| d >= before));

    let form = client()
        .post(send_url(&sandbox, TOKEN))
        .form(&[("chat_id", "-1001234567890"), ("text", "group note")])
        .send()
        .await
        .expect("bot reachable");
    assert_eq!(form.status(), 200);
    let form: Value = form.json().await.expect("json");
    assert_eq!(form["result"]["message_id"], 2);
    assert_eq!(form["result"]["chat"]["id"], -1_001_234_567_890_i64);

    let http = client();
    let admin = format!("{}/_admin/telegram/messages", sandbox.base_url());
    let recorded: Value = http
        .get(&admin)
        .send()
        .await
        .expect("admin")
        .json()
        .await
        .expect("json");
    let recorded = recorded.as_array().expect("list");
    assert_eq!(recorded.len(), 2);
    assert_eq!(recorded[0]["chat_id"], 42);
    assert_eq!(recorded[0]["text"], "<b>Paid</b>");
    assert_eq!(recorded[0]["parse_mode"], "HTML");
    assert!(recorded[0]["at"].is_string());
    assert_eq!(recorded[1]["chat_id"], -1_001_234_567_890_i64);

    let messages = sandbox.state().telegram_messages();
    assert_eq!(messages[1].chat_id, ChatId::Id(-1_001_234_567_890));
    assert_eq!(messages[1].text, "group note");

    assert_eq!(
        http.delete(&admin).send().await.expect("admin").status(),
        204
    );
    assert!(sandbox.state().telegram_messages().is_empty());
    assert_eq!(sandbox.state().request_stats().telegram.delivered, 2);
}

#[tokio::test]
async fn a_wrong_token_is_unauthorized() {
    let sandbox = start(1.0).await;
    let response = client()
        .post(send_url(&sandbox, "123456:wrong"))
        .json(&json!({"chat_id": 1, "text": "hi"}))
        .send()
        .await
        .expect("bot reachable");
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.json::<Value>().await.expect("json"),
        json!({"ok": false, "error_code": 401, "description": "Unauthorized"})
    );
    assert!(sandbox.state().telegram_messages().is_empty());
}

#[tokio::test]
async fn scripted_chats_fail_like_telegram_does() {
    let sandbox = start(1.0).await;
    let (status, body) = send_json(&sandbox, json!({"chat_id": -404, "text": "hi"})).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"ok": false, "error_code": 400, "description": "Bad Request: chat not found"})
    );

    let (status, body) = send_json(&sandbox, json!({"chat_id": "-403", "text": "hi"})).await;
    assert_eq!(status, 403);
    assert_eq!(
        body,
        json!({"ok": false, "error_code": 403, "description": "Forbidden: bot was blocked by the user"})
    );

    assert!(sandbox.state().telegram_messages().is_empty());
    assert_eq!(sandbox.state().request_stats().telegram.rejected, 2);
}

#[tokio::test]
async fn injected_rate_limits_say_when_to_retry() {
    let sandbox = start(1.0).await;
    let http = client();
    let faults = format!("{}/_admin/telegram/faults", sandbox.base_url());
    let added = http
        .post(&faults)
        .json(&json!({"kind": "status", "code": 429, "retry_after_s": 3, "times": 2}))
        .send()
        .await
        .expect("admin");
    assert_eq!(added.status(), 204);
    for _ in 0..2 {
        let (status, body) = send_json(&sandbox, json!({"chat_id": 7, "text": "hi"})).await;
        assert_eq!(status, 429);
        assert_eq!(
            body,
            json!({
                "ok": false, "error_code": 429,
                "description": "Too Many Requests: retry after 3",
                "parameters": {"retry_after": 3},
            })
        );
    }
    let (status, _) = send_json(&sandbox, json!({"chat_id": 7, "text": "hi"})).await;
    assert_eq!(status, 200);
    assert_eq!(
        sandbox.state().telegram_messages().len(),
        1,
        "rate-limited messages are not delivered"
    );

    http.post(&faults)
        .json(&json!({"kind": "status", "code": 502}))
        .send()
        .await
        .expect("admin");
    assert_eq!(
        send_json(&sandbox, json!({"chat_id": 7, "text": "hi"}))
            .await
            .0,
        502
    );
    assert_eq!(
        http.delete(&faults).send().await.expect("admin").status(),
        204
    );
    assert_eq!(
        send_json(&sandbox, json!({"chat_id": 7, "text": "hi"}))
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn malformed_calls_get_telegram_style_400s() {
    let sandbox = start(1.0).await;
    let cases = [
        (json!({"text": "hi"}), "Bad Request: chat_id is empty"),
        (json!({"chat_id": 5}), "Bad Request: message text is empty"),
        (
            json!({"chat_id": 5, "text": "hi", "parse_mode": "BBCode"}),
            "Bad Request: unsupported parse_mode",
        ),
        (
            json!({"chat_id": 5, "text": "x".repeat(4097)}),
            "Bad Request: message is too long",
        ),
    ];
    for (body, description) in cases {
        let (status, answer) = send_json(&sandbox, body).await;
        assert_eq!(status, 400, "{description}");
        assert_eq!(answer["description"], description);
        assert_eq!(answer["ok"], false);
    }
    let by_query = client()
        .get(format!(
            "{}/telegram/bot{TOKEN}/sendMessage",
            sandbox.base_url()
        ))
        .query(&[("chat_id", "9"), ("text", "via query")])
        .send()
        .await
        .expect("bot reachable");
    assert_eq!(by_query.status(), 200);
    assert_eq!(sandbox.state().telegram_messages()[0].text, "via query");

    let me: Value = client()
        .get(format!("{}/telegram/bot{TOKEN}/getMe", sandbox.base_url()))
        .send()
        .await
        .expect("bot reachable")
        .json()
        .await
        .expect("json");
    assert_eq!(me["result"]["id"], 123_456);
    assert_eq!(me["result"]["is_bot"], true);
}
