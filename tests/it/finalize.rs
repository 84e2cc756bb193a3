//! The one-call final record (`FCALL paywatch_finalize_notify`, what a check worker on one Redis
//! sends for a final answer): the record, its poll-history count and its notification jobs are
//! written together and once, on a real Redis.

use chrono::Utc;
use paywatch_core::store::{CheckState, FinalJob, Finalized, OrderStore, StoredOrder, Submitted};
use paywatch_core::{OrderId, PaymentStatus, PollPolicies, PollState};
use paywatch_queue::{EnqueueOutcome, JobId, Keys, NewJob, QueueConfig, RedisConn, RedisQueue};
use paywatch_tests::{cleanup, redis_url, unique_prefix};
use redis::AsyncCommands;
use serde_json::json;

/// A prepared store under `prefix` and a plain connection for looking at what it wrote.
async fn store(prefix: &str) -> (OrderStore, redis::aio::ConnectionManager) {
    let client = redis::Client::open(redis_url()).expect("REDIS_URL parses");
    let conn = redis::aio::ConnectionManager::new(client)
        .await
        .expect("the test Redis answers");
    let store = OrderStore::new(RedisConn::Single(conn.clone()), prefix, 1);
    store.prepare().await.expect("prepare");
    (store, conn)
}

/// Submits order `id` and returns its record as a check worker holds it.
async fn pending(
    store: &OrderStore,
    conn: &mut redis::aio::ConnectionManager,
    id: &str,
) -> StoredOrder {
    let body = json!({
        "order_id": id, "provider": "cashless", "payment_id": format!("bill-{id}"),
        "notify": {"email": "buyer@example.com", "webhook_url": "https://shop.example/hooks"}
    });
    let submitted = store
        .submit_json(body.to_string().as_bytes())
        .await
        .expect("submit");
    assert_eq!(submitted, Submitted::Created);
    let raw: String = conn
        .hget(format!("{}:jobs", store.keys(0).base), id)
        .await
        .expect("the check job's record");
    StoredOrder::from_json(&raw).expect("a stored record")
}

/// `record` with a final `status` observed `offset_ms` from now.
fn finalized(mut record: StoredOrder, status: PaymentStatus, offset_ms: i64) -> StoredOrder {
    let policy = PollPolicies::default().for_provider(record.provider);
    let mut state = CheckState::new(PollState::new(&policy, record.created_at()));
    state.status = status;
    state.final_at = Some(Utc::now() + chrono::Duration::milliseconds(offset_ms));
    record.state = Some(state);
    record
}

#[tokio::test]
async fn the_record_its_history_count_and_its_jobs_are_written_once() {
    let prefix = unique_prefix("finalize-once");
    let (store, mut conn) = store(&prefix).await;
    let order = OrderId::new("order-1").expect("id");
    let record = finalized(
        pending(&store, &mut conn, "order-1").await,
        PaymentStatus::Paid,
        0,
    );
    let (email, webhook) = (
        Keys::new(&prefix, "notify-email"),
        Keys::new(&prefix, "notify-webhook"),
    );
    let history = format!("{prefix}:final-times:cashless");
    let jobs = [
        FinalJob {
            queue: &email,
            id: "order-1:paid:email",
            payload: r#"{"to":"email"}"#,
        },
        FinalJob {
            queue: &webhook,
            id: "order-1:paid:webhook",
            payload: r#"{"to":"webhook"}"#,
        },
    ];
    let done = store
        .finalize_notify(&order, &record, (&history, "paid:12"), &jobs)
        .await
        .expect("finalize");
    assert!(
        matches!(&done, Finalized::Written(o) if o == &[EnqueueOutcome::Created, EnqueueOutcome::Created]),
        "{done:?}"
    );
    let base = store.keys(0).base;
    let stored: String = conn
        .hget(format!("{base}:orders"), "order-1")
        .await
        .expect("final record");
    assert_eq!(stored, record.to_json().expect("json"));
    let index: Option<String> = conn
        .hget(format!("{base}:payments"), "cashless:bill-order-1")
        .await
        .expect("index");
    assert_eq!(index, None, "a final order leaves the webhook index");
    let count: i64 = conn.hget(&history, "paid:12").await.expect("history");
    assert_eq!(count, 1);
    for (keys, job) in [(&email, &jobs[0]), (&webhook, &jobs[1])] {
        let payload: String = conn.hget(&keys.jobs, job.id).await.expect("job record");
        assert_eq!(payload, job.payload);
        let due: Option<f64> = conn.zscore(&keys.due, job.id).await.expect("due");
        assert!(due.is_some(), "{} is due", job.id);
        let signals: i64 = conn.llen(&keys.signal).await.expect("signal");
        assert_eq!(signals, 1, "idle notifiers are woken");
    }

    // The same call again (a reply lost, the call sent once more): the record holds, nothing is
    // counted or enqueued twice.
    let again = store
        .finalize_notify(&order, &record, (&history, "paid:12"), &jobs)
        .await
        .expect("finalize again");
    assert!(
        matches!(&again, Finalized::Held(r) if **r == record),
        "{again:?}"
    );
    let count: i64 = conn.hget(&history, "paid:12").await.expect("history");
    assert_eq!(count, 1);

    // Another run's later answer: the first record holds and is returned.
    let later = finalized(record.clone(), PaymentStatus::Failed, 5_000);
    let other = store
        .finalize_notify(&order, &later, (&history, "failed:12"), &jobs[..1])
        .await
        .expect("finalize a later answer");
    assert!(
        matches!(&other, Finalized::Held(r) if **r == record),
        "{other:?}"
    );
    let failed: Option<i64> = conn.hget(&history, "failed:12").await.expect("history");
    assert_eq!(failed, None);
    cleanup(&redis_url(), &prefix).await;
}

