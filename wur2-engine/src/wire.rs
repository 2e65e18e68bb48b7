//! Every line the server sends, in one place: the protocol of `docs/PROTOCOL.md`.
//!
//! A [`Line`] is what the server says, typed; it renders as a text line (for people and
//! scripts) or as one JSON object (for programs that switched to JSON mode). A broadcast is
//! rendered at most once per mode, however many recipients it has. Names in lines are
//! validated names; message text is sanitised before it gets here.

use std::fmt::Write as _;
use std::io::Write as _;

use bytes::Bytes;

use crate::ids::{MessageId, TransferId};
use crate::json::{ChannelInfo, SanctionInfo, ServerEvent, ServerLine};
use crate::sanction::{Sanction, SanctionKind};
use crate::store::Role;

/// How a connection wants server lines: readable text (the default) or JSON objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// One human-readable line per message.
    #[default]
    Text,
    /// One JSON object per line (JSON lines).
    Json,
}

/// The stable code of every error a client can get; JSON mode sends it as `code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// A line over `max_line_bytes`.
    LineTooLong,
    /// A line that is not UTF-8.
    InvalidUtf8,
    /// Chat or private message text over `max_message_bytes`.
    MessageTooLong,
    /// Too many lines waiting; the connection closes.
    Flooding,
    /// No login within `login_timeout`; the connection closes.
    LoginTimeout,
    /// Too many failed logins on this connection; it closes.
    TooManyLoginFailures,
    /// Too many failed logins for this account from this address, or from this address
    /// overall; try later (other addresses are not affected).
    LockedOut,
    /// The server is full.
    ServerFull,
    /// Too many connections from this address.
    TooManyConnections,
    /// A username that breaks the rules.
    InvalidUsername,
    /// A password that breaks the length rules.
    InvalidPassword,
    /// Registration with a name already taken.
    UsernameTaken,
    /// Too many registrations from this address recently, or from everyone in the last
    /// minute; try later (the message says when).
    TooManyRegistrations,
    /// Registration with a name the operator reserved (`Config::reserved_usernames`).
    UsernameReserved,
    /// Wrong password or unknown user (the same for both).
    InvalidCredentials,
    /// The server is busy; try again.
    Busy,
    /// Storage failed; try again later.
    StorageUnavailable,
    /// No command has this name.
    UnknownCommand,
    /// A command with wrong arguments.
    Usage,
    /// A command that needs a login, before login.
    NotLoggedIn,
    /// `/login` or `/register` after login.
    AlreadyLoggedIn,
    /// No account has this name.
    NoSuchUser,
    /// The user is not online.
    NotOnline,
    /// A channel name that breaks the rules.
    InvalidChannel,
    /// Your role does not allow this.
    Forbidden,
    /// Kicking yourself.
    CannotKickSelf,
    /// Taking the admin role from the last admin.
    LastAdmin,
    /// A file over `max_file_bytes`.
    FileTooLarge,
    /// A file name that breaks the rules.
    InvalidFileName,
    /// Server-side files are off.
    FilesOff,
    /// A server-side path that breaks the rules.
    InvalidPath,
    /// No such server-side file.
    NoSuchFile,
    /// A server-side file that may not be sent.
    FileNotAllowed,
    /// A server-side file that could not be read.
    FileUnreadable,
    /// Too many transfers running.
    TooManyTransfers,
    /// No such transfer (or not yours).
    NoSuchTransfer,
    /// Sending a file to yourself.
    CannotSendToSelf,
    /// Joining a private channel without an invitation.
    NotInvited,
    /// A message, private message or file from a muted user; nothing was sent or stored.
    Muted,
    /// Banning or muting yourself.
    CannotSanctionSelf,
    /// `/unban` or `/unmute` of a user with no such sanction in force.
    NotSanctioned,
}

impl ErrorCode {
    /// The code as sent in JSON mode, e.g. `line_too_long`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::LineTooLong => "line_too_long",
            ErrorCode::InvalidUtf8 => "invalid_utf8",
            ErrorCode::MessageTooLong => "message_too_long",
            ErrorCode::Flooding => "flooding",
            ErrorCode::LoginTimeout => "login_timeout",
            ErrorCode::TooManyLoginFailures => "too_many_login_failures",
            ErrorCode::LockedOut => "locked_out",
            ErrorCode::ServerFull => "server_full",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::InvalidUsername => "invalid_username",
            ErrorCode::InvalidPassword => "invalid_password",
            ErrorCode::UsernameTaken => "username_taken",
            ErrorCode::TooManyRegistrations => "too_many_registrations",
            ErrorCode::UsernameReserved => "username_reserved",
            ErrorCode::InvalidCredentials => "invalid_credentials",
            ErrorCode::Busy => "busy",
            ErrorCode::StorageUnavailable => "storage_unavailable",
            ErrorCode::UnknownCommand => "unknown_command",
            ErrorCode::Usage => "usage",
            ErrorCode::NotLoggedIn => "not_logged_in",
            ErrorCode::AlreadyLoggedIn => "already_logged_in",
            ErrorCode::NoSuchUser => "no_such_user",
            ErrorCode::NotOnline => "not_online",
            ErrorCode::InvalidChannel => "invalid_channel",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::CannotKickSelf => "cannot_kick_self",
            ErrorCode::LastAdmin => "last_admin",
            ErrorCode::FileTooLarge => "file_too_large",
            ErrorCode::InvalidFileName => "invalid_file_name",
            ErrorCode::FilesOff => "files_off",
            ErrorCode::InvalidPath => "invalid_path",
            ErrorCode::NoSuchFile => "no_such_file",
            ErrorCode::FileNotAllowed => "file_not_allowed",
            ErrorCode::FileUnreadable => "file_unreadable",
            ErrorCode::TooManyTransfers => "too_many_transfers",
            ErrorCode::NoSuchTransfer => "no_such_transfer",
            ErrorCode::CannotSendToSelf => "cannot_send_to_self",
            ErrorCode::NotInvited => "not_invited",
            ErrorCode::Muted => "muted",
            ErrorCode::CannotSanctionSelf => "cannot_sanction_self",
            ErrorCode::NotSanctioned => "not_sanctioned",
        }
    }
}

/// A question of the interactive login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prompt {
    Account,
    Username,
    Password,
}

