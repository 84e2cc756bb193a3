//! The health verdict: is each part of paywatch doing its job, and if not, the likely cause.
//!
//! Six subsystems, each read from what Redis already holds plus the signals the processes leave
//! there for it ([`paywatch_core::health`]): checks on time (the check shards' backlog and the
//! workers' reports), providers answering (breakers and transient failures per provider),
//! provider webhooks arriving (last seen per provider), notifications flowing (per channel:
//! backlog, failures, dead letters), the orphan audit (pending orders no check job will ever
//! run: must be 0; a bounded scan, [`AUDIT_BUDGET`]) and Redis itself (memory, eviction policy,
//! replicas, persistence; each primary of a Cluster). Read-only: nothing is written.

pub mod model;
mod redis_info;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use chrono::Utc;
use paywatch_core::health::{self as signals, WORKER_SILENCE};
use paywatch_core::store::keys;
use paywatch_core::{Channel, queues};
use paywatch_queue::{Keys, QueueDepth, RedisConn};
use redis::Script;

use self::model::{
    ChannelHealth, ChecksHealth, HealthReport, NotificationsHealth, OrphanAudit, ProviderHealth,
    ProvidersHealth, ShardTiming, Verdict, WebhookHealth, WebhooksHealth,
};
use super::model::{QueueKind, rfc3339_ms};
use super::{Admin, AdminError};

/// A check or delivery late by this many seconds makes its subsystem degraded.
pub const LATE_DEGRADED_SECONDS: f64 = 10.0;
/// Late by this many seconds: failing.
pub const LATE_FAILING_SECONDS: f64 = 60.0;
/// The minutes of provider calls and delivery attempts the verdict looks at.
pub const WINDOW_MINUTES: u64 = 5;
/// A share of transient failures (over at least [`MIN_CALLS`] calls) that makes a provider or
/// channel degraded.
pub const FAILURE_RATE_DEGRADED: f64 = 0.2;
/// A share that makes it failing.
pub const FAILURE_RATE_FAILING: f64 = 0.5;
/// Fewer calls than this say too little for a rate.
pub const MIN_CALLS: u64 = 3;
/// A provider's webhooks not seen for this long are `stale`.
pub const WEBHOOK_STALE_SECONDS: f64 = 3600.0;
/// The most pending orders (and payment index entries) one orphan audit looks at.
pub const AUDIT_BUDGET: u64 = 100_000;
/// Memory use over this share of `maxmemory`: degraded.
pub const MEMORY_DEGRADED: f64 = 0.75;
/// Over this share: failing (at the limit, `noeviction` refuses every write).
pub const MEMORY_FAILING: f64 = 0.9;

/// Entries one audit step asks HSCAN for.
const AUDIT_STEP: u64 = 1000;
/// Order ids of orphans shown.
const EXAMPLES: usize = 20;
/// Providers whose webhooks paywatch receives (`/webhooks/<provider>`).
const WEBHOOK_PROVIDERS: [&str; 2] = ["cashless", "handcash"];

static ORPHANS: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("orphans.lua")));

/// A worker that reported recently: the queues it serves.
struct LiveWorker {
    queues: Vec<String>,
}

/// How many live workers serve `queue` (a check shard counts as `check-payment`).
fn serving(workers: &[LiveWorker], queue: &str) -> u64 {
    let wanted = if queue.starts_with(queues::CHECK_PAYMENT) {
        queues::CHECK_PAYMENT
    } else {
        queue
    };
    workers
        .iter()
        .filter(|w| w.queues.iter().any(|q| q == wanted))
        .count() as u64
}

/// Seconds the most overdue job of a queue is late (0 when nothing is due).
fn late_seconds(depth: &QueueDepth) -> f64 {
    match depth.next_due_in_ms {
        Some(ms) if ms < 0 && depth.due > 0 => -ms as f64 / 1000.0,
        _ => 0.0,
    }
}

fn lateness_verdict(late: f64) -> Verdict {
    if late >= LATE_FAILING_SECONDS {
        Verdict::Failing
    } else if late >= LATE_DEGRADED_SECONDS {
        Verdict::Degraded
    } else {
        Verdict::Ok
    }
}

