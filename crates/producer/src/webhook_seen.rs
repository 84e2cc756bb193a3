//! When each provider's webhooks were last seen, for the health verdict ("are provider webhooks
//! arriving?", [`paywatch_core::health`]).
//!
//! A layer around the webhook routes notes each answered webhook as accepted (2xx) or refused
//! (4xx: a wrong secret, an unreadable body); a 5xx is paywatch's own trouble and says nothing
//! about the provider. At most one write per provider and outcome per second per process, off
//! the request's path, so a storm of webhooks costs Redis next to nothing.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, PoisonError};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use paywatch_core::Provider;
use paywatch_core::health::webhook_member;
use paywatch_core::store::keys;
use paywatch_queue::RedisConn;

/// The least time between two writes of one provider's last-seen time, in milliseconds.
const THROTTLE_MS: u64 = 1000;

/// Member → when this process last wrote it (Unix ms).
static WRITTEN: LazyLock<Mutex<HashMap<String, u64>>> = LazyLock::new(Mutex::default);

/// Where the notes go.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The producer's connection.
    pub conn: RedisConn,
    /// The deployment's key prefix.
    pub prefix: String,
}

/// Whether this process wrote `member` less than [`THROTTLE_MS`] ago; if not, takes the slot.
fn throttled(member: &str, now: u64) -> bool {
    let mut written = WRITTEN.lock().unwrap_or_else(PoisonError::into_inner);
    match written.get(member) {
        Some(at) if now.saturating_sub(*at) < THROTTLE_MS => true,
        _ => {
            written.insert(member.to_owned(), now);
            false
        }
    }
}

/// The layer's function: runs the webhook, then notes it.
pub async fn note(State(seen): State<Seen>, request: Request, next: Next) -> Response {
    let provider = request
        .uri()
        .path()
        .strip_prefix("/webhooks/")
        .and_then(|name| name.parse::<Provider>().ok());
    let response = next.run(request).await;
    let status = response.status();
    let accepted = if status.is_success() {
        true
    } else if status.is_client_error() {
        false
    } else {
        return response;
    };
    if let Some(provider) = provider {
        let member = webhook_member(provider, accepted);
        let now = chrono::Utc::now().timestamp_millis().max(0) as u64;
        if !throttled(&member, now) {
            let mut conn = seen.conn.clone();
            let key = keys::health_webhooks(&seen.prefix);
            tokio::spawn(async move {
                // GT: of two producers, the later time stays.
                let written: Result<i64, _> = redis::cmd("ZADD")
                    .arg(key)
                    .arg("GT")
                    .arg(now)
                    .arg(member)
                    .query_async(&mut conn)
                    .await;
                if let Err(e) = written {
                    tracing::debug!(error = %e, "webhook last-seen time not written");
                }
            });
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_write_per_second_per_member() {
        assert!(!throttled("test-member", 10_000));
        assert!(throttled("test-member", 10_500));
        assert!(!throttled("test-member", 11_000));
        assert!(!throttled("other-member", 10_500));
    }
}
