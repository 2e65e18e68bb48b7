//! Account changes made outside this engine (the operator's `wur2 role` and `wur2
//! purge-user`, another node sharing the accounts), applied to the live sessions.
//!
//! It changes only what the accounts and sessions already hold, and never asks the store:
//! the change is already stored when it arrives here.

use super::{Departure, Engine};
use crate::names::username_key;
use crate::output::CloseReason;
use crate::store::AccountChange;
use crate::wire::Line;

/// Who users are told changed their account. Not a valid username (it has a space), so it
/// cannot be mistaken for one.
pub(super) const OPERATOR: &str = "the operator";

impl Engine {
    pub(super) fn apply_account_change(&mut self, username: &str, change: AccountChange) {
        let key = username_key(username);
        let Some(account) = self.accounts.get(&key) else {
            return;
        };
        match change {
            AccountChange::Role(role) => {
                if account.role == role {
                    return;
                }
                let name = account.username.clone();
                let Some(account) = self.accounts.set_role(&key, role) else {
                    return;
                };
                let line = Line::RoleChanged { role, by: OPERATOR };
                self.outbox
                    .broadcast(&mut self.sessions, &account.sessions, None, &line);
                tracing::info!(user = %name, %role, "role changed outside the server");
            }
            AccountChange::Purged => {
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
        }
    }
}
