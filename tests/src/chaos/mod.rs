//! The chaos run (`just chaos`, and a short one in `just test`): the whole product under
//! `kill -9`, on a Redis that is restarted gracefully once and killed once, with every
//! notification counted where a shop would receive it.
//!
//! A private `redis-server` with an append-only file (`appendfsync everysec`), the sandbox
//! providers, the producer API, check workers and notifier workers as separate processes. Orders
//! with scripted outcomes over all four providers go in through the API at a steady rate while
//! a random worker is `kill -9`'d every few seconds and replaced. At the end the run checks, and
//! [`Report`] says: every order at its scripted status; every notification delivered, counted at
//! the SMTP server, the Telegram Bot API and a webhook endpoint that verifies signatures;
//! duplicates only inside each channel's documented window (docs/notifications.md), each
//! attributed to the kill that caused it; nothing stranded (no lapsed lease, nothing overdue, no
//! dead letter); and how long a killed worker's jobs waited to be re-run.

pub mod fleet;
pub mod receivers;
pub mod reruns;
pub mod scenario;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use paywatch_core::store::{ShardKeys, check_queue};
use paywatch_core::{Channel, PaymentStatus};
use paywatch_queue::Keys;
use paywatch_sandbox::smtp::SmtpSink;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redis::AsyncCommands;
use tokio::sync::Semaphore;

use crate::RedisServer;
use crate::stack::{Stack, WEBHOOK_SECRET};

use self::fleet::{Fleet, Role};
use self::receivers::VerifyingReceiver;
use self::scenario::PlannedOrder;

/// How big and how rough a run is.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    /// Orders to submit.
    pub orders: usize,
    /// Orders submitted per second.
    pub rate: f64,
    /// Check worker processes.
    pub checkers: usize,
    /// Notifier worker processes.
    pub notifiers: usize,
    /// Mean time between two `kill -9`s (each wait is drawn from ½× to 1½× of it).
    pub kill_every: Duration,
    /// Shards the orders are spread over.
    pub shards: u32,
    /// Seeds the workload and the victims.
    pub seed: u64,
    /// The run gives up (and fails) after this long.
    pub time_limit: Duration,
    /// The `paywatch-worker` binary to run (with fail points compiled in but not armed).
    pub worker_binary: PathBuf,
    /// Where the workers' logs go.
    pub logs: PathBuf,
}

/// How long after delivering a notification its worker still owes the settle that records it
/// (one Redis round trip, with ample slack for a loaded machine). A notifier killed in this
/// window explains a duplicate; see docs/notifications.md.
const SETTLE_WINDOW: Duration = Duration::from_millis(1500);

/// A moment the run broke something on purpose.
#[derive(Debug, Clone)]
enum Event {
    /// A worker was `kill -9`'d.
    Kill { role: Role, at: DateTime<Utc> },
    /// Redis was down from `from` to `until`.
    Outage {
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    },
}

/// Duplicates of one channel: how many, and how many a kill (or an outage spanning one)
/// explains.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Duplicates {
    /// Deliveries beyond the first of one identity.
    pub extra: usize,
    /// Of those, the ones inside the channel's documented window of a notifier's death.
    pub attributed: usize,
}

