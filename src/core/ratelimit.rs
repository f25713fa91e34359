//! Keeps a failure that repeats for every message from flooding the log:
//! one line per interval, saying how many were left unsaid.

/// A per-process limiter for one kind of log line.
#[derive(Debug, Clone, Copy)]
pub struct LogLimiter {
    interval_secs: u64,
    last_logged: Option<u64>,
    suppressed: u64,
}

impl LogLimiter {
    pub const fn new(interval_secs: u64) -> Self {
        LogLimiter { interval_secs, last_logged: None, suppressed: 0 }
    }

    /// Whether a line may be logged at `now_secs`; if so, returns how many
    /// were suppressed since the last one.
    pub fn permit(&mut self, now_secs: u64) -> Option<u64> {
        match self.last_logged {
            Some(last) if now_secs.saturating_sub(last) < self.interval_secs => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last_logged = Some(now_secs);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_suppressed_count() {
        let mut l = LogLimiter::new(10);
        assert_eq!(l.permit(100), Some(0));
        assert_eq!(l.permit(100), None);
        assert_eq!(l.permit(109), None);
        assert_eq!(l.permit(110), Some(2));
        assert_eq!(l.permit(111), None);
        assert_eq!(l.permit(500), Some(1));
    }
}
