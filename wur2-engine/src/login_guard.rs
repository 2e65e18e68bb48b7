//! Failed-login bookkeeping per account and per address, in bounded memory.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
struct Failures {
    window_start: Instant,
    count: u32,
}

/// Counts failures per key within a fixed window; remembers at most `capacity` keys,
/// forgetting expired ones first and then the oldest.
#[derive(Debug)]
pub(crate) struct FailureLog<K: Ord + Clone> {
    entries: BTreeMap<K, Failures>,
    capacity: usize,
    window: Duration,
}

impl<K: Ord + Clone> FailureLog<K> {
    pub(crate) fn new(capacity: usize, window: Duration) -> Self {
        FailureLog {
            entries: BTreeMap::new(),
            capacity,
            window,
        }
    }

    /// Whether `key` has `limit` or more failures in its current window.
    pub(crate) fn is_locked(&self, key: &K, limit: u32, now: Instant) -> bool {
        self.entries
            .get(key)
            .is_some_and(|f| f.count >= limit && !self.expired(f, now))
    }

    /// Records one failure of `key` at `now`.
    pub(crate) fn record(&mut self, key: &K, now: Instant) {
        if let Some(failures) = self.entries.get_mut(key) {
            if now.saturating_duration_since(failures.window_start) >= self.window {
                *failures = Failures {
                    window_start: now,
                    count: 0,
                };
            }
            failures.count = failures.count.saturating_add(1);
            return;
        }
        if self.entries.len() >= self.capacity {
            self.make_room(now);
        }
        if self.capacity > 0 {
            self.entries.insert(
                key.clone(),
                Failures {
                    window_start: now,
                    count: 1,
                },
            );
        }
    }

    /// Forgets `key`, after a successful login.
    pub(crate) fn clear(&mut self, key: &K) {
        self.entries.remove(key);
    }

    fn expired(&self, failures: &Failures, now: Instant) -> bool {
        now.saturating_duration_since(failures.window_start) >= self.window
    }

    fn make_room(&mut self, now: Instant) {
        let window = self.window;
        self.entries
            .retain(|_, f| now.saturating_duration_since(f.window_start) < window);
        while self.entries.len() >= self.capacity {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, f)| f.window_start)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(key) => self.entries.remove(&key),
                None => break,
            };
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_at_the_limit_and_unlocks_when_the_window_passes() {
        let start = Instant::now();
        let window = Duration::from_secs(900);
        let mut log = FailureLog::new(10, window);
        for _ in 0..5 {
            assert!(!log.is_locked(&"bob", 5, start));
            log.record(&"bob", start);
        }
        assert!(log.is_locked(&"bob", 5, start + Duration::from_secs(899)));
        assert!(!log.is_locked(&"bob", 5, start + window));
    }

    #[test]
    fn memory_stays_bounded_under_many_keys() {
        let start = Instant::now();
        let mut log = FailureLog::new(100, Duration::from_secs(900));
        for i in 0..10_000u32 {
            log.record(&i, start + Duration::from_millis(u64::from(i)));
        }
        assert!(log.len() <= 100);
        assert!(log.is_locked(&9_999, 1, start + Duration::from_secs(10)));
    }
}
