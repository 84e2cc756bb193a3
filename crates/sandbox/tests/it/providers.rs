//! Provider endpoints over real sockets: authentication, 404 shapes, timelines and shapes.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use crate::common::{PROVIDERS, client, create, fetch, start, status_request, wait_for};
use base64::Engine;
use chrono::{DateTime, Utc};
use paywatch_sandbox::Provider;
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(5);

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.chars().all(|c| c.is_ascii_hexdigit())
}

fn rfc3339(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().expect("timestamp string"))
        .expect("RFC 3339 timestamp")
        .with_timezone(&Utc)
}

#[tokio::test]
async fn each_provider_rejects_missing_and_wrong_credentials_in_its_own_shape() {
    let sandbox = start(1.0).await;
    let base = sandbox.base_url();
    let http = client();
    let wrong_basic =
        base64::engine::general_purpose::STANDARD.encode("sandbox-miracle-client:nope");
    let cases = [
        (
            "cashless",
            "/cashless/api/v3/bills",
            (
                "Authorization",
                "ApiKey sandbox-cashless-key:nope".to_string(),
            ),
            json!({"error": "Unauthorized"}),
        ),
        (
            "handcash",
            "/handcash/v3/paymentRequests",
            ("App-Secret", "nope".to_string()),
            json!({"message": "Invalid app credentials"}),
        ),
        (
            "miraclecash",
            "/miraclecash/external/payments/prompt",
            ("Authorization", format!("Basic {wrong_basic}")),
            json!({"message": "Unauthorized"}),
        ),
        (
            "foxreload",
            "/foxreload/api/orders",
            ("X-API-Key", "nope".to_string()),
            json!({"error": "Invalid API key"}),
        ),
    ];
    for (provider, path, (header, wrong), expected) in cases {
        let id = create(&sandbox, json!({"provider": provider})).await;
        let url = format!("{base}{path}/{id}");

        let missing = http.get(&url).send().await.expect("reachable");
        assert_eq!(missing.status(), 401, "{provider} without credentials");
        assert_eq!(
            missing.json::<Value>().await.expect("json"),
            expected,
            "{provider}"
        );

        let mut request = http.get(&url).header(header, wrong);
        if provider == "handcash" {
            request = request.header("App-Id", "sandbox-handcash-app");
        }
        let bad = request.send().await.expect("reachable");
        assert_eq!(bad.status(), 401, "{provider} with wrong credentials");
        assert_eq!(
            bad.json::<Value>().await.expect("json"),
            expected,
            "{provider}"
        );

        // The right credentials get through, so the rejections above are about credentials.
        let body = fetch(&sandbox, provider, &id).await;
        assert_eq!(body["id"], json!(id));
    }
    let stats = sandbox.state().request_stats();
    assert_eq!(stats.cashless.unauthorized, 2);
    assert_eq!(stats.foxreload.ok, 1);
}

#[tokio::test]
async fn handcash_public_endpoint_checks_credentials_only_when_sent() {
    let sandbox = start(1.0).await;
    let id = create(&sandbox, json!({"provider": "handcash"})).await;
    let url = format!(
        "{}/handcash/v3/paymentRequests/public/{id}",
        sandbox.base_url()
    );
    let http = client();

    let anonymous = http.get(&url).send().await.expect("reachable");
    assert_eq!(anonymous.status(), 200);
    assert_eq!(
        anonymous.json::<Value>().await.expect("json")["status"],
        "pending"
    );

    let good = http
        .get(&url)
        .header("App-Id", "sandbox-handcash-app")
        .header("App-Secret", "sandbox-handcash-secret")
        .send()
        .await
        .expect("reachable");
    assert_eq!(good.status(), 200);

    let wrong = http
        .get(&url)
        .header("App-Id", "someone-else")
        .send()
        .await
        .expect("reachable");
    assert_eq!(wrong.status(), 401);
    assert_eq!(
        wrong.json::<Value>().await.expect("json"),
        json!({"message": "Invalid app credentials"})
    );

    let private_anonymous = http
        .get(format!(
            "{}/handcash/v3/paymentRequests/{id}",
            sandbox.base_url()
        ))
        .send()
        .await
        .expect("reachable");
    assert_eq!(private_anonymous.status(), 401);
}

#[tokio::test]
async fn unknown_ids_get_each_providers_404_shape() {
    let sandbox = start(1.0).await;
    let expected = [
        json!({"error": "Bill with id missing-id not found"}),
        json!({"message": "Payment request not found"}),
        json!({"message": "Payment prompt not found"}),
        json!({"error": "Order not found"}),
    ];
    for (provider, expected) in PROVIDERS.into_iter().zip(expected) {
        let response = status_request(&sandbox, provider, "missing-id")
            .send()
            .await
            .expect("reachable");
        assert_eq!(response.status(), 404, "{provider}");
        assert_eq!(
            response.json::<Value>().await.expect("json"),
            expected,
            "{provider}"
        );
    }
    assert_eq!(sandbox.state().request_stats().miraclecash.not_found, 1);
}

