//! The channels: those that have members, with who is in each in join order, and those
//! registered in the store (the catalogue), which last when empty with their settings.
//!
//! A member's position in its channel's list is kept in its session (`Member`), so leaving
//! is a swap-remove; this table says which member moved, and the engine updates it. It
//! sends nothing: announcing joins and departures is the engine's job. It never asks the
//! store either: the engine loads the catalogue once (see `channel_modes`) and keeps it
//! current with its own changes and those other nodes publish.

use std::collections::{BTreeMap, HashMap};

use crate::ids::ConnectionId;
use crate::names::{channel_key, is_valid_channel_name, is_valid_username, username_key};
use crate::sanitize::sanitize_text;
use crate::store::{Role, StoredChannel};

/// What a registered channel keeps when it is empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Settings {
    /// The owner's username as registered (none for the default channel); changed only
    /// through [`Channels`], which counts every owner's channels.
    owner: Option<String>,
    pub(super) topic: Option<String>,
    pub(super) private: bool,
    /// Invited usernames by key, as registered.
    pub(super) invited: BTreeMap<String, String>,
}

impl Settings {
    /// Whether `account` (a username key) with `role` may change these settings: the
    /// owner, mods and admins.
    pub(super) fn may_change(&self, account: &str, role: Role) -> bool {
        role >= Role::Mod
            || self
                .owner
                .as_deref()
                .is_some_and(|o| username_key(o) == account)
    }

    /// Whether `account` with `role` may join: anyone when the channel is public; the
    /// owner, the invited, mods and admins when it is private.
    pub(super) fn may_join(&self, account: &str, role: Role) -> bool {
        !self.private || self.may_change(account, role) || self.invited.contains_key(account)
    }

    /// What the store says, trusted no more than a client: names that break the rules
    /// are dropped and the topic is sanitised as history is.
    fn from_stored(stored: StoredChannel) -> Settings {
        Settings {
            owner: stored.owner.filter(|owner| is_valid_username(owner)),
            topic: stored
                .topic
                .map(|topic| sanitize_text(&topic).into_owned())
                .filter(|topic| !topic.is_empty()),
            private: stored.private,
            invited: stored
                .invited
                .into_iter()
                .filter(|user| is_valid_username(user))
                .map(|user| (username_key(&user), user))
                .collect(),
        }
    }
}

/// A channel with at least one member, or registered (or both).
#[derive(Debug)]
pub(super) struct Channel {
    /// The name as first used (shown to users); the table is keyed by its `channel_key`.
    pub(super) name: String,
    /// `Some` once registered in the store: the channel lasts when empty.
    pub(super) settings: Option<Settings>,
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
    /// That was the last member: the channel is gone, or stays empty when registered.
    Emptied,
    /// The channel goes on; `moved` took the leaver's position (tell its session).
    Remaining {
        channel: &'a Channel,
        moved: Option<ConnectionId>,
    },
}

/// Channels with at least one member or registered, by channel key.
#[derive(Debug, Default)]
pub(super) struct Channels {
    by_key: BTreeMap<String, Channel>,
    /// How many registered channels each account owns, by username key: a new channel's
    /// first joiner is checked against a limit, and a scan of every channel per new
    /// channel would make creating n channels cost n².
    owned: HashMap<String, usize>,
    /// Whether the registered channels were loaded from the store.
    pub(super) loaded: bool,
}

impl Channels {
    pub(super) fn get(&self, key: &str) -> Option<&Channel> {
        self.by_key.get(key)
    }

    /// The settings of channel `key`, if it is registered.
    pub(super) fn settings(&self, key: &str) -> Option<&Settings> {
        self.by_key.get(key)?.settings.as_ref()
    }

    /// The settings of channel `name`, registered now if it was not (with no owner), for
    /// a change to them (its owner changes by [`Channels::set_owner`]). Returns its key.
    pub(super) fn settings_mut(&mut self, name: &str) -> (String, &mut Settings) {
        let key = channel_key(name);
        let channel = self.by_key.entry(key.clone()).or_insert_with(|| Channel {
            name: name.to_string(),
            settings: None,
            members: Vec::new(),
            last_joined_after: 0,
        });
        (key, channel.settings.get_or_insert_with(Settings::default))
    }

    /// Makes `owner` (a username as registered, or nobody) the owner of channel `name`,
    /// registered now if it was not.
    pub(super) fn set_owner(&mut self, name: &str, owner: Option<String>) {
        own(&mut self.owned, owner.as_deref());
        let (_, settings) = self.settings_mut(name);
        let previous = std::mem::replace(&mut settings.owner, owner);
        disown(&mut self.owned, previous.as_deref());
    }

    /// Records channels as the store has them (the whole catalogue at start, or one
    /// channel just registered): their settings replace what was known; members stay. A
    /// name that breaks the rules is skipped.
    pub(super) fn register(&mut self, stored: impl IntoIterator<Item = StoredChannel>) {
        for stored in stored
            .into_iter()
            .filter(|c| is_valid_channel_name(&c.name))
        {
            let key = channel_key(&stored.name);
            let channel = self.by_key.entry(key).or_insert_with(|| Channel {
                name: stored.name.clone(),
                settings: None,
                members: Vec::new(),
                last_joined_after: 0,
            });
            let settings = Settings::from_stored(stored);
            own(&mut self.owned, settings.owner.as_deref());
            if let Some(previous) = channel.settings.replace(settings) {
                disown(&mut self.owned, previous.owner.as_deref());
            }
        }
    }

