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
//!
//! The failover scenarios ([`Scenario::Failover`], [`Scenario::ClusterFailover`]) run the same
//! workload on a Sentinel-watched primary with replicas, or on a Cluster with replicas, through
//! the real `paywatch-producer serve` and through `FCALL` from a shop's own Redis client, and
//! `kill -9` the primary (or a master) once mid-run instead of killing workers: the report then
//! says what the failover lost, what it sent twice, and how soon each part of the fleet worked
//! again on the promoted replica.

pub mod fleet;
pub mod link;
pub mod receivers;
pub mod reruns;
pub mod scenario;
pub mod submit;
pub mod topology;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use paywatch_core::store::{ShardKeys, check_queue, shard_of};
use paywatch_core::{Channel, PaymentStatus};
use paywatch_queue::{Keys, RedisConn, RedisEndpoint};
use paywatch_sandbox::smtp::SmtpSink;
use paywatch_sandbox::{ChatId, SandboxConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redis::AsyncCommands;
use tokio::sync::Semaphore;

use crate::stack::{API_TOKEN, EVENTS_SECRET, Stack, WEBHOOK_SECRET};

use self::fleet::{Fleet, Role};
use self::receivers::VerifyingReceiver;
use self::scenario::{CHAT_BASE, PlannedOrder};
use self::submit::{Acks, ShopClient};
use self::topology::Topology;

/// What a run does to the fleet and its Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Scenario {
    /// One Redis, restarted gracefully once and `kill -9`'d once; workers `kill -9`'d throughout.
    #[default]
    Restarts,
    /// A primary behind three sentinels, `kill -9`'d once mid-run; a replica is promoted.
    Failover,
    /// A Cluster of three masters with a replica each; one master `kill -9`'d once mid-run.
    ClusterFailover,
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Restarts => "restarts",
            Self::Failover => "failover",
            Self::ClusterFailover => "cluster-failover",
        })
    }
}

impl Scenario {
    /// Whether the run kills the primary (and not workers).
    pub fn is_failover(self) -> bool {
        self != Self::Restarts
    }
}

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
    /// What the run does to the fleet and its Redis.
    pub scenario: Scenario,
    /// Durable mode (`PAYWATCH_DURABLE_REPLICAS=1` on the producer and every worker, and `WAIT`
    /// after each `FCALL`); the failover scenarios only (a Cluster refuses it).
    pub durable: bool,
    /// The `paywatch-producer` binary the failover scenarios run (`serve`).
    pub producer_binary: PathBuf,
    /// How far the replicas lag behind the first primary ([`link::SlowLink`]; `failover` only).
    pub link_delay: Duration,
}

/// How long durable writes wait for a replica before they ask again.
const DURABLE_TIMEOUT: &str = "500ms";

/// The workers' lease in the failover scenarios: longer than a failover takes.
const FAILOVER_LEASE: &str = "10s";

/// When (share of orders acknowledged) the failover scenarios kill the primary.
const KILL_AT_SHARE: f64 = 0.5;

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
    /// The primary was `kill -9`'d at `killed`; a replica served from `promoted` on.
    Failover {
        killed: DateTime<Utc>,
        promoted: DateTime<Utc>,
    },
}

