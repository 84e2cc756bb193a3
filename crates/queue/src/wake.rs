//! Waking idle workers without busy polling.
//!
//! Producers push a signal onto the queue's bounded `signal` list when a job falls due now or
//! becomes the earliest scheduled one. One listener per process pops it with a blocking `BLPOP`
//! on a dedicated connection, but only while some worker of the process is idle: a busy process
//! never swallows a wake-up meant for an idle one (a signal popped after the process got busy is
//! pushed back). Idle workers otherwise sleep until the earliest due time or lease expiry they
//! learned from their last fetch, capped by `idle_poll`, so an idle worker costs about one fetch
//! per `idle_poll` plus one `BLPOP` every few seconds.

use std::sync::Weak;
use std::time::Duration;

use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;

use crate::queue::{Shared, Wakeup};

/// How long one BLPOP blocks.
const BLOCK_SECS: f64 = 5.0;

/// Sleeps for `wait` or until a wake-up signal, counting this worker as idle meanwhile.
pub(crate) async fn idle_wait(wakeup: &Wakeup, wait: Duration) {
    wakeup
        .idle_workers
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    wakeup.listener_wake.notify_one();
    tokio::select! {
        _ = wakeup.wake.notified() => {}
        _ = tokio::time::sleep(wait) => {}
    }
    wakeup
        .idle_workers
        .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
}

/// The listener task; ends within a few seconds of the last queue handle being dropped.
pub(crate) async fn run_listener(weak: Weak<Shared>, wakeup: std::sync::Arc<Wakeup>) {
    let mut conn: Option<MultiplexedConnection> = None;
    let mut backoff = Duration::from_millis(100);
    loop {
        if wakeup
            .idle_workers
            .load(std::sync::atomic::Ordering::SeqCst)
            == 0
        {
            let _ =
                tokio::time::timeout(Duration::from_secs(5), wakeup.listener_wake.notified()).await;
            if weak.strong_count() == 0 {
                return;
            }
            continue;
        }
        let Some((client, signal)) = weak
            .upgrade()
            .map(|s| (s.client.clone(), s.keys.signal.clone()))
        else {
            return;
        };
        let c = match conn.as_mut() {
            Some(c) => c,
            None => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(2)))
                    .set_response_timeout(Some(Duration::from_secs_f64(BLOCK_SECS + 5.0)));
                match client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                {
                    Ok(c) => {
                        backoff = Duration::from_millis(100);
                        conn.insert(c)
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "wake-up listener cannot connect; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                }
            }
        };
        let popped: Result<Option<(String, String)>, _> = redis::cmd("BLPOP")
            .arg(&signal)
            .arg(BLOCK_SECS)
            .query_async(c)
            .await;
        match popped {
            Ok(Some(_)) => {
                if wakeup
                    .idle_workers
                    .load(std::sync::atomic::Ordering::SeqCst)
                    > 0
                {
                    wakeup.wake.notify_one();
                } else {
                    // Everyone got busy while we blocked: hand the wake-up to another process.
                    let _: Result<(), _> = redis::cmd("LPUSH")
                        .arg(&signal)
                        .arg("1")
                        .query_async(c)
                        .await;
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(error = %e, "wake-up listener lost its connection; reconnecting");
                conn = None;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}
