//! Account changes made outside this engine (the operator's `wur2 role`, `wur2
//! purge-user` and `wur2 ban`, another node sharing the accounts), applied to the live
//! sessions.
//!
//! It changes only what the accounts and sessions already hold, and never asks the store:
//! the change is already stored when it arrives here.

use super::{Departure, Engine};
use crate::names::username_key;
use crate::output::CloseReason;
use crate::store::{AccountChange, Role};
use crate::wire::Line;

/// Who users are told changed their account. Not a valid username (it has a space), so it
/// cannot be mistaken for one.
pub(super) const OPERATOR: &str = "the operator";

impl Engine {
    pub(super) fn apply_account_change(&mut self, username: &str, change: AccountChange) {
        let key = username_key(username);
        match change {
            AccountChange::Role(role) => self.apply_role(&key, role, OPERATOR),
            AccountChange::Purged => self.close_purged(&key),
            AccountChange::Banned(sanction) | AccountChange::Muted(sanction) => {
                self.apply_sanction(sanction);
            }
            AccountChange::Unmuted => self.unmute(&key),
        }
    }

    /// Account `key` was deleted: its sessions here are told and closed.
    pub(super) fn close_purged(&mut self, key: &str) {
        self.channels.forget_account(key);
        let Some(account) = self.accounts.get(key) else {
            return;
        };
        let name = account.username.clone();
        for session in account.sessions.clone() {
            self.send(
                session,
                Line::Kicked {
                    by: OPERATOR,
                    reason: "your account was deleted",
                },
            );
            self.close(session, CloseReason::AccountDeleted, Departure::Announced);
        }
        tracing::info!(user = %name, "account purged; its sessions are closed");
    }

    /// Account `key` was given role `role` elsewhere (by `by`: the operator, or an admin
    /// on another node): its sessions here are told, as after `/role` here, and in a
    /// cluster the view of the other nodes follows. A role it already has changes nothing.
    pub(super) fn apply_role(&mut self, key: &str, role: Role, by: &str) {
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.peers.set_role(key, role);
        }
        let Some(account) = self.accounts.get(key) else {
            return;
        };
        if account.role == role {
            return;
        }
        let name = account.username.clone();
        if let Some(account) = self.accounts.set_role(key, role) {
            let line = Line::RoleChanged { role, by };
            self.outbox
                .broadcast(&mut self.sessions, &account.sessions, None, &line);
        }
        tracing::info!(user = %name, %role, %by, "role changed elsewhere");
    }
}
