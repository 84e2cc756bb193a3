//! The health signals the processes leave in Redis for the operator's health verdict
//! (`GET /v1/admin/health`): what the queues and order records cannot tell by themselves.
//!
//! Every signal is written off the per-order path: a worker adds its counters up in memory and
//! writes them once per [`REPORT_INTERVAL`] (one pipeline, whatever the traffic); the producer
//! notes a provider webhook at most once a second per provider. The keys are in
//! [`crate::store::keys`] (`health_*`).

use std::time::Duration;

use crate::{Channel, Provider};

/// How often a worker writes its health report.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(5);

/// A worker not heard from for this long is taken as gone.
pub const WORKER_SILENCE: Duration = Duration::from_secs(30);

/// Worker reports older than this are trimmed from the workers set.
pub const WORKER_FORGET: Duration = Duration::from_secs(3600);

/// How long a minute's counters are kept after their minute.
pub const MINUTE_TTL: Duration = Duration::from_secs(15 * 60);

/// The minute a Unix time in milliseconds falls in.
pub fn minute_of(unix_ms: u64) -> u64 {
    unix_ms / 60_000
}

/// The counter field of provider calls to `provider`.
pub fn provider_calls(provider: Provider) -> String {
    format!("provider:{provider}:calls")
}

/// The counter field of provider calls to `provider` that failed transiently (5xx, timeouts,
/// connection errors: what the circuit breaker counts).
pub fn provider_failures(provider: Provider) -> String {
    format!("provider:{provider}:failures")
}

/// The counter field of delivery attempts on `channel`.
pub fn notify_attempts(channel: Channel) -> String {
    format!("notify:{channel}:attempts")
}

/// The counter field of delivery attempts on `channel` that failed (to be retried, or for good).
pub fn notify_failures(channel: Channel) -> String {
    format!("notify:{channel}:failures")
}

/// The member of the workers set for a worker named `name` serving `queues`.
pub fn worker_member(name: &str, queues: &[String]) -> String {
    format!("{} {name}", queues.join(","))
}

/// The queues and the name a workers-set member holds.
pub fn parse_worker_member(member: &str) -> (Vec<String>, String) {
    let (queues, name) = member.split_once(' ').unwrap_or((member, ""));
    (
        queues
            .split(',')
            .filter(|q| !q.is_empty())
            .map(str::to_owned)
            .collect(),
        name.to_owned(),
    )
}

/// The member of the webhooks set for a webhook from `provider`, accepted or refused.
pub fn webhook_member(provider: Provider, accepted: bool) -> String {
    if accepted {
        provider.to_string()
    } else {
        format!("{provider}:refused")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_members_read_back() {
        let member = worker_member(
            "host-1/42",
            &["check-payment".into(), "notify-email".into()],
        );
        assert_eq!(member, "check-payment,notify-email host-1/42");
        let (queues, name) = parse_worker_member(&member);
        assert_eq!(queues, ["check-payment", "notify-email"]);
        assert_eq!(name, "host-1/42");
        assert_eq!(parse_worker_member("garbage").1, "");
    }

    #[test]
    fn fields_name_their_subject() {
        assert_eq!(
            provider_calls(Provider::Cashless),
            "provider:cashless:calls"
        );
        assert_eq!(notify_failures(Channel::Webhook), "notify:webhook:failures");
        assert_eq!(
            webhook_member(Provider::HandCash, false),
            "handcash:refused"
        );
        assert_eq!(minute_of(120_000), 2);
    }
}
