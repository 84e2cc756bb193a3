//! Reconnect backoff: how long to wait before trying Redis again after a failed call.
//!
//! The delays come from `backon` (start small, double, cap); this type only adds the `reset` on
//! success that our long-lived loops need, since they are not one retried future but a loop that
//! alternates between working and waiting.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// The longest wait between two attempts to reach Redis: short enough that a worker notices a
/// restarted Redis within seconds, long enough not to hammer a Redis that is still down.
pub(crate) const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(5);

/// Doubling delays from `first` up to [`MAX_RECONNECT_DELAY`], restarted by [`Backoff::reset`].
#[derive(Debug)]
pub(crate) struct Backoff {
    builder: ExponentialBuilder,
    delays: ExponentialBackoff,
}

impl Backoff {
    /// Delays starting at `first`.
    pub(crate) fn new(first: Duration) -> Self {
        let builder = ExponentialBuilder::new()
            .with_min_delay(first)
            .with_max_delay(MAX_RECONNECT_DELAY)
            .with_factor(2.0)
            .without_max_times();
        Self {
            delays: builder.build(),
            builder,
        }
    }

    /// The delay before the next attempt.
    pub(crate) fn next_delay(&mut self) -> Duration {
        // Unbounded (`without_max_times`), so the iterator never ends; the cap is a safe default.
        self.delays.next().unwrap_or(MAX_RECONNECT_DELAY)
    }

    /// Starts over from the first delay (the last attempt succeeded).
    pub(crate) fn reset(&mut self) {
        self.delays = self.builder.build();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_caps_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100));
        let delays: Vec<_> = (0..8).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }
}