/// What a run found.
#[derive(Debug, Default)]
pub struct Report {
    /// Orders planned.
    pub orders: usize,
    /// Orders the API accepted.
    pub accepted: usize,
    /// Orders the API refused (a 4xx: the run only sends valid orders).
    pub refused: Vec<String>,
    /// Accepted orders that ended at their scripted status.
    pub at_status: usize,
    /// Accepted orders with no final record.
    pub lost: Vec<String>,
    /// Orders at another final status than scripted: (order, expected, got).
    pub wrong: Vec<(String, String, String)>,
    /// Per order: from the provider's final status to paywatch's final record, and the view.
    pub lags: Vec<(Duration, String, serde_json::Value)>,
    /// Distinct notifications delivered per channel (email, telegram, webhook).
    pub delivered: [usize; 3],
    /// Duplicates per channel.
    pub duplicates: [Duplicates; 3],
    /// Webhook deliveries whose signature did not verify.
    pub unverified: usize,
    /// Webhook ids delivered with two different bodies.
    pub changed_bodies: usize,
    /// Leases lapsed and not reclaimed, and jobs overdue, at the end.
    pub stranded: usize,
    /// Dead letters at the end (the workload scripts none).
    pub dead: usize,
    /// Workers `kill -9`'d.
    pub kills: usize,
    /// Jobs the killed workers held.
    pub held: usize,
    /// Kill-to-rerun delays of those jobs.
    pub reruns: Vec<Duration>,
    /// Held jobs never seen re-run.
    pub not_rerun: usize,
    /// Held jobs finished by the victim itself: settled between the run's look at its leases and
    /// the kill taking effect, or by a settle already on the wire.
    pub landed: usize,
    /// Duplicates no kill explains: (channel, recipient, first, second delivery).
    pub unexplained: Vec<(String, String, DateTime<Utc>, DateTime<Utc>)>,
    /// Redis restarts: graceful, `kill -9`.
    pub redis_restarts: (usize, usize),
    /// The longest the Redis server stalled (`LATENCY LATEST`, events of 100 ms or more), by
    /// event name: a stall longer than a lease lets leases lapse under live workers.
    pub redis_stalls: Vec<(String, u64)>,
    /// Workers that exited without being killed.
    pub casualties: Vec<String>,
    /// The run hit its time limit.
    pub timed_out: bool,
    /// Wall time.
    pub elapsed: Duration,
}

impl Report {
    /// Everything that is wrong, one line each (empty when the run passed).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut check = |bad: bool, line: String| {
            if bad {
                out.push(line);
            }
        };
        check(self.timed_out, "the run hit its time limit".into());
        check(
            self.accepted != self.orders,
            format!("{} of {} orders accepted", self.accepted, self.orders),
        );
        check(
            !self.refused.is_empty(),
            format!("refused: {:?}", first(&self.refused)),
        );
        check(
            !self.lost.is_empty(),
            format!("lost: {:?}", first(&self.lost)),
        );
        check(
            !self.wrong.is_empty(),
            format!("wrong status: {:?}", first(&self.wrong)),
        );
        for (i, channel) in ["email", "telegram", "webhook"].iter().enumerate() {
            check(
                self.delivered[i] != self.accepted,
                format!(
                    "{channel}: {} of {} delivered",
                    self.delivered[i], self.accepted
                ),
            );
            let d = self.duplicates[i];
            // Webhooks are at-least-once by contract: same id, same body, receivers dedupe.
            check(
                i < 2 && d.attributed != d.extra,
                format!(
                    "{channel}: {} duplicate(s) outside the documented window: {:?}",
                    d.extra - d.attributed,
                    first(
                        &self
                            .unexplained
                            .iter()
                            .filter(|u| u.0 == *channel)
                            .cloned()
                            .collect::<Vec<_>>()
                    )
                ),
            );
        }
        check(
            self.unverified > 0,
            format!("{} webhook(s) failed verification", self.unverified),
        );
        check(
            self.changed_bodies > 0,
            format!("{} webhook id(s) with two bodies", self.changed_bodies),
        );
        check(
            self.stranded > 0,
            format!("{} job(s) stranded", self.stranded),
        );
        check(self.dead > 0, format!("{} dead letter(s)", self.dead));
        check(
            self.not_rerun > 0,
            format!("{} job(s) of killed workers never re-ran", self.not_rerun),
        );
        check(
            !self.casualties.is_empty(),
            format!("workers died unasked: {:?}", self.casualties),
        );
        out
    }

    fn rerun_percentile(&self, p: f64) -> Duration {
        percentile(self.reruns.clone(), p)
    }

    fn lag_percentile(&self, p: f64) -> Duration {
        percentile(self.lags.iter().map(|l| l.0).collect(), p)
    }

    /// The orders paywatch took longest to find final, with their views (for a look at why).
    pub fn slowest(&self, n: usize) -> Vec<(Duration, String, serde_json::Value)> {
        let mut lags = self.lags.clone();
        lags.sort_by_key(|l| std::cmp::Reverse(l.0));
        lags.truncate(n);
        lags
    }
}

fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    match v.len() {
        0 => Duration::ZERO,
        n => v[((n - 1) as f64 * p).round() as usize],
    }
}

fn first<T: fmt::Debug + Clone>(items: &[T]) -> Vec<T> {
    items.iter().take(5).cloned().collect()
}

