//! The login flow: the seed's interactive questions for people on `nc`, the one-line
//! `/register` and `/login`, failed-login limits, and what happens on success.

use std::time::Instant;

use super::{Departure, Engine, Member, Pending, Stage, Timer};
use crate::command::{Command, ParseError, parse_command};
use crate::ids::ConnectionId;
use crate::names::{is_valid_username, username_key};
use crate::output::CloseReason;
use crate::store::{Password, Role, StoreError, StoreReply, StoreRequest};
use crate::wire::{ErrorCode, Line, Prompt};

impl Engine {
    /// A line from a connection that is not logged in; `stage` was taken out of its
    /// session and must be put back (or replaced).
    pub(super) fn on_login_line(
        &mut self,
        connection: ConnectionId,
        stage: Stage,
        text: &str,
        now: Instant,
    ) {
        let trimmed = text.trim();
        match stage {
            Stage::AskPassword { existing, username } => {
                self.authenticate(connection, existing, username, Password::new(text), now);
            }
            stage if trimmed.starts_with('/') => {
                self.set_stage(connection, stage);
                self.on_login_command(connection, trimmed, now);
            }
            Stage::AskAccount => {
                let next = match trimmed.to_ascii_lowercase().as_str() {
                    "" => Stage::AskAccount,
                    "y" | "yes" => Stage::AskUsername { existing: true },
                    "n" | "no" => Stage::AskUsername { existing: false },
                    _ => {
                        self.send(connection, Line::Info("Please answer y or n."));
                        self.send(connection, Line::Prompt(Prompt::Account));
                        Stage::AskAccount
                    }
                };
                if matches!(next, Stage::AskUsername { .. }) {
                    self.send(connection, Line::Prompt(Prompt::Username));
                }
                self.set_stage(connection, next);
            }
            Stage::AskUsername { existing } => {
                if trimmed.is_empty() {
                    self.set_stage(connection, Stage::AskUsername { existing });
                } else if !existing && !is_valid_username(trimmed) {
                    self.username_rules(connection);
                    self.send(connection, Line::Prompt(Prompt::Username));
                    self.set_stage(connection, Stage::AskUsername { existing });
                } else {
                    self.send(connection, Line::Prompt(Prompt::Password));
                    let username = trimmed.to_string();
                    self.set_stage(connection, Stage::AskPassword { existing, username });
                }
            }
            // Input waits while authenticating, and logged-in lines go to `chat`.
            stage @ (Stage::Authenticating | Stage::Chatting(_)) => {
                self.set_stage(connection, stage);
            }
        }
    }

    /// A `/command` before login.
    fn on_login_command(&mut self, connection: ConnectionId, line: &str, now: Instant) {
        match parse_command(line) {
            Ok(Command::Register { username, password }) => {
                self.authenticate(connection, false, username, password, now);
            }
            Ok(Command::Login { username, password }) => {
                self.authenticate(connection, true, username, password, now);
            }
            Ok(Command::Ping(token)) => {
                self.send(connection, Line::Pong(&crate::sanitize_text(&token)));
            }
            Ok(Command::Help) => self.send(connection, Line::Help(None)),
            Ok(Command::Mode(mode)) => self.set_mode(connection, mode),
            Ok(Command::Close) => {
                self.send(connection, Line::Goodbye);
                self.close(connection, CloseReason::ClientQuit, Departure::Silent);
            }
            Err(ParseError::Usage(usage)) => {
                self.error(connection, ErrorCode::Usage, format_args!("usage: {usage}"))
            }
            Ok(_) | Err(ParseError::Unknown(_)) | Err(ParseError::Empty) => self.error(
                connection,
                ErrorCode::NotLoggedIn,
                format_args!(
                    "log in first: /login <user> <password> or /register <user> <password>"
                ),
            ),
        }
    }

    /// Checks what can be checked here, then asks the store to log in or register.
    fn authenticate(
        &mut self,
        connection: ConnectionId,
        existing: bool,
        username: String,
        password: Password,
        now: Instant,
    ) {
        let Some(session) = self.sessions.get(connection) else {
            return;
        };
        let address = session.peer.ip();
        let account = username_key(&username);
        let password_len = password.expose().len();
        if existing {
            let config = &self.config;
            if self
                .address_failures
                .is_locked(&address, config.max_login_failures_per_address, now)
                || self.account_failures.is_locked(
                    &account,
                    config.max_login_failures_per_account,
                    now,
                )
            {
                self.error(
                    connection,
                    ErrorCode::LockedOut,
                    format_args!("too many failed logins; try again later"),
                );
                return self.login_failed(connection, None, now);
            }
            if !is_valid_username(&username) || password_len > self.config.max_password_bytes {
                return self.login_failed(connection, Some(&account), now);
            }
            self.set_stage(connection, Stage::Authenticating);
            let pending = Pending::Authenticate {
                connection,
                existing,
                account,
            };
            self.request_for(StoreRequest::Login { username, password }, pending);
            return;
        }
        let (min, max) = (
            self.config.min_password_bytes,
            self.config.max_password_bytes,
        );
        if !is_valid_username(&username) {
            self.username_rules(connection);
            return self.ask_again(connection);
        }
        if !(min..=max).contains(&password_len) {
            self.error(
                connection,
                ErrorCode::InvalidPassword,
                format_args!("passwords are {min} to {max} bytes long"),
            );
            return self.ask_again(connection);
        }
        self.set_stage(connection, Stage::Authenticating);
        let pending = Pending::Authenticate {
            connection,
            existing,
            account,
        };
        self.request_for(StoreRequest::Register { username, password }, pending);
    }