fn rate_verdict(failures: u64, calls: u64) -> Verdict {
    if calls < MIN_CALLS {
        return Verdict::Ok;
    }
    let rate = failures as f64 / calls as f64;
    if rate >= FAILURE_RATE_FAILING {
        Verdict::Failing
    } else if rate >= FAILURE_RATE_DEGRADED {
        Verdict::Degraded
    } else {
        Verdict::Ok
    }
}

/// "3.2 s", "4.0 min", "1.5 h".
fn span(s: f64) -> String {
    if s < 60.0 {
        format!("{s:.1} s")
    } else if s < 3600.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

/// The worst verdict of `items` and the cause of the first item with it.
fn worst<'a>(
    items: impl IntoIterator<Item = (Verdict, &'a Option<String>)>,
) -> (Verdict, Option<String>) {
    let mut verdict = Verdict::Ok;
    let mut cause = None;
    for (v, c) in items {
        if v > verdict {
            verdict = v;
            cause = c.clone();
        }
    }
    (verdict, cause)
}

impl Admin {
    /// The health verdict of the deployment, read from Redis (nothing is written).
    pub async fn health(&self) -> Result<HealthReport, AdminError> {
        let conn = self.producer.connection();
        let prefix = self.producer.prefix().to_owned();
        let now_ms = Utc::now().timestamp_millis().max(0) as u64;
        let depths = futures::future::try_join_all(
            self.queues
                .iter()
                .map(|q| async move { Ok::<_, AdminError>((q, q.queue.depth().await?)) }),
        );
        let (depths, workers, counts, webhooks, orphans, redis) = futures::try_join!(
            depths,
            live_workers(&conn, &prefix, now_ms),
            minute_counts(&conn, &prefix, now_ms),
            webhook_times(&conn, &prefix),
            self.orphan_audit(&conn, &prefix),
            redis_info::health(&conn, self.producer.is_sentinel()),
        )?;
        let checks = checks(&depths, &workers);
        let providers = providers(&conn, &prefix, &counts, now_ms).await?;
        let configured: BTreeSet<String> = providers
            .providers
            .iter()
            .map(|p| p.provider.clone())
            .collect();
        let webhooks = webhooks_health(&webhooks, &configured, now_ms);
        let notifications = notifications(&depths, &workers, &counts);
        let parts: [(&str, Verdict, &Option<String>); 6] = [
            ("checks", checks.verdict, &checks.cause),
            ("providers", providers.verdict, &providers.cause),
            ("webhooks", webhooks.verdict, &webhooks.cause),
            ("notifications", notifications.verdict, &notifications.cause),
            ("orphans", orphans.verdict, &orphans.cause),
            ("redis", redis.verdict, &redis.cause),
        ];
        let mut ranked: Vec<_> = parts.iter().filter(|(_, v, _)| *v != Verdict::Ok).collect();
        ranked.sort_by_key(|p| std::cmp::Reverse(p.1));
        let causes = ranked
            .iter()
            .map(|(name, _, cause)| {
                format!("{name}: {}", cause.as_deref().unwrap_or("see details"))
            })
            .collect();
        let verdict = parts.iter().map(|p| p.1).max().unwrap_or_default();
        Ok(HealthReport {
            verdict,
            causes,
            checked_at: rfc3339_ms(now_ms),
            checks,
            providers,
            webhooks,
            notifications,
            orphans,
            redis,
        })
    }

    /// The orphan audit over every check shard, within [`AUDIT_BUDGET`] entries.
    async fn orphan_audit(
        &self,
        conn: &RedisConn,
        prefix: &str,
    ) -> Result<OrphanAudit, AdminError> {
        let mut conn = conn.clone();
        let mut found: Vec<String> = Vec::new();
        let mut orphans = 0u64;
        let mut scanned = 0u64;
        let mut complete = true;
        'shards: for q in self.queues.iter().filter(|q| q.kind == QueueKind::Check) {
            let keys = Keys::new(prefix, &q.name);
            let shard = paywatch_core::store::ShardKeys::new(prefix, shard_number(&q.name));
            for what in ["jobs", "payments"] {
                let mut cursor = "0".to_owned();
                loop {
                    if scanned >= AUDIT_BUDGET {
                        complete = false;
                        break 'shards;
                    }
                    let step = AUDIT_STEP.min(AUDIT_BUDGET - scanned);
                    let (next, looked, ids): (String, u64, Vec<String>) = ORPHANS
                        .key(&keys.jobs)
                        .key(&keys.due)
                        .key(&keys.leases)
                        .key(&shard.orders)
                        .key(&keys.dead)
                        .key(&shard.payments)
                        .arg(what)
                        .arg(&cursor)
                        .arg(step)
                        .invoke_async(&mut conn)
                        .await
                        .map_err(paywatch_queue::QueueError::from)?;
                    scanned += looked;
                    orphans += ids.len() as u64;
                    for id in ids {
                        if found.len() < EXAMPLES && !found.contains(&id) {
                            found.push(id);
                        }
                    }
                    if next == "0" {
                        break;
                    }
                    cursor = next;
                }
            }
        }
        let (verdict, cause) = if orphans > 0 {
            (
                Verdict::Failing,
                Some(format!(
                    "{orphans} pending order(s) have no scheduled or running check job, so \
                     nothing will check them again (a job deleted by hand, or a Redis that lost \
                     writes in a failover): resubmit them (the same body is accepted again) or \
                     look them up with `admin order ID`"
                )),
            )
        } else if !complete {
            (
                Verdict::Ok,
                Some(format!(
                    "audit incomplete: looked at the first {scanned} entries (its budget); none \
                     was an orphan"
                )),
            )
        } else {
            (Verdict::Ok, None)
        };
        Ok(OrphanAudit {
            verdict,
            cause,
            orphans,
            examples: found,
            scanned,
            complete,
            budget: AUDIT_BUDGET,
        })
    }
}

