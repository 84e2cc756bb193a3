//! Kill-to-rerun: how long the jobs a killed worker held waited before another worker ran them.
//!
//! Lease tokens start with the holder's name (`QueueConfig::with_holder`), so at the moment of a
//! kill the run knows exactly which jobs the dead process held. A dead process cannot settle, so
//! the first change of such a job's lease (another holder's token, or the job rescheduled or
//! finished) is its re-run. One watcher follows every killed worker's jobs with a few pipelined
//! reads every 50 ms, so watching costs the Redis under test next to nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use paywatch_queue::{Keys, RedisConn};
use redis::AsyncCommands;

/// A held job's lease: its token, and its expiry (Unix ms, Redis clock).
pub type Lease = (String, f64);

/// The jobs one killed worker held, per queue: job id → its lease.
#[derive(Debug, Default)]
pub struct Held(pub Vec<(Keys, HashMap<String, Lease>)>);

impl Held {
    /// How many jobs.
    pub fn len(&self) -> usize {
        self.0.iter().map(|(_, jobs)| jobs.len()).sum()
    }

    /// Whether it held none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads which jobs of `queues` the worker `name` holds right now.
pub async fn held_by(
    conn: &mut RedisConn,
    queues: &[Keys],
    name: &str,
) -> redis::RedisResult<Held> {
    let owner = format!("{name}/");
    let mut held = Held::default();
    for keys in queues {
        let tokens: HashMap<String, String> = conn.hgetall(&keys.tokens).await?;
        let mine: Vec<(String, String)> = tokens
            .into_iter()
            .filter(|(_, token)| token.starts_with(&owner))
            .collect();
        if mine.is_empty() {
            continue;
        }
        let ids: Vec<&String> = mine.iter().map(|(id, _)| id).collect();
        let expiries: Vec<Option<f64>> = redis::cmd("ZMSCORE")
            .arg(&keys.leases)
            .arg(&ids)
            .query_async(conn)
            .await?;
        // No lease any more: settled between the two reads, so not held after all.
        let jobs = mine
            .into_iter()
            .zip(expiries)
            .filter_map(|((id, token), expiry)| Some((id, (token, expiry?))))
            .collect();
        held.0.push((keys.clone(), jobs));
    }
    Ok(held)
}

/// One job a dead worker held.
#[derive(Debug)]
struct Watched {
    keys: Keys,
    id: String,
    token: String,
    expiry: f64,
    killed_at: Instant,
}

/// Follows the jobs of every killed worker until each is re-run.
#[derive(Debug, Clone, Default)]
pub struct RerunWatch {
    state: Arc<Mutex<WatchState>>,
}

#[derive(Debug, Default)]
struct WatchState {
    watched: Vec<Watched>,
    delays: Vec<Duration>,
    landed: usize,
}

impl RerunWatch {
    /// Starts following `held`, killed at `killed_at`.
    pub fn add(&self, held: Held, killed_at: Instant) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for (keys, jobs) in held.0 {
            for (id, (token, expiry)) in jobs {
                state.watched.push(Watched {
                    keys: keys.clone(),
                    id,
                    token,
                    expiry,
                    killed_at,
                });
            }
        }
    }

    /// Kill-to-rerun delays seen so far, how many held jobs have not re-run yet, and how many
    /// the victim finished itself (between the look at its leases and the kill taking effect).
    pub fn results(&self) -> (Vec<Duration>, usize, usize) {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        (state.delays.clone(), state.watched.len(), state.landed)
    }

    /// Looks every 50 ms until `deadline`; runs as a background task.
    pub async fn run(self, mut conn: RedisConn, deadline: Instant) {
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let watched = {
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                std::mem::take(&mut state.watched)
            };
            let (done, landed, still) = match sweep(&mut conn, watched).await {
                Ok(split) => split,
                // Redis is restarting: look again once it answers (the connection reconnects).
                Err(watched) => (Vec::new(), 0, watched),
            };
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            state.delays.extend(done);
            state.landed += landed;
            state.watched.extend(still);
        }
    }
}

/// Jobs re-run (with their kill-to-rerun delays), jobs the dead worker's own settle finished, and
/// jobs still waiting; or, when Redis did not answer, every job still waiting.
type Sweep = Result<(Vec<Duration>, usize, Vec<Watched>), Vec<Watched>>;

/// One look at every watched job: which have been taken over, and since when.
async fn sweep(conn: &mut RedisConn, watched: Vec<Watched>) -> Sweep {
    if watched.is_empty() {
        return Ok((Vec::new(), 0, watched));
    }
    let mut pipe = redis::pipe();
    pipe.cmd("TIME");
    for w in &watched {
        pipe.hget(&w.keys.tokens, &w.id)
            .hexists(&w.keys.jobs, &w.id)
            .zscore(&w.keys.due, &w.id);
    }
    let reply: Vec<redis::Value> = match pipe.query_async(conn).await {
        Ok(reply) => reply,
        Err(_) => return Err(watched),
    };
    let now_ms = reply
        .first()
        .and_then(|t| redis::from_redis_value_ref::<(u64, u64)>(t).ok())
        .map(|(secs, micros)| (secs * 1000 + micros / 1000) as f64)
        .unwrap_or(0.0);
    let (mut done, mut landed, mut still) = (Vec::new(), 0, Vec::new());
    for (w, answers) in watched.into_iter().zip(reply[1..].chunks(3)) {
        let current: Option<String> = redis::from_redis_value_ref(&answers[0]).unwrap_or(None);
        let exists: bool = redis::from_redis_value_ref(&answers[1]).unwrap_or(true);
        let due: Option<f64> = redis::from_redis_value_ref(&answers[2]).unwrap_or(None);
        let taken_over = match current {
            Some(current) => current != w.token,
            // Finished, or rescheduled into the future: it ran. Due now: handed back by a lease
            // reclaim, waiting for a worker.
            None => !exists || due.is_some_and(|at| at > now_ms + 50.0),
        };
        if !taken_over {
            still.push(w);
        } else if now_ms < w.expiry {
            // Changed while the dead worker's lease still stood: nobody else could have taken
            // it, so its own settle, sent just before the kill, landed (and a check it
            // rescheduled may already be on its next step elsewhere).
            landed += 1;
        } else {
            done.push(w.killed_at.elapsed());
        }
    }
    Ok((done, landed, still))
}
