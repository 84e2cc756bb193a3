//! Providers declared in files (deploy/providers/): the submit door accepts one once a check
//! worker serving it has published it, and refuses it before, naming the field.

use std::time::{Duration, Instant};

use paywatch_core::store::{FieldError, ShardKeys};
use paywatch_tests::stack::Stack;
use serde_json::json;

/// Upper bound for anything these tests wait on.
const WAIT_LIMIT: Duration = Duration::from_secs(20);

/// The example definitions shipped with paywatch.
fn providers_dir() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/providers").to_owned()
}

async fn fcall(
    conn: &mut redis::aio::MultiplexedConnection,
    key: &str,
    body: &str,
) -> Result<Vec<String>, redis::RedisError> {
    redis::cmd("FCALL")
        .arg("paywatch_submit")
        .arg(1)
        .arg(key)
        .arg(body)
        .query_async(conn)
        .await
}

#[tokio::test]
async fn the_door_accepts_a_declared_provider_once_a_checker_serves_it() {
    let stack = Stack::start("declared-door").await;
    let keys = ShardKeys::new(&stack.prefix, 0);
    let mut conn = redis::Client::open(stack.redis.as_str())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let order = |id: &str, provider: &str| {
        json!({"order_id": id, "provider": provider, "payment_id": "ch-1"}).to_string()
    };

    // No worker serves paylink yet: refused, naming the field, listing the built-ins.
    let err = fcall(&mut conn, &keys.base, &order("d-0", "paylink"))
        .await
        .expect_err("no worker serves paylink");
    let verdict = FieldError::from_reply(&err).expect("verdict");
    assert_eq!(verdict.field, "provider");
    assert_eq!(
        verdict.message,
        "must be one of cashless, handcash, miraclecash, foxreload"
    );

    // A check worker with the definitions publishes the ones it serves at start-up.
    let mut args = stack.worker_args(0.01);
    args.extend(["--providers-dir".to_owned(), providers_dir()]);
    let worker = stack.worker(&args).await;
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        let published: bool = redis::cmd("HEXISTS")
            .arg(&keys.meta)
            .arg("provider:paylink")
            .query_async(&mut conn)
            .await
            .expect("HEXISTS");
        if published {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the worker never published paylink"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Both doors take it now.
    let reply = fcall(&mut conn, &keys.base, &order("d-1", "paylink"))
        .await
        .expect("FCALL accepts paylink");
    assert_eq!(reply[0], "created");
    let (status, body) = stack
        .submit(&json!({"order_id": "d-2", "provider": "paylink", "payment_id": "ch-2"}))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["provider"], "paylink", "{body}");

    // An unknown provider's refusal lists the declared ones too.
    let err = fcall(&mut conn, &keys.base, &order("d-3", "paypal"))
        .await
        .expect_err("paypal is nobody's");
    let verdict = FieldError::from_reply(&err).expect("verdict");
    assert_eq!(
        verdict.message,
        "must be one of cashless, handcash, miraclecash, foxreload, cashless-file, miraclecash-file, paylink"
    );
    worker.stop().await;
    stack.finish().await;
}
