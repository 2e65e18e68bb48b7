//! The per-connection state and the table that holds it.
//!
//! Connection ids are slot index plus a generation, so lookups are an array index and an
//! id is never reused: a freed slot comes back with the next generation, and only once the
//! driver has drained every output queued up to the connection's end (its `Close`), so a
//! driver that keys its own table by slot never finds two connections in one slot.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use crate::address::address_key;
use crate::flood::FloodBucket;
use crate::framer::LineFramer;
use crate::ids::{ConnectionId, RequestId};
use crate::store::Password;
use crate::wire::Mode;

use super::transfers::Upload;

/// Whether a connection is still logging in, or who it is once logged in.
#[derive(Debug)]
pub(crate) enum Stage {
    /// Not logged in yet.
    LoggingIn(Login),
    /// Logged in.
    Chatting(Member),
}

/// Where a connection is in the login flow. Each login handler takes the current step and
/// returns the next one.
#[derive(Debug)]
pub(crate) enum Login {
    /// Waiting for `y`/`n` (or a one-line `/login` or `/register`).
    AskAccount,
    /// Waiting for a username; `existing` is the answer to the account question.
    AskUsername { existing: bool },
    /// Waiting for the password of `username`.
    AskPassword { existing: bool, username: String },
    /// A login to an account under attack waits until `until` before its password goes to
    /// the store (the account-wide slowdown of the login guard).
    Delayed {
        username: String,
        proof: Proof,
        until: Instant,
    },
    /// A login or registration request is with the store.
    Authenticating,
}

/// What proves who is logging in to an existing account.
#[derive(Debug)]
pub(crate) enum Proof {
    /// The account's password (`/login`, or the prompts).
    Password(Password),
    /// A resume token the account was given (`/resume`): checked with one hash lookup.
    Token(Password),
}

impl Proof {
    /// Its length in bytes.
    pub(crate) fn len(&self) -> usize {
        match self {
            Proof::Password(secret) | Proof::Token(secret) => secret.expose().len(),
        }
    }
}

/// A logged-in connection's place in the chat.
#[derive(Debug)]
pub(crate) struct Member {
    /// Key of the account in the engine's `Accounts`.
    pub(crate) account: String,
    /// Key of the current channel in the engine's `Channels`.
    pub(crate) channel: String,
    /// Position of this connection in that channel's member list.
    pub(crate) slot_in_channel: usize,
    /// The engine's message counter when this connection entered the channel: messages
    /// up to it reach the member through the history replay of the join, later ones live.
    pub(crate) joined_after: u64,
}

/// One connection.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) peer: SocketAddr,
    pub(crate) stage: Stage,
    pub(crate) framer: LineFramer,
    pub(crate) flood: FloodBucket,
    /// Set while flood control holds this connection's lines back.
    pub(crate) throttled_until: Option<Instant>,
    /// Store requests whose answers this connection's input waits for.
    pub(crate) awaiting: u32,
    /// This connection's messages waiting for their commit (see [`Session::next_line`]).
    pub(crate) uncommitted: usize,
    /// Set when its next line, not a message, arrived while messages were held: that line
    /// waits until every held message up to this append is released (see
    /// `Engine::waits_for_held`).
    pub(crate) held_barrier: Option<RequestId>,
    pub(crate) reading_paused: bool,
    pub(crate) login_failures: u32,
    /// Set until the login succeeds.
    pub(crate) login_deadline: Option<Instant>,
    /// Raw bytes still owed after a `/send <user> <name> <size>` line.
    pub(crate) upload: Option<Upload>,
}

impl Session {
    pub(crate) fn member(&self) -> Option<&Member> {
        match &self.stage {
            Stage::Chatting(member) => Some(member),
            _ => None,
        }
    }

    /// When a slowed-down login's password goes to the store, while it waits.
    pub(crate) fn login_delayed_until(&self) -> Option<Instant> {
        match self.stage {
            Stage::LoggingIn(Login::Delayed { until, .. }) => Some(until),
            _ => None,
        }
    }

