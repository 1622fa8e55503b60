//! When a failed delivery is tried again: exponential backoff from one second, capped, for a
//! bounded number of attempts.

use std::time::Duration;

pub const FIRST_RETRY: Duration = Duration::from_secs(1);
pub const MAX_RETRY: Duration = Duration::from_secs(15 * 60);

/// What to do after attempt number `attempts` (1-based) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    RetryIn(Duration),
    GiveUp,
}

pub fn after_failure(attempts: u32, max_attempts: u32) -> AfterFailure {
    if attempts >= max_attempts {
        return AfterFailure::GiveUp;
    }
    let exponent = attempts.saturating_sub(1).min(20);
    AfterFailure::RetryIn(FIRST_RETRY.saturating_mul(1 << exponent).min(MAX_RETRY))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_one_second_until_the_attempts_run_out() {
        let delays: Vec<AfterFailure> = (1..=6).map(|n| after_failure(n, 6)).collect();
        let secs = |s| AfterFailure::RetryIn(Duration::from_secs(s));
        assert_eq!(delays, [secs(1), secs(2), secs(4), secs(8), secs(16), AfterFailure::GiveUp]);
        assert_eq!(after_failure(1, 1), AfterFailure::GiveUp);
        assert_eq!(after_failure(19, 20), AfterFailure::RetryIn(MAX_RETRY));
    }
}
