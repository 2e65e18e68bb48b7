//! The login flow: the seed's interactive questions for people on `nc`, the one-line
//! `/register` and `/login`, failed-login limits (the lock-outs and slowdowns of the login
//! guard), registration limits, and what happens on success.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::sessions::Proof;
use super::{Departure, Engine, Login, Member, Pending, Stage, Timer};
use crate::command::{Command, ParseError, parse_command};
use crate::ids::ConnectionId;
use crate::login_guard::Admission;
use crate::names::{is_valid_username, username_key};
use crate::output::CloseReason;
use crate::registration_limit::Refused;
use crate::sanction::Sanction;
use crate::store::{Password, Role, StoreError, StoreReply, StoreRequest};
use crate::wire::{ErrorCode, Line, Prompt};

impl Engine {
    /// A line from a connection that is not logged in, at step `login`; returns the next
    /// step.
    pub(super) fn on_login_line(
        &mut self,
        connection: ConnectionId,
        login: Login,
        text: &str,
        now: Instant,
    ) -> Login {
        let trimmed = text.trim();
        match login {
            // Input waits while a slowed-down login waits (the session is blocked).
            login @ Login::Delayed { .. } => login,
            // One rule wherever a password is typed: surrounding whitespace is not part of
            // it (`/login` and `/register` lose theirs when the line is split).
            Login::AskPassword { existing, username } => {
                self.authenticate(connection, existing, username, Password::new(trimmed), now)
            }
            login if trimmed.starts_with('/') => {
                self.on_login_command(connection, login, trimmed, now)
            }
            Login::AskAccount => match trimmed.to_ascii_lowercase().as_str() {
                "" => Login::AskAccount,
                "y" | "yes" => self.ask_username(connection, true),
                "n" | "no" => self.ask_username(connection, false),
                _ => {
                    self.send(connection, Line::Info("Please answer y or n."));
                    self.send(connection, Line::Prompt(Prompt::Account));
                    Login::AskAccount
                }
            },
            Login::AskUsername { existing } if trimmed.is_empty() => {
                Login::AskUsername { existing }
            }
            Login::AskUsername { existing }
                if !existing && self.refuse_new_username(connection, trimmed) =>
            {
                self.ask_username(connection, existing)
            }
            Login::AskUsername { existing } => {
                self.send(connection, Line::Prompt(Prompt::Password));
                let username = trimmed.to_string();
                Login::AskPassword { existing, username }
            }
            // Input waits while the store authenticates.
            Login::Authenticating => Login::Authenticating,
        }
    }

