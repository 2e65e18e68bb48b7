//! Failed-login bookkeeping, in bounded memory: who is locked out, whose logins are slowed
//! down, and which addresses an account's owner logged in from before.
//!
//! The policy throttles the attacker, not the owner:
//! - an (account, address) pair with too many failures is locked: that address cannot
//!   log in to that account until the window passes, every other address still can;
//! - an address with too many failures over all accounts is locked (password spraying);
//! - an account with too many failures summed over all addresses is slowed down, never
//!   locked: each login to it waits a little (growing, capped) before its password is
//!   checked, and a correct password still gets in;
//! - an address that logged in to the account successfully before skips the slowdown.
//!
//! Failures are counted per account key whether the account exists or not, so a wrong
//! password and an unknown user are locked and slowed alike. IPv6 addresses count per /64
//! (one host's privacy addresses are one address). It never reads a clock: every call
//! takes `now`.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::address::address_key;
use crate::config::Config;

/// What the guard says about a login attempt, before its password is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Refused: this address failed too often, for this account or overall.
    Locked,
    /// Check the password after this long (zero: at once).
    After(Duration),
}

/// Failed logins per account, per address and per (account, address), the lock-outs and
/// slowdowns they lead to, and the addresses each account logged in from.
#[derive(Debug)]
pub(crate) struct LoginGuard {
    pairs: FailureLog<(String, IpAddr)>,
    accounts: FailureLog<String>,
    addresses: FailureLog<IpAddr>,
    known: KnownAddresses,
    max_per_pair: u32,
    max_per_address: u32,
    slowdown_after: u32,
    slowdown_first: Duration,
    slowdown_max: Duration,
}

impl LoginGuard {
    pub(crate) fn new(config: &Config) -> Self {
        let (capacity, window) = (
            config.max_tracked_login_failures,
            config.login_failure_window,
        );
        LoginGuard {
            pairs: FailureLog::new(capacity, window),
            accounts: FailureLog::new(capacity, window),
            addresses: FailureLog::new(capacity, window),
            known: KnownAddresses::new(
                config.max_accounts_with_known_addresses,
                config.known_addresses_per_account,
            ),
            max_per_pair: config.max_login_failures_per_account_and_address,
            max_per_address: config.max_login_failures_per_address,
            slowdown_after: config.login_slowdown_after_failures,
            slowdown_first: config.login_slowdown_first,
            slowdown_max: config.login_slowdown_max,
        }
    }

    /// Whether a login to `account` (a username key) from `address` may go ahead, and
    /// after how long.
    pub(crate) fn admit(&self, account: &str, address: IpAddr, now: Instant) -> Admission {
        let address = address_key(address);
        if self
            .addresses
            .is_locked(&address, self.max_per_address, now)
            || self
                .pairs
                .is_locked(&(account.to_owned(), address), self.max_per_pair, now)
        {
            return Admission::Locked;
        }
        if self.known.contains(account, address) {
            return Admission::After(Duration::ZERO);
        }
        Admission::After(self.slowdown(self.accounts.count(account, now)))
    }

    /// One failed login from `address`, to `account` when it names one (a username that
    /// could exist); a malformed name counts against the address only.
    pub(crate) fn record_failure(&mut self, account: Option<&str>, address: IpAddr, now: Instant) {
        let address = address_key(address);
        self.addresses.record(&address, now);
        if let Some(account) = account {
            self.accounts.record(account, now);
            self.pairs.record(&(account.to_owned(), address), now);
        }
    }

    /// `address` logged in to (or registered) `account`: its failures there are forgotten
    /// and it is remembered as the owner's. The account's failures from elsewhere stay:
    /// they are someone else's.
    pub(crate) fn record_success(&mut self, account: &str, address: IpAddr) {
        let address = address_key(address);
        self.pairs.clear(&(account.to_owned(), address));
        self.known.remember(account, address);
    }

