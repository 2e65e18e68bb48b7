//! The engine's timers: what is due when, for which connection (a transfer's timer goes
//! with the connection that asked for the transfer), in one ordered set, so
//! `poll_timeout` is its first entry and `handle_timeout` pops what is due in order.

use std::collections::BTreeSet;
use std::time::Instant;

use crate::ids::{ConnectionId, TransferId};

/// What a timer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Timer {
    /// The connection must have logged in by now.
    LoginDeadline,
    /// The connection's slowed-down login may have its password checked now.
    LoginDelay,
    /// Flood control lets the connection's next line through.
    FloodRetry,
    /// Time to check whether this transfer (requested by the connection) has moved any
    /// bytes within `transfer_idle_timeout`.
    TransferIdle(TransferId),
}

/// Every timer set, ordered by when it is due (then connection, then kind: deterministic).
#[derive(Debug, Default)]
pub(super) struct Timers {
    due: BTreeSet<(Instant, ConnectionId, Timer)>,
}

impl Timers {
    pub(super) fn set(&mut self, at: Instant, connection: ConnectionId, timer: Timer) {
        self.due.insert((at, connection, timer));
    }

    pub(super) fn cancel(&mut self, at: Instant, connection: ConnectionId, timer: Timer) {
        self.due.remove(&(at, connection, timer));
    }

    /// When the next timer is due.
    pub(super) fn next(&self) -> Option<Instant> {
        self.due.first().map(|&(at, _, _)| at)
    }

    /// Removes and returns the earliest timer due at `now` or before.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<(Instant, ConnectionId, Timer)> {
        let &(at, _, _) = self.due.first()?;
        if at > now {
            return None;
        }
        self.due.pop_first()
    }
}