#[tokio::test]
async fn cashless_bill_follows_its_scaled_timeline() {
    // At 0.01 the 50 s / 100 s steps land at 0.5 s / 1 s: far enough apart to observe, fast to run.
    let sandbox = start(0.01).await;
    let before_create = Instant::now();
    let id = create(
        &sandbox,
        json!({
            "provider": "cashless", "amount": 15000.0, "reference": "INV-42",
            "timeline": [
                {"after_ms": 0, "status": "NOT_PAID"},
                {"after_ms": 50_000, "status": "PARTIALLY_PAID"},
                {"after_ms": 100_000, "status": "FULLY_PAID"},
            ],
        }),
    )
    .await;

    let first = fetch(&sandbox, "cashless", &id).await;
    assert_eq!(first["status"], "NOT_PAID");
    assert_eq!(first["id"], json!(id));
    assert_eq!(first["amount"], json!(15000.0));
    assert_eq!(first["reference"], "INV-42");
    assert!(
        first["mobile"]
            .as_str()
            .is_some_and(|m| m.len() == 10 && m.starts_with("07"))
    );
    assert_eq!(
        first["webPayUrl"],
        json!(format!("https://webpay.cashless.co.tz?bill={id}"))
    );
    let date = first["date"].as_i64().expect("date in Unix milliseconds");
    assert!((Utc::now().timestamp_millis() - date).abs() < 60_000);

    let order = ["NOT_PAID", "PARTIALLY_PAID", "FULLY_PAID"];
    let seen = RefCell::new(vec!["NOT_PAID".to_string()]);
    wait_for("the bill to be fully paid", DEADLINE, || async {
        let status = fetch(&sandbox, "cashless", &id).await["status"]
            .as_str()?
            .to_string();
        let mut seen = seen.borrow_mut();
        if seen.last() != Some(&status) {
            seen.push(status.clone());
        }
        (status == "FULLY_PAID").then_some(())
    })
    .await;
    let seen = seen.into_inner();
    assert!(
        before_create.elapsed() >= Duration::from_secs(1),
        "FULLY_PAID must not show before its scaled offset"
    );
    let positions: Vec<usize> = seen
        .iter()
        .map(|s| {
            order
                .iter()
                .position(|o| o == s)
                .expect("only scripted statuses")
        })
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "statuses went backwards: {seen:?}"
    );
    assert_eq!(
        sandbox
            .state()
            .stats(Provider::Cashless, &id)
            .map(|s| s.status),
        Some("FULLY_PAID".into())
    );
}

#[tokio::test]
async fn handcash_paid_adds_transaction_and_count() {
    let sandbox = start(0.01).await;
    let id = create(
        &sandbox,
        json!({
            "provider": "handcash", "amount": 2.5, "reference": "order-7",
            "timeline": [{"after_ms": 0, "status": "pending"}, {"after_ms": 100_000, "status": "paid"}],
        }),
    )
    .await;
    assert!(is_hex(&id, 16), "generated HandCash id {id}");

    let pending = fetch(&sandbox, "handcash", &id).await;
    assert_eq!(pending["status"], "pending");
    assert!(pending.get("transactionId").is_none());
    assert_eq!(pending["paymentsCount"], 0);
    assert_eq!(
        pending["amount"],
        json!({"currencyCode": "USD", "value": 2.5})
    );
    assert_eq!(pending["customParameters"], json!({"reference": "order-7"}));
    assert!(rfc3339(&pending["expiresAt"]) > Utc::now());

    let paid = wait_for("the request to be paid", DEADLINE, || async {
        let body = fetch(&sandbox, "handcash", &id).await;
        (body["status"] == "paid").then_some(body)
    })
    .await;
    assert!(is_hex(
        paid["transactionId"].as_str().expect("transactionId"),
        64
    ));
    assert_eq!(paid["paymentsCount"], 1);
    // The transaction is fixed at creation, so every poll agrees on it.
    assert_eq!(
        fetch(&sandbox, "handcash", &id).await["transactionId"],
        paid["transactionId"]
    );
}

#[tokio::test]
async fn handcash_expired_moves_expiry_into_the_past() {
    let sandbox = start(0.01).await;
    let id = create(
        &sandbox,
        json!({"provider": "handcash", "timeline": [{"after_ms": 0, "status": "expired"}]}),
    )
    .await;
    let body = fetch(&sandbox, "handcash", &id).await;
    assert_eq!(body["status"], "expired");
    assert!(rfc3339(&body["expiresAt"]) < Utc::now());
    assert!(body.get("transactionId").is_none());
}