    /// The wait before checking a password of an account with `failures` recent failures.
    fn slowdown(&self, failures: u32) -> Duration {
        let Some(beyond) = failures.checked_sub(self.slowdown_after) else {
            return Duration::ZERO;
        };
        // 2^16 times the first wait is past any sensible cap; stop doubling there.
        let factor = 1u32 << beyond.min(16);
        self.slowdown_first
            .saturating_mul(factor)
            .min(self.slowdown_max)
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    window_start: Instant,
    count: u32,
    /// This entry's place in [`FailureLog::by_age`] (with `window_start`).
    stamp: u64,
}

/// Counts failures per key within a fixed window; remembers at most `capacity` keys,
/// forgetting expired ones first and then the oldest. Every step is logarithmic in the
/// keys remembered (an attacker filling it makes no step slower than that).
#[derive(Debug)]
struct FailureLog<K: Ord + Clone> {
    entries: BTreeMap<K, Failures>,
    /// The keys by window start (then by stamp, to tell equal starts apart): the oldest
    /// first.
    by_age: BTreeMap<(Instant, u64), K>,
    next_stamp: u64,
    capacity: usize,
    window: Duration,
}

impl<K: Ord + Clone> FailureLog<K> {
    fn new(capacity: usize, window: Duration) -> Self {
        FailureLog {
            entries: BTreeMap::new(),
            by_age: BTreeMap::new(),
            next_stamp: 0,
            capacity,
            window,
        }
    }

    /// A new stamp for an entry's place in `by_age`.
    fn stamp(&mut self) -> u64 {
        self.next_stamp += 1;
        self.next_stamp
    }

