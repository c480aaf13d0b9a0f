//! Retry policy: exponential backoff with full jitter (delay = random(0, min(cap, base × 2^n))),
//! a maximum attempt count, and an injectable random source so delays are testable exactly.
//! Which errors are retried is decided by [`crate::Error::is_retryable`], nowhere else. The SDK's
//! own retries are disabled (see `client`), so attempts do not stack.

use std::time::Duration;

use rand::Rng as _;

/// Retry settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryConfig {
    /// First backoff ceiling.
    pub base: Duration,
    /// Largest backoff ceiling.
    pub cap: Duration,
    /// Attempts per call, the first included.
    pub max_attempts: u32,
}

impl Default for RetryConfig {
    /// 10 attempts, 100 ms base, 20 s cap: up to ~1.5 min of retrying per part, enough to ride
    /// out a `SlowDown` episode without hanging forever.
    fn default() -> Self {
        Self { base: Duration::from_millis(100), cap: Duration::from_secs(20), max_attempts: 10 }
    }
}

impl RetryConfig {
    /// Backoff before retry number `retry` (0-based), scaled by `unit` in [0, 1).
    #[must_use]
    pub fn delay_with(&self, retry: u32, unit: f64) -> Duration {
        let ceiling = self.base.saturating_mul(1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX)).min(self.cap);
        ceiling.mul_f64(unit.clamp(0.0, 1.0))
    }

    /// Backoff before retry number `retry`, with thread-local randomness.
    #[must_use]
    pub fn delay(&self, retry: u32) -> Duration {
        self.delay_with(retry, rand::rng().random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_jitter_bounds_and_exact_values() {
        let r = RetryConfig { base: Duration::from_millis(100), cap: Duration::from_secs(5), max_attempts: 5 };
        assert_eq!(r.delay_with(0, 0.5), Duration::from_millis(50));
        assert_eq!(r.delay_with(3, 1.0), Duration::from_millis(800));
        assert_eq!(r.delay_with(10, 1.0), Duration::from_secs(5));
        assert_eq!(r.delay_with(100, 1.0), Duration::from_secs(5));
        assert_eq!(r.delay_with(4, 0.0), Duration::ZERO);
        for n in 0..40 {
            let d = r.delay(n);
            assert!(d <= r.cap, "{n}: {d:?}");
        }
    }
}