impl fmt::Display for Report {
    /// The one summary line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.problems().is_empty() {
            "PASS"
        } else {
            "FAIL"
        };
        let dup = |d: Duplicates| format!("{} ({} attributed)", d.extra, d.attributed);
        write!(
            f,
            "chaos {verdict}: orders {}/{} accepted, {} at scripted status, {} lost, {} wrong, \
             detection lag p50 {:.2}s p99 {:.2}s max {:.2}s | \
             delivered email {} telegram {} webhook {} | duplicates email {} telegram {} \
             webhook {} (same id, same body: {}) | stranded {} dead {} | kills {} holding {} \
             jobs ({} finished before the kill took effect), kill-to-rerun p50 {:.2}s max {:.2}s | redis restarts graceful {} kill-9 {} \
             | redis stalls {} | {:.0}s",
            self.accepted,
            self.orders,
            self.at_status,
            self.lost.len(),
            self.wrong.len(),
            self.lag_percentile(0.5).as_secs_f64(),
            self.lag_percentile(0.99).as_secs_f64(),
            self.lag_percentile(1.0).as_secs_f64(),
            self.delivered[0],
            self.delivered[1],
            self.delivered[2],
            dup(self.duplicates[0]),
            dup(self.duplicates[1]),
            self.duplicates[2].extra,
            if self.changed_bodies == 0 {
                "yes"
            } else {
                "NO"
            },
            self.stranded,
            self.dead,
            self.kills,
            self.held,
            self.landed,
            self.rerun_percentile(0.5).as_secs_f64(),
            self.rerun_percentile(1.0).as_secs_f64(),
            self.redis_restarts.0,
            self.redis_restarts.1,
            if self.redis_stalls.is_empty() {
                "none over 100 ms".to_string()
            } else {
                self.redis_stalls
                    .iter()
                    .map(|(event, ms)| format!("{event} max {ms} ms"))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            self.elapsed.as_secs_f64(),
        )
    }
}

/// Every queue of the run: the check shards and the three notifier queues.
fn queue_names(shards: u32) -> Vec<String> {
    (0..shards)
        .map(check_queue)
        .chain(
            [Channel::Email, Channel::Telegram, Channel::Webhook]
                .iter()
                .map(|c| c.queue().to_string()),
        )
        .collect()
}

