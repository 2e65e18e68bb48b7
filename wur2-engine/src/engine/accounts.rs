//! The accounts online: each logged-in account once, with its role and its sessions.
//!
//! It knows nothing of connections beyond their ids and never sends: the engine keeps it
//! in step with the sessions that log in and end.

use std::collections::BTreeMap;

use std::time::Instant;

use crate::ids::ConnectionId;
use crate::sanction::Sanction;
use crate::store::Role;

/// A logged-in account and its sessions.
#[derive(Debug)]
pub(super) struct Account {
    pub(super) username: String,
    pub(super) role: Role,
    /// Oldest first.
    pub(super) sessions: Vec<ConnectionId>,
    /// The account's mute as the store last said, kept while the account is online so a
    /// message costs no store round trip; it stops applying at its `until` by itself.
    pub(super) mute: Option<Mute>,
}

/// A mute known to the engine: the store's record, and when it ends on the caller's clock.
#[derive(Debug)]
pub(super) struct Mute {
    pub(super) sanction: Sanction,
    /// `None`: until lifted.
    pub(super) until: Option<Instant>,
}

/// Accounts with at least one logged-in session, by username key.
#[derive(Debug, Default)]
pub(super) struct Accounts {
    by_key: BTreeMap<String, Account>,
}

impl Accounts {
    pub(super) fn get(&self, key: &str) -> Option<&Account> {
        self.by_key.get(key)
    }

    pub(super) fn is_online(&self, key: &str) -> bool {
        self.by_key.contains_key(key)
    }

    pub(super) fn len(&self) -> usize {
        self.by_key.len()
    }

    /// The accounts online: key and username, ordered by key.
    pub(super) fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.by_key
            .iter()
            .map(|(key, account)| (key.as_str(), account.username.as_str()))
    }

    /// `connection` logged in as `username` (key `key`) with `role`, the account's role
    /// for all its sessions from now on.
    pub(super) fn log_in(
        &mut self,
        key: String,
        username: &str,
        role: Role,
        connection: ConnectionId,
    ) {
        let account = self.by_key.entry(key).or_insert_with(|| Account {
            username: username.to_string(),
            role,
            sessions: Vec::new(),
            mute: None,
        });
        account.role = role;
        account.sessions.push(connection);
    }

    /// `connection`, logged in to account `key`, ended; the account goes offline with its
    /// last session.
    pub(super) fn log_out(&mut self, key: &str, connection: ConnectionId) {
        let Some(account) = self.by_key.get_mut(key) else {
            return;
        };
        account.sessions.retain(|&s| s != connection);
        if account.sessions.is_empty() {
            self.by_key.remove(key);
        }
    }

    /// Online account `key`, to change (`None`: offline).
    pub(super) fn get_mut(&mut self, key: &str) -> Option<&mut Account> {
        self.by_key.get_mut(key)
    }

    /// Gives online account `key` its new role; returns the account (`None`: offline).
    pub(super) fn set_role(&mut self, key: &str, role: Role) -> Option<&Account> {
        let account = self.by_key.get_mut(key)?;
        account.role = role;
        Some(account)
    }
}