#[tokio::test]
async fn a_record_written_by_finalize_holds_and_nothing_else_is_written() {
    let prefix = unique_prefix("finalize-first");
    let (store, mut conn) = store(&prefix).await;
    let order = OrderId::new("order-2").expect("id");
    let first = finalized(
        pending(&store, &mut conn, "order-2").await,
        PaymentStatus::Paid,
        0,
    );
    let holds = store.finalize(&order, &first).await.expect("finalize");
    assert_eq!(holds, first);
    let email = Keys::new(&prefix, "notify-email");
    let history = format!("{prefix}:final-times:cashless");
    let second = finalized(first.clone(), PaymentStatus::Paid, 1_000);
    let job = FinalJob {
        queue: &email,
        id: "order-2:paid:email",
        payload: "{}",
    };
    let done = store
        .finalize_notify(&order, &second, (&history, "paid:3"), &[job])
        .await
        .expect("finalize_notify");
    assert!(
        matches!(&done, Finalized::Held(r) if **r == first),
        "{done:?}"
    );
    let exists: bool = conn.exists(&history).await.expect("exists");
    assert!(!exists, "no history counted");
    let exists: bool = conn.exists(&email.jobs).await.expect("exists");
    assert!(!exists, "no job enqueued");
    cleanup(&redis_url(), &prefix).await;
}

#[tokio::test]
async fn notification_jobs_follow_the_queues_rule_for_ids_already_taken() {
    let prefix = unique_prefix("finalize-taken");
    let (store, mut conn) = store(&prefix).await;
    let order = OrderId::new("order-3").expect("id");
    let record = finalized(
        pending(&store, &mut conn, "order-3").await,
        PaymentStatus::Paid,
        0,
    );
    let queue: RedisQueue<serde_json::Value> = RedisQueue::connect(
        &redis_url(),
        QueueConfig::new("notify-email").with_prefix(&prefix),
    )
    .await
    .expect("queue");
    for (id, payload) in [("same", json!({"a": 1})), ("other", json!({"a": 2}))] {
        let (_, outcome) = queue
            .enqueue(NewJob::new(payload).with_id(JobId::new(id).expect("id")))
            .await
            .expect("enqueue");
        assert_eq!(outcome, EnqueueOutcome::Created);
    }
    let keys = queue.keys().clone();
    let history = format!("{prefix}:final-times:cashless");
    let jobs = [
        FinalJob {
            queue: &keys,
            id: "same",
            payload: r#"{"a":1}"#,
        },
        FinalJob {
            queue: &keys,
            id: "other",
            payload: r#"{"a":1}"#,
        },
        FinalJob {
            queue: &keys,
            id: "new",
            payload: r#"{"a":3}"#,
        },
    ];
    let done = store
        .finalize_notify(&order, &record, (&history, "paid:1"), &jobs)
        .await
        .expect("finalize_notify");
    let Finalized::Written(outcomes) = done else {
        panic!("the record is written: {done:?}");
    };
    assert_eq!(
        outcomes,
        [
            EnqueueOutcome::Duplicate,
            EnqueueOutcome::Conflict,
            EnqueueOutcome::Created
        ]
    );
    let other: String = conn.hget(&keys.jobs, "other").await.expect("job");
    assert_eq!(other, r#"{"a":2}"#, "a taken id keeps its job");
    cleanup(&redis_url(), &prefix).await;
}
