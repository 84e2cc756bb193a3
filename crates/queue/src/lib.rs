//! paywatch-queue: paywatch's own Redis storage backend for [apalis].
//!
//! A queue handle ([`RedisQueue`]) is what producers enqueue through and what a worker uses as
//! its apalis backend:
//!
//! ```no_run
//! # use paywatch_queue::{RedisQueue, QueueConfig, Next};
//! # use apalis_core::worker::builder::WorkerBuilder;
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let queue: RedisQueue<String> =
//!     RedisQueue::connect("redis://127.0.0.1:6379", QueueConfig::new("greetings")).await?;
//! queue.push("hello".to_string()).await?;
//! async fn handle(name: String) -> Result<Next<String>, std::io::Error> {
//!     println!("hello, {name}");
//!     Ok(Next::Done)
//! }
//! WorkerBuilder::new("greeter").backend(queue).build(handle).run().await?;
//! # Ok(()) }
//! ```
//!
//! # Design
//!
//! Each queue's keys share one `{hash tag}` (see [`Keys`]), so a queue lives in one Redis
//! Cluster slot and every operation is one atomic, bounded Lua script:
//!
//! - `jobs` (HASH id → JSON payload) is the one record per job.
//! - `due` (ZSET id → due time in **milliseconds**) holds ready and delayed jobs alike; a job is
//!   ready when its score is at most the Redis server's `TIME`, so worker clock skew cannot fire a
//!   job early.
//! - `leases` (ZSET id → lease expiry ms) + `tokens` (HASH id → lease token) are the visibility
//!   timeout. Every fetch first hands expired leases back to `due`, so a crashed worker's jobs
//!   are re-run by whoever fetches next, whatever its name. Settling a job requires the token it
//!   was leased with, so a worker that lost its lease cannot settle another worker's run.
//! - `attempts`, `errors` (HASH id → …) exist only for jobs that ran.
//! - `dead` (HASH id → record with payload, attempts, last error, time) + `dead_index` (ZSET by
//!   time) are the dead letters.
//! - `signal` (LIST, at most 64 entries) wakes idle workers; `stats` keeps lifetime counters;
//!   `seq` generates ids; `done` (ZSET) remembers completed ids when configured; `promoted`
//!   (HASH) marks running jobs to re-run right after their run, not before a time.
//!
//! Every range in every script has a `LIMIT`; nothing unpacks an unbounded list. Retry policy
//! ([`RetryPolicy`]) lives in Rust. `docs/queue.md` has the whole story.
//!
//! [`metrics`] names every metric the queue exports (throughput per outcome, depth per state,
//! seconds until the next due job, lateness, Redis health); [`RedisQueue::depth`] reads the depth
//! the gauges publish. `docs/metrics.md` is the catalogue.
//!
//! # Modules
//!
//! `queue` is the public handle; `shared` the per-process hub every other part meets at, so no
//! module reaches into another's internals and there are no module cycles (only `backend`, which
//! implements apalis' backend for the handle, depends on `queue`). A worker's side:
//! `backend` (the apalis backend) → `fetch` (leasing, with `wake` for idle waits) →
//! `middleware` (settles each run) → `settle` (what a result means) → `settler` (batched writes)
//! and `lease` (extension and release). `backoff` paces every reconnect loop.
//!
//! [apalis]: https://docs.rs/apalis

mod backend;
mod backoff;
mod config;
pub mod conn;
mod depth;
mod error;
mod fetch;
mod job;
pub mod keys;
mod lease;
pub mod metrics;
mod middleware;
mod outcome;
mod queue;
mod scripts;
mod settle;
mod settler;
mod shared;
mod wake;

pub use config::{DurableSettles, MAX_BATCH, QueueConfig, RetryPolicy};
pub use conn::{RedisConn, RedisEndpoint, UrlError, is_transient, until_ready};
pub use depth::{QueueDepth, export_depth, record_depth};
pub use error::QueueError;
pub use job::{EnqueueOutcome, JobId, JobInfo, MAX_JOB_ID_LEN, MissingJobInfo, Schedule};
pub use keys::Keys;
pub use middleware::{SettleLayer, SettleService};
pub use outcome::{JobOutcome, Next, Settlement};
pub use queue::{DeadCursor, DeadLetter, NewJob, Promoted, QueueStats, RedisQueue};
pub use scripts::{JOB_WRITES_LUA, script_names};
