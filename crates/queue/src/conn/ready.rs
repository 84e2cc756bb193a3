//! Waiting for Redis: a process may start before Redis answers, while it loads its data, or
//! while a Cluster or Sentinel is electing a primary. It waits (doubling pauses up to 5 s,
//! logged once) instead of exiting, and gives up only on errors waiting cannot mend.

use std::future::Future;
use std::time::Duration;

use redis::{ErrorKind, RedisError, ServerErrorKind};

use crate::backoff::Backoff;

/// The first pause before trying Redis again.
const FIRST_DELAY: Duration = Duration::from_millis(100);

/// Whether `e` says Redis is not there *yet*: down, unreachable, loading its data, or between
/// primaries. Errors of configuration (bad password, missing permission, unknown command) are
/// not: waiting would not mend them.
pub fn is_transient(e: &RedisError) -> bool {
    if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout() {
        return true;
    }
    matches!(
        e.kind(),
        ErrorKind::Server(
            ServerErrorKind::BusyLoading
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::TryAgain
                | ServerErrorKind::MasterDown
        ) | ErrorKind::MasterNameNotFoundBySentinel
            | ErrorKind::ClusterConnectionNotFound
    ) || (e.kind() == ErrorKind::Client && e.to_string().contains("Couldn't open connection"))
}

/// Runs `attempt` until it succeeds or fails with an error `transient` does not accept, pausing
/// between attempts. The first transient failure is logged (naming `what`) once, and so is
/// the success that ends the wait.
pub async fn until_ready<T, E, F, Fut>(
    what: &str,
    transient: impl Fn(&E) -> bool,
    mut attempt: F,
) -> Result<T, E>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut backoff = Backoff::new(FIRST_DELAY);
    let mut waited = false;
    loop {
        match attempt().await {
            Ok(v) => {
                if waited {
                    tracing::info!(what, "Redis answers; going on");
                }
                return Ok(v);
            }
            Err(e) if transient(&e) => {
                if !waited {
                    tracing::warn!(
                        what,
                        error = %e,
                        "Redis is not ready; waiting for it (retrying with backoff up to 5 s)"
                    );
                    waited = true;
                }
                tokio::time::sleep(backoff.next_delay()).await;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_mends_outages_not_mistakes() {
        let loading = RedisError::from((
            ErrorKind::Server(ServerErrorKind::BusyLoading),
            "LOADING",
            "Redis is loading the dataset in memory".to_owned(),
        ));
        assert!(is_transient(&loading));
        let refused = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(is_transient(&refused));
        let noperm = RedisError::from((
            ErrorKind::Server(ServerErrorKind::NoPerm),
            "NOPERM",
            "this user has no permissions".to_owned(),
        ));
        assert!(!is_transient(&noperm));
        let auth = RedisError::from((ErrorKind::AuthenticationFailed, "WRONGPASS"));
        assert!(!is_transient(&auth));
    }

    #[tokio::test]
    async fn retries_transient_failures_and_stops_at_the_first_other() {
        let mut calls = 0;
        let r: Result<u32, RedisError> = until_ready("test", is_transient, || {
            calls += 1;
            let n = calls;
            async move {
                if n < 3 {
                    Err(RedisError::from(std::io::Error::from(
                        std::io::ErrorKind::ConnectionRefused,
                    )))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(r.ok(), Some(3));
        let mut calls = 0;
        let r: Result<u32, RedisError> = until_ready("test", is_transient, || {
            calls += 1;
            async {
                Err(RedisError::from((
                    ErrorKind::AuthenticationFailed,
                    "WRONGPASS",
                )))
            }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls, 1);
    }
}
