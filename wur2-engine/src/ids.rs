//! Identifiers the engine hands out: connections, store requests and messages.
//!
//! None of them is ever reused within one engine, so a late event for a connection or a
//! reply for a request that is gone can always be recognised and ignored.

use std::fmt;

/// One client connection, from `handle_connect` until the engine or the peer closes it.
///
/// The value is opaque; it is never reused by the same [`Engine`](crate::Engine).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct ConnectionId(pub(crate) u64);

impl ConnectionId {
    /// The raw value, for logging and for keying a driver's own tables.
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// Slot of this connection in the engine's session table: small and dense (a closed
    /// connection's slot is reused, with a new id), so a driver can index a `Vec` with it
    /// instead of hashing ids. A slot is reused only after the drain of
    /// [`Engine::poll_output`](crate::Engine::poll_output) that carried the old
    /// connection's `Close` (or followed its `handle_peer_closed`) has returned `None`, so
    /// one slot never names two connections the driver still knows.
    pub fn slot(self) -> usize {
        (self.0 & 0xffff_ffff) as usize
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

/// One store request; the driver answers it with
/// [`Engine::handle_store_reply`](crate::Engine::handle_store_reply) and this id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct RequestId(pub u64);

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.0)
    }
}

/// One file transfer, from its `/send` to its end; shown to users as a plain number.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct TransferId(pub u64);

impl fmt::Display for TransferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The unique id of a stored message, fixed when the engine accepts the message.
///
/// `origin` comes from [`Config::message_id_origin`](crate::Config::message_id_origin)
/// (unique per engine run, chosen by the caller) and `sequence` counts up within the run,
/// so a store that writes the same append twice (a retry after a lost connection) can
/// recognise the repeat and ignore it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct MessageId {
    /// Unique per engine run, from the caller.
    pub origin: u64,
    /// Counts up from 1 within the run.
    pub sequence: u64,
}

impl fmt::Display for MessageId {
    /// 32 lowercase hex digits: origin then sequence. Sorting the strings sorts the ids.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}{:016x}", self.origin, self.sequence)
    }
}

impl std::str::FromStr for MessageId {
    type Err = InvalidMessageId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 32 || !s.is_ascii() {
            return Err(InvalidMessageId);
        }
        let origin = u64::from_str_radix(&s[..16], 16).map_err(|_| InvalidMessageId)?;
        let sequence = u64::from_str_radix(&s[16..], 16).map_err(|_| InvalidMessageId)?;
        Ok(MessageId { origin, sequence })
    }
}

/// A string that is not the 32 hex digits of a [`MessageId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a message id (32 hex digits)")]
pub struct InvalidMessageId;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_id_round_trips_through_its_string_form() {
        let id = MessageId {
            origin: 0xdead_beef,
            sequence: 42,
        };
        let text = id.to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(text.parse::<MessageId>(), Ok(id));
        assert!("xyz".parse::<MessageId>().is_err());
    }
}