/// What a failover did, and how soon each part of the fleet worked again after it.
#[derive(Debug, Default, Clone)]
pub struct FailoverReport {
    /// The Redis side, in words.
    pub topology: String,
    /// From the `kill -9` to the replica serving as the primary (as the sentinels, or the
    /// Cluster, and the node itself say).
    pub promoted: Option<Duration>,
    /// Whether the paywatch Function library was on the promoted replica.
    pub library: bool,
    /// From the kill to the first acknowledgement of a submission sent after it: HTTP, FCALL.
    pub submissions: [Option<Duration>; 2],
    /// From the kill to the first final record written on the promoted node (for the shards
    /// it serves), as seen by polling it every 20 ms from its first answer.
    pub checks: Option<Duration>,
    /// Per channel: from the kill to the first delivery of a transition recorded after it.
    pub notifications: [Option<Duration>; 3],
    /// Orders acknowledged before the promoted replica took over: how many (an answer already
    /// on its way when the primary died can arrive after the kill).
    pub acked_before: usize,
    /// The shards the killed node served; the resume times are theirs.
    pub affected_shards: Vec<u32>,
    /// For each duplicate the failover caused: when its first copy was handed over, in ms
    /// relative to the kill (negative: before it).
    pub duplicate_first_ms: Vec<i64>,
    /// Orders acknowledged in the 100 ms before the kill (what a lagging replica puts at risk).
    pub acked_last_100ms: usize,
    /// For each acknowledged order the failover lost: when it was acknowledged, in ms relative
    /// to the kill (negative: before it).
    pub lost_acked_ms: Vec<i64>,
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
    /// Accepted orders with no final record (and not lost to a failover).
    pub lost: Vec<String>,
    /// Acknowledged orders the promoted replica did not have (a failover lost them).
    pub vanished: Vec<String>,
    /// Per channel: orders (acknowledged and not lost to a failover) with no delivery.
    pub missing: [usize; 3],
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
    /// What the run did.
    pub scenario: Scenario,
    /// Whether durable mode was on.
    pub durable: bool,
    /// The failover, in the failover scenarios.
    pub failover: Option<FailoverReport>,
    /// Orders acknowledged per door: HTTP, FCALL.
    pub doors: [usize; 2],
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
            format!("no final status: {:?}", first(&self.lost)),
        );
        // Without durable mode a failover may lose acknowledged orders: measured, not a failure.
        check(
            !self.vanished.is_empty() && (self.durable || !self.scenario.is_failover()),
            format!(
                "{} acknowledged order(s) lost: {:?}",
                self.vanished.len(),
                first(&self.vanished)
            ),
        );
        check(
            !self.wrong.is_empty(),
            format!("wrong status: {:?}", first(&self.wrong)),
        );
        for (i, channel) in CHANNELS.iter().enumerate() {
            check(
                self.missing[i] > 0,
                format!("{channel}: {} notification(s) missing", self.missing[i]),
            );
            let d = self.duplicates[i];
            // Webhooks are at-least-once by contract (same id, same body, receivers dedupe),
            // except that in a failover run every duplicate is accounted to the failover.
            let judged = i < 2 || self.scenario.is_failover();
            check(
                judged && d.attributed != d.extra,
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
            check(
                self.scenario.is_failover() && self.durable && d.attributed > 0,
                format!(
                    "{channel}: {} duplicate(s) caused by the failover in durable mode",
                    d.attributed
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
            format!("processes died unasked: {:?}", self.casualties),
        );
        if self.scenario.is_failover() {
            match &self.failover {
                None => check(true, "the primary was never killed".into()),
                Some(f) => {
                    check(f.promoted.is_none(), "no replica was promoted".into());
                    check(
                        f.promoted.is_some() && !f.library,
                        "the promoted replica has no paywatch Function library".into(),
                    );
                    for (door, resumed) in ["HTTP", "FCALL"].iter().zip(f.submissions) {
                        check(
                            resumed.is_none() && self.doors[(*door == "FCALL") as usize] > 0,
                            format!("{door} submissions never resumed after the kill"),
                        );
                    }
                    check(
                        f.checks.is_none(),
                        "no check recorded a final status after the kill".into(),
                    );
                    for (channel, resumed) in CHANNELS.iter().zip(f.notifications) {
                        check(
                            resumed.is_none(),
                            format!(
                                "{channel}: nothing delivered for a status recorded after the kill"
                            ),
                        );
                    }
                }
            }
        }
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

/// The three channels, in the order of [`Report::delivered`] and friends.
const CHANNELS: [&str; 3] = ["email", "telegram", "webhook"];

fn first<T: fmt::Debug + Clone>(items: &[T]) -> Vec<T> {
    items.iter().take(5).cloned().collect()
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("never".into(), |d| format!("{:.2}s", d.as_secs_f64()))
}

impl Report {
    /// The summary of a failover run.
    fn fmt_failover(&self, f: &mut fmt::Formatter<'_>, verdict: &str) -> fmt::Result {
        let failover = self.failover.clone().unwrap_or_default();
        let dup = |i: usize| self.duplicates[i].attributed;
        let unexplained = |i: usize| self.duplicates[i].extra - self.duplicates[i].attributed;
        let lost_window = match (
            failover.lost_acked_ms.iter().min(),
            failover.lost_acked_ms.iter().max(),
        ) {
            (Some(lo), Some(hi)) => format!(", acknowledged {lo} to {hi} ms from the kill"),
            _ => String::new(),
        };
        let dup_window = match (
            failover.duplicate_first_ms.iter().min(),
            failover.duplicate_first_ms.iter().max(),
        ) {
            (Some(lo), Some(hi)) => {
                format!(", first copies handed over {lo} to {hi} ms from the kill")
            }
            _ => String::new(),
        };
        write!(
            f,
            "chaos {verdict}: {} ({}) on {}, killed: the node of shard(s) {:?} | orders {}/{} acknowledged (HTTP {}, FCALL {}), \
             {} of {} acknowledged before the promotion lost ({} in the 100 ms before the kill){lost_window}, {} not final, {} wrong | \
             notifications missing email {} telegram {} webhook {} | duplicates caused by the \
             failover email {} telegram {} webhook {}{dup_window} (unexplained {}), bodies changed under one \
             webhook-id {} | stranded {} dead {} | kill -9 to: promotion {}, submissions HTTP {} \
             FCALL {}, checks {}, notifications email {} telegram {} webhook {} | library on the \
             promoted replica: {} | detection lag p50 {:.2}s p99 {:.2}s max {:.2}s | {:.0}s",
            self.scenario,
            if self.durable {
                "durable"
            } else {
                "not durable"
            },
            failover.topology,
            failover.affected_shards,
            self.accepted,
            self.orders,
            self.doors[0],
            self.doors[1],
            self.vanished.len(),
            failover.acked_before,
            failover.acked_last_100ms,
            self.lost.len(),
            self.wrong.len(),
            self.missing[0],
            self.missing[1],
            self.missing[2],
            dup(0),
            dup(1),
            dup(2),
            unexplained(0) + unexplained(1) + unexplained(2),
            self.changed_bodies,
            self.stranded,
            self.dead,
            secs(failover.promoted),
            secs(failover.submissions[0]),
            secs(failover.submissions[1]),
            secs(failover.checks),
            secs(failover.notifications[0]),
            secs(failover.notifications[1]),
            secs(failover.notifications[2]),
            if failover.library { "yes" } else { "NO" },
            self.lag_percentile(0.5).as_secs_f64(),
            self.lag_percentile(0.99).as_secs_f64(),
            self.lag_percentile(1.0).as_secs_f64(),
            self.elapsed.as_secs_f64(),
        )
    }
}

impl fmt::Display for Report {
    /// The one summary line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.problems().is_empty() {
            "PASS"
        } else {
            "FAIL"
        };
        if self.scenario.is_failover() {
            return self.fmt_failover(f, verdict);
        }
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
            self.lost.len() + self.vanished.len(),
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

/// The shared connection the run inspects Redis through (any topology; reconnects by itself).
fn inspector(url: &str) -> anyhow::Result<RedisConn> {
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(1);
    Ok(RedisEndpoint::open(url)?.managed(config)?)
}

/// Runs the chaos suite and reports; an `Err` means the run itself could not be set up.
pub async fn run(config: ChaosConfig) -> anyhow::Result<Report> {
    let started = Instant::now();
    std::fs::create_dir_all(&config.logs)?;
    let scenario = config.scenario;
    anyhow::ensure!(
        !(config.durable && scenario == Scenario::ClusterFailover),
        "--durable on: paywatch refuses durable mode on a Redis Cluster \
         (PAYWATCH_DURABLE_REPLICAS)"
    );
    anyhow::ensure!(
        !(config.durable && scenario == Scenario::Restarts),
        "--durable on: the restarts scenario runs one Redis without replicas"
    );
    let mut topology = match scenario {
        Scenario::Restarts => Topology::single().await,
        // Two replicas in both modes: durable mode needs one after the failover too (the other
        // follows the promoted replica, so the fleet's `WAIT 1` is answered again without a
        // restart), and the modes are compared on the same topology.
        Scenario::Failover => Topology::sentinel(2, config.link_delay, &config.logs).await?,
        Scenario::ClusterFailover => Topology::cluster(&config.logs).await?,
    };
    let redis_url = topology.url();
    // In the failover scenarios the API is the real binary; the sandbox sends it the providers'
    // webhooks.
    let producer_port = crate::free_port();
    let api = match scenario {
        Scenario::Restarts => None,
        _ => Some(format!("http://127.0.0.1:{producer_port}")),
    };
    let stack = Arc::new(
        Stack::start_full(
            "chaos",
            SandboxConfig {
                webhook_target: api.clone(),
                ..SandboxConfig::default()
            },
            config.shards,
            redis_url.clone(),
        )
        .await,
    );
    let api = api.unwrap_or_else(|| stack.api.clone());
    let smtp = SmtpSink::start(Default::default(), ([127, 0, 0, 1], 0).into()).await?;
    let receiver = VerifyingReceiver::start(WEBHOOK_SECRET).await?;

    let durable_args: Vec<String> = if config.durable {
        [
            "--durable-replicas",
            "1",
            "--durable-timeout",
            DURABLE_TIMEOUT,
        ]
        .map(String::from)
        .to_vec()
    } else {
        Vec::new()
    };
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
        .chain(durable_args.clone())
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
        .chain(durable_args)
        .collect();
    let (mut checker_args, mut notifier_args) = (checker_args, notifier_args);
    if scenario.is_failover() {
        // A lease shorter than the failover would hand every job in flight to a second worker
        // while its holder waits to settle it; production's default (30 s) outlasts one.
        for args in [&mut checker_args, &mut notifier_args] {
            if let Some(at) = args.iter().position(|a| a == "--lease") {
                args[at + 1] = FAILOVER_LEASE.to_string();
            }
        }
    }
    let mut fleet = Fleet::new(
        config.worker_binary.clone(),
        checker_args,
        notifier_args,
        &config.logs,
    );
    if scenario.is_failover() {
        let handcash = stack
            .sandbox
            .state()
            .config()
            .credentials
            .handcash_app_secret
            .clone();
        let mut env = vec![
            ("REDIS_URL", redis_url.clone()),
            ("PAYWATCH_PREFIX", stack.prefix.clone()),
            ("PAYWATCH_SHARDS", config.shards.to_string()),
            (
                "PAYWATCH_PRODUCER_LISTEN",
                format!("127.0.0.1:{producer_port}"),
            ),
            ("PAYWATCH_API_TOKENS", API_TOKEN.to_string()),
            ("PAYWATCH_EVENTS_SECRET", EVENTS_SECRET.to_string()),
            ("HANDCASH_APP_SECRET", handcash),
        ];
        if config.durable {
            env.push(("PAYWATCH_DURABLE_REPLICAS", "1".into()));
            env.push(("PAYWATCH_DURABLE_TIMEOUT", DURABLE_TIMEOUT.into()));
        }
        fleet.start_producer(&config.producer_binary, &env)?;
    }
    for _ in 0..config.checkers {
        fleet.start(Role::Checker)?;
    }
    for _ in 0..config.notifiers {
        fleet.start(Role::Notifier)?;
    }

    let mut conn = inspector(&redis_url)?;
    let shop = match &topology {
        Topology::Single(_) => None,
        Topology::Sentinel(set) => Some(ShopClient::sentinel(&set.sentinel_ports())?),
        Topology::Cluster(set) => Some(ShopClient::cluster(
            &set.nodes.iter().map(|n| n.port()).collect::<Vec<_>>(),
        )?),
    }
    .map(Arc::new);
    if scenario.is_failover() {
        wait_fleet_ready(&stack, &api, &mut conn, &mut fleet).await?;
    }

    let plan = Arc::new(scenario::plan(config.orders, config.seed));
    let acks = Arc::new(Acks::new(config.orders));
    let submitter = tokio::spawn(submit::submit_all(
        stack.clone(),
        api.clone(),
        plan.clone(),
        receiver.url.clone(),
        config.rate,
        shop.clone(),
        config.durable,
        acks.clone(),
    ));

    let queues: Vec<Keys> = queue_names(config.shards)
        .iter()
        .map(|q| Keys::new(&stack.prefix, q))
        .collect();
    let mut rng = StdRng::seed_from_u64(config.seed ^ 0x5eed);
    let mut events = Vec::new();
    let watch = reruns::RerunWatch::default();
    let mut report = Report {
        orders: config.orders,
        scenario,
        durable: config.durable,
        ..Report::default()
    };
    let mut vanished: HashSet<usize> = HashSet::new();
    let deadline = started + config.time_limit;
    let watcher = tokio::spawn(watch.clone().run(conn.clone(), deadline));
    let mut last_progress = Instant::now();
    loop {
        let expected = config.orders - vanished.len();
        let done = all_done(&mut conn, &stack, &smtp, &receiver, expected, &acks).await;
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
        let share = acks.count.load(Ordering::SeqCst) as f64 / config.orders as f64;
        if scenario.is_failover() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if report.failover.is_none() && share >= KILL_AT_SHARE {
                let failover = fail_over(
                    &mut topology,
                    &stack,
                    &plan,
                    &acks,
                    &mut conn,
                    &mut events,
                    &mut vanished,
                )
                .await?;
                report.failover = Some(failover);
            }
            continue;
        }
        let wait = config.kill_every.mul_f64(rng.random_range(0.5..1.5));
        tokio::time::sleep(wait).await;
        if let Some(redis) = topology.single_mut() {
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
        }
        let victim = rng.random_range(0..fleet.workers.len());
        let (name, role) = {
            let w = &fleet.workers[victim];
            (w.name.clone(), w.role)
        };
        let held = reruns::held_by(&mut conn, &queues, &name)
            .await
            .unwrap_or_default();
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
    report.accepted = acks.count.load(Ordering::SeqCst);
    report.doors = [
        acks.per_door[0].load(Ordering::SeqCst),
        acks.per_door[1].load(Ordering::SeqCst),
    ];
    if let Some(failover) = report.failover.as_mut() {
        failover.submissions = *acks.resumed.lock().unwrap_or_else(|e| e.into_inner());
    }
    report.vanished = vanished.iter().map(|i| plan[*i].order_id.clone()).collect();
    report.vanished.sort();
    let views = verify_orders(&stack, &api, &plan, &vanished, &mut report).await;
    // Let the queues come to rest before judging what is left in them.
    let rest = Instant::now() + Duration::from_secs(30);
    let (stranded, dead) = loop {
        let (stranded, dead, busy) = leftovers(&mut conn, &queues).await;
        if busy == 0 || Instant::now() > rest {
            break (stranded, dead);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    if !scenario.is_failover() {
        report.redis_stalls = stalls(&mut conn).await;
    }
    report.stranded = stranded;
    report.dead = dead;
    count_notifications(
        &stack,
        &smtp,
        &receiver,
        &events,
        &plan,
        &vanished,
        &report.refused.clone(),
        &mut report,
    );
    if let (Some(failover), Some(Event::Failover { killed, .. })) = (
        report.failover.as_mut(),
        events.iter().find(|e| matches!(e, Event::Failover { .. })),
    ) {
        resumed_after(*killed, &views, &smtp, &stack, &receiver, failover);
    }
    fleet.stop().await;
    report.elapsed = started.elapsed();
    if let Ok(stack) = Arc::try_unwrap(stack) {
        stack.finish().await;
    }
    drop(topology);
    Ok(report)
}

/// Waits until the producer's API is ready and every shard carries the webhook notifiers'
/// allow-list (the submit function refuses the run's loopback webhook URL before that).
async fn wait_fleet_ready(
    stack: &Stack,
    api: &str,
    conn: &mut RedisConn,
    fleet: &mut Fleet,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let dead = fleet.casualties();
        anyhow::ensure!(dead.is_empty(), "the fleet did not start: {dead:?}");
        let ready = stack
            .http
            .get(format!("{api}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        let mut published = ready;
        for shard in 0..stack.shards {
            let meta = ShardKeys::new(&stack.prefix, shard).meta;
            published &= conn
                .hexists::<_, _, bool>(&meta, paywatch_core::store::keys::META_WEBHOOK_ALLOW)
                .await
                .unwrap_or(false);
        }
        if published {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the producer was not ready, or no notifier published its allow-list, within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Kills the primary (or the master of shard 0), waits for the promotion, checks the Function
/// library on the promoted replica, and finds the acknowledged orders it lacks.
async fn fail_over(
    topology: &mut Topology,
    stack: &Stack,
    plan: &[PlannedOrder],
    acks: &Acks,
    conn: &mut RedisConn,
    events: &mut Vec<Event>,
    vanished: &mut HashSet<usize>,
) -> anyhow::Result<FailoverReport> {
    let mut report = FailoverReport {
        topology: topology.describe(),
        ..FailoverReport::default()
    };
    let victim_key = ShardKeys::new(&stack.prefix, 0).base;
    let victim = topology.serves(&victim_key).await?;
    let mut affected = Vec::new();
    for shard in 0..stack.shards {
        if topology
            .serves(&ShardKeys::new(&stack.prefix, shard).base)
            .await?
            == victim
        {
            affected.push(shard);
        }
    }
    report.affected_shards = affected.clone();
    let _ = acks.affected.set(affected);
    let killed = topology.kill_primary(&victim_key).await?;
    let killed_at = Utc::now();
    let _ = acks.kill.set(Instant::now());
    eprintln!("chaos: kill -9 of the primary on port {}", killed.port);
    let promoted_port = topology
        .wait_promoted(&killed, Duration::from_secs(30))
        .await;
    let promoted_at = Utc::now();
    events.push(Event::Failover {
        killed: killed_at,
        promoted: promoted_at,
    });
    let Ok(port) = promoted_port else {
        return Ok(report);
    };
    report.promoted = acks.kill.get().map(Instant::elapsed);
    eprintln!(
        "chaos: port {port} promoted {:.2}s after the kill",
        report.promoted.unwrap_or_default().as_secs_f64()
    );
    report.library = topology::has_library(port).await;
    report.checks = checks_resumed(conn, stack, &report.affected_shards, acks).await;
    // What the promoted replica lacks of what was acknowledged before it took over is lost:
    // nobody sends an acknowledged order again.
    let before = acks.before(promoted_at);
    report.acked_before = before.len();
    report.acked_last_100ms = before
        .iter()
        .filter(|(_, at)| (0..100).contains(&(killed_at - *at).num_milliseconds()))
        .count();
    for (i, acked_at) in before {
        let order = &plan[i];
        let key = ShardKeys::new(&stack.prefix, shard_of(&order.order_id, stack.shards)).base;
        let deadline = Instant::now() + Duration::from_secs(30);
        let found = loop {
            let reply: redis::RedisResult<redis::Value> = redis::cmd("FCALL_RO")
                .arg("paywatch_get")
                .arg(1)
                .arg(&key)
                .arg(&order.order_id)
                .query_async(conn)
                .await;
            match reply {
                Ok(redis::Value::Nil) => break false,
                Ok(_) => break true,
                Err(e) => {
                    anyhow::ensure!(
                        Instant::now() < deadline,
                        "could not read {} after the failover: {e}",
                        order.order_id
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        if !found {
            vanished.insert(i);
            report
                .lost_acked_ms
                .push((acked_at - killed_at).num_milliseconds());
        }
    }
    Ok(report)
}

/// From the kill to the moment the promoted node's final records (of the shards it serves)
/// first grow: checks write there again. Watched from the first answer after the promotion.
async fn checks_resumed(
    conn: &mut RedisConn,
    stack: &Stack,
    shards: &[u32],
    acks: &Acks,
) -> Option<Duration> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut first: Option<usize> = None;
    while Instant::now() < deadline {
        // One call per shard: on a Cluster they may live on different nodes.
        let mut total = Some(0usize);
        for shard in shards {
            let n: Option<usize> = conn
                .hlen(ShardKeys::new(&stack.prefix, *shard).orders)
                .await
                .ok();
            total = total.zip(n).map(|(a, b)| a + b);
        }
        match (first, total) {
            (None, Some(n)) => first = Some(n),
            (Some(before), Some(n)) if n > before => return acks.kill.get().map(Instant::elapsed),
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// Per channel: from the kill to the first delivery announcing a status recorded after it.
fn resumed_after(
    killed: DateTime<Utc>,
    views: &HashMap<String, serde_json::Value>,
    smtp: &SmtpSink,
    stack: &Stack,
    receiver: &VerifyingReceiver,
    report: &mut FailoverReport,
) {
    let since = |at: DateTime<Utc>| (at - killed).to_std().ok();
    let terminal = |order_id: &str| {
        views
            .get(order_id)
            .and_then(|v| v["terminal_at"].as_str())
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    let affected = |order_id: &str| {
        report
            .affected_shards
            .contains(&shard_of(order_id, stack.shards))
    };
    let after_kill =
        |order_id: &str| affected(order_id) && terminal(order_id).is_some_and(|t| t > killed);
    // A delivery before its order's (last) final record announced an earlier record of the
    // same transition, one the failover lost.
    let earliest = |deliveries: Vec<(String, DateTime<Utc>)>| {
        deliveries
            .into_iter()
            .filter(|(id, at)| after_kill(id) && terminal(id).is_some_and(|t| *at >= t))
            .filter_map(|(_, at)| since(at))
            .min()
    };
    report.notifications[0] = earliest(
        smtp.messages()
            .iter()
            .flat_map(|m| {
                m.rcpt_tos
                    .iter()
                    .filter_map(|r| order_of_email(r))
                    .map(|id| (id, m.received_at))
                    .collect::<Vec<_>>()
            })
            .collect(),
    );
    report.notifications[1] = earliest(
        stack
            .sandbox
            .state()
            .telegram_messages()
            .iter()
            .filter_map(|m| Some((order_of_chat(&m.chat_id)?, m.at)))
            .collect(),
    );
    report.notifications[2] = earliest(
        receiver
            .by_id()
            .values()
            .flatten()
            .filter_map(|w| Some((order_of_webhook(&w.body)?, w.at)))
            .collect(),
    );
}

/// The order an email to `rcpt` (`buyer<i>@shop.test`) is about.
fn order_of_email(rcpt: &str) -> Option<String> {
    let i: usize = rcpt
        .strip_prefix("buyer")?
        .strip_suffix("@shop.test")?
        .parse()
        .ok()?;
    Some(format!("chaos-{i:06}"))
}

/// The order a Telegram message to `chat` is about.
fn order_of_chat(chat: &ChatId) -> Option<String> {
    match chat {
        ChatId::Id(id) if *id >= CHAT_BASE => Some(format!("chaos-{:06}", id - CHAT_BASE)),
        _ => None,
    }
}

/// The order a webhook body is about (`data.order_id`).
fn order_of_webhook(body: &[u8]) -> Option<String> {
    let event: serde_json::Value = serde_json::from_slice(body).ok()?;
    event["data"]["order_id"].as_str().map(str::to_owned)
}

/// Whether every order was accepted and is final, and every notification has arrived:
/// `expected` is the plan less the orders a failover lost.
async fn all_done(
    conn: &mut RedisConn,
    stack: &Stack,
    smtp: &SmtpSink,
    receiver: &VerifyingReceiver,
    expected: usize,
    acks: &Acks,
) -> Progress {
    let orders = acks.at.lock().map(|at| at.len()).unwrap_or_default();
    let accepted = acks.count.load(Ordering::SeqCst);
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
            && finals >= expected
            && emails >= expected
            && chats >= expected
            && hooks >= expected,
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

/// Reads every order's status through the API at `api` and compares it with the script (the
/// orders a failover lost are reported apart); returns the views read.
async fn verify_orders(
    stack: &Stack,
    api: &str,
    plan: &[PlannedOrder],
    vanished: &HashSet<usize>,
    report: &mut Report,
) -> HashMap<String, serde_json::Value> {
    let limit = Arc::new(Semaphore::new(16));
    let mut reads = Vec::new();
    for order in plan {
        let permit = limit.clone().acquire_owned().await;
        let url = format!("{api}/v1/orders/{}", order.order_id);
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
    let mut views = HashMap::new();
    for (i, (order, read)) in plan.iter().zip(reads).enumerate() {
        if vanished.contains(&i) {
            continue;
        }
        let view = read.await.ok().flatten();
        if let Some(lag) = view.as_ref().and_then(|v| lag(v, order.final_after)) {
            let view = view.clone().unwrap_or_default();
            report.lags.push((lag, order.order_id.clone(), view));
        }
        if let Some(view) = &view {
            views.insert(order.order_id.clone(), view.clone());
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
    views
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
async fn stalls(conn: &mut RedisConn) -> Vec<(String, u64)> {
    let latest: Vec<(String, u64, u64, u64)> = redis::cmd("LATENCY")
        .arg("LATEST")
        .query_async(conn)
        .await
        .unwrap_or_default();
    latest
        .into_iter()
        .map(|(event, _, _, max)| (event, max))
        .collect()
}

/// Per queue: lapsed leases plus overdue jobs, dead letters, and jobs still in flight or due.
async fn leftovers(conn: &mut RedisConn, queues: &[Keys]) -> (usize, usize, usize) {
    let (mut stranded, mut dead, mut busy) = (0, 0, 0);
    for keys in queues {
        let counts: redis::RedisResult<(usize, usize, usize, usize)> = async {
            // The clock of the node that holds this queue (on a Cluster, routed by its key).
            let (secs, micros): (u64, u64) = redis::Script::new(
                "local t = redis.call('TIME') return {tonumber(t[1]), tonumber(t[2])}",
            )
            .key(&keys.leases)
            .invoke_async(conn)
            .await?;
            let now = secs * 1000 + micros / 1000;
            redis::pipe()
                .zcount(&keys.leases, "-inf", now)
                .zcount(&keys.due, "-inf", now.saturating_sub(1000))
                .hlen(&keys.dead)
                .zcard(&keys.leases)
                .query_async(conn)
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

/// Counts deliveries at the three receivers, finds the orders a channel never reached, and
/// attributes each duplicate.
#[allow(clippy::too_many_arguments)]
fn count_notifications(
    stack: &Stack,
    smtp: &SmtpSink,
    receiver: &VerifyingReceiver,
    events: &[Event],
    plan: &[PlannedOrder],
    vanished: &HashSet<usize>,
    refused: &[String],
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
    let hooks = receiver.by_id();
    // Which orders each channel reached.
    let reached: [HashSet<String>; 3] = [
        emails.keys().filter_map(|r| order_of_email(r)).collect(),
        stack
            .sandbox
            .state()
            .telegram_messages()
            .iter()
            .filter_map(|m| order_of_chat(&m.chat_id))
            .collect(),
        hooks
            .values()
            .flatten()
            .filter_map(|w| order_of_webhook(&w.body))
            .collect(),
    ];
    for (i, order) in plan.iter().enumerate() {
        if vanished.contains(&i) || refused.contains(&order.order_id) {
            continue;
        }
        for (channel, reached) in reached.iter().enumerate() {
            if !reached.contains(&order.order_id) {
                report.missing[channel] += 1;
            }
        }
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
                    report.note_failover_duplicate(events, pair[0]);
                } else {
                    report.unexplained.push((
                        CHANNELS[i].to_string(),
                        to.clone(),
                        pair[0],
                        pair[1],
                    ));
                }
            }
        }
    }
    report.delivered[2] = hooks.len();
    for (id, deliveries) in &hooks {
        report.duplicates[2].extra += deliveries.len() - 1;
        report.unverified += deliveries.iter().filter(|d| !d.verified).count();
        if deliveries.iter().any(|d| d.body != deliveries[0].body) {
            report.changed_bodies += 1;
        }
        let mut times: Vec<DateTime<Utc>> = deliveries.iter().map(|d| d.at).collect();
        times.sort();
        for pair in times.windows(2) {
            if explained(events, pair[0], pair[1]) {
                report.duplicates[2].attributed += 1;
                report.note_failover_duplicate(events, pair[0]);
            } else {
                report
                    .unexplained
                    .push(("webhook".into(), id.clone(), pair[0], pair[1]));
            }
        }
    }
}

impl Report {
    /// Notes when the first copy of a duplicate the failover caused was handed over, relative
    /// to the kill.
    fn note_failover_duplicate(&mut self, events: &[Event], first: DateTime<Utc>) {
        let killed = events.iter().find_map(|e| match e {
            Event::Failover { killed, .. } => Some(*killed),
            _ => None,
        });
        if let (Some(killed), Some(failover)) = (killed, self.failover.as_mut()) {
            failover
                .duplicate_first_ms
                .push((first - killed).num_milliseconds());
        }
    }
}

/// Whether a second delivery at `second` of something first delivered at `first` is explained:
/// by a notifier's death inside the window (killed while the receiver was taking the message, a
/// little before it recorded it, or after, before the settle could land: a round trip, or the
/// end of a Redis outage that was under way); or by a failover, when the first delivery came
/// before the promoted replica took over (plus that window) and the second after the kill: the
/// promoted replica lacked the record of the first.
fn explained(events: &[Event], first: DateTime<Utc>, second: DateTime<Utc>) -> bool {
    let window = chrono::Duration::from_std(SETTLE_WINDOW).unwrap_or_default();
    let handing_over = chrono::Duration::milliseconds(200);
    let failover = events.iter().any(|e| {
        matches!(e, Event::Failover { killed, promoted }
            if first <= *promoted + window && second >= *killed)
    });
    if failover {
        return true;
    }
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