/// The shard number of a check queue's name (`check-payment.<n>`).
fn shard_number(queue: &str) -> u32 {
    queue
        .rsplit('.')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn redis_error(e: redis::RedisError) -> AdminError {
    AdminError::Queue(paywatch_queue::QueueError::from(e))
}

/// The workers that reported within [`WORKER_SILENCE`].
async fn live_workers(
    conn: &RedisConn,
    prefix: &str,
    now_ms: u64,
) -> Result<Vec<LiveWorker>, AdminError> {
    let since = now_ms.saturating_sub(WORKER_SILENCE.as_millis() as u64);
    let members: Vec<String> = redis::cmd("ZRANGEBYSCORE")
        .arg(keys::health_workers(prefix))
        .arg(since)
        .arg("+inf")
        .query_async(&mut conn.clone())
        .await
        .map_err(redis_error)?;
    Ok(members
        .iter()
        .map(|m| LiveWorker {
            queues: signals::parse_worker_member(m).0,
        })
        .collect())
}

/// The counters of the last [`WINDOW_MINUTES`] minutes (the current one included), summed.
async fn minute_counts(
    conn: &RedisConn,
    prefix: &str,
    now_ms: u64,
) -> Result<BTreeMap<String, u64>, AdminError> {
    let minute = signals::minute_of(now_ms);
    let reads = (0..=WINDOW_MINUTES).map(|back| {
        let mut conn = conn.clone();
        let key = keys::health_minute(prefix, minute.saturating_sub(back));
        async move {
            redis::cmd("HGETALL")
                .arg(key)
                .query_async::<BTreeMap<String, String>>(&mut conn)
                .await
        }
    });
    let mut sums = BTreeMap::new();
    for fields in futures::future::try_join_all(reads)
        .await
        .map_err(redis_error)?
    {
        for (field, value) in fields {
            // A value paywatch did not write counts as nothing rather than failing the verdict.
            let n = value.parse::<u64>().unwrap_or(0);
            *sums.entry(field).or_insert(0) += n;
        }
    }
    Ok(sums)
}

/// Webhooks' last-seen times: member → Unix ms.
async fn webhook_times(
    conn: &RedisConn,
    prefix: &str,
) -> Result<BTreeMap<String, u64>, AdminError> {
    let pairs: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg(keys::health_webhooks(prefix))
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut conn.clone())
        .await
        .map_err(redis_error)?;
    Ok(pairs
        .into_iter()
        .map(|(m, at)| (m, at.max(0.0) as u64))
        .collect())
}

