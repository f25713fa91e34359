//! Keeps a failure that repeats for every message from flooding the log:
//! one line per interval, saying how many were left unsaid. The limiter is
//! made of atomics so that one instance in shared memory limits all the
//! processes of a server together.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
#[repr(C)]
pub struct LogLimiter {
    /// When the last line was allowed, in seconds plus one; 0 for never.
    last_logged: AtomicU64,
    suppressed: AtomicU64,
}

impl LogLimiter {
    /// Whether a line may be logged at `now_secs`, at most one per
    /// `interval_secs`; if so, returns how many were suppressed since the
    /// last one.
    pub fn permit(&self, now_secs: u64, interval_secs: u64) -> Option<u64> {
        let last = self.last_logged.load(Ordering::Acquire);
        let due = last == 0 || now_secs.saturating_sub(last - 1) >= interval_secs;
        // Of processes racing for the same slot, one wins the exchange.
        if due
            && self
                .last_logged
                .compare_exchange(last, now_secs + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::AcqRel));
        }
        self.suppressed.fetch_add(1, Ordering::AcqRel);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_suppressed_count() {
        let l = LogLimiter::default();
        assert_eq!(l.permit(100, 10), Some(0));
        assert_eq!(l.permit(100, 10), None);
        assert_eq!(l.permit(109, 10), None);
        assert_eq!(l.permit(110, 10), Some(2));
        assert_eq!(l.permit(111, 10), None);
        assert_eq!(l.permit(500, 10), Some(1));
    }

    #[test]
    fn time_zero_is_a_time_like_any_other() {
        let l = LogLimiter::default();
        assert_eq!(l.permit(0, 10), Some(0));
        assert_eq!(l.permit(5, 10), None);
        assert_eq!(l.permit(10, 10), Some(1));
    }

    #[test]
    fn racing_threads_get_one_line() {
        let l = LogLimiter::default();
        let allowed: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8).map(|_| s.spawn(|| l.permit(42, 10).is_some() as usize)).collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(allowed, 1);
        assert_eq!(l.permit(52, 10), Some(7));
    }
}
