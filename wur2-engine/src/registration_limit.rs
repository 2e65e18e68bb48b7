//! Registration rate limits: per address within a window, and in total per minute, in
//! bounded memory.
//!
//! A registration is counted when it is sent to the store and given back when the store
//! creates no account (a taken name, a busy or failing store), so only accounts made, and
//! those being made, use up the limits. It never reads a clock: every call takes `now`.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::address::address_key;
use crate::config::Config;

/// The window of the limit on registrations in total.
const TOTAL_WINDOW: Duration = Duration::from_secs(60);

/// Why a registration was refused, and when a new one could succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// This address registered `max_registrations_per_address` accounts recently.
    Address {
        /// Until the oldest of them leaves the window.
        retry_after: Duration,
    },
    /// All addresses together registered `max_registrations_per_minute` in the last minute.
    Total {
        /// Until the oldest of them is a minute old.
        retry_after: Duration,
    },
}

/// Recent registrations per address and in total.
#[derive(Debug)]
pub(crate) struct RegistrationLimit {
    per_address: BTreeMap<IpAddr, VecDeque<Instant>>,
    total: VecDeque<Instant>,
    max_per_address: usize,
    window: Duration,
    max_per_minute: usize,
    max_addresses: usize,
}

impl RegistrationLimit {
    pub(crate) fn new(config: &Config) -> Self {
        let count = |limit: u32| usize::try_from(limit).unwrap_or(usize::MAX);
        RegistrationLimit {
            per_address: BTreeMap::new(),
            total: VecDeque::new(),
            max_per_address: count(config.max_registrations_per_address),
            window: config.registration_window,
            max_per_minute: count(config.max_registrations_per_minute),
            max_addresses: config.max_tracked_registration_addresses,
        }
    }

    /// Counts a registration from `address` at `now`, unless a limit refuses it.
    pub(crate) fn reserve(&mut self, address: IpAddr, now: Instant) -> Result<(), Refused> {
        let address = address_key(address);
        let window = self.window;
        prune(&mut self.total, TOTAL_WINDOW, now);
        if self.max_per_minute > 0 && self.total.len() >= self.max_per_minute {
            return Err(Refused::Total {
                retry_after: retry_after(&self.total, TOTAL_WINDOW, now),
            });
        }
        if self.max_per_address > 0 {
            if let Some(times) = self.per_address.get_mut(&address) {
                prune(times, window, now);
                if times.len() >= self.max_per_address {
                    return Err(Refused::Address {
                        retry_after: retry_after(times, window, now),
                    });
                }
            } else if self.per_address.len() >= self.max_addresses {
                self.make_room(now);
            }
            if self.max_addresses > 0 {
                self.per_address.entry(address).or_default().push_back(now);
            }
        }
        if self.max_per_minute > 0 {
            self.total.push_back(now);
        }
        Ok(())
    }

    /// The registration from `address` counted at `at` created no account: it no longer
    /// counts.
    pub(crate) fn release(&mut self, address: IpAddr, at: Instant) {
        let address = address_key(address);
        if let Some(times) = self.per_address.get_mut(&address) {
            remove_one(times, at);
            if times.is_empty() {
                self.per_address.remove(&address);
            }
        }
        remove_one(&mut self.total, at);
    }

    /// Forgets addresses whose registrations have all left the window, then (still full)
    /// the address that registered least recently.
    fn make_room(&mut self, now: Instant) {
        let window = self.window;
        self.per_address.retain(|_, times| {
            prune(times, window, now);
            !times.is_empty()
        });
        if self.per_address.len() >= self.max_addresses {
            let least_recent = self
                .per_address
                .iter()
                .min_by_key(|(_, times)| times.back().copied())
                .map(|(address, _)| *address);
            if let Some(address) = least_recent {
                self.per_address.remove(&address);
            }
        }
    }
}

/// Drops the times (oldest first) that are `window` old or older at `now`.
fn prune(times: &mut VecDeque<Instant>, window: Duration, now: Instant) {
    while times
        .front()
        .is_some_and(|&at| now.saturating_duration_since(at) >= window)
    {
        times.pop_front();
    }
}

/// Time until the oldest of `times` leaves `window`.
fn retry_after(times: &VecDeque<Instant>, window: Duration, now: Instant) -> Duration {
    times.front().map_or(Duration::ZERO, |&oldest| {
        (oldest + window).saturating_duration_since(now)
    })
}

/// Removes the latest entry equal to `at`, if any.
fn remove_one(times: &mut VecDeque<Instant>, at: Instant) {
    if let Some(index) = times.iter().rposition(|&t| t == at) {
        times.remove(index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(per_address: u32, per_minute: u32) -> RegistrationLimit {
        RegistrationLimit::new(&Config {
            max_registrations_per_address: per_address,
            max_registrations_per_minute: per_minute,
            ..Config::default()
        })
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn an_address_gets_its_limit_per_window_then_waits_for_the_oldest_to_leave() {
        let start = Instant::now();
        let mut limit = limit(3, 0);
        for n in 0..3u64 {
            assert_eq!(
                limit.reserve(ip(1), start + Duration::from_secs(n * 60)),
                Ok(())
            );
        }
        let at = start + Duration::from_secs(300);
        assert_eq!(
            limit.reserve(ip(1), at),
            Err(Refused::Address {
                retry_after: Duration::from_secs(300)
            })
        );
        assert_eq!(
            limit.reserve(ip(2), at),
            Ok(()),
            "other addresses are not limited"
        );
        assert_eq!(
            limit.reserve(ip(1), start + Duration::from_secs(600)),
            Ok(())
        );
    }

    #[test]
    fn the_total_limit_holds_over_all_addresses_for_a_minute() {
        let start = Instant::now();
        let mut limit = limit(0, 10);
        for n in 0..10u8 {
            assert_eq!(limit.reserve(ip(n), start), Ok(()));
        }
        let later = start + Duration::from_secs(20);
        assert_eq!(
            limit.reserve(ip(99), later),
            Err(Refused::Total {
                retry_after: Duration::from_secs(40)
            })
        );
        assert_eq!(
            limit.reserve(ip(99), start + Duration::from_secs(60)),
            Ok(())
        );
    }

    #[test]
    fn a_registration_that_made_no_account_is_given_back() {
        let start = Instant::now();
        let mut limit = limit(1, 1);
        assert_eq!(limit.reserve(ip(1), start), Ok(()));
        assert!(limit.reserve(ip(1), start).is_err());
        limit.release(ip(1), start);
        assert_eq!(limit.reserve(ip(1), start), Ok(()));
    }

    #[test]
    fn zero_turns_a_limit_off() {
        let start = Instant::now();
        let mut limit = limit(0, 0);
        for _ in 0..1_000 {
            assert_eq!(limit.reserve(ip(1), start), Ok(()));
        }
        assert!(limit.per_address.is_empty() && limit.total.is_empty());
    }

    #[test]
    fn memory_stays_bounded_under_many_addresses() {
        let start = Instant::now();
        let mut limit = RegistrationLimit::new(&Config {
            max_tracked_registration_addresses: 100,
            max_registrations_per_minute: 0,
            ..Config::default()
        });
        for n in 0..10_000u32 {
            let at = start + Duration::from_millis(u64::from(n));
            assert_eq!(limit.reserve(IpAddr::from(n.to_be_bytes()), at), Ok(()));
        }
        assert!(limit.per_address.len() <= 100);
    }
}
