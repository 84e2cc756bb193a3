//! One prepared order shard of a test's own on the shared Redis, for tests that call the
//! function library directly, the way clients in other languages do.

use paywatch_core::store::{OrderStore, ShardKeys};
use serde_json::Value;

use crate::{cleanup, redis_url, unique_prefix};

/// A shard under a prefix of the test's own, prepared (library loaded, shard count set), and
/// deleted when dropped, also when the test fails.
#[derive(Debug)]
pub struct PreparedShard {
    prefix: String,
    runtime: tokio::runtime::Runtime,
}

impl PreparedShard {
    /// A prepared shard for `test`.
    pub fn new(test: &str) -> Self {
        Self::prepare(test, None)
    }

    /// A prepared shard for `test` in which a webhook notifier published `allow` (the text of
    /// `paywatch_core::ip_ranges::publish_text`).
    pub fn with_webhook_allow(test: &str, allow: String) -> Self {
        Self::prepare(test, Some(allow))
    }

    fn prepare(test: &str, allow: Option<String>) -> Self {
        let prefix = unique_prefix(test);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let client = redis::Client::open(redis_url()).expect("REDIS_URL parses");
            let conn = paywatch_queue::RedisConn::Single(
                redis::aio::ConnectionManager::new(client)
                    .await
                    .expect("the test Redis answers"),
            );
            let mut store = OrderStore::new(conn, prefix.clone(), 1);
            if let Some(allow) = allow {
                store = store.with_webhook_allow(allow);
            }
            store.prepare().await.expect("prepare");
        });
        Self { prefix, runtime }
    }

    /// The shard's keys.
    pub fn keys(&self) -> ShardKeys {
        ShardKeys::new(&self.prefix, 0)
    }

    /// `FCALL paywatch_submit` of `body`: the reply, or the error as Redis words it.
    pub fn submit(&self, conn: &mut redis::Connection, body: &str) -> Result<Vec<String>, String> {
        redis::cmd("FCALL")
            .arg("paywatch_submit")
            .arg(1)
            .arg(&self.keys().base)
            .arg(body)
            .query::<Vec<String>>(conn)
            .map_err(|e| e.to_string())
    }

    /// The stored record without its creation time (the one part two submissions differ in).
    pub fn record(&self, conn: &mut redis::Connection, order_id: &str) -> Value {
        let raw: String = redis::cmd("HGET")
            .arg(format!("{}:jobs", self.keys().base))
            .arg(order_id)
            .query(conn)
            .expect("a pending order has a record");
        let mut record: Value = serde_json::from_str(&raw).expect("records are JSON");
        record[5] = Value::Null;
        record
    }
}

impl Drop for PreparedShard {
    fn drop(&mut self) {
        self.runtime.block_on(cleanup(&redis_url(), &self.prefix));
    }
}

/// A blocking connection to the shared test Redis.
pub fn connection() -> redis::Connection {
    redis::Client::open(redis_url())
        .expect("REDIS_URL parses")
        .get_connection()
        .expect("the test Redis answers")
}