    /// A `/command` before login, at step `login`; returns the next step.
    fn on_login_command(
        &mut self,
        connection: ConnectionId,
        login: Login,
        line: &str,
        now: Instant,
    ) -> Login {
        match parse_command(line) {
            Ok(Command::Register { username, password }) => {
                return self.authenticate(connection, false, username, password, now);
            }
            Ok(Command::Login { username, password }) => {
                return self.authenticate(connection, true, username, password, now);
            }
            Ok(Command::Resume { username, token }) => {
                return self.log_in(connection, username, Proof::Token(token), now);
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
        login
    }

    /// Checks what can be checked here, then asks the store to log in or register (a
    /// slowed-down login after its wait); returns the next step.
    fn authenticate(
        &mut self,
        connection: ConnectionId,
        existing: bool,
        username: String,
        password: Password,
        now: Instant,
    ) -> Login {
        if existing {
            return self.log_in(connection, username, Proof::Password(password), now);
        }
        let Some(session) = self.sessions.get(connection) else {
            return Login::AskAccount;
        };
        let address = session.peer.ip();
        let account = username_key(&username);
        let password_len = password.expose().len();
        let (min, max) = (
            self.config.min_password_bytes,
            self.config.max_password_bytes,
        );
        if self.refuse_new_username(connection, &username) {
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
        if let Err(refused) = self.registrations.reserve(address, now) {
            self.registration_refused(connection, address, refused);
            return self.ask_again(connection);
        }
        let pending = Pending::Authenticate {
            connection,
            existing,
            account,
            registration: Some(now),
        };
        self.request_for(StoreRequest::Register { username, password }, pending);
        Login::Authenticating
    }

    /// A login to an existing account with `proof` (a password, or a resume token):
    /// refused at once when the login guard locks the account or address out, or the name
    /// or proof cannot be right; slowed down when the guard says so; else to the store.
    /// Returns the next step.
    fn log_in(
        &mut self,
        connection: ConnectionId,
        username: String,
        proof: Proof,
        now: Instant,
    ) -> Login {
        let Some(session) = self.sessions.get(connection) else {
            return Login::AskAccount;
        };
        let address = session.peer.ip();
        let account = username_key(&username);
        let wait = match self.login_guard.admit(&account, address, now) {
            Admission::Locked => {
                self.error(
                    connection,
                    ErrorCode::LockedOut,
                    format_args!("too many failed logins; try again later"),
                );
                return self.login_failed(connection, Failure::LockedOut, now);
            }
            Admission::After(wait) => wait,
        };
        if !is_valid_username(&username) {
            // No account has this name: counted against the address only, so
            // malformed names cannot fill the guard's memory with long keys.
            let failure = Failure::Refused { account: None };
            return self.login_failed(connection, failure, now);
        }
        if proof.len() > self.config.max_password_bytes {
            let failure = Failure::Refused {
                account: Some(&account),
            };
            return self.login_failed(connection, failure, now);
        }
        if wait > Duration::ZERO {
            let until = now.checked_add(wait).unwrap_or(now);
            self.timers.set(until, connection, Timer::LoginDelay);
            let wait_ms = wait.as_millis();
            tracing::info!(%connection, %address, wait_ms, "login slowed down");
            return Login::Delayed {
                username,
                proof,
                until,
            };
        }
        self.request_login(connection, username, proof);
        Login::Authenticating
    }

    /// Asks the store to check a login's password or resume token.
    fn request_login(&mut self, connection: ConnectionId, username: String, proof: Proof) {
        let pending = Pending::Authenticate {
            connection,
            existing: true,
            account: username_key(&username),
            registration: None,
        };
        let request = match proof {
            Proof::Password(password) => StoreRequest::Login { username, password },
            Proof::Token(token) => StoreRequest::Resume { username, token },
        };
        self.request_for(request, pending);
    }

    /// The wait of `connection`'s slowed-down login is over: its password goes to the
    /// store.
    pub(super) fn login_delay_over(&mut self, connection: ConnectionId) {
        let Some(session) = self.sessions.get_mut(connection) else {
            return;
        };
        let Stage::LoggingIn(login) = &mut session.stage else {
            return;
        };
        match std::mem::replace(login, Login::Authenticating) {
            Login::Delayed {
                username, proof, ..
            } => self.request_login(connection, username, proof),
            other => *login = other,
        }
    }

    /// Tells `connection` that a registration limit refused it, and when to try again.
    fn registration_refused(&mut self, connection: ConnectionId, address: IpAddr, why: Refused) {
        let (retry_after, whose) = match why {
            Refused::Address { retry_after } => (retry_after, "from your address"),
            Refused::Total { retry_after } => (retry_after, "on this server right now"),
        };
        // Whole seconds, rounded up: "try again in 0 s" would be wrong.
        let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        tracing::info!(%connection, %address, ?why, "registration refused by a limit");
        self.error(
            connection,
            ErrorCode::TooManyRegistrations,
            format_args!("too many new accounts {whose}; try again in {seconds} s"),
        );
    }

    /// The store answered a login or registration (counted against the registration
    /// limits at `registration`).
    pub(super) fn on_authenticated(
        &mut self,
        connection: ConnectionId,
        existing: bool,
        account: &str,
        registration: Option<Instant>,
        reply: StoreReply,
        now: Instant,
    ) {
        let Some(address) = self.sessions.get(connection).map(|s| s.peer.ip()) else {
            return;
        };
        if let StoreReply::Account {
            username,
            role,
            mute,
        } = reply
        {
            self.login_guard.record_success(account, address);
            return self.logged_in(connection, existing, username, role, mute);
        }
        if let StoreReply::Failed(StoreError::Banned(ban)) = &reply {
            return self.refuse_banned(connection, ban);
        }
        if let Some(at) = registration {
            self.registrations.release(address, at);
        }
        let next = match reply {
            StoreReply::Failed(StoreError::InvalidCredentials) if existing => {
                let failure = Failure::Refused {
                    account: Some(account),
                };
                self.login_failed(connection, failure, now)
            }
            StoreReply::Failed(StoreError::UsernameTaken) => {
                self.error(
                    connection,
                    ErrorCode::UsernameTaken,
                    format_args!("that username is taken"),
                );
                self.ask_again(connection)
            }
            StoreReply::Failed(StoreError::Busy) => {
                self.error(
                    connection,
                    ErrorCode::Busy,
                    format_args!("the server is busy; try again"),
                );
                self.ask_again(connection)
            }
            other => {
                self.store_failed(connection, &other);
                self.ask_again(connection)
            }
        };
        self.set_login(connection, next);
    }

    /// A failed login: counted for the connection, and (when refused by the store or the
    /// rules) for the address and the account it names; too many on one connection closes
    /// it. Returns the next step.
    fn login_failed(
        &mut self,
        connection: ConnectionId,
        failure: Failure<'_>,
        now: Instant,
    ) -> Login {
        let Some(session) = self.sessions.get_mut(connection) else {
            return Login::AskAccount;
        };
        session.login_failures += 1;
        self.stats.login_failures += 1;
        let (failures, address) = (session.login_failures, session.peer.ip());
        if let Failure::Refused { account } = failure {
            self.login_guard.record_failure(account, address, now);
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
            // The connection is gone: nothing reads the step.
            Login::AskAccount
        } else {
            self.ask_again(connection)
        }
    }

    fn logged_in(
        &mut self,
        connection: ConnectionId,
        existing: bool,
        username: String,
        role: Role,
        mute: Option<Sanction>,
    ) {
        let Some(session) = self.sessions.get_mut(connection) else {
            return;
        };
        let key = username_key(&username);
        if let Some(at) = session.login_deadline.take() {
            self.timers.cancel(at, connection, Timer::LoginDeadline);
        }
        session.stage = Stage::Chatting(Member {
            account: key.clone(),
            channel: String::new(),
            slot_in_channel: 0,
            joined_after: 0,
        });
        tracing::info!(%connection, user = %username, %role, new = !existing, "logged in");
        self.stats.logins += 1;
        self.accounts
            .log_in(key.clone(), &username, role, connection);
        self.inherit_remote_away(&key);
        let welcome = Line::Welcome {
            user: &username,
            role,
            new: !existing,
        };
        self.send(connection, welcome);
        self.muted_at_login(connection, &key, mute);
        let default_channel = self.config.default_channel.clone();
        let channel = self.enter_channel(connection, &default_channel);
        self.send(connection, Line::InChannel { channel: &channel });
        // Private messages that waited come after the history, as documented.
        let offline = existing.then_some(username);
        self.replay_history(connection, channel, self.config.history_replay, offline);
    }

    /// Puts `connection`, still logging in, at step `next`.
    pub(super) fn set_login(&mut self, connection: ConnectionId, next: Login) {
        if let Some(session) = self.sessions.get_mut(connection)
            && let Stage::LoggingIn(login) = &mut session.stage
        {
            *login = next;
        }
    }

    /// Starts the login over: the account question again.
    fn ask_again(&mut self, connection: ConnectionId) -> Login {
        self.send(connection, Line::Prompt(Prompt::Account));
        Login::AskAccount
    }

    /// Asks for the username (of an `existing` account or a new one).
    fn ask_username(&mut self, connection: ConnectionId, existing: bool) -> Login {
        self.send(connection, Line::Prompt(Prompt::Username));
        Login::AskUsername { existing }
    }

    /// Whether `username` may not be registered; if so, `connection` is told why.
    fn refuse_new_username(&mut self, connection: ConnectionId, username: &str) -> bool {
        if !is_valid_username(username) {
            self.error(
                connection,
                ErrorCode::InvalidUsername,
                format_args!("usernames are 1 to 32 letters, digits, '_', '-' or '.'"),
            );
            true
        } else if self.config.is_reserved_username(username) {
            self.error(
                connection,
                ErrorCode::UsernameReserved,
                format_args!("the username {username} is reserved; choose another"),
            );
            true
        } else {
            false
        }
    }
}

/// How a login attempt failed.
#[derive(Debug, Clone, Copy)]
enum Failure<'a> {
    /// The login guard refused it before the password was checked.
    LockedOut,
    /// Wrong password, unknown user, or a name or password no account can have; `account`
    /// is the key of a name that could exist.
    Refused { account: Option<&'a str> },
}