    /// What the next complete line is, for durable delivery's ordering: `None` when there
    /// is none, `Some(true)` for one more chat or private message.
    pub(crate) fn next_line(&self) -> Option<bool> {
        let mut next_is_message = None;
        self.framer.lines_until(|line| {
            next_is_message = Some(crate::command::is_message_line(line));
            true
        });
        next_is_message
    }

    /// Whether input must wait (for the store, for flood control or for a slowed-down
    /// login).
    pub(crate) fn is_blocked(&self) -> bool {
        self.throttled_until.is_some() || self.waits_for_more_than_flood_control()
    }

    /// Whether input must wait for something other than flood control: a store answer, a
    /// slowed-down login or a stalled upload.
    pub(crate) fn waits_for_more_than_flood_control(&self) -> bool {
        self.awaiting > 0
            || self.login_delayed_until().is_some()
            || self.upload.is_some_and(|upload| upload.stalled)
    }
}

/// One entry of the table. The fields every delivery touches live here, next to each other
/// for all connections; the rest of the session is boxed, out of the fan-out's way.
#[derive(Debug, Default)]
struct Slot {
    generation: u32,
    /// Marked as a slow reader: gets nothing more, closed at the end of this input.
    dropping: bool,
    /// Bytes handed out in `Transmit` and not yet reported written.
    queued_bytes: usize,
    /// File transfers this connection receives (their senders wait for its writes).
    receiving: u32,
    /// How this connection wants server lines.
    mode: Mode,
    session: Option<Box<Session>>,
}

/// What to do with one delivery to one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Transmit it.
    Send,
    /// Unknown connection, or one already being dropped: nothing.
    Skip,
    /// This delivery took the connection past its limit: drop it as a slow reader.
    SlowReader,
}

/// All live sessions, indexed by connection id.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    slots: Vec<Slot>,
    /// Slots ready to be handed out again.
    free: Vec<usize>,
    /// Slots of connections that ended since the driver last drained every output; they
    /// join `free` at the end of that drain ([`Sessions::recycle`]).
    retired: Vec<usize>,
    live: usize,
    /// Live connections per peer address (by [`address_key`]).
    per_address: BTreeMap<IpAddr, usize>,
    /// Sum of `queued_bytes` over live connections.
    queued_total: usize,
}