/// Everything the server says.
#[derive(Debug, Clone)]
pub(crate) enum Line<'a> {
    /// A plain notice (banner, hints) with no structure of its own.
    Info(&'a str),
    Prompt(Prompt),
    Welcome {
        user: &'a str,
        role: Role,
        new: bool,
    },
    InChannel {
        channel: &'a str,
    },
    Chat {
        channel: &'a str,
        user: &'a str,
        text: &'a str,
        id: MessageId,
    },
    Direct {
        from: &'a str,
        text: &'a str,
        id: MessageId,
    },
    OfflineDirect {
        from: &'a str,
        text: &'a str,
        sent_at: i64,
        id: MessageId,
    },
    History {
        channel: &'a str,
        from: &'a str,
        text: &'a str,
        sent_at: i64,
        id: MessageId,
    },
    /// A private message of the past, between the reader and `with`.
    DmHistory {
        with: &'a str,
        from: &'a str,
        text: &'a str,
        sent_at: i64,
        id: MessageId,
    },
    /// A page of history was full: older messages may be had with `/history … before`.
    HistoryMore {
        /// The conversation's other user, or `None` for the channel's history.
        with: Option<&'a str>,
        count: usize,
        before: MessageId,
    },
    /// Your `/password` took effect.
    PasswordChanged,
    /// Your `/token`: shown once.
    Token {
        user: &'a str,
        token: &'a str,
    },
    /// Your `/logout-everywhere` took effect.
    LoggedOutEverywhere,
    /// Your `/delete-account` took effect; the connection closes.
    AccountDeleted {
        user: &'a str,
    },
    /// Another session of your account changed its password: this one closes.
    LoggedOut {
        reason: &'a str,
    },
    StoredForLater {
        to: &'a str,
    },
    Joined {
        user: &'a str,
        channel: &'a str,
    },
    Left {
        user: &'a str,
        channel: &'a str,
    },
    Switched {
        from: &'a str,
        to: &'a str,
    },
    Kicked {
        by: &'a str,
        reason: &'a str,
    },
    KickNotice {
        user: &'a str,
        by: &'a str,
        reason: &'a str,
    },
    KickDone {
        user: &'a str,
    },
    /// To a banned user (at login or live); the connection closes.
    Banned(&'a Sanction),
    /// To a user just muted (or muted at login).
    Muted(&'a Sanction),
    Unmuted,
    /// To whoever set the ban or mute.
    Sanctioned(&'a Sanction),
    Lifted {
        kind: SanctionKind,
        user: &'a str,
    },
    Sanctions(&'a [Sanction]),
    YourRole {
        role: Role,
    },
    RoleSet {
        user: &'a str,
        role: Role,
    },
    RoleChanged {
        role: Role,
        by: &'a str,
    },
    /// `/list`: each user online, with the away message when away.
    Users(Vec<(&'a str, Option<&'a str>)>),
    /// `/channels`: name, members and topic.
    Channels(Vec<(&'a str, usize, Option<&'a str>)>),
    /// A channel's topic (`None`: none set), answering `/topic` or after a `/join`.
    Topic {
        channel: &'a str,
        topic: Option<&'a str>,
    },
    /// `by` set (or cleared) the topic of your channel.
    TopicChanged {
        channel: &'a str,
        topic: Option<&'a str>,
        by: &'a str,
    },
    /// `by` made your channel private or public.
    PrivacyChanged {
        channel: &'a str,
        private: bool,
        by: &'a str,
    },
    /// Your `/invite` took effect.
    Invited {
        channel: &'a str,
        user: &'a str,
    },
    /// `by` invited you to a channel.
    Invitation {
        channel: &'a str,
        by: &'a str,
    },
    /// `/names`: who is in the channel.
    Names {
        channel: &'a str,
        users: Vec<&'a str>,
    },
    /// Your `/away` took effect (`None`: you are back).
    AwaySet(Option<&'a str>),
    /// The user you sent a private message to is away.
    Away {
        user: &'a str,
        text: &'a str,
    },
    Profile {
        user: &'a str,
        channel: &'a str,
        role: Role,
    },
    Pong(&'a str),
    Goodbye,
    ShuttingDown,
    Help(Option<Role>),
    ModeSet(Mode),
    FileOffer {
        id: TransferId,
        from: &'a str,
        name: &'a str,
        size: u64,
    },
    FileSending {
        id: TransferId,
        to: &'a str,
        name: &'a str,
        size: u64,
    },
    FileChunk {
        id: TransferId,
        data: &'a [u8],
    },
    FileReceived {
        id: TransferId,
        name: &'a str,
        size: u64,
        from: &'a str,
    },
    FileSent {
        id: TransferId,
        name: &'a str,
        to: &'a str,
    },
    FileCancelled {
        id: TransferId,
        reason: &'a str,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
}

impl Line<'_> {
    /// The line in `mode`; `unix_ms` stamps JSON objects when the wall clock is known.
    pub(crate) fn render(&self, mode: Mode, unix_ms: Option<i64>) -> Bytes {
        match mode {
            Mode::Text => self.text(),
            Mode::Json => self.json(unix_ms),
        }
    }

    /// The human-readable form, `\n` included.
    pub(crate) fn text(&self) -> Bytes {
        if let Line::Chat {
            channel,
            user,
            text,
            ..
        } = self
        {
            return chat_text(channel, user, text);
        }
        if let Line::FileChunk { id, data } = self {
            return file_chunk_text(*id, data);
        }
        let mut out = String::with_capacity(64);
        // Writing to a String cannot fail.
        let _ = match self {
            Line::Info(text) => write!(out, "{text}"),
            Line::Prompt(Prompt::Account) => write!(out, "Do you have an account? (y/n)"),
            Line::Prompt(Prompt::Username) => write!(out, "Enter username:"),
            Line::Prompt(Prompt::Password) => write!(out, "Enter password:"),
            Line::Welcome {
                user, new: true, ..
            } => write!(out, "Welcome {user}!"),
            Line::Welcome {
                user, new: false, ..
            } => write!(out, "Welcome back {user}!"),
            Line::InChannel { channel } => write!(out, "You are in {channel}"),
            Line::Chat { .. } | Line::FileChunk { .. } => Ok(()),
            Line::Direct { from, text, .. } => write!(out, "[DM] {from}: {text}"),
            Line::OfflineDirect {
                from,
                text,
                sent_at,
                ..
            } => {
                write!(out, "[offline DM {}] {from}: {text}", Timestamp(*sent_at))
            }
            Line::History {
                channel,
                from,
                text,
                sent_at,
                ..
            } => {
                write!(
                    out,
                    "[history {}] [{channel}] {from}: {text}",
                    Timestamp(*sent_at)
                )
            }
            Line::StoredForLater { to } => write!(
                out,
                "{to} is offline; the message will be delivered at their next login."
            ),
            Line::Joined { user, channel } => write!(out, "* {user} joined {channel}"),
            Line::Left { user, channel } => write!(out, "* {user} left {channel}"),
            Line::Switched { from, to } => write!(out, "Switched from {from} to {to}"),
            Line::Kicked { by, reason } => write!(out, "You were kicked by {by}: {reason}"),
            Line::DmHistory {
                with,
                from,
                text,
                sent_at,
                ..
            } => {
                write!(
                    out,
                    "[history {}] [@{with}] {from}: {text}",
                    Timestamp(*sent_at)
                )
            }
            Line::HistoryMore {
                with,
                count,
                before,
            } => {
                let with = with.map(|user| format!("@{user} ")).unwrap_or_default();
                write!(
                    out,
                    "Older messages: /history {with}{count} before {before}"
                )
            }
            Line::PasswordChanged => write!(
                out,
                "Your password was changed; your other sessions were logged out."
            ),
            Line::Token { user, token } => write!(
                out,
                "Your resume token (shown once; keep it private, like your password): {token} \
                 (log in with /resume {user} {token})"
            ),
            Line::LoggedOutEverywhere => write!(
                out,
                "Your resume tokens were revoked and your other sessions logged out."
            ),
            Line::AccountDeleted { user } => {
                write!(
                    out,
                    "Your account {user} was deleted, with its messages. Goodbye."
                )
            }
            Line::LoggedOut { reason } => write!(out, "You were logged out: {reason}"),
            Line::KickNotice { user, by, reason } => {
                write!(out, "* {user} was kicked by {by}: {reason}")
            }
            Line::KickDone { user } => write!(out, "You kicked {user}."),
            Line::Banned(ban) => {
                write!(
                    out,
                    "You are banned by {} {}: {}",
                    ban.by,
                    Until(ban),
                    ban.reason
                )
            }
            Line::Muted(mute) => write!(
                out,
                "You are muted by {} {}: {}",
                mute.by,
                Until(mute),
                mute.reason
            ),
            Line::Unmuted => write!(out, "You are no longer muted."),
            Line::Sanctioned(sanction) => write!(
                out,
                "{} is {} {}: {}",
                sanction.username,
                Participle(sanction.kind),
                Until(sanction),
                sanction.reason
            ),
            Line::Lifted { kind, user } => {
                write!(out, "{user} is no longer {}", Participle(*kind))
            }
            Line::Sanctions([]) => write!(out, "No bans or mutes."),
            Line::Sanctions(sanctions) => {
                out.push_str("Bans and mutes:");
                for sanction in sanctions.iter() {
                    let _ = write!(
                        out,
                        "\n  {} {} by {} {}: {}",
                        sanction.kind,
                        sanction.username,
                        sanction.by,
                        Until(sanction),
                        sanction.reason
                    );
                }
                Ok(())
            }
            Line::YourRole { role } => write!(out, "Your role is {role}"),
            Line::RoleSet { user, role } => write!(out, "{user} is now {role}"),
            Line::RoleChanged { role, by } => write!(out, "Your role is now {role} (set by {by})"),
            Line::Users(users) => {
                out.push_str("Connected users: ");
                for (i, (name, away)) in users.iter().enumerate() {
                    let separator = if i > 0 { ", " } else { "" };
                    let _ = write!(out, "{separator}{name}");
                    if let Some(away) = away {
                        let _ = write!(out, " (away: {away})");
                    }
                }
                Ok(())
            }
            Line::Channels(channels) => {
                out.push_str("Channels: ");
                for (i, (name, members, topic)) in channels.iter().enumerate() {
                    let separator = if i > 0 { ", " } else { "" };
                    let _ = write!(out, "{separator}{name} ({members})");
                    if let Some(topic) = topic {
                        let _ = write!(out, " [{topic}]");
                    }
                }
                Ok(())
            }
            Line::Topic {
                channel,
                topic: Some(topic),
            } => write!(out, "Topic of {channel}: {topic}"),
            Line::Topic {
                channel,
                topic: None,
            } => write!(out, "{channel} has no topic"),
            Line::TopicChanged {
                channel,
                topic: Some(topic),
                by,
            } => write!(out, "* {by} set the topic of {channel}: {topic}"),
            Line::TopicChanged {
                channel,
                topic: None,
                by,
            } => write!(out, "* {by} cleared the topic of {channel}"),
            Line::PrivacyChanged {
                channel,
                private,
                by,
            } => {
                let what = if *private {
                    "private: only invited users may join"
                } else {
                    "public"
                };
                write!(out, "* {by} made {channel} {what}")
            }
            Line::Invited { channel, user } => write!(out, "You invited {user} to {channel}"),
            Line::Invitation { channel, by } => {
                write!(out, "{by} invited you to {channel}; /join {channel}")
            }
            Line::Names { channel, users } => {
                write!(out, "Names in {channel}: {}", users.join(", "))
            }
            Line::AwaySet(Some(text)) => write!(out, "You are marked away: {text}"),
            Line::AwaySet(None) => write!(out, "You are no longer marked away"),
            Line::Away { user, text } => write!(out, "{user} is away: {text}"),
            Line::Profile {
                user,
                channel,
                role,
            } => {
                write!(out, "Username: {user} | Channel: {channel} | Role: {role}")
            }
            Line::Pong("") => write!(out, "PONG"),
            Line::Pong(token) => write!(out, "PONG {token}"),
            Line::Goodbye => write!(out, "Goodbye!"),
            Line::ShuttingDown => write!(out, "Server is shutting down. Goodbye!"),
            Line::Help(role) => write!(out, "{}", help_text(*role)),
            Line::ModeSet(Mode::Text) => write!(out, "Mode: text"),
            Line::ModeSet(Mode::Json) => write!(out, "Mode: json"),
            Line::FileOffer {
                id,
                from,
                name,
                size,
            } => {
                write!(out, "[file {id}] {from} is sending {name} ({size} bytes)")
            }
            Line::FileSending { id, to, name, size } => {
                write!(out, "[file {id}] sending {name} ({size} bytes) to {to}")
            }
            Line::FileReceived {
                id,
                name,
                size,
                from,
            } => {
                write!(out, "[file {id} done] {name} ({size} bytes) from {from}")
            }
            Line::FileSent { id, name, to } => write!(out, "[file {id} done] {name} sent to {to}"),
            Line::FileCancelled { id, reason } => write!(out, "[file {id} cancelled] {reason}"),
            Line::Error { message, .. } => write!(out, "Error: {message}"),
        };
        out.push('\n');
        Bytes::from(out)
    }

    /// The JSON-lines form: one [`ServerLine`] object, `\n` included.
    pub(crate) fn json(&self, unix_ms: Option<i64>) -> Bytes {
        // Owned text the borrowed event points into.
        let (id, chunk);
        let event = match *self {
            Line::Info(text) => ServerEvent::Info { text },
            Line::Prompt(prompt) => ServerEvent::Prompt {
                prompt: match prompt {
                    Prompt::Account => "account",
                    Prompt::Username => "username",
                    Prompt::Password => "password",
                },
            },
            Line::Welcome { user, role, new } => ServerEvent::Welcome {
                user,
                role: role.as_str(),
                new,
            },
            Line::InChannel { channel } => ServerEvent::Channel { channel },
            Line::Chat {
                channel,
                user,
                text,
                id: message,
            } => {
                id = message.to_string();
                ServerEvent::Message {
                    channel,
                    from: user,
                    text,
                    id: Some(id.as_str()),
                }
            }
            Line::Direct {
                from,
                text,
                id: message,
            } => {
                id = message.to_string();
                ServerEvent::Dm {
                    from,
                    text,
                    id: Some(id.as_str()),
                    offline: false,
                    sent_at: None,
                }
            }
            Line::OfflineDirect {
                from,
                text,
                sent_at,
                id: message,
            } => {
                id = message.to_string();
                ServerEvent::Dm {
                    from,
                    text,
                    id: Some(id.as_str()),
                    offline: true,
                    sent_at: Some(sent_at),
                }
            }
            Line::History {
                channel,
                from,
                text,
                sent_at,
                id: message,
            } => {
                id = message.to_string();
                ServerEvent::History {
                    channel,
                    from,
                    text,
                    sent_at,
                    id: Some(id.as_str()),
                }
            }
            Line::StoredForLater { to } => ServerEvent::DmStored { to },
            Line::Joined { user, channel } => ServerEvent::Join { user, channel },
            Line::Left { user, channel } => ServerEvent::Part { user, channel },
            Line::Switched { from, to } => ServerEvent::Switched { from, to },
            Line::Kicked { by, reason } => ServerEvent::Kicked { by, reason },
            Line::DmHistory {
                with,
                from,
                text,
                sent_at,
                id: message,
            } => {
                id = message.to_string();
                ServerEvent::DmHistory {
                    with,
                    from,
                    text,
                    sent_at,
                    id: id.as_str(),
                }
            }
            Line::HistoryMore {
                with,
                count,
                before,
            } => {
                id = before.to_string();
                ServerEvent::HistoryMore {
                    with,
                    count,
                    before: id.as_str(),
                }
            }
            Line::PasswordChanged => ServerEvent::PasswordChanged,
            Line::Token { token, .. } => ServerEvent::Token { token },
            Line::LoggedOutEverywhere => ServerEvent::LoggedOutEverywhere,
            Line::AccountDeleted { user } => ServerEvent::AccountDeleted { user },
            Line::LoggedOut { reason } => ServerEvent::LoggedOut { reason },
            Line::KickNotice { user, by, reason } => ServerEvent::Kick { user, by, reason },
            Line::KickDone { user } => ServerEvent::KickDone { user },
            Line::Banned(ban) => ServerEvent::Banned {
                by: ban.by.as_str(),
                reason: ban.reason.as_str(),
                until: until(ban),
            },
            Line::Muted(mute) => ServerEvent::Muted {
                by: mute.by.as_str(),
                reason: mute.reason.as_str(),
                until: until(mute),
            },
            Line::Unmuted => ServerEvent::Unmuted,
            Line::Sanctioned(sanction) => ServerEvent::Sanctioned {
                kind: sanction.kind.as_str(),
                user: sanction.username.as_str(),
                reason: sanction.reason.as_str(),
                until: until(sanction),
            },
            Line::Lifted { kind, user } => ServerEvent::Lifted {
                kind: kind.as_str(),
                user,
            },
            Line::Sanctions(sanctions) => ServerEvent::Sanctions {
                sanctions: sanctions
                    .iter()
                    .map(|sanction| SanctionInfo {
                        kind: sanction.kind.as_str(),
                        user: sanction.username.as_str(),
                        by: sanction.by.as_str(),
                        reason: sanction.reason.as_str(),
                        set_at: sanction.set_at_unix_ms,
                        until: until(sanction),
                    })
                    .collect(),
            },
            Line::YourRole { role } => ServerEvent::Role {
                role: role.as_str(),
                by: None,
            },
            Line::RoleSet { user, role } => ServerEvent::RoleSet {
                user,
                role: role.as_str(),
            },
            Line::RoleChanged { role, by } => ServerEvent::Role {
                role: role.as_str(),
                by: Some(by),
            },
            Line::Users(ref users) => ServerEvent::List {
                users: users.iter().map(|&(name, _)| name).collect(),
                away: users
                    .iter()
                    .filter_map(|&(name, away)| Some((name, away?)))
                    .collect(),
            },
            Line::Channels(ref channels) => ServerEvent::Channels {
                channels: channels
                    .iter()
                    .map(|&(name, members, topic)| ChannelInfo {
                        name,
                        members: members as u64,
                        topic,
                    })
                    .collect(),
            },
            Line::Topic { channel, topic } => ServerEvent::Topic {
                channel,
                topic,
                by: None,
            },
            Line::TopicChanged { channel, topic, by } => ServerEvent::Topic {
                channel,
                topic,
                by: Some(by),
            },
            Line::PrivacyChanged {
                channel,
                private,
                by,
            } => ServerEvent::Private {
                channel,
                private,
                by,
            },
            Line::Invited { channel, user } => ServerEvent::Invited { channel, user },
            Line::Invitation { channel, by } => ServerEvent::Invitation { channel, by },
            Line::Names { channel, ref users } => ServerEvent::Names {
                channel,
                users: users.clone(),
            },
            Line::AwaySet(text) => ServerEvent::AwaySet { text },
            Line::Away { user, text } => ServerEvent::Away { user, text },
            Line::Profile {
                user,
                channel,
                role,
            } => ServerEvent::Profile {
                user,
                channel,
                role: role.as_str(),
            },
            Line::Pong(token) => ServerEvent::Pong { token },
            Line::Goodbye => ServerEvent::Goodbye,
            Line::ShuttingDown => ServerEvent::Shutdown,
            Line::Help(role) => ServerEvent::Help {
                commands: help_commands(role),
            },
            Line::ModeSet(mode) => ServerEvent::Mode {
                mode: if mode == Mode::Json { "json" } else { "text" },
            },
            Line::FileOffer {
                id: file,
                from,
                name,
                size,
            } => ServerEvent::FileOffer {
                id: file.0,
                from,
                name,
                size,
            },
            Line::FileSending {
                id: file,
                to,
                name,
                size,
            } => ServerEvent::FileSending {
                id: file.0,
                to,
                name,
                size,
            },
            Line::FileChunk { id: file, data } => {
                chunk = base64_simd::STANDARD.encode_to_string(data);
                ServerEvent::FileChunk {
                    id: file.0,
                    data: chunk.as_str(),
                }
            }
            Line::FileReceived {
                id: file,
                name,
                size,
                from,
            } => ServerEvent::FileDone {
                id: file.0,
                name,
                size: Some(size),
                from: Some(from),
                to: None,
            },
            Line::FileSent { id: file, name, to } => ServerEvent::FileDone {
                id: file.0,
                name,
                size: None,
                from: None,
                to: Some(to),
            },
            Line::FileCancelled { id: file, reason } => {
                ServerEvent::FileCancelled { id: file.0, reason }
            }
            Line::Error { code, ref message } => ServerEvent::Error {
                code: code.as_str(),
                message,
            },
        };
        let line = ServerLine { ts: unix_ms, event };
        Bytes::from(line.to_bytes())
    }
}

/// One chat message to a channel, encoded once for every text-mode member.
fn chat_text(channel: &str, user: &str, text: &str) -> Bytes {
    let mut buf = Vec::with_capacity(channel.len() + user.len() + text.len() + 6);
    buf.push(b'[');
    buf.extend_from_slice(channel.as_bytes());
    buf.extend_from_slice(b"] ");
    buf.extend_from_slice(user.as_bytes());
    buf.extend_from_slice(b": ");
    buf.extend_from_slice(text.as_bytes());
    buf.push(b'\n');
    Bytes::from(buf)
}

/// One piece of a file: `[file <id> data <n>]`, a line break, exactly `n` raw bytes and a
/// line break when the bytes are safe to show on a terminal (text); otherwise
/// `[file <id> base64 <n>]` and one line of standard base64 that decodes to the `n` bytes.
fn file_chunk_text(id: TransferId, data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(data.len() * 4 / 3 + 40);
    let safe = is_terminal_safe(data);
    let kind = if safe { "data" } else { "base64" };
    let _ = writeln!(out, "[file {id} {kind} {}]", data.len());
    if safe {
        out.extend_from_slice(data);
    } else {
        base64_simd::STANDARD.encode_append(data, &mut out);
    }
    out.push(b'\n');
    Bytes::from(out)
}

/// The commands one role may use (`None`: before login), as `(usage, what it does)`.
fn help_commands(role: Option<Role>) -> Vec<(&'static str, &'static str)> {
    let Some(role) = role else {
        return vec![
            ("/register <user> <password>", "create an account"),
            ("/login <user> <password>", "log in"),
            ("/resume <user> <token>", "log in with a resume token"),
            ("/mode <text|json>", "how the server writes its lines"),
            ("/ping [token]", "answered PONG [token]"),
            ("/close", "leave"),
        ];
    };
    let mut commands = vec![
        ("<text>", "message your channel"),
        (
            "/msg <user> <text>",
            "private message (kept for offline users)",
        ),
        ("/join <channel>", "switch channel"),
        ("/list", "users online"),
        ("/channels", "channels, member counts and topics"),
        ("/names", "who is in your channel"),
        (
            "/topic [text]",
            "show or set your channel's topic (/topic - clears it)",
        ),
        (
            "/private <on|off>",
            "only invited users may join your channel (owner, mods)",
        ),
        (
            "/invite <user>",
            "let a user join your private channel (owner, mods)",
        ),
        ("/away [text]", "mark yourself away, or (without text) back"),
        ("/profile", "your name, channel and role"),
        ("/history [n]", "the channel's last n messages"),
        (
            "/history @<user> [n]",
            "your last n private messages with a user",
        ),
        (
            "/history [@<user>] <n> before <id>",
            "the n messages before message <id>",
        ),
        (
            "/send <user> <name> <size>",
            "send a file: the <size> bytes follow the line",
        ),
        (
            "/send <user> <path>",
            "send a file from the server's files directory",
        ),
        ("/cancel <id>", "stop a file transfer"),
        ("/role", "your role"),
        (
            "/password <old> <new>",
            "change your password (logs your other sessions out)",
        ),
        (
            "/delete-account <password>",
            "delete your account and its messages",
        ),
        (
            "/token",
            "a resume token: log in again without the password",
        ),
        (
            "/logout-everywhere",
            "revoke your resume tokens, log your other sessions out",
        ),
    ];
    if role >= Role::Mod {
        commands.extend([
            ("/kick <user> [reason]", "close every session of a user"),
            (
                "/ban <user> [duration] [reason]",
                "keep a user out (10m, 2h, 7d...; none: until lifted)",
            ),
            ("/unban <user>", "lift a ban"),
            (
                "/mute <user> [duration] [reason]",
                "stop a user's messages, DMs and files",
            ),
            ("/unmute <user>", "lift a mute"),
            ("/bans", "the bans and mutes in force"),
        ]);
    }
    if role == Role::Admin {
        commands.push(("/role <user> <role>", "set a role: user, mod or admin"));
    }
    commands.extend([
        ("/mode <text|json>", "how the server writes its lines"),
        ("/ping [token]", "answered PONG [token]"),
        ("/close", "leave"),
        ("/help", "this list"),
    ]);
    commands
}

fn help_text(role: Option<Role>) -> String {
    let commands = help_commands(role);
    let width = commands
        .iter()
        .map(|(usage, _)| usage.len())
        .max()
        .unwrap_or(0);
    let mut text = String::from("Commands:");
    for (usage, what) in commands {
        let _ = write!(text, "\n  {usage:width$}  {what}");
    }
    text
}

/// Text a terminal shows as text: UTF-8 (a character cut at the very end is fine) with no
/// control character but tab and line breaks, and no bidirectional overrides.
fn is_terminal_safe(data: &[u8]) -> bool {
    // The common case, printable ASCII and line breaks, in one pass without decoding:
    // blocks checked without an early exit inside them, which the compiler vectorises.
    let printable = |b: u8| (b' '..0x7f).contains(&b) | (b == b'\n') | (b == b'\r') | (b == b'\t');
    if data
        .chunks(64)
        .all(|block| block.iter().fold(true, |ok, &b| ok & printable(b)))
    {
        return true;
    }
    let valid = match std::str::from_utf8(data) {
        Ok(text) => text,
        Err(error) if error.error_len().is_none() => {
            // Only an unfinished character at the end: check what comes before it.
            match std::str::from_utf8(&data[..error.valid_up_to()]) {
                Ok(text) => text,
                Err(_) => return false,
            }
        }
        Err(_) => return false,
    };
    valid
        .chars()
        .all(|c| matches!(c, '\n' | '\r' | '\t') || !crate::sanitize::needs_removal(c))
}

/// When a sanction ends, for JSON: milliseconds since the Unix epoch, `None` until lifted.
fn until(sanction: &Sanction) -> Option<i64> {
    sanction.expires.map(|expiry| expiry.at_unix_ms)
}

/// When a sanction ends, for text: `until 2026-12-07 10:00 UTC` or `until lifted`.
pub(crate) struct Until<'a>(pub(crate) &'a Sanction);

impl std::fmt::Display for Until<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.expires {
            Some(expiry) => write!(f, "until {}", Timestamp(expiry.at_unix_ms)),
            None => f.write_str("until lifted"),
        }
    }
}

/// `banned` or `muted`.
struct Participle(SanctionKind);

impl std::fmt::Display for Participle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            SanctionKind::Ban => "banned",
            SanctionKind::Mute => "muted",
        })
    }
}

