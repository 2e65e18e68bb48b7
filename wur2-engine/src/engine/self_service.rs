//! Account self-service: `/password`, `/delete-account`, and resume tokens (`/token`,
//! `/logout-everywhere`; `/resume` is a login, see the login module).
//!
//! `/password` and `/delete-account` check the user's password in the store, as a login
//! does, and a wrong one counts as a failed login for the throttles (a session left open
//! must not become a way to guess the password). A changed password revokes the account's
//! resume tokens (in the store) and logs its other sessions out, on every node, as
//! `/logout-everywhere` does; a deleted account goes as the operator's purge does, with
//! its messages and tokens.

use std::time::Instant;

use super::{Departure, Engine, Pending, Sender};
use crate::cluster::{Body, LogoutCause, Topic};
use crate::ids::ConnectionId;
use crate::login_guard::Admission;
use crate::names::username_key;
use crate::output::CloseReason;
use crate::store::{Password, StoreError, StoreReply, StoreRequest};
use crate::wire::{ErrorCode, Line};

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
                self.log_out_everywhere_but(connection, &account, LogoutCause::PasswordChanged);
                tracing::info!(%connection, "password changed");
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

    /// `/token`: a new resume token, from the store.
    pub(super) fn issue_token(&mut self, connection: ConnectionId, sender: &Sender) {
        let username = sender.username.clone();
        let request = StoreRequest::IssueToken { username };
        self.request_for(request, Pending::IssueToken { connection });
    }

    /// The store's answer to `/token`: the token, shown once.
    pub(super) fn on_token_issued(&mut self, connection: ConnectionId, reply: StoreReply) {
        let (StoreReply::Token(token), Some(user)) = (&reply, self.username_of(connection)) else {
            return self.store_failed(connection, &reply);
        };
        let line = Line::Token {
            user: &user,
            token: token.expose(),
        };
        self.send(connection, line);
        tracing::info!(%connection, "resume token issued");
    }

    /// `/logout-everywhere`: the store revokes the account's resume tokens first.
    pub(super) fn logout_everywhere(&mut self, connection: ConnectionId, sender: &Sender) {
        let username = sender.username.clone();
        let request = StoreRequest::RevokeTokens { username };
        self.request_for(request, Pending::LogoutEverywhere { connection });
    }

    /// The tokens are revoked: the account's other sessions go, on every node.
    pub(super) fn on_tokens_revoked(&mut self, connection: ConnectionId, reply: StoreReply) {
        let (StoreReply::Done, Some(account)) = (&reply, self.account_of(connection)) else {
            return self.store_failed(connection, &reply);
        };
        self.send(connection, Line::LoggedOutEverywhere);
        self.log_out_everywhere_but(connection, &account, LogoutCause::Everywhere);
        tracing::info!(%connection, "logged out everywhere");
    }

    /// Logs account `key`'s sessions but `connection` out, here and on every other node.
    fn log_out_everywhere_but(&mut self, connection: ConnectionId, key: &str, cause: LogoutCause) {
        self.log_out_sessions_of(key, Some(connection), cause);
        if self.cluster.is_some() {
            let user = self.username_of(connection).unwrap_or_default();
            self.publish(Topic::All, Body::LoggedOut { user, cause });
        }
    }

    /// Closes every session of account `key` here but `keep`, telling each why.
    pub(super) fn log_out_sessions_of(
        &mut self,
        key: &str,
        keep: Option<ConnectionId>,
        cause: LogoutCause,
    ) {
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
                reason: cause.reason(),
            };
            self.send(session, line);
            self.close(session, CloseReason::LoggedOut, Departure::Announced);
        }
    }
}