    /// Channel `key` is not registered after all (its registration failed): it goes
    /// when empty, and its next first joiner registers it.
    pub(super) fn unregister(&mut self, key: &str) {
        if let Some(channel) = self.by_key.get_mut(key) {
            if let Some(previous) = channel.settings.take() {
                disown(&mut self.owned, previous.owner.as_deref());
            }
            if channel.members.is_empty() {
                self.by_key.remove(key);
            }
        }
    }

    /// How many registered channels account `key` owns.
    pub(super) fn owned_by(&self, key: &str) -> usize {
        self.owned.get(key).copied().unwrap_or(0)
    }

    /// Account `key` was deleted: its invitations and the channels it owned go with it.
    pub(super) fn forget_account(&mut self, key: &str) {
        self.owned.remove(key);
        for settings in self.by_key.values_mut().filter_map(|c| c.settings.as_mut()) {
            settings.invited.remove(key);
            if settings
                .owner
                .as_deref()
                .is_some_and(|o| username_key(o) == key)
            {
                settings.owner = None;
            }
        }
    }

    /// The display name of the channel with `key` (empty if there is none).
    pub(super) fn name(&self, key: &str) -> String {
        self.get(key).map(|c| c.name.clone()).unwrap_or_default()
    }

    /// Every channel with its key, ordered by key.
    pub(super) fn entries(&self) -> impl Iterator<Item = (&str, &Channel)> {
        self.by_key.iter().map(|(key, c)| (key.as_str(), c))
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
            settings: None,
            members: Vec::new(),
            last_joined_after: 0,
        });
        channel.members.push(connection);
        channel.last_joined_after = messages_so_far;
        let position = channel.members.len() - 1;
        (key, position)
    }

    /// Takes `connection` out of channel `key`, where it is member number `position`; an
    /// emptied channel disappears unless it is registered.
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
            if channel.settings.is_none() {
                self.by_key.remove(key);
            }
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

/// Counts one more registered channel for `owner` (a username as registered), if any.
fn own(owned: &mut HashMap<String, usize>, owner: Option<&str>) {
    if let Some(owner) = owner {
        *owned.entry(username_key(owner)).or_default() += 1;
    }
}

/// Counts one registered channel fewer for `owner`, if any; an owner of none leaves the
/// table.
fn disown(owned: &mut HashMap<String, usize>, owner: Option<&str>) {
    let Some(key) = owner.map(username_key) else {
        return;
    };
    if let Some(count) = owned.get_mut(&key) {
        *count -= 1;
        if *count == 0 {
            owned.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A change to the table that touches owners.
    #[derive(Debug, Clone)]
    enum Change {
        SetOwner(usize, Option<usize>),
        Register(usize, Option<usize>),
        Unregister(usize),
        ForgetAccount(usize),
    }

    const CHANNELS: usize = 4;
    const OWNERS: usize = 3;

    /// Channel `i`, in a case its key folds.
    fn channel(i: usize) -> String {
        format!("#Room{i}")
    }

    /// Owner `i`'s username as registered, in a case its key folds.
    fn owner(i: usize) -> String {
        format!("Owner{i}")
    }

    fn change() -> impl Strategy<Value = Change> {
        let owner = proptest::option::of(0..OWNERS);
        prop_oneof![
            (0..CHANNELS, owner.clone()).prop_map(|(c, o)| Change::SetOwner(c, o)),
            (0..CHANNELS, owner).prop_map(|(c, o)| Change::Register(c, o)),
            (0..CHANNELS).prop_map(Change::Unregister),
            (0..OWNERS).prop_map(Change::ForgetAccount),
        ]
    }

    fn apply(channels: &mut Channels, change: Change) {
        match change {
            Change::SetOwner(c, o) => channels.set_owner(&channel(c), o.map(owner)),
            Change::Register(c, o) => channels.register([StoredChannel {
                name: channel(c),
                owner: o.map(owner),
                topic: None,
                private: false,
                invited: Vec::new(),
            }]),
            Change::Unregister(c) => channels.unregister(&channel_key(&channel(c))),
            Change::ForgetAccount(o) => channels.forget_account(&username_key(&owner(o))),
        }
    }

    proptest! {
        #[test]
        fn each_owners_count_of_channels_is_what_a_scan_of_every_channel_finds(
            changes in proptest::collection::vec(change(), 0..40)
        ) {
            let mut channels = Channels::default();
            for change in changes {
                apply(&mut channels, change);
            }
            for o in 0..OWNERS {
                let key = username_key(&owner(o));
                let scanned = channels
                    .entries()
                    .filter_map(|(_, c)| c.settings.as_ref()?.owner.as_deref())
                    .filter(|name| username_key(name) == key)
                    .count();
                prop_assert_eq!(channels.owned_by(&key), scanned);
            }
            prop_assert!(channels.owned.values().all(|&count| count > 0));
        }
    }
}