    /// Failures of `key` in its current window (0 once the window has passed).
    fn count<Q>(&self, key: &Q, now: Instant) -> u32
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.entries
            .get(key)
            .filter(|f| !self.expired(f, now))
            .map_or(0, |f| f.count)
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
        let window = self.window;
        let stamp = self.stamp();
        if let Some(failures) = self.entries.get_mut(key) {
            if now.saturating_duration_since(failures.window_start) >= window {
                let old = (failures.window_start, failures.stamp);
                *failures = Failures {
                    window_start: now,
                    count: 0,
                    stamp,
                };
                if let Some(key) = self.by_age.remove(&old) {
                    self.by_age.insert((now, stamp), key);
                }
            }
            failures.count = failures.count.saturating_add(1);
            return;
        }
        if self.entries.len() >= self.capacity {
            self.make_room(now);
        }
        if self.capacity > 0 {
            let owned = key.to_owned();
            self.by_age.insert((now, stamp), owned.clone());
            self.entries.insert(
                owned,
                Failures {
                    window_start: now,
                    count: 1,
                    stamp,
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
        if let Some(failures) = self.entries.remove(key) {
            self.by_age.remove(&(failures.window_start, failures.stamp));
        }
    }

    fn expired(&self, failures: &Failures, now: Instant) -> bool {
        now.saturating_duration_since(failures.window_start) >= self.window
    }

    /// Forgets the oldest entries, expired or not, until there is room for one more: the
    /// expired ones are the oldest, so they go first.
    fn make_room(&mut self, now: Instant) {
        let window = self.window;
        while let Some(entry) = self.by_age.first_entry() {
            let (start, _) = *entry.key();
            let expired = now.saturating_duration_since(start) >= window;
            if !expired && self.entries.len() < self.capacity {
                break;
            }
            let key = entry.remove();
            self.entries.remove(&key);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// The addresses each account logged in from, most recent last; at most `per_account` per
/// account and `max_accounts` accounts, forgetting the least recently used account first.
#[derive(Debug)]
struct KnownAddresses {
    by_account: BTreeMap<String, Known>,
    /// The accounts by their last success, the least recent first (a counter orders them:
    /// the caller's instants never go back, and equal ones are told apart).
    by_recency: BTreeMap<u64, String>,
    next_success: u64,
    max_accounts: usize,
    per_account: usize,
}

#[derive(Debug)]
struct Known {
    /// Oldest first.
    addresses: Vec<IpAddr>,
    /// Its place in `by_recency`.
    last_success: u64,
}

impl KnownAddresses {
    fn new(max_accounts: usize, per_account: usize) -> Self {
        KnownAddresses {
            by_account: BTreeMap::new(),
            by_recency: BTreeMap::new(),
            next_success: 0,
            max_accounts,
            per_account,
        }
    }

    fn contains(&self, account: &str, address: IpAddr) -> bool {
        self.by_account
            .get(account)
            .is_some_and(|known| known.addresses.contains(&address))
    }

    /// Remembers that `address` logged in to `account` (the most recent success), forgetting
    /// the least recently successful account when `max_accounts` are remembered.
    fn remember(&mut self, account: &str, address: IpAddr) {
        if self.max_accounts == 0 || self.per_account == 0 {
            return;
        }
        if !self.by_account.contains_key(account)
            && self.by_account.len() >= self.max_accounts
            && let Some((_, least_recent)) = self.by_recency.pop_first()
        {
            self.by_account.remove(&least_recent);
        }
        self.next_success += 1;
        let success = self.next_success;
        let known = self
            .by_account
            .entry(account.to_owned())
            .or_insert_with(|| Known {
                addresses: Vec::new(),
                last_success: success,
            });
        self.by_recency.remove(&known.last_success);
        self.by_recency.insert(success, account.to_owned());
        known.last_success = success;
        known.addresses.retain(|&known| known != address);
        known.addresses.push(address);
        if known.addresses.len() > self.per_account {
            let excess = known.addresses.len() - self.per_account;
            known.addresses.drain(..excess);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_account.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(900);

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test address")
    }

    fn guard() -> LoginGuard {
        LoginGuard::new(&Config::default())
    }

    #[test]
    fn locks_at_the_limit_and_unlocks_when_the_window_passes() {
        let start = Instant::now();
        let mut log: FailureLog<String> = FailureLog::new(10, WINDOW);
        for _ in 0..5 {
            assert!(!log.is_locked("bob", 5, start));
            log.record("bob", start);
        }
        assert!(log.is_locked("bob", 5, start + Duration::from_secs(899)));
        assert!(!log.is_locked("bob", 5, start + WINDOW));
    }

    #[test]
    fn memory_stays_bounded_under_many_keys() {
        let start = Instant::now();
        let mut log: FailureLog<u32> = FailureLog::new(100, WINDOW);
        for i in 0..10_000u32 {
            log.record(&i, start + Duration::from_millis(u64::from(i)));
        }
        assert!(log.len() <= 100);
        assert!(log.is_locked(&9_999, 1, start + Duration::from_secs(10)));
    }

    #[test]
    fn failures_lock_the_attackers_address_for_that_account_only() {
        let now = Instant::now();
        let mut guard = guard();
        for _ in 0..5 {
            assert_ne!(guard.admit("bob", ip("10.0.0.1"), now), Admission::Locked);
            guard.record_failure(Some("bob"), ip("10.0.0.1"), now);
        }
        assert_eq!(guard.admit("bob", ip("10.0.0.1"), now), Admission::Locked);
        assert_ne!(guard.admit("bob", ip("10.0.0.2"), now), Admission::Locked);
        assert_ne!(guard.admit("carol", ip("10.0.0.1"), now), Admission::Locked);
        assert_ne!(
            guard.admit("bob", ip("10.0.0.1"), now + WINDOW),
            Admission::Locked
        );
    }

    #[test]
    fn failures_from_many_addresses_slow_the_account_with_a_growing_capped_wait() {
        let now = Instant::now();
        let mut guard = guard();
        let owner = ip("192.0.2.7");
        let mut waits = Vec::new();
        for n in 0..12u8 {
            let attacker = IpAddr::from([10, 0, 0, n]);
            let Admission::After(wait) = guard.admit("bob", owner, now) else {
                panic!("the owner is never locked out");
            };
            waits.push(wait.as_secs());
            guard.record_failure(Some("bob"), attacker, now);
        }
        assert_eq!(waits, [0, 0, 0, 0, 0, 1, 2, 4, 8, 10, 10, 10]);
        assert_eq!(
            guard.admit("bob", owner, now + WINDOW),
            Admission::After(Duration::ZERO),
            "the slowdown ends with the window"
        );
    }

    #[test]
    fn an_address_that_logged_in_before_skips_the_slowdown_but_not_its_own_lock() {
        let now = Instant::now();
        let mut guard = guard();
        let owner = ip("192.0.2.7");
        guard.record_success("bob", owner);
        for n in 0..10u8 {
            guard.record_failure(Some("bob"), IpAddr::from([10, 0, 0, n]), now);
        }
        assert_eq!(
            guard.admit("bob", owner, now),
            Admission::After(Duration::ZERO)
        );
        assert_ne!(
            guard.admit("bob", ip("192.0.2.8"), now),
            Admission::After(Duration::ZERO),
            "a new address is slowed"
        );
        for _ in 0..5 {
            guard.record_failure(Some("bob"), owner, now);
        }
        assert_eq!(guard.admit("bob", owner, now), Admission::Locked);
    }

    #[test]
    fn a_success_forgets_that_addresses_failures_for_the_account() {
        let now = Instant::now();
        let mut guard = guard();
        let owner = ip("192.0.2.7");
        for _ in 0..4 {
            guard.record_failure(Some("bob"), owner, now);
        }
        guard.record_success("bob", owner);
        for _ in 0..4 {
            guard.record_failure(Some("bob"), owner, now);
        }
        assert_ne!(guard.admit("bob", owner, now), Admission::Locked);
    }

    #[test]
    fn a_malformed_name_counts_against_the_address_only() {
        let now = Instant::now();
        let mut guard = guard();
        for _ in 0..19 {
            guard.record_failure(None, ip("10.0.0.1"), now);
        }
        assert_ne!(guard.admit("bob", ip("10.0.0.1"), now), Admission::Locked);
        assert_eq!(guard.accounts.len(), 0);
        guard.record_failure(None, ip("10.0.0.1"), now);
        assert_eq!(guard.admit("bob", ip("10.0.0.1"), now), Admission::Locked);
    }

    #[test]
    fn known_addresses_stay_bounded_per_account_and_overall() {
        let mut known = KnownAddresses::new(3, 2);
        for n in 0..5u8 {
            known.remember("bob", IpAddr::from([10, 0, 0, n]));
        }
        assert!(!known.contains("bob", IpAddr::from([10, 0, 0, 2])));
        assert!(known.contains("bob", IpAddr::from([10, 0, 0, 3])));
        assert!(known.contains("bob", IpAddr::from([10, 0, 0, 4])));
        for name in ["a", "b", "c"] {
            known.remember(name, ip("10.0.0.9"));
        }
        assert_eq!(known.len(), 3);
        assert!(
            !known.contains("bob", IpAddr::from([10, 0, 0, 4])),
            "the least recent account went first"
        );
        assert!(known.contains("a", ip("10.0.0.9")));
        assert_eq!(
            known.by_recency.len(),
            3,
            "the order holds exactly the accounts kept"
        );
    }

    #[test]
    fn a_full_failure_log_forgets_expired_entries_then_the_oldest_and_stays_consistent() {
        let start = Instant::now();
        let mut log: FailureLog<String> = FailureLog::new(3, WINDOW);
        for (n, key) in ["a", "b", "c"].into_iter().enumerate() {
            log.record(key, start + Duration::from_secs(n as u64));
        }
        // Full: a fourth key pushes out the oldest, "a".
        log.record("d", start + Duration::from_secs(10));
        assert_eq!(log.count("a", start + Duration::from_secs(10)), 0);
        assert_eq!(log.count("b", start + Duration::from_secs(10)), 1);
        // Past b's and c's windows: a new key finds them expired and keeps d.
        let later = start + WINDOW + Duration::from_secs(5);
        log.record("e", later);
        assert_eq!(log.count("d", later), 1);
        assert_eq!(log.count("e", later), 1);
        // A window that restarts moves its key to the young end of the order.
        let much_later = later + WINDOW;
        log.record("d", much_later);
        log.clear("e");
        assert_eq!(
            log.len(),
            log.by_age.len(),
            "the order holds exactly the keys kept"
        );
        assert_eq!(log.by_age.values().last().map(String::as_str), Some("d"));
    }
}