impl Sessions {
    pub(crate) fn insert(&mut self, session: Session) -> ConnectionId {
        *self
            .per_address
            .entry(address_key(session.peer.ip()))
            .or_insert(0) += 1;
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                self.slots.push(Slot::default());
                self.slots.len() - 1
            }
        };
        let slot = &mut self.slots[index];
        slot.session = Some(Box::new(session));
        slot.dropping = false;
        slot.queued_bytes = 0;
        slot.receiving = 0;
        slot.mode = Mode::Text;
        self.live += 1;
        ConnectionId((u64::from(slot.generation) << 32) | index as u64)
    }

    fn slot(&self, id: ConnectionId) -> Option<&Slot> {
        let slot = self.slots.get(id.slot())?;
        (u64::from(slot.generation) == id.0 >> 32 && slot.session.is_some()).then_some(slot)
    }

    fn slot_mut(&mut self, id: ConnectionId) -> Option<&mut Slot> {
        live_slot(&mut self.slots, id)
    }

    pub(crate) fn get(&self, id: ConnectionId) -> Option<&Session> {
        self.slot(id)?.session.as_deref()
    }

    pub(crate) fn get_mut(&mut self, id: ConnectionId) -> Option<&mut Session> {
        self.slot_mut(id)?.session.as_deref_mut()
    }

    /// Counts `len` more bytes queued for `id`, against the limit `max`.
    pub(crate) fn charge(&mut self, id: ConnectionId, len: usize, max: usize) -> Delivery {
        self.charge_in_mode(id, max, |_| len).0
    }

    /// Like [`Sessions::charge`], for a line whose length depends on the connection's mode
    /// (`len_in` renders it on first use); returns the mode too. One table lookup.
    pub(crate) fn charge_in_mode(
        &mut self,
        id: ConnectionId,
        max: usize,
        mut len_in: impl FnMut(Mode) -> usize,
    ) -> (Delivery, Mode) {
        let Some(slot) = live_slot(&mut self.slots, id) else {
            return (Delivery::Skip, Mode::Text);
        };
        let mode = slot.mode;
        if slot.dropping {
            return (Delivery::Skip, mode);
        }
        let len = len_in(mode);
        slot.queued_bytes += len;
        self.queued_total += len;
        if slot.queued_bytes > max {
            slot.dropping = true;
            return (Delivery::SlowReader, mode);
        }
        (Delivery::Send, mode)
    }

    /// `len` bytes queued for `id` were written. Returns whether `id` receives a file
    /// (whose sender may be waiting for exactly this).
    pub(crate) fn written(&mut self, id: ConnectionId, len: usize) -> bool {
        let Some(slot) = live_slot(&mut self.slots, id) else {
            return false;
        };
        let written = len.min(slot.queued_bytes);
        slot.queued_bytes -= written;
        let receiving = slot.receiving > 0;
        self.queued_total -= written;
        receiving
    }

    /// One more (`1`) or one fewer (`-1`) file transfer received by `id`.
    pub(crate) fn set_receiving(&mut self, id: ConnectionId, change: i32) {
        if let Some(slot) = self.slot_mut(id) {
            slot.receiving = slot.receiving.saturating_add_signed(change);
        }
    }

    /// How `id` wants server lines (`None` if unknown).
    pub(crate) fn mode(&self, id: ConnectionId) -> Option<Mode> {
        self.slot(id).map(|slot| slot.mode)
    }

    pub(crate) fn set_mode(&mut self, id: ConnectionId, mode: Mode) {
        if let Some(slot) = self.slot_mut(id) {
            slot.mode = mode;
        }
    }

    /// Bytes queued for `id` and not yet written (0 if unknown).
    pub(crate) fn queued_bytes(&self, id: ConnectionId) -> usize {
        self.slot(id).map_or(0, |slot| slot.queued_bytes)
    }

    /// Whether `id` is being dropped as a slow reader.
    pub(crate) fn is_dropping(&self, id: ConnectionId) -> bool {
        self.slot(id).is_some_and(|slot| slot.dropping)
    }

    pub(crate) fn remove(&mut self, id: ConnectionId) -> Option<Session> {
        let index = id.slot();
        let slot = live_slot(&mut self.slots, id)?;
        let session = slot.session.take()?;
        let queued = std::mem::take(&mut slot.queued_bytes);
        // A slot whose generation would wrap is retired, so ids are never reused.
        if let Some(next) = slot.generation.checked_add(1) {
            slot.generation = next;
            self.retired.push(index);
        }
        self.live -= 1;
        self.queued_total -= queued;
        let ip = address_key(session.peer.ip());
        if let Some(count) = self.per_address.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                self.per_address.remove(&ip);
            }
        }
        Some(*session)
    }

    /// The driver has drained every output: the slots of connections that ended before
    /// may be handed out again (their `Close` has been polled).
    pub(crate) fn recycle(&mut self) {
        self.free.append(&mut self.retired);
    }

    /// Live connections from `ip` (or its IPv6 /64: [`address_key`]).
    pub(crate) fn count_from(&self, ip: IpAddr) -> usize {
        self.per_address.get(&address_key(ip)).copied().unwrap_or(0)
    }

    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// Bytes queued over all live connections.
    pub(crate) fn queued_total(&self) -> usize {
        self.queued_total
    }

    /// Live connection ids in slot order (deterministic).
    pub(crate) fn ids(&self) -> Vec<ConnectionId> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.session.is_some())
            .map(|(index, slot)| ConnectionId((u64::from(slot.generation) << 32) | index as u64))
            .collect()
    }
}

/// The slot of live connection `id`, borrowing only the slot table (so the table's other
/// counters stay usable next to it).
fn live_slot(slots: &mut [Slot], id: ConnectionId) -> Option<&mut Slot> {
    let slot = slots.get_mut(id.slot())?;
    (u64::from(slot.generation) == id.0 >> 32 && slot.session.is_some()).then_some(slot)
}
