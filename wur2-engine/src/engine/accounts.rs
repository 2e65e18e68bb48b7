//! The accounts online: each logged-in account once, with its role and its sessions.
//!
//! It knows nothing of connections beyond their ids and never sends: the engine keeps it
//! in step with the sessions that log in and end.

use std::collections::{BTreeMap, BTreeSet};

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
    /// Set by `/away <text>`; gone with `/away` or when the account goes offline.
    pub(super) away: Option<Away>,
    /// The account's mute as the store last said, kept while the account is online so a
    /// message costs no store round trip; it stops applying at its `until` by itself.
    pub(super) mute: Option<Mute>,
}

/// An away message, and whom it answered already.
#[derive(Debug)]
pub(super) struct Away {
    pub(super) text: String,
    /// The username keys of the senders of private messages told the text already: each
    /// hears it once per away message.
    pub(super) answered: BTreeSet<String>,
}

impl Away {
    /// An away message that has answered nobody yet.
    pub(super) fn new(text: String) -> Away {
        Away {
            text,
            answered: BTreeSet::new(),
        }
    }

    /// The text for a private message from `sender` (a key), the first time only.
    pub(super) fn reply_to(&mut self, sender: &str) -> Option<String> {
        self.answered
            .insert(sender.to_owned())
            .then(|| self.text.clone())
    }
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

    /// The away message of online account `key`, if it has one.
    pub(super) fn away_text(&self, key: &str) -> Option<&str> {
        Some(self.by_key.get(key)?.away.as_ref()?.text.as_str())
    }

    /// Sets (or with `None` clears) the away message of online account `key`.
    pub(super) fn set_away(&mut self, key: &str, text: Option<String>) {
        if let Some(account) = self.by_key.get_mut(key) {
            account.away = text.map(Away::new);
        }
    }

    /// The away message of account `key` for a private message from `sender` (a key),
    /// the first time only for each away message.
    pub(super) fn away_reply(&mut self, key: &str, sender: &str) -> Option<String> {
        self.by_key.get_mut(key)?.away.as_mut()?.reply_to(sender)
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
            away: None,
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