/// Milliseconds since the Unix epoch, shown as `YYYY-MM-DD HH:MM UTC`.
struct Timestamp(i64);

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seconds = self.0.div_euclid(1000);
        let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
        let (year, month, day) = civil_from_days(days);
        write!(
            f,
            "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
            rest / 3600,
            rest % 3600 / 60
        )
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    #[test]
    fn timestamps_show_the_utc_date_and_minute() {
        assert_eq!(Timestamp(0).to_string(), "1970-01-01 00:00 UTC");
        assert_eq!(
            Timestamp(1_795_664_700_000).to_string(),
            "2026-11-26 03:45 UTC"
        );
        assert_eq!(
            Timestamp(951_782_400_000).to_string(),
            "2000-02-29 00:00 UTC"
        );
    }

    #[test]
    fn only_printable_text_and_line_breaks_count_as_terminal_safe() {
        for safe in [
            &b"plain ascii\tand\r\n"[..],
            "h\u{e9}llo \u{1f600}\n".as_bytes(),
            b"",
        ] {
            assert!(is_terminal_safe(safe), "{safe:?}");
        }
        for unsafe_ in [
            &b"\x1b[2J"[..],
            b"del\x7f",
            b"nul\0",
            "c1 \u{9b}".as_bytes(),
            "bidi \u{202e}".as_bytes(),
            b"\xff\xfe",
        ] {
            assert!(!is_terminal_safe(unsafe_), "{unsafe_:?}");
        }
    }

    #[test]
    fn text_chunks_are_sent_raw_and_binary_chunks_as_base64() {
        let id = TransferId(3);
        assert_eq!(
            &file_chunk_text(id, b"hi\nthere\n")[..],
            b"[file 3 data 9]\nhi\nthere\n\n"
        );
        assert_eq!(
            &file_chunk_text(id, b"\x1b[2J")[..],
            b"[file 3 base64 4]\nG1sySg==\n"
        );
        assert_eq!(
            &file_chunk_text(id, &[0xc3])[..],
            b"[file 3 data 1]\n\xc3\n",
            "cut character"
        );
    }

    #[test]
    fn json_lines_carry_a_type_the_fields_and_a_timestamp() {
        let id = MessageId {
            origin: 1,
            sequence: 2,
        };
        let line = Line::Chat {
            channel: "Global",
            user: "al",
            text: "hi \"there\"",
            id,
        };
        let value: Value = serde_json::from_slice(&line.json(Some(1000))).unwrap();
        assert_eq!(value["type"], "message");
        assert_eq!(value["text"], "hi \"there\"");
        assert_eq!(value["id"], "00000000000000010000000000000002");
        assert_eq!(value["ts"], 1000);
        let error = Line::Error {
            code: ErrorCode::NoSuchUser,
            message: "no such user: x".into(),
        };
        let value: Value = serde_json::from_slice(&error.json(None)).unwrap();
        assert_eq!(
            (value["code"].as_str(), value.get("ts")),
            (Some("no_such_user"), None)
        );
    }

    /// One of every line, with the exact JSON bytes clients have always received (keys in
    /// sorted order, `ts` only when the time is known).
    fn every_json_line() -> Vec<(Line<'static>, &'static str)> {
        let id = MessageId {
            origin: 1,
            sequence: 2,
        };
        let file = TransferId(7);
        vec![
            (
                Line::Info("Welcome to WUR2"),
                r#"{"text":"Welcome to WUR2","type":"info"}"#,
            ),
            (
                Line::Prompt(Prompt::Account),
                r#"{"prompt":"account","type":"prompt"}"#,
            ),
            (
                Line::Prompt(Prompt::Username),
                r#"{"prompt":"username","type":"prompt"}"#,
            ),
            (
                Line::Prompt(Prompt::Password),
                r#"{"prompt":"password","type":"prompt"}"#,
            ),
            (
                Line::Welcome {
                    user: "al",
                    role: Role::Mod,
                    new: true,
                },
                r#"{"new":true,"role":"mod","type":"welcome","user":"al"}"#,
            ),
            (
                Line::InChannel { channel: "Global" },
                r#"{"channel":"Global","type":"channel"}"#,
            ),
            (
                Line::Chat {
                    channel: "Global",
                    user: "al",
                    text: "hi \"there\"\u{1}",
                    id,
                },
                r#"{"channel":"Global","from":"al","id":"00000000000000010000000000000002","text":"hi \"there\"\u0001","type":"message"}"#,
            ),
            (
                Line::Direct {
                    from: "al",
                    text: "psst",
                    id,
                },
                r#"{"from":"al","id":"00000000000000010000000000000002","text":"psst","type":"dm"}"#,
            ),
            (
                Line::OfflineDirect {
                    from: "al",
                    text: "later",
                    sent_at: 5,
                    id,
                },
                r#"{"from":"al","id":"00000000000000010000000000000002","offline":true,"sent_at":5,"text":"later","type":"dm"}"#,
            ),
            (
                Line::History {
                    channel: "Global",
                    from: "al",
                    text: "old",
                    sent_at: -1,
                    id,
                },
                r#"{"channel":"Global","from":"al","id":"00000000000000010000000000000002","sent_at":-1,"text":"old","type":"history"}"#,
            ),
            (
                Line::StoredForLater { to: "bo" },
                r#"{"to":"bo","type":"dm_stored"}"#,
            ),
            (
                Line::Joined {
                    user: "al",
                    channel: "rust",
                },
                r#"{"channel":"rust","type":"join","user":"al"}"#,
            ),
            (
                Line::Left {
                    user: "al",
                    channel: "rust",
                },
                r#"{"channel":"rust","type":"part","user":"al"}"#,
            ),
            (
                Line::Switched {
                    from: "Global",
                    to: "rust",
                },
                r#"{"from":"Global","to":"rust","type":"switched"}"#,
            ),
            (
                Line::Kicked {
                    by: "mo",
                    reason: "spam",
                },
                r#"{"by":"mo","reason":"spam","type":"kicked"}"#,
            ),
            (
                Line::KickNotice {
                    user: "al",
                    by: "mo",
                    reason: "spam",
                },
                r#"{"by":"mo","reason":"spam","type":"kick","user":"al"}"#,
            ),
            (
                Line::KickDone { user: "al" },
                r#"{"type":"kick_done","user":"al"}"#,
            ),
            (
                Line::Banned(&SANCTIONS[0]),
                r#"{"by":"mo","reason":"spam","type":"banned","until":7200000}"#,
            ),
            (
                Line::Muted(&SANCTIONS[1]),
                r#"{"by":"mo","reason":"noise","type":"muted"}"#,
            ),
            (Line::Unmuted, r#"{"type":"unmuted"}"#),
            (
                Line::Sanctioned(&SANCTIONS[0]),
                r#"{"kind":"ban","reason":"spam","type":"sanctioned","until":7200000,"user":"al"}"#,
            ),
            (
                Line::Lifted {
                    kind: SanctionKind::Mute,
                    user: "al",
                },
                r#"{"kind":"mute","type":"lifted","user":"al"}"#,
            ),
            (
                Line::Sanctions(&*SANCTIONS),
                r#"{"sanctions":[{"by":"mo","kind":"ban","reason":"spam","set_at":0,"until":7200000,"user":"al"},{"by":"mo","kind":"mute","reason":"noise","set_at":0,"user":"bo"}],"type":"sanctions"}"#,
            ),
            (
                Line::YourRole { role: Role::User },
                r#"{"role":"user","type":"role"}"#,
            ),
            (
                Line::RoleSet {
                    user: "al",
                    role: Role::Admin,
                },
                r#"{"role":"admin","type":"role_set","user":"al"}"#,
            ),
            (
                Line::RoleChanged {
                    role: Role::Mod,
                    by: "boss",
                },
                r#"{"by":"boss","role":"mod","type":"role"}"#,
            ),
            (
                Line::Users(vec![("al", None), ("bo", None)]),
                r#"{"type":"list","users":["al","bo"]}"#,
            ),
            (
                Line::Channels(vec![("Global", 2, None), ("rust", 1, None)]),
                r#"{"channels":[{"members":2,"name":"Global"},{"members":1,"name":"rust"}],"type":"channels"}"#,
            ),
            (
                Line::Channels(vec![("rust", 0, Some("crabs"))]),
                r#"{"channels":[{"members":0,"name":"rust","topic":"crabs"}],"type":"channels"}"#,
            ),
            (
                Line::Users(vec![("al", Some("lunch")), ("bo", None)]),
                r#"{"away":[["al","lunch"]],"type":"list","users":["al","bo"]}"#,
            ),
            (
                Line::Topic {
                    channel: "rust",
                    topic: Some("crabs"),
                },
                r#"{"channel":"rust","topic":"crabs","type":"topic"}"#,
            ),
            (
                Line::Topic {
                    channel: "rust",
                    topic: None,
                },
                r#"{"channel":"rust","type":"topic"}"#,
            ),
            (
                Line::TopicChanged {
                    channel: "rust",
                    topic: Some("crabs"),
                    by: "al",
                },
                r#"{"by":"al","channel":"rust","topic":"crabs","type":"topic"}"#,
            ),
            (
                Line::PrivacyChanged {
                    channel: "rust",
                    private: true,
                    by: "al",
                },
                r#"{"by":"al","channel":"rust","private":true,"type":"private"}"#,
            ),
            (
                Line::Invited {
                    channel: "rust",
                    user: "bo",
                },
                r#"{"channel":"rust","type":"invited","user":"bo"}"#,
            ),
            (
                Line::Invitation {
                    channel: "rust",
                    by: "al",
                },
                r#"{"by":"al","channel":"rust","type":"invitation"}"#,
            ),
            (
                Line::Names {
                    channel: "rust",
                    users: vec!["al", "bo"],
                },
                r#"{"channel":"rust","type":"names","users":["al","bo"]}"#,
            ),
            (
                Line::AwaySet(Some("lunch")),
                r#"{"text":"lunch","type":"away_set"}"#,
            ),
            (Line::AwaySet(None), r#"{"type":"away_set"}"#),
            (
                Line::Away {
                    user: "al",
                    text: "lunch",
                },
                r#"{"text":"lunch","type":"away","user":"al"}"#,
            ),
            (
                Line::Profile {
                    user: "al",
                    channel: "Global",
                    role: Role::User,
                },
                r#"{"channel":"Global","role":"user","type":"profile","user":"al"}"#,
            ),
            (Line::Pong(""), r#"{"token":"","type":"pong"}"#),
            (Line::Pong("t1"), r#"{"token":"t1","type":"pong"}"#),
            (Line::Goodbye, r#"{"type":"goodbye"}"#),
            (Line::ShuttingDown, r#"{"type":"shutdown"}"#),
            (
                Line::Help(None),
                r#"{"commands":[["/register <user> <password>","create an account"],["/login <user> <password>","log in"],["/resume <user> <token>","log in with a resume token"],["/mode <text|json>","how the server writes its lines"],["/ping [token]","answered PONG [token]"],["/close","leave"]],"type":"help"}"#,
            ),
            (
                Line::ModeSet(Mode::Json),
                r#"{"mode":"json","type":"mode"}"#,
            ),
            (
                Line::ModeSet(Mode::Text),
                r#"{"mode":"text","type":"mode"}"#,
            ),
            (
                Line::FileOffer {
                    id: file,
                    from: "al",
                    name: "a.bin",
                    size: 3,
                },
                r#"{"from":"al","id":7,"name":"a.bin","size":3,"type":"file_offer"}"#,
            ),
            (
                Line::FileSending {
                    id: file,
                    to: "bo",
                    name: "a.bin",
                    size: 3,
                },
                r#"{"id":7,"name":"a.bin","size":3,"to":"bo","type":"file_sending"}"#,
            ),
            (
                Line::FileChunk {
                    id: file,
                    data: b"\x00\x01\x02",
                },
                r#"{"data":"AAEC","id":7,"type":"file_chunk"}"#,
            ),
            (
                Line::FileReceived {
                    id: file,
                    name: "a.bin",
                    size: 3,
                    from: "al",
                },
                r#"{"from":"al","id":7,"name":"a.bin","size":3,"type":"file_done"}"#,
            ),
            (
                Line::FileSent {
                    id: file,
                    name: "a.bin",
                    to: "bo",
                },
                r#"{"id":7,"name":"a.bin","to":"bo","type":"file_done"}"#,
            ),
            (
                Line::FileCancelled {
                    id: file,
                    reason: "bo left",
                },
                r#"{"id":7,"reason":"bo left","type":"file_cancelled"}"#,
            ),
            (
                Line::Error {
                    code: ErrorCode::NotOnline,
                    message: "bo is not online".into(),
                },
                r#"{"code":"not_online","message":"bo is not online","type":"error"}"#,
            ),
        ]
    }

    /// A ban of al for two hours and an open-ended mute of bo, both by mo.
    static SANCTIONS: std::sync::LazyLock<[Sanction; 2]> = std::sync::LazyLock::new(|| {
        let sanction = |kind, user: &str, reason: &str, expires| Sanction {
            kind,
            username: user.into(),
            by: "mo".into(),
            reason: reason.into(),
            set_at_unix_ms: 0,
            expires,
        };
        let two_hours = crate::sanction::Expiry {
            at_unix_ms: 7_200_000,
            remaining: std::time::Duration::from_secs(7_200),
        };
        [
            sanction(SanctionKind::Ban, "al", "spam", Some(two_hours)),
            sanction(SanctionKind::Mute, "bo", "noise", None),
        ]
    });

    #[test]
    fn sanction_lines_say_who_until_when_and_why() {
        let [ban, mute] = &*SANCTIONS;
        let text = |line: Line<'_>| String::from_utf8(line.text().to_vec()).unwrap();
        assert_eq!(
            text(Line::Banned(ban)),
            "You are banned by mo until 1970-01-01 02:00 UTC: spam\n"
        );
        assert_eq!(
            text(Line::Sanctioned(mute)),
            "bo is muted until lifted: noise\n"
        );
        assert_eq!(
            text(Line::Sanctions(&*SANCTIONS)),
            "Bans and mutes:\n  ban al by mo until 1970-01-01 02:00 UTC: spam\n  \
             mute bo by mo until lifted: noise\n"
        );
        assert_eq!(text(Line::Sanctions(&[])), "No bans or mutes.\n");
    }

    #[test]
    fn json_lines_keep_their_exact_bytes() {
        for (line, expected) in every_json_line() {
            let rendered = line.json(None);
            assert_eq!(
                String::from_utf8_lossy(&rendered),
                format!("{expected}\n"),
                "{line:?}"
            );
            let stamped = line.json(Some(1_795_664_700_000));
            let ts = r#""ts":1795664700000"#;
            let value: Value = serde_json::from_slice(&stamped).unwrap();
            assert_eq!(value["ts"], 1_795_664_700_000_i64, "{line:?}");
            assert!(String::from_utf8_lossy(&stamped).contains(ts));
        }
    }

    #[test]
    fn every_json_line_reads_back_into_the_schema_clients_use() {
        for (line, _) in every_json_line() {
            let rendered = line.json(Some(1));
            let text = std::str::from_utf8(&rendered).unwrap();
            let read = ServerLine::parse(text).unwrap_or_else(|e| panic!("{line:?}: {e}"));
            assert_eq!(read.ts, Some(1), "{line:?}");
            assert_ne!(read.event, ServerEvent::Unknown, "{line:?}");
        }
    }

    #[test]
    fn chat_lines_have_the_seed_format() {
        assert_eq!(&chat_text("Global", "al", "hi")[..], b"[Global] al: hi\n");
    }
}
