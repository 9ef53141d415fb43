//! Capped exponential backoff with jitter, so a fleet of agents does not reconnect in lockstep
//! after a server restart.

use std::time::Duration;

use rand::RngExt;

/// Delays between reconnection attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    /// Starts at `initial`, doubles per attempt, never exceeds `cap`.
    pub fn new(initial: Duration, cap: Duration) -> Self {
        Self {
            initial,
            cap,
            attempt: 0,
        }
    }

    /// The delay before the next attempt: the capped exponential value, scaled by a random
    /// factor in [0.5, 1.0].
    pub fn next_delay(&mut self) -> Duration {
        let exponential = self
            .initial
            .saturating_mul(2u32.saturating_pow(self.attempt.min(20)));
        self.attempt = self.attempt.saturating_add(1);
        let capped = exponential.min(self.cap);
        capped.mul_f64(rand::rng().random_range(0.5..=1.0))
    }

    /// Back to the initial delay, after a connection that worked.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_millis(250), Duration::from_secs(30))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps_with_jitter() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let first = backoff.next_delay();
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        let second = backoff.next_delay();
        assert!(second >= Duration::from_millis(100) && second <= Duration::from_millis(200));
        for _ in 0..30 {
            assert!(backoff.next_delay() <= Duration::from_secs(1));
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }
}
