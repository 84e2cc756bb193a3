//! Redis's own health, from `INFO` of each primary: memory against `maxmemory`, the eviction
//! policy (paywatch's records and jobs must never be evicted: `noeviction`), replicas, and
//! whether writes to disk succeed.

use std::collections::HashMap;

use paywatch_queue::RedisConn;

use super::model::{RedisHealth, RedisNodeHealth, Verdict};
use super::{AdminError, MEMORY_DEGRADED, MEMORY_FAILING, worst};

/// The fields of an `INFO` answer (`name:value` lines; sections and comments skipped).
fn fields(info: &str) -> HashMap<&str, &str> {
    info.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.trim_end().split_once(':'))
        .collect()
}

/// One primary's health from its `INFO memory replication persistence`; `sentinel` when a
/// failover depends on its replicas.
pub(super) fn node(name: String, info: &str, sentinel: bool) -> RedisNodeHealth {
    let f = fields(info);
    let number = |k: &str| f.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let used = number("used_memory");
    let max = number("maxmemory");
    let policy = f
        .get("maxmemory_policy")
        .copied()
        .unwrap_or("unknown")
        .to_owned();
    let role = f.get("role").copied().unwrap_or("unknown").to_owned();
    let replicas = number("connected_slaves");
    let aof = number("aof_enabled") == 1;
    let disk_ok = [
        "aof_last_write_status",
        "rdb_last_bgsave_status",
        "aof_last_bgrewrite_status",
    ]
    .iter()
    .all(|k| f.get(k).is_none_or(|v| *v == "ok"));
    let ratio = (max > 0).then(|| used as f64 / max as f64);
    let mut findings: Vec<(Verdict, String)> = Vec::new();
    if policy != "noeviction" {
        findings.push((
            Verdict::Failing,
            format!(
                "maxmemory-policy is {policy}: at its memory limit Redis may evict order \
                 records and check jobs; set maxmemory-policy noeviction (CONFIG SET \
                 maxmemory-policy noeviction, and in redis.conf)"
            ),
        ));
    }
    if let Some(r) = ratio {
        let pct = (r * 100.0).round();
        if r >= MEMORY_FAILING {
            findings.push((
                Verdict::Failing,
                format!(
                    "memory at {pct}% of maxmemory: at the limit every write (submissions, \
                     reschedules) is refused; raise maxmemory or clear dead letters"
                ),
            ));
        } else if r >= MEMORY_DEGRADED {
            findings.push((
                Verdict::Degraded,
                format!("memory at {pct}% of maxmemory: raise maxmemory before it fills"),
            ));
        }
    }
    if role != "master" && role != "unknown" {
        findings.push((
            Verdict::Failing,
            format!("the node answers as {role}, not a primary: writes are refused"),
        ));
    }
    if !disk_ok {
        findings.push((
            Verdict::Failing,
            "Redis's last write to disk failed (AOF or RDB): check its disk space and logs"
                .to_owned(),
        ));
    }
    if sentinel && replicas == 0 {
        findings.push((
            Verdict::Degraded,
            "no replica is connected to the primary: Sentinel has nothing to fail over to"
                .to_owned(),
        ));
    }
    let (verdict, cause) = findings
        .into_iter()
        .fold((Verdict::Ok, None), |(v, c), (fv, fc)| {
            if fv > v { (fv, Some(fc)) } else { (v, c) }
        });
    RedisNodeHealth {
        node: name,
        verdict,
        cause,
        role,
        used_memory: used,
        maxmemory: max,
        memory_ratio: ratio,
        maxmemory_policy: policy,
        connected_replicas: replicas,
        aof_enabled: aof,
        persistence_ok: disk_ok,
    }
}

/// Every primary's health.
pub(super) async fn health(conn: &RedisConn, sentinel: bool) -> Result<RedisHealth, AdminError> {
    let infos = conn
        .info_per_primary(&["memory", "replication", "persistence"])
        .await
        .map_err(super::redis_error)?;
    let nodes: Vec<RedisNodeHealth> = infos
        .into_iter()
        .map(|(name, info)| node(name, &info, sentinel))
        .collect();
    let (verdict, mut cause) = worst(nodes.iter().map(|n| (n.verdict, &n.cause)));
    if nodes.len() > 1
        && let Some(bad) = nodes
            .iter()
            .find(|n| n.verdict == verdict && n.cause.is_some())
    {
        cause = cause.map(|c| format!("{}: {c}", bad.node));
    }
    Ok(RedisHealth {
        verdict,
        cause,
        nodes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "# Memory\r\nused_memory:900\r\nmaxmemory:1000\r\nmaxmemory_policy:allkeys-lru\r\n\
        # Replication\r\nrole:master\r\nconnected_slaves:0\r\n# Persistence\r\naof_enabled:0\r\n\
        rdb_last_bgsave_status:ok\r\naof_last_write_status:ok\r\n";

    #[test]
    fn an_evicting_full_redis_fails() {
        let n = node("primary".into(), INFO, false);
        assert_eq!(n.verdict, Verdict::Failing);
        assert!(
            n.cause
                .as_deref()
                .is_some_and(|c| c.contains("allkeys-lru")),
            "{n:?}"
        );
        assert_eq!(n.memory_ratio, Some(0.9));
        assert!(!n.aof_enabled && n.persistence_ok);
        let fine = INFO
            .replace("allkeys-lru", "noeviction")
            .replace("maxmemory:1000", "maxmemory:0");
        let n = node("primary".into(), &fine, false);
        assert_eq!((n.verdict, n.cause), (Verdict::Ok, None));
        let n = node("primary".into(), &fine, true);
        assert_eq!(n.verdict, Verdict::Degraded, "no replica under Sentinel");
    }
}
