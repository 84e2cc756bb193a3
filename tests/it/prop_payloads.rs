//! Property tests of job payload decoding against a real Redis: whatever bytes sit in a job's
//! payload (garbage, JSON of the wrong shape, orders with invalid ids, valid orders), a worker
//! decodes it into the handler or dead-letters it with a classified decode error, and keeps
//! running. Every case is a batch of jobs on its own queue, so few cases cover many payloads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apalis::prelude::*;
use paywatch_core::OrderSpec;
use paywatch_queue::{JobId, JobInfo, QueueConfig, RedisQueue, Schedule};
use paywatch_tests::{cleanup, redis_url, unique_prefix, wait_for};
use proptest::prelude::*;
// apalis's prelude has a `Strategy` too; this one is proptest's.
use proptest::strategy::Strategy;
use serde_json::{Value, json};

fn payload() -> impl Strategy<Value = String> {
    let id = prop_oneof!["[a-zA-Z0-9_-]{1,20}", any::<String>(), Just(String::new())];
    let provider = prop_oneof![
        prop::sample::select(vec!["cashless", "handcash", "miraclecash", "foxreload"])
            .prop_map(str::to_owned),
        any::<String>(),
    ];
    let order = (
        id.clone(),
        provider,
        id,
        prop::option::of(any::<i64>()),
        prop::option::of(any::<String>()),
    )
        .prop_map(|(order_id, provider, payment_id, chat, email)| {
            json!({
                "order_id": order_id,
                "provider": provider,
                "payment_id": payment_id,
                "notify": {"telegram_chat_id": chat, "email": email},
            })
            .to_string()
        });
    prop_oneof![
        3 => order,
        1 => any::<String>(),
        1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        1 => prop::sample::select(vec!["", "null", "[]", "{}", "0", "\"x\"", "{\"order_id\":", "{\"order_id\":\"a\",\"provider\":\"cashless\",\"payment_id\":\"b\",\"extra\":1}"])
            .prop_map(str::to_owned),
        1 => any::<f64>().prop_map(|f| json!(f).to_string()),
    ]
}

#[derive(Clone, Default)]
struct Handled(Arc<Mutex<HashMap<String, OrderSpec>>>);

async fn handle(spec: OrderSpec, info: JobInfo, handled: Data<Handled>) {
    let handled: &Handled = &handled;
    handled
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(info.id.to_string(), spec);
}

async fn run_batch(payloads: Vec<String>) -> Result<(), TestCaseError> {
    let url = redis_url();
    let prefix = unique_prefix("prop-payloads");
    let queue: RedisQueue<OrderSpec> = RedisQueue::connect(
        &url,
        QueueConfig::new("check-payment")
            .with_prefix(&prefix)
            .with_batch_size(16),
    )
    .await
    .expect("connect");
    let jobs: Vec<(JobId, String, Schedule)> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| {
            (
                JobId::new(format!("job-{i}")).expect("id"),
                p.clone(),
                Schedule::Now,
            )
        })
        .collect();
    queue.enqueue_raw(&jobs).await.expect("enqueue");
    let handled = Handled::default();
    let worker = WorkerBuilder::new(prefix.clone())
        .backend(queue.clone())
        .data(handled.clone())
        .build(handle);
    let running = tokio::spawn(worker.run());

    let expected_ok: Vec<bool> = payloads
        .iter()
        .map(|p| serde_json::from_str::<OrderSpec>(p).is_ok())
        .collect();
    let want_dead = expected_ok.iter().filter(|ok| !**ok).count();
    let want_handled = payloads.len() - want_dead;
    let dead = wait_for(
        "every job handled or dead-lettered",
        Duration::from_secs(20),
        || {
            let queue = queue.clone();
            let handled = handled.0.lock().unwrap_or_else(|e| e.into_inner()).len();
            async move {
                let dead = queue.dead_letters(1000).await.ok()?;
                (handled == want_handled && dead.len() == want_dead).then_some(dead)
            }
        },
    )
    .await;
    let still_running = !running.is_finished();
    running.abort();
    cleanup(&url, &prefix).await;

    prop_assert!(still_running, "a payload stopped the worker");
    let dead: HashMap<String, _> = dead.into_iter().map(|d| (d.id.clone(), d)).collect();
    for (i, ok) in expected_ok.iter().enumerate() {
        let id = format!("job-{i}");
        if *ok {
            prop_assert!(
                !dead.contains_key(&id),
                "{id} decodes but was dead-lettered"
            );
        } else {
            let letter = dead.get(&id).expect("undecodable job dead-lettered");
            prop_assert!(
                letter.error.contains("payload does not decode"),
                "{}",
                letter.error
            );
            prop_assert_eq!(&letter.payload, &payloads[i]);
        }
    }
    Ok(())
}

proptest! {
    // Each case runs a worker on Redis: few cases, many payloads per case.
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn any_payload_is_decoded_or_dead_lettered_with_a_decode_error(
        payloads in prop::collection::vec(payload(), 1..24),
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(run_batch(payloads))?;
    }

    /// Job ids come from outside too (order ids): any string is a valid id or a classified error.
    #[test]
    fn any_job_id_is_valid_or_a_classified_error(id in any::<String>()) {
        match JobId::new(id.clone()) {
            Ok(job) => {
                prop_assert_eq!(job.as_str(), id.as_str());
                prop_assert!(!id.is_empty() && id.len() <= paywatch_queue::MAX_JOB_ID_LEN);
            }
            Err(e) => prop_assert!(matches!(e, paywatch_queue::QueueError::InvalidJobId(_))),
        }
    }
}

#[tokio::test]
async fn a_corrupt_dead_letter_record_is_an_error_not_a_panic() {
    let url = redis_url();
    let prefix = unique_prefix("corrupt-dead");
    let queue: RedisQueue<Value> =
        RedisQueue::connect(&url, QueueConfig::new("jobs").with_prefix(&prefix))
            .await
            .expect("connect");
    let keys = queue.keys().clone();
    let client = redis::Client::open(url.as_str()).expect("url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    for (i, garbage) in ["{not json", "", "[]", "{\"payload\": 1}"]
        .iter()
        .enumerate()
    {
        let id = format!("bad-{i}");
        let _: () = redis::pipe()
            .hset(&keys.dead, &id, *garbage)
            .zadd(&keys.dead_index, &id, i as i64)
            .query_async(&mut conn)
            .await
            .expect("write a corrupt record");
    }
    // Whatever it answers, it must answer: a result, not a panic in the caller.
    let listed = queue.dead_letters(10).await;
    if let Err(e) = &listed {
        assert!(!e.to_string().is_empty());
    }
    cleanup(&url, &prefix).await;
}