/// Runs the chaos suite and reports; an `Err` means the run itself could not be set up.
pub async fn run(config: ChaosConfig) -> anyhow::Result<Report> {
    let started = Instant::now();
    std::fs::create_dir_all(&config.logs)?;
    let mut redis = RedisServer::start_durable().await;
    let redis_url = redis.url();
    let stack = Arc::new(Stack::start_on("chaos", redis_url.clone(), config.shards).await);
    let smtp = SmtpSink::start(Default::default(), ([127, 0, 0, 1], 0).into()).await?;
    let receiver = VerifyingReceiver::start(WEBHOOK_SECRET).await?;

    let checker_args: Vec<String> = stack
        .worker_args(0.1)
        .into_iter()
        .skip(1)
        .chain(
            [
                "--queues",
                "check-payment",
                // The fleet-wide budget has its own test (worst_day.rs); here FoxReload's
                // 100/min would only make a time-scaled run wait.
                "--rate-limits",
                r#"{"foxreload":"off"}"#,
            ]
            .map(String::from),
        )
        .collect();
    let notifier_args: Vec<String> = stack
        .notifier_args_for("notify-email,notify-telegram,notify-webhook")
        .into_iter()
        .skip(1)
        .chain(
            [
                "--smtp-url",
                &smtp.url(),
                "--email-from",
                "paywatch chaos <chaos@paywatch.test>",
                "--telegram-per-second",
                "1000",
            ]
            .map(String::from),
        )
        .collect();
    let mut fleet = Fleet::new(
        config.worker_binary.clone(),
        checker_args,
        notifier_args,
        &config.logs,
    );
    for _ in 0..config.checkers {
        fleet.start(Role::Checker)?;
    }
    for _ in 0..config.notifiers {
        fleet.start(Role::Notifier)?;
    }

    let plan = Arc::new(scenario::plan(config.orders, config.seed));
    let accepted = Arc::new(AtomicUsize::new(0));
    let submitter = tokio::spawn(submit_all(
        stack.clone(),
        plan.clone(),
        receiver.url.clone(),
        config.rate,
        accepted.clone(),
    ));

    let client = redis::Client::open(redis_url.as_str())?;
    let queues: Vec<Keys> = queue_names(config.shards)
        .iter()
        .map(|q| Keys::new(&stack.prefix, q))
        .collect();
    let mut rng = StdRng::seed_from_u64(config.seed ^ 0x5eed);
    let mut events = Vec::new();
    let watch = reruns::RerunWatch::default();
    let mut report = Report {
        orders: config.orders,
        ..Report::default()
    };
    let deadline = started + config.time_limit;
    let watcher = tokio::spawn(watch.clone().run(client.clone(), deadline));
    let mut last_progress = Instant::now();
    loop {
        let done = all_done(&client, &stack, &smtp, &receiver, config.orders, &accepted).await;
        if last_progress.elapsed() > Duration::from_secs(10) {
            eprintln!(
                "chaos: {:>4}s {}, kills {}",
                started.elapsed().as_secs(),
                done.line,
                report.kills
            );
            last_progress = Instant::now();
        }
        let done = done.done;
        report.casualties.extend(fleet.casualties());
        if done || !report.casualties.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            report.timed_out = true;
            break;
        }
        let wait = config.kill_every.mul_f64(rng.random_range(0.5..1.5));
        tokio::time::sleep(wait).await;
        let share = accepted.load(Ordering::SeqCst) as f64 / config.orders as f64;
        if report.redis_restarts.0 == 0 && share >= 0.3 {
            let from = Utc::now();
            redis.restart_gracefully().await;
            events.push(Event::Outage {
                from,
                until: Utc::now(),
            });
            report.redis_restarts.0 += 1;
            continue;
        }
        if report.redis_restarts.1 == 0 && share >= 0.7 {
            let from = Utc::now();
            redis.restart().await;
            events.push(Event::Outage {
                from,
                until: Utc::now(),
            });
            report.redis_restarts.1 += 1;
            continue;
        }
        let victim = rng.random_range(0..fleet.workers.len());
        let (name, role) = {
            let w = &fleet.workers[victim];
            (w.name.clone(), w.role)
        };
        let held = match client.get_multiplexed_async_connection().await {
            Ok(mut conn) => reruns::held_by(&mut conn, &queues, &name)
                .await
                .unwrap_or_default(),
            Err(_) => Default::default(),
        };
        let killed = fleet.kill(victim).await?;
        let at = Instant::now();
        events.push(Event::Kill {
            role: killed.role,
            at: Utc::now(),
        });
        report.kills += 1;
        report.held += held.len();
        fleet.start(role)?;
        watch.add(held, at);
    }
    submitter.abort();
    // Everything was delivered, so every held job has run again; give the watcher a last look.
    let settle = Instant::now() + Duration::from_secs(5);
    while watch.results().1 > 0 && Instant::now() < settle.min(deadline) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    watcher.abort();
    (report.reruns, report.not_rerun, report.landed) = watch.results();
    report.accepted = accepted.load(Ordering::SeqCst);
    verify_orders(&stack, &plan, &mut report).await;
    // Let the queues come to rest before judging what is left in them.
    let rest = Instant::now() + Duration::from_secs(30);
    let (stranded, dead) = loop {
        let (stranded, dead, busy) = leftovers(&client, &queues).await;
        if busy == 0 || Instant::now() > rest {
            break (stranded, dead);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    report.redis_stalls = stalls(&client).await;
    report.stranded = stranded;
    report.dead = dead;
    count_notifications(&stack, &smtp, &receiver, &events, &mut report);
    fleet.stop().await;
    report.elapsed = started.elapsed();
    if let Ok(stack) = Arc::try_unwrap(stack) {
        stack.finish().await;
    }
    drop(redis);
    Ok(report)
}

/// Submits every planned order at `rate` per second, each retried until the API accepts it
/// (a Redis restart makes it answer 503 for a moment).
async fn submit_all(
    stack: Arc<Stack>,
    plan: Arc<Vec<PlannedOrder>>,
    webhook_url: String,
    rate: f64,
    accepted: Arc<AtomicUsize>,
) {
    let in_flight = Arc::new(Semaphore::new(32));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.1)));
    for i in 0..plan.len() {
        tick.tick().await;
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let (stack, plan, url, accepted) = (
            stack.clone(),
            plan.clone(),
            webhook_url.clone(),
            accepted.clone(),
        );
        tokio::spawn(async move {
            let order = &plan[i];
            let payment_id = stack.payment(order.payment.clone());
            let body = order.body(&payment_id, &url);
            loop {
                match stack
                    .http
                    .post(format!("{}/v1/orders", stack.api))
                    .json(&body)
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => {
                        accepted.fetch_add(1, Ordering::SeqCst);
                        break;
                    }
                    Ok(r) if r.status().is_client_error() => {
                        eprintln!("chaos: {} refused: {}", order.order_id, r.status());
                        break;
                    }
                    _ => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
            drop(permit);
        });
    }
}