fn checks(depths: &[(&super::Known, QueueDepth)], workers: &[LiveWorker]) -> ChecksHealth {
    let shards: Vec<(&str, QueueDepth)> = depths
        .iter()
        .filter(|(q, _)| q.kind == QueueKind::Check)
        .map(|(q, d)| (q.name.as_str(), *d))
        .collect();
    let due: u64 = shards.iter().map(|(_, d)| d.due).sum();
    let leased: u64 = shards.iter().map(|(_, d)| d.leased).sum();
    let scheduled: u64 = shards.iter().map(|(_, d)| d.scheduled).sum();
    let late = shards
        .iter()
        .map(|(_, d)| late_seconds(d))
        .fold(0.0, f64::max);
    let live = serving(workers, queues::CHECK_PAYMENT);
    let mut verdict = lateness_verdict(late);
    let cause = if live == 0 && due + leased + scheduled > 0 {
        verdict = verdict.max(if due > 0 {
            Verdict::Failing
        } else {
            Verdict::Degraded
        });
        Some(format!(
            "no check worker has reported in the last {} s ({due} check(s) due now, the oldest \
             late by {}, {scheduled} scheduled): start paywatch-worker with --queues \
             check-payment, or see why it stopped",
            WORKER_SILENCE.as_secs(),
            span(late)
        ))
    } else if verdict != Verdict::Ok && leased == 0 {
        Some(format!(
            "{live} check worker(s) report in but none is running a check ({due} due, the oldest \
             late by {}): are they on this Redis and PAYWATCH_PREFIX, serving every shard \
             (PAYWATCH_SHARDS)?",
            span(late)
        ))
    } else if verdict != Verdict::Ok {
        Some(format!(
            "the check workers cannot keep up: {due} check(s) due now, the oldest late by {}, \
             {leased} running: add workers or raise --concurrency (or a provider's rate budget \
             holds them back)",
            span(late)
        ))
    } else {
        None
    };
    ChecksHealth {
        verdict,
        cause,
        due,
        leased,
        scheduled,
        late_seconds: late,
        workers: live,
        shards: shards
            .iter()
            .map(|(name, d)| ShardTiming {
                queue: (*name).to_owned(),
                due: d.due,
                leased: d.leased,
                late_seconds: late_seconds(d),
            })
            .collect(),
    }
}

/// Each provider a worker has credentials for (or that was called in the window): its breaker
/// and its calls.
async fn providers(
    conn: &RedisConn,
    prefix: &str,
    counts: &BTreeMap<String, u64>,
    now_ms: u64,
) -> Result<ProvidersHealth, AdminError> {
    let registry: BTreeMap<String, String> = redis::cmd("HGETALL")
        .arg(keys::health_providers(prefix))
        .query_async(&mut conn.clone())
        .await
        .map_err(redis_error)?;
    let mut names: BTreeSet<String> = registry.keys().cloned().collect();
    names.extend(counts.keys().filter_map(|f| {
        let rest = f.strip_prefix("provider:")?;
        Some(rest.split(':').next()?.to_owned())
    }));
    let reads = names.into_iter().map(|name| {
        let mut conn = conn.clone();
        // Only a key under this deployment's prefix is read: the registry is data, not orders.
        let key = registry
            .get(&name)
            .filter(|k| k.starts_with(&format!("{prefix}:")))
            .cloned();
        async move {
            let breaker: BTreeMap<String, String> = match key {
                Some(key) => {
                    redis::cmd("HGETALL")
                        .arg(key)
                        .query_async(&mut conn)
                        .await?
                }
                None => BTreeMap::new(),
            };
            Ok::<_, redis::RedisError>((name, breaker))
        }
    });
    let mut providers = Vec::new();
    for (name, breaker) in futures::future::try_join_all(reads)
        .await
        .map_err(redis_error)?
    {
        let number = |field: &str| breaker.get(field).and_then(|v| v.parse::<u64>().ok());
        let state = breaker
            .get("state")
            .map(String::as_str)
            .unwrap_or("closed")
            .to_owned();
        let consecutive = number("failures").unwrap_or(0);
        let reopens = number("open_until")
            .filter(|_| state == "open")
            .map(|until| until.saturating_sub(now_ms) as f64 / 1000.0);
        let calls = counts
            .get(&format!("provider:{name}:calls"))
            .copied()
            .unwrap_or(0);
        let failures = counts
            .get(&format!("provider:{name}:failures"))
            .copied()
            .unwrap_or(0);
        let rate = (calls > 0).then(|| failures as f64 / calls as f64);
        let (verdict, cause) = match state.as_str() {
            "open" => (
                Verdict::Failing,
                Some(format!(
                    "{name}'s circuit breaker is open after repeated transient failures (5xx, \
                     timeouts, connection errors): its checks pause{}; see the worker logs and \
                     the provider's status",
                    reopens.map_or(String::new(), |s| format!(", a probe in {}", span(s)))
                )),
            ),
            "half_open" => (
                Verdict::Degraded,
                Some(format!(
                    "{name}'s circuit breaker is half open: one probe tests the provider after \
                     repeated transient failures"
                )),
            ),
            _ => match rate_verdict(failures, calls) {
                Verdict::Ok => (Verdict::Ok, None),
                v => (
                    v,
                    Some(format!(
                        "{failures} of {calls} calls to {name} failed transiently in the last \
                         {WINDOW_MINUTES} min (5xx, timeouts, connection errors); the breaker \
                         opens if they keep failing in a row"
                    )),
                ),
            },
        };
        providers.push(ProviderHealth {
            provider: name,
            verdict,
            cause,
            breaker: state,
            consecutive_failures: consecutive,
            reopens_in_seconds: reopens,
            calls,
            failures,
            error_rate: rate,
        });
    }
    let (verdict, cause) = worst(providers.iter().map(|p| (p.verdict, &p.cause)));
    Ok(ProvidersHealth {
        verdict,
        cause,
        window_minutes: WINDOW_MINUTES,
        providers,
    })
}

