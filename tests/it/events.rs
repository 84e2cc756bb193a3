//! The events stream's signed links, over real HTTP: every refusal is `{"error","field"}` JSON
//! naming what is wrong (repeated, unknown or malformed parameters, a tampered or moved link), a
//! browser holding a link sees status, phase and times but no notify targets or metadata, and —
//! on the real `paywatch-producer serve` binary with its real environment — links expire at the
//! configured time and one order's streams are capped, while bad link settings stop it at start.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use eventsource_stream::Eventsource;
use futures::StreamExt;
use paywatch_tests::stack::{API_TOKEN, EVENTS_SECRET, Stack};
use paywatch_tests::{cleanup, free_port, redis_url, unique_prefix, wait_for};
use serde_json::{Value, json};

/// `paywatch-producer`, as operators run it.
fn producer_binary() -> PathBuf {
    paywatch_tests::product_binaries().join("paywatch-producer")
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Status, content type and JSON body of a GET without a token.
async fn get(url: &str) -> (u16, String, Value) {
    let response = reqwest::get(url).await.expect("get");
    let code = response.status().as_u16();
    let kind = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or_else(|_| json!({"not json": text}));
    (code, kind, body)
}

/// `exp` and `sig` of a `links.events` link.
fn exp_and_sig(link: &str) -> (u64, String) {
    let (_, query) = link.split_once('?').expect("a query");
    let (exp, sig) = query
        .strip_prefix("exp=")
        .and_then(|q| q.split_once("&sig="))
        .unwrap_or_else(|| panic!("exp=…&sig=… in {link}"));
    (exp.parse().expect("exp in seconds"), sig.to_string())
}

/// Each malformed request gets JSON naming the field: before, a repeated `sig` got axum's
/// plain-text 400.
#[tokio::test]
async fn every_refusal_of_the_events_stream_is_json_naming_the_field() {
    let stack = Stack::start("events-refusals").await;
    let (code, reply) = stack
        .submit(&json!({"order_id": "ev-1", "provider": "cashless", "payment_id": "bill-1"}))
        .await;
    assert_eq!(code, 202);
    let link = reply["links"]["events"].as_str().expect("link").to_string();
    assert!(link.starts_with("/v1/orders/ev-1/events?exp="), "{link}");
    let (exp, sig) = exp_and_sig(&link);
    let base = format!("{}/v1/orders/ev-1/events", stack.api);
    let cases: Vec<(String, u16, &str)> = vec![
        (format!("{base}?exp={exp}&sig={sig}&sig={sig}"), 400, "sig"),
        (format!("{base}?exp={exp}&exp={exp}&sig={sig}"), 400, "exp"),
        (format!("{base}?exp={exp}&sig={sig}&utm=x"), 400, "utm"),
        (format!("{base}?exp=soon&sig={sig}"), 400, "exp"),
        (format!("{base}?exp=-1&sig={sig}"), 400, "exp"),
        (format!("{base}?sig={sig}"), 401, "exp"),
        (format!("{base}?exp={exp}&sig=x{sig}"), 401, "sig"),
        // The expiry is inside the signature: moving it breaks the link.
        (format!("{base}?exp={}&sig={sig}", exp + 3600), 401, "sig"),
        // Another order's link does not open this one.
        (
            format!("{}/v1/orders/ev-2/events?exp={exp}&sig={sig}", stack.api),
            401,
            "sig",
        ),
        (base.clone(), 401, "authorization"),
        (
            format!("{}/v1/orders/%FF/events?exp={exp}&sig={sig}", stack.api),
            400,
            "order_id",
        ),
    ];
    for (url, want, field) in cases {
        let (code, kind, body) = get(&url).await;
        assert_eq!(code, want, "{url}: {body}");
        assert!(kind.starts_with("application/json"), "{url}: {kind} {body}");
        assert_eq!(body["field"], json!(field), "{url}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{url}: {body}"
        );
        assert!(
            !body.to_string().contains(&sig),
            "no signature echoed: {body}"
        );
    }
    // The link itself still works.
    let response = reqwest::get(format!("{}{link}", stack.api))
        .await
        .expect("get");
    assert_eq!(response.status().as_u16(), 200);
    stack.finish().await;
}

/// A buyer's browser is shown where the payment stands and when; the shop's token still sees
/// everything.
#[tokio::test]
async fn a_browser_sees_status_and_times_but_no_targets_or_metadata() {
    let stack = Stack::start("events-browser-view").await;
    let order = json!({
        "order_id": "ev-view", "provider": "cashless", "payment_id": "bill-view",
        "notify": {"email": "buyer-ev@example.com", "telegram_chat_id": 987654321,
                   "webhook_url": "https://shop.example/hooks/ev-secret-path"},
        "metadata": {"customer": "cust-4242"}
    });
    let (code, reply) = stack.submit(&order).await;
    assert_eq!(code, 202);
    let link = reply["links"]["events"].as_str().expect("link").to_string();
    let first = |response: reqwest::Response| async move {
        let mut events = response.bytes_stream().eventsource();
        let event = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("the first event comes at once")
            .expect("an event")
            .expect("a readable event");
        assert_eq!(event.event, "status");
        (
            event.data.clone(),
            serde_json::from_str::<Value>(&event.data).expect("json"),
        )
    };
    let (text, view) = first(
        reqwest::get(format!("{}{link}", stack.api))
            .await
            .expect("get"),
    )
    .await;
    let keys: Vec<&str> = view
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    let mut keys = keys;
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "created_at",
            "next_check_at",
            "order_id",
            "phase",
            "status",
            "stopped_at",
            "terminal_at",
            "watching"
        ],
        "{view}"
    );
    assert_eq!(view["status"], "pending");
    assert_eq!(view["phase"], "watching");
    for private in [
        "buyer-ev",
        "987654321",
        "ev-secret-path",
        "cust-4242",
        "bill-view",
    ] {
        assert!(
            !text.contains(private),
            "{private} shown to a browser: {text}"
        );
    }
    // With the token: the shop's full view, targets and metadata included.
    let (_, full) = first(
        stack
            .http
            .get(format!("{}/v1/orders/ev-view/events", stack.api))
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(full["notify"]["email"], "buyer-ev@example.com", "{full}");
    assert_eq!(full["metadata"]["customer"], "cust-4242", "{full}");
    stack.finish().await;
}

