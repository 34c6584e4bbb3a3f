//! A short, bounded wait that polls before a thread goes to sleep.
//!
//! Waking a sleeping thread costs far more than the work of a round on a
//! virtual machine whose idle processors halt (tens of microseconds, measured
//! with `cargo bench --bench cluster -- clients=1`). A thread that just
//! finished some work usually gets more within microseconds, so it first
//! polls for a moment, yielding the processor to any thread that can run,
//! and only then sleeps. `Config::spin` bounds the moment; zero turns it off.

use std::time::{Duration, Instant};

/// Polls `ready` for at most `limit`; true as soon as it holds.
pub(crate) fn spin_until(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    if limit.is_zero() {
        return ready();
    }
    let start = Instant::now();
    loop {
        for _ in 0..2 {
            if ready() {
                return true;
            }
            std::hint::spin_loop();
        }
        if start.elapsed() >= limit {
            return ready();
        }
        std::thread::yield_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_at_once_when_ready_and_gives_up_after_the_limit() {
        assert!(spin_until(Duration::from_secs(60), || true));
        assert!(!spin_until(Duration::ZERO, || false));
        let start = Instant::now();
        assert!(!spin_until(Duration::from_millis(2), || false));
        assert!(start.elapsed() >= Duration::from_millis(2));
        let mut calls = 0;
        assert!(spin_until(Duration::from_secs(60), || {
            calls += 1;
            calls == 40
        }));
    }
}