/// Webhooks of the providers that send them and that the workers check (or whose webhooks were
/// seen).
fn webhooks_health(
    times: &BTreeMap<String, u64>,
    configured: &BTreeSet<String>,
    now_ms: u64,
) -> WebhooksHealth {
    let mut names: BTreeSet<String> = WEBHOOK_PROVIDERS
        .iter()
        .filter(|p| configured.is_empty() || configured.contains(**p))
        .map(|p| (*p).to_owned())
        .collect();
    names.extend(
        times
            .keys()
            .map(|m| m.strip_suffix(":refused").unwrap_or(m).to_owned()),
    );
    let providers: Vec<WebhookHealth> = names
        .into_iter()
        .map(|name| {
            let seen = times.get(&name).copied();
            let refused = times.get(&format!("{name}:refused")).copied();
            let ago = seen.map(|at| now_ms.saturating_sub(at) as f64 / 1000.0);
            let (state, verdict, cause) = match ago {
                None => (
                    "not_seen",
                    Verdict::Degraded,
                    Some(format!(
                        "no {name} webhook has reached this deployment: payments are found by \
                         polling alone, later; point {name}'s webhook at /webhooks/{name} of \
                         this API"
                    )),
                ),
                Some(s) if s > WEBHOOK_STALE_SECONDS => (
                    "stale",
                    Verdict::Degraded,
                    Some(format!(
                        "no {name} webhook for {}: quiet, or the provider stopped sending \
                         (check its webhook settings and this API's reachability)",
                        span(s)
                    )),
                ),
                Some(_) => ("seen", Verdict::Ok, None),
            };
            let (verdict, cause) = match refused {
                Some(r) if seen.is_none_or(|s| r > s) => (
                    Verdict::Degraded,
                    Some(format!(
                        "{name} webhooks arrive but are refused (wrong secret, or a body that \
                         cannot be read): check HANDCASH_APP_SECRET and the provider's settings"
                    )),
                ),
                _ => (verdict, cause),
            };
            WebhookHealth {
                provider: name,
                verdict,
                cause,
                state: state.to_owned(),
                last_seen: seen.map(rfc3339_ms),
                last_seen_seconds_ago: ago,
                last_refused: refused.map(rfc3339_ms),
            }
        })
        .collect();
    let (verdict, cause) = worst(providers.iter().map(|p| (p.verdict, &p.cause)));
    WebhooksHealth {
        verdict,
        cause,
        providers,
    }
}

