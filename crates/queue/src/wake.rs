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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::conn::{RedisConn, RedisEndpoint};
use tokio::sync::Notify;

use crate::backoff::Backoff;

/// How long one BLPOP blocks: bounds how long the listener outlives the last queue handle.
const BLOCK_SECS: f64 = 5.0;

/// How long the listener waits for a worker to turn idle before checking whether the queue
/// handles are all gone.
const IDLE_CHECK: Duration = Duration::from_secs(5);

/// Slack on top of the BLPOP block before the reply counts as lost.
const REPLY_SLACK_SECS: f64 = 5.0;

/// The first wait before reconnecting after the listener's connection failed.
const FIRST_RECONNECT_DELAY: Duration = Duration::from_millis(100);

/// Wake-up plumbing: idle workers wait on `wake`; the listener pops signals only while some
/// worker is idle, so a busy process never swallows a wake-up meant for an idle one.
#[derive(Debug, Default)]
pub(crate) struct Wakeup {
    /// Woken when a signal says jobs may be due.
    pub(crate) wake: Notify,
    /// Workers of this process currently idle.
    pub(crate) idle_workers: AtomicUsize,
    /// Wakes the listener when a worker turns idle.
    pub(crate) listener_wake: Notify,
}

/// Sleeps for `wait` or until a wake-up signal, counting this worker as idle meanwhile.
pub(crate) async fn idle_wait(wakeup: &Wakeup, wait: Duration) {
    wakeup.idle_workers.fetch_add(1, Ordering::SeqCst);
    wakeup.listener_wake.notify_one();
    tokio::select! {
        _ = wakeup.wake.notified() => {}
        _ = tokio::time::sleep(wait) => {}
    }
    wakeup.idle_workers.fetch_sub(1, Ordering::SeqCst);
}

/// The listener task for the queue whose wake-up list is `signal`. It holds the hub's
/// [`Wakeup`] only weakly and ends within a few seconds of the last queue handle being dropped.
pub(crate) async fn run_listener(client: RedisEndpoint, signal: String, weak: Weak<Wakeup>) {
    let mut conn: Option<RedisConn> = None;
    let mut backoff = Backoff::new(FIRST_RECONNECT_DELAY);
    loop {
        let Some(wakeup) = weak.upgrade() else { return };
        if wakeup.idle_workers.load(Ordering::SeqCst) == 0 {
            let _ = tokio::time::timeout(IDLE_CHECK, wakeup.listener_wake.notified()).await;
            continue;
        }
        let c = match conn.as_mut() {
            Some(c) => c,
            None => {
                let timeout = Duration::from_secs_f64(BLOCK_SECS + REPLY_SLACK_SECS);
                match client.dedicated(timeout).await {
                    Ok(c) => {
                        backoff.reset();
                        conn.insert(c)
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "wake-up listener cannot connect; retrying");
                        drop(wakeup);
                        tokio::time::sleep(backoff.next_delay()).await;
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
                if wakeup.idle_workers.load(Ordering::SeqCst) > 0 {
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
                drop(wakeup);
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
}