#[tokio::test]
async fn miraclecash_chain_appears_only_on_success() {
    let sandbox = start(0.01).await;
    let id = create(
        &sandbox,
        json!({
            "provider": "miraclecash",
            "timeline": [{"after_ms": 0, "status": "pending"}, {"after_ms": 100_000, "status": "successful"}],
        }),
    )
    .await;
    assert!(
        uuid::Uuid::parse_str(&id).is_ok(),
        "generated MiracleCash id {id}"
    );
    let pending = fetch(&sandbox, "miraclecash", &id).await;
    assert_eq!(pending["status"], "pending");
    assert_eq!(pending["blockchainId"], Value::Null);
    assert!(rfc3339(&pending["createdAt"]) <= Utc::now());

    let done = wait_for("the prompt to succeed", DEADLINE, || async {
        let body = fetch(&sandbox, "miraclecash", &id).await;
        (body["status"] == "successful").then_some(body)
    })
    .await;
    assert_eq!(done["blockchainId"], "eth");
    assert_eq!(done["createdAt"], pending["createdAt"]);
}

#[tokio::test]
async fn foxreload_codes_appear_only_when_completed() {
    let sandbox = start(0.01).await;
    let id = create(
        &sandbox,
        json!({
            "provider": "foxreload",
            "timeline": [
                {"after_ms": 0, "status": "active"},
                {"after_ms": 50_000, "status": "processing"},
                {"after_ms": 100_000, "status": "completed"},
            ],
        }),
    )
    .await;
    assert!(id.starts_with("order_"), "generated FoxReload id {id}");
    let active = fetch(&sandbox, "foxreload", &id).await;
    assert_eq!(active["status"], "active");
    assert_eq!(active["items"][0]["externalData"], json!([]));
    assert_eq!(active["items"][0]["error"], Value::Null);
    assert_eq!(active["cancelReason"], Value::Null);

    let done = wait_for("the order to complete", DEADLINE, || async {
        let body = fetch(&sandbox, "foxreload", &id).await;
        (body["status"] == "completed").then_some(body)
    })
    .await;
    let codes = done["items"][0]["externalData"].as_array().expect("codes");
    assert_eq!(codes.len(), 1);
    let code = codes[0].as_str().expect("code string");
    let parts: Vec<&str> = code.split('-').collect();
    assert_eq!(parts.len(), 3, "{code}");
    assert_eq!(parts[0], "FOX");
    assert!(
        parts[1..]
            .iter()
            .all(|p| p.len() == 4 && p.chars().all(|c| c.is_ascii_alphanumeric()))
    );
}

#[tokio::test]
async fn foxreload_cancelled_and_failed_explain_themselves() {
    let sandbox = start(1.0).await;
    let cancelled = create(
        &sandbox,
        json!({"provider": "foxreload", "timeline": [{"after_ms": 0, "status": "cancelled"}]}),
    )
    .await;
    let body = fetch(&sandbox, "foxreload", &cancelled).await;
    assert_eq!(body["cancelReason"], "payment_expiration");
    assert_eq!(body["items"][0]["externalData"], json!([]));

    let failed = create(
        &sandbox,
        json!({"provider": "foxreload", "timeline": [{"after_ms": 0, "status": "failed"}]}),
    )
    .await;
    let body = fetch(&sandbox, "foxreload", &failed).await;
    assert!(body["items"][0]["error"].is_string());
    assert_eq!(body["cancelReason"], Value::Null);
}

#[tokio::test]
async fn unknown_statuses_are_served_verbatim_and_fields_merge() {
    let sandbox = start(1.0).await;
    let id = create(
        &sandbox,
        json!({
            "provider": "miraclecash",
            "timeline": [
                {"after_ms": 0, "status": "REFUND_REQUESTED", "fields": {"blockchainId": "tron", "note": "x"}},
            ],
        }),
    )
    .await;
    let body = fetch(&sandbox, "miraclecash", &id).await;
    assert_eq!(body["status"], "REFUND_REQUESTED");
    assert_eq!(body["blockchainId"], "tron");
    assert_eq!(body["note"], "x");
}

#[tokio::test]
async fn before_the_first_step_the_initial_status_shows() {
    let sandbox = start(1.0).await;
    let expected = ["NOT_PAID", "pending", "pending", "active"];
    for (provider, initial) in PROVIDERS.into_iter().zip(expected) {
        let id = create(
            &sandbox,
            json!({"provider": provider, "timeline": [{"after_ms": 3_600_000, "status": "whatever"}]}),
        )
        .await;
        assert_eq!(
            fetch(&sandbox, provider, &id).await["status"],
            initial,
            "{provider}"
        );
    }
}