fn notifications(
    depths: &[(&super::Known, QueueDepth)],
    workers: &[LiveWorker],
    counts: &BTreeMap<String, u64>,
) -> NotificationsHealth {
    let channels: Vec<ChannelHealth> = [Channel::Email, Channel::Telegram, Channel::Webhook]
        .into_iter()
        .map(|channel| {
            let queue = channel.queue();
            let depth = depths
                .iter()
                .find(|(q, _)| q.name == queue)
                .map(|(_, d)| *d)
                .unwrap_or(QueueDepth {
                    due: 0,
                    scheduled: 0,
                    leased: 0,
                    dead: 0,
                    next_due_in_ms: None,
                });
            let attempts = counts
                .get(&signals::notify_attempts(channel))
                .copied()
                .unwrap_or(0);
            let failures = counts
                .get(&signals::notify_failures(channel))
                .copied()
                .unwrap_or(0);
            let live = serving(workers, queue);
            let late = late_seconds(&depth);
            let pending = depth.due + depth.scheduled + depth.leased;
            let mut findings: Vec<(Verdict, String)> = Vec::new();
            if live == 0 && pending > 0 {
                findings.push((
                    if depth.due > 0 {
                        Verdict::Failing
                    } else {
                        Verdict::Degraded
                    },
                    format!(
                        "no worker serving {queue} has reported in the last {} s and {pending} \
                         {channel} notification(s) wait: start paywatch-worker with --queues \
                         {queue}",
                        WORKER_SILENCE.as_secs()
                    ),
                ));
            } else if lateness_verdict(late) != Verdict::Ok {
                findings.push((
                    lateness_verdict(late),
                    format!(
                        "{channel} notifications are late: {} due now, the oldest late by {}: \
                         add notifier workers or raise --concurrency",
                        depth.due,
                        span(late)
                    ),
                ));
            }
            let rate = rate_verdict(failures, attempts);
            if rate != Verdict::Ok {
                findings.push((
                    rate,
                    format!(
                        "{failures} of {attempts} {channel} deliveries failed in the last \
                         {WINDOW_MINUTES} min: the target refuses or is unreachable (see the \
                         dead letters' reasons and the notifier's logs)"
                    ),
                ));
            }
            if depth.dead > 0 {
                findings.push((
                    Verdict::Degraded,
                    format!(
                        "{} {channel} notification(s) in the dead letters: `admin dead list \
                         --queue {queue}` shows why; fix it, then `admin dead retry --all \
                         --queue {queue}`",
                        depth.dead
                    ),
                ));
            }
            let (verdict, cause) =
                findings
                    .into_iter()
                    .fold((Verdict::Ok, None), |(v, c), (fv, fc)| {
                        if fv > v { (fv, Some(fc)) } else { (v, c) }
                    });
            ChannelHealth {
                channel: channel.as_str().to_owned(),
                queue: queue.to_owned(),
                verdict,
                cause,
                due: depth.due,
                leased: depth.leased,
                late_seconds: late,
                dead: depth.dead,
                attempts,
                failures,
                workers: live,
            }
        })
        .collect();
    let (verdict, cause) = worst(channels.iter().map(|c| (c.verdict, &c.cause)));
    NotificationsHealth {
        verdict,
        cause,
        window_minutes: WINDOW_MINUTES,
        channels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_grade_lateness_and_rates() {
        assert_eq!(lateness_verdict(0.0), Verdict::Ok);
        assert_eq!(lateness_verdict(15.0), Verdict::Degraded);
        assert_eq!(lateness_verdict(90.0), Verdict::Failing);
        assert_eq!(rate_verdict(2, 2), Verdict::Ok, "too few calls to judge");
        assert_eq!(rate_verdict(1, 4), Verdict::Degraded);
        assert_eq!(rate_verdict(3, 4), Verdict::Failing);
        assert!(Verdict::Failing > Verdict::Degraded && Verdict::Degraded > Verdict::Ok);
    }

    #[test]
    fn webhooks_not_seen_are_named() {
        let configured: BTreeSet<String> = ["cashless".to_owned(), "foxreload".to_owned()].into();
        let report = webhooks_health(&BTreeMap::new(), &configured, 1_000_000);
        assert_eq!(report.providers.len(), 1, "foxreload sends no webhooks");
        assert_eq!(report.providers[0].state, "not_seen");
        assert_eq!(report.verdict, Verdict::Degraded);
        let seen: BTreeMap<String, u64> = [("cashless".to_owned(), 999_000)].into();
        let report = webhooks_health(&seen, &configured, 1_000_000);
        assert_eq!(report.providers[0].state, "seen");
        assert_eq!(report.verdict, Verdict::Ok);
    }

    #[test]
    fn shard_numbers_come_from_queue_names() {
        assert_eq!(shard_number("check-payment.7"), 7);
        assert_eq!(shard_number("check-payment.0"), 0);
    }
}