    /// The store answered a login or registration.
    pub(super) fn on_authenticated(
        &mut self,
        connection: ConnectionId,
        existing: bool,
        account: &str,
        reply: StoreReply,
        now: Instant,
    ) {
        match reply {
            StoreReply::Account { username, role } => {
                self.account_failures.clear(&account.to_string());
                self.logged_in(connection, existing, username, role);
            }
            StoreReply::Failed(StoreError::InvalidCredentials) if existing => {
                self.login_failed(connection, Some(account), now);
            }
            StoreReply::Failed(StoreError::UsernameTaken) => {
                self.error(
                    connection,
                    ErrorCode::UsernameTaken,
                    format_args!("that username is taken"),
                );
                self.ask_again(connection);
            }
            StoreReply::Failed(StoreError::Busy) => {
                self.error(
                    connection,
                    ErrorCode::Busy,
                    format_args!("the server is busy; try again"),
                );
                self.ask_again(connection);
            }
            other => {
                self.store_failed(connection, &other);
                self.ask_again(connection);
            }
        }
    }

    /// A failed login: counted for the connection, and (when known) the account and
    /// the address; too many on one connection closes it.
    fn login_failed(&mut self, connection: ConnectionId, account: Option<&str>, now: Instant) {
        let Some(session) = self.sessions.get_mut(connection) else {
            return;
        };
        session.login_failures += 1;
        self.stats.login_failures += 1;
        let (failures, address) = (session.login_failures, session.peer.ip());
        if let Some(account) = account {
            self.account_failures.record(&account.to_string(), now);
            self.address_failures.record(&address, now);
            self.error(
                connection,
                ErrorCode::InvalidCredentials,
                format_args!("invalid username or password"),
            );
        }
        tracing::info!(%connection, %address, failures, "failed login");
        if failures >= self.config.max_login_failures_per_connection {
            self.error(
                connection,
                ErrorCode::TooManyLoginFailures,
                format_args!("too many failed logins; goodbye"),
            );
            self.close(
                connection,
                CloseReason::TooManyLoginFailures,
                Departure::Silent,
            );
        } else {
            self.ask_again(connection);
        }
    }

    fn logged_in(
        &mut self,
        connection: ConnectionId,
        existing: bool,
        username: String,
        role: Role,
    ) {
        let Some(session) = self.sessions.get_mut(connection) else {
            return;
        };
        let key = username_key(&username);
        if let Some(at) = session.login_deadline.take() {
            self.timers.remove(&(at, connection, Timer::LoginDeadline));
        }
        session.stage = Stage::Chatting(Member {
            account: key.clone(),
            channel: String::new(),
            slot_in_channel: 0,
        });
        tracing::info!(%connection, user = %username, %role, new = !existing, "logged in");
        self.stats.logins += 1;
        let account = self.accounts.entry(key).or_insert_with(|| super::Account {
            username: username.clone(),
            role,
            sessions: Vec::new(),
        });
        account.role = role;
        account.sessions.push(connection);
        let welcome = if existing {
            Line::Welcome {
                user: &username,
                role,
                new: false,
            }
        } else {
            Line::Welcome {
                user: &username,
                role,
                new: true,
            }
        };
        self.send(connection, welcome);
        let default_channel = self.config.default_channel.clone();
        let channel = self.enter_channel(connection, &default_channel);
        self.send(connection, Line::InChannel { channel: &channel });
        self.replay_history(connection, channel, self.config.history_replay, false);
        if existing {
            self.request_for(
                StoreRequest::FetchPending { username },
                Pending::OfflineMessages { connection },
            );
        }
    }

    fn set_stage(&mut self, connection: ConnectionId, stage: Stage) {
        if let Some(session) = self.sessions.get_mut(connection) {
            session.stage = stage;
        }
    }

    fn ask_again(&mut self, connection: ConnectionId) {
        self.set_stage(connection, Stage::AskAccount);
        self.send(connection, Line::Prompt(Prompt::Account));
    }

    fn username_rules(&mut self, connection: ConnectionId) {
        self.error(
            connection,
            ErrorCode::InvalidUsername,
            format_args!("usernames are 1 to 32 letters, digits, '_', '-' or '.'"),
        );
    }
}