/// Whether every order was accepted and is final, and every notification has arrived.
async fn all_done(
    client: &redis::Client,
    stack: &Stack,
    smtp: &SmtpSink,
    receiver: &VerifyingReceiver,
    orders: usize,
    accepted: &AtomicUsize,
) -> Progress {
    let accepted = accepted.load(Ordering::SeqCst);
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return Progress::default();
    };
    let mut finals = 0;
    for shard in 0..stack.shards {
        let keys = ShardKeys::new(&stack.prefix, shard);
        match conn.hlen::<_, usize>(&keys.orders).await {
            Ok(n) => finals += n,
            Err(e) => {
                return Progress {
                    done: false,
                    line: format!("(Redis did not answer: {e})"),
                };
            }
        }
    }
    let emails = distinct(smtp.messages().iter().flat_map(|m| m.rcpt_tos.clone()));
    let chats = distinct(
        stack
            .sandbox
            .state()
            .telegram_messages()
            .iter()
            .map(|m| format!("{:?}", m.chat_id)),
    );
    let hooks = receiver.by_id().len();
    Progress {
        done: accepted >= orders
            && finals >= orders
            && emails >= orders
            && chats >= orders
            && hooks >= orders,
        line: format!(
            "accepted {accepted}/{orders}, final {finals}, delivered email {emails} telegram \
             {chats} webhook {hooks}"
        ),
    }
}

/// Where a run stands.
#[derive(Debug, Default)]
struct Progress {
    done: bool,
    line: String,
}

fn distinct(items: impl Iterator<Item = String>) -> usize {
    items.collect::<std::collections::HashSet<_>>().len()
}

/// Reads every order's status through the API and compares it with the script.
async fn verify_orders(stack: &Stack, plan: &[PlannedOrder], report: &mut Report) {
    let limit = Arc::new(Semaphore::new(16));
    let mut reads = Vec::new();
    for order in plan {
        let permit = limit.clone().acquire_owned().await;
        let url = format!("{}/v1/orders/{}", stack.api, order.order_id);
        let http = stack.http.clone();
        reads.push(tokio::spawn(async move {
            let _permit = permit;
            for _ in 0..20 {
                if let Ok(r) = http.get(&url).send().await
                    && r.status().is_success()
                    && let Ok(view) = r.json::<serde_json::Value>().await
                {
                    return Some(view);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            None
        }));
    }
    for (order, read) in plan.iter().zip(reads) {
        let view = read.await.ok().flatten();
        if let Some(lag) = view.as_ref().and_then(|v| lag(v, order.final_after)) {
            let view = view.clone().unwrap_or_default();
            report.lags.push((lag, order.order_id.clone(), view));
        }
        let status = view.and_then(|v| v["status"].as_str().map(str::to_owned));
        let expected = order.expected.to_string();
        match status {
            Some(s) if s == expected => report.at_status += 1,
            Some(s) if s.parse::<PaymentStatus>().is_ok_and(|s| s.is_terminal()) => {
                report.wrong.push((order.order_id.clone(), expected, s))
            }
            _ => report.lost.push(order.order_id.clone()),
        }
    }
}

/// From the moment the script made the payment final to paywatch's final record.
fn lag(view: &serde_json::Value, final_after: Duration) -> Option<Duration> {
    let at = |field: &str| {
        view[field]
            .as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
    };
    let (created, terminal) = (at("created_at")?, at("terminal_at")?);
    let final_at = created + chrono::Duration::from_std(final_after).ok()?;
    (terminal - final_at).to_std().ok().or(Some(Duration::ZERO))
}

/// `LATENCY LATEST`: each event's worst stall, in ms.
async fn stalls(client: &redis::Client) -> Vec<(String, u64)> {
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return Vec::new();
    };
    let latest: Vec<(String, u64, u64, u64)> = redis::cmd("LATENCY")
        .arg("LATEST")
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    latest
        .into_iter()
        .map(|(event, _, _, max)| (event, max))
        .collect()
}

/// Per queue: lapsed leases plus overdue jobs, dead letters, and jobs still in flight or due.
async fn leftovers(client: &redis::Client, queues: &[Keys]) -> (usize, usize, usize) {
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return (0, 0, usize::MAX);
    };
    let (mut stranded, mut dead, mut busy) = (0, 0, 0);
    for keys in queues {
        let counts: redis::RedisResult<(usize, usize, usize, usize)> = async {
            let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await?;
            let now = secs * 1000 + micros / 1000;
            redis::pipe()
                .zcount(&keys.leases, "-inf", now)
                .zcount(&keys.due, "-inf", now.saturating_sub(1000))
                .hlen(&keys.dead)
                .zcard(&keys.leases)
                .query_async(&mut conn)
                .await
        }
        .await;
        match counts {
            Ok((lapsed, overdue, d, leased)) => {
                stranded += lapsed + overdue;
                dead += d;
                busy += leased + overdue;
            }
            Err(_) => busy += 1,
        }
    }
    (stranded, dead, busy)
}