/// The producer binary, as operators run it, on a free port with `env`; killed when dropped.
struct Producer {
    child: tokio::process::Child,
    api: String,
}

impl Producer {
    async fn start(prefix: &str, env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let mut child = tokio::process::Command::new(producer_binary())
            .arg("serve")
            .env_clear()
            .env("REDIS_URL", redis_url())
            .env("PAYWATCH_PREFIX", prefix)
            .env("PAYWATCH_PRODUCER_LISTEN", format!("127.0.0.1:{port}"))
            .env("PAYWATCH_API_TOKENS", API_TOKEN)
            .env("PAYWATCH_EVENTS_SECRET", EVENTS_SECRET)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn paywatch-producer");
        let api = format!("http://127.0.0.1:{port}");
        let health = format!("{api}/healthz");
        wait_for("the producer to listen", Duration::from_secs(30), || {
            let exited = child.try_wait().ok().flatten();
            let health = health.clone();
            async move {
                assert!(exited.is_none(), "the producer exited: {exited:?}");
                reqwest::get(&health)
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
            }
        })
        .await;
        Self { child, api }
    }
}

/// Opens a link; the response (its first event not yet read).
async fn open(url: &str) -> reqwest::Response {
    reqwest::get(url).await.expect("get")
}

/// On the real binary: `PAYWATCH_EVENTS_LINK_TTL` puts the expiry in the link, an open stream
/// says `expired` and ends at that time, the link then gets 403 naming `exp`; and
/// `PAYWATCH_EVENTS_STREAMS_PER_ORDER` caps one order's streams with a 429 while other orders
/// still open theirs.
#[tokio::test]
async fn links_expire_and_streams_are_capped_per_order_as_configured() {
    let prefix = unique_prefix("events-binary");
    let mut producer = Producer::start(
        &prefix,
        &[
            ("PAYWATCH_EVENTS_LINK_TTL", "4s"),
            ("PAYWATCH_EVENTS_STREAMS_PER_ORDER", "2"),
        ],
    )
    .await;
    let http = paywatch_tests::stack::authorized_client();
    let mut links = Vec::new();
    for id in ["cap-1", "cap-2"] {
        let before = unix_now();
        let reply: Value = http
            .post(format!("{}/v1/orders", producer.api))
            .json(&json!({"order_id": id, "provider": "cashless", "payment_id": id}))
            .send()
            .await
            .expect("submit")
            .json()
            .await
            .expect("reply");
        let link = format!(
            "{}{}",
            producer.api,
            reply["links"]["events"].as_str().expect("link")
        );
        let (exp, _) = exp_and_sig(&link);
        let after = unix_now();
        assert!(
            (before + 4..=after + 4).contains(&exp),
            "exp {exp}: 4 s after {before}"
        );
        links.push(link);
    }
    // Two streams of cap-1 are allowed, the third is not; cap-2 is not affected.
    let first = open(&links[0]).await;
    let second = open(&links[0]).await;
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    let (code, kind, body) = get(&links[0]).await;
    assert_eq!(code, 429, "{body}");
    assert!(kind.starts_with("application/json"), "{kind}");
    assert_eq!(body["field"], "order_id", "{body}");
    let other = open(&links[1]).await;
    assert_eq!(other.status().as_u16(), 200);
    // Closing one frees its place.
    drop(second);
    let third = wait_for("a freed stream place", Duration::from_secs(10), || async {
        let response = open(&links[0]).await;
        (response.status().as_u16() == 200).then_some(response)
    })
    .await;
    // An open stream ends with `expired` when its link does.
    let events: Vec<(String, String)> = tokio::time::timeout(
        Duration::from_secs(20),
        first
            .bytes_stream()
            .eventsource()
            .map(|e| {
                let e = e.expect("event");
                (e.event, e.data)
            })
            .collect(),
    )
    .await
    .expect("the stream ends when its link expires");
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["status", "expired"], "{events:?}");
    let expired: Value = serde_json::from_str(&events[1].1).expect("json");
    assert_eq!(expired["field"], "exp", "{expired}");
    // And the link is refused from then on (by the clock: the stream ended at exp).
    let (code, kind, body) = get(&links[0]).await;
    assert_eq!(code, 403, "{body}");
    assert!(kind.starts_with("application/json"), "{kind}");
    assert_eq!(body["field"], "exp", "{body}");
    drop((third, other));
    let _ = producer.child.kill().await;
    cleanup(&redis_url(), &prefix).await;
}

