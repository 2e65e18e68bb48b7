//! The channels that have members, and who is in each, in join order.
//!
//! A member's position in its channel's list is kept in its session (`Member`), so leaving
//! is a swap-remove; this table says which member moved, and the engine updates it. It
//! sends nothing: announcing joins and departures is the engine's job.

use std::collections::BTreeMap;

use crate::ids::ConnectionId;
use crate::names::channel_key;

/// A channel with at least one member.
#[derive(Debug)]
pub(super) struct Channel {
    /// The name as first used (shown to users); the table is keyed by its `channel_key`.
    pub(super) name: String,
    pub(super) members: Vec<ConnectionId>,
    /// The engine's message counter when the latest member joined: a message with a higher
    /// sequence was accepted after every member was in (see [`Member::joined_after`]).
    ///
    /// [`Member::joined_after`]: super::sessions::Member::joined_after
    pub(super) last_joined_after: u64,
}

/// What is left of a channel after a member left it.
#[derive(Debug)]
pub(super) enum Left<'a> {
    /// The member was not where its session said: nothing changed.
    NotMember,
    /// That was the last member: the channel is gone.
    Emptied,
    /// The channel goes on; `moved` took the leaver's position (tell its session).
    Remaining {
        channel: &'a Channel,
        moved: Option<ConnectionId>,
    },
}

/// Channels with at least one member, by channel key.
#[derive(Debug, Default)]
pub(super) struct Channels {
    by_key: BTreeMap<String, Channel>,
}

impl Channels {
    pub(super) fn get(&self, key: &str) -> Option<&Channel> {
        self.by_key.get(key)
    }

    /// The display name of the channel with `key` (empty if there is none).
    pub(super) fn name(&self, key: &str) -> String {
        self.get(key).map(|c| c.name.clone()).unwrap_or_default()
    }

    /// Every channel's key, name and member count, ordered by key.
    pub(super) fn entries(&self) -> impl Iterator<Item = (&str, (&str, usize))> {
        self.by_key
            .iter()
            .map(|(key, c)| (key.as_str(), (c.name.as_str(), c.members.len())))
    }

    /// Adds `connection` to channel `name`, created when missing, when the engine's
    /// message counter stands at `messages_so_far`. Returns the channel's key and the
    /// connection's position in its member list.
    pub(super) fn join(
        &mut self,
        name: &str,
        connection: ConnectionId,
        messages_so_far: u64,
    ) -> (String, usize) {
        let key = channel_key(name);
        let channel = self.by_key.entry(key.clone()).or_insert_with(|| Channel {
            name: name.to_string(),
            members: Vec::new(),
            last_joined_after: 0,
        });
        channel.members.push(connection);
        channel.last_joined_after = messages_so_far;
        let position = channel.members.len() - 1;
        (key, position)
    }

    /// Takes `connection` out of channel `key`, where it is member number `position`; an
    /// emptied channel disappears.
    pub(super) fn leave(
        &mut self,
        key: &str,
        position: usize,
        connection: ConnectionId,
    ) -> Left<'_> {
        let Some(channel) = self.by_key.get_mut(key) else {
            return Left::NotMember;
        };
        if channel.members.get(position) != Some(&connection) {
            return Left::NotMember;
        }
        channel.members.swap_remove(position);
        if channel.members.is_empty() {
            self.by_key.remove(key);
            return Left::Emptied;
        }
        // Looked up again: the borrow above may not outlive the removal branch.
        match self.by_key.get(key) {
            Some(channel) => Left::Remaining {
                channel,
                moved: channel.members.get(position).copied(),
            },
            None => Left::Emptied,
        }
    }
}