/// Counts deliveries at the three receivers, and attributes each duplicate.
fn count_notifications(
    stack: &Stack,
    smtp: &SmtpSink,
    receiver: &VerifyingReceiver,
    events: &[Event],
    report: &mut Report,
) {
    let mut emails: HashMap<String, Vec<DateTime<Utc>>> = HashMap::new();
    for m in smtp.messages() {
        for rcpt in &m.rcpt_tos {
            emails.entry(rcpt.clone()).or_default().push(m.received_at);
        }
    }
    let mut chats: HashMap<String, Vec<DateTime<Utc>>> = HashMap::new();
    for m in stack.sandbox.state().telegram_messages() {
        chats
            .entry(format!("{:?}", m.chat_id))
            .or_default()
            .push(m.at);
    }
    for (i, deliveries) in [emails, chats].into_iter().enumerate() {
        report.delivered[i] = deliveries.len();
        for (to, times) in &deliveries {
            let mut times = times.clone();
            times.sort();
            for pair in times.windows(2) {
                report.duplicates[i].extra += 1;
                if explained(events, pair[0], pair[1]) {
                    report.duplicates[i].attributed += 1;
                } else {
                    let channel = ["email", "telegram"][i].to_string();
                    report
                        .unexplained
                        .push((channel, to.clone(), pair[0], pair[1]));
                }
            }
        }
    }
    let hooks = receiver.by_id();
    report.delivered[2] = hooks.len();
    for deliveries in hooks.values() {
        report.duplicates[2].extra += deliveries.len() - 1;
        report.unverified += deliveries.iter().filter(|d| !d.verified).count();
        if deliveries.iter().any(|d| d.body != deliveries[0].body) {
            report.changed_bodies += 1;
        }
    }
}

/// Whether a second delivery at `second` of something first delivered at `first` is explained by
/// a notifier's death inside the window: killed while the receiver was taking the message (a
/// little before it recorded it) or after, before the settle could land (a round trip, or the
/// end of a Redis outage that was under way).
fn explained(events: &[Event], first: DateTime<Utc>, second: DateTime<Utc>) -> bool {
    let window = chrono::Duration::from_std(SETTLE_WINDOW).unwrap_or_default();
    let handing_over = chrono::Duration::milliseconds(200);
    let settle_by = events
        .iter()
        .filter_map(|e| match e {
            Event::Outage { from, until } if *from <= first + window && *until >= first => {
                Some(*until + window)
            }
            _ => None,
        })
        .max()
        .unwrap_or(first + window)
        .max(first + window);
    events.iter().any(|e| {
        matches!(e, Event::Kill { role: Role::Notifier, at }
            if *at >= first - handing_over && *at <= settle_by && *at <= second)
    })
}