/// Bad link settings stop the producer at start-up, naming the setting, before it writes
/// anything to Redis.
#[tokio::test]
async fn bad_link_settings_stop_the_producer_at_start() {
    let prefix = unique_prefix("events-settings");
    for (variable, value) in [
        ("PAYWATCH_EVENTS_LINK_TTL", "0s"),
        ("PAYWATCH_EVENTS_LINK_TTL", "31d"),
        ("PAYWATCH_EVENTS_LINK_TTL", "forever"),
        ("PAYWATCH_EVENTS_STREAMS_PER_ORDER", "0"),
        ("PAYWATCH_EVENTS_STREAMS_PER_ORDER", "101"),
    ] {
        let output = tokio::process::Command::new(producer_binary())
            .arg("serve")
            .env_clear()
            .env("REDIS_URL", redis_url())
            .env("PAYWATCH_PREFIX", &prefix)
            .env(
                "PAYWATCH_PRODUCER_LISTEN",
                format!("127.0.0.1:{}", free_port()),
            )
            .env("PAYWATCH_API_TOKENS", API_TOKEN)
            .env("PAYWATCH_EVENTS_SECRET", EVENTS_SECRET)
            .env(variable, value)
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(Duration::from_secs(30), output)
            .await
            .expect("it exits")
            .expect("run paywatch-producer");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{variable}={value} started");
        assert!(
            stderr.contains(&format!("{variable}: ")),
            "{variable}={value}: {stderr}"
        );
    }
    let mut conn = redis::Client::open(redis_url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .expect("keys");
    assert!(keys.is_empty(), "{keys:?}");
}
