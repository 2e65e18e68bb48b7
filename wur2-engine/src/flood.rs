//! Flood control for one connection: a token bucket in its GCRA form (one instant of state).

use std::time::{Duration, Instant};

/// Lets `burst` lines through at once and `rate` lines per second after that.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FloodBucket {
    /// The theoretical arrival time of the next line at the steady rate.
    next_due: Option<Instant>,
}

impl FloodBucket {
    /// Takes one line at `now`; `Err(at)` means the line must wait until `at`.
    /// A `rate` of 0 lets everything through.
    pub(crate) fn take(&mut self, now: Instant, rate: u32, burst: u32) -> Result<(), Instant> {
        if rate == 0 {
            return Ok(());
        }
        let interval = Duration::from_secs(1) / rate;
        let tolerance = interval.saturating_mul(burst.max(1));
        let due = self.next_due.map_or(now, |due| due.max(now));
        let next_due = due.checked_add(interval).unwrap_or(due);
        let ahead = next_due.saturating_duration_since(now);
        if ahead <= tolerance {
            self.next_due = Some(next_due);
            Ok(())
        } else {
            Err(now.checked_add(ahead - tolerance).unwrap_or(now))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_passes_then_lines_wait_for_the_rate() {
        let start = Instant::now();
        let mut bucket = FloodBucket::default();
        for _ in 0..20 {
            assert!(bucket.take(start, 10, 20).is_ok());
        }
        let wait_until = bucket.take(start, 10, 20).unwrap_err();
        assert_eq!(wait_until - start, Duration::from_millis(100));
        assert!(bucket.take(wait_until, 10, 20).is_ok());
        assert!(bucket.take(wait_until, 10, 20).is_err());
    }

    #[test]
    fn rate_zero_turns_flood_control_off() {
        let start = Instant::now();
        let mut bucket = FloodBucket::default();
        assert!((0..10_000).all(|_| bucket.take(start, 0, 1).is_ok()));
    }

    #[test]
    fn an_idle_connection_gets_its_full_burst_back() {
        let start = Instant::now();
        let mut bucket = FloodBucket::default();
        for _ in 0..20 {
            bucket.take(start, 10, 20).unwrap();
        }
        let later = start + Duration::from_secs(60);
        assert!((0..20).all(|_| bucket.take(later, 10, 20).is_ok()));
    }
}
