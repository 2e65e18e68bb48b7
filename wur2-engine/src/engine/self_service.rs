//! Account self-service: `/password` and `/delete-account`.
//!
//! Both check the user's password in the store, as a login does, and a wrong one counts
//! as a failed login for the throttles (a session left open must not become a way to
//! guess the password). A changed password logs the account's other sessions out, on
//! every node; a deleted account goes as the operator's purge does, with its messages.

use std::time::Instant;

use super::{Departure, Engine, Pending, Sender};
use crate::cluster::{Body, Topic};
use crate::ids::ConnectionId;
use crate::login_guard::Admission;
use crate::names::username_key;
use crate::output::CloseReason;
use crate::store::{Password, StoreError, StoreReply, StoreRequest};
use crate::wire::{ErrorCode, Line};

/// What the sessions a password change logs out are told.
const PASSWORD_CHANGED: &str = "the account's password was changed in another session";

impl Engine {
    /// `/password <old> <new>`.
    pub(super) fn change_password(
        &mut self,
        connection: ConnectionId,
        sender: &Sender,
        old: Password,
        new: Password,
    ) {
        let (min, max) = (
            self.config.min_password_bytes,
            self.config.max_password_bytes,
        );
        if !(min..=max).contains(&new.expose().len()) {
            return self.error(
                connection,
                ErrorCode::InvalidPassword,
                format_args!("passwords are {min} to {max} bytes long"),
            );
        }
        if self.password_attempts_locked(connection, sender) {
            return;
        }
        let username = sender.username.clone();
        let request = StoreRequest::ChangePassword { username, old, new };
        self.request_for(request, Pending::ChangePassword { connection });
    }

    /// The store's answer to `/password`.
    pub(super) fn on_password_changed(
        &mut self,
        connection: ConnectionId,
        reply: StoreReply,
        now: Instant,
    ) {
        match reply {
            StoreReply::Done => {
                let Some(account) = self.account_of(connection) else {
                    return;
                };
                self.send(connection, Line::PasswordChanged);
                self.log_out_sessions_of(&account, Some(connection));
                tracing::info!(%connection, "password changed");
                if self.cluster.is_some() {
                    let user = self.username_of(connection).unwrap_or_default();
                    self.publish(Topic::All, Body::LoggedOut { user });
                }
            }
            StoreReply::Failed(StoreError::InvalidCredentials) => {
                self.wrong_password(connection, now);
            }
            other => self.store_failed(connection, &other),
        }
    }

    /// `/delete-account <password>`.
    pub(super) fn delete_account(
        &mut self,
        connection: ConnectionId,
        sender: &Sender,
        password: Password,
    ) {
        if self.password_attempts_locked(connection, sender) {
            return;
        }
        let username = sender.username.clone();
        let request = StoreRequest::DeleteAccount { username, password };
        self.request_for(request, Pending::DeleteAccount { connection });
    }

    /// The store's answer to `/delete-account`: the account is gone, with its messages;
    /// this session hears it and closes, the account's others here are closed as after
    /// the operator's purge (other nodes learn of it from the store, as of a purge).
    pub(super) fn on_account_deleted(
        &mut self,
        connection: ConnectionId,
        reply: StoreReply,
        now: Instant,
    ) {
        match reply {
            StoreReply::Done => {
                let Some(user) = self.username_of(connection) else {
                    return;
                };
                self.send(connection, Line::AccountDeleted { user: &user });
                self.close(
                    connection,
                    CloseReason::AccountDeleted,
                    Departure::Announced,
                );
                self.close_purged(&username_key(&user));
                tracing::info!(%connection, %user, "account deleted by its user");
            }
            StoreReply::Failed(StoreError::InvalidCredentials) => {
                self.wrong_password(connection, now);
            }
            StoreReply::Failed(StoreError::LastAdmin) => self.error(
                connection,
                ErrorCode::LastAdmin,
                format_args!(
                    "the last admin cannot delete their account; make another admin first"
                ),
            ),
            other => self.store_failed(connection, &other),
        }
    }

    /// Whether the login throttles lock `sender`'s account or `connection`'s address out
    /// of password checks now (and if so, says so).
    fn password_attempts_locked(&mut self, connection: ConnectionId, sender: &Sender) -> bool {
        let (Some(session), Some(now)) = (self.sessions.get(connection), self.outbox.now()) else {
            return true;
        };
        let address = session.peer.ip();
        match self.login_guard.admit(&sender.account, address, now) {
            Admission::Locked => {
                self.error(
                    connection,
                    ErrorCode::LockedOut,
                    format_args!("too many wrong passwords; try again later"),
                );
                true
            }
            Admission::After(_) => false,
        }
    }

    /// A password typed in a session was wrong: counted as a failed login.
    fn wrong_password(&mut self, connection: ConnectionId, now: Instant) {
        let Some(session) = self.sessions.get(connection) else {
            return;
        };
        let address = session.peer.ip();
        let account = self.account_of(connection);
        self.login_guard
            .record_failure(account.as_deref(), address, now);
        self.stats.login_failures += 1;
        self.error(
            connection,
            ErrorCode::InvalidCredentials,
            format_args!("wrong password"),
        );
    }

    /// The account key of logged-in `connection`.
    fn account_of(&self, connection: ConnectionId) -> Option<String> {
        Some(self.sessions.get(connection)?.member()?.account.clone())
    }

    /// Closes every session of account `key` here but `keep`, telling each it was logged
    /// out because the password changed.
    pub(super) fn log_out_sessions_of(&mut self, key: &str, keep: Option<ConnectionId>) {
        let Some(account) = self.accounts.get(key) else {
            return;
        };
        let others: Vec<ConnectionId> = account
            .sessions
            .iter()
            .copied()
            .filter(|&session| Some(session) != keep)
            .collect();
        for session in others {
            let line = Line::LoggedOut {
                reason: PASSWORD_CHANGED,
            };
            self.send(session, line);
            self.close(session, CloseReason::LoggedOut, Departure::Announced);
        }
    }
}
