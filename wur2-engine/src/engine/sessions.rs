//! The per-connection state and the table that holds it.
//!
//! Connection ids are slot index plus a generation, so lookups are an array index and an
//! id is never reused: a freed slot comes back with the next generation.

use std::net::SocketAddr;
use std::time::Instant;

use crate::flood::FloodBucket;
use crate::framer::LineFramer;
use crate::ids::ConnectionId;

/// Where a connection is in the login flow, or who it is once logged in.
#[derive(Debug)]
pub(crate) enum Stage {
    /// Waiting for `y`/`n` (or a one-line `/login` or `/register`).
    AskAccount,
    /// Waiting for a username; `existing` is the answer to the account question.
    AskUsername { existing: bool },
    /// Waiting for the password of `username`.
    AskPassword { existing: bool, username: String },
    /// A login or registration request is with the store.
    Authenticating,
    /// Logged in.
    Chatting(Member),
}

/// A logged-in connection's place in the chat.
#[derive(Debug)]
pub(crate) struct Member {
    /// Key of the account in `Engine::accounts`.
    pub(crate) account: String,
    /// Key of the current channel in `Engine::channels`.
    pub(crate) channel: String,
    /// Position of this connection in that channel's member list.
    pub(crate) slot_in_channel: usize,
}

/// One connection.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) peer: SocketAddr,
    pub(crate) stage: Stage,
    pub(crate) framer: LineFramer,
    /// Bytes handed out in `Transmit` and not yet reported written.
    pub(crate) queued_bytes: usize,
    /// Marked as a slow reader: gets nothing more, closed at the end of this input.
    pub(crate) dropping: bool,
    pub(crate) flood: FloodBucket,
    /// Set while flood control holds this connection's lines back.
    pub(crate) throttled_until: Option<Instant>,
    /// Store requests whose answers this connection's input waits for.
    pub(crate) awaiting: u32,
    pub(crate) reading_paused: bool,
    pub(crate) login_failures: u32,
    /// Set until the login succeeds.
    pub(crate) login_deadline: Option<Instant>,
}

impl Session {
    pub(crate) fn member(&self) -> Option<&Member> {
        match &self.stage {
            Stage::Chatting(member) => Some(member),
            _ => None,
        }
    }

    /// Whether input must wait (for the store or for flood control).
    pub(crate) fn is_blocked(&self) -> bool {
        self.awaiting > 0 || self.throttled_until.is_some()
    }
}

#[derive(Debug, Default)]
struct Slot {
    generation: u32,
    session: Option<Session>,
}

/// All live sessions, indexed by connection id.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    slots: Vec<Slot>,
    free: Vec<usize>,
    live: usize,
}

impl Sessions {
    pub(crate) fn insert(&mut self, session: Session) -> ConnectionId {
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                self.slots.push(Slot::default());
                self.slots.len() - 1
            }
        };
        let slot = &mut self.slots[index];
        slot.session = Some(session);
        self.live += 1;
        ConnectionId((u64::from(slot.generation) << 32) | index as u64)
    }

    pub(crate) fn get(&self, id: ConnectionId) -> Option<&Session> {
        let slot = self.slots.get(id.slot())?;
        if u64::from(slot.generation) != id.0 >> 32 {
            return None;
        }
        slot.session.as_ref()
    }

    pub(crate) fn get_mut(&mut self, id: ConnectionId) -> Option<&mut Session> {
        let slot = self.slots.get_mut(id.slot())?;
        if u64::from(slot.generation) != id.0 >> 32 {
            return None;
        }
        slot.session.as_mut()
    }

    pub(crate) fn remove(&mut self, id: ConnectionId) -> Option<Session> {
        let index = id.slot();
        let slot = self.slots.get_mut(index)?;
        if u64::from(slot.generation) != id.0 >> 32 {
            return None;
        }
        let session = slot.session.take()?;
        // A slot whose generation would wrap is retired, so ids are never reused.
        if let Some(next) = slot.generation.checked_add(1) {
            slot.generation = next;
            self.free.push(index);
        }
        self.live -= 1;
        Some(session)
    }

    pub(crate) fn len(&self) -> usize {
        self.live
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
