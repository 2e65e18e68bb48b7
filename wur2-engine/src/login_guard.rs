//! Failed-login bookkeeping per account and per address, in bounded memory.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::config::Config;

/// Failed logins per account and per address, and the lock-outs they lead to.
#[derive(Debug)]
pub(crate) struct LoginGuard {
    accounts: FailureLog<String>,
    addresses: FailureLog<IpAddr>,
    max_per_account: u32,
    max_per_address: u32,
}

impl LoginGuard {
    pub(crate) fn new(config: &Config) -> Self {
        let (capacity, window) = (
            config.max_tracked_login_failures,
            config.login_failure_window,
        );
        LoginGuard {
            accounts: FailureLog::new(capacity, window),
            addresses: FailureLog::new(capacity, window),
            max_per_account: config.max_login_failures_per_account,
            max_per_address: config.max_login_failures_per_address,
        }
    }

    /// Whether logging in to `account` (a username key) or from `address` is locked out.
    pub(crate) fn is_locked(&self, account: &str, address: IpAddr, now: Instant) -> bool {
        self.addresses
            .is_locked(&address, self.max_per_address, now)
            || self.accounts.is_locked(account, self.max_per_account, now)
    }

    /// One failed login to `account` from `address`.
    pub(crate) fn record(&mut self, account: &str, address: IpAddr, now: Instant) {
        self.accounts.record(account, now);
        self.addresses.record(&address, now);
    }

    /// `account` logged in: its failures are forgotten (its address's are not).
    pub(crate) fn clear(&mut self, account: &str) {
        self.accounts.clear(account);
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    window_start: Instant,
    count: u32,
}

/// Counts failures per key within a fixed window; remembers at most `capacity` keys,
/// forgetting expired ones first and then the oldest.
#[derive(Debug)]
struct FailureLog<K: Ord + Clone> {
    entries: BTreeMap<K, Failures>,
    capacity: usize,
    window: Duration,
}

impl<K: Ord + Clone> FailureLog<K> {
    fn new(capacity: usize, window: Duration) -> Self {
        FailureLog {
            entries: BTreeMap::new(),
            capacity,
            window,
        }
    }

    /// Whether `key` has `limit` or more failures in its current window.
    fn is_locked<Q>(&self, key: &Q, limit: u32, now: Instant) -> bool
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.entries
            .get(key)
            .is_some_and(|f| f.count >= limit && !self.expired(f, now))
    }

    /// Records one failure of `key` at `now`.
    fn record<Q>(&mut self, key: &Q, now: Instant)
    where
        K: Borrow<Q>,
        Q: Ord + ToOwned<Owned = K> + ?Sized,
    {
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
                key.to_owned(),
                Failures {
                    window_start: now,
                    count: 1,
                },
            );
        }
    }

    /// Forgets `key`, after a successful login.
    fn clear<Q>(&mut self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
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
    fn len(&self) -> usize {
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
        let mut log: FailureLog<String> = FailureLog::new(10, window);
        for _ in 0..5 {
            assert!(!log.is_locked("bob", 5, start));
            log.record("bob", start);
        }
        assert!(log.is_locked("bob", 5, start + Duration::from_secs(899)));
        assert!(!log.is_locked("bob", 5, start + window));
    }

    #[test]
    fn memory_stays_bounded_under_many_keys() {
        let start = Instant::now();
        let mut log: FailureLog<u32> = FailureLog::new(100, Duration::from_secs(900));
        for i in 0..10_000u32 {
            log.record(&i, start + Duration::from_millis(u64::from(i)));
        }
        assert!(log.len() <= 100);
        assert!(log.is_locked(&9_999, 1, start + Duration::from_secs(10)));
    }
}
