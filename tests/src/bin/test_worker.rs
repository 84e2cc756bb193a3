//! A worker process for the crash tests: they `kill -9` it at awkward moments.

use std::time::Duration;

use apalis::prelude::*;
use clap::{Parser, ValueEnum};
use paywatch_queue::{JobInfo, Next, QueueConfig, RedisQueue};
use paywatch_tests::{Marks, TestJob, marks};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
    /// Record the start, then never finish.
    Hang,
    /// Work `--work-ms`, then record completion.
    Slow,
    /// Reschedule the job until its step reaches `max`.
    Reschedule,
}

#[derive(Debug, Parser)]
struct Args {
    #[arg(long)]
    redis: String,
    #[arg(long)]
    prefix: String,
    #[arg(long, default_value = "jobs")]
    queue: String,
    #[arg(long, value_enum)]
    mode: Mode,
    #[arg(long, default_value_t = 2000)]
    lease_ms: u64,
    #[arg(long, default_value_t = 100)]
    work_ms: u64,
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
}

#[derive(Clone)]
struct Ctx {
    conn: redis::aio::ConnectionManager,
    marks: Marks,
    mode: Mode,
    work: Duration,
}

async fn handle(job: TestJob, info: JobInfo, ctx: Data<Ctx>) -> Result<Next<TestJob>, BoxDynError> {
    let mut conn = ctx.conn.clone();
    let id = info.id.to_string();
    match ctx.mode {
        Mode::Hang => {
            let _: () = redis::cmd("SADD")
                .arg(&ctx.marks.started)
                .arg(&id)
                .query_async(&mut conn)
                .await?;
            std::future::pending::<()>().await;
            Ok(Next::Done)
        }
        Mode::Slow => {
            let _: () = redis::cmd("SADD")
                .arg(&ctx.marks.started)
                .arg(&id)
                .query_async(&mut conn)
                .await?;
            tokio::time::sleep(ctx.work).await;
            let _: () = redis::cmd("RPUSH")
                .arg(&ctx.marks.done)
                .arg(&id)
                .query_async(&mut conn)
                .await?;
            Ok(Next::Done)
        }
        Mode::Reschedule => {
            let _: () = redis::cmd("RPUSH")
                .arg(&ctx.marks.runs)
                .arg(format!("{id}:{}", job.n))
                .query_async(&mut conn)
                .await?;
            if job.n >= job.max {
                let _: () = redis::cmd("RPUSH")
                    .arg(&ctx.marks.done)
                    .arg(&id)
                    .query_async(&mut conn)
                    .await?;
                return Ok(Next::Done);
            }
            Ok(Next::Reschedule {
                after: ctx.work,
                args: TestJob {
                    n: job.n + 1,
                    max: job.max,
                },
            })
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = QueueConfig::new(&args.queue)
        .with_prefix(&args.prefix)
        .with_lease(Duration::from_millis(args.lease_ms))
        .with_batch_size(args.concurrency)
        .with_idle_poll(Duration::from_millis(200));
    let queue: RedisQueue<TestJob> = RedisQueue::connect(&args.redis, config).await?;
    let conn =
        redis::aio::ConnectionManager::new(redis::Client::open(args.redis.as_str())?).await?;
    let ctx = Ctx {
        conn,
        marks: marks(&args.prefix),
        mode: args.mode,
        work: Duration::from_millis(args.work_ms),
    };
    WorkerBuilder::new(format!("test-worker-{}", std::process::id()))
        .backend(queue)
        .data(ctx)
        .concurrency(args.concurrency)
        .build(handle)
        .run()
        .await?;
    Ok(())
}
